//! The receive as a whole: header, base check, records in order, end record, sync, state.
//!
//! The order is the contract of STREAM_FORMAT.md section 8 plus the base check: nothing touches
//! DEST before the header is verified and the base check passed; each record is applied only
//! after the reader verified it (checksum, fields) and `validate.rs` accepted it; the state
//! records the new target only after the end record verified, nothing followed it, and DEST was
//! synced. A dry run walks the same path with the applier left out, so it refuses what a real
//! receive would refuse for the stream's own content.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anysend_stream::{Record, StreamHeader, StreamReader};
use rustix::fs::{Mode, OFlags};

use crate::apply::Applier;
use crate::config::Config;
use crate::error::{Problem, RecordError, RecvError, Warning};
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

/// Receives one stream into `cfg.dest` (or, with `cfg.dry_run`, only checks it).
pub fn receive<R: Read>(
    cfg: &Config,
    input: R,
    warn: &mut dyn FnMut(&Warning),
) -> Result<Summary, RecvError> {
    let reader = StreamReader::new(input)?;
    let header = reader.header().clone();
    if header.resume != Default::default() {
        return Err(RecvError::Unsupported(
            "this is a resumed stream (it starts after record 0); this anyrecv cannot resume \
             receives yet",
        ));
    }
    if cfg.dry_run {
        return dry_run(cfg, reader, header);
    }
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

    let root = if exists { Some(open_dir(&canonical)?) } else { None };
    let info = dest_info(&canonical, root.as_ref(), &state_path)?;
    let verdict = state::check_base(&header, &shown, &info, old_state.as_ref(), cfg.force)?;
    if let Verdict::Forced(r) = &verdict {
        warn(&Warning::Forced(r.to_string()));
    }
    let root = match root {
        Some(fd) => fd,
        None => {
            fs::DirBuilder::new()
                .create(&canonical)
                .map_err(dest_err(&canonical, "creating the directory"))?;
            open_dir(&canonical)?
        }
    };
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

    let mut applier = Applier::new(root, cfg.policy);
    let mut reader = reader;
    let mut progress = Progress {
        path: state_path.clone(),
        before: old_state_copy,
        state: new_state,
        begun: false,
        applied: 0,
    };
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let at = e.index.unwrap_or(0);
                return Err(progress.fail(e.into(), at));
            }
        };
        let Some(rec) = frame.record else { continue };
        if let Record::End { .. } = rec {
            break;
        }
        if !progress.begun {
            // A refused first record must not mark DEST as partly updated.
            validate::check(&rec, &cfg.policy)
                .map_err(|p| record_error(frame.index, frame.offset, &rec, p))?;
            progress.begin(&header, frame.index)?;
        }
        if let Err(p) = applier.apply(frame.index, &rec, warn) {
            let e = record_error(frame.index, frame.offset, &rec, p);
            return Err(progress.fail(e, frame.index));
        }
        progress.applied += 1;
    }
    if let Err(e) = reader.expect_eof() {
        let at = e.index.unwrap_or(0);
        return Err(progress.fail(e.into(), at));
    }
    applier.close_file();
    if let Err(e) = rustix::fs::syncfs(applier.root()) {
        let e = dest_err(&canonical, "syncfs")(e.into());
        return Err(progress.fail(e, reader.records_read()));
    }
    progress.state.complete(&header);
    state::save(&state_path, &progress.state).map_err(|source| RecvError::State {
        path: state_path.clone(),
        step: "recording the completed receive",
        source,
    })?;
    let applied = progress.applied;
    Ok(Summary {
        header,
        records: reader.records_read(),
        bytes: reader.offset(),
        applied,
        verdict: Some(verdict),
        dest: Some(canonical),
        state_file: Some(state_path),
    })
}

/// The state as the receive goes: written before the first record changes DEST, and on a
/// failure after that, so that the state never claims more than DEST holds.
struct Progress {
    path: PathBuf,
    /// The state before this receive, put back if a failure happens before anything applied.
    before: Option<State>,
    state: State,
    begun: bool,
    applied: u64,
}

impl Progress {
    fn begin(&mut self, header: &StreamHeader, first: u64) -> Result<(), RecvError> {
        self.state.begin(header, first);
        state::save(&self.path, &self.state).map_err(|source| RecvError::State {
            path: self.path.clone(),
            step: "recording the receive in progress",
            source,
        })?;
        self.begun = true;
        Ok(())
    }

    /// Records where the receive stopped (best effort: the error being reported matters more
    /// than a failure to record it) and returns the error.
    fn fail(&mut self, e: RecvError, next_record: u64) -> RecvError {
        if !self.begun {
            return e;
        }
        let saved = if self.applied == 0 {
            match &self.before {
                Some(s) => state::save(&self.path, s),
                None => fs::remove_file(&self.path),
            }
        } else {
            if let Some(p) = &mut self.state.partial {
                p.next_record = next_record;
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
fn locate(dest: &Path) -> Result<(PathBuf, bool), RecvError> {
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

fn open_dir(p: &Path) -> Result<rustix::fd::OwnedFd, RecvError> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| dest_err(p, "opening")(e.into()))
}

fn dest_info(
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
