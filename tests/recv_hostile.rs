//! Hostile streams, through the binary: each is refused with an error naming the record, and
//! nothing outside DEST changes (a canary directory beside DEST is compared byte for byte and
//! time for time, and nothing new appears beside DEST).

#[path = "../crates/recv/tests/common/mod.rs"]
mod common;
mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anysend_stream::{NodeType, Record};
use anysend_testbed::cmd::Captured;
use anysend_testbed::streams::{lp, raw_header, raw_record, stream};
use common::*;
use support::run_anyrecv as run_bin;

struct Setup {
    _t: tempfile::TempDir,
    base: std::path::PathBuf,
    dest: std::path::PathBuf,
    state: std::path::PathBuf,
    canary: Canary,
}

fn setup() -> Setup {
    let t = scratch();
    let base = t.path().to_path_buf();
    let canary = Canary::new(&base);
    Setup { dest: base.join("dest"), state: base.join("state"), base, canary, _t: t }
}

impl Setup {
    fn run(&self, extra: &[&str], bytes: &[u8]) -> Captured {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--state-dir"), self.state.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        args.push(self.dest.as_os_str());
        run_bin(&args, bytes)
    }

    fn beside(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> =
            std::fs::read_dir(&self.base).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    }

    /// Runs a hostile stream and checks the refusal: exit code, record index named, canary
    /// untouched, nothing new beside DEST.
    fn refused(
        &self,
        extra: &[&str],
        records: &[Record],
        code: i32,
        index: u64,
        words: &str,
    ) -> Captured {
        let bytes = stream(None, 1, records);
        self.refused_bytes(extra, &bytes, code, index, words)
    }

    fn refused_bytes(
        &self,
        extra: &[&str],
        bytes: &[u8],
        code: i32,
        index: u64,
        words: &str,
    ) -> Captured {
        let before: Vec<_> =
            self.beside().into_iter().filter(|n| n != "dest" && n != "state").collect();
        let r = self.run(extra, bytes);
        assert_eq!(r.code, code, "exit code; stderr:\n{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("record {index} at byte ")),
            "record {index} not named:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains(words), "{words:?} not in:\n{}", r.stderr);
        self.canary.assert_unchanged();
        let after: Vec<_> =
            self.beside().into_iter().filter(|n| n != "dest" && n != "state").collect();
        assert_eq!(before, after, "something appeared beside DEST");
        r
    }
}

fn data(s: &str) -> anysend_stream::Data {
    s.as_bytes().into()
}

#[test]
fn symlink_out_of_dest_then_create_mkdir_write_through_it() {
    for (target, follow) in [
        (p("../canary"), Record::Create { path: p("esc/new") }),
        (p("../canary"), Record::Mkdir { path: p("esc/newdir") }),
        (p("../canary"), Record::Write { path: p("esc/file"), offset: 0, data: data("pwned") }),
        (p("../canary"), Record::Symlink { path: p("esc/sub/l"), target: p("x") }),
        (
            p("../canary"),
            Record::Mknod { path: p("esc/fifo"), node: NodeType::Fifo, major: 0, minor: 0 },
        ),
        (p("../canary"), Record::Unlink { path: p("esc/file") }),
        (p("../canary"), Record::Rmdir { path: p("esc/sub") }),
        (p("../canary"), Record::Chmod { path: p("esc/file"), mode: 0o777 }),
        (p("../canary"), Record::Chown { path: p("esc/file"), uid: 1, gid: 1 }),
        (
            p("../canary"),
            Record::Utimes {
                path: p("esc/file"),
                atime_sec: 0,
                atime_nsec: 0,
                mtime_sec: 0,
                mtime_nsec: 0,
            },
        ),
        (
            p("../canary"),
            Record::SetXattr { path: p("esc/file"), name: p("user.x"), value: p("y") },
        ),
        (p("../canary"), Record::SetFlags { path: p("esc/file"), flags: 0x10 }),
        (p("../canary"), Record::Truncate { path: p("esc/file"), size: 0 }),
        (p("/"), Record::Create { path: p("esc/tmp/anyrecv-escaped") }),
    ] {
        for absolute in [false, true] {
            let s = setup();
            let t = match (absolute, target.as_slice()) {
                (true, b"/") | (false, _) => target.clone(),
                (true, _) => s.canary.dir.as_os_str().as_bytes().to_vec(),
            };
            let records = [Record::Symlink { path: p("esc"), target: t }, follow.clone()];
            let r = s.refused(&[], &records, 4, 1, "esc is a symbolic link");
            assert!(r.stderr.contains("never follows"), "{}", r.stderr);
        }
    }
    assert!(!Path::new("/tmp/anyrecv-escaped").exists());
}

#[test]
fn acting_on_a_final_symlink_to_outside_is_refused() {
    for rec in [
        Record::Write { path: p("f"), offset: 0, data: data("pwned") },
        Record::Truncate { path: p("f"), size: 0 },
        Record::Hole { path: p("f"), offset: 0, len: 4 },
        Record::Chmod { path: p("f"), mode: 0o777 },
    ] {
        let s = setup();
        s.refused(
            &[],
            &[Record::Symlink { path: p("f"), target: p("../canary/file") }, rec],
            4,
            1,
            "symbolic link",
        );
    }
    // copy_from_origin belongs to incrementals: onto a DEST whose `f` is the symlink.
    let s = setup();
    let full = stream(None, 1, &[Record::Symlink { path: p("f"), target: p("../canary/file") }]);
    assert_eq!(s.run(&[], &full).code, 0);
    let copy = Record::CopyFromOrigin { path: p("f"), src_offset: 0, dst_offset: 1, len: 2 };
    s.refused_bytes(&[], &stream(Some(1), 2, &[copy]), 4, 0, "symbolic link");
    // Metadata that applies to the link itself is harmless and allowed (not followed).
    let s = setup();
    let r = s.run(
        &[],
        &stream(
            None,
            1,
            &[
                Record::Symlink { path: p("f"), target: p("../canary/file") },
                Record::Utimes {
                    path: p("f"),
                    atime_sec: 5,
                    atime_nsec: 0,
                    mtime_sec: 5,
                    mtime_nsec: 0,
                },
                Record::Link { path: p("g"), existing: p("f") },
            ],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.canary.assert_unchanged();
    assert!(std::fs::symlink_metadata(s.dest.join("g")).unwrap().file_type().is_symlink());
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let s = setup();
    s.refused(
        &[],
        &[
            Record::Mkdir { path: p("d") },
            Record::Link { path: p("x"), existing: p("../canary/file") },
        ],
        4,
        1,
        "`..` component",
    );
    let abs = s.canary.dir.join("file").as_os_str().as_bytes().to_vec();
    let s2 = setup();
    s2.refused(&[], &[Record::Link { path: p("x"), existing: abs }], 4, 0, "absolute");
    let s3 = setup();
    s3.refused(
        &[],
        &[
            Record::Symlink {
                path: p("esc"),
                target: s3.canary.dir.as_os_str().as_bytes().to_vec(),
            },
            Record::Link { path: p("x"), existing: p("esc/file") },
        ],
        4,
        1,
        "esc is a symbolic link",
    );
}

#[test]
fn renames_out_of_and_into_dest_are_refused() {
    let s = setup();
    s.refused(
        &[],
        &[Record::Create { path: p("a") }, Record::Rename { from: p("a"), to: p("../x") }],
        4,
        1,
        "`..` component",
    );
    assert!(!s.base.join("x").exists());
    let s = setup();
    s.refused(
        &[],
        &[Record::Rename { from: p("../canary/file"), to: p("stolen") }],
        4,
        0,
        "`..` component",
    );
    let s = setup();
    s.refused(
        &[],
        &[
            Record::Symlink { path: p("esc"), target: p("../canary") },
            Record::Rename { from: p("esc/file"), to: p("stolen") },
        ],
        4,
        1,
        "esc is a symbolic link",
    );
    let s = setup();
    s.refused(
        &[],
        &[
            Record::Create { path: p("a") },
            Record::Symlink { path: p("esc"), target: p("../canary") },
            Record::Rename { from: p("a"), to: p("esc/a") },
        ],
        4,
        2,
        "esc is a symbolic link",
    );
}

#[test]
fn absolute_dot_and_empty_components_are_refused() {
    for (rec, words) in [
        (Record::Mkdir { path: p("/tmp/anyrecv-abs") }, "absolute"),
        (Record::Create { path: p("/etc/anyrecv-abs") }, "absolute"),
        (Record::Mkdir { path: p("a/./b") }, "`.` component"),
        (Record::Mkdir { path: p(".") }, "`.` component"),
        (Record::Mkdir { path: p("a//b") }, "empty component"),
        (Record::Mkdir { path: p("a/") }, "empty component"),
        (Record::Mkdir { path: p("..") }, "`..` component"),
        (Record::Rmdir { path: p("") }, "names DEST itself"),
        (Record::Rename { from: p(""), to: p("x") }, "names DEST itself"),
        (Record::Create { path: vec![b'n'; 256] }, "the most a name can have is 255"),
    ] {
        let s = setup();
        s.refused(&[], &[Record::Mkdir { path: p("a") }, rec], 4, 1, words);
        // The record before the refused one was applied; nothing after it.
        assert!(s.dest.join("a").is_dir());
    }
    assert!(!Path::new("/tmp/anyrecv-abs").exists());
}

#[test]
fn writing_to_a_fifo_or_device_is_refused_without_blocking() {
    let s = setup();
    s.refused(
        &[],
        &[
            Record::Mknod { path: p("p"), node: NodeType::Fifo, major: 0, minor: 0 },
            Record::Write { path: p("p"), offset: 0, data: data("x") },
        ],
        5,
        1,
        "it is a fifo, not a regular file",
    );
}

#[test]
fn lengths_beyond_the_maximums_are_refused_by_the_reader() {
    // A payload length of 4 GiB - 1: refused before anything is allocated.
    let s = setup();
    let mut b = raw_header(1);
    b.extend(raw_record(0, 1, 0, &lp(b"ok"), None));
    b.extend(raw_record(1, 1, 0, &[], Some(u32::MAX)));
    s.refused_bytes(&[], &b, 1, 1, "exceeds the maximum");
    assert!(s.dest.join("ok").is_dir(), "the record before was applied");

    // A path field declaring 2 MiB, a symlink target of 5000 bytes, an xattr value of 70000
    // bytes, each in an otherwise valid record.
    let mut path_2m = (2u32 << 20).to_le_bytes().to_vec();
    path_2m.extend_from_slice(b"abc");
    let mut target = lp(b"l");
    target.extend(lp(&vec![b't'; 5000]));
    let mut xv = lp(b"f");
    xv.extend_from_slice(&6u16.to_le_bytes());
    xv.extend_from_slice(b"user.x");
    xv.extend(lp(&vec![0u8; 70_000]));
    for (code, payload) in [(1u16, path_2m), (3, target), (13, xv)] {
        let s = setup();
        let mut b = raw_header(1);
        b.extend(raw_record(0, 2, 0, &lp(b"f"), None));
        b.extend(raw_record(1, code, 0, &payload, None));
        s.refused_bytes(&[], &b, 1, 1, "exceeds the maximum");
    }
}

#[test]
fn a_decompression_bomb_is_refused() {
    let s = setup();
    let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], 19).unwrap();
    let mut payload = lp(b"f");
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&16u32.to_le_bytes()); // declared: 16 bytes
    payload.extend_from_slice(&bomb);
    let mut b = raw_header(1);
    b.extend(raw_record(0, 2, 0, &lp(b"f"), None));
    b.extend(raw_record(1, 9, 1, &payload, None));
    s.refused_bytes(&[], &b, 1, 1, "malformed write record");
    // The new file waits in the holding directory (it gets its name when its data is complete),
    // and nothing of the bomb reached it.
    assert!(!s.dest.join("f").exists());
    let held = std::fs::read_dir(&s.dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(".anyrecv-"))
        .expect("holding directory");
    assert_eq!(std::fs::metadata(held.join("n0")).unwrap().len(), 0);

    // Declared beyond the 8 MiB maximum: refused before decompressing.
    let s = setup();
    let mut payload = lp(b"f");
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&(64u32 << 20).to_le_bytes());
    payload.extend_from_slice(&bomb);
    let mut b = raw_header(1);
    b.extend(raw_record(0, 2, 0, &lp(b"f"), None));
    b.extend(raw_record(1, 9, 1, &payload, None));
    s.refused_bytes(&[], &b, 1, 1, "exceeds the maximum");
}

#[test]
fn no_devices_and_no_setuid() {
    let s = setup();
    let r = s.refused(
        &["--no-devices"],
        &[
            Record::Mknod { path: p("fifo"), node: NodeType::Fifo, major: 0, minor: 0 },
            Record::Mknod { path: p("sda"), node: NodeType::BlockDevice, major: 8, minor: 0 },
        ],
        4,
        1,
        "--no-devices refuses device nodes",
    );
    assert!(r.stderr.contains("mknod sda"), "{}", r.stderr);
    assert!(!s.dest.join("sda").exists());

    let s = setup();
    let r = s.refused(
        &["--no-setuid"],
        &[
            Record::Create { path: p("f") },
            Record::Chmod { path: p("f"), mode: 0o755 },
            Record::Chmod { path: p("f"), mode: 0o4755 },
        ],
        4,
        2,
        "--no-setuid refuses mode 4755",
    );
    assert!(r.stderr.contains("chmod f"), "{}", r.stderr);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.dest.join("f")).unwrap().permissions().mode() & 0o7777, 0o755);

    // File capabilities raise privileges as setuid does: refused too (cap_setuid=ep).
    let s = setup();
    let cap = vec![1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let r = s.refused(
        &["--no-setuid"],
        &[
            Record::Create { path: p("f") },
            Record::Chmod { path: p("f"), mode: 0o755 },
            Record::SetXattr { path: p("f"), name: p("security.capability"), value: cap },
        ],
        4,
        2,
        "--no-setuid refuses file capabilities",
    );
    assert!(r.stderr.contains("set_xattr f"), "{}", r.stderr);
    let mut buf = [0u8; 64];
    let held =
        rustix::fs::getxattr(s.dest.join("f").as_path(), "security.capability", &mut buf[..]);
    assert!(held.is_err(), "the capability was applied");

    // A dry run refuses the same records.
    let s = setup();
    let bytes = stream(
        None,
        1,
        &[Record::Mknod { path: p("sda"), node: NodeType::CharDevice, major: 8, minor: 0 }],
    );
    let r = s.run(&["-n", "--no-devices"], &bytes);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(!s.dest.exists());
}

/// A full stream has no origin: a `copy_from_origin` in one (which would read DEST's own
/// bytes as if they were the origin's) is refused before it is applied.
#[test]
fn copy_from_origin_in_a_full_stream_is_refused() {
    let s = setup();
    s.refused(
        &[],
        &[
            Record::Create { path: p("f") },
            Record::Write { path: p("f"), offset: 0, data: data("abc") },
            Record::CopyFromOrigin { path: p("f"), src_offset: 0, dst_offset: 3, len: 3 },
        ],
        4,
        2,
        "`copy_from_origin` in a full stream",
    );
    // A dry run refuses it too.
    let s = setup();
    let bytes = stream(
        None,
        1,
        &[
            Record::Create { path: p("f") },
            Record::CopyFromOrigin { path: p("f"), src_offset: 0, dst_offset: 0, len: 1 },
        ],
    );
    let r = s.run(&["-n"], &bytes);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("in a full stream"), "{}", r.stderr);
}

/// A path of a megabyte (the most a record may carry) is refused with a message of a few
/// lines: its ends and its length, not the whole path.
#[test]
fn a_megabyte_path_is_cut_in_the_message() {
    let s = setup();
    let long = [b"../".repeat(300_000), b"etc/passwd".to_vec()].concat();
    let r = s.refused(&[], &[Record::Create { path: long.clone() }], 4, 0, "bytes)");
    assert!(r.stderr.len() < 4096, "{} bytes of stderr", r.stderr.len());
    assert!(r.stderr.contains(&format!("({} bytes)", long.len())), "{}", r.stderr);
}
