//! Model-based property test: random origin trees, random mutations into a target, plan through
//! the same link analysis + ordering the walker feeds, replay every op on the model (each must be
//! valid when applied), and compare with the target.
//!
//! Besides names, the trees carry the metadata of issue 19's classes, changed with the kernel's
//! side effects (see `common`): owners and modes (a chown drops capabilities and setuid),
//! capabilities (a write drops them), access and default ACLs (inherited by what is made inside
//! a directory, not by what is moved in), and chattr flags on inodes with several names. The
//! checker holds the plan to the ordering rules these need (`common::check`).

mod common;

use anysend_diff_core::Kind;
use common::{check, plan, MemTree, ACL_ACCESS, ACL_DEFAULT, CAPABILITY, ROOT};
use proptest::prelude::*;

const NAMES: &[&[u8]] =
    &[b"a", b"b", b"c", b"d", b"e", b"a", b"b", b"c", b".anysend-orphans", b"\xff\xfe", b"x\ny"];

fn name(i: u16) -> &'static [u8] {
    NAMES[i as usize % NAMES.len()]
}

fn pick<T: Clone>(v: &[T], i: u16) -> Option<T> {
    (!v.is_empty()).then(|| v[i as usize % v.len()].clone())
}

fn build_origin(steps: &[(u8, u16, u16, u16)]) -> MemTree {
    let mut t = MemTree::new();
    grow(&mut t, steps);
    t
}

fn grow(t: &mut MemTree, steps: &[(u8, u16, u16, u16)]) {
    for &(op, a, b, n) in steps {
        let dirs = t.dirs();
        let parent = pick(&dirs, a).unwrap_or(ROOT);
        let nm = name(n);
        match op % 6 {
            0 | 5 => {
                t.create(Kind::Dir, parent, nm, false);
            }
            1 => {
                t.create(Kind::File, parent, nm, false);
            }
            2 => {
                t.create(Kind::Symlink, parent, nm, false);
            }
            3 => {
                t.create(Kind::Fifo, parent, nm, false);
            }
            _ => {
                let files: Vec<u64> =
                    t.nodes.iter().filter(|(_, x)| x.kind != Kind::Dir).map(|(&i, _)| i).collect();
                if let Some(f) = pick(&files, b) {
                    t.link(f, parent, nm);
                }
            }
        }
    }
}

/// FS_IOC_GETFLAGS bits: immutable, append-only, nodump.
const IMMUTABLE: u32 = 0x10;
const APPEND: u32 = 0x20;
const NODUMP: u32 = 0x40;

/// Metadata changes, with what the kernel does beside them (see `common`).
fn mutate_meta(t: &mut MemTree, steps: &[(u8, u16, u16, u16)]) {
    for &(op, a, b, c) in steps {
        let all: Vec<u64> = t.nodes.keys().copied().collect();
        let files: Vec<u64> =
            t.nodes.iter().filter(|(_, n)| n.kind == Kind::File).map(|(&i, _)| i).collect();
        // Capabilities and writes go to files, the rest to anything.
        let Some(x) = pick(if matches!(op % 12, 4 | 9 | 10) { &files } else { &all }, a) else {
            continue;
        };
        let kind = t.nodes[&x].kind;
        let has_flags = matches!(kind, Kind::File | Kind::Dir);
        match op % 12 {
            0 => t.chown(x, [0, 1000, 2000][b as usize % 3]),
            1 => t.chmod(x, [0o644, 0o600, 0o4755, 0o2755][b as usize % 4]),
            2 => t.set_xattr(x, b"user.x", &[c as u8]),
            3 => t.remove_xattr(x, b"user.x"),
            4 | 10 => t.set_xattr(x, CAPABILITY, &[b as u8 % 2]),
            5 if kind != Kind::Symlink => {
                if b % 4 == 0 {
                    t.remove_xattr(x, ACL_ACCESS)
                } else {
                    t.set_xattr(x, ACL_ACCESS, &[c as u8])
                }
            }
            6 if kind == Kind::Dir => {
                if b % 4 == 0 {
                    t.remove_xattr(x, ACL_DEFAULT)
                } else {
                    t.set_xattr(x, ACL_DEFAULT, &[c as u8])
                }
            }
            7 | 8 if has_flags => t.set_flags(x, [IMMUTABLE, APPEND, NODUMP, 0][b as usize % 4]),
            9 => t.modify(x),
            _ => t.chown(x, [0, 1000][b as usize % 2]),
        }
    }
}

/// The origin: half the objects, metadata (default ACLs, so objects made after inherit them),
/// the other half.
fn origin_of(build: &[(u8, u16, u16, u16)], meta: &[(u8, u16, u16, u16)]) -> MemTree {
    let (first, second) = build.split_at(build.len() / 2);
    let mut t = build_origin(first);
    mutate_meta(&mut t, meta);
    grow(&mut t, second);
    t
}

/// The target: metadata changes before and after the namespace mutations.
fn target_of(
    origin: &MemTree,
    muts: &[(u8, u16, u16, u16)],
    meta: &[(u8, u16, u16, u16)],
) -> MemTree {
    let (before, after) = meta.split_at(meta.len() / 2);
    let mut t = origin.clone();
    mutate_meta(&mut t, before);
    mutate(&mut t, muts);
    mutate_meta(&mut t, after);
    t
}

fn mutate(t: &mut MemTree, steps: &[(u8, u16, u16, u16)]) {
    for &(op, a, b, c) in steps {
        let entries = t.entries();
        let dirs = t.dirs();
        let nm = name(c);
        match op % 10 {
            0 => {
                if let (Some((p, n)), Some(d)) = (pick(&entries, a), pick(&dirs, b)) {
                    t.rename(p, &n, d, nm);
                }
            }
            1 => {
                if let (Some(x), Some(y)) = (pick(&entries, a), pick(&entries, b)) {
                    t.rotate(&[x, y]);
                }
            }
            2 => {
                if let Some((p, n)) = pick(&entries, a) {
                    t.remove(p, &n);
                }
            }
            3 => {
                let files: Vec<u64> =
                    t.nodes.iter().filter(|(_, x)| x.kind != Kind::Dir).map(|(&i, _)| i).collect();
                if let (Some(f), Some(d)) = (pick(&files, a), pick(&dirs, b)) {
                    t.link(f, d, nm);
                }
            }
            4 => {
                if let Some(d) = pick(&dirs, b) {
                    let kind = [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo][a as usize % 4];
                    t.create(kind, d, nm, a % 8 >= 4);
                }
            }
            5 => {
                let files: Vec<u64> =
                    t.nodes.iter().filter(|(_, x)| x.kind == Kind::File).map(|(&i, _)| i).collect();
                if let Some(f) = pick(&files, a) {
                    t.modify(f);
                }
            }
            6 => {
                // A name changes type; the new object may reuse the old inode number.
                if let Some((p, n)) = pick(&entries, a) {
                    let old = t.get(p, &n).unwrap();
                    let old_kind = t.nodes[&old].kind;
                    let kinds = [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo];
                    let mut kind = kinds[b as usize % 4];
                    if kind == old_kind {
                        kind = kinds[(b as usize + 1) % 4];
                    }
                    t.remove(p, &n);
                    t.create(kind, p, &n, c % 2 == 0);
                }
            }
            7 => {
                if let (Some(d), Some(e)) = (pick(&dirs, a), pick(&dirs, b)) {
                    t.hoist(d, e, nm);
                }
            }
            8 => {
                let k = 3 + (c as usize % 3);
                let slots: Vec<_> = (0..k)
                    .filter_map(|i| pick(&entries, a.wrapping_add(b.wrapping_mul(i as u16 + 1))))
                    .collect();
                t.rotate(&slots);
            }
            _ => {
                let sub: Vec<(u64, Vec<u8>)> = entries
                    .iter()
                    .filter(|(p, n)| t.nodes[&t.get(*p, n).unwrap()].kind == Kind::Dir)
                    .cloned()
                    .collect();
                if let (Some((p, n)), Some(d)) = (pick(&sub, a), pick(&dirs, b)) {
                    t.rename(p, &n, d, nm);
                }
            }
        }
    }
}

fn step() -> impl Strategy<Value = (u8, u16, u16, u16)> {
    (any::<u8>(), any::<u16>(), any::<u16>(), any::<u16>())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5000,
        max_shrink_iters: 20000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn plan_turns_origin_into_target(
        build in prop::collection::vec(step(), 1..40),
        build_meta in prop::collection::vec(step(), 0..15),
        muts in prop::collection::vec(step(), 0..25),
        meta in prop::collection::vec(step(), 0..20),
    ) {
        let origin = origin_of(&build, &build_meta);
        let target = target_of(&origin, &muts, &meta);
        let ops = plan(&origin, &target);
        if let Err(e) = check(&origin, &target, &ops) {
            prop_assert!(false, "{}", e);
        }
        // Determinism: the same input gives the same plan.
        prop_assert_eq!(ops, plan(&origin, &target));
    }
}

/// Guards the generator against degenerating: a fair share of cases must need the orphan
/// directory (cycles), most must not (direct renames preferred).
#[test]
fn generator_covers_cycles() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (prop::collection::vec(step(), 1..40), prop::collection::vec(step(), 0..25));
    let (mut orphaned, mut renames, n) = (0, 0, 500);
    for _ in 0..n {
        let (b, m) = strat.new_tree(&mut runner).unwrap().current();
        let origin = build_origin(&b);
        let mut target = origin.clone();
        mutate(&mut target, &m);
        let ops = plan(&origin, &target);
        if ops.iter().any(|o| matches!(o, anysend_diff_core::Op::MkTmpDir { .. })) {
            orphaned += 1;
        }
        renames += ops.iter().filter(|o| matches!(o, anysend_diff_core::Op::Rename { .. })).count();
    }
    assert!(orphaned > n / 20 && orphaned < n / 2, "orphaned {orphaned} of {n}");
    assert!(renames > n, "renames {renames}");
}

/// The checker is no rubber stamp: a plan whose update of a re-owned file does not say so, or
/// whose new object's update is not marked new, is refused.
#[test]
fn checker_refuses_updates_that_hide_metadata() {
    let mut origin = MemTree::new();
    let f = origin.file(ROOT, b"f");
    origin.link(f, ROOT, b"g");
    origin.set_xattr(f, CAPABILITY, b"1");
    let mut target = origin.clone();
    target.chown(f, 1000);
    target.set_xattr(f, CAPABILITY, b"1");
    target.set_flags(f, IMMUTABLE);
    let n = target.file(ROOT, b"n");
    target.set_flags(n, APPEND);
    let ops = plan(&origin, &target);
    check(&origin, &target, &ops).expect("the plan is right");
    let strip = |f: &dyn Fn(&mut anysend_diff_core::MetaDiff)| {
        let mut ops = ops.clone();
        for op in &mut ops {
            if let anysend_diff_core::Op::Update(u) = op {
                f(&mut u.diff);
            }
        }
        check(&origin, &target, &ops)
    };
    let e = strip(&|d| d.owner = false).unwrap_err();
    assert!(e.contains("owner"), "{e}");
    let e = strip(&|d| d.new = false).unwrap_err();
    assert!(e.contains("marked new"), "{e}");
}

/// Guards the metadata generator against degenerating: the classes of issue 19 must each come up
/// in a fair share of cases.
#[test]
fn generator_covers_metadata_classes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let v = || prop::collection::vec(step(), 0..25);
    let strat = (prop::collection::vec(step(), 1..40), v(), v(), v());
    let (mut locked_links, mut inherited, mut cap_dropped, n) = (0, 0, 0, 500);
    for _ in 0..n {
        let (b, bm, m, mm) = strat.new_tree(&mut runner).unwrap().current();
        let origin = origin_of(&b, &bm);
        let target = target_of(&origin, &m, &mm);
        if target.nodes.values().any(|x| x.locked() && x.nlink > 1) {
            locked_links += 1;
        }
        // Made in the target inside a directory with a default ACL, which it inherited.
        if target.nodes.iter().any(|(i, x)| {
            x.xattrs.contains_key(ACL_ACCESS) && origin.nodes.get(i).is_none_or(|o| o.gen != x.gen)
        }) {
            inherited += 1;
        }
        if origin.nodes.iter().any(|(i, o)| {
            o.xattrs.contains_key(CAPABILITY)
                // Only a chown or a write drops one (the generator never removes it).
                && target.nodes.get(i).is_some_and(|x| {
                    x.gen == o.gen && !x.xattrs.contains_key(CAPABILITY)
                })
        }) {
            cap_dropped += 1;
        }
    }
    for (what, k) in [
        ("locked objects with several names", locked_links),
        ("objects made under a default ACL", inherited),
        ("capabilities dropped", cap_dropped),
    ] {
        assert!(k > n / 20, "{what}: {k} of {n}");
    }
}
