//! Link analysis: from per-side records to an [`Inventory`].
//!
//! The walker (or a test) records, for each side, the entries it could not prove unchanged:
//! `(parent inode, name) -> object` plus the object's metadata. Nothing is matched while walking:
//! objects move out of deleted subtrees and into new ones, so identity is decided here, once all
//! records are in ("collect first, then match"). Two identity rules:
//!
//! * [`Identity::Inode`] (two snapshots of one file system): the same inode number on both sides
//!   is the same object if type and birth time agree; otherwise the number was reused and they
//!   are two objects (a delete and a create).
//! * [`Identity::Path`] (unrelated trees): only explicit [`LinkCollector::pair`] calls, made by
//!   the walker for entries at the same path with the same type, join objects.
//!
//! Everything is kept in `BTreeMap`s so the result (and hence the plan) is deterministic.

use crate::error::{Error, Result, Side};
use crate::inventory::{Inventory, Link, ObjId, Object, ROOT};
use crate::ops::MetaDiff;
use crate::stat::{Kind, Meta, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// How objects of the two sides are identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Identity {
    /// Two snapshots of one file system: inode numbers (confirmed by type and btime).
    #[default]
    Inode,
    /// Unrelated trees: objects are identified by path; no rename detection.
    Path,
}

#[derive(Debug)]
struct SideRec {
    meta: Meta,
    links: BTreeSet<(u64, Vec<u8>)>,
    link_target: Option<Vec<u8>>,
}

/// Collects per-side records and matches them into an [`Inventory`].
#[derive(Debug)]
pub struct LinkCollector {
    identity: Identity,
    horizon: Option<Timestamp>,
    roots: [Meta; 2],
    sides: [BTreeMap<u64, SideRec>; 2],
    o2t: BTreeMap<u64, u64>,
    t2o: BTreeMap<u64, u64>,
    reserved: BTreeSet<Vec<u8>>,
    /// Target objects (by inode) whose xattrs or inode flags differ from their origin's
    /// although stat shows no change (path identity).
    props: BTreeSet<u64>,
}

fn idx(side: Side) -> usize {
    match side {
        Side::Origin => 0,
        Side::Target => 1,
    }
}

/// Metadata comparison of one object present on both sides; None when unchanged.
///
/// Inode identity: equal ctime, size and mtime mean unchanged (any content, mode, owner or xattr
/// change moves ctime), except for an origin ctime at or after `horizon`. The kernel stamps
/// ctime from a coarse clock (one tick is up to 10 ms), so a change made within the same tick as
/// the origin's last change, just after the origin snapshot was taken, leaves ctime as it was:
/// objects changed that close to the origin snapshot are compared in full instead.
/// Path identity: ctime is meaningless across file systems, so size, mtime, mode and owner must
/// match; what stat cannot show (xattrs, inode flags) the walker compares for every matched
/// object and reports with [`LinkCollector::props_differ`]. Either way, an object found changed
/// has its xattrs compared when its update is planned.
pub fn compare(
    o: &Meta,
    t: &Meta,
    identity: Identity,
    horizon: Option<Timestamp>,
) -> Option<MetaDiff> {
    let same = match identity {
        Identity::Inode => {
            o.ctime == t.ctime
                && o.size == t.size
                && o.mtime == t.mtime
                && horizon.is_none_or(|h| o.ctime < h)
        }
        Identity::Path => {
            o.size == t.size
                && o.mtime == t.mtime
                && o.mode == t.mode
                && o.uid == t.uid
                && o.gid == t.gid
        }
    };
    if same {
        return None;
    }
    Some(MetaDiff {
        new: false,
        mode: o.mode != t.mode,
        owner: o.uid != t.uid || o.gid != t.gid,
        times: o.mtime != t.mtime,
        size: o.size != t.size,
        content: o.kind == Kind::File,
        // Any kind can carry xattrs (security labels on symlinks and device nodes too).
        xattrs: true,
        // Not visible in stat; read when the update is planned (see `content`).
        flags: false,
    })
}

impl LinkCollector {
    /// Start with the two roots (always the same object).
    pub fn new(identity: Identity, origin_root: Meta, target_root: Meta) -> Self {
        LinkCollector {
            identity,
            horizon: None,
            roots: [origin_root, target_root],
            sides: [BTreeMap::new(), BTreeMap::new()],
            o2t: BTreeMap::new(),
            t2o: BTreeMap::new(),
            reserved: BTreeSet::new(),
            props: BTreeSet::new(),
        }
    }

    /// The identity rule in use.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Objects whose origin ctime is at or after `horizon` are compared in full even when
    /// ctime, size and mtime are equal (see [`compare`]).
    pub fn with_ctime_horizon(mut self, horizon: Option<Timestamp>) -> Self {
        self.horizon = horizon;
        self
    }

    /// The ctime horizon in use.
    pub fn horizon(&self) -> Option<Timestamp> {
        self.horizon
    }

    /// Record that on `side`, directory `parent_ino` has entry `name` for the object `meta`.
    /// `link_target` is the symlink's content (needed to create it, and to tell two symlinks at
    /// one path apart in path mode).
    pub fn record(
        &mut self,
        side: Side,
        parent_ino: u64,
        name: &[u8],
        meta: &Meta,
        link_target: Option<&[u8]>,
    ) {
        let rec = self.sides[idx(side)].entry(meta.ino).or_insert_with(|| SideRec {
            meta: meta.clone(),
            links: BTreeSet::new(),
            link_target: link_target.map(<[u8]>::to_vec),
        });
        rec.links.insert((parent_ino, name.to_vec()));
    }

    /// Whether `ino` has been recorded on `side`.
    pub fn is_recorded(&self, side: Side, ino: u64) -> bool {
        self.sides[idx(side)].contains_key(&ino)
    }

    /// Path identity: declare origin `o` and target `t` the same object. Refused (false) when
    /// either is already paired with something else (hard links whose names diverge).
    pub fn pair(&mut self, o: u64, t: u64) -> bool {
        match (self.o2t.get(&o), self.t2o.get(&t)) {
            (Some(&x), Some(&y)) => x == t && y == o,
            (None, None) => {
                self.o2t.insert(o, t);
                self.t2o.insert(t, o);
                true
            }
            _ => false,
        }
    }

    /// Whether `o` and `t` are paired (path identity).
    pub fn paired(&self, o: u64, t: u64) -> bool {
        self.o2t.get(&o) == Some(&t)
    }

    /// Path identity: target object `t_ino` differs from its origin in xattrs or inode flags,
    /// which stat does not show: it is updated even if [`compare`] finds nothing.
    pub fn props_differ(&mut self, t_ino: u64) {
        self.props.insert(t_ino);
    }

    /// [`compare`], plus what [`LinkCollector::props_differ`] reported for target `t`.
    fn diff(&self, o: &Meta, t: &Meta) -> Option<MetaDiff> {
        compare(o, t, self.identity, self.horizon).or_else(|| {
            self.props.contains(&t.ino).then_some(MetaDiff { xattrs: true, ..MetaDiff::default() })
        })
    }

    /// A root name that exists in either snapshot and may collide with the orphan directory.
    pub fn reserve_root_name(&mut self, name: &[u8]) {
        self.reserved.insert(name.to_vec());
    }

    fn partner(&self, o: &SideRec) -> Option<u64> {
        let t_ino = match self.identity {
            Identity::Inode => o.meta.ino,
            Identity::Path => *self.o2t.get(&o.meta.ino)?,
        };
        if t_ino == self.roots[1].ino {
            return None;
        }
        let t = self.sides[1].get(&t_ino)?;
        // Birth times only mean something within one file system.
        let t_meta = match self.identity {
            Identity::Inode => t.meta.clone(),
            Identity::Path => Meta { btime: o.meta.btime, ..t.meta.clone() },
        };
        let same = o.meta.same_object(&t_meta)
            && (o.meta.kind != Kind::Symlink || o.link_target == t.link_target);
        same.then_some(t_ino)
    }

    /// Match the records into objects and compute what changed.
    pub fn finish(self) -> Result<Inventory> {
        let mut objects =
            vec![Object::root(Some(self.roots[0].clone()), Some(self.roots[1].clone()))];
        objects[0].diff = self.diff(&self.roots[0], &self.roots[1]);
        // Inode -> object, per side.
        let mut ids: [BTreeMap<u64, ObjId>; 2] = [BTreeMap::new(), BTreeMap::new()];
        ids[0].insert(self.roots[0].ino, ROOT);
        ids[1].insert(self.roots[1].ino, ROOT);
        let mut pairs: Vec<(Option<u64>, Option<u64>)> = Vec::new();
        for (&ino, rec) in &self.sides[0] {
            if ino == self.roots[0].ino {
                continue;
            }
            let t = self.partner(rec);
            ids[0].insert(ino, objects.len() + pairs.len());
            if let Some(t) = t {
                ids[1].insert(t, objects.len() + pairs.len());
            }
            pairs.push((Some(ino), t));
        }
        for &ino in self.sides[1].keys() {
            if ino == self.roots[1].ino || ids[1].contains_key(&ino) {
                continue;
            }
            ids[1].insert(ino, objects.len() + pairs.len());
            pairs.push((None, Some(ino)));
        }
        for (o, t) in pairs {
            let orec = o.and_then(|i| self.sides[0].get(&i));
            let trec = t.and_then(|i| self.sides[1].get(&i));
            let links = |rec: Option<&SideRec>, side: usize| -> Result<Vec<Link>> {
                let mut out = Vec::new();
                for (p, name) in rec.map(|r| r.links.iter()).into_iter().flatten() {
                    let parent = *ids[side].get(p).ok_or_else(|| {
                        Error::Inconsistent(format!(
                            "{} entry {:?}: parent inode {p} was never recorded",
                            if side == 0 { "origin" } else { "target" },
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                    out.push(Link { parent, name: name.clone() });
                }
                Ok(out)
            };
            let any = orec.or(trec).ok_or_else(|| Error::Internal("empty pair".into()))?;
            let diff = match (orec, trec) {
                (Some(a), Some(b)) => self.diff(&a.meta, &b.meta),
                (None, Some(_)) => Some(MetaDiff::all()),
                _ => None,
            };
            objects.push(Object {
                kind: any.meta.kind,
                in_origin: orec.is_some(),
                in_target: trec.is_some(),
                origin_links: links(orec, 0)?,
                target_links: links(trec, 1)?,
                origin_meta: orec.map(|r| r.meta.clone()),
                target_meta: trec.map(|r| r.meta.clone()),
                diff,
                link_target: trec.and_then(|r| r.link_target.clone()),
            });
        }
        Inventory::new(objects, self.reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ctime: i64) -> Meta {
        let ts = |sec| Timestamp { sec, nsec: 0 };
        Meta {
            kind: Kind::Fifo,
            ino: 7,
            nlink: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            rdev: 0,
            mtime: ts(100),
            ctime: ts(ctime),
            btime: None,
            dev: 0,
        }
    }

    #[test]
    fn quick_check_distrusts_ctimes_near_the_origin_snapshot() {
        // A chmod within the same clock tick as the origin's last change: ctime did not move.
        let (o, mut t) = (meta(200), meta(200));
        t.mode = 0o600;
        let h = |sec| Some(Timestamp { sec, nsec: 0 });
        assert_eq!(compare(&o, &t, Identity::Inode, None), None, "plain quick check is fooled");
        assert_eq!(compare(&o, &t, Identity::Inode, h(300)), None, "old ctime: trusted");
        let d = compare(&o, &t, Identity::Inode, h(200)).expect("at the horizon: compared");
        assert!(d.mode && !d.owner && !d.times);
    }
}
