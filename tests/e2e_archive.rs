//! Restore from an archive: a full stream and five incrementals kept as files, replayed in
//! order onto ext4, must reproduce every snapshot; a stream applied out of order, or onto the
//! wrong base, must be refused with the destination left exactly as it was.

mod support;

use std::path::{Path, PathBuf};

use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::{run_scenario_on_btrfs, Scenario};

/// Six states of a small project tree: a week of changes.
fn week() -> Scenario {
    Scenario::new("week")
        .step("monday: a tree", |r: &Path| {
            mkdir_all(r.join("src/lib"))?;
            write_file(r.join("src/main.c"), &pattern(10_000, 1))?;
            write_file(r.join("src/lib/util.c"), &pattern(3_000, 2))?;
            make_sparse(r.join("disk.img"), 8 << 20, &[(1 << 20, b"boot"), (6 << 20, b"data")])?;
            symlink(b"src/main.c", r.join("entry"))
        })
        .step("tuesday: edits and a hardlink", |r: &Path| {
            write_at(r.join("src/main.c"), 4096, b"patched")?;
            hardlink(r.join("src/lib/util.c"), r.join("util-link.c"))?;
            chmod(r.join("src/main.c"), 0o755)
        })
        .step("wednesday: renames", |r: &Path| {
            rename(r.join("src"), r.join("source"))?;
            rename(r.join("source/lib"), r.join("lib"))?;
            rename(r.join("entry"), r.join("source/entry"))
        })
        .step("thursday: deletions and new files", |r: &Path| {
            remove_tree(r.join("lib"))?;
            remove(r.join("util-link.c"))?;
            write_file(r.join("notes.txt"), b"thursday\n")?;
            set_xattr(r.join("notes.txt"), "user.mood", b"fine")
        })
        .step("friday: type changes and holes", |r: &Path| {
            remove(r.join("notes.txt"))?;
            mkdir(r.join("notes.txt"))?;
            write_file(r.join("notes.txt/1"), b"one")?;
            punch_hole(r.join("disk.img"), 1 << 20, 4096)
        })
        .step("saturday: a swap", |r: &Path| {
            write_file(r.join("a"), b"aaa")?;
            rename(r.join("source"), r.join("tmp"))?;
            rename(r.join("notes.txt"), r.join("source"))?;
            rename(r.join("tmp"), r.join("notes.txt"))
        })
}

/// Writes the archive: `0.full`, then `k.incr` from snapshot k-1 to snapshot k.
fn archive(snaps: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    snaps
        .iter()
        .enumerate()
        .map(|(i, snap)| {
            let file = dir.join(if i == 0 { "0.full".to_string() } else { format!("{i}.incr") });
            let origin = i.checked_sub(1).map(|p| snaps[p].as_path());
            support::send_to_file(origin, snap, &file).unwrap_or_else(|e| panic!("{e}"));
            file
        })
        .collect()
}

/// A receive that must be refused: it fails, and the destination is unchanged in every
/// property (compared against the snapshot it held before).
fn assert_refused(stream: &Path, replica: &Path, state: &Path, holds: &Path, why: &str) {
    let err = support::recv_from_file(stream, replica, state)
        .err()
        .unwrap_or_else(|| panic!("{why}: {} was applied", stream.display()));
    eprintln!("{why}: refused as expected: {err}");
    compare(holds, replica, &CompareOptions::new())
        .expect("compare")
        .assert_equal(&format!("{why}: destination changed by a refused stream"));
}

#[test]
fn archive_chain_restores_in_order_and_refuses_the_wrong_base() {
    let Some(_p) = require_privileged("e2e_archive") else { return };
    let src = BtrfsFs::new(256 << 20);
    let snaps = run_scenario_on_btrfs(&week(), &src);
    assert_eq!(snaps.len(), 6);
    let files_dir = tempfile::tempdir().expect("tempdir");
    let files = archive(&snaps, files_dir.path());

    let dest = DestFs::new(DestKind::Ext4);
    let replica = dest.path().join("replica");
    let state = support::state_dir_for(dest.path());

    // An incremental cannot start a replica, and an out-of-order one is refused.
    let err = support::recv_from_file(&files[1], &replica, &state);
    assert!(err.is_err(), "an incremental stream was applied to a missing destination");

    // Before stream i is applied the replica holds snapshot i-1; every other stream is refused.
    for (i, file) in files.iter().enumerate() {
        if i >= 1 {
            let holds = &snaps[i - 1];
            // A full stream never overwrites an existing replica.
            assert_refused(&files[0], &replica, &state, holds, "full onto a replica");
            if i + 1 < files.len() {
                // Skipping a day: tomorrow's stream starts from today's snapshot.
                assert_refused(&files[i + 1], &replica, &state, holds, "day skipped");
            }
            if i >= 2 {
                // Replaying yesterday's stream again: its origin is two days old.
                assert_refused(&files[i - 1], &replica, &state, holds, "stream replayed");
            }
        }
        support::recv_from_file(file, &replica, &state).unwrap_or_else(|e| panic!("day {i}: {e}"));
        compare(&snaps[i], &replica, &CompareOptions::new())
            .expect("compare")
            .assert_equal(&format!("archive restore after stream {}", file.display()));
    }
    let _ = std::fs::remove_dir_all(&state);
}
