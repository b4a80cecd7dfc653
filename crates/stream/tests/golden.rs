//! Golden streams: each version of the format is frozen. Each `fixtures/streams/NAME.stream`
//! must decode to exactly `NAME.dump`; the uncompressed ones of the current version must be
//! re-encoded byte for byte from their records. Streams of an older version (1.0, 1.1) are kept
//! as they were written and must stay readable: a reader of 1.2 reads every 1.0 and 1.1 stream.
//!
//! To (re)create the current version's fixtures after an intended, versioned change:
//! `ANYSEND_BLESS=1 cargo test -p anysend-stream --test golden`, then review the diff. The
//! frozen older ones are never rewritten.

mod common;

use std::path::PathBuf;

use anysend_stream::dump::dump_stream;
use anysend_stream::{StreamReader, WriterOptions};
use anysend_testbed::streams::{raw_record, write};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/streams")
}

/// A record of a type this version does not know, marked skippable, spliced in by hand (no
/// writer of ours can make one): readers must skip it.
fn with_unknown_skippable() -> Vec<u8> {
    let mkdir = anysend_stream::Record::Mkdir { path: b"a".to_vec() };
    let bytes = write(&common::full_header(), &[mkdir], WriterOptions::default());
    // Rebuild: header, mkdir (index 0), unknown type 0x7001 (index 1), end (index 2).
    let mut rd = StreamReader::new(&bytes[..]).unwrap();
    let first = rd.next_frame().unwrap().unwrap();
    let hdr_len = first.offset as usize;
    let mkdir = &bytes[hdr_len..hdr_len + first.wire_len as usize];
    let mut out = bytes[..hdr_len + mkdir.len()].to_vec();
    let unknown = raw_record(1, 0x7001, 0x8000, b"future", None);
    let unknown_crc = &unknown[unknown.len() - 4..];
    out.extend_from_slice(&unknown);
    // The chain covers the header CRC and every record CRC before the end record.
    let header_crc = &bytes[hdr_len - 4..hdr_len];
    let mkdir_crc = &mkdir[mkdir.len() - 4..];
    let mut chain = crc32fast::Hasher::new();
    chain.update(header_crc);
    chain.update(mkdir_crc);
    chain.update(unknown_crc);
    // The end record (type 19): records and bytes before it, the chain.
    let mut end = Vec::new();
    end.extend_from_slice(&2u64.to_le_bytes());
    end.extend_from_slice(&(out.len() as u64).to_le_bytes());
    end.extend_from_slice(&chain.finalize().to_le_bytes());
    out.extend(raw_record(2, 19, 0, &end, None));
    out
}

struct Golden {
    name: &'static str,
    /// What this version's writer makes of the fixture's records; `None` for a fixture frozen
    /// at an older version, which is only read.
    bytes: Option<Vec<u8>>,
    /// Whether re-encoding the decoded records must give the same bytes (zstd output may
    /// change between zstd versions, so compressed fixtures are only decoded).
    reencode: bool,
}

fn goldens() -> Vec<Golden> {
    let every = common::every_record();
    let frozen = |name| Golden { name, bytes: None, reencode: false };
    vec![
        // Version 1.0, as written before `expect` existed.
        frozen("full-every-record"),
        frozen("incremental-zstd"),
        frozen("resumed"),
        frozen("empty-full"),
        frozen("unknown-skippable"),
        // Version 1.1, frozen when 1.2 added the header extension.
        frozen("1.1-incremental-every-record"),
        frozen("1.1-resumed"),
        frozen("1.1-unknown-skippable"),
        frozen("1.1-empty-full"),
        // Version 1.2: the incremental and the resumed streams carry every header extension
        // item (estimate, labels with awkward bytes); the empty full stream carries none.
        Golden {
            name: "1.2-incremental-every-record",
            bytes: Some(write(
                &common::with_extension(common::incremental_header()),
                &common::every_record_1_1(),
                WriterOptions::default(),
            )),
            reencode: true,
        },
        Golden {
            name: "1.2-resumed",
            bytes: Some(write(
                &common::with_extension(common::resumed_header()),
                &every[..3],
                WriterOptions::default(),
            )),
            reencode: true,
        },
        Golden {
            name: "1.2-unknown-skippable",
            bytes: Some(with_unknown_skippable()),
            reencode: false,
        },
        Golden {
            name: "1.2-empty-full",
            bytes: Some(write(&common::full_header(), &[], WriterOptions::default())),
            reencode: true,
        },
    ]
}

fn dump(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    dump_stream(bytes, &mut out).expect("golden stream decodes");
    String::from_utf8(out).expect("dump is ASCII")
}

#[test]
fn golden_streams_decode_to_their_dumps() {
    let bless = std::env::var_os("ANYSEND_BLESS").is_some();
    for g in goldens() {
        let stream_path = dir().join(format!("{}.stream", g.name));
        let dump_path = dir().join(format!("{}.dump", g.name));
        if let (true, Some(bytes)) = (bless, &g.bytes) {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&stream_path, bytes).unwrap();
            std::fs::write(&dump_path, dump(bytes)).unwrap();
        }
        let stored = std::fs::read(&stream_path)
            .unwrap_or_else(|e| panic!("{}: {e}", stream_path.display()));
        let expected = std::fs::read_to_string(&dump_path)
            .unwrap_or_else(|e| panic!("{}: {e}", dump_path.display()));
        assert_eq!(dump(&stored), expected, "{} no longer decodes to its dump", g.name);
        if let (true, Some(bytes)) = (g.reencode, &g.bytes) {
            assert_eq!(&stored, bytes, "{}: the writer no longer writes the frozen bytes", g.name);
        }
    }
}
