//! Test streams: well-formed ones written with the stream crate's own writer, hostile ones
//! assembled byte by byte, and whole streams decoded back into records.
//!
//! Every crate's tests make streams the same way, so they live here once: a test that needs a
//! stream names its records and ids, not the framing. Well-formed streams always go through
//! [`StreamWriter`], never through bytes of our own, so they stay valid when the format's
//! encoding changes; only streams the writer refuses to make (wrong lengths, unknown types) are
//! built with [`raw_record`].

use anysend_stream::{Id, Record, StreamHeader, StreamReader, StreamWriter, WriterOptions};

/// The id whose 16 bytes are all `b`: tests tell snapshots apart by one byte.
pub fn id(b: u8) -> Id {
    Id([b; 16])
}

/// The header of a stream from snapshot `origin` (None: a full stream) to `target`. The stream
/// id is derived from both, so two streams of one pair share it and other pairs do not.
pub fn header(origin: Option<u8>, target: u8) -> StreamHeader {
    let sid = origin.unwrap_or(0).wrapping_mul(31).wrapping_add(target);
    StreamHeader::new(id(sid), origin.map(id), id(target), 1_764_115_200, 0)
}

/// A stream of `records` after `header`, written by the stream crate's writer.
pub fn write(header: &StreamHeader, records: &[Record], options: WriterOptions) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new(), header, options).expect("header");
    for r in records {
        w.write(r).expect("record");
    }
    w.finish().expect("finish")
}

/// A stream of `records` from `origin` (None: a full stream) to `target`, uncompressed.
pub fn stream(origin: Option<u8>, target: u8, records: &[Record]) -> Vec<u8> {
    stream_with(origin, target, records, WriterOptions::default())
}

/// [`stream`] with writer options (compression).
pub fn stream_with(
    origin: Option<u8>,
    target: u8,
    records: &[Record],
    options: WriterOptions,
) -> Vec<u8> {
    write(&header(origin, target), records, options)
}

/// Raw record bytes at `index`, CRC included, for streams the writer refuses to make:
/// `declared_len` None declares the payload's true length.
pub fn raw_record(
    index: u64,
    code: u16,
    flags: u16,
    payload: &[u8],
    declared_len: Option<u32>,
) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&code.to_le_bytes());
    r.extend_from_slice(&flags.to_le_bytes());
    r.extend_from_slice(&declared_len.unwrap_or(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(payload);
    // The record CRC covers the record's index too, so a record moved elsewhere fails.
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&r);
    r.extend_from_slice(&h.finalize().to_le_bytes());
    r
}

/// The header of a full stream to `target`, as bytes (to put [`raw_record`]s after).
pub fn raw_header(target: u8) -> Vec<u8> {
    StreamHeader::new(id(target), None, id(target), 0, 0).encode().expect("header")
}

/// A length-prefixed (u32) byte string, as the format's path and name fields are.
pub fn lp(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// The header and every record of a whole stream, each with its index; panics unless the
/// stream reads cleanly to its end record with nothing after it.
pub fn decode(bytes: &[u8]) -> (StreamHeader, Vec<(u64, Record)>) {
    let mut r = StreamReader::new(bytes).expect("header");
    let header = r.header().clone();
    let mut records = Vec::new();
    while let Some(f) = r.next_frame().expect("valid record") {
        records.push((f.index, f.record.expect("known record")));
    }
    r.expect_eof().expect("nothing after the end record");
    (header, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_record_is_what_the_writer_writes() {
        let mkdir = Record::Mkdir { path: b"d".to_vec() };
        let written = stream(None, 1, std::slice::from_ref(&mkdir));
        let (h, records) = decode(&written);
        assert_eq!((h.origin, h.target), (None, id(1)));
        assert_eq!(records[0], (0, mkdir));
        let at = header(None, 1).encode().unwrap().len();
        let raw = raw_record(0, 1, 0, &lp(b"d"), None);
        assert_eq!(&written[at..at + raw.len()], &raw[..]);
    }
}
