//! anyrecv as a library: verify an anysend stream record by record and apply it beneath a
//! destination directory that it never leaves.
//!
//! The binary (`main.rs`) is a thin shell around [`receive`]: it parses flags into a
//! [`Config`], runs, and turns a [`RecvError`] into a message, advice and an exit code
//! ([`report`]). Tests call [`receive`] directly.
//!
//! Modules, one job each:
//! - [`config`]: validated options (state directory resolution, policies);
//! - [`path`]: the path rules of the format, on bytes;
//! - [`validate`]: what one record may ask for, before anything is touched;
//! - [`resolve`]: opening parent directories beneath DEST without following symlinks;
//! - [`apply`]: one function per record kind;
//! - [`state`]: the per-DEST state outside DEST, and the base check;
//! - [`journal`]: the per-DEST receive journal (where a receive stopped, how to undo it), and
//!   `journaled` (private): what the applier does differently under a journal;
//! - [`resume`]: the resume token and `--abort`;
//! - [`fsutil`]: copies that keep holes, tree removal;
//! - [`receive`](mod@receive): the order of a whole receive (or dry run);
//! - [`error`] and [`report`]: typed errors, and their exit codes and advice for people.

pub mod apply;
pub mod atomic;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod journal;
mod journaled;
pub mod path;
pub mod receive;
pub mod report;
pub mod resolve;
pub mod resume;
pub mod state;
pub mod validate;

pub use config::{Config, Policy};
pub use error::{Problem, RecordError, RecvError, Warning};
pub use receive::{receive, receive_with_progress, Summary, Tick};
pub use state::{Refusal, Verdict};
