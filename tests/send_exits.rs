//! Exit statuses and quiet endings of the built `anysend` that scripts rely on (no root needed:
//! a plain temporary directory is the target).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_anysend");
/// `--help`'s exit status for "the output could not be written".
const EXIT_OUTPUT: i32 = 3;

/// A tree whose record listing is larger than a pipe holds.
fn tree(dir: &Path) {
    std::fs::create_dir(dir.join("d")).unwrap();
    for i in 0..3000 {
        std::fs::write(dir.join(format!("d/f{i}")), i.to_string()).unwrap();
    }
}

#[test]
fn an_output_file_that_cannot_be_made_is_an_output_error() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path());
    let out = Command::new(BIN)
        .args(["-q", "-f", "/nonexistent-anysend-dir/x"])
        .arg(t.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_OUTPUT), "stderr: {err}");
    assert!(err.contains("cannot create /nonexistent-anysend-dir/x"), "stderr: {err}");
    // Said once, not repeated by the error's cause.
    assert_eq!(err.matches("No such file or directory").count(), 1, "stderr: {err}");
}

/// `anysend -n -v | head`: the listing's reader stops reading; anysend ends quietly with
/// success, as `ls | head` does (and as ripgrep does), instead of a broken-pipe error or panic.
#[test]
fn a_listing_reader_that_stops_reading_ends_the_dry_run_quietly() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path());
    for args in [&["-q", "-n", "-v"][..], &["-q", "-n"][..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .arg(t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(!first.is_empty());
        // The reader is gone (dropped above); what is still to be listed meets a closed pipe.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}, stderr: {err}", out.status);
        assert!(err.is_empty(), "{args:?}: stderr: {err}");
    }
}
