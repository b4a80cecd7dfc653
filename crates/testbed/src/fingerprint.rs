//! A cheap fingerprint of a tree: every path under a root with its size and mtime.
//!
//! Tests that check that a refused or failed operation changed nothing take one before and one
//! after and compare them. It is blunter than [`compare`](mod@crate::compare) (no content,
//! modes or xattrs) but needs no second tree to compare with and walks anything, the directory
//! that holds DEST and its state included. Paths are escaped bytes, so names that are not UTF-8
//! stay distinct.

use crate::escape::escape_bytes;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One line per path under `root` (itself included): escaped path, size, mtime seconds and
/// nanoseconds; sorted. Links are not followed. Panics on any error: a test's tree vanished.
pub fn fingerprint(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name = escape_bytes(p.as_os_str().as_bytes());
        out.push(format!("{name} {} {} {}", m.size(), m.mtime(), m.mtime_nsec()));
        if m.is_dir() {
            let entries = std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            stack.extend(entries.map(|e| e.expect("directory entry").path()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_name_size_or_time_shows() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        crate::fsops::set_mtime(&f, 1_000, 5).unwrap();
        let before = fingerprint(t.path());
        assert_eq!(before.len(), 2, "{before:?}");
        assert_eq!(fingerprint(t.path()), before);
        crate::fsops::set_mtime(&f, 1_000, 6).unwrap();
        assert_ne!(fingerprint(t.path()), before);
    }
}
