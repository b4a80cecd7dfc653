//! The ordering rules of STREAM_FORMAT.md section 5 that keep a receiver's own side effects out
//! of the result, checked on a decoded stream against the snapshot it was made from.
//!
//! A received tree can come out equal even when a stream breaks them (a receiver may repair the
//! damage, or the case at hand hides it); these checks name the broken rule instead. Per inode of
//! the target (found by looking up each record's path in the snapshot once every namespace record
//! is behind, when paths are the target's; hard links share one inode, so a rule holds across
//! all names of an object):
//!
//! - in an incremental stream, no `set_flags` with immutable or append-only before the last
//!   namespace record; in any stream, nothing touches an inode after its `set_flags` with either
//!   (a full stream makes objects at their final paths, so there this covers links to the inode
//!   and entries made in a directory too);
//! - data records of an inode before its metadata records, and those in the order `chown`,
//!   xattrs, `chmod`, `utimes`, `set_flags`;
//! - no `chown` or data record after `security.capability` is set (they drop it again), and
//!   where the target has a capability and the stream drops it, it is set again after the last
//!   record that dropped it; likewise setuid/setgid with `chmod` after a `chown`.

use anysend_stream::{Class, Record};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const LOCKING: u32 = 0x10 | 0x20;
const CAPABILITY: &[u8] = b"security.capability";

/// Where an inode's records stand while the stream is read.
#[derive(Default)]
struct InodeState {
    /// The path the inode was last addressed by (in the target).
    path: Vec<u8>,
    /// Index of the last `set_xattr` of `security.capability`.
    cap_set: Option<u64>,
    /// Index of the last `chown` or data record (each drops a capability).
    dropped: Option<u64>,
    /// Index of the last `chown`.
    chown: Option<u64>,
    /// Index of the last `chmod`.
    chmod: Option<u64>,
    /// Rank of the last metadata record ([`rank`]).
    rank: Option<u8>,
}

/// The order of an object's records: data first, then chown, xattrs, chmod, utimes, set_flags.
fn rank(r: &Record) -> Option<u8> {
    Some(match r {
        Record::Write { .. }
        | Record::Hole { .. }
        | Record::Truncate { .. }
        | Record::CopyFromOrigin { .. } => 0,
        Record::Chown { .. } => 1,
        Record::SetXattr { .. } | Record::RemoveXattr { .. } => 2,
        Record::Chmod { .. } => 3,
        Record::Utimes { .. } => 4,
        Record::SetFlags { .. } => 5,
        _ => return None,
    })
}

fn path_of(r: &Record) -> Option<&[u8]> {
    Some(match r {
        Record::Write { path, .. }
        | Record::Hole { path, .. }
        | Record::Truncate { path, .. }
        | Record::CopyFromOrigin { path, .. }
        | Record::SetXattr { path, .. }
        | Record::RemoveXattr { path, .. }
        | Record::Chmod { path, .. }
        | Record::Chown { path, .. }
        | Record::Utimes { path, .. }
        | Record::SetFlags { path, .. } => path,
        _ => return None,
    })
}

fn in_target(target: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        target.to_path_buf()
    } else {
        target.join(OsStr::from_bytes(rel))
    }
}

fn shown(p: &[u8]) -> String {
    crate::escape::escape_bytes(p)
}

/// The inodes (in the target) a namespace record of a full stream acts on: the directory it
/// changes, and for a link the object it names again.
fn namespace_touches(r: &Record) -> Option<Vec<&[u8]>> {
    Some(match r {
        Record::Mkdir { path }
        | Record::Create { path }
        | Record::Symlink { path, .. }
        | Record::Mknod { path, .. } => vec![path],
        Record::Link { path, existing } => vec![path, existing],
        _ => return None,
    })
}

fn parent_of(p: &[u8]) -> &[u8] {
    p.iter().rposition(|&b| b == b'/').map_or(&p[..0], |k| &p[..k])
}

fn inode_at(target: &Path, rel: &[u8], what: &str) -> Result<u64, String> {
    Ok(std::fs::symlink_metadata(in_target(target, rel))
        .map_err(|e| format!("{what}: {} not in the target: {e}", shown(rel)))?
        .ino())
}

/// Checks the rules above on `records` (a decoded stream, [`crate::streams::decode`]) made for
/// the snapshot `target`; the error names the record and the rule. A `full` stream makes every
/// object at its final path in walk order, each one's records right after it, so there the
/// rules hold over the whole stream, its namespace records included (a directory is touched by
/// what is made in it, an object by a link to it).
pub fn check_order(records: &[(u64, Record)], target: &Path, full: bool) -> Result<(), String> {
    let namespace = |r: &Record| matches!(r.class(), Class::Make | Class::Remove | Class::Rename);
    let last_ns = records.iter().rposition(|(_, r)| namespace(r));
    let updates_from = if full { 0 } else { last_ns.map_or(0, |i| i + 1) };
    for (i, r) in &records[..updates_from] {
        if let Record::SetFlags { path, flags } = r {
            if flags & LOCKING != 0 {
                return Err(format!(
                    "record {i}: set_flags {flags:#x} on {} before the namespace settled",
                    shown(path)
                ));
            }
        }
    }
    // The unlocks: `set_flags` without immutable and append-only before anything else changes
    // the tree (on origin paths; the object's update sets its flags again).
    let first_change = records
        .iter()
        .position(|(_, r)| !matches!(r, Record::Expect { .. } | Record::SetFlags { .. }))
        .unwrap_or(records.len());
    let mut inodes: BTreeMap<u64, InodeState> = BTreeMap::new();
    let mut locked: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    for (k, (i, r)) in records.iter().enumerate().skip(updates_from) {
        let i = *i;
        if k < first_change && matches!(r, Record::SetFlags { flags, .. } if flags & LOCKING == 0) {
            continue;
        }
        if matches!(r, Record::Expect { .. } | Record::End { .. }) {
            continue;
        }
        let what = format!("record {i} ({})", r.name());
        if let Some(paths) = namespace_touches(r) {
            // A full stream: the directory gains an entry; a link names an object again.
            let mut touched = vec![inode_at(target, parent_of(paths[0]), &what)?];
            for p in &paths[1..] {
                touched.push(inode_at(target, p, &what)?);
            }
            for t in touched {
                if let Some((l, at)) = locked.get(&t) {
                    return Err(format!(
                        "{what} {}: touches an inode made immutable or append-only by record {l} (at {})",
                        shown(paths[0]),
                        shown(at)
                    ));
                }
            }
            continue;
        }
        let Some(path) = path_of(r) else {
            return Err(format!("{what}: a removal or rename in a full stream"));
        };
        let ino = inode_at(target, path, &what)?;
        let what = format!("{what} {}", shown(path));
        if let Some((l, at)) = locked.get(&ino) {
            return Err(format!(
                "{what}: touches an inode made immutable or append-only by record {l} (at {})",
                shown(at)
            ));
        }
        let st = inodes.entry(ino).or_default();
        st.path = path.to_vec();
        let drops = matches!(
            r,
            Record::Chown { .. }
                | Record::Write { .. }
                | Record::Hole { .. }
                | Record::Truncate { .. }
                | Record::CopyFromOrigin { .. }
        );
        // Named before the order below, which it breaks too: it is the rule that matters.
        if let (true, Some(c)) = (drops, st.cap_set) {
            return Err(format!("{what}: drops the capability record {c} set"));
        }
        if let Some(k) = rank(r) {
            if st.rank.is_some_and(|prev| prev > k) {
                return Err(format!(
                    "{what}: out of the order data, chown, xattrs, chmod, utimes, set_flags"
                ));
            }
            st.rank = Some(k);
        }
        match r {
            Record::SetFlags { flags, .. } if flags & LOCKING != 0 => {
                locked.insert(ino, (i, path.to_vec()));
            }
            Record::SetXattr { name, .. } if name == CAPABILITY => st.cap_set = Some(i),
            Record::Chmod { .. } => st.chmod = Some(i),
            Record::Chown { .. }
            | Record::Write { .. }
            | Record::Hole { .. }
            | Record::Truncate { .. }
            | Record::CopyFromOrigin { .. } => {
                st.dropped = Some(i);
                if matches!(r, Record::Chown { .. }) {
                    st.chown = Some(i);
                }
            }
            _ => {}
        }
    }
    for st in inodes.values() {
        let at = in_target(target, &st.path);
        if let Some(d) = st.dropped {
            let has_cap = crate::fsops::has_xattr(&at, "security.capability")
                .map_err(|e| format!("{}: {e}", at.display()))?;
            if has_cap && st.cap_set.is_none_or(|c| c < d) {
                return Err(format!(
                    "{}: the target has a capability, record {d} dropped it and nothing set it again",
                    shown(&st.path)
                ));
            }
        }
        if let Some(c) = st.chown {
            let mode = std::fs::symlink_metadata(&at)
                .map_err(|e| format!("{}: {e}", at.display()))?
                .mode();
            let ft = mode & 0o170000;
            if ft == 0o100000 && mode & 0o6000 != 0 && st.chmod.is_none_or(|m| m < c) {
                return Err(format!(
                    "{}: the target is setuid/setgid ({:o}), chown record {c} clears that and no chmod follows",
                    shown(&st.path),
                    mode & 0o7777
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target with `f` and its second name `g`, and a directory `d`.
    fn target() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"f").unwrap();
        std::fs::hard_link(t.path().join("f"), t.path().join("g")).unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        t
    }

    fn numbered(records: Vec<Record>) -> Vec<(u64, Record)> {
        records.into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect()
    }

    fn p(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn a_sender_s_order_passes() {
        let t = target();
        let ok = numbered(vec![
            Record::Write { path: p("f"), offset: 0, data: anysend_stream::Data::from(Vec::new()) },
            Record::Chown { path: p("f"), uid: 0, gid: 0 },
            Record::SetXattr { path: p("f"), name: p("user.a"), value: p("1") },
            Record::Chmod { path: p("f"), mode: 0o644 },
            Record::SetFlags { path: p("f"), flags: 0x10 },
            Record::Utimes {
                path: p("d"),
                atime_sec: 0,
                atime_nsec: 0,
                mtime_sec: 0,
                mtime_nsec: 0,
            },
        ]);
        check_order(&ok, t.path(), false).unwrap();
    }

    #[test]
    fn broken_rules_are_named() {
        let t = target();
        let cases = [
            // Through the other name of a locked inode.
            (
                vec![
                    Record::SetFlags { path: p("f"), flags: 0x20 },
                    Record::Chmod { path: p("g"), mode: 0o600 },
                ],
                "immutable or append-only",
            ),
            (
                vec![
                    Record::SetXattr { path: p("f"), name: p("security.capability"), value: p("") },
                    Record::Chown { path: p("g"), uid: 1, gid: 1 },
                ],
                "drops the capability",
            ),
            (
                vec![
                    Record::Chmod { path: p("f"), mode: 0o600 },
                    Record::Chown { path: p("f"), uid: 1, gid: 1 },
                ],
                "out of the order",
            ),
            (
                vec![
                    Record::Mkdir { path: p("d") },
                    Record::SetFlags { path: p("f"), flags: 0x10 },
                    Record::Unlink { path: p("x") },
                ],
                "before the namespace settled",
            ),
        ];
        for (records, rule) in cases {
            let e = check_order(&numbered(records), t.path(), false).unwrap_err();
            assert!(e.contains(rule), "{rule}: {e}");
        }
        // A full stream: a link to an inode made immutable before.
        let full = numbered(vec![
            Record::Create { path: p("f") },
            Record::SetFlags { path: p("f"), flags: 0x10 },
            Record::Link { path: p("g"), existing: p("f") },
        ]);
        let e = check_order(&full, t.path(), true).unwrap_err();
        assert!(e.contains("immutable or append-only"), "{e}");
    }
}
