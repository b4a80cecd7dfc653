//! What a plan will carry, estimated before its first operation: the total a progress display
//! shows (a bar, a share, the time left), and what a stream header's estimate is made from.
//!
//! An incremental's inventory is complete before anything is planned, so its estimate is read off
//! it: the objects it changes, the sizes of its new files, and for each file whose content may
//! have changed (the quick check failed) what it grew by plus one [`CHANGED_GUESS`] (never more
//! than its size). Which ranges changed is found only while the plan is emitted; the common
//! change to a large file (a database, an image, a log) is small, and counting such files whole
//! would put the total many times too high. A file rewritten whole makes the stream larger than
//! the estimate (a progress display then grows its total).
//!
//! A full stream is planned while its tree is walked, so its estimate takes a walk of its own
//! first (names and one `statx` per entry, no content): every object, and each regular file's
//! size once per inode, less its holes as far as its allocated blocks tell (a file with no
//! blocks, inline data, counts its size). It follows the walk's scope: no other device unless
//! `cross_mounts`, nothing excluded. Where this walk fails (an unreadable directory), the
//! estimate leaves that part out: the plan itself reports the failure.

use std::collections::HashSet;

use rustix::fs::{statx, AtFlags, StatxFlags};

use crate::error::Side;
use crate::inventory::Inventory;
use crate::model::join;
use crate::scope::Scope;
use crate::stat::Kind;
use crate::walk::{list, DirStack, Roots, DIRENT_BUF};

/// What a plan will carry, estimated (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Objects created, changed, moved or removed.
    pub objects: u64,
    /// File content bytes, about (an upper bound for an incremental).
    pub content_bytes: u64,
}

/// What a changed file's content is guessed to take besides what it grew by.
pub const CHANGED_GUESS: u64 = 128 * 1024;

/// The estimate of an incremental's plan, from its inventory.
pub(crate) fn of_inventory(inv: &Inventory) -> Estimate {
    let mut e = Estimate { objects: inv.objects.len() as u64, content_bytes: 0 };
    for o in &inv.objects {
        let (Kind::File, Some(d), Some(m)) = (o.kind, &o.diff, &o.target_meta) else { continue };
        let before = o.origin_meta.as_ref().filter(|_| !d.new).map(|m| m.size);
        e.content_bytes += match before {
            _ if !d.new && !d.content => 0,
            None => m.size,
            Some(b) => m.size.min(m.size.saturating_sub(b) + CHANGED_GUESS),
        };
    }
    e
}

/// The estimate of a full stream of the target tree of `roots`, by walking it.
pub(crate) fn of_tree(roots: &Roots, scope: &Scope) -> Estimate {
    let mut e = Estimate { objects: 1, content_bytes: 0 };
    let root = &roots.target_meta;
    let Ok(mut ds) = DirStack::open(roots, Side::Target, b"", root.ino) else { return e };
    let mut buf = Vec::with_capacity(DIRENT_BUF);
    let mut linked = HashSet::new();
    // Each level: the names of a directory still to visit (in reverse, popped from the end).
    let mut levels = vec![listing(&mut ds, &mut buf, scope)];
    while let Some(top) = levels.last_mut() {
        let Some(name) = top.pop() else {
            levels.pop();
            if !levels.is_empty() {
                ds.pop();
            }
            continue;
        };
        e.objects += 1;
        let Ok(dir) = ds.top_fd() else { continue };
        let mask = StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::BLOCKS | StatxFlags::INO;
        let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
        let Ok(st) = statx(dir, name.as_slice(), flags, mask) else { continue };
        match Kind::from_mode(u32::from(st.stx_mode)) {
            Some(Kind::File) => {
                if st.stx_nlink > 1 && !linked.insert(st.stx_ino) {
                    continue;
                }
                let allocated = st.stx_blocks.saturating_mul(512);
                let size = if allocated == 0 { st.stx_size } else { st.stx_size.min(allocated) };
                e.content_bytes += size;
            }
            Some(Kind::Dir) => {
                let other_dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor) != root.dev;
                if other_dev && !scope.cross_mounts {
                    continue;
                }
                if ds.push(&name, st.stx_ino).is_ok() {
                    let names = listing(&mut ds, &mut buf, scope);
                    levels.push(names);
                }
            }
            _ => {}
        }
    }
    e
}

/// The names of the directory on top of `ds` that the scope keeps, last first; none when it
/// cannot be listed.
fn listing(ds: &mut DirStack, buf: &mut Vec<u8>, scope: &Scope) -> Vec<Vec<u8>> {
    let path = ds.path.clone();
    let Ok(fd) = ds.top_fd() else { return Vec::new() };
    let Ok(entries) = list(fd, buf, Side::Target, &path) else { return Vec::new() };
    let mut names: Vec<Vec<u8>> = entries
        .into_iter()
        .map(|d| d.name)
        .filter(|n| !scope.filters() || !scope.excluded(&join(&path, n)))
        .collect();
    names.reverse();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_tree_is_estimated_by_its_objects_and_file_sizes_counting_each_inode_once() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        fs::create_dir_all(root.join("a/b")).expect("mkdir");
        fs::write(root.join("a/b/f"), vec![7u8; 10_000]).expect("write");
        fs::write(root.join("g"), b"hello").expect("write");
        fs::hard_link(root.join("g"), root.join("a/h")).expect("link");
        std::os::unix::fs::symlink("g", root.join("s")).expect("symlink");
        fs::write(root.join("skipped"), vec![1u8; 5000]).expect("write");
        let roots = Roots::open_target(root).expect("roots");
        let all = of_tree(&roots, &Scope::default());
        // root, a, a/b, a/b/f, a/h, g, s, skipped
        assert_eq!(all, Estimate { objects: 8, content_bytes: 10_000 + 5 + 5000 });
        let glob = crate::scope::Glob::new(b"skipped").expect("glob");
        let scoped = of_tree(&roots, &Scope { exclude: vec![glob], ..Scope::default() });
        assert_eq!(scoped, Estimate { objects: 7, content_bytes: 10_005 });
    }
}
