//! Regression tests of defects `e2e_random_chain` found (each fixed since, and failing without
//! its fix), each the smallest chain that shows it, on the destinations where it shows.
//!
//! Inode flags a destination file system hands down from a directory to what is made in it:
//! ext4 (EXT4_FL_INHERITED) and XFS give a new object the nodump, noatime, sync and dirsync
//! flags of its parent directory; btrfs does not. In an incremental stream the parent already
//! carries its flags when a new object is made in it, so the receiver's new object inherits them,
//! and a new object's update sends `set_flags` only when its target flags are not zero: the
//! inherited flags stay. Found by `e2e_random_chain` (seed 1 before nodump was left out of its
//! draws); like issue 19's default ACLs (defect 11), but for chattr flags.

mod support;

use std::path::Path;

use anysend_testbed::compare::CompareOptions;
use anysend_testbed::fsops::{
    add_flags, mkdir, pattern, punch_hole, truncate, write_at, write_file,
};
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::{check_chain_on, run_scenario_on_btrfs, Scenario};
use rustix::fs::IFlags;

/// s1: `mkdir d; chattr +d d`; s2: `touch d/f; mkdir d/g`. Received onto ext4 or XFS, `d/f`
/// and `d/g` come out with flags `d` where the snapshot has none.
#[test]
fn new_objects_do_not_keep_flags_inherited_on_the_receiver() {
    let Some(_p) = require_privileged("e2e_inherited_flags") else { return };
    let scenario = Scenario::new("inherited_flags")
        .step("a directory with nodump", |r: &Path| {
            mkdir(r.join("d"))?;
            add_flags(r.join("d"), IFlags::NODUMP)
        })
        .step("a file and a directory made in it", |r: &Path| {
            write_file(r.join("d/f"), b"f")?;
            mkdir(r.join("d/g"))
        });
    chain_onto(&scenario, &[DestKind::Ext4, DestKind::Xfs]);
}

/// s1: a dense file of 65,537 bytes; s2: truncated up to 74,052; s3: truncated up to 88,592; s4:
/// another file. The stream of s3 writes the block at 73728 (4096 bytes, past the old end 74052:
/// btrfs rewrote the block when it zeroed its tail) and truncates up to 88592; received on XFS,
/// the snapshot's hole 77824..88592 is data (zeros) in DEST after the receive of s4 (found by
/// seed 7: `b/e: holes: a=data[0..69632, 73728..77824] b=data[0..69632, 73728..88592]`). XFS
/// preallocates past the end of file at the write, and a truncate up zeroes what lies between
/// the old and the new end, so the preallocation becomes data.
#[test]
fn holes_left_by_a_truncate_up_stay_holes() {
    let Some(_p) = require_privileged("e2e_inherited_flags::holes") else { return };
    let scenario = Scenario::new("truncate_up")
        .step("a dense file", |r: &Path| write_file(r.join("f"), &pattern(65_537, 1)))
        .step("truncated up", |r: &Path| truncate(r.join("f"), 74_052))
        .step("truncated up again", |r: &Path| truncate(r.join("f"), 88_592))
        .step("another file", |r: &Path| write_file(r.join("g"), b"g"));
    chain_onto(&scenario, &[DestKind::Xfs, DestKind::Ext4, DestKind::Tmpfs]);
}

/// s1: a 16 KiB file whose block 8192..12288 holds written zeros; s2: that block punched. The
/// sender compares content by bytes (zeros read from a hole equal written zeros), finds the file
/// unchanged and sends only `utimes`: DEST keeps the block allocated where the snapshot has a
/// hole (`z: holes: a=data[0..8192, 12288..16384] b=data[0..16384]`). Found by seed 1012 of
/// `e2e_random_chain` (`ANYSEND_RANDOM_SEED=1012 ANYSEND_RANDOM_CASES=1`).
#[test]
fn zeros_punched_into_a_hole_become_a_hole() {
    let Some(_p) = require_privileged("e2e_found_defects::zeros") else { return };
    let scenario = Scenario::new("zeros_punched")
        .step("data with a block of written zeros", |r: &Path| {
            write_file(r.join("z"), &[b'a'; 16384])?;
            write_at(r.join("z"), 8192, &[0; 4096])
        })
        .step("the zero block punched", |r: &Path| punch_hole(r.join("z"), 8192, 4096));
    chain_onto(&scenario, &[DestKind::Ext4, DestKind::Xfs, DestKind::Tmpfs]);
}

/// Runs `scenario` on btrfs and checks its send/receive chain onto each of `kinds`.
fn chain_onto(scenario: &Scenario, kinds: &[DestKind]) {
    let src = BtrfsFs::new(256 << 20);
    let snapshots = run_scenario_on_btrfs(scenario, &src);
    for &kind in kinds {
        let dest = DestFs::new(kind);
        let opts = CompareOptions::new();
        check_chain_on(scenario.name, &snapshots, &dest, &opts, &support::send_and_receive);
        let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
    }
}
