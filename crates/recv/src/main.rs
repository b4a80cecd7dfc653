//! anyrecv: read an anysend stream, verify every record, and apply it to a directory.
//!
//! The binary is thin: it parses flags, opens the input, and maps library errors to messages and
//! exit codes. Today it verifies and dumps streams; applying them to DEST is being built.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anysend_stream::dump::{dump_stream, DumpError};
use clap::Parser;

const EXIT_HELP: &str = "\
Exit status:
  0  the stream was read (and applied) completely
  1  the stream is damaged, truncated, not an anysend stream, or needs a newer anyrecv
  2  the command line is wrong
  3  reading the input or writing the output failed

Examples:
  anyrecv --dump -f monday.stream      one line per record, with index and byte offset
  anysend /snaps/mon | anyrecv --dump  check a stream as it is produced";

/// Receive an anysend stream: verify each record's checksum before using it.
#[derive(Parser, Debug)]
#[command(name = "anyrecv", version, after_help = EXIT_HELP)]
struct Args {
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Print the stream header and one line per record (index, byte offset, type, fields)
    /// instead of applying it; the whole stream is verified, like `btrfs receive --dump`.
    #[arg(long)]
    dump: bool,

    /// The directory to apply the stream to.
    #[arg(value_name = "DEST", required_unless_present = "dump")]
    dest: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let input: Box<dyn Read> = match &args.file {
        Some(path) => match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("anyrecv: cannot open {}: {e}", path.display());
                return ExitCode::from(3);
            }
        },
        None => {
            if io::stdin().is_terminal() {
                eprintln!(
                    "anyrecv: standard input is a terminal; pipe a stream in or give -f FILE"
                );
                return ExitCode::from(2);
            }
            Box::new(io::stdin().lock())
        }
    };
    let input = BufReader::with_capacity(1 << 20, input);
    if args.dump {
        return dump(input);
    }
    eprintln!(
        "anyrecv: applying a stream to a directory is not available in this version yet; \
         use --dump to verify a stream"
    );
    ExitCode::from(2)
}

fn dump(input: impl Read) -> ExitCode {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    let result = dump_stream(input, &mut out);
    let flushed = out.flush();
    match result {
        Ok(summary) => {
            if let Err(e) = flushed {
                return output_error(e);
            }
            eprintln!(
                "anyrecv: stream verified: {} records, {} bytes",
                summary.records, summary.bytes
            );
            ExitCode::SUCCESS
        }
        Err(DumpError::Stream(e)) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", e.hint());
            ExitCode::from(if matches!(e.kind, anysend_stream::ErrorKind::Io(_)) { 3 } else { 1 })
        }
        Err(DumpError::Output(e)) => output_error(e),
    }
}

/// A closed pipe (`anyrecv --dump | head`) is the reader's choice, not a failure.
fn output_error(e: io::Error) -> ExitCode {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("anyrecv: writing the dump: {e}");
    ExitCode::from(3)
}
