//! anysend diff-core: walk two read-only snapshots of a tree and plan the ordered operations
//! (namespace changes, then content/metadata updates) that turn the origin into the target.
//!
//! Data flows one way: [`walk`] reads both trees fd-relatively (skipping what a
//! [`btrfs::ChangeIndex`] proves unchanged, when the two roots are btrfs snapshots of one
//! subvolume) and records only what it cannot prove unchanged into a [`LinkCollector`]; [`links`] matches the records into an [`Inventory`]
//! (identity by inode or by path); [`plan`](mod@plan) orders the link changes against a
//! namespace [`Model`] of the receiver (the referee); the driver here emits namespace operations
//! and then, in post-order, one [`Update`] per changed object, asking [`content`] for changed byte
//! ranges as it goes. Nothing here knows the stream format or the receiver.
//!
//! Entry points: [`plan`] (two directories on disk), [`plan_inventory`] (an inventory built in
//! memory, as the property test does) and [`plan_full`] (a full stream: the target alone, planned
//! while it is walked, in memory that follows the depth of the tree, see [`full`]).

pub mod btrfs;
pub mod content;
pub mod error;
pub mod estimate;
pub mod fiemap;
pub mod full;
pub mod holes;
pub mod inventory;
pub mod links;
mod live;
pub mod model;
pub mod ops;
pub mod plan;
pub mod props;
pub mod scope;
pub mod stat;
pub mod walk;

pub use content::{ContentStats, Handle};
pub use error::{BoxError, Error, Result, Side};
pub use estimate::Estimate;
pub use full::plan_full;
pub use inventory::{Inventory, Link, ObjId, Object};
pub use links::{Identity, LinkCollector};
pub use model::Model;
pub use ops::{
    Consumer, ContentDelta, InodeFlags, MetaDiff, Op, Opened, Recorder, Update, XattrDiff,
};
pub use scope::{Glob, GlobError, Scope};
pub use stat::{Kind, Meta, Timestamp, FLAGS_LOCKING, FLAGS_MASK};
pub use walk::Roots;

use inventory::ROOT;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;

/// Options of [`plan`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How objects of the two trees are identified (inode numbers for two snapshots of one file
    /// system, paths for unrelated trees).
    pub identity: Identity,
    /// Compute changed byte ranges of regular files by reading both versions (else a changed
    /// file is reported as wholly changed: `0..new_size`).
    pub skip_content_compare: bool,
    /// Do not compare extended attributes of changed objects.
    pub skip_xattrs: bool,
    /// Never ask FIEMAP which ranges both versions share: read everything (for tests and for
    /// file systems whose extent maps are not to be trusted).
    pub no_fiemap: bool,
    /// The origin is an empty stand-in for a full stream: the root is planned as a new object
    /// (all its metadata sent) instead of being compared with the stand-in's. ([`plan_full`]
    /// plans a full stream without a stand-in, in walk order and in little memory; the two
    /// plans hold the same operations.)
    pub full: bool,
    /// Objects whose origin ctime is at or after this are compared in full even when ctime,
    /// size and mtime are equal: set it a little before the origin snapshot was taken, since a
    /// change within one clock tick of the snapshot may not move ctime (see `links::compare`).
    pub ctime_horizon: Option<stat::Timestamp>,
    /// Compare every entry even where btrfs can tell which objects changed since the origin
    /// snapshot ([`btrfs::ChangeIndex`]); for checking the index, and for file systems whose
    /// metadata is not to be trusted.
    pub full_walk: bool,
    /// Where the walk stops (mount points, nested subvolumes) and what it leaves out.
    pub scope: Scope,
    /// A tree may change while it is walked (it is not a read-only snapshot): every directory
    /// listing is checked, and a namespace that moved is an [`Error::Changed`], never a plan
    /// (see the `live` module). Off, the walk makes no extra system call.
    pub live: bool,
    /// Tell the consumer what the plan will carry before its first operation
    /// ([`Consumer::estimate`]): free for an incremental, a walk of its own for a full stream
    /// (see the `estimate` module).
    pub estimate: bool,
}

/// Whether the walk used a [`btrfs::ChangeIndex`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IndexUse {
    /// Not tried: `full_walk`, a full stream or path identity.
    #[default]
    NotTried,
    /// Built and used.
    Used {
        /// Objects owning an item written since the origin.
        changed: u64,
        /// Directories above them.
        dirty: u64,
        /// Tree searches it took.
        searches: u64,
    },
    /// Tried; why it could not be used.
    Unusable(String),
}

/// Counts of what a plan contained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Namespace operations emitted (incl. orphan-directory traffic).
    pub namespace_ops: u64,
    /// `Update` operations emitted.
    pub updates: u64,
    /// Objects in the inventory (changed objects plus their ancestors).
    pub inventory_objects: u64,
    /// Bytes in changed ranges over all updates.
    pub changed_bytes: u64,
    /// Bytes read to compare content, and bytes the extent maps proved equal without reading.
    pub content: ContentStats,
    /// Origin objects whose immutable/append-only flags were lifted ([`Consumer::unlock`]).
    pub unlocked: u64,
    /// What the walk read and skipped.
    pub walk: walk::WalkStats,
    /// Whether btrfs told the walk which objects changed.
    pub index: IndexUse,
    /// How the walked objects matched up (an incremental plan from disk only).
    pub matching: Matching,
}

/// How the objects the walk recorded matched up between the two trees. With inode identity,
/// two trees that are not snapshots of one file system (two copies) match almost nothing: every
/// object is deleted and created again, which is what a sender wants to warn about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    /// Recorded objects found in both trees (the root not counted).
    pub in_both: u64,
    /// Objects only in the origin (deleted).
    pub origin_only: u64,
    /// Objects only in the target (created).
    pub target_only: u64,
}

impl Matching {
    fn of(inv: &Inventory) -> Matching {
        let mut m = Matching::default();
        for o in inv.objects.iter().skip(1) {
            match (o.in_origin, o.in_target) {
                (true, true) => m.in_both += 1,
                (true, false) => m.origin_only += 1,
                (false, true) => m.target_only += 1,
                (false, false) => {}
            }
        }
        m
    }
}

/// Walk `origin_root` and `target_root` and feed the plan to `consumer`.
pub fn plan<C: Consumer + ?Sized>(
    origin_root: &Path,
    target_root: &Path,
    options: &Options,
    consumer: &mut C,
) -> Result<Summary> {
    let roots = walk::Roots::open(origin_root, target_root)?;
    let (index, index_use) =
        if options.full_walk || options.full || options.identity != Identity::Inode {
            (None, IndexUse::NotTried)
        } else {
            match btrfs::ChangeIndex::build(roots.fd(Side::Origin)?, roots.fd(Side::Target)?) {
                Ok(x) => {
                    let u = IndexUse::Used {
                        changed: x.changed() as u64,
                        dirty: x.dirty() as u64,
                        searches: x.searches,
                    };
                    (Some(x), u)
                }
                Err(why) => (None, IndexUse::Unusable(why.0)),
            }
        };
    let (mut inv, walk_stats) = walk::walk(
        &roots,
        options.identity,
        options.ctime_horizon,
        index.as_ref(),
        &options.scope,
        options.live,
        &mut || consumer.stop(),
    )
    .map_err(|e| e.drift(options.live))?;
    drop(index);
    if options.full {
        inv.objects[ROOT].diff = Some(MetaDiff::all());
    }
    let matching = Matching::of(&inv);
    if options.estimate {
        consumer.estimate(&estimate::of_inventory(&inv));
    }
    let mut details = content::DiskDetails::new(&roots, options);
    let mut summary =
        drive(&inv, consumer, &mut details, options.full).map_err(|e| e.drift(options.live))?;
    summary.content = details.stats();
    summary.walk = walk_stats;
    summary.index = index_use;
    summary.matching = matching;
    Ok(summary)
}

/// Plan an inventory built elsewhere (tests, other walkers). Changed regular files are reported
/// as wholly changed (`0..new_size`); nothing is read from disk.
pub fn plan_inventory<C: Consumer + ?Sized>(inv: &Inventory, consumer: &mut C) -> Result<Summary> {
    drive(inv, consumer, &mut NoDetails, false)
}

/// Where the driver gets what the inventory does not hold.
trait Details {
    /// Fill in details of an update (content ranges, xattrs, flags) before it is emitted.
    fn fill(&mut self, inv: &Inventory, id: ObjId, u: &mut Update) -> Result<()>;
    /// Inode flags of an origin object, when known.
    fn origin_flags(&mut self, inv: &Inventory, id: ObjId) -> Result<Option<u32>>;
}

struct NoDetails;

impl Details for NoDetails {
    fn fill(&mut self, _: &Inventory, _: ObjId, _: &mut Update) -> Result<()> {
        Ok(())
    }
    fn origin_flags(&mut self, _: &Inventory, _: ObjId) -> Result<Option<u32>> {
        Ok(None)
    }
}

impl Details for content::DiskDetails<'_> {
    fn fill(&mut self, inv: &Inventory, id: ObjId, u: &mut Update) -> Result<()> {
        content::DiskDetails::fill(self, inv, id, u)
    }
    fn origin_flags(&mut self, inv: &Inventory, id: ObjId) -> Result<Option<u32>> {
        content::DiskDetails::origin_flags(self, inv, id)
    }
}

fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Post-order by path: entries of a directory (recursively) before the directory itself, so a
/// directory's times are set after its contents stop changing.
fn post_order(a: &[u8], b: &[u8]) -> Ordering {
    let (mut ai, mut bi) = (components(a), components(b));
    loop {
        match (ai.next(), bi.next()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => continue,
                o => return o,
            },
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (None, None) => return Ordering::Equal,
        }
    }
}

/// Plan the namespace, find the origin objects that will change, lift their locking flags, then
/// emit the namespace operations and the updates.
///
/// The namespace operations are buffered (memory follows the number of changes, like the
/// inventory) because flag lifting must precede the first of them and which objects need it is
/// known only once the plan is complete.
fn drive<C: Consumer + ?Sized>(
    inv: &Inventory,
    consumer: &mut C,
    details: &mut dyn Details,
    root_is_new: bool,
) -> Result<Summary> {
    let mut summary = Summary { inventory_objects: inv.len() as u64, ..Summary::default() };
    let mut ns: Vec<Op> = Vec::new();
    let mut collect = |op: &Op| -> Result<()> {
        if consumer.stop() {
            return Err(Error::Stopped);
        }
        ns.push(op.clone());
        Ok(())
    };
    let mut outcome = plan::plan_namespace(inv, &mut collect)?;
    summary.namespace_ops = ns.len() as u64;

    // Which objects get an Update: changed or new ones, plus directories whose entries the plan
    // changed (the receiver moved their mtime).
    let mut todo: Vec<(Vec<u8>, ObjId, MetaDiff)> = Vec::new();
    let mut has_update: BTreeSet<ObjId> = BTreeSet::new();
    for (id, o) in inv.objects.iter().enumerate() {
        if !o.in_target {
            continue;
        }
        let touched = o.kind == inventory::Kind::Dir && outcome.touched.contains(&id);
        let diff = match (o.diff, touched) {
            (Some(mut d), true) => {
                d.times = true;
                d
            }
            (Some(d), false) => d,
            (None, true) => MetaDiff { times: true, ..MetaDiff::default() },
            (None, false) => continue,
        };
        let tp = inv
            .target_path(id)
            .ok_or_else(|| Error::Internal(format!("object {id} without target path")))?;
        todo.push((tp, id, diff));
        has_update.insert(id);
    }

    // Origin objects the plan changes: their names (renamed, linked, unlinked, removed), their
    // entries (directories in `touched`), or their content and metadata (an update).
    let mut changed: BTreeSet<ObjId> = has_update.clone();
    changed.extend(outcome.touched.iter().copied());
    for (id, o) in inv.objects.iter().enumerate() {
        if o.origin_links != o.target_links {
            changed.insert(id);
        }
    }
    // The origin objects as they were read, before anything changes (`touched` also names the
    // orphan directory, which is no inventory object).
    let origins: Vec<(ObjId, &Object)> = changed
        .iter()
        .filter_map(|&id| Some((id, inv.objects.get(id)?)))
        .filter(|&(id, o)| o.in_origin && !(id == ROOT && root_is_new))
        .collect();
    for &(id, o) in &origins {
        let Some(meta) = &o.origin_meta else { continue };
        let path = inv
            .origin_path(id)
            .ok_or_else(|| Error::Internal(format!("object {id} without origin path")))?;
        if consumer.stop() {
            return Err(Error::Stopped);
        }
        consumer.expect(&path, meta).map_err(Error::Consumer)?;
    }
    for (id, o) in origins {
        let Some(flags) = details.origin_flags(inv, id)? else { continue };
        if flags & FLAGS_LOCKING == 0 {
            continue;
        }
        let path = inv
            .origin_path(id)
            .ok_or_else(|| Error::Internal(format!("object {id} without origin path")))?;
        if consumer.stop() {
            return Err(Error::Stopped);
        }
        consumer.unlock(&path, o.kind, flags).map_err(Error::Consumer)?;
        summary.unlocked += 1;
        // A survivor must get its flags back even if nothing else of it changed.
        if o.in_target && !has_update.contains(&id) {
            let tp = inv
                .target_path(id)
                .ok_or_else(|| Error::Internal(format!("object {id} without target path")))?;
            todo.push((tp, id, MetaDiff { flags: true, ..MetaDiff::default() }));
            has_update.insert(id);
        }
    }

    let mut emit = |op: &Op| -> Result<()> {
        if consumer.stop() {
            return Err(Error::Stopped);
        }
        op.send_to(consumer).map_err(Error::Consumer)
    };
    for op in &ns {
        emit(op)?;
    }
    drop(ns);

    todo.sort_by(|a, b| post_order(&a.0, &b.0));
    for (target_path, id, diff) in todo {
        let o = &inv.objects[id];
        let node = outcome.node_of[id]
            .ok_or_else(|| Error::Internal(format!("object {id} missing at the end")))?;
        let path = if o.kind == Kind::Dir {
            outcome.model.dir_path(node)
        } else {
            let l = o.target_links.first().ok_or_else(|| Error::Internal("no link".into()))?;
            let d = outcome.node_of[l.parent]
                .ok_or_else(|| Error::Internal("parent missing at the end".into()))?;
            outcome.model.slot_path(d, &l.name)
        };
        let content = (o.kind == Kind::File && diff.content)
            .then(|| ContentDelta::whole(o.target_meta.as_ref().map_or(0, |m| m.size)));
        let new_root = id == ROOT && root_is_new;
        let mut u = Update {
            path,
            target_path,
            origin_path: if o.in_origin && !new_root { inv.origin_path(id) } else { None },
            kind: o.kind,
            diff,
            target_meta: o.target_meta.clone(),
            content,
            xattrs: None,
            flags: None,
            opened: Opened::default(),
        };
        details.fill(inv, id, &mut u)?;
        if let Some(c) = &u.content {
            summary.changed_bytes += c.ranges.iter().map(|r| r.end - r.start).sum::<u64>();
        }
        let op = Op::Update(u);
        outcome
            .model
            .apply(&op)
            .map_err(|e| Error::Internal(format!("update on a stale path: {e}")))?;
        emit(&op)?;
        summary.updates += 1;
    }
    consumer.end().map_err(Error::Consumer)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::post_order;
    use std::cmp::Ordering::*;

    #[test]
    fn post_order_puts_contents_before_their_directory() {
        let mut v: Vec<&[u8]> = vec![b"", b"a", b"a/b", b"a/b/c", b"ab", b"a/a"];
        v.sort_by(|x, y| post_order(x, y));
        assert_eq!(v, [&b"a/a"[..], b"a/b/c", b"a/b", b"a", b"ab", b""]);
        assert_eq!(post_order(b"a", b"a"), Equal);
        assert_eq!(post_order(b"a/z", b"a"), Less);
    }
}
