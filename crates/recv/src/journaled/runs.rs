//! Disjoint byte ranges of one file, each with a value, ordered by offset: what a journaled
//! receive kept of a file's origin bytes. A file changed in half a million scattered places
//! (a VM image, a database) gives half a million ranges, so the map must cost O(log n) a
//! change and little memory a range: ranges sit in sorted runs of up to [`RUN`], the runs in a
//! B-tree by their first offset (a plain `BTreeMap` of the ranges takes about three times the
//! memory, its nodes half full when ranges come in ascending order, as they mostly do).

use std::collections::BTreeMap;

/// The most ranges in one run: a run is moved in memory when a range is inserted into its
/// middle, so it stays small.
const RUN: usize = 256;

/// A range [off, off + len) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<V> {
    pub off: u64,
    pub len: u64,
    pub value: V,
}

/// Disjoint ranges by offset.
#[derive(Debug, Clone)]
pub struct Runs<V> {
    runs: BTreeMap<u64, Vec<Range<V>>>,
    /// Ranges moved in memory by inserts so far (what a test holds to be linear).
    #[cfg(test)]
    moved: u64,
}

impl<V> Default for Runs<V> {
    fn default() -> Self {
        Runs {
            runs: BTreeMap::new(),
            #[cfg(test)]
            moved: 0,
        }
    }
}

impl<V: Copy> Runs<V> {
    /// Every range, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Range<V>> {
        self.runs.values().flatten()
    }

    /// The ranges in order from the last one that starts at or before `a` (which may reach
    /// past `a`), or from the first.
    pub fn from(&self, a: u64) -> impl Iterator<Item = &Range<V>> {
        let (key, skip) = match self.runs.range(..=a).next_back() {
            Some((&k, run)) => (k, run.partition_point(|r| r.off <= a).saturating_sub(1)),
            None => (0, 0),
        };
        self.runs.range(key..).flat_map(|(_, run)| run.iter()).skip(skip)
    }

    /// Adds a range that overlaps none of those held; a range at an offset already held is
    /// ignored (the first one holds).
    pub fn insert(&mut self, r: Range<V>) {
        // Past the last range, into a last run with room: the common case (ranges mostly come
        // in ascending order), without a search.
        if let Some(mut last) = self.runs.last_entry() {
            let run = last.get_mut();
            if run.len() < RUN && run.last().is_some_and(|x| x.off < r.off) {
                run.push(r);
                return;
            }
        }
        // The run it belongs to: the last one starting at or before it, else the first.
        let key = match self.runs.range(..=r.off).next_back() {
            Some((&k, _)) => k,
            None => match self.runs.keys().next() {
                Some(&k) => k,
                None => {
                    let mut run = Vec::with_capacity(RUN);
                    run.push(r);
                    self.runs.insert(r.off, run);
                    return;
                }
            },
        };
        let Some(run) = self.runs.get_mut(&key) else { return };
        let at = run.partition_point(|x| x.off < r.off);
        if run.get(at).is_some_and(|x| x.off == r.off) {
            return;
        }
        if run.len() < RUN && at > 0 {
            // In place: the run keeps its first offset, and so its key. Runs are made with room
            // for RUN: this never moves the run.
            #[cfg(test)]
            let moved = (run.len() - at) as u64;
            run.insert(at, r);
            #[cfg(test)]
            {
                self.moved += moved;
            }
            return;
        }
        let Some(mut run) = self.runs.remove(&key) else { return };
        #[cfg(test)]
        {
            self.moved += run.len() as u64;
        }
        if run.len() < RUN {
            // A new first range (only ever the first run's): the run gets a new key.
            run.insert(at, r);
            self.runs.insert(r.off, run);
            return;
        }
        // Full. Ranges mostly come in ascending order: one past the end starts a run of its
        // own, leaving this one full; else the run is halved.
        let mid = if at == run.len() { at } else { run.len() / 2 };
        let mut rest = Vec::with_capacity(RUN);
        rest.extend(run.drain(mid..));
        match at >= mid {
            true => rest.insert(at - mid, r),
            false => run.insert(at, r),
        }
        self.runs.insert(run[0].off, run);
        self.runs.insert(rest[0].off, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::{Range, Runs, RUN};

    /// Issue 19's quadratic receive, as a count: keeping n scattered ranges of one file moves
    /// at most RUN ranges in memory per insert (a sorted vector of all ranges, as before, moves
    /// about n/2 per insert: 2.5 billion for these 100,000), and about one per range when they
    /// come in ascending order, as a file changed front to back gives them.
    #[test]
    fn inserts_move_a_bounded_number_of_ranges() {
        let n = 100_000u64;
        let mut ascending = Runs::default();
        for i in 0..n {
            ascending.insert(Range { off: i * 128, len: 1, value: () });
        }
        assert_eq!(ascending.iter().count() as u64, n);
        // Only a full run, once, as it is closed: about one move per range.
        assert!(ascending.moved <= n, "{}", ascending.moved);
        let mut scattered = Runs::default();
        for i in 0..n {
            scattered.insert(Range { off: (i * 7919) % n * 128, len: 1, value: () });
        }
        assert_eq!(scattered.iter().count() as u64, n);
        assert!(scattered.moved <= n * RUN as u64, "{}", scattered.moved);
    }

    /// Against a BTreeMap, inserting in ascending, descending and scattered order.
    #[test]
    fn runs_hold_what_a_map_would() {
        let n = 5 * RUN as u64;
        let orders: [Box<dyn Fn(u64) -> u64>; 3] =
            [Box::new(|i| i), Box::new(move |i| n - 1 - i), Box::new(move |i| (i * 7919) % n)];
        for order in orders {
            let mut runs = Runs::default();
            let mut map = std::collections::BTreeMap::new();
            for i in 0..n {
                let off = order(i) * 10;
                runs.insert(Range { off, len: 3, value: i });
                map.insert(off, i);
                // Again at the same offset: ignored.
                runs.insert(Range { off, len: 3, value: u64::MAX });
            }
            let got: Vec<(u64, u64)> = runs.iter().map(|r| (r.off, r.value)).collect();
            let want: Vec<(u64, u64)> = map.iter().map(|(&o, &v)| (o, v)).collect();
            assert_eq!(got, want);
            for a in [0, 5, 10, 2555, 10 * n - 10, 10 * n + 5] {
                let first = runs.from(a).next().map(|r| r.off);
                let want = map.range(..=a).next_back().or(map.iter().next()).map(|(&o, _)| o);
                assert_eq!(first, want, "from {a}");
                assert_eq!(runs.from(a).count(), map.range(want.unwrap_or(0)..).count());
            }
        }
    }
}
