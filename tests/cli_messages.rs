//! What the tools say in the small cases users meet first (issue 21's list): nothing on
//! standard input, `--dump` with a DEST, a DEST whose parent is missing, a file system's root
//! as DEST, and record counts that agree between `anysend -n` and `anyrecv`.

mod support;

use std::process::{Command, Stdio};

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d/f"), b"f").unwrap();
    t
}

fn stream_of(src: &std::path::Path, into: &std::path::Path) {
    let out = Command::new(support::bin("anysend")).arg("-q").arg("-f").arg(into).arg(src).output();
    assert!(out.unwrap().status.success());
}

fn anyrecv(args: &[&std::ffi::OsStr], stdin: Stdio) -> (i32, String) {
    let out = Command::new(support::bin("anyrecv")).args(args).stdin(stdin).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn empty_input_says_there_is_no_stream() {
    let t = tempfile::tempdir().unwrap();
    let (dest, state) = (t.path().join("d"), t.path().join("s"));
    let args = ["--state-dir".as_ref(), state.as_os_str(), dest.as_os_str()];
    let (code, err) = anyrecv(&args, Stdio::null());
    assert!(err.contains("no stream on standard input"), "{err}");
    assert!(!err.contains("cut short"), "{err}");
    assert_ne!(code, 0);
    let empty = t.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let args = [
        "-f".as_ref(),
        empty.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        dest.as_os_str(),
    ];
    let (_, err) = anyrecv(&args, Stdio::null());
    assert!(err.contains("is empty: no stream in it"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn dump_with_a_dest_is_refused_not_ignored() {
    let src = tree();
    let t = tempfile::tempdir().unwrap();
    let s = t.path().join("s");
    stream_of(src.path(), &s);
    let dest = t.path().join("d");
    let (code, err) = anyrecv(
        &["--dump".as_ref(), "-f".as_ref(), s.as_os_str(), dest.as_os_str()],
        Stdio::null(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--dump") && err.contains("DEST"), "{err}");
}

#[test]
fn a_missing_parent_and_a_file_system_root_get_their_own_advice() {
    let src = tree();
    let t = tempfile::tempdir().unwrap();
    let (s, state) = (t.path().join("s"), t.path().join("state"));
    stream_of(src.path(), &s);
    let dest = t.path().join("no/such");
    let args =
        ["--state-dir".as_ref(), state.as_os_str(), "-f".as_ref(), s.as_os_str(), dest.as_os_str()];
    let (code, err) = anyrecv(&args, Stdio::null());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("mkdir -p") && err.contains("no"), "{err}");
    assert!(!err.contains("does not match the stream's origin"), "{err}");
    // A fresh ext4's root holds lost+found.
    let root = t.path().join("fsroot");
    std::fs::create_dir_all(root.join("lost+found")).unwrap();
    let args =
        ["--state-dir".as_ref(), state.as_os_str(), "-f".as_ref(), s.as_os_str(), root.as_os_str()];
    let (code, err) = anyrecv(&args, Stdio::null());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("beneath it"), "{err}");
}

#[test]
fn the_dry_run_and_the_receive_count_the_same_records() {
    let src = tree();
    let t = tempfile::tempdir().unwrap();
    let s = t.path().join("s");
    stream_of(src.path(), &s);
    let n =
        Command::new(support::bin("anysend")).args(["-q", "-n"]).arg(src.path()).output().unwrap();
    let said = String::from_utf8_lossy(&n.stdout).into_owned();
    let count = |text: &str| {
        let i = text.find(" records").expect("a record count");
        text[..i].rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap()
    };
    let state = t.path().join("state");
    let dest = t.path().join("d");
    let args =
        ["--state-dir".as_ref(), state.as_os_str(), "-f".as_ref(), s.as_os_str(), dest.as_os_str()];
    let (code, err) = anyrecv(&args, Stdio::null());
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&said), count(&err), "anysend -n: {said}; anyrecv: {err}");
}
