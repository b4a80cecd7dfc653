//! Full streams, planned while the target is walked: every entry is new, so nothing needs to be
//! matched, compared or ordered against a receiver's namespace, and nothing needs to be kept.
//!
//! The general planner ([`crate::plan`] against an empty origin) would build an inventory of
//! every entry, plan it as a namespace and then sort every update: memory and time grow with the
//! number of entries. Here the target is walked depth first, fd-relatively (the walker's
//! [`DirStack`] with its bounded fds, one reused getdents64 buffer, sorted names) and each entry
//! goes to the [`Consumer`] when it is met:
//!
//! * a directory: `mkdir`, then its entries (recursively), then its [`Update`], so its mtime and
//!   an immutable or append-only flag are set after its last entry went in; the root's last;
//! * a file, symlink or node: its creation and at once its [`Update`], with the object opened
//!   once and handed on in [`Update::opened`] (the sender reads the data through it);
//! * an object with several names: created at the first name met and given its Update there;
//!   each later name is a `link` to the first. Only such objects are remembered (by inode
//!   number), and only until their last name was met. A file carrying immutable or append-only
//!   takes no new link once its flags are set, so its Update waits until its last name is linked
//!   (names counted against `nlink`) and goes out at that name; files whose other names lie
//!   outside the tree get theirs before the root's Update.
//!
//! * a directory its owner cannot search (mode without `u+x`): its Update waits for the end
//!   (before the root's), so that a receiver not running as root can still reach the names
//!   below it that a later `link` or a waiting Update names.
//!
//! * a directory on another device (a mount point, a nested btrfs subvolume): `mkdir` and its
//!   Update at once, not entered (see [`crate::scope`]); an excluded name is not visited at all.
//! * a tree that may change (`options.live`): every listing is checked, and all of them once
//!   more before the end (see [`crate::live`]).
//!
//! Memory so follows the depth of the tree (each open level keeps its listing of names still to
//! visit) and the number of partly linked files, not the number of entries. Names are visited in
//! byte order, so one snapshot always gives the same sequence: `anysend --resume` plans again and
//! skips records by index. An Update is filled by [`DiskDetails::fill_opened`], as the general
//! planner fills one of a new object.

use crate::content::{not_walked, DiskDetails, Handle};
use crate::error::{BoxError, Error, Result, Side};
use crate::live::Watch;
use crate::model::join;
use crate::ops::{Consumer, ContentDelta, MetaDiff, Opened, Update};
use crate::stat::{statx_at, Kind, Meta, FLAGS_LOCKING};
use crate::walk::{
    adopt, fstatx, list_dir, readlink, verify_listed, DEnt, DirStack, Roots, DIRENT_BUF,
};
use crate::{Options, Summary};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{openat, AtFlags, Mode, OFlags};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Walk `target_root` and feed `consumer` a full stream's plan: every object created and given
/// its metadata, as [`crate::plan`] would plan it against an empty origin with
/// [`Options::full`], in walk order instead (see the module documentation). Of `options`, only
/// `skip_xattrs`, `scope`, `live` and `estimate` matter here: there is nothing to compare and nothing to
/// identify.
pub fn plan_full<C: Consumer + ?Sized>(
    target_root: &Path,
    options: &Options,
    consumer: &mut C,
) -> Result<Summary> {
    let roots = Roots::open_target(target_root)?;
    if options.estimate {
        consumer.estimate(&crate::estimate::of_tree(&roots, &options.scope));
    }
    let mut p = Planner {
        details: DiskDetails::new(&roots, options),
        roots: &roots,
        options,
        watch: Watch::new(options.live),
        consumer,
        buf: Vec::with_capacity(DIRENT_BUF),
        linked: HashMap::new(),
        unsearchable: Vec::new(),
        seq: 0,
        summary: Summary::default(),
    };
    p.run().map_err(|e| e.drift(options.live))?;
    let mut summary = p.summary;
    summary.inventory_objects = summary.updates;
    summary.content = p.details.stats();
    Ok(summary)
}

/// An object with several names, from its first name met until its last.
struct Linked {
    kind: Kind,
    /// Where it was created: the `existing` of its later links.
    first: Vec<u8>,
    /// Names met so far.
    seen: u64,
    /// Names it has (some may lie outside the tree).
    nlink: u64,
    /// Order of first sight, so that the leftovers go out in walk order.
    seq: u64,
    /// Its metadata while its Update waits for the last name (a file with immutable or
    /// append-only set, which forbid linking).
    waiting: Option<Meta>,
}

/// A directory being visited: its metadata and its entries not visited yet.
struct Level {
    meta: Meta,
    rest: std::vec::IntoIter<DEnt>,
}

struct Planner<'r, 'c, C: ?Sized> {
    roots: &'r Roots,
    options: &'r Options,
    watch: Watch,
    details: DiskDetails<'r>,
    consumer: &'c mut C,
    buf: Vec<u8>,
    /// Objects with several names of which some were met and some not yet, by inode number.
    /// Keyed by device too: with `cross_mounts` the tree spans several file systems.
    linked: HashMap<(u64, u64), Linked>,
    /// Directories their owner cannot search (no `u+x`), in post-order: their Updates wait for
    /// the end, since a receiver not running as root could not reach a name below them once
    /// their mode is set (a later `link` to a file in there, a waiting Update).
    unsearchable: Vec<(Vec<u8>, Meta)>,
    seq: u64,
    summary: Summary,
}

fn dup(fd: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Error::io(Side::Target, path, "dup", e))
}

impl<C: Consumer + ?Sized> Planner<'_, '_, C> {
    /// One consumer call, unless the consumer asked to stop.
    fn op(&mut self, f: impl FnOnce(&mut C) -> Result<(), BoxError>) -> Result<()> {
        if self.consumer.stop() {
            return Err(Error::Stopped);
        }
        f(self.consumer).map_err(Error::Consumer)
    }

    fn run(&mut self) -> Result<()> {
        let root = self.roots.target_meta.clone();
        let mut ds = DirStack::open(self.roots, Side::Target, b"", root.ino)?;
        let mut levels = vec![self.level(&mut ds, root)?];
        while let Some(top) = levels.last_mut() {
            if let Some(e) = top.rest.next() {
                if let Some(sub) = self.entry(&mut ds, e)? {
                    levels.push(sub);
                }
                continue;
            }
            let Some(done) = levels.pop() else { break };
            if levels.is_empty() {
                // The root's Update is the last: first the files still waiting for names, then
                // the directories that would have locked them away.
                self.flush_waiting()?;
                for (path, meta) in std::mem::take(&mut self.unsearchable) {
                    let h = self.details.open(Side::Target, &path, Kind::Dir, Some(meta.ino))?;
                    self.update(path, meta, Some(Arc::new(h)))?;
                }
            }
            // All its entries are in: now its times, mode and flags.
            let path = ds.path.clone();
            if !levels.is_empty() && done.meta.mode & 0o100 == 0 {
                self.unsearchable.push((path, done.meta));
            } else {
                let h = Handle::Fd(dup(ds.top_fd()?, &path)?);
                self.update(path, done.meta, Some(Arc::new(h)))?;
            }
            if !levels.is_empty() {
                ds.pop();
            }
        }
        // Every listing must still hold before the stream may end.
        verify_listed(self.roots, &self.watch, &mut self.buf)?;
        self.consumer.end().map_err(Error::Consumer)
    }

    /// List the directory on top of `ds`.
    fn level(&mut self, ds: &mut DirStack, meta: Meta) -> Result<Level> {
        if self.consumer.stop() {
            return Err(Error::Stopped);
        }
        let path = ds.path.clone();
        let (scope, w) = (&self.options.scope, &mut self.watch);
        let entries =
            list_dir(ds.top_fd()?, &mut self.buf, Side::Target, &path, meta.ino, scope, w)?;
        self.summary.walk.dirs_listed += 1;
        Ok(Level { meta, rest: entries.into_iter() })
    }

    /// One entry of the directory on top of `ds`; a directory is entered and returned.
    fn entry(&mut self, ds: &mut DirStack, e: DEnt) -> Result<Option<Level>> {
        let path = join(&ds.path, &e.name);
        let meta =
            statx_at(ds.top_fd()?, e.name.as_slice(), Side::Target, &path, AtFlags::empty())?;
        self.summary.walk.entries_statted += 1;
        let tree_dev = self.roots.target_meta.dev;
        if self.options.scope.is_boundary(tree_dev, &meta) {
            return self.boundary(ds, &e.name, path, meta).map(|()| None);
        }
        let meta = adopt(
            &self.options.scope,
            tree_dev,
            self.watch.on(),
            Side::Target,
            &path,
            meta,
            e.ino,
        )?;
        if meta.kind == Kind::Dir {
            self.op(|c| c.mkdir(&path, &path))?;
            self.summary.namespace_ops += 1;
            ds.push(&e.name, meta.ino)?;
            let now = fstatx(ds.top_fd()?, Side::Target, &path)?;
            if now.ino != meta.ino || now.kind != Kind::Dir {
                return Err(not_walked(Side::Target, &path));
            }
            return self.level(ds, meta).map(Some);
        }
        if meta.nlink > 1 && self.linked.contains_key(&(meta.dev, meta.ino)) {
            self.later_name(ds, &e.name, path, meta)?;
            return Ok(None);
        }
        self.create(ds, &e.name, &path, &meta)?;
        let h = self.open_entry(ds, &e.name, &path, &meta)?;
        let (dev, ino, nlink, kind) = (meta.dev, meta.ino, meta.nlink, meta.kind);
        let first = (nlink > 1).then(|| path.clone());
        let mut u = self.filled(path, meta, h)?;
        let locked = u.flags.is_some_and(|f| f.target & FLAGS_LOCKING != 0);
        let waiting = if nlink > 1 && locked {
            // Linking its other names would fail once its flags are set: the Update waits.
            u.target_meta.take()
        } else {
            self.emit(u)?;
            None
        };
        if let Some(first) = first {
            self.seq += 1;
            let l = Linked { kind, first, seen: 1, nlink, seq: self.seq, waiting };
            self.linked.insert((dev, ino), l);
        }
        Ok(None)
    }

    /// A directory on another device: created, given its metadata (its own, as `ls -ld` shows
    /// it), and not entered.
    fn boundary(
        &mut self,
        ds: &mut DirStack,
        name: &[u8],
        path: Vec<u8>,
        meta: Meta,
    ) -> Result<()> {
        self.op(|c| c.mkdir(&path, &path))?;
        self.summary.namespace_ops += 1;
        let fd = openat(
            ds.top_fd()?,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(Side::Target, &path, "openat", e))?;
        let now = fstatx(&fd, Side::Target, &path)?;
        if now.ino != meta.ino || now.kind != Kind::Dir {
            return Err(not_walked(Side::Target, &path));
        }
        self.update(path, meta, Some(Arc::new(Handle::Fd(fd))))
    }

    /// A later name of a multiply-linked object: a link to its first name; at its last name, the
    /// Update that waited for it.
    fn later_name(
        &mut self,
        ds: &mut DirStack,
        name: &[u8],
        path: Vec<u8>,
        meta: Meta,
    ) -> Result<()> {
        let Some(l) = self.linked.get_mut(&(meta.dev, meta.ino)) else {
            return Err(Error::Internal("later name of an object never met".into()));
        };
        if l.kind != meta.kind {
            return Err(not_walked(Side::Target, &path));
        }
        l.seen += 1;
        let first = l.first.clone();
        let last = l.seen >= l.nlink;
        self.op(|c| c.link(&path, &first))?;
        self.summary.namespace_ops += 1;
        if last {
            if let Some(l) = self.linked.remove(&(meta.dev, meta.ino)) {
                if l.waiting.is_some() {
                    let h = self.open_entry(ds, name, &path, &meta)?;
                    let u = self.filled(path, meta, h)?;
                    self.emit(u)?;
                }
            }
        }
        Ok(())
    }

    /// The Updates still waiting for names met nowhere in the tree, in walk order, at their
    /// first name.
    fn flush_waiting(&mut self) -> Result<()> {
        let mut left: Vec<Linked> = self.linked.drain().map(|(_, l)| l).collect();
        left.retain(|l| l.waiting.is_some());
        left.sort_by_key(|l| l.seq);
        for l in left {
            let Some(meta) = l.waiting else { continue };
            let h = self.details.open(Side::Target, &l.first, l.kind, Some(meta.ino))?;
            let u = self.filled(l.first, meta, Some(Arc::new(h)))?;
            self.emit(u)?;
        }
        Ok(())
    }

    /// Create the non-directory `name` of the directory on top of `ds`.
    fn create(&mut self, ds: &mut DirStack, name: &[u8], path: &[u8], meta: &Meta) -> Result<()> {
        match meta.kind {
            Kind::File => self.op(|c| c.create(path, path))?,
            Kind::Symlink => {
                let to = readlink(ds.top_fd()?, name, Side::Target, path)?;
                self.op(|c| c.symlink(path, path, &to))?;
            }
            k if k.is_node() => self.op(|c| c.mknod(path, path, k, meta.rdev))?,
            k => return Err(Error::Internal(format!("create of a {k:?}"))),
        }
        self.summary.namespace_ops += 1;
        Ok(())
    }

    /// Open the non-directory `name` of the directory on top of `ds` to read its details, if
    /// anything is to be read: a file by its own fd (checked to be the object stated), other
    /// kinds, which must not be opened, by their directory.
    fn open_entry(
        &mut self,
        ds: &mut DirStack,
        name: &[u8],
        path: &[u8],
        meta: &Meta,
    ) -> Result<Option<Arc<Handle>>> {
        if !self.details.wants(meta.kind, &MetaDiff::all()) {
            return Ok(None);
        }
        let dir = ds.top_fd()?;
        let h = if meta.kind == Kind::File {
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = openat(dir, name, flags, Mode::empty())
                .map_err(|e| Error::io(Side::Target, path, "openat", e))?;
            let now = fstatx(&fd, Side::Target, path)?;
            if now.ino != meta.ino || now.kind != Kind::File {
                return Err(not_walked(Side::Target, path));
            }
            Handle::Fd(fd)
        } else {
            Handle::At { dir: dup(dir, path)?, name: name.to_vec() }
        };
        Ok(Some(Arc::new(h)))
    }

    /// The Update of a new object at `path`, its details read through `h`.
    fn filled(&mut self, path: Vec<u8>, meta: Meta, h: Option<Arc<Handle>>) -> Result<Update> {
        let kind = meta.kind;
        let mut u = Update {
            path: path.clone(),
            target_path: path,
            origin_path: None,
            kind,
            diff: MetaDiff::all(),
            content: (kind == Kind::File).then(|| ContentDelta::whole(meta.size)),
            target_meta: Some(meta),
            xattrs: None,
            flags: None,
            opened: Opened::default(),
        };
        if let Some(h) = h {
            self.details.fill_opened(kind, h, None, &mut u)?;
        }
        Ok(u)
    }

    fn emit(&mut self, u: Update) -> Result<()> {
        if let Some(c) = &u.content {
            self.summary.changed_bytes += c.ranges.iter().map(|r| r.end - r.start).sum::<u64>();
        }
        self.op(|c| c.update(&u))?;
        self.summary.updates += 1;
        Ok(())
    }

    /// The Update of a new object, emitted now.
    fn update(&mut self, path: Vec<u8>, meta: Meta, h: Option<Arc<Handle>>) -> Result<()> {
        let u = self.filled(path, meta, h)?;
        self.emit(u)
    }
}
