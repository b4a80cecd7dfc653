//! Errors of reading and writing streams.
//!
//! Policy: every error says where it happened (record index and byte offset, or the header) and
//! what went wrong; [`StreamError::hint`] says what a person should do about it. The reader never
//! panics on input: anything a stream can contain maps to one of these kinds.

use std::fmt;
use std::io;

use crate::field::FieldProblem;

/// What went wrong, without the position.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    #[error("the stream ends in the middle of {0}")]
    Truncated(&'static str),
    #[error("not an anysend stream (it starts with {0:02x?}, not \"ANYSEND\\n\")")]
    BadMagic([u8; 8]),
    #[error("stream format version {major}.{minor} is not readable by this version (reads 1.x)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("header length {0} is out of range")]
    BadHeaderLength(u32),
    #[error("invalid header: {0}")]
    HeaderField(&'static str),
    #[error("the stream needs features this version does not know (bits {0:#x})")]
    UnknownRequiredFeatures(u64),
    #[error("checksum mismatch in the {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { what: &'static str, stored: u32, computed: u32 },
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge { len: u64, max: u64 },
    #[error("record type {0} is unknown to this version and not marked skippable")]
    UnknownRecord(u16),
    #[error("record flags {0:#06x} include bits this version must understand but does not")]
    UnknownFlags(u16),
    #[error("malformed {record} record, field `{field}`: {problem}")]
    Malformed { record: &'static str, field: &'static str, problem: FieldProblem },
    #[error("end record disagrees with the stream: {what} is {stored} in the record but {computed} was read")]
    EndMismatch { what: &'static str, stored: u64, computed: u64 },
    #[error("the stream ends without an end record")]
    MissingEnd,
    #[error("data follows the end record")]
    TrailingData,
    #[error("an end record cannot be written by hand; finish() writes it")]
    EndByHand,
}

/// An error with its place in the stream.
#[derive(Debug)]
pub struct StreamError {
    /// Index of the record being read or written; `None` in the stream header.
    pub index: Option<u64>,
    /// Byte offset of the start of that record (or 0 for the header).
    pub offset: u64,
    pub kind: ErrorKind,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "record {i} at byte {}: {}", self.offset, self.kind),
            None => write!(f, "stream header: {}", self.kind),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

impl StreamError {
    /// Whether the stream's bytes are damaged or cut short (as opposed to unsupported or
    /// unreadable for another reason).
    pub fn is_damage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Truncated(_)
                | ErrorKind::BadHeaderLength(_)
                | ErrorKind::HeaderField(_)
                | ErrorKind::Checksum { .. }
                | ErrorKind::PayloadTooLarge { .. }
                | ErrorKind::UnknownFlags(_)
                | ErrorKind::UnknownRecord(_)
                | ErrorKind::Malformed { .. }
                | ErrorKind::EndMismatch { .. }
                | ErrorKind::MissingEnd
                | ErrorKind::TrailingData
        )
    }

    /// What a person should do about this error.
    pub fn hint(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Io(_) => "check the input (pipe, file or disk) and run again",
            ErrorKind::BadMagic(_) => {
                "this is not an anysend stream; check the file or command that produced it"
            }
            ErrorKind::UnsupportedVersion { .. } | ErrorKind::UnknownRequiredFeatures(_) => {
                "the stream was written by a newer anysend; upgrade the receiving side"
            }
            ErrorKind::EndByHand => "this is a bug in the program that writes the stream",
            ErrorKind::Truncated(_) | ErrorKind::MissingEnd => {
                "the stream was cut short (sender killed, link dropped or file incomplete); \
                 nothing from this record on was applied: send it again or fetch the whole file"
            }
            _ => {
                "the stream is damaged or was not written by anysend; nothing from this record on \
                  was applied: send it again, or fetch a good copy of the stream file"
            }
        }
    }
}
