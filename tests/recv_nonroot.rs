//! Receiving as an ordinary user (the binary run as nobody through `setpriv`): ownership is
//! left to the receiving user with exactly one warning, `--strict-owner` makes it an error, and
//! a read-only file of the user's own can still be updated.

#[path = "../crates/recv/tests/common/mod.rs"]
mod common;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anysend_stream::Record;
use anysend_testbed::cmd::{capture_fed, Captured};
use anysend_testbed::privilege::is_root;
use anysend_testbed::streams::stream;
use common::*;

const NOBODY: u32 = 65534;

/// Runs the binary as nobody; None (with a loud skip, or a failure in CI) when that is not
/// possible here.
fn as_nobody(args: &[&Path], extra: &[&str], stdin: &[u8]) -> Option<Captured> {
    if !is_root() || anysend_testbed::cmd::which("setpriv").is_none() {
        let why = "needs root and setpriv (util-linux) to run the binary as nobody";
        assert!(!anysend_testbed::privilege::in_ci(), "ANYSEND_CI=1 forbids skipping: {why}");
        eprintln!("*** SKIPPED anyrecv non-root test: {why} ***");
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(support::bin("anyrecv"));
    cmd.args(extra);
    cmd.args(args);
    cmd.env_remove("ANYRECV_STATE_DIR");
    Some(capture_fed(&mut cmd, stdin).into())
}

/// A scratch directory holding DEST and the state directory, both made and handed to nobody,
/// who receives into them.
fn nobodys_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    for d in [&dest, &state] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    (t, dest, state)
}

#[test]
fn nobody_receives_with_one_ownership_warning() {
    let (_t, dest, state) = nobodys_dirs();
    let full = stream(
        None,
        1,
        &[
            Record::Mkdir { path: p("d") },
            Record::Create { path: p("d/f") },
            Record::Write { path: p("d/f"), offset: 0, data: b"data".as_slice().into() },
            Record::Symlink { path: p("l"), target: p("d/f") },
            Record::Chown { path: p("d"), uid: 0, gid: 0 },
            Record::Chown { path: p("d/f"), uid: 1234, gid: 5678 },
            Record::Chown { path: p("l"), uid: 1, gid: 1 },
            Record::Chown { path: p(""), uid: 0, gid: 0 },
            // Already ours: no warning needed for it.
            Record::Chown { path: p("d"), uid: NOBODY, gid: NOBODY },
            Record::Chmod { path: p("d/f"), mode: 0o444 },
            Record::SetXattr { path: p("d/f"), name: p("user.x"), value: p("y") },
            Record::Utimes {
                path: p("d/f"),
                atime_sec: 1,
                atime_nsec: 2,
                mtime_sec: 3,
                mtime_nsec: 4,
            },
        ],
    );
    let Some(r) = as_nobody(&[state.as_path(), dest.as_path()], &["--state-dir"], &full) else {
        return;
    };
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("ownership is not applied"), "{}", r.stderr);
    for f in ["d", "d/f", "l"] {
        let m = std::fs::symlink_metadata(dest.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{f}");
    }
    assert_eq!(std::fs::metadata(dest.join("d/f")).unwrap().mtime(), 3);
    assert!(std::fs::read_dir(&state).unwrap().count() >= 1);

    // An incremental that rewrites the user's own read-only file.
    let incr = stream(
        Some(1),
        2,
        &[Record::Write { path: p("d/f"), offset: 0, data: b"DATA".as_slice().into() }],
    );
    let Some(r) = as_nobody(&[state.as_path(), dest.as_path()], &["--state-dir"], &incr) else {
        return;
    };
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"DATA");
    assert_eq!(std::fs::metadata(dest.join("d/f")).unwrap().mode() & 0o7777, 0o444);
}

#[test]
fn strict_owner_fails_without_root() {
    let (_t, dest, state) = nobodys_dirs();
    let full = stream(
        None,
        1,
        &[Record::Create { path: p("f") }, Record::Chown { path: p("f"), uid: 0, gid: 0 }],
    );
    let Some(r) =
        as_nobody(&[state.as_path(), dest.as_path()], &["--strict-owner", "--state-dir"], &full)
    else {
        return;
    };
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("record 1 at byte ") && r.stderr.contains("chown f"), "{}", r.stderr);
    assert!(r.stderr.contains("--strict-owner"), "{}", r.stderr);
}
