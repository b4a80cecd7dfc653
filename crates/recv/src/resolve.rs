//! Safe path resolution beneath DEST: from a checked relative path to a directory fd, never
//! following a symbolic link and never leaving DEST.
//!
//! Shape and reasons:
//! - Every operation acts on a *parent directory fd* plus a single final name with `*at` calls
//!   that do not follow that name; this module only produces the parent fd. Since `..`, `.`,
//!   empty components and absolute paths are refused earlier (`path.rs`), a parent path can only
//!   leave DEST through a symlink, so symlinks are refused on the way.
//! - The parent is opened with `openat2(O_PATH|O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//!   | RESOLVE_NO_MAGICLINKS)`: the kernel enforces both rules atomically, with no window between
//!   a check and a use. Paths may be longer than PATH_MAX (the format allows 1 MiB), which one
//!   `openat2` refuses, so the path is walked in chunks of whole components, each shorter than
//!   PATH_MAX, each chunk resolved beneath the fd of the previous one.
//! - Kernels without `openat2` (before 5.6) get a component-by-component walk with
//!   `openat(O_PATH|O_NOFOLLOW)` and an `fstat` per step, which gives the same guarantees more
//!   slowly. The same walk names the offending component when `openat2` refuses a path, so that
//!   an error says *which* directory is a symlink.
//! - A stream touches the same few directories many times in a row (and a journaled receive
//!   looks at the directories of a run of records ahead before applying them, then the same
//!   ones again), so the fds of the directories used last are kept (256 by default, up to
//!   thousands where the limit on open files allows), by path, with their inode numbers once
//!   asked for. A rename or rmdir can make a cached path point at another directory, so the
//!   applier calls [`Resolver::invalidate_beneath`] with the paths it changed after each of
//!   them; nothing else changes what a directory path names (unlink applies to non-directories
//!   only). Paths are kept in order, so the ones beneath a path are one range of the map.
//!
//! Limits: a process that renames directories inside DEST *while* a receive runs can move a
//! directory under an fd already resolved; the receive then acts inside DEST still (fds are
//! beneath DEST by construction), but possibly at another place than the stream meant. Mount
//! points inside DEST are crossed (RESOLVE_BENEATH allows it; only symlinks can escape).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, openat2, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::path;

/// `openat2` refuses paths of PATH_MAX (4096) bytes or more, NUL included.
const CHUNK: usize = 4000;

/// Why a parent directory could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The component at this path (relative to DEST) is a symbolic link.
    Symlink { at: Vec<u8> },
    /// The kernel says the path leaves DEST.
    Escapes,
    /// The component at this path is missing, not a directory, or cannot be opened.
    Os { at: Vec<u8>, errno: Errno },
}

/// Directories kept open by default (an fd each; a run of records looked at ahead can name a
/// few hundred, and the default limit on open files is 1024).
const CACHED: usize = 256;

/// An open directory, by the path it was opened by.
struct Cached {
    fd: OwnedFd,
    ino: Option<u64>,
    /// When it was last used (`Resolver::clock`), for evicting the least recently used.
    used: u64,
}

/// Opens directories beneath one root fd, caching the last few hundred or thousand used. By
/// path in order, so that the paths beneath one are a range.
pub struct Resolver {
    root: OwnedFd,
    root_ino: Option<u64>,
    cached: BTreeMap<Vec<u8>, Cached>,
    capacity: usize,
    clock: u64,
    /// Cleared after the first ENOSYS so that old kernels do not pay for a failing call each time.
    use_openat2: bool,
}

impl Resolver {
    /// `root` is DEST, opened as a directory (not O_PATH: the root's own metadata records use it
    /// for fchmod, fsetxattr, futimens and the flags ioctl).
    pub fn new(root: OwnedFd) -> Self {
        Resolver::with_capacity(root, CACHED)
    }

    /// A resolver that keeps up to `capacity` directories open.
    pub fn with_capacity(root: OwnedFd, capacity: usize) -> Self {
        Resolver {
            root,
            root_ino: None,
            cached: BTreeMap::new(),
            capacity: capacity.max(2),
            clock: 0,
            use_openat2: true,
        }
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Forgets the cached directories; call after anything that can change what a path names.
    pub fn invalidate(&mut self) {
        self.cached.clear();
    }

    /// Forgets the cached directories at `p` and beneath it: after a rename from or to `p`, or
    /// a removal of `p`.
    pub fn invalidate_beneath(&mut self, p: &[u8]) {
        if p.is_empty() {
            return self.cached.clear();
        }
        self.cached.remove(p);
        let beneath: Vec<Vec<u8>> =
            self.cached.range(path::beneath(p)).map(|(rel, _)| rel.clone()).collect();
        for rel in beneath {
            self.cached.remove(&rel);
        }
    }

    /// The directory at `rel` (a checked path; empty is DEST), from the cache when it is there.
    pub fn dir(&mut self, rel: &[u8]) -> Result<BorrowedFd<'_>, ResolveError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        let c = self.lookup(rel)?;
        Ok(c.fd.as_fd())
    }

    /// The directory at `rel` and its inode number (looked at once while it is cached), with
    /// its status when it was looked at now.
    #[allow(clippy::type_complexity)]
    pub fn dir_ino(
        &mut self,
        rel: &[u8],
    ) -> Result<(BorrowedFd<'_>, u64, Option<rustix::fs::Stat>), ResolveError> {
        let stat = |fd: BorrowedFd<'_>| {
            rustix::fs::fstat(fd).map_err(|errno| ResolveError::Os { at: rel.to_vec(), errno })
        };
        let (fd, ino) = if rel.is_empty() {
            (self.root.as_fd(), &mut self.root_ino)
        } else {
            let c = self.lookup(rel)?;
            (c.fd.as_fd(), &mut c.ino)
        };
        match ino {
            Some(ino) => Ok((fd, *ino, None)),
            None => {
                let st = stat(fd)?;
                *ino = Some(st.st_ino);
                Ok((fd, st.st_ino, Some(st)))
            }
        }
    }

    /// The cache entry of `rel`, opened now if missing; it becomes the most recently used.
    fn lookup(&mut self, rel: &[u8]) -> Result<&mut Cached, ResolveError> {
        self.clock += 1;
        let used = self.clock;
        if !self.cached.contains_key(rel) {
            let fd = self.open(rel)?;
            if self.cached.len() >= self.capacity {
                // The least recently used half goes, so that a scan is paid once per many misses.
                let mut ages: Vec<u64> = self.cached.values().map(|c| c.used).collect();
                let mid = ages.len() / 2;
                let (_, &mut median, _) = ages.select_nth_unstable(mid);
                self.cached.retain(|_, c| c.used >= median);
            }
            self.cached.insert(rel.to_vec(), Cached { fd, ino: None, used });
        }
        match self.cached.get_mut(rel) {
            Some(c) => {
                c.used = used;
                Ok(c)
            }
            None => Err(ResolveError::Escapes), // not reached: inserted just above
        }
    }

    /// The directory at `rel` as an fd of its own, for operations that need two directories.
    pub fn dir_owned(&mut self, rel: &[u8]) -> Result<OwnedFd, ResolveError> {
        if rel.is_empty() {
            return rustix::io::fcntl_dupfd_cloexec(&self.root, 0)
                .map_err(|errno| ResolveError::Os { at: Vec::new(), errno });
        }
        self.open(rel)
    }

    fn open(&mut self, rel: &[u8]) -> Result<OwnedFd, ResolveError> {
        if !self.use_openat2 {
            return walk(self.root.as_fd(), rel);
        }
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur: Option<OwnedFd> = None;
        for chunk in path::chunks(rel, CHUNK) {
            let base = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            let mut tries = 0;
            let fd = loop {
                match openat2(base, OsStr::from_bytes(chunk), flags, Mode::empty(), how) {
                    // EAGAIN: a concurrent rename elsewhere on the system; the kernel asks to retry.
                    Err(Errno::AGAIN) if tries < 8 => tries += 1,
                    Err(Errno::NOSYS) => {
                        self.use_openat2 = false;
                        return walk(self.root.as_fd(), rel);
                    }
                    Err(Errno::XDEV) => return Err(ResolveError::Escapes),
                    // Find the component to blame; a clean walk (a race) still fails.
                    Err(e) => {
                        return Err(walk(self.root.as_fd(), rel)
                            .err()
                            .unwrap_or(ResolveError::Os { at: rel.to_vec(), errno: e }))
                    }
                    Ok(fd) => break fd,
                }
            };
            cur = Some(fd);
        }
        cur.ok_or(ResolveError::Os { at: rel.to_vec(), errno: Errno::NOENT })
    }
}

/// Component by component: `openat(O_PATH|O_NOFOLLOW)` opens a symlink as itself instead of
/// following it, and `fstat` then tells what each component is.
fn walk(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, ResolveError> {
    let mut cur: Option<OwnedFd> = None;
    let mut end = 0;
    for (i, name) in rel.split(|&b| b == b'/').enumerate() {
        end += name.len() + usize::from(i > 0);
        let at = || rel[..end].to_vec();
        let base = cur.as_ref().map_or(root, |f| f.as_fd());
        let fd = openat(
            base,
            OsStr::from_bytes(name),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ResolveError::Os { at: at(), errno })?;
        let st = rustix::fs::fstat(&fd).map_err(|errno| ResolveError::Os { at: at(), errno })?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => cur = Some(fd),
            FileType::Symlink => return Err(ResolveError::Symlink { at: at() }),
            _ => return Err(ResolveError::Os { at: at(), errno: Errno::NOTDIR }),
        }
    }
    cur.ok_or(ResolveError::Os { at: rel.to_vec(), errno: Errno::NOENT })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_of(dir: &std::path::Path) -> Resolver {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        Resolver::new(fd)
    }

    #[test]
    fn symlink_on_the_way_is_named() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink("/tmp", t.path().join("a/l")).unwrap();
        symlink("b", t.path().join("a/rel")).unwrap();
        let mut r = root_of(t.path());
        assert!(r.dir(b"a/b").is_ok());
        assert_eq!(r.dir(b"a/l").err(), Some(ResolveError::Symlink { at: b"a/l".to_vec() }));
        assert_eq!(r.dir(b"a/l/x").err(), Some(ResolveError::Symlink { at: b"a/l".to_vec() }));
        assert_eq!(r.dir(b"a/rel").err(), Some(ResolveError::Symlink { at: b"a/rel".to_vec() }));
        assert_eq!(
            walk(r.root(), b"a/l/x").err(),
            Some(ResolveError::Symlink { at: b"a/l".to_vec() })
        );
    }

    #[test]
    fn missing_and_non_directories_are_named() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        std::fs::write(t.path().join("a/f"), b"x").unwrap();
        let mut r = root_of(t.path());
        assert_eq!(
            r.dir(b"a/nope/x").err(),
            Some(ResolveError::Os { at: b"a/nope".to_vec(), errno: Errno::NOENT })
        );
        assert_eq!(
            r.dir(b"a/f/x").err(),
            Some(ResolveError::Os { at: b"a/f".to_vec(), errno: Errno::NOTDIR })
        );
    }

    #[test]
    fn deeper_than_path_max_resolves_by_chunks_and_by_walk() {
        let t = tempfile::tempdir().unwrap();
        let names: Vec<Vec<u8>> = (0..30).map(|i| vec![b'a' + (i % 26) as u8; 200]).collect();
        let mut fd =
            rustix::fs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for n in &names {
            rustix::fs::mkdirat(&fd, OsStr::from_bytes(n), Mode::from_raw_mode(0o755)).unwrap();
            fd = openat(
                &fd,
                OsStr::from_bytes(n),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
        }
        let rel = names.join(&b'/');
        assert!(rel.len() > 4096);
        let mut r = root_of(t.path());
        let want = rustix::fs::fstat(&fd).unwrap().st_ino;
        assert_eq!(rustix::fs::fstat(r.dir(&rel).unwrap()).unwrap().st_ino, want);
        assert_eq!(rustix::fs::fstat(walk(r.root(), &rel).unwrap()).unwrap().st_ino, want);
    }

    #[test]
    fn invalidate_beneath_drops_that_subtree_only() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/b", "ab", "c"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let mut r = root_of(t.path());
        let ino = |r: &mut Resolver, p: &[u8]| r.dir_ino(p).unwrap().1;
        let (ab, a_b, c) = (ino(&mut r, b"ab"), ino(&mut r, b"a/b"), ino(&mut r, b"c"));
        // Swap a/b and c behind the resolver's back, then tell it about a only.
        std::fs::rename(t.path().join("a/b"), t.path().join("x")).unwrap();
        std::fs::rename(t.path().join("c"), t.path().join("a/b")).unwrap();
        std::fs::rename(t.path().join("x"), t.path().join("c")).unwrap();
        r.invalidate_beneath(b"a");
        assert_eq!(ino(&mut r, b"a/b"), c, "a/b was dropped and opened again");
        assert_eq!(ino(&mut r, b"ab"), ab, "a sibling that shares the prefix stays cached");
        // c was not invalidated: still the directory it was opened as.
        assert_eq!(ino(&mut r, b"c"), c);
        assert_ne!(a_b, c);
        let fresh = rustix::fs::fstat(walk(r.root(), b"c").unwrap()).unwrap().st_ino;
        assert_eq!(fresh, a_b);
    }

    #[test]
    fn invalidate_beneath_is_the_range_of_paths_under_it() {
        let t = tempfile::tempdir().unwrap();
        // "a-x" and "a.b" sort before "a/", "a0" and "ab" after it.
        let dirs = ["a/b/c", "a-x", "a.b", "a0", "ab"];
        for d in dirs {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let mut r = root_of(t.path());
        for d in ["a", "a/b", "a/b/c", "a-x", "a.b", "a0", "ab"] {
            r.dir(d.as_bytes()).unwrap();
        }
        r.invalidate_beneath(b"a");
        let kept: Vec<&[u8]> = r.cached.keys().map(|k| k.as_slice()).collect();
        assert_eq!(kept, [&b"a-x"[..], b"a.b", b"a0", b"ab"]);
        r.invalidate_beneath(b"");
        assert!(r.cached.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::create_dir(t.path().join(format!("d{i}"))).unwrap();
        }
        let fd =
            rustix::fs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut r = Resolver::with_capacity(fd, 4);
        for round in 0..3 {
            for i in 0..10 {
                let p = format!("d{i}");
                let want = std::fs::metadata(t.path().join(&p)).unwrap();
                let got = rustix::fs::fstat(r.dir(p.as_bytes()).unwrap()).unwrap();
                assert_eq!(got.st_ino, std::os::unix::fs::MetadataExt::ino(&want), "{round} {p}");
                assert!(r.cached.len() <= 4);
                // d0 is used between every other lookup: it is never the one evicted.
                r.dir(b"d0").unwrap();
                assert!(r.cached.contains_key(&b"d0"[..]));
            }
        }
    }

    #[test]
    fn cache_is_dropped_on_invalidate() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a")).unwrap();
        let mut r = root_of(t.path());
        let ino1 = rustix::fs::fstat(r.dir(b"a").unwrap()).unwrap().st_ino;
        std::fs::rename(t.path().join("a"), t.path().join("old")).unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        r.invalidate();
        let ino2 = rustix::fs::fstat(r.dir(b"a").unwrap()).unwrap().st_ino;
        assert_ne!(ino1, ino2);
    }
}
