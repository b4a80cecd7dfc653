//! Resumed streams are the tail of the uninterrupted stream: `anysend --resume TOKEN` plans the
//! same pair again (plans are deterministic) and writes the records from the token's record on,
//! numbered as in the whole stream, the first one cut by the token's data offset.

mod support;

use std::path::Path;

use anysend_stream::Record;
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::BtrfsFs;
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::streams::decode;

const MIB: u64 = 1 << 20;

fn resumed(token: &str, origin: Option<&Path>, target: &Path, dir: &Path) -> Vec<u8> {
    let f = dir.join("resumed");
    support::send_resumed(token, origin, target, &f).unwrap();
    std::fs::read(f).unwrap()
}

#[test]
fn resumed_streams_are_the_tail_of_the_whole_stream() {
    let Some(_p) = require_privileged("e2e_resume::resumed_streams_are_the_tail") else { return };
    let fs = BtrfsFs::new(256 * MIB);
    let v = fs.create_subvolume("vol");
    mkdir_all(v.join("d/e")).unwrap();
    write_file(v.join("d/big"), &pattern(3 * MIB as usize + 17, 1)).unwrap();
    write_file(v.join("d/e/small"), b"small").unwrap();
    hardlink(v.join("d/e/small"), v.join("link")).unwrap();
    let s1 = fs.snapshot_ro(&v, "s1");
    rename(v.join("d/e"), v.join("e")).unwrap();
    write_at(v.join("d/big"), MIB, &pattern(MIB as usize, 2)).unwrap();
    write_file(v.join("new"), &pattern(MIB as usize + 5, 3)).unwrap();
    let s2 = fs.snapshot_ro(&v, "s2");
    let tmp = tempfile::tempdir().unwrap();

    for (origin, target) in [(None, &s1), (Some(s1.as_path()), &s2)] {
        let whole = tmp.path().join("whole");
        support::send_to_file(origin, target, &whole).unwrap();
        let (h, recs) = decode(&std::fs::read(&whole).unwrap());
        // Two plans of one pair give the same records (the end record's chain covers the
        // header, whose creation time differs).
        let again = tmp.path().join("again");
        support::send_to_file(origin, target, &again).unwrap();
        let (_, recs2) = decode(&std::fs::read(&again).unwrap());
        assert_eq!(recs2[..recs2.len() - 1], recs[..recs.len() - 1], "two sends differ");

        let o = h.origin.map(|o| o.0);
        let body = &recs[..recs.len() - 1];
        for at in [0, 1, body.len() / 3, body.len() / 2, body.len() - 1, body.len()] {
            let token = support::make_token(h.stream_id.0, o, h.target.0, at as u64, 0);
            let (rh, rrecs) = decode(&resumed(&token, origin, target, tmp.path()));
            assert_eq!(rh.stream_id, h.stream_id);
            assert_eq!((rh.resume.first_record, rh.resume.data_offset), (at as u64, 0));
            assert_eq!(&rrecs[..rrecs.len() - 1], &body[at..], "resumed at record {at}");
            assert_eq!(rrecs.last().unwrap().0, recs.last().unwrap().0, "end record index");
        }
        // Inside a write record: the data and offset move on by the data offset.
        let (w, (_, rec)) = body
            .iter()
            .enumerate()
            .find(|(_, (_, r))| matches!(r, Record::Write { data, .. } if data.len() > 1000))
            .expect("a write record");
        let Record::Write { path, offset, data } = rec else { unreachable!() };
        let token = support::make_token(h.stream_id.0, o, h.target.0, w as u64, 1000);
        let (rh, rrecs) = decode(&resumed(&token, origin, target, tmp.path()));
        assert_eq!((rh.resume.first_record, rh.resume.data_offset), (w as u64, 1000));
        assert_eq!(
            rrecs[0],
            (
                w as u64,
                Record::Write {
                    path: path.clone(),
                    offset: offset + 1000,
                    data: data[1000..].into()
                }
            )
        );
        assert_eq!(&rrecs[1..rrecs.len() - 1], &body[w + 1..]);
        // A data offset on a record without data, and a point past the end, are refused.
        let (m, _) = body
            .iter()
            .enumerate()
            .find(|(_, (_, r))| !matches!(r, Record::Write { .. }))
            .expect("a record without data");
        let bad = support::make_token(h.stream_id.0, o, h.target.0, m as u64, 5);
        let f = tmp.path().join("bad");
        let e = support::send_resumed(&bad, origin, target, &f).unwrap_err();
        assert!(e.contains("no data to resume"), "{e}");
        assert!(!f.exists(), "a failed send leaves no stream file");
        let past = support::make_token(h.stream_id.0, o, h.target.0, recs.len() as u64 + 3, 0);
        let e = support::send_resumed(&past, origin, target, &f).unwrap_err();
        assert!(e.contains("the plan has"), "{e}");
        // A token of another pair is refused.
        let other = support::make_token([7; 16], o, h.target.0, 1, 0);
        let e = support::send_resumed(&other, origin, target, &f).unwrap_err();
        assert!(e.contains("token is for stream"), "{e}");
    }
}
