//! Applying records to DEST: one function per record kind (STREAM_FORMAT.md section 5). It knows
//! file systems and nothing of why a caller may want a record applied otherwise: that comes in
//! as a small policy, [`How`] (accept "already done", keep a removed object elsewhere, make a
//! new file elsewhere, read copies from an origin version kept elsewhere).
//!
//! Every function gets its parent directory from the resolver (`resolve.rs`: beneath DEST, no
//! symlink on the way) and acts on the final name with an `*at` call that does not follow it
//! (the calls shared with the rollback are in `ops.rs`):
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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use anysend_stream::{NodeType, Record};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as fs, AtFlags, FallocateFlags, FileType, IFlags, Mode, OFlags, RenameFlags, Timespec,
    Timestamps,
};
use rustix::io::Errno;

use crate::config::Policy;
use crate::error::{Problem, Warning};
use crate::fsutil;
use crate::ops::{self, ForFlags, Object};
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

/// Directories the resolver keeps open, and files opened ahead ([`Applier::keep_opened`]), at
/// most: each half of the fds this process may open beyond 512, at most 4096 (the records looked
/// at ahead at most). 256 each under the usual limit of 1024.
fn fds_kept() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let soft = soft.unwrap_or(u64::MAX);
    usize::try_from(soft.saturating_sub(512) / 2).unwrap_or(usize::MAX).min(4096)
}

/// How a record is applied. The default is a plain receive; a caller that must be able to
/// continue or undo the receive changes some of it for the record at hand.
#[derive(Default, Clone, Copy)]
pub struct How<'a> {
    /// The record may have been applied already (by a receive that was stopped): where it
    /// finds its own work done (a directory it makes exists, a name it removes is
    /// gone, a rename's source is gone and its target there), that is success.
    pub again: bool,
    /// Instead of destroying what `unlink` or `rmdir` removes, move it there.
    pub remove_into: Option<Place<'a>>,
    /// Make the new regular file of `create` there; it becomes the file that the record's data
    /// records write, until it is moved to its name.
    pub create_in: Option<Place<'a>>,
    /// What `copy_from_origin` reads from, instead of the file itself: its origin version, kept
    /// aside before the file changed.
    pub origin: Option<&'a File>,
}

/// A name in an open directory: a place for an object outside the tree the stream describes.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a OsStr,
}

/// What applying a record did, where a caller may need to know more than "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Applied,
    /// `create` made (or, applied again, found) the empty regular file with this inode number.
    Created(u64),
    /// `create` made the new file at [`How::create_in`].
    CreatedIn,
}

/// The file a run of data records writes to.
struct OpenFile {
    path: Vec<u8>,
    file: File,
}

/// Applies verified records to one DEST.
pub struct Applier {
    res: Resolver,
    policy: Policy,
    is_root: bool,
    euid: u32,
    file: Option<OpenFile>,
    /// Files opened ahead of their data records (`keep_opened`), by path, with
    /// their status then: each is taken by the first of those records applied. Paths name
    /// other files after a rename or removal, so these are dropped then (and at a flags change,
    /// which may forbid writing).
    opened: HashMap<Vec<u8>, (File, fs::Stat)>,
    /// How many `opened` may hold: a share of the fds this process may open.
    opened_max: usize,
    /// The record being applied, for warnings.
    index: u64,
    warned_owner: bool,
    warned_flags: u32,
    warned_holes: bool,
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
            opened: HashMap::new(),
            opened_max: kept,
            index: 0,
            warned_owner: false,
            warned_flags: 0,
            warned_holes: false,
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

    /// `validate::check` of record `index`. A caller that looks at records ahead of applying
    /// them checks each several times, so a contiguous range of indices found valid is
    /// remembered (an index always names the same record within a
    /// receive).
    pub fn check(&self, index: u64, rec: &Record) -> Res {
        let (start, end) = self.checked.get();
        if (start..end).contains(&index) {
            return Ok(());
        }
        validate::check(rec, &self.policy)?;
        self.checked.set(if index == end { (start, end + 1) } else { (index, index + 1) });
        Ok(())
    }

    /// Checks and applies record `index` (the index is only used in warnings).
    pub fn apply(
        &mut self,
        index: u64,
        rec: &Record,
        how: &How<'_>,
        warn: &mut dyn FnMut(&Warning),
    ) -> Result<Done, Problem> {
        self.check(index, rec)?;
        self.index = index;
        if !matches!((rec.data_path(), &self.file), (Some(p), Some(f)) if f.path == p) {
            self.file = None;
        }
        if !self.opened.is_empty() && (rec.moves_paths() || matches!(rec, Record::SetFlags { .. }))
        {
            self.opened.clear();
        }
        use Record::*;
        let again = how.again;
        match rec {
            Mkdir { path } => self.mkdir(path, again),
            Create { path } => return self.create(path, how),
            Symlink { path, target } => self.symlink(path, target, again),
            Mknod { path, node, major, minor } => self.mknod(path, *node, *major, *minor, again),
            Link { path, existing } => self.link(path, existing, again),
            Unlink { path } => self.remove(path, false, how),
            Rmdir { path } => self.remove(path, true, how),
            Rename { from, to } => self.rename(from, to, again),
            Write { path, offset, data } => self.write(path, *offset, data),
            Hole { path, offset, len } => self.hole(path, *offset, *len, warn),
            Truncate { path, size } => self.truncate(path, *size),
            CopyFromOrigin { path, src_offset, dst_offset, len } => {
                self.copy_from_origin(path, *src_offset, *dst_offset, *len, how.origin)
            }
            SetXattr { path, name, value } => self.set_xattr(path, name, value),
            RemoveXattr { path, name } => self.remove_xattr(path, name, again),
            Chmod { path, mode } => self.chmod(path, *mode),
            Chown { path, uid, gid } => self.chown(path, *uid, *gid, warn),
            Utimes { path, atime_sec, atime_nsec, mtime_sec, mtime_nsec } => {
                self.utimes(path, (*atime_sec, *atime_nsec), (*mtime_sec, *mtime_nsec))
            }
            SetFlags { path, flags } => self.set_flags(path, *flags, warn),
            // Changes nothing (the receive compares it with DEST before it applies anything).
            End { .. } | Expect { .. } => Ok(()),
        }
        .map(|()| Done::Applied)
    }

    /// Closes the open file and those opened ahead, if any (before syncing DEST, or before the
    /// file is moved).
    pub fn close_file(&mut self) {
        self.file = None;
        self.opened.clear();
    }

    // ---- DEST through the applier's resolver and files, for callers that look ahead ----

    /// The parent directory of a checked non-root path, and its final name.
    pub(crate) fn parent<'p>(
        &mut self,
        p: &'p [u8],
    ) -> Result<(BorrowedFd<'_>, &'p OsStr), Problem> {
        let (dir, name) = path::split_last(p);
        let fd = self.res.dir(dir).map_err(resolve_problem)?;
        Ok((fd, OsStr::from_bytes(name)))
    }

    /// The object at a checked path: DEST itself for the empty path.
    pub(crate) fn object<'a>(&'a mut self, p: &'a [u8]) -> Result<Object<'a>, Problem> {
        if path::is_root(p) {
            return Ok(Object::Open(self.res.root()));
        }
        let (dir, name) = self.parent(p)?;
        Ok(Object::At(dir, name))
    }

    /// The directory at `dir`, its inode number, and its status when it was looked at now.
    pub(crate) fn dir_ino(
        &mut self,
        dir: &[u8],
    ) -> Result<(BorrowedFd<'_>, u64, Option<fs::Stat>), Problem> {
        self.res.dir_ino(dir).map_err(resolve_problem)
    }

    /// Whether the directory at `dir` can be opened now.
    pub(crate) fn resolves(&mut self, dir: &[u8]) -> bool {
        self.res.dir(dir).is_ok()
    }

    /// The open regular file at `p`: the one data records wrote last if it is `p`'s, else one
    /// opened ahead, else opened now.
    pub(crate) fn data_file(&mut self, p: &[u8]) -> Result<&File, Problem> {
        if !matches!(&self.file, Some(f) if f.path == p) {
            let file = match self.opened.remove(p) {
                Some((f, _)) => f,
                None => self.open_regular(p)?.0,
            };
            self.file = Some(OpenFile { path: p.to_vec(), file });
        }
        match &self.file {
            Some(f) => Ok(&f.file),
            None => Err(Problem::Raced), // not reached: set just above
        }
    }

    /// Makes `file` the file that the data records of `p` write from now on (a new file made
    /// elsewhere, until it gets its name).
    pub(crate) fn hand_file(&mut self, p: &[u8], file: File) {
        self.file = Some(OpenFile { path: p.to_vec(), file });
    }

    /// The file at `p` opened ahead of its data records, if it was.
    pub(crate) fn opened_ahead(&mut self, p: &[u8]) -> Option<(File, fs::Stat)> {
        self.opened.remove(p)
    }

    /// Keeps `file`, opened ahead, for the data records of `p` (unless as many are kept as
    /// the fds allow: the records then open it again).
    pub(crate) fn keep_opened(&mut self, p: &[u8], file: File, st: fs::Stat) {
        if self.opened.len() < self.opened_max {
            self.opened.insert(p.to_vec(), (file, st));
        }
    }

    /// Forgets the files opened ahead.
    pub(crate) fn drop_opened(&mut self) {
        self.opened.clear();
    }

    /// The regular file at `p`, opened for writing as data records open it, with its status.
    pub(crate) fn open_regular(&mut self, p: &[u8]) -> Result<(File, fs::Stat), Problem> {
        let (is_root, euid) = (self.is_root, self.euid);
        let (dir, name) = self.parent(p)?;
        let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(Problem::os(""))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(Problem::FinalSymlink("write")),
            other => return Err(Problem::NotRegular { found: ops::type_name(other) }),
        }
        let flags =
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match fs::openat(dir, name, flags, Mode::empty()) {
            Err(Errno::ACCESS) if !is_root && st.st_uid == euid => {
                // Our own file without u+rw (say 0444 at the origin): lend u+rw for the open.
                let pfd = ops::open_path(dir, name).map_err(Problem::os(""))?;
                let mode = st.st_mode & 0o7777;
                ops::chmod_fd(&pfd, mode | 0o600).map_err(Problem::os("chmod"))?;
                let r = fs::openat(dir, name, flags, Mode::empty());
                ops::chmod_fd(&pfd, mode).map_err(Problem::os("chmod"))?;
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

    // ---- one function per record kind ----

    fn mkdir(&mut self, p: &[u8], again: bool) -> Res {
        let (dir, name) = self.parent(p)?;
        match fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Err(Errno::EXIST) if again && ops::is_type(dir, name, FileType::Directory) => Ok(()),
            Ok(()) => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(fd) = fs::openat(dir, name, flags, Mode::empty()) {
                    clear_inherited_flags(&fd);
                }
                Ok(())
            }
            Err(e) => Err(Problem::os("")(e)),
        }
    }

    fn create(&mut self, p: &[u8], how: &How<'_>) -> Result<Done, Problem> {
        if let Some(place) = how.create_in {
            return self.create_in(p, place, how.again);
        }
        let (dir, name) = self.parent(p)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => {
                clear_inherited_flags(&fd);
                Ok(Done::Created(fs::fstat(&fd).map_err(Problem::os("fstat"))?.st_ino))
            }
            // Made already (applied again): a regular file at the name is this record's (the
            // resume starts at a checkpoint before the run that made it, and a run names each
            // path once), perhaps with some of its data: emptied, its data records follow.
            // Anything else at the name is not this record's doing.
            Err(Errno::EXIST) if how.again => {
                match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                        let flags = OFlags::WRONLY
                            | OFlags::TRUNC
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::CLOEXEC;
                        let fd =
                            fs::openat(dir, name, flags, Mode::empty()).map_err(Problem::os(""))?;
                        Ok(Done::Created(fs::fstat(&fd).map_err(Problem::os("fstat"))?.st_ino))
                    }
                    _ => Err(Problem::os("")(Errno::EXIST)),
                }
            }
            Err(e) => Err(Problem::os("")(e)),
        }
    }

    /// `create` of a file made at `place` (it gets its name later). The name must be free now,
    /// as a plain create would find it; applied again, a regular file at the name is this
    /// record's, moved there before the receive stopped: its data records, which follow, write
    /// it again.
    fn create_in(&mut self, p: &[u8], place: Place<'_>, again: bool) -> Result<Done, Problem> {
        {
            let (dir, name) = self.parent(p)?;
            match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(st) if again && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                    return Ok(Done::Applied);
                }
                Ok(_) => return Err(Problem::os("")(Errno::EXIST)),
                Err(e) => return Err(Problem::os("")(e)),
            }
        }
        // A file already at `place` is this record's own, left by a stopped receive: made again.
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = fs::openat(place.dir, place.name, flags, Mode::from_raw_mode(0o600))
            .map_err(Problem::os(""))?;
        clear_inherited_flags(&fd);
        self.hand_file(p, File::from(fd));
        Ok(Done::CreatedIn)
    }

    fn symlink(&mut self, p: &[u8], target: &[u8], again: bool) -> Res {
        let (dir, name) = self.parent(p)?;
        match fs::symlinkat(OsStr::from_bytes(target), dir, name) {
            Err(Errno::EXIST) if again && ops::is_type(dir, name, FileType::Symlink) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn mknod(&mut self, p: &[u8], node: NodeType, major: u32, minor: u32, again: bool) -> Res {
        let (kind, dev) = match node {
            NodeType::Fifo => (FileType::Fifo, 0),
            NodeType::Socket => (FileType::Socket, 0),
            NodeType::CharDevice => (FileType::CharacterDevice, fs::makedev(major, minor)),
            NodeType::BlockDevice => (FileType::BlockDevice, fs::makedev(major, minor)),
        };
        let (dir, name) = self.parent(p)?;
        match fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), dev) {
            Err(Errno::EXIST) if again && ops::is_type(dir, name, kind) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    fn link(&mut self, p: &[u8], existing: &[u8], again: bool) -> Res {
        let (edir, ename) = path::split_last(existing);
        let ename = OsStr::from_bytes(ename);
        let efd = self.res.dir_owned(edir).map_err(resolve_problem)?;
        let (dir, name) = self.parent(p)?;
        // No AT_SYMLINK_FOLLOW: a symlink at `existing` gets a second name, it is not followed.
        match fs::linkat(&efd, ename, dir, name, AtFlags::empty()) {
            Err(Errno::EXIST) if again && ops::same_object(efd.as_fd(), ename, dir, name) => Ok(()),
            r => r.map_err(Problem::os("")),
        }
    }

    /// `unlink` (`directory` false) or `rmdir`: the name goes, or with `how.remove_into` the
    /// object moves there.
    fn remove(&mut self, p: &[u8], directory: bool, how: &How<'_>) -> Res {
        let r = match how.remove_into {
            Some(place) => self.move_aside(p, directory, place, how.again),
            None => {
                let (dir, name) = self.parent(p)?;
                match ops::remove(dir, name, directory) {
                    Err(Errno::NOENT) if how.again => Ok(()),
                    r => r.map_err(Problem::os("")),
                }
            }
        };
        if directory {
            self.res.invalidate_beneath(p);
        }
        r
    }

    /// A removal whose object is kept at `place` instead: the same checks as `unlink` or
    /// `rmdir` (a type that matches, an empty directory), then a rename.
    fn move_aside(&mut self, p: &[u8], directory: bool, place: Place<'_>, again: bool) -> Res {
        let (dir, name) = self.parent(p)?;
        let st = match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT)
                if again
                    && fs::statat(place.dir, place.name, AtFlags::SYMLINK_NOFOLLOW).is_ok() =>
            {
                return Ok(());
            }
            r => r.map_err(Problem::os(""))?,
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        match (directory, is_dir) {
            (false, true) => return Err(Problem::os("")(Errno::ISDIR)),
            (true, false) => return Err(Problem::os("")(Errno::NOTDIR)),
            (true, true) if !fsutil::dir_is_empty(dir, name).map_err(Problem::os("listing"))? => {
                return Err(Problem::os("")(Errno::NOTEMPTY))
            }
            _ => {}
        }
        // As an unlink would free them: kept only for an abort, its pages need not stay.
        fsutil::drop_cache_of_removed(dir, name, &st);
        fs::renameat_with(dir, name, place.dir, place.name, RenameFlags::empty())
            .map_err(Problem::os("moving it aside"))
    }

    fn rename(&mut self, from: &[u8], to: &[u8], again: bool) -> Res {
        let (fdir, fname) = path::split_last(from);
        let ffd = self.res.dir_owned(fdir).map_err(resolve_problem)?;
        let fname = OsStr::from_bytes(fname);
        let (tdir, tname) = self.parent(to)?;
        let r = match ops::rename_noreplace(ffd.as_fd(), fname, tdir, tname) {
            // Applied again: the rename was done already.
            Err(Errno::NOENT)
                if again && fs::statat(tdir, tname, AtFlags::SYMLINK_NOFOLLOW).is_ok() =>
            {
                Ok(())
            }
            r => r,
        };
        self.res.invalidate_beneath(from);
        self.res.invalidate_beneath(to);
        r.map_err(Problem::os(""))
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
        // A hole that reaches the end of the file covers the rest of its last block: the file
        // system frees only whole blocks, so the punch goes to the block's end (past the size,
        // which KEEP_SIZE keeps), or that block stays allocated where the target has a hole.
        let st = fs::fstat(f).map_err(Problem::os("fstat"))?;
        let (size, block) = (st.st_size as u64, (st.st_blksize as u64).max(1));
        let len = match end >= size {
            true => end.max(size).div_ceil(block) * block - offset,
            false => len,
        };
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
        let st = fs::fstat(f).map_err(Problem::os("fstat"))?;
        let (old, block) = (st.st_size as u64, (st.st_blksize as u64).max(1));
        f.set_len(size).map_err(Problem::io("ftruncate"))?;
        if size > old {
            // What a file grows by is a hole. XFS may have allocated blocks past the old end
            // (speculative preallocation after a write there) and turns them into written
            // zeros when the size grows over them: they are given back, to the end of the last
            // block as for a hole punched to the end (`punch`).
            let end = size.div_ceil(block) * block;
            fsutil::punch(f, old, end - old).map_err(Problem::io("fallocate"))?;
        }
        Ok(())
    }

    /// Copies within the file as memmove does: when the ranges overlap with the destination
    /// later, it copies from the end, so every byte read is still an origin byte. With the
    /// origin version kept aside (`origin`), it reads from that instead: applied again after
    /// the receive stopped, it still reads origin bytes, whatever the interrupted copy
    /// overwrote.
    fn copy_from_origin(
        &mut self,
        p: &[u8],
        src: u64,
        dst: u64,
        len: u64,
        origin: Option<&File>,
    ) -> Res {
        let too_far = || Problem::Invalid(format!("range of {len} bytes is past any file"));
        let src_end = src.checked_add(len).ok_or_else(too_far)?;
        dst.checked_add(len).ok_or_else(too_far)?;
        let f = self.data_file(p)?;
        let from = origin.unwrap_or(f);
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
        let (is_root, euid) = (self.is_root, self.euid);
        let obj = self.object(p)?;
        lend_write(|| obj.set_xattr(name, value), is_root, euid, obj)
    }

    fn remove_xattr(&mut self, p: &[u8], name: &[u8], again: bool) -> Res {
        let name = OsStr::from_bytes(name);
        let (is_root, euid) = (self.is_root, self.euid);
        let obj = self.object(p)?;
        // The kernel drops a file's capabilities by itself when its owner or its data changes
        // (as it drops setuid): the stream's removal may find it gone already.
        let dropped_by_kernel = name.as_bytes() == b"security.capability";
        match lend_write(|| obj.remove_xattr(name), is_root, euid, obj) {
            Err(Problem::Os { source, .. })
                if (again || dropped_by_kernel)
                    && source.raw_os_error() == Some(Errno::NODATA.raw_os_error()) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    fn chmod(&mut self, p: &[u8], mode: u32) -> Res {
        match self.object(p)?.chmod(mode) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Problem::FinalSymlink("chmod")),
            Err(e) => Err(Problem::os("")(e)),
        }
    }

    fn chown(&mut self, p: &[u8], uid: u32, gid: u32, warn: &mut dyn FnMut(&Warning)) -> Res {
        let (is_root, euid, strict) = (self.is_root, self.euid, self.policy.strict_owner);
        let obj = self.object(p)?;
        // Not root, a chown to what the object has already is no change, so not refused.
        let current = if is_root { None } else { obj.stat().ok() };
        let r = match current {
            Some(st) if (st.st_uid, st.st_gid) == (uid, gid) => Ok(()),
            _ => obj.chown(uid, gid),
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
        self.object(p)?.set_times(&times).map_err(Problem::os(""))
    }

    fn set_flags(&mut self, p: &[u8], flags: u32, warn: &mut dyn FnMut(&Warning)) -> Res {
        let wanted = flags & !FS_MANAGED_FLAGS;
        let fd = match self.object(p)?.for_flags().map_err(Problem::os(""))? {
            ForFlags::Fd(fd) => fd,
            // chattr cannot read or set flags on these either; nothing to carry.
            ForFlags::Holds(_) if wanted == 0 => return Ok(()),
            ForFlags::Holds(other) => {
                return Err(Problem::FlagsOnSpecial { flags, found: ops::type_name(other) })
            }
            ForFlags::Raced => return Err(Problem::Raced),
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

/// Runs `op` on `obj`; when it is refused (EACCES) to a user who owns the object but may not
/// write it (a read-only file or directory at the origin, whose chmod came first), lends u+w
/// for the moment of the call. Root never needs it, nor DEST itself (the receiving user's).
fn lend_write(
    op: impl Fn() -> Result<(), Errno>,
    is_root: bool,
    euid: u32,
    obj: Object<'_>,
) -> Res {
    match (op(), obj) {
        (Err(Errno::ACCESS), Object::At(dir, name)) if !is_root => {
            let fd = ops::open_path(dir, name).map_err(Problem::os(""))?;
            let st = fs::fstat(&fd).map_err(Problem::os("fstat"))?;
            let t = FileType::from_raw_mode(st.st_mode);
            if st.st_uid != euid || t == FileType::Symlink {
                return Err(Problem::os("")(Errno::ACCESS));
            }
            let mode = st.st_mode & 0o7777;
            ops::chmod_fd(&fd, mode | 0o200).map_err(Problem::os("chmod"))?;
            let r = op();
            ops::chmod_fd(&fd, mode).map_err(Problem::os("chmod"))?;
            r.map_err(Problem::os(""))
        }
        (r, _) => r.map_err(Problem::os("")),
    }
}

fn resolve_problem(e: ResolveError) -> Problem {
    match e {
        ResolveError::Symlink { at } => Problem::ThroughSymlink { at },
        ResolveError::Escapes => Problem::Escapes,
        ResolveError::Os { at, errno } => Problem::Parent { at, source: errno.into() },
    }
}

/// Flags that ext4 and XFS (btrfs: nocow, compression) give a new file or directory from the
/// directory it is made in. The stream sets every flag the target's object has after making it,
/// so a new object starts with none of these: otherwise it would keep them where the target's
/// object has none (its directory got them later, or its file system does not pass them on).
const INHERITED_FLAGS: IFlags = IFlags::NODUMP
    .union(IFlags::NOATIME)
    .union(IFlags::SYNC)
    .union(IFlags::DIRSYNC)
    .union(IFlags::COMPRESSED)
    .union(IFlags::from_bits_retain(0x400)) // FS_NOCOMP_FL, which rustix does not name
    .union(IFlags::NOCOW)
    .union(IFlags::JOURNALING)
    .union(IFlags::NOTAIL)
    .union(IFlags::SECURE_REMOVAL)
    .union(IFlags::UNRM)
    .union(IFlags::PROJECT_INHERIT);

/// Clears the [`INHERITED_FLAGS`] of the object just made, open at `fd` (best effort: most
/// directories pass nothing on, and a file system without flags answers ENOTTY).
fn clear_inherited_flags(fd: &OwnedFd) {
    if let Ok(f) = fs::ioctl_getflags(fd) {
        if f.intersects(INHERITED_FLAGS) {
            let _ = fs::ioctl_setflags(fd, f - INHERITED_FLAGS);
        }
    }
}
