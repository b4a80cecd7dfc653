//! File system helpers of the journaled receive, the rollback and `--atomic`: times, whole-file
//! copies that keep holes (FICLONE first), copying content back in place, removing a tree
//! fd-relatively (lifting immutable/append-only flags on the way), and letting go of the page
//! cache of what is kept only for a kill.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as fs, AtFlags, FileType, IFlags, Mode, OFlags, SeekFrom, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::ops::{ForFlags, Object};

/// A time as (seconds, nanoseconds).
pub type Time = (i64, u32);

const BUF: usize = 1 << 20;
const CAPABILITY: &str = "security.capability";

/// A time that no change made so far comes after, and that every later change does: the wall
/// clock now, once the coarse clock the kernel stamps most ctimes with has passed it (one tick,
/// a few milliseconds at most; the wait is bounded anyway). A receive records it when DEST is
/// complete (`drift.rs` compares ctimes with it).
pub fn settle() -> Time {
    use rustix::time::{clock_gettime, ClockId};
    let as_time = |t: rustix::time::Timespec| (t.tv_sec, t.tv_nsec as u32);
    let now = as_time(clock_gettime(ClockId::Realtime));
    for _ in 0..100 {
        if as_time(clock_gettime(ClockId::RealtimeCoarse)) > now {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    now
}

/// Access and modification times of a stat.
#[allow(clippy::unnecessary_cast)] // the field types differ between architectures
pub fn times(st: &fs::Stat) -> (Time, Time) {
    ((st.st_atime as i64, st.st_atime_nsec as u32), (st.st_mtime as i64, st.st_mtime_nsec as u32))
}

pub fn timestamps(atime: Time, mtime: Time) -> Timestamps {
    let ts = |(s, n): Time| Timespec { tv_sec: s, tv_nsec: n.into() };
    Timestamps { last_access: ts(atime), last_modification: ts(mtime) }
}

/// Sets the times of `fd` to those of `st`.
pub fn set_times(fd: BorrowedFd<'_>, st: &fs::Stat) -> io::Result<()> {
    let (a, m) = times(st);
    Ok(fs::futimens(fd, &timestamps(a, m))?)
}

/// The `security.capability` value of a file, if any.
pub fn fget_cap(f: &File) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let n = fs::fgetxattr(f, CAPABILITY, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

pub fn fset_cap(f: &File, cap: &Option<Vec<u8>>) -> io::Result<()> {
    match cap {
        Some(v) => Ok(fs::fsetxattr(f, CAPABILITY, v, fs::XattrFlags::empty())?),
        None => match fs::fremovexattr(f, CAPABILITY) {
            Ok(()) | Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// The next data extent of `f` in `[from, end)`.
fn next_data(f: &File, from: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    if from >= end {
        return Ok(None);
    }
    let start = match fs::seek(f, SeekFrom::Data(from)) {
        Ok(s) => s,
        Err(Errno::NXIO) => return Ok(None),
        Err(Errno::INVAL | Errno::NOTSUP) => from,
        Err(e) => return Err(e.into()),
    };
    if start >= end {
        return Ok(None);
    }
    let stop = match fs::seek(f, SeekFrom::Hole(start)) {
        Ok(h) => h,
        Err(_) => end,
    };
    Ok(Some((start, stop.clamp(start + 1, end))))
}

/// The data and hole segments of [from, end) of `f`: (start, end, is data).
pub fn segments(f: &File, from: u64, end: u64) -> io::Result<Vec<(u64, u64, bool)>> {
    let mut out = Vec::new();
    if from >= end {
        return Ok(out);
    }
    // Most ranges are data throughout: one SEEK_HOLE says so (it returns `from` itself when
    // `from` is in a hole).
    if let Ok(h) = fs::seek(f, SeekFrom::Hole(from)) {
        if h >= end {
            out.push((from, end, true));
            return Ok(out);
        }
    }
    let mut pos = from;
    while let Some((a, b)) = next_data(f, pos, end)? {
        if a > pos {
            out.push((pos, a, false));
        }
        out.push((a, b, true));
        pos = b;
    }
    if pos < end {
        out.push((pos, end, false));
    }
    Ok(out)
}

/// Copies `len` bytes at `src_off` of `src` to `dst_off` of `dst` (bytes past the end of `src`
/// read as zeros).
pub fn copy_range(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; BUF.min(len as usize).max(1)];
    let mut done = 0;
    while done < len {
        let n = ((len - done) as usize).min(buf.len());
        let chunk = &mut buf[..n];
        let mut got = 0;
        while got < n {
            let r = src.read_at(&mut chunk[got..], src_off + done + got as u64)?;
            if r == 0 {
                chunk[got..].fill(0);
                break;
            }
            got += r;
        }
        dst.write_all_at(chunk, dst_off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Makes `f`'s data durable, then drops its pages from the page cache.
///
/// For files this receive writes only to read them after a kill (the journal, keep logs): their
/// synced pages would otherwise sit in memory until reclaim, and DEST's own writes would take
/// fresh pages instead of these (on the benchmark's virtual machine, whose free memory the
/// host takes back, a fresh page costs a fault in the host when first written).
pub fn sync_and_drop(f: BorrowedFd<'_>) -> io::Result<()> {
    fs::fdatasync(f)?;
    // The last partial page stays: the next append writes into it, and would otherwise wait
    // for the disk to read it back first.
    if let Ok(st) = fs::fstat(f) {
        let page = rustix::param::page_size() as u64;
        let whole = u64::try_from(st.st_size).unwrap_or(0) / page * page;
        if let Some(len) = std::num::NonZeroU64::new(whole) {
            let _ = fs::fadvise(f, 0, Some(len), fs::Advice::DontNeed);
        }
    }
    Ok(())
}

/// Drops the clean cached pages of the file open at `f`. Only advice: a failure leaves them
/// in memory, nothing more.
fn drop_cache(f: BorrowedFd<'_>) {
    let _ = fs::fadvise(f, 0, None, fs::Advice::DontNeed);
}

/// Drops the cached pages of the regular file `name` in `dir` if `st` (its stat) says no
/// other name links to it: what a plain receive's unlink would free, when the journaled
/// receive moves the file aside instead (its bytes are read again only by an abort).
pub fn drop_cache_of_removed(dir: BorrowedFd<'_>, name: &OsStr, st: &fs::Stat) {
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink != 1 {
        return;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    if let Ok(fd) = fs::openat(dir, name, flags, Mode::empty()) {
        drop_cache(fd.as_fd());
    }
}

/// Asks the kernel to start reading the bytes [start, end) of `f`, which is `size` bytes long,
/// into its cache without waiting for them (only advice: a failure changes nothing). Reads of
/// many files queued so go to the disk together instead of one wait after another.
pub fn read_soon(f: BorrowedFd<'_>, start: u64, end: u64, size: u64) {
    let end = end.min(size);
    if let Some(len) = end.checked_sub(start).and_then(std::num::NonZeroU64::new) {
        let _ = fs::fadvise(f, start, Some(len), fs::Advice::WillNeed);
    }
}

/// The `len` bytes at `off` of `f` (bytes past its end read as zeros).
pub fn read_range(f: &File, off: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    // Read into the spare capacity: the buffer is not zeroed first only to be overwritten.
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = off + buf.len() as u64;
        let spare = rustix::buffer::spare_capacity(&mut buf);
        match rustix::io::pread(f, spare, at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.resize(len, 0);
    Ok(buf)
}

/// Whether `buf`, read at offset `at` of a file, may lie over a hole, even partly. A hole is
/// made of whole blocks (512 bytes at least, aligned) and reads as zeros, so where each aligned
/// 512-byte block that `buf` touches has a byte that is not zero, there is none.
pub fn may_cover_hole(buf: &[u8], at: u64) -> bool {
    const BLOCK: u64 = 512;
    let mut rest = buf;
    let mut pos = at;
    while !rest.is_empty() {
        let n = ((BLOCK - pos % BLOCK) as usize).min(rest.len());
        let (block, after) = rest.split_at(n);
        if block.iter().all(|&c| c == 0) {
            return true;
        }
        rest = after;
        pos += n as u64;
    }
    false
}

/// Makes [off, off+len) of `f` a hole (zeros where the file system cannot punch), size kept.
pub fn punch(f: &File, off: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let flags = fs::FallocateFlags::PUNCH_HOLE | fs::FallocateFlags::KEEP_SIZE;
    match fs::fallocate(f, flags, off, len) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) => {
            let size = f.metadata()?.len();
            let end = (off + len).min(size);
            if end > off {
                copy_range(f, u64::MAX / 2, f, off, end - off)?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies the data extents of `src` to the same offsets of `dst` (a file with holes there)
/// and sets its size.
fn copy_extents(src: &File, dst: &File) -> io::Result<()> {
    let size = src.metadata()?.len();
    let mut buf = vec![0u8; BUF.min(size as usize).max(1)];
    let mut pos = 0;
    while let Some((a, b)) = next_data(src, pos, size)? {
        let mut at = a;
        while at < b {
            let n = ((b - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)?;
            dst.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        pos = b;
    }
    dst.set_len(size)
}

/// Copies `src` into a new file `name` in `dir` (replacing one left by a kill): a reflink
/// where the file system shares extents, else the data extents (holes stay holes). Synced, since
/// the original is about to change.
pub fn copy_file(src: &File, dir: BorrowedFd<'_>, name: &[u8], reflink: bool) -> io::Result<()> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dst =
        File::from(fs::openat(dir, OsStr::from_bytes(name), flags, Mode::from_raw_mode(0o600))?);
    if !reflink || fs::ioctl_ficlone(&dst, src).is_err() {
        copy_extents(src, &dst)?;
    }
    fs::fdatasync(&dst)?;
    Ok(())
}

/// Whether origin copies are made with FICLONE on the file system of `fd`: on btrfs, where a
/// write to a file that shares extents leaves its hole layout as it would be. (XFS shares
/// extents too, but a write to a shared file allocates by its CoW extent size hint, 128 KiB by
/// default, which turns holes next to the write into data: the replica's holes would differ.)
#[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
pub fn reflink_keeps_layout(fd: BorrowedFd<'_>) -> bool {
    const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
    fs::fstatfs(fd).is_ok_and(|s| s.f_type as i64 == BTRFS_SUPER_MAGIC)
}

/// The names in the open directory `fd` (not `.` and `..`), at most `max` of them.
pub fn names(fd: BorrowedFd<'_>, max: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut d = fs::Dir::read_from(fd)?;
    while names.len() < max {
        let Some(e) = d.read() else { break };
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Whether the directory `name` in `dir` has no entries.
pub fn dir_is_empty(dir: BorrowedFd<'_>, name: &OsStr) -> Result<bool, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = fs::openat(dir, name, flags, Mode::empty())?;
    Ok(names(fd.as_fd(), 1)?.is_empty())
}

/// Lifts immutable and append-only from `name` in `dir`, if it has them; returns the object,
/// open, and the flags it had.
fn unlock(dir: BorrowedFd<'_>, name: &OsStr) -> Option<(OwnedFd, IFlags)> {
    if let Ok(ForFlags::Fd(fd)) = Object::At(dir, name).for_flags() {
        if let Ok(f) = fs::ioctl_getflags(&fd) {
            let locking = IFlags::IMMUTABLE | IFlags::APPEND;
            if f.intersects(locking) {
                let _ = fs::ioctl_setflags(&fd, f - locking);
                return Some((fd, f));
            }
        }
    }
    None
}

/// Removes `name` in `dir`, a directory with everything beneath it or any other object, never
/// following a symlink; lifts immutable/append-only where they are in the way.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    // Most objects removed here are not directories, and most directories are empty (a holding
    // directory holds what the stream removed): one call each, a listing only when needed.
    match unlink_unlocking(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => {}
        r => return Ok(r?),
    }
    match unlink_unlocking(dir, name, AtFlags::REMOVEDIR) {
        Err(Errno::NOTEMPTY | Errno::EXIST) => {}
        r => return Ok(r?),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ACCESS) => {
            unlock(dir, name);
            fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            fs::openat(dir, name, flags, Mode::empty())?
        }
        Err(e) => return Err(e.into()),
    };
    empty_dir(fd.as_fd())?;
    Ok(unlink_unlocking(dir, name, AtFlags::REMOVEDIR)?)
}

/// `unlinkat`, again after lifting immutable/append-only from `name` when they refuse it. The
/// flags are the inode's, not the name's: a file that keeps other names (hard links elsewhere
/// in DEST) gets them back once this name is gone.
fn unlink_unlocking(dir: BorrowedFd<'_>, name: &OsStr, flags: AtFlags) -> Result<(), Errno> {
    match fs::unlinkat(dir, name, flags) {
        Err(Errno::PERM) => {
            let lifted = unlock(dir, name);
            fs::unlinkat(dir, name, flags)?;
            if let Some((fd, had)) = lifted {
                if fs::fstat(&fd).is_ok_and(|st| st.st_nlink > 0) {
                    let _ = fs::ioctl_setflags(&fd, had);
                }
            }
            Ok(())
        }
        r => r,
    }
}

/// Removes every entry of the open directory `fd`.
pub fn empty_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // A directory that is immutable or append-only refuses removals of its entries.
    if let Ok(f) = fs::ioctl_getflags(fd) {
        let locking = IFlags::IMMUTABLE | IFlags::APPEND;
        if f.intersects(locking) {
            let _ = fs::ioctl_setflags(fd, f - locking);
        }
    }
    loop {
        // In batches: a listing is not held whole in memory, however large the directory.
        let names = names(fd, 4096)?;
        if names.is_empty() {
            return Ok(());
        }
        for n in names {
            match remove_tree(fd, OsStr::from_bytes(&n)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{may_cover_hole, read_range};

    #[test]
    fn read_range_reads_past_the_end_as_zeros() {
        let t = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&t, b"0123456789", 0).unwrap();
        assert_eq!(read_range(&t, 3, 4).unwrap(), b"3456");
        assert_eq!(read_range(&t, 7, 6).unwrap(), b"789\0\0\0");
        assert_eq!(read_range(&t, 20, 2).unwrap(), b"\0\0");
        assert_eq!(read_range(&t, 0, 0).unwrap(), b"");
    }

    #[test]
    fn only_an_aligned_block_of_zeros_may_be_a_hole() {
        let mut b = vec![1u8; 2048];
        assert!(!may_cover_hole(&b, 0));
        assert!(!may_cover_hole(&b, 100));
        assert!(!may_cover_hole(&[], 0));
        // Zeros across a block boundary, each block with a nonzero byte: no hole.
        b[500..600].fill(0);
        assert!(!may_cover_hole(&b, 0));
        // The bytes of one block all zero: perhaps a hole.
        b[512..1024].fill(0);
        assert!(may_cover_hole(&b, 0));
        // Shifted by 100 bytes, no block is all zero any more.
        assert!(!may_cover_hole(&b, 100));
        // A range touching a block only partly, those bytes zero.
        assert!(may_cover_hole(&[0, 0, 7], 510));
        assert!(may_cover_hole(&[7, 0, 0], 510));
        assert!(!may_cover_hole(&[7, 0, 9], 510));
    }
}
