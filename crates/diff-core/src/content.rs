//! Change detection details for one object, done when its `Update` is emitted (not during the
//! walk), so memory never holds more than one file's ranges.
//!
//! Content ([`ContentDiffer`]): the default [`ExtentCompare`] first asks FIEMAP (see
//! [`crate::fiemap`]) which ranges both versions provably share on disk (same physical extent,
//! shared, as between btrfs snapshots or reflinks) or leave as holes, and skips them unread; the
//! rest is read in 1 MiB blocks with `pread` and compared in 4 KiB-aligned chunks. Differing
//! chunks, and everything past the origin's end, become ranges of the target, coalesced. Without
//! FIEMAP (tmpfs, FUSE) or without shared extents (unrelated trees) it degrades to reading
//! everything, which is always correct. Bytes read and skipped are counted ([`ContentStats`]) so
//! tests and progress can tell the two apart.
//!
//! Extended attributes (every kind): read through [`crate::props`], regular files and
//! directories by fd, other kinds by their parent directory's fd and name.
//!
//! Inode flags (chattr, files and directories): read with `FS_IOC_GETFLAGS` on both versions,
//! masked to [`crate::stat::FLAGS_MASK`].
//!
//! Compared metadata overall: mode (12 bits), uid, gid, mtime (ns), size, rdev (identity),
//! symlink target (identity), xattrs, inode flags. Not compared: atime (reading changes it),
//! ctime and btime (not settable), ACLs beyond their xattr form.

use crate::error::{Error, Result, Side};
use crate::fiemap;
use crate::inventory::{Inventory, ObjId};
use crate::ops::{ContentDelta, InodeFlags, MetaDiff, Opened, Update, XattrDiff};
use crate::props::{self, At};
use crate::stat::{inode_flags, statx_at, Kind, Meta};
use crate::walk::{fstatx, open_rel, Roots};
use crate::Options;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, OFlags};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

pub use crate::props::{proc_path, XFS_ACL_ALIASES};

/// Read block size.
pub const BLOCK: usize = 1 << 20;
/// Comparison granularity (and alignment of reported ranges).
pub const CHUNK: usize = 4096;

/// What content comparison cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentStats {
    /// Bytes read from both versions together.
    pub bytes_read: u64,
    /// Bytes of the target proven unchanged by the extent map and not read.
    pub bytes_skipped: u64,
}

/// Finds the byte ranges of `target` that differ from `origin`.
pub trait ContentDiffer {
    /// Changed ranges of the target file and its size.
    fn diff(&mut self, origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<ContentDelta>;
    /// Cost so far.
    fn stats(&self) -> ContentStats {
        ContentStats::default()
    }
}

/// Plain block comparison: reads everything both versions have in common.
pub struct BlockCompare {
    a: Vec<u8>,
    b: Vec<u8>,
    stats: ContentStats,
}

impl Default for BlockCompare {
    fn default() -> Self {
        BlockCompare { a: vec![0; BLOCK], b: vec![0; BLOCK], stats: ContentStats::default() }
    }
}

fn read_full(fd: &OwnedFd, buf: &mut [u8], mut off: u64, side: Side, path: &[u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = rustix::io::pread(fd, &mut buf[n..], off)
            .map_err(|e| Error::io(side, path, "pread", e))?;
        if r == 0 {
            break;
        }
        n += r;
        off += r as u64;
    }
    Ok(n)
}

fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.is_empty() {
        return;
    }
    if let Some(last) = ranges.last_mut() {
        if last.end == r.start {
            last.end = r.end;
            return;
        }
    }
    ranges.push(r);
}

/// Two sorted lists of ranges as one, sorted, overlaps and neighbours merged.
fn union(a: Vec<Range<u64>>, b: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut all: Vec<Range<u64>> = a.into_iter().chain(b).collect();
    all.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Compare two byte blocks that start at file offset `off` (a multiple of [`CHUNK`]).
pub fn diff_block(a: &[u8], b: &[u8], off: u64, ranges: &mut Vec<Range<u64>>) {
    let mut c = 0;
    while c < b.len() {
        let end = (c + CHUNK).min(b.len());
        let differs = end > a.len() || a[c..end] != b[c..end];
        if differs {
            push_range(ranges, off + c as u64..off + end as u64);
        }
        c = end;
    }
}

const C: u64 = CHUNK as u64;

/// Where chunk-wise comparison can say "equal" at all: a target chunk that reaches past the
/// origin's end differs by definition.
fn comparable_end(osize: u64, tsize: u64) -> u64 {
    if tsize <= osize {
        tsize
    } else {
        osize / C * C
    }
}

impl BlockCompare {
    /// Compare `[start, end)` (`start` chunk-aligned) by reading both versions.
    fn compare_span(
        &mut self,
        origin: &OwnedFd,
        target: &OwnedFd,
        path: &[u8],
        span: Range<u64>,
        ranges: &mut Vec<Range<u64>>,
    ) -> Result<()> {
        let mut off = span.start;
        while off < span.end {
            let want = ((span.end - off) as usize).min(BLOCK);
            let lo = read_full(origin, &mut self.a[..want], off, Side::Origin, path)?;
            let lt = read_full(target, &mut self.b[..want], off, Side::Target, path)?;
            self.stats.bytes_read += (lo + lt) as u64;
            diff_block(&self.a[..lo], &self.b[..lt], off, ranges);
            if lt < want {
                // The target ended early: it changed under us; report the rest as changed and
                // let the sender's own size check catch it.
                push_range(ranges, off + lt as u64..span.end);
                break;
            }
            off += want as u64;
        }
        Ok(())
    }

    /// Changed ranges, skipping `proven` (sorted, disjoint, chunk-aligned ranges known equal).
    fn diff_skipping(
        &mut self,
        origin: &OwnedFd,
        target: &OwnedFd,
        path: &[u8],
        sizes: (u64, u64),
        proven: &[Range<u64>],
    ) -> Result<ContentDelta> {
        let (osize, tsize) = sizes;
        let cmp_end = comparable_end(osize, tsize);
        let mut ranges = Vec::new();
        let mut pos = 0u64;
        for p in proven.iter().filter(|p| !p.is_empty()) {
            self.compare_span(origin, target, path, pos..p.start, &mut ranges)?;
            self.stats.bytes_skipped += p.end - p.start;
            pos = p.end;
        }
        self.compare_span(origin, target, path, pos..cmp_end, &mut ranges)?;
        // Equal bytes may still differ in sparseness (written zeros against a hole).
        let sparse = crate::holes::sparseness_differs(origin, target, cmp_end, C);
        if !sparse.is_empty() {
            ranges = union(ranges, sparse);
        }
        push_range(&mut ranges, cmp_end..tsize);
        Ok(ContentDelta { new_size: tsize, ranges })
    }
}

fn sizes(origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<(u64, u64)> {
    Ok((fstatx(origin, Side::Origin, path)?.size, fstatx(target, Side::Target, path)?.size))
}

impl ContentDiffer for BlockCompare {
    fn diff(&mut self, origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<ContentDelta> {
        let s = sizes(origin, target, path)?;
        self.diff_skipping(origin, target, path, s, &[])
    }
    fn stats(&self) -> ContentStats {
        self.stats
    }
}

/// Block comparison that first skips what FIEMAP proves equal (the default).
#[derive(Default)]
pub struct ExtentCompare {
    block: BlockCompare,
}

/// Shrink proven-equal ranges inward to chunk boundaries (except at `end`, the comparable end),
/// so that every range reported as changed stays chunk-aligned.
fn align_inward(proven: Vec<Range<u64>>, end: u64) -> Vec<Range<u64>> {
    proven
        .into_iter()
        .filter_map(|r| {
            let s = r.start.div_ceil(C) * C;
            let e = if r.end >= end { end } else { r.end / C * C };
            (s < e).then_some(s..e)
        })
        .collect()
}

impl ContentDiffer for ExtentCompare {
    fn diff(&mut self, origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<ContentDelta> {
        let (osize, tsize) = sizes(origin, target, path)?;
        let cmp_end = comparable_end(osize, tsize);
        let proven = if cmp_end == 0 {
            Vec::new()
        } else {
            match (fiemap::extents(origin, cmp_end), fiemap::extents(target, cmp_end)) {
                (Some(a), Some(b)) => align_inward(fiemap::proven_equal(&a, &b, cmp_end), cmp_end),
                _ => Vec::new(),
            }
        };
        self.block.diff_skipping(origin, target, path, (osize, tsize), &proven)
    }
    fn stats(&self) -> ContentStats {
        self.block.stats
    }
}

/// An object opened for reading its details: files and directories by fd; other kinds (which
/// cannot be opened safely) by their parent directory's fd and name.
pub enum Handle {
    /// An open file or directory.
    Fd(OwnedFd),
    /// A symlink, fifo, socket or device: parent directory and name.
    At { dir: OwnedFd, name: Vec<u8> },
}

impl Handle {
    /// Open `path` (relative to `side`'s root) of the given kind, one component at a time.
    pub fn open(roots: &Roots, side: Side, path: &[u8], kind: Kind) -> Result<Handle> {
        match kind {
            Kind::Dir => {
                Ok(Handle::Fd(open_rel(roots, side, path, OFlags::RDONLY | OFlags::DIRECTORY)?))
            }
            Kind::File => {
                Ok(Handle::Fd(open_rel(roots, side, path, OFlags::RDONLY | OFlags::NONBLOCK)?))
            }
            _ => {
                let (dir, name) = crate::model::split(path);
                let dir = open_rel(roots, side, dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
                Ok(Handle::At { dir, name: name.to_vec() })
            }
        }
    }

    /// `statx` of the object (never following a final symlink).
    pub fn stat(&self, side: Side, path: &[u8]) -> Result<Meta> {
        match self {
            Handle::Fd(fd) => fstatx(fd, side, path),
            Handle::At { dir, name } => {
                statx_at(dir, name.as_slice(), side, path, AtFlags::empty())
            }
        }
    }

    /// The open fd of a file or directory.
    pub fn fd(&self) -> Option<&OwnedFd> {
        match self {
            Handle::Fd(fd) => Some(fd),
            Handle::At { .. } => None,
        }
    }

    /// How [`crate::props`] asks this object.
    fn at(&self) -> At<'_> {
        match self {
            Handle::Fd(fd) => At::Fd(fd.as_fd()),
            Handle::At { dir, name } => At::Entry(dir.as_fd(), name),
        }
    }

    /// Names of the object's extended attributes, in byte order, without the names that only
    /// alias another (see [`XFS_ACL_ALIASES`]).
    pub fn xattr_names(&self, side: Side, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        props::xattr_names(self.at(), side, path)
    }

    /// Value of one extended attribute; `None` if it vanished since it was listed.
    pub fn xattr(&self, side: Side, path: &[u8], xname: &[u8]) -> Result<Option<Vec<u8>>> {
        props::xattr(self.at(), side, path, xname)
    }

    /// Every extended attribute with its value.
    pub fn xattrs(&self, side: Side, path: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        props::xattrs(self.at(), side, path)
    }

    /// Inode flags masked to [`crate::stat::FLAGS_MASK`]; None for kinds that have none to ask
    /// or file systems without them.
    pub fn flags(&self, side: Side, path: &[u8]) -> Result<Option<u32>> {
        match self {
            Handle::Fd(fd) => {
                inode_flags(fd).map_err(|e| Error::io(side, path, "FS_IOC_GETFLAGS", e))
            }
            Handle::At { .. } => Ok(None),
        }
    }
}

/// Fills content ranges, xattr differences and inode flags of updates from the two snapshots on
/// disk.
pub struct DiskDetails<'r> {
    roots: &'r Roots,
    compare_content: bool,
    compare_xattrs: bool,
    differ: Box<dyn ContentDiffer>,
}

impl<'r> DiskDetails<'r> {
    /// Details read through `roots`.
    pub fn new(roots: &'r Roots, options: &Options) -> Self {
        let differ: Box<dyn ContentDiffer> = if options.no_fiemap {
            Box::new(BlockCompare::default())
        } else {
            Box::new(ExtentCompare::default())
        };
        DiskDetails {
            roots,
            compare_content: !options.skip_content_compare,
            compare_xattrs: !options.skip_xattrs,
            differ,
        }
    }

    /// What content comparison cost so far.
    pub fn stats(&self) -> ContentStats {
        self.differ.stats()
    }

    /// Open the object of `kind` at `path` (relative to `side`'s root) and check that it is the
    /// walked one (inode number `ino` and kind).
    pub(crate) fn open(
        &self,
        side: Side,
        path: &[u8],
        kind: Kind,
        ino: Option<u64>,
    ) -> Result<Handle> {
        let h = Handle::open(self.roots, side, path, kind)?;
        let m = h.stat(side, path)?;
        // A boundary directory's identity is a stand-in, not its inode number.
        let same = ino.is_some_and(|i| i == m.ino || crate::stat::is_boundary_ino(i));
        if !same || m.kind != kind {
            return Err(not_walked(side, path));
        }
        Ok(h)
    }

    /// Inode flags of the origin version of object `id` (files and directories).
    pub fn origin_flags(&mut self, inv: &Inventory, id: ObjId) -> Result<Option<u32>> {
        let o = &inv.objects()[id];
        if !matches!(o.kind, Kind::File | Kind::Dir) || !o.in_origin {
            return Ok(None);
        }
        let Some(path) = inv.origin_path(id) else { return Ok(None) };
        let h = self.open(Side::Origin, &path, o.kind, o.origin_meta.as_ref().map(|m| m.ino))?;
        h.flags(Side::Origin, &path)
    }

    /// Fill `u.content`, `u.xattrs` and `u.flags` for object `id`.
    pub fn fill(&mut self, inv: &Inventory, id: ObjId, u: &mut Update) -> Result<()> {
        let o = &inv.objects()[id];
        if !self.wants(o.kind, &u.diff) {
            return Ok(());
        }
        let t_ino = o.target_meta.as_ref().map(|m| m.ino);
        let th = Arc::new(self.open(Side::Target, &u.target_path, o.kind, t_ino)?);
        let oh = match &u.origin_path {
            Some(p) if o.in_origin => Some(Arc::new(self.open(
                Side::Origin,
                p,
                o.kind,
                o.origin_meta.as_ref().map(|m| m.ino),
            )?)),
            _ => None,
        };
        self.fill_opened(o.kind, th, oh, u)
    }

    /// Whether an update of an object of `kind` that differs in `diff` has details to read
    /// from disk (else [`DiskDetails::fill_opened`] need not be called, nor anything opened).
    pub(crate) fn wants(&self, kind: Kind, diff: &MetaDiff) -> bool {
        (self.compare_content && kind == Kind::File && diff.content)
            || (self.compare_xattrs && diff.xattrs)
            || matches!(kind, Kind::File | Kind::Dir)
    }

    /// Fill `u.content`, `u.xattrs`, `u.flags` and `u.opened` from the target object `th` and
    /// the origin object `oh` (None for a new object), both opened and checked by the caller.
    pub(crate) fn fill_opened(
        &mut self,
        kind: Kind,
        th: Arc<Handle>,
        oh: Option<Arc<Handle>>,
        u: &mut Update,
    ) -> Result<()> {
        let want_content = self.compare_content && kind == Kind::File && u.diff.content;
        let want_x = self.compare_xattrs && u.diff.xattrs;
        let want_flags = matches!(kind, Kind::File | Kind::Dir);
        u.opened = Opened { target: Some(th.clone()), origin: oh.clone() };
        let opath = u.origin_path.clone().unwrap_or_default();
        if want_content {
            if let (Some(Handle::Fd(ofd)), Handle::Fd(tfd)) = (oh.as_deref(), &*th) {
                u.content = Some(self.differ.diff(ofd, tfd, &u.target_path)?);
            }
        }
        if want_x {
            let t = th.xattrs(Side::Target, &u.target_path)?;
            let before = match &oh {
                Some(h) => h.xattrs(Side::Origin, &opath)?,
                None => BTreeMap::new(),
            };
            let d = XattrDiff {
                set: t
                    .iter()
                    .filter(|(k, v)| before.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect(),
                removed: before.keys().filter(|k| !t.contains_key(*k)).cloned().collect(),
            };
            u.diff.xattrs = !d.set.is_empty() || !d.removed.is_empty();
            u.xattrs = Some(d);
        }
        if want_flags {
            if let Some(target) = th.flags(Side::Target, &u.target_path)? {
                let origin = match &oh {
                    Some(h) => h.flags(Side::Origin, &opath)?,
                    None => None,
                };
                let f = InodeFlags { origin, target };
                u.diff.flags = origin.unwrap_or(0) != target || f.was_locked();
                u.flags = Some(f);
            }
        }
        Ok(())
    }
}

/// "Not the walked object" for `path` on `side`.
pub(crate) fn not_walked(side: Side, path: &[u8]) -> Error {
    Error::changed(side, path, "it is not the object that was walked")
}

#[cfg(test)]
mod tests {
    use super::{diff_block, CHUNK};

    #[test]
    fn ranges_are_chunk_aligned_and_coalesced() {
        let a = vec![0u8; 5 * CHUNK];
        let mut b = a.clone();
        b[CHUNK + 1] = 1; // chunk 1
        b[2 * CHUNK] = 1; // chunk 2 (adjacent: coalesced)
        b[4 * CHUNK + 7] = 1; // chunk 4
        let mut r = Vec::new();
        diff_block(&a, &b, 1 << 20, &mut r);
        let base = 1u64 << 20;
        let c = CHUNK as u64;
        assert_eq!(r, vec![base + c..base + 3 * c, base + 4 * c..base + 5 * c]);
    }

    #[test]
    fn growth_past_origin_end_is_changed_and_shrink_is_only_size() {
        let a = vec![7u8; CHUNK + 10];
        let mut b = a.clone();
        b.extend_from_slice(&[7u8; 100]);
        let mut r = Vec::new();
        diff_block(&a, &b, 0, &mut r);
        assert_eq!(r, vec![CHUNK as u64..b.len() as u64]);
        let mut r = Vec::new();
        diff_block(&a, &a[..10], 0, &mut r);
        assert!(r.is_empty());
    }
}
