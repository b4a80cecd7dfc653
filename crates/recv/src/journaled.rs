//! The journaled receive: what the applier does differently when a journal is kept, so that a
//! kill at any byte can be resumed or rolled back.
//!
//! For each record, in this order: (1) `prepare` gathers what is needed to undo it (old values,
//! the name an object will be kept under) and makes the copies that must exist before the
//! record changes anything (the origin content of a file about to be changed in place); (2) one
//! journal entry naming the record and its undo steps is written; (3) the record is applied.
//!
//! Changes from a plain receive:
//! - **New files** are created in the holding directory (`.anyrecv-<stream id prefix>` at the top
//!   of DEST), written there, and renamed to their name (RENAME_NOREPLACE) when their run of
//!   data records ends, so a new file never shows half-written under its name.
//! - **unlink/rmdir** of an incremental move the object into the holding directory instead of
//!   destroying it; an abort moves it back. The holding directory is removed after the end record.
//! - **Changed files** are written in place (hard links must keep pointing at the same inode),
//!   after their origin content was kept aside in the holding directory (FICLONE where the file
//!   system shares extents, else a copy of the data extents); an abort copies it back, a resume
//!   replays the in-place writes, which are idempotent.
//! - **Replay**: the record in flight when a receive stopped may or may not have been applied; it
//!   is applied again with "already done" accepted (mkdir of an existing directory, a rename whose
//!   `from` is gone and `to` exists, a link that exists, an unlink of a missing name, a removal
//!   already moved aside, a remove_xattr of a missing name). Every other record is idempotent.
//! - The holding directory is made and removed with DEST's times kept, so DEST's own mtime is what
//!   the stream set.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use anysend_stream::Record;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::apply::{proc_path, resolve_problem, Applier, OpenFile};
use crate::error::{Problem, Warning};
use crate::fsutil;
use crate::journal::{Entry, Journal, Undo};
use crate::path;

/// A new file being written in the holding directory.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: Vec<u8>,
    pub hold: Vec<u8>,
}

/// The journaling state of one receive.
pub struct Session {
    pub journal: Journal,
    /// The holding directory, open.
    pub hold_fd: OwnedFd,
    /// Keep undo information (incremental receives).
    pub undo: bool,
    /// Inodes whose origin content is kept aside already, and the copy's name.
    pub preserved: HashMap<u64, Vec<u8>>,
    /// Inodes this receive created (their content needs no keeping).
    pub created: HashSet<u64>,
    /// Directories whose times were recorded.
    pub timed: HashSet<u64>,
    pub pending: Option<Pending>,
    /// The next record applied may have been applied already (the record in flight at a kill).
    pub replay: bool,
    /// The journal already holds the entry of this record (the record in flight at a kill).
    pub logged: Option<u64>,
    /// Checkpoints made (syncfs of DEST, then a sync of the journal).
    pub checkpoints: u64,
    /// The journal's last entry is the materialize entry of the record in flight.
    pub materialize_logged: bool,
    /// FICLONE keeps the origin copies (btrfs; elsewhere a copy of the data extents).
    pub reflink: bool,
    /// Pre-existing files whose origin ranges are being kept, by inode.
    pub kept: HashMap<u64, Kept>,
}

/// The origin ranges of one pre-existing file kept so far.
#[derive(Debug, Default, Clone)]
pub struct Kept {
    /// The file's size before the receive changed it.
    pub size: u64,
    /// Kept intervals [start, end), sorted and disjoint.
    pub covered: Vec<(u64, u64)>,
    /// Where each kept piece is: offset, length, and (keep log, offset in it), None for a hole.
    pub pieces: Vec<Piece>,
}

/// A kept piece: offset, length, and (keep log, offset in it), or None for a hole.
pub type Piece = (u64, u64, Option<(Vec<u8>, u64)>);

impl Kept {
    /// The parts of [a, b) not kept yet.
    fn gaps(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = a;
        for &(s, e) in &self.covered {
            if e <= pos {
                continue;
            }
            if s >= b {
                break;
            }
            if s > pos {
                out.push((pos, s.min(b)));
            }
            pos = pos.max(e);
            if pos >= b {
                break;
            }
        }
        if pos < b {
            out.push((pos, b));
        }
        out
    }

    /// Records the piece [off, off+len) as kept.
    pub fn add(&mut self, off: u64, len: u64, src: Option<(Vec<u8>, u64)>) {
        self.pieces.push((off, len, src));
        let (mut a, mut b) = (off, off + len);
        let mut merged = Vec::with_capacity(self.covered.len() + 1);
        for &(s, e) in &self.covered {
            if e < a || s > b {
                merged.push((s, e));
            } else {
                a = a.min(s);
                b = b.max(e);
            }
        }
        merged.push((a, b));
        merged.sort_unstable();
        self.covered = merged;
    }
}

/// The byte range of a pre-existing file a data record is about to change.
fn changed_range(rec: &Record) -> Option<(&[u8], u64, u64)> {
    match rec {
        Record::Write { path, offset, data } => {
            Some((path, *offset, offset.saturating_add(data.len() as u64)))
        }
        Record::Hole { path, offset, len } => Some((path, *offset, offset.saturating_add(*len))),
        Record::Truncate { path, size } => Some((path, *size, u64::MAX)),
        Record::CopyFromOrigin { path, dst_offset, len, .. } => {
            Some((path, *dst_offset, dst_offset.saturating_add(*len)))
        }
        _ => None,
    }
}

/// Records after which the paths of existing objects differ (ranges kept ahead stop there).
pub(crate) fn moves_paths(rec: &Record) -> bool {
    matches!(rec, Record::Rename { .. } | Record::Unlink { .. } | Record::Rmdir { .. })
}

/// An open keep log: the origin bytes of changed ranges, appended.
struct KeepLog {
    name: Vec<u8>,
    file: Option<File>,
    end: u64,
}

fn is_data(rec: &Record) -> Option<&[u8]> {
    match rec {
        Record::Write { path, .. }
        | Record::Hole { path, .. }
        | Record::Truncate { path, .. }
        | Record::CopyFromOrigin { path, .. } => Some(path),
        _ => None,
    }
}

fn hold_name(kind: char, index: u64) -> Vec<u8> {
    format!("{kind}{index}").into_bytes()
}

fn os(step: &'static str) -> impl FnOnce(std::io::Error) -> Problem {
    Problem::io(step)
}

impl Applier {
    pub(crate) fn replaying(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.replay)
    }

    /// unlink/rmdir keep the object in the holding directory (incremental receives).
    pub(crate) fn holds_removed(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.undo)
    }

    fn sess(&mut self) -> &mut Session {
        self.session.as_mut().expect("journaled receive")
    }

    pub(crate) fn apply_journaled(
        &mut self,
        index: u64,
        rec: &Record,
        warn: &mut dyn FnMut(&Warning),
    ) -> Result<(), Problem> {
        // A new file whose data run ends here goes to its name first, with an entry of its own
        // (the record's own undo needs the file at its name, e.g. the old owner for a chown).
        self.materialize_logged(index, is_data(rec))?;
        let undo = self.prepare(index, rec)?;
        // Before moving an existing object or overwriting a file's origin content, its undo
        // (and the kept copy, synced when it was made) must survive a power loss.
        let sync_first =
            matches!(rec, Record::Rename { .. } | Record::Unlink { .. } | Record::Rmdir { .. })
                || undo.iter().any(|u| {
                    matches!(u, Undo::Content { .. } | Undo::KeepMeta { .. } | Undo::Range { .. })
                });
        let s = self.sess();
        if s.logged != Some(index) {
            s.journal.append(&Entry::new(index, undo)).map_err(os("writing the journal"))?;
        }
        s.logged = None;
        if s.undo && sync_first {
            s.journal.sync().map_err(os("syncing the journal"))?;
        }
        let r = self.perform(rec, warn);
        let s = self.sess();
        s.replay = false;
        r?;
        let bytes = match rec {
            Record::Write { data, .. } => data.len() as u64,
            _ => 0,
        };
        if s.journal.note_data(bytes) {
            s.checkpoints += 1;
            rustix::fs::syncfs(self.res.root()).map_err(Problem::os("syncfs"))?;
            self.sess().journal.sync().map_err(os("syncing the journal"))?;
        }
        Ok(())
    }

    /// Moves the pending new file to its name (unless `data_path` continues its data), after a
    /// journal entry that says so.
    fn materialize_logged(&mut self, index: u64, data_path: Option<&[u8]>) -> Result<(), Problem> {
        let logged = std::mem::take(&mut self.sess().materialize_logged);
        let Some(p) = self.session.as_ref().and_then(|s| s.pending.clone()) else {
            return Ok(());
        };
        if data_path == Some(p.path.as_slice()) {
            return Ok(());
        }
        let mut u = Vec::new();
        if self.sess().undo {
            self.dir_times(&p.path, &mut u)?;
            u.push(Undo::Remove { path: p.path.clone() });
        }
        u.push(Undo::Materialize { hold: p.hold, path: p.path });
        // On a resume the materialize entry may be the last one written: then it is not
        // written twice, and the record's own entry still is.
        if !logged {
            let s = self.sess();
            s.journal.append(&Entry::new(index, u)).map_err(os("writing the journal"))?;
        }
        self.materialize_unless(data_path)
    }

    /// The end record: the last new file goes to its name. (Logged like any record.)
    pub fn finish_journaled(&mut self, index: u64) -> Result<(), Problem> {
        if self.session.is_none() {
            return Ok(());
        }
        self.materialize_logged(index, None)?;
        let undo = self.prepare(index, &Record::End { records: 0, bytes: 0, chain: 0 })?;
        let s = self.sess();
        if s.logged != Some(index) {
            s.journal.append(&Entry::new(index, undo)).map_err(os("writing the journal"))?;
        }
        s.logged = None;
        s.replay = false;
        Ok(())
    }

    /// Undo steps of `rec`, and the copies that must exist before it is applied.
    fn prepare(&mut self, index: u64, rec: &Record) -> Result<Vec<Undo>, Problem> {
        let mut u = Vec::new();
        let keep = self.sess().undo;
        use Record::*;
        match rec {
            Create { path } => {
                u.push(Undo::Created { path: path.clone(), hold: hold_name('n', index), ino: 0 })
            }
            _ if !keep => {}
            Mkdir { path } | Symlink { path, .. } | Mknod { path, .. } | Link { path, .. } => {
                self.dir_times(path, &mut u)?;
                u.push(Undo::Remove { path: path.clone() });
            }
            Unlink { path } | Rmdir { path } => {
                self.dir_times(path, &mut u)?;
                u.push(Undo::Restore { hold: hold_name('u', index), path: path.clone() });
            }
            Rename { from, to } => {
                self.dir_times(from, &mut u)?;
                self.dir_times(to, &mut u)?;
                u.push(Undo::Rename { from: from.clone(), to: to.clone() });
            }
            Write { path, .. }
            | Hole { path, .. }
            | Truncate { path, .. }
            | CopyFromOrigin { path, .. } => {
                let pending = self.sess().pending.as_ref().is_some_and(|p| &p.path == path);
                if let (false, Some((_, a, b))) = (pending, changed_range(rec)) {
                    let mut log = KeepLog { name: hold_name('r', index), file: None, end: 0 };
                    let file = self.data_file(path)?.try_clone().map_err(os("dup"))?;
                    self.keep_ranges(path, &file, a, b, &mut log, &mut u)?;
                    if let Some(f) = &log.file {
                        fs::fdatasync(f).map_err(Problem::os("syncing the kept ranges"))?;
                    }
                }
            }
            SetXattr { path, name, .. } | RemoveXattr { path, name } => {
                let value = self.xattr_of(path, name)?;
                u.push(Undo::Xattr { path: path.clone(), name: name.clone(), value });
            }
            Chmod { path, .. } => {
                let st = self.stat_of(path)?;
                u.push(Undo::Mode { path: path.clone(), mode: st.st_mode & 0o7777 });
            }
            Chown { path, .. } => {
                let st = self.stat_of(path)?;
                u.push(Undo::Owner { path: path.clone(), uid: st.st_uid, gid: st.st_gid });
            }
            Utimes { path, .. } => {
                let st = self.stat_of(path)?;
                let (atime, mtime) = fsutil::times(&st);
                u.push(Undo::Times { path: path.clone(), atime, mtime });
            }
            SetFlags { path, .. } => {
                if let Some(flags) = self.flags_of(path)? {
                    u.push(Undo::Flags { path: path.clone(), flags });
                }
            }
            End { .. } => {}
        }
        Ok(u)
    }

    /// Records the times of the directory holding `p`, the first time it changes.
    fn dir_times(&mut self, p: &[u8], u: &mut Vec<Undo>) -> Result<(), Problem> {
        let (dir, _) = path::split_last(p);
        let fd = self.res.dir(dir).map_err(resolve_problem)?;
        let st = fs::fstat(fd).map_err(Problem::os("fstat"))?;
        let s = self.sess();
        if s.timed.insert(st.st_ino) {
            let (atime, mtime) = fsutil::times(&st);
            u.push(Undo::Times { path: dir.to_vec(), atime, mtime });
        }
        Ok(())
    }

    fn stat_of(&mut self, p: &[u8]) -> Result<fs::Stat, Problem> {
        if path::is_root(p) {
            return fs::fstat(self.res.root()).map_err(Problem::os("fstat"));
        }
        let (dir, name) = self.parent(p)?;
        fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(Problem::os("stat"))
    }

    fn xattr_of(&mut self, p: &[u8], name: &[u8]) -> Result<Option<Vec<u8>>, Problem> {
        let mut buf = vec![0u8; 65536];
        let name = OsStr::from_bytes(name);
        let r = if path::is_root(p) {
            fs::fgetxattr(self.res.root(), name, &mut buf[..])
        } else {
            let (dir, base) = self.parent(p)?;
            fs::lgetxattr(proc_path(dir, base), name, &mut buf[..])
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(Errno::NODATA) => Ok(None),
            Err(e) => Err(Problem::os("getxattr")(e)),
        }
    }

    fn flags_of(&mut self, p: &[u8]) -> Result<Option<u32>, Problem> {
        let fd = if path::is_root(p) {
            rustix::io::fcntl_dupfd_cloexec(self.res.root(), 0).map_err(Problem::os("dup"))?
        } else {
            let (dir, name) = self.parent(p)?;
            match fsutil::open_for_flags(dir, name) {
                Ok(Some(fd)) => fd,
                Ok(None) => return Ok(None),
                Err(e) => return Err(Problem::io("open")(e)),
            }
        };
        Ok(fs::ioctl_getflags(&fd).ok().map(|f| f.bits()))
    }

    /// Keeps aside the origin bytes of [a, b) of the pre-existing file `p` (open as `file`) that
    /// are not kept yet, appending data to `log`; the undo steps go to `u`. Files this receive
    /// created need nothing.
    fn keep_ranges(
        &mut self,
        p: &[u8],
        file: &File,
        a: u64,
        b: u64,
        log: &mut KeepLog,
        u: &mut Vec<Undo>,
    ) -> Result<(), Problem> {
        let st = fs::fstat(file).map_err(Problem::os("fstat"))?;
        let ino = st.st_ino;
        let s = self.sess();
        if s.created.contains(&ino) {
            return Ok(());
        }
        if let std::collections::hash_map::Entry::Vacant(v) = s.kept.entry(ino) {
            let (atime, mtime) = fsutil::times(&st);
            u.push(Undo::KeepMeta {
                path: p.to_vec(),
                ino,
                size: st.st_size as u64,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
                atime,
                mtime,
                cap: fsutil::fget_cap(file),
            });
            v.insert(Kept { size: st.st_size as u64, ..Kept::default() });
        }
        let k = &s.kept[&ino];
        let b = b.min(k.size);
        if a >= b {
            return Ok(());
        }
        let gaps = k.gaps(a, b);
        let mut pieces = Vec::new();
        for (x, y) in gaps {
            for (off, end, data) in fsutil::segments(file, x, y).map_err(os("SEEK_DATA"))? {
                let len = end - off;
                if !data {
                    pieces.push((off, len, None));
                    continue;
                }
                let lf = match &mut log.file {
                    Some(f) => &*f,
                    None => {
                        let flags =
                            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        let fd = fs::openat(
                            &s.hold_fd,
                            OsStr::from_bytes(&log.name),
                            flags,
                            Mode::from_raw_mode(0o600),
                        )
                        .map_err(Problem::os("making the keep log"))?;
                        let f = File::from(fd);
                        // A log of the same name left by a kill is appended to, never cut: the
                        // journal may point into it.
                        log.end = f.metadata().map_err(os("fstat"))?.len();
                        &*log.file.insert(f)
                    }
                };
                fsutil::copy_range(file, off, lf, log.end, len)
                    .map_err(os("keeping the origin bytes"))?;
                pieces.push((off, len, Some((log.name.clone(), log.end))));
                log.end += len;
            }
        }
        let Some(k) = s.kept.get_mut(&ino) else {
            return Err(Problem::os("keeping the origin bytes")(Errno::NOENT));
        };
        for (off, len, src) in pieces {
            let (hold, at) = src.clone().unwrap_or_default();
            u.push(Undo::Range { path: p.to_vec(), ino, off, len, hold, at });
            k.add(off, len, src);
        }
        Ok(())
    }

    /// Keeps aside, in one keep log and one journal entry made durable together, the origin
    /// ranges that the records ahead (`ahead`, in stream order, none applied yet) will change,
    /// up to the first record that moves a path. Records it cannot look at now (a file made by
    /// a record before it, say) are kept when they are applied. Returns the last index looked at.
    pub fn keep_ahead(&mut self, ahead: &[(u64, &Record)]) -> Result<Option<u64>, Problem> {
        let Some(s) = &self.session else { return Ok(None) };
        if !s.undo || ahead.is_empty() {
            return Ok(None);
        }
        let first = ahead[0].0;
        let mut log = KeepLog { name: hold_name('k', first), file: None, end: 0 };
        let mut u = Vec::new();
        let mut last = None;
        let mut made: HashSet<&[u8]> = HashSet::new();
        for &(index, rec) in ahead {
            if moves_paths(rec) {
                break;
            }
            last = Some(index);
            match rec {
                Record::Create { path } | Record::Link { path, .. } => {
                    made.insert(path);
                    continue;
                }
                _ => {}
            }
            let Some((path, a, b)) = changed_range(rec) else { continue };
            let pending = self.sess().pending.as_ref().is_some_and(|p| p.path == path);
            if pending || made.contains(path) {
                continue;
            }
            let file = {
                let Ok((dir, name)) = self.parent(path) else { continue };
                match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
                    _ => continue,
                }
                match self.open_regular(path) {
                    Ok(f) => f,
                    Err(_) => continue,
                }
            };
            self.keep_ranges(path, &file, a, b, &mut log, &mut u)?;
        }
        if u.is_empty() {
            return Ok(last);
        }
        if let Some(f) = &log.file {
            fs::fdatasync(f).map_err(Problem::os("syncing the kept ranges"))?;
        }
        let s = self.sess();
        let entry = Entry { index: first, undo: u, keep: true };
        s.journal.append(&entry).map_err(os("writing the journal"))?;
        s.journal.sync().map_err(os("syncing the journal"))?;
        Ok(last)
    }

    /// The origin version of the file at `p`, if its content was changed already (for
    /// copy_from_origin): its current bytes with the kept ranges put back, in a scratch copy.
    pub(crate) fn origin_copy(&mut self, p: &[u8]) -> Result<Option<File>, Problem> {
        let Some(s) = &self.session else { return Ok(None) };
        if !s.undo {
            return Ok(None);
        }
        let file = self.data_file(p)?.try_clone().map_err(os("dup"))?;
        let ino = fs::fstat(&file).map_err(Problem::os("fstat"))?.st_ino;
        let s = self.sess();
        let open = |s: &Session, name: &[u8]| {
            fs::openat(
                &s.hold_fd,
                OsStr::from_bytes(name),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(Problem::os("open the origin copy"))
        };
        if let Some(name) = s.preserved.get(&ino) {
            return open(s, name).map(Some);
        }
        let Some(k) = s.kept.get(&ino).cloned() else { return Ok(None) };
        let name = format!("o{ino}").into_bytes();
        fsutil::copy_file(&file, s.hold_fd.as_fd(), &name, s.reflink)
            .map_err(os("making the origin copy"))?;
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let copy = File::from(
            fs::openat(&s.hold_fd, OsStr::from_bytes(&name), flags, Mode::empty())
                .map_err(Problem::os("open the origin copy"))?,
        );
        for (off, len, src) in &k.pieces {
            match src {
                None => fsutil::punch(&copy, *off, *len).map_err(os("fallocate"))?,
                Some((log, at)) => {
                    let lf = open(s, log)?;
                    fsutil::copy_range(&lf, *at, &copy, *off, *len)
                        .map_err(os("making the origin copy"))?;
                }
            }
        }
        copy.set_len(k.size).map_err(os("ftruncate"))?;
        s.preserved.insert(ino, name);
        Ok(Some(copy))
    }

    /// `create` of a journaled receive: the file is made in the holding directory.
    pub(crate) fn create_held(&mut self, p: &[u8]) -> Result<(), Problem> {
        let replay = self.replaying();
        // The name must be free now, as a plain create would find. Replayed, the file may
        // already be at its name: its whole run of data records went in and it was moved there
        // before the kill. It is made again from those records, which follow.
        {
            let (dir, name) = self.parent(p)?;
            match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(st)
                    if replay && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile =>
                {
                    fs::unlinkat(dir, name, AtFlags::empty()).map_err(Problem::os("unlink"))?;
                }
                Ok(_) => return Err(Problem::os("")(Errno::EXIST)),
                Err(e) => return Err(Problem::os("")(e)),
            }
        }
        let index = self.index;
        let hold = hold_name('n', index);
        let s = self.sess();
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if !replay {
            flags |= OFlags::EXCL;
        }
        let fd =
            fs::openat(&s.hold_fd, OsStr::from_bytes(&hold), flags, Mode::from_raw_mode(0o600))
                .map_err(Problem::os(""))?;
        if let Ok(st) = fs::fstat(&fd) {
            s.created.insert(st.st_ino);
        }
        s.pending = Some(Pending { path: p.to_vec(), hold });
        self.file = Some(OpenFile { path: p.to_vec(), file: File::from(fd) });
        Ok(())
    }

    /// The held new file for `p`, when data records go to it.
    pub(crate) fn held_new_file(&mut self, p: &[u8]) -> Result<Option<File>, Problem> {
        let Some(s) = &self.session else { return Ok(None) };
        let Some(pend) = &s.pending else { return Ok(None) };
        if pend.path != p {
            return Ok(None);
        }
        let fd = fs::openat(
            &s.hold_fd,
            OsStr::from_bytes(&pend.hold),
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(Problem::os("open the new file"))?;
        Ok(Some(File::from(fd)))
    }

    /// Moves the pending new file to its name unless `rec_path` continues its data.
    fn materialize_unless(&mut self, data_path: Option<&[u8]>) -> Result<(), Problem> {
        let Some(pend) = self.session.as_ref().and_then(|s| s.pending.clone()) else {
            return Ok(());
        };
        if data_path == Some(pend.path.as_slice()) {
            return Ok(());
        }
        self.file = None;
        let hold_fd =
            rustix::io::fcntl_dupfd_cloexec(&self.sess().hold_fd, 0).map_err(Problem::os("dup"))?;
        let (dir, name) = self.parent(&pend.path)?;
        let r = fs::renameat_with(
            &hold_fd,
            OsStr::from_bytes(&pend.hold),
            dir,
            name,
            RenameFlags::NOREPLACE,
        );
        let r = match r {
            // Moved already (a replay), or the file system has no RENAME_NOREPLACE.
            Err(Errno::NOENT) if fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() => Ok(()),
            Err(Errno::INVAL) => match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EXIST),
                Err(_) => fs::renameat(&hold_fd, OsStr::from_bytes(&pend.hold), dir, name),
            },
            // DEST holds a mount point on the way: write the file in place instead.
            Err(Errno::XDEV) => {
                let src = fs::openat(
                    &hold_fd,
                    OsStr::from_bytes(&pend.hold),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
                let dst = fs::openat(dir, name, flags, Mode::from_raw_mode(0o600));
                match (src, dst) {
                    (Ok(s), Ok(d)) => fsutil::copy_fd(&s, &d)
                        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
                        .and_then(|()| {
                            fs::unlinkat(&hold_fd, OsStr::from_bytes(&pend.hold), AtFlags::empty())
                        }),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            r => r,
        };
        r.map_err(Problem::os("moving the new file to its name"))?;
        self.sess().pending = None;
        Ok(())
    }

    /// unlink/rmdir of an incremental: move the object into the holding directory.
    pub(crate) fn move_aside(&mut self, p: &[u8], dir_wanted: bool) -> Result<(), Problem> {
        let replay = self.replaying();
        let hold = hold_name('u', self.index);
        let hold_fd =
            rustix::io::fcntl_dupfd_cloexec(&self.sess().hold_fd, 0).map_err(Problem::os("dup"))?;
        let (dir, name) = self.parent(p)?;
        let st = match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT)
                if replay
                    && fs::statat(
                        &hold_fd,
                        OsStr::from_bytes(&hold),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .is_ok() =>
            {
                return Ok(());
            }
            r => r.map_err(Problem::os(""))?,
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        match (dir_wanted, is_dir) {
            (false, true) => return Err(Problem::os("")(Errno::ISDIR)),
            (true, false) => return Err(Problem::os("")(Errno::NOTDIR)),
            (true, true) if !fsutil::dir_is_empty(dir, name).map_err(Problem::os("listing"))? => {
                return Err(Problem::os("")(Errno::NOTEMPTY))
            }
            _ => {}
        }
        let r =
            fs::renameat_with(dir, name, &hold_fd, OsStr::from_bytes(&hold), RenameFlags::empty());
        if is_dir {
            self.res.invalidate();
        }
        r.map_err(Problem::os("moving into the holding directory"))
    }
}

/// Opens (making it when missing) the holding directory `name` in `root`, keeping root's times.
pub fn open_holding(root: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<OwnedFd> {
    let n = OsStr::from_bytes(name);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match fs::openat(root, n, flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let st = fs::fstat(root)?;
    fs::mkdirat(root, n, Mode::from_raw_mode(0o700))?;
    fsutil::set_times(root, &st)?;
    Ok(fs::openat(root, n, flags, Mode::empty())?)
}

/// Removes the holding directory `name` and everything in it, keeping root's times.
pub fn remove_holding(root: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    let st = fs::fstat(root)?;
    match fsutil::remove_tree(root, OsStr::from_bytes(name)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    }
    fsutil::set_times(root, &st)
}
