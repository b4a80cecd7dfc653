//! The resume token `anyrecv --resume-token DEST` prints: one line of hex holding a version
//! byte, the stream id, the origin (a presence byte and 16 bytes), the target, the index of the
//! record to continue at, the bytes of that record's data the receiver holds, and a CRC-32 of
//! all that (the same layout as anyrecv's `resume::Token`).

use anysend_stream::Id;

const VERSION: u8 = 1;
const LEN: usize = 70;

/// Where an interrupted stream continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub stream: Id,
    pub origin: Option<Id>,
    pub target: Id,
    pub next_record: u64,
    pub data_offset: u64,
}

impl Token {
    pub fn decode(s: &str) -> Option<Token> {
        let s = s.trim();
        if s.len() != 2 * LEN || !s.is_ascii() {
            return None;
        }
        let b: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        let crc = u32::from_le_bytes(b[66..70].try_into().ok()?);
        if b[0] != VERSION || crc32fast::hash(&b[..66]) != crc {
            return None;
        }
        let id = |r: std::ops::Range<usize>| Some(Id(b[r].try_into().ok()?));
        Some(Token {
            stream: id(1..17)?,
            origin: match b[17] {
                0 => None,
                1 => Some(id(18..34)?),
                _ => return None,
            },
            target: id(34..50)?,
            next_record: u64::from_le_bytes(b[50..58].try_into().ok()?),
            data_offset: u64::from_le_bytes(b[58..66].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_checks_the_crc() {
        let mut b = vec![VERSION];
        b.extend_from_slice(&[1; 16]);
        b.push(1);
        b.extend_from_slice(&[2; 16]);
        b.extend_from_slice(&[3; 16]);
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&9u64.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let t = Token::decode(&hex).unwrap();
        assert_eq!(t.origin, Some(Id([2; 16])));
        assert_eq!((t.next_record, t.data_offset), (7, 9));
        let mut bad = hex.clone().into_bytes();
        bad[40] = if bad[40] == b'0' { b'1' } else { b'0' };
        assert!(Token::decode(std::str::from_utf8(&bad).unwrap()).is_none());
        assert!(Token::decode("zz").is_none());
    }
}
