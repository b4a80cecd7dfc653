//! Drives the whole receiver, not only the reader: the fuzz input is read as a sequence of
//! records over a small set of awkward paths and symlink targets (`..`, absolute paths, names
//! through symlinks, the holding directory's prefix), written as a valid stream (checksums
//! right, so every record reaches the applier), and received into a fresh DEST: a full stream,
//! then an incremental of the rest onto it, then an abort if that one failed. After each step
//! nothing beside DEST may have changed: a canary file keeps its bytes and times, and no new
//! name appears next to DEST. Panics, hangs and unbounded allocation are findings as well.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyrecv::{Config, Policy, Warning};
use anysend_stream::{Id, NodeType, Record, StreamHeader, StreamWriter, WriterOptions};
use libfuzzer_sys::fuzz_target;

/// Paths a record may name: legal ones, ones through a symlink, and ones that try to leave.
const PATHS: &[&[u8]] = &[
    b"",
    b"a",
    b"a/b",
    b"a/b/c",
    b"l",
    b"l/x",
    b"f",
    b"f/g",
    b"d",
    b"d/e",
    b"..",
    b"../canary/file",
    b"a/../../canary",
    b"/tmp/anyrecv-fuzz-escape",
    b"./a",
    b"a//b",
    b".anyrecv-0",
    b"e\n\xff",
];

/// Symlink targets: inside, outside, absolute, dangling.
const TARGETS: &[&[u8]] = &[b"a", b"..", b"../canary", b"/", b"/tmp", b"../../..", b"l", b"x/y"];

const XATTRS: &[&[u8]] =
    &[b"user.a", b"security.capability", b"trusted.x", b"system.posix_acl_access", b"bogus"];

/// Reads the input as records, four bytes or more each.
fn records(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut it = data.chunks_exact(4);
    for c in &mut it {
        let path = |i: u8| PATHS[usize::from(i) % PATHS.len()].to_vec();
        let (kind, a, b, n) = (c[0], c[1], c[2], c[3]);
        let n64 = u64::from(n);
        out.push(match kind % 20 {
            0 => Record::Mkdir { path: path(a) },
            1 => Record::Create { path: path(a) },
            2 => Record::Symlink {
                path: path(a),
                target: TARGETS[usize::from(b) % TARGETS.len()].to_vec(),
            },
            3 => Record::Mknod { path: path(a), node: NodeType::Fifo, major: 0, minor: 0 },
            4 => Record::Link { path: path(a), existing: path(b) },
            5 => Record::Unlink { path: path(a) },
            6 => Record::Rmdir { path: path(a) },
            7 => Record::Rename { from: path(a), to: path(b) },
            8 => Record::Write { path: path(a), offset: n64 * 4093, data: vec![b; 17].into() },
            9 => Record::Hole { path: path(a), offset: n64 * 512, len: 4096 },
            10 => Record::Truncate { path: path(a), size: n64 * 1000 },
            11 => Record::CopyFromOrigin { path: path(a), src_offset: 0, dst_offset: n64, len: 9 },
            12 => Record::SetXattr {
                path: path(a),
                name: XATTRS[usize::from(b) % XATTRS.len()].to_vec(),
                value: vec![n; usize::from(n % 24)],
            },
            13 => Record::RemoveXattr {
                path: path(a),
                name: XATTRS[usize::from(b) % XATTRS.len()].to_vec(),
            },
            14 => Record::Chmod { path: path(a), mode: u32::from(b) << 4 | u32::from(n & 0xf) },
            15 => Record::Chown { path: path(a), uid: u32::from(b), gid: u32::from(n) },
            16 => Record::Utimes {
                path: path(a),
                atime_sec: i64::from(b),
                atime_nsec: 0,
                mtime_sec: i64::from(n) * 1000,
                mtime_nsec: 7,
            },
            // Immutable, append-only, nodump and a few more.
            17 => Record::SetFlags { path: path(a), flags: u32::from(b & 0x70) },
            18 => Record::Mknod { path: path(a), node: NodeType::Socket, major: 0, minor: 0 },
            _ => Record::Rename { from: path(b), to: path(a) },
        });
    }
    out
}

fn stream(origin: Option<u8>, target: u8, recs: &[Record]) -> Vec<u8> {
    let id = |b: u8| Id([b; 16]);
    let header = StreamHeader::new(id(target ^ 0x80), origin.map(id), id(target), 1, 0);
    let Ok(mut w) = StreamWriter::new(Vec::new(), &header, WriterOptions::default()) else {
        return Vec::new();
    };
    for r in recs {
        if w.write(r).is_err() {
            break;
        }
    }
    w.finish().unwrap_or_default()
}

/// What must not change beside DEST: the canary's bytes and times, and the names there.
fn outside(base: &Path) -> (Vec<u8>, i64, i64, Vec<std::ffi::OsString>) {
    let f = base.join("canary/file");
    let md = fs::symlink_metadata(&f).expect("the canary is gone");
    let mut names: Vec<_> = fs::read_dir(base)
        .expect("the base is gone")
        .map(|e| e.expect("listing the base").file_name())
        .collect();
    names.sort();
    let mut canary: Vec<_> = fs::read_dir(base.join("canary"))
        .expect("the canary directory is gone")
        .map(|e| e.expect("listing the canary").file_name())
        .collect();
    canary.sort();
    names.extend(canary);
    (fs::read(&f).expect("reading the canary"), md.mtime(), md.mtime_nsec(), names)
}

/// Removes `p` whatever the receive left (immutable or append-only flags included).
fn clean(p: &Path) {
    if fs::remove_dir_all(p).is_ok() {
        return;
    }
    walk_unlock(p);
    let _ = fs::remove_dir_all(p);
}

/// Lifts inode flags and opens up modes beneath `p`, which a stream may have set.
fn walk_unlock(p: &Path) {
    if let Ok(f) = fs::File::open(p) {
        let _ = rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::empty());
    }
    let Ok(md) = fs::symlink_metadata(p) else { return };
    if md.is_dir() {
        let _ = fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                walk_unlock(&e.path());
            }
        }
    }
}

fn scratch() -> PathBuf {
    // tmpfs where there is one: a receive syncs DEST, which costs nothing there.
    let root = ["/dev/shm", "/tmp"].iter().map(Path::new).find(|p| p.is_dir());
    let dir = tempfile::Builder::new().prefix("anyrecv-fuzz-").tempdir_in(root.unwrap_or(Path::new(".")));
    dir.expect("a scratch directory").keep()
}

fuzz_target!(|data: &[u8]| {
    let recs = records(data);
    let split = data.first().map_or(0, |&b| usize::from(b) % (recs.len() + 1));
    let base = scratch();
    fs::create_dir(base.join("canary")).expect("canary");
    fs::write(base.join("canary/file"), b"canary").expect("canary file");
    let before = outside(&base);
    let cfg = Config {
        dest: base.join("dest"),
        dry_run: false,
        force: false,
        policy: Policy { no_devices: true, no_setuid: false, strict_owner: false },
        state_dir: base.join("state"),
        atomic: false,
        no_journal: false,
    };
    let mut warn = |_: &Warning| {};
    let full = stream(None, 1, &recs[..split]);
    let _ = anyrecv::receive(&cfg, full.as_slice(), &mut warn);
    let mut now = outside(&base);
    now.3.retain(|n| n != "dest" && n != "state");
    let mut was = before.clone();
    was.3.retain(|n| n != "dest" && n != "state");
    assert_eq!(was, now, "the full receive changed something beside DEST");
    let inc = stream(Some(1), 2, &recs[split..]);
    if anyrecv::receive(&cfg, inc.as_slice(), &mut warn).is_err() {
        let _ = anyrecv::rollback::abort(&cfg);
    }
    let mut now = outside(&base);
    now.3.retain(|n| n != "dest" && n != "state");
    assert_eq!(was, now, "the incremental receive or its abort changed something beside DEST");
    assert!(!Path::new("/tmp/anyrecv-fuzz-escape").exists(), "a record wrote outside DEST");
    clean(&base);
});
