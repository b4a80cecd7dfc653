//! Writes an incremental stream of many small scattered `write` records into one file, on top of
//! a full stream: the benchmark's case for receivers whose cost could grow with the number of
//! ranges already changed in a file (VM images and databases change this way). anysend itself
//! merges nearby changes, so this stream is made by hand.
//!
//! usage: scattered_writes FULL_STREAM PATH COUNT STRIDE OUT
//!
//! Record i writes one byte at offset i × STRIDE of PATH (a file the full stream makes).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

use anysend_stream::{Id, Record, StreamHeader, StreamReader, StreamWriter, WriterOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, full, path, count, stride, out] = &args[..] else {
        eprintln!("usage: scattered_writes FULL_STREAM PATH COUNT STRIDE OUT");
        return ExitCode::from(2);
    };
    match run(full, path, count, stride, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scattered_writes: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(full: &str, path: &str, count: &str, stride: &str, out: &str) -> Result<(), String> {
    let count: u64 = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    let stride: u64 = stride.parse().map_err(|e| format!("STRIDE: {e}"))?;
    let rd = StreamReader::new(BufReader::new(File::open(full).map_err(|e| e.to_string())?))
        .map_err(|e| e.to_string())?;
    let origin = rd.header().target;
    // A target id of its own, derived from the origin's and the shape of the change.
    let mut target = origin.0;
    target[..8].copy_from_slice(&count.to_le_bytes());
    target[8..].copy_from_slice(&stride.to_le_bytes());
    let mut stream = target;
    stream[0] ^= 0xff;
    let header = StreamHeader::new(Id(stream), Some(origin), Id(target), 1_764_115_200, 0);
    let file = File::create(out).map_err(|e| e.to_string())?;
    let mut w = StreamWriter::new(BufWriter::new(file), &header, WriterOptions::default())
        .map_err(|e| e.to_string())?;
    for i in 0..count {
        let rec = Record::Write {
            path: path.as_bytes().to_vec(),
            offset: i * stride,
            data: vec![(i % 251) as u8].into(),
        };
        w.write(&rec).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(())
}
