//! Applying records to DEST: one function per record kind (STREAM_FORMAT.md section 5).
//!
//! Every function gets its parent directory from the resolver (`resolve.rs`: beneath DEST, no
//! symlink on the way) and acts on the final name with an `*at` call that does not follow it:
//! - create/remove/rename: `mkdirat`, `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `symlinkat`,
//!   `mknodat`, `linkat` without AT_SYMLINK_FOLLOW, `unlinkat`, `renameat2(RENAME_NOREPLACE)`;
//! - metadata: `fchownat`/`utimensat` with AT_SYMLINK_NOFOLLOW; chmod on an `O_PATH|O_NOFOLLOW`
//!   fd through `/proc/self/fd/N` (Linux has no working `lchmod`; a symlink is refused);
//!   xattrs with `l*xattr` on `/proc/self/fd/<parent>/<name>` (short, whatever the depth);
//!   flags with the FS_IOC_SETFLAGS ioctl on an fd opened `O_NOFOLLOW`;
//! - data: the file is checked to be a regular file (`fstatat` NOFOLLOW), opened
//!   `O_RDWR|O_NOFOLLOW|O_NONBLOCK` (a fifo swapped in cannot block us), then checked again by
//!   `fstat` to be the same inode. Its fd is kept while consecutive data records name the same
//!   path, since a stream writes a file in many 1 MiB records.
//!
//! DEST itself (the empty path) only takes metadata records, applied to the root fd.
//!
//! Not being root changes two things, both by design: ownership is left alone with one warning
//! per receive (or an error with `--strict-owner`), and a file the receiving user owns but may
//! not write (mode 0444 at the origin) gets u+rw for the moment of opening it.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use anysend_stream::{NodeType, Record};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as fs, AtFlags, FallocateFlags, FileType, IFlags, Mode, OFlags, RenameFlags, Timespec,
    Timestamps, XattrFlags, CWD,
};
use rustix::io::Errno;

use crate::config::Policy;
use crate::error::{Problem, Warning};
use crate::path;
use crate::resolve::{ResolveError, Resolver};
use crate::validate;

/// Largest buffer used to copy or zero-fill file ranges: memory stays bounded whatever a record
/// declares.
const BUF_MAX: u64 = 1 << 20;

/// FS_IOC_SETFLAGS bits a file system keeps for itself (extents, inline data, encryption,
/// verity, ...). They are kept as DEST has them and never taken from a stream: clearing them
/// is refused by the kernel, and setting them is meaningless.
const FS_MANAGED_FLAGS: u32 = 0x100 // dirty
    | 0x200 // compressed blocks
    | 0x800 // encrypted
    | 0x1000 // hashed directory index
    | 0x2000 // AFS magic
    | 0x40000 // huge file
    | 0x80000 // extents
    | 0x100000 // verity
    | 0x200000 // xattr inode
    | 0x400000 // blocks past EOF
    | 0x10000000 // inline data
    | 0x80000000; // reserved

/// Directories the resolver keeps open, and files of data records ahead ([`Applier::ready`]), at
/// most: each half of the fds this process may open beyond 512, at most 4096 (the records looked
/// at ahead at most). 256 each under the usual limit of 1024.
fn fds_kept() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let soft = soft.unwrap_or(u64::MAX);
    usize::try_from(soft.saturating_sub(512) / 2).unwrap_or(usize::MAX).min(4096)
}

/// The file a run of data records writes to.
pub(crate) struct OpenFile {
    pub(crate) path: Vec<u8>,
    pub(crate) file: File,
}

/// Applies verified records to one DEST.
pub struct Applier {
    pub(crate) res: Resolver,
    policy: Policy,
    is_root: bool,
    euid: u32,
    pub(crate) file: Option<OpenFile>,
    /// Files of data records ahead, opened (for writing) when their origin bytes were kept, by
    /// path, with their status then: each is taken by the first of those records applied. Paths
    /// name other files after a rename or removal, so these are dropped then (and at a flags
    /// change, which may forbid writing).
    pub(crate) ready: HashMap<Vec<u8>, (File, fs::Stat)>,
    /// How many `ready` may hold: a share of the fds this process may open.
    pub(crate) ready_max: usize,
    /// The record being applied, for warnings.
    pub(crate) index: u64,
    warned_owner: bool,
    warned_flags: u32,
    warned_holes: bool,
    /// Journal, holding directory and replay state of a journaled receive (`journaled.rs`).
    pub(crate) session: Option<crate::journaled::Session>,
    /// Record indices `start..end` known to pass `validate::check` (`Applier::check`).
    checked: Cell<(u64, u64)>,
}

type Res = Result<(), Problem>;

impl Applier {
    /// `root` is DEST opened as a directory.
    pub fn new(root: OwnedFd, policy: Policy) -> Self {
        let euid = rustix::process::geteuid();
        let kept = fds_kept();
        Applier {
            res: Resolver::with_capacity(root, kept),
            policy,
            is_root: euid.is_root(),
            euid: euid.as_raw(),
            file: None,
            ready: HashMap::new(),
            ready_max: kept,
            index: 0,
            warned_owner: false,
            warned_flags: 0,
            warned_holes: false,
            session: None,
            checked: Cell::new((0, 0)),
        }
    }

    /// The policy records are checked against.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// DEST's fd, to sync it at the end.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.res.root()
    }

    /// `validate::check` of record `index`. A journaled receive looks at each record several
    /// times (a run ahead, each batch it might join, the apply), so a contiguous range of
    /// indices found valid is remembered (an index always names the same record within a
    /// receive).
    pub(crate) fn check(&self, index: u64, rec: &Record) -> Res {
        let (start, end) = self.checked.get();
        if (start..end).contains(&index) {
            return Ok(());
        }
        validate::check(rec, &self.policy)?;
        self.checked.set(if index == end { (start, end + 1) } else { (index, index + 1) });
        Ok(())
    }

    /// Checks and applies one record. `index` is only used in warnings.
    pub fn apply(&mut self, index: u64, rec: &Record, warn: &mut dyn FnMut(&Warning)) -> Res {
        self.check(index, rec)?;
        self.index = index;
        if self.session.is_some() {
            return self.apply_journaled(index, rec, warn);
        }
        self.perform(rec, warn)
    }

    /// Applies one checked record (the journaled path has logged it first).
    pub(crate) fn perform(&mut self, rec: &Record, warn: &mut dyn FnMut(&Warning)) -> Res {
        let same_file = match (rec, &self.file) {
            (
                Record::Write { path, .. }
                | Record::Hole { path, .. }
                | Record::Truncate { path, .. }
                | Record::CopyFromOrigin { path, .. },
                Some(f),
            ) => f.path == *path,
            _ => false,
        };
        if !same_file {
            self.file = None;
        }
        if !self.ready.is_empty()
            && (crate::journaled::moves_paths(rec) || matches!(rec, Record::SetFlags { .. }))
        {
            self.ready.clear();
        }
        use Record::*;
        match rec {
            Mkdir { path } => self.mkdir(path),
            Create { path } => self.create(path),
            Symlink { path, target } => self.symlink(path, target),
            Mknod { path, node, major, minor } => self.mknod(path, *node, *major, *minor),
            Link { path, existing } => self.link(path, existing),
            Unlink { path } => self.unlink(path),
            Rmdir { path } => self.rmdir(path),
            Rename { from, to } => self.rename(from, to),
            Write { path, offset, data } => self.write(path, *offset, data),
            Hole { path, offset, len } => self.hole(path, *offset, *len, warn),
            Truncate { path, size } => self.truncate(path, *size),
            CopyFromOrigin { path, src_offset, dst_offset, len } => {
                self.copy_from_origin(path, *src_offset, *dst_offset, *len)
            }
            SetXattr { path, name, value } => self.set_xattr(path, name, value),
            RemoveXattr { path, name } => self.remove_xattr(path, name),
            Chmod { path, mode } => self.chmod(path, *mode),
            Chown { path, uid, gid } => self.chown(path, *uid, *gid, warn),
            Utimes { path, atime_sec, atime_nsec, mtime_sec, mtime_nsec } => {
                self.utimes(path, (*atime_sec, *atime_nsec), (*mtime_sec, *mtime_nsec))
            }
            SetFlags { path, flags } => self.set_flags(path, *flags, warn),
            End { .. } => Ok(()),
        }
    }

    /// Closes the open file, if any (before syncing DEST).
    pub fn close_file(&mut self) {
        self.file = None;
        self.ready.clear();
    }

    /// The parent directory of a checked non-root path, and its final name.
    pub(crate) fn parent<'p>(
        &mut self,
        p: &'p [u8],
    ) -> Result<(BorrowedFd<'_>, &'p OsStr), Problem> {
        let (dir, name) = path::split_last(p);
        let fd = self.res.dir(dir).map_err(resolve_problem)?;
        Ok((fd, OsStr::from_bytes(name)))
    }

    fn mkdir(&mut self, p: &[u8]) -> Res {
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        match fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Err(Errno::EXIST) if replay && is_type(dir, name, FileType::Directory) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn create(&mut self, p: &[u8]) -> Res {
        if self.holds_new() {
            return self.create_held(self.index, p);
        }
        let replay = self.replaying();
        let keeps = self.holds_removed();
        let (dir, name) = self.parent(p)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let ino = match fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) if keeps => fs::fstat(&fd).map_err(Problem::os("fstat"))?.st_ino,
            Ok(_) => return Ok(()),
            // Replayed after a kill: made already. Its data records come after it, so it is
            // still empty; anything else at the name is not this record's doing.
            Err(Errno::EXIST) if replay => match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st)
                    if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                        && st.st_size == 0 =>
                {
                    st.st_ino
                }
                _ => return Err(Problem::os("")(Errno::EXIST)),
            },
            Err(e) => return Err(Problem::os("")(e)),
        };
        if let Some(s) = &mut self.session {
            // Its content has no origin bytes to keep (incremental receives).
            if s.undo {
                s.created.insert(ino);
            }
        }
        Ok(())
    }

    fn symlink(&mut self, p: &[u8], target: &[u8]) -> Res {
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        match fs::symlinkat(OsStr::from_bytes(target), dir, name) {
            Err(Errno::EXIST) if replay && is_type(dir, name, FileType::Symlink) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn mknod(&mut self, p: &[u8], node: NodeType, major: u32, minor: u32) -> Res {
        let (kind, dev) = match node {
            NodeType::Fifo => (FileType::Fifo, 0),
            NodeType::Socket => (FileType::Socket, 0),
            NodeType::CharDevice => (FileType::CharacterDevice, fs::makedev(major, minor)),
            NodeType::BlockDevice => (FileType::BlockDevice, fs::makedev(major, minor)),
        };
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        match fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), dev) {
            Err(Errno::EXIST) if replay && is_type(dir, name, kind) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn link(&mut self, p: &[u8], existing: &[u8]) -> Res {
        let (edir, ename) = path::split_last(existing);
        let efd = self.res.dir_owned(edir).map_err(resolve_problem)?;
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        // No AT_SYMLINK_FOLLOW: a symlink at `existing` gets a second name, it is not followed.
        match fs::linkat(&efd, OsStr::from_bytes(ename), dir, name, AtFlags::empty()) {
            Err(Errno::EXIST) if replay && same_object(&efd, ename, dir, name) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn unlink(&mut self, p: &[u8]) -> Res {
        if self.holds_removed() {
            return self.move_aside(p, false);
        }
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        match fs::unlinkat(dir, name, AtFlags::empty()) {
            Err(Errno::NOENT) if replay => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn rmdir(&mut self, p: &[u8]) -> Res {
        if self.holds_removed() {
            return self.move_aside(p, true);
        }
        let replay = self.replaying();
        let (dir, name) = self.parent(p)?;
        let r = match fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Err(Errno::NOENT) if replay => Ok(()),
            r => r.map_err(Problem::os("")),
        };
        self.res.invalidate_beneath(p);
        r
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Res {
        let (fdir, fname) = path::split_last(from);
        let ffd = self.res.dir_owned(fdir).map_err(resolve_problem)?;
        let fname = OsStr::from_bytes(fname);
        let replay = self.replaying();
        let (tdir, tname) = self.parent(to)?;
        let r = match fs::renameat_with(&ffd, fname, tdir, tname, RenameFlags::NOREPLACE) {
            // Replayed after a kill: the rename was done already.
            Err(Errno::NOENT)
                if replay && fs::statat(tdir, tname, AtFlags::SYMLINK_NOFOLLOW).is_ok() =>
            {
                Ok(())
            }
            // File systems without RENAME_NOREPLACE say EINVAL: check, then rename plainly.
            Err(Errno::INVAL) => match fs::statat(tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EXIST),
                Err(Errno::NOENT) => fs::renameat(&ffd, fname, tdir, tname),
                Err(e) => Err(e),
            },
            r => r,
        };
        self.res.invalidate_beneath(from);
        self.res.invalidate_beneath(to);
        r.map_err(Problem::os(""))
    }

    /// The open regular file at `p`, opened now unless the previous data record named it.
    pub(crate) fn data_file(&mut self, p: &[u8]) -> Result<&File, Problem> {
        if !matches!(&self.file, Some(f) if f.path == p) {
            let file = match self.ready.remove(p) {
                Some((f, _)) => f,
                None => match self.held_new_file(p)? {
                    Some(f) => f,
                    None => self.open_regular(p)?,
                },
            };
            self.file = Some(OpenFile { path: p.to_vec(), file });
        }
        match &self.file {
            Some(f) => Ok(&f.file),
            None => Err(Problem::Raced), // not reached: set just above
        }
    }

    pub(crate) fn open_regular(&mut self, p: &[u8]) -> Result<File, Problem> {
        self.open_regular_stat(p).map(|(f, _)| f)
    }

    /// [`Applier::open_regular`], with the file's status.
    pub(crate) fn open_regular_stat(&mut self, p: &[u8]) -> Result<(File, fs::Stat), Problem> {
        let (is_root, euid) = (self.is_root, self.euid);
        let (dir, name) = self.parent(p)?;
        let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(Problem::os(""))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(Problem::FinalSymlink("write")),
            other => return Err(Problem::NotRegular { found: type_name(other) }),
        }
        let flags =
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match fs::openat(dir, name, flags, Mode::empty()) {
            Err(Errno::ACCESS) if !is_root && st.st_uid == euid => {
                // Our own file without u+rw (say 0444 at the origin): lend u+rw for the open.
                let pfd = open_path(dir, name)?;
                let mode = st.st_mode & 0o7777;
                chmod_fd(&pfd, mode | 0o600)?;
                let r = fs::openat(dir, name, flags, Mode::empty());
                chmod_fd(&pfd, mode)?;
                r
            }
            r => r,
        }
        .map_err(Problem::os("open"))?;
        let now = fs::fstat(&fd).map_err(Problem::os("fstat"))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
            || FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
        {
            return Err(Problem::Raced);
        }
        Ok((File::from(fd), now))
    }

    fn write(&mut self, p: &[u8], offset: u64, data: &[u8]) -> Res {
        let f = self.data_file(p)?;
        f.write_all_at(data, offset).map_err(Problem::io("pwrite"))
    }

    fn hole(&mut self, p: &[u8], offset: u64, len: u64, warn: &mut dyn FnMut(&Warning)) -> Res {
        if len == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| Problem::Invalid(format!("range {offset}+{len} is past any file")))?;
        let index = self.index;
        let f = self.data_file(p)?;
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match fs::fallocate(f, flags, offset, len) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP) => {
                // Same content without the sparseness: zeros, within the size (KEEP_SIZE).
                let size = f.metadata().map_err(Problem::io("fstat"))?.len();
                let end = end.min(size);
                let zeros = vec![0u8; BUF_MAX.min(end.saturating_sub(offset)) as usize];
                let mut at = offset;
                while at < end {
                    let n = (end - at).min(BUF_MAX) as usize;
                    f.write_all_at(&zeros[..n], at).map_err(Problem::io("pwrite zeros"))?;
                    at += n as u64;
                }
                if !self.warned_holes {
                    self.warned_holes = true;
                    warn(&Warning::HolesAsZeros { index, path: p.to_vec() });
                }
                Ok(())
            }
            Err(e) => Err(Problem::os("fallocate")(e)),
        }
    }

    fn truncate(&mut self, p: &[u8], size: u64) -> Res {
        let f = self.data_file(p)?;
        f.set_len(size).map_err(Problem::io("ftruncate"))
    }

    /// Copies within the file as memmove does: when the ranges overlap with the destination
    /// later, it copies from the end, so every byte read is still an origin byte.
    fn copy_from_origin(&mut self, p: &[u8], src: u64, dst: u64, len: u64) -> Res {
        let too_far = || Problem::Invalid(format!("range of {len} bytes is past any file"));
        let src_end = src.checked_add(len).ok_or_else(too_far)?;
        dst.checked_add(len).ok_or_else(too_far)?;
        let origin = self.origin_copy(p)?;
        let f = self.data_file(p)?;
        // With the origin version kept aside (journaled incremental), read from it: a replay
        // after a kill reads origin bytes still, whatever the interrupted copy overwrote.
        let from = origin.as_ref().unwrap_or(f);
        let backwards = dst > src && dst - src < len && origin.is_none();
        let mut buf = vec![0u8; BUF_MAX.min(len) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BUF_MAX);
            let pos = if backwards { len - done - n } else { done };
            let chunk = &mut buf[..n as usize];
            if let Err(e) = from.read_exact_at(chunk, src + pos) {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    let size = from.metadata().map(|m| m.len()).unwrap_or(0);
                    return Err(Problem::OriginShort { size, wanted: src_end });
                }
                return Err(Problem::io("pread")(e));
            }
            f.write_all_at(chunk, dst + pos).map_err(Problem::io("pwrite"))?;
            done += n;
        }
        Ok(())
    }

    fn set_xattr(&mut self, p: &[u8], name: &[u8], value: &[u8]) -> Res {
        let name = OsStr::from_bytes(name);
        if path::is_root(p) {
            return fs::fsetxattr(self.res.root(), name, value, XattrFlags::empty())
                .map_err(Problem::os(""));
        }
        let is_root = self.is_root;
        let euid = self.euid;
        let (dir, base) = self.parent(p)?;
        let proc = proc_path(dir, base);
        let set = || fs::lsetxattr(&proc, name, value, XattrFlags::empty());
        lend_write(set, is_root, euid, dir, base)
    }

    fn remove_xattr(&mut self, p: &[u8], name: &[u8]) -> Res {
        let replay = self.replaying();
        let r = self.remove_xattr_inner(p, name);
        match r {
            Err(Problem::Os { source, .. })
                if replay && source.raw_os_error() == Some(Errno::NODATA.raw_os_error()) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    fn remove_xattr_inner(&mut self, p: &[u8], name: &[u8]) -> Res {
        let name = OsStr::from_bytes(name);
        if path::is_root(p) {
            return fs::fremovexattr(self.res.root(), name).map_err(Problem::os(""));
        }
        let is_root = self.is_root;
        let euid = self.euid;
        let (dir, base) = self.parent(p)?;
        let proc = proc_path(dir, base);
        lend_write(|| fs::lremovexattr(&proc, name), is_root, euid, dir, base)
    }

    fn chmod(&mut self, p: &[u8], mode: u32) -> Res {
        let mode = Mode::from_raw_mode(mode);
        if path::is_root(p) {
            return fs::fchmod(self.res.root(), mode).map_err(Problem::os(""));
        }
        let (dir, name) = self.parent(p)?;
        let fd = open_path(dir, name)?;
        let st = fs::fstat(&fd).map_err(Problem::os("fstat"))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(Problem::FinalSymlink("chmod"));
        }
        chmod_fd(&fd, mode.as_raw_mode())
    }

    fn chown(&mut self, p: &[u8], uid: u32, gid: u32, warn: &mut dyn FnMut(&Warning)) -> Res {
        let (is_root, euid, strict) = (self.is_root, self.euid, self.policy.strict_owner);
        let (owner, group) =
            (Some(fs::Uid::from_raw_unchecked(uid)), Some(fs::Gid::from_raw_unchecked(gid)));
        let (r, current) = if path::is_root(p) {
            let root = self.res.root();
            let current = if is_root { None } else { fs::fstat(root).ok() };
            let r = match current {
                Some(st) if (st.st_uid, st.st_gid) == (uid, gid) => Ok(()),
                _ => fs::fchown(root, owner, group),
            };
            (r, current)
        } else {
            let (dir, name) = self.parent(p)?;
            let current =
                if is_root { None } else { fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok() };
            let r = match current {
                Some(st) if (st.st_uid, st.st_gid) == (uid, gid) => Ok(()),
                _ => fs::chownat(dir, name, owner, group, AtFlags::SYMLINK_NOFOLLOW),
            };
            (r, current)
        };
        match r {
            Ok(()) => Ok(()),
            Err(e @ (Errno::PERM | Errno::INVAL)) if !is_root && current.is_some() => {
                if strict {
                    return Err(Problem::Ownership { uid, gid, source: e.into() });
                }
                if !self.warned_owner {
                    self.warned_owner = true;
                    let index = self.index;
                    warn(&Warning::Ownership { index, path: p.to_vec(), uid, gid, euid });
                }
                Ok(())
            }
            Err(e) => Err(Problem::os("")(e)),
        }
    }

    fn utimes(&mut self, p: &[u8], atime: (i64, u32), mtime: (i64, u32)) -> Res {
        let ts = |(sec, nsec): (i64, u32)| Timespec { tv_sec: sec, tv_nsec: nsec.into() };
        let times = Timestamps { last_access: ts(atime), last_modification: ts(mtime) };
        if path::is_root(p) {
            return fs::futimens(self.res.root(), &times).map_err(Problem::os(""));
        }
        let (dir, name) = self.parent(p)?;
        fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(Problem::os(""))
    }

    fn set_flags(&mut self, p: &[u8], flags: u32, warn: &mut dyn FnMut(&Warning)) -> Res {
        let wanted = flags & !FS_MANAGED_FLAGS;
        let fd = if path::is_root(p) {
            rustix::io::fcntl_dupfd_cloexec(self.res.root(), 0).map_err(Problem::os("dup"))?
        } else {
            let (dir, name) = self.parent(p)?;
            let pfd = open_path(dir, name)?;
            let st = fs::fstat(&pfd).map_err(Problem::os("fstat"))?;
            let common = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let how = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => common | OFlags::DIRECTORY,
                FileType::RegularFile => common | OFlags::NONBLOCK | OFlags::NOCTTY,
                // chattr cannot read or set flags on these either; nothing to carry.
                _ if wanted == 0 => return Ok(()),
                other => return Err(Problem::FlagsOnSpecial { flags, found: type_name(other) }),
            };
            let fd = fs::openat(dir, name, how, Mode::empty()).map_err(Problem::os("open"))?;
            let now = fs::fstat(&fd).map_err(Problem::os("fstat"))?;
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                return Err(Problem::Raced);
            }
            fd
        };
        let fd = fd.as_fd();
        let unsupported = |e: Errno| matches!(e, Errno::OPNOTSUPP | Errno::NOTTY | Errno::INVAL);
        let current = match fs::ioctl_getflags(fd) {
            Ok(f) => f.bits(),
            Err(e) if unsupported(e) && wanted == 0 => return Ok(()),
            Err(e) if unsupported(e) => {
                self.warn_flags(p, wanted, Some(e), warn);
                return Ok(());
            }
            Err(e) => return Err(Problem::os("FS_IOC_GETFLAGS")(e)),
        };
        let target = (current & FS_MANAGED_FLAGS) | wanted;
        if target == current {
            return Ok(());
        }
        let set = |bits: u32| fs::ioctl_setflags(fd, IFlags::from_bits_retain(bits));
        match set(target) {
            Ok(()) => {}
            Err(e) if unsupported(e) => {
                // Some flag is not held here: clear what must go, then add flags one by one,
                // so that every flag this file system holds is still set.
                let mut have = current & (FS_MANAGED_FLAGS | wanted);
                if have != current {
                    set(have).map_err(Problem::os("FS_IOC_SETFLAGS"))?;
                }
                let mut missing = 0;
                let to_add = wanted & !have;
                for bit in (0..32).map(|i| 1u32 << i).filter(|b| to_add & b != 0) {
                    match set(have | bit) {
                        Ok(()) => have |= bit,
                        Err(e) if unsupported(e) => missing |= bit,
                        Err(e) => return Err(Problem::os("FS_IOC_SETFLAGS")(e)),
                    }
                }
                self.warn_flags(p, missing, Some(e), warn);
            }
            Err(e) => return Err(Problem::os("FS_IOC_SETFLAGS")(e)),
        }
        // Some file systems accept a flag and drop it silently.
        if let Ok(after) = fs::ioctl_getflags(fd) {
            self.warn_flags(p, wanted & !after.bits(), None, warn);
        }
        Ok(())
    }

    fn warn_flags(
        &mut self,
        p: &[u8],
        bits: u32,
        e: Option<Errno>,
        warn: &mut dyn FnMut(&Warning),
    ) {
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| bits & b != 0) {
            if self.warned_flags & bit == 0 {
                self.warned_flags |= bit;
                let errno = e.map(|e| e.raw_os_error());
                warn(&Warning::Flag { index: self.index, path: p.to_vec(), flag: bit, errno });
            }
        }
    }
}

/// Runs `op`; when it is refused (EACCES) to a user who owns the object but may not write it
/// (a read-only file or directory at the origin, whose chmod came first), lends u+w for the
/// moment of the call. Root never needs it.
fn lend_write(
    op: impl Fn() -> Result<(), Errno>,
    is_root: bool,
    euid: u32,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Res {
    match op() {
        Err(Errno::ACCESS) if !is_root => {
            let fd = open_path(dir, name)?;
            let st = fs::fstat(&fd).map_err(Problem::os("fstat"))?;
            let t = FileType::from_raw_mode(st.st_mode);
            if st.st_uid != euid || t == FileType::Symlink {
                return Err(Problem::os("")(Errno::ACCESS));
            }
            let mode = st.st_mode & 0o7777;
            chmod_fd(&fd, mode | 0o200)?;
            let r = op();
            chmod_fd(&fd, mode)?;
            r.map_err(Problem::os(""))
        }
        r => r.map_err(Problem::os("")),
    }
}

pub(crate) fn resolve_problem(e: ResolveError) -> Problem {
    match e {
        ResolveError::Symlink { at } => Problem::ThroughSymlink { at },
        ResolveError::Escapes => Problem::Escapes,
        ResolveError::Os { at, errno } => Problem::Parent { at, source: errno.into() },
    }
}

/// Whether `name` in `dir` is an object of type `t` (not following it).
fn is_type(dir: BorrowedFd<'_>, name: &OsStr, t: FileType) -> bool {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == t)
}

/// Whether two names are one object.
fn same_object(d1: &OwnedFd, n1: &[u8], d2: BorrowedFd<'_>, n2: &OsStr) -> bool {
    let a = fs::statat(d1, OsStr::from_bytes(n1), AtFlags::SYMLINK_NOFOLLOW);
    let b = fs::statat(d2, n2, AtFlags::SYMLINK_NOFOLLOW);
    matches!((a, b), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// The object itself, not followed, as an fd that can only be used for metadata.
pub(crate) fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Problem> {
    fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(Problem::os(""))
}

/// chmod of the inode an `O_PATH` fd holds: `/proc/self/fd/N` resolves to that inode (the fd is
/// known not to be a symlink), which is how glibc implements `fchmodat(AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn chmod_fd(fd: &OwnedFd, mode: u32) -> Res {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    fs::chmodat(CWD, p.as_str(), Mode::from_raw_mode(mode), AtFlags::empty())
        .map_err(Problem::os("chmod"))
}

/// `/proc/self/fd/<dir>/<name>`: the name inside an open directory as a short path, for the
/// `l*xattr` calls, which have no `*at` form. The final name is not followed by `l*` calls.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> std::path::PathBuf {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    std::path::PathBuf::from(OsStr::from_bytes(&p))
}

pub(crate) fn type_name(t: FileType) -> &'static str {
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
