//! The built `anysend` on real btrfs snapshots: streams decode cleanly and hold the expected
//! records (renames, hard links, sparse files, xattrs, modes, chattr flags, a tree deeper than
//! PATH_MAX), runs are deterministic, and the dry run's estimate is the real size.

use anysend_stream::{Class, Record, StreamHeader};
use anysend_testbed::fsops::*;
use anysend_testbed::{require_privileged, BtrfsFs};
use rustix::fs::IFlags;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_anysend");
const MIB: u64 = 1 << 20;
const DEPTH: usize = 40;
const NAME_LEN: usize = 120;

fn anysend(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN).arg("-q").args(args).output().expect("run anysend")
}

fn send(origin: Option<&Path>, target: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args: Vec<&std::ffi::OsStr> = extra.iter().map(|s| s.as_ref()).collect();
    if let Some(o) = origin {
        args.push("--from".as_ref());
        args.push(o.as_os_str());
    }
    args.push(target.as_os_str());
    let out = anysend(&args);
    assert!(out.status.success(), "anysend failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The header and records of a whole stream (the tests here look at records, not indices).
fn decode(bytes: &[u8]) -> (StreamHeader, Vec<Record>) {
    let (header, records) = anysend_testbed::streams::decode(bytes);
    (header, records.into_iter().map(|(_, r)| r).collect())
}

fn deep_path() -> Vec<u8> {
    let names = deep_names(DEPTH, NAME_LEN);
    let mut p = names.join(&b'/');
    p.extend_from_slice(b"/leaf");
    p
}

struct Snaps {
    _fs: BtrfsFs,
    s1: PathBuf,
    s2: PathBuf,
}

/// Step 1: a tree with every kind of object; step 2: renames, links, edits, metadata.
fn snapshots() -> Snaps {
    let fs = BtrfsFs::new(256 * MIB);
    let v = fs.create_subvolume("vol");
    mkdir_all(v.join("d/sub")).unwrap();
    write_file(v.join("d/file"), b"hello").unwrap();
    write_file(v.join("linked"), b"shared data").unwrap();
    hardlink(v.join("linked"), v.join("d/second-name")).unwrap();
    make_sparse(v.join("sparse"), 16 * MIB, &[(MIB, &pattern(8192, 1)), (9 * MIB, b"tail")])
        .unwrap();
    symlink(b"../linked", v.join("d/sym")).unwrap();
    mkfifo(v.join("fifo"), 0o640).unwrap();
    set_xattr(v.join("d/file"), "user.color", b"blue").unwrap();
    write_file(v.join("locked"), b"v1").unwrap();
    chmod(v.join("d/file"), 0o640).unwrap();
    let leaf = open_deep_dir(&v, &deep_names(DEPTH, NAME_LEN), true).unwrap();
    write_file_at(&leaf, b"leaf", b"deep v1").unwrap();
    add_flags(v.join("locked"), IFlags::IMMUTABLE).unwrap();
    let s1 = fs.snapshot_ro(&v, "s1");

    rename(v.join("d/file"), v.join("d/sub/moved")).unwrap();
    hardlink(v.join("linked"), v.join("third-name")).unwrap();
    set_xattr(v.join("d/sub/moved"), "user.color", b"green").unwrap();
    set_xattr(v.join("d/sub/moved"), "user.new", b"1").unwrap();
    chmod(v.join("d/sub/moved"), 0o604).unwrap();
    write_file_at(&leaf, b"leaf", b"deep v2!").unwrap();
    remove_flags(v.join("locked"), IFlags::IMMUTABLE).unwrap();
    append(v.join("locked"), b" and v2").unwrap();
    add_flags(v.join("locked"), IFlags::IMMUTABLE | IFlags::NODUMP).unwrap();
    let s2 = fs.snapshot_ro(&v, "s2");
    Snaps { _fs: fs, s1, s2 }
}

fn has(recs: &[Record], f: impl Fn(&Record) -> bool) -> bool {
    recs.iter().any(f)
}

fn position(recs: &[Record], f: impl Fn(&Record) -> bool) -> usize {
    recs.iter().position(f).expect("record present")
}

#[test]
fn full_and_incremental_streams_hold_the_expected_records() {
    let Some(_p) = require_privileged("full_and_incremental_streams_hold_the_expected_records")
    else {
        return;
    };
    let s = snapshots();
    let (h, full) = decode(&send(None, &s.s1, &[]));
    assert!(h.origin.is_none());
    let show = || full.iter().map(|r| format!("{r}\n")).collect::<String>();

    // Hard link: data once, then a link record.
    let writes_of = |recs: &[Record], p: &[u8]| -> Vec<(u64, usize)> {
        recs.iter()
            .filter_map(|r| match r {
                Record::Write { path, offset, data } if path == p => Some((*offset, data.len())),
                _ => None,
            })
            .collect()
    };
    let linked = [b"linked".as_slice(), b"d/second-name"];
    let created: Vec<&[u8]> = linked
        .iter()
        .copied()
        .filter(|p| has(&full, |r| matches!(r, Record::Create { path } if path == p)))
        .collect();
    assert_eq!(created.len(), 1, "one name is created\n{}", show());
    assert!(has(&full, |r| matches!(r, Record::Link { .. })), "{}", show());
    let other = linked.iter().find(|p| **p != created[0]).copied().unwrap_or_default();
    assert!(writes_of(&full, other).is_empty(), "data is sent once");

    // Sparse: only the data extents, then the size.
    assert_eq!(writes_of(&full, b"sparse"), vec![(MIB, 8192), (9 * MIB, 4096)], "{}", show());
    assert!(has(
        &full,
        |r| matches!(r, Record::Truncate { path, size } if path == b"sparse" && *size == 16 * MIB)
    ));

    // Metadata of a new file, in the order of section 5.
    let p = |name: &'static str| move |r: &Record| r.path() == Some(name.as_bytes());
    let file_recs: Vec<&str> = full.iter().filter(|r| p("d/file")(r)).map(|r| r.name()).collect();
    assert_eq!(file_recs, ["create", "write", "chown", "set_xattr", "chmod", "utimes"]);
    assert!(has(
        &full,
        |r| matches!(r, Record::Chmod { path, mode } if path == b"d/file" && *mode == 0o640)
    ));
    assert!(has(&full, |r| matches!(r, Record::Mknod { path, .. } if path == b"fifo")));
    assert!(has(
        &full,
        |r| matches!(r, Record::Symlink { path, target } if path == b"d/sym" && target == b"../linked")
    ));
    // Symlinks get an owner and times but no mode.
    let sym: Vec<&str> = full.iter().filter(|r| p("d/sym")(r)).map(|r| r.name()).collect();
    assert_eq!(sym, ["symlink", "chown", "utimes"]);
    // Immutable: set last.
    let locked: Vec<&str> = full.iter().filter(|r| p("locked")(r)).map(|r| r.name()).collect();
    assert_eq!(locked.last(), Some(&"set_flags"));
    // A directory's times come after everything inside it.
    let d_times = position(&full, |r| matches!(r, Record::Utimes { path, .. } if path == b"d"));
    let last_in_d = full.iter().rposition(|r| r.path().is_some_and(|x| x.starts_with(b"d/")));
    assert!(last_in_d.is_some_and(|i| i < d_times));
    // The deep leaf, past PATH_MAX.
    let deep = deep_path();
    assert!(deep.len() > 4096);
    assert!(has(&full, |r| matches!(r, Record::Write { path, .. } if *path == deep)));

    let (h2, inc) = decode(&send(Some(&s.s1), &s.s2, &[]));
    assert_eq!(h2.origin, Some(h.target), "the incremental stream starts where the full ended");
    let show = || inc.iter().map(|r| format!("{r}\n")).collect::<String>();
    assert!(
        has(
            &inc,
            |r| matches!(r, Record::Rename { from, to } if from == b"d/file" && to == b"d/sub/moved")
        ),
        "{}",
        show()
    );
    assert!(has(&inc, |r| matches!(r, Record::Link { path, .. } if path == b"third-name")));
    assert!(!has(&inc, |r| matches!(r, Record::Write { path, .. } if path == b"d/sub/moved")));
    assert!(has(
        &inc,
        |r| matches!(r, Record::SetXattr { path, name, value } if path == b"d/sub/moved" && name == b"user.color" && value == b"green")
    ));
    assert!(has(&inc, |r| matches!(r, Record::SetXattr { name, .. } if name == b"user.new")));
    assert!(has(
        &inc,
        |r| matches!(r, Record::Chmod { path, mode } if path == b"d/sub/moved" && *mode == 0o604)
    ));
    assert!(has(
        &inc,
        |r| matches!(r, Record::Write { path, offset: 0, data } if *path == deep && &data[..] == b"deep v2!")
    ));
    // Every origin object the stream touches is stated before the first change.
    let first_change = inc.iter().position(|r| r.class() != Class::Check).unwrap_or(inc.len());
    assert!(inc[first_change..].iter().all(|r| r.class() != Class::Check), "{}", show());
    assert!(inc[..first_change].iter().any(|r| r.path() == Some(b"locked")), "{}", show());
    // Immutable in the origin and changed: lifted first, set again last.
    assert!(
        matches!(&inc[first_change], Record::SetFlags { path, flags: 0 } if path == b"locked"),
        "{}",
        show()
    );
    let last_locked = inc.iter().rposition(|r| r.path() == Some(b"locked"));
    assert!(
        matches!(last_locked.map(|i| &inc[i]), Some(Record::SetFlags { flags: 0x50, .. })),
        "{}",
        show()
    );
    // Nothing unchanged is sent.
    assert!(!has(&inc, |r| r.path() == Some(b"sparse")), "{}", show());
}

/// The header bytes that differ between two runs: creation time and header CRC.
fn masked(mut s: Vec<u8>) -> Vec<u8> {
    let h = u32::from_le_bytes([s[12], s[13], s[14], s[15]]) as usize;
    s[80..92].fill(0);
    s[h - 4..h].fill(0);
    // The end record's chain covers the header CRC; its record CRC covers the chain.
    let n = s.len();
    s[n - 8..].fill(0);
    s
}

#[test]
fn two_runs_give_the_same_stream_and_the_dry_run_knows_its_size() {
    let Some(_p) = require_privileged("two_runs_give_the_same_stream") else { return };
    let s = snapshots();
    for extra in [&[][..], &["-z"][..], &["--compress=9"][..]] {
        for origin in [None, Some(s.s1.as_path())] {
            let a = send(origin, &s.s2, extra);
            let b = send(origin, &s.s2, extra);
            assert_eq!(a.len(), b.len());
            assert!(masked(a.clone()) == masked(b), "runs differ ({extra:?}, origin {origin:?})");

            let mut args: Vec<&str> = vec!["-n", "--json"];
            args.extend_from_slice(extra);
            let json = String::from_utf8(send(origin, &s.s2, &args)).unwrap();
            let size: u64 = json
                .split("\"stream_bytes\":")
                .nth(1)
                .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no stream_bytes in {json}"));
            assert_eq!(size, a.len() as u64, "dry run estimate ({extra:?}): {json}");
        }
    }
}

#[test]
fn ids_are_the_btrfs_subvolume_uuids() {
    let Some(_p) = require_privileged("ids_are_the_btrfs_subvolume_uuids") else { return };
    let fs = BtrfsFs::new(128 * MIB);
    let v = fs.create_subvolume("vol");
    write_file(v.join("f"), b"x").unwrap();
    let s1 = fs.snapshot_ro(&v, "s1");
    let (h, _) = decode(&send(None, &s1, &[]));
    let show = anysend_testbed::cmd::run_ok(
        "btrfs",
        ["subvolume".as_ref(), "show".as_ref(), s1.as_os_str()],
    );
    let uuid = show
        .lines()
        .find_map(|l| l.trim().strip_prefix("UUID:"))
        .map(|u| u.trim().to_string())
        .expect("btrfs subvolume show prints a UUID");
    assert_eq!(h.target.to_string(), uuid);
    // Labels override, and the same label always gives the same id.
    let (a, _) = decode(&send(None, &s1, &["--label", "mon"]));
    let (b, _) = decode(&send(None, &s1, &["--label", "mon"]));
    assert_eq!(a.target, b.target);
    assert_eq!(a.stream_id, b.stream_id);
    assert_ne!(a.target, h.target);
    // A read-only snapshot is sent silently; a writable subvolume gets a warning.
    let quietly = |p: &Path| {
        let out = Command::new(BIN).args(["-f", "/dev/null"]).arg(p).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(quietly(&s1), "");
    assert!(quietly(&v).contains("is not read-only"));
}

#[test]
fn refuses_a_terminal_as_stdout() {
    // `script` gives the child a pseudo-terminal as stdout; without it, skip.
    if anysend_testbed::cmd::which("script").is_none() {
        eprintln!("*** SKIPPED refuses_a_terminal_as_stdout: no `script` ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!("{BIN} {}; echo EXIT=$?", dir.path().display());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refusing to write a binary stream to a terminal"), "{text}");
    assert!(text.contains("EXIT=2"), "{text}");
}

/// `anysend -v` lists each record as `anyrecv --dump` prints it, compression mark included.
#[test]
fn the_listing_of_a_send_is_the_dump_of_its_stream() {
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    mkdir_all(tree.join("d")).unwrap();
    write_file(tree.join("d/zeros"), &vec![0u8; 64 * 1024]).unwrap();
    write_file(tree.join("short"), b"x").unwrap();
    let stream = t.path().join("s");
    let out = Command::new(BIN)
        .args(["-v", "-z", "--label", "v1", "-f"])
        .arg(&stream)
        .arg(&tree)
        .output()
        .expect("run anysend");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().split(' ').nth(1).is_some_and(|w| w.starts_with('@')))
        .collect();
    let bytes = std::fs::read(&stream).unwrap();
    let mut r = anysend_stream::StreamReader::new(&bytes[..]).expect("header");
    let mut dumped = Vec::new();
    while let Some(f) = r.next_frame().expect("valid record") {
        dumped.push(anysend_stream::dump::frame_line(&f));
    }
    assert_eq!(listed, dumped);
    assert!(dumped.iter().any(|l| l.ends_with(" (zstd)")), "the zeros went compressed");
    assert!(dumped.last().is_some_and(|l| l.contains("end") && l.contains("chain=")));
}
