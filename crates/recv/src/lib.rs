//! anyrecv as a library: verify an anysend stream record by record and apply it beneath a
//! destination directory that it never leaves.
//!
//! The command ([`cli`], called by the root package's `anyrecv` binary) is a thin shell around
//! [`receive()`]: it parses flags into a
//! [`Config`], runs, and turns a [`RecvError`] into a message, advice and an exit code
//! ([`report`]). Tests call [`receive()`] directly.
//!
//! # Which module to open for what
//!
//! | to see | open |
//! |---|---|
//! | where a receive starts and which way it goes (dry run, `--atomic`, straight into DEST) | [`receive`](mod@receive) |
//! | the order of a receive into DEST: base check or resume, records read ahead, completion | [`direct`] |
//! | `-n`: checking a whole stream and the base without changing anything | [`dry_run`] |
//! | `--atomic`: a staging copy beside DEST, switched in with one rename | [`atomic`] |
//! | how each record kind is applied to a file system (mkdir, rename, write, chmod, ...) | [`apply`] |
//! | the system calls apply and rollback share (chmod, chown, xattrs, flags, rename) | [`ops`] |
//! | what a journaled receive does around each record: undo steps, keeping origin bytes, the holding directory, replay after a kill, resuming | [`journaled`] |
//! | the journal file's format | [`journal`] |
//! | `--abort`: the undo steps applied in reverse | [`rollback`] |
//! | `--resume-token`, and what is known of an interrupted receive | [`resume`] |
//! | DEST's state file and the base check | [`state`]; as a receive goes: [`bookkeeping`] |
//! | finding, opening and making DEST; its identity (file system UUID, inode) and its state file, by path or by identity | [`dest`], [`state`] |
//! | whether DEST still holds the stream's origin where the stream changes it (`expect`) | [`drift`] |
//! | `--check`: what was changed in DEST since its last receive | [`check`], with the names log [`names`] |
//! | `--status`: what DEST holds, and whether a receive into it is interrupted | [`status`] |
//! | what a record may ask for (path rules, `--no-devices`, `--no-setuid`) | [`validate`], [`path`] |
//! | opening directories beneath DEST without following symlinks | [`resolve`] |
//! | reading ahead in the input | [`lookahead`] |
//! | copies that keep holes, tree removal, times, the page cache | [`fsutil`] |
//! | errors, warnings, exit codes and advice | [`error`], [`report`] |
//! | options | [`config`] |
//! | the `anyrecv` command: flags, help text, messages | [`cli`] |
//!
//! No module imports one that imports it, directly or through others. A receive goes
//! `receive` → `atomic` (if asked) → `direct` → `journaled` → `apply` → `ops` and `resolve`;
//! `--abort` goes `rollback` → `resume`, then the undo steps through `ops` (the same calls as
//! `apply`) and `journaled::holding`. The journal's format (`journal`) knows nothing of who
//! writes it, the state file (`state`) nothing of receives.

pub mod apply;
pub mod atomic;
pub mod bookkeeping;
pub mod check;
pub mod cli;
pub mod config;
pub mod dest;
pub mod direct;
pub mod drift;
pub mod dry_run;
pub mod error;
pub mod fsutil;
pub mod journal;
pub mod journaled;
pub mod leftover;
pub mod lookahead;
pub mod names;
pub mod ops;
pub mod path;
pub mod receive;
pub mod report;
pub mod resolve;
pub mod resume;
pub mod rollback;
pub mod state;
pub mod status;
pub mod summary;
pub mod validate;

pub use config::{Config, Policy};
pub use error::{Problem, RecordError, RecvError, Warning};
pub use receive::{receive, receive_with_progress};
pub use state::{Refusal, Verdict};
pub use summary::{Summary, Tick};
