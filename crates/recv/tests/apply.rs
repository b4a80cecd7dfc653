//! Every record kind, applied by the library onto a plain temp dir and onto real tmpfs, ext4,
//! XFS and btrfs destinations, compared property by property with a tree built directly.

mod common;

use std::path::Path;

use anysend_stream::{NodeType, Record, WriterOptions};
use anysend_testbed::privilege::is_root;
use anysend_testbed::streams::{stream, stream_with};
use anysend_testbed::xattr_values;
use anysend_testbed::{compare, CompareOptions, DestFs, DestKind};
use common::*;

const T0: i64 = 1_700_000_000;

fn deep_names() -> Vec<Vec<u8>> {
    (0..30)
        .map(|i| {
            let mut n = format!("deep{i:02}-").into_bytes();
            n.resize(200, b'a' + (i % 26) as u8);
            n
        })
        .collect()
}

/// A tree with every kind of object and property the format carries. `privileged` adds what
/// needs root on a real file system (devices, trusted.* and security.* xattrs, ACLs, ownership,
/// flags).
fn rich_spec(privileged: bool, flags: bool) -> Spec {
    let mut e = vec![
        Entry::new(b"dir", Kind::Dir).mode(0o755).mtime(T0, 1),
        Entry::new(b"dir/file", file(b"hello, world\n")).mode(0o644).mtime(T0 + 1, 123_456_789),
        Entry::new(b"dir/hard", Kind::HardLink(b"dir/file".to_vec())),
        Entry::new(b"caf\xe9\nname with newline", file(b"odd name\n"))
            .mode(0o640)
            .mtime(T0 + 2, 999_999_999),
        Entry::new(b"dir/\xff\xfe", Kind::Dir).mode(0o750).mtime(T0 + 3, 7),
        Entry::new(
            b"sparse",
            Kind::File {
                size: 3 << 20,
                chunks: vec![(0, b"head".to_vec()), (2 << 20, vec![7u8; 8192])],
                holes: vec![],
            },
        )
        .mode(0o600)
        .mtime(T0 + 4, 4),
        Entry::new(
            b"punched",
            Kind::File {
                size: 256 << 10,
                chunks: vec![(0, vec![0x5a; 256 << 10])],
                holes: vec![(64 << 10, 64 << 10)],
            },
        )
        .mode(0o600)
        .mtime(T0 + 5, 5),
        Entry::new(b"link", Kind::Symlink(b"dir/file".to_vec())).mtime(T0 + 6, 600),
        Entry::new(b"dangling", Kind::Symlink(b"/nonexistent/\xff\n".to_vec())).mtime(T0 + 7, 700),
        Entry::new(b"fifo", Kind::Node(NodeType::Fifo, 0, 0)).mode(0o644).mtime(T0 + 8, 8),
        Entry::new(b"sock", Kind::Node(NodeType::Socket, 0, 0)).mode(0o755).mtime(T0 + 9, 9),
        Entry::new(b"sticky", Kind::Dir).mode(0o1777).mtime(T0 + 10, 10),
        // Made through a temporary name and a rename.
        Entry::new(b"renamed", file(b"moved here\n")).mode(0o644).mtime(T0 + 11, 11).make(vec![
            Record::Create { path: b"tmp-name".to_vec() },
            Record::Write {
                path: b"tmp-name".to_vec(),
                offset: 0,
                data: b"moved here\n".as_slice().into(),
            },
            Record::Rename { from: b"tmp-name".to_vec(), to: b"renamed".to_vec() },
        ]),
        // (copy_from_origin has no place in a full stream: see
        // copy_from_origin_copies_origin_bytes_even_when_ranges_overlap.)
        Entry::new(b"copied", file(b"CDEF01234567CDEF")).mode(0o644).mtime(T0 + 12, 12),
        Entry::new(b"compressed", file(&vec![b'z'; 300_000])).mode(0o644).mtime(T0 + 13, 13),
        Entry::new(b"xattrs", file(b"x"))
            .mode(0o644)
            .mtime(T0 + 14, 14)
            .xattr(b"user.plain", b"value")
            .xattr(b"user.binary", b"\x00\x01\xff\n")
            .xattr(b"user.empty", b""),
    ];
    // Thirty levels of 200-byte names: far deeper than PATH_MAX.
    let mut p = Vec::new();
    for (i, n) in deep_names().iter().enumerate() {
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(n);
        e.push(Entry::new(&p, Kind::Dir).mode(0o755).mtime(T0 + 100 + i as i64, i as u32));
    }
    let mut deep_file = p.clone();
    deep_file.extend_from_slice(b"/bottom");
    e.push(
        Entry::new(&deep_file, file(b"at the bottom\n"))
            .mode(0o644)
            .mtime(T0 + 200, 2)
            .xattr(b"user.deep", b"yes"),
    );
    if privileged {
        e.extend([
            Entry::new(b"null", Kind::Node(NodeType::CharDevice, 1, 3))
                .mode(0o666)
                .mtime(T0 + 20, 20)
                .owner(0, 5),
            Entry::new(b"loopdev", Kind::Node(NodeType::BlockDevice, 7, 200))
                .mode(0o660)
                .mtime(T0 + 21, 21),
            Entry::new(b"owned", file(b"owned\n"))
                .owner(1234, 5678)
                .mode(0o4755)
                .mtime(T0 + 22, 22)
                .xattr(b"security.capability", &xattr_values::cap_net_bind_service()),
            Entry::new(b"owned-link", Kind::Symlink(b"owned".to_vec()))
                .owner(1001, 1002)
                .mtime(T0 + 23, 23),
            Entry::new(b"acl", file(b"acl\n"))
                .mode(0o640)
                .mtime(T0 + 24, 24)
                .xattr(b"system.posix_acl_access", &xattr_values::acl_access())
                .xattr(b"trusted.t", b"trusted value"),
            Entry::new(b"setgid-dir", Kind::Dir)
                .owner(0, 100)
                .mode(0o2775)
                .mtime(T0 + 25, 25)
                .xattr(b"trusted.dir", b"on a dir"),
        ]);
    }
    if flags {
        e.extend([
            Entry::new(b"append-only", file(b"log line\n"))
                .mode(0o644)
                .mtime(T0 + 30, 30)
                .flags(0x20),
            Entry::new(b"immutable", file(b"frozen\n"))
                .mode(0o644)
                .mtime(T0 + 31, 31)
                .flags(0x10 | 0x40),
            Entry::new(b"nodump-dir", Kind::Dir).mode(0o755).mtime(T0 + 32, 32).flags(0x40 | 0x80),
        ]);
    }
    Spec {
        root_mode: 0o755,
        root_mtime: (T0 + 500, 500_000_001),
        entries: e,
        prelude: vec![
            // Made and removed again: unlink, rmdir, remove_xattr.
            Record::Mkdir { path: b"scratch".to_vec() },
            Record::Create { path: b"scratch/gone".to_vec() },
            Record::SetXattr {
                path: b"scratch/gone".to_vec(),
                name: b"user.tmp".to_vec(),
                value: b"1".to_vec(),
            },
            Record::RemoveXattr { path: b"scratch/gone".to_vec(), name: b"user.tmp".to_vec() },
            Record::Unlink { path: b"scratch/gone".to_vec() },
            Record::Rmdir { path: b"scratch".to_vec() },
        ],
    }
}

/// Receives the spec's stream into `base/recv` and builds the oracle in `base/expected`.
fn receive_and_compare(base: &Path, spec: &Spec, opts: &CompareOptions) {
    let expected = base.join("expected");
    std::fs::create_dir(&expected).unwrap();
    build(&expected, spec);
    let recs = records(spec);
    let bytes = stream_with(None, 1, &recs, WriterOptions { compression_level: Some(3) });
    let state = tempfile::tempdir().unwrap();
    let dest = base.join("recv");
    let (r, warnings) = recv(&config(&dest, state.path()), &bytes);
    let summary = r.unwrap_or_else(|e| panic!("receive failed: {e}"));
    assert_eq!(summary.applied, recs.len() as u64);
    let report = compare(&expected, &dest, opts).unwrap();
    report.assert_equal("expected vs received");
    let flag_warnings: Vec<_> =
        warnings.iter().filter(|w| !matches!(w, anyrecv::Warning::Flag { .. })).collect();
    assert!(flag_warnings.is_empty(), "{warnings:?}");
}

#[test]
fn every_record_kind_into_a_plain_temp_dir() {
    let t = tempfile::tempdir().unwrap();
    let spec = rich_spec(is_root(), false);
    receive_and_compare(t.path(), &spec, &CompareOptions::new());
}

fn on_dest(kind: DestKind) {
    let Some(_p) =
        anysend_testbed::require_privileged(&format!("anyrecv every record kind on {kind}"))
    else {
        return;
    };
    let fs = DestFs::new(kind);
    let spec = rich_spec(true, true);
    receive_and_compare(fs.path(), &spec, &CompareOptions::for_dest(kind));
}

#[test]
fn every_record_kind_on_tmpfs() {
    on_dest(DestKind::Tmpfs);
}

#[test]
fn every_record_kind_on_ext4() {
    on_dest(DestKind::Ext4);
}

#[test]
fn every_record_kind_on_xfs() {
    on_dest(DestKind::Xfs);
}

#[test]
fn every_record_kind_on_btrfs() {
    on_dest(DestKind::Btrfs);
}

/// An incremental stream changing a received tree in place: data rewritten, a file truncated,
/// metadata changed, an immutable flag lifted, a name swapped through a temporary directory.
#[test]
fn incremental_changes_in_place() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = t.path().join("recv");
    let full = stream(
        None,
        1,
        &[
            Record::Mkdir { path: b"a".to_vec() },
            Record::Mkdir { path: b"b".to_vec() },
            Record::Create { path: b"a/f".to_vec() },
            Record::Write {
                path: b"a/f".to_vec(),
                offset: 0,
                data: b"version one, long".as_slice().into(),
            },
            Record::Create { path: b"b/g".to_vec() },
            Record::Chmod { path: b"a/f".to_vec(), mode: 0o444 },
        ],
    );
    recv(&config(&dest, state.path()), &full).0.unwrap();
    let incr = stream(
        Some(1),
        2,
        &[
            Record::Mkdir { path: b"swap-tmp".to_vec() },
            Record::Rename { from: b"a".to_vec(), to: b"swap-tmp/a".to_vec() },
            Record::Rename { from: b"b".to_vec(), to: b"a".to_vec() },
            Record::Rename { from: b"swap-tmp/a".to_vec(), to: b"b".to_vec() },
            Record::Rmdir { path: b"swap-tmp".to_vec() },
            Record::CopyFromOrigin { path: b"b/f".to_vec(), src_offset: 8, dst_offset: 0, len: 3 },
            Record::Write { path: b"b/f".to_vec(), offset: 3, data: b"!".as_slice().into() },
            Record::Truncate { path: b"b/f".to_vec(), size: 4 },
            Record::Write { path: b"a/g".to_vec(), offset: 0, data: b"new".as_slice().into() },
        ],
    );
    let (r, _) = recv(&config(&dest, state.path()), &incr);
    r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(dest.join("b/f")).unwrap(), b"one!");
    assert_eq!(std::fs::read(dest.join("a/g")).unwrap(), b"new");
    assert!(!dest.join("swap-tmp").exists());
}

/// Receives a full stream of `full`, then (unless empty) an incremental of `inc` onto it, into
/// `<root>/recv`; each must succeed. Returns DEST and the state directory that recorded them.
fn received(
    root: &Path,
    full: &[Record],
    inc: &[Record],
) -> (std::path::PathBuf, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let dest = root.join("recv");
    recv(&config(&dest, state.path()), &stream(None, 1, full)).0.unwrap_or_else(|e| panic!("{e}"));
    if !inc.is_empty() {
        let r = recv(&config(&dest, state.path()), &stream(Some(1), 2, inc)).0;
        r.unwrap_or_else(|e| panic!("{e}"));
    }
    (dest, state)
}

/// Overlapping copy_from_origin records of one file read the origin's bytes, never what an
/// earlier copy wrote.
#[test]
fn copy_from_origin_copies_origin_bytes_even_when_ranges_overlap() {
    let t = tempfile::tempdir().unwrap();
    let copy = |src_offset, dst_offset, len| Record::CopyFromOrigin {
        path: b"copied".to_vec(),
        src_offset,
        dst_offset,
        len,
    };
    let full = [
        Record::Create { path: b"copied".to_vec() },
        Record::Write {
            path: b"copied".to_vec(),
            offset: 0,
            data: b"0123456789ABCDEF".as_slice().into(),
        },
    ];
    let (dest, _state) = received(t.path(), &full, &[copy(0, 4, 8), copy(12, 0, 4)]);
    assert_eq!(std::fs::read(dest.join("copied")).unwrap(), b"CDEF01234567CDEF");
}

/// copy_from_origin after a write overwrote the bytes it copies: it reads the origin bytes,
/// which the journal kept (in the journal itself, for so few) when the write was applied.
#[test]
fn copy_from_origin_reads_bytes_overwritten_before() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = t.path().join("recv");
    let full = stream(
        None,
        1,
        &[
            Record::Create { path: b"f".to_vec() },
            Record::Write {
                path: b"f".to_vec(),
                offset: 0,
                data: b"version one, long".as_slice().into(),
            },
        ],
    );
    recv(&config(&dest, state.path()), &full).0.unwrap();
    let incr = stream(
        Some(1),
        2,
        &[
            Record::Write { path: b"f".to_vec(), offset: 0, data: b"XXXXXXX".as_slice().into() },
            // A rename between: the copy is not looked at in the same run as the write.
            Record::Create { path: b"g".to_vec() },
            Record::Rename { from: b"g".to_vec(), to: b"h".to_vec() },
            Record::CopyFromOrigin { path: b"f".to_vec(), src_offset: 0, dst_offset: 10, len: 7 },
        ],
    );
    let (r, _) = recv(&config(&dest, state.path()), &incr);
    r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"XXXXXXX onversion");
}

/// tmpfs holds the immutable flag but not the synchronous-updates one: the first is set, the
/// second is reported once for the whole receive, and the receive completes.
#[test]
fn a_flag_the_file_system_cannot_hold_is_warned_once() {
    let Some(_p) = anysend_testbed::require_privileged("anyrecv flag warning on tmpfs") else {
        return;
    };
    let fs = DestFs::new(DestKind::Tmpfs);
    let state = tempfile::tempdir().unwrap();
    let dest = fs.path().join("recv");
    let mut recs = vec![];
    for f in ["f", "g"] {
        recs.push(Record::Create { path: f.as_bytes().to_vec() });
        recs.push(Record::SetFlags { path: f.as_bytes().to_vec(), flags: 0x8 | 0x10 });
    }
    let (r, warnings) = recv(&config(&dest, state.path()), &stream(None, 1, &recs));
    r.unwrap_or_else(|e| panic!("{e}"));
    let flags: Vec<_> =
        warnings.iter().filter(|w| matches!(w, anyrecv::Warning::Flag { flag: 0x8, .. })).collect();
    assert_eq!(flags.len(), 1, "{warnings:?}");
    assert!(flags[0].to_string().contains("synchronous updates"), "{}", flags[0]);
    for f in ["f", "g"] {
        let got = anysend_testbed::fsops::get_flags(dest.join(f)).unwrap();
        assert!(got.contains(rustix::fs::IFlags::IMMUTABLE), "{f}: {got:?}");
    }
}

/// A source whose root directory is immutable: its flag, the last record, is set on DEST
/// after the holding directory is gone (it used to refuse that removal: exit 5, and a resume
/// failed the same way), and nothing of the receive is left inside DEST.
#[test]
fn an_immutable_root_is_received() {
    let Some(_p) = anysend_testbed::require_privileged("chattr +i on an ext4 DEST") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    let full = [
        Record::Mkdir { path: b"d".to_vec() },
        Record::Create { path: b"d/f".to_vec() },
        Record::Write { path: b"d/f".to_vec(), offset: 0, data: b"kept".as_slice().into() },
        Record::SetFlags { path: Vec::new(), flags: 0x10 },
    ];
    let (dest, _state) = received(fs.path(), &full, &[]);
    let root = std::fs::File::open(&dest).unwrap();
    let flags = rustix::fs::ioctl_getflags(&root).unwrap();
    assert!(flags.contains(rustix::fs::IFlags::IMMUTABLE), "{flags:?}");
    let mut names: Vec<_> =
        std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["d"]);
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"kept");
    rustix::fs::ioctl_setflags(&root, flags - rustix::fs::IFlags::IMMUTABLE).unwrap();
}

/// A file with a capability whose owner changes: the kernel drops the capability at the chown,
/// so the stream's removal of it finds nothing, and the receive completes (it used to fail
/// with ENODATA and leave DEST interrupted).
#[test]
fn a_capability_the_kernel_dropped_at_a_chown_is_not_an_error() {
    let Some(_p) = anysend_testbed::require_privileged("security.capability needs root") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = t.path().join("recv");
    // VFS_CAP_REVISION_2, cap_net_raw permitted and effective.
    let cap = vec![1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let full = stream(
        None,
        1,
        &[
            Record::Create { path: b"f".to_vec() },
            Record::Write { path: b"f".to_vec(), offset: 0, data: b"#!x".as_slice().into() },
            Record::SetXattr {
                path: b"f".to_vec(),
                name: b"security.capability".to_vec(),
                value: cap,
            },
        ],
    );
    recv(&config(&dest, state.path()), &full).0.unwrap_or_else(|e| panic!("{e}"));
    let inc = stream(
        Some(1),
        2,
        &[
            Record::Chown { path: b"f".to_vec(), uid: 1000, gid: 100 },
            Record::RemoveXattr { path: b"f".to_vec(), name: b"security.capability".to_vec() },
        ],
    );
    recv(&config(&dest, state.path()), &inc).0.unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 64];
    assert!(rustix::fs::getxattr(dest.join("f"), "security.capability", &mut buf[..]).is_err());
}

/// A directory with a default ACL (`setfacl -d -m u:1000:rwx d`): objects an incremental makes
/// in it are the target's, made elsewhere and moved in, without an inherited access ACL; they
/// must not get one on the receiver either (they did: a full send was right, an incremental
/// leaked the default onto them).
#[test]
fn a_default_acl_does_not_leak_onto_objects_an_incremental_makes() {
    let Some(_p) = anysend_testbed::require_privileged("ACLs on ext4") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    // user::rwx, user:1000:rwx, group::r-x, mask::rwx, other::r-x
    let mut default_acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 7, 1000),
        (4, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 5, u32::MAX),
    ] {
        default_acl.extend_from_slice(&tag.to_le_bytes());
        default_acl.extend_from_slice(&perm.to_le_bytes());
        default_acl.extend_from_slice(&id.to_le_bytes());
    }
    let full = [
        Record::Mkdir { path: b"d".to_vec() },
        Record::SetXattr {
            path: b"d".to_vec(),
            name: b"system.posix_acl_default".to_vec(),
            value: default_acl,
        },
        Record::Chmod { path: b"d".to_vec(), mode: 0o755 },
    ];
    let inc = [
        Record::Create { path: b"d/f".to_vec() },
        Record::Write { path: b"d/f".to_vec(), offset: 0, data: b"x\n".as_slice().into() },
        Record::Chmod { path: b"d/f".to_vec(), mode: 0o644 },
        Record::Mknod { path: b"d/p".to_vec(), node: NodeType::Fifo, major: 0, minor: 0 },
        Record::Chmod { path: b"d/p".to_vec(), mode: 0o644 },
        Record::Mkdir { path: b"d/sub".to_vec() },
        Record::Chmod { path: b"d/sub".to_vec(), mode: 0o755 },
    ];
    let (dest, _state) = received(fs.path(), &full, &inc);
    let mut buf = [0u8; 256];
    for (p, name) in [
        ("d/f", "system.posix_acl_access"),
        ("d/p", "system.posix_acl_access"),
        ("d/sub", "system.posix_acl_access"),
        ("d/sub", "system.posix_acl_default"),
    ] {
        let got = rustix::fs::lgetxattr(dest.join(p), name, &mut buf[..]);
        assert!(got.is_err(), "{p} has {name}");
    }
    assert!(rustix::fs::getxattr(dest.join("d"), "system.posix_acl_default", &mut buf[..]).is_ok());
}

/// `rm -r d; chattr +i g` where `g` was a hard link of `d/f`: the held `d/f` is the same
/// inode as `g`, and removing the holding directory must not take `g`'s flag with it (DEST's
/// `g` ended with flags 0).
#[test]
fn flags_of_a_file_whose_other_name_was_removed_are_kept() {
    let Some(_p) = anysend_testbed::require_privileged("chattr +i on an ext4 DEST") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    let full = [
        Record::Mkdir { path: b"d".to_vec() },
        Record::Create { path: b"d/f".to_vec() },
        Record::Write { path: b"d/f".to_vec(), offset: 0, data: b"both".as_slice().into() },
        Record::Link { path: b"g".to_vec(), existing: b"d/f".to_vec() },
    ];
    let inc = [
        Record::Unlink { path: b"d/f".to_vec() },
        Record::Rmdir { path: b"d".to_vec() },
        Record::SetFlags { path: b"g".to_vec(), flags: 0x10 },
    ];
    let (dest, _state) = received(fs.path(), &full, &inc);
    let g = std::fs::File::open(dest.join("g")).unwrap();
    let flags = rustix::fs::ioctl_getflags(&g).unwrap();
    assert!(flags.contains(rustix::fs::IFlags::IMMUTABLE), "{flags:?}");
    assert_eq!(std::fs::read(dest.join("g")).unwrap(), b"both");
    rustix::fs::ioctl_setflags(&g, flags - rustix::fs::IFlags::IMMUTABLE).unwrap();
}

/// A hole from the start to past the end of a 4,111-byte file (a punch of 0+7907): the file's
/// last, partial block is a hole too, as in the target (it stayed allocated).
#[test]
fn a_hole_to_an_unaligned_end_of_file_frees_the_last_block() {
    let Some(_p) = anysend_testbed::require_privileged("an ext4 DEST") else {
        return;
    };
    for kind in DestKind::ALL {
        hole_to_an_unaligned_end(kind);
    }
}

fn hole_to_an_unaligned_end(kind: DestKind) {
    let fs = DestFs::new(kind);
    let full = [
        Record::Create { path: b"f".to_vec() },
        Record::Write { path: b"f".to_vec(), offset: 0, data: vec![b'x'; 4111].into() },
    ];
    let inc = [Record::Hole { path: b"f".to_vec(), offset: 0, len: 7907 }];
    let (dest, _state) = received(fs.path(), &full, &inc);
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dest.join("f")).unwrap();
    assert_eq!(md.len(), 4111);
    assert_eq!(md.blocks(), 0, "{}: the last partial block is still allocated", kind.name());
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), vec![0u8; 4111]);
}
