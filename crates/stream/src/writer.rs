//! Writing a stream: header, framed and checksummed records, and the end record.
//!
//! The writer keeps the running state the end record needs (record count, byte count, chained
//! checksum) so that no caller can get it wrong. File data is never copied into a scratch buffer:
//! the frame header and small fields are written, then the data slice, then the CRC.

use std::io::Write;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::error::{ErrorKind, StreamError};
use crate::format::*;
use crate::header::StreamHeader;
use crate::record::{Class, Record};

/// How records are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterOptions {
    /// zstd level for data fields; `None` writes data uncompressed.
    pub compression_level: Option<i32>,
}

/// Data shorter than this is never worth a zstd frame.
const MIN_COMPRESS: usize = 128;

/// Where a record went: its index, the byte offset of its frame and the frame's flags (whether
/// its data went compressed), as a reader will see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub index: u64,
    pub offset: u64,
    pub flags: u16,
}

/// Writes one stream to any `io::Write`. Give it a buffered writer: small records are written
/// with one `write_all` each.
pub struct StreamWriter<W: Write> {
    out: W,
    index: u64,
    offset: u64,
    chain: crc32fast::Hasher,
    scratch: Vec<u8>,
    zbuf: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl<W: Write> StreamWriter<W> {
    /// Writes the header and returns a writer for the records.
    pub fn new(
        mut out: W,
        header: &StreamHeader,
        opts: WriterOptions,
    ) -> Result<Self, StreamError> {
        let at = |kind| StreamError { index: None, offset: 0, kind };
        let bytes = header.encode().map_err(at)?;
        out.write_all(&bytes).map_err(|e| at(ErrorKind::Io(e)))?;
        let mut chain = crc32fast::Hasher::new();
        chain.update(&bytes[bytes.len() - 4..]);
        let compressor = match opts.compression_level {
            Some(level) => {
                Some(zstd::bulk::Compressor::new(level).map_err(|e| at(ErrorKind::Io(e)))?)
            }
            None => None,
        };
        Ok(StreamWriter {
            out,
            index: header.resume.first_record,
            offset: bytes.len() as u64,
            chain,
            scratch: Vec::with_capacity(4096),
            zbuf: Vec::new(),
            compressor,
        })
    }

    /// Index the next record will get.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Writes one record. End records are written by [`finish`](Self::finish) only.
    pub fn write(&mut self, rec: &Record) -> Result<Placed, StreamError> {
        if matches!(rec, Record::End { .. }) {
            return Err(self.err(ErrorKind::EndByHand));
        }
        self.write_frame(rec)
    }

    /// The end record [`finish`](Self::finish) would write now.
    pub fn end_record(&self) -> Record {
        Record::End {
            records: self.index,
            bytes: self.offset,
            chain: self.chain.clone().finalize(),
        }
    }

    /// Writes the end record and returns the inner writer, flushed.
    pub fn finish(mut self) -> Result<W, StreamError> {
        self.write_frame(&self.end_record())?;
        self.out.flush().map_err(|e| self.err(ErrorKind::Io(e)))?;
        Ok(self.out)
    }

    fn err(&self, kind: ErrorKind) -> StreamError {
        StreamError { index: Some(self.index), offset: self.offset, kind }
    }

    fn write_frame(&mut self, rec: &Record) -> Result<Placed, StreamError> {
        let (index, offset) = (self.index, self.offset);
        let err = |kind| StreamError { index: Some(index), offset, kind };
        let Self { out, chain, scratch, zbuf, compressor, .. } = self;
        scratch.clear();
        scratch.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
        let mut tail = rec
            .encode_fields(scratch)
            .map_err(|(field, problem)| {
                err(ErrorKind::Malformed { record: rec.name(), field, problem })
            })?
            .unwrap_or(&[]);
        // A record that changes nothing may be skipped by a reader that does not know it.
        let mut flags = if rec.class() == Class::Check { FLAG_SKIPPABLE } else { 0 };
        if let (Some(z), true) = (compressor.as_mut(), tail.len() >= MIN_COMPRESS) {
            zbuf.clear();
            zbuf.reserve(zstd::zstd_safe::compress_bound(tail.len()));
            // Compression that does not pay for its length prefix is not used.
            if let Ok(n) = z.compress_to_buffer(tail, zbuf) {
                if n + 4 < tail.len() {
                    flags |= FLAG_COMPRESSED;
                    scratch.extend_from_slice(&(tail.len() as u32).to_le_bytes());
                    tail = &zbuf[..n];
                }
            }
        }
        let payload = (scratch.len() - FRAME_HEADER_LEN + tail.len()) as u64;
        if payload > u64::from(MAX_PAYLOAD) {
            return Err(err(ErrorKind::PayloadTooLarge {
                len: payload,
                max: u64::from(MAX_PAYLOAD),
            }));
        }
        LE::write_u16(&mut scratch[0..2], rec.code());
        LE::write_u16(&mut scratch[2..4], flags);
        LE::write_u32(&mut scratch[4..8], payload as u32);
        let mut h = crc32fast::Hasher::new();
        h.update(&index.to_le_bytes());
        h.update(scratch);
        h.update(tail);
        let crc = h.finalize().to_le_bytes();
        let io = |e| err(ErrorKind::Io(e));
        out.write_all(scratch).map_err(io)?;
        if !tail.is_empty() {
            out.write_all(tail).map_err(io)?;
        }
        out.write_all(&crc).map_err(io)?;
        chain.update(&crc);
        self.index += 1;
        self.offset += (FRAME_HEADER_LEN + FRAME_TRAILER_LEN) as u64 + payload;
        Ok(Placed { index, offset, flags })
    }
}
