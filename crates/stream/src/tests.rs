//! Round-trip properties of the codec, with records drawn from the same description that drives
//! encoding and decoding.

use proptest::prelude::*;

use crate::format::{FLAG_COMPRESSED, MAX_PATH};
use crate::record::Record;
use crate::{Id, StreamHeader, StreamReader, StreamWriter, WriterOptions};

fn header() -> StreamHeader {
    StreamHeader::new(Id([3; 16]), Some(Id([1; 16])), Id([2; 16]), 1_700_000_000, 5)
}

fn round_trip(records: &[Record], level: Option<i32>) -> (Vec<Record>, Vec<u16>) {
    let mut w =
        StreamWriter::new(Vec::new(), &header(), WriterOptions { compression_level: level })
            .expect("header");
    for r in records {
        w.write(r).expect("write");
    }
    let bytes = w.finish().expect("finish");
    let mut rd = StreamReader::new(&bytes[..]).expect("read header");
    assert_eq!(rd.header(), &header());
    let mut out = Vec::new();
    let mut flags = Vec::new();
    while let Some(f) = rd.next_frame().expect("valid frame") {
        flags.push(f.flags);
        out.push(f.record.expect("known record"));
    }
    rd.expect_eof().expect("nothing after end");
    assert!(matches!(out.pop(), Some(Record::End { .. })));
    flags.pop();
    (out, flags)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn records_round_trip(records in proptest::collection::vec(crate::record::arb_record(), 0..6),
                          level in prop_oneof![Just(None), Just(Some(1)), Just(Some(3))]) {
        let (back, flags) = round_trip(&records, level);
        prop_assert_eq!(&back, &records);
        if level.is_none() {
            prop_assert!(flags.iter().all(|f| f & FLAG_COMPRESSED == 0));
        }
    }
}

#[test]
fn compressible_data_is_compressed_and_restored() {
    let data = vec![42u8; 1 << 20];
    let rec = Record::Write { path: b"f".to_vec(), offset: 7, data: data.into() };
    let (back, flags) = round_trip(std::slice::from_ref(&rec), Some(3));
    assert_eq!(back, vec![rec]);
    assert_eq!(flags[0] & FLAG_COMPRESSED, FLAG_COMPRESSED);
}

#[test]
fn oversized_fields_are_refused_by_the_writer() {
    let mut w = StreamWriter::new(Vec::new(), &header(), WriterOptions::default()).unwrap();
    let long = vec![b'a'; MAX_PATH as usize + 1];
    let err = w.write(&Record::Mkdir { path: long }).unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    let err = w.write(&Record::Mkdir { path: b"a\0b".to_vec() }).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    let err = w.write(&Record::End { records: 0, bytes: 0, chain: 0 }).unwrap_err();
    assert!(err.to_string().contains("end record"), "{err}");
}

#[test]
fn layout_table_is_in_the_spec() {
    let spec = include_str!("../../../STREAM_FORMAT.md");
    let table = crate::layout_table();
    assert!(
        spec.contains(&table),
        "STREAM_FORMAT.md must contain the record layout table generated from record.rs:\n{table}"
    );
}

#[test]
fn classes_and_paths_follow_the_description() {
    use crate::Class;
    let p = || b"d/f".to_vec();
    let link = Record::Link { path: p(), existing: b"e".to_vec() };
    assert_eq!(link.class(), Class::Make);
    assert!(link.is_structural() && !link.moves_paths() && !link.may_name_directory());
    assert_eq!(link.paths().collect::<Vec<_>>(), [&b"d/f"[..], b"e"]);
    assert_eq!(link.entries_changed().collect::<Vec<_>>(), [&b"d/f"[..]], "e keeps its entry");
    let rename = Record::Rename { from: p(), to: b"t".to_vec() };
    assert_eq!(rename.class(), Class::Rename);
    assert!(rename.moves_paths() && rename.may_name_directory());
    assert_eq!(rename.paths().collect::<Vec<_>>(), [&b"d/f"[..], b"t"]);
    assert_eq!(rename.entries_changed().collect::<Vec<_>>(), [&b"d/f"[..], b"t"]);
    let unlink = Record::Unlink { path: p() };
    assert!(unlink.moves_paths() && !unlink.may_name_directory());
    let chmod = Record::Chmod { path: p(), mode: 0o644 };
    assert_eq!(chmod.class(), Class::Meta);
    assert!(!chmod.is_structural() && chmod.changed_range().is_none());
    assert_eq!(chmod.paths().count(), 1);
    assert_eq!(chmod.entries_changed().count(), 0, "not structural");
    let end = Record::End { records: 0, bytes: 0, chain: 0 };
    assert_eq!((end.class(), end.paths().count()), (Class::End, 0));
    // Every layout row carries the class of its record type.
    for l in Record::LAYOUTS {
        assert!(!l.class.as_str().is_empty(), "{}", l.name);
    }
}

#[test]
fn data_records_name_the_bytes_they_change() {
    let p = || b"f".to_vec();
    let write = Record::Write { path: p(), offset: 10, data: crate::Data::from(&b"abc"[..]) };
    assert_eq!(write.changed_range(), Some((&b"f"[..], 10, 13)));
    assert_eq!(
        Record::Hole { path: p(), offset: 4, len: 6 }.changed_range(),
        Some((&b"f"[..], 4, 10))
    );
    assert_eq!(
        Record::Truncate { path: p(), size: 7 }.changed_range(),
        Some((&b"f"[..], 7, u64::MAX))
    );
    let copy = Record::CopyFromOrigin { path: p(), src_offset: 0, dst_offset: 5, len: 2 };
    assert_eq!(copy.changed_range(), Some((&b"f"[..], 5, 7)));
    assert_eq!(copy.data_path(), Some(&b"f"[..]));
    // Sums saturate instead of wrapping round to a range at the start of the file.
    let far = Record::Hole { path: p(), offset: u64::MAX - 1, len: 5 };
    assert_eq!(far.changed_range(), Some((&b"f"[..], u64::MAX - 1, u64::MAX)));
    assert!(Record::Mkdir { path: p() }.data_path().is_none());
}

#[test]
fn ids_parse_back_from_their_text_and_have_a_short_form() {
    let id = Id([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 0xff]);
    let text = id.to_string();
    assert_eq!(text, "01234567-89ab-cdef-0001-0203040506ff");
    assert_eq!(Id::parse(&text), Some(id));
    assert_eq!(text.replace('-', "").parse::<Id>(), Ok(id));
    assert_eq!(id.short(), "0123456789abcdef");
    assert!(Id::parse("0123").is_none());
    assert!(Id::parse(&text.replace('f', "g")).is_none());
    assert!(Id::parse(&format!("{text}00")).is_none());
}

#[test]
fn frame_len_reads_the_payload_length_of_a_frame_header() {
    use crate::format::frame_len;
    let bytes = sample_stream();
    let mut rd = StreamReader::new(&bytes[..]).expect("header");
    while let Some(f) = rd.next_frame().expect("frame") {
        let at = f.offset as usize;
        assert_eq!(frame_len(&bytes[at..]), Some(f.wire_len), "record {}", f.index);
        assert_eq!(frame_len(&bytes[at..at + 7]), None, "a frame header is 8 bytes");
    }
}

#[test]
fn the_dump_line_of_a_record_is_the_same_written_and_read() {
    // The writer says where each record went; the line made from that equals the line made
    // from the frame the reader sees, compressed or not.
    let data = crate::Data::from(vec![7u8; 4096]);
    let records = [
        Record::Mkdir { path: b"d".to_vec() },
        Record::Write { path: b"d/f".to_vec(), offset: 0, data },
    ];
    let mut w =
        StreamWriter::new(Vec::new(), &header(), WriterOptions { compression_level: Some(3) })
            .expect("header");
    let mut written = Vec::new();
    for r in &records {
        let at = w.write(r).expect("write");
        written.push(crate::dump::record_line(at.index, at.offset, at.flags, r));
    }
    let bytes = w.finish().expect("finish");
    let mut rd = StreamReader::new(&bytes[..]).expect("header");
    let mut read = Vec::new();
    while let Some(f) = rd.next_frame().expect("frame") {
        read.push(crate::dump::frame_line(&f));
    }
    read.pop();
    assert_eq!(written, read);
    assert!(written[1].ends_with(" (zstd)"), "{}", written[1]);
}

#[test]
fn paths_are_shown_escaped_and_cut_from_the_front() {
    use crate::dump::{shown_tail, Shown};
    assert_eq!(Shown(b"").to_string(), ".");
    assert_eq!(Shown(b"a\nb\xff").to_string(), "a\\nb\\xff");
    assert_eq!(shown_tail(b"short", 10), "short");
    assert_eq!(shown_tail(b"0123456789abcdef", 10), "...9abcdef");
}

fn sample_stream() -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new(), &header(), WriterOptions::default()).expect("header");
    w.write(&Record::Mkdir { path: b"d".to_vec() }).expect("write");
    w.write(&Record::Chmod { path: b"d".to_vec(), mode: 0o755 }).expect("write");
    w.finish().expect("finish")
}

#[test]
fn filtered_header_flag_round_trips_and_is_shown() {
    let plain = header();
    let mut filtered = header();
    filtered.filtered = true;
    let a = plain.encode().expect("encode");
    let b = filtered.encode().expect("encode");
    // Only bit 1 of the header flags (and so the CRC) differs.
    assert_eq!(a[92..96], 1u32.to_le_bytes());
    assert_eq!(b[92..96], 3u32.to_le_bytes());
    assert_eq!(a[..92], b[..92]);
    assert_eq!(a[96..a.len() - 4], b[96..b.len() - 4]);
    let back = StreamReader::new(&b[..]).map(|r| r.header().clone());
    assert_eq!(back.expect("read header"), filtered);
    assert!(crate::dump::header_line(&filtered).ends_with("\" filtered"));
    assert!(!crate::dump::header_line(&plain).contains("filtered"));
}

/// `h` encoded with `ext` as its extension area instead of its own items, at minor version
/// `minor`, with the length and CRC made right.
fn with_raw_extension(h: &StreamHeader, minor: u16, ext: &[u8]) -> Vec<u8> {
    let mut b = h.encode().expect("header");
    b.truncate(b.len() - 4);
    b[10..12].copy_from_slice(&minor.to_le_bytes());
    b.extend_from_slice(ext);
    let len = (b.len() + 4) as u32;
    b[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn read_header(bytes: &[u8]) -> Result<StreamHeader, crate::StreamError> {
    let mut with_end = bytes.to_vec();
    // Only the header is read here: what follows does not matter.
    with_end.extend_from_slice(&[0u8; 64]);
    StreamReader::new(&with_end[..]).map(|r| r.header().clone())
}

#[test]
fn header_extension_items_round_trip_and_unknown_ones_are_skipped() {
    let mut h = header();
    h.estimate = Some(42);
    h.origin_label = Some(b"mon\n\xff".to_vec());
    h.target_label = Some(b"tue".to_vec());
    let bytes = h.encode().expect("header");
    assert_eq!(read_header(&bytes).expect("reads"), h);
    // An item of a later version (tag 77) between known ones is skipped.
    let mut ext = Vec::new();
    ext.extend_from_slice(&1u16.to_le_bytes());
    ext.extend_from_slice(&8u16.to_le_bytes());
    ext.extend_from_slice(&7u64.to_le_bytes());
    ext.extend_from_slice(&77u16.to_le_bytes());
    ext.extend_from_slice(&3u16.to_le_bytes());
    ext.extend_from_slice(b"new");
    let read = read_header(&with_raw_extension(&header(), 2, &ext)).expect("reads");
    assert_eq!(read.estimate, Some(7));
    assert_eq!(read.target_label, None);
}

#[test]
fn a_malformed_extension_is_refused_but_a_1_1_extension_area_is_skipped() {
    let cut = [1u8, 0, 8, 0, 1, 2];
    let short_estimate = [1u8, 0, 2, 0, 1, 2];
    let repeated = [3u8, 0, 1, 0, b'a', 3, 0, 1, 0, b'b'];
    let mut long_label = vec![2u8, 0, 0, 1];
    long_label.extend_from_slice(&[b'x'; 256]);
    for ext in [&cut[..], &short_estimate[..], &repeated[..], &long_label[..], &[9u8][..]] {
        let bytes = with_raw_extension(&header(), 2, ext);
        assert!(read_header(&bytes).is_err(), "{ext:?} must be refused");
        // A 1.1 reader was told to skip the area: so is a 1.1 stream's.
        let old = read_header(&with_raw_extension(&header(), 1, ext)).expect("1.1 reads");
        assert_eq!((old.estimate, old.origin_label), (None, None));
    }
    let mut h = header();
    h.target_label = Some(vec![b'x'; 256]);
    assert!(h.encode().is_err(), "a writer refuses a label beyond 255 bytes");
}
