//! A wrong ORIGIN does not pass silently: the built `anysend` refuses (exit 2, naming the flag
//! that overrides it, writing no stream) an ORIGIN taken after TARGET on real btrfs snapshots
//! and an ORIGIN on another file system than TARGET, and warns, naming `--path-match`, when two
//! plain copies on one file system are matched by inode number and share nothing. The right
//! pairs (and the overrides) still send, without the warning.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anysend_testbed::cmd::{capture, run_ok};
use anysend_testbed::fsops::{append, mkdir, write_file};
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;

const MIB: u64 = 1 << 20;
const EXIT_USAGE: i32 = 2;

/// `anysend [EXTRA...] --from origin target -f stream` (warnings on: no `-q`).
fn send(extra: &[&str], origin: &Path, target: &Path, stream: &Path) -> Output {
    let mut cmd = Command::new(support::bin("anysend"));
    cmd.args(extra).arg("--from").arg(origin).arg("-f").arg(stream).arg(target);
    capture(&mut cmd)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small tree: `n` files in two directories.
fn fill(root: &Path, n: usize) {
    mkdir(root.join("a")).unwrap();
    mkdir(root.join("b")).unwrap();
    for i in 0..n {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        write_file(root.join(dir).join(format!("f{i}")), format!("file {i}\n").as_bytes()).unwrap();
    }
}

/// Read-only snapshots s1 then s2 of one subvolume, s2 with one file changed and one added.
fn two_snapshots(fs: &BtrfsFs) -> (PathBuf, PathBuf) {
    let vol = fs.create_subvolume("vol");
    fill(&vol, 20);
    let s1 = fs.snapshot_ro(&vol, "s1");
    append(vol.join("a/f0"), b"more\n").unwrap();
    write_file(vol.join("b/new"), b"new\n").unwrap();
    let s2 = fs.snapshot_ro(&vol, "s2");
    (s1, s2)
}

#[test]
fn an_origin_taken_after_the_target_is_refused_unless_allowed() {
    let Some(_p) = require_privileged("an_origin_taken_after_the_target_is_refused_unless_allowed")
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let (s1, s2) = two_snapshots(&fs);
    let tmp = tempfile::tempdir().unwrap();
    let stream = tmp.path().join("stream");

    let reverse = send(&[], &s2, &s1, &stream);
    assert_eq!(reverse.status.code(), Some(EXIT_USAGE), "reverse: {}", stderr(&reverse));
    assert!(stderr(&reverse).contains("newer than TARGET"), "{}", stderr(&reverse));
    assert!(stderr(&reverse).contains("--allow-reverse"), "{}", stderr(&reverse));
    assert!(!stream.exists(), "a refused send writes no stream");

    let allowed = send(&["--allow-reverse"], &s2, &s1, &stream);
    assert!(allowed.status.success(), "--allow-reverse: {}", stderr(&allowed));
    assert!(stream.exists());

    // The right way round: sent, and no warning about the two trees.
    let forward = send(&[], &s1, &s2, &stream);
    assert!(forward.status.success(), "forward: {}", stderr(&forward));
    assert!(!stderr(&forward).contains("warning"), "{}", stderr(&forward));
    // A snapshot of the origin's snapshot is later, whatever else: not refused either.
    let s3 = fs.snapshot_ro(&s2, "s3");
    let from_parent = send(&[], &s2, &s3, &stream);
    assert!(from_parent.status.success(), "s2 -> s3: {}", stderr(&from_parent));
}

#[test]
fn an_origin_on_another_file_system_needs_path_match() {
    let Some(_p) = require_privileged("an_origin_on_another_file_system_needs_path_match") else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let (s1, _s2) = two_snapshots(&fs);
    for kind in [DestKind::Tmpfs, DestKind::Ext4] {
        let other = DestFs::new(kind);
        let copy = other.path().join("copy");
        cp_a(&s1, &copy);
        append(copy.join("a/f2"), b"changed on the copy\n").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let stream = tmp.path().join("stream");

        for (origin, target) in [(&copy, &s1), (&s1, &copy)] {
            let refused = send(&[], origin, target, &stream);
            let err = stderr(&refused);
            assert_eq!(refused.status.code(), Some(EXIT_USAGE), "{kind}: {err}");
            assert!(err.contains("different file systems"), "{kind}: {err}");
            assert!(err.contains("--path-match"), "{kind}: {err}");
            assert!(!stream.exists(), "{kind}: a refused send writes no stream");

            let matched = send(&["--path-match"], origin, target, &stream);
            assert!(matched.status.success(), "{kind} --path-match: {}", stderr(&matched));
            assert!(!stderr(&matched).contains("almost nothing"), "{kind}: {}", stderr(&matched));
            std::fs::remove_file(&stream).unwrap();
        }
    }
}

/// `cp -a from to`: a copy with every property, and new inode numbers.
fn cp_a(from: &Path, to: &Path) {
    run_ok("cp", [Path::new("-a"), from, to]);
}

#[test]
fn two_copies_matched_by_inode_get_a_warning_naming_path_match() {
    let Some(_p) =
        require_privileged("two_copies_matched_by_inode_get_a_warning_naming_path_match")
    else {
        return;
    };
    for kind in [DestKind::Ext4, DestKind::Tmpfs] {
        let fs = DestFs::new(kind);
        let (v1, v2) = (fs.path().join("v1"), fs.path().join("v2"));
        mkdir(&v1).unwrap();
        fill(&v1, 30);
        cp_a(&v1, &v2);
        append(v2.join("b/f1"), b"v2\n").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let stream = tmp.path().join("stream");

        let by_inode = send(&[], &v1, &v2, &stream);
        let err = stderr(&by_inode);
        assert!(by_inode.status.success(), "{kind}: {err}");
        assert!(err.contains("almost nothing") && err.contains("--path-match"), "{kind}: {err}");

        let by_path = send(&["--path-match"], &v1, &v2, &stream);
        assert!(by_path.status.success(), "{kind}: {}", stderr(&by_path));
        assert!(!stderr(&by_path).contains("almost nothing"), "{kind}: {}", stderr(&by_path));
    }
}
