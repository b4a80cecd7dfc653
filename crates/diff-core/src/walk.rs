//! The fd-relative walker: reads both snapshots and records into a [`LinkCollector`] only what
//! it cannot prove unchanged.
//!
//! * Every directory is opened with `openat` relative to its parent's fd and listed with
//!   `getdents64` (`RawDir`, one large reused buffer); names are raw bytes and each listing is
//!   sorted by name bytes, so the two listings of a directory present in both snapshots merge in
//!   one linear pass into common / origin-only / target-only entries.
//! * No absolute (or long relative) path is ever given to a syscall: paths are kept only as byte
//!   strings for reporting, so depth and name length are unlimited. Open fds are bounded:
//!   [`DirStack`] keeps at most `MAX_OPEN` directory fds per side open and re-opens a closed
//!   ancestor component by component when the walk returns to it.
//! * Identity needs to see everything that moved, including into new and out of deleted
//!   subtrees, so one-sided directories are not walked when found: they wait in `pending`, keyed
//!   by inode number. A target-only and an origin-only directory with the same identity become a
//!   pair and are walked together (a moved directory's subtree is compared, not re-sent); the
//!   rest are expanded one level at a time (their entries recorded, their subdirectories pending
//!   again) until nothing is pending: a fixed point. Target-side expansion goes first so that a
//!   directory moved out of a deleted subtree is usually matched before its old home is expanded.
//! * Recorded: one-sided entries, common names whose identity differs, multiply-linked objects
//!   (all their names, so hard links can be diffed), objects whose quick check fails, and the
//!   chain of common directories above any of these (both sides), so memory follows the number
//!   of changed entries, not the size of the tree.
//!
//! * With a [`ChangeIndex`] (btrfs snapshots of one subvolume), a name present in both listings
//!   with the same inode number that the index proves unchanged is skipped without a `statx`,
//!   and a directory so proven is not entered: the walk then costs the directories above the
//!   changes, not the tree.
//!
//! * Boundaries and exclusions ([`Scope`]): a directory on another device is recorded (under a
//!   stand-in identity, [`boundary_ino`]) but not entered; an excluded name is dropped from its
//!   directory's listing, on each side by that side's path.
//! * A tree that may change (`live`) has every listing checked ([`Watch`]): before and after it,
//!   and once more at the end of the walk.
//!
//! `d_type` decides nothing on its own: every entry that is compared or recorded is `statx`ed
//! (needed anyway for the quick check), which also covers `DT_UNKNOWN`.

use crate::btrfs::ChangeIndex;
use crate::error::{Error, Result, Side};
use crate::inventory::Inventory;
use crate::links::{compare, Identity, LinkCollector};
use crate::live::{listing_hash, Watch};
use crate::model::join;
use crate::plan::ORPHAN_DIR;
use crate::props::{self, At};
use crate::scope::Scope;
use crate::stat::{boundary_ino, is_boundary_ino, statx_at, Kind, Meta, Timestamp};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, AtFlags, Mode, OFlags, RawDir, CWD};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

/// Directory fds kept open per side and walk (plus the walk's start directory).
const MAX_OPEN: usize = 32;
/// getdents64 buffer, reused for every listing.
pub(crate) const DIRENT_BUF: usize = 256 * 1024;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The snapshot roots, opened once: both of them, or (a full stream) only the target.
pub struct Roots {
    /// None for a full stream, which has no origin to read.
    pub(crate) origin: Option<(OwnedFd, Meta)>,
    pub(crate) target: OwnedFd,
    pub(crate) target_meta: Meta,
}

fn open_root(p: &Path, side: Side) -> Result<(OwnedFd, Meta)> {
    let show = p.as_os_str().as_encoded_bytes();
    let fd = openat(CWD, p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(side, show, "open root", e))?;
    let meta = fstatx(&fd, side, b"")?;
    Ok((fd, meta))
}

impl Roots {
    /// Open both roots (the only paths ever resolved from the current directory).
    pub fn open(origin: &Path, target: &Path) -> Result<Roots> {
        let origin = open_root(origin, Side::Origin)?;
        let (target, target_meta) = open_root(target, Side::Target)?;
        Ok(Roots { origin: Some(origin), target, target_meta })
    }

    /// Open only the target root, for a full stream: asking for the origin is then an error.
    pub fn open_target(target: &Path) -> Result<Roots> {
        let (target, target_meta) = open_root(target, Side::Target)?;
        Ok(Roots { origin: None, target, target_meta })
    }

    pub(crate) fn fd(&self, side: Side) -> Result<BorrowedFd<'_>> {
        match side {
            Side::Origin => self.origin.as_ref().map(|(fd, _)| fd.as_fd()).ok_or_else(no_origin),
            Side::Target => Ok(self.target.as_fd()),
        }
    }

    pub(crate) fn origin_meta(&self) -> Result<&Meta> {
        self.origin.as_ref().map(|(_, m)| m).ok_or_else(no_origin)
    }
}

fn no_origin() -> Error {
    Error::Internal("the origin of a full stream was asked for".into())
}

/// `statx` of an open fd.
pub(crate) fn fstatx<Fd: AsFd>(fd: Fd, side: Side, path: &[u8]) -> Result<Meta> {
    statx_at(fd, c"", side, path, AtFlags::EMPTY_PATH)
}

/// Longest path handed to one `openat2` call: below `PATH_MAX` (4096) with room to spare.
const PATH_CHUNK: usize = 4000;

/// Open `rel` (relative to the side's root, components separated by `/`) without following any
/// symlink and without leaving the root; the last component is opened with `last` flags.
///
/// The kernel walks the path (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), one call
/// per chunk of under 4,000 bytes, so a deep tree needs no path-length limit and a shallow one
/// costs one syscall instead of an open and close per component. Where `openat2` is missing
/// (Linux before 5.6) the path is opened one component at a time with `O_NOFOLLOW`.
pub(crate) fn open_rel(roots: &Roots, side: Side, rel: &[u8], last: OFlags) -> Result<OwnedFd> {
    use rustix::fs::{openat2, ResolveFlags};
    let root = roots.fd(side)?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    // The common case, one call and no splitting: a path short enough for the kernel.
    if !rel.is_empty() && rel.len() < PATH_CHUNK {
        let flags = last | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat2(root, rel, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::NOSYS) => {}
            r => return r.map_err(|e| Error::io(side, rel, "openat2", e)),
        }
    }
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        return openat(root, c".", last | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(side, rel, "openat", e));
    }
    let mut cur: Option<OwnedFd> = None;
    let mut start = 0;
    let mut chunk: Vec<u8> = Vec::with_capacity(rel.len().min(PATH_CHUNK));
    while start < comps.len() {
        chunk.clear();
        let mut end = start;
        while end < comps.len() && (end == start || chunk.len() + 1 + comps[end].len() < PATH_CHUNK)
        {
            if end > start {
                chunk.push(b'/');
            }
            chunk.extend_from_slice(comps[end]);
            end += 1;
        }
        let flags = if end == comps.len() {
            last | OFlags::NOFOLLOW | OFlags::CLOEXEC
        } else {
            dir_flags()
        };
        let base = cur.as_ref().map_or(root, |f| f.as_fd());
        let fd = match openat2(base, chunk.as_slice(), flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::NOSYS) => open_components(base, &comps[start..end], flags)
                .map_err(|e| Error::io(side, rel, "openat", e))?,
            r => r.map_err(|e| Error::io(side, rel, "openat2", e))?,
        };
        cur = Some(fd);
        start = end;
    }
    cur.ok_or_else(|| Error::Internal("empty path".into()))
}

/// `comps` opened one at a time from `base` with `O_NOFOLLOW`; the last with `last`.
fn open_components(
    base: BorrowedFd<'_>,
    comps: &[&[u8]],
    last: OFlags,
) -> std::result::Result<OwnedFd, rustix::io::Errno> {
    let mut cur: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        let flags = if i + 1 == comps.len() { last } else { dir_flags() };
        let fd = openat(cur.as_ref().map_or(base, |f| f.as_fd()), *c, flags, Mode::empty())?;
        cur = Some(fd);
    }
    cur.ok_or(rustix::io::Errno::INVAL)
}

struct DFrame {
    name: Vec<u8>,
    ino: u64,
    fd: Option<OwnedFd>,
    path_len: usize,
}

/// A chain of open directories on one side with a bounded number of open fds.
pub(crate) struct DirStack {
    side: Side,
    frames: Vec<DFrame>,
    /// Path of the top directory, relative to the side's root.
    pub(crate) path: Vec<u8>,
}

impl DirStack {
    pub(crate) fn open(roots: &Roots, side: Side, path: &[u8], ino: u64) -> Result<DirStack> {
        // A fresh open file description, so listing does not move a shared offset.
        let fd = open_rel(roots, side, path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let meta = fstatx(&fd, side, path)?;
        if meta.ino != ino || meta.kind != Kind::Dir {
            return Err(Error::changed(side, path, "another object is there now"));
        }
        Ok(DirStack {
            side,
            frames: vec![DFrame { name: Vec::new(), ino, fd: Some(fd), path_len: path.len() }],
            path: path.to_vec(),
        })
    }

    pub(crate) fn top_fd(&mut self) -> Result<BorrowedFd<'_>> {
        let top = self.frames.len() - 1;
        if self.frames[top].fd.is_none() {
            self.reopen(top)?;
        }
        self.frames[top]
            .fd
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| Error::Internal("no fd".into()))
    }

    fn reopen(&mut self, k: usize) -> Result<()> {
        let Some(j) = (0..k).rev().find(|&j| self.frames[j].fd.is_some()) else {
            return Err(Error::Internal("start directory closed".into()));
        };
        let mut cur: Option<OwnedFd> = None;
        for i in j + 1..=k {
            let base = match &cur {
                Some(f) => f.as_fd(),
                None => self.frames[j]
                    .fd
                    .as_ref()
                    .map(|f| f.as_fd())
                    .ok_or_else(|| Error::Internal("no fd".into()))?,
            };
            let path = &self.path[..self.frames[i].path_len];
            let fd = openat(base, self.frames[i].name.as_slice(), dir_flags(), Mode::empty())
                .map_err(|e| Error::io(self.side, path, "openat", e))?;
            cur = Some(fd);
        }
        let fd = cur.ok_or_else(|| Error::Internal("nothing reopened".into()))?;
        let meta = fstatx(&fd, self.side, &self.path[..self.frames[k].path_len])?;
        if meta.ino != self.frames[k].ino {
            let path = &self.path[..self.frames[k].path_len];
            return Err(Error::changed(self.side, path, "another object is there now"));
        }
        self.frames[k].fd = Some(fd);
        self.limit();
        Ok(())
    }

    /// Close the shallowest open fds (never the start directory or the top) beyond MAX_OPEN.
    fn limit(&mut self) {
        let top = self.frames.len() - 1;
        let mut open = self.frames.iter().filter(|f| f.fd.is_some()).count();
        let mut i = 1;
        while open > MAX_OPEN && i < top {
            if self.frames[i].fd.take().is_some() {
                open -= 1;
            }
            i += 1;
        }
    }

    pub(crate) fn push(&mut self, name: &[u8], ino: u64) -> Result<()> {
        let path = join(&self.path, name);
        let side = self.side;
        let fd = {
            let parent = self.top_fd()?;
            openat(parent, name, dir_flags(), Mode::empty())
                .map_err(|e| Error::io(side, &path, "openat", e))?
        };
        self.path = path;
        self.frames.push(DFrame {
            name: name.to_vec(),
            ino,
            fd: Some(fd),
            path_len: self.path.len(),
        });
        self.limit();
        Ok(())
    }

    pub(crate) fn pop(&mut self) {
        self.frames.pop();
        if let Some(f) = self.frames.last() {
            self.path.truncate(f.path_len);
        }
    }
}

/// One directory entry from getdents64.
pub(crate) struct DEnt {
    pub(crate) name: Vec<u8>,
    pub(crate) ino: u64,
}

/// The entries of directory `fd` but `.` and `..`, sorted by name bytes, read through `buf`
/// (reused for every listing; its capacity is the getdents64 buffer).
pub(crate) fn list(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    side: Side,
    path: &[u8],
) -> Result<Vec<DEnt>> {
    let mut out = Vec::new();
    let mut iter = RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(e) = iter.next() {
        let e = e.map_err(|e| Error::io(side, path, "getdents64", e))?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(DEnt { name: name.to_vec(), ino: e.ino() });
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The entries of directory `fd` (at `path`, meant to be inode `ino`) as [`list`] gives them,
/// less those `scope` excludes; with `watch` on, checked before and after the listing and
/// remembered for the final check.
#[allow(clippy::too_many_arguments)]
pub(crate) fn list_dir(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    side: Side,
    path: &[u8],
    ino: u64,
    scope: &Scope,
    watch: &mut Watch,
) -> Result<Vec<DEnt>> {
    let before = if watch.on() { Some(fstatx(fd, side, path)?) } else { None };
    if let Some(b) = &before {
        Watch::check_dir(side, path, ino, b)?;
    }
    let mut entries = list(fd, buf, side, path)?;
    if let Some(b) = &before {
        let after = fstatx(fd, side, path)?;
        let hash = || listing_hash(entries.iter().map(|e| (e.name.as_slice(), e.ino)));
        watch.listed(side, path, b, &after, hash)?;
    }
    if scope.filters() {
        entries.retain(|e| !scope.excluded(&join(path, &e.name)));
    }
    Ok(entries)
}

/// The final check of a live walk: every directory `watch` saw listed is looked at again.
pub(crate) fn verify_listed(roots: &Roots, watch: &Watch, buf: &mut Vec<u8>) -> Result<()> {
    if !watch.on() {
        return Ok(());
    }
    watch.verify(|side, path, relist| {
        let fd = open_rel(roots, side, path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let meta = fstatx(&fd, side, path)?;
        let hash = if relist {
            let l = list(fd.as_fd(), buf, side, path)?;
            Some(listing_hash(l.iter().map(|e| (e.name.as_slice(), e.ino))))
        } else {
            None
        };
        Ok((meta, hash))
    })
}

/// The metadata a walk keeps of an entry listed with inode number `listed`: a directory on
/// another device than `tree_dev` gets its stand-in identity (it will not be entered). For a
/// `live` tree the entry must be the object the listing named.
pub(crate) fn adopt(
    scope: &Scope,
    tree_dev: u64,
    live: bool,
    side: Side,
    path: &[u8],
    meta: Meta,
    listed: u64,
) -> Result<Meta> {
    if scope.is_boundary(tree_dev, &meta) {
        return Ok(Meta { ino: boundary_ino(listed), ..meta });
    }
    // A mount point's listing names the directory under it: only same-device entries compare.
    if live && meta.ino != listed && meta.dev == tree_dev {
        return Err(Error::changed(side, path, "it is not the object its directory listed"));
    }
    Ok(meta)
}

pub(crate) fn readlink(
    fd: BorrowedFd<'_>,
    name: &[u8],
    side: Side,
    path: &[u8],
) -> Result<Vec<u8>> {
    rustix::fs::readlinkat(fd, name, Vec::new())
        .map(|c| c.into_bytes())
        .map_err(|e| Error::io(side, path, "readlinkat", e))
}

#[derive(Clone)]
struct PendingDir {
    path: Vec<u8>,
    meta: Meta,
}

struct PairFrame {
    o_meta: Meta,
    t_meta: Meta,
    o_name: Vec<u8>,
    t_name: Vec<u8>,
    registered: bool,
    subdirs: std::vec::IntoIter<(Vec<u8>, Meta, Vec<u8>, Meta)>,
}

struct Walker<'a> {
    roots: &'a Roots,
    scope: &'a Scope,
    watch: Watch,
    /// Device of each root; [0] origin, [1] target.
    devs: [u64; 2],
    identity: Identity,
    c: LinkCollector,
    buf: Vec<u8>,
    /// One-sided directories not yet paired or expanded, by inode number; [0] origin, [1] target.
    pending: [BTreeMap<u64, PendingDir>; 2],
    pairs: VecDeque<(PendingDir, PendingDir)>,
    stop: &'a mut dyn FnMut() -> bool,
    index: Option<&'a ChangeIndex>,
    stats: WalkStats,
}

/// What a walk did: how much it read, and how much the change index let it skip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Directory listings read (both sides).
    pub dirs_listed: u64,
    /// Entries `statx`ed.
    pub entries_statted: u64,
    /// Entries present under the same name in both snapshots that the index proved unchanged:
    /// neither stated nor, for directories, entered.
    pub entries_skipped: u64,
    /// Names present in both listings of a directory pair that were the same object in both
    /// (skipped ones included): with inode identity, a measure of what the trees share.
    pub same_objects: u64,
}

fn si(side: Side) -> usize {
    match side {
        Side::Origin => 0,
        Side::Target => 1,
    }
}

/// Walk both snapshots and build the planner's inventory. `stop` is polled once per directory.
/// With an `index`, common entries it proves unchanged are skipped (see [`crate::btrfs`]); it is
/// only consulted for inode identity, where a number means one object in both snapshots.
/// `scope` says where the walk stops and what it leaves out; `live` that a tree may change
/// under it, so every listing is checked (see [`crate::live`]).
#[allow(clippy::too_many_arguments)]
pub fn walk(
    roots: &Roots,
    identity: Identity,
    horizon: Option<Timestamp>,
    index: Option<&ChangeIndex>,
    scope: &Scope,
    live: bool,
    stop: &mut dyn FnMut() -> bool,
) -> Result<(Inventory, WalkStats)> {
    let mut w = Walker {
        roots,
        scope,
        watch: Watch::new(live),
        devs: [roots.origin_meta()?.dev, roots.target_meta.dev],
        identity,
        c: LinkCollector::new(identity, roots.origin_meta()?.clone(), roots.target_meta.clone())
            .with_ctime_horizon(horizon),
        buf: Vec::with_capacity(DIRENT_BUF),
        pending: [BTreeMap::new(), BTreeMap::new()],
        pairs: VecDeque::new(),
        stop,
        index: index.filter(|_| identity == Identity::Inode),
        stats: WalkStats::default(),
    };
    let (o_root, t_root) = (At::Fd(roots.fd(Side::Origin)?), At::Fd(roots.fd(Side::Target)?));
    w.props_differ(o_root, b"", t_root, b"", Kind::Dir, roots.target_meta.ino)?;
    let root = |m: &Meta| PendingDir { path: Vec::new(), meta: m.clone() };
    w.walk_pair(root(roots.origin_meta()?), root(&roots.target_meta), true)?;
    loop {
        if let Some((o, t)) = w.pairs.pop_front() {
            w.walk_pair(o, t, false)?;
        } else if let Some((_, d)) = w.pending[1].pop_first() {
            w.expand(Side::Target, d)?;
        } else if let Some((_, d)) = w.pending[0].pop_first() {
            w.expand(Side::Origin, d)?;
        } else {
            break;
        }
    }
    verify_listed(roots, &w.watch, &mut w.buf)?;
    let stats = w.stats.clone();
    Ok((w.c.finish()?, stats))
}

impl Walker<'_> {
    fn adopt(&self, side: Side, path: &[u8], meta: Meta, listed: u64) -> Result<Meta> {
        adopt(self.scope, self.devs[si(side)], self.watch.on(), side, path, meta, listed)
    }

    fn check_stop(&mut self) -> Result<()> {
        if (self.stop)() {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    /// Path identity: whether two objects that stat shows equal differ in what it does not show
    /// (xattrs, inode flags: see [`crate::props`]); if so the collector is told. Inode identity
    /// needs no such look, since any such change moves ctime.
    fn props_differ(
        &mut self,
        o: At<'_>,
        opath: &[u8],
        t: At<'_>,
        tpath: &[u8],
        kind: Kind,
        t_ino: u64,
    ) -> Result<bool> {
        if self.identity != Identity::Path || !props::differ(o, opath, t, tpath, kind)? {
            return Ok(false);
        }
        self.c.props_differ(t_ino);
        Ok(true)
    }

    /// A one-sided directory: pair it with its other half if that is waiting, else wait.
    fn add_pending(&mut self, side: Side, d: PendingDir) {
        let other = 1 - si(side);
        if self.identity == Identity::Inode {
            if let Some(o) = self.pending[other].get(&d.meta.ino) {
                if o.meta.same_object(&d.meta) {
                    if let Some(o) = self.pending[other].remove(&d.meta.ino) {
                        match side {
                            Side::Origin => self.pairs.push_back((d, o)),
                            Side::Target => self.pairs.push_back((o, d)),
                        }
                    }
                    return;
                }
            }
        }
        self.pending[si(side)].insert(d.meta.ino, d);
    }

    /// Record the common directories of the current pair walk on both sides, innermost first
    /// until one already recorded.
    fn register(&mut self, frames: &mut [PairFrame]) -> Result<()> {
        let mut k = frames.len();
        while k > 0 && !frames[k - 1].registered {
            k -= 1;
        }
        for i in k..frames.len() {
            let (parent, me) = frames.split_at_mut(i);
            let (Some(p), Some(f)) = (parent.last(), me.first_mut()) else {
                return Err(Error::Internal("unregistered walk start".into()));
            };
            self.c.record(Side::Origin, p.o_meta.ino, &f.o_name, &f.o_meta, None);
            self.c.record(Side::Target, p.t_meta.ino, &f.t_name, &f.t_meta, None);
            if self.identity == Identity::Path && !self.c.pair(f.o_meta.ino, f.t_meta.ino) {
                return Err(Error::Inconsistent(format!(
                    "directory {:?} paired twice",
                    String::from_utf8_lossy(&f.t_name)
                )));
            }
            f.registered = true;
        }
        Ok(())
    }

    fn one_sided(
        &mut self,
        side: Side,
        dir: BorrowedFd<'_>,
        dir_path: &[u8],
        parent_ino: u64,
        name: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let path = join(dir_path, name);
        let lt =
            if meta.kind == Kind::Symlink { Some(readlink(dir, name, side, &path)?) } else { None };
        self.c.record(side, parent_ino, name, meta, lt.as_deref());
        if meta.kind == Kind::Dir && !is_boundary_ino(meta.ino) {
            self.add_pending(side, PendingDir { path, meta: meta.clone() });
        }
        Ok(())
    }

    fn walk_pair(&mut self, o: PendingDir, t: PendingDir, is_root: bool) -> Result<()> {
        let mut os = DirStack::open(self.roots, Side::Origin, &o.path, o.meta.ino)?;
        let mut ts = DirStack::open(self.roots, Side::Target, &t.path, t.meta.ino)?;
        let mut frames = vec![PairFrame {
            o_meta: o.meta,
            t_meta: t.meta,
            o_name: Vec::new(),
            t_name: Vec::new(),
            registered: true,
            subdirs: Vec::new().into_iter(),
        }];
        let subs = self.scan_pair(&mut os, &mut ts, &mut frames, is_root)?;
        frames[0].subdirs = subs.into_iter();
        while let Some(top) = frames.last_mut() {
            match top.subdirs.next() {
                Some((on, om, tn, tm)) => {
                    os.push(&on, om.ino)?;
                    ts.push(&tn, tm.ino)?;
                    let changed = compare(&om, &tm, self.identity, self.c.horizon()).is_some()
                        || self.identity == Identity::Path && {
                            let (opath, tpath) = (os.path.clone(), ts.path.clone());
                            let (o, t) = (At::Fd(os.top_fd()?), At::Fd(ts.top_fd()?));
                            self.props_differ(o, &opath, t, &tpath, Kind::Dir, tm.ino)?
                        };
                    frames.push(PairFrame {
                        o_meta: om,
                        t_meta: tm,
                        o_name: on,
                        t_name: tn,
                        registered: false,
                        subdirs: Vec::new().into_iter(),
                    });
                    if changed {
                        self.register(&mut frames)?;
                    }
                    let subs = self.scan_pair(&mut os, &mut ts, &mut frames, false)?;
                    if let Some(f) = frames.last_mut() {
                        f.subdirs = subs.into_iter();
                    }
                }
                None => {
                    frames.pop();
                    if !frames.is_empty() {
                        os.pop();
                        ts.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// Merge the listings of the current (origin, target) directory pair; returns the common
    /// subdirectories to descend into.
    #[allow(clippy::type_complexity)]
    fn scan_pair(
        &mut self,
        os: &mut DirStack,
        ts: &mut DirStack,
        frames: &mut [PairFrame],
        is_root: bool,
    ) -> Result<Vec<(Vec<u8>, Meta, Vec<u8>, Meta)>> {
        self.check_stop()?;
        let (o_ino, t_ino) = match frames.last() {
            Some(f) => (f.o_meta.ino, f.t_meta.ino),
            None => return Err(Error::Internal("no frame".into())),
        };
        let opath = os.path.clone();
        let tpath = ts.path.clone();
        let ofd = os.top_fd()?;
        let tfd = ts.top_fd()?;
        let (scope, w) = (self.scope, &mut self.watch);
        let ol = list_dir(ofd, &mut self.buf, Side::Origin, &opath, o_ino, scope, w)?;
        let tl = list_dir(tfd, &mut self.buf, Side::Target, &tpath, t_ino, scope, w)?;
        self.stats.dirs_listed += 2;
        if is_root {
            for e in ol.iter().chain(tl.iter()) {
                if e.name.starts_with(ORPHAN_DIR) {
                    self.c.reserve_root_name(&e.name);
                }
            }
        }
        let mut subdirs = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < ol.len() || j < tl.len() {
            let ord = match (ol.get(i), tl.get(j)) {
                (Some(a), Some(b)) => a.name.cmp(&b.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    let e = &ol[i];
                    self.stats.entries_statted += 1;
                    let p = join(&opath, &e.name);
                    let m = statx_at(ofd, &e.name, Side::Origin, &p, AtFlags::empty())?;
                    let m = self.adopt(Side::Origin, &p, m, e.ino)?;
                    self.register(frames)?;
                    self.one_sided(Side::Origin, ofd, &opath, o_ino, &e.name, &m)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let e = &tl[j];
                    self.stats.entries_statted += 1;
                    let p = join(&tpath, &e.name);
                    let m = statx_at(tfd, &e.name, Side::Target, &p, AtFlags::empty())?;
                    let m = self.adopt(Side::Target, &p, m, e.ino)?;
                    self.register(frames)?;
                    self.one_sided(Side::Target, tfd, &tpath, t_ino, &e.name, &m)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (oe, te) = (&ol[i], &tl[j]);
                    if oe.ino == te.ino && self.index.is_some_and(|x| x.unchanged(oe.ino)) {
                        self.stats.entries_skipped += 1;
                        self.stats.same_objects += 1;
                        i += 1;
                        j += 1;
                        continue;
                    }
                    self.stats.entries_statted += 2;
                    let name = &oe.name;
                    let (op, tp) = (join(&opath, name), join(&tpath, name));
                    let om = statx_at(ofd, name, Side::Origin, &op, AtFlags::empty())?;
                    let tm = statx_at(tfd, name, Side::Target, &tp, AtFlags::empty())?;
                    let om = self.adopt(Side::Origin, &op, om, oe.ino)?;
                    let tm = self.adopt(Side::Target, &tp, tm, te.ino)?;
                    let (ob, tb) = (is_boundary_ino(om.ino), is_boundary_ino(tm.ino));
                    // Each name must be the object its listing named (a mount point's listing
                    // names the directory under it, so only same-device entries compare).
                    let listed = "it is not the object its directory listed";
                    if !ob && om.ino != oe.ino && om.dev == self.devs[0] {
                        return Err(Error::changed(Side::Origin, &op, listed));
                    }
                    if !tb && tm.ino != te.ino && tm.dev == self.devs[1] {
                        return Err(Error::changed(Side::Target, &tp, listed));
                    }
                    let mut lts = None;
                    let mut same = om.kind == tm.kind
                        && match self.identity {
                            Identity::Inode => om.ino == tm.ino && om.same_object(&tm),
                            Identity::Path => om.same_object(&Meta { btime: None, ..tm.clone() }),
                        };
                    if same
                        && om.kind == Kind::Symlink
                        && (self.identity == Identity::Path
                            || compare(&om, &tm, self.identity, self.c.horizon()).is_some())
                    {
                        let a = readlink(ofd, name, Side::Origin, &opath)?;
                        let b = readlink(tfd, name, Side::Target, &tpath)?;
                        same = a == b;
                        lts = Some((a, b));
                    }
                    let multi = om.kind != Kind::Dir && (om.nlink > 1 || tm.nlink > 1);
                    if same && self.identity == Identity::Path && multi {
                        same = self.c.pair(om.ino, tm.ino);
                    }
                    self.stats.same_objects += u64::from(same);
                    if !same {
                        self.register(frames)?;
                        self.one_sided(Side::Origin, ofd, &opath, o_ino, name, &om)?;
                        self.one_sided(Side::Target, tfd, &tpath, t_ino, name, &tm)?;
                    } else if om.kind == Kind::Dir && !ob && !tb {
                        subdirs.push((name.clone(), om, te.name.clone(), tm));
                    } else if compare(&om, &tm, self.identity, self.c.horizon()).is_some()
                        || self.props_differ(
                            At::Entry(ofd, name),
                            &join(&opath, name),
                            At::Entry(tfd, name),
                            &join(&tpath, name),
                            om.kind,
                            tm.ino,
                        )?
                        || multi
                    {
                        self.register(frames)?;
                        let (a, b) = match (lts, om.kind) {
                            (Some((a, b)), _) => (Some(a), Some(b)),
                            (None, Kind::Symlink) => (
                                Some(readlink(ofd, name, Side::Origin, &opath)?),
                                Some(readlink(tfd, name, Side::Target, &tpath)?),
                            ),
                            _ => (None, None),
                        };
                        if self.identity == Identity::Path && !multi && !self.c.pair(om.ino, tm.ino)
                        {
                            return Err(Error::Inconsistent(format!(
                                "{:?} paired twice",
                                String::from_utf8_lossy(name)
                            )));
                        }
                        self.c.record(Side::Origin, o_ino, name, &om, a.as_deref());
                        self.c.record(Side::Target, t_ino, name, &tm, b.as_deref());
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(subdirs)
    }

    /// One level of a one-sided directory: every entry is recorded; subdirectories wait.
    fn expand(&mut self, side: Side, d: PendingDir) -> Result<()> {
        self.check_stop()?;
        let mut ds = DirStack::open(self.roots, side, &d.path, d.meta.ino)?;
        let fd = ds.top_fd()?;
        let (scope, w) = (self.scope, &mut self.watch);
        let entries = list_dir(fd, &mut self.buf, side, &d.path, d.meta.ino, scope, w)?;
        self.stats.dirs_listed += 1;
        self.stats.entries_statted += entries.len() as u64;
        for e in &entries {
            let p = join(&d.path, &e.name);
            let m = statx_at(fd, &e.name, side, &p, AtFlags::empty())?;
            let m = self.adopt(side, &p, m, e.ino)?;
            self.one_sided(side, fd, &d.path, d.meta.ino, &e.name, &m)?;
        }
        Ok(())
    }
}
