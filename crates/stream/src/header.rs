//! The stream header: what a stream is (its ids, its origin, its version) and how it is laid out.
//!
//! The header is fixed-layout rather than built from records because a reader must be able to
//! decide whether it can read a stream at all before it knows anything else about it.

use std::io::Read;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::error::{ErrorKind, StreamError};
use crate::format::*;

/// A 16-byte snapshot or stream identifier (a btrfs subvolume UUID fits as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 16]);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Id {
    /// Parses the [`Display`](std::fmt::Display) form: 32 hex digits, dashes anywhere ignored.
    pub fn parse(s: &str) -> Option<Id> {
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        let bytes = crate::hex::decode(std::str::from_utf8(&digits).ok()?)?;
        Some(Id(bytes.try_into().ok()?))
    }

    /// Its first 8 bytes in hex, no dashes: short enough for a file name, long enough to tell
    /// the streams of one destination apart.
    pub fn short(&self) -> String {
        crate::hex::encode(&self.0[..8])
    }
}

impl std::str::FromStr for Id {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Id, InvalidId> {
        Id::parse(s).ok_or(InvalidId)
    }
}

/// A string that is not an [`Id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an id (32 hex digits, dashes allowed)")]
pub struct InvalidId;

/// Where a resumed stream starts; a fresh stream starts at record 0, offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// Index, in the numbering of the uninterrupted stream, of this stream's first record.
    pub first_record: u64,
    /// Bytes of the first record's file data that the receiver already holds.
    pub data_offset: u64,
}

/// Everything the stream header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    pub version_major: u16,
    pub version_minor: u16,
    pub required_features: u64,
    pub optional_features: u64,
    pub stream_id: Id,
    /// The snapshot the receiver must already hold; `None` for a full stream.
    pub origin: Option<Id>,
    pub target: Id,
    pub created_sec: i64,
    pub created_nsec: u32,
    pub resume: ResumePoint,
    /// Free text naming the program that wrote the stream, e.g. `anysend 0.1.0`.
    pub sender_version: Vec<u8>,
    /// The sender left objects of the snapshots out on request (header flag FILTERED): the
    /// receiver ends up with TARGET less them, which it must not take for TARGET itself.
    pub filtered: bool,
    /// Header extension (1.2): the sender's estimate of this stream's bytes, header included,
    /// for a progress display (never trusted for anything else).
    pub estimate: Option<u64>,
    /// Header extension (1.2): names people know the snapshots by (a snapshot directory's
    /// name, or `--label`), at most 255 bytes each, any bytes.
    pub origin_label: Option<Vec<u8>>,
    pub target_label: Option<Vec<u8>>,
}

impl StreamHeader {
    /// A header for a fresh v1.0 stream.
    pub fn new(
        stream_id: Id,
        origin: Option<Id>,
        target: Id,
        created_sec: i64,
        created_nsec: u32,
    ) -> Self {
        StreamHeader {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            required_features: 0,
            optional_features: 0,
            stream_id,
            origin,
            target,
            created_sec,
            created_nsec,
            resume: ResumePoint::default(),
            sender_version: format!("anysend {}", env!("CARGO_PKG_VERSION")).into_bytes(),
            filtered: false,
            estimate: None,
            origin_label: None,
            target_label: None,
        }
    }

    /// The header extension area's items (1.2), in tag order: those that are set.
    fn extension(&self) -> Result<Vec<u8>, ErrorKind> {
        let mut b = Vec::new();
        let mut item = |tag: u16, value: &[u8]| {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
            b.extend_from_slice(value);
        };
        if let Some(e) = self.estimate {
            item(EXT_ESTIMATE, &e.to_le_bytes());
        }
        for (tag, label) in
            [(EXT_ORIGIN_LABEL, &self.origin_label), (EXT_TARGET_LABEL, &self.target_label)]
        {
            if let Some(l) = label {
                if l.len() > MAX_LABEL {
                    return Err(ErrorKind::HeaderField("snapshot label longer than 255 bytes"));
                }
                item(tag, l);
            }
        }
        Ok(b)
    }

    /// Reads the extension area's items into the header; an item whose tag is unknown is
    /// skipped, one that runs past the area, is repeated or has a wrong length is refused.
    fn read_extension(&mut self, mut area: &[u8]) -> Result<(), ErrorKind> {
        let bad = |why| Err(ErrorKind::HeaderField(why));
        let mut seen = Vec::new();
        while !area.is_empty() {
            if area.len() < 4 {
                return bad("header extension item cut short");
            }
            let tag = LE::read_u16(&area[0..2]);
            let len = LE::read_u16(&area[2..4]) as usize;
            let Some(value) = area.get(4..4 + len) else {
                return bad("header extension item runs past the header");
            };
            if seen.contains(&tag) {
                return bad("header extension item repeated");
            }
            seen.push(tag);
            match tag {
                EXT_ESTIMATE => {
                    let Ok(v) = <[u8; 8]>::try_from(value) else {
                        return bad("header estimate is not 8 bytes");
                    };
                    self.estimate = Some(u64::from_le_bytes(v));
                }
                EXT_ORIGIN_LABEL | EXT_TARGET_LABEL => {
                    if len > MAX_LABEL {
                        return bad("snapshot label longer than 255 bytes");
                    }
                    let slot = match tag {
                        EXT_ORIGIN_LABEL => &mut self.origin_label,
                        _ => &mut self.target_label,
                    };
                    *slot = Some(value.to_vec());
                }
                _ => {}
            }
            area = &area[4 + len..];
        }
        Ok(())
    }

    /// Serialises the header, CRC included.
    pub fn encode(&self) -> Result<Vec<u8>, ErrorKind> {
        if self.sender_version.len() > MAX_SENDER_VERSION {
            return Err(ErrorKind::HeaderField("sender version longer than 255 bytes"));
        }
        if self.created_nsec >= 1_000_000_000 {
            return Err(ErrorKind::HeaderField("creation nanoseconds out of range"));
        }
        let ext = self.extension()?;
        let len = HEADER_FIXED_LEN + self.sender_version.len() + ext.len() + 4;
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&MAGIC);
        LE::write_u16(&mut b[8..10], self.version_major);
        LE::write_u16(&mut b[10..12], self.version_minor);
        LE::write_u32(&mut b[12..16], len as u32);
        LE::write_u64(&mut b[16..24], self.required_features);
        LE::write_u64(&mut b[24..32], self.optional_features);
        b[32..48].copy_from_slice(&self.stream_id.0);
        b[48..64].copy_from_slice(&self.origin.unwrap_or_default().0);
        b[64..80].copy_from_slice(&self.target.0);
        LE::write_i64(&mut b[80..88], self.created_sec);
        LE::write_u32(&mut b[88..92], self.created_nsec);
        let mut flags = if self.origin.is_some() { HEADER_FLAG_INCREMENTAL } else { 0 };
        if self.filtered {
            flags |= HEADER_FLAG_FILTERED;
        }
        LE::write_u32(&mut b[92..96], flags);
        LE::write_u64(&mut b[96..104], self.resume.first_record);
        LE::write_u64(&mut b[104..112], self.resume.data_offset);
        LE::write_u16(&mut b[112..114], self.sender_version.len() as u16);
        let sv_end = 114 + self.sender_version.len();
        b[114..sv_end].copy_from_slice(&self.sender_version);
        b[sv_end..sv_end + ext.len()].copy_from_slice(&ext);
        let crc = crc32fast::hash(&b[..len - 4]);
        LE::write_u32(&mut b[len - 4..], crc);
        Ok(b)
    }

    /// Reads and checks a header; returns it with its length and CRC (the chain's first link).
    pub(crate) fn read_from<R: Read>(r: &mut R) -> Result<(StreamHeader, u32, u32), StreamError> {
        let at = |kind| StreamError { index: None, offset: 0, kind };
        let mut fixed = [0u8; 16];
        read_exact(r, &mut fixed, "the stream header").map_err(at)?;
        if fixed[0..8] != MAGIC {
            let mut m = [0u8; 8];
            m.copy_from_slice(&fixed[0..8]);
            return Err(at(ErrorKind::BadMagic(m)));
        }
        let major = LE::read_u16(&fixed[8..10]);
        let minor = LE::read_u16(&fixed[10..12]);
        if major != VERSION_MAJOR {
            return Err(at(ErrorKind::UnsupportedVersion { major, minor }));
        }
        let len = LE::read_u32(&fixed[12..16]);
        if len < (HEADER_FIXED_LEN + 4) as u32 || len > MAX_HEADER_LEN {
            return Err(at(ErrorKind::BadHeaderLength(len)));
        }
        let mut b = vec![0u8; len as usize];
        b[..16].copy_from_slice(&fixed);
        read_exact(r, &mut b[16..], "the stream header").map_err(at)?;
        let body = len as usize - 4;
        let stored = LE::read_u32(&b[body..]);
        let computed = crc32fast::hash(&b[..body]);
        if stored != computed {
            return Err(at(ErrorKind::Checksum { what: "stream header", stored, computed }));
        }
        let required_features = LE::read_u64(&b[16..24]);
        let unknown = required_features & !REQUIRED_FEATURES_KNOWN;
        if unknown != 0 {
            return Err(at(ErrorKind::UnknownRequiredFeatures(unknown)));
        }
        let flags = LE::read_u32(&b[92..96]);
        if flags & !HEADER_FLAGS_KNOWN != 0 {
            return Err(at(ErrorKind::HeaderField("unknown header flag bits")));
        }
        let created_nsec = LE::read_u32(&b[88..92]);
        if created_nsec >= 1_000_000_000 {
            return Err(at(ErrorKind::HeaderField("creation nanoseconds out of range")));
        }
        let sv_len = LE::read_u16(&b[112..114]) as usize;
        if sv_len > MAX_SENDER_VERSION || HEADER_FIXED_LEN + sv_len > body {
            return Err(at(ErrorKind::HeaderField("sender version length out of range")));
        }
        let id = |r: std::ops::Range<usize>| {
            let mut v = [0u8; 16];
            v.copy_from_slice(&b[r]);
            Id(v)
        };
        let mut header = StreamHeader {
            version_major: major,
            version_minor: minor,
            required_features,
            optional_features: LE::read_u64(&b[24..32]),
            stream_id: id(32..48),
            origin: (flags & HEADER_FLAG_INCREMENTAL != 0).then(|| id(48..64)),
            target: id(64..80),
            created_sec: LE::read_i64(&b[80..88]),
            created_nsec,
            resume: ResumePoint {
                first_record: LE::read_u64(&b[96..104]),
                data_offset: LE::read_u64(&b[104..112]),
            },
            sender_version: b[114..114 + sv_len].to_vec(),
            filtered: flags & HEADER_FLAG_FILTERED != 0,
            estimate: None,
            origin_label: None,
            target_label: None,
        };
        // A 1.0 or 1.1 writer put nothing in the extension area; what one may have put there
        // is skipped, as those versions said.
        if minor >= 2 {
            header.read_extension(&b[HEADER_FIXED_LEN + sv_len..body]).map_err(at)?;
        }
        Ok((header, len, stored))
    }
}

/// `read_exact` that tells a clean truncation apart from an I/O failure.
pub(crate) fn read_exact<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), ErrorKind> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => return Err(ErrorKind::Truncated(what)),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ErrorKind::Io(e)),
        }
    }
    Ok(())
}
