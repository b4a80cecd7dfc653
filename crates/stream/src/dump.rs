//! Text forms of stream content for people: escaped byte strings and the `--dump` line.
//!
//! Names are bytes; the dump shows them so that every byte string has exactly one rendering and
//! can be read back: printable ASCII as itself, `\\`, `\"`, `\n`, `\t`, and `\xNN` for the rest.

use std::fmt;

use crate::header::StreamHeader;
use crate::reader::Frame;

/// Displays bytes with the escapes described in the module doc.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'"' => f.write_str("\\\"")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

/// The `--dump` line of the stream header.
pub fn header_line(h: &StreamHeader) -> String {
    let origin = h.origin.map_or_else(|| "none".to_string(), |o| o.to_string());
    format!(
        "header version={}.{} stream={} origin={} target={} created={}.{:09} first_record={} data_offset={} sender=\"{}\"",
        h.version_major,
        h.version_minor,
        h.stream_id,
        origin,
        h.target,
        h.created_sec,
        h.created_nsec,
        h.resume.first_record,
        h.resume.data_offset,
        Escaped(&h.sender_version)
    )
}

/// The `--dump` line of one record: index, byte offset, then the record.
pub fn frame_line(fr: &Frame) -> String {
    let z = if fr.flags & crate::format::FLAG_COMPRESSED != 0 { " (zstd)" } else { "" };
    match &fr.record {
        Some(r) => format!("{:>8} @{:<12} {r}{z}", fr.index, fr.offset),
        None => format!(
            "{:>8} @{:<12} {:<16} type={:#06x} flags={:#06x} wire_len={} (unknown type, skippable: skipped)",
            fr.index, fr.offset, "?", fr.code, fr.flags, fr.wire_len
        ),
    }
}

/// What a whole-stream dump saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSummary {
    pub records: u64,
    pub bytes: u64,
}

/// Reads a whole stream, writing one line for the header and one per record to `out`, and
/// verifies it to the last byte (checksums, end record, nothing after it). Lines already
/// written stay written when a later record fails, so a person sees how far the stream is good.
pub fn dump_stream<R: std::io::Read, W: std::io::Write>(
    input: R,
    out: &mut W,
) -> Result<DumpSummary, DumpError> {
    let mut reader = crate::StreamReader::new(input)?;
    writeln!(out, "{}", header_line(reader.header()))?;
    while let Some(frame) = reader.next_frame()? {
        writeln!(out, "{}", frame_line(&frame))?;
    }
    reader.expect_eof()?;
    Ok(DumpSummary { records: reader.records_read(), bytes: reader.offset() })
}

/// A dump fails either on the stream or on writing the text.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Stream(#[from] crate::StreamError),
    #[error("writing the dump: {0}")]
    Output(#[from] std::io::Error),
}
