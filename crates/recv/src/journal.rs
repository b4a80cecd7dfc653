//! The receive journal: where an interrupted receive stopped, and how to undo what it did.
//!
//! One file per DEST, next to its state file (`<state file>.journal`), so OUTSIDE DEST like the
//! state. It is append-only: a `Begin` entry when a receive starts changing DEST, then one entry
//! per record, written with a plain `write()` *before* the record is applied. An entry names the
//! record index now in flight (every record before it was applied completely) and carries the
//! undo information of that record (the inverse operation, the old value of a metadata change,
//! the name under which a removed or overwritten object was kept).
//!
//! Why this shape:
//! - A `write()` survives SIGKILL (it is in the page cache), so after a kill the last entry tells
//!   exactly which record was in flight; replaying that one record is made harmless by the
//!   applier (`apply.rs`, "replay"). Entries are framed with a length and a CRC: a torn tail left
//!   by a power loss is detected and ignored.
//! - The journal is fdatasync'ed at checkpoints (every 64 MiB of file data or 1 s, together with
//!   a syncfs of DEST) and before each operation that moves an existing object (rename, and
//!   unlink/rmdir, which move the object into the holding directory), so that after a power loss
//!   the undo information of every such operation that reached the disk is on disk too.
//! - Undo information is kept only for incremental receives: an interrupted full receive is
//!   aborted by emptying DEST.
//!
//! The format is private to anyrecv (a version byte in the magic guards it): it only ever has to
//! be read by the anyrecv that continues or aborts the receive.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anysend_stream::Id;

const MAGIC: &[u8; 8] = b"ANYRJ01\n";

/// Data bytes between two checkpoints.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Time between two checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A time as (seconds, nanoseconds).
pub type Time = (i64, u32);

/// DEST's own metadata before the receive (put back by an abort).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// The first entry: which receive this journal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    pub stream: Id,
    pub origin: Option<Id>,
    pub target: Id,
    /// The record index the receive started at.
    pub first_record: u64,
    /// DEST did not exist and the receive created it.
    pub dest_created: bool,
    pub root: RootMeta,
    /// Name of the holding directory inside DEST.
    pub holding: Vec<u8>,
}

/// How to undo one step, or (the last two) what a resume must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// The object at `path` was made by the receive: remove it.
    Remove {
        path: Vec<u8>,
    },
    /// `from` was renamed to `to`: rename it back.
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// The object at `path` was moved into the holding directory as `hold`: move it back.
    Restore {
        hold: Vec<u8>,
        path: Vec<u8>,
    },
    Mode {
        path: Vec<u8>,
        mode: u32,
    },
    Owner {
        path: Vec<u8>,
        uid: u32,
        gid: u32,
    },
    Times {
        path: Vec<u8>,
        atime: Time,
        mtime: Time,
    },
    /// The old value of an extended attribute (`None`: it did not exist).
    Xattr {
        path: Vec<u8>,
        name: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    Flags {
        path: Vec<u8>,
        flags: u32,
    },
    /// The content of the file at `path` (inode `ino`) before its first change was copied to
    /// `hold`, with the metadata a content change can alter.
    Content {
        path: Vec<u8>,
        hold: Vec<u8>,
        ino: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        atime: Time,
        mtime: Time,
        cap: Option<Vec<u8>>,
    },
    /// A new file for `path` is being written in the holding directory as `hold` (no undo: the
    /// holding directory goes away). Lets a resume find it again.
    Created {
        path: Vec<u8>,
        hold: Vec<u8>,
        ino: u64,
    },
    /// The new file `hold` is being moved to `path` (its undo is the `Remove` beside it).
    Materialize {
        hold: Vec<u8>,
        path: Vec<u8>,
    },
    /// The file `path` (inode `ino`) had this size and metadata before its content was first
    /// changed; its changed byte ranges are kept by the `Range` steps after this one.
    KeepMeta {
        path: Vec<u8>,
        ino: u64,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        atime: Time,
        mtime: Time,
        cap: Option<Vec<u8>>,
    },
    /// The origin bytes [off, off+len) of the file `path` (inode `ino`): at offset `at` of the
    /// keep log `hold` in the holding directory, or a hole when `hold` is empty.
    Range {
        path: Vec<u8>,
        ino: u64,
        off: u64,
        len: u64,
        hold: Vec<u8>,
        at: u64,
    },
}

/// One record in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub undo: Vec<Undo>,
    /// Origin ranges kept ahead for records from `index` on, before any of them is applied (not
    /// the record in flight: see [`Loaded::next_record`]). Undoing a kept range whose record was
    /// never applied writes back the bytes the file still holds.
    pub keep: bool,
}

impl Entry {
    pub fn new(index: u64, undo: Vec<Undo>) -> Entry {
        Entry { index, undo, keep: false }
    }
}

/// A journal as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub begin: Begin,
    pub entries: Vec<Entry>,
    /// Bytes of a torn or damaged tail that were ignored.
    pub ignored_tail: u64,
}

impl Loaded {
    /// The record index to continue at: the record in flight when the receive stopped.
    pub fn next_record(&self) -> u64 {
        self.last_record().map_or(self.begin.first_record, |e| e.index)
    }

    /// The last entry of a record (not of ranges kept ahead).
    pub fn last_record(&self) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| !e.keep)
    }
}

/// The journal file of a state file.
pub fn journal_file(state_file: &Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

// ---- encoding ----

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn time(&mut self, t: Time) {
        self.u64(t.0 as u64);
        self.u32(t.1);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn id(&mut self, i: &Id) {
        self.0.extend_from_slice(&i.0);
    }
    fn opt(&mut self, b: &Option<Vec<u8>>) {
        match b {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.bytes(v);
            }
        }
    }
}

struct Dec<'a>(&'a [u8]);

type D<T> = Result<T, ()>;

impl Dec<'_> {
    fn take(&mut self, n: usize) -> D<&[u8]> {
        if self.0.len() < n {
            return Err(());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> D<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> D<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(drop)?))
    }
    fn u64(&mut self) -> D<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(drop)?))
    }
    fn time(&mut self) -> D<Time> {
        Ok((self.u64()? as i64, self.u32()?))
    }
    fn bytes(&mut self) -> D<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn id(&mut self) -> D<Id> {
        Ok(Id(self.take(16)?.try_into().map_err(drop)?))
    }
    fn opt(&mut self) -> D<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(()),
        }
    }
}

const T_BEGIN: u8 = 1;
const T_ENTRY: u8 = 2;
const T_KEEP: u8 = 3;

fn encode_begin(b: &Begin) -> Vec<u8> {
    let mut e = Enc(Vec::with_capacity(128));
    e.u8(T_BEGIN);
    e.id(&b.stream);
    match &b.origin {
        None => e.u8(0),
        Some(o) => {
            e.u8(1);
            e.id(o);
        }
    }
    e.id(&b.target);
    e.u64(b.first_record);
    e.u8(b.dest_created as u8);
    e.u32(b.root.mode);
    e.u32(b.root.uid);
    e.u32(b.root.gid);
    e.time(b.root.atime);
    e.time(b.root.mtime);
    e.bytes(&b.holding);
    e.0
}

fn decode_begin(d: &mut Dec) -> D<Begin> {
    let stream = d.id()?;
    let origin = match d.u8()? {
        0 => None,
        1 => Some(d.id()?),
        _ => return Err(()),
    };
    Ok(Begin {
        stream,
        origin,
        target: d.id()?,
        first_record: d.u64()?,
        dest_created: d.u8()? != 0,
        root: RootMeta {
            mode: d.u32()?,
            uid: d.u32()?,
            gid: d.u32()?,
            atime: d.time()?,
            mtime: d.time()?,
        },
        holding: d.bytes()?,
    })
}

fn encode_entry(en: &Entry, out: &mut Vec<u8>) {
    let mut e = Enc(std::mem::take(out));
    e.u8(if en.keep { T_KEEP } else { T_ENTRY });
    e.u64(en.index);
    e.u32(en.undo.len() as u32);
    for u in &en.undo {
        match u {
            Undo::Remove { path } => {
                e.u8(1);
                e.bytes(path);
            }
            Undo::Rename { from, to } => {
                e.u8(2);
                e.bytes(from);
                e.bytes(to);
            }
            Undo::Restore { hold, path } => {
                e.u8(3);
                e.bytes(hold);
                e.bytes(path);
            }
            Undo::Mode { path, mode } => {
                e.u8(4);
                e.bytes(path);
                e.u32(*mode);
            }
            Undo::Owner { path, uid, gid } => {
                e.u8(5);
                e.bytes(path);
                e.u32(*uid);
                e.u32(*gid);
            }
            Undo::Times { path, atime, mtime } => {
                e.u8(6);
                e.bytes(path);
                e.time(*atime);
                e.time(*mtime);
            }
            Undo::Xattr { path, name, value } => {
                e.u8(7);
                e.bytes(path);
                e.bytes(name);
                e.opt(value);
            }
            Undo::Flags { path, flags } => {
                e.u8(8);
                e.bytes(path);
                e.u32(*flags);
            }
            Undo::Content { path, hold, ino, mode, uid, gid, atime, mtime, cap } => {
                e.u8(9);
                e.bytes(path);
                e.bytes(hold);
                e.u64(*ino);
                e.u32(*mode);
                e.u32(*uid);
                e.u32(*gid);
                e.time(*atime);
                e.time(*mtime);
                e.opt(cap);
            }
            Undo::Created { path, hold, ino } => {
                e.u8(10);
                e.bytes(path);
                e.bytes(hold);
                e.u64(*ino);
            }
            Undo::Materialize { hold, path } => {
                e.u8(11);
                e.bytes(hold);
                e.bytes(path);
            }
            Undo::KeepMeta { path, ino, size, mode, uid, gid, atime, mtime, cap } => {
                e.u8(12);
                e.bytes(path);
                e.u64(*ino);
                e.u64(*size);
                e.u32(*mode);
                e.u32(*uid);
                e.u32(*gid);
                e.time(*atime);
                e.time(*mtime);
                e.opt(cap);
            }
            Undo::Range { path, ino, off, len, hold, at } => {
                e.u8(13);
                e.bytes(path);
                e.u64(*ino);
                e.u64(*off);
                e.u64(*len);
                e.bytes(hold);
                e.u64(*at);
            }
        }
    }
    *out = e.0;
}

fn decode_entry(d: &mut Dec) -> D<Entry> {
    let index = d.u64()?;
    let n = d.u32()?;
    let mut undo = Vec::with_capacity(n.min(16) as usize);
    for _ in 0..n {
        undo.push(match d.u8()? {
            1 => Undo::Remove { path: d.bytes()? },
            2 => Undo::Rename { from: d.bytes()?, to: d.bytes()? },
            3 => Undo::Restore { hold: d.bytes()?, path: d.bytes()? },
            4 => Undo::Mode { path: d.bytes()?, mode: d.u32()? },
            5 => Undo::Owner { path: d.bytes()?, uid: d.u32()?, gid: d.u32()? },
            6 => Undo::Times { path: d.bytes()?, atime: d.time()?, mtime: d.time()? },
            7 => Undo::Xattr { path: d.bytes()?, name: d.bytes()?, value: d.opt()? },
            8 => Undo::Flags { path: d.bytes()?, flags: d.u32()? },
            9 => Undo::Content {
                path: d.bytes()?,
                hold: d.bytes()?,
                ino: d.u64()?,
                mode: d.u32()?,
                uid: d.u32()?,
                gid: d.u32()?,
                atime: d.time()?,
                mtime: d.time()?,
                cap: d.opt()?,
            },
            10 => Undo::Created { path: d.bytes()?, hold: d.bytes()?, ino: d.u64()? },
            11 => Undo::Materialize { hold: d.bytes()?, path: d.bytes()? },
            12 => Undo::KeepMeta {
                path: d.bytes()?,
                ino: d.u64()?,
                size: d.u64()?,
                mode: d.u32()?,
                uid: d.u32()?,
                gid: d.u32()?,
                atime: d.time()?,
                mtime: d.time()?,
                cap: d.opt()?,
            },
            13 => Undo::Range {
                path: d.bytes()?,
                ino: d.u64()?,
                off: d.u64()?,
                len: d.u64()?,
                hold: d.bytes()?,
                at: d.u64()?,
            },
            _ => return Err(()),
        });
    }
    Ok(Entry { index, undo, keep: false })
}

/// Frames a payload: length, CRC, payload.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// CRC-32 (IEEE), the same as the stream's.
pub fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Reads a journal; `Ok(None)` when there is none. A damaged first entry is an error; a damaged
/// later entry ends the journal there (a torn tail).
pub fn load(path: &Path) -> io::Result<Option<Loaded>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not an anyrecv journal (or written by another version)"));
    }
    let mut rest = &bytes[MAGIC.len()..];
    let mut next = || -> Option<&[u8]> {
        if rest.len() < 8 {
            return None;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().ok()?);
        let payload = rest.get(8..8 + len)?;
        if crc32(payload) != crc {
            return None;
        }
        rest = &rest[8 + len..];
        Some(payload)
    };
    let first = next().ok_or_else(|| bad("the journal's first entry is damaged"))?;
    let mut d = Dec(first);
    if d.u8() != Ok(T_BEGIN) {
        return Err(bad("the journal does not start with its begin entry"));
    }
    let begin = decode_begin(&mut d).map_err(|_| bad("the journal's begin entry is malformed"))?;
    let mut entries = Vec::new();
    while let Some(p) = next() {
        let mut d = Dec(p);
        match d.u8() {
            Ok(t @ (T_ENTRY | T_KEEP)) => match decode_entry(&mut d) {
                Ok(mut e) => {
                    e.keep = t == T_KEEP;
                    entries.push(e)
                }
                Err(()) => break,
            },
            _ => break,
        }
    }
    let ignored_tail = rest.len() as u64;
    Ok(Some(Loaded { begin, entries, ignored_tail }))
}

/// An open journal being appended to.
pub struct Journal {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    dirty: bool,
    last_sync: Instant,
    data_since_sync: u64,
}

impl Journal {
    /// Creates a new journal holding only `begin`, durably (file and directory synced).
    pub fn create(path: &Path, begin: &Begin) -> io::Result<Journal> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(path)?;
        let mut bytes = MAGIC.to_vec();
        frame(&encode_begin(begin), &mut bytes);
        file.write_all(&bytes)?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(Journal::wrap(file, path))
    }

    /// Opens an existing journal to append to it, after cutting a torn tail.
    pub fn reopen(path: &Path, loaded: &Loaded) -> io::Result<Journal> {
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        file.set_len(len - loaded.ignored_tail)?;
        let mut j = Journal::wrap(file, path);
        use std::io::Seek;
        j.file.seek(io::SeekFrom::End(0))?;
        Ok(j)
    }

    fn wrap(file: File, path: &Path) -> Journal {
        Journal {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(256),
            scratch: Vec::with_capacity(256),
            dirty: false,
            last_sync: Instant::now(),
            data_since_sync: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry with a single `write()` (kill-safe at once, durable at the next sync).
    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        self.scratch.clear();
        encode_entry(entry, &mut self.scratch);
        self.buf.clear();
        frame(&self.scratch, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.dirty = true;
        Ok(())
    }

    /// Makes what was appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            rustix::fs::fdatasync(&self.file)?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        self.data_since_sync = 0;
        Ok(())
    }

    /// Counts file data applied; true when a checkpoint is due.
    pub fn note_data(&mut self, bytes: u64) -> bool {
        self.data_since_sync += bytes;
        self.checkpoint_due()
    }

    pub fn checkpoint_due(&self) -> bool {
        self.data_since_sync >= CHECKPOINT_BYTES || self.last_sync.elapsed() >= CHECKPOINT_EVERY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> Begin {
        Begin {
            stream: Id([1; 16]),
            origin: Some(Id([2; 16])),
            target: Id([3; 16]),
            first_record: 0,
            dest_created: true,
            root: RootMeta { mode: 0o755, uid: 1, gid: 2, atime: (3, 4), mtime: (-5, 6) },
            holding: b".anyrecv-01010101".to_vec(),
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.state.journal");
        let mut j = Journal::create(&p, &begin()).unwrap();
        let e1 = Entry::new(0, vec![]);
        let e2 = Entry {
            keep: false,
            index: 1,
            undo: vec![
                Undo::Rename { from: b"a".to_vec(), to: b"b\n\xff".to_vec() },
                Undo::Xattr { path: b"".to_vec(), name: b"user.x".to_vec(), value: None },
                Undo::Content {
                    path: b"f".to_vec(),
                    hold: b"c1".to_vec(),
                    ino: 7,
                    mode: 0o4755,
                    uid: 0,
                    gid: 0,
                    atime: (1, 2),
                    mtime: (3, 4),
                    cap: Some(vec![1, 2, 3]),
                },
                Undo::Range {
                    path: b"f".to_vec(),
                    ino: 7,
                    off: 4096,
                    len: 10,
                    hold: b"k1".to_vec(),
                    at: 0,
                },
            ],
        };
        j.append(&e1).unwrap();
        j.append(&e2).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!(l.begin, begin());
        assert_eq!(l.entries, vec![e1.clone(), e2.clone()]);
        assert_eq!(l.next_record(), 1);
        // A torn last entry is ignored, and cut when reopened.
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 3]).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!(l.entries, vec![e1.clone()]);
        assert!(l.ignored_tail > 0);
        let mut j = Journal::reopen(&p, &l).unwrap();
        j.append(&e2).unwrap();
        assert_eq!(load(&p).unwrap().unwrap().entries, vec![e1, e2]);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
