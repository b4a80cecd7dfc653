//! The power-cut crash harness (issue 20): what a receive leaves on disk when the power is cut
//! at many moments, and whether `anyrecv` then resumes it to the target and rolls it back to the
//! origin.
//!
//! There is no device-mapper here (no `dm-flakey`, no `dm-log-writes`), but there are loop
//! devices over files on a reflink file system: a FICLONE of a loop device's backing file is an
//! instant copy of exactly what the file system above had written to its device at that moment
//! (the source range is flushed first), which is what a power cut of a write-through disk
//! leaves. So:
//! - [`backing`] owns the reflink file system (XFS, reflink=1, on a loop device over a sparse
//!   file) that holds every image, and the FICLONE helper;
//! - [`rig`] owns one destination set-up: DEST's file system and the state directory's file
//!   system, each an image in the backing store attached to a loop device that stays attached
//!   for the whole run (so DEST keeps its device number: anyrecv's state records it);
//! - [`points`] chooses the byte offsets of a stream worth cutting at;
//! - [`feed`] runs a receive fed through a pipe and freezes it (SIGSTOP) at those offsets and
//!   during its last syncs, while the rig clones the state image, then DEST's;
//! - [`check`] loads one cut into the rig, mounts it (journal replay) and resumes it or aborts
//!   it, and judges the result with the comparator;
//! - [`tally`] counts and groups the outcomes and prints the summary line;
//! - [`harness`] ties them together: per file system, record every stream of a chain, then
//!   check every cut.
//!
//! `docs/crash-harness.md` describes the model, what it does and does not cover, and how to run
//! it (`tests/e2e_crash.rs`).

pub mod backing;
pub mod check;
pub mod feed;
pub mod harness;
pub mod points;
pub mod rig;
pub mod tally;

use crate::cmd::CmdError;
use crate::loopfs::LoopFsError;

pub use harness::{run, Config, StreamSpec, Tools};
pub use tally::Tally;

/// Why the harness itself could not do its work (as opposed to a crash state that failed its
/// check, which is an outcome, [`check::Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum CrashError {
    #[error("{0}")]
    LoopFs(#[from] LoopFsError),
    #[error("{0}")]
    Cmd(#[from] CmdError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stream {stream}: {problem}")]
    Stream { stream: String, problem: String },
    #[error("the receive being recorded failed: {0}")]
    Recording(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CrashError {
    let what = what.into();
    move |source| CrashError::Io { what, source }
}
