//! The privilege gate: may a test that needs root, loop devices and mkfs
//! tools run here?
//!
//! Locally a missing privilege is a loud skip (so a developer without root
//! can still run the rest); in CI (`ANYSEND_CI=1`) a skip would silently hide
//! the whole point of the test bed, so it is a failure instead.

use crate::cmd::which;
use std::io::Write;
use std::path::Path;

/// Tools the test bed shells out to.
pub const REQUIRED_TOOLS: &[&str] =
    &["losetup", "mount", "umount", "mkfs.btrfs", "btrfs", "mkfs.ext4", "mkfs.xfs"];

/// Proof that the gate was passed; tests hold it for readability.
#[derive(Debug)]
pub struct Privileged {
    _private: (),
}

/// Whether `ANYSEND_CI=1` is set, which turns skips into failures.
pub fn in_ci() -> bool {
    std::env::var_os("ANYSEND_CI").is_some_and(|v| v == "1")
}

/// Whether this process runs as root (tests that can do more as root, but need not, ask this).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// What is missing for privileged tests using `tools` (empty: all good).
pub fn privilege_problems(tools: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_root() {
        problems.push("not running as root".to_string());
    }
    if !Path::new("/dev/loop-control").exists() {
        problems.push("/dev/loop-control is missing (no loop devices)".to_string());
    }
    for tool in tools {
        if which(tool).is_none() {
            problems.push(format!("tool `{tool}` not found"));
        }
    }
    problems
}

/// Gate for a test needing root, loop devices and [`REQUIRED_TOOLS`].
///
/// Returns `None` (after a loud message on stderr) when the test must be
/// skipped; panics instead when `ANYSEND_CI=1`.
pub fn require_privileged(test_name: &str) -> Option<Privileged> {
    require_privileged_with(test_name, REQUIRED_TOOLS)
}

/// [`require_privileged`] with an explicit tool list (e.g. add `setfacl`).
pub fn require_privileged_with(test_name: &str, tools: &[&str]) -> Option<Privileged> {
    decide(test_name, &privilege_problems(tools), in_ci(), &mut |line| {
        // Straight to the stderr handle: the test harness captures `eprintln!`
        // of passing tests, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "{line}");
    })
}

/// The gate's decision, apart from probing the machine; a skip is told to `say`.
fn decide(
    test_name: &str,
    problems: &[String],
    ci: bool,
    say: &mut dyn FnMut(&str),
) -> Option<Privileged> {
    if problems.is_empty() {
        return Some(Privileged { _private: () });
    }
    let reason = problems.join("; ");
    if ci {
        panic!("*** {test_name}: ANYSEND_CI=1 forbids skipping, but it needs root and loop devices ({reason}) ***");
    }
    say(&format!("*** SKIPPED {test_name}: needs root and loop devices ({reason}) ***"));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gate says, kept (a unit test must not print a skip that did not happen).
    fn quiet(test_name: &str, problems: &[String], ci: bool) -> (Option<Privileged>, Vec<String>) {
        let mut said = Vec::new();
        let gate = decide(test_name, problems, ci, &mut |l| said.push(l.to_string()));
        (gate, said)
    }

    #[test]
    fn no_problem_passes() {
        assert!(quiet("t", &[], true).0.is_some());
        let (gate, said) = quiet("t", &[], false);
        assert!(gate.is_some() && said.is_empty());
    }

    #[test]
    fn a_problem_skips_locally_and_says_so() {
        let (gate, said) = quiet("t", &["not running as root".into()], false);
        assert!(gate.is_none());
        assert_eq!(said, ["*** SKIPPED t: needs root and loop devices (not running as root) ***"]);
    }

    #[test]
    #[should_panic(expected = "ANYSEND_CI=1 forbids skipping")]
    fn a_problem_fails_in_ci() {
        quiet("t", &["not running as root".into()], true);
    }

    #[test]
    fn a_missing_tool_is_a_problem() {
        let p = privilege_problems(&["anysend-no-such-tool"]);
        assert!(p.iter().any(|m| m.contains("anysend-no-such-tool")), "{p:?}");
    }
}
