//! Progress on standard error, in the format both tools share (`anysend_ui::progress`): without
//! a terminal, plain lines (bytes, and with a stream file's size the share and the time left;
//! rate, records, path) and a last line with what was done; `-q` prints neither it nor the
//! summary; the library reports every record.

#[path = "../crates/recv/tests/common/mod.rs"]
mod common;
mod support;

use std::ffi::OsStr;

use anysend_stream::Record;
use anysend_testbed::streams::stream;
use common::*;
use support::run_anyrecv as run_bin;

fn records() -> Vec<Record> {
    let mut v = vec![Record::Mkdir { path: b"d".to_vec() }];
    for i in 0..50 {
        let path = format!("d/f{i}").into_bytes();
        v.push(Record::Create { path: path.clone() });
        v.push(Record::Write { path, offset: 0, data: vec![i as u8; 1000].into() });
    }
    v
}

#[test]
fn the_library_reports_each_record_applied() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&t.path().join("dest"), &t.path().join("state"));
    let bytes = stream(None, 1, &records());
    let mut ticks = Vec::new();
    let r = anyrecv::receive_with_progress(&cfg, &bytes[..], &mut |_| {}, &mut |t| {
        ticks.push((t.index, t.offset, t.path.to_vec()))
    });
    r.expect("received");
    assert_eq!(ticks.len(), 101);
    assert_eq!(ticks[0], (0, ticks[0].1, b"d".to_vec()));
    assert!(ticks.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1), "ordered");
    assert_eq!(ticks[100].2, b"d/f49".to_vec());
    assert!(ticks[100].1 < bytes.len() as u64, "the end record comes after");
}

#[test]
fn progress_draws_one_line_and_quiet_prints_nothing() {
    let t = tempfile::tempdir().unwrap();
    let bytes = stream(None, 1, &records());
    let state = t.path().join("state");
    let dest = t.path().join("dest");
    let run = run_bin(
        &[OsStr::new("--progress"), "--state-dir".as_ref(), state.as_os_str(), dest.as_os_str()],
        &bytes,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // From standard input the total is unknown until the end: the last line says what was done.
    let last = run.stderr.lines().find(|l| l.contains(" records") && l.contains("/s")).unwrap();
    assert!(last.contains("(100%) in ") && !last.contains("ETA"), "{:?}", run.stderr);
    assert!(run.stderr.contains("anyrecv: received full stream"), "{:?}", run.stderr);
    assert!(!run.stderr.contains('\r'), "no redrawn line without a terminal: {:?}", run.stderr);

    let dest2 = t.path().join("dest2");
    let run = run_bin(
        &["-q".as_ref(), "--state-dir".as_ref(), state.as_os_str(), dest2.as_os_str()],
        &bytes,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "-q prints nothing on success");
}

/// With a stream file, its size is the total: each line has the share and the time left, every
/// few seconds (here every update: `ANYSEND_PROGRESS_INTERVAL=0`).
#[test]
fn progress_of_a_stream_file_has_its_total_share_and_time_left() {
    let t = tempfile::tempdir().unwrap();
    let bytes = stream(None, 1, &records());
    let file = t.path().join("s");
    std::fs::write(&file, &bytes).unwrap();
    let (state, dest) = (t.path().join("state"), t.path().join("dest"));
    let out = std::process::Command::new(support::bin("anyrecv"))
        .env("ANYSEND_PROGRESS_INTERVAL", "0")
        .arg("--progress")
        .arg("--state-dir")
        .arg(&state)
        .arg("-f")
        .arg(&file)
        .arg(&dest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let total = anysend_ui::progress::human_bytes(bytes.len() as u64);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("ETA")).collect();
    assert!(lines.len() > 1, "a line per update: {err}");
    for l in &lines {
        assert!(l.starts_with("anyrecv: ") && l.contains(&format!(" of {total} (")), "{l}");
        assert!(l.contains("%), ETA ") && l.contains(" records"), "{l}");
    }
    assert!(err.contains(&format!("{total} of {total} (100%) in ")), "{err}");
}

/// From a pipe, the stream header's estimate (stream format 1.2) is the total: the share and the
/// time left, as with a file; the last line says what was really done.
#[test]
fn progress_from_a_pipe_takes_the_total_from_the_header_estimate() {
    let t = tempfile::tempdir().unwrap();
    let mut header = anysend_testbed::streams::header(None, 1);
    let estimate = 200_000u64;
    header.estimate = Some(estimate);
    let bytes = anysend_testbed::streams::write(&header, &records(), Default::default());
    let (state, dest) = (t.path().join("state"), t.path().join("dest"));
    let mut cmd = std::process::Command::new(support::bin("anyrecv"));
    cmd.env("ANYSEND_PROGRESS_INTERVAL", "0").arg("--progress").arg("--state-dir").arg(&state);
    let out: anysend_testbed::cmd::Captured =
        anysend_testbed::cmd::capture_fed(cmd.arg(&dest), &bytes).into();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let total = anysend_ui::progress::human_bytes(estimate);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("ETA")).collect();
    assert!(!lines.is_empty(), "{}", out.stderr);
    for l in &lines {
        assert!(l.contains(&format!(" of {total} (")) && l.contains("%), ETA "), "{l}");
    }
}
