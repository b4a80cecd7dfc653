//! The journaled receive lets go of the page cache of what it writes or keeps only for a kill
//! (the journal, keep logs, files moved aside): `fsutil::sync_and_drop` and
//! `fsutil::drop_cache_of_removed`, checked with mincore. The files live in cargo's target
//! directory, not /tmp: a tmpfs keeps its pages whatever it is told.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use anyrecv::fsutil;

const LEN: usize = 256 << 10;
/// Pages in `LEN` bytes.
const PAGES: usize = LEN / 4096;

/// Pages of `f`'s first `LEN` bytes that sit in the page cache.
fn resident(f: &File) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a shared read-only mapping of a file this test owns, unmapped before return;
    // mincore only writes `vec`, which has one byte per page of the mapping.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let mut vec = vec![0u8; PAGES];
        let r = libc::mincore(p, LEN, vec.as_mut_ptr());
        libc::munmap(p, LEN);
        assert_eq!(r, 0, "mincore");
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }
}

/// A new file at `path` holding `LEN` bytes of `byte`, written but not synced.
fn filled(path: &std::path::Path, byte: u8) -> File {
    let mut f =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
    f.write_all(&vec![byte; LEN]).unwrap();
    f
}

/// The same, synced: its cached pages are clean.
fn written(path: &std::path::Path) -> File {
    let f = filled(path, 0x5a);
    f.sync_data().unwrap();
    f
}

#[test]
fn a_removed_file_leaves_the_cache_unless_another_name_links_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = File::open(dir.path()).unwrap();
    let alone = written(&dir.path().join("alone"));
    let linked = written(&dir.path().join("linked"));
    fs::hard_link(dir.path().join("linked"), dir.path().join("other")).unwrap();
    assert_eq!(resident(&alone), PAGES, "a file just written is cached");
    assert_eq!(resident(&linked), PAGES);

    for name in ["alone", "linked"] {
        let st = rustix::fs::statat(&d, name, rustix::fs::AtFlags::empty()).unwrap();
        fsutil::drop_cache_of_removed(d.as_fd(), std::ffi::OsStr::from_bytes(name.as_bytes()), &st);
    }
    assert_eq!(resident(&alone), 0, "its only name is going: its pages go");
    assert_eq!(resident(&linked), PAGES, "another name still reads it: its pages stay");
}

#[test]
fn sync_and_drop_keeps_the_bytes_and_drops_the_pages() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("journal");
    let f = filled(&path, 0xa5);
    assert_eq!(resident(&f), PAGES);
    fsutil::sync_and_drop(f.as_fd()).unwrap();
    assert_eq!(resident(&f), 0, "dirty pages are written, then dropped");
    assert_eq!(fs::read(&path).unwrap(), vec![0xa5; LEN]);
}
