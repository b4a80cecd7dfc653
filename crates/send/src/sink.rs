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
    /// The writer, once the header was written (at the first record, so that the planner's
    /// estimate can go into it first: [`Sink::estimate`]); before, what it is made of.
    writer: Option<StreamWriter<Counted<W>>>,
    pending: Option<(W, StreamHeader, WriterOptions)>,
    counts: Counts,
    list: Option<Box<dyn Write>>,
    progress: Option<Meter>,
    /// Index of the next record of the plan (records before a resume point are counted only).
    planned: u64,
    /// Where a resumed stream starts: records before it are skipped.
    resume: ResumePoint,
}

/// Stream bytes per object planned, about (an object's records without file data: its creation
/// or change with a path, mode, owner, times), for [`Sink::estimate`]. Measured on the
/// benchmark's trees: a full stream of 185,596 entries carries 180–260 bytes of records per
/// object besides file data.
const BYTES_PER_OBJECT: u64 = 220;
/// Framing of a `write` record per 1 MiB of data it carries (frame, path, offset, CRC).
const BYTES_PER_MIB: u64 = 96;

impl<W: Write> Sink<W> {
    /// Get ready to write a stream with `header` to `out`; the header goes out with the first
    /// record (or at the end).
    pub fn new(
        out: W,
        header: &StreamHeader,
        options: WriterOptions,
        list: Option<Box<dyn Write>>,
        progress: Option<Meter>,
    ) -> Result<Self> {
        // A header that cannot be written fails now, not after the walk.
        header
            .encode()
            .map_err(|kind| OutputError(StreamError { index: None, offset: 0, kind }))?;
        Ok(Sink {
            writer: None,
            pending: Some((out, header.clone(), options)),
            counts: Counts::default(),
            list,
            progress,
            planned: 0,
            resume: header.resume,
        })
    }

    /// The planner's estimate of what the stream will carry, before its first record: into the
    /// header (a receiver's progress total), and the progress display's total. A resumed stream
    /// carries none (it is only the rest of one).
    pub fn estimate(&mut self, e: &anysend_diff_core::Estimate) {
        let Some((_, header, _)) = &mut self.pending else { return };
        if header.resume != ResumePoint::default() {
            return;
        }
        let framing = e.content_bytes / (1 << 20) * BYTES_PER_MIB;
        let bytes = e.content_bytes + framing + e.objects * BYTES_PER_OBJECT;
        header.estimate = Some(bytes);
        if let Some(p) = &mut self.progress {
            p.estimate(bytes);
        }
    }

    /// The writer, the header written first if it was not yet.
    fn writer(&mut self) -> Result<&mut StreamWriter<Counted<W>>> {
        if let Some((out, header, options)) = self.pending.take() {
            let w = StreamWriter::new(Counted { inner: out, bytes: 0 }, &header, options)
                .map_err(OutputError)?;
            self.writer = Some(w);
        }
        self.writer.as_mut().ok_or_else(|| anyhow::anyhow!("the stream writer is gone"))
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
        let writer = self.writer()?;
        let placed = writer.write(rec).map_err(OutputError)?;
        let written = writer.bytes_written();
        self.count(rec, placed)?;
        if let Some(p) = &mut self.progress {
            let path = rec.path().unwrap_or(b"");
            p.update(written, self.counts.records, || dump::shown_tail(path, 60).to_string());
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
        self.writer()?;
        let Some(writer) = self.writer.take() else {
            return Err(anyhow::anyhow!("the stream writer is gone"));
        };
        let (index, offset) = (writer.next_index(), writer.bytes_written());
        let end = writer.end_record();
        let out = writer.finish().map_err(OutputError)?;
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
