//! A receive fed through a pipe and frozen at chosen moments, so that its file systems can be
//! copied as a power cut at that moment would leave them.
//!
//! The feeder writes the stream into the receiver's stdin up to each cut offset (for a settling
//! cut, waits until the receiver has applied what it read and sleeps reading the pipe), then
//! stops the receiver (SIGSTOP, waiting until every one of its threads is stopped), lets the
//! caller copy the images, and continues it (SIGCONT). After the last byte it closes the pipe
//! and freezes the receiver again after a few delays, to cut inside its last steps (end record,
//! removal of the holding directory, the final syncs and the state write), and once more after
//! it exited.
//!
//! What a freeze models, and what it does not: the receiver's own system calls are all either
//! done or not begun (a call in progress, even a long `syncfs`, completes before the process
//! stops), while the kernel's write-back goes on, so the copy is what the disks held at one
//! instant of a machine whose receiver happened to be between two calls. A real power cut can
//! also fall inside a system call, and can tear a write in flight in the block layer at sector
//! granularity; a FICLONE sees each of the loop device's writes whole. Neither matters to the
//! journal protocol's claims, which are about the order in which writes become durable, and
//! that order is what the copies show.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use super::points::CutAt;
use super::{io_err, CrashError};

/// One moment at which the receiver was frozen.
#[derive(Debug, Clone)]
pub struct Moment {
    /// Where: "byte 123 of 4567", "end+10ms", "after exit".
    pub label: String,
    /// Why there (the fragile region, or the stream's end).
    pub why: &'static str,
}

/// How long to wait for a stopped receiver to be stopped: a `syncfs` in progress finishes first.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Runs `anyrecv -q --state-dir STATE DEST` on `bytes`, frozen at each of `cuts` (sorted), then
/// after each of the `tail` delays once the input is closed (while it still runs), then after
/// it exited; `at` is called at each moment while the receiver is frozen. Fails if the receiver
/// fails: a recording is of a receive that succeeds.
pub fn receive_frozen_at(
    anyrecv: &Path,
    state_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    cuts: &[CutAt],
    tail: &[Duration],
    at: &mut dyn FnMut(Moment) -> Result<(), CrashError>,
) -> Result<(), CrashError> {
    let log = tempfile::tempfile().map_err(io_err("creating the receiver's stderr log"))?;
    let child = Command::new(anyrecv)
        .arg("-q")
        .arg("--state-dir")
        .arg(state_dir)
        .arg(dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log.try_clone().map_err(io_err("duplicating the stderr log"))?)
        .spawn()
        .map_err(io_err(format!("starting {}", anyrecv.display())))?;
    let mut child = Reaped(child);
    let child = &mut child.0;
    let pid = Pid::from_child(child);
    let mut input = child.stdin.take();
    let len = bytes.len();
    let mut pos = 0;
    let mut fed = Ok(());
    for cut in cuts {
        let k = (cut.offset as usize).min(len);
        if let Some(i) = input.as_mut() {
            fed = i.write_all(&bytes[pos..k]).and_then(|()| i.flush());
        }
        if fed.is_err() {
            break;
        }
        pos = k;
        let mut label = format!("byte {k} of {len}");
        if cut.settle {
            label.push_str(if waiting_for_input(pid) { ", settled" } else { ", not settled" });
        }
        frozen(pid, || at(Moment { label, why: cut.why }))?;
    }
    if fed.is_ok() {
        if let Some(i) = input.as_mut() {
            fed = i.write_all(&bytes[pos..]).and_then(|()| i.flush());
        }
    }
    drop(input);
    let closed = Instant::now();
    if fed.is_ok() {
        for d in tail {
            std::thread::sleep(d.saturating_sub(closed.elapsed()));
            if child.try_wait().map_err(io_err("polling the receiver"))?.is_some() {
                break;
            }
            let label = format!("end+{}ms", closed.elapsed().as_millis());
            frozen(pid, || at(Moment { label, why: "after the last byte: the final steps" }))?;
        }
    }
    let status = child.wait().map_err(io_err("waiting for the receiver"))?;
    if !status.success() || fed.is_err() {
        let mut err = String::new();
        {
            use std::io::{Read, Seek};
            let mut log = log;
            let _ = log.seek(std::io::SeekFrom::Start(0));
            let _ = log.read_to_string(&mut err);
        }
        return Err(CrashError::Recording(format!(
            "anyrecv {status}{}: {}",
            fed.err().map(|e| format!(" (feeding it: {e})")).unwrap_or_default(),
            err.trim()
        )));
    }
    at(Moment { label: "after exit".into(), why: "after the receive exited" })
}

/// A receiver that is killed (stopped or not) and waited for if the harness gives up on it, so
/// that it cannot go on writing into a rig that is being torn down.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Stops `pid`, runs `f` once all its threads are stopped (or it exited), continues it; it is
/// continued even when `f` fails.
fn frozen(pid: Pid, f: impl FnOnce() -> Result<(), CrashError>) -> Result<(), CrashError> {
    kill_process(pid, Signal::STOP)
        .map_err(|e| CrashError::Io { what: "SIGSTOP to the receiver".into(), source: e.into() })?;
    let stopped = wait_stopped(pid);
    let r = stopped.and_then(|()| f());
    // The receiver may have exited meanwhile (a zombie until waited for): nothing to continue.
    let _ = kill_process(pid, Signal::CONT);
    r
}

/// How long to wait for a receiver to apply what it has read.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// The state letter of a `/proc/.../stat` line (the first field after the command name).
fn task_state(stat: &[u8]) -> Option<u8> {
    let after = stat.iter().rposition(|&b| b == b')').map(|p| &stat[p + 1..]);
    after.and_then(|a| a.iter().copied().find(|b| !b.is_ascii_whitespace()))
}

/// Waits until the receiver has applied what it read: one of its threads sleeps reading the
/// pipe and none runs or waits for the disk (or it exited, or [`SETTLE_LIMIT`] passed: false).
fn waiting_for_input(pid: Pid) -> bool {
    let start = Instant::now();
    let tasks = format!("/proc/{}/task", pid.as_raw_nonzero());
    while start.elapsed() < SETTLE_LIMIT {
        let Ok(entries) = std::fs::read_dir(&tasks) else { return true };
        let (mut reading, mut busy, mut any) = (false, false, false);
        for e in entries.flatten() {
            any = true;
            let stat = std::fs::read(e.path().join("stat")).unwrap_or_default();
            let wchan = std::fs::read(e.path().join("wchan")).unwrap_or_default();
            match task_state(&stat) {
                Some(b'Z' | b'X') | None => return true,
                Some(b'S') if wchan.windows(9).any(|w| w == b"pipe_read") => reading = true,
                Some(b'S' | b'I' | b'T' | b't') => {}
                Some(_) => busy = true,
            }
        }
        if !any || (reading && !busy) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

/// Waits until every thread of `pid` is stopped, or it is a zombie.
fn wait_stopped(pid: Pid) -> Result<(), CrashError> {
    let start = Instant::now();
    let tasks = format!("/proc/{}/task", pid.as_raw_nonzero());
    loop {
        let mut all = true;
        let entries = std::fs::read_dir(&tasks).map_err(io_err(format!("reading {tasks}")))?;
        for e in entries.flatten() {
            let stat = std::fs::read(e.path().join("stat")).unwrap_or_default();
            match task_state(&stat) {
                Some(b'T' | b't' | b'Z' | b'X') | None => {}
                Some(_) => all = false,
            }
        }
        if all {
            return Ok(());
        }
        if start.elapsed() > STOP_LIMIT {
            return Err(CrashError::Recording(format!(
                "the receiver (pid {}) did not stop within {STOP_LIMIT:?}",
                pid.as_raw_nonzero()
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
