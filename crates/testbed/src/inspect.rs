//! Low-level readers the comparator is built on: one entry's data map,
//! xattrs, chattr flags, directory listing, each via fds or short
//! `/proc/self/fd/<dirfd>/<name>` paths so they work at any depth.
//!
//! Kept apart from `compare` so the walk reads as the list of properties
//! and this file holds the syscall details (ERANGE retries, unsupported
//! file systems, SEEK_DATA/SEEK_HOLE).

use crate::compare::{display_path, CompareError, Result, FLAGS_MASK};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, IFlags, OFlags, SeekFrom};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub(crate) fn io_err<'p>(
    op: &'static str,
    path: &'p [u8],
) -> impl FnOnce(Errno) -> CompareError + 'p {
    move |e| CompareError::Io { op, path: display_path(path), source: e.into() }
}

pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

pub(crate) fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "char",
        FileType::BlockDevice => "block",
        _ => "unknown",
    }
}

pub(crate) fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

pub(crate) fn flags_letters(flags: IFlags) -> String {
    let letters = [
        (IFlags::IMMUTABLE, 'i'),
        (IFlags::APPEND, 'a'),
        (IFlags::NODUMP, 'd'),
        (IFlags::NOATIME, 'A'),
        (IFlags::SYNC, 'S'),
        (IFlags::DIRSYNC, 'D'),
        (IFlags::NOCOW, 'C'),
    ];
    let s: String = letters.iter().filter(|(f, _)| flags.contains(*f)).map(|(_, c)| *c).collect();
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

/// Data ranges `[start, end)` of a file, via SEEK_DATA/SEEK_HOLE.
pub(crate) fn data_map(fd: BorrowedFd<'_>, size: u64, path: &[u8]) -> Result<Vec<(u64, u64)>> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(io_err("SEEK_DATA", path)(e)),
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(fd, SeekFrom::Hole(start))
            .map_err(io_err("SEEK_HOLE", path))?
            .min(size);
        ranges.push((start, end));
        pos = end;
    }
    Ok(ranges)
}

pub(crate) fn clip(map: &[(u64, u64)], limit: u64) -> Vec<(u64, u64)> {
    map.iter().filter(|(s, _)| *s < limit).map(|&(s, e)| (s, e.min(limit))).collect()
}

pub(crate) fn render_map(map: &[(u64, u64)]) -> String {
    let parts: Vec<String> = map.iter().map(|(s, e)| format!("{s}..{e}")).collect();
    format!("data[{}]", parts.join(", "))
}

pub(crate) fn in_hole(map: &[(u64, u64)], start: u64, end: u64) -> bool {
    !map.iter().any(|&(s, e)| s < end && start < e)
}

pub(crate) fn read_full(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    offset: u64,
    path: &[u8],
) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = rustix::io::pread(fd, &mut buf[done..], offset + done as u64)
            .map_err(io_err("pread", path))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// xattr names and values, read through an fd or a short `/proc` path.
pub(crate) enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Path(PathBuf),
}

pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    PathBuf::from(OsStr::from_bytes(&p))
}

pub(crate) fn read_xattrs(
    src: &XattrSource<'_>,
    path: &[u8],
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let unsupported = |e: Errno| e == Errno::NOTSUP;
    // Sizes can change between the query and the read only if someone
    // writes the tree meanwhile; retry on ERANGE anyway.
    let list = loop {
        let size = match src {
            XattrSource::Fd(fd) => rustix::fs::flistxattr_query(fd),
            XattrSource::Path(p) => rustix::fs::llistxattr_query(p),
        };
        let size = match size {
            Ok(s) => s,
            Err(e) if unsupported(e) => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_err("listxattr", path)(e)),
        };
        let mut buf = vec![0u8; size];
        let got = match src {
            XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, &mut buf[..]),
            XattrSource::Path(p) => rustix::fs::llistxattr(p, &mut buf[..]),
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(io_err("listxattr", path)(e)),
        }
    };
    let mut out = BTreeMap::new();
    // XFS shows its on-disk form of POSIX ACLs to root as trusted.SGI_ACL_FILE/DEFAULT beside
    // system.posix_acl_*; the ACL itself is compared under its system.* name.
    let alias = |n: &[u8]| n == b"trusted.SGI_ACL_FILE" || n == b"trusted.SGI_ACL_DEFAULT";
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty() && !alias(n)) {
        let cname = OsStr::from_bytes(name);
        let value = loop {
            let size = match src {
                XattrSource::Fd(fd) => rustix::fs::fgetxattr_query(fd, cname),
                XattrSource::Path(p) => rustix::fs::lgetxattr_query(p, cname),
            };
            let size = match size {
                Ok(s) => s,
                // Removed between list and get: treat as absent.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(io_err("getxattr", path)(e)),
            };
            let mut buf = vec![0u8; size];
            let got = match src {
                XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, cname, &mut buf[..]),
                XattrSource::Path(p) => rustix::fs::lgetxattr(p, cname, &mut buf[..]),
            };
            match got {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(io_err("getxattr", path)(e)),
            }
        };
        if let Some(v) = value {
            out.insert(name.to_vec(), v);
        }
    }
    Ok(out)
}

pub(crate) fn get_flags(fd: BorrowedFd<'_>, path: &[u8]) -> Result<IFlags> {
    match rustix::fs::ioctl_getflags(fd) {
        Ok(f) => Ok(f & FLAGS_MASK),
        // A file system without inode flags holds none.
        Err(Errno::NOTTY | Errno::NOTSUP | Errno::INVAL | Errno::NOSYS) => Ok(IFlags::empty()),
        Err(e) => Err(io_err("FS_IOC_GETFLAGS", path)(e)),
    }
}

pub(crate) fn list_dir(fd: &OwnedFd, path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut dir = rustix::fs::Dir::read_from(fd).map_err(io_err("opendir", path))?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(io_err("readdir", path))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}
