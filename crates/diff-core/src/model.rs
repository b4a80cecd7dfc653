//! The receiver's namespace, in memory: the referee.
//!
//! The planner emits an operation only after this model accepts it, applies it here, and derives
//! every path it emits from here (never from a cache an earlier operation could invalidate). The
//! property test replays the emitted operations on a fresh model of the origin with the very same
//! `apply`, so planner and test share one definition of validity. Keep it small and obvious.
//!
//! Validity is strict POSIX-minus-surprises: a parent must be an existing directory, a new name
//! must be free (rename never replaces), rmdir only on an empty directory, a directory never
//! moves into its own subtree, the root is never removed or renamed, names are non-empty, have no
//! `/` and are not `.` or `..`.
//!
//! The planner's model holds only the objects in its inventory (changed links plus ancestors),
//! not the whole tree. That is still exact for every check it makes: a name that is not in the
//! inventory is held by the same object in origin and target, so no wanted link ever targets
//! it; and every entry of a directory that gets removed is itself in the inventory.

use crate::ops::Op;
use crate::stat::Kind;
use std::collections::BTreeMap;

/// Index of a node in the model.
pub type NodeId = usize;

/// Why the model refused an operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("path {0:?} does not exist")]
    NoSuchPath(Vec<u8>),
    #[error("parent of {0:?} is not a directory")]
    NotADirectory(Vec<u8>),
    #[error("name {0:?} is already taken")]
    NameTaken(Vec<u8>),
    #[error("directory {0:?} is not empty")]
    NotEmpty(Vec<u8>),
    #[error("{0:?} is a directory")]
    IsADirectory(Vec<u8>),
    #[error("cannot move {0:?} into its own subtree")]
    IntoOwnSubtree(Vec<u8>),
    #[error("invalid name in {0:?}")]
    InvalidName(Vec<u8>),
    #[error("operation on the root")]
    Root,
}

/// One object in the model.
#[derive(Clone, Debug)]
pub struct Node {
    /// Object type.
    pub kind: Kind,
    /// For directories: where it is linked (None for the root or a detached node).
    pub parent: Option<(NodeId, Vec<u8>)>,
    /// For directories: the entries.
    pub entries: BTreeMap<Vec<u8>, NodeId>,
    /// Number of names (for non-directories; directories have 0 or 1).
    pub nlink: u32,
}

/// The namespace model. Node 0 is the root directory.
#[derive(Clone, Debug)]
pub struct Model {
    nodes: Vec<Node>,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `name` is usable as one path component.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/')
}

/// `dir/name` as a path relative to the root (the root is the empty path).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Split a non-root path into (parent path, last component).
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Model {
    /// The root directory's node id.
    pub const ROOT: NodeId = 0;

    /// A model holding only an empty root directory.
    pub fn new() -> Self {
        Model {
            nodes: vec![Node { kind: Kind::Dir, parent: None, entries: BTreeMap::new(), nlink: 1 }],
        }
    }

    /// A new node not linked anywhere yet.
    pub fn add_detached(&mut self, kind: Kind) -> NodeId {
        self.nodes.push(Node { kind, parent: None, entries: BTreeMap::new(), nlink: 0 });
        self.nodes.len() - 1
    }

    /// The node.
    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n]
    }

    /// Number of nodes ever created (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The entry `name` of directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.nodes.get(dir)?.entries.get(name).copied()
    }

    /// Whether `a` is `b` or one of `b`'s ancestors.
    pub fn is_ancestor_or_self(&self, a: NodeId, b: NodeId) -> bool {
        let mut cur = b;
        // Bounded by the number of nodes so that a corrupted model cannot loop forever.
        for _ in 0..=self.nodes.len() {
            if cur == a {
                return true;
            }
            match &self.nodes[cur].parent {
                Some((p, _)) => cur = *p,
                None => return false,
            }
        }
        false
    }

    /// Path of directory `dir` (empty for the root). Detached directories yield their name
    /// chain up to the detached top, which callers never emit.
    pub fn dir_path(&self, dir: NodeId) -> Vec<u8> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut cur = dir;
        for _ in 0..=self.nodes.len() {
            match &self.nodes[cur].parent {
                Some((p, name)) => {
                    names.push(name);
                    cur = *p;
                }
                None => break,
            }
        }
        let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for (i, n) in names.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(n);
        }
        out
    }

    /// Path of the entry `name` in directory `dir`.
    pub fn slot_path(&self, dir: NodeId, name: &[u8]) -> Vec<u8> {
        join(&self.dir_path(dir), name)
    }

    /// Resolve a path (relative to the root; empty = root).
    pub fn resolve(&self, path: &[u8]) -> Result<NodeId, ModelError> {
        let mut cur = Self::ROOT;
        if path.is_empty() {
            return Ok(cur);
        }
        for comp in path.split(|&b| b == b'/') {
            if !valid_name(comp) {
                return Err(ModelError::InvalidName(path.to_vec()));
            }
            if self.nodes[cur].kind != Kind::Dir {
                return Err(ModelError::NotADirectory(path.to_vec()));
            }
            cur = self.lookup(cur, comp).ok_or_else(|| ModelError::NoSuchPath(path.to_vec()))?;
        }
        Ok(cur)
    }

    /// Resolve the parent directory of a path that is about to get a new name; checks that the
    /// name is valid and free.
    fn free_slot<'p>(&self, path: &'p [u8]) -> Result<(NodeId, &'p [u8]), ModelError> {
        if path.is_empty() {
            return Err(ModelError::Root);
        }
        let (dir, name) = split(path);
        if !valid_name(name) {
            return Err(ModelError::InvalidName(path.to_vec()));
        }
        let d = self.resolve(dir)?;
        if self.nodes[d].kind != Kind::Dir {
            return Err(ModelError::NotADirectory(path.to_vec()));
        }
        if self.lookup(d, name).is_some() {
            return Err(ModelError::NameTaken(path.to_vec()));
        }
        Ok((d, name))
    }

    /// Link `node` at `dir/name` without any check but "name free, parent a directory" (used to
    /// load a starting state).
    pub fn attach(&mut self, dir: NodeId, name: &[u8], node: NodeId) -> Result<(), ModelError> {
        if self.nodes[dir].kind != Kind::Dir {
            return Err(ModelError::NotADirectory(name.to_vec()));
        }
        if !valid_name(name) {
            return Err(ModelError::InvalidName(name.to_vec()));
        }
        if self.nodes[node].kind == Kind::Dir
            && (node == Self::ROOT || self.nodes[node].parent.is_some())
        {
            return Err(ModelError::NameTaken(name.to_vec()));
        }
        if self.lookup(dir, name).is_some() {
            return Err(ModelError::NameTaken(name.to_vec()));
        }
        self.link_raw(dir, name, node);
        Ok(())
    }

    fn link_raw(&mut self, dir: NodeId, name: &[u8], node: NodeId) {
        self.nodes[dir].entries.insert(name.to_vec(), node);
        self.nodes[node].nlink += 1;
        if self.nodes[node].kind == Kind::Dir {
            self.nodes[node].parent = Some((dir, name.to_vec()));
        }
    }

    fn unlink_raw(&mut self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let node = self.nodes[dir].entries.remove(name)?;
        self.nodes[node].nlink -= 1;
        if self.nodes[node].kind == Kind::Dir {
            self.nodes[node].parent = None;
        }
        Some(node)
    }

    /// Apply one operation if it is valid; returns the node it created or acted on.
    /// On error the model is unchanged.
    pub fn apply(&mut self, op: &Op) -> Result<NodeId, ModelError> {
        match op {
            Op::MkTmpDir { path } | Op::Mkdir { path, .. } => self.create(path, Kind::Dir),
            Op::Create { path, .. } => self.create(path, Kind::File),
            Op::Symlink { path, .. } => self.create(path, Kind::Symlink),
            Op::Mknod { path, kind, .. } => {
                if !kind.is_node() {
                    return Err(ModelError::InvalidName(path.clone()));
                }
                self.create(path, *kind)
            }
            Op::Link { path, existing } => {
                let n = self.resolve(existing)?;
                if self.nodes[n].kind == Kind::Dir {
                    return Err(ModelError::IsADirectory(existing.clone()));
                }
                let (d, name) = self.free_slot(path)?;
                self.link_raw(d, name, n);
                Ok(n)
            }
            Op::Unlink { path } => {
                let n = self.resolve(path)?;
                if self.nodes[n].kind == Kind::Dir {
                    return Err(ModelError::IsADirectory(path.clone()));
                }
                let (dir, name) = split(path);
                let d = self.resolve(dir)?;
                self.unlink_raw(d, name);
                Ok(n)
            }
            Op::Rmdir { path } => {
                let n = self.resolve(path)?;
                if n == Self::ROOT {
                    return Err(ModelError::Root);
                }
                if self.nodes[n].kind != Kind::Dir {
                    return Err(ModelError::NotADirectory(path.clone()));
                }
                if !self.nodes[n].entries.is_empty() {
                    return Err(ModelError::NotEmpty(path.clone()));
                }
                let (dir, name) = split(path);
                let d = self.resolve(dir)?;
                self.unlink_raw(d, name);
                Ok(n)
            }
            Op::Rename { from, to } => {
                let n = self.resolve(from)?;
                if n == Self::ROOT {
                    return Err(ModelError::Root);
                }
                let (d, name) = self.free_slot(to)?;
                if self.nodes[n].kind == Kind::Dir && self.is_ancestor_or_self(n, d) {
                    return Err(ModelError::IntoOwnSubtree(to.clone()));
                }
                let (fdir, fname) = split(from);
                let fd = self.resolve(fdir)?;
                let name = name.to_vec();
                self.unlink_raw(fd, fname);
                self.link_raw(d, &name, n);
                Ok(n)
            }
            Op::Update(u) => {
                let n = self.resolve(&u.path)?;
                if self.nodes[n].kind != u.kind {
                    return Err(ModelError::NoSuchPath(u.path.clone()));
                }
                Ok(n)
            }
        }
    }

    fn create(&mut self, path: &[u8], kind: Kind) -> Result<NodeId, ModelError> {
        let (d, name) = self.free_slot(path)?;
        let name = name.to_vec();
        let n = self.add_detached(kind);
        self.link_raw(d, &name, n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(m: &mut Model, p: &[u8]) {
        m.apply(&Op::Mkdir { path: p.to_vec(), target_path: p.to_vec() }).unwrap();
    }

    #[test]
    fn refuses_invalid_operations() {
        let mut m = Model::new();
        mk(&mut m, b"a");
        mk(&mut m, b"a/b");
        m.apply(&Op::Create { path: b"f".to_vec(), target_path: b"f".to_vec() }).unwrap();
        let rename = |f: &[u8], t: &[u8]| Op::Rename { from: f.to_vec(), to: t.to_vec() };
        let before = format!("{:?}", m);
        assert!(matches!(m.apply(&rename(b"a", b"a/b/c")), Err(ModelError::IntoOwnSubtree(_))));
        assert!(matches!(m.apply(&rename(b"f", b"a")), Err(ModelError::NameTaken(_))));
        assert!(matches!(
            m.apply(&Op::Rmdir { path: b"a".to_vec() }),
            Err(ModelError::NotEmpty(_))
        ));
        assert!(matches!(
            m.apply(&Op::Unlink { path: b"a".to_vec() }),
            Err(ModelError::IsADirectory(_))
        ));
        assert!(matches!(
            m.apply(&Op::Unlink { path: b"x/y".to_vec() }),
            Err(ModelError::NoSuchPath(_))
        ));
        assert!(matches!(m.apply(&rename(b"f", b"a/..")), Err(ModelError::InvalidName(_))));
        assert!(matches!(m.apply(&rename(b"", b"z")), Err(ModelError::Root)));
        assert_eq!(before, format!("{:?}", m), "refused operations leave the model unchanged");
        m.apply(&rename(b"a/b", b"b")).unwrap();
        m.apply(&rename(b"a", b"b/a")).unwrap();
        assert_eq!(m.dir_path(m.resolve(b"b/a").unwrap()), b"b/a");
    }
}
