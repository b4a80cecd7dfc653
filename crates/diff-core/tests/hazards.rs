//! The named hazards of btrfs send's bug history, each as a plain test with the expected
//! namespace operations spelled out where the order matters.

mod common;

use anysend_diff_core::{Kind, Op};
use anysend_testbed::escape::escape_bytes;
use common::ops::op_line;
use common::{check, plan, MemTree, ROOT};

/// The namespace ops of a plan, one line each, paths whole.
fn ns(ops: &[Op]) -> Vec<String> {
    ops.iter().filter(|o| o.is_namespace()).map(|o| op_line(o, usize::MAX)).collect()
}

fn run(origin: &MemTree, target: &MemTree) -> Vec<String> {
    let ops = plan(origin, target);
    check(origin, target, &ops).unwrap();
    ns(&ops)
}

#[test]
fn unchanged_trees_give_no_ops() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"d");
    o.file(d, b"f");
    let ops = plan(&o, &o.clone());
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn swap_two_files() {
    let mut o = MemTree::new();
    o.file(ROOT, b"a");
    o.file(ROOT, b"b");
    let mut t = o.clone();
    assert!(t.rotate(&[(ROOT, b"a".to_vec()), (ROOT, b"b".to_vec())]));
    assert_eq!(
        run(&o, &t),
        [
            "mktmpdir .anysend-orphans",
            "rename b .anysend-orphans/1",
            "rename a b",
            "rename .anysend-orphans/1 a",
            "rmdir .anysend-orphans",
        ]
    );
}

#[test]
fn orphan_dir_name_avoids_taken_names() {
    let mut o = MemTree::new();
    o.file(ROOT, b"a");
    o.file(ROOT, b"b");
    o.file(ROOT, b".anysend-orphans");
    let mut t = o.clone();
    t.create(Kind::Dir, ROOT, b".anysend-orphans.1", false);
    assert!(t.rotate(&[(ROOT, b"a".to_vec()), (ROOT, b"b".to_vec())]));
    let ops = run(&o, &t);
    assert!(ops.contains(&"mktmpdir .anysend-orphans.2".to_string()), "{ops:?}");
}

#[test]
fn dir_moved_under_its_former_child() {
    // x/y  ->  y is now called x at the root, old x lives inside it as y.
    let mut o = MemTree::new();
    let x = o.mkdir(ROOT, b"x");
    let y = o.mkdir(x, b"y");
    o.file(y, b"f");
    let mut t = o.clone();
    assert!(t.hoist(x, y, b"y"));
    // y wants x's name (held by x), x wants to go under y (its child): a cycle. Breaking the
    // ancestry by orphaning y lets x move under it, then y takes the freed name.
    assert_eq!(
        run(&o, &t),
        [
            "mktmpdir .anysend-orphans",
            "rename x/y .anysend-orphans/1",
            "rename x .anysend-orphans/1/y",
            "rename .anysend-orphans/1 x",
            "rmdir .anysend-orphans",
        ]
    );
}

#[test]
fn dir_moved_under_former_child_without_name_clash_needs_no_orphan() {
    // a/b -> b/a: b moves out first, then a moves into it.
    let mut o = MemTree::new();
    let a = o.mkdir(ROOT, b"a");
    o.mkdir(a, b"b");
    let mut t = o.clone();
    assert!(t.rename(a, b"b", ROOT, b"b"));
    assert!(t.rename(ROOT, b"a", t.get(ROOT, b"b").unwrap(), b"a"));
    assert_eq!(run(&o, &t), ["rename a/b b", "rename a b/a"]);
}

#[test]
fn d1_d2_becomes_d2_d1() {
    // The worked example in plan.rs: d1/d2 -> d2/d1, each directory keeping its name and its
    // file. `rename d1 d2/d1` first would move d1 under itself; the planner moves d2 out first,
    // which frees the ancestry without an orphan, and the files travel with their directories.
    let mut o = MemTree::new();
    let d1 = o.mkdir(ROOT, b"d1");
    o.file(d1, b"f");
    let d2 = o.mkdir(d1, b"d2");
    o.file(d2, b"g");
    let mut t = o.clone();
    assert!(t.rename(d1, b"d2", ROOT, b"d2"));
    assert!(t.rename(ROOT, b"d1", d2, b"d1"));
    // The target as drawn: d2/g and d2/d1/f.
    assert_eq!(t.get(ROOT, b"d2"), Some(d2));
    assert_eq!(t.get(d2, b"d1"), Some(d1));
    assert!(t.get(d2, b"g").is_some() && t.get(d1, b"f").is_some());
    assert_eq!(run(&o, &t), ["rename d1/d2 d2", "rename d1 d2/d1"]);
}

#[test]
fn seed_case_foo_bar_to_t_foo_removed_t_to_foo() {
    // mv foo/bar t; rm -r foo; mv t foo
    let mut o = MemTree::new();
    let foo = o.mkdir(ROOT, b"foo");
    let bar = o.mkdir(foo, b"bar");
    o.file(bar, b"inner");
    o.file(foo, b"gone");
    let mut t = o.clone();
    assert!(t.rename(foo, b"bar", ROOT, b"t"));
    assert!(t.remove(ROOT, b"foo"));
    assert!(t.rename(ROOT, b"t", ROOT, b"foo"));
    let ops = run(&o, &t);
    assert_eq!(
        ops,
        [
            "unlink foo/gone",
            "mktmpdir .anysend-orphans",
            "rename foo .anysend-orphans/1",
            "rename .anysend-orphans/1/bar foo",
            "rmdir .anysend-orphans/1",
            "rmdir .anysend-orphans",
        ]
    );
}

#[test]
fn three_cycle_of_renames() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"d");
    o.file(ROOT, b"a");
    o.mkdir(d, b"b");
    o.file(ROOT, b"c");
    let mut t = o.clone();
    // a -> d/b's place, d/b -> c's place, c -> a's place (types mixed on purpose).
    assert!(t.rotate(&[(ROOT, b"a".to_vec()), (d, b"b".to_vec()), (ROOT, b"c".to_vec())]));
    let ops = run(&o, &t);
    assert_eq!(ops.iter().filter(|o| o.starts_with("rename")).count(), 4, "{ops:?}");
}

#[test]
fn long_rename_chain_needs_no_orphan() {
    // log rotation: log.N -> log.N+1 for N = 999..0, plus log -> log.0
    let mut o = MemTree::new();
    for i in 0..1000 {
        o.file(ROOT, format!("log.{i}").as_bytes());
    }
    o.file(ROOT, b"log");
    let mut t = o.clone();
    for i in (0..1000).rev() {
        assert!(t.rename(
            ROOT,
            format!("log.{i}").as_bytes(),
            ROOT,
            format!("log.{}", i + 1).as_bytes()
        ));
    }
    assert!(t.rename(ROOT, b"log", ROOT, b"log.0"));
    let ops = run(&o, &t);
    assert_eq!(ops.len(), 1001);
    assert!(ops.iter().all(|o| o.starts_with("rename")));
}

#[test]
fn file_becomes_dir_at_same_name() {
    let mut o = MemTree::new();
    o.file(ROOT, b"n");
    let mut t = o.clone();
    t.remove(ROOT, b"n");
    let d = t.mkdir(ROOT, b"n");
    t.file(d, b"inside");
    assert_eq!(run(&o, &t), ["unlink n", "mkdir n", "create n/inside"]);
}

#[test]
fn dir_becomes_symlink_and_contents_move_out() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"n");
    o.file(d, b"keep");
    let mut t = o.clone();
    assert!(t.rename(d, b"keep", ROOT, b"kept"));
    t.remove(ROOT, b"n");
    t.create(Kind::Symlink, ROOT, b"n", false);
    assert_eq!(run(&o, &t), ["rename n/keep kept", "rmdir n", "symlink n"]);
}

#[test]
fn hardlink_added_removed_renamed() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"d");
    let f = o.file(ROOT, b"f");
    assert!(o.link(f, d, b"f2"));
    let g = o.file(ROOT, b"g");
    let mut t = o.clone();
    assert!(t.link(g, d, b"g2")); // added
    t.remove(ROOT, b"f"); // removed (f survives as d/f2)
    assert!(t.rename(d, b"f2", ROOT, b"f3")); // renamed
    let ops = run(&o, &t);
    assert_eq!(ops, ["rename f f3", "unlink d/f2", "link d/g2 -> g"]);
}

#[test]
fn new_multiply_linked_file_is_created_once_then_linked() {
    let o = MemTree::new();
    let mut t = o.clone();
    let f = t.file(ROOT, b"x");
    assert!(t.link(f, ROOT, b"y"));
    let ops = plan(&o, &t);
    check(&o, &t, &ops).unwrap();
    assert_eq!(ns(&ops), ["create x", "link y -> x"]);
    let updates: Vec<_> =
        ops.iter().filter(|o| matches!(o, Op::Update(u) if u.kind == Kind::File)).collect();
    assert_eq!(updates.len(), 1, "content sent once");
}

#[test]
fn inode_reuse_is_delete_and_create_not_rename() {
    let mut o = MemTree::new();
    o.file(ROOT, b"a");
    let mut t = o.clone();
    t.remove(ROOT, b"a");
    let ino = t.create(Kind::File, ROOT, b"b", true).unwrap();
    assert_eq!(Some(ino), o.get(ROOT, b"a"), "same inode number reused");
    assert_eq!(run(&o, &t), ["unlink a", "create b"]);
}

#[test]
fn inode_reuse_with_type_change() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"a");
    o.file(d, b"f");
    let mut t = o.clone();
    t.remove(ROOT, b"a");
    let ino = t.create(Kind::File, ROOT, b"a", true).unwrap();
    assert!(o.nodes.contains_key(&ino));
    assert_eq!(run(&o, &t), ["unlink a/f", "rmdir a", "create a"]);
}

#[test]
fn object_moves_out_of_deleted_subtree_into_new_subtree() {
    let mut o = MemTree::new();
    let old = o.mkdir(ROOT, b"old");
    let sub = o.mkdir(old, b"sub");
    o.file(sub, b"f");
    let mut t = o.clone();
    let new = t.mkdir(ROOT, b"new");
    let deeper = t.mkdir(new, b"deeper");
    assert!(t.rename(old, b"sub", deeper, b"moved"));
    t.remove(ROOT, b"old");
    assert_eq!(
        run(&o, &t),
        ["mkdir new", "mkdir new/deeper", "rename old/sub new/deeper/moved", "rmdir old"]
    );
}

#[test]
fn updates_come_after_namespace_ops_in_post_order() {
    let mut o = MemTree::new();
    let d = o.mkdir(ROOT, b"d");
    let f = o.file(d, b"f");
    let mut t = o.clone();
    t.modify(f);
    t.file(d, b"new");
    let ops = plan(&o, &t);
    check(&o, &t, &ops).unwrap();
    let ups: Vec<String> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Update(u) => Some(escape_bytes(&u.path)),
            _ => None,
        })
        .collect();
    assert_eq!(ups, ["d/f", "d/new", "d"]);
}
