//! Randomized chains on real btrfs: seeded random changes (`anysend_testbed::random_tree`:
//! renames, swaps, hard links, removals, reused names, writes, unaligned holes, truncates,
//! xattrs, capabilities, owners, access and default ACLs, chattr flags), a read-only snapshot
//! after each step, each sent incrementally by `anysend`, checked against the stream ordering
//! rules (`anysend_testbed::stream_rules`) and received by `anyrecv`; the received tree must
//! equal its snapshot after every receive.
//!
//! The seeds are fixed so CI runs the same cases every time. `ANYSEND_RANDOM_CASES=N` runs N
//! cases instead (from seed `ANYSEND_RANDOM_SEED`, default 1); a failure names its seed, and
//! `ANYSEND_RANDOM_SEED=S ANYSEND_RANDOM_CASES=1` replays it. The changes of every step are
//! printed (shown with a failure); `ANYSEND_RANDOM_STREAMS=DIR` keeps every stream there, named
//! after its target snapshot, for `anyrecv --dump`.

mod support;

use std::path::{Path, PathBuf};

use anysend_testbed::compare::CompareOptions;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::random_tree::random_scenario;
use anysend_testbed::scenario::{check_chain_on, run_scenario_on_btrfs};
use anysend_testbed::{stream_rules, streams};

const FS_SIZE: u64 = 256 << 20;
/// Snapshots per case: the first is sent full, the others incrementally.
const STEPS: usize = 8;
/// Changes per step after the first (which makes three times as many objects).
const CHANGES: usize = 10;
/// The cases CI runs.
const CI_CASES: u64 = 24;

/// `anysend` into a stream file, the ordering rules checked on it, `anyrecv` into `dest/replica`.
fn send_check_recv(origin: Option<&Path>, target: &Path, dest: &Path) -> Result<PathBuf, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stream = tmp.path().join("stream");
    support::send_to_file(origin, target, &stream)?;
    if let Some(keep) = std::env::var_os("ANYSEND_RANDOM_STREAMS") {
        // Kept for `anyrecv --dump` when a replayed case is looked into.
        let name = target.file_name().ok_or("target has no name")?;
        std::fs::copy(&stream, Path::new(&keep).join(name)).map_err(|e| e.to_string())?;
    }
    let bytes = std::fs::read(&stream).map_err(|e| e.to_string())?;
    let (header, records) = streams::decode(&bytes);
    stream_rules::check_order(&records, target, header.origin.is_none())
        .map_err(|e| format!("stream rule broken: {e}"))?;
    let replica = dest.join("replica");
    support::recv_from_file(&stream, &replica, &support::state_dir_for(dest))?;
    Ok(replica)
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// The seeds to run: 1..=CI_CASES, or what the environment asks for.
fn seeds() -> std::ops::RangeInclusive<u64> {
    match env_u64("ANYSEND_RANDOM_CASES") {
        Some(n) => {
            let first = env_u64("ANYSEND_RANDOM_SEED").unwrap_or(1);
            first..=first + n.saturating_sub(1)
        }
        None => 1..=CI_CASES,
    }
}

/// Reports the seed of a case that panics, with how to replay it.
struct SeedOnFailure(u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "*** e2e_random_chain: seed {0} failed; replay with ANYSEND_RANDOM_SEED={0} \
                 ANYSEND_RANDOM_CASES=1 cargo test -p anysend --test e2e_random_chain ***",
                self.0
            );
        }
    }
}

/// Every seed of [`seeds`], onto destinations of the kinds in `kinds` in turn.
fn run_chains(test: &str, kinds: &[DestKind]) {
    let Some(_p) = require_privileged(test) else { return };
    for seed in seeds() {
        let _report = SeedOnFailure(seed);
        let kind = kinds[(seed % kinds.len() as u64) as usize];
        eprintln!("e2e_random_chain: seed {seed}, destination {kind}");
        let name: &'static str = Box::leak(format!("random{seed}").into_boxed_str());
        let src = BtrfsFs::new(FS_SIZE);
        let snapshots = run_scenario_on_btrfs(&random_scenario(name, seed, STEPS, CHANGES), &src);
        let dest = DestFs::new(kind);
        check_chain_on(name, &snapshots, &dest, &CompareOptions::new(), &send_check_recv);
        let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
    }
}

/// ext4 and tmpfs take turns; each holds every property the generator makes (tmpfs only the
/// flags it can hold, which the comparator relaxes and says so).
#[test]
fn random_chains_are_received_exactly() {
    run_chains(
        "e2e_random_chain::random_chains_are_received_exactly",
        &[DestKind::Ext4, DestKind::Tmpfs],
    );
}

/// The same seeds onto XFS, whose speculative preallocation once turned a hole left by a truncate
/// up into written zeros (`e2e_found_defects::holes_left_by_a_truncate_up_stay_holes`).
#[test]
fn random_chains_onto_xfs_are_received_exactly() {
    run_chains("e2e_random_chain::random_chains_onto_xfs_are_received_exactly", &[DestKind::Xfs]);
}
