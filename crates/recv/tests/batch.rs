//! Receives stopped while a batch of records was in flight (`journaled.rs`, "Batches"): the
//! journal then says only that some of the batch's records may have been applied. A resume
//! applies the whole batch again, accepting "already done", and an abort rolls it back; either
//! way DEST must end exactly at the target or at the origin.
//!
//! The stop is a panic in the progress callback right after a record was applied: it unwinds
//! out of the receive without the failure path that narrows the journal, as a SIGKILL would.

mod common;

use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyrecv::{Config, Tick};
use anysend_stream::{Record, ResumePoint, WriterOptions};
use anysend_testbed::streams;
use anysend_testbed::{compare, CompareOptions};
use common::*;

fn times(path: &str, s: i64) -> Record {
    Record::Utimes { path: p(path), atime_sec: s, atime_nsec: 7, mtime_sec: s + 1, mtime_nsec: 8 }
}

fn origin() -> Vec<Record> {
    vec![
        Record::Mkdir { path: p("d") },
        Record::Create { path: p("d/x") },
        Record::Create { path: p("a") },
        Record::Create { path: p("keep") },
        Record::Write { path: p("d/x"), offset: 0, data: b"x".as_slice().into() },
        Record::Write { path: p("a"), offset: 0, data: b"aaaa".as_slice().into() },
        Record::Write { path: p("keep"), offset: 0, data: b"kept".as_slice().into() },
        Record::Chmod { path: p("a"), mode: 0o644 },
        times("a", 10),
        times("d/x", 1),
        times("keep", 3),
        times("d", 30),
        times("", 50),
    ]
}

/// Removals, a rename and creations (one structural batch), then writes and metadata, the new
/// file's and older objects' (one content batch, whose entry holds the old values).
fn changes() -> Vec<Record> {
    vec![
        Record::Unlink { path: p("d/x") },
        Record::Rename { from: p("a"), to: p("b") },
        Record::Mkdir { path: p("e") },
        Record::Create { path: p("f") },
        Record::Write { path: p("f"), offset: 0, data: b"hello".as_slice().into() },
        Record::Chmod { path: p("f"), mode: 0o640 },
        times("f", 1000),
        Record::Write { path: p("b"), offset: 1, data: b"Z".as_slice().into() },
        Record::Truncate { path: p("keep"), size: 2 },
        Record::Chmod { path: p("b"), mode: 0o600 },
        times("b", 2000),
        times("keep", 2500),
        times("e", 3000),
        times("d", 4000),
        times("", 5000),
    ]
}

/// The stream of `records` from record `first` on (a resumed stream when `first` > 0).
fn stream_from(origin: Option<u8>, target: u8, records: &[Record], first: u64) -> Vec<u8> {
    let mut h = streams::header(origin, target);
    h.resume = ResumePoint { first_record: first, data_offset: 0 };
    streams::write(&h, &records[first as usize..], WriterOptions::default())
}

/// The config of one stopped run: DEST and state in a directory of their own under `t`.
fn run_config(t: &Path, stop: u64, abort: bool) -> Config {
    let dir = t.join(format!("run-{stop}-{abort}"));
    std::fs::create_dir(&dir).unwrap();
    config(&dir.join("dest"), &dir.join("state"))
}

/// Receives `bytes`, stopping as a kill would right after record `stop` was applied; returns
/// the records the journal then says may be partly applied (a batch, or `stop` alone), which
/// must hold `stop`.
fn stopped_in_flight(cfg: &Config, bytes: &[u8], stop: u64, what: &str) -> RangeInclusive<u64> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _ = anyrecv::receive_with_progress(cfg, bytes, &mut |_| {}, &mut |t: &Tick| {
            assert!(t.index != stop, "stopped after record {stop}");
        });
    }));
    assert!(r.is_err(), "the receive did not reach record {stop}");
    let i = anyrecv::resume::interrupted(cfg).unwrap().expect("an interrupted receive");
    let flight = i.journal.as_ref().expect("a journal").in_flight();
    assert!(*flight.start() <= stop && stop <= *flight.end(), "{what}: {flight:?}");
    flight
}

fn same(a: &Path, b: &Path, what: &str) {
    compare(a, b, &CompareOptions::new()).unwrap().assert_equal(what);
}

#[test]
fn a_batch_in_flight_is_resumed_or_rolled_back() {
    let t = scratch();
    let (full, incr) = (stream_from(None, 1, &origin(), 0), stream_from(Some(1), 2, &changes(), 0));
    // The origin and the target, received without interruption.
    let (at_origin, at_target) = (t.path().join("origin"), t.path().join("target"));
    recv(&config(&at_origin, &t.path().join("s0")), &full).0.unwrap();
    recv(&config(&at_target, &t.path().join("s1")), &full).0.unwrap();
    recv(&config(&at_target, &t.path().join("s1")), &incr).0.unwrap();

    let mut batches = 0;
    for stop in 0..changes().len() as u64 {
        for abort in [true, false] {
            let what = format!(
                "stopped after record {stop}, then {}",
                ["resumed", "aborted"][abort as usize]
            );
            let cfg = run_config(t.path(), stop, abort);
            let dest = &cfg.dest;
            recv(&cfg, &full).0.unwrap();
            let flight = stopped_in_flight(&cfg, &incr, stop, &what);
            batches += (flight.end() > flight.start()) as usize;
            if abort {
                anyrecv::rollback::abort(&cfg).unwrap();
                same(&at_origin, dest, &what);
            } else {
                let first = anyrecv::resume::resume_token(&cfg).unwrap().point.first_record;
                assert_eq!(first, *flight.start(), "{what}");
                recv(&cfg, &stream_from(Some(1), 2, &changes(), first)).0.unwrap();
                same(&at_target, dest, &what);
            }
            // Nothing of the receive is left in DEST.
            let names: Vec<_> =
                std::fs::read_dir(dest).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(!names.iter().any(|n| n.to_string_lossy().starts_with(".anyrecv-")), "{what}");
        }
    }
    assert!(batches >= 20, "only {batches} stops found a batch in flight");
}

#[test]
fn a_batch_in_flight_of_a_full_receive_is_resumed_or_rolled_back() {
    let t = scratch();
    let full = stream_from(None, 1, &origin(), 0);
    let at_origin = t.path().join("origin");
    recv(&config(&at_origin, &t.path().join("s0")), &full).0.unwrap();
    let mut batches = 0;
    for stop in 0..origin().len() as u64 {
        for abort in [true, false] {
            let cfg = run_config(t.path(), stop, abort);
            let dest = &cfg.dest;
            let what = format!("full stream stopped after record {stop} (abort {abort})");
            let flight = stopped_in_flight(&cfg, &full, stop, &what);
            batches += (flight.end() > flight.start()) as usize;
            if abort {
                anyrecv::rollback::abort(&cfg).unwrap();
                assert!(!dest.exists(), "{what}: DEST was made by the receive");
            } else {
                let first = anyrecv::resume::resume_token(&cfg).unwrap().point.first_record;
                recv(&cfg, &stream_from(None, 1, &origin(), first)).0.unwrap();
                same(&at_origin, dest, &what);
            }
        }
    }
    assert!(batches >= 10, "only {batches} stops found a batch in flight");
}
