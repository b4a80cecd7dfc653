//! After an interrupted receive: what is known of it, and its resume token (`anyrecv
//! --resume-token DEST`). Rolling it back (`anyrecv --abort DEST`) is `rollback.rs`.
//!
//! The token ([`anysend_stream::ResumeToken`], STREAM_FORMAT.md section 11) names the stream, its
//! snapshots and the record to continue at. `anysend --resume TOKEN` reads it back, checks the
//! ids against the snapshots it is given, and writes the rest of the stream from that record.
//!
//! anyrecv applies a record only after its CRC verified (STREAM_FORMAT.md section 8), so it never
//! holds part of a record's data: the data offset it puts in a token is always 0. The format
//! carries it for receivers that apply data as it arrives.

use std::path::PathBuf;

use anysend_stream::ResumePoint;

use crate::atomic;
use crate::config::Config;
use crate::dest;
use crate::error::RecvError;
use crate::journal::{self, Loaded};
use crate::state::{self, State};

/// The token format is the stream crate's: the sender reads what this side writes.
pub use anysend_stream::ResumeToken as Token;

/// What is known of an interrupted receive into DEST.
#[derive(Debug)]
pub struct Interrupted {
    pub dest: PathBuf,
    pub state_file: PathBuf,
    pub state: State,
    pub journal: Option<Loaded>,
}

impl Interrupted {
    pub fn token(&self) -> Option<Token> {
        let j = self.journal.as_ref()?;
        Some(Token {
            stream: j.begin.stream,
            origin: j.begin.origin,
            target: j.begin.target,
            point: ResumePoint { first_record: j.next_record(), data_offset: 0 },
        })
    }
}

/// The interrupted receive of `cfg.dest`, if there is one.
pub fn interrupted(cfg: &Config) -> Result<Option<Interrupted>, RecvError> {
    let dest = dest::canonical(&cfg.dest)?;
    let state_file = dest::find_state(&cfg.state_dir, &dest)?.path;
    let st = state::load(&state_file).map_err(RecvError::state(&state_file, "reading"))?;
    if st.as_ref().is_none_or(|s| s.partial.is_none()) {
        // An interrupted --atomic receive: its staging copy holds the journal.
        if let Some(staging) = atomic::interrupted_staging(cfg) {
            let mut c = cfg.clone();
            c.dest = staging;
            return interrupted(&c);
        }
    }
    let Some(st) = st else {
        return Ok(None);
    };
    if st.partial.is_none() {
        return Ok(None);
    }
    let jf = journal::journal_file(&state_file);
    let journal = journal::load(&jf).map_err(RecvError::state(&jf, "reading the journal"))?;
    let journal =
        journal.filter(|j| st.partial.as_ref().is_some_and(|p| p.stream == j.begin.stream));
    Ok(Some(Interrupted { dest, state_file, state: st, journal }))
}

/// The resume token of DEST's interrupted receive.
pub fn resume_token(cfg: &Config) -> Result<Token, RecvError> {
    let shown = state::show(&cfg.dest);
    // A receive cut after it completed leaves its holding directory to whoever comes next.
    crate::leftover::settle_dest(cfg);
    let Some(i) = interrupted(cfg)? else {
        return Err(RecvError::Refused(state::Refusal::NothingToResume { dest: shown }));
    };
    i.token().ok_or(RecvError::Refused(state::Refusal::NoJournal { dest: shown }))
}
