//! A file that changes while anysend reads it must fail the send (exit 4) rather than put a
//! torn file in the stream, and `-f FILE` must not leave a partial stream behind.

mod support;

use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anysend_testbed::cmd::capture;

/// Sends a tree holding a file that is rewritten every millisecond during the send to `-f out`,
/// and returns anysend's output.
fn send_a_changing_tree(out: &std::path::Path) -> std::process::Output {
    let tree = tempfile::tempdir().expect("tempdir");
    let busy = tree.path().join("busy.log");
    let file = std::fs::File::create(&busy).expect("create");
    file.set_len(64 << 20).expect("size");
    file.write_all_at(&vec![7u8; 64 << 20], 0).expect("fill");
    std::fs::write(tree.path().join("quiet"), b"still").expect("write");

    // A writer that touches the file every millisecond for as long as the send runs: the
    // walk's stat and the read's fstat cannot both miss it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                file.write_all_at(&[i as u8], (i * 4096) % (64 << 20)).expect("touch");
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));

    let result = capture(Command::new(support::bin("anysend")).arg("-f").arg(out).arg(tree.path()));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    result
}

#[test]
fn a_file_changing_during_the_send_fails_it() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let stream = out_dir.path().join("torn.stream");
    let out = send_a_changing_tree(&stream);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "anysend must fail with exit 4; stderr:\n{stderr}");
    assert!(stderr.contains("busy.log"), "the error names the file: {stderr}");
    assert!(stderr.contains("writable") || stderr.contains("read-only"), "it warned: {stderr}");
    assert!(!stream.exists(), "a failed send left a partial stream file behind");
}

#[test]
fn a_failed_send_into_a_fifo_leaves_the_fifo() {
    // `-f` naming a fifo (as `-f /dev/stdout` names a device): the failed send must not remove it.
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).map(|b| b.len()))
    };
    let out = send_a_changing_tree(&fifo);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let read = reader.join().expect("reader").expect("read the fifo");
    assert!(read > 0, "the stream went into the fifo before the send failed");
    let kind = std::fs::symlink_metadata(&fifo).expect("the fifo is still there").file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind), "the fifo was replaced");
}
