//! The anysend stream format, version 1: records, framing, checksums, a writer and a reader.
//!
//! STREAM_FORMAT.md at the repository root is the byte-exact specification; this crate is its
//! reference implementation and the two are kept in step by tests. The crate owns the encode and
//! decode steps only: it knows nothing of walking trees or applying records.
//!
//! ```
//! use anysend_stream::{Id, Record, StreamHeader, StreamReader, StreamWriter, WriterOptions};
//! let header = StreamHeader::new(Id([1; 16]), None, Id([2; 16]), 0, 0);
//! let mut w = StreamWriter::new(Vec::new(), &header, WriterOptions::default()).unwrap();
//! w.write(&Record::Mkdir { path: b"dir".to_vec() }).unwrap();
//! let bytes = w.finish().unwrap();
//! let mut r = StreamReader::new(&bytes[..]).unwrap();
//! let first = r.next_frame().unwrap().unwrap();
//! assert_eq!(first.record, Some(Record::Mkdir { path: b"dir".to_vec() }));
//! ```

pub mod dump;
mod error;
mod field;
pub mod format;
mod header;
mod hex;
mod reader;
mod record;
mod token;
mod writer;

pub use error::{ErrorKind, StreamError};
pub use field::{Data, FieldProblem, NodeType, ObjectType};
pub use header::{Id, InvalidId, ResumePoint, StreamHeader};
pub use reader::{Frame, StreamReader};
pub use record::{layout_table, Class, Layout, Record};
pub use token::ResumeToken;
pub use writer::{Placed, StreamWriter, WriterOptions};

#[cfg(test)]
mod testgen;
#[cfg(test)]
mod tests;
