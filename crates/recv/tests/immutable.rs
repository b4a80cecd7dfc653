//! DEST whose root directory is immutable or append-only (`chattr +i`/`+a`, set by an earlier
//! receive of a source whose root has them): incrementals onto it, changing only deeper objects
//! or the root's flags themselves, and the abort and resume of one interrupted there. The root's
//! flags refuse the holding directory a journaled receive makes in DEST, so the receive lifts
//! them first (journaled) and sets what the stream says at the end.

mod common;

use std::path::Path;

use anyrecv::RecvError;
use anysend_stream::Record;
use anysend_testbed::streams::stream;
use anysend_testbed::{DestFs, DestKind};
use common::*;
use rustix::fs::IFlags;

const LOCKING: IFlags = IFlags::IMMUTABLE.union(IFlags::APPEND);

fn root_flags(dest: &Path) -> IFlags {
    let root = std::fs::File::open(dest).unwrap();
    rustix::fs::ioctl_getflags(&root).unwrap() & LOCKING
}

/// DEST's entries (the holding directory must be gone after each receive and abort).
fn names(dest: &Path) -> Vec<String> {
    let mut n: Vec<_> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// Lifts the root's flags so that the test bed can remove the file system's temp dirs.
struct Unlock<'a>(&'a Path);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        if let Ok(root) = std::fs::File::open(self.0) {
            if let Ok(f) = rustix::fs::ioctl_getflags(&root) {
                let _ = rustix::fs::ioctl_setflags(&root, f - LOCKING);
            }
        }
    }
}

fn write(path: &str, data: &[u8]) -> Record {
    Record::Write { path: p(path), offset: 0, data: data.into() }
}

fn root_set(flags: u32) -> Record {
    Record::SetFlags { path: Vec::new(), flags }
}

#[test]
fn incrementals_onto_an_immutable_or_append_only_root() {
    let Some(_p) = anysend_testbed::require_privileged("chattr +i on an ext4 DEST") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    let state = tempfile::tempdir().unwrap();
    let dest = fs.path().join("dest");
    let _unlock = Unlock(&dest);
    let cfg = config(&dest, state.path());
    let ok = |bytes: &[u8]| {
        recv(&cfg, bytes).0.unwrap_or_else(|e| panic!("{e}"));
    };

    // A full receive of a source whose root is immutable.
    ok(&stream(
        None,
        1,
        &[
            Record::Mkdir { path: p("sub") },
            Record::Create { path: p("sub/file") },
            write("sub/file", b"one"),
            root_set(0x10),
        ],
    ));
    assert_eq!(root_flags(&dest), IFlags::IMMUTABLE);

    // An incremental that changes only a deeper object: the root's flags are not the stream's
    // to lift, but the holding directory goes into the root.
    ok(&stream(Some(1), 2, &[write("sub/file", b"two")]));
    assert_eq!(std::fs::read(dest.join("sub/file")).unwrap(), b"two");
    assert_eq!(root_flags(&dest), IFlags::IMMUTABLE);
    assert_eq!(names(&dest), ["sub"]);

    // One that changes the root's entries and its flags, as anysend sends it: the root's flags
    // lifted first, set to the target's (append-only) last.
    ok(&stream(
        Some(2),
        3,
        &[root_set(0), Record::Create { path: p("new") }, write("new", b"new"), root_set(0x20)],
    ));
    assert_eq!(root_flags(&dest), IFlags::APPEND);
    assert_eq!(names(&dest), ["new", "sub"]);

    // Append-only, then the flag removed by the stream.
    ok(&stream(Some(3), 4, &[write("sub/file", b"four"), root_set(0)]));
    assert_eq!(root_flags(&dest), IFlags::empty());
    ok(&stream(Some(4), 5, &[root_set(0x10)]));
    assert_eq!(root_flags(&dest), IFlags::IMMUTABLE);

    // An incremental interrupted after changing DEST (its second record fails): DEST is marked
    // as interrupted; the abort puts the content back and the root's flag with it.
    let bad = stream(Some(5), 6, &[write("sub/file", b"six!"), Record::Rmdir { path: p("nope") }]);
    let e = recv(&cfg, &bad).0.unwrap_err();
    assert!(!matches!(e, RecvError::Refused(_)), "refused instead of applied: {e}");
    assert_eq!(std::fs::read(dest.join("sub/file")).unwrap(), b"six!");
    anyrecv::rollback::abort(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read(dest.join("sub/file")).unwrap(), b"four");
    assert_eq!(root_flags(&dest), IFlags::IMMUTABLE);
    assert_eq!(names(&dest), ["new", "sub"]);

    // One cut before its end record, then resumed (the same stream sent again): the root ends
    // with the flags the stream leaves it, here the ones it had.
    let whole = stream(Some(5), 7, &[write("sub/file", b"seven"), write("new", b"seven")]);
    let cut = &whole[..whole.len() - 40];
    recv(&cfg, cut).0.unwrap_err();
    ok(&whole);
    assert_eq!(std::fs::read(dest.join("new")).unwrap(), b"seven");
    assert_eq!(root_flags(&dest), IFlags::IMMUTABLE);
    assert_eq!(names(&dest), ["new", "sub"]);
}

/// A directory below the root with the flags: the stream lifts and sets them itself (anysend
/// sends `set_flags` without them before the first change), the receiver needs nothing more.
#[test]
fn an_immutable_directory_below_the_root_is_changed_by_the_stream() {
    let Some(_p) = anysend_testbed::require_privileged("chattr +i on an ext4 DEST") else {
        return;
    };
    let fs = DestFs::new(DestKind::Ext4);
    let state = tempfile::tempdir().unwrap();
    let dest = fs.path().join("dest");
    let cfg = config(&dest, state.path());
    let sub_set = |flags| Record::SetFlags { path: p("sub"), flags };
    let full = stream(
        None,
        1,
        &[Record::Mkdir { path: p("sub") }, Record::Create { path: p("sub/a") }, sub_set(0x10)],
    );
    recv(&cfg, &full).0.unwrap_or_else(|e| panic!("{e}"));
    let inc = stream(
        Some(1),
        2,
        &[
            sub_set(0),
            Record::Unlink { path: p("sub/a") },
            Record::Create { path: p("sub/b") },
            sub_set(0x20),
        ],
    );
    recv(&cfg, &inc).0.unwrap_or_else(|e| panic!("{e}"));
    let sub = dest.join("sub");
    assert_eq!(root_flags(&sub), IFlags::APPEND);
    assert!(sub.join("b").exists() && !sub.join("a").exists());
    let _unlock = Unlock(&sub);
}
