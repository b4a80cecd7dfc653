//! Full + incremental chains of every corpus scenario, sent by `anysend` from real btrfs
//! snapshots and received by `anyrecv` onto ext4, XFS and tmpfs: after each step the received
//! tree must equal the snapshot in every property the destination can hold (the comparator
//! prints each relaxation `for_dest` applies).

mod support;

use anysend_testbed::compare::CompareOptions;
use anysend_testbed::corpus;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::{check_chain_on, run_scenario_on_btrfs};

const FS_SIZE: u64 = 256 << 20;

fn chain(name: &str) {
    let Some(_p) = require_privileged(&format!("e2e_chain::{name}")) else { return };
    let scenario = corpus::scenario(name).expect("scenario in corpus");
    let src = BtrfsFs::new(FS_SIZE);
    let snapshots = run_scenario_on_btrfs(&scenario, &src);
    for kind in [DestKind::Ext4, DestKind::Xfs, DestKind::Tmpfs] {
        let dest = DestFs::new(kind);
        let received = check_chain_on(
            name,
            &snapshots,
            &dest,
            &CompareOptions::new(),
            &support::send_and_receive,
        );
        assert_eq!(received.len(), scenario.steps.len());
        let _ = std::fs::remove_dir_all(support::state_dir_for(dest.path()));
    }
}

anysend_testbed::corpus_tests!(chain);

#[test]
fn every_corpus_scenario_is_chained() {
    let missing: Vec<_> = corpus::NAMES.iter().filter(|n| !COVERED.contains(n)).collect();
    assert!(missing.is_empty(), "corpus scenarios without an end-to-end chain test: {missing:?}");
}
