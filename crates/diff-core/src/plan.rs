//! Ordering: turn the inventory's wanted link changes into namespace operations, each valid on
//! the receiver at the moment it is applied.
//!
//! # Worked examples
//!
//! Each sequence below is what the planner emits, copied from the test in
//! `crates/diff-core/tests/hazards.rs` that asserts it line for line (named with each example):
//! a change to the order fails that test, and then this text must change with it. Paths are
//! relative to the destination root; capitals name objects (inodes), lower case names entries.
//!
//! **1. Swap: two files exchange names** (pinned by `swap_two_files`).
//!
//! ```text
//! origin          target          emitted
//! /               /               mktmpdir .anysend-orphans
//! |-- a  (A)      |-- a  (B)      rename b .anysend-orphans/1
//! `-- b  (B)      `-- b  (A)      rename a b
//!                                 rename .anysend-orphans/1 a
//!                                 rmdir .anysend-orphans
//! ```
//!
//! `rename a b` cannot come first: b still holds B, and on a real receiver the rename would
//! replace it and lose B. `rename b a` fails the same way. Each wants the other's name, so no
//! order of direct renames works. Stuck objects are looked at in object order: A is blocked by
//! the holder of `b`, so B is parked in the orphan directory; that frees `b` for A, and A's move
//! frees `a` for B.
//!
//! **2. `d1/d2 -> d2/d1`: a directory moved under its former child** (pinned by
//! `d1_d2_becomes_d2_d1`).
//!
//! ```text
//! origin          target          emitted
//! /               /               rename d1/d2 d2
//! `-- d1          `-- d2          rename d1 d2/d1
//!     |-- d2          |-- d1
//!     |   `-- g       |   `-- f
//!     `-- f           `-- g
//! ```
//!
//! `rename d1 d2/d1` cannot come first: d2 is still inside d1, so d1 would move into its own
//! subtree (rename(2) refuses with EINVAL). Here no orphan is needed: d2 can leave at once because
//! the root name `d2` is free, and d1 follows (a move blocked by ancestry is retried after every
//! directory move). The files inside travel with their directories and cost no operation.
//!
//! **3. The same with the names exchanged too** (pinned by `dir_moved_under_its_former_child`):
//! the child Y takes its parent's name `x`, and the old parent X goes under Y as `y`.
//!
//! ```text
//! origin          target          emitted
//! /               /               mktmpdir .anysend-orphans
//! `-- x  (X)      `-- x  (Y)      rename x/y .anysend-orphans/1
//!     `-- y  (Y)      |-- f       rename x .anysend-orphans/1/y
//!         `-- f       `-- y  (X)  rename .anysend-orphans/1 x
//!                                 rmdir .anysend-orphans
//! ```
//!
//! Now each step blocks the other: Y cannot take `x` while X holds it, and X cannot go under Y
//! while Y is inside X. X comes first in object order and is blocked by ancestry, so the highest
//! directory on the path from X down to its new parent that still has to move (here Y itself) is
//! orphaned. That breaks the ancestry: X moves under Y, which frees `x` for Y, and Y carries X
//! along.
//!
//! A chain that is not a cycle never touches the orphan directory: in log rotation (`log.N ->
//! log.N+1`; `long_rename_chain_needs_no_orphan` checks that all 1001 operations are renames)
//! each rename waits for its name and is woken when the next one frees it.
//!
//! # How it works
//!
//! Shape (see planner-notes): the [`Model`] starts as the origin restricted to the inventory; an
//! operation is emitted only after the model accepts it, and every emitted path is read from the
//! model. Work is event driven: each unfinished object tries its next step; a blocked object
//! waits on exactly what blocks it (a name to be freed, a directory to be created or emptied, any
//! directory move) and is woken when that happens, so chains of renames cost O(n log n) and not
//! O(n²). When nothing can move (a cycle: swaps, a directory under its former descendant, chains
//! of these), one blocker is moved into the orphan directory under a fresh name. That frees a
//! wanted name or breaks an ancestry; an object in the orphan directory holds no wanted name and
//! is never an obstacle again, so each object is orphaned at most once and the loop ends. Direct
//! renames are always preferred: orphaning happens only when no step at all is possible.

use crate::error::{Error, Result};
use crate::inventory::{Inventory, Link, ObjId, ROOT};
use crate::model::{Model, NodeId};
use crate::ops::Op;
use crate::stat::Kind;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Base name of the orphan directory at the destination root; `.<n>` is appended while the name
/// is taken in either snapshot.
pub const ORPHAN_DIR: &[u8] = b".anysend-orphans";

/// What a blocked step waits for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Block {
    /// The name is held by another object.
    Slot(Link),
    /// The parent directory does not exist yet.
    Missing(ObjId),
    /// The directory to remove still has entries.
    NotEmpty(ObjId),
    /// A directory would move into its own subtree (`into` is currently below `moving`).
    Ancestry { moving: ObjId, into: ObjId },
}

impl Block {
    fn wait_key(&self) -> Block {
        match self {
            // Any directory move may fix an ancestry problem; one shared key.
            Block::Ancestry { .. } => Block::Ancestry { moving: ROOT, into: ROOT },
            b => b.clone(),
        }
    }
}

enum Step {
    Did,
    Finished,
    Blocked(Block),
}

/// Result of namespace planning: the final model and where each object ended up.
pub(crate) struct Outcome {
    pub model: Model,
    pub node_of: Vec<Option<NodeId>>,
    /// Directories whose entries were changed on the receiver (their times need restoring).
    pub touched: BTreeSet<ObjId>,
}

struct Planner<'a, 'e> {
    inv: &'a Inventory,
    model: Model,
    node_of: Vec<Option<NodeId>>,
    obj_of: Vec<Option<ObjId>>,
    cur: Vec<BTreeSet<Link>>,
    want: Vec<BTreeSet<Link>>,
    orphan: ObjId,
    orphan_name: Option<Vec<u8>>,
    orphan_seq: u64,
    queue: VecDeque<ObjId>,
    queued: Vec<bool>,
    waiters: BTreeMap<Block, Vec<ObjId>>,
    unfinished: BTreeSet<ObjId>,
    touched: BTreeSet<ObjId>,
    emit: &'e mut dyn FnMut(&Op) -> Result<()>,
}

/// Plan the namespace operations for `inv`, handing each to `emit` in order.
pub(crate) fn plan_namespace(
    inv: &Inventory,
    emit: &mut dyn FnMut(&Op) -> Result<()>,
) -> Result<Outcome> {
    let n = inv.objects.len();
    let mut p = Planner {
        inv,
        model: Model::new(),
        node_of: vec![None; n + 1],
        obj_of: vec![Some(ROOT)],
        cur: vec![BTreeSet::new(); n + 1],
        want: vec![BTreeSet::new(); n + 1],
        orphan: n,
        orphan_name: None,
        orphan_seq: 0,
        queue: VecDeque::new(),
        queued: vec![false; n + 1],
        waiters: BTreeMap::new(),
        unfinished: BTreeSet::new(),
        touched: BTreeSet::new(),
        emit,
    };
    p.load()?;
    p.run()?;
    p.finish()?;
    Ok(Outcome { model: p.model, node_of: p.node_of, touched: p.touched })
}

fn internal<T>(msg: String) -> Result<T> {
    Err(Error::Internal(msg))
}

impl Planner<'_, '_> {
    fn load(&mut self) -> Result<()> {
        self.node_of[ROOT] = Some(Model::ROOT);
        for (id, o) in self.inv.objects.iter().enumerate().skip(1) {
            if o.in_origin {
                let node = self.model.add_detached(o.kind);
                self.set_node(id, node);
            }
        }
        for (id, o) in self.inv.objects.iter().enumerate().skip(1) {
            for l in &o.origin_links {
                let (Some(p), Some(c)) = (self.node_of[l.parent], self.node_of[id]) else {
                    return internal(format!("object {id}: origin parent missing"));
                };
                self.model
                    .attach(p, &l.name, c)
                    .map_err(|e| Error::Inconsistent(format!("origin of object {id}: {e}")))?;
            }
            self.cur[id] = o.origin_links.iter().cloned().collect();
            self.want[id] = o.target_links.iter().cloned().collect();
            if self.cur[id] != self.want[id] {
                self.unfinished.insert(id);
                self.enqueue(id);
            }
        }
        Ok(())
    }

    fn set_node(&mut self, id: ObjId, node: NodeId) {
        self.node_of[id] = Some(node);
        if self.obj_of.len() <= node {
            self.obj_of.resize(node + 1, None);
        }
        self.obj_of[node] = Some(id);
    }

    fn enqueue(&mut self, id: ObjId) {
        if !self.queued[id] {
            self.queued[id] = true;
            self.queue.push_back(id);
        }
    }

    fn wake(&mut self, key: &Block) {
        if let Some(ws) = self.waiters.remove(key) {
            for w in ws {
                self.enqueue(w);
            }
        }
    }

    fn run(&mut self) -> Result<()> {
        loop {
            while let Some(id) = self.queue.pop_front() {
                self.queued[id] = false;
                loop {
                    match self.step(id)? {
                        Step::Did => continue,
                        Step::Finished => {
                            self.unfinished.remove(&id);
                            break;
                        }
                        Step::Blocked(b) => {
                            self.waiters.entry(b.wait_key()).or_default().push(id);
                            break;
                        }
                    }
                }
            }
            if self.unfinished.is_empty() {
                return Ok(());
            }
            self.unstick()?;
        }
    }

    /// Nothing can move: orphan the first resolvable blocker (in object order, so the choice is
    /// deterministic).
    fn unstick(&mut self) -> Result<()> {
        let ids: Vec<ObjId> = self.unfinished.iter().copied().collect();
        for id in ids {
            match self.step(id)? {
                // Not actually stuck (a wake-up was missed): just continue.
                Step::Did => {
                    self.enqueue(id);
                    return Ok(());
                }
                Step::Finished => {
                    self.unfinished.remove(&id);
                    return Ok(());
                }
                Step::Blocked(b) => {
                    if let Some((victim, link)) = self.victim(&b)? {
                        self.orphanize(victim, link)?;
                        self.enqueue(id);
                        return Ok(());
                    }
                }
            }
        }
        internal(format!(
            "no progress and no blocker to orphan ({} objects unfinished)",
            self.unfinished.len()
        ))
    }

    fn victim(&self, b: &Block) -> Result<Option<(ObjId, Link)>> {
        match b {
            Block::Slot(l) => {
                let Some(dir) = self.node_of[l.parent] else {
                    return Ok(None);
                };
                let Some(node) = self.model.lookup(dir, &l.name) else {
                    return Ok(None);
                };
                match self.obj_of.get(node).copied().flatten() {
                    Some(o) if o != self.orphan => Ok(Some((o, l.clone()))),
                    _ => internal(format!("slot {:?} held by an unknown node", l.name)),
                }
            }
            Block::Ancestry { moving, into } => {
                // Walk up from `into` to `moving`; orphan the highest directory on that path that
                // still has to move (one exists: in the target `into` is not below `moving`).
                let mut chain = Vec::new();
                let mut cur = *into;
                while cur != *moving {
                    chain.push(cur);
                    let Some(l) = self.cur[cur].first() else {
                        return internal("ancestry chain broken".into());
                    };
                    cur = l.parent;
                    if chain.len() > self.cur.len() {
                        return internal("ancestry chain loops".into());
                    }
                }
                for &d in chain.iter().rev() {
                    if self.unfinished.contains(&d) {
                        if let Some(l) = self.cur[d].first() {
                            return Ok(Some((d, l.clone())));
                        }
                    }
                }
                internal("directory cycle with every member in place".into())
            }
            Block::Missing(_) | Block::NotEmpty(_) => Ok(None),
        }
    }

    fn slot_free(&self, l: &Link) -> std::result::Result<NodeId, Block> {
        let Some(dir) = self.node_of[l.parent] else {
            return Err(Block::Missing(l.parent));
        };
        if self.model.lookup(dir, &l.name).is_some() {
            return Err(Block::Slot(l.clone()));
        }
        Ok(dir)
    }

    fn path(&self, l: &Link) -> Result<Vec<u8>> {
        match self.node_of[l.parent] {
            Some(d) => Ok(self.model.slot_path(d, &l.name)),
            None => internal(format!("path through missing directory {}", l.parent)),
        }
    }

    fn target_path(&self, id: ObjId) -> Result<Vec<u8>> {
        self.inv
            .target_path(id)
            .ok_or_else(|| Error::Internal(format!("object {id} has no target path")))
    }

    /// Apply to the model (the referee) and hand to the consumer.
    fn apply(&mut self, op: Op) -> Result<NodeId> {
        let node = self.model.apply(&op).map_err(|e| {
            Error::Internal(format!("planner emitted an invalid operation {op:?}: {e}"))
        })?;
        (self.emit)(&op)?;
        Ok(node)
    }

    /// A name was removed from `l.parent`: wake those waiting for it or for the directory to
    /// empty.
    fn freed(&mut self, l: &Link) {
        self.touched.insert(l.parent);
        self.wake(&Block::Slot(l.clone()));
        if let Some(d) = self.node_of[l.parent] {
            if self.model.node(d).entries.is_empty() {
                self.wake(&Block::NotEmpty(l.parent));
            }
        }
    }

    fn do_rename(&mut self, id: ObjId, from: Link, to: Link) -> Result<()> {
        let (fp, tp) = (self.path(&from)?, self.path(&to)?);
        self.apply(Op::Rename { from: fp, to: tp })?;
        self.cur[id].remove(&from);
        self.touched.insert(to.parent);
        self.cur[id].insert(to);
        self.freed(&from);
        if self.inv.objects.get(id).map(|o| o.kind) == Some(Kind::Dir) {
            self.wake(&Block::Ancestry { moving: ROOT, into: ROOT });
        }
        Ok(())
    }

    fn step(&mut self, id: ObjId) -> Result<Step> {
        if self.cur[id] == self.want[id] {
            return Ok(Step::Finished);
        }
        let obj = &self.inv.objects[id];
        if obj.kind == Kind::Dir {
            return self.step_dir(id);
        }
        let adds: Vec<Link> = self.want[id].difference(&self.cur[id]).cloned().collect();
        let removes: Vec<Link> = self.cur[id].difference(&self.want[id]).cloned().collect();
        let mut first_block = None;
        for a in &adds {
            if let Err(b) = self.slot_free(a) {
                first_block.get_or_insert(b);
                continue;
            }
            if let Some(r) = removes.first() {
                // Prefer renaming a name that goes away over link + unlink.
                self.do_rename(id, r.clone(), a.clone())?;
            } else if let Some(existing) = self.cur[id].first().cloned() {
                let (path, existing) = (self.path(a)?, self.path(&existing)?);
                self.apply(Op::Link { path, existing })?;
                self.touched.insert(a.parent);
                self.cur[id].insert(a.clone());
            } else {
                self.create(id, a)?;
            }
            return Ok(Step::Did);
        }
        // Keep enough going-away names to rename into the blocked adds; unlink the rest.
        if removes.len() > adds.len() {
            let r = removes[0].clone();
            let path = self.path(&r)?;
            self.apply(Op::Unlink { path })?;
            self.cur[id].remove(&r);
            self.freed(&r);
            return Ok(Step::Did);
        }
        match first_block {
            Some(b) => Ok(Step::Blocked(b)),
            None => internal(format!("object {id}: nothing to do but unfinished")),
        }
    }

    fn create(&mut self, id: ObjId, at: &Link) -> Result<()> {
        let obj = &self.inv.objects[id];
        let path = self.path(at)?;
        let target_path = self.target_path(id)?;
        let op = match obj.kind {
            Kind::Dir => Op::Mkdir { path, target_path },
            Kind::File => Op::Create { path, target_path },
            Kind::Symlink => Op::Symlink {
                path,
                target_path,
                link_target: obj.link_target.clone().unwrap_or_default(),
            },
            k => Op::Mknod {
                path,
                target_path,
                kind: k,
                rdev: obj.target_meta.as_ref().map_or(0, |m| m.rdev),
            },
        };
        let node = self.apply(op)?;
        self.set_node(id, node);
        self.touched.insert(at.parent);
        self.cur[id].insert(at.clone());
        if obj.kind == Kind::Dir {
            self.wake(&Block::Missing(id));
        }
        Ok(())
    }

    fn step_dir(&mut self, id: ObjId) -> Result<Step> {
        let cur = self.cur[id].first().cloned();
        let want = self.want[id].first().cloned();
        match (cur, want) {
            (None, None) => Ok(Step::Finished),
            (Some(c), None) => {
                let Some(node) = self.node_of[id] else {
                    return internal(format!("directory {id} without node"));
                };
                if !self.model.node(node).entries.is_empty() {
                    return Ok(Step::Blocked(Block::NotEmpty(id)));
                }
                let path = self.path(&c)?;
                self.apply(Op::Rmdir { path })?;
                self.cur[id].clear();
                self.freed(&c);
                Ok(Step::Did)
            }
            (None, Some(w)) => {
                if let Err(b) = self.slot_free(&w) {
                    return Ok(Step::Blocked(b));
                }
                self.create(id, &w)?;
                Ok(Step::Did)
            }
            (Some(c), Some(w)) => {
                let dest = match self.slot_free(&w) {
                    Ok(d) => d,
                    Err(b) => return Ok(Step::Blocked(b)),
                };
                let Some(node) = self.node_of[id] else {
                    return internal(format!("directory {id} without node"));
                };
                if self.model.is_ancestor_or_self(node, dest) {
                    return Ok(Step::Blocked(Block::Ancestry { moving: id, into: w.parent }));
                }
                self.do_rename(id, c, w)?;
                Ok(Step::Did)
            }
        }
    }

    fn ensure_orphan_dir(&mut self) -> Result<NodeId> {
        if let Some(n) = self.node_of[self.orphan] {
            return Ok(n);
        }
        let mut name = ORPHAN_DIR.to_vec();
        let mut k = 0u64;
        while self.inv.reserved_root_names.contains(&name)
            || self.model.lookup(Model::ROOT, &name).is_some()
        {
            k += 1;
            name = ORPHAN_DIR.to_vec();
            name.extend_from_slice(format!(".{k}").as_bytes());
        }
        let node = self.apply(Op::MkTmpDir { path: name.clone() })?;
        self.set_node(self.orphan, node);
        self.touched.insert(ROOT);
        self.orphan_name = Some(name);
        Ok(node)
    }

    /// Move name `link` of `id` into the orphan directory under a fresh name.
    fn orphanize(&mut self, id: ObjId, link: Link) -> Result<()> {
        let dir = self.ensure_orphan_dir()?;
        let name = loop {
            self.orphan_seq += 1;
            let name = format!("{}", self.orphan_seq).into_bytes();
            if self.model.lookup(dir, &name).is_none() {
                break name;
            }
        };
        let to = Link { parent: self.orphan, name };
        self.do_rename(id, link, to)?;
        self.enqueue(id);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let (Some(node), Some(name)) = (self.node_of[self.orphan], self.orphan_name.clone()) {
            if !self.model.node(node).entries.is_empty() {
                return internal("orphan directory not empty at the end".into());
            }
            self.apply(Op::Rmdir { path: name })?;
            self.node_of[self.orphan] = None;
        }
        // The referee's verdict: every wanted name holds its object, nothing else remains.
        for (id, o) in self.inv.objects.iter().enumerate() {
            for l in &o.target_links {
                let here = self.node_of[l.parent].and_then(|d| self.model.lookup(d, &l.name));
                if here.is_none() || here != self.node_of[id] {
                    return internal(format!("object {id} not at its target name {:?}", l.name));
                }
            }
            if !o.in_target && self.cur[id].iter().next().is_some() {
                return internal(format!("deleted object {id} still linked"));
            }
        }
        Ok(())
    }
}
