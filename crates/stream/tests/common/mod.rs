//! Headers and records shared by the integration tests: a varied sample of every record type.
//! The streams themselves are written with `anysend_testbed::streams`.

#![allow(dead_code)]

use anysend_stream::{Id, NodeType, ObjectType, Record, ResumePoint, StreamHeader};

pub fn full_header() -> StreamHeader {
    let mut h = StreamHeader::new(Id([0x11; 16]), None, Id([0x22; 16]), 1_764_115_200, 123_456_789);
    h.sender_version = b"anysend 0.1.0".to_vec();
    h
}

pub fn incremental_header() -> StreamHeader {
    let mut h =
        StreamHeader::new(Id([0x33; 16]), Some(Id([0x22; 16])), Id([0x44; 16]), 1_764_201_600, 0);
    h.sender_version = b"anysend 0.1.0".to_vec();
    h
}

/// One record of every type, with awkward names: non-UTF-8, a newline, a quote.
pub fn every_record() -> Vec<Record> {
    let p = |s: &[u8]| s.to_vec();
    vec![
        Record::Mkdir { path: p(b"dir") },
        Record::Chmod { path: p(b"dir"), mode: 0o1777 },
        Record::Create { path: p(b"dir/file") },
        Record::Write { path: p(b"dir/file"), offset: 0, data: b"hello, world\n".to_vec().into() },
        Record::Hole { path: p(b"dir/file"), offset: 4096, len: 8192 },
        Record::Truncate { path: p(b"dir/file"), size: 16384 },
        Record::CopyFromOrigin { path: p(b"dir/file"), src_offset: 0, dst_offset: 12288, len: 13 },
        Record::Symlink { path: p(b"dir/link"), target: p(b"../somewhere \"else\"") },
        Record::Mknod { path: p(b"fifo"), node: NodeType::Fifo, major: 0, minor: 0 },
        Record::Mknod { path: p(b"null"), node: NodeType::CharDevice, major: 1, minor: 3 },
        Record::Mknod { path: p(b"sda"), node: NodeType::BlockDevice, major: 8, minor: 0 },
        Record::Mknod { path: p(b"sock"), node: NodeType::Socket, major: 0, minor: 0 },
        Record::Link { path: p(b"dir/hard\nlink"), existing: p(b"dir/file") },
        Record::Rename { from: p(b"dir/hard\nlink"), to: p(b"caf\xc3\xa9-\xff\xfe") },
        Record::SetXattr {
            path: p(b"dir/file"),
            name: p(b"user.comment"),
            value: p(b"\x00\x01bin"),
        },
        Record::SetXattr {
            path: p(b""),
            name: p(b"system.posix_acl_access"),
            value: vec![2, 0, 0, 0],
        },
        Record::RemoveXattr { path: p(b"dir/file"), name: p(b"user.old") },
        Record::Chown { path: p(b"dir/file"), uid: 1000, gid: 100 },
        Record::Utimes {
            path: p(b"dir/file"),
            atime_sec: 1_700_000_000,
            atime_nsec: 1,
            mtime_sec: -1,
            mtime_nsec: 999_999_999,
        },
        Record::SetFlags { path: p(b"dir/file"), flags: 0x20 },
        Record::Unlink { path: p(b"caf\xc3\xa9-\xff\xfe") },
        Record::Rmdir { path: p(b"old") },
        Record::Utimes {
            path: p(b""),
            atime_sec: 0,
            atime_nsec: 0,
            mtime_sec: 86_400,
            mtime_nsec: 5,
        },
    ]
}

/// Version 1.1's records: the origin objects an incremental stream changes, stated before it
/// changes them, then one record of every other type.
pub fn every_record_1_1() -> Vec<Record> {
    let p = |s: &[u8]| s.to_vec();
    let mut v = vec![
        Record::Expect {
            path: p(b"dir/file"),
            otype: ObjectType::File,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            nlink: 2,
            size: 16384,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 999_999_999,
        },
        Record::Expect {
            path: p(b"old"),
            otype: ObjectType::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            nlink: 0,
            size: 0,
            mtime_sec: -1,
            mtime_nsec: 0,
        },
        Record::Expect {
            path: p(b"caf\xc3\xa9-\xff\xfe"),
            otype: ObjectType::Symlink,
            mode: 0o777,
            uid: 1,
            gid: 2,
            nlink: 1,
            size: 7,
            mtime_sec: 86_400,
            mtime_nsec: 5,
        },
    ];
    v.extend(every_record());
    v
}

/// A stream of a few hundred small records of every type (for the corruption sweep).
pub fn sweep_records() -> Vec<Record> {
    let mut v = Vec::new();
    for i in 0..9u32 {
        for r in every_record() {
            v.push(match r {
                Record::Write { path, offset, .. } => Record::Write {
                    path,
                    offset: offset + u64::from(i),
                    data: vec![i as u8; 16 + i as usize].into(),
                },
                other => other,
            });
        }
    }
    v
}

/// `h` with every header extension item of 1.2: an estimate, and labels with a newline, a
/// quote and a non-UTF-8 byte.
pub fn with_extension(mut h: StreamHeader) -> StreamHeader {
    h.estimate = Some(123_456_789);
    h.origin_label = Some(b"mon\"day".to_vec());
    h.target_label = Some(b"tue\n\xff".to_vec());
    h
}

pub fn resumed_header() -> StreamHeader {
    let mut h = incremental_header();
    h.resume = ResumePoint { first_record: 7, data_offset: 4096 };
    h
}
