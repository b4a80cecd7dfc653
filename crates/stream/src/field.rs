//! Field codecs: how each kind of record field is laid out in bytes, checked, and shown.
//!
//! A record's layout is a list of (name, kind) pairs written once in `record.rs`; encoding,
//! decoding, the `--dump` text and the layout table in STREAM_FORMAT.md all follow from the kinds
//! defined here. Each kind checks the same limits on the way out as on the way in, so a writer
//! can never produce a record that a reader rejects.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::format::{
    FLAG_COMPRESSED, MAX_DATA, MAX_LINK_TARGET, MAX_PATH, MAX_XATTR_NAME, MAX_XATTR_VALUE,
};

/// What is wrong with one field, without the record context (the reader adds that).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("the payload ends inside the field")]
    Truncated,
    #[error("length {len} exceeds the maximum {max}")]
    TooLong { len: u64, max: u64 },
    #[error("must not be empty")]
    Empty,
    #[error("contains a NUL byte")]
    ContainsNul,
    #[error("value {0} is out of range")]
    OutOfRange(u64),
    #[error("{0} bytes follow the last field")]
    TrailingBytes(usize),
    #[error("zstd data does not decompress: {0}")]
    Decompress(String),
    #[error("decompressed to {got} bytes, but the record declares {declared}")]
    LengthMismatch { declared: u64, got: u64 },
    #[error("the compressed flag is set on a record without a data field")]
    CompressedWithoutData,
}

/// Reads fields out of one record's payload. It owns the payload so that a data field, always
/// last, can take the buffer without copying it.
pub(crate) struct Cursor {
    buf: Vec<u8>,
    pos: usize,
    pub(crate) flags: u16,
}

impl Cursor {
    pub(crate) fn new(buf: Vec<u8>, flags: u16) -> Self {
        Cursor { buf, pos: 0, flags }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], FieldProblem> {
        let end = self.pos.checked_add(n).ok_or(FieldProblem::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(FieldProblem::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn take_rest(&mut self) -> (Vec<u8>, usize) {
        let start = self.pos;
        self.pos = self.buf.len();
        (std::mem::take(&mut self.buf), start)
    }

    /// Fails when bytes are left after the last field.
    pub(crate) fn finish(&self) -> Result<(), FieldProblem> {
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(FieldProblem::TrailingBytes(n)),
        }
    }
}

/// One kind of field: its value type, byte layout, limits and dump form.
pub(crate) trait Codec {
    type Value;
    /// The kind's name in the record table of STREAM_FORMAT.md.
    const KIND: &'static str;
    /// The kind's byte layout, for the kinds table of STREAM_FORMAT.md.
    const LAYOUT: &'static str;
    /// Whether this is the trailing data field (implicit length, may be compressed).
    const IS_DATA: bool = false;
    /// Appends the field to `out`, or, for a data field, returns the bytes to write after the
    /// other fields so that file data is never copied into a scratch buffer.
    fn put<'a>(v: &'a Self::Value, out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem>;
    fn get(cur: &mut Cursor) -> Result<Self::Value, FieldProblem>;
    fn show(v: &Self::Value, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

macro_rules! int_codec {
    ($name:ident, $ty:ty, $n:expr, $read:ident, $write:ident, $kind:expr, $layout:expr) => {
        pub(crate) struct $name;
        impl Codec for $name {
            type Value = $ty;
            const KIND: &'static str = $kind;
            const LAYOUT: &'static str = $layout;
            fn put<'a>(v: &'a $ty, out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem> {
                let mut b = [0u8; $n];
                LE::$write(&mut b, *v);
                out.extend_from_slice(&b);
                Ok(None)
            }
            fn get(cur: &mut Cursor) -> Result<$ty, FieldProblem> {
                Ok(LE::$read(cur.take($n)?))
            }
            fn show(v: &$ty, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{v}")
            }
        }
    };
}

int_codec!(U32, u32, 4, read_u32, write_u32, "u32", "4 bytes, unsigned");
int_codec!(U64, u64, 8, read_u64, write_u64, "u64", "8 bytes, unsigned");
int_codec!(
    I64,
    i64,
    8,
    read_i64,
    write_i64,
    "i64",
    "8 bytes, two's complement (seconds may precede 1970)"
);

/// A u32 with its own upper bound and display form; the bound is checked in both directions.
macro_rules! u32_codec {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $layout:expr, max = $max:expr, show = $show:literal) => {
        $(#[$doc])*
        pub(crate) struct $name;
        impl Codec for $name {
            type Value = u32;
            const KIND: &'static str = $kind;
            const LAYOUT: &'static str = $layout;
            fn put<'a>(v: &'a u32, out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem> {
                check_range(u64::from(*v), $max)?;
                U32::put(v, out)
            }
            fn get(cur: &mut Cursor) -> Result<u32, FieldProblem> {
                let v = U32::get(cur)?;
                check_range(u64::from(v), $max)?;
                Ok(v)
            }
            fn show(v: &u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $show, v)
            }
        }
    };
}

u32_codec!(
    /// Permission bits, shown in octal.
    Mode, "mode", "u32; only the permission bits 0o7777 (setuid, setgid, sticky, rwx)",
    max = 0o7777, show = "{:04o}"
);
u32_codec!(
    /// Inode flag bits (chattr), shown in hex.
    Hex32, "flags32", "u32 bit set, shown in hex", max = u64::from(u32::MAX), show = "{:#010x}"
);
u32_codec!(
    /// A CRC-32 value, shown in hex.
    Crc32, "crc32", "u32 CRC-32 value, shown in hex", max = u64::from(u32::MAX), show = "{:#010x}"
);
u32_codec!(
    /// A numeric user or group id; 4294967295 means "unchanged" to chown(2) and cannot be set.
    Owner, "owner", "u32, below 4294967295", max = u64::from(u32::MAX - 1), show = "{}"
);
u32_codec!(
    /// Nanoseconds within a second.
    Nanos, "nsec", "u32, below 1000000000", max = 999_999_999, show = "{:09}"
);

fn check_range(v: u64, max: u64) -> Result<(), FieldProblem> {
    if v > max {
        Err(FieldProblem::OutOfRange(v))
    } else {
        Ok(())
    }
}

/// The kind of special file a mknod record makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    Fifo = 1,
    Socket = 2,
    CharDevice = 3,
    BlockDevice = 4,
}

impl NodeType {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::CharDevice => "char",
            NodeType::BlockDevice => "block",
        }
    }
}

pub(crate) struct Node;
impl Codec for Node {
    type Value = NodeType;
    const KIND: &'static str = "node";
    const LAYOUT: &'static str = "u8: 1 fifo, 2 socket, 3 character device, 4 block device";
    fn put<'a>(v: &'a NodeType, out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem> {
        out.push(*v as u8);
        Ok(None)
    }
    fn get(cur: &mut Cursor) -> Result<NodeType, FieldProblem> {
        match cur.take(1)?[0] {
            1 => Ok(NodeType::Fifo),
            2 => Ok(NodeType::Socket),
            3 => Ok(NodeType::CharDevice),
            4 => Ok(NodeType::BlockDevice),
            other => Err(FieldProblem::OutOfRange(u64::from(other))),
        }
    }
    fn show(v: &NodeType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(v.as_str())
    }
}

/// The type of an object, as an `expect` record states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

impl ObjectType {
    /// The short name `--dump` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::Dir => "dir",
            ObjectType::Symlink => "symlink",
            ObjectType::Fifo => "fifo",
            ObjectType::Socket => "socket",
            ObjectType::CharDevice => "char",
            ObjectType::BlockDevice => "block",
        }
    }

    /// The name people read in messages ("a directory").
    pub fn noun(self) -> &'static str {
        match self {
            ObjectType::File => "regular file",
            ObjectType::Dir => "directory",
            ObjectType::Symlink => "symbolic link",
            ObjectType::Fifo => "fifo",
            ObjectType::Socket => "socket",
            ObjectType::CharDevice => "character device",
            ObjectType::BlockDevice => "block device",
        }
    }
}

pub(crate) struct Otype;
impl Codec for Otype {
    type Value = ObjectType;
    const KIND: &'static str = "otype";
    const LAYOUT: &'static str = "u8: 1 regular file, 2 directory, 3 symbolic link, 4 fifo, \
        5 socket, 6 character device, 7 block device";
    fn put<'a>(v: &'a ObjectType, out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem> {
        out.push(*v as u8);
        Ok(None)
    }
    fn get(cur: &mut Cursor) -> Result<ObjectType, FieldProblem> {
        use ObjectType::*;
        match cur.take(1)?[0] {
            1 => Ok(File),
            2 => Ok(Dir),
            3 => Ok(Symlink),
            4 => Ok(Fifo),
            5 => Ok(Socket),
            6 => Ok(CharDevice),
            7 => Ok(BlockDevice),
            other => Err(FieldProblem::OutOfRange(u64::from(other))),
        }
    }
    fn show(v: &ObjectType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(v.as_str())
    }
}

/// Checks a length-prefixed byte string: its bounds and, for names, the absence of NUL (no
/// path, name or link target on Linux can hold one).
fn check_bytes(v: &[u8], min: usize, max: u64, nul_ok: bool) -> Result<(), FieldProblem> {
    if v.len() < min {
        return Err(FieldProblem::Empty);
    }
    if v.len() as u64 > max {
        return Err(FieldProblem::TooLong { len: v.len() as u64, max });
    }
    if !nul_ok && v.contains(&0) {
        return Err(FieldProblem::ContainsNul);
    }
    Ok(())
}

macro_rules! bytes_codec {
    ($name:ident, $len:ty, $lenbytes:expr, $read:ident, $write:ident, $min:expr, $max:expr,
     $nul_ok:expr, $kind:expr, $layout:expr) => {
        pub(crate) struct $name;
        impl Codec for $name {
            type Value = Vec<u8>;
            const KIND: &'static str = $kind;
            const LAYOUT: &'static str = $layout;
            fn put<'a>(
                v: &'a Vec<u8>,
                out: &mut Vec<u8>,
            ) -> Result<Option<&'a [u8]>, FieldProblem> {
                check_bytes(v, $min, u64::from($max), $nul_ok)?;
                let mut b = [0u8; $lenbytes];
                LE::$write(&mut b, v.len() as $len);
                out.extend_from_slice(&b);
                out.extend_from_slice(v);
                Ok(None)
            }
            fn get(cur: &mut Cursor) -> Result<Vec<u8>, FieldProblem> {
                let len = LE::$read(cur.take($lenbytes)?);
                if u64::from(len) > u64::from($max) {
                    return Err(FieldProblem::TooLong {
                        len: u64::from(len),
                        max: u64::from($max),
                    });
                }
                let v = cur.take(len as usize)?.to_vec();
                check_bytes(&v, $min, u64::from($max), $nul_ok)?;
                Ok(v)
            }
            fn show(v: &Vec<u8>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{}\"", crate::dump::Escaped(v))
            }
        }
    };
}

bytes_codec!(
    Path,
    u32,
    4,
    read_u32,
    write_u32,
    0,
    MAX_PATH,
    false,
    "path",
    "u32 length, then that many bytes; no NUL; at most 1048576 bytes; empty names the root"
);
bytes_codec!(
    LinkTarget,
    u32,
    4,
    read_u32,
    write_u32,
    1,
    MAX_LINK_TARGET,
    false,
    "target",
    "u32 length, then that many bytes; no NUL; 1 to 4096 bytes"
);
bytes_codec!(
    XattrName,
    u16,
    2,
    read_u16,
    write_u16,
    1,
    MAX_XATTR_NAME,
    false,
    "xname",
    "u16 length, then that many bytes; no NUL; 1 to 255 bytes"
);
bytes_codec!(
    XattrValue,
    u32,
    4,
    read_u32,
    write_u32,
    0,
    MAX_XATTR_VALUE,
    true,
    "xvalue",
    "u32 length, then that many bytes (any values); at most 65536 bytes"
);

/// File data: always the last field, its length implied by the payload length. Owns the
/// record's payload buffer and points past the fields before it, so decoding copies nothing.
#[derive(Clone, Default)]
pub struct Data {
    buf: Vec<u8>,
    start: usize,
}

impl Data {
    pub fn into_vec(mut self) -> Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.buf
    }
}

impl From<Vec<u8>> for Data {
    fn from(buf: Vec<u8>) -> Self {
        Data { buf, start: 0 }
    }
}

impl From<&[u8]> for Data {
    fn from(b: &[u8]) -> Self {
        Data { buf: b.to_vec(), start: 0 }
    }
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
impl Eq for Data {}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Data({} bytes)", self.len())
    }
}

pub(crate) struct DataField;
impl Codec for DataField {
    type Value = Data;
    const IS_DATA: bool = true;
    const KIND: &'static str = "data";
    const LAYOUT: &'static str =
        "always last: the rest of the payload, no length prefix; with flag \
        COMPRESSED: u32 decompressed length, then zstd frames; at most 8388608 bytes decompressed";
    fn put<'a>(v: &'a Data, _out: &mut Vec<u8>) -> Result<Option<&'a [u8]>, FieldProblem> {
        check_bytes(v, 0, u64::from(MAX_DATA), true)?;
        Ok(Some(v))
    }
    fn get(cur: &mut Cursor) -> Result<Data, FieldProblem> {
        if cur.flags & FLAG_COMPRESSED == 0 {
            let (buf, start) = cur.take_rest();
            check_bytes(&buf[start..], 0, u64::from(MAX_DATA), true)?;
            return Ok(Data { buf, start });
        }
        let declared = LE::read_u32(cur.take(4)?);
        if declared > MAX_DATA {
            return Err(FieldProblem::TooLong {
                len: u64::from(declared),
                max: u64::from(MAX_DATA),
            });
        }
        let (buf, start) = cur.take_rest();
        let out = decompress(&buf[start..], declared as usize)?;
        Ok(Data { buf: out, start: 0 })
    }
    fn show(v: &Data, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", v.len())
    }
}

/// Decompresses into a buffer of exactly the declared size: a frame that would produce more is
/// an error, never a larger allocation.
fn decompress(src: &[u8], declared: usize) -> Result<Vec<u8>, FieldProblem> {
    let mut out = Vec::with_capacity(declared);
    let mut z =
        zstd::bulk::Decompressor::new().map_err(|e| FieldProblem::Decompress(e.to_string()))?;
    let n = z
        .decompress_to_buffer(src, &mut out)
        .map_err(|e| FieldProblem::Decompress(e.to_string()))?;
    if n != declared {
        return Err(FieldProblem::LengthMismatch { declared: declared as u64, got: n as u64 });
    }
    Ok(out)
}

/// Every field kind with its layout, for the kinds table of STREAM_FORMAT.md.
pub(crate) const KINDS: &[(&str, &str)] = &[
    (U32::KIND, U32::LAYOUT),
    (U64::KIND, U64::LAYOUT),
    (I64::KIND, I64::LAYOUT),
    (Mode::KIND, Mode::LAYOUT),
    (Hex32::KIND, Hex32::LAYOUT),
    (Crc32::KIND, Crc32::LAYOUT),
    (Owner::KIND, Owner::LAYOUT),
    (Nanos::KIND, Nanos::LAYOUT),
    (Node::KIND, Node::LAYOUT),
    (Otype::KIND, Otype::LAYOUT),
    (Path::KIND, Path::LAYOUT),
    (LinkTarget::KIND, LinkTarget::LAYOUT),
    (XattrName::KIND, XattrName::LAYOUT),
    (XattrValue::KIND, XattrValue::LAYOUT),
    (DataField::KIND, DataField::LAYOUT),
];
