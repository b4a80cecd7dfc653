//! The resume token: what a receiver hands back to a sender so that an interrupted stream
//! continues where it stopped (STREAM_FORMAT.md section 11).
//!
//! It lives here, beside the header it fills, because it is a contract between the two sides
//! and across versions, like the stream itself: one encoder and one decoder for both.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::header::{Id, ResumePoint};

const VERSION: u8 = 1;
/// Bytes of a version-1 token before hex encoding.
const LEN: usize = 70;

/// Where an interrupted stream continues: the stream and snapshots it belongs to, and the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken {
    pub stream: Id,
    pub origin: Option<Id>,
    pub target: Id,
    pub point: ResumePoint,
}

impl ResumeToken {
    /// Parses the one-line hex form; `None` for anything else, including a damaged token.
    pub fn decode(s: &str) -> Option<ResumeToken> {
        let b = crate::hex::decode(s.trim())?;
        if b.len() != LEN
            || b[0] != VERSION
            || crc32fast::hash(&b[..LEN - 4]) != LE::read_u32(&b[LEN - 4..])
        {
            return None;
        }
        let id = |at: usize| {
            let mut v = [0u8; 16];
            v.copy_from_slice(&b[at..at + 16]);
            Id(v)
        };
        let origin = match b[17] {
            0 => None,
            1 => Some(id(18)),
            _ => return None,
        };
        Some(ResumeToken {
            stream: id(1),
            origin,
            target: id(34),
            point: ResumePoint {
                first_record: LE::read_u64(&b[50..58]),
                data_offset: LE::read_u64(&b[58..66]),
            },
        })
    }
}

/// The one-line hex form: version, stream id, origin presence and id, target id, record index,
/// data offset (little-endian), CRC-32 of all before it.
impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = Vec::with_capacity(LEN);
        b.push(VERSION);
        b.extend_from_slice(&self.stream.0);
        b.push(u8::from(self.origin.is_some()));
        b.extend_from_slice(&self.origin.unwrap_or_default().0);
        b.extend_from_slice(&self.target.0);
        b.extend_from_slice(&self.point.first_record.to_le_bytes());
        b.extend_from_slice(&self.point.data_offset.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        f.write_str(&crate::hex::encode(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let t = ResumeToken {
            stream: Id([1; 16]),
            origin: Some(Id([2; 16])),
            target: Id([3; 16]),
            point: ResumePoint { first_record: 7, data_offset: 9 },
        };
        let s = t.to_string();
        assert_eq!(s.len(), 140);
        assert_eq!(ResumeToken::decode(&s), Some(t));
        let full = ResumeToken { origin: None, ..t };
        assert_eq!(ResumeToken::decode(&full.to_string()), Some(full));
        for i in 0..s.len() {
            let mut bad = s.clone().into_bytes();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(ResumeToken::decode(std::str::from_utf8(&bad).unwrap()), None, "{i}");
        }
        assert_eq!(ResumeToken::decode("zz"), None);
        assert_eq!(ResumeToken::decode(&"é".repeat(70)), None);
    }
}
