//! Change detection details for one object, done when its `Update` is emitted (not during the
//! walk), so memory never holds more than one file's ranges.
//!
//! Content: both versions are read in 1 MiB blocks with `pread` and compared in 4 KiB-aligned
//! chunks; differing chunks (and everything past the origin's end) become ranges of the target,
//! coalesced. This is deliberately a replaceable strategy ([`ContentDiffer`]): a later version
//! can skip extents that FIEMAP reports as shared between the snapshots.
//!
//! Extended attributes (regular files and directories; symlinks and device nodes cannot be
//! opened for `flistxattr` without following or opening them): names listed with `flistxattr`,
//! values compared with `fgetxattr`. Compared metadata overall: mode (12 bits), uid, gid, mtime
//! (ns), size, rdev (identity), symlink target (identity), xattrs. Not compared: atime (reading
//! changes it), ctime and btime (not settable), file attribute flags (chattr), ACLs beyond their
//! xattr form.

use crate::error::{Error, Result, Side};
use crate::inventory::{Inventory, ObjId};
use crate::ops::{ContentDelta, Update, XattrDiff};
use crate::stat::Kind;
use crate::walk::{fstatx, open_rel, Roots};
use crate::Options;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::OFlags;
use std::collections::BTreeMap;
use std::ops::Range;

/// Read block size.
pub const BLOCK: usize = 1 << 20;
/// Comparison granularity (and alignment of reported ranges).
pub const CHUNK: usize = 4096;

/// Finds the byte ranges of `target` that differ from `origin`.
pub trait ContentDiffer {
    /// Changed ranges of the target file and its size.
    fn diff(&mut self, origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<ContentDelta>;
}

/// Plain block comparison.
pub struct BlockCompare {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Default for BlockCompare {
    fn default() -> Self {
        BlockCompare { a: vec![0; BLOCK], b: vec![0; BLOCK] }
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
    if let Some(last) = ranges.last_mut() {
        if last.end == r.start {
            last.end = r.end;
            return;
        }
    }
    ranges.push(r);
}

/// Compare two byte blocks that start at file offset `off`; `lo`/`lt` are the valid lengths.
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

impl ContentDiffer for BlockCompare {
    fn diff(&mut self, origin: &OwnedFd, target: &OwnedFd, path: &[u8]) -> Result<ContentDelta> {
        let mut ranges = Vec::new();
        let mut off = 0u64;
        loop {
            let lo = read_full(origin, &mut self.a, off, Side::Origin, path)?;
            let lt = read_full(target, &mut self.b, off, Side::Target, path)?;
            diff_block(&self.a[..lo], &self.b[..lt], off, &mut ranges);
            off += lt as u64;
            if lt < BLOCK {
                break;
            }
        }
        Ok(ContentDelta { new_size: off, ranges })
    }
}

fn xattrs(fd: &OwnedFd, side: Side, path: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let size = match rustix::fs::flistxattr_query(fd) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(Error::io(side, path, "flistxattr", e)),
    };
    if size == 0 {
        return Ok(out);
    }
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(fd, &mut list[..])
        .map_err(|e| Error::io(side, path, "flistxattr", e))?;
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let len = rustix::fs::fgetxattr_query(fd, name)
            .map_err(|e| Error::io(side, path, "fgetxattr", e))?;
        let mut v = vec![0u8; len];
        let got = rustix::fs::fgetxattr(fd, name, &mut v[..])
            .map_err(|e| Error::io(side, path, "fgetxattr", e))?;
        v.truncate(got);
        out.insert(name.to_vec(), v);
    }
    Ok(out)
}

/// Fills content ranges and xattr differences of updates from the two snapshots on disk.
pub struct DiskDetails<'r> {
    roots: &'r Roots,
    compare_content: bool,
    compare_xattrs: bool,
    differ: Box<dyn ContentDiffer>,
}

impl<'r> DiskDetails<'r> {
    /// Details read through `roots`.
    pub fn new(roots: &'r Roots, options: &Options) -> Self {
        DiskDetails {
            roots,
            compare_content: !options.skip_content_compare,
            compare_xattrs: !options.skip_xattrs,
            differ: Box::new(BlockCompare::default()),
        }
    }

    fn open(&self, side: Side, path: &[u8], kind: Kind, ino: Option<u64>) -> Result<OwnedFd> {
        let flags = match kind {
            Kind::Dir => OFlags::RDONLY | OFlags::DIRECTORY,
            _ => OFlags::RDONLY | OFlags::NONBLOCK,
        };
        let fd = open_rel(self.roots, side, path, flags)?;
        let m = fstatx(fd.as_fd(), side, path)?;
        if Some(m.ino) != ino || m.kind != kind {
            return Err(Error::Inconsistent(format!(
                "{side} {:?} is not the object that was walked",
                String::from_utf8_lossy(path)
            )));
        }
        Ok(fd)
    }

    /// Fill `u.content` and `u.xattrs` for object `id`.
    pub fn fill(&mut self, inv: &Inventory, id: ObjId, u: &mut Update) -> Result<()> {
        let o = &inv.objects()[id];
        let want_content = self.compare_content && o.kind == Kind::File && u.diff.content;
        let want_x =
            self.compare_xattrs && u.diff.xattrs && matches!(o.kind, Kind::File | Kind::Dir);
        if !want_content && !want_x {
            return Ok(());
        }
        let t_ino = o.target_meta.as_ref().map(|m| m.ino);
        let tfd = self.open(Side::Target, &u.target_path, o.kind, t_ino)?;
        let ofd = match (&u.origin_path, o.in_origin) {
            (Some(p), true) => {
                Some(self.open(Side::Origin, p, o.kind, o.origin_meta.as_ref().map(|m| m.ino))?)
            }
            _ => None,
        };
        if want_content {
            if let Some(ofd) = &ofd {
                u.content = Some(self.differ.diff(ofd, &tfd, &u.target_path)?);
            }
        }
        if want_x {
            let t = xattrs(&tfd, Side::Target, &u.target_path)?;
            let before = match &ofd {
                Some(f) => xattrs(f, Side::Origin, u.origin_path.as_deref().unwrap_or_default())?,
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
        Ok(())
    }
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
