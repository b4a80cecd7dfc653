//! A replica changed in place is refused, not merged: real btrfs snapshots sent with `anysend`,
//! received with `anyrecv` onto ext4 and XFS. For a local edit, add, delete and chmod of an
//! object the incremental changes: exit 4 with the path named, DEST equal to its copy taken
//! before (every property), nothing to resume or abort, the same answer on a retry, `--check`
//! listing exactly that path; `--force` then applies and says over what. A change the stream
//! does not touch is no reason to refuse, and `--check` of an unchanged replica exits 0.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anysend_testbed::cmd::capture;
use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::fsops::{append, chmod, mkdir, remove, set_mtime, write_file};
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged;

const MIB: u64 = 1 << 20;

/// Snapshots s1 and s2 of one subvolume: s2 appends to `edit`, chmods `mode`, removes `gone`,
/// adds `d/new`; `keep` and `d/old` do not change. Returns the full and incremental streams.
fn streams(src: &BtrfsFs, dir: &Path) -> (PathBuf, PathBuf) {
    let vol = src.create_subvolume("vol");
    write_file(vol.join("keep"), b"same\n").unwrap();
    write_file(vol.join("edit"), b"line1\nline2\n").unwrap();
    write_file(vol.join("mode"), b"m\n").unwrap();
    write_file(vol.join("gone"), b"bye\n").unwrap();
    mkdir(vol.join("d")).unwrap();
    write_file(vol.join("d/old"), b"old\n").unwrap();
    let s1 = src.snapshot_ro(&vol, "s1");
    append(vol.join("edit"), b"line3\n").unwrap();
    chmod(vol.join("mode"), 0o600).unwrap();
    remove(vol.join("gone")).unwrap();
    write_file(vol.join("d/new"), b"new\n").unwrap();
    let s2 = src.snapshot_ro(&vol, "s2");
    let (full, inc) = (dir.join("full"), dir.join("inc"));
    support::send_to_file(None, &s1, &full).unwrap();
    support::send_to_file(Some(&s1), &s2, &inc).unwrap();
    (full, inc)
}

fn recv(args: &[&str], stream: &Path, dest: &Path, state: &Path) -> Output {
    let mut cmd = Command::new(support::bin("anyrecv"));
    cmd.arg("--state-dir").arg(state).args(args).arg("-f").arg(stream).arg(dest);
    capture(&mut cmd)
}

fn check(dest: &Path, state: &Path) -> (Option<i32>, String) {
    let out = support::anyrecv(&["--check"], dest, state);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of `dest` beside it, every property kept, to compare with after a refusal.
fn copy_of(dest: &Path) -> PathBuf {
    let copy = dest.with_extension("before");
    let out = capture(Command::new("cp").arg("-a").arg(dest).arg(&copy));
    assert!(out.status.success(), "cp -a: {}", text(&out));
    copy
}

struct Case {
    name: &'static str,
    change: fn(&Path),
    /// `--check`'s output after the change.
    listed: &'static str,
    /// What the refusal names.
    names: &'static str,
    /// Whether `--force` then receives the stream completely.
    forced_ok: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "local edit",
            change: |d| write_file(d.join("edit"), b"LOCAL EDIT, longer than before\n").unwrap(),
            listed: "M\tedit\n",
            names: "edit (",
            forced_ok: true,
        },
        Case {
            name: "local edit keeping size and mtime",
            change: |d| {
                let m = std::fs::symlink_metadata(d.join("edit")).unwrap();
                write_file(d.join("edit"), b"LINE1\nLINE2\n").unwrap();
                use std::os::unix::fs::MetadataExt;
                set_mtime(d.join("edit"), m.mtime(), m.mtime_nsec() as u32).unwrap();
            },
            listed: "M\tedit\n",
            names: "after the last receive",
            forced_ok: true,
        },
        Case {
            name: "local add",
            change: |d| write_file(d.join("d/local"), b"x\n").unwrap(),
            listed: "+\td/local\n",
            names: "d (",
            forced_ok: true,
        },
        Case {
            name: "local delete",
            change: |d| remove(d.join("mode")).unwrap(),
            listed: "-\tmode\n",
            names: "mode (missing)",
            forced_ok: false,
        },
        Case {
            name: "local chmod",
            change: |d| chmod(d.join("edit"), 0o666).unwrap(),
            listed: "M\tedit\n",
            names: "mode 0666, the origin has 0644",
            forced_ok: true,
        },
    ]
}

fn run_cases(kind: DestKind) {
    let src = BtrfsFs::new(256 * MIB);
    let tmp = tempfile::tempdir().unwrap();
    let (full, inc) = streams(&src, tmp.path());
    let fs = DestFs::new(kind);
    let state = support::state_dir_for(fs.path());
    let opts = CompareOptions::for_dest(kind);

    // Unchanged: --check says so, the incremental is taken, --check says so again.
    let dest = fs.path().join("unchanged");
    assert!(recv(&[], &full, &dest, &state).status.success());
    assert_eq!(check(&dest, &state), (Some(0), String::new()));
    let out = recv(&[], &inc, &dest, &state);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(check(&dest, &state), (Some(0), String::new()), "after the incremental");

    // Untouched by the stream: not refused, and --check (before) shows it.
    let dest = fs.path().join("untouched");
    assert!(recv(&[], &full, &dest, &state).status.success());
    write_file(dest.join("keep"), b"changed here\n").unwrap();
    assert_eq!(check(&dest, &state), (Some(1), "M\tkeep\n".to_string()));
    let out = recv(&[], &inc, &dest, &state);
    assert!(out.status.success(), "{}", text(&out));

    for (i, c) in cases().into_iter().enumerate() {
        let what = format!("{} on {}", c.name, kind.name());
        let dest = fs.path().join(format!("case{i}"));
        assert!(recv(&[], &full, &dest, &state).status.success(), "{what}");
        (c.change)(&dest);
        let copy = copy_of(&dest);
        let out = recv(&[], &inc, &dest, &state);
        let err = text(&out);
        assert_eq!(out.status.code(), Some(4), "{what}: {err}");
        assert!(
            err.contains("changed since its last receive") && err.contains(c.names),
            "{what}: {err}"
        );
        compare(&copy, &dest, &opts).unwrap().assert_equal(&format!("{what}: DEST unchanged"));
        // Messages and state agree: nothing to resume or abort; a retry says the same.
        assert_eq!(support::resume_token(&dest, &state), None, "{what}");
        let abort = support::anyrecv(&["--abort"], &dest, &state);
        assert!(text(&abort).contains("no interrupted receive"), "{what}: {}", text(&abort));
        let again = recv(&[], &inc, &dest, &state);
        assert_eq!((again.status.code(), text(&again)), (Some(4), err.clone()), "{what}");
        assert_eq!(check(&dest, &state), (Some(1), c.listed.to_string()), "{what}");
        // Forced: applied, and the warning says over what.
        let out = recv(&["--force"], &inc, &dest, &state);
        assert_eq!(out.status.success(), c.forced_ok, "{what}: {}", text(&out));
        if c.forced_ok {
            assert!(text(&out).contains("--force: applying although"), "{what}: {}", text(&out));
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_replica_changed_in_place_is_refused_on_ext4() {
    let Some(_p) = require_privileged("e2e_drift::a_replica_changed_in_place_is_refused_on_ext4")
    else {
        return;
    };
    run_cases(DestKind::Ext4);
}

#[test]
fn a_replica_changed_in_place_is_refused_on_xfs() {
    let Some(_p) = require_privileged("e2e_drift::a_replica_changed_in_place_is_refused_on_xfs")
    else {
        return;
    };
    run_cases(DestKind::Xfs);
}

#[test]
fn check_speaks_json_for_scripts() {
    let Some(_p) = require_privileged("e2e_drift::check_speaks_json_for_scripts") else {
        return;
    };
    let src = BtrfsFs::new(256 * MIB);
    let tmp = tempfile::tempdir().unwrap();
    let (full, _) = streams(&src, tmp.path());
    let fs = DestFs::new(DestKind::Ext4);
    let state = support::state_dir_for(fs.path());
    let dest = fs.path().join("j");
    assert!(recv(&[], &full, &dest, &state).status.success());
    write_file(dest.join("d/a\nb"), b"x").unwrap();
    remove(dest.join("gone")).unwrap();
    let out = support::anyrecv(&["--check", "--json"], &dest, &state);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["unchanged"], false);
    assert_eq!(v["added"], serde_json::json!(["d/a\\nb"]));
    assert_eq!(v["removed"], serde_json::json!(["gone"]));
    assert_eq!(v["changed"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&state);
}
