//! The streaming planner of full streams ([`plan_full`]) on real btrfs snapshots: for every
//! snapshot of every corpus scenario, and for trees made to stress its own rules (hardlinked
//! files carrying immutable or append-only, names outside the tree, a tree deeper than the
//! walker keeps fds open for), its plan
//!
//! * is valid on an empty receiver (every operation replayed on the namespace [`Model`]),
//! * keeps the order the receiver relies on: nothing goes into a directory after its Update, no
//!   link is made to a file after its immutable/append-only flags were set, one Update per
//!   object, the root's last,
//! * holds the same objects, names and Updates as the general planner's plan against an empty
//!   origin (compared per object: which of a file's names is created and which linked may
//!   differ), and
//! * is the same every time.

mod common;

use anysend_diff_core::{
    plan, plan_full, BoxError, Consumer, Error, Kind, Model, Op, Options, Recorder, Summary,
    Update, FLAGS_LOCKING,
};
use anysend_testbed::fsops::{
    add_flags, chmod, deep_names, hardlink, make_sparse, mkdir, mkdir_all, open_deep_dir, symlink,
    write_file, write_file_at,
};
use anysend_testbed::{corpus, require_privileged, run_scenario_on_btrfs, BtrfsFs};
use common::ops::path_of;
use rustix::fs::IFlags;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn streaming(target: &Path, what: &str) -> (Recorder, Summary) {
    let mut r = Recorder::default();
    let s = plan_full(target, &Options::default(), &mut r)
        .unwrap_or_else(|e| panic!("{what}: plan_full: {e}"));
    assert!(r.ended, "{what}: end not called");
    assert!(r.unlocks.is_empty(), "{what}: a full stream unlocks nothing");
    (r, s)
}

fn general(target: &Path, what: &str) -> Recorder {
    let empty = tempfile::tempdir().expect("empty origin");
    let mut r = Recorder::default();
    plan(empty.path(), target, &Options { full: true, ..Options::default() }, &mut r)
        .unwrap_or_else(|e| panic!("{what}: general plan: {e}"));
    r
}

/// How an object was made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Made {
    Dir,
    File,
    Symlink(Vec<u8>),
    Node(Kind, u64),
}

/// A plan replayed on an empty model: every object with its names, how it was made and its
/// Update (paths blanked: a multiply-linked file's Update may name any of its names).
type Objects = BTreeMap<BTreeSet<Vec<u8>>, (Made, Update)>;

/// `p` and every directory above it, the root (empty path) included.
fn ancestors(p: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![&p[..0]];
    out.extend(p.iter().enumerate().filter(|(_, &b)| b == b'/').map(|(i, _)| &p[..i]));
    out
}

/// Replay `ops` on an empty model (each must be accepted) and collect the objects. With
/// `rules`, also check the order rules of a streamed full plan.
fn replay(ops: &[Op], rules: bool, what: &str) -> Objects {
    let mut m = Model::new();
    let mut made: BTreeMap<usize, Made> = BTreeMap::new();
    made.insert(Model::ROOT, Made::Dir);
    let mut names: BTreeMap<usize, BTreeSet<Vec<u8>>> = BTreeMap::new();
    names.entry(Model::ROOT).or_default().insert(Vec::new());
    let mut updates: BTreeMap<usize, Update> = BTreeMap::new();
    let mut done_dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut locked: BTreeSet<usize> = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let node = m.apply(op).unwrap_or_else(|e| panic!("{what}: op {i} {op:?} refused: {e}"));
        match op {
            Op::Update(u) => {
                let mut blank = u.clone();
                if rules {
                    assert_eq!(u.path, u.target_path, "{what}: op {i}");
                    assert!(u.diff.new && u.origin_path.is_none(), "{what}: op {i} {u:?}");
                    if matches!(u.kind, Kind::File | Kind::Dir) {
                        assert!(u.opened.target.is_some(), "{what}: op {i} not opened: {u:?}");
                    }
                    if u.kind == Kind::Dir {
                        done_dirs.insert(u.path.clone());
                    }
                    if u.flags.is_some_and(|f| f.target & FLAGS_LOCKING != 0) {
                        locked.insert(node);
                    }
                }
                blank.path.clear();
                blank.target_path.clear();
                let again = updates.insert(node, blank);
                assert!(again.is_none(), "{what}: op {i}: a second Update of {:?}", u.path);
            }
            _ => {
                let p = path_of(op);
                names.entry(node).or_default().insert(p.to_vec());
                if rules {
                    for a in ancestors(p) {
                        assert!(
                            !done_dirs.contains(a),
                            "{what}: op {i} {op:?} goes into {a:?} after its Update"
                        );
                    }
                    if let Op::Link { .. } = op {
                        assert!(!locked.contains(&node), "{what}: op {i} {op:?}: a locked file");
                    }
                }
                let how = match op {
                    Op::Mkdir { .. } => Some(Made::Dir),
                    Op::Create { .. } => Some(Made::File),
                    Op::Symlink { link_target, .. } => Some(Made::Symlink(link_target.clone())),
                    Op::Mknod { kind, rdev, .. } => Some(Made::Node(*kind, *rdev)),
                    Op::Link { .. } => None,
                    other => panic!("{what}: op {i}: {other:?} in a full plan"),
                };
                if let Some(how) = how {
                    assert!(made.insert(node, how).is_none(), "{what}: op {i}: made twice");
                }
            }
        }
    }
    if rules {
        assert!(
            matches!(ops.last(), Some(Op::Update(u)) if u.path.is_empty()),
            "{what}: the root's Update is not the last"
        );
    }
    let mut out = Objects::new();
    for (node, how) in made {
        let u = updates.remove(&node).unwrap_or_else(|| panic!("{what}: node {node} no Update"));
        let n = names.remove(&node).unwrap_or_default();
        assert!(out.insert(n, (how, u)).is_none(), "{what}: two objects with one name set");
    }
    assert!(updates.is_empty(), "{what}: Updates of objects never made");
    out
}

/// The streamed plan of `target` keeps its rules, holds what the general plan holds, and is
/// the same on a second run.
fn check(target: &Path, what: &str) -> (Recorder, Summary) {
    let (s, summary) = streaming(target, what);
    let g = general(target, what);
    let mine = replay(&s.ops, true, what);
    let theirs = replay(&g.ops, false, what);
    let show = |o: &Objects| o.keys().map(|k| format!("{k:?}\n")).collect::<String>();
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{what}: other objects or names\nstreamed:\n{}general:\n{}",
        show(&mine),
        show(&theirs)
    );
    for (k, v) in &mine {
        assert_eq!(Some(v), theirs.get(k), "{what}: object {k:?} differs");
    }
    let ns = s.ops.iter().filter(|o| o.is_namespace()).count() as u64;
    assert_eq!(ns, g.ops.iter().filter(|o| o.is_namespace()).count() as u64, "{what}");
    assert_eq!(summary.namespace_ops, ns, "{what}");
    assert_eq!(summary.updates, s.ops.len() as u64 - ns, "{what}");
    let (again, _) = streaming(target, what);
    assert_eq!(s.ops, again.ops, "{what}: a second plan differs");
    (s, summary)
}

#[test]
fn full_plans_of_every_corpus_snapshot_match_the_general_planner() {
    let Some(_p) =
        require_privileged("full_plans_of_every_corpus_snapshot_match_the_general_planner")
    else {
        return;
    };
    let mut checked = 0;
    for sc in corpus() {
        let fs = BtrfsFs::new(512 * MIB);
        for (k, snap) in run_scenario_on_btrfs(&sc, &fs).iter().enumerate() {
            let what = format!("scenario {} snapshot {}", sc.name, k + 1);
            let (r, _) = check(snap, &what);
            checked += 1;
            // New files are sent whole; the sender skips their holes itself.
            for op in &r.ops {
                if let Op::Update(u) = op {
                    if u.kind == Kind::File {
                        let size = u.target_meta.as_ref().map_or(0, |m| m.size);
                        let c = u.content.as_ref().expect("content of a new file");
                        assert_eq!(c.new_size, size, "{what}");
                        assert_eq!(
                            c.ranges,
                            (size > 0).then_some(0..size).into_iter().collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }
    assert!(checked > corpus().len(), "{checked} snapshots");
}

fn position(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
    ops.iter().position(f).expect("operation in the plan")
}

fn update_of(p: &'static [u8]) -> impl Fn(&Op) -> bool {
    move |o| matches!(o, Op::Update(u) if u.path == p)
}

#[test]
fn locked_hardlinks_get_their_flags_after_their_last_name() {
    let Some(_p) = require_privileged("locked_hardlinks_get_their_flags_after_their_last_name")
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    for d in ["a", "b", "imm", "m", "outside", "z"] {
        mkdir(vol.join(d)).unwrap();
    }
    // Immutable, three names in three directories; append-only, two names in one directory.
    write_file(vol.join("a/f"), b"immutable, three names").unwrap();
    hardlink(vol.join("a/f"), vol.join("b/f2")).unwrap();
    hardlink(vol.join("a/f"), vol.join("z/f3")).unwrap();
    write_file(vol.join("a/g"), b"append-only, two names").unwrap();
    hardlink(vol.join("a/g"), vol.join("a/g2")).unwrap();
    // A plain file with a second name in a directory that is immutable in the end.
    write_file(vol.join("b/plain"), b"plain").unwrap();
    hardlink(vol.join("b/plain"), vol.join("imm/plain2")).unwrap();
    // Names outside m: seen from m alone, one immutable and one plain file keep names elsewhere.
    write_file(vol.join("m/x"), b"immutable, a name outside m").unwrap();
    hardlink(vol.join("m/x"), vol.join("outside/x2")).unwrap();
    write_file(vol.join("m/y"), b"plain, a name outside m").unwrap();
    hardlink(vol.join("m/y"), vol.join("outside/y2")).unwrap();
    symlink(b"x", vol.join("m/s")).unwrap();
    hardlink(vol.join("m/s"), vol.join("m/s2")).unwrap();
    add_flags(vol.join("a/f"), IFlags::IMMUTABLE).unwrap();
    add_flags(vol.join("a/g"), IFlags::APPEND).unwrap();
    add_flags(vol.join("m/x"), IFlags::IMMUTABLE).unwrap();
    add_flags(vol.join("imm"), IFlags::IMMUTABLE).unwrap();
    let snap = fs.snapshot_ro(&vol, "snap");

    let (r, _) = check(&snap, "locked hardlinks");
    let ops = &r.ops;
    let last_link = position(ops, |o| matches!(o, Op::Link { path, .. } if path == b"z/f3"));
    let f = ops.iter().position(|o| {
        matches!(o, Op::Update(u) if u.kind == Kind::File
        && u.flags.is_some_and(|f| f.target & IFlags::IMMUTABLE.bits() != 0)
        && u.target_meta.as_ref().is_some_and(|m| m.nlink == 3))
    });
    assert_eq!(f, Some(last_link + 1), "the immutable file's Update follows its last link");
    assert!(matches!(&ops[last_link + 1], Op::Update(u) if u.path == b"z/f3"));
    let g2 = position(ops, |o| matches!(o, Op::Link { path, .. } if path == b"a/g2"));
    assert!(matches!(&ops[g2 + 1], Op::Update(u) if u.path == b"a/g2"), "{:?}", ops[g2 + 1]);
    // Not locked: its Update comes with its first name.
    let plain = position(ops, update_of(b"b/plain"));
    assert!(plain < position(ops, |o| matches!(o, Op::Link { path, .. } if path == b"imm/plain2")));

    // From m: x's other name is never met, so its Update comes just before the root's.
    let (r, s) = check(&snap.join("m"), "locked hardlinks, from m");
    let n = r.ops.len();
    assert!(matches!(&r.ops[n - 2], Op::Update(u) if u.path == b"x"), "{:?}", r.ops[n - 2]);
    let y = position(&r.ops, |o| matches!(o, Op::Create { path, .. } if path == b"y"));
    assert!(matches!(&r.ops[y + 1], Op::Update(u) if u.path == b"y"), "not locked: at once");
    assert_eq!(s.updates, 4, "root, s, x, y (s2 is a link): {:?}", r.ops);
}

#[test]
fn unsearchable_directories_get_their_mode_at_the_end() {
    let Some(_p) = require_privileged("unsearchable_directories_get_their_mode_at_the_end") else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    for d in ["a", "a/inner", "b"] {
        mkdir(vol.join(d)).unwrap();
    }
    write_file(vol.join("a/inner/f"), b"two names").unwrap();
    hardlink(vol.join("a/inner/f"), vol.join("b/f2")).unwrap();
    chmod(vol.join("a/inner"), 0o600).unwrap();
    chmod(vol.join("a"), 0o644).unwrap();
    let snap = fs.snapshot_ro(&vol, "snap");
    let (r, _) = check(&snap, "unsearchable");
    let ops = &r.ops;
    // A receiver that is not root reaches a/inner/f for the link only while a and a/inner are
    // still searchable: their modes come after it, innermost first, then the root's.
    let link = position(ops, |o| matches!(o, Op::Link { path, .. } if path == b"b/f2"));
    let inner = position(ops, update_of(b"a/inner"));
    let a = position(ops, update_of(b"a"));
    assert!(link < inner && inner < a, "{ops:?}");
    assert_eq!(a + 2, ops.len(), "then only the root's Update: {ops:?}");
}

#[test]
fn a_tree_deeper_than_the_open_fds_is_planned_whole() {
    let Some(_p) = require_privileged("a_tree_deeper_than_the_open_fds_is_planned_whole") else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    // 80 levels of 60-byte names: 4,880 bytes, past PATH_MAX, and past the 32 directory fds the
    // walker keeps open, so it must open ancestors again on its way up.
    let names = deep_names(80, 60);
    for depth in [1, 20, 40, 79, 80] {
        let dir = open_deep_dir(&vol, &names[..depth], true).unwrap();
        write_file_at(&dir, format!("f{depth}").as_bytes(), b"deep").unwrap();
        mkdir_all(vol.join(format!("side{depth}"))).unwrap();
    }
    let leaf = open_deep_dir(&vol, &names, false).unwrap();
    write_file_at(&leaf, b"zz-last", b"after the deepest directory").unwrap();
    make_sparse(vol.join("sparse"), 8 * MIB, &[(4 * MIB, b"data")]).unwrap();
    write_file(vol.join("top"), b"top").unwrap();
    hardlink(vol.join("top"), vol.join("side80/top-again")).unwrap();
    let snap = fs.snapshot_ro(&vol, "snap");
    let (r, s) = check(&snap, "deep tree");
    assert!(r.ops.iter().any(|o| matches!(o, Op::Update(u) if u.path.len() > 4096)));
    assert_eq!(s.walk.dirs_listed, 1 + 80 + 5, "{:?}", s.walk);
}

/// Stops after `after` operations, or fails the one after them.
struct Cut {
    inner: Recorder,
    after: usize,
    fail: bool,
}

impl Consumer for Cut {
    fn mk_tmp_dir(&mut self, p: &[u8]) -> Result<(), BoxError> {
        self.inner.mk_tmp_dir(p)
    }
    fn mkdir(&mut self, p: &[u8], t: &[u8]) -> Result<(), BoxError> {
        self.check()?;
        self.inner.mkdir(p, t)
    }
    fn create(&mut self, p: &[u8], t: &[u8]) -> Result<(), BoxError> {
        self.check()?;
        self.inner.create(p, t)
    }
    fn symlink(&mut self, p: &[u8], t: &[u8], l: &[u8]) -> Result<(), BoxError> {
        self.check()?;
        self.inner.symlink(p, t, l)
    }
    fn mknod(&mut self, p: &[u8], t: &[u8], k: Kind, r: u64) -> Result<(), BoxError> {
        self.check()?;
        self.inner.mknod(p, t, k, r)
    }
    fn link(&mut self, p: &[u8], e: &[u8]) -> Result<(), BoxError> {
        self.check()?;
        self.inner.link(p, e)
    }
    fn unlink(&mut self, p: &[u8]) -> Result<(), BoxError> {
        self.inner.unlink(p)
    }
    fn rmdir(&mut self, p: &[u8]) -> Result<(), BoxError> {
        self.inner.rmdir(p)
    }
    fn rename(&mut self, f: &[u8], t: &[u8]) -> Result<(), BoxError> {
        self.inner.rename(f, t)
    }
    fn update(&mut self, u: &Update) -> Result<(), BoxError> {
        self.check()?;
        self.inner.update(u)
    }
    fn stop(&self) -> bool {
        !self.fail && self.inner.ops.len() >= self.after
    }
}

impl Cut {
    fn check(&self) -> Result<(), BoxError> {
        if self.fail && self.inner.ops.len() >= self.after {
            return Err("the output is gone".into());
        }
        Ok(())
    }
}

#[test]
fn a_consumer_stops_or_fails_the_plan_between_operations() {
    let Some(_p) = require_privileged("a_consumer_stops_or_fails_the_plan_between_operations")
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    mkdir_all(vol.join("d/e")).unwrap();
    for i in 0..10 {
        write_file(vol.join(format!("d/e/f{i}")), b"x").unwrap();
    }
    let snap = fs.snapshot_ro(&vol, "snap");
    for fail in [false, true] {
        let mut c = Cut { inner: Recorder::default(), after: 7, fail };
        let r = plan_full(&snap, &Options::default(), &mut c);
        match (fail, r) {
            (false, Err(Error::Stopped)) | (true, Err(Error::Consumer(_))) => {}
            (_, r) => panic!("fail={fail}: {r:?}"),
        }
        assert_eq!(c.inner.ops.len(), 7, "fail={fail}");
        assert!(!c.inner.ended);
    }
}
