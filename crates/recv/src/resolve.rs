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
//!   looks at the directories of the records ahead before applying them), so the fds of the
//!   last `CACHED` directories are kept, with their inode numbers once asked for. A rename or
//!   rmdir can make a cached path point at another directory, so the applier calls
//!   [`Resolver::invalidate_beneath`] with the paths it changed after each of them; nothing
//!   else changes what a directory path names (unlink applies to non-directories only).
//!
//! Limits: a process that renames directories inside DEST *while* a receive runs can move a
//! directory under an fd already resolved; the receive then acts inside DEST still (fds are
//! beneath DEST by construction), but possibly at another place than the stream meant. Mount
//! points inside DEST are crossed (RESOLVE_BENEATH allows it; only symlinks can escape).

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

/// Directories kept open, most recently used last.
const CACHED: usize = 16;

/// An open directory and the path it was opened by.
struct Cached {
    rel: Vec<u8>,
    fd: OwnedFd,
    ino: Option<u64>,
}

/// Opens directories beneath one root fd, caching the last few.
pub struct Resolver {
    root: OwnedFd,
    root_ino: Option<u64>,
    cached: Vec<Cached>,
    /// Cleared after the first ENOSYS so that old kernels do not pay for a failing call each time.
    use_openat2: bool,
}

impl Resolver {
    /// `root` is DEST, opened as a directory (not O_PATH: the root's own metadata records use it
    /// for fchmod, fsetxattr, futimens and the flags ioctl).
    pub fn new(root: OwnedFd) -> Self {
        Resolver { root, root_ino: None, cached: Vec::with_capacity(CACHED), use_openat2: true }
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
        self.cached.retain(|c| !path::is_at_or_beneath(&c.rel, p));
    }

    /// The directory at `rel` (a checked path; empty is DEST), from the cache when it is there.
    pub fn dir(&mut self, rel: &[u8]) -> Result<BorrowedFd<'_>, ResolveError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        let c = self.lookup(rel)?;
        Ok(c.fd.as_fd())
    }

    /// The directory at `rel` and its inode number (looked at once while it is cached).
    pub fn dir_ino(&mut self, rel: &[u8]) -> Result<(BorrowedFd<'_>, u64), ResolveError> {
        let stat = |fd: BorrowedFd<'_>| {
            rustix::fs::fstat(fd)
                .map(|st| st.st_ino)
                .map_err(|errno| ResolveError::Os { at: rel.to_vec(), errno })
        };
        if rel.is_empty() {
            let ino = match self.root_ino {
                Some(ino) => ino,
                None => *self.root_ino.insert(stat(self.root.as_fd())?),
            };
            return Ok((self.root.as_fd(), ino));
        }
        let c = self.lookup(rel)?;
        let ino = match c.ino {
            Some(ino) => ino,
            None => *c.ino.insert(stat(c.fd.as_fd())?),
        };
        Ok((c.fd.as_fd(), ino))
    }

    /// The cache entry of `rel`, opened now if missing; it becomes the most recently used.
    fn lookup(&mut self, rel: &[u8]) -> Result<&mut Cached, ResolveError> {
        match self.cached.iter().rposition(|c| c.rel == rel) {
            Some(i) => {
                let c = self.cached.remove(i);
                self.cached.push(c);
            }
            None => {
                let fd = self.open(rel)?;
                if self.cached.len() >= CACHED {
                    self.cached.remove(0);
                }
                self.cached.push(Cached { rel: rel.to_vec(), fd, ino: None });
            }
        }
        match self.cached.last_mut() {
            Some(c) => Ok(c),
            None => Err(ResolveError::Escapes), // not reached: pushed just above
        }
    }

    /// The object at `rel` itself, opened with `flags` by one `openat2` that stays beneath DEST
    /// and follows no symlink (the final name included), leaving the cache alone: for looking
    /// at files ahead of the records that change them. Fails where one call cannot do it (a path
    /// of PATH_MAX or more, a kernel without `openat2`): such a file is looked at later.
    pub fn open_file(&self, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        if !self.use_openat2 || rel.len() >= CHUNK {
            return Err(Errno::NAMETOOLONG);
        }
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        openat2(self.root.as_fd(), OsStr::from_bytes(rel), flags, Mode::empty(), how)
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
