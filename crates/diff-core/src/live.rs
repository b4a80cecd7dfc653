//! Namespace checks for a tree that is not a read-only snapshot: a plan is made only from a
//! namespace that held still, never from one that mixes two states of it.
//!
//! A writable tree can change while it is walked: directories swapped between two listings
//! would make a plan that sends one subtree twice and the other never. Every directory a walk
//! lists is therefore stated before and after its listing ([`Watch::listed`]: it must be the
//! directory the walk meant, and must not change while listed), and at the end of the walk all of
//! them are looked at again through their paths ([`Watch::verify`]: same object, same mtime and
//! ctime). A change to a directory after its listing moves its mtime, unless it fell in the same
//! tick of the kernel's coarse clock as the mtime it had when listed: such a "racy" directory's
//! listing is also read again at the end and compared (as names and inode numbers).
//!
//! So every listing held from its own time until the final check began: the plan is the
//! namespace as it was at that moment (up to a change undone within one clock tick of a racy
//! directory's last change). File contents are checked by the sender as it reads them.
//!
//! Read-only snapshots are not watched at all: the walk makes no extra system call for them.

use crate::error::{Error, Result, Side};
use crate::stat::{Kind, Meta, Timestamp};
use std::hash::{Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// How close to "now" a directory's mtime or ctime may be for a later change to leave it
/// unmoved: comfortably more than one tick of the kernel's coarse clock (at most 10 ms).
const RACY_NS: i128 = 100_000_000;

struct Seen {
    side: Side,
    path: Vec<u8>,
    ino: u64,
    mtime: Timestamp,
    ctime: Timestamp,
    /// For a racy directory, the hash of its listing.
    listing: Option<u64>,
}

/// The directories a walk listed, when the tree may change under it.
pub(crate) struct Watch {
    on: bool,
    seen: Vec<Seen>,
}

fn ns(t: Timestamp) -> i128 {
    i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec)
}

fn now_ns() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A hash of a directory listing (names and inode numbers, in the listing's sorted order).
pub(crate) fn listing_hash<'a>(entries: impl Iterator<Item = (&'a [u8], u64)>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, ino) in entries {
        name.hash(&mut h);
        ino.hash(&mut h);
    }
    h.finish()
}

impl Watch {
    /// A watch that checks (`on`) or does nothing.
    pub(crate) fn new(on: bool) -> Watch {
        Watch { on, seen: Vec::new() }
    }

    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// Before a listing: the directory opened is the one the walk meant (inode `ino`).
    pub(crate) fn check_dir(side: Side, path: &[u8], ino: u64, before: &Meta) -> Result<()> {
        if before.ino != ino || before.kind != Kind::Dir {
            return Err(Error::changed(side, path, "another object is there now"));
        }
        Ok(())
    }

    /// After a listing: it held still while read (`before` and `after` agree); remember it for
    /// [`Watch::verify`]. `hash` is called only for a racy directory.
    pub(crate) fn listed(
        &mut self,
        side: Side,
        path: &[u8],
        before: &Meta,
        after: &Meta,
        hash: impl FnOnce() -> u64,
    ) -> Result<()> {
        if before.ino != after.ino || before.mtime != after.mtime || before.ctime != after.ctime {
            return Err(Error::changed(side, path, "its entries changed while it was listed"));
        }
        let newest = ns(before.mtime).max(ns(before.ctime));
        let racy = newest >= now_ns() - RACY_NS;
        self.seen.push(Seen {
            side,
            path: path.to_vec(),
            ino: before.ino,
            mtime: before.mtime,
            ctime: before.ctime,
            listing: racy.then(hash),
        });
        Ok(())
    }

    /// At the end of the walk: every listed directory is still there, unchanged. `look` opens a
    /// directory by its path and returns its metadata and, when asked (`true`), the hash of its
    /// listing now.
    pub(crate) fn verify(
        &self,
        mut look: impl FnMut(Side, &[u8], bool) -> Result<(Meta, Option<u64>)>,
    ) -> Result<()> {
        for s in &self.seen {
            let (now, listing) = look(s.side, &s.path, s.listing.is_some())?;
            let what = if now.ino != s.ino || now.kind != Kind::Dir {
                "another object is there now"
            } else if now.mtime != s.mtime || now.ctime != s.ctime {
                "its entries changed after they were listed"
            } else if s.listing.is_some() && listing != s.listing {
                "its entries changed after they were listed (within one clock tick)"
            } else {
                continue;
            };
            return Err(Error::changed(s.side, &s.path, what));
        }
        Ok(())
    }
}
