//! The file system guards: each destination kind mounts the right file
//! system, and every guard unmounts and detaches on drop, also on panic.

use anysend_testbed::fsops::write_file;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use std::path::{Path, PathBuf};

fn mounted(point: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let p = point.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(p))
}

fn fstype(point: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let p = point.to_str().unwrap();
    let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(p)).unwrap();
    line.split(' ').nth(2).unwrap().to_string()
}

/// Loop devices whose backing file lies under `dir`.
fn loops_backed_under(dir: &Path) -> Vec<String> {
    let out = anysend_testbed::cmd::run_ok("losetup", ["-a"]);
    let d = dir.to_str().unwrap();
    out.lines().filter(|l| l.contains(d)).map(String::from).collect()
}

fn assert_gone(point: &Path) {
    assert!(!mounted(point), "{} still mounted", point.display());
    let dir = point.parent().unwrap();
    assert!(loops_backed_under(dir).is_empty(), "loop device leaked for {}", dir.display());
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn each_dest_kind_mounts_and_cleans_up() {
    let Some(_p) = require_privileged("each_dest_kind_mounts_and_cleans_up") else {
        return;
    };
    for kind in DestKind::ALL {
        let point: PathBuf;
        {
            let dest = DestFs::new(kind);
            point = dest.path().to_path_buf();
            assert_eq!(dest.kind(), kind);
            assert_eq!(fstype(&point), kind.name(), "{kind}");
            write_file(point.join("probe"), b"probe").unwrap();
        }
        assert_gone(&point);
    }
}

#[test]
fn btrfs_subvolumes_and_snapshots() {
    let Some(_p) = require_privileged("btrfs_subvolumes_and_snapshots") else {
        return;
    };
    let fs = BtrfsFs::new(128 << 20);
    let sv = fs.create_subvolume("sv");
    write_file(sv.join("f"), b"f").unwrap();
    let snap = fs.snapshot_ro(&sv, "sv.1");
    assert_eq!(std::fs::read(snap.join("f")).unwrap(), b"f");
    // Read-only: writing into the snapshot fails.
    assert!(write_file(snap.join("g"), b"g").is_err());
}

#[test]
fn guards_clean_up_when_a_test_panics() {
    let Some(_p) = require_privileged("guards_clean_up_when_a_test_panics") else {
        return;
    };
    let points = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let src = BtrfsFs::new(128 << 20);
        let dest = DestFs::new(DestKind::Ext4);
        points.lock().unwrap().extend([src.path().to_path_buf(), dest.path().to_path_buf()]);
        // A busy mount: an open file keeps it busy until the unwinding
        // drops it, which happens before the guards (declared earlier).
        let _open = std::fs::File::create(src.path().join("busy")).unwrap();
        panic!("deliberate");
    });
    assert!(result.is_err());
    for p in points.into_inner().unwrap() {
        assert_gone(&p);
    }
}

#[test]
fn busy_mount_is_lazily_unmounted_and_detached() {
    let Some(_p) = require_privileged("busy_mount_is_lazily_unmounted_and_detached") else {
        return;
    };
    let dest = DestFs::new(DestKind::Ext4);
    let point = dest.path().to_path_buf();
    // Keep a file open past the guard's drop: umount fails with EBUSY and
    // the guard falls back to a lazy unmount.
    let open = std::fs::File::create(point.join("held")).unwrap();
    drop(dest);
    assert!(!mounted(&point), "still mounted");
    drop(open);
    // After the last user goes, autoclear detaches the device.
    let dir = point.parent().unwrap().to_path_buf();
    for _ in 0..50 {
        if loops_backed_under(&dir).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("loop device for {} not released", dir.display());
}
