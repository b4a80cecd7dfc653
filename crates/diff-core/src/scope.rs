//! What a walk covers: where it stops at another file system, and which objects it leaves out.
//!
//! * **Boundaries.** A directory on another device than its tree's root (a mount point, a nested
//!   btrfs subvolume, which has its own `st_dev`) is sent as an empty directory and not entered,
//!   as `rsync -x` treats a mount point and as `btrfs send` shows a nested subvolume: `anysend -n
//!   /` must not walk into /proc, and a snapshot's stream must not carry other subvolumes.
//!   `cross_mounts` opts in to entering them. The device is in the `statx` the walk makes of
//!   every entry anyway, so telling a boundary costs no system call.
//! * **Exclusions.** [`Glob`] patterns on the path relative to the tree's root: a matching object
//!   is neither walked nor planned. Both trees of an incremental are filtered alike, each by its
//!   own paths, so an excluded subtree is neither sent nor removed.
//!
//! Patterns are bytes, like paths: `*` matches any run of bytes but `/`, `?` one byte but `/`,
//! `[...]` one byte of a set (`[!...]` of its complement, `a-z` ranges), `**` any run including
//! `/`, and `**/` zero or more whole components (so `**/cache` matches `cache` and `a/b/cache`).
//! `\` makes the next byte literal. A pattern is anchored at the root at both ends: `cache`
//! matches only the top-level `cache`; a leading or trailing `/` is ignored.

use crate::stat::{Kind, Meta};
use std::fmt;

/// Where a walk stops and what it leaves out. The default crosses no boundary and excludes
/// nothing.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Enter directories on other devices (mount points, nested btrfs subvolumes) too.
    pub cross_mounts: bool,
    /// Objects whose path (relative to their tree's root) matches one of these are left out.
    pub exclude: Vec<Glob>,
}

impl Scope {
    /// Whether any object may be left out on request (not counting boundaries).
    pub fn filters(&self) -> bool {
        !self.exclude.is_empty()
    }

    /// Whether the object at `path` (relative to its tree's root) is left out.
    pub fn excluded(&self, path: &[u8]) -> bool {
        self.exclude.iter().any(|g| g.matches(path))
    }

    /// Whether `m` is a directory the walk does not enter: on another device than `tree_dev`,
    /// the device of the tree's root.
    pub fn is_boundary(&self, tree_dev: u64, m: &Meta) -> bool {
        !self.cross_mounts && m.kind == Kind::Dir && m.dev != tree_dev
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// `?`
    One,
    /// `[...]`: ranges (inclusive) and whether the set is negated.
    Set(Vec<(u8, u8)>, bool),
    /// `*`
    Star,
    /// `**` (not followed by `/`)
    Any,
    /// `**/`: empty, or any run ending in `/`.
    Dirs,
}

/// One `--exclude` pattern (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: Vec<u8>,
    toks: Vec<Tok>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({})", crate::error::Shown(&self.text))
    }
}

/// A pattern that is not a [`Glob`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}: {why}")]
pub struct GlobError {
    /// The pattern, shown lossily.
    pub pattern: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Glob {
    /// Parse `pattern`.
    pub fn new(pattern: &[u8]) -> Result<Glob, GlobError> {
        let err = |why| GlobError { pattern: String::from_utf8_lossy(pattern).into_owned(), why };
        let mut p = pattern;
        while let [b'/', rest @ ..] = p {
            p = rest;
        }
        while let [rest @ .., b'/'] = p {
            if rest.last() == Some(&b'\\') {
                break;
            }
            p = rest;
        }
        if p.is_empty() {
            return Err(err("it matches nothing (or only the root, which cannot be excluded)"));
        }
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'\\' => {
                    let b = *p.get(i + 1).ok_or_else(|| err("it ends in a lone \\"))?;
                    toks.push(Tok::Byte(b));
                    i += 2;
                }
                b'?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                b'*' if p.get(i + 1) == Some(&b'*') => {
                    // `***` is `**`.
                    while p.get(i) == Some(&b'*') {
                        i += 1;
                    }
                    if p.get(i) == Some(&b'/') {
                        toks.push(Tok::Dirs);
                        i += 1;
                    } else {
                        toks.push(Tok::Any);
                    }
                }
                b'*' => {
                    toks.push(Tok::Star);
                    i += 1;
                }
                b'[' => {
                    let (tok, used) = parse_set(&p[i + 1..]).ok_or_else(|| err("unclosed ["))?;
                    toks.push(tok);
                    i += 1 + used;
                }
                b => {
                    toks.push(Tok::Byte(b));
                    i += 1;
                }
            }
        }
        Ok(Glob { text: pattern.to_vec(), toks })
    }

    /// The pattern as given.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// Whether the whole of `path` matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        // ok[j]: the tokens so far can match path[..j]. One pass per token: O(tokens * len).
        let n = path.len();
        let mut ok = vec![false; n + 1];
        ok[0] = true;
        for t in &self.toks {
            let mut next = vec![false; n + 1];
            match t {
                Tok::Star | Tok::Any => {
                    let mut run = false;
                    for j in 0..=n {
                        // A run may start at any reachable j and extend over any byte that the
                        // token allows.
                        if j > 0 && matches!(t, Tok::Star) && path[j - 1] == b'/' {
                            run = false;
                        }
                        run |= ok[j];
                        next[j] = run;
                    }
                }
                Tok::Dirs => {
                    let mut run = false;
                    for j in 0..=n {
                        run |= ok[j];
                        next[j] = ok[j] || (run && j > 0 && path[j - 1] == b'/');
                    }
                }
                _ => {
                    for j in 0..n {
                        if ok[j] && one(t, path[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            ok = next;
        }
        ok[n]
    }
}

fn one(t: &Tok, b: u8) -> bool {
    match t {
        Tok::Byte(x) => *x == b,
        Tok::One => b != b'/',
        Tok::Set(ranges, negated) => {
            b != b'/' && ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
        }
        _ => false,
    }
}

/// The set after a `[`: the token and the bytes used, through the closing `]`.
fn parse_set(p: &[u8]) -> Option<(Tok, usize)> {
    let mut i = 0;
    let negated = matches!(p.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let b = *p.get(i)?;
        if b == b']' && !first {
            return Some((Tok::Set(ranges, negated), i + 1));
        }
        first = false;
        let lo = if b == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            b
        };
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&c| c != b']') {
            let hi = p[i + 1];
            ranges.push((lo, hi));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, path: &str) -> bool {
        Glob::new(p.as_bytes()).unwrap().matches(path.as_bytes())
    }

    #[test]
    fn star_stays_in_one_component() {
        assert!(m("*.tmp", "a.tmp"));
        assert!(!m("*.tmp", "d/a.tmp"));
        assert!(m("d/*.tmp", "d/a.tmp"));
        assert!(m("d/*", "d/x"));
        assert!(!m("d/*", "d/x/y"));
        assert!(!m("cache", "a/cache"));
        assert!(m("/cache/", "cache"));
    }

    #[test]
    fn double_star_crosses_components() {
        assert!(m("**/cache", "cache"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(!m("**/cache", "a/bcache"));
        assert!(m("a/**", "a/b/c"));
        assert!(!m("a/**", "a"));
        assert!(m("a/**/z", "a/z"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(m("**.o", "x/y.o"));
        assert!(m("**/*.tmp", "a/d.tmp"));
        assert!(m("**/*.tmp", "d.tmp"));
        assert!(!m("**/*.tmp", "a/d.tmp/x"));
        assert!(m("***/x", "a/x"));
    }

    #[test]
    fn sets_escapes_and_bytes() {
        assert!(m("f[0-9]", "f7"));
        assert!(!m("f[!0-9]", "f7"));
        assert!(m("f[!0-9]", "fx"));
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("?", "x"));
        assert!(!m("?", "/"));
        let g = Glob::new(b"caf\xe9/*").unwrap();
        assert!(g.matches(b"caf\xe9/x"));
        assert!(Glob::new(b"/").is_err());
        assert!(Glob::new(b"[ab").is_err());
    }
}
