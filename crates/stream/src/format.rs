//! The constants of stream format v1: magic, versions, frame layout, flag bits and the limits a
//! reader enforces.
//!
//! Everything here is part of the on-disk contract described in STREAM_FORMAT.md. A value, once
//! released, never changes meaning; new values are added, old ones are never reused.

/// First eight bytes of every stream. The trailing newline catches a stream that went through a
/// text-mode conversion, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"ANYSEND\n";

/// Major format version written and understood. A reader refuses any other major version.
pub const VERSION_MAJOR: u16 = 1;
/// Minor format version written. A reader accepts any minor version of its major version: minor
/// versions only add what an older reader may skip, or what a required feature bit guards.
pub const VERSION_MINOR: u16 = 2;

/// Bytes of the stream header before the variable-length sender version.
pub const HEADER_FIXED_LEN: usize = 114;
/// Upper bound on the whole stream header, extension area included.
pub const MAX_HEADER_LEN: u32 = 4096;
/// Longest sender version string.
pub const MAX_SENDER_VERSION: usize = 255;

/// Header extension items (1.2): each is a u16 tag, a u16 value length and the value, in the
/// header's extension area. A reader skips an item whose tag it does not know.
/// The sender's estimate of the stream's bytes (u64), for progress displays only.
pub const EXT_ESTIMATE: u16 = 1;
/// A human-readable name of the origin snapshot (bytes, at most [`MAX_LABEL`]).
pub const EXT_ORIGIN_LABEL: u16 = 2;
/// A human-readable name of the target snapshot (bytes, at most [`MAX_LABEL`]).
pub const EXT_TARGET_LABEL: u16 = 3;
/// Longest snapshot label in the header.
pub const MAX_LABEL: usize = 255;

/// Bytes of a record frame before its payload: type u16, flags u16, payload length u32.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes of the CRC-32 that closes every record.
pub const FRAME_TRAILER_LEN: usize = 4;

/// The length on the wire of the record frame that `bytes` start with (frame header, payload,
/// CRC), read from its payload length; `None` while `bytes` hold less than a frame header. Lets
/// a reader tell whether a whole record is buffered without decoding it.
pub fn frame_len(bytes: &[u8]) -> Option<u64> {
    let len = bytes.get(4..FRAME_HEADER_LEN)?;
    let payload = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    Some((FRAME_HEADER_LEN + FRAME_TRAILER_LEN) as u64 + u64::from(payload))
}

/// Largest payload (as written, compressed or not) a reader accepts. Bounds the memory one
/// record can make a reader allocate before its checksum has been verified.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
/// Largest data field after decompression. Bounds a decompression bomb.
pub const MAX_DATA: u32 = 8 * 1024 * 1024;
/// Data chunk a sender should use for file content; readers accept up to [`MAX_DATA`].
pub const PREFERRED_DATA_CHUNK: usize = 1024 * 1024;
/// Longest path. Paths are relative to the receiving root and may exceed PATH_MAX (4096), since a
/// tree can be deeper than the kernel lets one path name.
pub const MAX_PATH: u32 = 1024 * 1024;
/// Longest symlink target (the Linux VFS limit is PATH_MAX, 4096 bytes including the NUL).
pub const MAX_LINK_TARGET: u32 = 4096;
/// Longest extended-attribute name (XATTR_NAME_MAX).
pub const MAX_XATTR_NAME: u16 = 255;
/// Largest extended-attribute value (XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: u32 = 64 * 1024;

/// Record flag: the record's data field is zstd-compressed and preceded by its decompressed
/// length.
pub const FLAG_COMPRESSED: u16 = 1 << 0;
/// Record flags a reader must understand; an unknown bit here makes the record unreadable.
pub const FLAGS_MUST_UNDERSTAND: u16 = 0x00ff;
/// Record flags a reader may ignore when it does not know them.
pub const FLAGS_OPTIONAL: u16 = 0x7f00;
/// Record flag: a reader that does not know this record type may skip the record.
pub const FLAG_SKIPPABLE: u16 = 1 << 15;
/// Flag bits defined in this version.
pub const FLAGS_KNOWN: u16 = FLAG_COMPRESSED | FLAG_SKIPPABLE;

/// Header flag: the stream is incremental and the origin id is meaningful.
pub const HEADER_FLAG_INCREMENTAL: u32 = 1 << 0;
/// Header flag (1.1): the sender left objects out on request (`anysend --exclude`), so the
/// stream turns the receiver into TARGET less those objects, not into TARGET itself.
pub const HEADER_FLAG_FILTERED: u32 = 1 << 1;
/// Header flags defined in this version; any other bit makes the header unreadable.
pub const HEADER_FLAGS_KNOWN: u32 = HEADER_FLAG_INCREMENTAL | HEADER_FLAG_FILTERED;

/// Required feature bits this reader understands (none are defined in 1.0).
pub const REQUIRED_FEATURES_KNOWN: u64 = 0;
