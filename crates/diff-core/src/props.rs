//! What `stat` cannot show of an object: its extended attributes and inode flags, read by fd or
//! by directory entry, and whether two objects differ in them.
//!
//! Two readers need them: the update details (`content.rs`), for objects already known to
//! have changed, and the walk under path identity (`walk.rs`), where nothing else can
//! tell that they changed: a `setfattr` or `chattr` moves ctime only, and ctime means nothing
//! between two trees that are not snapshots of one file system, so every object matched by
//! path is asked ([`differ`]).
//!
//! Files and directories can be asked through an open fd; symlinks and device nodes cannot be
//! opened without following or opening the device, so they are asked through their parent
//! directory's fd as `/proc/self/fd/<dirfd>/<name>` with the `l*` calls (a short path whatever
//! the depth). Names are bytes throughout.

use crate::error::{Error, Result, Side};
use crate::stat::{inode_flags, Kind};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BTreeMap;

/// XFS keeps POSIX ACLs as `trusted.SGI_ACL_FILE`/`trusted.SGI_ACL_DEFAULT` and shows them to
/// privileged readers beside `system.posix_acl_*`. They are the same ACL under another name:
/// sending both would set it twice, and onto any other file system as a stray xattr.
pub const XFS_ACL_ALIASES: [&[u8]; 2] = [b"trusted.SGI_ACL_FILE", b"trusted.SGI_ACL_DEFAULT"];

/// An object to ask: by its own fd, or by its parent directory's fd and its name.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Fd(BorrowedFd<'a>),
    Entry(BorrowedFd<'a>, &'a [u8]),
}

/// `/proc/self/fd/<dirfd>/<name>`: a short path to an entry however deep it is.
pub fn proc_path<Fd: AsRawFd>(dir: &Fd, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// Names of the object's extended attributes, in byte order, without the names that only
/// alias another (see [`XFS_ACL_ALIASES`]); none where the file system has no xattrs.
pub fn xattr_names(at: At<'_>, side: Side, path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let err = |e| Error::io(side, path, "listxattr", e);
    let mut list = Vec::new();
    // The list can grow between the size query and the read: retry on ERANGE.
    for _ in 0..8 {
        let size = match at {
            At::Fd(fd) => rustix::fs::flistxattr_query(fd),
            At::Entry(dir, name) => rustix::fs::llistxattr_query(proc_path(&dir, name)),
        };
        let size = match size {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        list = vec![0u8; size];
        let got = match at {
            At::Fd(fd) => rustix::fs::flistxattr(fd, &mut list[..]),
            At::Entry(dir, name) => rustix::fs::llistxattr(proc_path(&dir, name), &mut list[..]),
        };
        match got {
            Ok(n) => {
                list.truncate(n);
                break;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    let mut names: Vec<Vec<u8>> = list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty() && !XFS_ACL_ALIASES.contains(n))
        .map(<[u8]>::to_vec)
        .collect();
    names.sort();
    Ok(names)
}

/// Value of one extended attribute; `None` if it vanished since it was listed.
pub fn xattr(at: At<'_>, side: Side, path: &[u8], xname: &[u8]) -> Result<Option<Vec<u8>>> {
    let err = |e| Error::io(side, path, "getxattr", e);
    for _ in 0..8 {
        let size = match at {
            At::Fd(fd) => rustix::fs::fgetxattr_query(fd, xname),
            At::Entry(dir, name) => rustix::fs::lgetxattr_query(proc_path(&dir, name), xname),
        };
        let size = match size {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut v = vec![0u8; size];
        let got = match at {
            At::Fd(fd) => rustix::fs::fgetxattr(fd, xname, &mut v[..]),
            At::Entry(dir, name) => rustix::fs::lgetxattr(proc_path(&dir, name), xname, &mut v[..]),
        };
        match got {
            Ok(n) => {
                v.truncate(n);
                return Ok(Some(v));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e)),
        }
    }
    Err(Error::Inconsistent(format!(
        "{side} {}: xattr keeps changing size while read",
        crate::error::Shown(path)
    )))
}

/// Every extended attribute with its value.
pub fn xattrs(at: At<'_>, side: Side, path: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for n in xattr_names(at, side, path)? {
        if let Some(v) = xattr(at, side, path, &n)? {
            out.insert(n, v);
        }
    }
    Ok(out)
}

/// Inode flags of a file or directory (by entry: opened without following a symlink, and
/// without blocking should a fifo have been swapped in); `None` for other kinds and where the
/// file system has none.
pub fn flags(at: At<'_>, kind: Kind, side: Side, path: &[u8]) -> Result<Option<u32>> {
    let extra = match kind {
        Kind::Dir => OFlags::DIRECTORY,
        Kind::File => OFlags::NONBLOCK,
        _ => return Ok(None),
    };
    let got = |fd: BorrowedFd<'_>| {
        inode_flags(fd).map_err(|e| Error::io(side, path, "FS_IOC_GETFLAGS", e))
    };
    match at {
        At::Fd(fd) => got(fd),
        At::Entry(dir, name) => {
            let how = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
            let fd: OwnedFd = openat(dir, name, how, Mode::empty())
                .map_err(|e| Error::io(side, path, "openat", e))?;
            got(fd.as_fd())
        }
    }
}

/// Whether the origin object `o` (at `opath`) and the target object `t` (at `tpath`), both of
/// `kind`, differ in their extended attributes or inode flags (as far as the target holds
/// flags: a target without them has none to send).
pub fn differ(o: At<'_>, opath: &[u8], t: At<'_>, tpath: &[u8], kind: Kind) -> Result<bool> {
    if xattrs(o, Side::Origin, opath)? != xattrs(t, Side::Target, tpath)? {
        return Ok(true);
    }
    let Some(tf) = flags(t, kind, Side::Target, tpath)? else { return Ok(false) };
    Ok(flags(o, kind, Side::Origin, opath)?.unwrap_or(0) != tf)
}
