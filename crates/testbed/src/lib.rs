//! Test bed for anysend: real btrfs snapshots on loop devices, destination
//! file systems, a full-fidelity tree comparator and a corpus of scenarios.
//!
//! It is shaped around one question every end-to-end test asks: "does the
//! received tree equal the snapshot in every property?". So:
//! - [`privilege`] decides whether a test that needs root may run (and makes a
//!   skip fatal in CI),
//! - [`loopfs`] owns loop-mounted file systems as RAII guards,
//! - [`compare`](mod@compare) walks two trees and lists every difference ([`fingerprint`] is
//!   its blunt, one-tree cousin for "nothing changed" checks),
//! - [`fsops`] holds small helpers to write scenario steps, and [`xattr_values`]
//!   the xattr values the kernel checks,
//! - [`scenario`] runs scenarios on btrfs and checks send/receive chains,
//! - [`corpus`](mod@corpus) is the starting set of hazardous scenarios, and [`random_tree`]
//!   makes seeded random ones,
//! - [`streams`] makes test streams (with the stream crate's writer, or byte by byte) and
//!   decodes them again, and [`stream_rules`] checks a stream's per-object ordering rules,
//! - [`crash`] is the power-cut crash harness: receives cut at many moments by copying their
//!   loop devices' images, then resumed and rolled back,
//! - [`cmd`] starts every child process, the tools above and the binaries under test, and
//!   [`escape`] shows byte names in messages.

pub mod cmd;
pub mod compare;
pub mod corpus;
pub mod crash;
pub mod escape;
pub mod fingerprint;
pub mod fsops;
mod inspect;
pub mod loopfs;
pub mod privilege;
pub mod random_tree;
pub mod scenario;
pub mod stream_rules;
pub mod streams;
pub mod xattr_values;

pub use compare::{
    assert_trees_equal, compare, CompareError, CompareOptions, Difference, Property, Relaxation,
    Report,
};
pub use corpus::corpus;
pub use loopfs::{BtrfsFs, DestFs, DestKind};
pub use privilege::{require_privileged, Privileged};
pub use scenario::{check_chain, run_scenario_on_btrfs, Scenario, SendRecv, Step};
