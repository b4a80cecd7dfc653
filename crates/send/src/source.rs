//! Reading the snapshots for the stream: objects opened fd-relatively, file data by extent, and
//! the checks that refuse to send a file that changed while it was read.
//!
//! Every object is reached from the snapshot root's fd one component at a time (diff-core's
//! [`Handle`]), never through one long path, so trees deeper than PATH_MAX are sent like any
//! other. A file is checked against what the walk saw (size, mtime, ctime) before its data is
//! read and again after: a mismatch is a [`SourceChanged`] error, never a torn file in a stream.

use anyhow::{Context, Result};
use anysend_diff_core::{Handle, Kind, Meta, Roots, Side, Timestamp};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, SeekFrom, StatxFlags};
use rustix::io::Errno;
use std::fmt;
use std::ops::Range;
use std::path::Path;

/// The tree changed while it was being sent: the stream would mix two states of it.
#[derive(Debug)]
pub struct SourceChanged {
    /// Path relative to the target root.
    pub path: Vec<u8>,
    /// What moved.
    pub what: String,
}

impl fmt::Display for SourceChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} changed while it was being sent ({}); send a read-only snapshot instead",
            shown(&self.path),
            self.what
        )
    }
}

impl std::error::Error for SourceChanged {}

/// A byte path for messages (`.` for the root), escaped as `anyrecv` shows paths.
pub fn shown(p: &[u8]) -> anysend_stream::dump::Shown<'_> {
    anysend_stream::dump::Shown(p)
}

/// The two snapshot roots, opened once for reading what the plan names.
pub struct Source {
    roots: Roots,
}

impl Source {
    pub fn open(origin: &Path, target: &Path) -> Result<Source> {
        Ok(Source { roots: Roots::open(origin, target)? })
    }

    /// The target alone, for a full stream (which never reads an origin).
    pub fn open_target(target: &Path) -> Result<Source> {
        Ok(Source { roots: Roots::open_target(target)? })
    }

    /// Open the object of `kind` at `path` on `side` and check it is the walked object.
    pub fn object(&self, side: Side, path: &[u8], kind: Kind, ino: Option<u64>) -> Result<Handle> {
        let h = Handle::open(&self.roots, side, path, kind)?;
        let m = h.stat(side, path)?;
        // A boundary directory's identity is a stand-in, not its inode number.
        let other = |i: u64| i != m.ino && !anysend_diff_core::stat::is_boundary_ino(i);
        if m.kind != kind || ino.is_some_and(other) {
            return Err(SourceChanged {
                path: path.to_vec(),
                what: "another object is there now".into(),
            }
            .into());
        }
        Ok(h)
    }
}

fn ts(t: rustix::fs::StatxTimestamp) -> Timestamp {
    Timestamp { sec: t.tv_sec, nsec: t.tv_nsec }
}

/// The access time (never following a final symlink). The walk does not keep it: reading
/// moves it, so it is taken as late as possible.
pub fn atime(h: &Handle, path: &[u8]) -> Result<Timestamp> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
    let mask = StatxFlags::ATIME;
    let st = match h {
        Handle::Fd(fd) => rustix::fs::statx(fd, c"", flags | AtFlags::EMPTY_PATH, mask),
        Handle::At { dir, name } => rustix::fs::statx(dir, name.as_slice(), flags, mask),
    }
    .with_context(|| format!("target {}: statx", shown(path)))?;
    Ok(ts(st.stx_atime))
}

/// Fails with [`SourceChanged`] unless size, mtime and ctime are what the walk saw.
pub fn check_unchanged(h: &Handle, path: &[u8], walked: &Meta) -> Result<()> {
    let now = h.stat(Side::Target, path)?;
    let mut moved = Vec::new();
    if now.size != walked.size {
        moved.push(format!("size {} -> {}", walked.size, now.size));
    }
    if now.mtime != walked.mtime {
        moved.push("mtime".to_string());
    }
    if now.ctime != walked.ctime {
        moved.push("ctime".to_string());
    }
    if moved.is_empty() {
        Ok(())
    } else {
        Err(SourceChanged { path: path.to_vec(), what: moved.join(", ") }.into())
    }
}

/// The next data extent of `fd` in `[from, end)` (SEEK_DATA / SEEK_HOLE). File systems without
/// hole support report everything as data, which is correct, only larger.
pub fn next_data(fd: &OwnedFd, from: u64, end: u64) -> Result<Option<Range<u64>>> {
    if from >= end {
        return Ok(None);
    }
    let start = match rustix::fs::seek(fd, SeekFrom::Data(from)) {
        Ok(s) => s,
        Err(Errno::NXIO) => return Ok(None),
        Err(Errno::INVAL | Errno::NOTSUP) => from,
        Err(e) => return Err(e).context("lseek SEEK_DATA"),
    };
    if start >= end {
        return Ok(None);
    }
    let stop = match rustix::fs::seek(fd, SeekFrom::Hole(start)) {
        Ok(h) => h,
        Err(Errno::NXIO | Errno::INVAL | Errno::NOTSUP) => end,
        Err(e) => return Err(e).context("lseek SEEK_HOLE"),
    };
    Ok(Some(start..stop.clamp(start + 1, end)))
}

/// Read exactly `buf.len()` bytes at `off`; a short read means the file shrank under us.
pub fn read_exact_at(fd: &OwnedFd, buf: &mut [u8], mut off: u64, path: &[u8]) -> Result<()> {
    let mut n = 0;
    while n < buf.len() {
        let r = rustix::io::pread(fd, &mut buf[n..], off)
            .with_context(|| format!("target {}: read at {off}", shown(path)))?;
        if r == 0 {
            return Err(SourceChanged {
                path: path.to_vec(),
                what: format!("ends early at {off}"),
            }
            .into());
        }
        n += r;
        off += r as u64;
    }
    Ok(())
}
