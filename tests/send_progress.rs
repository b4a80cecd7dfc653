//! `anysend --progress`: the planner's estimate is the total before the first record, so the
//! lines have the share and the time left (full and incremental), and the same estimate and the
//! snapshots' names go into the stream header (stream format 1.2) for the receiver.

mod support;

use std::path::Path;
use std::process::Command;

fn tree(root: &Path, files: usize) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for i in 0..files {
        std::fs::write(root.join("sub").join(format!("f{i}")), vec![i as u8; 20_000]).unwrap();
    }
}

/// `anysend --progress [--from origin] target -f stream`, a plain line at every update; its
/// standard error.
fn send_with_progress(origin: Option<&Path>, target: &Path, stream: &Path) -> String {
    let mut cmd = Command::new(support::bin("anysend"));
    cmd.env("ANYSEND_PROGRESS_INTERVAL", "0").arg("--progress");
    if let Some(o) = origin {
        // Two plain directories, not snapshots of one tree: matched by path.
        cmd.arg("--path-match").arg("--from").arg(o);
    }
    let out = cmd.arg("-f").arg(stream).arg(target).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn header(stream: &Path) -> anysend_stream::StreamHeader {
    let bytes = std::fs::read(stream).unwrap();
    anysend_testbed::streams::decode(&bytes).0
}

#[test]
fn send_progress_has_a_total_share_and_time_left_and_the_header_carries_them() {
    let t = tempfile::tempdir().unwrap();
    let (mon, tue) = (t.path().join("mon"), t.path().join("tue"));
    tree(&mon, 200);
    tree(&tue, 200);
    for i in 0..50 {
        std::fs::write(tue.join("sub").join(format!("new{i}")), vec![7u8; 30_000]).unwrap();
    }
    // A large file with a small change: guessed small, not counted whole.
    let mut big = vec![1u8; 8 << 20];
    std::fs::write(mon.join("big"), &big).unwrap();
    big[100..110].fill(9);
    std::fs::write(tue.join("big"), &big).unwrap();
    let full = t.path().join("full");
    let err = send_with_progress(None, &mon, &full);
    let h = header(&full);
    let estimate = h.estimate.expect("a full stream's header carries an estimate");
    let size = std::fs::metadata(&full).unwrap().len();
    // 12 MB of content in 201 files: the estimate is within a fifth of the stream.
    assert!(estimate.abs_diff(size) < size / 5, "estimate {estimate}, stream {size}");
    assert_eq!(h.target_label.as_deref(), Some(&b"mon"[..]));
    assert_eq!(h.origin_label, None);
    let total = anysend_ui::progress::human_bytes(estimate);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("ETA")).collect();
    assert!(!lines.is_empty(), "{err}");
    for l in &lines {
        assert!(l.starts_with("anysend: ") && l.contains(&format!(" of {total} (")), "{l}");
        assert!(l.contains("%), ETA ") && l.contains(" records"), "{l}");
    }
    assert!(err.lines().any(|l| l.contains("(100%) in ")), "a last line: {err}");

    // An incremental: the new files' sizes and what its objects take, known before any record.
    let inc = t.path().join("inc");
    let err = send_with_progress(Some(&mon), &tue, &inc);
    let h = header(&inc);
    let estimate = h.estimate.expect("an incremental's header carries an estimate");
    assert!((50 * 30_000..50 * 30_000 + (4 << 20)).contains(&estimate), "{estimate}");
    assert_eq!(h.target_label.as_deref(), Some(&b"tue"[..]));
    assert_eq!(h.origin_label.as_deref(), Some(&b"mon"[..]));
    let total = anysend_ui::progress::human_bytes(estimate);
    assert!(err.lines().any(|l| l.contains(&format!(" of {total} (")) && l.contains("ETA")));

    // --label names it so instead; a resumed stream carries no estimate (it is only the rest).
    let labelled = t.path().join("labelled");
    let out = Command::new(support::bin("anysend"))
        .args(["-q", "--label", "nightly-42", "-f"])
        .arg(&labelled)
        .arg(&mon)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(header(&labelled).target_label.as_deref(), Some(&b"nightly-42"[..]));
}
