//! Reading a stream: one verified record at a time, in memory bounded by the format's maxima.
//!
//! A record is yielded only after its frame, its CRC (which covers its index, so a dropped,
//! repeated or reordered record fails at once) and all its fields have been checked. Nothing is
//! allocated from a length field before that length has been checked against its maximum.

use std::io::Read;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::error::{ErrorKind, StreamError};
use crate::field::Cursor;
use crate::format::*;
use crate::header::{read_exact, StreamHeader};
use crate::record::Record;

/// One record as read, with its place in the stream.
#[derive(Debug)]
pub struct Frame {
    /// Record index in the numbering of the uninterrupted stream.
    pub index: u64,
    /// Byte offset of the record's first byte in this stream.
    pub offset: u64,
    /// Bytes the record takes on the wire, frame and CRC included.
    pub wire_len: u64,
    pub code: u16,
    pub flags: u16,
    /// The record; `None` for an unknown record type marked skippable, which is skipped.
    pub record: Option<Record>,
}

/// Reads one stream from any `io::Read`.
pub struct StreamReader<R: Read> {
    inner: R,
    header: StreamHeader,
    first_index: u64,
    index: u64,
    offset: u64,
    chain: crc32fast::Hasher,
    ended: bool,
}

impl<R: Read> StreamReader<R> {
    /// Reads and verifies the stream header.
    pub fn new(mut inner: R) -> Result<Self, StreamError> {
        let (header, len, crc) = StreamHeader::read_from(&mut inner)?;
        let mut chain = crc32fast::Hasher::new();
        chain.update(&crc.to_le_bytes());
        let first = header.resume.first_record;
        Ok(StreamReader {
            inner,
            header,
            first_index: first,
            index: first,
            offset: u64::from(len),
            chain,
            ended: false,
        })
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the end record has been read and verified.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn err(&self, kind: ErrorKind) -> StreamError {
        StreamError { index: Some(self.index), offset: self.offset, kind }
    }

    /// The next verified record; `Ok(None)` after the end record.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        if self.ended {
            return Ok(None);
        }
        let mut fh = [0u8; FRAME_HEADER_LEN];
        match read_exact(&mut self.inner, &mut fh, "a record header") {
            Ok(()) => {}
            Err(ErrorKind::Truncated(_)) if self.at_clean_eof(&fh) => {
                return Err(self.err(ErrorKind::MissingEnd));
            }
            Err(kind) => return Err(self.err(kind)),
        }
        let code = LE::read_u16(&fh[0..2]);
        let flags = LE::read_u16(&fh[2..4]);
        let len = LE::read_u32(&fh[4..8]);
        if len > MAX_PAYLOAD {
            return Err(self.err(ErrorKind::PayloadTooLarge {
                len: u64::from(len),
                max: u64::from(MAX_PAYLOAD),
            }));
        }
        let mut payload = vec![0u8; len as usize];
        read_exact(&mut self.inner, &mut payload, "a record payload").map_err(|k| self.err(k))?;
        let mut crc = [0u8; FRAME_TRAILER_LEN];
        read_exact(&mut self.inner, &mut crc, "a record checksum").map_err(|k| self.err(k))?;
        let stored = u32::from_le_bytes(crc);
        let mut h = crc32fast::Hasher::new();
        h.update(&self.index.to_le_bytes());
        h.update(&fh);
        h.update(&payload);
        let computed = h.finalize();
        if stored != computed {
            return Err(self.err(ErrorKind::Checksum { what: "record", stored, computed }));
        }
        // The checksum is good: from here on, any problem is in what the writer wrote.
        if flags & FLAGS_MUST_UNDERSTAND & !FLAGS_KNOWN != 0 {
            return Err(self.err(ErrorKind::UnknownFlags(flags)));
        }
        let record = match Record::decode_fields(code, Cursor::new(payload, flags)) {
            Some(Ok(r)) => Some(r),
            Some(Err((field, problem))) => {
                let record = Record::name_of(code).unwrap_or("?");
                return Err(self.err(ErrorKind::Malformed { record, field, problem }));
            }
            None if flags & FLAG_SKIPPABLE != 0 => None,
            None => return Err(self.err(ErrorKind::UnknownRecord(code))),
        };
        if let Some(r) = &record {
            if flags & FLAG_COMPRESSED != 0 && !r.has_data() {
                return Err(self.err(ErrorKind::Malformed {
                    record: r.name(),
                    field: "(flags)",
                    problem: crate::field::FieldProblem::CompressedWithoutData,
                }));
            }
        }
        if let Some(Record::End { records, bytes, chain }) = &record {
            self.check_end(*records, *bytes, *chain)?;
            self.ended = true;
        } else {
            self.chain.update(&crc);
        }
        let wire_len = (FRAME_HEADER_LEN + FRAME_TRAILER_LEN) as u64 + u64::from(len);
        let frame = Frame { index: self.index, offset: self.offset, wire_len, code, flags, record };
        self.index += 1;
        self.offset += wire_len;
        Ok(Some(frame))
    }

    fn check_end(&self, records: u64, bytes: u64, chain: u32) -> Result<(), StreamError> {
        let mismatch = |what, stored: u64, computed: u64| {
            Err(self.err(ErrorKind::EndMismatch { what, stored, computed }))
        };
        if records != self.index {
            return mismatch("the record count", records, self.index);
        }
        if bytes != self.offset {
            return mismatch("the byte count", bytes, self.offset);
        }
        let computed = self.chain.clone().finalize();
        if chain != computed {
            return mismatch("the chained checksum", u64::from(chain), u64::from(computed));
        }
        Ok(())
    }

    /// A truncation that falls exactly between records: the end record is missing. (`buf` is
    /// all zeros only if nothing of the next frame was read.)
    fn at_clean_eof(&self, buf: &[u8; FRAME_HEADER_LEN]) -> bool {
        buf.iter().all(|&b| b == 0)
    }

    /// Number of records this stream has yielded so far.
    pub fn records_read(&self) -> u64 {
        self.index - self.first_index
    }

    /// After the end record: fails if any byte follows it.
    pub fn expect_eof(&mut self) -> Result<(), StreamError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(self.err(ErrorKind::TrailingData)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(ErrorKind::Io(e))),
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Iterator for StreamReader<R> {
    type Item = Result<Frame, StreamError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_frame() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => None,
            Err(e) => {
                // An error ends the stream: nothing after a bad record can be trusted.
                self.ended = true;
                Some(Err(e))
            }
        }
    }
}
