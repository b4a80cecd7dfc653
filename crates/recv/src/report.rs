//! Errors for people: the exit code of each failure and what to do about it.
//!
//! The library's errors say what happened; this module adds the advice, in one place, so every
//! failure of the same kind gets the same advice and the exit codes documented in `--help`
//! (`EXIT_CODES`) cannot drift from the code that picks them.

use std::io;

use anysend_stream::ErrorKind;
use rustix::io::Errno;

use crate::error::{Problem, RecvError};

/// The stream was read (and applied, or checked) completely.
pub const EXIT_OK: u8 = 0;
/// The stream is damaged, truncated, not an anysend stream, or needs a newer anyrecv.
pub const EXIT_STREAM: u8 = 1;
/// The command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Reading the input or writing the output failed.
pub const EXIT_IO: u8 = 3;
/// DEST refused the stream before it was applied: base check, not empty, busy, or a record was
/// refused (unsafe path, symlink on the way, --no-devices, --no-setuid).
pub const EXIT_REFUSED: u8 = 4;
/// Applying failed on DEST (or its state could not be written): DEST may be partly updated.
pub const EXIT_APPLY: u8 = 5;

/// The exit-status section of `--help`.
pub const EXIT_CODES: &str = "\
Exit status:
  0  the stream was read and applied (or, with --dry-run, checked) completely
  1  the stream is damaged, truncated, not an anysend stream, or needs a newer anyrecv; or
     data follows its end record (the stream itself was applied and DEST is complete)
  2  the command line is wrong
  3  reading the input (or writing the --dump output) failed
  4  DEST refused the stream: its origin is not what DEST last received, a full stream into a
     non-empty directory, another receive is running, or a record was refused (unsafe path,
     symbolic link on the way, --no-devices, --no-setuid). Records before a refused record were
     applied; for the base check nothing was.
  5  applying failed on DEST (or its state could not be saved); DEST is partly updated
With --check: 0 when DEST is as its last receive left it, 1 when it was changed (each change
is listed), and the codes above for failures.";

/// The exit code for an error.
pub fn exit_code(e: &RecvError) -> u8 {
    match e {
        RecvError::Stream(s) if matches!(s.kind, ErrorKind::Io(_)) => EXIT_IO,
        RecvError::Stream(_) | RecvError::Unsupported(_) | RecvError::TrailingData { .. } => {
            EXIT_STREAM
        }
        RecvError::Refused(_) => EXIT_REFUSED,
        RecvError::Record(r) if r.problem.is_refusal() => EXIT_REFUSED,
        RecvError::Record(_)
        | RecvError::Dest { .. }
        | RecvError::State { .. }
        | RecvError::Abort { .. } => EXIT_APPLY,
    }
}

const MISMATCH: &str = "The destination does not match the stream's origin: it was changed \
    after the last receive, or a different stream was applied. Restore it from its origin \
    snapshot or use a full stream.";

const PARTLY: &str = "DEST is partly updated; its journal records where the receive stopped \
    (resume or abort it, see below).";

/// What a person should do about an error, in a sentence or three.
pub fn hint(e: &RecvError, dry_run: bool) -> String {
    let partly = if dry_run { "" } else { PARTLY };
    match e {
        RecvError::Stream(s) => format!("{}{}", capitalise(s.hint()), dot(s.hint())),
        RecvError::Unsupported(_) => {
            "Send the whole stream again (not resumed), or upgrade anyrecv.".into()
        }
        RecvError::Refused(r) => r.hint(),
        RecvError::Record(r) => match &r.problem {
            Problem::BadPath { .. }
            | Problem::ThroughSymlink { .. }
            | Problem::Escapes
            | Problem::FinalSymlink(_)
            | Problem::Invalid(_) => format!(
                "The stream tries to reach outside DEST or is malformed: do not trust its \
                 source. Nothing from this record on was applied.{}",
                if dry_run {
                    ""
                } else {
                    " Records before it were; restore DEST from its origin snapshot before another receive."
                }
            ),
            Problem::Policy(_) => format!(
                "Leave out the option if the stream is trusted to carry these. Nothing from \
                 this record on was applied.{}",
                if dry_run { "" } else { " Records before it were." }
            ),
            Problem::Ownership { .. } => format!(
                "Run anyrecv as root to keep ownership, or leave out --strict-owner. {partly}"
            ),
            Problem::OriginShort { .. } => format!("{MISMATCH} {partly}"),
            Problem::NotRegular { .. } => format!("{MISMATCH} {partly}"),
            Problem::FlagsOnSpecial { .. } => {
                format!("The stream is not one anysend writes. {partly}")
            }
            Problem::Raced => {
                format!("Stop other programs that write into DEST during a receive. {partly}")
            }
            Problem::Journal { source, .. } => {
                let full = matches!(
                    source.raw_os_error().map(Errno::from_raw_os_error),
                    Some(Errno::NOSPC | Errno::DQUOT)
                );
                let what = if full { "is full (or over quota)" } else { "failed" };
                format!(
                    "The file system of the state directory (--state-dir, ANYRECV_STATE_DIR) \
                     {what}, not DEST's: fix it there. {partly}"
                )
            }
            Problem::Parent { source, .. } | Problem::Os { source, .. } => {
                format!("{} {partly}", errno_hint(source))
            }
        },
        RecvError::TrailingData { .. } => "DEST holds the stream's target and is recorded as \
            complete; nothing after the end record was read or applied. Were two streams joined \
            into one input? Give anyrecv each stream on its own, in order."
            .into(),
        RecvError::Dest { source, .. } => errno_hint(source).to_string(),
        RecvError::Abort { .. } => "DEST stays marked as interrupted: fix the cause and run \
            anyrecv --abort DEST again, or restore DEST from its origin snapshot and receive \
            with --force."
            .into(),
        RecvError::State { .. } => "Check that the state directory (--state-dir, \
            ANYRECV_STATE_DIR) is writable and not full. If the failure came after the records \
            were applied, DEST holds the target but its state does not say so: the next \
            incremental receive needs --force."
            .into(),
    }
}

fn errno_hint(e: &io::Error) -> &'static str {
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    match errno {
        Some(
            Errno::EXIST
            | Errno::NOENT
            | Errno::NOTDIR
            | Errno::ISDIR
            | Errno::NOTEMPTY
            | Errno::NODATA,
        ) => MISMATCH,
        Some(Errno::NOSPC | Errno::DQUOT) => {
            "The file system of DEST is full (or over quota): free space, restore DEST from its \
             origin snapshot and receive again."
        }
        Some(Errno::ACCESS | Errno::PERM) => {
            "Permission denied: receive as root, or as the owner of DEST (without root, devices, \
             some inode flags and trusted.* attributes cannot be set)."
        }
        Some(Errno::ROFS) => "DEST is on a read-only file system.",
        Some(Errno::OPNOTSUPP) => {
            "The file system of DEST cannot hold what this record carries; receive onto a file \
             system that can (ext4, XFS, btrfs)."
        }
        Some(Errno::IO) => "The disk of DEST reported an I/O error: check it (dmesg).",
        _ => "Fix the cause shown above, restore DEST from its origin snapshot and receive again.",
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn dot(s: &str) -> &'static str {
    if s.ends_with('.') {
        ""
    } else {
        "."
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecordError;

    fn rec(problem: Problem) -> RecvError {
        RecordError {
            index: 12,
            offset: 3456,
            op: "rename",
            path: b"a/b".to_vec(),
            path2: Some(b"c".to_vec()),
            problem,
        }
        .into()
    }

    #[test]
    fn a_failed_rename_names_record_offset_paths_and_what_to_do() {
        let e = rec(Problem::Os { step: "", source: io::Error::from_raw_os_error(17) });
        assert_eq!(
            e.to_string(),
            "record 12 at byte 3456: rename a/b -> c: File exists (os error 17)"
        );
        assert_eq!(exit_code(&e), EXIT_APPLY);
        assert!(hint(&e, false).starts_with("The destination does not match the stream's origin"));
    }

    #[test]
    fn refusals_exit_4() {
        let e = rec(Problem::ThroughSymlink { at: b"a".to_vec() });
        assert_eq!(exit_code(&e), EXIT_REFUSED);
        assert!(e.to_string().contains("a is a symbolic link"));
    }
}
