//! What a receive tells its caller: where it is after each record ([`Tick`]), and what it did
//! ([`Summary`]).

use std::path::PathBuf;

use anysend_stream::StreamHeader;

use crate::state::Verdict;

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
    /// The stream header's estimate of the stream's bytes, if it has one (a progress total).
    pub estimate: Option<u64>,
}
