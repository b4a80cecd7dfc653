//! `anyrecv --progress` draws one updating line (record index, byte offset, path, rate) on
//! standard error; `-q` prints neither it nor the summary; the library reports every record.

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
    assert!(run.stderr.starts_with("\r\x1b[Kanyrecv: record 0 at byte "), "{:?}", run.stderr);
    assert!(run.stderr.contains("MiB/s) d"), "{:?}", run.stderr);
    assert!(run.stderr.contains("\r\x1b[Kanyrecv: received full stream"), "{:?}", run.stderr);

    let dest2 = t.path().join("dest2");
    let run = run_bin(
        &["-q".as_ref(), "--state-dir".as_ref(), state.as_os_str(), dest2.as_os_str()],
        &bytes,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "-q prints nothing on success");
}
