//! Escaping of raw byte names for human-readable reports.
//!
//! Names are bytes, not UTF-8; printable ASCII is shown as is and everything
//! else (including newlines) as `\xNN`, so a report line is always one line
//! and always unambiguous.

/// Printable ASCII as is, a backslash doubled, any other byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Like [`escape_bytes`] but cut after `max` bytes, noting the full length.
pub fn escape_bytes_short(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        escape_bytes(bytes)
    } else {
        format!("{}...({} bytes)", escape_bytes(&bytes[..max]), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_non_printable_and_backslash() {
        assert_eq!(escape_bytes(b"a\nb\xff\\"), "a\\x0ab\\xff\\\\");
        assert_eq!(escape_bytes_short(b"abcdef", 3), "abc...(6 bytes)");
    }
}
