//! Corruption sweep: every single-byte change (all 255 other values at every offset) and every
//! truncation of a valid stream of a few hundred records makes the reader fail: no panic, no
//! endless loop, no allocation beyond the format's maximum, and the damaged record is never
//! yielded as valid. The test binary counts allocations with its own global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use anysend_stream::format::{MAX_DATA, MAX_PAYLOAD};
use anysend_stream::{Frame, Record, StreamReader, WriterOptions};
use anysend_testbed::streams;

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Reads `bytes` to the end; returns the frames yielded before the first error, and whether
/// an error came (a whole valid stream yields no error).
fn read_all(bytes: &[u8]) -> (Vec<Frame>, bool) {
    let mut frames = Vec::new();
    let mut rd = match StreamReader::new(bytes) {
        Ok(r) => r,
        Err(_) => return (frames, true),
    };
    loop {
        match rd.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, rd.expect_eof().is_err()),
            Err(_) => return (frames, true),
        }
        // A reader that made no progress would loop forever; the format forbids it.
        assert!(
            frames.len() <= bytes.len() / 12 + 1,
            "reader yields more records than bytes allow"
        );
    }
}

fn stream() -> (Vec<u8>, Vec<Frame>) {
    let records = common::sweep_records();
    let bytes = streams::write(&common::incremental_header(), &records, WriterOptions::default());
    let (frames, failed) = read_all(&bytes);
    assert!(!failed, "the pristine stream reads cleanly");
    assert!(frames.len() >= 200, "a few hundred records, got {}", frames.len());
    (bytes, frames)
}

/// Every frame yielded from a damaged stream must lie wholly before the damage and equal the
/// pristine frame at the same index.
fn check_prefix(frames: &[Frame], pristine: &[Frame], damage_at: usize, what: &str) {
    for f in frames {
        let end = (f.offset + f.wire_len) as usize;
        assert!(
            end <= damage_at,
            "{what}: record {} (bytes {}..{end}) yielded despite damage at {damage_at}",
            f.index,
            f.offset
        );
        let p = &pristine[f.index as usize];
        assert_eq!(
            (f.offset, &f.record),
            (p.offset, &p.record),
            "{what}: record {} differs",
            f.index
        );
    }
}

#[test]
fn every_single_byte_change_is_caught() {
    let (bytes, pristine) = stream();
    let len = bytes.len();
    let before = LARGEST.load(Ordering::Relaxed);
    // Two workers over interleaved offsets: the sweep is ~255 x len stream reads.
    std::thread::scope(|s| {
        for worker in 0..2 {
            let (bytes, pristine) = (&bytes, &pristine);
            s.spawn(move || {
                let mut damaged = bytes.clone();
                for pos in (worker..len).step_by(2) {
                    let orig = bytes[pos];
                    for v in 0..=255u8 {
                        if v == orig {
                            continue;
                        }
                        damaged[pos] = v;
                        let (frames, failed) = read_all(&damaged);
                        assert!(failed, "byte {pos} changed {orig:#04x}->{v:#04x} went unnoticed");
                        check_prefix(&frames, pristine, pos, &format!("byte {pos}={v:#04x}"));
                    }
                    damaged[pos] = orig;
                }
            });
        }
    });
    let largest = LARGEST.load(Ordering::Relaxed).max(before);
    let bound = (MAX_PAYLOAD + MAX_DATA) as usize;
    assert!(largest <= bound, "largest allocation {largest} exceeds the declared maximum {bound}");
    eprintln!("swept {} bytes x 255 values; largest allocation {largest} bytes", len);
}

#[test]
fn every_truncation_is_caught() {
    let (bytes, pristine) = stream();
    for cut in 0..bytes.len() {
        let (frames, failed) = read_all(&bytes[..cut]);
        assert!(failed, "stream cut at {cut} of {} read as complete", bytes.len());
        check_prefix(&frames, &pristine, cut, &format!("cut at {cut}"));
        assert!(!frames.iter().any(|f| matches!(f.record, Some(Record::End { .. }))));
    }
}

#[test]
fn appended_bytes_are_caught() {
    let (mut bytes, _) = stream();
    bytes.push(0);
    let (_, failed) = read_all(&bytes);
    assert!(failed, "a byte after the end record must be reported");
}
