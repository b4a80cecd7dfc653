//! Interrupted receives, end to end: `anyrecv` killed with SIGKILL at many points of each stream
//! of a chain (full + incrementals with renames, a cycle broken through an orphan directory, a
//! swap, hard links, large and sparse files), then either resumed (`anyrecv --resume-token`,
//! `anysend --resume`, `anyrecv`) or rolled back (`anyrecv --abort`): DEST must equal the target,
//! or the origin, in every property. Also a sender killed mid-stream (as over ssh), and a token
//! of another stream pair refused.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anysend_stream::{Record, StreamReader};
use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::fingerprint::fingerprint;
use anysend_testbed::fsops::*;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;
use anysend_testbed::scenario::{run_scenario_on_btrfs, Scenario};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// Kill points per stream.
const POINTS: usize = 52;

fn scenario() -> Scenario {
    Scenario::new("killed")
        .step("tree with links, a big file, a sparse file", |r: &Path| {
            mkdir_all(r.join("a/sub"))?;
            mkdir(r.join("b"))?;
            mkdir_all(r.join("foo/bar/sub"))?;
            mkdir_all(r.join("c/deep"))?;
            write_file(r.join("a/f1"), b"one")?;
            write_file(r.join("a/sub/g"), b"g")?;
            write_file(r.join("foo/bar/baz"), b"baz")?;
            write_file(r.join("foo/bar/sub/x"), b"x")?;
            write_file(r.join("c/deep/k"), b"k")?;
            write_file(r.join("x"), b"content x")?;
            write_file(r.join("y"), b"content y, longer")?;
            write_file(r.join("f"), b"f data")?;
            hardlink(r.join("f"), r.join("g"))?;
            hardlink(r.join("f"), r.join("b/f2"))?;
            write_file(r.join("big"), &pattern(5 * MIB as usize + 1234, 1))?;
            make_sparse(
                r.join("sparse"),
                8 * MIB,
                &[
                    (MIB, &pattern(256 * KIB as usize, 2)),
                    (6 * MIB, &pattern(64 * KIB as usize, 3)),
                ],
            )?;
            symlink(b"../f", r.join("a/link"))?;
            mkfifo(r.join("fifo"), 0o640)?;
            set_xattr(r.join("x"), "user.color", b"blue")?;
            chmod(r.join("y"), 0o640)
        })
        .step("renames, a cycle, a swap, links, edits, removals", |r: &Path| {
            rename(r.join("a/f1"), r.join("b/f1"))?;
            rename(r.join("a/sub"), r.join("b/sub2"))?;
            // foo/bar takes the place of foo: broken through an orphan directory.
            rename(r.join("foo/bar"), r.join("t"))?;
            remove_dir(r.join("foo"))?;
            rename(r.join("t"), r.join("foo"))?;
            rename(r.join("x"), r.join("tmp"))?;
            rename(r.join("y"), r.join("x"))?;
            rename(r.join("tmp"), r.join("y"))?;
            hardlink(r.join("f"), r.join("a/f3"))?;
            remove(r.join("g"))?;
            write_at(r.join("f"), 0, b"F")?;
            write_at(r.join("big"), 2 * MIB + 7, &pattern(MIB as usize + 99, 4))?;
            append(r.join("big"), &pattern(300 * KIB as usize, 5))?;
            write_at(r.join("sparse"), 3 * MIB, &pattern(128 * KIB as usize, 6))?;
            punch_hole(r.join("sparse"), MIB, 64 * KIB)?;
            remove_tree(r.join("c"))?;
            write_file(r.join("new"), &pattern(3 * MIB as usize, 7))?;
            set_xattr(r.join("y"), "user.color", b"green")?;
            chmod(r.join("x"), 0o600)
        })
        .step("a dir under its former child, shrink, unlink names", |r: &Path| {
            rename(r.join("b/sub2"), r.join("sub3"))?;
            rename(r.join("b"), r.join("sub3/b"))?;
            truncate(r.join("big"), 2 * MIB + 5)?;
            remove(r.join("a/f3"))?;
            remove(r.join("new"))?;
            write_file(r.join("a/new2"), &pattern(2 * MIB as usize, 8))?;
            hardlink(r.join("a/new2"), r.join("new2link"))?;
            rename(r.join("fifo"), r.join("a/fifo"))
        })
}

/// Byte offsets worth killing at: a spread over the whole stream, plus points inside the
/// records of the orphan directory (made and removed by the same stream) and inside file data.
fn kill_points(bytes: &[u8]) -> Vec<usize> {
    let mut r = StreamReader::new(bytes).expect("stream");
    let mut frames = Vec::new();
    while let Some(f) = r.next_frame().expect("valid stream") {
        frames.push((f.offset as usize, f.wire_len as usize, f.record.expect("known")));
    }
    let mut special = Vec::new();
    // The orphan directory: a mkdir whose path is removed again by an rmdir of this stream.
    for (i, (_, _, rec)) in frames.iter().enumerate() {
        if let Record::Mkdir { path } = rec {
            let j = frames[i..]
                .iter()
                .position(|(_, _, r)| matches!(r, Record::Rmdir { path: p } if p == path));
            if let Some(j) = j {
                for (off, len, _) in &frames[i..=i + j] {
                    special.push(off + len / 2);
                    special.push(off + len);
                }
            }
        }
    }
    special.truncate(10);
    // Inside large file data.
    let writes: Vec<_> = frames
        .iter()
        .filter(|(_, len, r)| matches!(r, Record::Write { .. }) && *len > 64 * 1024)
        .collect();
    for w in writes.iter().step_by((writes.len() / 4).max(1)).take(4) {
        special.push(w.0 + w.1 / 3);
    }
    let len = bytes.len();
    let uniform = POINTS - special.len();
    let mut points: Vec<usize> =
        (0..uniform).map(|i| 1 + (len - 2) * i / (uniform - 1)).chain(special).collect();
    points.iter_mut().for_each(|k| *k = (*k).clamp(1, len - 1));
    points.sort_unstable();
    points
}

struct Chain {
    _fs: BtrfsFs,
    snaps: Vec<PathBuf>,
    streams: Vec<Vec<u8>>,
    _tmp: tempfile::TempDir,
}

fn chain() -> Chain {
    let fs = BtrfsFs::new(256 * MIB);
    let snaps = run_scenario_on_btrfs(&scenario(), &fs);
    let tmp = tempfile::tempdir().unwrap();
    let mut streams = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        let f = tmp.path().join(format!("s{i}"));
        support::send_to_file(i.checked_sub(1).map(|p| snaps[p].as_path()), s, &f).unwrap();
        streams.push(std::fs::read(&f).unwrap());
    }
    Chain { _fs: fs, snaps, streams, _tmp: tmp }
}

fn same(a: &Path, b: &Path, what: &str) {
    let opts = CompareOptions::for_dest(DestKind::Tmpfs);
    let r = compare(a, b, &opts).unwrap_or_else(|e| panic!("{what}: compare failed: {e}"));
    r.assert_equal(what);
}

/// A replica on tmpfs that received the chain's first (full) stream; its state directory and
/// the stream file are in `tmp`, with room for the test's own files.
struct Replica {
    fs: DestFs,
    tmp: tempfile::TempDir,
    dest: PathBuf,
    state: PathBuf,
}

fn first_snapshot_received(c: &Chain) -> Replica {
    let fs = DestFs::new(DestKind::Tmpfs);
    let tmp = tempfile::tempdir().unwrap();
    let (dest, state) = (fs.path().join("replica"), tmp.path().join("state"));
    let s0 = tmp.path().join("s0");
    std::fs::write(&s0, &c.streams[0]).unwrap();
    support::recv_from_file(&s0, &dest, &state).unwrap();
    Replica { fs, tmp, dest, state }
}

/// Brings DEST from snapshot `s-1` (or nothing) to snapshot `s` through an interruption at byte
/// `k` of stream `s`, rolled back first (checked against the origin), then resumed.
/// Returns how many of the two kills left an interrupted receive (the others came before the
/// first record changed DEST).
fn killed_step(
    c: &Chain,
    s: usize,
    k: usize,
    settle: bool,
    dest: &Path,
    state: &Path,
    tmp: &Path,
) -> usize {
    let mut interrupted = 0;
    let bytes = &c.streams[s];
    let origin = s.checked_sub(1).map(|p| c.snaps[p].as_path());
    let what = |x: &str| {
        format!("stream {s} killed at byte {k} of {} (settle {settle}): {x}", bytes.len())
    };

    // 1. Kill, then abort: DEST is the origin again.
    support::recv_killed_at(&[], bytes, k, dest, state, settle);
    if support::resume_token(dest, state).is_some() {
        interrupted += 1;
        let out = support::anyrecv(&["--abort"], dest, state);
        assert!(
            out.status.success(),
            "{}: {}",
            what("abort"),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(support::resume_token(dest, state).is_none(), "{}", what("still interrupted"));
    }
    match origin {
        Some(o) => same(o, dest, &what("after --abort, DEST must equal the origin")),
        None => assert!(
            !dest.exists() || std::fs::read_dir(dest).unwrap().next().is_none(),
            "{}",
            what("after --abort of a full receive, DEST must be empty or gone")
        ),
    }

    // 2. Kill again, then resume: DEST is the target.
    support::recv_killed_at(&[], bytes, k, dest, state, settle);
    let rest = tmp.join(format!("rest-{s}-{k}"));
    match support::resume_token(dest, state) {
        Some(token) => {
            interrupted += 1;
            support::send_resumed(&token, origin, &c.snaps[s], &rest)
                .unwrap_or_else(|e| panic!("{}: {e}", what("anysend --resume")));
            support::recv_from_file(&rest, dest, state)
                .unwrap_or_else(|e| panic!("{}: {e}", what("receiving the resumed stream")));
            let _ = std::fs::remove_file(&rest);
        }
        // Killed before the first record changed anything: a plain receive.
        None => {
            std::fs::write(&rest, bytes).unwrap();
            support::recv_from_file(&rest, dest, state)
                .unwrap_or_else(|e| panic!("{}: {e}", what("receiving again")));
        }
    }
    same(&c.snaps[s], dest, &what("after resuming, DEST must equal the target"));
    interrupted
}

#[test]
fn killed_receives_resume_or_roll_back_at_any_byte() {
    let Some(_p) = require_privileged("e2e_kill::killed_receives_resume_or_roll_back_at_any_byte")
    else {
        return;
    };
    let start = std::time::Instant::now();
    let c = Arc::new(chain());
    let points: Vec<Vec<usize>> = c.streams.iter().map(|b| kill_points(b)).collect();
    let dest_fs = Arc::new(DestFs::new(DestKind::Tmpfs));
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (c, points, dest_fs) = (c.clone(), points.clone(), dest_fs.clone());
            std::thread::spawn(move || {
                let tmp = tempfile::tempdir().unwrap();
                let mut interrupted = 0;
                for j in (t..POINTS).step_by(threads) {
                    let dest = dest_fs.path().join(format!("replica-{j}"));
                    let state = tmp.path().join(format!("state-{j}"));
                    for (s, pts) in points.iter().enumerate() {
                        let k = pts[j];
                        interrupted += killed_step(&c, s, k, j % 2 == 0, &dest, &state, tmp.path());
                    }
                    // Keep the tmpfs small: this replica is done.
                    let _ = anysend_testbed::fsops::remove_tree(&dest);
                }
                interrupted
            })
        })
        .collect();
    let mut interrupted = 0;
    for h in handles {
        match h.join() {
            Ok(n) => interrupted += n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
    let kills = 2 * POINTS * c.streams.len();
    eprintln!(
        "e2e_kill: {} streams x {POINTS} kill points, each rolled back and resumed: {kills} \
         kills, {interrupted} left an interrupted receive, in {:.1?}",
        c.streams.len(),
        start.elapsed()
    );
    // Only kills in the first few hundred bytes (header, before the first record) find DEST
    // untouched.
    assert!(interrupted * 10 >= kills * 9, "{interrupted} of {kills} kills interrupted a receive");
}

#[test]
fn a_sender_killed_mid_stream_leaves_a_resumable_and_abortable_dest() {
    let Some(_p) = require_privileged("e2e_kill::a_sender_killed_mid_stream") else { return };
    let c = chain();
    let Replica { fs: _fs, tmp, dest, state } = first_snapshot_received(&c);

    // anysend | anyrecv, the sender killed after 3 MiB (as when ssh drops the link).
    let truncated = |dest: &Path| -> String {
        use std::io::{Read, Write};
        use std::process::{Command, Stdio};
        let mut send = Command::new(support::bin("anysend"))
            .arg("-q")
            .arg("--from")
            .arg(&c.snaps[0])
            .arg(&c.snaps[1])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut recv = Command::new(support::bin("anyrecv"))
            .arg("--state-dir")
            .arg(&state)
            .arg(dest)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut from = send.stdout.take().unwrap();
        let mut to = recv.stdin.take().unwrap();
        let mut buf = vec![0u8; 3 * MIB as usize];
        from.read_exact(&mut buf).unwrap();
        send.kill().unwrap();
        send.wait().unwrap();
        to.write_all(&buf).unwrap();
        drop(to);
        let out = recv.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "a truncated stream exits 1");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = truncated(&dest);
    assert!(err.contains("record") && err.contains("byte"), "names the position: {err}");
    assert!(err.contains("--resume-token") && err.contains("--abort"), "says what to do: {err}");

    // Abort: back to the origin; a plain receive of the whole stream then works.
    let out = support::anyrecv(&["--abort"], &dest, &state);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same(&c.snaps[0], &dest, "after --abort");

    // Again, and resume.
    truncated(&dest);
    // While interrupted, only the interrupted stream is accepted.
    let s2 = tmp.path().join("s2");
    std::fs::write(&s2, &c.streams[2]).unwrap();
    let e = support::recv_from_file(&s2, &dest, &state).unwrap_err();
    assert!(e.contains("resume") && e.contains("--abort"), "{e}");
    let token = support::resume_token(&dest, &state).expect("interrupted");
    let rest = tmp.path().join("rest");
    support::send_resumed(&token, Some(&c.snaps[0]), &c.snaps[1], &rest).unwrap();
    support::recv_from_file(&rest, &dest, &state).unwrap();
    same(&c.snaps[1], &dest, "after resuming");
    support::recv_from_file(&s2, &dest, &state).unwrap();
    same(&c.snaps[2], &dest, "the next incremental after a resumed one");
}

#[test]
fn a_token_of_another_stream_pair_is_refused_and_dest_is_unchanged() {
    let Some(_p) = require_privileged("e2e_kill::a_token_of_another_stream_pair") else { return };
    let c = chain();
    let Replica { fs: _fs, tmp, dest, state } = first_snapshot_received(&c);
    let k = c.streams[1].len() / 2;
    support::recv_killed_at(&[], &c.streams[1], k, &dest, &state, true);
    let token = support::resume_token(&dest, &state).expect("interrupted");
    let before = fingerprint(&dest);

    // The sender refuses to resume another pair with it.
    let rest = tmp.path().join("rest");
    let e = support::send_resumed(&token, Some(&c.snaps[1]), &c.snaps[2], &rest).unwrap_err();
    assert!(e.contains("token is for stream"), "{e}");
    assert!(!rest.exists());
    // A resumed stream of another pair (made with a token of its own) is refused by DEST.
    let other = tmp.path().join("other-dest");
    let other_state = tmp.path().join("other-state");
    let full = tmp.path().join("full");
    support::send_to_file(None, &c.snaps[1], &full).unwrap();
    let full_bytes = std::fs::read(&full).unwrap();
    support::recv_killed_at(&[], &full_bytes, full_bytes.len() / 2, &other, &other_state, true);
    let other_token = support::resume_token(&other, &other_state).expect("interrupted");
    support::send_resumed(&other_token, None, &c.snaps[1], &rest).unwrap();
    let e = support::recv_from_file(&rest, &dest, &state).unwrap_err();
    // The other receive resumes from its last checkpoint: from record 0 when it was killed
    // before its first one, and then its "rest" is the whole full stream, refused as such.
    assert!(e.contains("resumed at record") || e.contains("not empty"), "{e}");
    assert_eq!(fingerprint(&dest), before, "a refused stream changed DEST");
    assert_eq!(support::resume_token(&dest, &state), Some(token.clone()));

    // The right one still resumes.
    support::send_resumed(&token, Some(&c.snaps[0]), &c.snaps[1], &rest).unwrap();
    support::recv_from_file(&rest, &dest, &state).unwrap();
    same(&c.snaps[1], &dest, "after resuming");
}
