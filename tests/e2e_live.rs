//! A writable TARGET whose directories move while it is walked never gives a wrong stream:
//! `anysend` either refuses (exit 4, "TARGET changed while it was read: PATH") or sends a tree
//! that is one consistent state of the source. The race is the one of the issue: `src/a` and
//! `src/b` swapped (`mv a t; mv b a; mv t b`) in a tight loop by a thread while `anysend` runs.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anysend_testbed::cmd::capture;
use anysend_testbed::fsops::{mkdir, write_file};
use anysend_testbed::loopfs::BtrfsFs;
use anysend_testbed::privilege::require_privileged;

/// Files per swapped directory: enough that a walk takes many swaps long.
const FILES: usize = 1000;
const RUNS: usize = 20;

/// The names under `dir`, or an empty set when it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> =
        rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The received tree is one state of the source: `a` holds exactly all files of one of the two
/// swapped directories and `b` exactly all of the other, each file once.
fn consistent(replica: &Path, run: usize) -> Result<(), String> {
    let expect = |p: char| -> Vec<String> {
        let mut v: Vec<String> = (0..FILES).map(|i| format!("{p}{i:05}")).collect();
        v.sort();
        v
    };
    let (a, b) = (names(&replica.join("a")), names(&replica.join("b")));
    let (xs, ys) = (expect('x'), expect('y'));
    let ok = (a == xs && b == ys) || (a == ys && b == xs);
    if !ok {
        let all: BTreeSet<&String> = a.iter().chain(&b).collect();
        return Err(format!(
            "run {run}: exit 0 but the stream is no state of the source: a has {} files, b has \
             {}, {} distinct ({} expected)",
            a.len(),
            b.len(),
            all.len(),
            2 * FILES
        ));
    }
    let root = names(replica);
    if root != ["a", "b", "top"] {
        return Err(format!("run {run}: the root holds {root:?}"));
    }
    Ok(())
}

/// `src/top`, and `src/a` and `src/b` with FILES files each (x... in a, y... in b).
fn populate(src: &Path) {
    mkdir(src.join("a")).unwrap();
    mkdir(src.join("b")).unwrap();
    write_file(src.join("top"), b"top\n").unwrap();
    for i in 0..FILES {
        write_file(src.join(format!("a/x{i:05}")), b"x").unwrap();
        write_file(src.join(format!("b/y{i:05}")), b"y").unwrap();
    }
}

/// `runs` sends of `src` (incremental from `origin` when given: the origin snapshot and its
/// full stream) while a thread swaps `src/a` and `src/b`. Each send must exit 4 naming the path
/// (and leave no stream) or exit 0 with a stream that receives into a consistent state.
/// Returns how many were refused and how many swaps were made.
fn race(
    tmp: &Path,
    src: &Path,
    origin: Option<(&Path, &Path)>,
    runs: usize,
) -> Result<(usize, u64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, src) = (stop.clone(), src.to_path_buf());
        std::thread::spawn(move || {
            let (a, b, t) = (src.join("a"), src.join("b"), src.join("t"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&a, &t).unwrap();
                std::fs::rename(&b, &a).unwrap();
                std::fs::rename(&t, &b).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let state = support::state_dir_for(tmp);
    let mut refused = 0;
    let mut failure = None;
    for run in 0..runs {
        let stream = tmp.join(format!("stream{run}"));
        let mut cmd = Command::new(support::bin("anysend"));
        if let Some((o, _)) = origin {
            cmd.arg("--from").arg(o);
        }
        let out = capture(cmd.arg("-q").arg("-f").arg(&stream).arg(src));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(4) => {
                if !err.contains("TARGET changed while it was read: ") {
                    failure = Some(format!("run {run}: exit 4 without naming the path: {err}"));
                    break;
                }
                if stream.exists() {
                    failure = Some(format!("run {run}: a refused send left its stream behind"));
                    break;
                }
                refused += 1;
            }
            Some(0) => {
                let replica = tmp.join(format!("replica{run}"));
                let base = match origin {
                    Some((_, full)) => support::recv_from_file(full, &replica, &state),
                    None => Ok(()),
                };
                let checked = base
                    .and_then(|()| support::recv_from_file(&stream, &replica, &state))
                    .and_then(|()| consistent(&replica, run));
                let _ = std::fs::remove_dir_all(&replica);
                if let Err(e) = checked {
                    failure = Some(e);
                    break;
                }
            }
            _ => {
                failure = Some(format!("run {run}: {} {err}", out.status));
                break;
            }
        }
        let _ = std::fs::remove_file(&stream);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let _ = std::fs::remove_dir_all(&state);
    match failure {
        Some(f) => Err(f),
        None => Ok((refused, swaps)),
    }
}

#[test]
fn directories_swapped_during_a_send_give_exit_4_or_a_consistent_stream() {
    let Some(_p) = require_privileged(
        "e2e_live::directories_swapped_during_a_send_give_exit_4_or_a_consistent_stream",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src).unwrap();
    populate(&src);
    let (refused, swaps) = race(tmp.path(), &src, None, RUNS).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("e2e_live: {refused} of {RUNS} full sends refused (exit 4) over {swaps} swaps");
}

/// The same race for an incremental: ORIGIN a read-only snapshot, TARGET the live subvolume
/// it was taken of (so objects are matched by inode number, and the general walker runs).
#[test]
fn directories_swapped_during_an_incremental_give_exit_4_or_a_consistent_stream() {
    let Some(_p) = require_privileged(
        "e2e_live::directories_swapped_during_an_incremental_give_exit_4_or_a_consistent_stream",
    ) else {
        return;
    };
    let fs = BtrfsFs::new(256 << 20);
    let vol = fs.create_subvolume("vol");
    populate(&vol);
    let s1 = fs.snapshot_ro(&vol, "s1");
    write_file(vol.join("top"), b"changed\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("s1.full");
    support::send_to_file(None, &s1, &full).unwrap();
    let runs = RUNS / 2;
    let (refused, swaps) =
        race(tmp.path(), &vol, Some((&s1, &full)), runs).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e_live: {refused} of {runs} incremental sends refused (exit 4) over {swaps} swaps"
    );
}
