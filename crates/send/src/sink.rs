//! Where records go: the stream writer, plus the counts, the optional listing and the progress
//! line that watch it.
//!
//! A dry run uses this very sink over a byte counter instead of an output, so its size estimate
//! is the size of the stream a real run writes (same records, same framing, same compression),
//! not an approximation.

use anyhow::Result;
use anysend_stream::{
    dump, Data, Placed, Record, ResumePoint, StreamError, StreamHeader, StreamWriter, WriterOptions,
};
use anysend_ui::Meter;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

/// Writing the stream failed (the output is full or gone, e.g. the receiver exited).
#[derive(Debug)]
pub struct OutputError(pub StreamError);

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing the stream failed: {}", self.0)
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            anysend_stream::ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The output file could not be made (`-f PATH`): an output error like [`OutputError`].
#[derive(Debug)]
pub struct CreateError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot create {}", self.path.display())
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The reader of the record listing (`-n -v` on standard output) stopped reading, as `head`
/// does: not a failure of the send, which ends quietly.
#[derive(Debug)]
pub struct ListingClosed;

impl fmt::Display for ListingClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the listing's reader stopped reading")
    }
}

impl std::error::Error for ListingClosed {}

/// A failed write of the listing, with a closed pipe told apart.
fn listing(e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => ListingClosed.into(),
        _ => anyhow::Error::new(e).context("writing the record listing"),
    }
}

/// Counts of what went into a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records per type name (the `end` record included).
    pub by_type: BTreeMap<&'static str, u64>,
    /// Records, the end record included.
    pub records: u64,
    /// File data bytes in `write` records (before compression).
    pub data_bytes: u64,
    /// Stream bytes, header and end record included.
    pub stream_bytes: u64,
}

/// A `Write` that counts what passes through (over `io::sink()`, the dry run's output).
pub struct Counted<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The stream writer with its watchers.
pub struct Sink<W: Write> {
    writer: StreamWriter<Counted<W>>,
    counts: Counts,
    list: Option<Box<dyn Write>>,
    progress: Option<Meter>,
    /// Index of the next record of the plan (records before a resume point are counted only).
    planned: u64,
    /// Where a resumed stream starts: records before it are skipped.
    resume: ResumePoint,
}

impl<W: Write> Sink<W> {
    /// Write the header to `out` and get ready for records.
    pub fn new(
        out: W,
        header: &StreamHeader,
        options: WriterOptions,
        list: Option<Box<dyn Write>>,
        progress: Option<Meter>,
    ) -> Result<Self> {
        let writer = StreamWriter::new(Counted { inner: out, bytes: 0 }, header, options)
            .map_err(OutputError)?;
        Ok(Sink {
            writer,
            counts: Counts::default(),
            list,
            progress,
            planned: 0,
            resume: header.resume,
        })
    }

    /// Whether the next record is before the resume point (its data need not be read).
    pub fn skipping(&self) -> bool {
        self.planned < self.resume.first_record
    }

    /// Write one record (or, before the resume point, only count it).
    pub fn put(&mut self, rec: &Record) -> Result<()> {
        let planned = self.planned;
        self.planned += 1;
        if planned < self.resume.first_record {
            return Ok(());
        }
        if planned == self.resume.first_record && self.resume.data_offset > 0 {
            // The interrupted record: the receiver holds the first data_offset bytes of it.
            let d = self.resume.data_offset;
            let Record::Write { path, offset, data } = rec else {
                return Err(anyhow::anyhow!(
                    "--resume: record {planned} is a `{}` record, which has no data to resume \
                     inside (the token says {d} bytes of it are held)",
                    rec.name()
                ));
            };
            if d > data.len() as u64 {
                return Err(anyhow::anyhow!(
                    "--resume: record {planned} holds {} data bytes, fewer than the {d} the \
                     token says are held",
                    data.len()
                ));
            }
            let rest = Record::Write {
                path: path.clone(),
                offset: offset + d,
                data: Data::from(&data[d as usize..]),
            };
            return self.put_now(&rest);
        }
        self.put_now(rec)
    }

    fn put_now(&mut self, rec: &Record) -> Result<()> {
        let placed = self.writer.write(rec).map_err(OutputError)?;
        self.count(rec, placed)?;
        if let Some(p) = &mut self.progress {
            let path = rec.path().unwrap_or(b"");
            p.update(self.writer.bytes_written(), self.counts.records, || {
                dump::shown_tail(path, 60).to_string()
            });
        }
        Ok(())
    }

    fn count(&mut self, rec: &Record, at: Placed) -> Result<()> {
        *self.counts.by_type.entry(rec.name()).or_default() += 1;
        self.counts.records += 1;
        if let Record::Write { data, .. } = rec {
            self.counts.data_bytes += data.len() as u64;
        }
        if let Some(l) = &mut self.list {
            writeln!(l, "{}", dump::record_line(at.index, at.offset, at.flags, rec))
                .map_err(listing)?;
        }
        Ok(())
    }

    /// Clear the progress line (an error message follows).
    pub fn clear_progress(&mut self) {
        if let Some(p) = &mut self.progress {
            p.clear();
        }
    }

    /// Write the end record; returns the output and the counts.
    pub fn finish(mut self) -> Result<(W, Counts)> {
        if self.planned < self.resume.first_record {
            return Err(anyhow::anyhow!(
                "--resume: the plan has {} records before its end record, but the token resumes \
                 at record {}: these are not the snapshots of the interrupted stream",
                self.planned,
                self.resume.first_record
            ));
        }
        let (index, offset) = (self.writer.next_index(), self.writer.bytes_written());
        let end = self.writer.end_record();
        let out = self.writer.finish().map_err(OutputError)?;
        *self.counts.by_type.entry(end.name()).or_default() += 1;
        self.counts.records += 1;
        self.counts.stream_bytes = out.bytes;
        if let Some(l) = &mut self.list {
            writeln!(l, "{}", dump::record_line(index, offset, 0, &end)).map_err(listing)?;
            l.flush().map_err(listing)?;
        }
        if let Some(p) = &mut self.progress {
            p.finish(out.bytes, self.counts.records);
        }
        Ok((out.inner, self.counts))
    }
}
