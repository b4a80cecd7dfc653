//! Shared helpers of the end-to-end tests: the built `anysend`/`anyrecv` binaries and the
//! send/receive steps the tests chain together.
//!
//! The binaries are the root package's own, so cargo builds them for these tests and says
//! where (`CARGO_BIN_EXE_*`).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anysend_testbed::cmd::{capture, capture_fed, Captured};

/// Path of one of the root package's binaries (`anysend`, `anyrecv`), built by cargo for the
/// tests.
pub fn bin(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "anysend" => env!("CARGO_BIN_EXE_anysend"),
        "anyrecv" => env!("CARGO_BIN_EXE_anyrecv"),
        other => panic!("no binary {other} in this package"),
    })
}

/// Runs `anyrecv` with `args`, `stdin` on its standard input.
pub fn run_anyrecv(args: &[&OsStr], stdin: &[u8]) -> Captured {
    capture_fed(Command::new(bin("anyrecv")).args(args), stdin).into()
}

/// Turns a finished command into `Ok(stdout)` or `Err(description with stderr)`.
pub fn ok(what: &str, out: Output) -> Result<Vec<u8>, String> {
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `anysend [--from origin] target -f stream`.
pub fn send_to_file(origin: Option<&Path>, target: &Path, stream: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin("anysend"));
    if let Some(o) = origin {
        cmd.arg("--from").arg(o);
    }
    cmd.arg("-q").arg("-f").arg(stream).arg(target);
    ok("anysend", capture(&mut cmd)).map(drop)
}

/// `anyrecv --state-dir state -f stream dest`.
pub fn recv_from_file(stream: &Path, dest: &Path, state: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin("anyrecv"));
    cmd.arg("--state-dir").arg(state).arg("-f").arg(stream).arg(dest);
    ok("anyrecv", capture(&mut cmd)).map(drop)
}

/// The state directory tests give anyrecv: beside the destination's file system, never in it.
pub fn state_dir_for(dest_mount: &Path) -> PathBuf {
    let name = dest_mount.to_string_lossy().replace('/', "_");
    let dir = std::env::temp_dir().join(format!("anyrecv-state{name}"));
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

// ---- Interrupted receives (e2e_kill, e2e_resume, e2e_atomic) ----

/// `anyrecv --state-dir state ARGS... dest`, stdin closed.
pub fn anyrecv(args: &[&str], dest: &Path, state: &Path) -> Output {
    let mut cmd = Command::new(bin("anyrecv"));
    cmd.arg("--state-dir").arg(state).args(args).arg(dest);
    capture(&mut cmd)
}

/// `anyrecv --resume-token dest`: the token, or `None` when DEST has no interrupted receive.
pub fn resume_token(dest: &Path, state: &Path) -> Option<String> {
    let out = anyrecv(&["--resume-token"], dest, state);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `anysend --resume token [--from origin] target -f stream`.
pub fn send_resumed(
    token: &str,
    origin: Option<&Path>,
    target: &Path,
    stream: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(bin("anysend"));
    cmd.arg("-q").arg("--resume").arg(token);
    if let Some(o) = origin {
        cmd.arg("--from").arg(o);
    }
    cmd.arg("-f").arg(stream).arg(target);
    ok("anysend --resume", capture(&mut cmd)).map(drop)
}

/// Feeds `bytes[..k]` to `anyrecv --state-dir state ARGS... dest` through a pipe, then kills it
/// with SIGKILL: at once (`settle` false: the kill lands wherever the receiver is), or once it
/// has consumed everything and waits for more (`settle` true: the kill lands after every record
/// those bytes complete was applied). Returns the receiver's exit status (None: killed).
pub fn recv_killed_at(
    args: &[&str],
    bytes: &[u8],
    k: usize,
    dest: &Path,
    state: &Path,
    settle: bool,
) -> Option<i32> {
    use std::io::Write;
    let mut child = Command::new(bin("anyrecv"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .arg(dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn anyrecv");
    let mut input = child.stdin.take().expect("stdin");
    let wrote = input.write_all(&bytes[..k]).and_then(|()| input.flush());
    if wrote.is_ok() && settle {
        waiting_for_input(child.id(), std::time::Duration::from_secs(10));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait for anyrecv");
    drop(input);
    status.code()
}

/// Waits until process `pid` sleeps reading an empty pipe (or exited, or `limit` passed).
pub fn waiting_for_input(pid: u32, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
        if state.is_none() || state == Some("Z") {
            return;
        }
        if state == Some("S") && wchan.contains("pipe_read") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A resume token as `anyrecv --resume-token` prints it (for tests that make their own).
pub fn make_token(
    stream: [u8; 16],
    origin: Option<[u8; 16]>,
    target: [u8; 16],
    next_record: u64,
    data_offset: u64,
) -> String {
    use anysend_stream::{Id, ResumePoint, ResumeToken};
    let point = ResumePoint { first_record: next_record, data_offset };
    ResumeToken { stream: Id(stream), origin: origin.map(Id), target: Id(target), point }
        .to_string()
}

/// A chain step for `check_chain_on`: sends `target` (incrementally from `origin` when given)
/// through a stream file and receives it into `dest/replica`, with the receive state kept
/// outside the destination.
pub fn send_and_receive(
    origin: Option<&Path>,
    target: &Path,
    dest: &Path,
) -> Result<PathBuf, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stream = tmp.path().join("stream");
    send_to_file(origin, target, &stream)?;
    let replica = dest.join("replica");
    recv_from_file(&stream, &replica, &state_dir_for(dest))?;
    Ok(replica)
}
