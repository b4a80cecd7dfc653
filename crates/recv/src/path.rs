//! The path rules of STREAM_FORMAT.md section 1, checked on bytes before anything is applied.
//!
//! A stream is untrusted, so every path field is checked here first, as pure functions on bytes
//! (no system calls): the same checks serve a dry run and a real receive, and a path that passes
//! them can only name something beneath DEST *by its spelling*. Symlinks met on the way are the
//! resolver's job (`resolve.rs`), since only the file system knows them.

use std::ops::Bound;

/// Longest single name the Linux VFS accepts (NAME_MAX). Checked here so that a dry run reports
/// it too, not only the kernel when applying.
pub const NAME_MAX: usize = 255;

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("it is absolute (starts with `/`); stream paths are relative to DEST")]
    Absolute,
    #[error("it has an empty component (`//` or a trailing `/`)")]
    EmptyComponent,
    #[error("it has a `.` component")]
    Dot,
    #[error("it has a `..` component, which could climb out of DEST")]
    DotDot,
    #[error("the component \"{}\" is {len} bytes long; the most a name can have is 255", Brief(.name))]
    NameTooLong { name: Vec<u8>, len: usize },
    #[error("it is empty, which names DEST itself, and DEST cannot be {0}")]
    Root(&'static str),
}

/// Checks the rules every path must follow. The empty path (DEST itself) passes; callers that
/// cannot act on DEST itself check [`is_root`] too.
pub fn check(path: &[u8]) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Ok(());
    }
    if path[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" => return Err(PathProblem::EmptyComponent),
            b"." => return Err(PathProblem::Dot),
            b".." => return Err(PathProblem::DotDot),
            _ if c.len() > NAME_MAX => {
                return Err(PathProblem::NameTooLong { name: c.to_vec(), len: c.len() })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the path names DEST itself.
pub fn is_root(path: &[u8]) -> bool {
    path.is_empty()
}

/// Splits a checked, non-empty path into its parent (possibly empty: DEST) and its last name.
pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Splits a checked, non-empty relative path into pieces of whole components, each shorter than
/// `max` bytes, so that every piece is short enough for one `openat2` (PATH_MAX is 4096 with its
/// NUL). A single component never exceeds NAME_MAX, so `max` > 256 always makes progress.
pub fn chunks(path: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0; // end of the last component that fits in the current chunk
    for (i, c) in path.split(|&b| b == b'/').enumerate() {
        let c_start = if i == 0 { 0 } else { end + 1 };
        let c_end = c_start + c.len();
        if c_end - start >= max && end > start {
            out.push(&path[start..end]);
            start = c_start;
        }
        end = c_end;
    }
    if end > start {
        out.push(&path[start..end]);
    }
    out
}

/// A path shown to people: escaped bytes, `.` for DEST itself (the stream crate's one form).
pub use anysend_stream::dump::{Brief, Shown};

/// The bounds of the paths beneath `dir` (not `dir` itself) in an ordered set of paths:
/// [`dir/`, `dir0`), since `0` follows `/` in byte order. So the paths beneath a directory are
/// one range of a `BTreeMap` or `BTreeSet`, found without looking at the others.
pub fn beneath(dir: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Included([dir, b"/"].concat()), Bound::Excluded([dir, b"0"].concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_odd_byte_names() {
        for p in [&b""[..], b"a", b"a/b/c", b"caf\xe9", b"new\nline/x", b"...", b".hidden/..x"] {
            assert_eq!(check(p), Ok(()), "{}", Shown(p));
        }
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        assert_eq!(check(b"/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(check(b"/"), Err(PathProblem::Absolute));
        assert_eq!(check(b"a//b"), Err(PathProblem::EmptyComponent));
        assert_eq!(check(b"a/"), Err(PathProblem::EmptyComponent));
        assert_eq!(check(b"./a"), Err(PathProblem::Dot));
        assert_eq!(check(b"a/."), Err(PathProblem::Dot));
        assert_eq!(check(b".."), Err(PathProblem::DotDot));
        assert_eq!(check(b"a/../../x"), Err(PathProblem::DotDot));
        let long = vec![b'x'; 256];
        assert!(matches!(check(&long), Err(PathProblem::NameTooLong { len: 256, .. })));
        assert_eq!(check(&vec![b'x'; 255]), Ok(()));
    }

    #[test]
    fn beneath_is_exactly_the_paths_under_a_directory() {
        use std::collections::BTreeSet;
        let all: [&[u8]; 9] =
            [b"a", b"a/b", b"a/b/c", b"a/\xff", b"a!x", b"a.b/c", b"a0", b"ab", b"b/a/c"];
        let set: BTreeSet<Vec<u8>> = all.iter().map(|p| p.to_vec()).collect();
        let under = |d: &[u8]| set.range(beneath(d)).map(|p| &p[..]).collect::<Vec<_>>();
        assert_eq!(under(b"a"), [&b"a/b"[..], b"a/b/c", b"a/\xff"]);
        assert_eq!(under(b"a/b"), [&b"a/b/c"[..]]);
        assert_eq!(under(b"b"), [&b"b/a/c"[..]]);
        assert!(under(b"ab").is_empty());
    }

    #[test]
    fn split_last_finds_parent_and_name() {
        assert_eq!(split_last(b"a"), (&b""[..], &b"a"[..]));
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
    }

    #[test]
    fn chunks_cover_the_path_on_component_boundaries() {
        let names: Vec<Vec<u8>> = (0..30).map(|i| vec![b'a' + (i % 26) as u8; 200]).collect();
        let path = names.join(&b'/');
        let parts = chunks(&path, 4000);
        assert!(parts.len() >= 2);
        for p in &parts {
            assert!(p.len() < 4000);
            assert!(!p.starts_with(b"/") && !p.ends_with(b"/"));
        }
        assert_eq!(parts.join(&b'/'), path);
        assert_eq!(chunks(b"a/b", 4000), vec![&b"a/b"[..]]);
        assert_eq!(chunks(b"abc/def/ghi", 8), vec![&b"abc/def"[..], b"ghi"]);
        assert_eq!(chunks(b"abc/def/ghi", 4), vec![&b"abc"[..], b"def", b"ghi"]);
    }
}
