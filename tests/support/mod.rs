//! Shared helpers of the end-to-end tests: the built `anysend`/`anyrecv` binaries and the
//! send/receive steps the tests chain together.
//!
//! The root package has no binaries of its own, so cargo gives these tests no
//! `CARGO_BIN_EXE_*`; they build the two binaries once (a no-op when `cargo test --workspace`
//! already did) and run them from the same target directory as the test itself.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The directory holding the test binary's sibling executables (target/<profile>).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// Path of a workspace binary, built on first use.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "anysend", "-p", "anyrecv"]);
        if dir.file_name() == Some(OsStr::new("release")) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building anysend and anyrecv failed");
    });
    profile_dir().join(name)
}

/// Runs a command, returning its output; never panics on a non-zero exit.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
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
    ok("anysend", run(&mut cmd)).map(drop)
}

/// `anyrecv --state-dir state -f stream dest`.
pub fn recv_from_file(stream: &Path, dest: &Path, state: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin("anyrecv"));
    cmd.arg("--state-dir").arg(state).arg("-f").arg(stream).arg(dest);
    ok("anyrecv", run(&mut cmd)).map(drop)
}

/// The state directory tests give anyrecv: beside the destination's file system, never in it.
pub fn state_dir_for(dest_mount: &Path) -> PathBuf {
    let name = dest_mount.to_string_lossy().replace('/', "_");
    let dir = std::env::temp_dir().join(format!("anyrecv-state{name}"));
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}
