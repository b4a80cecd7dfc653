//! Origin bytes kept before a journaled incremental overwrites them, so that an abort can write
//! them back, and the origin version of a file rebuilt from them for `copy_from_origin`.
//!
//! A changed file is written in place (hard links must keep pointing at the same inode), after
//! the origin bytes of the range each record will change were kept, once per byte: in the
//! journal itself up to [`INLINE_KEEP`] per receive, beyond that in keep logs in the holding
//! directory (a copy of the data extents; holes are only noted). The file's size and metadata
//! before its first change are kept with its first range.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fd::AsFd;
use rustix::fs::{self as fs, OFlags};
use rustix::io::Errno;

use crate::error::Problem;
use crate::fsutil;
use crate::journal::{self, Loaded, Undo};

use super::holding::{self, Holding};
use super::runs::{Range, Runs};

/// Kept origin bytes written into the journal itself, per receive (a day of edits, say); those
/// beyond go to keep logs in the holding directory. The journal is synced anyway before a run
/// of records overwrites origin bytes, while syncing a keep log commits DEST's file system.
/// Bounded, since the journal's file system need not be large.
pub const INLINE_KEEP: u64 = 16 << 20;

/// Files up to this size are read whole by read-ahead anyway: no fadvise for them.
const READ_AHEAD_MATTERS: u64 = 1 << 20;

/// The origin ranges of one pre-existing file kept so far.
#[derive(Debug, Default, Clone)]
struct Kept {
    /// The file's size before the receive changed it.
    size: u64,
    /// Each kept piece by offset: its length and where its origin bytes are. Pieces never
    /// overlap: only bytes not kept yet are kept.
    pieces: Runs<Source>,
    /// Where the kept piece that reaches furthest ends: a change past it has nothing kept (a
    /// file changed front to back, the common case, is answered without a search).
    end: u64,
}

/// Where the origin bytes of a kept piece are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// They were a hole.
    Hole,
    /// In keep log number `log` of the receive ([`Keeper::logs`]), at this offset.
    Log { log: u32, at: u64 },
    /// In the journal: the `Bytes` undo step of this file at this offset (read back from the
    /// journal by copy_from_origin, which is rare: no copy is held in memory).
    Journal,
}

/// A piece of origin bytes just kept, before it becomes an undo step and a [`Source`].
enum Piece {
    Hole,
    Log {
        name: Vec<u8>,
        at: u64,
    },
    /// Read, for the journal.
    Bytes(Vec<u8>),
}

impl Kept {
    /// The parts of [a, b) not kept yet: O(log n + the pieces met), n the pieces kept.
    #[cfg(test)]
    fn gaps(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        self.gaps_into(a, b, &mut out);
        out
    }

    /// [`Kept::gaps`] into `out` (cleared first): a buffer reused for every change.
    fn gaps_into(&self, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
        out.clear();
        if a >= self.end {
            out.push((a, b));
            return;
        }
        let mut pos = a;
        // From the piece that starts at or before `a`, which may reach into [a, b).
        for r in self.pieces.from(a) {
            let (s, e) = (r.off, r.off + r.len);
            if s >= b {
                break;
            }
            if e <= pos {
                continue;
            }
            if s > pos {
                out.push((pos, s.min(b)));
            }
            pos = pos.max(e);
            if pos >= b {
                break;
            }
        }
        if pos < b {
            out.push((pos, b));
        }
    }

    /// Records the piece [off, off+len) as kept (the first bytes kept at an offset are the
    /// origin's: a second piece there is ignored).
    fn add(&mut self, off: u64, len: u64, src: Source) {
        self.end = self.end.max(off + len);
        self.pieces.insert(Range { off, len, value: src });
    }
}

/// A pre-existing file about to change (open, with its status), and the bytes [start, end)
/// of it that will change.
#[derive(Clone, Copy)]
pub struct Change<'a> {
    pub path: &'a [u8],
    pub file: &'a File,
    pub st: &'a fs::Stat,
    pub start: u64,
    pub end: u64,
}

/// An open keep log: the origin bytes of changed ranges, appended. Made when the first bytes
/// go to it.
pub struct KeepLog {
    name: Vec<u8>,
    file: Option<File>,
    end: u64,
}

impl KeepLog {
    /// The keep log `name` of the holding directory (not made yet).
    pub fn new(name: Vec<u8>) -> KeepLog {
        KeepLog { name, file: None, end: 0 }
    }

    /// Makes what was appended durable, if anything was (and lets go of its cached pages:
    /// it is read again only by an abort).
    pub fn sync(&self) -> Result<(), Problem> {
        match &self.file {
            Some(f) => {
                fsutil::sync_and_drop(f.as_fd()).map_err(Problem::io("syncing the kept ranges"))
            }
            None => Ok(()),
        }
    }

    fn file(&mut self, holding: &Holding) -> Result<&File, Problem> {
        if self.file.is_none() {
            let f = holding
                .open_file(&self.name, OFlags::RDWR | OFlags::CREATE, 0o600)
                .map_err(Problem::os("making the keep log"))?;
            // A log of the same name left by a kill is appended to, never cut: the journal may
            // point into it.
            self.end = f.metadata().map_err(Problem::io("fstat"))?.len();
            self.file = Some(f);
        }
        match &self.file {
            Some(f) => Ok(f),
            None => Err(Problem::os("making the keep log")(Errno::NOENT)),
        }
    }
}

/// The origin bytes kept by one receive, by inode.
pub struct Keeper {
    files: HashMap<u64, Kept>,
    /// Kept origin bytes the journal may still take ([`INLINE_KEEP`]).
    inline_left: u64,
    /// FICLONE makes the origin copies (btrfs; elsewhere a copy of the data extents).
    reflink: bool,
    /// Origin versions made for copy_from_origin, by inode: the copy's name.
    preserved: HashMap<u64, Vec<u8>>,
    /// The names of the keep logs pieces were kept in ([`Source::Log`] numbers them).
    logs: Vec<Vec<u8>>,
    /// Origin bytes read ahead of small changes that walk forward through one file.
    window: Window,
    /// The gaps of the change being kept (a buffer reused: keeping is done per record).
    gaps: Vec<(u64, u64)>,
}

/// The number of keep log `name` in `logs` (a receive has one or two: a linear search).
fn log_number(logs: &mut Vec<Vec<u8>>, name: &[u8]) -> u32 {
    match logs.iter().position(|n| n == name) {
        Some(i) => i as u32,
        None => {
            logs.push(name.to_vec());
            (logs.len() - 1) as u32
        }
    }
}

/// Small scattered changes that walk forward through a file (a database or a VM image, changed
/// every few hundred bytes) would each cost a read of a few bytes: one read of a window serves
/// the next ones. Bytes not kept yet are still the origin's (every change to a pre-existing
/// file is kept first), so a window's bytes are served only for gaps, and never go stale.
#[derive(Default)]
struct Window {
    /// The inode, the offset and the origin bytes read.
    bytes: Option<(u64, u64, Vec<u8>)>,
    /// Where the last small read of a file ended: a read starting shortly after it walks
    /// forward, and gets a window.
    last: Option<(u64, u64)>,
}

impl Window {
    /// Changes at most this long are small.
    const SMALL: u64 = 4096;
    /// How far a window reaches.
    const SPAN: u64 = 64 << 10;

    /// The origin bytes [x, y) of inode `ino`, of `size` bytes before the receive.
    fn read(
        &mut self,
        file: &File,
        ino: u64,
        size: u64,
        x: u64,
        y: u64,
    ) -> std::io::Result<Vec<u8>> {
        if let Some((i, at, bytes)) = &self.bytes {
            if *i == ino && *at <= x && y <= at + bytes.len() as u64 {
                self.last = Some((ino, y));
                return Ok(bytes[(x - at) as usize..(y - at) as usize].to_vec());
            }
        }
        let forward =
            matches!(self.last, Some((i, end)) if i == ino && end <= x && x - end < Self::SPAN);
        self.last = Some((ino, y));
        if y - x > Self::SMALL || !forward {
            return fsutil::read_range(file, x, y - x);
        }
        let end = (x + Self::SPAN).min(size).max(y);
        let bytes = fsutil::read_range(file, x, end - x)?;
        let out = bytes[..(y - x) as usize].to_vec();
        self.bytes = Some((ino, x, bytes));
        Ok(out)
    }
}

impl Keeper {
    pub fn new(reflink: bool) -> Keeper {
        Keeper {
            files: HashMap::new(),
            inline_left: INLINE_KEEP,
            reflink,
            preserved: HashMap::new(),
            logs: Vec::new(),
            window: Window::default(),
            gaps: Vec::new(),
        }
    }

    /// What an interrupted receive kept, from its journal.
    pub fn resumed(reflink: bool, loaded: &Loaded) -> Keeper {
        let mut k = Keeper::new(reflink);
        for u in loaded.entries.iter().flat_map(|e| &e.undo) {
            match u {
                Undo::KeepMeta { ino, size, .. } => {
                    k.files.entry(*ino).or_default().size = *size;
                }
                Undo::Range { ino, off, len, hold, at, .. } => {
                    let src = match hold.is_empty() {
                        true => Source::Hole,
                        false => Source::Log { log: log_number(&mut k.logs, hold), at: *at },
                    };
                    k.files.entry(*ino).or_default().add(*off, *len, src);
                }
                Undo::Bytes { ino, off, data, .. } => {
                    k.inline_left = k.inline_left.saturating_sub(data.len() as u64);
                    k.files.entry(*ino).or_default().add(*off, data.len() as u64, Source::Journal);
                }
                _ => {}
            }
        }
        k
    }

    /// Keeps the origin bytes of the change `c` that are not kept yet: in the journal's undo
    /// steps (pushed to `u`) while it may take them, else appended to `log`. The first time a
    /// file is kept, its size and metadata are kept too; returns whether that happened now.
    pub fn keep(
        &mut self,
        holding: &Holding,
        c: &Change<'_>,
        log: &mut KeepLog,
        u: &mut Vec<Undo>,
    ) -> Result<bool, Problem> {
        let Change { path: p, file, st, start: a, end: b } = *c;
        let ino = st.st_ino;
        let Keeper { files, inline_left, logs, window, gaps, .. } = self;
        let mut first = false;
        let k = match files.entry(ino) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (atime, mtime) = fsutil::times(st);
                u.push(Undo::KeepMeta {
                    path: p.to_vec(),
                    ino,
                    size: st.st_size as u64,
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    atime,
                    mtime,
                    cap: fsutil::fget_cap(file),
                });
                first = true;
                if st.st_size as u64 > READ_AHEAD_MATTERS {
                    // A few bytes here and there: read-ahead would read a hundred times more.
                    let _ = fs::fadvise(file, 0, None, fs::Advice::Random);
                }
                v.insert(Kept { size: st.st_size as u64, ..Kept::default() })
            }
        };
        let (size, b) = (k.size, b.min(k.size));
        if a >= b {
            return Ok(first);
        }
        k.gaps_into(a, b, gaps);
        let keeping = || Problem::io("keeping the origin bytes");
        // Each piece becomes an undo step and is noted as kept (the bytes go into the undo step
        // as read: no copy is held, `Source::Journal`).
        let mut kept = |off: u64, len: u64, piece: Piece, logs: &mut Vec<Vec<u8>>| {
            let path = p.to_vec();
            let (step, src) = match piece {
                Piece::Hole => {
                    (Undo::Range { path, ino, off, len, hold: Vec::new(), at: 0 }, Source::Hole)
                }
                Piece::Log { name, at } => {
                    let log = log_number(logs, &name);
                    (Undo::Range { path, ino, off, len, hold: name, at }, Source::Log { log, at })
                }
                Piece::Bytes(data) => (Undo::Bytes { path, ino, off, data }, Source::Journal),
            };
            u.push(step);
            k.add(off, len, src);
        };
        for &(x, y) in gaps.iter() {
            // Bytes the journal can take are read first: most show they hold no hole, and the
            // SEEK_HOLE of each range is saved.
            let read = match y - x <= *inline_left {
                true => Some(window.read(file, ino, size, x, y).map_err(keeping())?),
                false => None,
            };
            let read = match read {
                Some(bytes) if !fsutil::may_cover_hole(&bytes, x) => {
                    *inline_left -= y - x;
                    kept(x, y - x, Piece::Bytes(bytes), logs);
                    continue;
                }
                r => r,
            };
            for (off, end, data) in
                fsutil::segments(file, x, y).map_err(Problem::io("SEEK_DATA"))?
            {
                let len = end - off;
                if !data {
                    kept(off, len, Piece::Hole, logs);
                    continue;
                }
                if len <= *inline_left {
                    let bytes = match &read {
                        Some(b) => b[(off - x) as usize..(end - x) as usize].to_vec(),
                        None => fsutil::read_range(file, off, len).map_err(keeping())?,
                    };
                    *inline_left -= len;
                    kept(off, len, Piece::Bytes(bytes), logs);
                    continue;
                }
                let at = log.end;
                fsutil::copy_range(file, off, log.file(holding)?, at, len).map_err(keeping())?;
                kept(off, len, Piece::Log { name: log.name.clone(), at }, logs);
                log.end += len;
            }
        }
        Ok(first)
    }

    /// The origin version of `file` (open at its path) if its content was changed already, for
    /// copy_from_origin: its current bytes with the kept ranges put back, in a scratch copy in
    /// the holding directory (made once per file). Kept bytes that went into the journal are
    /// read back from `journal`.
    pub fn origin_copy(
        &mut self,
        holding: &Holding,
        file: &File,
        journal: &Path,
    ) -> Result<Option<File>, Problem> {
        let ino = fs::fstat(file).map_err(Problem::os("fstat"))?.st_ino;
        let open = |name: &[u8], flags| {
            holding.open_file(name, flags, 0).map_err(Problem::os("open the origin copy"))
        };
        if let Some(name) = self.preserved.get(&ino) {
            return open(name, OFlags::RDONLY).map(Some);
        }
        let Some(k) = self.files.get(&ino) else { return Ok(None) };
        let making = || Problem::io("making the origin copy");
        let name = holding::origin_name(ino);
        fsutil::copy_file(file, holding.fd(), &name, self.reflink).map_err(making())?;
        let copy = open(&name, OFlags::RDWR)?;
        let mut inline = HashMap::new();
        if k.pieces.iter().any(|r| r.value == Source::Journal) {
            let loaded = journal::load(journal)
                .map_err(Problem::io("reading the journal"))?
                .ok_or_else(|| Problem::os("reading the journal")(Errno::NOENT))?;
            for step in loaded.entries.into_iter().flat_map(|e| e.undo) {
                if let Undo::Bytes { ino: i, off, data, .. } = step {
                    if i == ino {
                        inline.insert(off, data);
                    }
                }
            }
        }
        for Range { off, len, value: src } in k.pieces.iter() {
            match src {
                Source::Hole => {
                    fsutil::punch(&copy, *off, *len).map_err(Problem::io("fallocate"))?
                }
                Source::Log { log, at } => {
                    let name = self
                        .logs
                        .get(*log as usize)
                        .ok_or_else(|| Problem::os("the journal lacks a keep log")(Errno::NOENT))?;
                    let lf = open(name, OFlags::RDONLY)?;
                    fsutil::copy_range(&lf, *at, &copy, *off, *len).map_err(making())?;
                }
                Source::Journal => match inline.get(off) {
                    Some(data) if data.len() as u64 == *len => {
                        copy.write_all_at(data, *off).map_err(making())?
                    }
                    _ => {
                        return Err(Problem::os("the journal lacks kept origin bytes")(
                            Errno::NOENT,
                        ))
                    }
                },
            }
        }
        copy.set_len(k.size).map_err(Problem::io("ftruncate"))?;
        self.preserved.insert(ino, name);
        Ok(Some(copy))
    }
}

#[cfg(test)]
mod tests {
    use super::{Kept, Source};

    /// The kept pieces against a byte map, over many random changes: gaps are exactly the
    /// bytes not kept, and pieces never overlap.
    #[test]
    fn kept_pieces_match_a_byte_map() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut k = Kept::default();
            let mut map = [false; 256];
            for _ in 0..40 {
                let (a, len) = (next(240), 1 + next(16));
                let gaps = k.gaps(a, a + len);
                assert_eq!(gaps, runs(&map, a, a + len));
                // Only what was not kept is kept, as Keeper::keep does.
                for (x, y) in gaps {
                    k.add(x, y - x, Source::Hole);
                }
                map[a as usize..(a + len) as usize].fill(true);
                let mut last_end = 0;
                for r in k.pieces.iter() {
                    assert!(r.len > 0 && last_end <= r.off, "{:?}", k.pieces);
                    last_end = r.off + r.len;
                }
            }
            assert_eq!(k.gaps(0, 256), runs(&map, 0, 256));
        }
    }

    /// Reads that walk forward through a file are served from one window, with the bytes the
    /// file held when the window was read; others read just what they ask.
    #[test]
    fn a_window_serves_changes_that_walk_forward() {
        let origin: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let f = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &origin, 0).unwrap();
        let size = origin.len() as u64;
        let mut w = super::Window::default();
        let mut read = |x: u64, y: u64| w.read(&f, 7, size, x, y).unwrap();
        assert_eq!(read(0, 1), &origin[..1]);
        assert_eq!(read(512, 520), &origin[512..520]);
        // The change at 512 is applied after its bytes were kept; 1024 is read from the window.
        std::os::unix::fs::FileExt::write_all_at(&f, b"XXXXXXXX", 512).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"changed", 1024).unwrap();
        assert_eq!(read(1024, 1031), &origin[1024..1031]);
        // Backwards, or far ahead: read as they are now.
        std::os::unix::fs::FileExt::write_all_at(&f, b"YY", 100).unwrap();
        assert_eq!(read(100, 102), b"YY");
        assert_eq!(read(190_000, 190_010), &origin[190_000..190_010]);
        // Past the origin's end: only what the file holds.
        assert_eq!(read(199_990, 200_000), &origin[199_990..]);
    }

    /// The runs of bytes of [a, b) not set in `map`.
    fn runs(map: &[bool], a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in a..b {
            if !map[i as usize] {
                match out.last_mut() {
                    Some((_, e)) if *e == i => *e = i + 1,
                    _ => out.push((i, i + 1)),
                }
            }
        }
        out
    }
}
