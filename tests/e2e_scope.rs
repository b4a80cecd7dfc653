//! Where a send stops and what it leaves out: a mount point inside TARGET (a real tmpfs) and a
//! nested btrfs subvolume inside a read-only snapshot are sent as empty directories, their
//! contents neither walked nor sent (`--cross-mounts` sends the tmpfs's files); `--exclude`
//! leaves objects out of a full stream and out of an incremental one (neither sent nor removed
//! on the receiver), and the stream's header says it is filtered, as `anyrecv --dump` shows.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use anysend_stream::Record;
use anysend_testbed::cmd::{capture, run_ok};
use anysend_testbed::fsops::{append, mkdir, remove, write_file};
use anysend_testbed::loopfs::{BtrfsFs, Mount};
use anysend_testbed::privilege::require_privileged;

const MIB: u64 = 1 << 20;

/// `anysend -q [extra...] -f stream target`; panics with stderr unless it succeeds.
fn send(extra: &[&str], target: &Path, stream: &Path) {
    let mut cmd = Command::new(support::bin("anysend"));
    cmd.arg("-q").args(extra).arg("-f").arg(stream).arg(target);
    support::ok("anysend", capture(&mut cmd)).unwrap();
}

/// The paths the stream's records name (every path field), as strings.
fn record_paths(stream: &Path) -> Vec<String> {
    let bytes = std::fs::read(stream).unwrap();
    let (_, records) = anysend_testbed::streams::decode(&bytes);
    records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::End { .. } => None,
            r => r.path().map(|p| String::from_utf8_lossy(p).into_owned()),
        })
        .collect()
}

/// Every path below `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if p.symlink_metadata().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn receive(stream: &Path, replica: &Path, state: &Path) {
    support::recv_from_file(stream, replica, state).unwrap();
}

#[test]
fn a_mount_inside_target_is_sent_empty_unless_cross_mounts() {
    let Some(_p) =
        require_privileged("e2e_scope::a_mount_inside_target_is_sent_empty_unless_cross_mounts")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src).unwrap();
    write_file(src.join("top"), b"top\n").unwrap();
    mkdir(src.join("m")).unwrap();
    let _mnt = Mount::new("tmpfs", &src.join("m"), Some("tmpfs"), Some("size=4m")).unwrap();
    mkdir(src.join("m/deep")).unwrap();
    write_file(src.join("m/deep/inner"), b"on the tmpfs\n").unwrap();
    let state = support::state_dir_for(tmp.path());

    let stream = tmp.path().join("plain");
    send(&[], &src, &stream);
    let paths = record_paths(&stream);
    assert!(paths.iter().any(|p| p == "m"), "the mount point is sent: {paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("m/")), "nothing below it is: {paths:?}");
    let replica = tmp.path().join("replica");
    receive(&stream, &replica, &state);
    assert_eq!(tree(&replica), ["m", "top"]);

    let crossed = tmp.path().join("crossed");
    send(&["--cross-mounts"], &src, &crossed);
    let replica2 = tmp.path().join("replica2");
    receive(&crossed, &replica2, &state);
    assert_eq!(tree(&replica2), ["m", "m/deep", "m/deep/inner", "top"]);
    assert_eq!(std::fs::read(replica2.join("m/deep/inner")).unwrap(), b"on the tmpfs\n");
    let _ = std::fs::remove_dir_all(&state);
}

/// `btrfs subvolume snapshot SRC DST` (writable).
fn snapshot_rw(src: &Path, dst: &Path) {
    run_ok("btrfs", ["subvolume".as_ref(), "snapshot".as_ref(), src.as_os_str(), dst.as_os_str()]);
}

fn subvolume(p: &Path) {
    run_ok("btrfs", ["subvolume".as_ref(), "create".as_ref(), p.as_os_str()]);
}

fn set_read_only(p: &Path) {
    run_ok(
        "btrfs",
        ["property".as_ref(), "set".as_ref(), p.as_os_str(), "ro".as_ref(), "true".as_ref()],
    );
}

#[test]
fn a_nested_subvolume_inside_a_snapshot_is_not_descended_into() {
    let Some(_p) =
        require_privileged("e2e_scope::a_nested_subvolume_inside_a_snapshot_is_not_descended_into")
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let vol = fs.create_subvolume("vol");
    write_file(vol.join("file"), b"in vol\n").unwrap();
    mkdir(vol.join("d")).unwrap();
    // A snapshot holding a subvolume of its own (made while it was writable), with files whose
    // inode numbers (256, 257, ...) are also the snapshot's.
    let snap = fs.path().join("snap");
    snapshot_rw(&vol, &snap);
    subvolume(&snap.join("d/nested"));
    mkdir(snap.join("d/nested/sub")).unwrap();
    write_file(snap.join("d/nested/sub/x"), b"in nested\n").unwrap();
    write_file(snap.join("d/nested/y"), b"in nested\n").unwrap();
    set_read_only(&snap);
    // A second read-only snapshot for an incremental: one change in vol's own files.
    let snap2 = fs.path().join("snap2");
    snapshot_rw(&snap, &snap2);
    append(snap2.join("file"), b"more\n").unwrap();
    // A snapshot holds an empty stand-in where its source had a subvolume: replace it by one.
    std::fs::remove_dir(snap2.join("d/nested")).unwrap();
    subvolume(&snap2.join("d/nested"));
    write_file(snap2.join("d/nested/z"), b"in the other nested\n").unwrap();
    set_read_only(&snap2);

    let tmp = tempfile::tempdir().unwrap();
    let state = support::state_dir_for(tmp.path());
    let (full, inc) = (tmp.path().join("full"), tmp.path().join("inc"));
    send(&[], &snap, &full);
    let paths = record_paths(&full);
    assert!(paths.iter().any(|p| p == "d/nested"), "the subvolume is sent: {paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("d/nested/")), "its contents not: {paths:?}");
    let replica = tmp.path().join("replica");
    receive(&full, &replica, &state);
    assert_eq!(tree(&replica), ["d", "d/nested", "file"]);

    send(&["--from", snap.to_str().unwrap()], &snap2, &inc);
    let paths = record_paths(&inc);
    assert!(!paths.iter().any(|p| p.starts_with("d/nested/")), "incremental: {paths:?}");
    receive(&inc, &replica, &state);
    assert_eq!(tree(&replica), ["d", "d/nested", "file"]);
    assert_eq!(std::fs::read(replica.join("file")).unwrap(), b"in vol\nmore\n");
    let _ = std::fs::remove_dir_all(&state);
}

/// The header line of `anyrecv --dump -f stream`.
fn dump_header(stream: &Path) -> String {
    let mut cmd = Command::new(support::bin("anyrecv"));
    cmd.arg("--dump").arg("-f").arg(stream);
    let out = support::ok("anyrecv --dump", capture(&mut cmd)).unwrap();
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
}

struct Snaps {
    _fs: BtrfsFs,
    s1: PathBuf,
    s2: PathBuf,
}

/// s1: keep, cache/x, a/b.tmp, a/c; s2: cache/x edited and cache/new added, a/b.tmp removed,
/// a/c edited, a/d.tmp added.
fn snaps() -> Snaps {
    let fs = BtrfsFs::new(256 * MIB);
    let v = fs.create_subvolume("vol");
    write_file(v.join("keep"), b"keep\n").unwrap();
    mkdir(v.join("cache")).unwrap();
    write_file(v.join("cache/x"), b"x1\n").unwrap();
    mkdir(v.join("a")).unwrap();
    write_file(v.join("a/b.tmp"), b"tmp\n").unwrap();
    write_file(v.join("a/c"), b"c1\n").unwrap();
    let s1 = fs.snapshot_ro(&v, "s1");
    append(v.join("cache/x"), b"x2\n").unwrap();
    write_file(v.join("cache/new"), b"new\n").unwrap();
    remove(v.join("a/b.tmp")).unwrap();
    append(v.join("a/c"), b"c2\n").unwrap();
    write_file(v.join("a/d.tmp"), b"tmp\n").unwrap();
    let s2 = fs.snapshot_ro(&v, "s2");
    Snaps { _fs: fs, s1, s2 }
}

const EXCLUDES: [&str; 4] = ["--exclude", "cache/**", "--exclude", "**/*.tmp"];

#[test]
fn excluded_objects_are_neither_sent_nor_removed() {
    let Some(_p) = require_privileged("e2e_scope::excluded_objects_are_neither_sent_nor_removed")
    else {
        return;
    };
    let s = snaps();
    let tmp = tempfile::tempdir().unwrap();
    let state = support::state_dir_for(tmp.path());

    // A full stream with the excludes: cache is an empty directory, no *.tmp anywhere.
    let full = tmp.path().join("full");
    send(&EXCLUDES, &s.s2, &full);
    assert!(dump_header(&full).ends_with(" filtered"), "{}", dump_header(&full));
    let filtered = tmp.path().join("filtered");
    receive(&full, &filtered, &state);
    assert_eq!(tree(&filtered), ["a", "a/c", "cache", "keep"]);

    // An incremental with the excludes onto a whole replica of s1: the excluded objects there
    // are left as they were (a/b.tmp not removed, cache/x not updated), none is added.
    let whole = tmp.path().join("whole");
    send(&[], &s.s1, &whole);
    assert!(!dump_header(&whole).contains("filtered"), "{}", dump_header(&whole));
    let replica = tmp.path().join("replica");
    receive(&whole, &replica, &state);
    let inc = tmp.path().join("inc");
    let mut args = vec!["--from", s.s1.to_str().unwrap()];
    args.extend(EXCLUDES);
    send(&args, &s.s2, &inc);
    assert!(dump_header(&inc).ends_with(" filtered"), "{}", dump_header(&inc));
    receive(&inc, &replica, &state);
    assert_eq!(tree(&replica), ["a", "a/b.tmp", "a/c", "cache", "cache/x", "keep"]);
    assert_eq!(std::fs::read(replica.join("a/c")).unwrap(), b"c1\nc2\n");
    assert_eq!(std::fs::read(replica.join("cache/x")).unwrap(), b"x1\n");
    let _ = std::fs::remove_dir_all(&state);
}
