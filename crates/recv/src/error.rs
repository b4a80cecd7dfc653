//! The library's typed errors and warnings: what went wrong, on which record, where in the
//! stream, on which path, in which operation.
//!
//! They are values, not text: the binary (`report.rs`) decides the exit code and adds what a
//! person should do, and tests match on variants. Every record-level failure carries the record
//! index, its byte offset, the record's operation name and its path(s), because "which record
//! broke" is the first question anyone debugging a receive asks.

use std::io;
use std::path::{Path, PathBuf};

use anysend_stream::{Record, StreamError};

use crate::path::{Brief, PathProblem};
use crate::state::Refusal;

/// Why a receive (or a dry run) did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The stream itself: damaged, truncated, unsupported, or the input failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A well-formed stream this version cannot apply.
    #[error("stream header: {0}")]
    Unsupported(&'static str),
    /// DEST or its state refuses this stream (base check, not empty, busy); nothing was applied.
    #[error("{0}")]
    Refused(Refusal),
    /// One record could not be applied, or was refused before it was.
    #[error("{0}")]
    Record(Box<RecordError>),
    /// DEST itself could not be prepared, opened or synced.
    #[error("destination {}: {step}: {source}", path.display())]
    Dest {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// The state file could not be read or written.
    #[error("state file {}: {step}: {source}", path.display())]
    State {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// Bytes follow a stream that was received completely: DEST holds its target and its state
    /// says so; what follows was not read.
    #[error(
        "{}: the stream was received completely, but data follows its end record (at byte {offset})",
        dest.display()
    )]
    TrailingData { dest: PathBuf, offset: u64 },
    /// `--abort` could not undo one step.
    #[error(
        "{}: rolling back stopped at the undo step of record {index} ({step}): {source}",
        dest.display()
    )]
    Abort {
        dest: PathBuf,
        index: u64,
        step: String,
        #[source]
        source: io::Error,
    },
}

impl RecvError {
    /// The error of step `step` on DEST (or a path beside it) at `path`, for `map_err`.
    pub(crate) fn dest<'a>(
        path: &'a Path,
        step: &'static str,
    ) -> impl FnOnce(io::Error) -> RecvError + 'a {
        move |source| RecvError::Dest { path: path.to_path_buf(), step, source }
    }

    /// The error of step `step` on the state (or journal) file `path`, for `map_err`.
    pub(crate) fn state<'a>(
        path: &'a Path,
        step: &'static str,
    ) -> impl FnOnce(io::Error) -> RecvError + 'a {
        move |source| RecvError::State { path: path.to_path_buf(), step, source }
    }
}

impl From<Refusal> for RecvError {
    fn from(r: Refusal) -> Self {
        RecvError::Refused(r)
    }
}

impl From<RecordError> for RecvError {
    fn from(e: RecordError) -> Self {
        RecvError::Record(Box::new(e))
    }
}

/// One record that failed, with everything needed to find it again (`anyrecv --dump` prints the
/// same index and offset).
#[derive(Debug)]
pub struct RecordError {
    pub index: u64,
    /// Byte offset of the record's first byte in the stream.
    pub offset: u64,
    /// The record type's name (`mkdir`, `rename`, ...).
    pub op: &'static str,
    pub path: Vec<u8>,
    /// The second path of `link` (existing) and `rename` (to).
    pub path2: Option<Vec<u8>>,
    pub problem: Problem,
}

impl RecordError {
    /// Record `index`, at byte `offset` of the stream, failed with `problem`.
    pub fn new(index: u64, offset: u64, rec: &Record, problem: Problem) -> RecordError {
        RecordError {
            index,
            offset,
            op: rec.name(),
            path: rec.path().unwrap_or_default().to_vec(),
            path2: rec.second_path().map(<[u8]>::to_vec),
            problem,
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} at byte {}: {} {}",
            self.index,
            self.offset,
            self.op,
            Brief(&self.path)
        )?;
        if let Some(p2) = &self.path2 {
            let arrow = if self.op == "link" { "<=" } else { "->" };
            write!(f, " {arrow} {}", Brief(p2))?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.problem.source_io().map(|e| e as _)
    }
}

/// What is wrong with one record.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A path field breaks the path rules (checked before anything is touched).
    #[error("the `{field}` path is refused: {problem}")]
    BadPath { field: &'static str, problem: PathProblem },
    /// A directory on the way is a symbolic link: following it could leave DEST.
    #[error("{} is a symbolic link; anyrecv never follows symbolic links inside DEST", Brief(.at))]
    ThroughSymlink { at: Vec<u8> },
    /// The kernel reported that resolution would leave DEST.
    #[error("the path resolves outside DEST")]
    Escapes,
    /// The final component is a symbolic link and the operation would act through it.
    #[error("it is a symbolic link; anyrecv does not {0} through symbolic links")]
    FinalSymlink(&'static str),
    /// A command-line policy refuses the record.
    #[error("{0}")]
    Policy(String),
    /// A field value that cannot be applied on any Linux system.
    #[error("{0}")]
    Invalid(String),
    /// A directory on the way is missing, not a directory, or cannot be opened.
    #[error("parent directory {}: {source}", Brief(.at))]
    Parent {
        at: Vec<u8>,
        #[source]
        source: io::Error,
    },
    /// A file-data record names something that is not a regular file.
    #[error("it is a {found}, not a regular file")]
    NotRegular { found: &'static str },
    /// The object changed between checking and opening it.
    #[error("it changed while being opened (another process is modifying DEST)")]
    Raced,
    /// `copy_from_origin` reads past the end of the file as it is in DEST.
    #[error(
        "the file is {size} bytes long, but the record copies bytes up to {wanted} of its origin \
         version"
    )]
    OriginShort { size: u64, wanted: u64 },
    /// Inode flags on something that cannot carry them.
    #[error("inode flags {flags:#x} cannot be set on a {found}")]
    FlagsOnSpecial { flags: u32, found: &'static str },
    /// Ownership could not be set and `--strict-owner` is given.
    #[error("cannot set owner {uid}:{gid}: {source} (--strict-owner makes this an error)")]
    Ownership {
        uid: u32,
        gid: u32,
        #[source]
        source: io::Error,
    },
    /// Writing down what the record is about to do failed: the journal, in the state
    /// directory (not DEST's file system, whose errors are [`Problem::Os`]).
    #[error("{step} (in the state directory): {source}")]
    Journal {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// The system call for the operation failed; `step` names it when it is not the record's
    /// own operation.
    #[error("{}{source}", if step.is_empty() { String::new() } else { format!("{step}: ") })]
    Os {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Problem {
    /// Whether the record was refused for safety or policy (nothing about it was applied), as
    /// opposed to failing on the destination.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Problem::BadPath { .. }
                | Problem::ThroughSymlink { .. }
                | Problem::Escapes
                | Problem::FinalSymlink(_)
                | Problem::Policy(_)
                | Problem::Invalid(_)
        )
    }

    /// The OS error underneath, if there is one.
    pub fn source_io(&self) -> Option<&io::Error> {
        match self {
            Problem::Parent { source, .. }
            | Problem::Ownership { source, .. }
            | Problem::Os { source, .. }
            | Problem::Journal { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn os(step: &'static str) -> impl FnOnce(rustix::io::Errno) -> Problem {
        move |e| Problem::Os { step, source: e.into() }
    }

    pub(crate) fn io(step: &'static str) -> impl FnOnce(io::Error) -> Problem {
        move |source| Problem::Os { step, source }
    }
}

/// Something a person should know although the receive goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Not root: ownership is left as it is. Given once per receive.
    Ownership { index: u64, path: Vec<u8>, uid: u32, gid: u32, euid: u32 },
    /// DEST's file system cannot hold an inode flag. Given once per flag.
    Flag { index: u64, path: Vec<u8>, flag: u32, errno: Option<i32> },
    /// DEST's file system cannot punch holes; zeros were written. Given once.
    HolesAsZeros { index: u64, path: Vec<u8> },
    /// `--force` overrode a refusal of the base check.
    Forced(String),
    /// DEST's state was found by DEST's identity, not its path: DEST was last received through
    /// another path (a bind mount, a mount point renamed or moved).
    StateByIdentity { state_file: PathBuf, received_as: Vec<u8> },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::Ownership { index, path, uid, gid, euid } => write!(
                f,
                "not running as root (uid {euid}): ownership is not applied, files stay owned by \
                 uid {euid} (first at record {index}: chown {} to {uid}:{gid}); use \
                 --strict-owner to make this an error",
                Brief(path)
            ),
            Warning::Flag { index, path, flag, errno } => {
                let why = match errno {
                    Some(e) => format!(": {}", io::Error::from_raw_os_error(*e)),
                    None => String::new(),
                };
                write!(
                    f,
                    "the file system of DEST cannot hold the inode flag {} (first at record \
                     {index}: set_flags {}{why}); it is not applied anywhere in this receive",
                    flag_name(*flag),
                    Brief(path)
                )
            }
            Warning::HolesAsZeros { index, path } => write!(
                f,
                "the file system of DEST cannot punch holes (first at record {index}: hole {}); \
                 zeros are written instead, so files take more space than at the origin",
                Brief(path)
            ),
            Warning::Forced(what) => write!(f, "--force: applying although {what}"),
            Warning::StateByIdentity { state_file, received_as } => write!(
                f,
                "DEST's state was found by its identity (file system UUID and inode): DEST was \
                 last received as {} (state file {})",
                crate::path::Shown(received_as),
                state_file.display()
            ),
        }
    }
}

/// `chattr` letter and name of one FS_IOC_SETFLAGS bit, for messages.
pub fn flag_name(bit: u32) -> String {
    let known = match bit {
        0x1 => Some(("s", "secure deletion")),
        0x2 => Some(("u", "undeletable")),
        0x4 => Some(("c", "compressed")),
        0x8 => Some(("S", "synchronous updates")),
        0x10 => Some(("i", "immutable")),
        0x20 => Some(("a", "append only")),
        0x40 => Some(("d", "no dump")),
        0x80 => Some(("A", "no atime updates")),
        0x400 => Some(("m", "no compression")),
        0x4000 => Some(("j", "data journalling")),
        0x8000 => Some(("t", "no tail-merging")),
        0x10000 => Some(("D", "synchronous directory updates")),
        0x20000 => Some(("T", "top of directory hierarchy")),
        0x800000 => Some(("C", "no copy on write")),
        0x2000000 => Some(("x", "direct access")),
        0x20000000 => Some(("P", "project hierarchy")),
        0x40000000 => Some(("F", "casefold")),
        _ => None,
    };
    match known {
        Some((letter, name)) => format!("{bit:#x} ({letter}, {name})"),
        None => format!("{bit:#x}"),
    }
}
