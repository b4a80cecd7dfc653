//! Escaping of raw byte names for human-readable reports: the stream crate's one rule
//! (`anysend_stream::dump::Escaped`, as `anyrecv --dump` and every message show names), so a
//! name in a test's failure reads the same as in the tools' output. Printable ASCII is shown as
//! is, `\\`, `\"`, `\n`, `\t`, and `\xNN` for every other byte: a report line is always one
//! line and always unambiguous.

/// `bytes` escaped as the tools show names.
pub fn escape_bytes(bytes: &[u8]) -> String {
    anysend_stream::dump::Escaped(bytes).to_string()
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
        assert_eq!(escape_bytes(b"a\nb\xff\\\""), "a\\nb\\xff\\\\\\\"");
        assert_eq!(escape_bytes_short(b"abcdef", 3), "abc...(6 bytes)");
    }
}
