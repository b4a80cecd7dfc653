//! The one place that starts child processes (losetup, mkfs, mount, btrfs...).
//!
//! Keeping it in one helper means every failure names the command line and
//! its stderr, and tools are found in the sbin directories even when a CI
//! PATH lacks them.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
