//! What btrfs already knows about two snapshots: which inodes of the target can differ from the
//! origin at all.
//!
//! Snapshots of one subvolume share every metadata block that did not change between them; btrfs
//! never edits a block in place, it writes a changed item into a fresh copy of its leaf stamped
//! with the current transaction id, and copies the path above it the same way. A tree search
//! (`BTRFS_IOC_TREE_SEARCH_V2`) with `min_transid` at the origin's creation transaction skips
//! every block older than that, so one pass over the target's tree yields every leaf written
//! since the origin was taken, and with it every item that changed, plus unchanged neighbours
//! that share a leaf with a change; those are told apart by their inode item's own transaction
//! id, which every change to an object rewrites. What remains is *changed*; every directory
//! above a changed object is *dirty*. Everything else is the same object with the same items in
//! both snapshots, so the walker neither stats it nor descends into it: a quiet day costs a few
//! directories instead of a stat of every entry. This is how `btrfs send` skips unchanged
//! subtrees too; here it is only a filter in front of the ordinary walk, which still compares
//! whatever the index cannot rule out.
//!
//! The index is built only when that argument holds: both roots are subvolume roots of one
//! mounted btrfs, both read-only, the target is a later snapshot of the origin's source (or of
//! the origin itself), and the origin has no block written after it was created. Anything else
//! (another file system, no `CAP_SYS_ADMIN` for the tree search, path identity, a subtree of a
//! snapshot) yields the reason, and the walker compares every entry.

use rustix::fd::{AsFd, BorrowedFd};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, opcode, Getter, Opcode, Updater};
use std::collections::{HashMap, HashSet};

/// `struct btrfs_ioctl_get_subvol_info_args` of `<linux/btrfs.h>` (504 bytes; `flags` at 288,
/// `uuid` at 296, as a C compiler lays the kernel header out).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SubvolInfo {
    pub treeid: u64,
    /// `BTRFS_VOL_NAME_MAX + 1`.
    pub name: [u8; 256],
    pub parent_id: u64,
    pub dirid: u64,
    pub generation: u64,
    pub flags: u64,
    pub uuid: [u8; 16],
    pub parent_uuid: [u8; 16],
    pub received_uuid: [u8; 16],
    pub ctransid: u64,
    pub otransid: u64,
    pub stransid: u64,
    pub rtransid: u64,
    /// `struct btrfs_ioctl_timespec { __u64 sec; __u32 nsec; }`, padded to 16 bytes.
    pub ctime: [u64; 2],
    pub otime: [u64; 2],
    pub stime: [u64; 2],
    pub rtime: [u64; 2],
    pub reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<SubvolInfo>() == 504);
const _: () = assert!(std::mem::offset_of!(SubvolInfo, flags) == 288);
const _: () = assert!(std::mem::offset_of!(SubvolInfo, uuid) == 296);
const _: () = assert!(std::mem::offset_of!(SubvolInfo, ctransid) == 344);

/// `BTRFS_IOC_GET_SUBVOL_INFO = _IOR(0x94, 60, args)`.
const IOC_GET_SUBVOL_INFO: Opcode = opcode::read::<SubvolInfo>(0x94, 60);
/// `BTRFS_ROOT_SUBVOL_RDONLY`: the root item's read-only flag as this ioctl reports it (bit 0;
/// not `BTRFS_SUBVOL_RDONLY`, bit 1, of the SUBVOL_GETFLAGS ioctl).
pub const SUBVOL_RDONLY: u64 = 1 << 0;
/// Inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub const SUBVOL_ROOT_INO: u64 = 256;
/// `BTRFS_LAST_FREE_OBJECTID`: objectids above are trees' bookkeeping, not inodes.
const LAST_FREE_OBJECTID: u64 = u64::MAX - 255;
const INODE_ITEM_KEY: u32 = 1;
const INODE_REF_KEY: u32 = 12;
const INODE_EXTREF_KEY: u32 = 13;

/// The subvolume holding `fd`'s inode; `None` when the file system is not btrfs.
pub fn subvol_info<Fd: AsFd>(fd: Fd) -> Option<SubvolInfo> {
    // SAFETY: the opcode is BTRFS_IOC_GET_SUBVOL_INFO, which writes one
    // `btrfs_ioctl_get_subvol_info_args`, laid out exactly as `SubvolInfo` (size checked).
    let getter = unsafe { Getter::<IOC_GET_SUBVOL_INFO, SubvolInfo>::new() };
    // SAFETY: see above.
    unsafe { ioctl(fd.as_fd(), getter) }.ok()
}

/// `struct btrfs_ioctl_fs_info_args` (1 KiB); only `fsid` is read.
#[repr(C)]
#[derive(Clone, Copy)]
struct FsInfo {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    rest: [u8; 1024 - 32],
}
const _: () = assert!(std::mem::size_of::<FsInfo>() == 1024);
/// `BTRFS_IOC_FS_INFO = _IOR(0x94, 31, args)`.
const IOC_FS_INFO: Opcode = opcode::read::<FsInfo>(0x94, 31);

/// The UUID of the btrfs file system holding `fd` (the same for all its subvolumes, unlike
/// `st_dev` and `statvfs`'s `f_fsid`); `None` when it is not btrfs.
pub fn fsid(fd: BorrowedFd<'_>) -> Option<[u8; 16]> {
    // SAFETY: BTRFS_IOC_FS_INFO writes one `btrfs_ioctl_fs_info_args` (1024 bytes, checked).
    let getter = unsafe { Getter::<IOC_FS_INFO, FsInfo>::new() };
    // SAFETY: see above.
    unsafe { ioctl(fd, getter) }.ok().map(|i| i.fsid)
}

/// `struct btrfs_ioctl_search_key` followed by `buf_size`: the fixed part of
/// `struct btrfs_ioctl_search_args_v2` (112 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SearchHeader {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: [u64; 4],
    buf_size: u64,
}
const _: () = assert!(std::mem::size_of::<SearchHeader>() == 112);

/// Result buffer per call; the kernel returns as many whole items as fit (a leaf is at most
/// 64 KiB, so one item always fits).
const SEARCH_BUF: usize = 256 * 1024;

#[repr(C)]
struct SearchArgs {
    hdr: SearchHeader,
    buf: [u8; SEARCH_BUF],
}

/// `BTRFS_IOC_TREE_SEARCH_V2 = _IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2)`: the size in
/// the opcode is the fixed part's only.
const IOC_TREE_SEARCH_V2: Opcode = opcode::read_write::<SearchHeader>(0x94, 17);
const _: () = assert!(IOC_TREE_SEARCH_V2 == 0xC070_9411);

/// One item of a search result: its key and data.
struct Item<'a> {
    objectid: u64,
    kind: u32,
    offset: u64,
    data: &'a [u8],
}

/// Items of `fd`'s subvolume tree with keys in `[min, max]` (objectid, type, offset) that lie in
/// blocks written at or after `min_transid`, in key order, handed to `each`.
struct Search {
    args: Box<SearchArgs>,
    /// ioctl calls made (for the walk statistics).
    calls: u64,
}

impl Search {
    fn new() -> Search {
        // A 256 KiB buffer is built on the heap directly: `Box::new` of the array could
        // overflow a small thread stack.
        let args: Box<SearchArgs> = {
            let layout = std::alloc::Layout::new::<SearchArgs>();
            // SAFETY: the layout is non-zero-sized; zeroed bytes are a valid `SearchArgs` (all
            // plain integers), and the pointer is handed to `Box` with the same layout.
            unsafe {
                let p = std::alloc::alloc_zeroed(layout) as *mut SearchArgs;
                if p.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                Box::from_raw(p)
            }
        };
        Search { args, calls: 0 }
    }

    fn run(
        &mut self,
        fd: BorrowedFd<'_>,
        min: (u64, u32, u64),
        max: (u64, u32, u64),
        min_transid: u64,
        each: &mut dyn FnMut(Item<'_>) -> Result<(), Unusable>,
    ) -> Result<(), Unusable> {
        let mut from = min;
        loop {
            self.args.hdr = SearchHeader {
                tree_id: 0,
                min_objectid: from.0,
                max_objectid: max.0,
                min_type: from.1,
                max_type: max.1,
                min_offset: from.2,
                max_offset: max.2,
                min_transid,
                max_transid: u64::MAX,
                nr_items: u32::MAX,
                buf_size: SEARCH_BUF as u64,
                ..SearchHeader::default()
            };
            // SAFETY: the opcode is BTRFS_IOC_TREE_SEARCH_V2; `SearchArgs` is the fixed part
            // followed by `buf_size` bytes of buffer, which is all the kernel writes.
            let ctl = unsafe { Updater::<IOC_TREE_SEARCH_V2, SearchArgs>::new(&mut *self.args) };
            self.calls += 1;
            // SAFETY: see above; the buffer outlives the call.
            if let Err(e) = unsafe { ioctl(fd, ctl) } {
                return Err(match e {
                    Errno::PERM | Errno::ACCESS => {
                        Unusable("the btrfs tree search needs CAP_SYS_ADMIN".into())
                    }
                    e => Unusable(format!("btrfs tree search failed: {e}")),
                });
            }
            let n = self.args.hdr.nr_items as usize;
            if n == 0 {
                return Ok(());
            }
            let buf = &self.args.buf[..];
            let mut pos = 0usize;
            let mut last = from;
            for _ in 0..n {
                let h = buf.get(pos..pos + 32).ok_or_else(|| short("header"))?;
                let objectid = le64(&h[8..16]);
                let offset = le64(&h[16..24]);
                let kind = le32(&h[24..28]);
                let len = le32(&h[28..32]) as usize;
                let data = buf.get(pos + 32..pos + 32 + len).ok_or_else(|| short("item"))?;
                each(Item { objectid, kind, offset, data })?;
                last = (objectid, kind, offset);
                pos += 32 + len;
            }
            from = match next_key(last) {
                Some(k) if k <= max => k,
                _ => return Ok(()),
            };
        }
    }
}

fn short(what: &str) -> Unusable {
    Unusable(format!("btrfs tree search returned a truncated {what}"))
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le16(b: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

/// The key right after `k` in the 136-bit key space (types are 8 bits).
fn next_key(k: (u64, u32, u64)) -> Option<(u64, u32, u64)> {
    if k.2 < u64::MAX {
        Some((k.0, k.1, k.2 + 1))
    } else if k.1 < 255 {
        Some((k.0, k.1 + 1, 0))
    } else {
        k.0.checked_add(1).map(|o| (o, 0, 0))
    }
}

/// Parents named by one `INODE_REF` (key offset) or `INODE_EXTREF` (in the data) item.
fn ref_parents(item: &Item<'_>, out: &mut Vec<u64>) {
    match item.kind {
        INODE_REF_KEY => out.push(item.offset),
        INODE_EXTREF_KEY => {
            // A packed run of { parent u64, index u64, name_len u16, name }.
            let mut d = item.data;
            while d.len() >= 18 {
                out.push(le64(&d[..8]));
                let next = 18 + le16(&d[16..18]);
                d = d.get(next..).unwrap_or(&[]);
            }
        }
        _ => {}
    }
}

/// Why no index was built (shown with `-v`); the walk then compares every entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable(pub String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// More changed objects than this and the index is dropped: its memory would stop following the
/// number of changes cheaply, and a walk is as fast when nearly everything changed.
const MAX_CHANGED: usize = 2_000_000;

/// The objects of the target that may differ from the origin, and the directories above them.
#[derive(Debug, Default)]
pub struct ChangeIndex {
    changed: HashSet<u64>,
    dirty: HashSet<u64>,
    /// Tree-search ioctl calls it took.
    pub searches: u64,
}

impl ChangeIndex {
    /// Whether the object with inode number `ino`, seen under the same name in a pair of
    /// directories of both snapshots, is provably the same object with the same content,
    /// metadata and, for a directory, the same subtree.
    pub fn unchanged(&self, ino: u64) -> bool {
        ino > SUBVOL_ROOT_INO
            && ino <= LAST_FREE_OBJECTID
            && !self.changed.contains(&ino)
            && !self.dirty.contains(&ino)
    }

    /// Objects that may differ from the origin (their inode item was written since it).
    pub fn changed(&self) -> usize {
        self.changed.len()
    }

    /// Directories with a changed object somewhere below.
    pub fn dirty(&self) -> usize {
        self.dirty.len()
    }

    /// Build the index for `origin` and `target` (open root directories), or say why not.
    pub fn build(origin: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<ChangeIndex, Unusable> {
        let Eligible { min_transid, horizon } = eligible(origin, target)?;
        let mut search = Search::new();
        let mut lookup = Search::new();
        let all = ((SUBVOL_ROOT_INO, 0, 0), (LAST_FREE_OBJECTID, 255, u64::MAX));
        // The origin must be exactly what its source was when it was created. (Snapshotting
        // the origin copies its root block; only a tree small enough to be one leaf shows that
        // here, and such a tree is walked in no time anyway.)
        search.run(origin, all.0, all.1, min_transid, &mut |_| {
            Err(Unusable("the origin snapshot has items written after it was created".into()))
        })?;

        let mut seen: HashMap<u64, Seen> = HashMap::new();
        search.run(target, all.0, all.1, min_transid, &mut |item| {
            let s = seen.entry(item.objectid).or_default();
            match item.kind {
                INODE_ITEM_KEY => {
                    s.inode_transid = item.data.get(8..16).map(le64);
                    s.nlink = item.data.get(40..44).map(le32);
                    if s.inode_transid.is_some_and(|t| t >= min_transid) {
                        s.atime_only = atime_only(&mut lookup, origin, &item, horizon)?;
                    }
                }
                INODE_REF_KEY | INODE_EXTREF_KEY => ref_parents(&item, &mut s.parents),
                _ => {}
            }
            if seen.len() > MAX_CHANGED {
                return Err(Unusable(format!(
                    "more than {MAX_CHANGED} objects changed since the origin"
                )));
            }
            Ok(())
        })?;
        // A leaf written since the origin also holds unchanged neighbours. Every change to an
        // object's items (data extents, xattrs, names, directory entries) also rewrites its
        // inode item, which records the transaction that last wrote it: an object whose inode
        // item is here and older than the origin is such a neighbour. One whose inode item is
        // not here (it sits in an older leaf) counts as changed: when in doubt, compare.
        // An inode item rewritten only for its access time (reading a directory or file of the
        // live subvolume, under relatime) is unchanged too.
        seen.retain(|_, s| s.inode_transid.is_none_or(|t| t >= min_transid) && !s.atime_only);

        // Every directory above a changed object is dirty: follow references up to the root.
        // A directory has one name; an object with one link whose reference was in the changed
        // leaves has all its names known; any other object's references are looked up, so a
        // file with several names makes every directory holding one of them dirty.
        let changed: HashSet<u64> = seen.keys().copied().collect();
        let mut known: HashMap<u64, Vec<u64>> = seen
            .into_iter()
            .filter(|(_, s)| s.nlink == Some(1) && !s.parents.is_empty())
            .map(|(ino, s)| (ino, s.parents))
            .collect();
        let mut dirty = HashSet::new();
        let mut stack: Vec<u64> = Vec::new();
        for &ino in &changed {
            lookup_parents(&mut search, target, &mut known, ino, &mut stack)?;
            while let Some(dir) = stack.pop() {
                if dir < SUBVOL_ROOT_INO || !dirty.insert(dir) || dir == SUBVOL_ROOT_INO {
                    continue;
                }
                lookup_parents(&mut search, target, &mut known, dir, &mut stack)?;
            }
        }
        Ok(ChangeIndex { changed, dirty, searches: search.calls })
    }
}

/// What the changed leaves showed of one object.
#[derive(Default)]
struct Seen {
    /// `transid` of the inode item: the transaction that last wrote it.
    inode_transid: Option<u64>,
    /// Its inode item differs from the origin's in the access time alone.
    atime_only: bool,
    nlink: Option<u32>,
    parents: Vec<u64>,
}

/// The parents of `ino` in the target, pushed onto `out`: known already, or one search of its
/// `INODE_REF` and `INODE_EXTREF` items (then remembered).
fn lookup_parents(
    search: &mut Search,
    target: BorrowedFd<'_>,
    known: &mut HashMap<u64, Vec<u64>>,
    ino: u64,
    out: &mut Vec<u64>,
) -> Result<(), Unusable> {
    if let Some(p) = known.get(&ino) {
        out.extend_from_slice(p);
        return Ok(());
    }
    let start = out.len();
    search.run(
        target,
        (ino, INODE_REF_KEY, 0),
        (ino, INODE_EXTREF_KEY, u64::MAX),
        0,
        &mut |item| {
            ref_parents(&item, out);
            Ok(())
        },
    )?;
    known.insert(ino, out[start..].to_vec());
    Ok(())
}

/// Byte ranges of `struct btrfs_inode_item` (160 bytes) that describe the object: generation,
/// size, nbytes, nlink, uid, gid, mode, rdev, flags, ctime, mtime, otime. Left out: the
/// transaction that wrote it, the block group hint, the lazily counted change sequence, reserved
/// bytes and the access time.
const INODE_ITEM_SAME: [std::ops::Range<usize>; 4] = [0..8, 16..32, 40..72, 124..160];
const INODE_ITEM_LEN: usize = 160;
const INODE_ITEM_CTIME: usize = 124;

/// Whether `item`, a target inode item written since the origin, differs from the origin's only
/// in its access time. Every change but an atime update also moves ctime; a ctime before
/// `horizon` (well before the origin was taken) that is equal on both sides therefore says no
/// such change happened since, even when the clock's resolution is coarse.
fn atime_only(
    lookup: &mut Search,
    origin: BorrowedFd<'_>,
    item: &Item<'_>,
    horizon: (u64, u32),
) -> Result<bool, Unusable> {
    let t = item.data;
    if t.len() < INODE_ITEM_LEN {
        return Ok(false);
    }
    let ctime = (le64(&t[INODE_ITEM_CTIME..]), le32(&t[INODE_ITEM_CTIME + 8..]));
    if ctime >= horizon {
        return Ok(false);
    }
    let key = (item.objectid, INODE_ITEM_KEY, 0);
    let mut same = false;
    lookup.run(origin, key, key, 0, &mut |o| {
        same = o.data.len() >= INODE_ITEM_LEN
            && INODE_ITEM_SAME.iter().all(|r| o.data[r.clone()] == t[r.clone()]);
        Ok(())
    })?;
    Ok(same)
}

/// What [`eligible`] found out.
struct Eligible {
    /// The first transaction whose blocks may hold a change.
    min_transid: u64,
    /// One second before the origin was created (seconds, nanoseconds).
    horizon: (u64, u32),
}

/// The first transaction in which a block of the target may hold a change, when the two roots
/// qualify (see the module comment): the one after the origin's creation. The origin was
/// created while its transaction committed, after every writer of that transaction had
/// finished and before any later change could join, so whatever that transaction wrote is in
/// the origin too. (Including it would be safe but would flag every item written just before
/// the snapshot.)
fn eligible(origin: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<Eligible, Unusable> {
    let no = |why: &str| Err(Unusable(why.to_string()));
    let (Some(o), Some(t)) = (subvol_info(origin), subvol_info(target)) else {
        return no("not two btrfs subvolumes");
    };
    let (Some(of), Some(tf)) = (fsid(origin), fsid(target)) else {
        return no("not two btrfs subvolumes");
    };
    if of != tf {
        return no("the snapshots are on different btrfs file systems");
    }
    let root_ino = |fd: BorrowedFd<'_>| {
        rustix::fs::fstat(fd).map(|s| s.st_ino).unwrap_or(0) == SUBVOL_ROOT_INO
    };
    if !root_ino(origin) || !root_ino(target) {
        return no("a snapshot argument is a directory inside a subvolume, not its root");
    }
    if o.flags & SUBVOL_RDONLY == 0 || t.flags & SUBVOL_RDONLY == 0 {
        return no("a snapshot is not read-only");
    }
    let nil = [0u8; 16];
    let siblings = o.parent_uuid != nil && o.parent_uuid == t.parent_uuid;
    let child = t.parent_uuid == o.uuid;
    if !(siblings || child) {
        return no("the target is not a later snapshot of the origin's subvolume");
    }
    if t.otransid <= o.otransid {
        return no("the target snapshot is older than the origin");
    }
    Ok(Eligible {
        min_transid: o.otransid + 1,
        horizon: (o.otime[0].saturating_sub(1), o.otime[1] as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_the_kernel_header() {
        assert_eq!(IOC_GET_SUBVOL_INFO as u64, 0x81f8_943c);
        assert_eq!(IOC_FS_INFO as u64, 0x8400_941f);
        assert_eq!(IOC_TREE_SEARCH_V2 as u64, 0xc070_9411);
    }

    #[test]
    fn keys_advance_in_order() {
        assert_eq!(next_key((5, 1, 7)), Some((5, 1, 8)));
        assert_eq!(next_key((5, 1, u64::MAX)), Some((5, 2, 0)));
        assert_eq!(next_key((5, 255, u64::MAX)), Some((6, 0, 0)));
        assert_eq!(next_key((u64::MAX, 255, u64::MAX)), None);
    }

    #[test]
    fn extrefs_name_every_parent() {
        let mut data = Vec::new();
        for (parent, name) in [(300u64, &b"a"[..]), (301, b"longer")] {
            data.extend_from_slice(&parent.to_le_bytes());
            data.extend_from_slice(&9u64.to_le_bytes());
            data.extend_from_slice(&(name.len() as u16).to_le_bytes());
            data.extend_from_slice(name);
        }
        data.extend_from_slice(&[1, 2, 3]); // a torn tail names nothing
        let mut out = Vec::new();
        ref_parents(
            &Item { objectid: 400, kind: INODE_EXTREF_KEY, offset: 0, data: &data },
            &mut out,
        );
        assert_eq!(out, vec![300, 301]);
        out.clear();
        ref_parents(&Item { objectid: 400, kind: INODE_REF_KEY, offset: 257, data: &[] }, &mut out);
        assert_eq!(out, vec![257]);
    }
}
