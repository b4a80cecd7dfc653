//! The walker on real directories: two trees built in a tempdir, planned, the ops applied to a
//! copy of the origin by a tiny fd-relative applier, and the result compared with the target.
//! Without a snapshotting file system, inode identity is exercised by hard-linking files between
//! the two trees (directories then differ, which stresses the pending/expansion logic).

mod common;

use anysend_diff_core::{plan, Consumer, Error, Identity, Kind, Op, Options, Recorder};
use anysend_testbed::escape::escape_bytes;
use common::ops::op_line;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use std::collections::BTreeMap;
use std::path::Path;

fn open_dir(base: BorrowedFd<'_>, name: &[u8]) -> OwnedFd {
    rustix::fs::openat(
        base,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", escape_bytes(name)))
}

fn root_fd(p: &Path) -> OwnedFd {
    rustix::fs::openat(CWD, p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// (fd of the parent directory, last component) of a root-relative path, walking components.
fn parent_of(root: &OwnedFd, path: &[u8]) -> (OwnedFd, Vec<u8>) {
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let mut cur = open_dir(root.as_fd(), b".");
    for c in &comps[..comps.len() - 1] {
        cur = open_dir(cur.as_fd(), c);
    }
    (cur, comps[comps.len() - 1].to_vec())
}

fn open_file(root: &OwnedFd, path: &[u8], flags: OFlags) -> OwnedFd {
    let (d, n) = parent_of(root, path);
    rustix::fs::openat(d, n.as_slice(), flags | OFlags::NOFOLLOW, Mode::from_raw_mode(0o644))
        .unwrap()
}

fn write_file(dir: BorrowedFd<'_>, name: &[u8], data: &[u8]) {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let mut off = 0;
    while off < data.len() {
        off += rustix::io::write(&fd, &data[off..]).unwrap();
    }
}

fn read_all(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = rustix::io::read(fd, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Applies ops to a receiver directory, refusing anything that would replace an existing name.
struct Applier<'a> {
    recv: OwnedFd,
    target: &'a OwnedFd,
    ops: Recorder,
}

fn exists(d: &OwnedFd, n: &[u8]) -> bool {
    rustix::fs::statat(d, n, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

impl Applier<'_> {
    fn apply(&mut self, op: &Op) {
        let r = &self.recv;
        match op {
            Op::MkTmpDir { path } | Op::Mkdir { path, .. } => {
                let (d, n) = parent_of(r, path);
                rustix::fs::mkdirat(&d, n.as_slice(), Mode::from_raw_mode(0o755)).unwrap();
            }
            Op::Create { path, .. } => {
                let (d, n) = parent_of(r, path);
                rustix::fs::openat(
                    &d,
                    n.as_slice(),
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap();
            }
            Op::Symlink { path, link_target, .. } => {
                let (d, n) = parent_of(r, path);
                rustix::fs::symlinkat(link_target.as_slice(), &d, n.as_slice()).unwrap();
            }
            Op::Mknod { path, kind, .. } => {
                assert_eq!(*kind, Kind::Fifo);
                let (d, n) = parent_of(r, path);
                rustix::fs::mknodat(
                    &d,
                    n.as_slice(),
                    FileType::Fifo,
                    Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap();
            }
            Op::Link { path, existing } => {
                let (ed, en) = parent_of(r, existing);
                let (d, n) = parent_of(r, path);
                rustix::fs::linkat(&ed, en.as_slice(), &d, n.as_slice(), AtFlags::empty()).unwrap();
            }
            Op::Unlink { path } => {
                let (d, n) = parent_of(r, path);
                rustix::fs::unlinkat(&d, n.as_slice(), AtFlags::empty()).unwrap();
            }
            Op::Rmdir { path } => {
                let (d, n) = parent_of(r, path);
                rustix::fs::unlinkat(&d, n.as_slice(), AtFlags::REMOVEDIR).unwrap();
            }
            Op::Rename { from, to } => {
                let (fd, fname) = parent_of(r, from);
                let (td, tname) = parent_of(r, to);
                assert!(!exists(&td, &tname), "rename onto existing {}", escape_bytes(to));
                rustix::fs::renameat(&fd, fname.as_slice(), &td, tname.as_slice()).unwrap();
            }
            Op::Update(u) => {
                if let Some(c) = &u.content {
                    let src = open_file(self.target, &u.target_path, OFlags::RDONLY);
                    let dst = open_file(r, &u.path, OFlags::WRONLY);
                    for range in &c.ranges {
                        let mut buf = vec![0u8; (range.end - range.start) as usize];
                        let n = rustix::io::pread(&src, &mut buf, range.start).unwrap();
                        assert_eq!(n, buf.len());
                        rustix::io::pwrite(&dst, &buf, range.start).unwrap();
                    }
                    rustix::fs::ftruncate(&dst, c.new_size).unwrap();
                }
            }
        }
    }
}

impl Consumer for Applier<'_> {
    fn mk_tmp_dir(&mut self, path: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.mk_tmp_dir(path)?;
        self.apply(self.ops.ops.last().unwrap().clone().as_ref_op());
        Ok(())
    }
    fn mkdir(&mut self, p: &[u8], t: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.mkdir(p, t)?;
        self.last()
    }
    fn create(&mut self, p: &[u8], t: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.create(p, t)?;
        self.last()
    }
    fn symlink(&mut self, p: &[u8], t: &[u8], l: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.symlink(p, t, l)?;
        self.last()
    }
    fn mknod(
        &mut self,
        p: &[u8],
        t: &[u8],
        k: Kind,
        r: u64,
    ) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.mknod(p, t, k, r)?;
        self.last()
    }
    fn link(&mut self, p: &[u8], e: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.link(p, e)?;
        self.last()
    }
    fn unlink(&mut self, p: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.unlink(p)?;
        self.last()
    }
    fn rmdir(&mut self, p: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.rmdir(p)?;
        self.last()
    }
    fn rename(&mut self, f: &[u8], t: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.rename(f, t)?;
        self.last()
    }
    fn update(&mut self, u: &anysend_diff_core::Update) -> Result<(), anysend_diff_core::BoxError> {
        self.ops.update(u)?;
        self.last()
    }
}

trait AsRefOp {
    fn as_ref_op(&self) -> &Op;
}
impl AsRefOp for Op {
    fn as_ref_op(&self) -> &Op {
        self
    }
}

impl Applier<'_> {
    fn last(&mut self) -> Result<(), anysend_diff_core::BoxError> {
        let op = self.ops.ops.last().unwrap().clone();
        self.apply(&op);
        Ok(())
    }
}

/// Compare two trees: names, types, symlink targets, file contents, hard-link sharing.
fn assert_same_tree(a: &OwnedFd, b: &OwnedFd) {
    let mut links: BTreeMap<u64, u64> = BTreeMap::new();
    compare_dir(open_dir(a.as_fd(), b"."), open_dir(b.as_fd(), b"."), b"", &mut links);
}

fn listing(d: &OwnedFd) -> Vec<Vec<u8>> {
    let mut buf = Vec::with_capacity(1 << 16);
    let dup = open_dir(d.as_fd(), b".");
    let mut it = rustix::fs::RawDir::new(dup, buf.spare_capacity_mut());
    let mut out = Vec::new();
    while let Some(e) = it.next() {
        let e = e.unwrap();
        let n = e.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    out.sort();
    out
}

fn compare_dir(a: OwnedFd, b: OwnedFd, path: &[u8], links: &mut BTreeMap<u64, u64>) {
    let (la, lb) = (listing(&a), listing(&b));
    assert_eq!(la, lb, "listing of {}", escape_bytes(path));
    for n in la {
        let p = [path, b"/", &n].concat();
        let sa = rustix::fs::statat(&a, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let sb = rustix::fs::statat(&b, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let (ta, tb) = (FileType::from_raw_mode(sa.st_mode), FileType::from_raw_mode(sb.st_mode));
        assert_eq!(ta, tb, "type of {}", escape_bytes(&p));
        match ta {
            FileType::Directory => {
                compare_dir(open_dir(a.as_fd(), &n), open_dir(b.as_fd(), &n), &p, links)
            }
            FileType::Symlink => assert_eq!(
                rustix::fs::readlinkat(&a, n.as_slice(), Vec::new()).unwrap(),
                rustix::fs::readlinkat(&b, n.as_slice(), Vec::new()).unwrap()
            ),
            FileType::RegularFile => {
                let fa =
                    rustix::fs::openat(&a, n.as_slice(), OFlags::RDONLY, Mode::empty()).unwrap();
                let fb =
                    rustix::fs::openat(&b, n.as_slice(), OFlags::RDONLY, Mode::empty()).unwrap();
                assert!(read_all(&fa) == read_all(&fb), "content of {}", escape_bytes(&p));
                // Same sharing: a receiver inode maps to exactly one target inode.
                let e = *links.entry(sa.st_ino).or_insert(sb.st_ino);
                assert_eq!(e, sb.st_ino, "hard links of {}", escape_bytes(&p));
            }
            _ => {}
        }
    }
}

const DEEP: usize = 40;

fn deep_name(i: usize) -> Vec<u8> {
    let mut n = format!("{i:03}-").into_bytes();
    n.resize(200, b'd');
    n
}

/// Origin: the common part of both scenarios. Returns nothing; built fd-relatively.
fn build_origin(root: &OwnedFd, big: &[u8]) {
    let r = root.as_fd();
    rustix::fs::mkdirat(r, "d1", Mode::from_raw_mode(0o755)).unwrap();
    rustix::fs::mkdirat(r, "d2", Mode::from_raw_mode(0o755)).unwrap();
    let d1 = open_dir(r, b"d1");
    write_file(d1.as_fd(), b"a", b"file a");
    write_file(d1.as_fd(), b"b", b"file b");
    write_file(r, b"c", b"file c");
    write_file(r, b"h1", b"hardlinked");
    rustix::fs::linkat(r, "h1", r, "h2", AtFlags::empty()).unwrap();
    write_file(r, b"tc", b"becomes a dir");
    write_file(r, b"\xff\xfe-bin", b"not utf-8");
    write_file(r, b"big", big);
    rustix::fs::symlinkat("somewhere", r, "sl").unwrap();
    rustix::fs::mknodat(r, "fifo", FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
    let mut cur = open_dir(r, b".");
    for i in 0..DEEP {
        rustix::fs::mkdirat(&cur, deep_name(i).as_slice(), Mode::from_raw_mode(0o755)).unwrap();
        cur = open_dir(cur.as_fd(), &deep_name(i));
    }
    write_file(cur.as_fd(), b"bottom", b"deep down");
}

fn big_content() -> Vec<u8> {
    (0..3 * 1024 * 1024 + 100).map(|i: u32| (i % 251) as u8).collect()
}

/// Mutate a tree built by `build_origin` into the target.
fn mutate(root: &OwnedFd) {
    let r = root.as_fd();
    // swap d1/a and c (across directories), rename d1 -> d3
    rustix::fs::renameat(r, "d1/a", r, "tmp").unwrap();
    rustix::fs::renameat(r, "c", r, "d1/a").unwrap();
    rustix::fs::renameat(r, "tmp", r, "c").unwrap();
    rustix::fs::renameat(r, "d1", r, "d3").unwrap();
    // hard links: h2 removed, h3 added
    rustix::fs::unlinkat(r, "h2", AtFlags::empty()).unwrap();
    rustix::fs::linkat(r, "h1", r, "h3", AtFlags::empty()).unwrap();
    // type change
    rustix::fs::unlinkat(r, "tc", AtFlags::empty()).unwrap();
    rustix::fs::mkdirat(r, "tc", Mode::from_raw_mode(0o755)).unwrap();
    write_file(open_dir(r, b"tc").as_fd(), b"inner", b"inside");
    // newline name, symlink retargeted
    write_file(r, b"new\nline", b"newline name");
    rustix::fs::unlinkat(r, "sl", AtFlags::empty()).unwrap();
    rustix::fs::symlinkat("elsewhere", r, "sl").unwrap();
    // one 4 KiB block changed in the middle of big
    // (written to a new inode and renamed over: in the hard-link scenario the old inode is
    // shared with the origin)
    let mut big = big_content();
    big[2 * 1024 * 1024 + 4096..2 * 1024 * 1024 + 8192].fill(0xAA);
    write_file(r, b"big.new", &big);
    rustix::fs::renameat(r, "big.new", r, "big").unwrap();
    // deep: modify bottom, add a file
    let mut cur = open_dir(r, b".");
    for i in 0..DEEP {
        cur = open_dir(cur.as_fd(), &deep_name(i));
    }
    write_file(cur.as_fd(), b"bottom.new", b"deep down, changed");
    rustix::fs::renameat(&cur, "bottom.new", &cur, "bottom").unwrap();
    write_file(cur.as_fd(), b"new-at-bottom", b"new");
}

fn run(identity: Identity, hardlink_files: bool) -> Vec<Op> {
    let tmp = tempfile::tempdir().unwrap();
    let (o, t, recv) = (tmp.path().join("o"), tmp.path().join("t"), tmp.path().join("r"));
    let big = big_content();
    for p in [&o, &t, &recv] {
        std::fs::create_dir(p).unwrap();
    }
    build_origin(&root_fd(&o), &big);
    build_origin(&root_fd(&recv), &big);
    if hardlink_files {
        // Share every regular file of the origin with the target tree (same inodes), so inode
        // identity sees renames; directories are new objects in the target.
        copy_tree_linked(&root_fd(&o), &root_fd(&t));
    } else {
        build_origin(&root_fd(&t), &big);
    }
    mutate(&root_fd(&t));
    assert!(o.as_os_str().len() + DEEP * 201 > 4096, "deeper than PATH_MAX");
    let target = root_fd(&t);
    let mut ap = Applier { recv: root_fd(&recv), target: &target, ops: Recorder::default() };
    let opts = Options { identity, ..Options::default() };
    plan(&o, &t, &opts, &mut ap).expect("plan");
    assert_same_tree(&ap.recv, &target);
    ap.ops.ops
}

/// Recreate `src`'s directories in `dst` and hard-link its files (fd-relative, any depth).
fn copy_tree_linked(src: &OwnedFd, dst: &OwnedFd) {
    for n in listing(src) {
        let st = rustix::fs::statat(src, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, n.as_slice(), Mode::from_raw_mode(0o755)).unwrap();
                copy_tree_linked(&open_dir(src.as_fd(), &n), &open_dir(dst.as_fd(), &n));
            }
            FileType::Symlink => {
                let l = rustix::fs::readlinkat(src, n.as_slice(), Vec::new()).unwrap();
                rustix::fs::symlinkat(l.as_c_str(), dst, n.as_slice()).unwrap();
            }
            FileType::Fifo => rustix::fs::mknodat(
                dst,
                n.as_slice(),
                FileType::Fifo,
                Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap(),
            _ => {
                rustix::fs::linkat(src, n.as_slice(), dst, n.as_slice(), AtFlags::empty()).unwrap()
            }
        }
    }
}

fn has(ops: &[Op], f: impl Fn(&Op) -> bool) -> bool {
    ops.iter().any(f)
}

/// Ops as readable lines, paths cut short (for failure messages and short expectations).
fn show(ops: &[Op]) -> String {
    ops.iter().map(|o| op_line(o, 40)).collect::<Vec<_>>().join("\n")
}

#[test]
fn path_mode_turns_origin_into_target() {
    let ops = run(Identity::Path, false);
    // The big file is sent as exactly the one changed 4 KiB block.
    let big = ops.iter().find_map(|o| match o {
        Op::Update(u) if u.path == b"big" => u.content.clone(),
        _ => None,
    });
    let big = big.expect("big updated");
    assert_eq!(big.ranges, vec![2 * 1024 * 1024 + 4096..2 * 1024 * 1024 + 8192]);
    // Hard links: h2 went away and h3 appeared for the same object: one rename.
    assert!(
        has(&ops, |o| matches!(o, Op::Rename { from, to } if from == b"h2" && to == b"h3")),
        "{}",
        show(&ops)
    );
    // Path identity: the swapped files are rewritten in place, not renamed.
    assert!(!has(&ops, |o| matches!(o, Op::Rename { from, .. } if from == b"c")));
}

#[test]
fn inode_mode_with_shared_files_detects_renames() {
    let ops = run(Identity::Inode, true);
    // c moved into the (new) directory d3 as a, and d1/a became c: renames, not re-creations.
    assert!(has(&ops, |o| matches!(o, Op::Rename { to, .. } if to == b"d3/a")), "{}", show(&ops));
    assert!(!has(&ops, |o| matches!(o, Op::Create { path, .. } if path == b"c")));
}

#[test]
fn identical_trees_give_no_ops() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o");
    std::fs::create_dir(&o).unwrap();
    build_origin(&root_fd(&o), b"x");
    let mut rec = Recorder::default();
    let s = plan(&o, &o, &Options::default(), &mut rec).unwrap();
    assert!(rec.ops.is_empty(), "{:?}", rec.ops);
    assert_eq!(
        s.inventory_objects, 2,
        "root + the hard-linked file (multiply-linked files are tracked)"
    );
}

#[test]
fn stop_cancels() {
    struct Stopper;
    impl Consumer for Stopper {
        fn mk_tmp_dir(&mut self, _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn mkdir(&mut self, _: &[u8], _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn create(&mut self, _: &[u8], _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn symlink(
            &mut self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
        ) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn mknod(
            &mut self,
            _: &[u8],
            _: &[u8],
            _: Kind,
            _: u64,
        ) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn link(&mut self, _: &[u8], _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn unlink(&mut self, _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn rmdir(&mut self, _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn rename(&mut self, _: &[u8], _: &[u8]) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn update(
            &mut self,
            _: &anysend_diff_core::Update,
        ) -> Result<(), anysend_diff_core::BoxError> {
            Ok(())
        }
        fn stop(&self) -> bool {
            true
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = plan(tmp.path(), tmp.path(), &Options::default(), &mut Stopper);
    assert!(matches!(r, Err(Error::Stopped)), "{r:?}");
}

#[test]
fn inventory_follows_changes_not_tree_size() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, t) = (tmp.path().join("o"), tmp.path().join("t"));
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let touch = |p: &Path| {
        std::fs::File::open(p).unwrap().set_modified(when).unwrap();
    };
    for p in [&o, &t] {
        std::fs::create_dir(p).unwrap();
        for d in 0..20 {
            let dir = p.join(format!("d{d}"));
            std::fs::create_dir(&dir).unwrap();
            for f in 0..50 {
                std::fs::write(dir.join(format!("f{f}")), b"same").unwrap();
                touch(&dir.join(format!("f{f}")));
            }
            touch(&dir);
        }
        touch(p);
    }
    std::fs::write(t.join("d7/new"), b"new").unwrap();
    std::fs::write(t.join("d3/f3"), b"diff").unwrap();
    touch(&t.join("d3/f3")); // same size and mtime: skipped by the quick check (path mode)
    let mut rec = Recorder::default();
    let opts = Options { identity: Identity::Path, ..Options::default() };
    let s = plan(&o, &t, &opts, &mut rec).unwrap();
    // 1000 files, 21 directories; recorded: root, d7 (its listing changed) and d7/new.
    assert_eq!(s.inventory_objects, 3, "{}", show(&rec.ops));
    assert_eq!(show(&rec.ops), "create d7/new\nupdate d7/new\nupdate d7");
}
