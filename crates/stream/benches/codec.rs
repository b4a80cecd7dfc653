//! Codec throughput: encode + decode of 1 MiB `write` records with their CRCs (the target is
//! 2 GB/s or more on one core), and zstd levels 1 and 3 on real files from this machine, whose
//! compression ratio is printed beside the timings.
//!
//! `cargo bench -p anysend-stream --bench codec`

use std::hint::black_box;
use std::path::Path;

use anysend_stream::{Id, Record, StreamHeader, StreamReader, StreamWriter, WriterOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHUNK: usize = 1 << 20;

fn header() -> StreamHeader {
    StreamHeader::new(Id([1; 16]), None, Id([2; 16]), 0, 0)
}

fn records(data: &[u8]) -> Vec<Record> {
    data.chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| Record::Write {
            path: b"some/dir/file".to_vec(),
            offset: (i * CHUNK) as u64,
            data: c.to_vec().into(),
        })
        .collect()
}

/// Encodes into `out`, reused between iterations as a pipe buffer would be: the codec is
/// measured, not the page faults of a fresh 64 MiB allocation.
fn encode_into(out: &mut Vec<u8>, recs: &[Record], level: Option<i32>) {
    out.clear();
    let opts = WriterOptions { compression_level: level };
    let mut w = StreamWriter::new(out, &header(), opts).unwrap();
    for r in recs {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
}

fn encode(recs: &[Record], level: Option<i32>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, recs, level);
    out
}

fn decode(bytes: &[u8]) -> usize {
    let mut rd = StreamReader::new(bytes).unwrap();
    let mut n = 0;
    while let Some(f) = rd.next_frame().unwrap() {
        if let Some(Record::Write { data, .. }) = f.record {
            n += data.len();
        }
    }
    n
}

/// Up to `limit` bytes of real files: shared libraries, binaries and text under /usr.
fn real_files(limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut stack = vec![
        Path::new("/usr/lib").to_path_buf(),
        Path::new("/usr/share/doc").to_path_buf(),
        Path::new("/usr/bin").to_path_buf(),
    ];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(b) = std::fs::read(e.path()) {
                    let take = b.len().min(limit - out.len());
                    out.extend_from_slice(&b[..take]);
                    if out.len() == limit {
                        return out;
                    }
                }
            }
        }
    }
    out
}

fn uncompressed(c: &mut Criterion) {
    // Incompressible-looking data: the codec itself, not zstd, is measured here.
    let data: Vec<u8> = (0..64 * CHUNK as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let recs = records(&data);
    let mut g = c.benchmark_group("write_records_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    g.bench_function("encode+decode", |b| {
        let mut buf = Vec::with_capacity(data.len() + 4096);
        b.iter(|| {
            encode_into(&mut buf, black_box(&recs), None);
            black_box(decode(&buf))
        })
    });
    let bytes = encode(&recs, None);
    g.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(data.len() + 4096);
        b.iter(|| encode_into(&mut buf, black_box(&recs), None))
    });
    g.bench_function("decode", |b| b.iter(|| black_box(decode(black_box(&bytes)))));
    g.finish();
}

fn zstd_levels(c: &mut Criterion) {
    let data = real_files(64 * CHUNK);
    let recs = records(&data);
    let mut g = c.benchmark_group("zstd_real_files");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for level in [1, 3] {
        let bytes = encode(&recs, Some(level));
        eprintln!(
            "zstd level {level}: {} bytes of real files -> {} bytes of stream, ratio {:.3}",
            data.len(),
            bytes.len(),
            data.len() as f64 / bytes.len() as f64
        );
        g.bench_with_input(BenchmarkId::new("encode", level), &level, |b, &l| {
            let mut buf = Vec::with_capacity(data.len());
            b.iter(|| encode_into(&mut buf, black_box(&recs), Some(l)))
        });
        g.bench_with_input(BenchmarkId::new("decode", level), &bytes, |b, bytes| {
            b.iter(|| black_box(decode(black_box(bytes))))
        });
    }
    g.finish();
}

criterion_group!(benches, uncompressed, zstd_levels);
criterion_main!(benches);
