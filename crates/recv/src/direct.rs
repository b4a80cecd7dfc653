//! A receive straight into DEST (as opposed to `--atomic`'s staging copy, which is received
//! through this too): the base check or the resume decision, then the records in order, the
//! end record, and the completion.
//!
//! The order is the contract of STREAM_FORMAT.md section 8 plus the base check: nothing touches
//! DEST before the header is verified and the base check passed; each record is applied only
//! after the reader verified it (checksum, fields) and `validate.rs` accepted it; the state
//! records the new target only after the end record verified, nothing followed it, and DEST was
//! synced.
//!
//! Records are read ahead of the one being applied, as far as the input already holds them
//! (never waiting for more): the journal writes the undo of a run of them together, made
//! durable once, before the first of them is applied.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anysend_stream::{Class, ErrorKind, Frame, Record, ResumePoint, StreamError, StreamHeader};
use rustix::fd::AsFd;

use crate::apply::Applier;
use crate::bookkeeping::Bookkeeping;
use crate::config::Config;
use crate::dest;
use crate::drift::{self, Expectations};
use crate::error::{Problem, RecordError, RecvError, Warning};
use crate::fsutil;
use crate::journal::{self, Begin, Loaded, RootMeta};
use crate::journaled::{self, holding, Journaled};
use crate::leftover;
use crate::lookahead::{Input, AHEAD_BYTES};
use crate::names;
use crate::state::{self, Refusal, State, Verdict};
use crate::summary::{Summary, Tick};
use crate::validate;

/// Records read ahead at most. A run of small writes into an existing file costs one sync of the
/// journal (its undo, written ahead): the more records a run can look at, the fewer syncs, at
/// the memory [`held`] counts.
const AHEAD_RECORDS: usize = 1 << 14;

/// Receives the stream whose header was read into `cfg.dest`: a fresh receive, or the
/// continuation of DEST's interrupted receive of the same stream.
pub fn receive<R: Read>(
    cfg: &Config,
    input: Input<R>,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(RecvError::dest(&cfg.dest, "anyrecv needs /proc mounted")(
            io::ErrorKind::NotFound.into(),
        ));
    }
    let header = input.reader.header().clone();
    let (canonical, exists) = dest::locate(&cfg.dest)?;
    let shown = state::show(&canonical);
    let found = dest::find_state(&cfg.state_dir, &canonical)?;
    if let Some(was) = found.received_as {
        warn(&Warning::StateByIdentity { state_file: found.path.clone(), received_as: was });
    }
    let state_path = found.path;
    state::create_dir(&cfg.state_dir)
        .map_err(RecvError::state(&cfg.state_dir, "creating the state directory"))?;
    let _lock =
        state::lock(&state_path, &shown).map_err(RecvError::state(&state_path, "locking"))??;
    let old_state = state::load(&state_path).map_err(RecvError::state(&state_path, "reading"))?;
    let jpath = journal::journal_file(&state_path);
    let partial = old_state.as_ref().and_then(|s| s.partial.clone());
    // No receive under way: whatever journal is there was left by one that completed (cut
    // before it removed its holding directory) or never began; its leftovers go first.
    leftover::settle(old_state.as_ref(), &state_path, &canonical);
    let loaded = match partial {
        Some(_) => {
            journal::load(&jpath).map_err(RecvError::state(&jpath, "reading the journal"))?
        }
        None => None,
    };
    let loaded = loaded.filter(|l| partial.as_ref().is_some_and(|p| p.stream == l.begin.stream));
    // Where the interrupted receive stopped is the journal's to say: the state is updated only
    // when a failure is caught, not at a kill.
    let mut old_state = old_state;
    if let (Some(l), Some(p)) = (&loaded, old_state.as_mut().and_then(|s| s.partial.as_mut())) {
        p.next_record = l.next_record();
    }

    // A resume: the stream DEST's journal names, from the record in flight, or the same stream
    // sent again from its start (the records DEST holds are read and skipped).
    let r = header.resume;
    let stream = header.stream_id;
    let mismatch = |have| Refusal::ResumeMismatch {
        dest: shown.clone(),
        stream,
        first_record: r.first_record,
        data_offset: r.data_offset,
        have,
    };
    let mut run = Run {
        input,
        canonical,
        header,
        state_path,
        jpath,
        begin: None,
        no_journal: false,
        force: cfg.force,
        forced: false,
    };
    match (loaded, old_state) {
        (Some(l), Some(old))
            if l.begin.stream == stream
                && (r.first_record == l.next_record() || r == ResumePoint::default()) =>
        {
            if r.data_offset != 0 {
                return Err(mismatch(Some((l.begin.stream, l.next_record()))).into());
            }
            resume(cfg, run, old, l, warn, tick)
        }
        (l, _) if r != ResumePoint::default() => {
            Err(mismatch(l.as_ref().map(|l| (l.begin.stream, l.next_record()))).into())
        }
        (l, old) => {
            run.no_journal = cfg.no_journal;
            fresh(cfg, run, exists, old, l, warn, tick)
        }
    }
}

/// One receive into DEST: the stream, and where it goes.
struct Run<R: Read> {
    input: Input<R>,
    header: StreamHeader,
    canonical: PathBuf,
    state_path: PathBuf,
    jpath: PathBuf,
    /// The journal's first entry, written when the first record is about to be applied.
    begin: Option<Begin>,
    /// Apply without a journal (measurements only).
    no_journal: bool,
    /// Apply although DEST was changed where the stream changes it (`--force`).
    force: bool,
    /// It was (DEST then holds more than the stream's changes).
    forced: bool,
}

/// A fresh receive: the base check, DEST made if missing, then the records.
fn fresh<R: Read>(
    cfg: &Config,
    mut run: Run<R>,
    exists: bool,
    old_state: Option<State>,
    loaded: Option<Loaded>,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let (canonical, header) = (&run.canonical, &run.header);
    let root = if exists { Some(dest::open_dir(canonical)?) } else { None };
    let locked = |root: &rustix::fd::OwnedFd| {
        state::lock_dir(root.as_fd(), canonical).map_err(RecvError::dest(canonical, "locking"))
    };
    // Before the empty check: another receive into this directory by another path waits.
    let dir_lock = match &root {
        Some(r) => Some(locked(r)??),
        None => None,
    };
    let info = dest::info(canonical, root.as_ref(), &run.state_path)?;
    let shown = state::show(canonical);
    let verdict = state::check_base(header, &shown, &info, old_state.as_ref(), cfg.force)?;
    if let Verdict::Forced(r) = &verdict {
        warn(&Warning::Forced(r.to_string()));
    }
    let dest_created = root.is_none();
    let root = match root {
        Some(fd) => fd,
        None => dest::create_dir(canonical)?,
    };
    // Held until the receive returns.
    let _dir_lock = match dir_lock {
        Some(l) => l,
        None => locked(&root)??,
    };
    if let Some(l) = &loaded {
        // --force over an interrupted receive: its journal and holding directory go, and DEST
        // gets back the flags it lifted (this receive lifts them again, noting them first).
        let _ = holding::remove(root.as_fd(), &l.begin.holding);
        if let Some(f) = journaled::root::original(l) {
            let _ = journaled::root::set(root.as_fd(), f);
        }
        let _ = fs::remove_file(&run.jpath);
    }
    let st = rustix::fs::fstat(&root).map_err(|e| RecvError::dest(canonical, "fstat")(e.into()))?;
    let identity = dest::identity(root.as_fd()).map_err(RecvError::dest(canonical, "fstat"))?;
    // A full stream makes DEST anew: nothing of an earlier state still describes it.
    let new_state = match (&verdict, old_state.clone()) {
        (Verdict::Full, _) | (_, None) => State::new(canonical, &identity),
        (_, Some(mut s)) => {
            // DEST's path now (it may have been received through another) and its identity
            // (an older state gets its file system's UUID).
            s.set_identity(&identity);
            s.dest = State::new(canonical, &identity).dest;
            s
        }
    };
    let (atime, mtime) = fsutil::times(&st);
    run.begin = Some(Begin {
        stream: header.stream_id,
        origin: header.origin,
        target: header.target,
        first_record: header.resume.first_record,
        dest_created,
        root: RootMeta { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, atime, mtime },
        holding: holding::name(&header.stream_id),
    });
    let target = Journaled::new(Applier::new(root, cfg.policy));
    let book = Bookkeeping::fresh(run.state_path.clone(), old_state, new_state);
    records(run, verdict, target, book, 0, warn, tick)
}

/// Continues DEST's interrupted receive with the stream that names it.
fn resume<R: Read>(
    cfg: &Config,
    run: Run<R>,
    mut state: State,
    loaded: Loaded,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let canonical = &run.canonical;
    let root = match fs::metadata(canonical) {
        Ok(_) => dest::open_dir(canonical)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound && loaded.begin.dest_created => {
            dest::create_dir(canonical)?
        }
        Err(e) => return Err(RecvError::dest(canonical, "stat")(e)),
    };
    let identity = dest::identity(root.as_fd()).map_err(RecvError::dest(canonical, "fstat"))?;
    if !state.describes(&identity) && !cfg.force {
        return Err(Refusal::Replaced {
            dest: state::show(canonical),
            state_file: run.state_path,
            was: state.identity_text(),
            now: identity.to_string(),
        }
        .into());
    }
    // Its device number may have changed (a reboot), and an older state gets the UUID.
    state.set_identity(&identity);
    let applier = Applier::new(root, cfg.policy);
    let target = Journaled::resume(applier, &run.jpath, &loaded, canonical)?;
    let verdict = if loaded.begin.origin.is_some() { Verdict::Incremental } else { Verdict::Full };
    let book = Bookkeeping::resumed(run.state_path.clone(), state);
    records(run, verdict, target, book, loaded.next_record(), warn, tick)
}

/// The records, the end record and the completion, for a fresh or a continued receive. Records
/// before `skip_to` are DEST's already (the same stream sent again from its start).
fn records<R: Read>(
    mut run: Run<R>,
    verdict: Verdict,
    mut target: Journaled,
    mut book: Bookkeeping,
    skip_to: u64,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let end_index;
    let mut queue: VecDeque<Result<Option<Frame>, StreamError>> = VecDeque::new();
    // Decoded bytes held in `queue`: a compressed stream decodes to several times what the
    // input buffer holds, so the look-ahead is bounded by what it decoded, not only by input.
    let mut queued = 0usize;
    let owners = rustix::process::geteuid().is_root();
    let mut expected = Expectations::new(book.settled(), owners);
    let mut changes = match verdict {
        Verdict::Incremental if !book.continues() => names::Changes::default(),
        _ => names::Changes::not_collected(),
    };
    let full = run.header.origin.is_none();
    loop {
        let Input { reader, peek } = &mut run.input;
        if queue.is_empty() {
            let f = reader.next_frame();
            queued += held(&f);
            queue.push_back(f);
        }
        while queue.len() < AHEAD_RECORDS
            && queued < AHEAD_BYTES
            && matches!(queue.back(), Some(Ok(Some(f))) if !matches!(f.record, Some(Record::End { .. })))
            && peek.frame_ready()
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
                return Err(fail(&mut target, &mut book, e, 0));
            }
            Err(e) => {
                let at = e.index.unwrap_or(0);
                return Err(fail(&mut target, &mut book, e.into(), at));
            }
        };
        if frame.index < skip_to {
            continue;
        }
        let Some(rec) = frame.record else { continue };
        if let Record::End { .. } = rec {
            end_index = frame.index;
            break;
        }
        let failed = |p| RecvError::from(RecordError::new(frame.index, frame.offset, &rec, p));
        if full {
            if let Err(p) = validate::without_origin(&rec) {
                return Err(fail(&mut target, &mut book, failed(p), frame.index));
            }
        }
        if rec.class() == Class::Check {
            if book.continues() {
                // Compared by the receive this one continues, before it changed anything.
                continue;
            }
            if book.begun() {
                let p = Problem::Invalid(
                    "an `expect` record after records that change the tree".into(),
                );
                return Err(fail(&mut target, &mut book, failed(p), frame.index));
            }
            target.check(frame.index, &rec).map_err(failed)?;
            let found = rec.path().map_or(Err(Problem::Escapes), |p| target.stat(p));
            expected.compare(&rec, found);
            continue;
        }
        if !book.begun() {
            // A refused first record must not mark DEST as partly updated.
            target.check(frame.index, &rec).map_err(failed)?;
            begin(&mut run, &mut target, &mut book, &expected, frame.index, warn)?;
        }
        if target.needs_ahead(frame.index) {
            // The records ahead (the journal decides how far it looks, and checks each record
            // it looks at: a run ends before one that would be refused).
            let ahead =
                std::iter::once(Some((frame.index, &rec))).chain(queue.iter().map(|f| match f {
                    Ok(Some(f)) => f.record.as_ref().map(|r| (f.index, r)),
                    _ => None,
                }));
            let ahead = ahead.map_while(|x| x).filter(|&(index, _)| index >= skip_to);
            if let Err(p) = target.log_ahead(ahead) {
                return Err(fail(&mut target, &mut book, failed(p), frame.index));
            }
        }
        if let Err(p) = target.apply(frame.index, &rec, warn) {
            return Err(fail(&mut target, &mut book, failed(p), frame.index));
        }
        changes.note(&rec);
        book.applied_one();
        tick(&Tick {
            index: frame.index,
            offset: frame.offset + frame.wire_len,
            path: rec.path().unwrap_or_default(),
            estimate: run.header.estimate,
        });
    }
    let reader = &mut run.input.reader;
    // The end record verified the whole stream: it is completed whatever follows it, and bytes
    // after it are an error of their own once DEST is recorded as holding the target.
    let trailing = match reader.expect_eof() {
        Ok(()) => None,
        Err(e) if matches!(e.kind, ErrorKind::TrailingData) => Some(e.offset),
        Err(e) => {
            let at = e.index.unwrap_or(0);
            return Err(fail(&mut target, &mut book, e.into(), at));
        }
    };
    let (records, bytes) = (reader.records_read(), reader.offset());
    if !book.begun() {
        begin(&mut run, &mut target, &mut book, &expected, end_index, warn)?;
    }
    if let Err(p) = target.finish(end_index) {
        let end = Record::End { records: 0, bytes: 0, chain: 0 };
        let e = RecordError::new(end_index, bytes, &end, p).into();
        return Err(fail(&mut target, &mut book, e, end_index));
    }
    if let Err(e) = target.commit(&run.canonical) {
        return Err(fail(&mut target, &mut book, e, end_index));
    }
    // The names log can take this receive's changes only if it was true before it and the
    // receive applied every record of the stream onto it.
    let anew = !matches!(verdict, Verdict::Incremental) || book.continues() || run.forced;
    let file = names::names_file(book.path());
    // Best effort: without a log, `--check` says it cannot compare names, and the next receive
    // writes it anew.
    let skip = target.holding_name().unwrap_or_default().to_vec();
    let names_len =
        names::record(&file, target.root(), &changes, anew, book.names_len(), &skip).ok();
    // The commit point: from here on DEST holds the target, whatever cuts the rest.
    book.complete(&run.header, fsutil::settle(), names_len, bytes)?;
    target.tidy(&run.canonical)?;
    // Tidying changed DEST's root (its ctime): DEST settled only now.
    book.settled_at(fsutil::settle())?;
    let _ = fs::remove_file(&run.jpath);
    if let Some(offset) = trailing {
        return Err(RecvError::TrailingData { dest: run.canonical, offset });
    }
    Ok(Summary {
        header: run.header,
        records,
        bytes,
        applied: book.applied(),
        verdict: Some(verdict),
        dest: Some(run.canonical),
        state_file: Some(run.state_path),
    })
}

/// Before the first record changes DEST: DEST must hold what the stream's `expect` records
/// said (unless forced), then the journal is started (unless none is kept), then the state says
/// the receive is under way from record `first`.
fn begin<R: Read>(
    run: &mut Run<R>,
    target: &mut Journaled,
    book: &mut Bookkeeping,
    expected: &Expectations,
    first: u64,
    warn: &mut dyn FnMut(&Warning),
) -> Result<(), RecvError> {
    if let Some((named, more)) = expected.drifted() {
        let refusal = Refusal::Drifted {
            dest: state::show(&run.canonical),
            count: expected.differ,
            changed: drift::describe(&named, more),
        };
        if !run.force {
            return Err(refusal.into());
        }
        warn(&Warning::Forced(refusal.to_string()));
        run.forced = true;
    }
    if let Some(begin) = run.begin.take().filter(|_| !run.no_journal) {
        target.start(&run.jpath, &begin, &run.canonical)?;
    }
    book.begin(&run.header, first)
}

/// Records where the receive stopped, with `next_record` the first record not completely
/// applied, and returns the error. When nothing was applied, DEST and its state are as they
/// were: the journal and holding directory go, and the earlier state comes back.
fn fail(
    target: &mut Journaled,
    book: &mut Bookkeeping,
    e: RecvError,
    next_record: u64,
) -> RecvError {
    if !book.begun() {
        return e;
    }
    if book.untouched() {
        target.discard();
        book.put_back();
    } else {
        let next = target.stopped(next_record);
        book.stopped(next);
    }
    e
}

/// What a decoded frame holds besides its bytes on the wire: the frame itself and its fields'
/// allocations (a path and a data buffer, say), roughly.
const FRAME_HELD: usize = std::mem::size_of::<Frame>() + 64;

/// Memory a read-ahead frame holds: its file data decoded, at least its size on the wire, and
/// the frame.
fn held<E>(f: &Result<Option<Frame>, E>) -> usize {
    match f {
        Ok(Some(f)) => {
            let data = match &f.record {
                Some(Record::Write { data, .. }) => data.len(),
                _ => 0,
            };
            // A decoded record also takes its frame and its fields' allocations: a stream of
            // tiny records is bounded by what it holds, not by its few bytes on the wire.
            data.max(usize::try_from(f.wire_len).unwrap_or(usize::MAX)) + FRAME_HELD
        }
        _ => 0,
    }
}
