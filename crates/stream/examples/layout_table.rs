//! Prints the record and field-kind tables that STREAM_FORMAT.md carries verbatim.
fn main() {
    print!("{}", anysend_stream::layout_table());
}
