//! The receive journal: where an interrupted receive stopped, and how to undo what it did.
//!
//! One file per DEST, next to its state file (`<state file>.journal`), so OUTSIDE DEST like the
//! state. It is append-only: a `Begin` entry when a receive starts changing DEST, then entries
//! written with a plain `write()` *before* the records they name are applied. An entry names the
//! records now in flight (one record, or a batch of them; every record before was applied
//! completely) and carries undo information (the inverse operation, the old value of a metadata
//! change, the name under which a removed object was kept, origin bytes). *Ahead* entries carry
//! the undo information of a whole run of records not applied yet (origin byte ranges about to
//! be overwritten, or the inverse operations of a run of creations, renames and removals), so
//! that the run costs one sync instead of one per record; they do not move the records in
//! flight. An ahead entry whose only step is a `Flags` step of DEST itself is a *root note*:
//! the flags DEST's root gets at the end, lifted meanwhile (`journaled::root`).
//!
//! Why this shape:
//! - A `write()` survives SIGKILL (it is in the page cache), but not a power cut, and neither
//!   does what DEST held in its page cache: after a cut, the journal and DEST may each have lost
//!   any part of what came after their last sync. So the journal marks *checkpoints*: DEST is
//!   synced (syncfs), then a `Durable { next }` step says every record before `next` is on disk,
//!   and the journal is synced. A resume starts from the last checkpoint and applies every
//!   later record again with "already done" accepted (`apply::How::again`; `journaled`,
//!   "Replay"), whatever the journal says of them. Entries are framed with a length and a CRC:
//!   a torn tail is detected and ignored.
//! - Checkpoints come a second after the last one (or 20 times what it took, if longer), at the
//!   start of a run of structural records of an incremental that names a path a record applied
//!   since the last checkpoint named, or one beneath or above it (so that no structural record a
//!   resume replays names another replayed record's path: each finds its own object or nothing;
//!   also at the first run of a receive or a resume), and when the end record was applied (the
//!   commit: then DEST's state records the target, and only after that is the holding directory
//!   removed).
//! - The journal is also fdatasync'ed before an operation that overwrites origin bytes is
//!   applied (once per run of such records, whose undo is written ahead in one entry), and
//!   before a structural run is applied (its undo, written ahead in one entry): after a power cut
//!   the undo information of every such operation that reached the disk is on disk too.
//! - Undo information is kept only for incremental receives: an interrupted full receive is
//!   aborted by emptying DEST.
//! - Each record's layout (the `Undo` steps, `Begin`) is written down once, as a list of typed
//!   fields; encoding and decoding are both generated from it (`undo_steps!`, `wire_struct!`).
//!
//! The format is private to anyrecv (a version byte in the magic guards it): it only ever has to
//! be read by the anyrecv that continues or aborts the receive.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anysend_stream::Id;

/// Version 03: checkpoints (`Durable`) that a resume after a power cut starts from. Version 02
/// (batches in flight, origin bytes in the journal, new files held only in full receives) has
/// no `Durable` steps and is read as well: its receive resumes as it would have.
const MAGIC: &[u8; 8] = b"ANYRJ03\n";
const MAGIC_02: &[u8; 8] = b"ANYRJ02\n";

/// Time between two checkpoints, at least. (Not also a data volume: a power cut costs about this
/// much work again, and replaying file data is harmless.)
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A checkpoint waits for DEST's write-back and a commit of its file system, which can take a
/// good part of a second: the time between two checkpoints is also at least this many times
/// what the last one took, so that they cost at most about 5% of a receive.
pub const CHECKPOINT_SHARE: u32 = 20;
/// [`Journal::checkpoint_due`] reads the clock once in this many calls.
const CLOCK_EVERY: u32 = 16;

pub use crate::fsutil::Time;

// ---- layouts ----

struct Enc(Vec<u8>);

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
}

/// The journal's byte layout of one value: written and read by the same impl, so that each
/// record below is described once (its field list) and both directions follow from it.
trait Wire: Sized {
    fn put(&self, e: &mut Enc);
    fn get(d: &mut Dec) -> D<Self>;
}

impl Wire for u8 {
    fn put(&self, e: &mut Enc) {
        e.0.push(*self);
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok(d.take(1)?[0])
    }
}

impl Wire for u32 {
    fn put(&self, e: &mut Enc) {
        e.0.extend_from_slice(&self.to_le_bytes());
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok(u32::from_le_bytes(d.take(4)?.try_into().map_err(drop)?))
    }
}

impl Wire for u64 {
    fn put(&self, e: &mut Enc) {
        e.0.extend_from_slice(&self.to_le_bytes());
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok(u64::from_le_bytes(d.take(8)?.try_into().map_err(drop)?))
    }
}

impl Wire for i64 {
    fn put(&self, e: &mut Enc) {
        (*self as u64).put(e);
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok(u64::get(d)? as i64)
    }
}

impl Wire for bool {
    fn put(&self, e: &mut Enc) {
        (*self as u8).put(e);
    }
    fn get(d: &mut Dec) -> D<Self> {
        match u8::get(d)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(()),
        }
    }
}

/// A byte string: u32 length, bytes.
impl Wire for Vec<u8> {
    fn put(&self, e: &mut Enc) {
        (self.len() as u32).put(e);
        e.0.extend_from_slice(self);
    }
    fn get(d: &mut Dec) -> D<Self> {
        let n = u32::get(d)? as usize;
        Ok(d.take(n)?.to_vec())
    }
}

impl Wire for Id {
    fn put(&self, e: &mut Enc) {
        e.0.extend_from_slice(&self.0);
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok(Id(d.take(16)?.try_into().map_err(drop)?))
    }
}

/// A time: seconds, then nanoseconds.
impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, e: &mut Enc) {
        self.0.put(e);
        self.1.put(e);
    }
    fn get(d: &mut Dec) -> D<Self> {
        Ok((A::get(d)?, B::get(d)?))
    }
}

/// Absent: a 0 byte; present: a 1 byte and the value.
impl<T: Wire> Wire for Option<T> {
    fn put(&self, e: &mut Enc) {
        match self {
            None => 0u8.put(e),
            Some(v) => {
                1u8.put(e);
                v.put(e);
            }
        }
    }
    fn get(d: &mut Dec) -> D<Self> {
        match u8::get(d)? {
            0 => Ok(None),
            1 => Ok(Some(T::get(d)?)),
            _ => Err(()),
        }
    }
}

/// A struct whose journal layout is its fields in order.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident: $t:ty,)* }) => {
        $(#[$m])*
        pub struct $name { $($(#[$fm])* pub $f: $t,)* }

        impl Wire for $name {
            fn put(&self, e: &mut Enc) {
                $(self.$f.put(e);)*
            }
            fn get(d: &mut Dec) -> D<Self> {
                // Struct expression fields are evaluated in the order written: the layout order.
                Ok($name { $($f: Wire::get(d)?,)* })
            }
        }
    };
}

/// The undo steps: each variant's tag and fields, in journal order, given once; the enum, its
/// encoding and its decoding are made from this list.
macro_rules! undo_steps {
    ($($(#[$m:meta])* $name:ident = $tag:literal { $($f:ident: $t:ty),* $(,)? },)*) => {
        /// How to undo one step.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Undo {
            $($(#[$m])* $name { $($f: $t),* },)*
        }

        impl Wire for Undo {
            fn put(&self, e: &mut Enc) {
                match self {
                    $(Undo::$name { $($f),* } => {
                        ($tag as u8).put(e);
                        $($f.put(e);)*
                    })*
                }
            }
            fn get(d: &mut Dec) -> D<Self> {
                match u8::get(d)? {
                    $($tag => Ok(Undo::$name { $($f: Wire::get(d)?),* }),)*
                    _ => Err(()),
                }
            }
        }

        /// The names of the kinds of steps (tests check they are all covered).
        #[cfg(test)]
        const UNDO_STEPS: &[&str] = &[$(stringify!($name)),*];
    };
}

undo_steps! {
    /// The object at `path` was made by the receive: remove it.
    Remove = 1 { path: Vec<u8> },
    /// `from` was renamed to `to`: rename it back.
    Rename = 2 { from: Vec<u8>, to: Vec<u8> },
    /// The object at `path` was moved into the holding directory as `hold` (a name there, or
    /// `dir/name`): move it back.
    Restore = 3 { hold: Vec<u8>, path: Vec<u8> },
    Mode = 4 { path: Vec<u8>, mode: u32 },
    Owner = 5 { path: Vec<u8>, uid: u32, gid: u32 },
    Times = 6 { path: Vec<u8>, atime: Time, mtime: Time },
    /// The old value of an extended attribute (`None`: it did not exist).
    Xattr = 7 { path: Vec<u8>, name: Vec<u8>, value: Option<Vec<u8>> },
    Flags = 8 { path: Vec<u8>, flags: u32 },
    // 9 to 11 were used by version 01 (whole-file copies, new files held until complete).
    /// The file `path` (inode `ino`) had this size and metadata before its content was first
    /// changed; its changed byte ranges are kept by the `Range` steps after this one.
    KeepMeta = 12 {
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
    Range = 13 { path: Vec<u8>, ino: u64, off: u64, len: u64, hold: Vec<u8>, at: u64 },
    /// The origin bytes at `off` of the file `path` (inode `ino`), kept in the journal itself.
    Bytes = 14 { path: Vec<u8>, ino: u64, off: u64, data: Vec<u8> },
    /// Not an undo step: the new file `path` of a full receive is written in the holding
    /// directory as `hold` and gets its name when its data is complete. A resume that finds
    /// `hold` there continues it; an abort removes it with the holding directory.
    New = 15 { path: Vec<u8>, hold: Vec<u8> },
    /// Not an undo step: a checkpoint. DEST was synced with every record before `next`
    /// applied (an ahead entry, written and synced after the syncfs of DEST). After a power
    /// cut, what DEST holds of the records from `next` on may be lost in any part: a resume
    /// applies them again from there.
    Durable = 16 { next: u64 },
}

wire_struct! {
    /// DEST's own metadata before the receive (put back by an abort).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct RootMeta {
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub atime: Time,
        pub mtime: Time,
    }
}

wire_struct! {
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
}

/// The records in flight, or the undo steps of records ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    /// The last record of a batch in flight (`index` itself for one record): every record
    /// before `index` was applied completely, any of `index..=upto` may have been applied, none
    /// after. A batch holds only records that are harmless to apply again in order after some
    /// of them were applied, and whose undo is on disk already (`journaled`, "Batches").
    pub upto: u64,
    pub undo: Vec<Undo>,
    /// Undo steps written ahead for records from `index` on, before any of them is applied (not
    /// the record in flight: see [`Loaded::next_record`]). Each such step is harmless to undo
    /// when its record was never applied: a kept range writes back the bytes the file still
    /// holds, and the inverse of a creation, rename or removal finds nothing to act on (a run
    /// written ahead never holds two records naming one path, see `journaled`).
    pub ahead: bool,
}

impl Entry {
    /// One record in flight, with its undo steps.
    pub fn new(index: u64, undo: Vec<Undo>) -> Entry {
        Entry { index, upto: index, undo, ahead: false }
    }

    /// The batch of records `index..=upto` in flight, with the undo steps not written ahead.
    pub fn batch(index: u64, upto: u64, undo: Vec<Undo>) -> Entry {
        Entry { index, upto, undo, ahead: false }
    }

    /// Undo steps written ahead for records from `index` on.
    pub fn ahead(index: u64, undo: Vec<Undo>) -> Entry {
        Entry { index, upto: index, undo, ahead: true }
    }
}

/// A journal as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub begin: Begin,
    pub entries: Vec<Entry>,
    /// The format version it was written in (2 or 3).
    pub version: u8,
    /// Bytes of a torn or damaged tail that were ignored.
    pub ignored_tail: u64,
}

impl Loaded {
    /// The record index to continue at: the first record not known to be durable in DEST (its
    /// last checkpoint's), or with a journal of version 02, the record in flight when the
    /// receive stopped.
    pub fn next_record(&self) -> u64 {
        let in_flight = self.last_record().map_or(self.begin.first_record, |e| e.index);
        match self.checkpoints() {
            true => self.durable_next().unwrap_or(self.begin.first_record).min(in_flight),
            false => in_flight,
        }
    }

    /// Whether the journal marks checkpoints (version 03): then a resume starts from the last
    /// one, since a power cut may have taken from DEST what any record after it did.
    pub fn checkpoints(&self) -> bool {
        self.version >= 3
    }

    /// The first record not known durable in DEST, as the last checkpoint says.
    fn durable_next(&self) -> Option<u64> {
        let mut steps = self.entries.iter().rev().flat_map(|e| e.undo.iter().rev());
        steps.find_map(|u| match u {
            Undo::Durable { next } => Some(*next),
            _ => None,
        })
    }

    /// The last record a resume applies again with "already done" accepted: every record
    /// after the checkpoint it starts from (what a power cut left of them is unknown, and may
    /// reach past the journal's last entry, whose write a power cut can take while DEST kept
    /// the record's effect), or with a journal of version 02, the records in flight.
    pub fn replay_upto(&self) -> u64 {
        match self.checkpoints() {
            true => u64::MAX,
            false => *self.in_flight().end(),
        }
    }

    /// The last entry of records in flight (not of undo steps written ahead).
    pub fn last_record(&self) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| !e.ahead)
    }

    /// The records that may have been applied in part, or not at all, when the receive
    /// stopped (a resume applies them again, accepting "already done").
    pub fn in_flight(&self) -> std::ops::RangeInclusive<u64> {
        let start = self.next_record();
        match self.last_record() {
            Some(e) => start..=e.upto.max(e.index).max(start),
            None => start..=start,
        }
    }
}

/// The journal file of a state file.
pub fn journal_file(state_file: &Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

// ---- entries ----

const T_BEGIN: u8 = 1;
const T_ENTRY: u8 = 2;
const T_AHEAD: u8 = 3;

fn encode_begin(b: &Begin, out: &mut Vec<u8>) {
    let mut e = Enc(std::mem::take(out));
    T_BEGIN.put(&mut e);
    b.put(&mut e);
    *out = e.0;
}

/// Appends an entry: its kind, the record index, the batch's last index, the number of undo
/// steps, the steps.
fn encode_entry(en: &Entry, out: &mut Vec<u8>) {
    let mut e = Enc(std::mem::take(out));
    (if en.ahead { T_AHEAD } else { T_ENTRY }).put(&mut e);
    en.index.put(&mut e);
    en.upto.put(&mut e);
    (en.undo.len() as u32).put(&mut e);
    for u in &en.undo {
        u.put(&mut e);
    }
    *out = e.0;
}

fn decode_entry(d: &mut Dec, ahead: bool) -> D<Entry> {
    let index = u64::get(d)?;
    let upto = u64::get(d)?;
    if upto < index {
        return Err(());
    }
    let n = u32::get(d)?;
    let mut undo = Vec::with_capacity(n.min(16) as usize);
    for _ in 0..n {
        undo.push(Undo::get(d)?);
    }
    Ok(Entry { index, upto, undo, ahead })
}

/// Appends a frame to `out`: length, CRC, then the payload `encode` appends. The payload is
/// encoded in place (kept origin bytes make entries of megabytes: no copy of it).
fn frame(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    encode(out);
    let len = (out.len() - start - 8) as u32;
    let crc = crc32(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
    if bytes.len() < MAGIC.len()
        || (&bytes[..MAGIC.len()] != MAGIC && &bytes[..MAGIC.len()] != MAGIC_02)
    {
        return Err(bad("not an anyrecv journal (or written by another version)"));
    }
    let version = if &bytes[..MAGIC.len()] == MAGIC { 3 } else { 2 };
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
    if u8::get(&mut d) != Ok(T_BEGIN) {
        return Err(bad("the journal does not start with its begin entry"));
    }
    let begin = Begin::get(&mut d).map_err(|_| bad("the journal's begin entry is malformed"))?;
    let mut entries = Vec::new();
    while let Some(p) = next() {
        let mut d = Dec(p);
        match u8::get(&mut d) {
            Ok(t @ (T_ENTRY | T_AHEAD)) => match decode_entry(&mut d, t == T_AHEAD) {
                Ok(e) => entries.push(e),
                Err(()) => break,
            },
            _ => break,
        }
    }
    let ignored_tail = rest.len() as u64;
    Ok(Some(Loaded { begin, entries, version, ignored_tail }))
}

/// An open journal being appended to.
pub struct Journal {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    dirty: bool,
    last_sync: Instant,
    /// When DEST was last made durable with the journal ([`Journal::checkpointed`]).
    last_checkpoint: Instant,
    checkpoint_cost: Duration,
    /// How often [`Journal::checkpoint_due`] was asked.
    asked: u32,
}

impl Journal {
    /// Creates a new journal holding only `begin`, durably (file and directory synced).
    pub fn create(path: &Path, begin: &Begin) -> io::Result<Journal> {
        // Written beside it and renamed into place: a kill leaves no journal or a whole one,
        // never one without its first entry.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(&tmp)?;
        let mut bytes = MAGIC.to_vec();
        frame(&mut bytes, |out| encode_begin(begin, out));
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(Journal::wrap(file, path))
    }

    /// Opens an existing journal to append to it, after cutting a torn tail; durable, since
    /// the entries of the records in flight are not written again.
    pub fn reopen(path: &Path, loaded: &Loaded) -> io::Result<Journal> {
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        file.set_len(len.saturating_sub(loaded.ignored_tail))?;
        rustix::fs::fdatasync(&file)?;
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
            dirty: false,
            last_sync: Instant::now(),
            last_checkpoint: Instant::now(),
            checkpoint_cost: Duration::ZERO,
            asked: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry with a single `write()` (kill-safe at once, durable at the next sync).
    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        self.buf.clear();
        frame(&mut self.buf, |out| encode_entry(entry, out));
        self.file.write_all(&self.buf)?;
        self.dirty = true;
        Ok(())
    }

    /// Makes what was appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            crate::fsutil::sync_and_drop(self.file.as_fd())?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Whether a checkpoint is due.
    pub fn checkpoint_due(&mut self) -> bool {
        // Asked after every record: the clock is read only every few records (half a million
        // one-byte writes would spend a tenth of their time reading it).
        self.asked = self.asked.wrapping_add(1);
        if !self.asked.is_multiple_of(CLOCK_EVERY) {
            return false;
        }
        self.last_checkpoint.elapsed()
            >= CHECKPOINT_EVERY.max(self.checkpoint_cost * CHECKPOINT_SHARE)
    }

    /// Notes a checkpoint just made (DEST synced, then a `Durable` step written and synced),
    /// and how long it took.
    pub fn checkpointed(&mut self, took: Duration) {
        self.checkpoint_cost = took;
        self.last_checkpoint = Instant::now();
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

    /// One step of every kind, with values that catch swapped or narrowed fields.
    fn one_of_each() -> Vec<Undo> {
        let p = |s: &[u8]| s.to_vec();
        vec![
            Undo::Remove { path: p(b"a/b") },
            Undo::Rename { from: p(b"a"), to: p(b"b\n\xff") },
            Undo::Restore { hold: p(b"s0/u7"), path: p(b"c") },
            Undo::Mode { path: p(b""), mode: 0o4755 },
            Undo::Owner { path: p(b"d"), uid: u32::MAX, gid: 7 },
            Undo::Times { path: p(b"e"), atime: (i64::MIN, 999_999_999), mtime: (-1, 0) },
            Undo::Xattr { path: p(b"f"), name: p(b"user.x"), value: None },
            Undo::Xattr { path: p(b"f"), name: p(b"user.y"), value: Some(p(b"")) },
            Undo::Flags { path: p(b"g"), flags: 0x10 },
            Undo::KeepMeta {
                path: p(b"h"),
                ino: u64::MAX,
                size: 1 << 40,
                mode: 0o644,
                uid: 1,
                gid: 2,
                atime: (3, 4),
                mtime: (5, 6),
                cap: Some(vec![1, 2, 3]),
            },
            Undo::Range { path: p(b"h"), ino: 9, off: 4096, len: 10, hold: p(b"k1"), at: 77 },
            Undo::Bytes { path: p(b"h"), ino: 9, off: 1 << 33, data: vec![0, 255, 7] },
            Undo::New { path: p(b"d/\nnew"), hold: p(b"n17") },
            Undo::Durable { next: 5 },
        ]
    }

    /// After a cut, a resume starts from the last checkpoint, not from the records in flight
    /// (a power cut may have taken from DEST what any later record did), and accepts "already
    /// done" from there on; a journal of version 02 (no checkpoints) resumes as it did.
    #[test]
    fn a_resume_starts_from_the_last_checkpoint() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.state.journal");
        let mut j = Journal::create(&p, &begin()).unwrap();
        j.append(&Entry::new(0, vec![])).unwrap();
        j.append(&Entry::ahead(3, vec![Undo::Durable { next: 3 }])).unwrap();
        j.append(&Entry::batch(5, 9, vec![])).unwrap();
        drop(j);
        let l = load(&p).unwrap().unwrap();
        assert_eq!((l.next_record(), l.in_flight(), l.replay_upto()), (3, 3..=9, u64::MAX));
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[..8].copy_from_slice(MAGIC_02);
        std::fs::write(&p, &bytes).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!((l.next_record(), l.in_flight(), l.replay_upto()), (5, 5..=9, 9));
    }

    #[test]
    fn every_undo_step_round_trips() {
        let all = one_of_each();
        let kinds: std::collections::HashSet<_> = all.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), UNDO_STEPS.len(), "one_of_each misses a kind of undo step");
        for u in &all {
            let mut e = Enc(Vec::new());
            u.put(&mut e);
            let mut d = Dec(&e.0);
            assert_eq!(Undo::get(&mut d).as_ref(), Ok(u));
            assert!(d.0.is_empty(), "{u:?} left bytes unread");
            // Every shorter encoding is refused, never misread.
            for cut in 0..e.0.len() {
                assert!(Undo::get(&mut Dec(&e.0[..cut])).is_err(), "{u:?} cut at {cut}");
            }
        }
        let mut e = Enc(Vec::new());
        200u8.put(&mut e);
        assert!(Undo::get(&mut Dec(&e.0)).is_err(), "an unknown tag");
        let b = begin();
        let mut e = Enc(Vec::new());
        b.put(&mut e);
        assert_eq!(Begin::get(&mut Dec(&e.0)), Ok(b));
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.state.journal");
        let mut j = Journal::create(&p, &begin()).unwrap();
        let e1 = Entry::new(0, vec![]);
        let e2 = Entry::ahead(1, one_of_each());
        let e3 = Entry::new(1, one_of_each()[..2].to_vec());
        j.append(&e1).unwrap();
        j.append(&e2).unwrap();
        j.append(&e3).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!(l.begin, begin());
        assert_eq!(l.entries, vec![e1.clone(), e2.clone(), e3.clone()]);
        assert_eq!((l.next_record(), l.in_flight()), (1, 1..=1));
        // A torn last entry is ignored, and cut when reopened.
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 3]).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!(l.entries, vec![e1.clone(), e2.clone()]);
        assert_eq!(l.next_record(), 0, "an ahead entry does not move the record in flight");
        assert!(l.ignored_tail > 0);
        let mut j = Journal::reopen(&p, &l).unwrap();
        j.append(&e3).unwrap();
        // A batch in flight.
        let e4 = Entry::batch(2, 9, one_of_each()[3..5].to_vec());
        j.append(&e4).unwrap();
        let l = load(&p).unwrap().unwrap();
        assert_eq!(l.entries, vec![e1, e2, e3, e4]);
        assert_eq!((l.next_record(), l.in_flight()), (2, 2..=9));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
