//! `--path-match` sends every property: a chain of plain copies (`cp -a`, so not snapshots of
//! one file system) on ext4, sent full and then incrementally with `--path-match`, received by
//! `anyrecv` into a directory on another ext4, equals each copy in every property after each
//! step. Between the copies, xattr values are changed, added and removed, with and without data
//! changes, on files, a hard-linked file, a directory, the root and a symlink, and inode flags
//! change without anything else: none of which moves mtime, and ctime means nothing here.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use anysend_testbed::cmd::{capture, run_ok};
use anysend_testbed::compare::{assert_trees_equal, CompareOptions};
use anysend_testbed::fsops::{
    add_flags, append, hardlink, mkdir, remove_xattr, set_xattr, symlink, write_file,
};
use anysend_testbed::loopfs::{DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use rustix::fs::IFlags;

/// `anysend --path-match [--from-label ... --from origin] --label L target -f stream`.
fn send(origin: Option<(&str, &Path)>, label: &str, target: &Path, stream: &Path) {
    let mut cmd = Command::new(support::bin("anysend"));
    cmd.arg("-q").arg("--path-match").arg("--label").arg(label);
    if let Some((l, o)) = origin {
        cmd.arg("--from-label").arg(l).arg("--from").arg(o);
    }
    cmd.arg("-f").arg(stream).arg(target);
    support::ok("anysend", capture(&mut cmd)).unwrap();
}

fn copy(from: &Path, to: &Path) {
    run_ok("cp", [Path::new("-a"), from, to]);
}

/// Version 1: files with xattrs, a hard link, a directory and a symlink with xattrs, flags.
fn v1(root: &Path) {
    mkdir(root).unwrap();
    for name in ["value", "removed", "added", "data_value", "data_removed", "flags", "plain"] {
        write_file(root.join(name), format!("{name} v1\n").as_bytes()).unwrap();
    }
    set_xattr(root.join("value"), "user.v", b"one").unwrap();
    set_xattr(root.join("removed"), "user.gone", b"soon").unwrap();
    set_xattr(root.join("removed"), "user.stays", b"here").unwrap();
    set_xattr(root.join("data_value"), "user.v", b"one").unwrap();
    set_xattr(root.join("data_removed"), "user.gone", b"soon").unwrap();
    write_file(root.join("linked"), b"linked v1\n").unwrap();
    hardlink(root.join("linked"), root.join("second-name")).unwrap();
    set_xattr(root.join("linked"), "user.v", b"one").unwrap();
    mkdir(root.join("d")).unwrap();
    write_file(root.join("d/inner"), b"inner\n").unwrap();
    set_xattr(root.join("d"), "user.dir", b"one").unwrap();
    symlink(b"value", root.join("sym")).unwrap();
    set_xattr(root.join("sym"), "trusted.sym", b"one").unwrap();
    set_xattr(root, "user.root", b"one").unwrap();
}

/// Version 2, a copy of version 1 changed in place (cp -a keeps every xattr and time).
fn v2(root: &Path) {
    set_xattr(root.join("value"), "user.v", b"two").unwrap();
    remove_xattr(root.join("removed"), "user.gone").unwrap();
    set_xattr(root.join("added"), "user.new", b"fresh").unwrap();
    append(root.join("data_value"), b"v2\n").unwrap();
    set_xattr(root.join("data_value"), "user.v", b"two").unwrap();
    append(root.join("data_removed"), b"v2\n").unwrap();
    remove_xattr(root.join("data_removed"), "user.gone").unwrap();
    set_xattr(root.join("linked"), "user.v", b"two").unwrap();
    set_xattr(root.join("d"), "user.dir", b"two").unwrap();
    set_xattr(root.join("sym"), "trusted.sym", b"two").unwrap();
    remove_xattr(root, "user.root").unwrap();
    add_flags(root.join("flags"), IFlags::NODUMP).unwrap();
}

/// Version 3: more of the same, and back again.
fn v3(root: &Path) {
    remove_xattr(root.join("value"), "user.v").unwrap();
    set_xattr(root.join("removed"), "user.gone", b"back").unwrap();
    set_xattr(root.join("added"), "user.new", b"fresher").unwrap();
    remove_xattr(root.join("linked"), "user.v").unwrap();
    remove_xattr(root.join("d"), "user.dir").unwrap();
    set_xattr(root.join("d/inner"), "user.inner", b"new").unwrap();
    remove_xattr(root.join("sym"), "trusted.sym").unwrap();
    set_xattr(root, "user.root", b"three").unwrap();
    append(root.join("plain"), b"v3\n").unwrap();
    set_xattr(root.join("plain"), "user.p", b"with data").unwrap();
}

#[test]
fn a_path_match_chain_sends_every_xattr_and_flag_change() {
    let Some(_p) = require_privileged("a_path_match_chain_sends_every_xattr_and_flag_change")
    else {
        return;
    };
    let src = DestFs::new(DestKind::Ext4);
    let dest = DestFs::new(DestKind::Ext4);
    let versions: Vec<PathBuf> = (1..=3).map(|i| src.path().join(format!("v{i}"))).collect();
    v1(&versions[0]);
    // cp -a keeps no inode flags: v2 sets its own, v3 (a copy of v2) loses them again.
    copy(&versions[0], &versions[1]);
    v2(&versions[1]);
    copy(&versions[1], &versions[2]);
    v3(&versions[2]);

    let tmp = tempfile::tempdir().unwrap();
    let replica = dest.path().join("replica");
    let state = support::state_dir_for(dest.path());
    let opts = CompareOptions::new();
    for (i, target) in versions.iter().enumerate() {
        let stream = tmp.path().join(format!("s{i}"));
        let label = format!("v{}", i + 1);
        let origin = (i > 0).then(|| (format!("v{i}"), &versions[i - 1]));
        send(origin.as_ref().map(|(l, o)| (l.as_str(), o.as_path())), &label, target, &stream);
        support::recv_from_file(&stream, &replica, &state).unwrap();
        assert_trees_equal(target, &replica, &opts);
    }
    let _ = std::fs::remove_dir_all(&state);
}
