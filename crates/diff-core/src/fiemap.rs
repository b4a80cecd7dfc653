//! FIEMAP (`FS_IOC_FIEMAP`): which byte ranges two versions of a file provably share on disk.
//!
//! Two snapshots of one copy-on-write file system (btrfs, XFS with reflinks) keep unchanged file
//! data in the very same extents. Where both versions map a logical range to the same physical
//! bytes, flagged `FIEMAP_EXTENT_SHARED` on both sides, the bytes are equal and need not be read:
//! this is what makes a 4 KiB change in a 1 GiB file cost about 4 KiB of reads. Ranges that are
//! holes in both versions (no extent on either side, below both sizes) read as zeros on both and
//! are equal too.
//!
//! Only what the mapping proves is skipped; everything else falls back to reading. Extents that
//! are not plain (unknown location, delayed allocation, encoded/compressed, inline, encrypted)
//! prove nothing because their physical offset does not map bytes linearly. A mapping that could
//! not be read completely, or a file system without FIEMAP (tmpfs, FUSE, NFS), yields `None`: the
//! caller reads everything.

use rustix::fd::AsFd;
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};
use std::ops::Range;

/// `struct fiemap` of `<linux/fiemap.h>` (the header; extents follow it in memory).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

/// `struct fiemap_extent` of `<linux/fiemap.h>` (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct FiemapExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

/// Extents asked for per ioctl call.
const BATCH: usize = 256;

/// The header and a fixed extent array, as the kernel fills it: `fm_extent_count` says how many
/// slots follow the header.
#[repr(C)]
struct FiemapBuf {
    hdr: FiemapHeader,
    ext: [FiemapExtent; BATCH],
}

/// `FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap)`: the size in the opcode is the header's only.
const FS_IOC_FIEMAP: Opcode = opcode::read_write::<FiemapHeader>(b'f', 11);

const _: () = assert!(std::mem::size_of::<FiemapHeader>() == 32);
const _: () = assert!(std::mem::size_of::<FiemapExtent>() == 56);
const _: () = assert!(FS_IOC_FIEMAP == 0xC020_660B);

/// `FIEMAP_EXTENT_LAST`: the last extent of the file.
pub const EXTENT_LAST: u32 = 0x0001;
/// `FIEMAP_EXTENT_SHARED`: the extent's space is shared with other files or snapshots.
pub const EXTENT_SHARED: u32 = 0x2000;
/// Flags that make an extent's physical offset meaningless for byte equality: UNKNOWN,
/// DELALLOC, ENCODED, DATA_ENCRYPTED, NOT_ALIGNED, DATA_INLINE, DATA_TAIL.
pub const EXTENT_NOT_PLAIN: u32 = 0x0002 | 0x0004 | 0x0008 | 0x0080 | 0x0100 | 0x0200 | 0x0400;

/// One extent: logical range, physical start and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

impl Extent {
    fn end(&self) -> u64 {
        self.logical.saturating_add(self.length)
    }

    /// Plain and shared: a candidate for "the other version maps the same bytes".
    fn provable(&self) -> bool {
        self.flags & EXTENT_NOT_PLAIN == 0 && self.flags & EXTENT_SHARED != 0
    }
}

/// All extents of a file in `[0, len)`, sorted; `None` when the file system cannot tell
/// (no FIEMAP) or the mapping looks inconsistent.
pub fn extents<Fd: AsFd>(fd: Fd, len: u64) -> Option<Vec<Extent>> {
    let mut out: Vec<Extent> = Vec::new();
    let mut start = 0u64;
    let mut buf =
        Box::new(FiemapBuf { hdr: FiemapHeader::default(), ext: [FiemapExtent::default(); BATCH] });
    while start < len {
        buf.hdr = FiemapHeader {
            fm_start: start,
            fm_length: len - start,
            fm_flags: 0,
            fm_mapped_extents: 0,
            fm_extent_count: BATCH as u32,
            fm_reserved: 0,
        };
        // SAFETY: the opcode is FS_IOC_FIEMAP, whose argument is a `struct fiemap` followed by
        // `fm_extent_count` extent slots; `FiemapBuf` is exactly that layout with BATCH slots, and
        // the kernel writes no more than `fm_extent_count` of them.
        let ctl = unsafe { Updater::<FS_IOC_FIEMAP, FiemapBuf>::new(&mut *buf) };
        // SAFETY: see above; the buffer outlives the call.
        if unsafe { ioctl(fd.as_fd(), ctl) }.is_err() {
            return None;
        }
        let n = (buf.hdr.fm_mapped_extents as usize).min(BATCH);
        if n == 0 {
            break;
        }
        let mut last = false;
        for e in &buf.ext[..n] {
            let x = Extent {
                logical: e.fe_logical,
                physical: e.fe_physical,
                length: e.fe_length,
                flags: e.fe_flags,
            };
            // Extents must come sorted and disjoint; anything else and we trust nothing.
            if x.length == 0 || out.last().is_some_and(|p| p.end() > x.logical) {
                return None;
            }
            last |= x.flags & EXTENT_LAST != 0;
            out.push(x);
        }
        let next = out.last().map_or(len, Extent::end);
        if last || next <= start {
            break;
        }
        start = next;
    }
    Some(out)
}

fn push(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.is_empty() {
        return;
    }
    match ranges.last_mut() {
        Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
        _ => ranges.push(r),
    }
}

/// Ranges of `[0, limit)` where the two mappings prove equal content: both map the range to the
/// same physical bytes through plain shared extents, or neither maps it (a hole in both).
/// Sorted, disjoint, coalesced.
pub fn proven_equal(origin: &[Extent], target: &[Extent], limit: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    // Sweep over the boundaries of both lists; within each elementary interval each side is
    // either in one extent or in a gap.
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos = 0u64;
    while pos < limit {
        while i < origin.len() && origin[i].end() <= pos {
            i += 1;
        }
        while j < target.len() && target[j].end() <= pos {
            j += 1;
        }
        let o = origin.get(i).filter(|e| e.logical <= pos);
        let t = target.get(j).filter(|e| e.logical <= pos);
        // The next boundary on either side.
        let mut next = limit;
        for (list, k) in [(origin, i), (target, j)] {
            if let Some(e) = list.get(k) {
                next = next.min(if e.logical > pos { e.logical } else { e.end() });
            }
        }
        let equal = match (o, t) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.provable()
                    && b.provable()
                    && a.physical.wrapping_sub(a.logical) == b.physical.wrapping_sub(b.logical)
            }
            _ => false,
        };
        if equal {
            push(&mut out, pos..next);
        }
        pos = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent { logical, physical, length, flags }
    }

    #[test]
    fn a_rewritten_block_splits_the_shared_extent() {
        let s = EXTENT_SHARED;
        let origin = [e(0, 1_000_000, 64 << 20, s | EXTENT_LAST)];
        let k = 40 << 20;
        let target = [
            e(0, 1_000_000, k, s),
            e(k, 9_000_000_000, 4096, 0),
            e(k + 4096, 1_000_000 + k + 4096, (64 << 20) - k - 4096, s | EXTENT_LAST),
        ];
        assert_eq!(proven_equal(&origin, &target, 64 << 20), vec![0..k, k + 4096..64 << 20]);
    }

    #[test]
    fn unshared_encoded_and_one_sided_prove_nothing() {
        let s = EXTENT_SHARED;
        let o = [e(0, 4096, 4096, s), e(8192, 0, 4096, s | 0x8), e(16384, 65536, 4096, 0)];
        let t = [e(0, 4096, 4096, s), e(8192, 0, 4096, s | 0x8), e(16384, 65536, 4096, 0)];
        // [4096, 8192) and [12288, 16384) are holes in both: equal.
        assert_eq!(
            proven_equal(&o, &t, 20480),
            vec![0..4096, 4096..8192, 12288..16384].into_iter().fold(Vec::new(), |mut v, r| {
                push(&mut v, r);
                v
            })
        );
        // A hole on one side only is not equal; the limit clips.
        assert_eq!(proven_equal(&[], &t[..1], 8192), vec![4096..8192]);
    }
}
