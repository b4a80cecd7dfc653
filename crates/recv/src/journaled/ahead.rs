//! Journaling ahead: over the records already read and not applied yet, the undo of a whole run
//! is written in one entry made durable once (instead of one sync per record), and one entry
//! may name a batch of records in flight (instead of one entry per record). See the module doc
//! of `journaled` ("Runs of records are journaled ahead", "Batches").

use std::collections::HashSet;

use anysend_stream::{Class, Record};

use crate::apply::Applier;
use crate::error::Problem;
use crate::fsutil;
use crate::journal::{Entry, Undo};
use crate::path;
use rustix::fs;
use std::os::fd::AsFd;

use super::holding;
use super::kept::{Change, KeepLog};
use super::paths::Named;
use super::{journal_err, structural_undo, Res, Session};

/// The two kinds of batches of records in flight (`Session::batch_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Structure,
    Content,
}

impl Session {
    /// Looks at the records already read (`ahead`, in stream order from the one about to be
    /// applied, none applied yet), before the first of them is applied:
    /// - an incremental writes ahead, in one journal entry synced once, the undo of the run
    ///   that starts there (a structural run, or the origin ranges of a run up to the next
    ///   rename or removal);
    /// - then one entry may name a batch of records in flight (`open_batch`).
    pub(super) fn log_ahead<'r, I>(&mut self, applier: &mut Applier, ahead: I) -> Res
    where
        I: Iterator<Item = (u64, &'r Record)> + Clone,
    {
        let Some((index, rec)) = ahead.clone().next() else { return Ok(()) };
        // Only records that would be applied: a run ends before one that would be refused.
        if self.undo && self.looked_upto.is_none_or(|k| k < index) {
            let last = if applier.check(index, rec).is_err() {
                None
            } else if rec.is_structural() {
                self.structure_ahead(applier, ahead.clone())?
            } else {
                self.keep_ahead(applier, ahead.clone())?
            };
            self.looked_upto = Some(last.unwrap_or(index));
        }
        if !self.written.contains(&index) {
            self.open_batch(applier, ahead)?;
        }
        Ok(())
    }

    /// Writes one entry for a batch of records in flight, from the first of `ahead` on, when
    /// there are two or more (see `batch_kind`); their own entries are then left out. After a
    /// kill, a resume applies the whole batch again in replay mode.
    fn open_batch<'r>(
        &mut self,
        applier: &mut Applier,
        mut ahead: impl Iterator<Item = (u64, &'r Record)>,
    ) -> Res {
        let Some((first, rec)) = ahead.next() else { return Ok(()) };
        let Some(kind) = self.batch_kind(applier, first, rec) else { return Ok(()) };
        let mut undo = Vec::new();
        if !self.batch_undo(applier, first, rec, &mut undo) {
            return Ok(());
        }
        let mut last = first;
        for (index, rec) in ahead {
            if self.batch_kind(applier, index, rec) != Some(kind)
                || !self.batch_undo(applier, index, rec, &mut undo)
            {
                break;
            }
            last = index;
        }
        if last == first && undo.is_empty() {
            return Ok(());
        }
        // The old values of the batch's metadata changes must be on disk before any of those
        // changes can be: a power cut may keep a change DEST's file system committed while
        // taking the journal's unsynced entry, and an abort would then miss its undo.
        let sync = self.undo && !undo.is_empty();
        let entry = Entry::batch(first, last, undo);
        self.journal.append(&entry).map_err(journal_err("writing the journal"))?;
        if sync {
            self.journal.sync().map_err(journal_err("syncing the journal"))?;
        }
        self.written = first..last + 1;
        Ok(())
    }

    /// Adds the undo of a metadata record of an older object to a batch's; false when it cannot
    /// be had now (the record then gets its own entry, and its own error). Metadata undo steps
    /// are old values, all taken before the batch is applied: where two records of a batch set
    /// one attribute of one object, the earlier one's step holds the origin value and is undone
    /// last. Other records of a batch have their undo on disk already, or need none.
    fn batch_undo(
        &mut self,
        applier: &mut Applier,
        index: u64,
        rec: &Record,
        undo: &mut Vec<Undo>,
    ) -> bool {
        if let Some(mark) = self.new_mark(index, rec) {
            undo.push(mark);
            return true;
        }
        if !batched_meta(rec) {
            return true;
        }
        match self.prepare(applier, index, rec) {
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
    fn batch_kind(&self, applier: &Applier, index: u64, rec: &Record) -> Option<BatchKind> {
        if applier.check(index, rec).is_err() {
            return None;
        }
        let (kind, ready) = match rec.class() {
            Class::Make => (BatchKind::Structure, !self.undo || self.ahead.contains(&index)),
            Class::Remove | Class::Rename => {
                (BatchKind::Structure, self.undo && self.ahead.contains(&index))
            }
            Class::Data if !matches!(rec, Record::CopyFromOrigin { .. }) => {
                (BatchKind::Content, !self.undo || self.kept_ahead.contains(&index))
            }
            // (Their undo, if any, goes into the batch's entry: `batch_undo`.)
            Class::Meta if batched_meta(rec) => (BatchKind::Content, true),
            Class::Data | Class::Meta | Class::End | Class::Check => return None,
        };
        ready.then_some(kind)
    }

    /// The undo of a run of structural records, written ahead; the run ends before a record
    /// that is not structural, names a path that an earlier record of the run names (or a path
    /// beneath or above one), or whose parent directories do not resolve now (it gets its own
    /// entry, and its own error if it fails). So the undo computed now is the undo of each
    /// record when it is applied, the inverse of a record that never ran finds nothing to act
    /// on, and the run can be a batch (`batch_kind`). Returns the last index looked at.
    fn structure_ahead<'r>(
        &mut self,
        applier: &mut Applier,
        ahead: impl Iterator<Item = (u64, &'r Record)>,
    ) -> Result<Option<u64>, Problem> {
        let mut first = None;
        let mut named: Named<&[u8]> = Named::default();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut u = Vec::new();
        let mut last = None;
        for (index, rec) in ahead {
            if !rec.is_structural() || applier.check(index, rec).is_err() {
                break;
            }
            let paths = rec.paths();
            let dir = rec.may_name_directory();
            if paths.clone().any(|p| named.conflicts(p, dir)) {
                break;
            }
            // Their parent directories must resolve now (else the record gets its own entry,
            // and its own error); each is looked at once per run, since no record of the run
            // changes what a parent path of another names.
            let mut parents = paths.clone().map(|p| path::split_last(p).0);
            if parents.any(|d| !seen.contains(d) && !applier.resolves(d)) {
                break;
            }
            // The times of the directories whose entries it changes.
            for p in rec.entries_changed() {
                if seen.insert(path::split_last(p).0) {
                    self.dir_times(applier, p, &mut u)?;
                }
            }
            u.extend(structural_undo(index, rec));
            for p in paths {
                named.add(p, dir);
            }
            first.get_or_insert(index);
            last = Some(index);
        }
        let (Some(first), Some(end)) = (first, last) else { return Ok(None) };
        // After a power cut a resume replays every record from the last checkpoint, and the
        // replay is right when no structural record among them names a path that another
        // record among them names (or one beneath or above it): then each creation, rename and
        // removal finds its own object or nothing, as within one run. So a run starts at a
        // checkpoint (DEST synced with every record before it, and the run's entry says so)
        // only when it names a path that a record applied since the last checkpoint named, or
        // when those are too many to remember; otherwise its records extend the last
        // checkpoint's replay as one longer run would. An abort finds what was applied since on
        // disk or not at all, each undo step acting on its own object only. The run's undo is
        // durable before any of it is applied, creations' too (an abort must not miss a name a
        // cut kept).
        let checkpoint = self.checkpoint_next_run
            || self.since.len() > NAMED_SINCE_MAX
            || named_conflicts(&self.since, &named);
        let started = std::time::Instant::now();
        if checkpoint {
            fs::syncfs(applier.root()).map_err(Problem::os("syncfs"))?;
            u.insert(0, Undo::Durable { next: first });
        }
        let entry = Entry::ahead(first, u);
        self.journal.append(&entry).map_err(journal_err("writing the journal"))?;
        self.journal.sync().map_err(journal_err("syncing the journal"))?;
        if checkpoint {
            self.journal.checkpointed(started.elapsed());
            self.since.clear();
            self.checkpoint_next_run = false;
        }
        self.ahead = first..end + 1;
        Ok(last)
    }

    /// Keeps aside, in one keep log and one journal entry made durable together, the origin
    /// ranges that the records ahead (`ahead`, in stream order, none applied yet) will change,
    /// up to the first record that moves a path. Records it cannot look at now (a file made by
    /// a record before it, say) are kept when they are applied. Returns the last index looked at.
    fn keep_ahead<'r>(
        &mut self,
        applier: &mut Applier,
        ahead: impl Iterator<Item = (u64, &'r Record)> + Clone,
    ) -> Result<Option<u64>, Problem> {
        let Some((first, _)) = ahead.clone().next() else { return Ok(None) };
        applier.drop_opened();
        self.read_soon(applier, ahead.clone());
        let mut log = KeepLog::new(holding::keep_log_name('k', first));
        let mut u = Vec::new();
        let mut last = None;
        let mut made: HashSet<&[u8]> = HashSet::new();
        // Data records whose ranges this run keeps (none left to keep when they are applied).
        let mut handled = Vec::new();
        let mut current: Option<(&[u8], std::fs::File, rustix::fs::Stat)> = None;
        for (index, rec) in ahead {
            if rec.moves_paths() || applier.check(index, rec).is_err() {
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
            let Some((path, start, end)) = rec.changed_range() else { continue };
            if made.contains(path) {
                continue;
            }
            // A file this receive made has no origin bytes.
            if self.tracked.new_files.contains(path) {
                handled.push(index);
                continue;
            }
            // Opened for writing, as its records will (the same checks), and left for them:
            // several records of one file, and applying them, take one open. One it cannot open
            // now is kept when its record is applied. The file of the last record is held here
            // while records of the same file follow (scattered writes: most do).
            if !matches!(&current, Some((p, _, _)) if *p == path) {
                if let Some((p, file, st)) = current.take() {
                    applier.keep_opened(p, file, st);
                }
                current = match applier.opened_ahead(path) {
                    Some((file, st)) => Some((path, file, st)),
                    None => match applier.open_regular(path) {
                        Ok((file, st)) => Some((path, file, st)),
                        Err(_) => continue,
                    },
                };
            }
            let Some((_, file, st)) = &current else { continue };
            self.keep_ranges(&Change { path, file, st, start, end }, &mut log, &mut u)?;
            handled.push(index);
        }
        if let Some((p, file, st)) = current.take() {
            applier.keep_opened(p, file, st);
        }
        self.kept_ahead.clear();
        if !u.is_empty() {
            log.sync()?;
            let entry = Entry::ahead(first, u);
            self.journal.append(&entry).map_err(journal_err("writing the journal"))?;
            self.journal.sync().map_err(journal_err("syncing the journal"))?;
        }
        self.kept_ahead.extend(handled);
        Ok(last)
    }
}

impl Session {
    /// Before a keep run reads the origin bytes its records will overwrite, one file after
    /// another: the reads of all of them are started at once (`fsutil::read_soon`), and the
    /// files opened for it are held for the run (`Applier::keep_opened`), as the run would open
    /// them. Where those bytes are not cached (a replica's files are seldom read), each read
    /// would otherwise wait for the disk in turn: that wait, once per changed file, was most of
    /// what the journal added to an incremental receive. Stops where the run stops.
    fn read_soon<'r>(&self, applier: &mut Applier, ahead: impl Iterator<Item = (u64, &'r Record)>) {
        let mut made: HashSet<&[u8]> = HashSet::new();
        let mut last: Option<&[u8]> = None;
        for (index, rec) in ahead {
            if rec.moves_paths() || applier.check(index, rec).is_err() {
                break;
            }
            if let Record::Create { path } | Record::Link { path, .. } = rec {
                made.insert(path);
                continue;
            }
            let Some((path, start, end)) = rec.changed_range() else { continue };
            if made.contains(path) || self.tracked.new_files.contains(path) {
                continue;
            }
            let opened = match applier.opened_ahead(path) {
                Some(o) => Some(o),
                None if last != Some(path) => applier.open_regular(path).ok(),
                None => None,
            };
            last = Some(path);
            if let Some((file, st)) = opened {
                if !self.created.contains(&st.st_ino) {
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    fsutil::read_soon(file.as_fd(), start, end, size);
                }
                applier.keep_opened(path, file, st);
            }
        }
    }
}

/// How many paths applied records may name between two checkpoints before the next structural
/// run makes one anyway (memory, and the time to look a run's paths up).
const NAMED_SINCE_MAX: usize = 65_536;

/// Whether a path of the run (`run`) is, is beneath or is above a path named since the last
/// checkpoint (`since`).
fn named_conflicts(since: &Named, run: &Named<&[u8]>) -> bool {
    run.iter().any(|(p, dir)| since.conflicts(p, dir))
}

/// Metadata records that may be in a content batch (flags never are).
fn batched_meta(rec: &Record) -> bool {
    rec.class() == Class::Meta && !matches!(rec, Record::SetFlags { .. })
}
