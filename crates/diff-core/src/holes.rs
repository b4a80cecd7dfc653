//! Where two versions of a file differ in sparseness only: a block of written zeros on one side
//! and a hole on the other read alike, so a byte comparison calls them equal, yet a received
//! file must keep the target's holes (a block punched into a hole, or zeros written over one).
//! The data map of each side comes from SEEK_DATA / SEEK_HOLE, a few calls per extent; a file
//! system without them reports all data on both sides, hence no difference.

use rustix::fd::OwnedFd;
use rustix::fs::SeekFrom;
use rustix::io::Errno;
use std::ops::Range;

/// The data ranges of `fd` in `[0, end)`, in order; `None` when the file system cannot say.
fn data_map(fd: &OwnedFd, end: u64) -> Option<Vec<Range<u64>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < end {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(Errno::NXIO) => break,
            Err(_) => return None,
        };
        if start >= end {
            break;
        }
        let stop = rustix::fs::seek(fd, SeekFrom::Hole(start)).ok()?.min(end);
        if stop <= start {
            return None;
        }
        out.push(start..stop);
        pos = stop;
    }
    Some(out)
}

/// Whether `off` lies in one of `ranges` (sorted, disjoint), `i` a cursor that only moves on.
fn inside(ranges: &[Range<u64>], i: &mut usize, off: u64) -> bool {
    while *i < ranges.len() && ranges[*i].end <= off {
        *i += 1;
    }
    ranges.get(*i).is_some_and(|r| r.start <= off)
}

/// The ranges of `[0, end)` that are data in one of two data maps and a hole in the other.
fn differing(a: &[Range<u64>], b: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
    // Every place where either side's status may change, in order.
    let mut cuts: Vec<u64> =
        a.iter().chain(b).flat_map(|r| [r.start, r.end]).filter(|&x| x < end).collect();
    cuts.push(0);
    cuts.push(end);
    cuts.sort_unstable();
    cuts.dedup();
    let (mut ia, mut ib) = (0, 0);
    let mut out: Vec<Range<u64>> = Vec::new();
    for w in cuts.windows(2) {
        let (s, e) = (w[0], w[1]);
        if inside(a, &mut ia, s) != inside(b, &mut ib, s) {
            match out.last_mut() {
                Some(last) if last.end == s => last.end = e,
                _ => out.push(s..e),
            }
        }
    }
    out
}

/// The ranges of `[0, end)` that are a hole in one version and data in the other, widened to
/// `align` (a multiple of the block size, so that they cover whole blocks) and cut at `end`.
pub fn sparseness_differs(
    origin: &OwnedFd,
    target: &OwnedFd,
    end: u64,
    align: u64,
) -> Vec<Range<u64>> {
    let (Some(a), Some(b)) = (data_map(origin, end), data_map(target, end)) else {
        return Vec::new();
    };
    differing(&a, &b, end)
        .into_iter()
        .map(|r| r.start / align * align..(r.end.div_ceil(align) * align).min(end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_where_one_side_is_a_hole() {
        let a = [0..8192, 12288..16384];
        let b = [Range { start: 0, end: 16384 }];
        assert_eq!(differing(&a, &b, 16384), [Range { start: 8192, end: 12288 }]);
        assert_eq!(differing(&b, &a, 16384), [Range { start: 8192, end: 12288 }]);
        assert_eq!(differing(&a, &a, 16384), Vec::<Range<u64>>::new());
        // Holes on both sides, and data past `end`, are not differences.
        assert_eq!(
            differing(&[Range { start: 0, end: 4096 }], &[0..4096, 8192..12288], 8192),
            Vec::<Range<u64>>::new()
        );
        assert_eq!(
            differing(&[], &[4096..8192, 12288..20000], 16384),
            vec![4096..8192, 12288..16384]
        );
    }

    #[test]
    fn a_punched_block_of_zeros_is_found_on_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
        let mut data = vec![b'a'; 16384];
        data[8192..12288].fill(0);
        std::fs::write(&pa, &data).unwrap();
        std::fs::write(&pb, &data).unwrap();
        let fb = std::fs::OpenOptions::new().write(true).open(&pb).unwrap();
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(&fb, flags, 8192, 4096).is_err() {
            return; // no holes on this file system: nothing to tell apart
        }
        fb.sync_all().unwrap();
        let open = |p: &std::path::Path| OwnedFd::from(std::fs::File::open(p).unwrap());
        let (a, b) = (open(&pa), open(&pb));
        let found = sparseness_differs(&a, &b, 16384, 4096);
        // tmpfs and ext4 report the punched block; a file system that keeps it as data, none.
        assert!(found == [Range { start: 8192, end: 12288 }] || found.is_empty(), "{found:?}");
    }
}
