//! Scenarios (a named list of steps, each turning one state of a tree into
//! the next), running them on btrfs with a read-only snapshot after each
//! step, and checking a send/receive chain against those snapshots.
//!
//! Steps are Rust closures rather than a data format: the hazards worth
//! testing (renames through cycles, flags, devices, deep trees) need the
//! full syscall surface, and a closure gives it with `?` for errors. The
//! chain runner knows nothing about the tool under test: it calls a
//! `send_recv` closure, so the same scenarios check `btrfs send/receive`
//! and anysend alike.

use crate::compare::{compare, CompareOptions};
use crate::loopfs::{BtrfsFs, DestFs, DestKind};
use std::io;
use std::path::{Path, PathBuf};

/// The signature of a step body: it gets the subvolume root.
pub type StepFn = dyn Fn(&Path) -> io::Result<()> + Send + Sync;

/// One step: a short description (shown on failure) and its body.
pub struct Step {
    pub what: &'static str,
    pub run: Box<StepFn>,
}

/// A named sequence of steps; step 1 builds the first state.
pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

impl Scenario {
    pub fn new(name: &'static str) -> Self {
        Scenario { name, steps: Vec::new() }
    }

    /// Adds a step.
    pub fn step(
        mut self,
        what: &'static str,
        run: impl Fn(&Path) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.steps.push(Step { what, run: Box::new(run) });
        self
    }
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<&str> = self.steps.iter().map(|s| s.what).collect();
        f.debug_struct("Scenario").field("name", &self.name).field("steps", &steps).finish()
    }
}

/// Runs `scenario` in a new subvolume named after it and returns the path of
/// the read-only snapshot taken after each step (`<name>.<k>`, k from 1).
/// Panics naming the step that failed.
pub fn run_scenario_on_btrfs(scenario: &Scenario, fs: &BtrfsFs) -> Vec<PathBuf> {
    let subvol = fs.create_subvolume(scenario.name);
    scenario
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            (step.run)(&subvol).unwrap_or_else(|e| {
                panic!("scenario {} step {} ({}): {e}", scenario.name, i + 1, step.what)
            });
            fs.snapshot_ro(&subvol, &format!("{}.{}", scenario.name, i + 1))
        })
        .collect()
}

/// A send/receive under test: `(origin, target, dest)` sends snapshot
/// `target` (full when `origin` is `None`, else incremental from `origin`,
/// whose received copy is already in `dest`), receives it into `dest`, and
/// returns the path of the received tree.
pub type SendRecv<'a> = dyn Fn(Option<&Path>, &Path, &Path) -> Result<PathBuf, String> + 'a;

/// Runs `scenario` on `fs`, then for each snapshot sends (full first,
/// incremental from the previous after that), receives into a fresh
/// destination of `dest_kind`, and asserts the received tree equals the
/// snapshot in every property, except the relaxations the destination kind
/// needs ([`CompareOptions::for_dest`]) plus `extra`. Returns the received
/// paths (the destination is gone when this returns; they are for messages).
pub fn check_chain(
    scenario: &Scenario,
    fs: &BtrfsFs,
    dest_kind: DestKind,
    extra: &CompareOptions,
    send_recv: &SendRecv<'_>,
) -> Vec<PathBuf> {
    let dest = DestFs::new(dest_kind);
    let snapshots = run_scenario_on_btrfs(scenario, fs);
    check_chain_on(scenario.name, &snapshots, &dest, extra, send_recv)
}

/// [`check_chain`] on snapshots already taken and a destination the caller
/// owns (e.g. to inspect it afterwards).
pub fn check_chain_on(
    name: &str,
    snapshots: &[PathBuf],
    dest: &DestFs,
    extra: &CompareOptions,
    send_recv: &SendRecv<'_>,
) -> Vec<PathBuf> {
    let opts = CompareOptions::for_dest(dest.kind()).merged(extra);
    let mut received = Vec::new();
    for (i, snap) in snapshots.iter().enumerate() {
        let origin = i.checked_sub(1).map(|p| snapshots[p].as_path());
        let got = send_recv(origin, snap, dest.path()).unwrap_or_else(|e| {
            panic!("scenario {name} step {}: send/receive into {} failed: {e}", i + 1, dest.kind())
        });
        let report = compare(snap, &got, &opts)
            .unwrap_or_else(|e| panic!("scenario {name} step {}: comparing failed: {e}", i + 1));
        report.assert_equal(&format!(
            "scenario {name} step {} ({} received into {} at {})",
            i + 1,
            snap.display(),
            dest.kind(),
            got.display()
        ));
        received.push(got);
    }
    received
}
