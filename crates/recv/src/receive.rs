//! The receive as a whole: header, base check, records in order, end record, sync, state.
//!
//! The order is the contract of STREAM_FORMAT.md section 8 plus the base check: nothing touches
//! DEST before the header is verified and the base check passed; each record is applied only
//! after the reader verified it (checksum, fields) and `validate.rs` accepted it; the state
//! records the new target only after the end record verified, nothing followed it, and DEST was
//! synced. A dry run walks the same path with the applier left out, so it refuses what a real
//! receive would refuse for the stream's own content.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anysend_stream::{Id, Record, ResumePoint, StreamHeader, StreamReader};
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};

use crate::apply::Applier;
use crate::config::Config;
use crate::error::{Problem, RecordError, RecvError, Warning};
use crate::fsutil;
use crate::journal::{self, Begin, Journal, RootMeta, Undo};
use crate::journaled;
use crate::state::{self, DestInfo, DestKind, Refusal, State, Verdict};
use crate::validate;

/// What a receive or a dry run did.
#[derive(Debug)]
pub struct Summary {
    pub header: StreamHeader,
    /// Records read, the end record included.
    pub records: u64,
    /// Stream bytes read.
    pub bytes: u64,
    /// Records applied (0 in a dry run).
    pub applied: u64,
    /// The base check's answer; `None` in a dry run whose DEST does not exist.
    pub verdict: Option<Verdict>,
    /// DEST's canonical path, when it exists (or was created).
    pub dest: Option<PathBuf>,
    /// The state file of DEST (written unless dry run).
    pub state_file: Option<PathBuf>,
}

/// Where a receive is: given after each record applied (for `anyrecv --progress`).
#[derive(Debug, Clone, Copy)]
pub struct Tick<'a> {
    /// Index of the record just applied.
    pub index: u64,
    /// Stream bytes read so far.
    pub offset: u64,
    /// The record's path (empty for the root).
    pub path: &'a [u8],
}

/// Receives one stream into `cfg.dest` (or, with `cfg.dry_run`, only checks it).
pub fn receive<R: Read>(
    cfg: &Config,
    input: R,
    warn: &mut dyn FnMut(&Warning),
) -> Result<Summary, RecvError> {
    receive_with_progress(cfg, input, warn, &mut |_| {})
}

/// [`receive`], telling `tick` where it is after each record applied.
pub fn receive_with_progress<R: Read>(
    cfg: &Config,
    input: R,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let input = Lookahead::new(input);
    let peek = input.clone_handle();
    let reader = StreamReader::new(input)?;
    let header = reader.header().clone();
    if cfg.dry_run {
        return dry_run(cfg, reader, header);
    }
    if cfg.atomic || crate::atomic::interrupted_staging(cfg).is_some() {
        return crate::atomic::receive(cfg, reader, header, peek, warn, tick);
    }
    receive_reader(cfg, reader, header, peek, warn, tick)
}

/// A receive into `cfg.dest` of the stream whose header was read.
pub(crate) fn receive_reader<R: Read>(
    cfg: &Config,
    reader: StreamReader<Lookahead<R>>,
    header: StreamHeader,
    peek: Peek,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(dest_err(&cfg.dest, "anyrecv needs /proc mounted")(io::Error::from(
            io::ErrorKind::NotFound,
        )));
    }
    let (canonical, exists) = locate(&cfg.dest)?;
    let shown = state::show(&canonical);
    let state_path = state::state_file(&cfg.state_dir, &canonical);
    state::create_dir(&cfg.state_dir).map_err(|source| RecvError::State {
        path: cfg.state_dir.clone(),
        step: "creating the state directory",
        source,
    })?;
    let _lock = state::lock(&state_path, &shown).map_err(state_err(&state_path, "locking"))??;
    let old_state = state::load(&state_path).map_err(state_err(&state_path, "reading"))?;
    let jpath = journal::journal_file(&state_path);
    let mut loaded = journal::load(&jpath).map_err(state_err(&jpath, "reading the journal"))?;
    let partial = old_state.as_ref().and_then(|s| s.partial.clone());
    if partial.is_none() && loaded.is_some() {
        // Left by a receive that completed (killed between saving the state and removing it).
        let _ = fs::remove_file(&jpath);
        loaded = None;
    }
    let loaded = loaded.filter(|l| partial.as_ref().is_some_and(|p| p.stream == l.begin.stream));

    // A resume: the stream DEST's journal names, from the record in flight. (A stream from
    // record 0 is a resumed stream at 0 too, when nothing was applied yet.)
    let r = header.resume;
    let resume = match &loaded {
        Some(l) if l.begin.stream == header.stream_id && r.first_record == l.next_record() => {
            if r.data_offset != 0 {
                return Err(Refusal::ResumeMismatch {
                    dest: shown,
                    stream: header.stream_id,
                    first_record: r.first_record,
                    data_offset: r.data_offset,
                    have: Some((l.begin.stream, l.next_record())),
                }
                .into());
            }
            true
        }
        _ if r != ResumePoint::default() => {
            return Err(Refusal::ResumeMismatch {
                dest: shown,
                stream: header.stream_id,
                first_record: r.first_record,
                data_offset: r.data_offset,
                have: loaded.as_ref().map(|l| (l.begin.stream, l.next_record())),
            }
            .into());
        }
        _ => false,
    };
    if resume {
        // `resume` implies a journal, and a journal exists only beside a state.
        let (Some(loaded), Some(old_state)) = (loaded, old_state) else {
            return Err(RecvError::Unsupported("a resume without its journal and state"));
        };
        return continue_receive(
            cfg, reader, header, canonical, state_path, old_state, loaded, peek, warn, tick,
        );
    }

    let root = if exists { Some(open_dir(&canonical)?) } else { None };
    let info = dest_info(&canonical, root.as_ref(), &state_path)?;
    let verdict = state::check_base(&header, &shown, &info, old_state.as_ref(), cfg.force)?;
    if let Verdict::Forced(r) = &verdict {
        warn(&Warning::Forced(r.to_string()));
    }
    let dest_created = root.is_none();
    let root = match root {
        Some(fd) => fd,
        None => {
            fs::DirBuilder::new()
                .create(&canonical)
                .map_err(dest_err(&canonical, "creating the directory"))?;
            open_dir(&canonical)?
        }
    };
    if let Some(l) = &loaded {
        // --force over an interrupted receive: its journal and holding directory go.
        let _ = journaled::remove_holding(root.as_fd(), &l.begin.holding);
        let _ = fs::remove_file(&jpath);
    }
    let st = rustix::fs::fstat(&root).map_err(|e| dest_err(&canonical, "fstat")(e.into()))?;
    let identity = (st.st_dev, st.st_ino);
    // A full stream makes DEST anew: nothing of an earlier state still describes it.
    let old_state_copy = old_state.clone();
    let new_state = match (&verdict, old_state) {
        (Verdict::Full, _) | (_, None) => State::new(&canonical, identity),
        (_, Some(mut s)) => {
            (s.dest_device, s.dest_inode) = identity;
            s.dest = State::new(&canonical, identity).dest;
            s
        }
    };
    let (atime, mtime) = fsutil::times(&st);
    let begin = Begin {
        stream: header.stream_id,
        origin: header.origin,
        target: header.target,
        first_record: header.resume.first_record,
        dest_created,
        root: RootMeta { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, atime, mtime },
        holding: holding_name(&header.stream_id),
    };

    let applier = Applier::new(root, cfg.policy);
    let progress = Progress {
        peek: peek.clone(),
        path: state_path.clone(),
        jpath,
        before: old_state_copy,
        state: new_state,
        begun: false,
        resumed: false,
        applied: 0,
        begin: Some(begin),
        no_journal: cfg.no_journal,
    };
    run_records(&canonical, reader, header, verdict, applier, progress, 0, warn, tick)
}

/// Continues DEST's interrupted receive with the stream that names it.
#[allow(clippy::too_many_arguments)]
fn continue_receive<R: Read>(
    cfg: &Config,
    reader: StreamReader<R>,
    header: StreamHeader,
    canonical: PathBuf,
    state_path: PathBuf,
    old_state: State,
    loaded: journal::Loaded,
    peek: Peek,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let b = &loaded.begin;
    let root = match fs::metadata(&canonical) {
        Ok(_) => open_dir(&canonical)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound && b.dest_created => {
            fs::DirBuilder::new()
                .create(&canonical)
                .map_err(dest_err(&canonical, "creating the directory"))?;
            open_dir(&canonical)?
        }
        Err(e) => return Err(dest_err(&canonical, "stat")(e)),
    };
    let st = rustix::fs::fstat(&root).map_err(|e| dest_err(&canonical, "fstat")(e.into()))?;
    let mut state = old_state.clone();
    if (state.dest_device, state.dest_inode) != (st.st_dev, st.st_ino) {
        if !cfg.force {
            return Err(Refusal::Replaced {
                dest: state::show(&canonical),
                state_file: state_path.clone(),
                was: (state.dest_device, state.dest_inode),
                now: (st.st_dev, st.st_ino),
            }
            .into());
        }
        (state.dest_device, state.dest_inode) = (st.st_dev, st.st_ino);
    }
    let jpath = journal::journal_file(&state_path);
    let journal =
        Journal::reopen(&jpath, &loaded).map_err(state_err(&jpath, "opening the journal"))?;
    let hold_fd = journaled::open_holding(root.as_fd(), &b.holding)
        .map_err(dest_err(&canonical, "opening the holding directory"))?;
    let reflink = fsutil::reflink_keeps_layout(root.as_fd());
    let mut session = journaled::Session::new(journal, hold_fd, b.origin.is_some(), reflink);
    // The records in flight are applied again, accepting "already done"; their entry is there
    // already (unless the receive stopped before its first record's entry).
    let in_flight = loaded.in_flight();
    session.replay_upto = Some(*in_flight.end());
    if loaded.last_record().is_some() {
        session.written = *in_flight.start()..*in_flight.end() + 1;
    }
    // The origin ranges kept so far.
    for e in &loaded.entries {
        for u in &e.undo {
            match u {
                Undo::KeepMeta { ino, size, .. } => {
                    session.kept.entry(*ino).or_default().size = *size;
                }
                Undo::Range { ino, off, len, hold, at, .. } => {
                    let src = match hold.is_empty() {
                        true => journaled::Source::Hole,
                        false => journaled::Source::Log { name: hold.clone(), at: *at },
                    };
                    session.kept.entry(*ino).or_default().add(*off, *len, src);
                }
                Undo::Bytes { ino, off, data, .. } => {
                    session.inline_left = session.inline_left.saturating_sub(data.len() as u64);
                    let src = journaled::Source::Journal;
                    session.kept.entry(*ino).or_default().add(*off, data.len() as u64, src);
                }
                _ => {}
            }
        }
    }
    // A new file held before the records in flight (theirs are made again) whose held copy is
    // still there did not get its name: its data, or its move to its name, continues.
    let held = loaded.entries.iter().filter(|e| !e.ahead && e.upto < *in_flight.start());
    let last_new = held.flat_map(|e| &e.undo).rev().find_map(|u| match u {
        Undo::New { path, hold } => Some((path, hold)),
        _ => None,
    });
    if let Some((path, hold)) = last_new {
        let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        if rustix::fs::statat(&session.hold_fd, OsStr::from_bytes(hold), flags).is_ok() {
            session.pending = Some(journaled::Pending { path: path.clone(), hold: hold.clone() });
        }
    }
    let mut applier = Applier::new(root, cfg.policy);
    applier.session = Some(session);
    let verdict = if b.origin.is_some() { Verdict::Incremental } else { Verdict::Full };
    let skip_to = loaded.next_record();
    let progress = Progress {
        peek,
        path: state_path,
        jpath,
        before: None,
        state,
        begun: true,
        resumed: true,
        applied: 0,
        begin: None,
        no_journal: false,
    };
    let _ = header.resume;
    run_records(&canonical, reader, header, verdict, applier, progress, skip_to, warn, tick)
}

/// The holding directory of a stream: `.anyrecv-` and the first 8 bytes of its id in hex.
fn holding_name(id: &Id) -> Vec<u8> {
    let hex: String = id.0[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(".anyrecv-{hex}").into_bytes()
}

/// The records, the end record and the completion, for a fresh or a continued receive.
#[allow(clippy::too_many_arguments)]
fn run_records<R: Read>(
    canonical: &Path,
    mut reader: StreamReader<R>,
    header: StreamHeader,
    verdict: Verdict,
    mut applier: Applier,
    mut progress: Progress,
    skip_to: u64,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let end_index;
    // Records read ahead of the one being applied, as far as the input already holds them
    // (never waiting for more): the undo of a run of them (their changed origin ranges, or the
    // inverses of renames and removals) is journaled together, made durable once, before the
    // first of them is applied.
    let mut queue: std::collections::VecDeque<Result<Option<anysend_stream::Frame>, _>> =
        Default::default();
    // Decoded bytes held in `queue`: a compressed stream decodes to several times what the
    // input buffer holds, so the look-ahead is bounded by what it decoded, not only by input.
    let mut queued = 0usize;
    loop {
        if queue.is_empty() {
            let f = reader.next_frame();
            queued += held(&f);
            queue.push_back(f);
        }
        while queue.len() < AHEAD_RECORDS
            && queued < AHEAD_BYTES
            && matches!(queue.back(), Some(Ok(Some(f))) if !matches!(f.record, Some(Record::End { .. })))
            && progress.peek.frame_ready()
        {
            let f = reader.next_frame();
            queued += held(&f);
            queue.push_back(f);
        }
        let next = match queue.pop_front() {
            Some(next) => {
                queued = queued.saturating_sub(held(&next));
                next
            }
            None => reader.next_frame(),
        };
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) => {
                let e = RecvError::Unsupported("the stream ended without its end record");
                return Err(progress.fail(&mut applier, e, 0));
            }
            Err(e) => {
                let at = e.index.unwrap_or(0);
                return Err(progress.fail(&mut applier, e.into(), at));
            }
        };
        if frame.index < skip_to {
            // The same stream sent again from its start: what DEST holds already is skipped.
            continue;
        }
        let Some(rec) = frame.record else { continue };
        if let Record::End { .. } = rec {
            end_index = frame.index;
            break;
        }
        if !progress.begun {
            // A refused first record must not mark DEST as partly updated.
            validate::check(&rec, &applier.policy())
                .map_err(|p| record_error(frame.index, frame.offset, &rec, p))?;
            progress.begin(&header, frame.index, &mut applier, canonical)?;
        }
        if applier.needs_ahead(frame.index) {
            // The records ahead (the journal decides how far it looks, and checks each record
            // it looks at: a run ends before one that would be refused).
            let ahead =
                std::iter::once(Some((frame.index, &rec))).chain(queue.iter().map(|f| match f {
                    Ok(Some(f)) => f.record.as_ref().map(|r| (f.index, r)),
                    _ => None,
                }));
            let ahead = ahead.map_while(|x| x).filter(|&(index, _)| index >= skip_to);
            if let Err(p) = applier.log_ahead(ahead) {
                let e = record_error(frame.index, frame.offset, &rec, p);
                return Err(progress.fail(&mut applier, e, frame.index));
            }
        }
        if let Err(p) = applier.apply(frame.index, &rec, warn) {
            let e = record_error(frame.index, frame.offset, &rec, p);
            return Err(progress.fail(&mut applier, e, frame.index));
        }
        progress.applied += 1;
        tick(&Tick {
            index: frame.index,
            offset: frame.offset + frame.wire_len,
            path: rec.path().unwrap_or_default(),
        });
    }
    if let Err(e) = reader.expect_eof() {
        let at = e.index.unwrap_or(0);
        return Err(progress.fail(&mut applier, e.into(), at));
    }
    if !progress.begun {
        progress.begin(&header, end_index, &mut applier, canonical)?;
    }
    if let Err(p) = applier.finish_journaled(end_index) {
        let e = record_error(
            end_index,
            reader.offset(),
            &Record::End { records: 0, bytes: 0, chain: 0 },
            p,
        );
        return Err(progress.fail(&mut applier, e, end_index));
    }
    applier.close_file();
    let holding = applier.session.take().map(|s| s.hold_fd);
    let had_journal = holding.is_some();
    drop(holding);
    // A journaled receive removes its holding directory while the rest of DEST is written
    // back by another thread (the removal is metadata, mostly of objects on disk long ago);
    // the second syncfs then has only the removal left to make durable.
    let flush = had_journal.then(|| {
        let root = rustix::io::fcntl_dupfd_cloexec(applier.root(), 0);
        std::thread::spawn(move || rustix::fs::syncfs(root?))
    });
    let hold_name = holding_name(&header.stream_id);
    let removed = journaled::remove_holding(applier.root(), &hold_name);
    let flushed = match flush.map(|t| t.join()) {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(_)) => Err(rustix::io::Errno::IO),
    };
    if let Err(e) = removed {
        let e = dest_err(canonical, "removing the holding directory")(e);
        return Err(progress.fail(&mut applier, e, end_index));
    }
    if let Err(e) = flushed.and_then(|()| rustix::fs::syncfs(applier.root())) {
        let e = dest_err(canonical, "syncfs")(e.into());
        return Err(progress.fail(&mut applier, e, end_index));
    }
    progress.state.complete(&header);
    state::save(&progress.path, &progress.state).map_err(|source| RecvError::State {
        path: progress.path.clone(),
        step: "recording the completed receive",
        source,
    })?;
    let _ = fs::remove_file(&progress.jpath);
    let applied = progress.applied;
    Ok(Summary {
        header,
        records: reader.records_read(),
        bytes: reader.offset(),
        applied,
        verdict: Some(verdict),
        dest: Some(canonical.to_path_buf()),
        state_file: Some(progress.path),
    })
}

/// The state as the receive goes: written before the first record changes DEST, and on a
/// failure after that, so that the state never claims more than DEST holds.
struct Progress {
    /// What of the input is read already (records looked at ahead of applying them).
    peek: Peek,
    path: PathBuf,
    jpath: PathBuf,
    /// The state before this receive, put back if a failure happens before anything applied.
    before: Option<State>,
    state: State,
    begun: bool,
    /// Continuing an interrupted receive: a failure never undoes what the journal records.
    resumed: bool,
    applied: u64,
    /// The journal's first entry, written when the first record is about to be applied.
    begin: Option<Begin>,
    /// Apply without a journal (measurements only).
    no_journal: bool,
}

impl Progress {
    fn begin(
        &mut self,
        header: &StreamHeader,
        first: u64,
        applier: &mut Applier,
        dest: &Path,
    ) -> Result<(), RecvError> {
        let begin = self.begin.take().expect("a fresh receive has its begin entry");
        if !self.no_journal {
            self.start_journal(&begin, header, applier, dest)?;
        }
        self.state.begin(header, first);
        state::save(&self.path, &self.state).map_err(|source| RecvError::State {
            path: self.path.clone(),
            step: "recording the receive in progress",
            source,
        })?;
        self.begun = true;
        Ok(())
    }

    /// The journal and the holding directory of a journaled receive.
    fn start_journal(
        &mut self,
        begin: &Begin,
        header: &StreamHeader,
        applier: &mut Applier,
        dest: &Path,
    ) -> Result<(), RecvError> {
        let journal = Journal::create(&self.jpath, begin)
            .map_err(state_err(&self.jpath, "creating the journal"))?;
        let hold_fd = journaled::open_holding(applier.root(), &begin.holding)
            .map_err(dest_err(dest, "making the holding directory"))?;
        let reflink = fsutil::reflink_keeps_layout(applier.root());
        let undo = header.origin.is_some();
        applier.session = Some(journaled::Session::new(journal, hold_fd, undo, reflink));
        Ok(())
    }

    /// Records where the receive stopped (best effort: the error being reported matters more
    /// than a failure to record it) and returns the error.
    fn fail(&mut self, applier: &mut Applier, e: RecvError, next_record: u64) -> RecvError {
        if !self.begun {
            return e;
        }
        let saved = if self.applied == 0 && !self.resumed {
            // Nothing applied: DEST is as it was, bar the holding directory.
            applier.session = None;
            let hold = self.state.partial.as_ref().map(|p| holding_name(&p.stream));
            if let Some(h) = hold {
                let _ = journaled::remove_holding(applier.root(), &h);
            }
            let _ = fs::remove_file(&self.jpath);
            match &self.before {
                Some(s) => state::save(&self.path, s),
                None => fs::remove_file(&self.path),
            }
        } else {
            // Records before `next_record` are complete: say so in the journal (a resume then
            // starts there), and in the state, for people.
            if let Some(s) = &mut applier.session {
                let last = journal::load(&self.jpath).ok().flatten().map(|l| l.in_flight());
                // Narrowed to the one record, also inside a batch in flight.
                if last
                    .is_some_and(|l| *l.start() <= next_record && l != (next_record..=next_record))
                {
                    let _ = s.journal.append(&journal::Entry::new(next_record, vec![]));
                }
                let _ = s.journal.sync();
            }
            if let Some(p) = &mut self.state.partial {
                p.next_record = journal::load(&self.jpath)
                    .ok()
                    .flatten()
                    .map_or(next_record, |l| l.next_record());
            }
            state::save(&self.path, &self.state)
        };
        drop(saved);
        e
    }
}

/// Checks every record and, when DEST exists, the base check; changes nothing anywhere.
fn dry_run<R: Read>(
    cfg: &Config,
    mut reader: StreamReader<R>,
    header: StreamHeader,
) -> Result<Summary, RecvError> {
    let mut dest = None;
    let mut state_file = None;
    let base = match fs::metadata(&cfg.dest) {
        Ok(m) if m.is_dir() => {
            let canonical =
                fs::canonicalize(&cfg.dest).map_err(dest_err(&cfg.dest, "resolving the path"))?;
            let shown = state::show(&canonical);
            let path = state::state_file(&cfg.state_dir, &canonical);
            let old = state::load(&path).map_err(|source| RecvError::State {
                path: path.clone(),
                step: "reading",
                source,
            })?;
            let root = open_dir(&canonical)?;
            let info = dest_info(&canonical, Some(&root), &path)?;
            let base = state::check_base(&header, &shown, &info, old.as_ref(), cfg.force);
            dest = Some(canonical);
            state_file = Some(path);
            Some(base)
        }
        Ok(_) => Some(Err(Refusal::NotADirectory { dest: state::show(&cfg.dest) })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(dest_err(&cfg.dest, "stat")(e)),
    };
    while let Some(frame) = reader.next_frame()? {
        if let Some(rec) = &frame.record {
            validate::check(rec, &cfg.policy)
                .map_err(|p| record_error(frame.index, frame.offset, rec, p))?;
        }
    }
    reader.expect_eof()?;
    let verdict = match base {
        Some(Err(r)) => return Err(r.into()),
        Some(Ok(v)) => Some(v),
        None => None,
    };
    Ok(Summary {
        header,
        records: reader.records_read(),
        bytes: reader.offset(),
        applied: 0,
        verdict,
        dest,
        state_file,
    })
}

/// DEST's canonical path and whether it exists. A missing DEST is named by its canonical parent
/// plus its last name (only DEST itself is ever created, never its parents).
pub(crate) fn locate(dest: &Path) -> Result<(PathBuf, bool), RecvError> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            let c = fs::canonicalize(dest).map_err(dest_err(dest, "resolving the path"))?;
            Ok((c, true))
        }
        Ok(_) => Err(Refusal::NotADirectory { dest: state::show(dest) }.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = dest.file_name().ok_or_else(|| {
                dest_err(dest, "naming the directory to create")(io::ErrorKind::InvalidInput.into())
            })?;
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let parent = fs::canonicalize(parent)
                .map_err(dest_err(parent, "resolving the parent directory"))?;
            Ok((parent.join(name), false))
        }
        Err(e) => Err(dest_err(dest, "stat")(e)),
    }
}

pub(crate) fn open_dir(p: &Path) -> Result<rustix::fd::OwnedFd, RecvError> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| dest_err(p, "opening")(e.into()))
}

pub(crate) fn dest_info(
    canonical: &Path,
    root: Option<&rustix::fd::OwnedFd>,
    state_file: &Path,
) -> Result<DestInfo, RecvError> {
    let Some(root) = root else {
        return Ok(DestInfo {
            kind: DestKind::Missing,
            identity: None,
            state_file: state_file.to_path_buf(),
        });
    };
    let st = rustix::fs::fstat(root).map_err(|e| dest_err(canonical, "fstat")(e.into()))?;
    let mut entries = fs::read_dir(canonical).map_err(dest_err(canonical, "listing"))?;
    let kind = match entries.next() {
        None => DestKind::Empty,
        Some(Ok(e)) => {
            use std::os::unix::ffi::OsStrExt;
            DestKind::NotEmpty(e.file_name().as_bytes().to_vec())
        }
        Some(Err(e)) => return Err(dest_err(canonical, "listing")(e)),
    };
    Ok(DestInfo {
        kind,
        identity: Some((st.st_dev, st.st_ino)),
        state_file: state_file.to_path_buf(),
    })
}

fn state_err<'a>(p: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> RecvError + 'a {
    move |source| RecvError::State { path: p.to_path_buf(), step, source }
}

fn dest_err<'a>(p: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> RecvError + 'a {
    move |source| RecvError::Dest { path: p.to_path_buf(), step, source }
}

fn record_error(index: u64, offset: u64, rec: &Record, problem: Problem) -> RecvError {
    let path2 = match rec {
        Record::Link { existing, .. } => Some(existing.clone()),
        Record::Rename { to, .. } => Some(to.clone()),
        _ => None,
    };
    RecordError {
        index,
        offset,
        op: rec.name(),
        path: rec.path().unwrap_or_default().to_vec(),
        path2,
        problem,
    }
    .into()
}

/// Records read ahead at most.
const AHEAD_RECORDS: usize = 4096;

/// Memory a read-ahead frame holds: its file data decoded, at least its size on the wire.
fn held<E>(f: &Result<Option<anysend_stream::Frame>, E>) -> usize {
    match f {
        Ok(Some(f)) => {
            let data = match &f.record {
                Some(Record::Write { data, .. }) => data.len(),
                _ => 0,
            };
            data.max(usize::try_from(f.wire_len).unwrap_or(usize::MAX))
        }
        _ => 0,
    }
}
/// Input bytes buffered for looking ahead.
const AHEAD_BYTES: usize = 8 << 20;

/// The input, buffered so that the receive can tell whether the next record is read already
/// (and so can be looked at without waiting for the sender).
pub struct Lookahead<R> {
    inner: R,
    buf: Rc<RefCell<Buffered>>,
}

/// Bytes read from the input and not yet consumed: `data[pos..end]`.
#[derive(Default)]
struct Buffered {
    data: Vec<u8>,
    pos: usize,
    end: usize,
}

/// A view of a [`Lookahead`]'s buffer.
#[derive(Clone)]
pub struct Peek(Rc<RefCell<Buffered>>);

impl<R: Read> Lookahead<R> {
    pub fn new(inner: R) -> Self {
        Lookahead { inner, buf: Default::default() }
    }

    pub fn clone_handle(&self) -> Peek {
        Peek(self.buf.clone())
    }
}

impl Peek {
    /// Whether the buffer holds a whole record frame.
    pub fn frame_ready(&self) -> bool {
        let b = self.0.borrow();
        let avail = &b.data[b.pos..b.end];
        let Some(&[a, b0, c, d]) = avail.get(4..8) else {
            return false;
        };
        let n = u32::from_le_bytes([a, b0, c, d]) as usize;
        avail.len() >= 8 + n + 4
    }
}

impl<R: Read> Read for Lookahead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut b = self.buf.borrow_mut();
        if b.pos == b.end {
            if out.len() >= AHEAD_BYTES {
                drop(b);
                return self.inner.read(out);
            }
            // Empty: one read of whatever the input has, at most AHEAD_BYTES.
            if b.data.len() < AHEAD_BYTES {
                b.data.resize(AHEAD_BYTES, 0);
            }
            let n = loop {
                match self.inner.read(&mut b.data[..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            b.pos = 0;
            b.end = n;
        }
        let Buffered { data, pos, end } = &mut *b;
        let n = out.len().min(*end - *pos);
        out[..n].copy_from_slice(&data[*pos..*pos + n]);
        *pos += n;
        Ok(n)
    }
}
