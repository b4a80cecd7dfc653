//! Object metadata and identity.
//!
//! `Meta` is the small, copyable summary of one `statx` result that the rest of the crate works
//! with; it deliberately keeps only what identity, change detection and the consumer need, so
//! that memory per recorded entry stays small. Identity across two snapshots of one file system
//! is the inode number, confirmed by type and birth time (a reused number has a new btime);
//! when btime is unavailable (`None`) the type is the only guard.

use crate::error::{Error, Result, Side};
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, FileType, StatxFlags};

/// Type of a file system object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Unix domain socket.
    Socket,
}

impl Kind {
    /// Type from the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Self::from_file_type(FileType::from_raw_mode(mode as _))
    }

    pub(crate) fn from_file_type(t: FileType) -> Option<Kind> {
        Some(match t {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDev,
            FileType::BlockDevice => Kind::BlockDev,
            FileType::Socket => Kind::Socket,
            FileType::Unknown => return None,
        })
    }

    /// Whether this kind is created with `mknod` (fifo, devices, socket).
    pub fn is_node(self) -> bool {
        matches!(self, Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket)
    }
}

/// The inode flags (`FS_IOC_GETFLAGS`, what `chattr` sets) that are compared and carried: the
/// user-settable ones that mean the same on every Linux file system that has them.
///
/// | bit | chattr | name |
/// |---|---|---|
/// | 0x00000008 | `S` | synchronous updates |
/// | 0x00000010 | `i` | immutable |
/// | 0x00000020 | `a` | append only |
/// | 0x00000040 | `d` | no dump |
/// | 0x00000080 | `A` | no atime updates |
/// | 0x00010000 | `D` | synchronous directory updates |
/// | 0x00800000 | `C` | no copy-on-write |
///
/// Left out on purpose: bits the kernel sets itself or that describe the on-disk layout (extents,
/// inline data, encryption, verity, casefold, DAX, compression state), `s`/`u`/`c`/`j`/`t`/`T`/`P`
/// (ignored, file-system specific or project quota state), so a stream never asks a receiver to
/// reproduce one file system's internals.
pub const FLAGS_MASK: u32 = 0x0000_0008 | 0x10 | 0x20 | 0x40 | 0x80 | 0x0001_0000 | 0x0080_0000;

/// Flags that forbid changing an object (immutable `i`, append-only `a`): a writer lifts them
/// before changing such an object and sets them again last.
pub const FLAGS_LOCKING: u32 = 0x10 | 0x20;

/// The object's inode flags masked to [`FLAGS_MASK`]; `Ok(None)` where the file system has no
/// inode flags (tmpfs before 6.0, FUSE, NFS).
pub fn inode_flags<Fd: AsFd>(fd: Fd) -> std::result::Result<Option<u32>, rustix::io::Errno> {
    use rustix::io::Errno;
    match rustix::fs::ioctl_getflags(fd) {
        Ok(f) => Ok(Some(f.bits() & FLAGS_MASK)),
        Err(Errno::NOTTY | Errno::NOTSUP | Errno::NOSYS | Errno::INVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A timestamp with nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// The metadata of one object on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Object type.
    pub kind: Kind,
    /// Inode number.
    pub ino: u64,
    /// Link count (multiply-linked files are tracked by all their links).
    pub nlink: u64,
    /// Permission bits incl. setuid/setgid/sticky (12 bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device number for character/block devices (`makedev(major, minor)`), else 0.
    pub rdev: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time: with size and mtime the "unchanged" quick check between snapshots.
    pub ctime: Timestamp,
    /// Birth time, when the file system reports it; tells a reused inode number apart.
    pub btime: Option<Timestamp>,
    /// The device the object is on (`makedev` of statx's `stx_dev_*`): a directory whose device
    /// is not its tree's is a mount point or a nested btrfs subvolume, a boundary of the walk.
    pub dev: u64,
}

/// Bit 63 of an inode number marks the stand-in identity of a boundary directory (see
/// [`boundary_ino`]); real inode numbers never set it.
const BOUNDARY_TAG: u64 = 1 << 63;

/// The identity a walk gives a directory it does not enter because it lies on another device (a
/// mount point, a nested btrfs subvolume): the inode number its parent's listing names it by,
/// tagged. Its own inode number belongs to another file system and may equal one of this tree's
/// (every btrfs subvolume root is 256, like the snapshot's own root), which would make two
/// objects one.
pub fn boundary_ino(listed_ino: u64) -> u64 {
    listed_ino | BOUNDARY_TAG
}

/// Whether `ino` is a stand-in made by [`boundary_ino`] rather than an inode number.
pub fn is_boundary_ino(ino: u64) -> bool {
    ino & BOUNDARY_TAG != 0
}

impl Meta {
    /// Whether `self` (origin) and `other` (target) can be the same object: same type and, where
    /// both sides know it, the same birth time.
    pub fn same_object(&self, other: &Meta) -> bool {
        self.kind == other.kind
            && match (self.btime, other.btime) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
            && (!matches!(self.kind, Kind::CharDev | Kind::BlockDev) || self.rdev == other.rdev)
    }
}

fn ts(t: rustix::fs::StatxTimestamp) -> Timestamp {
    Timestamp { sec: t.tv_sec, nsec: t.tv_nsec }
}

/// `statx(dirfd, name, AT_SYMLINK_NOFOLLOW | extra)` into a [`Meta`]. `path` is only for error context.
pub(crate) fn statx_at<Fd: AsFd, P: rustix::path::Arg>(
    dirfd: Fd,
    name: P,
    side: Side,
    path: &[u8],
    extra: AtFlags,
) -> Result<Meta> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC | extra;
    let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME;
    let st = rustix::fs::statx(dirfd, name, flags, mask)
        .map_err(|e| Error::io(side, path, "statx", e))?;
    let kind = Kind::from_mode(u32::from(st.stx_mode)).ok_or_else(|| {
        Error::Inconsistent(format!(
            "{side} {}: unknown file type in mode {:o}",
            crate::error::Shown(path),
            st.stx_mode
        ))
    })?;
    let has = |f: StatxFlags| st.stx_mask & f.bits() != 0;
    let rdev = if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor)
    } else {
        0
    };
    Ok(Meta {
        kind,
        ino: st.stx_ino,
        nlink: u64::from(st.stx_nlink),
        mode: u32::from(st.stx_mode) & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        size: st.stx_size,
        rdev,
        mtime: ts(st.stx_mtime),
        ctime: ts(st.stx_ctime),
        btime: has(StatxFlags::BTIME).then(|| ts(st.stx_btime)),
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
    })
}
