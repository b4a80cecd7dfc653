//! Whether ORIGIN can be an origin of TARGET: the refusals made before anything is read, and
//! the hint given after a walk that matched almost nothing.
//!
//! Given the wrong ORIGIN, an incremental stream is still a valid stream, only the wrong one,
//! and nothing downstream can tell: a receiver holding ORIGIN applies it and ends up somewhere
//! the user never meant. So the pairs that cannot be right are refused (exit status 2), each
//! with the flag that overrides it:
//!
//! * **ORIGIN newer than TARGET** (two read-only btrfs subvolumes of one file system, ORIGIN
//!   created in a later transaction, and TARGET not a snapshot of ORIGIN): the stream would
//!   turn the newer snapshot back into the older one. `--allow-reverse` sends it anyway (to
//!   roll a replica back on purpose). Other file systems record no order of their trees, and a
//!   writable tree has no point in time, so nothing is refused there.
//! * **ORIGIN and TARGET on different file systems**, matched by inode number: inode numbers
//!   of one file system mean nothing in another, so the "incremental" would delete and resend
//!   nearly everything, or worse, pair unrelated objects that happen to share a number.
//!   `--path-match` is what such trees need; `--allow-other-fs` keeps inode matching for
//!   block-level copies of one file system mounted apart (e.g. XFS on LVM snapshots).
//!
//! Two trees on one file system can still be unrelated (two `cp -a` copies): that shows only
//! after the walk, when almost nothing matched by inode number; [`few_in_common`] words the
//! warning, which names `--path-match`.

use crate::cli::UsageError;
use crate::ids::{FsKey, Subvol, TreeInfo};
use anysend_diff_core::{IndexUse, Summary};
use std::path::Path;

/// The flags that let a refused pair through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// `--path-match`: objects are matched by path, so the file systems do not matter.
    pub path_match: bool,
    /// `--allow-reverse`.
    pub allow_reverse: bool,
    /// `--allow-other-fs`.
    pub allow_other_fs: bool,
}

/// One side of the pair: where it is and what was found out about it.
pub struct Side<'a> {
    pub path: &'a Path,
    pub info: &'a TreeInfo,
}

/// Refuse an ORIGIN that cannot be an origin of TARGET (see the module doc).
pub fn check(origin: Side<'_>, target: Side<'_>, ov: Overrides) -> Result<(), UsageError> {
    if !ov.path_match && !ov.allow_other_fs && origin.info.fs != target.info.fs {
        return Err(UsageError(format!(
            "ORIGIN {} and TARGET {} are on different file systems ({} and {}), so their inode \
             numbers say nothing about which objects are the same; give --path-match to match \
             objects by path (for copies, other machines), or --allow-other-fs if they are \
             block-level copies of one file system mounted apart (e.g. LVM snapshots)",
            origin.path.display(),
            target.path.display(),
            describe(origin.info.fs),
            describe(target.info.fs),
        )));
    }
    if ov.allow_reverse || origin.info.fs != target.info.fs {
        return Ok(());
    }
    let (Some(o), Some(t)) = (&origin.info.subvol, &target.info.subvol) else {
        return Ok(());
    };
    if newer(o, t) {
        return Err(UsageError(format!(
            "ORIGIN {} is newer than TARGET {}: btrfs created ORIGIN in transaction {} ({}), \
             after TARGET in transaction {} ({}), so this stream would turn a replica back \
             into the older snapshot; swap them, or give --allow-reverse if rolling back is \
             what you want",
            origin.path.display(),
            target.path.display(),
            o.otransid,
            when(o),
            t.otransid,
            when(t),
        )));
    }
    Ok(())
}

/// Whether read-only subvolume `o` was taken after read-only subvolume `t` of the same btrfs.
fn newer(o: &Subvol, t: &Subvol) -> bool {
    if !o.read_only || !t.read_only || o.treeid == t.treeid {
        // A writable tree has no point in time; two directories of one subvolume, no order.
        return false;
    }
    if t.parent_uuid == o.uuid {
        // TARGET is a snapshot of ORIGIN: whatever the transactions say, it came later.
        return false;
    }
    o.otransid > t.otransid
}

/// Whether btrfs's lineage says the two are snapshots of one subvolume (or one of the other).
fn related(o: &Subvol, t: &Subvol) -> bool {
    o.treeid == t.treeid
        || t.parent_uuid == o.uuid
        || o.parent_uuid == t.uuid
        || (o.parent_uuid != [0; 16] && o.parent_uuid == t.parent_uuid)
}

fn describe(fs: FsKey) -> String {
    match fs {
        FsKey::Btrfs(id) => format!("btrfs {}", uuid::Uuid::from_bytes(id)),
        FsKey::Other(id) => format!("file system id {id:#x}"),
    }
}

fn when(s: &Subvol) -> String {
    format!("at {}.{:09} seconds since the epoch", s.otime.sec, s.otime.nsec)
}

/// At least this many objects must have been deleted and created before a walk that matched
/// almost nothing is worth a warning (a handful is an ordinary day).
const MIN_REPLACED: u64 = 8;
/// "Almost nothing": fewer than one target object in this many matched an origin object.
const FEW: u64 = 20;

/// The warning for an inode-matched walk that found (almost) nothing in common between the
/// two trees, or `None`. Costs nothing: the walk counted as it went.
pub fn few_in_common(origin: &TreeInfo, target: &TreeInfo, plan: &Summary) -> Option<String> {
    if matches!(plan.index, IndexUse::Used { .. }) {
        return None; // btrfs proved TARGET a later snapshot of ORIGIN's subvolume.
    }
    if let (Some(o), Some(t)) = (&origin.subvol, &target.subvol) {
        if origin.fs == target.fs && related(o, t) {
            return None;
        }
    }
    let m = &plan.matching;
    let matched = plan.walk.same_objects + m.in_both;
    let replaced = m.origin_only.min(m.target_only);
    if replaced < MIN_REPLACED || matched * FEW >= matched + m.target_only {
        return None;
    }
    Some(format!(
        "ORIGIN and TARGET have almost nothing in common by inode number ({matched} objects \
         matched, {} deleted, {} created): they look like two copies rather than two snapshots \
         of one file system, and this stream resends nearly everything; if they are copies, \
         send with --path-match, which matches objects by path",
        m.origin_only, m.target_only
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anysend_diff_core::{Matching, Timestamp};

    fn sv(treeid: u64, otransid: u64) -> Subvol {
        Subvol {
            treeid,
            uuid: [treeid as u8; 16],
            parent_uuid: [9; 16],
            otransid,
            otime: Timestamp { sec: otransid as i64, nsec: 0 },
            read_only: true,
        }
    }

    #[test]
    fn only_a_later_read_only_snapshot_is_newer() {
        let (early, late) = (sv(1, 10), sv(2, 20));
        assert!(newer(&late, &early));
        assert!(!newer(&early, &late));
        // TARGET made from ORIGIN is later whatever the numbers say.
        let child = Subvol { parent_uuid: late.uuid, ..sv(3, 5) };
        assert!(!newer(&late, &child));
        // A writable tree has no point in time; one subvolume has no order.
        assert!(!newer(&Subvol { read_only: false, ..late }, &early));
        assert!(!newer(&late, &Subvol { treeid: 2, ..early }));
    }

    fn plain() -> TreeInfo {
        TreeInfo {
            id: anysend_stream::Id([0; 16]),
            read_only: false,
            how: "test",
            taken: None,
            fs: FsKey::Other(1),
            subvol: None,
        }
    }

    #[test]
    fn the_warning_needs_many_replaced_and_almost_none_matched() {
        let plan = |same: u64, in_both: u64, origin_only: u64, target_only: u64| {
            let mut s = Summary::default();
            s.walk.same_objects = same;
            s.matching = Matching { in_both, origin_only, target_only };
            few_in_common(&plain(), &plain(), &s)
        };
        assert!(plan(0, 0, 30, 31).is_some_and(|w| w.contains("--path-match")));
        assert!(plan(1, 0, 30, 31).is_some(), "1 in 32 is almost nothing");
        assert!(plan(5, 0, 30, 31).is_none(), "5 in 36 is something");
        assert!(plan(0, 0, 3, 3).is_none(), "a handful replaced is an ordinary day");
        assert!(plan(0, 0, 0, 500).is_none(), "a new subtree is no sign of copies");
    }
}
