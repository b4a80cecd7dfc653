//! DEST known by its identity (its file system's UUID and its inode), not only by its path: a
//! DEST reached through a bind mount, or whose device number changed (a disk back after a
//! reboot with another one), still has its state.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyrecv::{RecvError, Refusal, Verdict, Warning};
use anysend_stream::Record;
use anysend_testbed::loopfs::Mount;
use anysend_testbed::streams::stream;
use anysend_testbed::{DestFs, DestKind};
use common::*;

fn full() -> Vec<u8> {
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

fn write(origin: u8, target: u8, data: &[u8]) -> Vec<u8> {
    stream(Some(origin), target, &[Record::Write { path: p("d/f"), offset: 0, data: data.into() }])
}

fn state_files(dir: &Path) -> Vec<PathBuf> {
    let rd = std::fs::read_dir(dir).unwrap();
    let all = rd.map(|e| e.unwrap().path());
    all.filter(|p| p.extension().is_some_and(|e| e == "state")).collect()
}

/// The end record's bytes (type, flags, length 20, payload, CRC).
const END_LEN: usize = 32;

/// A stream that stops before its end record until told to go on: a receive in progress.
struct Held {
    bytes: Vec<u8>,
    at: usize,
    go: mpsc::Receiver<()>,
    waited: bool,
}

impl std::io::Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.bytes.len() - END_LEN && !self.waited {
            let _ = self.go.recv();
            self.waited = true;
        }
        let end = if self.waited { self.bytes.len() } else { self.bytes.len() - END_LEN };
        let n = buf.len().min(end - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `mount --bind e1 e1b`: a full receive into `e1/cc3`, then everything through `e1b/cc3`
/// (an incremental, `--check`, the resume token and the abort of an interrupted receive),
/// and two receives at once through the two paths.
#[test]
fn a_dest_reached_through_a_bind_mount_has_its_state() {
    let Some(_p) = anysend_testbed::require_privileged("a bind mount of DEST's parent") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (e1, e1b) = (t.path().join("e1"), t.path().join("e1b"));
    std::fs::create_dir_all(e1.join("cc3")).unwrap();
    std::fs::create_dir(&e1b).unwrap();
    let _m = Mount::new(e1.to_str().unwrap(), &e1b, None, Some("bind")).unwrap();
    let state = t.path().join("state");
    let (one, two) = (config(&e1.join("cc3"), &state), config(&e1b.join("cc3"), &state));
    recv(&one, &full()).0.unwrap_or_else(|e| panic!("{e}"));

    // An incremental through the other path: the state is found by DEST's identity, and the
    // receive says so.
    let (r, warnings) = recv(&two, &write(1, 2, b"two"));
    let s = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.verdict, Some(Verdict::Incremental));
    let received_as = std::fs::canonicalize(e1.join("cc3")).unwrap();
    assert!(
        warnings.iter().any(|w| matches!(w, Warning::StateByIdentity { received_as: r, .. }
                if Path::new(std::ffi::OsStr::new(std::str::from_utf8(r).unwrap())) == received_as)),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.to_string().contains("found by its identity")));
    assert_eq!(std::fs::read(e1.join("cc3/d/f")).unwrap(), b"two");
    assert_eq!(state_files(&state).len(), 1, "one DEST, one state");
    // And back through the first path, and `--check` through both.
    recv(&one, &write(2, 3, b"thr")).0.unwrap_or_else(|e| panic!("{e}"));
    for cfg in [&one, &two] {
        let r = anyrecv::check::check(cfg).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.unchanged(), "{r:?}");
    }

    // An interrupted incremental through one path: its resume token and its abort through
    // the other.
    let bad =
        stream(Some(3), 4, &[Record::Unlink { path: p("d/f") }, Record::Rmdir { path: p("no") }]);
    recv(&one, &bad).0.unwrap_err();
    assert!(!e1.join("cc3/d/f").exists());
    anyrecv::resume::resume_token(&two).unwrap_or_else(|e| panic!("{e}"));
    anyrecv::rollback::abort(&two).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(e1.join("cc3/d/f")).unwrap(), b"thr");

    // Two receives at once, one through each path: the second is refused as busy.
    let (go, wait) = mpsc::channel();
    let held = Held { bytes: write(3, 5, b"fiv"), at: 0, go: wait, waited: false };
    let first = std::thread::spawn({
        let one = one.clone();
        move || anyrecv::receive(&one, held, &mut |_| {})
    });
    let started = Instant::now();
    while !std::fs::read_to_string(&state_files(&state)[0]).unwrap().contains("partial_") {
        assert!(started.elapsed() < Duration::from_secs(20), "the first receive did not begin");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = recv(&two, &write(3, 6, b"six")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Busy { .. })), "{e}");
    go.send(()).unwrap();
    first.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(e1.join("cc3/d/f")).unwrap(), b"fiv");
}

/// Sets `key` in the state file `file` to `value`, or removes it (`None`).
fn edit_state(file: &Path, key: &str, value: Option<&str>) {
    let text = std::fs::read_to_string(file).unwrap();
    let prefix = format!("{key}=");
    let mut lines: Vec<String> =
        text.lines().filter(|l| !l.starts_with(&prefix)).map(str::to_string).collect();
    lines.extend(value.map(|v| format!("{prefix}{v}")));
    std::fs::write(file, lines.into_iter().map(|l| l + "\n").collect::<String>()).unwrap();
}

fn key(file: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let prefix = format!("{key}=");
    text.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// A disk back after a reboot with another device number: DEST is the same inode of the same
/// file system (by UUID), not "replaced", for a fresh receive and for a resume. A state file
/// of an older anyrecv (no `dest_fs`) is read by its device number, and upgraded.
#[test]
fn a_dest_whose_device_number_changed_is_not_replaced() {
    let Some(_p) = anysend_testbed::require_privileged("an ext4 DEST") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    let state = tempfile::tempdir().unwrap();
    let cfg = config(&fs.path().join("dest"), state.path());
    recv(&cfg, &full()).0.unwrap_or_else(|e| panic!("{e}"));
    let file = state_files(state.path()).remove(0);
    let uuid = key(&file, "dest_fs").unwrap_or_default();
    assert!(uuid.starts_with("uuid:"), "ext4 has a UUID: {uuid}");
    let device = key(&file, "dest_device").unwrap();
    let elsewhere = (device.parse::<u64>().unwrap() + 1000).to_string();

    // Another device number, as after a reboot.
    edit_state(&file, "dest_device", Some(&elsewhere));
    recv(&cfg, &write(1, 2, b"two")).0.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key(&file, "dest_device").as_deref(), Some(device.as_str()), "recorded anew");

    // The same for a resume: an interrupted receive, the device number changed, the stream
    // sent again.
    let whole = write(2, 3, b"thr");
    recv(&cfg, &whole[..whole.len() - END_LEN]).0.unwrap_err();
    edit_state(&file, "dest_device", Some(&elsewhere));
    recv(&cfg, &whole).0.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(cfg.dest.join("d/f")).unwrap(), b"thr");

    // An older state file, without the UUID: its device number is compared, and it is
    // upgraded when written.
    edit_state(&file, "dest_fs", None);
    recv(&cfg, &write(3, 4, b"fou")).0.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key(&file, "dest_fs"), Some(uuid.clone()));
    // Such a file whose device number differs cannot tell: DEST was replaced (--force).
    edit_state(&file, "dest_fs", None);
    edit_state(&file, "dest_device", Some(&elsewhere));
    let e = recv(&cfg, &write(4, 5, b"fiv")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Replaced { .. })), "{e}");
    // Another UUID: replaced as well.
    edit_state(&file, "dest_device", Some(&device));
    edit_state(&file, "dest_fs", Some("uuid:00000000000000000000000000000001"));
    let e = recv(&cfg, &write(4, 5, b"fiv")).0.unwrap_err();
    assert!(matches!(e, RecvError::Refused(Refusal::Replaced { .. })), "{e}");
    edit_state(&file, "dest_fs", Some(&uuid));
    recv(&cfg, &write(4, 5, b"fiv")).0.unwrap_or_else(|e| panic!("{e}"));
}
