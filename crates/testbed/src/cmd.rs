//! The one place that starts child processes: the tools the test bed drives (losetup, mkfs,
//! mount, btrfs...) and the binaries under test.
//!
//! Keeping it in one helper means every failure names the command line and
//! its stderr, and tools are found in the sbin directories even when a CI
//! PATH lacks them. Tests that look at a binary's exit code and output run
//! it through [`capture`] or [`capture_fed`], which never fail on a non-zero
//! exit: that is the tests' to judge.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A child process that could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{cmd}`: tool not found in PATH, /usr/sbin or /sbin")]
    NotFound { cmd: String },
    #[error("`{cmd}` could not start: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}); stderr: {stderr}")]
    Failed { cmd: String, status: String, stderr: String },
}

/// Full path of `tool`, looked up in PATH and then the sbin directories.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [OsString::from("/usr/sbin"), OsString::from("/sbin"), OsString::from("/usr/bin")];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn render(program: &str, args: &[&OsStr]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&crate::escape::escape_bytes(a.as_bytes()));
    }
    s
}

/// Runs `program args...` with stdin closed; returns its stdout.
pub fn run<I, S>(program: &str, args: I) -> Result<String, CmdError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let arg_refs: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let cmd = render(program, &arg_refs);
    let exe = which(program).ok_or_else(|| CmdError::NotFound { cmd: cmd.clone() })?;
    let out = Command::new(exe)
        .args(&arg_refs)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CmdError::Failed {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// [`run`], panicking with the command and its stderr on failure.
pub fn run_ok<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` to its end with stdin closed and returns its output, whatever its exit status.
pub fn capture(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` to its end with `stdin` fed through a pipe and returns its output, whatever its
/// exit status. A thread feeds the pipe, so a child that writes a lot before it has read all
/// its input cannot deadlock the test; a child that exits early just leaves input unread.
pub fn capture_fed(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// A finished command as text: its exit code (-1 when a signal ended it) and its output,
/// decoded lossily (for messages and `contains` checks, never for names).
#[derive(Debug)]
pub struct Captured {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Captured {
    fn from(out: Output) -> Captured {
        Captured {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
