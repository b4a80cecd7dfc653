//! Shared helpers of the receiver's integration tests: running the library, and building
//! expected trees directly with system calls (never through anyrecv) to compare with. The
//! root package's receiver tests that also run the `anyrecv` binary (tests/recv_*.rs) use them
//! too, by path.
//! Streams are made with `anysend_testbed::streams`, as every crate's tests make them.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyrecv::{Config, Policy, RecvError, Summary, Warning};
use anysend_stream::{NodeType, Record};
use anysend_testbed::fsops::set_mtime;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, IFlags, Mode, OFlags, Timespec, Timestamps};

/// A record path from a literal (test names here are ASCII; odd bytes are spelled as `b"..."`).
pub fn p(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn config(dest: &Path, state: &Path) -> Config {
    Config {
        dest: dest.to_path_buf(),
        dry_run: false,
        force: false,
        policy: Policy::default(),
        state_dir: state.to_path_buf(),
        atomic: false,
        no_journal: false,
    }
}

/// Runs the library; returns the result and the warnings given.
pub fn recv(cfg: &Config, bytes: &[u8]) -> (Result<Summary, RecvError>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let r = anyrecv::receive(cfg, bytes, &mut |w: &Warning| warnings.push(w.clone()));
    (r, warnings)
}

/// A directory beside DEST whose every byte and time must survive a hostile stream.
pub struct Canary {
    pub dir: PathBuf,
    before: Vec<(PathBuf, Vec<u8>, u32, i64, i64)>,
}

impl Canary {
    pub fn new(beside: &Path) -> Canary {
        let dir = beside.join("canary");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("file"), b"canary content\n").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/inner"), b"inner\n").unwrap();
        for p in ["file", "sub/inner", "sub", ""] {
            set_mtime(dir.join(p), 1_000_000_000, 5).unwrap();
        }
        let before = Self::snapshot(&dir);
        Canary { dir, before }
    }

    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32, i64, i64)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            let mut entry = (p.clone(), content, m.mode(), m.mtime(), m.mtime_nsec());
            if m.is_dir() {
                let mut names: Vec<_> =
                    fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
                names.sort();
                entry.1 = names
                    .iter()
                    .map(|n| n.as_os_str().as_bytes().to_vec())
                    .collect::<Vec<_>>()
                    .join(&b'\n');
                stack.extend(names);
            }
            out.push(entry);
        }
        out.sort();
        out
    }

    pub fn assert_unchanged(&self) {
        assert_eq!(Self::snapshot(&self.dir), self.before, "the canary beside DEST changed");
    }
}

// ---------------------------------------------------------------------------------------------
// A tree described once, built directly (the oracle) and as a stream (the thing under test).

#[derive(Clone, Debug)]
pub enum Kind {
    Dir,
    /// size, data chunks (offset, bytes), holes punched after (offset, len)
    File {
        size: u64,
        chunks: Vec<(u64, Vec<u8>)>,
        holes: Vec<(u64, u64)>,
    },
    Symlink(Vec<u8>),
    Node(NodeType, u32, u32),
    /// another name of this earlier path
    HardLink(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub mtime: Option<(i64, u32)>,
    pub flags: u32,
    /// Records that make this entry in the stream instead of the plain ones (rename, copy...).
    pub make: Option<Vec<Record>>,
}

impl Entry {
    pub fn new(path: &[u8], kind: Kind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode: None,
            owner: None,
            xattrs: vec![],
            mtime: None,
            flags: 0,
            make: None,
        }
    }
    pub fn mode(mut self, m: u32) -> Self {
        self.mode = Some(m);
        self
    }
    pub fn owner(mut self, u: u32, g: u32) -> Self {
        self.owner = Some((u, g));
        self
    }
    pub fn xattr(mut self, n: &[u8], v: &[u8]) -> Self {
        self.xattrs.push((n.to_vec(), v.to_vec()));
        self
    }
    pub fn mtime(mut self, s: i64, ns: u32) -> Self {
        self.mtime = Some((s, ns));
        self
    }
    pub fn flags(mut self, f: u32) -> Self {
        self.flags = f;
        self
    }
    pub fn make(mut self, r: Vec<Record>) -> Self {
        self.make = Some(r);
        self
    }
}

pub fn file(data: &[u8]) -> Kind {
    Kind::File { size: data.len() as u64, chunks: vec![(0, data.to_vec())], holes: vec![] }
}

/// A tree: the root's mode and mtime, then entries, parents before children.
pub struct Spec {
    pub root_mode: u32,
    pub root_mtime: (i64, u32),
    pub entries: Vec<Entry>,
    /// Records put first in the stream (things made and removed again: unlink, rmdir...).
    pub prelude: Vec<Record>,
}

/// The stream's records for a spec, in the order the format asks for (content, then chown,
/// chmod, xattrs, times, flags last).
pub fn records(spec: &Spec) -> Vec<Record> {
    let mut r = spec.prelude.clone();
    for e in &spec.entries {
        if let Some(m) = &e.make {
            r.extend(m.iter().cloned());
            continue;
        }
        let path = e.path.clone();
        match &e.kind {
            Kind::Dir => r.push(Record::Mkdir { path }),
            Kind::File { size, chunks, holes } => {
                r.push(Record::Create { path: path.clone() });
                for (off, data) in chunks {
                    r.push(Record::Write {
                        path: path.clone(),
                        offset: *off,
                        data: data.as_slice().into(),
                    });
                }
                r.push(Record::Truncate { path: path.clone(), size: *size });
                for (off, len) in holes {
                    r.push(Record::Hole { path: path.clone(), offset: *off, len: *len });
                }
            }
            Kind::Symlink(t) => r.push(Record::Symlink { path, target: t.clone() }),
            Kind::Node(n, ma, mi) => {
                r.push(Record::Mknod { path, node: *n, major: *ma, minor: *mi })
            }
            Kind::HardLink(existing) => r.push(Record::Link { path, existing: existing.clone() }),
        }
    }
    for e in &spec.entries {
        let path = e.path.clone();
        if let Some((uid, gid)) = e.owner {
            r.push(Record::Chown { path: path.clone(), uid, gid });
        }
        if let Some(mode) = e.mode {
            r.push(Record::Chmod { path: path.clone(), mode });
        }
        for (n, v) in &e.xattrs {
            r.push(Record::SetXattr { path: path.clone(), name: n.clone(), value: v.clone() });
        }
    }
    r.push(Record::Chmod { path: vec![], mode: spec.root_mode });
    for e in &spec.entries {
        if let Some((s, ns)) = e.mtime {
            r.push(Record::Utimes {
                path: e.path.clone(),
                atime_sec: s,
                atime_nsec: ns,
                mtime_sec: s,
                mtime_nsec: ns,
            });
        }
    }
    let (s, ns) = spec.root_mtime;
    r.push(Record::Utimes {
        path: vec![],
        atime_sec: s,
        atime_nsec: ns,
        mtime_sec: s,
        mtime_nsec: ns,
    });
    for e in &spec.entries {
        if e.flags != 0 {
            r.push(Record::SetFlags { path: e.path.clone(), flags: e.flags });
        }
    }
    r
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// The parent directory of `rel` under `root`, walked one name at a time (works past PATH_MAX).
fn parent_fd(root: &Path, rel: &[u8]) -> (OwnedFd, Vec<u8>) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, flags, Mode::empty()).unwrap();
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    for p in &parts[..parts.len() - 1] {
        fd = rustix::fs::openat(&fd, os(p), flags, Mode::empty()).unwrap();
    }
    (fd, parts[parts.len() - 1].to_vec())
}

/// Builds the spec's tree under `root` (an existing directory) with direct system calls.
pub fn build(root: &Path, spec: &Spec) {
    let dflags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for e in &spec.entries {
        let (dir, name) = parent_fd(root, &e.path);
        let name = os(&name);
        match &e.kind {
            Kind::Dir => rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)).unwrap(),
            Kind::File { size, chunks, holes } => {
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
                    Mode::from_raw_mode(0o600),
                )
                .unwrap();
                let f = fs::File::from(fd);
                for (off, data) in chunks {
                    f.write_all_at(data, *off).unwrap();
                }
                f.set_len(*size).unwrap();
                for (off, len) in holes {
                    rustix::fs::fallocate(
                        &f,
                        rustix::fs::FallocateFlags::PUNCH_HOLE
                            | rustix::fs::FallocateFlags::KEEP_SIZE,
                        *off,
                        *len,
                    )
                    .unwrap();
                }
            }
            Kind::Symlink(t) => rustix::fs::symlinkat(os(t), &dir, name).unwrap(),
            Kind::Node(n, ma, mi) => {
                let (ft, dev) = match n {
                    NodeType::Fifo => (FileType::Fifo, 0),
                    NodeType::Socket => (FileType::Socket, 0),
                    NodeType::CharDevice => {
                        (FileType::CharacterDevice, rustix::fs::makedev(*ma, *mi))
                    }
                    NodeType::BlockDevice => (FileType::BlockDevice, rustix::fs::makedev(*ma, *mi)),
                };
                rustix::fs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), dev).unwrap();
            }
            Kind::HardLink(existing) => {
                let (edir, ename) = parent_fd(root, existing);
                rustix::fs::linkat(&edir, os(&ename), &dir, name, AtFlags::empty()).unwrap();
            }
        }
    }
    for e in &spec.entries {
        let (dir, name) = parent_fd(root, &e.path);
        let name = os(&name);
        if let Some((u, g)) = e.owner {
            rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
        if let Some(m) = e.mode {
            rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(m), AtFlags::empty()).unwrap();
        }
        for (n, v) in &e.xattrs {
            let p = format!("/proc/self/fd/{}/", dir.as_raw_fd());
            let mut pb = p.into_bytes();
            pb.extend_from_slice(name.as_bytes());
            rustix::fs::lsetxattr(os(&pb), os(n), v, rustix::fs::XattrFlags::empty()).unwrap();
        }
    }
    rustix::fs::chmodat(
        rustix::fs::CWD,
        root,
        Mode::from_raw_mode(spec.root_mode),
        AtFlags::empty(),
    )
    .unwrap();
    for e in &spec.entries {
        if let Some((s, ns)) = e.mtime {
            let (dir, name) = parent_fd(root, &e.path);
            let t = Timespec { tv_sec: s, tv_nsec: ns.into() };
            let ts = Timestamps { last_access: t, last_modification: t };
            rustix::fs::utimensat(&dir, os(&name), &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }
    set_mtime(root, spec.root_mtime.0, spec.root_mtime.1).unwrap();
    for e in &spec.entries {
        if e.flags != 0 {
            let (dir, name) = parent_fd(root, &e.path);
            let st = rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let how = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                dflags
            } else {
                OFlags::RDONLY | OFlags::NOFOLLOW
            };
            let fd = rustix::fs::openat(&dir, os(&name), how, Mode::empty()).unwrap();
            let cur = rustix::fs::ioctl_getflags(&fd).unwrap();
            rustix::fs::ioctl_setflags(fd.as_fd(), cur | IFlags::from_bits_retain(e.flags))
                .unwrap();
        }
    }
}

/// A fresh scratch directory that other users can enter (tests run the binary as nobody too).
pub fn scratch() -> tempfile::TempDir {
    let t = tempfile::Builder::new().prefix("anyrecv-test-").tempdir().unwrap();
    rustix::fs::chmod(t.path(), Mode::from_raw_mode(0o755)).unwrap();
    t
}
