//! What a receive that completed, or never began, can leave behind when it is cut (a kill, a
//! power cut): its journal and its holding directory in DEST, and DEST's own flags lifted. A
//! completed receive records DEST as holding the target before it removes its holding directory
//! (so that until then an abort can still roll it back), which makes that removal the next
//! command's to finish. Every command that takes DEST's lock settles this first, so that DEST
//! equals what its state says before anything looks at it.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use crate::config::Config;
use crate::dest;
use crate::fsutil;
use crate::journal::{self, Loaded};
use crate::journaled::{holding, root};
use crate::state::{self, State};

/// [`settle`] for a command that does not hold DEST's lock (`--resume-token`): takes it for the
/// while, unless a receive holds it (then that receive settles what needs settling).
pub fn settle_dest(cfg: &Config) {
    let Ok(dest) = dest::canonical(&cfg.dest) else { return };
    let Ok(found) = dest::find_state(&cfg.state_dir, &dest) else { return };
    let Ok(Ok(_lock)) = state::lock(&found.path, &state::show(&dest)) else { return };
    let Ok(st) = state::load(&found.path) else { return };
    settle(st.as_ref(), &found.path, &dest);
}

/// With no receive under way in `state` (DEST's state, read from `state_path` under its lock),
/// removes the leftovers of the receive of the journal beside it from DEST (`dest`, if it
/// exists): the holding directory, then DEST's own flags set as that receive left them to be
/// (the stream's, if it completed; what DEST had, if it never began), then the journal. The
/// removal changed DEST's root: a completed receive's state takes a new settled time, so that
/// `--check` and the next receive do not take the root for changed. Best effort: a leftover
/// that cannot go now is tried again by the next command. Returns whether there was a journal.
pub fn settle(state: Option<&State>, state_path: &Path, dest: &Path) -> bool {
    if state.is_some_and(|s| s.partial.is_some()) {
        return false;
    }
    let jpath = journal::journal_file(state_path);
    let loaded = match journal::load(&jpath) {
        Ok(Some(l)) => Some(l),
        Ok(None) => return false,
        // One killed while it made its journal: nothing of it is in DEST.
        Err(_) => None,
    };
    if let (Some(l), Ok(root_fd)) = (&loaded, dest::open_dir(dest)) {
        let _ = holding::remove(root_fd.as_fd(), &l.begin.holding);
        if let Some(flags) = flags_to_leave(state, l) {
            let _ = root::set(root_fd.as_fd(), flags);
        }
        if let Some(mut st) = state.filter(|s| completed(s, l)).cloned() {
            let _ = rustix::fs::syncfs(&root_fd);
            if let Some(last) = st.last.as_mut() {
                last.settled = Some(fsutil::settle());
            }
            if state::save(state_path, &st).is_err() {
                return true; // the journal stays: the next command tries again
            }
        }
    }
    let _ = fs::remove_file(&jpath);
    true
}

/// Whether DEST's state says the journal's receive completed.
fn completed(state: &State, l: &Loaded) -> bool {
    state.last.as_ref().is_some_and(|d| d.target == l.begin.target)
}

/// DEST's own flags as the journal's receive leaves them: its last note if it completed (DEST's
/// state names its target), else what DEST had before it.
fn flags_to_leave(state: Option<&State>, l: &Loaded) -> Option<u32> {
    match state.is_some_and(|s| completed(s, l)) {
        true => root::noted(l).or_else(|| root::original(l)),
        false => root::original(l),
    }
}
