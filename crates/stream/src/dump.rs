//! Text forms of stream content for people: escaped byte strings, paths in messages, and the
//! `--dump` line.
//!
//! Names are bytes; the dump shows them so that every byte string has exactly one rendering and
//! can be read back: printable ASCII as itself, `\\`, `\"`, `\n`, `\t`, and `\xNN` for the rest.

use std::fmt;

use crate::header::StreamHeader;
use crate::reader::Frame;
use crate::record::Record;

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

/// A path shown to people: [`Escaped`], and `.` for the empty path (the receiving root itself).
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            write!(f, "{}", Escaped(self.0))
        }
    }
}

/// [`Shown`] for messages: a path of more than [`Brief::MAX`] bytes (a crafted stream may
/// carry a megabyte) shows its first and last bytes around `…` and its length, so that one
/// error stays a few lines.
pub struct Brief<'a>(pub &'a [u8]);

impl Brief<'_> {
    /// The longest path shown whole.
    pub const MAX: usize = 512;
    /// Bytes shown at each end of a longer one.
    const END: usize = 160;
}

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        if p.len() <= Brief::MAX {
            return write!(f, "{}", Shown(p));
        }
        let (head, tail) = (&p[..Brief::END], &p[p.len() - Brief::END..]);
        write!(f, "{}…{} ({} bytes)", Escaped(head), Escaped(tail), p.len())
    }
}

/// [`Shown`], cut to its last `max` characters (after `...`) when longer: for a line that must
/// stay one line of a terminal, where the end of a path tells most.
pub fn shown_tail(path: &[u8], max: usize) -> String {
    let s = Shown(path).to_string();
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    let keep = max.saturating_sub(3);
    let tail: String = s.chars().skip(n - keep).collect();
    format!("...{tail}")
}

/// The `--dump` line of the stream header: the header extension's items (1.2) that are there
/// after the sender, and ` filtered` at its end when header flag FILTERED is set, so that the
/// line of a stream without either is what it always was.
pub fn header_line(h: &StreamHeader) -> String {
    let origin = h.origin.map_or_else(|| "none".to_string(), |o| o.to_string());
    let mut ext = String::new();
    if let Some(e) = h.estimate {
        ext.push_str(&format!(" estimate={e}"));
    }
    if let Some(l) = &h.origin_label {
        ext.push_str(&format!(" origin_label=\"{}\"", Escaped(l)));
    }
    if let Some(l) = &h.target_label {
        ext.push_str(&format!(" target_label=\"{}\"", Escaped(l)));
    }
    format!(
        "header version={}.{} stream={} origin={} target={} created={}.{:09} first_record={} data_offset={} sender=\"{}\"{ext}{}",
        h.version_major,
        h.version_minor,
        h.stream_id,
        origin,
        h.target,
        h.created_sec,
        h.created_nsec,
        h.resume.first_record,
        h.resume.data_offset,
        Escaped(&h.sender_version),
        if h.filtered { " filtered" } else { "" }
    )
}

/// The `--dump` line of one record: index, byte offset, the record, and whether its data went
/// compressed (`flags` as in its frame). A sender listing what it writes uses it too, so that
/// both sides print the same line for the same record.
pub fn record_line(index: u64, offset: u64, flags: u16, rec: &Record) -> String {
    let z = if flags & crate::format::FLAG_COMPRESSED != 0 { " (zstd)" } else { "" };
    format!("{index:>8} @{offset:<12} {rec}{z}")
}

/// The `--dump` line of one frame as read: [`record_line`], or what is known of a record of an
/// unknown type that was skipped.
pub fn frame_line(fr: &Frame) -> String {
    match &fr.record {
        Some(r) => record_line(fr.index, fr.offset, fr.flags, r),
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

#[cfg(test)]
mod tests {
    use super::Brief;

    #[test]
    fn a_long_path_is_shown_brief() {
        assert_eq!(Brief(b"a/b\n").to_string(), "a/b\\n");
        assert_eq!(Brief(b"").to_string(), ".");
        let long = [b"x".repeat(600), b"/end".to_vec()].concat();
        let s = Brief(&long).to_string();
        assert!(s.starts_with(&"x".repeat(160)) && s.contains('…'), "{s}");
        assert!(s.ends_with("/end (604 bytes)"), "{s}");
        assert!(s.len() < 400, "{s}");
    }
}
