//! A DEST changed since its last receive where a stream would change it is refused before
//! anything is applied (the stream's `expect` records), unless forced; `--check` lists what was
//! changed. On a plain temporary directory (real file systems: tests/e2e_drift.rs).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyrecv::{Config, RecvError, Refusal, Warning};
use anysend_stream::{ObjectType, Record};
use anysend_testbed::fingerprint::fingerprint;
use anysend_testbed::fsops::set_mtime;
use anysend_testbed::streams::stream;
use common::*;

/// What the origin holds: `f` ("one", 0644), `d/` with `d/g`, all at fixed times.
fn full() -> Vec<u8> {
    let t = |path: &str| Record::Utimes {
        path: p(path),
        atime_sec: 1_700_000_000,
        atime_nsec: 0,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 7,
    };
    stream(
        None,
        1,
        &[
            Record::Create { path: p("f") },
            Record::Write { path: p("f"), offset: 0, data: b"one".as_slice().into() },
            Record::Chmod { path: p("f"), mode: 0o644 },
            t("f"),
            Record::Mkdir { path: p("d") },
            Record::Create { path: p("d/g") },
            Record::Chmod { path: p("d/g"), mode: 0o644 },
            t("d/g"),
            Record::Chmod { path: p("d"), mode: 0o755 },
            t("d"),
        ],
    )
}

/// The `expect` record of DEST's object at `rel` as it is now (what a sender reading this very
/// tree as its origin would write).
fn expect(dest: &Path, rel: &str) -> Record {
    let m = std::fs::symlink_metadata(dest.join(rel)).unwrap();
    let dir = m.is_dir();
    Record::Expect {
        path: p(rel),
        otype: if dir { ObjectType::Dir } else { ObjectType::File },
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: if dir { 0 } else { m.nlink() as u32 },
        size: if dir { 0 } else { m.size() },
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
    }
}

/// An incremental that appends to `f` and adds `d/new`, with its expectations of `f` and `d`
/// as DEST held them right after the full receive.
fn incremental(expects: Vec<Record>) -> Vec<u8> {
    let mut records = expects;
    records.extend([
        Record::Write { path: p("f"), offset: 3, data: b" two".as_slice().into() },
        Record::Create { path: p("d/new") },
    ]);
    stream(Some(1), 2, &records)
}

fn received() -> (tempfile::TempDir, Config, Vec<u8>) {
    let t = scratch();
    let cfg = config(&t.path().join("dest"), &t.path().join("state"));
    recv(&cfg, &full()).0.unwrap();
    let inc = incremental(vec![expect(&cfg.dest, "f"), expect(&cfg.dest, "d")]);
    (t, cfg, inc)
}

fn drifted(r: Result<anyrecv::Summary, RecvError>) -> String {
    match r {
        Err(RecvError::Refused(r @ Refusal::Drifted { .. })) => r.to_string(),
        other => panic!("expected a drift refusal, got {other:?}"),
    }
}

/// Paths added, removed and changed.
type Lists = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn check(cfg: &Config) -> (bool, Lists) {
    let r = anyrecv::check::check(cfg).unwrap();
    (r.unchanged(), (r.added, r.removed, r.changed))
}

#[test]
fn an_unchanged_replica_takes_the_incremental_and_check_says_so() {
    let (_t, cfg, inc) = received();
    assert_eq!(check(&cfg), (true, (vec![], vec![], vec![])));
    recv(&cfg, &inc).0.unwrap();
    assert_eq!(std::fs::read(cfg.dest.join("f")).unwrap(), b"one two");
    // The names log took the incremental's new name: nothing shows as added.
    assert_eq!(check(&cfg), (true, (vec![], vec![], vec![])));
}

#[test]
fn a_local_edit_is_refused_before_anything_is_applied() {
    let (t, cfg, inc) = received();
    std::fs::write(cfg.dest.join("f"), b"LOCAL EDIT, longer than before").unwrap();
    let before = fingerprint(t.path());
    let msg = drifted(recv(&cfg, &inc).0);
    assert!(msg.contains("f (") && msg.contains("size 30, the origin has 3"), "{msg}");
    assert_eq!(fingerprint(t.path()), before, "nothing applied, no state or journal written");
    assert!(anyrecv::resume::interrupted(&cfg).unwrap().is_none(), "nothing to resume");
    assert!(matches!(
        anyrecv::rollback::abort(&cfg),
        Err(RecvError::Refused(Refusal::NothingToResume { .. }))
    ));
    // A retry is refused the same way, and --check names the file.
    assert_eq!(drifted(recv(&cfg, &inc).0), msg);
    assert_eq!(check(&cfg), (false, (vec![], vec![], vec![p("f")])));
}

#[test]
fn an_edit_that_kept_size_and_mtime_is_caught_by_its_ctime() {
    let (_t, cfg, inc) = received();
    let f = cfg.dest.join("f");
    std::fs::write(&f, b"ONE").unwrap();
    set_mtime(&f, 1_700_000_000, 7).unwrap();
    let msg = drifted(recv(&cfg, &inc).0);
    assert!(msg.contains("after the last receive"), "{msg}");
    assert!(!msg.contains("size") && !msg.contains("modified"), "{msg}");
}

#[test]
fn a_local_add_delete_and_chmod_are_each_refused_and_listed() {
    type Change = fn(&Path);
    let cases: [(&str, Change, Lists); 3] = [
        (
            "add",
            |d| std::fs::write(d.join("d/local"), b"x").unwrap(),
            (vec![p("d/local")], vec![], vec![]),
        ),
        ("delete", |d| std::fs::remove_file(d.join("f")).unwrap(), (vec![], vec![p("f")], vec![])),
        (
            "chmod",
            |d| {
                std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o600))
                    .unwrap()
            },
            (vec![], vec![], vec![p("f")]),
        ),
    ];
    for (what, change, lists) in cases {
        let (t, cfg, inc) = received();
        change(&cfg.dest);
        let before = fingerprint(t.path());
        let msg = drifted(recv(&cfg, &inc).0);
        assert_eq!(fingerprint(t.path()), before, "{what}: {msg}");
        assert_eq!(check(&cfg), (false, lists), "{what}");
        // Forced, it applies and says over what.
        let forced = Config { force: true, ..cfg.clone() };
        let (r, warnings) = recv(&forced, &inc);
        match (what, r) {
            // The stream writes into `f`, which is gone.
            ("delete", r) => assert!(r.is_err(), "{what}"),
            (_, r) => {
                r.unwrap();
                assert!(
                    warnings
                        .iter()
                        .any(|w| matches!(w, Warning::Forced(s) if s.contains("changed since"))),
                    "{what}: {warnings:?}"
                );
            }
        }
    }
}

#[test]
fn a_change_outside_what_the_stream_touches_does_not_stop_it() {
    let (_t, cfg, inc) = received();
    std::fs::write(cfg.dest.join("d/g"), b"local").unwrap();
    // `d/g` itself is not in the stream's expectations (its directory is, unchanged).
    recv(&cfg, &inc).0.unwrap();
}

#[test]
fn a_dry_run_refuses_what_the_receive_would() {
    let (_t, cfg, inc) = received();
    std::fs::set_permissions(cfg.dest.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let dry = Config { dry_run: true, ..cfg.clone() };
    drifted(recv(&dry, &inc).0);
    recv(&Config { force: true, ..dry }, &inc).0.unwrap();
}

#[test]
fn an_expect_after_a_change_is_refused() {
    let (_t, cfg, _) = received();
    let exp = expect(&cfg.dest, "f");
    let bad = stream(Some(1), 2, &[Record::Create { path: p("x") }, exp]);
    match recv(&cfg, &bad).0 {
        Err(RecvError::Record(e)) => assert!(e.to_string().contains("`expect`"), "{e}"),
        other => panic!("{other:?}"),
    }
}
