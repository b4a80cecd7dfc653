//! In-memory trees for the planner tests: a tiny inode-level file system (inode numbers,
//! generations as birth time, hard links, versions as content, and the metadata the planner's
//! ordering rules are about: owner, mode, xattrs with capabilities and ACLs, inode flags) with
//! the mutations the tests need, a bridge into `LinkCollector` (the same link analysis the walker
//! feeds), and the checker that replays a plan on the model (the referee) and compares the result
//! to the target. [`ops`] is how every diff-core test reads an operation.
//!
//! The mutations do what the kernel does by itself beside what they ask, since those side
//! effects are what a plan must not undo: a chown drops `security.capability` and
//! setuid/setgid, a data write drops the capability, and an object made inside a directory with
//! a default ACL inherits it (moved or linked in, it does not). Every change moves ctime, which
//! is all the planner sees of xattrs and flags (it reads their values from disk, see
//! [`check`] for what that leaves to check here).
#![allow(dead_code)]

pub mod ops;

use anysend_diff_core::model::NodeId;
use anysend_diff_core::{
    Identity, Inventory, Kind, LinkCollector, Meta, MetaDiff, Model, Op, Recorder, Side, Timestamp,
    FLAGS_LOCKING,
};
use std::collections::{BTreeMap, BTreeSet};

pub const ROOT: u64 = 1;

/// The xattr a chown or a data write makes the kernel drop.
pub const CAPABILITY: &[u8] = b"security.capability";
/// A POSIX access ACL, as an xattr.
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// A directory's default ACL, as an xattr: inherited by what is made inside.
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

#[derive(Clone, Debug)]
pub struct MNode {
    pub kind: Kind,
    pub gen: u64,
    pub version: u64,
    pub entries: BTreeMap<Vec<u8>, u64>,
    pub parent: Option<(u64, Vec<u8>)>,
    pub nlink: u64,
    pub uid: u32,
    /// The 12 permission bits.
    pub mode: u32,
    /// Extended attributes, capabilities and ACLs included (values are opaque here).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Inode flags (chattr bits, as FS_IOC_GETFLAGS gives them).
    pub flags: u32,
    /// Changes that moved ctime beyond content versions (owner, mode, xattrs, flags).
    pub changes: u64,
}

impl MNode {
    fn new(kind: Kind, gen: u64) -> Self {
        MNode {
            kind,
            gen,
            version: 0,
            entries: BTreeMap::new(),
            parent: None,
            nlink: 0,
            uid: 0,
            mode: 0o644,
            xattrs: BTreeMap::new(),
            flags: 0,
            changes: 0,
        }
    }

    /// Whether immutable or append-only forbid changes to the object.
    pub fn locked(&self) -> bool {
        self.flags & FLAGS_LOCKING != 0
    }
}

#[derive(Clone, Debug)]
pub struct MemTree {
    pub nodes: BTreeMap<u64, MNode>,
    pub next_ino: u64,
    pub next_gen: u64,
    pub free: Vec<u64>,
}

impl Default for MemTree {
    fn default() -> Self {
        Self::new()
    }
}

impl MemTree {
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, MNode { nlink: 1, ..MNode::new(Kind::Dir, 0) });
        MemTree { nodes, next_ino: 2, next_gen: 1, free: Vec::new() }
    }

    pub fn dirs(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, n)| n.kind == Kind::Dir).map(|(&i, _)| i).collect()
    }

    /// All (parent, name) entries in DFS order.
    pub fn entries(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            for (name, &c) in self.nodes[&d].entries.iter().rev() {
                out.push((d, name.clone()));
                if self.nodes[&c].kind == Kind::Dir {
                    stack.push(c);
                }
            }
        }
        out
    }

    pub fn get(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.nodes.get(&parent)?.entries.get(name).copied()
    }

    /// Whether `a` is `b` or an ancestor of `b`.
    pub fn is_ancestor_or_self(&self, a: u64, b: u64) -> bool {
        let mut cur = b;
        loop {
            if cur == a {
                return true;
            }
            match &self.nodes[&cur].parent {
                Some((p, _)) => cur = *p,
                None => return false,
            }
        }
    }

    fn alloc(&mut self, kind: Kind, reuse: bool) -> u64 {
        let ino = if reuse && !self.free.is_empty() {
            self.free.remove(0)
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        self.next_gen += 1;
        self.nodes.insert(ino, MNode::new(kind, self.next_gen));
        ino
    }

    fn attach(&mut self, parent: u64, name: &[u8], ino: u64) {
        self.nodes.get_mut(&parent).unwrap().entries.insert(name.to_vec(), ino);
        let n = self.nodes.get_mut(&ino).unwrap();
        n.nlink += 1;
        if n.kind == Kind::Dir {
            n.parent = Some((parent, name.to_vec()));
        }
    }

    fn detach(&mut self, parent: u64, name: &[u8]) -> u64 {
        let ino = self.nodes.get_mut(&parent).unwrap().entries.remove(name).unwrap();
        let n = self.nodes.get_mut(&ino).unwrap();
        n.nlink -= 1;
        if n.kind == Kind::Dir {
            n.parent = None;
        }
        ino
    }

    /// Create a new object; None if the name is taken or parent is not a dir.
    pub fn create(&mut self, kind: Kind, parent: u64, name: &[u8], reuse: bool) -> Option<u64> {
        if self.nodes.get(&parent)?.kind != Kind::Dir || self.get(parent, name).is_some() {
            return None;
        }
        let ino = self.alloc(kind, reuse);
        self.attach(parent, name, ino);
        // Made inside a directory with a default ACL: the kernel gives it that ACL (and a
        // directory the default too); symlinks have no ACLs.
        if let Some(default) = self.nodes[&parent].xattrs.get(ACL_DEFAULT).cloned() {
            let n = self.nodes.get_mut(&ino).unwrap();
            match kind {
                Kind::Symlink => {}
                Kind::Dir => {
                    n.xattrs.insert(ACL_ACCESS.to_vec(), default.clone());
                    n.xattrs.insert(ACL_DEFAULT.to_vec(), default);
                }
                _ => {
                    n.xattrs.insert(ACL_ACCESS.to_vec(), default);
                }
            }
        }
        Some(ino)
    }

    pub fn mkdir(&mut self, parent: u64, name: &[u8]) -> u64 {
        self.create(Kind::Dir, parent, name, false).expect("mkdir")
    }

    pub fn file(&mut self, parent: u64, name: &[u8]) -> u64 {
        self.create(Kind::File, parent, name, false).expect("file")
    }

    pub fn link(&mut self, ino: u64, parent: u64, name: &[u8]) -> bool {
        if self.nodes[&ino].kind == Kind::Dir || self.get(parent, name).is_some() {
            return false;
        }
        self.attach(parent, name, ino);
        true
    }

    /// rm -r.
    pub fn remove(&mut self, parent: u64, name: &[u8]) -> bool {
        let Some(ino) = self.get(parent, name) else {
            return false;
        };
        let kids: Vec<Vec<u8>> = self.nodes[&ino].entries.keys().cloned().collect();
        if self.nodes[&ino].kind == Kind::Dir {
            for k in kids {
                self.remove(ino, &k);
            }
        }
        self.detach(parent, name);
        if self.nodes[&ino].nlink == 0 {
            self.nodes.remove(&ino);
            self.free.push(ino);
            self.free.sort();
        }
        true
    }

    /// rename(2) with replace of a compatible destination.
    pub fn rename(&mut self, sp: u64, sn: &[u8], dp: u64, dn: &[u8]) -> bool {
        let Some(ino) = self.get(sp, sn) else {
            return false;
        };
        if self.nodes[&dp].kind != Kind::Dir {
            return false;
        }
        let is_dir = self.nodes[&ino].kind == Kind::Dir;
        if is_dir && self.is_ancestor_or_self(ino, dp) {
            return false;
        }
        if let Some(d) = self.get(dp, dn) {
            if d == ino {
                return false;
            }
            let dk = &self.nodes[&d];
            if is_dir != (dk.kind == Kind::Dir) || (is_dir && !dk.entries.is_empty()) {
                return false;
            }
            self.remove(dp, dn);
        }
        self.detach(sp, sn);
        self.attach(dp, dn, ino);
        true
    }

    /// Rotate: slot i receives the object of slot i+1 (a swap for two slots).
    pub fn rotate(&mut self, slots: &[(u64, Vec<u8>)]) -> bool {
        let set: BTreeSet<_> = slots.iter().collect();
        if set.len() != slots.len() || slots.len() < 2 {
            return false;
        }
        let objs: Vec<u64> = match slots.iter().map(|(p, n)| self.get(*p, n)).collect() {
            Some(o) => o,
            None => return false,
        };
        for &o in &objs {
            if self.nodes[&o].kind == Kind::Dir {
                for (p, _) in slots {
                    if self.is_ancestor_or_self(o, *p) {
                        return false;
                    }
                }
            }
        }
        for (p, n) in slots {
            self.detach(*p, n);
        }
        for (i, (p, n)) in slots.iter().enumerate() {
            self.attach(*p, n, objs[(i + 1) % objs.len()]);
        }
        true
    }

    /// Move descendant dir `e` into the place of its ancestor `d`, and `d` under `e` as `name`.
    pub fn hoist(&mut self, d: u64, e: u64, name: &[u8]) -> bool {
        if d == e || d == ROOT || !self.is_ancestor_or_self(d, e) {
            return false;
        }
        if self.nodes[&d].kind != Kind::Dir || self.nodes[&e].kind != Kind::Dir {
            return false;
        }
        let (dp, dn) = self.nodes[&d].parent.clone().unwrap();
        let (ep, en) = self.nodes[&e].parent.clone().unwrap();
        if self.nodes[&e].entries.contains_key(name) {
            return false;
        }
        self.detach(ep, &en);
        self.detach(dp, &dn);
        self.attach(dp, &dn, e);
        self.attach(e, name, d);
        true
    }

    /// A data write: new content, and the kernel drops the capability.
    pub fn modify(&mut self, ino: u64) {
        let n = self.nodes.get_mut(&ino).unwrap();
        n.version += 1;
        n.xattrs.remove(CAPABILITY);
    }

    fn changed(&mut self, ino: u64) -> &mut MNode {
        let n = self.nodes.get_mut(&ino).unwrap();
        n.changes += 1;
        n
    }

    /// chown: the kernel drops the capability, and setuid/setgid of a non-directory.
    pub fn chown(&mut self, ino: u64, uid: u32) {
        let n = self.changed(ino);
        n.uid = uid;
        if n.kind != Kind::Dir {
            n.xattrs.remove(CAPABILITY);
            n.mode &= !0o6000;
        }
    }

    pub fn chmod(&mut self, ino: u64, mode: u32) {
        self.changed(ino).mode = mode & 0o7777;
    }

    pub fn set_xattr(&mut self, ino: u64, name: &[u8], value: &[u8]) {
        self.changed(ino).xattrs.insert(name.to_vec(), value.to_vec());
    }

    pub fn remove_xattr(&mut self, ino: u64, name: &[u8]) {
        self.changed(ino).xattrs.remove(name);
    }

    /// chattr: the flags of the inode, whichever name it is reached by.
    pub fn set_flags(&mut self, ino: u64, flags: u32) {
        self.changed(ino).flags = flags;
    }

    /// The object at `path` (components separated by `/`; empty: the root).
    pub fn resolve(&self, path: &[u8]) -> Option<u64> {
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |dir, name| self.get(dir, name))
    }

    pub fn meta(&self, ino: u64) -> Meta {
        let n = &self.nodes[&ino];
        let t = Timestamp { sec: n.version as i64, nsec: 0 };
        // Every change moves ctime; only content moves mtime.
        let ctime = Timestamp { sec: n.version as i64, nsec: n.changes as u32 };
        Meta {
            kind: n.kind,
            ino,
            nlink: n.nlink,
            mode: n.mode,
            uid: n.uid,
            gid: n.uid,
            size: n.version * 10,
            rdev: 0,
            mtime: t,
            ctime,
            btime: Some(Timestamp { sec: n.gen as i64, nsec: 0 }),
            dev: 0,
        }
    }

    pub fn link_target(&self, ino: u64) -> Vec<u8> {
        format!("target-{}", self.nodes[&ino].gen).into_bytes()
    }
}

/// Feed both trees in full into the collector and build the inventory.
pub fn inventory(origin: &MemTree, target: &MemTree) -> Inventory {
    let mut c = LinkCollector::new(Identity::Inode, origin.meta(ROOT), target.meta(ROOT));
    for (side, tree) in [(Side::Origin, origin), (Side::Target, target)] {
        for (p, name) in tree.entries() {
            let ino = tree.get(p, &name).unwrap();
            let m = tree.meta(ino);
            let lt = (m.kind == Kind::Symlink).then(|| tree.link_target(ino));
            c.record(side, p, &name, &m, lt.as_deref());
            if p == ROOT {
                c.reserve_root_name(&name);
            }
        }
    }
    c.finish().expect("inventory")
}

pub fn plan(origin: &MemTree, target: &MemTree) -> Vec<Op> {
    let inv = inventory(origin, target);
    let mut rec = Recorder::default();
    anysend_diff_core::plan_inventory(&inv, &mut rec).expect("plan");
    assert!(rec.ended);
    rec.ops
}

fn path_parent(path: &[u8]) -> &[u8] {
    anysend_diff_core::model::split(path).0
}

/// Replay `ops` on a model of `origin`, asserting every op is valid when applied, and compare the
/// result with `target`. Returns the number of namespace ops.
///
/// Beside the namespace, it checks the rules that keep the receiver's own side effects out of
/// the result, as far as the plan decides them:
/// - every object whose owner, mode, content, xattrs (capabilities and ACLs included) or flags
///   changed gets exactly one update, saying which of owner, mode and content changed: the
///   sender orders an object's records within its one update (content, chown, xattrs, chmod,
///   utimes, flags), so a capability is set again after the chown or write that dropped it only
///   if no second update of the inode, through another name, follows;
/// - an object made by the plan gets an update marked new, which sets all its metadata (an
///   object made inside a directory with a default ACL inherits it on the receiver too);
/// - an object immutable or append-only in the target is not touched after its update (which
///   sets its flags), through any of its names, nor are its entries.
///
/// What the plan does not decide is left to the test bed: the planner gets xattr and flag values
/// from disk (`plan_inventory` has none, so it asks no object to be unlocked), and holes are
/// content ranges to it (the sender finds them); `e2e_random_chain` and the corpus check those on
/// real snapshots.
pub fn check(origin: &MemTree, target: &MemTree, ops: &[Op]) -> Result<usize, String> {
    let mut model = Model::new();
    let mut node_of: BTreeMap<u64, NodeId> = BTreeMap::new();
    node_of.insert(ROOT, Model::ROOT);
    for (&ino, n) in &origin.nodes {
        if ino != ROOT {
            node_of.insert(ino, model.add_detached(n.kind));
        }
    }
    for (p, name) in origin.entries() {
        let c = origin.get(p, &name).unwrap();
        model.attach(node_of[&p], &name, node_of[&c]).map_err(|e| e.to_string())?;
    }
    let mut last_ns: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut updated: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut diffs: BTreeMap<NodeId, MetaDiff> = BTreeMap::new();
    // Objects whose update made them immutable or append-only, and where.
    let mut locked: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut seen_update = false;
    for (i, op) in ops.iter().enumerate() {
        // The objects the op acts on, by whatever name: resolved before it is applied.
        let acted_on: Vec<&[u8]> = match op {
            Op::Link { existing, .. } => vec![existing],
            Op::Unlink { path } | Op::Rmdir { path } => vec![path],
            Op::Rename { from, .. } => vec![from],
            Op::Update(u) => vec![&u.path],
            _ => vec![],
        };
        let mut dirs = Vec::new();
        match op {
            Op::Rename { from, to } => {
                dirs.push(path_parent(from).to_vec());
                dirs.push(path_parent(to).to_vec());
            }
            Op::Update(_) => {}
            other => dirs.push(path_parent(ops::path_of(other)).to_vec()),
        }
        if op.is_namespace() && seen_update {
            return Err(format!("op {i} {op:?}: namespace op after an update"));
        }
        let dir_nodes: Vec<NodeId> = dirs.iter().filter_map(|d| model.resolve(d).ok()).collect();
        let touched =
            acted_on.iter().filter_map(|p| model.resolve(p).ok()).chain(dir_nodes.clone());
        for t in touched {
            if let Some(l) = locked.get(&t) {
                return Err(format!(
                    "op {i} {}: touches an object op {l} made immutable or append-only\nops: {ops:#?}",
                    ops::op_line(op, 80)
                ));
            }
        }
        let node =
            model.apply(op).map_err(|e| format!("op {i} {op:?} invalid: {e}\nops: {ops:#?}"))?;
        for d in dir_nodes {
            last_ns.insert(d, i);
        }
        if let Op::Update(u) = op {
            seen_update = true;
            if updated.insert(node, i).is_some() {
                return Err(format!("op {i}: object updated twice"));
            }
            diffs.insert(node, u.diff);
            let t = target
                .resolve(&u.target_path)
                .ok_or_else(|| format!("op {i}: update of a target path that does not exist"))?;
            if target.nodes[&t].locked() {
                locked.insert(node, i);
            }
        }
    }
    // Compare namespaces from the root; map target inodes to model nodes.
    let mut t2n: BTreeMap<u64, NodeId> = BTreeMap::new();
    let mut n2t: BTreeMap<NodeId, u64> = BTreeMap::new();
    t2n.insert(ROOT, Model::ROOT);
    n2t.insert(Model::ROOT, ROOT);
    let mut stack = vec![(ROOT, Model::ROOT)];
    while let Some((ti, ni)) = stack.pop() {
        let tn = &target.nodes[&ti];
        let mn = model.node(ni);
        let tnames: Vec<&Vec<u8>> = tn.entries.keys().collect();
        let mnames: Vec<&Vec<u8>> = mn.entries.keys().collect();
        if tnames != mnames {
            return Err(format!(
                "dir entries differ: target {tnames:?} model {mnames:?}\nops: {ops:#?}"
            ));
        }
        for (name, &tc) in &tn.entries {
            let mc = mn.entries[name];
            if model.node(mc).kind != target.nodes[&tc].kind {
                return Err(format!("kind differs at {name:?}"));
            }
            if *t2n.entry(tc).or_insert(mc) != mc || *n2t.entry(mc).or_insert(tc) != tc {
                return Err(format!("hard link sharing differs at {name:?}\nops: {ops:#?}"));
            }
            if target.nodes[&tc].kind == Kind::Dir {
                stack.push((tc, mc));
            }
        }
    }
    for (&ti, tn) in &target.nodes {
        let n = t2n[&ti];
        let old = origin.nodes.get(&ti).filter(|o| o.gen == tn.gen && o.kind == tn.kind);
        match old {
            Some(o) => {
                // Same object: it must have been kept (renamed, not recreated).
                if node_of[&ti] != n {
                    return Err(format!("object {ti} recreated instead of kept\nops: {ops:#?}"));
                }
                if o.version != tn.version && !updated.contains_key(&n) {
                    return Err(format!("changed object {ti} got no update"));
                }
                let meta_changed = o.uid != tn.uid
                    || o.mode != tn.mode
                    || o.xattrs != tn.xattrs
                    || o.flags != tn.flags;
                if meta_changed && !updated.contains_key(&n) {
                    return Err(format!(
                        "object {ti} with changed owner, mode, xattrs or flags got no update"
                    ));
                }
                if let Some(d) = diffs.get(&n) {
                    let content = tn.kind == Kind::File && o.version != tn.version;
                    for (what, differs, said) in [
                        ("owner", o.uid != tn.uid, d.owner),
                        ("mode", o.mode != tn.mode, d.mode),
                        ("content", content, d.content),
                        ("xattrs", o.xattrs != tn.xattrs, d.xattrs),
                    ] {
                        if differs && !said {
                            return Err(format!(
                                "object {ti}: its update does not say its {what} changed: {d:?}"
                            ));
                        }
                    }
                }
                if tn.kind == Kind::Dir {
                    let oe: BTreeMap<_, _> =
                        o.entries.iter().map(|(k, v)| (k, (v, origin.nodes[v].gen))).collect();
                    let te: BTreeMap<_, _> =
                        tn.entries.iter().map(|(k, v)| (k, (v, target.nodes[v].gen))).collect();
                    if oe != te && !updated.contains_key(&n) {
                        return Err(format!("directory {ti} with changed entries got no update"));
                    }
                }
            }
            None => {
                if !diffs.get(&n).is_some_and(|d| d.new) {
                    return Err(format!("new object {ti} got no update marked new"));
                }
            }
        }
        if let (Some(u), Some(l)) = (updated.get(&n), last_ns.get(&n)) {
            if u < l {
                return Err(format!("directory {ti} updated before its entries settled"));
            }
        }
    }
    Ok(ops.iter().filter(|o| o.is_namespace()).count())
}
