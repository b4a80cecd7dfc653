//! Writes a sample full stream and a sample incremental stream into a directory, for the demo
//! until anysend itself walks trees: `cargo run -p anysend-stream --example sample_streams DIR`.

use anysend_stream::{Id, NodeType, Record, StreamHeader, StreamWriter, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::path::PathBuf::from(std::env::args_os().nth(1).ok_or("usage: sample_streams DIR")?);
    let p = |s: &str| s.as_bytes().to_vec();
    let full = vec![
        Record::Mkdir { path: p("docs") },
        Record::Create { path: p("docs/readme.txt") },
        Record::Write {
            path: p("docs/readme.txt"),
            offset: 0,
            data: b"hello\n".repeat(1000).into(),
        },
        Record::Chmod { path: p("docs/readme.txt"), mode: 0o644 },
        Record::Mknod { path: p("fifo"), node: NodeType::Fifo, major: 0, minor: 0 },
        Record::Symlink { path: p("latest"), target: p("docs/readme.txt") },
        Record::Chmod { path: p("docs"), mode: 0o755 },
    ];
    let incremental = vec![
        Record::Rename { from: p("docs/readme.txt"), to: p("docs/README") },
        Record::Write { path: p("docs/README"), offset: 6000, data: p("more\n").into() },
        Record::Unlink { path: p("latest") },
        Record::Symlink { path: p("latest"), target: p("docs/README") },
    ];
    let (a, b) = (Id([0xa1; 16]), Id([0xb2; 16]));
    for (name, header, records) in [
        ("full.stream", StreamHeader::new(Id([1; 16]), None, a, 0, 0), full),
        ("incremental.stream", StreamHeader::new(Id([2; 16]), Some(a), b, 0, 0), incremental),
    ] {
        let file = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
        let mut w = StreamWriter::new(file, &header, WriterOptions { compression_level: Some(3) })?;
        for r in &records {
            w.write(r)?;
        }
        w.finish()?;
    }
    Ok(())
}
