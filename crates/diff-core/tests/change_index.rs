//! The btrfs change index only saves work: on real snapshots, every plan made with it equals the
//! plan of a walk that compares every entry, and it is used exactly when its argument holds.

use anysend_diff_core::{plan, IndexUse, Options, Recorder, Summary};
use anysend_testbed::fsops::{append, chmod, mkdir_all, write_file};
use anysend_testbed::{corpus, require_privileged, run_scenario_on_btrfs, BtrfsFs};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn plan_both(origin: &Path, target: &Path, what: &str) -> (Summary, Summary) {
    let mut with = Recorder::default();
    let mut without = Recorder::default();
    let a = plan(origin, target, &Options::default(), &mut with)
        .unwrap_or_else(|e| panic!("{what}: plan with the index: {e}"));
    let full = Options { full_walk: true, ..Options::default() };
    let b = plan(origin, target, &full, &mut without)
        .unwrap_or_else(|e| panic!("{what}: plan of a full walk: {e}"));
    assert_eq!(with.ops, without.ops, "{what}: the index changed the plan");
    assert_eq!(with.unlocks, without.unlocks, "{what}: the index changed the unlocks");
    assert_eq!(b.index, IndexUse::NotTried, "{what}");
    (a, b)
}

fn assert_used(s: &Summary, what: &str) {
    assert!(matches!(s.index, IndexUse::Used { .. }), "{what}: index not used: {:?}", s.index);
}

#[test]
fn index_plans_equal_full_walk_plans_on_the_corpus() {
    let Some(_p) = require_privileged("index_plans_equal_full_walk_plans_on_the_corpus") else {
        return;
    };
    for sc in corpus() {
        let fs = BtrfsFs::new(512 * MIB);
        let snaps = run_scenario_on_btrfs(&sc, &fs);
        for (k, w) in snaps.windows(2).enumerate() {
            let what = format!("scenario {} step {}→{}", sc.name, k + 1, k + 2);
            let (a, b) = plan_both(&w[0], &w[1], &what);
            assert_used(&a, &what);
            assert!(a.walk.entries_statted <= b.walk.entries_statted, "{what}");
        }
    }
}

#[test]
fn an_unchanged_pair_reads_only_the_roots() {
    let Some(_p) = require_privileged("an_unchanged_pair_reads_only_the_roots") else { return };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    for d in 0..20 {
        mkdir_all(vol.join(format!("d{d}/sub"))).unwrap();
        for f in 0..20 {
            write_file(vol.join(format!("d{d}/sub/f{f}")), b"x").unwrap();
        }
    }
    let s1 = fs.snapshot_ro(&vol, "s1");
    let s2 = fs.snapshot_ro(&vol, "s2");
    let (a, b) = plan_both(&s1, &s2, "unchanged");
    assert_used(&a, "unchanged");
    assert_eq!(a.walk.dirs_listed, 2, "{:?}", a.walk);
    assert_eq!(a.walk.entries_statted, 0, "{:?}", a.walk);
    assert!(b.walk.entries_statted > 800, "{:?}", b.walk);

    // A changed file and a chmod: the directories above them are listed, not the rest.
    append(vol.join("d7/sub/f3"), b"more").unwrap();
    chmod(vol.join("d9"), 0o700).unwrap();
    let s3 = fs.snapshot_ro(&vol, "s3");
    let (a, b) = plan_both(&s2, &s3, "one change");
    assert_used(&a, "one change");
    // Both sides of the root, d7, d7/sub (above the file) and d9 (itself changed), plus a few
    // neighbours whose items share a leaf with a change but whose inode item does not: how
    // many depends on where btrfs split its leaves.
    assert!(a.walk.dirs_listed >= 8, "{:?}", a.walk);
    assert!(a.walk.dirs_listed * 4 < b.walk.dirs_listed, "{:?} vs {:?}", a.walk, b.walk);
}

#[test]
fn the_index_is_not_used_where_it_proves_nothing() {
    let Some(_p) = require_privileged("the_index_is_not_used_where_it_proves_nothing") else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    let other = fs.create_subvolume("other");
    write_file(other.join("a"), b"1").unwrap();
    // Big enough that the root is not a leaf: snapshotting the origin copies only its root.
    for i in 0..400 {
        write_file(vol.join(format!("f{i}")), b"1").unwrap();
    }
    write_file(vol.join("a"), b"1").unwrap();
    let s1 = fs.snapshot_ro(&vol, "s1");
    append(vol.join("a"), b"2").unwrap();
    let s2 = fs.snapshot_ro(&vol, "s2");
    let o1 = fs.snapshot_ro(&other, "o1");
    let reason = |o: &Path, t: &Path, what: &str| {
        let (a, _) = plan_both(o, t, what);
        match a.index {
            IndexUse::Unusable(why) => why,
            u => panic!("{what}: expected no index, got {u:?}"),
        }
    };
    assert!(reason(&s2, &s1, "backwards").contains("older"));
    assert!(reason(&s1, &o1, "other subvolume").contains("not a later snapshot"));
    assert!(reason(&s1, &vol, "writable target").contains("read-only"));
    // A snapshot of the origin itself qualifies.
    let child = fs.snapshot_ro(&s1, "child");
    let (a, _) = plan_both(&s1, &child, "snapshot of the origin");
    assert_used(&a, "snapshot of the origin");
}

/// A small deterministic generator, so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        (!v.is_empty()).then(|| &v[(self.next() % v.len() as u64) as usize])
    }
}

/// Regular files and directories under `root` (relative paths; the root itself excluded).
fn inventory(root: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let t = std::fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                dirs.push(rel);
                todo.push(p);
            } else if t.is_file() {
                files.push(rel);
            }
        }
    }
    (files, dirs)
}

/// One random change of the kinds the planner must get right: moves of files and whole
/// directories, swaps, new and removed hard links, deletions, a name changing type, content,
/// mode and xattr changes.
fn mutate(vol: &Path, rng: &mut Rng, serial: &mut u32) {
    use anysend_testbed::fsops::{
        chown, exchange, hardlink, punch_hole, remove, remove_tree, rename, set_mtime, set_xattr,
        symlink, truncate, write_at,
    };
    let (files, dirs) = inventory(vol);
    *serial += 1;
    let fresh = format!("n{serial}");
    let dir_or_root =
        |rng: &mut Rng| rng.pick(&dirs).map_or_else(|| vol.to_path_buf(), |d| vol.join(d));
    let (Some(f), Some(g)) = (rng.pick(&files).cloned(), rng.pick(&files).cloned()) else {
        return;
    };
    match rng.next() % 20 {
        0 => append(vol.join(&f), b"appended").unwrap(),
        1 => chmod(vol.join(&f), 0o600).unwrap(),
        2 => rename(vol.join(&f), dir_or_root(rng).join(&fresh)).unwrap(),
        3 => {
            let (Some(d), Some(to)) = (rng.pick(&dirs).cloned(), rng.pick(&dirs).cloned()) else {
                return;
            };
            if !to.starts_with(&d) {
                rename(vol.join(&d), vol.join(&to).join(&fresh)).unwrap();
            }
        }
        4 if f != g => exchange(vol.join(&f), vol.join(&g)).unwrap(),
        5 => hardlink(vol.join(&f), dir_or_root(rng).join(&fresh)).unwrap(),
        6 => remove(vol.join(&f)).unwrap(),
        7 => {
            if let Some(d) = rng.pick(&dirs) {
                remove_tree(vol.join(d)).unwrap();
            }
        }
        8 => write_file(dir_or_root(rng).join(&fresh), b"new file").unwrap(),
        9 => {
            remove(vol.join(&f)).unwrap();
            mkdir_all(vol.join(&f)).unwrap();
            write_file(vol.join(&f).join("inside"), b"was a file").unwrap();
        }
        10 => set_xattr(vol.join(&f), "user.k", fresh.as_bytes()).unwrap(),
        // Same size, new bytes, and the mtime put back: only ctime and the extents tell.
        11 => {
            let m = std::fs::symlink_metadata(vol.join(&f)).unwrap();
            write_at(vol.join(&f), 0, b"Z").unwrap();
            use std::os::unix::fs::MetadataExt;
            set_mtime(vol.join(&f), m.mtime(), m.mtime_nsec() as u32).unwrap();
        }
        12 => truncate(vol.join(&f), 1).unwrap(),
        13 => {
            write_at(vol.join(&f), 64 * 1024, b"tail").unwrap();
            punch_hole(vol.join(&f), 0, 4096).unwrap();
        }
        14 => chown(vol.join(&f), 1000 + (rng.next() % 3) as u32, 100).unwrap(),
        15 => symlink(format!("../{fresh}").as_bytes(), dir_or_root(rng).join(&fresh)).unwrap(),
        16 => {
            // Content change of a file with several names.
            hardlink(vol.join(&f), dir_or_root(rng).join(&fresh)).unwrap();
            append(vol.join(&f), b"both names see this").unwrap();
        }
        17 => chmod(dir_or_root(rng), 0o750).unwrap(),
        // Reading moves atime (relatime), which rewrites inode items and nothing else.
        _ => {
            let d = dir_or_root(rng);
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_file() {
                    std::fs::read(&p).unwrap();
                }
            }
        }
    }
}

#[test]
fn random_changes_to_a_larger_tree_plan_the_same_with_the_index() {
    let Some(_p) =
        require_privileged("random_changes_to_a_larger_tree_plan_the_same_with_the_index")
    else {
        return;
    };
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 0xd1b5_4a32_d192_ed03] {
        random_rounds(seed);
    }
    // A deeper search on demand: ANYSEND_INDEX_SEEDS=200 cargo test ... change_index
    let extra: u64 =
        std::env::var("ANYSEND_INDEX_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for k in 1..=extra {
        random_rounds(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(k) | 1);
    }
}

fn random_rounds(seed: u64) {
    let fs = BtrfsFs::new(512 * MIB);
    let vol = fs.create_subvolume("vol");
    for d in 0..40 {
        for f in 0..40 {
            let dir = vol.join(format!("d{d}/e{}", f % 4));
            mkdir_all(&dir).unwrap();
            write_file(dir.join(format!("f{f}")), format!("{d}/{f}").as_bytes()).unwrap();
        }
    }
    // Objects older than a second before a snapshot are where the index trusts an equal ctime.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut prev = fs.snapshot_ro(&vol, "s0");
    let (mut rng, mut serial, mut skipped) = (Rng(seed), 0, 0);
    for round in 1..=16 {
        for _ in 0..(1 + rng.next() % 12) {
            mutate(&vol, &mut rng, &mut serial);
        }
        let next = fs.snapshot_ro(&vol, &format!("s{round}"));
        let what = format!("seed {seed:#x} round {round}");
        let (a, _) = plan_both(&prev, &next, &what);
        assert_used(&a, &what);
        skipped += a.walk.entries_skipped;
        prev = next;
    }
    assert!(skipped > 1000, "seed {seed:#x}: the index skipped only {skipped} entries");
}

#[test]
fn reading_the_live_tree_between_snapshots_changes_nothing() {
    let Some(_p) = require_privileged("reading_the_live_tree_between_snapshots_changes_nothing")
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    for d in 0..20 {
        for f in 0..20 {
            write_file(vol.join(format!("d{d}/f{f}")).as_path(), b"x")
                .or_else(|_| {
                    mkdir_all(vol.join(format!("d{d}")))?;
                    write_file(vol.join(format!("d{d}/f{f}")), b"x")
                })
                .unwrap();
        }
    }
    // The index trusts an unchanged ctime only when it is over a second older than the origin.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let s1 = fs.snapshot_ro(&vol, "s1");
    // Under relatime the first read after a write moves atime, which rewrites inode items.
    let (files, dirs) = inventory(&vol);
    for f in &files {
        std::fs::read(vol.join(f)).unwrap();
    }
    let s2 = fs.snapshot_ro(&vol, "s2");
    use std::os::unix::fs::MetadataExt;
    let atime = |p: &Path| {
        std::fs::metadata(p).unwrap().atime_nsec()
            + 1_000_000_000 * std::fs::metadata(p).unwrap().atime()
    };
    assert_ne!(atime(&s1.join(&dirs[0])), atime(&s2.join(&dirs[0])), "atime did not move");
    let (a, _) = plan_both(&s1, &s2, "atime only");
    assert!(matches!(a.index, IndexUse::Used { changed: 0, .. }), "{:?}", a.index);
    assert_eq!(a.walk.dirs_listed, 2, "{:?}", a.walk);
}
