//! anysend diff-core: walk two read-only snapshots of a tree and plan the ordered operations
//! (namespace changes, then content/metadata updates) that turn the origin into the target.
//!
//! Data flows one way: [`walk`] reads both trees fd-relatively and records only what it cannot
//! prove unchanged into a [`LinkCollector`]; [`links`] matches the records into an [`Inventory`]
//! (identity by inode or by path); [`plan`](mod@plan) orders the link changes against a
//! namespace [`Model`] of the receiver (the referee); the driver here emits namespace operations
//! and then, in post-order, one [`Update`] per changed object, asking [`content`] for changed byte
//! ranges as it goes. Nothing here knows the stream format or the receiver.
//!
//! Entry points: [`plan`] (two directories on disk) and [`plan_inventory`] (an inventory built in
//! memory, as the property test does).

pub mod content;
pub mod error;
pub mod inventory;
pub mod links;
pub mod model;
pub mod ops;
pub mod plan;
pub mod stat;
pub mod walk;

pub use error::{BoxError, Error, Result, Side};
pub use inventory::{Inventory, Link, ObjId, Object};
pub use links::{Identity, LinkCollector};
pub use model::Model;
pub use ops::{Consumer, ContentDelta, MetaDiff, Op, Recorder, Update, XattrDiff};
pub use stat::{Kind, Meta, Timestamp};

use std::cmp::Ordering;
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
    /// Compare extended attributes of changed regular files and directories.
    pub skip_xattrs: bool,
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
}

/// Walk `origin_root` and `target_root` and feed the plan to `consumer`.
pub fn plan<C: Consumer + ?Sized>(
    origin_root: &Path,
    target_root: &Path,
    options: &Options,
    consumer: &mut C,
) -> Result<Summary> {
    let roots = walk::Roots::open(origin_root, target_root)?;
    let inv = walk::walk(&roots, options.identity, &mut || consumer.stop())?;
    let mut differ = content::DiskDetails::new(&roots, options);
    drive(&inv, consumer, &mut |inv, id, u| differ.fill(inv, id, u))
}

/// Plan an inventory built elsewhere (tests, other walkers). Changed regular files are reported
/// as wholly changed (`0..new_size`); nothing is read from disk.
pub fn plan_inventory<C: Consumer + ?Sized>(inv: &Inventory, consumer: &mut C) -> Result<Summary> {
    drive(inv, consumer, &mut |_, _, _| Ok(()))
}

/// Fills in details of an update (content ranges, xattrs) before it is emitted.
type Details<'a> = dyn FnMut(&Inventory, ObjId, &mut Update) -> Result<()> + 'a;

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

fn drive<C: Consumer + ?Sized>(
    inv: &Inventory,
    consumer: &mut C,
    details: &mut Details<'_>,
) -> Result<Summary> {
    let mut summary = Summary { inventory_objects: inv.len() as u64, ..Summary::default() };
    let mut emit = |op: &Op| -> Result<()> {
        if consumer.stop() {
            return Err(Error::Stopped);
        }
        op.send_to(consumer).map_err(Error::Consumer)
    };
    let mut ns_ops = 0u64;
    let mut counting = |op: &Op| {
        ns_ops += 1;
        emit(op)
    };
    let mut outcome = plan::plan_namespace(inv, &mut counting)?;
    summary.namespace_ops = ns_ops;

    // Which objects get an Update: changed or new ones, plus directories whose entries the plan
    // changed (the receiver moved their mtime).
    let mut todo: Vec<(Vec<u8>, ObjId, MetaDiff)> = Vec::new();
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
    }
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
        let content = (o.kind == Kind::File && diff.content).then(|| {
            let size = o.target_meta.as_ref().map_or(0, |m| m.size);
            ContentDelta {
                new_size: size,
                ranges: std::iter::once(0..size).filter(|r| !r.is_empty()).collect(),
            }
        });
        let mut u = Update {
            path,
            target_path,
            origin_path: if o.in_origin { inv.origin_path(id) } else { None },
            kind: o.kind,
            diff,
            target_meta: o.target_meta.clone(),
            content,
            xattrs: None,
        };
        details(inv, id, &mut u)?;
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
