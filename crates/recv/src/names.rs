//! The names DEST held after its last receive, kept outside DEST beside its state file
//! (`<state file>.names`), so that `anyrecv --check` can tell which names were added or removed
//! in DEST since (ctimes tell which objects changed: `drift.rs`).
//!
//! Kept small to maintain: a log of frames, each a list of operations on names (add, remove,
//! rename) with a length and a CRC. A full receive, or any receive after which the log could be
//! wrong (one resumed after a kill, one forced over local changes), writes it anew from a walk
//! of DEST: one frame adding every name. An incremental receive appends one frame holding the
//! names its structural records added, removed and moved, as they were applied: O(changes).
//! When the log has grown to several times its first frame, it is written anew as well, so
//! reading it back stays O(tree) however many receives there were.
//!
//! The format is private to anyrecv (a version in the magic guards it); a damaged or missing
//! log is not an error for a receive: it is written anew.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anysend_stream::Record;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags};

use crate::path;

const MAGIC: &[u8; 8] = b"ANYRN01\n";

/// Names an incremental receive collects at most before it gives up and has the log written
/// anew from DEST at its end (the collected names would cost about as much).
const COLLECT_MAX: usize = 1 << 20;

/// The log grows to this many times its first frame before it is written anew.
const REWRITE_AFTER: u64 = 4;

const ADD: u8 = 1;
const REMOVE: u8 = 2;
const RENAME: u8 = 3;

/// The names log of a state file.
pub fn names_file(state_file: &Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".names");
    PathBuf::from(p)
}

/// The name operations of one receive, collected as its records are applied.
#[derive(Debug, Default)]
pub struct Changes {
    ops: Vec<u8>,
    count: usize,
    /// Too many to keep: the log is written anew from DEST instead.
    overflowed: bool,
}

impl Changes {
    /// Changes not collected at all: the log is to be written anew from DEST anyway (a full
    /// or a continued receive), so a full stream's names are not held twice.
    pub fn not_collected() -> Changes {
        Changes { ops: Vec::new(), count: 0, overflowed: true }
    }

    /// Notes what the applied record `rec` did to DEST's names.
    pub fn note(&mut self, rec: &Record) {
        if self.overflowed || !rec.is_structural() {
            return;
        }
        if self.count >= COLLECT_MAX {
            self.overflowed = true;
            self.ops = Vec::new();
            return;
        }
        self.count += 1;
        match rec {
            Record::Rename { from, to } => {
                self.ops.push(RENAME);
                put(&mut self.ops, from);
                put(&mut self.ops, to);
            }
            Record::Unlink { path } | Record::Rmdir { path } => {
                self.ops.push(REMOVE);
                put(&mut self.ops, path);
            }
            _ => {
                if let Some(p) = rec.path() {
                    self.ops.push(ADD);
                    put(&mut self.ops, p);
                }
            }
        }
    }
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// The names DEST held, as the log says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// Every name beneath DEST, as a path relative to it (DEST itself is not in it).
    pub paths: BTreeSet<Vec<u8>>,
}

impl Names {
    fn apply(&mut self, ops: &[u8]) -> Option<()> {
        let mut rest = ops;
        while let Some((&tag, after)) = rest.split_first() {
            rest = after;
            let a = take(&mut rest)?;
            match tag {
                ADD => {
                    self.paths.insert(a.to_vec());
                }
                REMOVE => self.remove(a),
                RENAME => {
                    let b = take(&mut rest)?;
                    self.rename(a, b);
                }
                _ => return None,
            }
        }
        Some(())
    }

    fn beneath(&self, p: &[u8]) -> Vec<Vec<u8>> {
        self.paths.range(path::beneath(p)).cloned().collect()
    }

    fn remove(&mut self, p: &[u8]) {
        self.paths.remove(p);
        for q in self.beneath(p) {
            self.paths.remove(&q);
        }
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) {
        if !self.paths.remove(from) {
            return;
        }
        self.paths.insert(to.to_vec());
        for q in self.beneath(from) {
            self.paths.remove(&q);
            let mut moved = to.to_vec();
            moved.extend_from_slice(&q[from.len()..]);
            self.paths.insert(moved);
        }
    }
}

fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let v = rest.get(4..4 + len)?;
    *rest = &rest[4 + len..];
    Some(v)
}

/// A log as read back.
#[derive(Debug)]
pub struct Loaded {
    pub names: Names,
    /// A frame was damaged or torn: the names after it are not known.
    pub damaged: bool,
}

/// Reads the log; `Ok(None)` when there is none.
pub fn load(file: &Path) -> io::Result<Option<Loaded>> {
    let mut bytes = Vec::new();
    match File::open(file) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Names::default();
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Ok(Some(Loaded { names, damaged: true }));
    };
    while !rest.is_empty() {
        let frame = (|| {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
            let payload = rest.get(8..8 + len)?;
            (crc32fast::hash(payload) == crc).then_some((payload, 8 + len))
        })();
        let Some((payload, used)) = frame else {
            return Ok(Some(Loaded { names, damaged: true }));
        };
        if names.apply(payload).is_none() {
            return Ok(Some(Loaded { names, damaged: true }));
        }
        rest = &rest[used..];
    }
    Ok(Some(Loaded { names, damaged: false }))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// After a receive completed: appends its `changes` to the log, or, when that cannot make the
/// log true (`anew`: a full, resumed or forced receive; no log, or not the `known_len` bytes the
/// state recorded after the last receive; too many changes) or the log has grown long, writes it
/// anew from a walk of DEST (`root`). Made durable; returns the log's length, for the state.
pub fn record(
    file: &Path,
    root: BorrowedFd<'_>,
    changes: &Changes,
    anew: bool,
    known_len: Option<u64>,
    skip: &[u8],
) -> io::Result<u64> {
    if !anew && !changes.overflowed && fits(file, known_len)? {
        let mut f = OpenOptions::new().append(true).open(file)?;
        f.write_all(&frame(&changes.ops))?;
        f.sync_data()?;
        return Ok(f.metadata()?.len());
    }
    // Written as DEST is walked, never held whole (a tree of millions of names would make
    // this the receive's largest allocation): the frame's length and CRC are filled in after.
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = io::BufWriter::with_capacity(1 << 16, tmp.as_file());
    out.write_all(MAGIC)?;
    out.write_all(&[0; 8])?;
    let (mut len, mut crc) = (0u64, crc32fast::Hasher::new());
    let mut op = Vec::new();
    walk(root, skip, &mut |path, _, _| {
        op.clear();
        op.push(ADD);
        put(&mut op, path);
        crc.update(&op);
        len += op.len() as u64;
        out.write_all(&op)
    })?;
    let len32 = u32::try_from(len).map_err(|_| io::Error::other("names log over 4 GiB"))?;
    out.seek(io::SeekFrom::Start(MAGIC.len() as u64))?;
    out.write_all(&len32.to_le_bytes())?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.flush()?;
    drop(out);
    tmp.as_file().sync_data()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(MAGIC.len() as u64 + 8 + len)
}

/// Whether the log exists, is the `known_len` bytes long that the state recorded (so no torn
/// tail of an interrupted write is in the way of an append), is well formed at its start and not
/// yet grown to several times its first frame (looked at without reading it all).
fn fits(file: &Path, known_len: Option<u64>) -> io::Result<bool> {
    let mut head = [0u8; MAGIC.len() + 4];
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if f.read_exact(&mut head).is_err() || &head[..MAGIC.len()] != MAGIC {
        return Ok(false);
    }
    let first = u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])) + 8;
    let len = f.metadata()?.len();
    Ok(known_len == Some(len) && len - MAGIC.len() as u64 <= REWRITE_AFTER * first.max(4096))
}

/// Calls `each` with the path (relative to `root`) of every object beneath `root`, the directory
/// it is in and its name there, parents before children, never following a symlink; depth and
/// path length are unlimited (fd-relative).
/// What `walk` calls for each name: its path from the root, its directory, its name.
pub type Visit<'a> = dyn FnMut(&[u8], BorrowedFd<'_>, &OsStr) -> io::Result<()> + 'a;

pub fn walk(root: BorrowedFd<'_>, skip: &[u8], each: &mut Visit<'_>) -> io::Result<()> {
    let mut path = Vec::new();
    walk_dir(root, &mut path, skip, each)
}

/// `walk` of `dir` at `path`; `skip` names an entry of the root left out (empty: none).
fn walk_dir(
    dir: BorrowedFd<'_>,
    path: &mut Vec<u8>,
    skip: &[u8],
    each: &mut Visit<'_>,
) -> io::Result<()> {
    let mut entries = Vec::new();
    let mut d = fs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." && !(path.is_empty() && !skip.is_empty() && n == skip) {
            entries.push((n.to_vec(), e.file_type()));
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let len = path.len();
    for (name, t) in entries {
        if len > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let n = OsStr::from_bytes(&name);
        each(path, dir, n)?;
        let is_dir = match t {
            FileType::Directory => true,
            FileType::Unknown => fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            _ => false,
        };
        if is_dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let sub = fs::openat(dir, n, flags, Mode::empty())?;
            walk_dir(sub.as_fd(), path, &[], each)?;
        }
        path.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec_add(p: &[u8]) -> Record {
        Record::Mkdir { path: p.to_vec() }
    }

    #[test]
    fn a_rename_moves_what_is_beneath_and_a_removal_takes_it() {
        let mut c = Changes::default();
        for p in [&b"a"[..], b"a/b", b"a/b/c", b"ab"] {
            c.note(&rec_add(p));
        }
        c.note(&Record::Rename { from: b"a".to_vec(), to: b"x/y".to_vec() });
        c.note(&Record::Unlink { path: b"ab".to_vec() });
        c.note(&Record::Chmod { path: b"x/y".to_vec(), mode: 0o755 });
        let mut n = Names::default();
        n.apply(&c.ops).unwrap();
        let got: Vec<&[u8]> = n.paths.iter().map(|p| &p[..]).collect();
        assert_eq!(got, [&b"x/y"[..], b"x/y/b", b"x/y/b/c"]);
        n.apply(&{
            let mut c = Changes::default();
            c.note(&Record::Rmdir { path: b"x/y".to_vec() });
            c.ops
        })
        .unwrap();
        assert!(n.paths.is_empty());
    }

    #[test]
    fn written_anew_from_dest_then_appended_then_read_back() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("d");
        std::fs::create_dir_all(dest.join("sub/deeper")).unwrap();
        std::fs::write(dest.join("sub/f\n\u{ff}"), b"").unwrap();
        std::os::unix::fs::symlink("nowhere", dest.join("l")).unwrap();
        // A holding directory not yet removed is not one of DEST's names.
        std::fs::create_dir_all(dest.join(".anyrecv-x/kept")).unwrap();
        let root =
            rustix::fs::open(&dest, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let file = t.path().join("x.state.names");
        let len =
            record(&file, root.as_fd(), &Changes::default(), true, None, b".anyrecv-x").unwrap();
        let mut c = Changes::default();
        c.note(&Record::Create { path: b"new".to_vec() });
        c.note(&Record::Rename { from: b"sub".to_vec(), to: b"moved".to_vec() });
        let appended = record(&file, root.as_fd(), &c, false, Some(len), b"").unwrap();
        assert!(appended > len);
        let l = load(&file).unwrap().unwrap();
        assert!(!l.damaged);
        let got: Vec<String> =
            l.names.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        assert_eq!(got, ["l", "moved", "moved/deeper", "moved/f\n\u{ff}", "new"]);
        // A torn tail: what came before it is still read, and it says so.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&file, &bytes).unwrap();
        let l = load(&file).unwrap().unwrap();
        assert!(l.damaged);
        assert_eq!(l.names.paths.len(), 4, "the first frame: l, sub, sub/deeper, sub/f");
        // Not what the state recorded: the next receive writes it anew instead of appending.
        assert!(!fits(&file, Some(appended)).unwrap());
        assert!(fits(&file, Some(bytes.len() as u64)).unwrap());
    }
}
