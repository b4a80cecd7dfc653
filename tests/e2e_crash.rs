//! Power cuts during a receive (issue 20), end to end: the crash harness of the test bed
//! (`anysend_testbed::crash`, described in docs/crash-harness.md) receives a chain of three
//! streams into ext4 and XFS on loop devices, copies DEST's and the state directory's images at
//! many moments of each receive (what a power cut then leaves), and checks every copy twice:
//! resumed (`anyrecv --resume-token`, `anysend --resume`, `anyrecv`) it must equal the target,
//! aborted (`anyrecv --abort`) the origin, in every property the comparator checks.
//!
//! The streams: (1) a full stream of a tree with large, sparse and hard-linked files and a
//! thousand small ones; (2) an incremental with directory renames, a cycle broken through an
//! orphan directory, a swap, a directory moved under its former child, hard links added and
//! removed, whole subtrees removed and type changes; (3) an incremental of 3,000 scattered small
//! writes into a 20 MiB file and metadata changes.
//!
//! Ignored in the suite for its length (about 7 minutes); `.ci/run` runs it on its own. The
//! first run, on the receiver before checkpoints, failed 256 of 560 checks (docs/crash-harness.md
//! lists why); now every crash state resumes to the target and aborts to the origin. Run it with
//! `ANYSEND_CI=1 cargo test -p anysend --test e2e_crash -- --ignored --nocapture`;
//! `ANYSEND_CRASH_POINTS=N` sets the cuts per stream (default 40; the cuts in the final steps
//! and after exit come on top), `ANYSEND_CRASH_FS=ext4` or `xfs` runs one file system only,
//! `ANYSEND_CRASH_REPORT=FILE` also writes the report and every failure to FILE, and
//! `ANYSEND_CRASH_SYNC=1` is the control run: both file systems synced before each copy, so a
//! copy loses nothing (what a SIGKILL leaves).

mod support;

use std::io::Write;
use std::path::Path;

use anysend_testbed::crash::check::{Outcome, Pass};
use anysend_testbed::crash::{self, Config, StreamSpec, Tools};
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::{BtrfsFs, DestKind};
use anysend_testbed::privilege::{require_privileged_with, REQUIRED_TOOLS};
use anysend_testbed::scenario::{run_scenario_on_btrfs, Scenario};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
const DIRS: usize = 40;
const FILES: usize = 25;

fn d(i: usize) -> String {
    format!("d{i:02}")
}

/// A small pseudo-random sequence (the scenario must be the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn scenario() -> Scenario {
    Scenario::new("crash")
        .step("large, sparse, hard-linked and a thousand small files", |r: &Path| {
            for i in 0..DIRS {
                mkdir(r.join(d(i)))?;
                for j in 0..FILES {
                    let p = r.join(d(i)).join(format!("f{j:02}"));
                    write_file(&p, &pattern(50 + (i * 131 + j * 71) % 3000, (i * 100 + j) as u64))?;
                    if j % 5 == 0 {
                        set_xattr(&p, "user.tag", format!("{i}-{j}").as_bytes())?;
                    }
                    if j % 7 == 0 {
                        chmod(&p, 0o640)?;
                    }
                }
            }
            mkdir_all(r.join("foo/bar/sub"))?;
            write_file(r.join("foo/bar/baz"), b"baz")?;
            write_file(r.join("foo/bar/sub/x"), b"x")?;
            mkdir_all(r.join("p/q/r"))?;
            write_file(r.join("p/q/r/leaf"), b"leaf")?;
            write_file(r.join("p/pf"), b"pf")?;
            mkdir(r.join("da"))?;
            mkdir(r.join("db"))?;
            write_file(r.join("da/in-a"), b"a")?;
            write_file(r.join("db/in-b"), b"b")?;
            write_file(r.join("x"), b"content x")?;
            write_file(r.join("y"), b"content y, longer")?;
            write_file(r.join("f"), b"f data")?;
            hardlink(r.join("f"), r.join("g"))?;
            hardlink(r.join("f"), r.join("d01/f-link"))?;
            hardlink(r.join("f"), r.join("d02/f-link2"))?;
            write_file(r.join("big1"), &pattern(6 * MIB as usize + 1234, 1))?;
            write_file(r.join("big2"), &pattern(4 * MIB as usize, 2))?;
            hardlink(r.join("big2"), r.join("d03/big2-link"))?;
            make_sparse(
                r.join("sparse"),
                32 * MIB,
                &[
                    (MIB, &pattern(256 * KIB as usize, 3)),
                    (9 * MIB, &pattern(64 * KIB as usize, 4)),
                    (31 * MIB, &pattern(128 * KIB as usize, 5)),
                ],
            )?;
            write_file(r.join("scatter.dat"), &pattern(20 * MIB as usize, 6))?;
            symlink(b"../f", r.join("d04/link"))?;
            mkfifo(r.join("fifo"), 0o640)?;
            set_xattr(r.join("x"), "user.color", b"blue")?;
            chmod(r.join("y"), 0o640)
        })
        .step("renames, a cycle, a swap, links, removals, type changes", |r: &Path| {
            // Directory renames.
            for i in 0..10 {
                rename(r.join(d(i)), r.join(format!("{}-renamed", d(i))))?;
            }
            // foo/bar takes the place of foo: a cycle broken through an orphan directory.
            rename(r.join("foo/bar"), r.join("t"))?;
            remove_dir(r.join("foo"))?;
            rename(r.join("t"), r.join("foo"))?;
            // A directory moved under its former child.
            rename(r.join("p/q"), r.join("q"))?;
            rename(r.join("p"), r.join("q/p"))?;
            // Swaps of files and of directories.
            rename(r.join("x"), r.join("tmp"))?;
            rename(r.join("y"), r.join("x"))?;
            rename(r.join("tmp"), r.join("y"))?;
            rename(r.join("da"), r.join("tmpd"))?;
            rename(r.join("db"), r.join("da"))?;
            rename(r.join("tmpd"), r.join("db"))?;
            // Files moved between directories.
            for i in 10..20 {
                for j in 0..10 {
                    let to = r.join(d(i + 10)).join(format!("moved-{i}-{j}"));
                    rename(r.join(d(i)).join(format!("f{j:02}")), to)?;
                }
            }
            // Whole subtrees removed.
            for i in 30..35 {
                remove_tree(r.join(d(i)))?;
            }
            // Hard links added and removed.
            hardlink(r.join("f"), r.join("d35/f-link3"))?;
            hardlink(r.join("big1"), r.join("d35/big1-link"))?;
            remove(r.join("g"))?;
            remove(r.join("d03-renamed/big2-link"))?;
            // Type changes: file -> directory, directory -> symlink, symlink -> file.
            remove(r.join("d36/f00"))?;
            mkdir(r.join("d36/f00"))?;
            write_file(r.join("d36/f00/inside"), b"inside")?;
            remove_tree(r.join("d37"))?;
            symlink(b"d38", r.join("d37"))?;
            remove(r.join("d04-renamed/link"))?;
            write_file(r.join("d04-renamed/link"), b"was a symlink")?;
            // Data.
            write_file(r.join("new.dat"), &pattern(3 * MIB as usize, 7))?;
            write_at(r.join("big1"), 2 * MIB + 7, &pattern(MIB as usize + 99, 8))?;
            append(r.join("big2"), &pattern(300 * KIB as usize, 9))?;
            write_at(r.join("sparse"), 3 * MIB, &pattern(128 * KIB as usize, 10))?;
            punch_hole(r.join("sparse"), MIB, 64 * KIB)?;
            write_at(r.join("f"), 0, b"F")?;
            set_xattr(r.join("y"), "user.color", b"green")?;
            chmod(r.join("x"), 0o600)?;
            chmod(r.join("d39"), 0o750)
        })
        .step("3000 scattered writes into a 20 MiB file, metadata", |r: &Path| {
            let mut rng = Lcg(20);
            let len = 20 * MIB;
            let f = r.join("scatter.dat");
            for k in 0..3000 {
                let n = 1 + rng.next(4 * KIB);
                let at = rng.next(len - n);
                write_at(&f, at, &pattern(n as usize, 1000 + k))?;
            }
            for i in 20..30 {
                for j in 10..15 {
                    let p = r.join(d(i)).join(format!("f{j:02}"));
                    chmod(&p, 0o604)?;
                    set_xattr(&p, "user.step", b"3")?;
                    set_mtime(&p, 1_600_000_000 + (i * 100 + j) as i64, 7)?;
                }
            }
            Ok(())
        })
}

#[test]
#[ignore = "about 7 minutes: .ci/run runs it on its own, after the suite (cargo test -p anysend --test e2e_crash -- --ignored)"]
fn power_cuts_resume_to_target_and_abort_to_origin() {
    let tools: Vec<&str> = REQUIRED_TOOLS.iter().copied().chain(["blockdev"]).collect();
    let Some(_p) = require_privileged_with(
        "e2e_crash::power_cuts_resume_to_target_and_abort_to_origin",
        &tools,
    ) else {
        return;
    };
    let start = std::time::Instant::now();
    let fs = BtrfsFs::new(512 * MIB);
    let snaps = run_scenario_on_btrfs(&scenario(), &fs);
    let tmp = tempfile::tempdir().unwrap();
    let names = ["full", "renames", "scattered"];
    let streams: Vec<StreamSpec> = snaps
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let origin = i.checked_sub(1).map(|p| snaps[p].clone());
            let f = tmp.path().join(names[i]);
            support::send_to_file(origin.as_deref(), target, &f).unwrap();
            StreamSpec {
                name: names[i].to_string(),
                origin,
                target: target.clone(),
                bytes: std::fs::read(&f).unwrap(),
            }
        })
        .collect();
    let tools = Tools { anysend: support::bin("anysend"), anyrecv: support::bin("anyrecv") };
    let mut cfg = Config::new(tools, streams);
    if let Ok(n) = std::env::var("ANYSEND_CRASH_POINTS") {
        cfg.points = n.parse().expect("ANYSEND_CRASH_POINTS is a number");
    }
    if let Ok(k) = std::env::var("ANYSEND_CRASH_FS") {
        cfg.kinds = k
            .split(',')
            .map(|k| match k {
                "ext4" => DestKind::Ext4,
                "xfs" => DestKind::Xfs,
                other => panic!("ANYSEND_CRASH_FS: {other}: ext4 or xfs"),
            })
            .collect();
    }
    if std::env::var_os("ANYSEND_CRASH_SYNC").is_some_and(|v| v == "1") {
        cfg.sync_first = true;
    }
    for s in &cfg.streams {
        eprintln!("e2e_crash: stream {}: {} bytes", s.name, s.bytes.len());
    }
    let tally = crash::run(&cfg).unwrap_or_else(|e| panic!("crash harness: {e}"));
    let report = tally.report();
    if let Some(path) = std::env::var_os("ANYSEND_CRASH_REPORT") {
        std::fs::write(&path, format!("{report}\n{}", tally.failure_lines())).unwrap();
    }
    // Straight to the handle: the report must be seen even when the harness captures output.
    let _ = writeln!(std::io::stderr(), "{report}");
    let _ = writeln!(std::io::stderr(), "e2e_crash: {:.1?}", start.elapsed());
    println!("{}", tally.summary_line());
    assert_nothing_left();
    assert!(tally.all_passed(), "{}", tally.summary_line());
}

/// No loop device is still bound to a file of the harness (its temp dirs are `anysend-crash-*`),
/// and nothing of it is mounted.
fn assert_nothing_left() {
    let mut left = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let b = std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
        if b.contains("anysend-crash-") {
            left.push(format!("{:?} -> {}", e.file_name(), b.trim()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains("anysend-crash-")).map(str::to_string));
    assert!(left.is_empty(), "the crash harness left behind: {left:?}");
}

/// The harness's machinery, on what passes today: a receive recorded and frozen only after it
/// exited must be recognised as complete by both checks, and everything is torn down.
#[test]
fn the_harness_recognises_a_completed_receive() {
    let tools: Vec<&str> = REQUIRED_TOOLS.iter().copied().chain(["blockdev"]).collect();
    let Some(_p) =
        require_privileged_with("e2e_crash::the_harness_recognises_a_completed_receive", &tools)
    else {
        return;
    };
    let fs = BtrfsFs::new(256 * MIB);
    let small = Scenario::new("small").step("a few files", |r: &Path| {
        mkdir(r.join("a"))?;
        write_file(r.join("a/f"), b"f")?;
        write_file(r.join("big"), &pattern(2 * MIB as usize, 1))?;
        hardlink(r.join("a/f"), r.join("g"))
    });
    let snaps = run_scenario_on_btrfs(&small, &fs);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("full");
    support::send_to_file(None, &snaps[0], &f).unwrap();
    let stream = StreamSpec {
        name: "small".into(),
        origin: None,
        target: snaps[0].clone(),
        bytes: std::fs::read(&f).unwrap(),
    };
    let tools = Tools { anysend: support::bin("anysend"), anyrecv: support::bin("anyrecv") };
    let mut cfg = Config::new(tools, vec![stream]);
    cfg.kinds = vec![DestKind::Ext4];
    cfg.points = 0;
    cfg.tail.clear();
    let tally = crash::run(&cfg).unwrap_or_else(|e| panic!("crash harness: {e}"));
    assert_nothing_left();
    assert_eq!(tally.summary_line(), "1 crash states: 1 resumed to target, 1 aborted to origin");
    assert!(
        tally.entries.iter().all(|e| matches!(e.outcome, Outcome::Pass(Pass::Complete))),
        "{}",
        tally.report()
    );
}
