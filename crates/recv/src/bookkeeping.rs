//! DEST's state file as a receive goes (`state.rs` has the file itself): it records the stream
//! being applied before the first record changes DEST, where the receive stopped after a
//! failure, and the new target only once DEST holds it, so that the state never claims more
//! than DEST holds.

use std::fs;
use std::path::{Path, PathBuf};

use anysend_stream::StreamHeader;

use crate::error::RecvError;
use crate::fsutil::Time;
use crate::state::{self, State};

/// The state of one receive's DEST, and how far the receive got.
pub struct Bookkeeping {
    path: PathBuf,
    /// The state before this receive, put back if a failure happens before anything applied.
    before: Option<State>,
    state: State,
    begun: bool,
    /// Continuing an interrupted receive: a failure never undoes what the journal records.
    resumed: bool,
    /// Records applied by this receive.
    applied: u64,
}

impl Bookkeeping {
    /// A fresh receive that will make `state` of DEST's state file `path`, which holds `before`.
    pub fn fresh(path: PathBuf, before: Option<State>, state: State) -> Bookkeeping {
        Bookkeeping { path, before, state, begun: false, resumed: false, applied: 0 }
    }

    /// The continuation of an interrupted receive, whose `state` is recorded already.
    pub fn resumed(path: PathBuf, state: State) -> Bookkeeping {
        Bookkeeping { path, before: None, state, begun: true, resumed: true, applied: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the state says the receive has begun changing DEST.
    pub fn begun(&self) -> bool {
        self.begun
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Counts one more record applied.
    pub fn applied_one(&mut self) {
        self.applied += 1;
    }

    /// Records that `header`'s stream is being applied from record `first` on, before the
    /// record changes DEST.
    pub fn begin(&mut self, header: &StreamHeader, first: u64) -> Result<(), RecvError> {
        self.state.begin(header, first);
        state::save(&self.path, &self.state)
            .map_err(RecvError::state(&self.path, "recording the receive in progress"))?;
        self.begun = true;
        Ok(())
    }

    /// Whether DEST is as it was before this receive (nothing applied, and no earlier receive
    /// continued), bar the journal's holding directory.
    pub fn untouched(&self) -> bool {
        self.applied == 0 && !self.resumed
    }

    /// Puts back the state from before the receive (best effort: the error being reported
    /// matters more than a failure to record it).
    pub fn put_back(&self) {
        let _ = match &self.before {
            Some(s) => state::save(&self.path, s),
            None => fs::remove_file(&self.path),
        };
    }

    /// When the last receive completed, if the state says.
    pub fn settled(&self) -> Option<Time> {
        self.before.as_ref().unwrap_or(&self.state).last.as_ref().and_then(|l| l.settled)
    }

    /// Whether this receive continues an interrupted one.
    pub fn continues(&self) -> bool {
        self.resumed
    }

    /// Records that the receive stopped with record `next` not applied (best effort).
    pub fn stopped(&mut self, next: u64) {
        if let Some(p) = &mut self.state.partial {
            p.next_record = next;
        }
        let _ = state::save(&self.path, &self.state);
    }

    /// The length of DEST's names log after the last receive, if the state says.
    pub fn names_len(&self) -> Option<u64> {
        self.before.as_ref().unwrap_or(&self.state).last.as_ref().and_then(|l| l.names_len)
    }

    /// Records that `header`'s stream (`bytes` long) was received completely (DEST is synced
    /// already, and no object of it changed after `settled`), its names log `names_len` bytes
    /// long.
    pub fn complete(
        &mut self,
        header: &StreamHeader,
        settled: Time,
        names_len: Option<u64>,
        bytes: u64,
    ) -> Result<(), RecvError> {
        self.state.complete(header, Some(settled), names_len, Some(bytes));
        state::save(&self.path, &self.state)
            .map_err(RecvError::state(&self.path, "recording the completed receive"))
    }

    /// After the completed receive tidied DEST: DEST settled at `settled`.
    pub fn settled_at(&mut self, settled: Time) -> Result<(), RecvError> {
        if let Some(last) = self.state.last.as_mut() {
            last.settled = Some(settled);
        }
        state::save(&self.path, &self.state)
            .map_err(RecvError::state(&self.path, "recording when DEST settled"))
    }
}
