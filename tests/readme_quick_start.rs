//! The README's quick start, run as written: its block (between the `quick start` markers) is
//! taken from README.md, its paths moved into a btrfs loop file system and a scratch directory,
//! and run by bash in two halves around "a day later", with a day of changes in between; the
//! replica must equal each snapshot.

mod support;

use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::fsops::{mkdir, write_file};
use anysend_testbed::{require_privileged, BtrfsFs};
use std::path::Path;
use std::process::Command;

/// The quick start's shell lines, from README.md.
fn quick_start() -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("<!-- quick start:").expect("README has a quick start block");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").expect("its sh fence") + 6..];
    body[..body.find("```").expect("its closing fence")].to_string()
}

fn run(script: &str, path: &str, state: &Path) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .env("ANYRECV_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nfailed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let Some(_p) = require_privileged("readme_quick_start") else { return };
    let script = quick_start();
    let (first, second) = script.split_once("# ... a day later:").expect("the day-later line");
    let fs = BtrfsFs::new(256 << 20);
    let data = fs.path();
    let home = fs.create_subvolume("home");
    mkdir(home.join("docs")).unwrap();
    write_file(home.join("docs/a.txt"), b"monday").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let srv = scratch.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    let state = scratch.path().join("state");
    // The README's paths, here.
    let here = |s: &str| {
        s.replace("/data", &data.to_string_lossy()).replace("/srv", &srv.to_string_lossy())
    };
    let bins = support::bin("anysend");
    let bin_dir = bins.parent().unwrap().to_string_lossy().into_owned();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());

    run(&here(first), &path, &state);
    let replica = srv.join("replica");
    compare(&data.join(".snap/mon"), &replica, &CompareOptions::new())
        .unwrap()
        .assert_equal("after the full stream");

    // A day of changes.
    write_file(home.join("docs/a.txt"), b"tuesday").unwrap();
    std::fs::rename(home.join("docs"), home.join("papers")).unwrap();
    write_file(home.join("new"), b"new file").unwrap();
    run(&here(second), &path, &state);
    compare(&data.join(".snap/tue"), &replica, &CompareOptions::new())
        .unwrap()
        .assert_equal("after the incremental stream");
}
