//! `anyrecv`: verify a stream and apply it to a directory on any file system (crates/recv).
fn main() -> std::process::ExitCode {
    anyrecv::cli::main()
}
