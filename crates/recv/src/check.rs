//! `anyrecv --check DEST`: what was changed in DEST since its last receive, path by path, as
//! `zfs diff` shows what changed since a snapshot: names added and removed (against the names
//! log the last receive left, `names.rs`), and objects changed (their ctime is after the time
//! the last receive settled, `drift.rs`). One walk of DEST, a `statx` per object: O(tree).
//!
//! A directory whose own ctime moved only because names in it were added or removed is not
//! listed as changed: those names are. (A chmod of such a directory is then not told apart; it
//! still shows as soon as nothing else happened in it, and the next receive's own comparison
//! sees it where the stream changes the directory.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use rustix::fd::AsFd;
use rustix::fs::{self as fs, AtFlags};

use crate::config::Config;
use crate::dest;
use crate::drift;
use crate::error::RecvError;
use crate::fsutil::Time;
use crate::names;
use crate::path;
use crate::state::{self, Refusal};

/// What `--check` found.
#[derive(Debug, Default)]
pub struct Report {
    pub dest: PathBuf,
    /// Names in DEST that the last receive did not leave.
    pub added: Vec<Vec<u8>>,
    /// Names the last receive left that are gone.
    pub removed: Vec<Vec<u8>>,
    /// Objects changed since (content, metadata, or another object under the name).
    pub changed: Vec<Vec<u8>>,
    /// Whether names were compared (a names log was there and whole).
    pub names_known: bool,
    /// Whether changes in place were looked for (the state says when the receive settled).
    pub changes_known: bool,
}

impl Report {
    /// Whether DEST is as its last receive left it, as far as could be told.
    pub fn unchanged(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares DEST with what its last receive left.
pub fn check(cfg: &Config) -> Result<Report, RecvError> {
    let (canonical, exists) = dest::locate(&cfg.dest)?;
    let shown = state::show(&canonical);
    let state_path = dest::find_state(&cfg.state_dir, &canonical)?.path;
    if !exists {
        return Err(RecvError::dest(&canonical, "opening")(std::io::ErrorKind::NotFound.into()));
    }
    // Not while a receive runs: it would show half of what it does as local changes.
    let _lock =
        state::lock(&state_path, &shown).map_err(RecvError::state(&state_path, "locking"))??;
    let st = state::load(&state_path).map_err(RecvError::state(&state_path, "reading"))?;
    crate::leftover::settle(st.as_ref(), &state_path, &canonical);
    let Some(st) = st.filter(|s| s.last.is_some()) else {
        return Err(Refusal::NothingReceived { dest: shown, state_file: state_path }.into());
    };
    if let Some(p) = &st.partial {
        return Err(Refusal::Unfinished {
            dest: shown,
            stream: p.stream,
            target: p.target,
            next_record: p.next_record,
        }
        .into());
    }
    let settled: Option<Time> = st.last.as_ref().and_then(|l| l.settled);
    let file = names::names_file(&state_path);
    let loaded = names::load(&file).map_err(RecvError::state(&file, "reading"))?;
    let known = loaded.filter(|l| !l.damaged).map(|l| l.names.paths);
    let root = dest::open_dir(&canonical)?;
    let mut report = Report {
        dest: canonical.clone(),
        names_known: known.is_some(),
        changes_known: settled.is_some(),
        ..Report::default()
    };
    let mut seen = BTreeSet::new();
    // Objects whose ctime moved, and directories with names added or removed directly in them.
    let mut moved = Vec::new();
    let mut root_changed = false;
    if let Some(s) = settled {
        let rst = fs::fstat(&root).map_err(|e| RecvError::dest(&canonical, "fstat")(e.into()))?;
        root_changed = drift::ctime(&rst) > s;
    }
    names::walk(root.as_fd(), &[], &mut |p, dir, name| {
        if known.is_some() {
            seen.insert(p.to_vec());
        }
        if let Some(s) = settled {
            let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if drift::ctime(&st) > s {
                moved.push(p.to_vec());
            }
        }
        Ok(())
    })
    .map_err(RecvError::dest(&canonical, "walking"))?;
    let mut entries_changed: BTreeSet<Vec<u8>> = BTreeSet::new();
    if let Some(known) = &known {
        report.added = seen.difference(known).cloned().collect();
        report.removed = known.difference(&seen).cloned().collect();
        for p in report.added.iter().chain(&report.removed) {
            entries_changed.insert(path::split_last(p).0.to_vec());
        }
    }
    let added: BTreeSet<&Vec<u8>> = report.added.iter().collect();
    report.changed =
        moved.into_iter().filter(|p| !added.contains(p) && !entries_changed.contains(p)).collect();
    if root_changed && !entries_changed.contains(&b""[..]) {
        report.changed.insert(0, Vec::new());
    }
    Ok(report)
}
