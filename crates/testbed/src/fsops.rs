//! Small file system helpers for writing scenario steps.
//!
//! Each helper does one syscall-level thing and returns `io::Result`, so a
//! step reads like a script and `?` carries the error to the runner. Names
//! are bytes: build paths with [`join`] to use non-UTF-8 names or newlines.
//! Helpers never follow a final symlink where the call allows it, because a
//! scenario means the link itself. The deep-tree helpers walk with directory
//! fds, since such trees cannot be reached by one path.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{
    AtFlags, FallocateFlags, FileType, IFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps,
    CWD, UTIME_OMIT,
};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `root/rel` where `rel` is raw bytes (may hold `/`, non-UTF-8, newlines).
pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Creates or truncates `path` and writes `data`.
pub fn write_file(path: impl AsRef<Path>, data: &[u8]) -> io::Result<()> {
    std::fs::write(path, data)
}

/// Writes `data` at `offset` without truncating (creates the file if needed).
pub fn write_at(path: impl AsRef<Path>, offset: u64, data: &[u8]) -> io::Result<()> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    f.write_all_at(data, offset)
}

/// Appends `data`.
pub fn append(path: impl AsRef<Path>, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    OpenOptions::new().append(true).open(path)?.write_all(data)
}

/// A sparse file of `len` bytes holding only `chunks` (offset, bytes) as data.
pub fn make_sparse(path: impl AsRef<Path>, len: u64, chunks: &[(u64, &[u8])]) -> io::Result<()> {
    let f = File::create(path)?;
    f.set_len(len)?;
    for (off, data) in chunks {
        f.write_all_at(data, *off)?;
    }
    Ok(())
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
pub fn punch_hole(path: impl AsRef<Path>, offset: u64, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    rustix::fs::fallocate(&f, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)?;
    Ok(())
}

/// Sets the length (shrinks, or extends with a hole).
pub fn truncate(path: impl AsRef<Path>, len: u64) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_len(len)
}

/// `len` bytes of deterministic, incompressible-ish data seeded by `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn mkdir(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::create_dir(path)
}

pub fn mkdir_all(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// Atomically swaps two names (`renameat2(RENAME_EXCHANGE)`).
pub fn exchange(a: impl AsRef<Path>, b: impl AsRef<Path>) -> io::Result<()> {
    rustix::fs::renameat_with(CWD, a.as_ref(), CWD, b.as_ref(), RenameFlags::EXCHANGE)?;
    Ok(())
}

/// A new name `link` for the inode at `existing`.
pub fn hardlink(existing: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    std::fs::hard_link(existing, link)
}

/// A symlink `link` pointing at the raw bytes `target`.
pub fn symlink(target: &[u8], link: impl AsRef<Path>) -> io::Result<()> {
    std::os::unix::fs::symlink(OsStr::from_bytes(target), link)
}

/// Removes a non-directory.
pub fn remove(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::remove_file(path)
}

pub fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::remove_dir(path)
}

pub fn remove_tree(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::remove_dir_all(path)
}

pub fn mkfifo(path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
    rustix::fs::mknodat(CWD, path.as_ref(), FileType::Fifo, Mode::from_raw_mode(mode), 0)?;
    Ok(())
}

pub fn mknod_char(path: impl AsRef<Path>, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(
        CWD,
        path.as_ref(),
        FileType::CharacterDevice,
        Mode::from_raw_mode(mode),
        dev,
    )?;
    Ok(())
}

pub fn mknod_block(path: impl AsRef<Path>, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(CWD, path.as_ref(), FileType::BlockDevice, Mode::from_raw_mode(mode), dev)?;
    Ok(())
}

/// A unix socket node (bound, then the listener closed; the node stays).
pub fn make_socket(path: impl AsRef<Path>) -> io::Result<()> {
    drop(std::os::unix::net::UnixListener::bind(path)?);
    Ok(())
}

/// `lsetxattr`: any namespace (trusted.* needs CAP_SYS_ADMIN).
pub fn set_xattr(path: impl AsRef<Path>, name: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path.as_ref(), name, value, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

pub fn remove_xattr(path: impl AsRef<Path>, name: &str) -> io::Result<()> {
    rustix::fs::lremovexattr(path.as_ref(), name)?;
    Ok(())
}

fn setfacl(args: &[&OsStr]) -> io::Result<()> {
    crate::cmd::run("setfacl", args).map(drop).map_err(|e| io::Error::other(e.to_string()))
}

/// `setfacl -m spec path`, e.g. `spec = "u:1234:rw,g:55:r"`.
pub fn set_acl(path: impl AsRef<Path>, spec: &str) -> io::Result<()> {
    setfacl(&["-m".as_ref(), spec.as_ref(), path.as_ref().as_os_str()])
}

/// `setfacl -d -m spec dir`: the default ACL of a directory.
pub fn set_default_acl(path: impl AsRef<Path>, spec: &str) -> io::Result<()> {
    setfacl(&["-d".as_ref(), "-m".as_ref(), spec.as_ref(), path.as_ref().as_os_str()])
}

/// `setfacl -b path`: removes all extended ACL entries.
pub fn remove_acls(path: impl AsRef<Path>) -> io::Result<()> {
    setfacl(&["-b".as_ref(), path.as_ref().as_os_str()])
}

/// `setfacl -k dir`: removes the default ACL of a directory.
pub fn remove_default_acl(path: impl AsRef<Path>) -> io::Result<()> {
    setfacl(&["-k".as_ref(), path.as_ref().as_os_str()])
}

/// Sets `security.capability` (a value from [`crate::xattr_values`]); the kernel drops it again
/// at a chown, a data write or a truncate of the inode, through any of its names.
pub fn set_capability(path: impl AsRef<Path>, value: &[u8]) -> io::Result<()> {
    set_xattr(path, "security.capability", value)
}

/// Whether `path` (not following a final symlink) has the xattr `name`.
pub fn has_xattr(path: impl AsRef<Path>, name: &str) -> io::Result<bool> {
    match rustix::fs::lgetxattr_query(path.as_ref(), name) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NODATA) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// chmod with all 12 bits (setuid 0o4000, setgid 0o2000, sticky 0o1000).
pub fn chmod(path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
    rustix::fs::chmodat(CWD, path.as_ref(), Mode::from_raw_mode(mode), AtFlags::empty())?;
    Ok(())
}

/// lchown to numeric ids (the kernel clears setuid/setgid on files: chmod
/// after chown when both are wanted).
pub fn chown(path: impl AsRef<Path>, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::chownat(
        CWD,
        path.as_ref(),
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Sets mtime to `sec.nsec` (and atime to the same), not following a final
/// symlink. Do it last in a step: later changes inside a directory move its
/// mtime again.
pub fn set_mtime(path: impl AsRef<Path>, sec: i64, nsec: u32) -> io::Result<()> {
    let t = Timespec { tv_sec: sec, tv_nsec: nsec.into() };
    let times = Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(CWD, path.as_ref(), &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Sets only mtime, leaving atime alone.
pub fn set_mtime_only(path: impl AsRef<Path>, sec: i64, nsec: u32) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: sec, tv_nsec: nsec.into() },
    };
    rustix::fs::utimensat(CWD, path.as_ref(), &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn open_for_flags(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?)
}

/// chattr flags of a file or directory.
pub fn get_flags(path: impl AsRef<Path>) -> io::Result<IFlags> {
    Ok(rustix::fs::ioctl_getflags(open_for_flags(path.as_ref())?)?)
}

/// `chattr +flags` (e.g. `IFlags::APPEND`). Set immutable/append last in a
/// step: they forbid the step's later changes to that inode.
pub fn add_flags(path: impl AsRef<Path>, flags: IFlags) -> io::Result<()> {
    let fd = open_for_flags(path.as_ref())?;
    let cur = rustix::fs::ioctl_getflags(&fd)?;
    rustix::fs::ioctl_setflags(&fd, cur | flags)?;
    Ok(())
}

/// `chattr -flags`.
pub fn remove_flags(path: impl AsRef<Path>, flags: IFlags) -> io::Result<()> {
    let fd = open_for_flags(path.as_ref())?;
    let cur = rustix::fs::ioctl_getflags(&fd)?;
    rustix::fs::ioctl_setflags(&fd, cur - flags)?;
    Ok(())
}

/// Names of a deep chain: `depth` directories named `dNNN` padded with `x`
/// to `name_len` bytes, so `depth * (name_len + 1)` can exceed PATH_MAX.
pub fn deep_names(depth: usize, name_len: usize) -> Vec<Vec<u8>> {
    (0..depth)
        .map(|i| {
            let mut n = format!("d{i:03}").into_bytes();
            n.resize(name_len.max(n.len()), b'x');
            n
        })
        .collect()
}

/// Opens (creating with `create`) the directory chain `names` under `root`
/// one level at a time and returns the fd of the last one.
pub fn open_deep_dir(root: &Path, names: &[Vec<u8>], create: bool) -> io::Result<OwnedFd> {
    let dflags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, dflags, Mode::empty())?;
    for n in names {
        let name = OsStr::from_bytes(n);
        if create {
            match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        fd = rustix::fs::openat(&fd, name, dflags, Mode::empty())?;
    }
    Ok(fd)
}

/// Writes `data` to `name` inside the directory `dir` (create/truncate).
pub fn write_file_at(dir: impl AsFd, name: &[u8], data: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o644),
    )?;
    File::from(fd).write_all_at(data, 0)
}

/// Renames `from` to `to` within the directory `dir`.
pub fn rename_at(dir: impl AsFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    rustix::fs::renameat(dir, OsStr::from_bytes(from), dir, OsStr::from_bytes(to))?;
    Ok(())
}

/// Opens a directory for `*at` calls.
pub fn open_dir(path: impl AsRef<Path>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path.as_ref(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates a new file with exactly `mode` (all 12 bits) and `data`.
pub fn create_with_mode(path: impl AsRef<Path>, mode: u32, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path.as_ref())?;
    f.write_all(data)?;
    // The umask may have cut bits off; set them exactly.
    chmod(path, mode)
}
