//! The base check and the state outside DEST: which streams DEST accepts, where the state
//! lives, what a failed receive leaves, and that a dry run changes nothing.

#[path = "../crates/recv/tests/common/mod.rs"]
mod common;
mod support;

use std::ffi::OsStr;
use std::path::Path;

use anyrecv::{Config, RecvError, Refusal, Verdict};
use anysend_stream::Record;
use anysend_testbed::fingerprint::fingerprint;
use anysend_testbed::streams::{id, stream};
use common::*;
use support::run_anyrecv as run_bin;

fn full1() -> Vec<u8> {
    stream(
        None,
        1,
        &[
            Record::Mkdir { path: p("d") },
            Record::Create { path: p("d/f") },
            Record::Write { path: p("d/f"), offset: 0, data: b"one".as_slice().into() },
        ],
    )
}

/// A scratch directory whose DEST received [`full1`], and the config that received it.
fn full1_received() -> (tempfile::TempDir, Config) {
    let t = scratch();
    let cfg = config(&t.path().join("dest"), &t.path().join("state"));
    recv(&cfg, &full1()).0.unwrap();
    (t, cfg)
}

fn incr(origin: u8, target: u8, name: &str) -> Vec<u8> {
    stream(Some(origin), target, &[Record::Create { path: p(name) }])
}

fn state_files(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some(OsStr::new("state")))
            .collect(),
        Err(_) => vec![],
    }
}

#[test]
fn a_chain_of_streams_and_the_state_outside_dest() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    let cfg = config(&dest, &state);
    let s = recv(&cfg, &full1()).0.unwrap();
    assert_eq!(s.verdict, Some(Verdict::Full));
    let s = recv(&cfg, &incr(1, 2, "two")).0.unwrap();
    assert_eq!(s.verdict, Some(Verdict::Incremental));
    recv(&cfg, &incr(2, 3, "three")).0.unwrap();

    // The state is in the state directory, named after DEST, and says what DEST holds.
    let files = state_files(&state);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.contains("-dest-"), "{name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains(&format!("target={}\n", id(3))), "{text}");
    assert!(text.contains(&format!("origin={}\n", id(2))), "{text}");
    assert!(text.contains(&format!("dest={}\n", dest.display())), "{text}");
    assert!(!text.contains("partial_"), "{text}");

    // Nothing of it inside DEST: only the stream's entries, no xattrs on the root.
    let mut names: Vec<_> =
        std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["d", "three", "two"]);
    let mut buf = vec![0u8; 4096];
    assert_eq!(rustix::fs::llistxattr(&dest, &mut buf[..]).unwrap(), 0);
}

#[test]
fn an_incremental_onto_another_target_is_refused_and_changes_nothing() {
    let (t, cfg) = full1_received();
    let (dest, state) = (&cfg.dest, &cfg.state_dir);
    let before = fingerprint(t.path());
    let e = recv(&cfg, &incr(9, 10, "x")).0.unwrap_err();
    match &e {
        RecvError::Refused(Refusal::OriginMismatch { need, have, .. }) => {
            assert_eq!((*need, *have), (id(9), id(1)));
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&id(9).to_string()) && msg.contains(&id(1).to_string()), "{msg}");
    assert_eq!(fingerprint(t.path()), before);

    // Through the binary: exit 4, both ids named; --force applies it.
    let args = |extra: &[&str]| {
        let mut a: Vec<&OsStr> = vec![OsStr::new("--state-dir"), state.as_os_str()];
        a.extend(extra.iter().map(OsStr::new));
        a.push(dest.as_os_str());
        a.into_iter().map(|s| s.to_os_string()).collect::<Vec<_>>()
    };
    let a = args(&[]);
    let r = run_bin(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>(), &incr(9, 10, "x"));
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&id(9).to_string()) && r.stderr.contains(&id(1).to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(fingerprint(t.path()), before);
    let a = args(&["--force"]);
    let r = run_bin(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>(), &incr(9, 10, "x"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: --force"), "{}", r.stderr);
    assert!(dest.join("x").exists());
    // The state now names the forced stream's target.
    recv(&cfg, &incr(10, 11, "y")).0.unwrap();
}

#[test]
fn a_full_stream_needs_an_empty_or_new_dest() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("existing"), b"keep").unwrap();
    let mut cfg = config(&dest, &state);
    cfg.force = true;
    let before = fingerprint(&dest);
    let r = recv(&cfg, &full1()).0.unwrap_err();
    assert!(matches!(r, RecvError::Refused(Refusal::NotEmpty { .. })), "{r}");
    assert!(r.to_string().contains("existing"), "{r}");
    assert_eq!(fingerprint(&dest), before);
    // An existing empty directory is fine.
    std::fs::remove_file(dest.join("existing")).unwrap();
    recv(&cfg, &full1()).0.unwrap();
    assert!(dest.join("d/f").exists());
}

#[test]
fn an_incremental_without_state_needs_force() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    std::fs::create_dir(&dest).unwrap();
    let mut cfg = config(&dest, &state);
    let e = recv(&cfg, &incr(1, 2, "x")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::NoState { .. })), "{e}");
    assert!(!dest.join("x").exists());
    cfg.force = true;
    let (r, w) = recv(&cfg, &incr(1, 2, "x"));
    assert!(matches!(r.unwrap().verdict, Some(Verdict::Forced(Refusal::NoState { .. }))));
    assert_eq!(w.len(), 1, "{w:?}");
    // A missing DEST cannot take an incremental stream, --force or not.
    let e = recv(&config(&t.path().join("nope"), &state), &incr(1, 2, "x")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Missing { .. })), "{e}");
}

#[test]
fn a_failed_receive_is_recorded_and_blocks_the_next_incremental() {
    let (_t, cfg) = full1_received();
    // Record 1 fails (d/f exists): record 0 was applied, so DEST is partly updated.
    let bad =
        stream(Some(1), 2, &[Record::Create { path: p("new") }, Record::Create { path: p("d/f") }]);
    let e = recv(&cfg, &bad).0.unwrap_err();
    assert_eq!(anyrecv::report::exit_code(&e), 5);
    let text = std::fs::read_to_string(&state_files(&cfg.state_dir)[0]).unwrap();
    assert!(text.contains("partial_next_record=1"), "{text}");
    assert!(text.contains(&format!("target={}", id(1))), "{text}");
    // Another stream (the same stream sent again would continue it).
    let e = recv(&cfg, &incr(1, 3, "z")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Unfinished { next_record: 1, .. })), "{e}");

    // A failure on the very first record changed nothing: the state stays as it was.
    let (_t2, cfg2) = full1_received();
    let state2 = &cfg2.state_dir;
    let before = std::fs::read_to_string(&state_files(state2)[0]).unwrap();
    let e = recv(&cfg2, &stream(Some(1), 2, &[Record::Rmdir { path: p("nope") }])).0.unwrap_err();
    assert_eq!(anyrecv::report::exit_code(&e), 5);
    assert_eq!(std::fs::read_to_string(&state_files(state2)[0]).unwrap(), before);
    recv(&cfg2, &incr(1, 2, "ok")).0.unwrap();
}

#[test]
fn a_truncated_stream_applies_what_verified_and_fails() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    let bytes = full1();
    let cut = &bytes[..bytes.len() - 10];
    let e = recv(&config(&dest, &state), cut).0.unwrap_err();
    assert_eq!(anyrecv::report::exit_code(&e), 1, "{e}");
    assert!(dest.join("d").exists());
    // A new file gets its name only when its data is complete (it waits in the holding
    // directory; the stream stopped before the record after its data).
    assert!(!dest.join("d/f").exists());
    let text = std::fs::read_to_string(&state_files(&state)[0]).unwrap();
    assert!(text.contains("partial_next_record=3") && !text.contains("\ntarget="), "{text}");
    // Trailing bytes after the end record: everything applied and recorded complete, and the
    // error says so.
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    let mut bytes = full1();
    bytes.push(0);
    let e = recv(&config(&dest, &state), &bytes).0.unwrap_err();
    assert!(e.to_string().contains("received completely, but data follows its end record"), "{e}");
    let text = std::fs::read_to_string(&state_files(&state)[0]).unwrap();
    assert!(!text.contains("partial_") && text.contains("\ntarget="), "{text}");
}

/// A receive cut short is continued by the same stream sent again from its start: the records
/// DEST holds are skipped, for a full stream (DEST is no longer empty) as for an incremental.
#[test]
fn the_same_stream_again_from_its_start_continues_an_interrupted_receive() {
    let t = scratch();
    let cfg = config(&t.path().join("dest"), &t.path().join("state"));
    let full = full1();
    recv(&cfg, &full[..full.len() - 10]).0.unwrap_err();
    let s = recv(&cfg, &full).0.unwrap();
    assert_eq!(s.verdict, Some(Verdict::Full));
    assert_eq!(std::fs::read(cfg.dest.join("d/f")).unwrap(), b"one");

    let inc = stream(
        Some(1),
        2,
        &[
            Record::Create { path: p("a") },
            Record::Write { path: p("a"), offset: 0, data: b"aaa".as_slice().into() },
            Record::Create { path: p("b") },
            Record::Write { path: p("d/f"), offset: 3, data: b" two".as_slice().into() },
            Record::Create { path: p("c") },
        ],
    );
    recv(&cfg, &inc[..inc.len() - 40]).0.unwrap_err();
    let text = std::fs::read_to_string(&state_files(&cfg.state_dir)[0]).unwrap();
    assert!(text.contains("partial_"), "{text}");
    // Another stream is refused, naming where the interrupted one stopped.
    let e = recv(&cfg, &incr(1, 3, "other")).0.unwrap_err();
    assert!(e.to_string().contains("record"), "{e}");
    let s = recv(&cfg, &inc).0.unwrap();
    assert_eq!(s.verdict, Some(Verdict::Incremental));
    assert_eq!(std::fs::read(cfg.dest.join("a")).unwrap(), b"aaa");
    assert_eq!(std::fs::read(cfg.dest.join("d/f")).unwrap(), b"one two");
    assert!(cfg.dest.join("b").exists() && cfg.dest.join("c").exists());
    let text = std::fs::read_to_string(&state_files(&cfg.state_dir)[0]).unwrap();
    assert!(!text.contains("partial_") && text.contains(&format!("target={}\n", id(2))), "{text}");
}

#[test]
fn dry_run_changes_nothing() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    let mut cfg = config(&dest, &state);
    cfg.dry_run = true;
    // DEST missing: the stream is checked, nothing is created (not DEST, not the state dir).
    let s = recv(&cfg, &full1()).0.unwrap();
    assert_eq!(s.verdict, None);
    assert!(!dest.exists() && !state.exists());
    // A hostile record is found by a dry run too.
    let bad = stream(
        None,
        1,
        &[Record::Mkdir { path: p("a") }, Record::Link { path: p("x"), existing: p("../y") }],
    );
    let e = recv(&cfg, &bad).0.unwrap_err();
    assert!(e.to_string().starts_with("record 1 at byte "), "{e}");
    assert!(!dest.exists());

    // DEST exists: the base is checked and reported.
    cfg.dry_run = false;
    recv(&cfg, &full1()).0.unwrap();
    cfg.dry_run = true;
    let before = fingerprint(t.path());
    assert_eq!(recv(&cfg, &incr(1, 2, "x")).0.unwrap().verdict, Some(Verdict::Incremental));
    let e = recv(&cfg, &incr(5, 6, "x")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::OriginMismatch { .. })), "{e}");
    assert_eq!(fingerprint(t.path()), before);

    // Through the binary.
    let r = run_bin(
        &[OsStr::new("-n"), OsStr::new("--state-dir"), state.as_os_str(), dest.as_os_str()],
        &incr(1, 2, "x"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("dry run") && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    let r = run_bin(
        &[OsStr::new("-n"), OsStr::new("--state-dir"), state.as_os_str(), dest.as_os_str()],
        &incr(5, 6, "x"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(fingerprint(t.path()), before);
}

#[test]
fn a_second_receive_into_the_same_dest_is_refused_while_one_runs() {
    let t = scratch();
    let (dest, state) = (t.path().join("dest"), t.path().join("state"));
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(&state).unwrap();
    let file = anyrecv::state::state_file(&state, &std::fs::canonicalize(&dest).unwrap());
    let _held = anyrecv::state::lock(&file, "dest").unwrap().unwrap();
    let e = recv(&config(&dest, &state), &full1()).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Busy { .. })), "{e}");
}

#[test]
fn a_resumed_stream_needs_an_interrupted_receive_of_its_stream() {
    let t = scratch();
    let bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/streams/resumed.stream"))
            .unwrap();
    let e = recv(&config(&t.path().join("d"), &t.path().join("s")), &bytes[..]).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::ResumeMismatch { have: None, .. })), "{e}");
    assert_eq!(anyrecv::report::exit_code(&e), 4, "{e}");
    assert!(!t.path().join("d").exists());
}

/// `cat full inc | anyrecv DEST`: the first stream is received completely and recorded as
/// such; the bytes after its end record are an error of their own that leaves DEST complete,
/// with nothing to resume or abort, and the second stream then applies on its own.
#[test]
fn data_after_a_verified_end_leaves_dest_complete() {
    let t = scratch();
    let cfg = config(&t.path().join("dest"), &t.path().join("state"));
    let mut joined = full1();
    let first_len = joined.len() as u64;
    joined.extend(incr(1, 2, "two"));
    let e = recv(&cfg, &joined).0.unwrap_err();
    match &e {
        RecvError::TrailingData { offset, .. } => assert_eq!(*offset, first_len),
        other => panic!("{other}"),
    }
    assert_eq!(anyrecv::report::exit_code(&e), anyrecv::report::EXIT_STREAM);
    assert!(e.to_string().contains("received completely"), "{e}");
    assert_eq!(std::fs::read(cfg.dest.join("d/f")).unwrap(), b"one");
    assert!(!cfg.dest.join("two").exists());
    let text = std::fs::read_to_string(&state_files(&cfg.state_dir)[0]).unwrap();
    assert!(text.contains(&format!("target={}\n", id(1))), "{text}");
    assert!(!text.contains("partial_"), "{text}");
    // Nothing interrupted: the incremental applies by itself.
    let s = recv(&cfg, &incr(1, 2, "two")).0.unwrap();
    assert_eq!(s.verdict, Some(Verdict::Incremental));
    assert!(cfg.dest.join("two").exists());
}

/// The journal lives in the state directory: when that file system is full, the error says so
/// (not "the file system of DEST is full").
#[test]
fn a_full_state_directory_is_named_as_such() {
    let Some(_p) = anysend_testbed::require_privileged("a tmpfs as a full state directory") else {
        return;
    };
    let t = scratch();
    let state = t.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let _m = anysend_testbed::loopfs::Mount::new("tmpfs", &state, Some("tmpfs"), Some("size=64k"))
        .unwrap();
    let cfg = config(&t.path().join("dest"), &state);
    let big = vec![7u8; 512 << 10];
    let full = stream(
        None,
        1,
        &[
            Record::Create { path: p("big") },
            Record::Write { path: p("big"), offset: 0, data: big.as_slice().into() },
        ],
    );
    recv(&cfg, &full).0.unwrap();
    // Overwriting the file keeps its origin bytes in the journal: more than the state holds.
    let inc = stream(
        Some(1),
        2,
        &[Record::Write { path: p("big"), offset: 0, data: vec![8u8; 512 << 10].into() }],
    );
    let e = recv(&cfg, &inc).0.unwrap_err();
    let hint = anyrecv::report::hint(&e, false);
    assert!(e.to_string().contains("in the state directory"), "{e}");
    assert!(hint.contains("state directory") && hint.contains("full"), "{hint}");
    assert!(!hint.contains("DEST is full"), "{hint}");
}

/// `--abort` must reach every object the receive held: with its holding directory replaced by
/// a symbolic link, the abort fails loudly and DEST stays marked as interrupted (it used to
/// report success with the held file lost).
#[test]
fn an_abort_that_cannot_reach_the_holding_directory_fails() {
    let (t, cfg) = full1_received();
    // d/f goes into the holding directory; then record 1 fails: DEST is partly updated.
    let bad =
        stream(Some(1), 2, &[Record::Unlink { path: p("d/f") }, Record::Rmdir { path: p("nope") }]);
    recv(&cfg, &bad).0.unwrap_err();
    assert!(!cfg.dest.join("d/f").exists());
    let holding: Vec<_> = std::fs::read_dir(&cfg.dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".anyrecv"))
        .collect();
    assert_eq!(holding.len(), 1, "{holding:?}");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(&holding[0], t.path().join("held")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &holding[0]).unwrap();

    let e = anyrecv::rollback::abort(&cfg).unwrap_err();
    assert!(matches!(e, RecvError::Abort { .. }), "{e}");
    let text = std::fs::read_to_string(&state_files(&cfg.state_dir)[0]).unwrap();
    assert!(text.contains("partial_"), "{text}");
    // Put back, the abort completes and d/f is back.
    std::fs::remove_file(&holding[0]).unwrap();
    std::fs::rename(t.path().join("held"), &holding[0]).unwrap();
    anyrecv::rollback::abort(&cfg).unwrap();
    assert_eq!(std::fs::read(cfg.dest.join("d/f")).unwrap(), b"one");
}

/// One directory reached by two paths (a bind mount) has two state files, but one receive at a
/// time: the lock is on the directory itself.
#[test]
fn a_directory_reached_by_two_paths_takes_one_receive_at_a_time() {
    let Some(_p) = anysend_testbed::require_privileged("a bind mount of DEST's parent") else {
        return;
    };
    let t = scratch();
    let (e1, e1b) = (t.path().join("e1"), t.path().join("e1b"));
    std::fs::create_dir_all(e1.join("cc3")).unwrap();
    std::fs::create_dir(&e1b).unwrap();
    let _m = anysend_testbed::loopfs::Mount::new(e1.to_str().unwrap(), &e1b, None, Some("bind"))
        .unwrap();
    // A receive into e1/cc3 is under way (it holds the lock of the directory).
    let dir = std::fs::File::open(e1.join("cc3")).unwrap();
    let held =
        anyrecv::state::lock_dir(std::os::fd::AsFd::as_fd(&dir), &e1.join("cc3")).unwrap().unwrap();
    let cfg = config(&e1b.join("cc3"), &t.path().join("state"));
    let e = recv(&cfg, &full1()).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Busy { .. })), "{e}");
    assert_eq!(std::fs::read_dir(e1.join("cc3")).unwrap().count(), 0);
    drop(held);
    recv(&cfg, &full1()).0.unwrap();
    assert_eq!(std::fs::read(e1.join("cc3/d/f")).unwrap(), b"one");
}

/// A receive killed while it made its journal leaves a torn journal and no receive under way:
/// the next receive sets it aside instead of failing on it ("not an anyrecv journal").
#[test]
fn a_torn_journal_of_a_receive_that_never_began_is_set_aside() {
    let (_t, cfg) = full1_received();
    let mut journal = state_files(&cfg.state_dir)[0].as_os_str().to_owned();
    journal.push(".journal");
    std::fs::write(&journal, b"ANYR").unwrap();
    recv(&cfg, &incr(1, 2, "two")).0.unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.dest.join("two").exists());
}
