//! `anyrecv --atomic`: the stream goes into a reflinked staging copy beside DEST, which is
//! switched in with one rename at the end. Chains of corpus scenarios onto btrfs and XFS equal
//! their snapshots in every property; ext4 refuses; a reader listing DEST during the receive
//! sees only the old or the new listing; a kill leaves DEST exactly the origin, and the staging
//! copy is aborted or resumed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anysend_testbed::cmd::capture;
use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::corpus;
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::{check_chain_on, run_scenario_on_btrfs, Scenario};

const FS_SIZE: u64 = 256 << 20;

fn stream_of(origin: Option<&Path>, target: &Path, dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    support::send_to_file(origin, target, &f).expect("anysend");
    f
}

/// `anyrecv --atomic -f stream dest/replica`.
fn atomic_recv(origin: Option<&Path>, target: &Path, dest: &Path) -> Result<PathBuf, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stream = tmp.path().join("stream");
    support::send_to_file(origin, target, &stream)?;
    let replica = dest.join("replica");
    let mut cmd = Command::new(support::bin("anyrecv"));
    cmd.arg("-q")
        .arg("--atomic")
        .arg("--state-dir")
        .arg(support::state_dir_for(dest))
        .arg("-f")
        .arg(&stream)
        .arg(&replica);
    support::ok("anyrecv --atomic", capture(&mut cmd))?;
    no_staging_left(dest);
    Ok(replica)
}

fn no_staging_left(parent: &Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("anyrecv-staging"))
        .collect();
    assert!(left.is_empty(), "staging copies left beside DEST: {left:?}");
}

#[test]
fn atomic_chains_onto_btrfs_and_xfs_equal_the_snapshots() {
    let Some(_p) = require_privileged("e2e_atomic::chains") else { return };
    let names = [
        "renames_across_dirs",
        "hardlinks",
        "xattrs_acls",
        "chattr_flags",
        "special_files",
        "ownership",
        "big_file_edits",
        "sparse_files",
    ];
    let src = BtrfsFs::new(FS_SIZE);
    for name in names {
        let scenario = corpus::scenario(name).expect("scenario in corpus");
        let snapshots = run_scenario_on_btrfs(&scenario, &src);
        for kind in [DestKind::Btrfs, DestKind::Xfs] {
            let dest = DestFs::new(kind);
            let got = check_chain_on(name, &snapshots, &dest, &CompareOptions::new(), &atomic_recv);
            assert_eq!(got.len(), scenario.steps.len());
            let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
        }
    }
}

#[test]
fn ext4_and_tmpfs_refuse_atomic() {
    let Some(_p) = require_privileged("e2e_atomic::refuse") else { return };
    let tree = tempfile::tempdir().unwrap();
    write_file(tree.path().join("f"), b"data").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stream = stream_of(None, tree.path(), tmp.path(), "full");
    for kind in [DestKind::Ext4, DestKind::Tmpfs] {
        let dest = DestFs::new(kind);
        let replica = dest.path().join("replica");
        let state = support::state_dir_for(dest.path());
        let out = support::anyrecv(&["--atomic", "-f", stream.to_str().unwrap()], &replica, &state);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{kind}: --atomic must be refused: {err}");
        assert!(err.contains("--atomic") && err.contains("FICLONE"), "{kind}: message: {err}");
        assert!(!replica.exists(), "{kind}: a refused receive made DEST");
        no_staging_left(dest.path());
        let _ = std::fs::remove_dir_all(state);
    }
}

fn listing(dir: &Path) -> Option<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .ok()?;
    v.sort();
    Some(v)
}

#[test]
fn a_reader_sees_the_old_or_the_new_listing_only() {
    let Some(_p) = require_privileged("e2e_atomic::reader") else { return };
    let scenario = Scenario::new("listing")
        .step("many files", |r: &Path| {
            for i in 0..400 {
                write_file(r.join(format!("a{i:03}")), &pattern(2000, i))?;
            }
            Ok(())
        })
        .step("half removed, others renamed and added, all edited", |r: &Path| {
            for i in 0..400 {
                let p = r.join(format!("a{i:03}"));
                match i % 4 {
                    0 => remove(&p)?,
                    1 => rename(&p, r.join(format!("b{i:03}")))?,
                    _ => write_at(&p, 10, b"changed")?,
                }
            }
            for i in 0..200 {
                write_file(r.join(format!("c{i:03}")), &pattern(5000, 1000 + i))?;
            }
            Ok(())
        });
    let src = BtrfsFs::new(FS_SIZE);
    let snaps = run_scenario_on_btrfs(&scenario, &src);
    let dest = DestFs::new(DestKind::Btrfs);
    let replica = atomic_recv(None, &snaps[0], dest.path()).expect("full receive");
    let old = listing(&snaps[0]).unwrap();
    let new = listing(&snaps[1]).unwrap();
    assert_eq!(listing(&replica).as_ref(), Some(&old));

    let tmp = tempfile::tempdir().unwrap();
    let stream = stream_of(Some(&snaps[0]), &snaps[1], tmp.path(), "inc");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, replica) = (Arc::clone(&stop), replica.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(listing(&replica));
            }
            samples.push(listing(&replica));
            samples
        })
    };
    let state = support::state_dir_for(dest.path());
    let out = support::anyrecv(&["--atomic", "-f", stream.to_str().unwrap()], &replica, &state);
    stop.store(true, Ordering::Relaxed);
    let samples = reader.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut seen = (0, 0);
    for (i, s) in samples.iter().enumerate() {
        match s {
            Some(l) if *l == old => seen.0 += 1,
            Some(l) if *l == new => seen.1 += 1,
            other => panic!(
                "sample {i} of {} is neither the old nor the new listing: {:?}",
                samples.len(),
                other.as_ref().map(|l| l.len())
            ),
        }
    }
    assert!(seen.1 > 0, "the last sample is the new listing");
    eprintln!("{} samples: {} old, {} new", samples.len(), seen.0, seen.1);
    compare(&snaps[1], &replica, &CompareOptions::new()).unwrap().assert_equal("after --atomic");
    no_staging_left(dest.path());
}

#[test]
fn a_killed_atomic_receive_leaves_dest_the_origin() {
    let Some(_p) = require_privileged("e2e_atomic::killed") else { return };
    let scenario = corpus::scenario("big_file_edits").expect("scenario");
    let src = BtrfsFs::new(FS_SIZE);
    let snaps = run_scenario_on_btrfs(&scenario, &src);
    assert!(snaps.len() >= 2);
    let tmp = tempfile::tempdir().unwrap();
    for kind in [DestKind::Btrfs, DestKind::Xfs] {
        let dest = DestFs::new(kind);
        let replica = atomic_recv(None, &snaps[0], dest.path()).expect("full receive");
        let state = support::state_dir_for(dest.path());
        let stream = stream_of(Some(&snaps[0]), &snaps[1], tmp.path(), "inc");
        let bytes = std::fs::read(&stream).unwrap();
        let same_as_origin = |what: &str| {
            compare(&snaps[0], &replica, &CompareOptions::new())
                .unwrap()
                .assert_equal(&format!("{kind}: {what}: DEST must be exactly the origin"))
        };
        let points: Vec<usize> = (1..8).map(|i| bytes.len() * i / 8).collect();
        for (n, &k) in points.iter().enumerate() {
            support::recv_killed_at(&["--atomic"], &bytes, k, &replica, &state, n % 2 == 0);
            same_as_origin(&format!("killed at byte {k}"));
            // An interrupted receive (or a staging copy made before the first record) is
            // rolled back by removing the staging copy.
            let staged = std::fs::read_dir(dest.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("anyrecv-staging"));
            if support::resume_token(&replica, &state).is_some() || staged {
                let out = support::anyrecv(&["--abort"], &replica, &state);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                assert!(support::resume_token(&replica, &state).is_none());
            }
            same_as_origin(&format!("killed at byte {k}, aborted"));
            no_staging_left(dest.path());
        }
        // Killed, then resumed: the rest of the stream goes into the staging copy.
        support::recv_killed_at(&["--atomic"], &bytes, bytes.len() / 2, &replica, &state, true);
        same_as_origin("killed half-way");
        let token = support::resume_token(&replica, &state).expect("an interrupted receive");
        let rest = tmp.path().join("rest");
        support::send_resumed(&token, Some(&snaps[0]), &snaps[1], &rest).unwrap();
        let out = support::anyrecv(&["--atomic", "-f", rest.to_str().unwrap()], &replica, &state);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        compare(&snaps[1], &replica, &CompareOptions::new())
            .unwrap()
            .assert_equal(&format!("{kind}: resumed --atomic receive"));
        no_staging_left(dest.path());
        let _ = std::fs::remove_dir_all(state);
    }
}
