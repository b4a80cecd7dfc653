//! Full streams of every state, not only the first: `anysend` plans a full stream while it walks
//! (entries in name order, each file's data and metadata right after its creation, a
//! directory's metadata after its last entry), so every snapshot of every corpus scenario, and a
//! tree of hardlinked files carrying immutable and append-only, is sent whole and received onto
//! ext4, where it must equal the snapshot in every property.

mod support;

use std::path::Path;

use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::corpus;
use anysend_testbed::fsops::{add_flags, hardlink, mkdir, write_file};
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::run_scenario_on_btrfs;
use rustix::fs::IFlags;

const MIB: u64 = 1 << 20;

/// Sends `snap` as a full stream and receives it into the new directory `dest/name`; the
/// replica must equal the snapshot.
fn send_whole(snap: &Path, dest: &DestFs, name: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let stream = tmp.path().join("stream");
    support::send_to_file(None, snap, &stream).unwrap_or_else(|e| panic!("{name}: {e}"));
    let replica = dest.path().join(name);
    support::recv_from_file(&stream, &replica, &support::state_dir_for(dest.path()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = CompareOptions::for_dest(dest.kind());
    let report = compare(snap, &replica, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    report.assert_equal(&format!("{name}: {} received whole", snap.display()));
}

#[test]
fn every_corpus_snapshot_is_received_whole() {
    let Some(_p) = require_privileged("e2e_full::every_corpus_snapshot_is_received_whole") else {
        return;
    };
    let dest = DestFs::new(DestKind::Ext4);
    for sc in corpus() {
        let src = BtrfsFs::new(256 * MIB);
        for (k, snap) in run_scenario_on_btrfs(&sc, &src).iter().enumerate() {
            send_whole(snap, &dest, &format!("{}.{}", sc.name, k + 1));
        }
    }
    let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
}

#[test]
fn locked_hardlinked_files_are_received_whole() {
    let Some(_p) = require_privileged("e2e_full::locked_hardlinked_files_are_received_whole")
    else {
        return;
    };
    let src = BtrfsFs::new(256 * MIB);
    let vol = src.create_subvolume("vol");
    for d in ["a", "b", "imm", "z"] {
        mkdir(vol.join(d)).expect("mkdir");
    }
    let step = || -> std::io::Result<()> {
        write_file(vol.join("a/f"), b"immutable, three names")?;
        hardlink(vol.join("a/f"), vol.join("b/f2"))?;
        hardlink(vol.join("a/f"), vol.join("z/f3"))?;
        write_file(vol.join("a/g"), b"append-only, two names")?;
        hardlink(vol.join("a/g"), vol.join("a/g2"))?;
        write_file(vol.join("b/plain"), b"plain")?;
        hardlink(vol.join("b/plain"), vol.join("imm/plain2"))?;
        write_file(vol.join("b/f1"), b"after f2 in b")?;
        add_flags(vol.join("a/f"), IFlags::IMMUTABLE)?;
        add_flags(vol.join("a/g"), IFlags::APPEND)?;
        add_flags(vol.join("imm"), IFlags::IMMUTABLE)
    };
    step().expect("building the tree");
    let snap = src.snapshot_ro(&vol, "snap");
    let dest = DestFs::new(DestKind::Ext4);
    send_whole(&snap, &dest, "whole");
    // From a directory whose files have names outside it: nlink says more names than are met.
    send_whole(&snap.join("a"), &dest, "part");
    let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
}
