//! Snapshot identity: the 16-byte ids a stream header carries, and whether a tree is read-only.
//!
//! ## Snapshot identity
//!
//! Every stream names the snapshot it turns into (`target id`) and, when incremental, the one
//! the receiver must already hold (`origin id`). The same snapshot always gets the same id, so a
//! receiver can refuse an incremental stream whose origin is not what it holds, and so the same
//! pair always yields the same stream:
//!
//! * **btrfs**: the subvolume's own UUID (`BTRFS_IOC_GET_SUBVOL_INFO`, the UUID that
//!   `btrfs subvolume show` prints) when the path is the root of a subvolume or snapshot. A
//!   directory inside a subvolume gets a UUID v5 of that subvolume UUID and the directory's
//!   inode number, so two different subtrees of one snapshot never share an id.
//! * **other file systems**: a UUID v5 of the file system id (`statvfs` `f_fsid`), the root
//!   directory's inode number and its birth time (`statx`, when the file system records it).
//!   That is stable for a read-only tree that stays on the same file system (the fsid of ext4
//!   and XFS is derived from the file system UUID; some file systems derive it from the device
//!   number, which can change across reboots: use `--label` there).
//! * **`--label NAME` / `--from-label NAME`**: a UUID v5 of the label, for trees that are not
//!   snapshots or to name snapshots the same on several machines.
//! * **stream id**: a UUID v5 of the origin id (or "none" for a full stream) followed by the
//!   target id: the same pair always gets the same stream id, which a resumed stream keeps.
//!
//! All v5 UUIDs use one fixed anysend namespace (below), so ids are reproducible by anyone.
//!
//! File system and lineage ([`FsKey`], [`Subvol`]): what `origin.rs` needs to tell whether
//! ORIGIN can be an origin of TARGET at all.
//!
//! Labels: the names people know the snapshots by, which the stream header carries for them
//! (`anyrecv --status` shows them): `--label`/`--from-label`, else the last component of the
//! snapshot's canonical path ([`label`]).
//!
//! Read-only: on btrfs the subvolume's read-only flag (from the same ioctl), elsewhere the
//! mount's `ST_RDONLY`. A tree that is not read-only can change under the walk; the sender warns.

use anyhow::{Context, Result};
use anysend_diff_core::Timestamp;
use anysend_stream::Id;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatVfsMountFlags, StatxFlags, CWD};
use std::path::Path;
use uuid::Uuid;

use anysend_diff_core::btrfs::{
    fsid as btrfs_fsid, subvol_info as btrfs_subvol_info, SUBVOL_RDONLY as BTRFS_SUBVOL_RDONLY,
    SUBVOL_ROOT_INO as BTRFS_SUBVOL_ROOT_INO,
};

/// The fixed namespace of every anysend v5 id.
fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://anysend.invalid/ids/v1")
}

fn v5(parts: &[&[u8]]) -> Id {
    let mut name = Vec::new();
    for p in parts {
        // Length-prefixed, so that ("ab","c") and ("a","bc") differ.
        name.extend_from_slice(&(p.len() as u32).to_le_bytes());
        name.extend_from_slice(p);
    }
    Id(Uuid::new_v5(&namespace(), &name).into_bytes())
}

/// Id of a snapshot named by a label.
pub fn label_id(label: &str) -> Id {
    v5(&[b"label", label.as_bytes()])
}

/// Id of a stream from `origin` (None: full) to `target`.
pub fn stream_id(origin: Option<Id>, target: Id) -> Id {
    match origin {
        Some(o) => v5(&[b"stream", &o.0, &target.0]),
        None => v5(&[b"stream", b"none", &target.0]),
    }
}

/// What was found out about one tree.
#[derive(Clone, Debug)]
pub struct TreeInfo {
    /// The id the stream uses for it.
    pub id: Id,
    /// Whether it cannot change while it is read.
    pub read_only: bool,
    /// How the id was derived (for messages).
    pub how: &'static str,
    /// When the snapshot was taken, where the file system records it (btrfs `otime`).
    pub taken: Option<Timestamp>,
    /// Which file system the tree is on: inode numbers mean one object only within one.
    pub fs: FsKey,
    /// On btrfs, the subvolume holding the tree (the tree's root or an ancestor of it).
    pub subvol: Option<Subvol>,
}

/// Which file system a tree is on, for telling whether two trees share inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKey {
    /// A btrfs file system's UUID: every subvolume and snapshot of it has its own `st_dev` and
    /// `f_fsid`, so neither can say that two snapshots are of one file system.
    Btrfs([u8; 16]),
    /// `statvfs`'s `f_fsid` (ext4 derives it from the file system UUID, so a block-level copy
    /// such as an LVM snapshot counts as the same file system, as its inode numbers do); where
    /// it is zero (tmpfs on older kernels), the device number, with the high bit set so the two
    /// never collide.
    Other(u64),
}

/// What btrfs records about the subvolume holding a tree: its place in the snapshot lineage
/// and when it was made.
#[derive(Clone, Copy, Debug)]
pub struct Subvol {
    pub treeid: u64,
    pub uuid: [u8; 16],
    /// The UUID of the subvolume it is a snapshot of (zero when none).
    pub parent_uuid: [u8; 16],
    /// The transaction that created it: snapshots of one file system are ordered by it.
    pub otransid: u64,
    /// When it was created.
    pub otime: Timestamp,
    /// Whether it is read-only (its content is frozen as of `otransid`).
    pub read_only: bool,
}

fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open directory {}", path.display()))
}

/// Identify the tree rooted at `path`; `label` overrides the derived id.
pub fn identify(path: &Path, label: Option<&str>) -> Result<TreeInfo> {
    let fd = open_root(path)?;
    let st = rustix::fs::statx(
        &fd,
        c"",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .with_context(|| format!("cannot stat {}", path.display()))?;
    let vfs =
        rustix::fs::fstatvfs(&fd).with_context(|| format!("cannot statvfs {}", path.display()))?;
    let mount_ro = vfs.f_flag.contains(StatVfsMountFlags::RDONLY);
    let sv = btrfs_subvol_info(&fd).filter(|i| i.uuid != [0; 16]);
    let fs = match (sv.is_some(), btrfs_fsid(fd.as_fd())) {
        (true, Some(id)) => FsKey::Btrfs(id),
        _ if vfs.f_fsid != 0 => FsKey::Other(vfs.f_fsid),
        _ => FsKey::Other(
            (1 << 63) | (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
        ),
    };
    let subvol = sv.map(|sv| Subvol {
        treeid: sv.treeid,
        uuid: sv.uuid,
        parent_uuid: sv.parent_uuid,
        otransid: sv.otransid,
        otime: Timestamp { sec: sv.otime[0] as i64, nsec: sv.otime[1] as u32 },
        read_only: sv.flags & BTRFS_SUBVOL_RDONLY != 0,
    });
    let mut info = match sv {
        Some(sv) => {
            let read_only = mount_ro || sv.flags & BTRFS_SUBVOL_RDONLY != 0;
            if st.stx_ino == BTRFS_SUBVOL_ROOT_INO {
                let taken = Timestamp { sec: sv.otime[0] as i64, nsec: sv.otime[1] as u32 };
                let taken = (sv.otime != [0, 0]).then_some(taken);
                TreeInfo {
                    id: Id(sv.uuid),
                    read_only,
                    how: "btrfs subvolume UUID",
                    taken,
                    fs,
                    subvol,
                }
            } else {
                let id = v5(&[b"btrfs-dir", &sv.uuid, &st.stx_ino.to_le_bytes()]);
                TreeInfo {
                    id,
                    read_only,
                    how: "btrfs subvolume UUID and directory inode",
                    taken: None,
                    fs,
                    subvol,
                }
            }
        }
        None => {
            let has_btime = st.stx_mask & StatxFlags::BTIME.bits() != 0;
            let (bs, bn) =
                if has_btime { (st.stx_btime.tv_sec, st.stx_btime.tv_nsec) } else { (0, 0) };
            let id = v5(&[
                b"fs",
                &vfs.f_fsid.to_le_bytes(),
                &st.stx_ino.to_le_bytes(),
                &bs.to_le_bytes(),
                &bn.to_le_bytes(),
            ]);
            TreeInfo {
                id,
                read_only: mount_ro,
                how: "file system id, root inode and birth time",
                taken: None,
                fs,
                subvol: None,
            }
        }
    };
    if let Some(l) = label {
        info.id = label_id(l);
        info.how = "label";
    }
    Ok(info)
}

/// The label the header carries for the snapshot at `path`: `given` (`--label`), else the last
/// component of its canonical path (a btrfs snapshot's name, say), at most 255 bytes; none for
/// `/`.
pub fn label(path: &std::path::Path, given: Option<&str>) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = match given {
        Some(l) => l.as_bytes().to_vec(),
        None => {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            canonical.file_name()?.as_bytes().to_vec()
        }
    };
    bytes.truncate(anysend_stream::format::MAX_LABEL);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(label_id("mon"), label_id("mon"));
        assert_ne!(label_id("mon"), label_id("tue"));
        let (a, b) = (label_id("a"), label_id("b"));
        assert_eq!(stream_id(Some(a), b), stream_id(Some(a), b));
        assert_ne!(stream_id(Some(a), b), stream_id(Some(b), a));
        assert_ne!(stream_id(None, b), stream_id(Some(a), b));
        // Version 5, RFC 4122 variant.
        assert_eq!(label_id("x").0[6] >> 4, 5);
    }
}
