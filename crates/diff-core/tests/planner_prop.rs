//! Model-based property test: random origin trees, random mutations into a target, plan through
//! the same link analysis + ordering the walker feeds, replay every op on the model (each must be
//! valid when applied), and compare with the target.

mod common;

use anysend_diff_core::Kind;
use common::{check, plan, MemTree, ROOT};
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
        muts in prop::collection::vec(step(), 0..25),
    ) {
        let origin = build_origin(&build);
        let mut target = origin.clone();
        mutate(&mut target, &muts);
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
