//! The journaled receive: an applier wrapped so that a kill at any byte can be resumed or rolled
//! back. [`Journaled`] owns the journal (`journal.rs`), the holding directory ([`holding`]) and
//! what was kept; it decides, for each record, what to write down first and how the applier
//! must apply it ([`How`]), and it rebuilds its state from the journal to continue an
//! interrupted receive.
//!
//! For each record, in this order: (1) the undo steps are gathered (old values, the name an
//! object will be kept under) and the origin bytes a change in place is about to overwrite are
//! kept; (2) a journal entry naming the record in flight and its undo steps is written; (3) the
//! record is applied. Most records have (1) and (2) done ahead, for many at once (`ahead.rs`).
//!
//! Changes from a plain receive:
//! - **unlink/rmdir** of an incremental move the object into the holding directory instead of
//!   destroying it ([`How::remove_into`]); an abort moves it back. The holding directory is
//!   removed only after DEST was synced and its state records the target (the commit point,
//!   [`Journaled::commit`], then [`Journaled::tidy`]): until then an abort finds everything it
//!   puts back; after, a cut leaves the removal to the next command (`leftover`). A file moved
//!   aside that no other name links loses its cached pages at once, as a plain unlink would
//!   free them: the receive's writes reuse that memory. So do the journal's and keep logs'
//!   pages once synced (`fsutil::sync_and_drop`).
//! - **Changed files** are written in place (hard links must keep pointing at the same inode),
//!   after the origin bytes each record will overwrite were kept (`kept.rs`), with the file's
//!   size and metadata. An abort writes them back, a resume applies the in-place writes again,
//!   which are idempotent. A file whose origin bytes were kept ahead stays open for its records
//!   (`Applier::keep_opened`), so keeping costs no extra open.
//! - **New files of a full receive** are written in the holding directory (`n<create index>`,
//!   [`How::create_in`]) and get their name (one `renameat2`) at the first record that is not
//!   part of their data, so no torn file ever sits at its final path; the create's journal
//!   entry names the held file (`Undo::New`), so a resume that stops inside its data continues
//!   it there. An incremental stream creates its new files in a run before their data
//!   (anysend's order), so holding them would only add a rename: there they are made at their
//!   name, where they can be seen partly written until the end record, like a file changed in
//!   place; their undo is their removal, and their metadata needs none.
//! - **Runs of records are journaled ahead**, so that a run costs one sync, not one per record
//!   (`ahead.rs`). Before a rename or removal is applied its undo must be on disk, and so must
//!   the kept origin bytes before a file is overwritten. Over the records already read (never
//!   waiting for more input) the undo of a whole run is written in one ahead entry and synced
//!   once: for a run of structural records (mkdir, create, symlink, mknod, link, unlink, rmdir,
//!   rename) their inverse operations and the times of the directories they change; for a run
//!   of records up to the next rename or removal, the origin byte ranges they will overwrite. A
//!   structural run ends before a record that names a path another record of the run names, or
//!   one beneath or above it: its undo computed now would name another object, and the inverse
//!   of a record that never ran must find nothing to act on.
//! - **Batches**: one entry names a batch of records in flight instead of one entry per record,
//!   where each record of the batch is harmless to apply again, in order, after any of them
//!   were applied, and the batch's undo is in its entry or on disk already: the creations,
//!   renames and removals of a structural run, or writes and metadata changes (their old values
//!   taken before the batch). After a kill, the whole batch is replayed.
//! - **DEST's own immutable or append-only flags** would refuse the holding directory and
//!   every entry made or removed in DEST's root: they are lifted for the whole receive, after
//!   the journal noted them, and set at the end to what the stream says ([`root`]).
//! - **Replay**: the records after the last checkpoint (`journal.rs`) may or may not have been
//!   applied, in any part after a power cut; a resume applies them again with "already done"
//!   accepted ([`How::again`]: mkdir of an existing directory, create of an existing regular
//!   file, emptied, a rename whose `from` is gone and `to` exists,
//!   a link that exists, an unlink of a missing name, a removal already moved aside, a
//!   remove_xattr of a missing name). Every other record is idempotent.

mod ahead;
pub mod holding;
mod kept;
mod paths;
pub mod root;
mod runs;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anysend_stream::{Class, Record};
use rustix::fd::BorrowedFd;
use rustix::fs::{self as fs, AtFlags, OFlags};
use rustix::io::Errno;

use crate::apply::{Applier, Done, How};
use crate::error::{Problem, RecvError, Warning};
use crate::fsutil;
use crate::journal::{self, Begin, Entry, Journal, Loaded, Undo};
use crate::ops::{self, ForFlags};
use crate::path;

use holding::Holding;
use kept::{Change, KeepLog, Keeper};
use paths::{Named, Tracked};

type Res = Result<(), Problem>;

/// An applier and, once the receive has begun changing DEST (unless it runs without a journal),
/// the journal that makes it resumable and abortable.
pub struct Journaled {
    applier: Applier,
    session: Option<Session>,
    /// What is left to tidy once the receive was committed.
    done: Option<Committed>,
}

/// A committed receive's leftovers in DEST ([`Journaled::tidy`]).
struct Committed {
    holding: Vec<u8>,
    root_flags: Option<u32>,
}

/// The journaling state of one receive.
struct Session {
    journal: Journal,
    holding: Holding,
    /// The holding directory's name in DEST.
    holding_name: Vec<u8>,
    /// Keep undo information (incremental receives; a full one is aborted by emptying DEST).
    undo: bool,
    kept: Keeper,
    /// Inodes this receive created (their content needs no keeping).
    created: HashSet<u64>,
    tracked: Tracked,
    /// Directories whose times were recorded.
    timed: HashSet<u64>,
    /// Records up to this one may have been applied already (those in flight at a kill).
    replay_upto: Option<u64>,
    /// Records whose entry the journal holds already (a batch, or those in flight at a kill).
    written: Range<u64>,
    /// Records whose undo an ahead entry holds already, synced (a structural run).
    ahead: Range<u64>,
    /// The last record index the undo runs ahead have looked at.
    looked_upto: Option<u64>,
    /// Data records whose origin ranges the last run kept ahead (nothing left to keep).
    kept_ahead: HashSet<u64>,
    /// The new file being written in the holding directory (full receives).
    pending: Option<Pending>,
    /// The end record's index, once it was read.
    end: Option<u64>,
    /// The paths the records applied since the last checkpoint named (incremental receives): a
    /// structural run that names one of them, or a path beneath or above one, starts with a
    /// checkpoint (`ahead.rs`).
    since: Named,
    /// The next structural run starts with a checkpoint whatever it names: the first of a
    /// receive (so that the holding directory is durable before anything is moved into it),
    /// and the first after a resume (what the replayed records named is not remembered).
    checkpoint_next_run: bool,
    /// DEST's own inode flags to set once the holding directory is gone, when DEST is immutable
    /// or append-only: those are lifted for the whole receive, after the journal says so
    /// ([`root`]).
    root_flags: Option<u32>,
}

/// A new file of a full receive, held until its data is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// Its name in DEST.
    path: Vec<u8>,
    /// Its name in the holding directory.
    hold: Vec<u8>,
}

impl Journaled {
    /// Applies records with `applier`, without a journal until [`Journaled::start`].
    pub fn new(applier: Applier) -> Journaled {
        Journaled { applier, session: None, done: None }
    }

    /// Starts journaling a fresh receive: the journal `jpath` is made holding only `begin`, and
    /// the holding directory in DEST (`dest`, for messages).
    pub fn start(&mut self, jpath: &Path, begin: &Begin, dest: &Path) -> Result<(), RecvError> {
        let mut journal = Journal::create(jpath, begin)
            .map_err(RecvError::state(jpath, "creating the journal"))?;
        let root = self.applier.root();
        let mut root_flags = None;
        root::hold(&mut journal, root, begin.first_record, &mut root_flags)
            .map_err(RecvError::dest(dest, LIFTING))?;
        let holding = Holding::open(root, &begin.holding)
            .map_err(RecvError::dest(dest, "making the holding directory"))?;
        let kept = Keeper::new(fsutil::reflink_keeps_layout(root));
        let undo = begin.origin.is_some();
        let mut s = Session::new(journal, holding, begin.holding.clone(), undo, kept);
        s.root_flags = root_flags;
        self.session = Some(s);
        Ok(())
    }

    /// Continues the interrupted receive whose journal `jpath` was read back as `loaded`: the
    /// records in flight are applied again, accepting "already done" (their entry is there
    /// already, unless the receive stopped before its first record's entry), with what was
    /// kept so far and the held new file whose data was being written.
    pub fn resume(
        applier: Applier,
        jpath: &Path,
        loaded: &Loaded,
        dest: &Path,
    ) -> Result<Journaled, RecvError> {
        let b = &loaded.begin;
        let mut journal = Journal::reopen(jpath, loaded)
            .map_err(RecvError::state(jpath, "opening the journal"))?;
        let root = applier.root();
        // DEST's flags as the journal's last root note says (lifted again if a kill came before
        // they were).
        let mut root_flags = root::noted(loaded);
        let in_flight = loaded.in_flight();
        root::hold(&mut journal, root, *in_flight.start(), &mut root_flags)
            .map_err(RecvError::dest(dest, LIFTING))?;
        let holding = Holding::open(root, &b.holding)
            .map_err(RecvError::dest(dest, "opening the holding directory"))?;
        let kept = Keeper::resumed(fsutil::reflink_keeps_layout(root), loaded);
        let undo = b.origin.is_some();
        let mut s = Session::new(journal, holding, b.holding.clone(), undo, kept);
        s.root_flags = root_flags;
        s.replay_upto = Some(loaded.replay_upto());
        if loaded.last_record().is_some() {
            s.written = *in_flight.start()..*in_flight.end() + 1;
        }
        let mut j = Journaled { applier, session: None, done: None };
        // A new file held before the records in flight (theirs are made again) whose held copy
        // is still there did not get its name: its data, or its move to its name, continues.
        let held = loaded.entries.iter().filter(|e| !e.ahead && e.upto < *in_flight.start());
        let last_new = held.flat_map(|e| &e.undo).rev().find_map(|u| match u {
            Undo::New { path, hold } => Some(Pending { path: path.clone(), hold: hold.clone() }),
            _ => None,
        });
        if let Some(pend) = last_new.filter(|p| s.holding.holds(&p.hold)) {
            let file = s
                .holding
                .open_file(&pend.hold, OFlags::RDWR, 0)
                .map_err(|e| RecvError::dest(dest, "opening the held new file")(e.into()))?;
            j.applier.hand_file(&pend.path, file);
            s.pending = Some(pend);
        }
        j.session = Some(s);
        Ok(j)
    }

    /// DEST's fd.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.applier.root()
    }

    /// The status of DEST's object at the checked path `path` (not following it).
    pub fn stat(&mut self, path: &[u8]) -> Result<fs::Stat, Problem> {
        self.applier.object(path)?.stat().map_err(Problem::os(""))
    }

    /// Whether record `index` passes the checks of `validate`.
    pub fn check(&self, index: u64, rec: &Record) -> Res {
        self.applier.check(index, rec)
    }

    /// Whether the record `index` is to be looked at with the records read after it
    /// ([`Journaled::log_ahead`]) before it is applied.
    pub fn needs_ahead(&self, index: u64) -> bool {
        self.session.as_ref().is_some_and(|s| {
            (s.undo && s.looked_upto.is_none_or(|k| k < index)) || !s.written.contains(&index)
        })
    }

    /// Looks at the records already read (`ahead`, in stream order from the one about to be
    /// applied, none applied yet), before the first of them is applied (`ahead.rs`).
    pub fn log_ahead<'r, I>(&mut self, ahead: I) -> Res
    where
        I: Iterator<Item = (u64, &'r Record)> + Clone,
    {
        match &mut self.session {
            Some(s) => s.log_ahead(&mut self.applier, ahead),
            None => Ok(()),
        }
    }

    /// Applies record `index`, journaled when a journal was started.
    pub fn apply(&mut self, index: u64, rec: &Record, warn: &mut dyn FnMut(&Warning)) -> Res {
        let Journaled { applier, session, .. } = self;
        let Some(s) = session else {
            return applier.apply(index, rec, &How::default(), warn).map(drop);
        };
        applier.check(index, rec)?;
        // A held new file whose data ends here gets its name first (the record may need it).
        s.materialize_unless(applier, rec.data_path())?;
        // Its entry is written already (a batch), or its undo is on disk (a structural run).
        let written = s.written.contains(&index);
        let ahead = written || s.ahead.contains(&index);
        let mut undo = if ahead { Vec::new() } else { s.prepare(applier, index, rec)? };
        if !written {
            undo.extend(s.new_mark(index, rec));
        }
        // Before a record changes an existing object (moves it, overwrites its origin bytes,
        // changes its metadata), its undo (and the kept bytes, synced when they were kept) must
        // survive a power loss: DEST's file system may commit the change before the journal's
        // write reaches the disk.
        let sync_first = !ahead && (rec.moves_paths() || !undo.is_empty());
        if !written {
            s.journal
                .append(&Entry::new(index, undo))
                .map_err(journal_err("writing the journal"))?;
        }
        if s.undo && sync_first {
            s.journal.sync().map_err(journal_err("syncing the journal"))?;
        }
        let origin = match rec {
            Record::CopyFromOrigin { path, .. } if s.undo => s.origin_copy(applier, path)?,
            _ => None,
        };
        let again = s.replay_upto.is_some_and(|m| index <= m);
        let mut how = How { again, origin: origin.as_ref(), ..How::default() };
        // What it removes (incremental) or makes (full) goes to the holding directory first.
        let held = match (rec.class(), rec, s.undo) {
            (Class::Remove, _, true) => holding::removed_name(index),
            (_, Record::Create { .. }, false) => holding::new_file_name(index),
            _ => Vec::new(),
        };
        if rec.class() == Class::Remove && s.undo {
            let making = Problem::os("making the holding directory");
            how.remove_into = Some(s.holding.removal(&held).map_err(making)?);
        } else if !held.is_empty() {
            how.create_in = Some(s.holding.place(&held));
        }
        // DEST's own flags stay lifted while the receive runs ([`root`]).
        let root_set = root::set_by(rec);
        if let Some(flags) = root_set {
            root::before_set(&mut s.journal, applier.root(), index, flags, &mut s.root_flags)
                .map_err(os(LIFTING))?;
        }
        let done = applier.apply(index, rec, &how, warn)?;
        if root_set.is_some() {
            root::after_set(&mut s.journal, applier.root(), index, &mut s.root_flags)
                .map_err(os(LIFTING))?;
        }
        if s.undo {
            strip_inherited_acls(applier, rec);
        }
        match (done, rec) {
            (Done::Created(ino), _) if s.undo => {
                s.created.insert(ino);
            }
            (Done::CreatedIn, Record::Create { path }) => {
                s.pending = Some(Pending { path: path.clone(), hold: held });
            }
            _ => {}
        }
        if s.undo {
            s.tracked.track(rec);
            let dir = rec.may_name_directory();
            for p in rec.paths() {
                s.since.add_copy(p, dir);
            }
        }
        if s.journal.checkpoint_due() {
            s.checkpoint(applier, index + 1)?;
        }
        Ok(())
    }

    /// The end record `index`: a held new file gets its name, and the journal its entry.
    pub fn finish(&mut self, index: u64) -> Res {
        let Some(s) = &mut self.session else { return Ok(()) };
        s.materialize_unless(&mut self.applier, None)?;
        if !s.written.contains(&index) {
            s.journal
                .append(&Entry::new(index, Vec::new()))
                .map_err(journal_err("writing the journal"))?;
        }
        s.end = Some(index);
        Ok(())
    }

    /// After the end record: every record applied is made durable (DEST's root flags noted as
    /// the stream leaves them), so that DEST may be recorded as holding the target. The holding
    /// directory stays until then: an abort of a receive cut before the state says so still
    /// finds everything it puts back. [`Journaled::tidy`] removes it afterwards.
    pub fn commit(&mut self, dest: &Path) -> Result<(), RecvError> {
        self.applier.close_file();
        let syncfs_err = |e: Errno| RecvError::dest(dest, "syncfs")(e.into());
        if let Some(mut s) = self.session.take() {
            // Held since the start, unless something set them since (noted then, and lifted).
            let end = s.end.unwrap_or_default();
            let mut root_flags = s.root_flags;
            root::hold(&mut s.journal, self.applier.root(), end, &mut root_flags)
                .map_err(RecvError::dest(dest, LIFTING))?;
            // Every record applied, made durable, and the journal says so: a resume after a cut
            // from here on only completes the receive.
            fs::syncfs(self.applier.root()).map_err(syncfs_err)?;
            let jpath = s.journal.path().to_path_buf();
            s.journal
                .append(&Entry::ahead(end + 1, vec![Undo::Durable { next: end + 1 }]))
                .and_then(|()| s.journal.sync())
                .map_err(RecvError::state(&jpath, "syncing the journal"))?;
            self.done = Some(Committed { holding: s.holding_name.clone(), root_flags });
            return Ok(());
        }
        fs::syncfs(self.applier.root()).map_err(syncfs_err)
    }

    /// The holding directory's name in DEST, while there is one (the names log leaves it out).
    pub fn holding_name(&self) -> Option<&[u8]> {
        match (&self.session, &self.done) {
            (Some(s), _) => Some(&s.holding_name),
            (None, Some(d)) => Some(&d.holding),
            _ => None,
        }
    }

    /// After DEST was recorded as holding the target: the holding directory goes, DEST's own
    /// flags are set as the stream leaves them, and that is made durable before the journal,
    /// which names the holding directory, may go (a cut in between leaves both for the next
    /// command to settle, see `leftover`).
    pub fn tidy(&mut self, dest: &Path) -> Result<(), RecvError> {
        let Some(d) = self.done.take() else { return Ok(()) };
        holding::remove(self.applier.root(), &d.holding)
            .map_err(RecvError::dest(dest, "removing the holding directory"))?;
        if let Some(flags) = d.root_flags {
            root::set(self.applier.root(), flags)
                .map_err(RecvError::dest(dest, "setting DEST's flags again"))?;
        }
        fs::syncfs(self.applier.root()).map_err(|e| RecvError::dest(dest, "syncfs")(e.into()))
    }

    /// The receive stopped with record `next` not (completely) applied: the journal says so
    /// (narrowed to that record, also inside a batch in flight) and is made durable, as far as
    /// that can be done (the error being reported matters more). Returns the record a resume
    /// continues at.
    pub fn stopped(&mut self, next: u64) -> u64 {
        let Some(s) = &mut self.session else { return next };
        let path = s.journal.path().to_path_buf();
        let in_flight = journal::load(&path).ok().flatten().map(|l| l.in_flight());
        if in_flight.is_some_and(|l| *l.start() <= next && l != (next..=next)) {
            let _ = s.journal.append(&Entry::new(next, vec![]));
        }
        // Everything before `next` was applied: made durable, a checkpoint says so, and a
        // resume continues at `next` rather than at the last checkpoint before it.
        if fs::syncfs(self.applier.root()).is_ok() {
            let _ = s.journal.append(&Entry::ahead(next, vec![Undo::Durable { next }]));
        }
        let _ = s.journal.sync();
        journal::load(&path).ok().flatten().map_or(next, |l| l.next_record())
    }

    /// The receive stopped before anything was applied: the journal and the holding directory
    /// go, so that DEST is as it was (best effort).
    pub fn discard(&mut self) {
        let Some(s) = self.session.take() else { return };
        let (name, path) = (s.holding_name.clone(), s.journal.path().to_path_buf());
        let root_flags = s.root_flags;
        drop(s);
        let _ = holding::remove(self.applier.root(), &name);
        // Nothing was applied: DEST's root gets back the flags it had.
        if let Some(flags) = root_flags {
            let _ = root::set(self.applier.root(), flags);
        }
        let _ = std::fs::remove_file(path);
    }
}

impl Session {
    fn new(journal: Journal, holding: Holding, name: Vec<u8>, undo: bool, kept: Keeper) -> Self {
        Session {
            journal,
            holding,
            holding_name: name,
            undo,
            kept,
            created: HashSet::new(),
            tracked: Tracked::default(),
            timed: HashSet::new(),
            replay_upto: None,
            written: 0..0,
            ahead: 0..0,
            looked_upto: None,
            kept_ahead: HashSet::new(),
            pending: None,
            end: None,
            since: Named::default(),
            checkpoint_next_run: true,
            root_flags: None,
        }
    }

    /// A checkpoint: DEST synced with every record before `next` applied, then the journal
    /// says so (a `Durable` step) and is synced. A resume after a power cut starts from the
    /// last one: what DEST held of later records may be lost in any part.
    fn checkpoint(&mut self, applier: &mut Applier, next: u64) -> Res {
        let started = std::time::Instant::now();
        fs::syncfs(applier.root()).map_err(Problem::os("syncfs"))?;
        self.journal
            .append(&Entry::ahead(next, vec![Undo::Durable { next }]))
            .map_err(journal_err("writing the journal"))?;
        self.journal.sync().map_err(journal_err("syncing the journal"))?;
        self.journal.checkpointed(started.elapsed());
        self.since.clear();
        Ok(())
    }

    /// The journal's mark of the new file the create `index` holds, if it holds one.
    fn new_mark(&self, index: u64, rec: &Record) -> Option<Undo> {
        match rec {
            Record::Create { path } if !self.undo => {
                Some(Undo::New { path: path.clone(), hold: holding::new_file_name(index) })
            }
            _ => None,
        }
    }

    /// Undo steps of `rec`, and the copies that must exist before it is applied.
    fn prepare(
        &mut self,
        applier: &mut Applier,
        index: u64,
        rec: &Record,
    ) -> Result<Vec<Undo>, Problem> {
        let mut u = Vec::new();
        if !self.undo || self.tracked.undone_already(rec) {
            return Ok(u);
        }
        match (rec.class(), rec) {
            (Class::Make | Class::Remove | Class::Rename, _) => {
                for p in rec.entries_changed() {
                    self.dir_times(applier, p, &mut u)?;
                }
                u.extend(structural_undo(index, rec));
            }
            (Class::Data, _) => {
                if self.kept_ahead.contains(&index) {
                    return Ok(u);
                }
                if let Some((path, start, end)) = rec.changed_range() {
                    let mut log = KeepLog::new(holding::keep_log_name('r', index));
                    let file = applier.data_file(path)?.try_clone().map_err(os("dup"))?;
                    let st = fs::fstat(&file).map_err(Problem::os("fstat"))?;
                    let c = Change { path, file: &file, st: &st, start, end };
                    self.keep_ranges(&c, &mut log, &mut u)?;
                    log.sync()?;
                }
            }
            (_, Record::SetXattr { path, name, .. } | Record::RemoveXattr { path, name }) => {
                let value = applier
                    .object(path)?
                    .xattr(OsStr::from_bytes(name))
                    .map_err(Problem::os("getxattr"))?;
                u.push(Undo::Xattr { path: path.clone(), name: name.clone(), value });
            }
            (_, Record::Chmod { path, .. }) => {
                let st = applier.object(path)?.stat().map_err(Problem::os("stat"))?;
                u.push(Undo::Mode { path: path.clone(), mode: st.st_mode & 0o7777 });
            }
            (_, Record::Chown { path, .. }) => {
                let st = applier.object(path)?.stat().map_err(Problem::os("stat"))?;
                // A chown clears setuid and setgid: the mode is put back after the owner (steps
                // are undone in reverse).
                if st.st_mode & 0o6000 != 0 {
                    u.push(Undo::Mode { path: path.clone(), mode: st.st_mode & 0o7777 });
                }
                u.push(Undo::Owner { path: path.clone(), uid: st.st_uid, gid: st.st_gid });
            }
            (_, Record::Utimes { path, .. }) => {
                let st = applier.object(path)?.stat().map_err(Problem::os("stat"))?;
                let (atime, mtime) = fsutil::times(&st);
                u.push(Undo::Times { path: path.clone(), atime, mtime });
            }
            (_, Record::SetFlags { path, .. }) => {
                if let ForFlags::Fd(fd) =
                    applier.object(path)?.for_flags().map_err(Problem::os("open"))?
                {
                    if let Ok(flags) = fs::ioctl_getflags(&fd) {
                        u.push(Undo::Flags { path: path.clone(), flags: flags.bits() });
                    }
                }
            }
            _ => {}
        }
        Ok(u)
    }

    /// Records the times of the directory holding `p`, the first time it changes.
    fn dir_times(&mut self, applier: &mut Applier, p: &[u8], u: &mut Vec<Undo>) -> Res {
        let (dir, _) = path::split_last(p);
        let (fd, ino, fresh) = applier.dir_ino(dir)?;
        if self.timed.insert(ino) {
            let st = match fresh {
                Some(st) => st,
                None => fs::fstat(fd).map_err(Problem::os("fstat"))?,
            };
            let (atime, mtime) = fsutil::times(&st);
            u.push(Undo::Times { path: dir.to_vec(), atime, mtime });
            if self.undo {
                self.tracked.times_kept.insert(dir.to_vec());
            }
        }
        Ok(())
    }

    /// Keeps aside the origin bytes the change `c` overwrites, unless this receive made the
    /// file.
    fn keep_ranges(&mut self, c: &Change<'_>, log: &mut KeepLog, u: &mut Vec<Undo>) -> Res {
        if self.created.contains(&c.st.st_ino) {
            return Ok(());
        }
        if self.kept.keep(&self.holding, c, log, u)? {
            self.tracked.meta_kept.insert(c.path.to_vec());
        }
        Ok(())
    }

    /// The origin version of the file at `p`, if its content was changed already (for
    /// copy_from_origin).
    fn origin_copy(&mut self, applier: &mut Applier, p: &[u8]) -> Result<Option<File>, Problem> {
        let file = applier.data_file(p)?;
        self.kept.origin_copy(&self.holding, file, self.journal.path())
    }

    /// Gives the held new file its name, unless `data_path` continues its data. Applied again,
    /// it may have its name already.
    fn materialize_unless(&mut self, applier: &mut Applier, data_path: Option<&[u8]>) -> Res {
        let Some(pend) = &self.pending else { return Ok(()) };
        if data_path == Some(pend.path.as_slice()) {
            return Ok(());
        }
        applier.close_file();
        let held = OsStr::from_bytes(&pend.hold);
        let hold = self.holding.fd();
        let (dir, name) = applier.parent(&pend.path)?;
        let r = match ops::rename_noreplace(hold, held, dir, name) {
            // Moved already (the kill came after it).
            Err(Errno::NOENT) if fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() => Ok(()),
            // A mount point inside DEST on the way: copied to its name instead. (A kill during
            // the copy leaves the held file: the copy is made again.)
            Err(Errno::XDEV) => {
                let src = self
                    .holding
                    .open_file(&pend.hold, OFlags::RDONLY, 0)
                    .map_err(Problem::os("open the new file"))?;
                fsutil::copy_file(&src, dir, name.as_bytes(), false)
                    .map_err(os("copying the new file to its name"))?;
                fs::unlinkat(hold, held, AtFlags::empty())
            }
            r => r,
        };
        r.map_err(Problem::os("moving the new file to its name"))?;
        self.pending = None;
        Ok(())
    }
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
            Undo::Restore { hold: holding::removed_name(index), path: path.clone() }
        }
        Rename { from, to } => Undo::Rename { from: from.clone(), to: to.clone() },
        _ => return None,
    })
}

/// An object an incremental makes inside a directory with a default ACL inherits an access
/// ACL (a directory also the default one) that the target's object need not have: it got there
/// by other means (made elsewhere and moved in, say). The stream sets the ACLs the target's
/// object has after making it, so whatever was inherited goes first (best effort: most
/// directories have no default ACL, and a file system without ACLs refuses the removal).
fn strip_inherited_acls(applier: &mut Applier, rec: &Record) {
    let (path, dir) = match rec {
        Record::Create { path } | Record::Mknod { path, .. } => (path, false),
        Record::Mkdir { path } => (path, true),
        _ => return,
    };
    let names: &[&str] = match dir {
        true => &["system.posix_acl_access", "system.posix_acl_default"],
        false => &["system.posix_acl_access"],
    };
    for name in names {
        if let Ok(obj) = applier.object(path) {
            let _ = obj.remove_xattr(OsStr::new(name));
        }
    }
}

/// The step named when DEST's own immutable or append-only flags cannot be lifted.
const LIFTING: &str = "lifting DEST's immutable or append-only flag";

/// A failure to write or sync the journal (in the state directory), for `map_err`.
pub(crate) fn journal_err(step: &'static str) -> impl FnOnce(std::io::Error) -> Problem {
    move |source| Problem::Journal { step, source }
}

fn os(step: &'static str) -> impl FnOnce(std::io::Error) -> Problem {
    Problem::io(step)
}
