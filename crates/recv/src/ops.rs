//! The system calls that change one object of DEST, shared by the applier (`apply`, forward)
//! and the rollback (`rollback`, backward), so that both act on the file system the same way.
//!
//! An object is named by an open parent directory and a final name that is never followed
//! (every call is an `*at` call with AT_SYMLINK_NOFOLLOW, an `l*xattr` call, or an fd opened
//! O_NOFOLLOW), or it is open already: DEST itself, or a file ([`Object`]). These functions only
//! say what the kernel said: what to make of an error (a replay that finds its work done, a
//! user who is not root, a warning) is the caller's policy.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, RenameFlags, Timestamps, CWD};
use rustix::io::Errno;

/// One object of DEST: open already (DEST itself, or a file), or a name in an open directory.
#[derive(Clone, Copy)]
pub enum Object<'a> {
    Open(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

impl Object<'_> {
    /// Its status (a symlink's own).
    pub fn stat(self) -> Result<fs::Stat, Errno> {
        match self {
            Object::Open(fd) => fs::fstat(fd),
            Object::At(dir, name) => fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// Sets its permission bits. `Ok(false)`: it is a symlink, which has none of its own on
    /// Linux (and chmod would follow it).
    pub fn chmod(self, mode: u32) -> Result<bool, Errno> {
        match self {
            Object::Open(fd) => fs::fchmod(fd, Mode::from_raw_mode(mode)).map(|()| true),
            Object::At(dir, name) => {
                let fd = open_path(dir, name)?;
                if FileType::from_raw_mode(fs::fstat(&fd)?.st_mode) == FileType::Symlink {
                    return Ok(false);
                }
                chmod_fd(&fd, mode).map(|()| true)
            }
        }
    }

    /// Sets its numeric owner and group.
    pub fn chown(self, uid: u32, gid: u32) -> Result<(), Errno> {
        let (o, g) =
            (Some(fs::Uid::from_raw_unchecked(uid)), Some(fs::Gid::from_raw_unchecked(gid)));
        match self {
            Object::Open(fd) => fs::fchown(fd, o, g),
            Object::At(dir, name) => fs::chownat(dir, name, o, g, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// Sets its access and modification times.
    pub fn set_times(self, times: &Timestamps) -> Result<(), Errno> {
        match self {
            Object::Open(fd) => fs::futimens(fd, times),
            Object::At(dir, name) => fs::utimensat(dir, name, times, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// The value of its extended attribute `name`; `None` when it has none of that name.
    pub fn xattr(self, name: &OsStr) -> Result<Option<Vec<u8>>, Errno> {
        // XATTR_SIZE_MAX: no value is longer.
        let mut buf = vec![0u8; 65536];
        let r = match self {
            Object::Open(fd) => fs::fgetxattr(fd, name, &mut buf[..]),
            Object::At(dir, base) => fs::lgetxattr(proc_path(dir, base), name, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(Errno::NODATA) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names of its extended attributes.
    pub fn xattr_names(self) -> Result<Vec<Vec<u8>>, Errno> {
        // XATTR_LIST_MAX: no list is longer.
        let mut buf = vec![0u8; 65536];
        let n = match self {
            Object::Open(fd) => fs::flistxattr(fd, &mut buf[..])?,
            Object::At(dir, base) => fs::llistxattr(proc_path(dir, base), &mut buf[..])?,
        };
        Ok(buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()).map(<[u8]>::to_vec).collect())
    }

    /// Sets its extended attribute `name` to `value`.
    pub fn set_xattr(self, name: &OsStr, value: &[u8]) -> Result<(), Errno> {
        let flags = fs::XattrFlags::empty();
        match self {
            Object::Open(fd) => fs::fsetxattr(fd, name, value, flags),
            Object::At(dir, base) => fs::lsetxattr(proc_path(dir, base), name, value, flags),
        }
    }

    /// Removes its extended attribute `name` (ENODATA when it has none of that name).
    pub fn remove_xattr(self, name: &OsStr) -> Result<(), Errno> {
        match self {
            Object::Open(fd) => fs::fremovexattr(fd, name),
            Object::At(dir, base) => fs::lremovexattr(proc_path(dir, base), name),
        }
    }

    /// Sets its extended attribute `name` to `value`, or removes it for `None`.
    pub fn put_xattr(self, name: &OsStr, value: Option<&[u8]>) -> Result<(), Errno> {
        match value {
            Some(v) => self.set_xattr(name, v),
            None => self.remove_xattr(name),
        }
    }

    /// An fd for the inode flags ioctls (FS_IOC_GETFLAGS/SETFLAGS).
    pub fn for_flags(self) -> Result<ForFlags, Errno> {
        match self {
            Object::Open(fd) => rustix::io::fcntl_dupfd_cloexec(fd, 0).map(ForFlags::Fd),
            Object::At(dir, name) => open_for_flags(dir, name),
        }
    }
}

/// What [`Object::for_flags`] found.
pub enum ForFlags {
    Fd(OwnedFd),
    /// An object of a type that holds no inode flags (chattr cannot read or set them either).
    Holds(FileType),
    /// The object changed between looking at it and opening it.
    Raced,
}

/// Opens the directory or regular file `name` for the flags ioctls, read-only and never
/// following it; a fifo swapped in cannot block the open (O_NONBLOCK), a terminal cannot become
/// the controlling one (O_NOCTTY).
fn open_for_flags(dir: BorrowedFd<'_>, name: &OsStr) -> Result<ForFlags, Errno> {
    let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let common = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let how = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => common | OFlags::DIRECTORY,
        FileType::RegularFile => common | OFlags::NONBLOCK | OFlags::NOCTTY,
        other => return Ok(ForFlags::Holds(other)),
    };
    let fd = fs::openat(dir, name, how, Mode::empty())?;
    let now = fs::fstat(&fd)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Ok(ForFlags::Raced);
    }
    Ok(ForFlags::Fd(fd))
}

/// Renames `from` in `from_dir` to `to` in `to_dir`, never replacing what is at `to` (EEXIST).
/// File systems without RENAME_NOREPLACE say EINVAL: there `to` is checked, then renamed
/// plainly (a window in which another process could make `to`; DEST is ours meanwhile).
pub fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    match fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) => match fs::statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Err(Errno::EXIST),
            Err(Errno::NOENT) => fs::renameat(from_dir, from, to_dir, to),
            Err(e) => Err(e),
        },
        r => r,
    }
}

/// Removes the name `name` in `dir`: a directory (which must be empty) or anything else.
pub fn remove(dir: BorrowedFd<'_>, name: &OsStr, directory: bool) -> Result<(), Errno> {
    let flags = if directory { AtFlags::REMOVEDIR } else { AtFlags::empty() };
    fs::unlinkat(dir, name, flags)
}

/// Whether `name` in `dir` is an object of type `t` (not following it).
pub fn is_type(dir: BorrowedFd<'_>, name: &OsStr, t: FileType) -> bool {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == t)
}

/// Whether two names are one object.
pub fn same_object(d1: BorrowedFd<'_>, n1: &OsStr, d2: BorrowedFd<'_>, n2: &OsStr) -> bool {
    let a = fs::statat(d1, n1, AtFlags::SYMLINK_NOFOLLOW);
    let b = fs::statat(d2, n2, AtFlags::SYMLINK_NOFOLLOW);
    matches!((a, b), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// The object itself, not followed, as an fd that can only be used for metadata.
pub fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// chmod of the inode an `O_PATH` fd holds: `/proc/self/fd/N` resolves to that inode (the fd is
/// known not to be a symlink), which is how glibc implements `fchmodat(AT_SYMLINK_NOFOLLOW)`;
/// Linux has no working `lchmod`.
pub fn chmod_fd(fd: &OwnedFd, mode: u32) -> Result<(), Errno> {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    fs::chmodat(CWD, p.as_str(), Mode::from_raw_mode(mode), AtFlags::empty())
}

/// `/proc/self/fd/<dir>/<name>`: the name inside an open directory as a short path, for the
/// `l*xattr` calls, which have no `*at` form. The final name is not followed by `l*` calls.
pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    PathBuf::from(OsStr::from_bytes(&p))
}

/// A dup of `fd` of its own (for a second borrow, or another thread).
pub fn dup(fd: impl AsFd) -> Result<OwnedFd, Errno> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}

/// The name of a file type, for messages.
pub fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}
