//! Where in a stream to cut: byte offsets spread over the whole stream, and more of them where
//! a receive is most fragile: inside the records of an orphan directory (a cycle of renames
//! broken through a directory the stream makes and removes again), around renames of
//! directories, around removals, and inside large writes.
//!
//! An offset is where the feeder freezes the receiver: right after it has written the stream up
//! to there into the pipe. The receiver reads ahead of what it applies, so the offset places the
//! cut near, not at, a record; a dense set of offsets in a region is what puts cuts inside it.

use std::collections::{BTreeMap, HashSet};

use anysend_stream::{ObjectType, Record, StreamReader};

use super::CrashError;

/// Where to cut, and why that place (shown with each outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutAt {
    pub offset: u64,
    pub why: &'static str,
    /// Cut once the receiver has applied what it read and waits for more input, rather than at
    /// once. A receiver reads ahead (and checks DEST before its first change), so without this
    /// a cut at a byte offset lands wherever the receiver happens to be, which for the small
    /// records of a stream's structural part is often before it changed anything at all.
    pub settle: bool,
}

struct Frame {
    offset: u64,
    len: u64,
    record: Record,
}

fn frames(bytes: &[u8], stream: &str) -> Result<Vec<Frame>, CrashError> {
    let bad = |e: anysend_stream::StreamError| CrashError::Stream {
        stream: stream.to_string(),
        problem: e.to_string(),
    };
    let mut r = StreamReader::new(bytes).map_err(bad)?;
    let mut out = Vec::new();
    while let Some(f) = r.next_frame().map_err(bad)? {
        if let Some(record) = f.record {
            out.push(Frame { offset: f.offset, len: f.wire_len, record });
        }
    }
    Ok(out)
}

/// `n` offsets (none when `n` is 0, else at least 8) in `bytes` (a valid stream named
/// `stream`), sorted and distinct, each strictly inside the stream. Half of them are spread
/// evenly (every other one settling); the rest go to the fragile regions this stream has, in
/// turn, as long as each has offsets not taken yet, and settle (so that the records up to them
/// are applied when the cut comes).
pub fn cut_points(bytes: &[u8], stream: &str, n: usize) -> Result<Vec<CutAt>, CrashError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = n.max(8);
    let frames = frames(bytes, stream)?;
    let len = bytes.len() as u64;
    let mut chosen: BTreeMap<u64, (&'static str, bool)> = BTreeMap::new();

    let regions = fragile_regions(&frames);
    // Round robin over the regions, each offering its candidates in an order spread over the
    // region (not all at its start), until half of n is taken or nothing is left.
    let mut queues: Vec<(&'static str, Vec<u64>)> =
        regions.into_iter().map(|(why, c)| (why, spread_order(c))).collect();
    let special = n / 2;
    let mut taken = 0;
    while taken < special && queues.iter().any(|(_, q)| !q.is_empty()) {
        for (why, q) in queues.iter_mut() {
            if taken == special {
                break;
            }
            while let Some(off) = q.pop() {
                let off = off.clamp(1, len - 1);
                if chosen.insert(off, (why, true)).is_none() {
                    taken += 1;
                    break;
                }
            }
        }
    }
    // The rest evenly over the whole stream.
    let uniform = n - taken;
    for i in 0..uniform as u64 {
        let mut off = (1 + (len - 2) * i / (uniform as u64 - 1).max(1)).clamp(1, len - 1);
        while chosen.contains_key(&off) && off + 1 < len {
            off += 1;
        }
        // Every other one settles: cuts at once and cuts of a receiver waiting for input.
        chosen.entry(off).or_insert(("spread over the stream", i % 2 == 0));
    }
    Ok(chosen.into_iter().map(|(offset, (why, settle))| CutAt { offset, why, settle }).collect())
}

/// Candidate offsets per fragile region (the middle and the end of each record in it).
fn fragile_regions(frames: &[Frame]) -> Vec<(&'static str, Vec<u64>)> {
    let mid_end = |f: &Frame| [f.offset + f.len / 2, f.offset + f.len];
    // Paths that name directories: made by the stream, or stated as directories by `expect`.
    let mut dirs: HashSet<&[u8]> = HashSet::new();
    for f in frames {
        match &f.record {
            Record::Mkdir { path } => {
                dirs.insert(path);
            }
            Record::Expect { path, otype: ObjectType::Dir, .. } => {
                dirs.insert(path);
            }
            _ => {}
        }
    }
    let mut orphan = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if let Record::Mkdir { path } = &f.record {
            let gone = frames[i..]
                .iter()
                .position(|g| matches!(&g.record, Record::Rmdir { path: p } if p == path));
            if let Some(j) = gone {
                frames[i..=i + j].iter().for_each(|g| orphan.extend(mid_end(g)));
            }
        }
    }
    let dir_renames = frames
        .iter()
        .filter(
            |f| matches!(&f.record, Record::Rename { from, .. } if dirs.contains(from.as_slice())),
        )
        .flat_map(mid_end)
        .collect();
    let removals = frames
        .iter()
        .filter(|f| matches!(f.record, Record::Unlink { .. } | Record::Rmdir { .. }))
        .flat_map(mid_end)
        .collect();
    let large_data = frames
        .iter()
        .filter(|f| matches!(f.record, Record::Write { .. }) && f.len > 256 * 1024)
        .flat_map(|f| [f.offset + f.len / 3, f.offset + 2 * f.len / 3])
        .collect();
    vec![
        ("inside the orphan-directory cycle", orphan),
        ("at a directory rename", dir_renames),
        ("at a removal", removals),
        ("inside a large write", large_data),
    ]
}

/// The candidates reordered so that popping from the end takes the middle first, then the
/// quarters, and so on: whatever share is taken is spread over the region.
fn spread_order(mut c: Vec<u64>) -> Vec<u64> {
    c.sort_unstable();
    c.dedup();
    // Breadth-first bisection: the middle of the region, then the middles of its halves...
    let mut order = Vec::with_capacity(c.len());
    let mut ranges = std::collections::VecDeque::from([(0, c.len())]);
    while let Some((lo, hi)) = ranges.pop_front() {
        if lo < hi {
            let mid = lo + (hi - lo) / 2;
            order.push(c[mid]);
            ranges.push_back((lo, mid));
            ranges.push_back((mid + 1, hi));
        }
    }
    order.reverse();
    order
}

#[cfg(test)]
mod tests {
    use super::spread_order;

    #[test]
    fn spread_order_takes_the_middle_first_and_keeps_everything() {
        let c: Vec<u64> = (0..10).collect();
        let mut o = spread_order(c.clone());
        assert_eq!(o.last(), Some(&5));
        o.sort_unstable();
        assert_eq!(o, c);
    }
}
