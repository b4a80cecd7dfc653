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
