//! The journaled receive: what the applier does differently when a journal is kept, so that a
//! kill at any byte can be resumed or rolled back.
//!
//! For each record, in this order: (1) `prepare` gathers what is needed to undo it (old values,
//! the name an object will be kept under) and keeps the origin bytes a change in place is about
//! to overwrite; (2) a journal entry naming the record in flight and its undo steps is written;
//! (3) the record is applied. Most records have (1) and (2) done ahead, for many at once (below).
//!
//! Changes from a plain receive:
//! - **unlink/rmdir** of an incremental move the object into the holding directory
//!   (`.anyrecv-<stream id prefix>` at the top of DEST, in shards of 64: `s<n>/u<index>`) instead
//!   of destroying it; an abort moves it back. The holding directory is removed after the end
//!   record, while another thread has DEST written back. A file moved aside that no other name
//!   links loses its cached pages at once (`fsutil::drop_cache_of_removed`), as a plain unlink
//!   would free them: the receive's writes reuse that memory. So do the journal's and keep
//!   logs' pages once synced (`fsutil::sync_and_drop`).
//! - **Changed files** are written in place (hard links must keep pointing at the same inode),
//!   after the origin bytes each record will overwrite were kept: in the journal itself up to
//!   `INLINE_KEEP` per receive, beyond that in keep logs in the holding directory (a copy of the
//!   data extents); with the file's size and metadata. An abort writes them back, a resume
//!   replays the in-place writes, which are idempotent. A file whose origin bytes were kept
//!   ahead stays open for its records (`Applier::ready`), so keeping costs no extra open.
//! - **New files of a full receive** are written in the holding directory (`n<create index>`)
//!   and get their name (one `renameat2`) at the first record that is not part of their data,
//!   so no torn file ever sits at its final path; the create's journal entry names the held
//!   file (`Undo::New`), so a resume that stops inside its data continues it there. An
//!   incremental stream creates its new files in a run before their data (anysend's order), so
//!   holding them would only add a rename: there they are made at their name, where they can
//!   be seen partly written until the end record, like a file changed in place; their undo is
//!   their removal, and their metadata needs none.
//! - **Runs of records are journaled ahead**, so that a run costs one sync, not one per record
//!   (`log_ahead`). Before a rename or removal is applied its undo must be on disk, and so must
//!   the kept origin bytes before a file is overwritten. Over the records already read (never
//!   waiting for more input) the undo of a whole run is written in one ahead entry and synced
//!   once: for a run of structural records (mkdir, create, symlink, mknod, link, unlink, rmdir,
//!   rename) their inverse operations and the times of the directories they change; for a run
//!   of records up to the next rename or removal, the origin byte ranges they will overwrite. A
//!   structural run ends before a record that names a path another record of the run names, or
//!   one beneath or above it: its undo computed now would name another object, and the inverse
//!   of a record that never ran must find nothing to act on.
//! - **Batches**: one entry names a batch of records in flight instead of one entry per record
//!   (`open_batch`), where each record of the batch is harmless to apply again, in order, after
//!   any of them were applied, and the batch's undo is in its entry or on disk already: the
//!   creations, renames and removals of a structural run, or writes and metadata changes (their
//!   old values taken before the batch). After a kill, the whole batch is replayed.
//! - **Replay**: the records in flight when a receive stopped may or may not have been applied;
//!   they are applied again with "already done" accepted (mkdir of an existing directory, create
//!   of an existing empty file, a rename whose `from` is gone and `to` exists, a link that
//!   exists, an unlink of a missing name, a removal already moved aside, a remove_xattr of a
//!   missing name). Every other record is idempotent.
//! - The holding directory is made and removed with DEST's times kept, so DEST's own mtime is what
//!   the stream set.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::ops::{Bound, Range};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use anysend_stream::Record;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::apply::{proc_path, resolve_problem, Applier};
use crate::error::{Problem, Warning};
use crate::fsutil;
use crate::journal::{self, Entry, Journal, Undo};
use crate::path;

/// The journaling state of one receive.
pub struct Session {
    pub journal: Journal,
    /// The holding directory, open.
    pub hold_fd: OwnedFd,
    /// Keep undo information (incremental receives).
    pub undo: bool,
    /// Origin versions of changed files made for copy_from_origin, by inode: the copy's name.
    pub preserved: HashMap<u64, Vec<u8>>,
    /// Inodes this receive created (their content needs no keeping).
    pub created: HashSet<u64>,
    /// Regular files this receive created, by their current path (their metadata needs no
    /// undo: removing the file undoes it). It may miss some, never holds a path that names
    /// something else.
    pub new_files: BTreeSet<Vec<u8>>,
    /// Pre-existing files whose mode, owner and times a `KeepMeta` step holds already, by their
    /// current path: their later chmod, chown and utimes need no undo of their own (an abort
    /// undoes steps in reverse, so the `KeepMeta` step puts back what it held last). The same
    /// rules as `new_files`.
    pub meta_kept: BTreeSet<Vec<u8>>,
    /// Directories whose times an undo step holds already (`dir_times`), by their current path:
    /// their later utimes needs no undo of its own. The same rules as `new_files`.
    pub times_kept: BTreeSet<Vec<u8>>,
    /// Directories whose times were recorded.
    pub timed: HashSet<u64>,
    /// Records up to this one may have been applied already (those in flight at a kill).
    pub replay_upto: Option<u64>,
    /// Records whose entry the journal holds already (a batch, or those in flight at a kill).
    pub written: Range<u64>,
    /// Records whose undo an ahead entry holds already, synced (a structural run).
    pub ahead: Range<u64>,
    /// The last record index the undo runs ahead have looked at.
    pub looked_upto: Option<u64>,
    /// Data records whose origin ranges the last run kept ahead (nothing left to keep).
    pub kept_ahead: HashSet<u64>,
    /// Checkpoints made (syncfs of DEST, then a sync of the journal).
    pub checkpoints: u64,
    /// FICLONE keeps the origin copies (btrfs; elsewhere a copy of the data extents).
    pub reflink: bool,
    /// Pre-existing files whose origin ranges are being kept, by inode.
    pub kept: HashMap<u64, Kept>,
    /// Kept origin bytes the journal may still take (`INLINE_KEEP`).
    pub inline_left: u64,
    /// The new file being written in the holding directory (full receives).
    pub pending: Option<Pending>,
    /// The shard of the holding directory removals go to now, open.
    shard: Option<(u64, OwnedFd)>,
}

/// A new file of a full receive, held until its data is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its name in DEST.
    pub path: Vec<u8>,
    /// Its name in the holding directory.
    pub hold: Vec<u8>,
}

impl Session {
    /// A session on an open journal and holding directory; `undo` for incremental receives.
    pub fn new(journal: Journal, hold_fd: OwnedFd, undo: bool, reflink: bool) -> Session {
        Session {
            journal,
            hold_fd,
            undo,
            preserved: HashMap::new(),
            created: HashSet::new(),
            new_files: BTreeSet::new(),
            meta_kept: BTreeSet::new(),
            times_kept: BTreeSet::new(),
            timed: HashSet::new(),
            replay_upto: None,
            written: 0..0,
            ahead: 0..0,
            looked_upto: None,
            kept_ahead: HashSet::new(),
            checkpoints: 0,
            reflink,
            kept: HashMap::new(),
            inline_left: INLINE_KEEP,
            pending: None,
            shard: None,
        }
    }

    /// Keeps `new_files`, `meta_kept` and `times_kept` up to date after `rec` was applied (never
    /// naming a path that does not hold the object they were told of; they may forget some).
    fn track_paths(&mut self, rec: &Record) {
        if !self.undo {
            return;
        }
        if let Record::Create { path } = rec {
            self.new_files.insert(path.clone());
        }
        for set in [&mut self.new_files, &mut self.meta_kept, &mut self.times_kept] {
            match rec {
                Record::Unlink { path } | Record::Rmdir { path } => {
                    set.remove(path);
                }
                Record::Rename { from, to } => {
                    let moved = set.remove(from);
                    // A directory moved: what was beneath it has other paths now.
                    remove_beneath(set, from);
                    if moved {
                        set.insert(to.clone());
                    }
                }
                _ => {}
            }
        }
    }

    /// The shard of the holding directory for the removal by record `index`, made if missing.
    fn shard(&mut self, index: u64) -> Result<BorrowedFd<'_>, Errno> {
        let n = index / SHARD;
        if !matches!(&self.shard, Some((m, _)) if *m == n) {
            let name = format!("s{n}");
            match fs::mkdirat(&self.hold_fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            let fd = fs::openat(&self.hold_fd, name.as_str(), DIR_FLAGS, Mode::empty())?;
            self.shard = Some((n, fd));
        }
        match &self.shard {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(Errno::NOENT),
        }
    }
}

/// Removes the paths beneath `dir` from `set`: those in [`dir/`, `dir0`), since `0` follows `/`.
/// (Ordered sets, so that a rename does not look at every path they hold.)
fn remove_beneath(set: &mut BTreeSet<Vec<u8>>, dir: &[u8]) {
    let lo = [dir, b"/"].concat();
    let hi = [dir, b"0"].concat();
    let beneath: Vec<Vec<u8>> = set
        .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
        .cloned()
        .collect();
    for p in beneath {
        set.remove(&p);
    }
}

/// Files up to this size are read whole by read-ahead anyway: no fadvise for them.
const READ_AHEAD_MATTERS: u64 = 1 << 20;

/// The origin ranges of one pre-existing file kept so far.
#[derive(Debug, Default, Clone)]
pub struct Kept {
    /// The file's size before the receive changed it.
    pub size: u64,
    /// Kept intervals [start, end), sorted and disjoint.
    pub covered: Vec<(u64, u64)>,
    /// Each kept piece: offset, length, and where its origin bytes are.
    pub pieces: Vec<(u64, u64, Source)>,
}

/// Where the origin bytes of a kept piece are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// They were a hole.
    Hole,
    /// In a keep log of the holding directory, at this offset.
    Log { name: Vec<u8>, at: u64 },
    /// In the journal: the `Bytes` undo step of this file at this offset (read back from the
    /// journal by copy_from_origin, which is rare: no copy is held in memory).
    Journal,
}

/// A piece of origin bytes just kept, before it becomes an undo step and a [`Source`].
enum Piece {
    Hole,
    Log {
        name: Vec<u8>,
        at: u64,
    },
    /// Read, for the journal.
    Bytes(Vec<u8>),
}

/// Kept origin bytes written into the journal itself, per receive (a day of edits, say); those
/// beyond go to keep logs in the holding directory. The journal is synced anyway before a run
/// of records overwrites origin bytes, while syncing a keep log commits DEST's file system.
/// Bounded, since the journal's file system need not be large.
pub const INLINE_KEEP: u64 = 16 << 20;

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
    pub fn add(&mut self, off: u64, len: u64, src: Source) {
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

/// The file a data record writes (a held new file stays held through these).
fn data_path(rec: &Record) -> Option<&[u8]> {
    changed_range(rec).map(|(path, _, _)| path)
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

/// Records whose undo is known from the record and the times of the directories they change:
/// one ahead entry can hold the undo of a run of them.
fn structural(rec: &Record) -> bool {
    use Record::*;
    matches!(
        rec,
        Mkdir { .. }
            | Create { .. }
            | Symlink { .. }
            | Mknod { .. }
            | Link { .. }
            | Unlink { .. }
            | Rmdir { .. }
            | Rename { .. }
    )
}

/// The inverse of the structural record `index` (the times of the directories it changes
/// apart).
fn structural_undo(index: u64, rec: &Record) -> Option<Undo> {
    use Record::*;
    Some(match rec {
        Mkdir { path }
        | Create { path }
        | Symlink { path, .. }
        | Mknod { path, .. }
        | Link { path, .. } => Undo::Remove { path: path.clone() },
        Unlink { path } | Rmdir { path } => {
            Undo::Restore { hold: removed_name(index), path: path.clone() }
        }
        Rename { from, to } => Undo::Rename { from: from.clone(), to: to.clone() },
        _ => return None,
    })
}

/// The two kinds of batches of records in flight (`Applier::batch_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Structure,
    Content,
}

/// The paths a structural run names so far, to find a record that names one of them, or a path
/// beneath or above one (`Applier::structure_ahead`). Ordered sets: a run holds thousands of
/// long paths that share long prefixes, where comparing bytes is cheaper than hashing them.
#[derive(Default)]
struct Named<'r> {
    all: BTreeSet<&'r [u8]>,
    /// Those that can be directories (what renames, rmdirs and mkdirs name).
    dirs: BTreeSet<&'r [u8]>,
}

impl<'r> Named<'r> {
    /// Whether `p` is named, beneath a named directory, or (`dir`: `p` can be a directory)
    /// above a named path.
    fn conflicts(&self, p: &[u8], dir: bool) -> bool {
        let above = || p.iter().enumerate().filter(|&(_, &c)| c == b'/').map(|(i, _)| &p[..i]);
        let beneath = || {
            let mut key = p.to_vec();
            key.push(b'/');
            let mut after =
                self.all.range::<[u8], _>((Bound::Included(&key[..]), Bound::Unbounded));
            after.next().is_some_and(|q| q.starts_with(&key))
        };
        self.all.contains(p)
            || (!self.dirs.is_empty() && above().any(|a| self.dirs.contains(a)))
            || (dir && beneath())
    }

    fn add(&mut self, p: &'r [u8], dir: bool) {
        self.all.insert(p);
        if dir {
            self.dirs.insert(p);
        }
    }
}

fn hold_name(kind: char, index: u64) -> Vec<u8> {
    format!("{kind}{index}").into_bytes()
}

/// Removals per shard of the holding directory. An object removed by record `i` waits as
/// `s<i / SHARD>/u<i>`: on ext4 a rename into a directory of a few dozen entries costs about
/// half of one into a directory of thousands, and a receive may remove many thousands.
const SHARD: u64 = 64;

/// Where the object removed by record `index` waits, in the holding directory.
fn removed_name(index: u64) -> Vec<u8> {
    format!("s{}/u{index}", index / SHARD).into_bytes()
}

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// The directory holding `rel` inside the holding directory `hold` (`rel` is a name or
/// `dir/name`; a symlink is never followed) and `rel`'s last name.
pub(crate) fn held_dir<'r>(
    hold: BorrowedFd<'_>,
    rel: &'r [u8],
) -> std::io::Result<(OwnedFd, &'r OsStr)> {
    let (dir, name) = path::split_last(rel);
    let fd = if dir.is_empty() {
        rustix::io::fcntl_dupfd_cloexec(hold, 0)?
    } else if dir.contains(&b'/') {
        return Err(std::io::Error::other("a name in the holding directory is nested too deep"));
    } else {
        fs::openat(hold, OsStr::from_bytes(dir), DIR_FLAGS, Mode::empty())?
    };
    Ok((fd, OsStr::from_bytes(name)))
}

fn os(step: &'static str) -> impl FnOnce(std::io::Error) -> Problem {
    Problem::io(step)
}

impl Applier {
    pub(crate) fn replaying(&self) -> bool {
        let index = self.index;
        self.session.as_ref().is_some_and(|s| s.replay_upto.is_some_and(|m| index <= m))
    }

    /// unlink/rmdir keep the object in the holding directory (incremental receives).
    pub(crate) fn holds_removed(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.undo)
    }

    /// New regular files are written in the holding directory first (full receives).
    pub(crate) fn holds_new(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.undo)
    }

    fn sess(&mut self) -> &mut Session {
        self.session.as_mut().expect("journaled receive")
    }

    /// The journal's mark of the new file the create `index` holds, if it holds one.
    fn new_mark(&self, index: u64, rec: &Record) -> Option<Undo> {
        match rec {
            Record::Create { path } if self.holds_new() => {
                Some(Undo::New { path: path.clone(), hold: hold_name('n', index) })
            }
            _ => None,
        }
    }

    pub(crate) fn apply_journaled(
        &mut self,
        index: u64,
        rec: &Record,
        warn: &mut dyn FnMut(&Warning),
    ) -> Result<(), Problem> {
        // A held new file whose data ends here gets its name first (the record may need it).
        self.materialize_unless(data_path(rec))?;
        let s = self.sess();
        // Its entry is written already (a batch), or its undo is on disk (a structural run).
        let written = s.written.contains(&index);
        let ahead = written || s.ahead.contains(&index);
        let mut undo = if ahead { Vec::new() } else { self.prepare(index, rec)? };
        if !written {
            undo.extend(self.new_mark(index, rec));
        }
        // Before moving an existing object or overwriting a file's origin bytes, its undo (and
        // the kept bytes, synced when they were kept) must survive a power loss.
        let sync_first = !ahead
            && (moves_paths(rec)
                || undo.iter().any(|u| matches!(u, Undo::KeepMeta { .. } | Undo::Range { .. })));
        let s = self.sess();
        if !written {
            s.journal.append(&Entry::new(index, undo)).map_err(os("writing the journal"))?;
        }
        if s.undo && sync_first {
            s.journal.sync().map_err(os("syncing the journal"))?;
        }
        let r = self.perform(rec, warn);
        r?;
        let s = self.sess();
        s.track_paths(rec);
        if s.journal.checkpoint_due() {
            s.checkpoints += 1;
            let started = std::time::Instant::now();
            rustix::fs::syncfs(self.res.root()).map_err(Problem::os("syncfs"))?;
            let s = self.sess();
            s.journal.sync().map_err(os("syncing the journal"))?;
            s.journal.checkpoint_took(started.elapsed());
        }
        Ok(())
    }

    /// The end record. (Logged like any record.)
    pub fn finish_journaled(&mut self, index: u64) -> Result<(), Problem> {
        if self.session.is_none() {
            return Ok(());
        }
        self.materialize_unless(None)?;
        let Some(s) = &mut self.session else { return Ok(()) };
        if !s.written.contains(&index) {
            s.journal.append(&Entry::new(index, Vec::new())).map_err(os("writing the journal"))?;
        }
        Ok(())
    }

    /// Undo steps of `rec`, and the copies that must exist before it is applied.
    fn prepare(&mut self, index: u64, rec: &Record) -> Result<Vec<Undo>, Problem> {
        let mut u = Vec::new();
        let s = self.sess();
        if !s.undo {
            return Ok(u);
        }
        use Record::*;
        let meta = matches!(
            rec,
            SetXattr { .. }
                | RemoveXattr { .. }
                | Chmod { .. }
                | Chown { .. }
                | Utimes { .. }
                | SetFlags { .. }
        );
        if meta && rec.path().is_some_and(|p| s.new_files.contains(p)) {
            // Removing the file undoes its metadata too.
            return Ok(u);
        }
        if matches!(rec, Chmod { .. } | Chown { .. } | Utimes { .. })
            && rec.path().is_some_and(|p| s.meta_kept.contains(p))
        {
            return Ok(u);
        }
        if matches!(rec, Utimes { .. }) && rec.path().is_some_and(|p| s.times_kept.contains(p)) {
            return Ok(u);
        }
        match rec {
            Mkdir { path }
            | Create { path }
            | Symlink { path, .. }
            | Mknod { path, .. }
            | Link { path, .. }
            | Unlink { path }
            | Rmdir { path } => {
                self.dir_times(path, &mut u)?;
                u.extend(structural_undo(index, rec));
            }
            Rename { from, to } => {
                self.dir_times(from, &mut u)?;
                self.dir_times(to, &mut u)?;
                u.extend(structural_undo(index, rec));
            }
            Write { path, .. }
            | Hole { path, .. }
            | Truncate { path, .. }
            | CopyFromOrigin { path, .. } => {
                if self.sess().kept_ahead.contains(&index) {
                    return Ok(u);
                }
                if let Some((_, a, b)) = changed_range(rec) {
                    let mut log = KeepLog { name: hold_name('r', index), file: None, end: 0 };
                    let file = self.data_file(path)?.try_clone().map_err(os("dup"))?;
                    let st = fs::fstat(&file).map_err(Problem::os("fstat"))?;
                    self.keep_ranges(path, &file, &st, a, b, &mut log, &mut u)?;
                    if let Some(f) = &log.file {
                        fsutil::sync_and_drop(f.as_fd()).map_err(os("syncing the kept ranges"))?;
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
                // A chown clears setuid and setgid: the mode is put back after the owner (steps
                // are undone in reverse).
                if st.st_mode & 0o6000 != 0 {
                    u.push(Undo::Mode { path: path.clone(), mode: st.st_mode & 0o7777 });
                }
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
        let (fd, ino, fresh) = self.res.dir_ino(dir).map_err(resolve_problem)?;
        let Some(s) = &mut self.session else { return Ok(()) };
        if s.timed.insert(ino) {
            let st = match fresh {
                Some(st) => st,
                None => fs::fstat(fd).map_err(Problem::os("fstat"))?,
            };
            let (atime, mtime) = fsutil::times(&st);
            u.push(Undo::Times { path: dir.to_vec(), atime, mtime });
            if s.undo {
                s.times_kept.insert(dir.to_vec());
            }
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
    #[allow(clippy::too_many_arguments)]
    fn keep_ranges(
        &mut self,
        p: &[u8],
        file: &File,
        st: &fs::Stat,
        a: u64,
        b: u64,
        log: &mut KeepLog,
        u: &mut Vec<Undo>,
    ) -> Result<(), Problem> {
        let ino = st.st_ino;
        let s = self.sess();
        if s.created.contains(&ino) {
            return Ok(());
        }
        if let std::collections::hash_map::Entry::Vacant(v) = s.kept.entry(ino) {
            let (atime, mtime) = fsutil::times(st);
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
            s.meta_kept.insert(p.to_vec());
        }
        let k = &s.kept[&ino];
        let b = b.min(k.size);
        if a >= b {
            return Ok(());
        }
        let gaps = k.gaps(a, b);
        if !gaps.is_empty() && k.size > READ_AHEAD_MATTERS {
            // A few bytes here and there: read-ahead would read a hundred times more.
            let _ = fs::fadvise(file, 0, None, fs::Advice::Random);
        }
        let mut pieces = Vec::new();
        for (x, y) in gaps {
            // Bytes the journal can take are read first: most show they hold no hole, and the
            // SEEK_HOLE of each range is saved.
            let read = if y - x <= s.inline_left {
                Some(fsutil::read_range(file, x, y - x).map_err(os("keeping the origin bytes"))?)
            } else {
                None
            };
            let read = match read {
                Some(bytes) if !fsutil::may_cover_hole(&bytes, x) => {
                    s.inline_left -= y - x;
                    pieces.push((x, y - x, Piece::Bytes(bytes)));
                    continue;
                }
                r => r,
            };
            for (off, end, data) in fsutil::segments(file, x, y).map_err(os("SEEK_DATA"))? {
                let len = end - off;
                if !data {
                    pieces.push((off, len, Piece::Hole));
                    continue;
                }
                if len <= s.inline_left {
                    let bytes = match &read {
                        Some(b) => b[(off - x) as usize..(end - x) as usize].to_vec(),
                        None => fsutil::read_range(file, off, len)
                            .map_err(os("keeping the origin bytes"))?,
                    };
                    s.inline_left -= len;
                    pieces.push((off, len, Piece::Bytes(bytes)));
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
                pieces.push((off, len, Piece::Log { name: log.name.clone(), at: log.end }));
                log.end += len;
            }
        }
        let Some(k) = s.kept.get_mut(&ino) else {
            return Err(Problem::os("keeping the origin bytes")(Errno::NOENT));
        };
        for (off, len, piece) in pieces {
            let path = p.to_vec();
            // The bytes go into the undo step as read: no copy is held (`Source::Journal`).
            let (step, src) = match piece {
                Piece::Hole => {
                    (Undo::Range { path, ino, off, len, hold: Vec::new(), at: 0 }, Source::Hole)
                }
                Piece::Log { name, at } => (
                    Undo::Range { path, ino, off, len, hold: name.clone(), at },
                    Source::Log { name, at },
                ),
                Piece::Bytes(data) => (Undo::Bytes { path, ino, off, data }, Source::Journal),
            };
            u.push(step);
            k.add(off, len, src);
        }
        Ok(())
    }

    /// Whether the record `index` is to be looked at with the records read after it
    /// ([`Applier::log_ahead`]) before it is applied.
    pub fn needs_ahead(&self, index: u64) -> bool {
        self.session.as_ref().is_some_and(|s| {
            (s.undo && s.looked_upto.is_none_or(|k| k < index)) || !s.written.contains(&index)
        })
    }

    /// Looks at the records already read (`ahead`, in stream order from the one about to be
    /// applied, none applied yet), before the first of them is applied:
    /// - an incremental writes ahead, in one journal entry synced once, the undo of the run
    ///   that starts there (a structural run, or the origin ranges of a run up to the next
    ///   rename or removal);
    /// - then one entry may name a batch of records in flight (`open_batch`).
    pub fn log_ahead<'r, I>(&mut self, ahead: I) -> Result<(), Problem>
    where
        I: Iterator<Item = (u64, &'r Record)> + Clone,
    {
        let Some(s) = &self.session else { return Ok(()) };
        let Some((index, rec)) = ahead.clone().next() else { return Ok(()) };
        // Only records that would be applied: a run ends before one that would be refused.
        if s.undo && s.looked_upto.is_none_or(|k| k < index) {
            let last = if self.check(index, rec).is_err() {
                None
            } else if structural(rec) {
                self.structure_ahead(ahead.clone())?
            } else {
                self.keep_ahead(ahead.clone())?
            };
            self.sess().looked_upto = Some(last.unwrap_or(index));
        }
        if !self.sess().written.contains(&index) {
            self.open_batch(ahead)?;
        }
        Ok(())
    }

    /// Writes one entry for a batch of records in flight, from the first of `ahead` on, when
    /// there are two or more (see `batch_kind`); their own entries are then left out. After a
    /// kill, a resume applies the whole batch again in replay mode.
    fn open_batch<'r>(
        &mut self,
        mut ahead: impl Iterator<Item = (u64, &'r Record)>,
    ) -> Result<(), Problem> {
        let Some((first, rec)) = ahead.next() else { return Ok(()) };
        let Some(kind) = self.batch_kind(first, rec) else { return Ok(()) };
        let mut undo = Vec::new();
        if !self.batch_undo(first, rec, &mut undo) {
            return Ok(());
        }
        let mut last = first;
        for (index, rec) in ahead {
            if self.batch_kind(index, rec) != Some(kind) || !self.batch_undo(index, rec, &mut undo)
            {
                break;
            }
            last = index;
        }
        if last == first && undo.is_empty() {
            return Ok(());
        }
        let s = self.sess();
        let entry = Entry::batch(first, last, undo);
        s.journal.append(&entry).map_err(os("writing the journal"))?;
        s.written = first..last + 1;
        Ok(())
    }

    /// Adds the undo of a metadata record of an older object to a batch's; false when it cannot
    /// be had now (the record then gets its own entry, and its own error). Metadata undo steps
    /// are old values, all taken before the batch is applied: where two records of a batch set
    /// one attribute of one object, the earlier one's step holds the origin value and is undone
    /// last. Other records of a batch have their undo on disk already, or need none.
    fn batch_undo(&mut self, index: u64, rec: &Record, undo: &mut Vec<Undo>) -> bool {
        use Record::*;
        if let Some(mark) = self.new_mark(index, rec) {
            undo.push(mark);
            return true;
        }
        if !matches!(
            rec,
            Chmod { .. } | Chown { .. } | Utimes { .. } | SetXattr { .. } | RemoveXattr { .. }
        ) {
            return true;
        }
        match self.prepare(index, rec) {
            Ok(u) => {
                undo.extend(u);
                true
            }
            Err(_) => false,
        }
    }

    /// The kind of batch the record `index` can be in, if any. A batch holds records of one
    /// kind whose undo is on disk already (or not kept: a full receive), each of which is
    /// harmless to apply again, in order, after any of them were applied:
    /// - structure: creations (no path checks needed: a creation "already done" is accepted on
    ///   replay, and nothing in the batch removes what a later creation names); in an
    ///   incremental also renames and removals, within a structural run written ahead, where
    ///   no record names a path another record of the run names, or one beneath or above it;
    /// - content: writes, holes, truncations and metadata (each sets absolute values); in an
    ///   incremental only writes whose origin ranges were kept ahead, and metadata, whose old
    ///   values go into the batch's entry.
    ///
    /// Flags are never batched (an immutable flag would refuse the replay of an earlier write),
    /// nor copy_from_origin (it reads what earlier records may have changed).
    fn batch_kind(&self, index: u64, rec: &Record) -> Option<BatchKind> {
        if self.check(index, rec).is_err() {
            return None;
        }
        let s = self.session.as_ref()?;
        use Record::*;
        let (kind, ready) = match rec {
            Mkdir { .. } | Create { .. } | Symlink { .. } | Mknod { .. } | Link { .. } => {
                (BatchKind::Structure, !s.undo || s.ahead.contains(&index))
            }
            Unlink { .. } | Rmdir { .. } | Rename { .. } => {
                (BatchKind::Structure, s.undo && s.ahead.contains(&index))
            }
            Write { .. } | Hole { .. } | Truncate { .. } => {
                (BatchKind::Content, !s.undo || s.kept_ahead.contains(&index))
            }
            // (Their undo, if any, goes into the batch's entry: `batch_undo`.)
            Chmod { .. } | Chown { .. } | Utimes { .. } | SetXattr { .. } | RemoveXattr { .. } => {
                (BatchKind::Content, true)
            }
            SetFlags { .. } | CopyFromOrigin { .. } | End { .. } => return None,
        };
        ready.then_some(kind)
    }

    /// The undo of a run of structural records, written ahead; the run ends before a record
    /// that is not structural, names a path that an earlier record of the run names (or a path
    /// beneath or above one), or whose parent directories do not resolve now (it gets its own
    /// entry, and its own error if it fails). So the undo computed now is the undo of each
    /// record when it is applied, the inverse of a record that never ran finds nothing to act
    /// on, and the run can be a batch (`batch_kind`).
    fn structure_ahead<'r>(
        &mut self,
        ahead: impl Iterator<Item = (u64, &'r Record)>,
    ) -> Result<Option<u64>, Problem> {
        let mut first = None;
        let mut named = Named::default();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut u = Vec::new();
        let mut last = None;
        let mut moves = false;
        for (index, rec) in ahead {
            if !structural(rec) || self.check(index, rec).is_err() {
                break;
            }
            let paths: [Option<&[u8]>; 2] = match rec {
                Record::Rename { from, to } => [Some(from), Some(to)],
                Record::Link { path, existing } => [Some(path), Some(existing)],
                _ => [rec.path(), None],
            };
            let paths = paths.into_iter().flatten();
            // Only these can name a directory (a link's `existing` cannot be one).
            let dir =
                matches!(rec, Record::Rename { .. } | Record::Rmdir { .. } | Record::Mkdir { .. });
            if paths.clone().any(|p| named.conflicts(p, dir)) {
                break;
            }
            // Their parent directories must resolve now (else the record gets its own entry,
            // and its own error); each is looked at once per run, since no record of the run
            // changes what a parent path of another names.
            let parents = paths.clone().map(|p| path::split_last(p).0);
            if parents.clone().any(|d| !seen.contains(d) && self.res.dir(d).is_err()) {
                break;
            }
            // The times of the directories it changes (a link's `existing` is not changed).
            let changed = if matches!(rec, Record::Link { .. }) { 1 } else { 2 };
            for (p, d) in paths.clone().zip(parents).take(changed) {
                if seen.insert(d) {
                    self.dir_times(p, &mut u)?;
                }
            }
            u.extend(structural_undo(index, rec));
            for p in paths {
                named.add(p, dir);
            }
            moves |= moves_paths(rec);
            first.get_or_insert(index);
            last = Some(index);
        }
        let Some(first) = first else { return Ok(None) };
        let Some(end) = last else { return Ok(None) };
        let s = self.sess();
        let entry = Entry::ahead(first, u);
        s.journal.append(&entry).map_err(os("writing the journal"))?;
        // Creations need no sync before they are applied: a power loss that keeps a new object
        // but loses its undo only leaves an extra name for an abort to miss (README.md).
        if moves {
            s.journal.sync().map_err(os("syncing the journal"))?;
        }
        s.ahead = first..end + 1;
        Ok(last)
    }

    /// Keeps aside, in one keep log and one journal entry made durable together, the origin
    /// ranges that the records ahead (`ahead`, in stream order, none applied yet) will change,
    /// up to the first record that moves a path. Records it cannot look at now (a file made by
    /// a record before it, say) are kept when they are applied. Returns the last index looked at.
    fn keep_ahead<'r>(
        &mut self,
        ahead: impl Iterator<Item = (u64, &'r Record)> + Clone,
    ) -> Result<Option<u64>, Problem> {
        let Some((first, _)) = ahead.clone().next() else { return Ok(None) };
        self.ready.clear();
        let mut log = KeepLog { name: hold_name('k', first), file: None, end: 0 };
        let mut u = Vec::new();
        let mut last = None;
        let mut made: HashSet<&[u8]> = HashSet::new();
        // Data records whose ranges this run keeps (none left to keep when they are applied).
        let mut handled = Vec::new();
        for (index, rec) in ahead {
            if moves_paths(rec) || self.check(index, rec).is_err() {
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
            if made.contains(path) {
                continue;
            }
            // A file this receive made has no origin bytes.
            if self.sess().new_files.contains(path) {
                handled.push(index);
                continue;
            }
            // Opened for writing, as its records will (the same checks), and left for them:
            // several records of one file, and applying them, take one open. One it cannot open
            // now is kept when its record is applied.
            let (file, st) = match self.ready.remove(path) {
                Some(ready) => ready,
                None => match self.open_regular_stat(path) {
                    Ok(opened) => opened,
                    Err(_) => continue,
                },
            };
            // A file this receive made has no origin bytes.
            if !self.sess().created.contains(&st.st_ino) {
                self.keep_ranges(path, &file, &st, a, b, &mut log, &mut u)?;
            }
            if self.ready.len() < self.ready_max {
                self.ready.insert(path.to_vec(), (file, st));
            }
            handled.push(index);
        }
        let s = self.sess();
        s.kept_ahead.clear();
        if u.is_empty() {
            s.kept_ahead.extend(handled);
            return Ok(last);
        }
        if let Some(f) = &log.file {
            fsutil::sync_and_drop(f.as_fd()).map_err(os("syncing the kept ranges"))?;
        }
        let s = self.sess();
        let entry = Entry::ahead(first, u);
        s.journal.append(&entry).map_err(os("writing the journal"))?;
        s.journal.sync().map_err(os("syncing the journal"))?;
        s.kept_ahead.extend(handled);
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
        // Origin bytes kept in the journal are read back from it.
        let mut inline = HashMap::new();
        if k.pieces.iter().any(|(_, _, src)| *src == Source::Journal) {
            let loaded = journal::load(s.journal.path())
                .map_err(os("reading the journal"))?
                .ok_or_else(|| Problem::os("reading the journal")(Errno::NOENT))?;
            for step in loaded.entries.into_iter().flat_map(|e| e.undo) {
                if let Undo::Bytes { ino: i, off, data, .. } = step {
                    if i == ino {
                        inline.insert(off, data);
                    }
                }
            }
        }
        for (off, len, src) in &k.pieces {
            match src {
                Source::Hole => fsutil::punch(&copy, *off, *len).map_err(os("fallocate"))?,
                Source::Log { name, at } => {
                    let lf = open(s, name)?;
                    fsutil::copy_range(&lf, *at, &copy, *off, *len)
                        .map_err(os("making the origin copy"))?;
                }
                Source::Journal => match inline.get(off) {
                    Some(data) if data.len() as u64 == *len => {
                        copy.write_all_at(data, *off).map_err(os("making the origin copy"))?
                    }
                    _ => {
                        return Err(Problem::os("the journal lacks kept origin bytes")(
                            Errno::NOENT,
                        ))
                    }
                },
            }
        }
        copy.set_len(k.size).map_err(os("ftruncate"))?;
        s.preserved.insert(ino, name);
        Ok(Some(copy))
    }

    /// `create` of a full journaled receive: the file is made in the holding directory and
    /// written there (`held_new_file`) until `materialize_unless` gives it its name. Replayed
    /// after a kill, a regular file at its name is this record's, given its name before the
    /// kill: it is used there (its data records, which follow, write the same bytes again).
    pub(crate) fn create_held(&mut self, index: u64, p: &[u8]) -> Result<(), Problem> {
        let replay = self.replaying();
        {
            // The name must be free now, as a plain create would find.
            let (dir, name) = self.parent(p)?;
            match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(st)
                    if replay && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile =>
                {
                    return Ok(());
                }
                Ok(_) => return Err(Problem::os("")(Errno::EXIST)),
                Err(e) => return Err(Problem::os("")(e)),
            }
        }
        let hold = hold_name('n', index);
        let s = self.sess();
        // A held file of the same name is this record's own, left by a kill: made again.
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            fs::openat(&s.hold_fd, OsStr::from_bytes(&hold), flags, Mode::from_raw_mode(0o600))
                .map_err(Problem::os(""))?;
        s.pending = Some(Pending { path: p.to_vec(), hold });
        self.file = Some(crate::apply::OpenFile { path: p.to_vec(), file: File::from(fd) });
        Ok(())
    }

    /// The held new file for `p`, when data records go to it.
    pub(crate) fn held_new_file(&self, p: &[u8]) -> Result<Option<File>, Problem> {
        let Some(s) = &self.session else { return Ok(None) };
        let Some(pend) = &s.pending else { return Ok(None) };
        if pend.path != p {
            return Ok(None);
        }
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = fs::openat(&s.hold_fd, OsStr::from_bytes(&pend.hold), flags, Mode::empty())
            .map_err(Problem::os("open the new file"))?;
        Ok(Some(File::from(fd)))
    }

    /// Gives the held new file its name, unless `data_path` continues its data. Replayed, it
    /// may have its name already.
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
        let held = OsStr::from_bytes(&pend.hold);
        let (dir, name) = self.parent(&pend.path)?;
        let there = |dir| fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        let r = match fs::renameat_with(&hold_fd, held, dir, name, RenameFlags::NOREPLACE) {
            // Moved already (the kill came after it).
            Err(Errno::NOENT) if there(dir) => Ok(()),
            // No RENAME_NOREPLACE here (some file systems): the name was free at the create.
            Err(Errno::INVAL) => match there(dir) {
                true => Err(Errno::EXIST),
                false => fs::renameat(&hold_fd, held, dir, name),
            },
            // A mount point inside DEST on the way: copied to its name instead. (A kill during
            // the copy leaves the held file: the copy is made again.)
            Err(Errno::XDEV) => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let src = File::from(
                    fs::openat(&hold_fd, held, flags, Mode::empty())
                        .map_err(Problem::os("open the new file"))?,
                );
                fsutil::copy_file(&src, dir, name.as_bytes(), false)
                    .map_err(os("copying the new file to its name"))?;
                fs::unlinkat(&hold_fd, held, AtFlags::empty())
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
        let index = self.index;
        let leaf = format!("u{index}");
        let leaf = leaf.as_str();
        let (dir, name) = path::split_last(p);
        let name = OsStr::from_bytes(name);
        // The resolver and the session are distinct fields: both borrowed at once, no dup.
        let dir = self.res.dir(dir).map_err(resolve_problem)?;
        let Some(s) = &mut self.session else { return Err(Problem::os("")(Errno::NOENT)) };
        let shard = s.shard(index).map_err(Problem::os("making the holding directory"))?;
        let st = match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT)
                if replay && fs::statat(shard, leaf, AtFlags::SYMLINK_NOFOLLOW).is_ok() =>
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
        fsutil::drop_cache_of_removed(dir, name, &st);
        let r = fs::renameat_with(dir, name, shard, leaf, RenameFlags::empty());
        if is_dir {
            self.res.invalidate_beneath(p);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_beneath_takes_exactly_the_paths_beneath() {
        let all: [&[u8]; 9] =
            [b"a", b"a/b", b"a/b/c", b"a/\xff", b"a!x", b"a.b/c", b"a0", b"ab", b"b/a/c"];
        let mut set: BTreeSet<Vec<u8>> = all.iter().map(|p| p.to_vec()).collect();
        remove_beneath(&mut set, b"a");
        let left: Vec<&[u8]> = set.iter().map(|p| &p[..]).collect();
        let want: Vec<&[u8]> = vec![b"a", b"a!x", b"a.b/c", b"a0", b"ab", b"b/a/c"];
        assert_eq!(left, want);
        remove_beneath(&mut set, b"b");
        assert_eq!(set.len(), 5, "b/a/c is beneath b");
    }
}
