//! Counting and grouping the outcomes of a run: the summary line the issue asks for ("N crash
//! states: N resumed to target, N aborted to origin"), a table per stream, file system and mode,
//! and the failures grouped by cause with one example each, which is what a fix is measured
//! against.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::check::{Failure, Mode, Outcome, Pass};
use super::feed::Moment;
use crate::loopfs::DestKind;

/// One check of one crash copy.
#[derive(Debug, Clone)]
pub struct Entry {
    pub fs: DestKind,
    pub stream: String,
    /// The crash moment's index within its stream's recording.
    pub index: usize,
    pub moment: Moment,
    pub mode: Mode,
    pub outcome: Outcome,
}

/// One cause of failures: how many, how many per stream/file system, and the first example.
type Cause<'a> = (usize, BTreeMap<String, usize>, &'a Entry, &'a Failure);

/// All outcomes of a run, and notes about how it ran.
#[derive(Debug, Default)]
pub struct Tally {
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
}

impl Tally {
    fn passed(&self, mode: Mode) -> usize {
        self.entries
            .iter()
            .filter(|e| e.mode == mode && matches!(e.outcome, Outcome::Pass(_)))
            .count()
    }

    /// Crash states: one per recorded moment (each is checked once per mode).
    pub fn crash_states(&self) -> usize {
        self.entries.iter().filter(|e| e.mode == Mode::Resume).count()
    }

    pub fn failures(&self) -> impl Iterator<Item = (&Entry, &Failure)> {
        self.entries.iter().filter_map(|e| match &e.outcome {
            Outcome::Fail(f) => Some((e, f)),
            Outcome::Pass(_) => None,
        })
    }

    pub fn all_passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// "N crash states: N resumed to target, N aborted to origin".
    pub fn summary_line(&self) -> String {
        format!(
            "{} crash states: {} resumed to target, {} aborted to origin",
            self.crash_states(),
            self.passed(Mode::Resume),
            self.passed(Mode::Abort)
        )
    }

    /// The whole report: notes, the table, the grouped failures, the summary line last.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        // stream, fs, mode -> [interrupted ok, complete ok, not begun ok, failed, silent]
        let mut table: BTreeMap<(String, String, Mode), [usize; 5]> = BTreeMap::new();
        for e in &self.entries {
            let row = table.entry((e.stream.clone(), e.fs.to_string(), e.mode)).or_default();
            match &e.outcome {
                Outcome::Pass(Pass::Interrupted) => row[0] += 1,
                Outcome::Pass(Pass::Complete) => row[1] += 1,
                Outcome::Pass(Pass::NotBegun) => row[2] += 1,
                Outcome::Fail(f) => {
                    row[3] += 1;
                    if f.silent() {
                        row[4] += 1;
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "{:<14} {:<5} {:<7} {:>6} {:>11} {:>9} {:>9} {:>7} {:>14}",
            "stream",
            "fs",
            "mode",
            "states",
            "interrupted",
            "complete",
            "not-begun",
            "FAILED",
            "(silent: exit 0)"
        );
        for ((stream, fs, mode), r) in &table {
            let states: usize = r[..4].iter().sum();
            let _ = writeln!(
                out,
                "{stream:<14} {fs:<5} {:<7} {states:>6} {:>11} {:>9} {:>9} {:>7} {:>14}",
                mode.to_string(),
                r[0],
                r[1],
                r[2],
                r[3],
                r[4]
            );
        }
        // cause -> (count, per stream/fs/mode counts, first example)
        let mut causes: BTreeMap<(Mode, String), Cause> = BTreeMap::new();
        for (e, f) in self.failures() {
            let c = causes.entry((e.mode, f.cause())).or_insert((0, BTreeMap::new(), e, f));
            c.0 += 1;
            *c.1.entry(format!("{}/{}", e.stream, e.fs)).or_default() += 1;
        }
        if !causes.is_empty() {
            let _ = writeln!(out, "failures by cause:");
        }
        let mut sorted: Vec<_> = causes.into_iter().collect();
        sorted.sort_by_key(|c| std::cmp::Reverse(c.1 .0));
        for ((mode, cause), (n, wh, e, f)) in sorted {
            let where_: Vec<String> = wh.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                out,
                "  {n} x {mode}: {cause}{}",
                if f.silent() { " (SILENT)" } else { "" }
            );
            let _ = writeln!(out, "      where: {}", where_.join(", "));
            let _ = writeln!(
                out,
                "      e.g. stream {} on {}, cut {} ({}), crash state {}: exit {}: {}",
                e.stream,
                e.fs,
                e.moment.label,
                e.moment.why,
                e.index,
                f.exit.map_or("-".to_string(), |c| c.to_string()),
                f.message
            );
            if !f.detail.is_empty() && f.detail != f.message {
                let detail: String = f.detail.chars().take(600).collect();
                let _ = writeln!(out, "      {}", detail.replace('\n', "\n      "));
            }
        }
        let _ = writeln!(out, "{}", self.summary_line());
        out
    }

    /// Every failure, one line each (for a full log).
    pub fn failure_lines(&self) -> String {
        let mut out = String::new();
        for (e, f) in self.failures() {
            let _ = writeln!(
                out,
                "FAIL {} {} #{} {} ({}) {}: {}: exit {:?}: {}",
                e.stream,
                e.fs,
                e.index,
                e.moment.label,
                e.moment.why,
                e.mode,
                f.step,
                f.exit,
                f.message
            );
        }
        out
    }
}
