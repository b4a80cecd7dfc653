//! The planner's input: only the objects whose links or content changed, plus the directories
//! needed to name them (ancestors), each with its links in the origin and in the target.
//!
//! This is a plain data structure so that the planner can be fed from the real walker (through
//! [`crate::links::LinkCollector`]) or from in-memory trees in tests through the very same code.
//! Links are `(parent object, name)`; the root is object 0 and has no links. `validate` turns a
//! malformed inventory into an error instead of letting the planner loop or panic on it.

use crate::error::{Error, Result};
use crate::model::valid_name;
use crate::ops::MetaDiff;
pub use crate::stat::Kind;
use crate::stat::Meta;
use std::collections::{BTreeMap, BTreeSet};

/// Index of an object in an [`Inventory`].
pub type ObjId = usize;

/// The root directory's object id.
pub const ROOT: ObjId = 0;

/// One name of an object: entry `name` in directory `parent`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The directory holding the name.
    pub parent: ObjId,
    /// The name (one path component, raw bytes).
    pub name: Vec<u8>,
}

/// One object and its names on both sides.
#[derive(Clone, Debug)]
pub struct Object {
    /// Object type (the same on both sides: a type change is two objects).
    pub kind: Kind,
    /// Whether the object exists in the origin.
    pub in_origin: bool,
    /// Whether the object exists in the target.
    pub in_target: bool,
    /// Names in the origin (sorted; a directory has at most one).
    pub origin_links: Vec<Link>,
    /// Names in the target (sorted; a directory has at most one).
    pub target_links: Vec<Link>,
    /// Origin metadata, when known.
    pub origin_meta: Option<Meta>,
    /// Target metadata, when known.
    pub target_meta: Option<Meta>,
    /// Some when the object needs an `Update` (new, or content/metadata changed).
    pub diff: Option<MetaDiff>,
    /// Symlink target (for symlinks that must be created).
    pub link_target: Option<Vec<u8>>,
}

impl Object {
    /// The root directory (present on both sides, no links).
    pub fn root(origin_meta: Option<Meta>, target_meta: Option<Meta>) -> Object {
        Object {
            kind: Kind::Dir,
            in_origin: true,
            in_target: true,
            origin_links: Vec::new(),
            target_links: Vec::new(),
            origin_meta,
            target_meta,
            diff: None,
            link_target: None,
        }
    }
}

/// Changed objects with their links: what the planner orders.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub(crate) objects: Vec<Object>,
    /// Names at the root that the orphan directory must not use (taken in origin or target).
    pub(crate) reserved_root_names: BTreeSet<Vec<u8>>,
}

impl Inventory {
    /// Check and wrap objects (object 0 must be the root). `reserved_root_names` lists root
    /// names (in either snapshot) that could collide with the orphan directory's name.
    pub fn new(mut objects: Vec<Object>, reserved_root_names: BTreeSet<Vec<u8>>) -> Result<Self> {
        for o in &mut objects {
            o.origin_links.sort();
            o.origin_links.dedup();
            o.target_links.sort();
            o.target_links.dedup();
        }
        let inv = Inventory { objects, reserved_root_names };
        inv.validate()?;
        Ok(inv)
    }

    /// The objects; index = [`ObjId`].
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// Number of objects (incl. the root).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether only the root is present.
    pub fn is_empty(&self) -> bool {
        self.objects.len() <= 1
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Inconsistent(m));
        let Some(root) = self.objects.first() else {
            return bad("inventory without root".into());
        };
        if root.kind != Kind::Dir
            || !root.in_origin
            || !root.in_target
            || !root.origin_links.is_empty()
            || !root.target_links.is_empty()
        {
            return bad("object 0 is not a root directory".into());
        }
        let mut slots: [BTreeMap<(ObjId, &[u8]), ObjId>; 2] = [BTreeMap::new(), BTreeMap::new()];
        for (id, o) in self.objects.iter().enumerate().skip(1) {
            for (side, links, exists) in
                [(0, &o.origin_links, o.in_origin), (1, &o.target_links, o.in_target)]
            {
                if exists == links.is_empty() {
                    return bad(format!("object {id}: existence and links disagree"));
                }
                if o.kind == Kind::Dir && links.len() > 1 {
                    return bad(format!("directory object {id} has several names"));
                }
                for l in links {
                    let Some(p) = self.objects.get(l.parent) else {
                        return bad(format!("object {id}: parent {} out of range", l.parent));
                    };
                    let p_exists = if side == 0 { p.in_origin } else { p.in_target };
                    if p.kind != Kind::Dir || !p_exists {
                        return bad(format!("object {id}: parent {} is not a directory", l.parent));
                    }
                    if !valid_name(&l.name) {
                        return bad(format!("object {id}: invalid name {:?}", l.name));
                    }
                    if let Some(other) = slots[side].insert((l.parent, &l.name), id) {
                        return bad(format!("objects {other} and {id} share one name"));
                    }
                }
            }
        }
        // Every directory chain must reach the root on both sides (no cycles, no detached dirs).
        for (id, o) in self.objects.iter().enumerate() {
            if o.kind != Kind::Dir {
                continue;
            }
            for side in [0, 1] {
                let mut cur = id;
                let mut steps = 0;
                loop {
                    let c = &self.objects[cur];
                    let links = if side == 0 { &c.origin_links } else { &c.target_links };
                    let Some(l) = links.first() else { break };
                    cur = l.parent;
                    steps += 1;
                    if steps > self.objects.len() {
                        return bad(format!("directory cycle through object {id}"));
                    }
                }
                let exists = if side == 0 { o.in_origin } else { o.in_target };
                if exists && cur != ROOT {
                    return bad(format!("directory {id} is not connected to the root"));
                }
            }
        }
        Ok(())
    }

    fn path(&self, id: ObjId, origin: bool) -> Option<Vec<u8>> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut cur = id;
        while cur != ROOT {
            let o = &self.objects[cur];
            let l = if origin { o.origin_links.first()? } else { o.target_links.first()? };
            names.push(&l.name);
            cur = l.parent;
        }
        let mut out = Vec::new();
        for (i, n) in names.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(n);
        }
        Some(out)
    }

    /// Path of the object (its first name) relative to the origin root; None if not in origin.
    pub fn origin_path(&self, id: ObjId) -> Option<Vec<u8>> {
        self.path(id, true)
    }

    /// Path of the object (its first name) relative to the target root; None if not in target.
    pub fn target_path(&self, id: ObjId) -> Option<Vec<u8>> {
        self.path(id, false)
    }
}
