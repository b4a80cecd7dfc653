//! `anysend`: write a stream of the differences between two snapshots (crates/send).
fn main() -> std::process::ExitCode {
    anysend_send::main()
}
