//! The holding directory of a journaled receive: `.anyrecv-<stream id prefix>` at the top of
//! DEST, where what the receive must be able to put back waits until the end record.
//!
//! What it holds, by name:
//! - `s<n>/u<index>`: the object removed by record `index` (in shards of 64 removals);
//! - `n<index>`: the new regular file made by the `create` record `index` of a full receive,
//!   until its data is complete and it gets its name;
//! - `k<index>`, `r<index>`: keep logs, the origin bytes of changed ranges (kept ahead for the
//!   run starting at record `index`, or for record `index` alone);
//! - `o<ino>`: the origin version of a changed file, made for `copy_from_origin`.
//!
//! It is made and removed with DEST's times kept, so DEST's own mtime is what the stream set.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;

use anysend_stream::Id;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, Mode, OFlags};
use rustix::io::Errno;

use crate::apply::Place;
use crate::fsutil;
use crate::path;

/// Removals per shard of the holding directory. An object removed by record `i` waits as
/// `s<i / SHARD>/u<i>`: on ext4 a rename into a directory of a few dozen entries costs about
/// half of one into a directory of thousands, and a receive may remove many thousands.
const SHARD: u64 = 64;

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// The holding directory's name for stream `id`.
pub fn name(id: &Id) -> Vec<u8> {
    format!(".anyrecv-{}", id.short()).into_bytes()
}

/// Where the object removed by record `index` waits.
pub fn removed_name(index: u64) -> Vec<u8> {
    format!("s{}/u{index}", index / SHARD).into_bytes()
}

/// The name of the new file of the `create` record `index` (full receives).
pub fn new_file_name(index: u64) -> Vec<u8> {
    format!("n{index}").into_bytes()
}

/// The name of a keep log: `kind` `k` for a run kept ahead from record `index`, `r` for one
/// record's own.
pub fn keep_log_name(kind: char, index: u64) -> Vec<u8> {
    format!("{kind}{index}").into_bytes()
}

/// The name of the origin version of inode `ino`.
pub fn origin_name(ino: u64) -> Vec<u8> {
    format!("o{ino}").into_bytes()
}

/// The holding directory, open.
pub struct Holding {
    fd: OwnedFd,
    /// The shard removals go to now (its name), open.
    shard: Option<(Vec<u8>, OwnedFd)>,
}

impl Holding {
    /// Opens the holding directory `name` in `root`, making it (with root's times kept) when
    /// missing.
    pub fn open(root: BorrowedFd<'_>, name: &[u8]) -> io::Result<Holding> {
        let n = OsStr::from_bytes(name);
        let fd = match fs::openat(root, n, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let st = fs::fstat(root)?;
                fs::mkdirat(root, n, Mode::from_raw_mode(0o700))?;
                fsutil::set_times(root, &st)?;
                fs::openat(root, n, DIR_FLAGS, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Holding { fd, shard: None })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where an object removed into `held` (a [`removed_name`]) goes: its shard, made if
    /// missing, and its name there.
    pub fn removal<'a>(&'a mut self, held: &'a [u8]) -> Result<Place<'a>, Errno> {
        let (shard, leaf) = path::split_last(held);
        if !matches!(&self.shard, Some((s, _)) if s == shard) {
            let name = OsStr::from_bytes(shard);
            match fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            let fd = fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
            self.shard = Some((shard.to_vec(), fd));
        }
        match &self.shard {
            Some((_, fd)) => Ok(Place { dir: fd.as_fd(), name: OsStr::from_bytes(leaf) }),
            None => Err(Errno::NOENT),
        }
    }

    /// A place directly in the holding directory.
    pub fn place<'a>(&'a self, name: &'a [u8]) -> Place<'a> {
        Place { dir: self.fd.as_fd(), name: OsStr::from_bytes(name) }
    }

    /// Opens the file `name` of the holding directory with `flags` (never following it;
    /// `mode` if it is made).
    pub fn open_file(&self, name: &[u8], flags: OFlags, mode: u32) -> Result<File, Errno> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        fs::openat(&self.fd, OsStr::from_bytes(name), flags, Mode::from_raw_mode(mode))
            .map(File::from)
    }

    /// Whether `name` is in the holding directory.
    pub fn holds(&self, name: &[u8]) -> bool {
        fs::statat(&self.fd, OsStr::from_bytes(name), fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }
}

/// The directory holding `rel` inside the holding directory `hold` (`rel` is a name or
/// `dir/name`; a symlink is never followed) and `rel`'s last name.
pub fn held_dir<'r>(hold: BorrowedFd<'_>, rel: &'r [u8]) -> io::Result<(OwnedFd, &'r OsStr)> {
    let (dir, name) = path::split_last(rel);
    let fd = if dir.is_empty() {
        rustix::io::fcntl_dupfd_cloexec(hold, 0)?
    } else if dir.contains(&b'/') {
        return Err(io::Error::other("a name in the holding directory is nested too deep"));
    } else {
        fs::openat(hold, OsStr::from_bytes(dir), DIR_FLAGS, Mode::empty())?
    };
    Ok((fd, OsStr::from_bytes(name)))
}

/// The holding directory `name`, if it exists. Anything else there (a symbolic link, a file)
/// or a failure to open it is an error: an abort must not skip what it holds.
pub fn open_existing(root: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<OwnedFd>> {
    match fs::openat(root, OsStr::from_bytes(name), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the holding directory `name` and everything in it, keeping root's times.
pub fn remove(root: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let st = fs::fstat(root)?;
    match fsutil::remove_tree(root, OsStr::from_bytes(name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    }
    fsutil::set_times(root, &st)
}
