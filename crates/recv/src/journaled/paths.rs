//! What a journaled receive remembers by path: objects whose undo needs no more steps
//! ([`Tracked`]), and the paths a run of structural records names ([`Named`]).
//!
//! Paths name other objects after a rename or a removal, so each set is kept true through them
//! (or forgets): a set never names a path that holds another object than it was told of. Ordered
//! sets, so that a rename takes the paths beneath it as one range ([`path::beneath`]) instead of
//! looking at every path, and because a run holds thousands of long paths that share long
//! prefixes, where comparing bytes is cheaper than hashing them.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::ops::Bound;

use anysend_stream::{Class, Record};

use crate::path;

/// Paths whose later records need no undo step of their own (incremental receives).
#[derive(Default)]
pub struct Tracked {
    /// Regular files this receive created: removing the file undoes its metadata too.
    pub new_files: BTreeSet<Vec<u8>>,
    /// Pre-existing files whose mode, owner and times a `KeepMeta` step holds already: their
    /// later chmod, chown and utimes need no undo of their own (an abort undoes steps in
    /// reverse, so the `KeepMeta` step puts back what it held last).
    pub meta_kept: BTreeSet<Vec<u8>>,
    /// Directories whose times an undo step holds already: their later utimes needs none.
    pub times_kept: BTreeSet<Vec<u8>>,
}

impl Tracked {
    /// Keeps the sets true after `rec` was applied.
    pub fn track(&mut self, rec: &Record) {
        if let Record::Create { path } = rec {
            self.new_files.insert(path.clone());
        }
        for set in [&mut self.new_files, &mut self.meta_kept, &mut self.times_kept] {
            match rec {
                Record::Unlink { path } | Record::Rmdir { path } => {
                    set.remove(path);
                }
                Record::Rename { from, to } => {
                    let moved = set.remove(from);
                    // A directory moved: what was beneath it has other paths now.
                    remove_beneath(set, from);
                    if moved {
                        set.insert(to.clone());
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether `rec`, a metadata record, needs no undo step of its own.
    pub fn undone_already(&self, rec: &Record) -> bool {
        let (Class::Meta, Some(p)) = (rec.class(), rec.path()) else { return false };
        match rec {
            // Removing the file undoes its metadata too.
            _ if self.new_files.contains(p) => true,
            Record::Chmod { .. } | Record::Chown { .. } => self.meta_kept.contains(p),
            Record::Utimes { .. } => self.meta_kept.contains(p) || self.times_kept.contains(p),
            _ => false,
        }
    }
}

/// Removes the paths beneath `dir` from `set`.
fn remove_beneath(set: &mut BTreeSet<Vec<u8>>, dir: &[u8]) {
    let beneath: Vec<Vec<u8>> = set.range(path::beneath(dir)).cloned().collect();
    for p in beneath {
        set.remove(&p);
    }
}

/// The paths a structural run names so far (borrowed from the records read ahead), or that the
/// records applied since the last checkpoint named (owned): to find a record that names one of
/// them, or a path beneath or above one.
pub struct Named<P = Vec<u8>> {
    all: BTreeSet<P>,
    /// Those that can be directories (what renames, rmdirs and mkdirs name).
    dirs: BTreeSet<P>,
}

impl<P> Default for Named<P> {
    fn default() -> Self {
        Named { all: BTreeSet::new(), dirs: BTreeSet::new() }
    }
}

impl<P: Borrow<[u8]> + Ord> Named<P> {
    /// Whether `p` is named, beneath a named directory, or (`dir`: `p` can be a directory)
    /// above a named path.
    pub fn conflicts(&self, p: &[u8], dir: bool) -> bool {
        let above = || p.iter().enumerate().filter(|&(_, &c)| c == b'/').map(|(i, _)| &p[..i]);
        let beneath = || {
            let mut key = p.to_vec();
            key.push(b'/');
            let mut after =
                self.all.range::<[u8], _>((Bound::Included(&key[..]), Bound::Unbounded));
            after.next().is_some_and(|q| q.borrow().starts_with(&key))
        };
        self.all.contains(p)
            || (!self.dirs.is_empty() && above().any(|a| self.dirs.contains(a)))
            || (dir && beneath())
    }

    /// How many paths are named.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Each path, and whether it can be a directory.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.all.iter().map(|p| (p.borrow(), self.dirs.contains(p.borrow())))
    }

    pub fn clear(&mut self) {
        self.all.clear();
        self.dirs.clear();
    }
}

impl<'r> Named<&'r [u8]> {
    pub fn add(&mut self, p: &'r [u8], dir: bool) {
        self.all.insert(p);
        if dir {
            self.dirs.insert(p);
        }
    }
}

impl Named<Vec<u8>> {
    /// Adds a copy of `p` (no copy when it is named already).
    pub fn add_copy(&mut self, p: &[u8], dir: bool) {
        if !self.all.contains(p) {
            self.all.insert(p.to_vec());
        }
        if dir && !self.dirs.contains(p) {
            self.dirs.insert(p.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_carries_a_tracked_path_and_forgets_what_was_beneath() {
        let mut t = Tracked::default();
        t.track(&Record::Create { path: b"d/f".to_vec() });
        t.times_kept.insert(b"d/sub".to_vec());
        t.track(&Record::Rename { from: b"d".to_vec(), to: b"e".to_vec() });
        assert!(t.new_files.is_empty() && t.times_kept.is_empty(), "beneath d: other paths now");
        t.track(&Record::Create { path: b"g".to_vec() });
        t.track(&Record::Rename { from: b"g".to_vec(), to: b"h".to_vec() });
        assert!(t.new_files.contains(&b"h"[..]) && !t.new_files.contains(&b"g"[..]));
        t.track(&Record::Unlink { path: b"h".to_vec() });
        assert!(t.new_files.is_empty());
    }

    #[test]
    fn metadata_of_what_is_undone_already_needs_no_step() {
        let mut t = Tracked::default();
        t.new_files.insert(b"new".to_vec());
        t.meta_kept.insert(b"kept".to_vec());
        t.times_kept.insert(b"dir".to_vec());
        let chmod = |p: &[u8]| Record::Chmod { path: p.to_vec(), mode: 0o644 };
        let utimes = |p: &[u8]| Record::Utimes {
            path: p.to_vec(),
            atime_sec: 0,
            atime_nsec: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
        };
        let xattr = |p: &[u8]| Record::RemoveXattr { path: p.to_vec(), name: b"user.x".to_vec() };
        assert!(t.undone_already(&chmod(b"new")) && t.undone_already(&xattr(b"new")));
        assert!(t.undone_already(&chmod(b"kept")) && !t.undone_already(&xattr(b"kept")));
        assert!(t.undone_already(&utimes(b"dir")) && !t.undone_already(&chmod(b"dir")));
        assert!(!t.undone_already(&utimes(b"other")));
        assert!(!t.undone_already(&Record::Unlink { path: b"new".to_vec() }), "not metadata");
    }

    #[test]
    fn named_paths_conflict_with_themselves_and_what_is_beneath_or_above_a_directory() {
        let mut since = Named::default();
        since.add_copy(b"a/f", false);
        since.add_copy(b"d", true);
        since.add_copy(b"d", true);
        assert_eq!(since.len(), 2, "a copy once");
        assert!(since.conflicts(b"a/f", false), "the same path");
        assert!(since.conflicts(b"a", true), "a directory above a named path");
        assert!(!since.conflicts(b"a", false), "a file cannot hold a named path");
        assert!(since.conflicts(b"d/x/y", false), "beneath a named directory");
        assert!(!since.conflicts(b"a/g", false) && !since.conflicts(b"dd", true));
        let mut run: Named<&[u8]> = Named::default();
        run.add(b"e/g", false);
        assert_eq!(run.iter().collect::<Vec<_>>(), vec![(&b"e/g"[..], false)]);
        since.clear();
        assert_eq!(since.len(), 0);
        assert!(!since.conflicts(b"a/f", false));
    }
}
