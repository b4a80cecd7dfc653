//! What anysend and anyrecv show people in the same way, so that the two tools cannot drift
//! apart: progress on standard error ([`progress`]) and man pages and shell completions made from
//! their clap definitions ([`generate`]).

pub mod generate;
pub mod progress;

pub use generate::{generate, generate_to_stdout, Generate};
pub use progress::{human, Meter};
