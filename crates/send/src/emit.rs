//! The plan, as records: a diff-core [`Consumer`] that turns each planned operation into the
//! records of STREAM_FORMAT.md section 5 and hands them to the [`Sink`].
//!
//! Namespace operations map one to one (`mk_tmp_dir` is a plain `mkdir`). An [`Update`] becomes,
//! in this order, per object:
//!
//! 1. content (regular files): `write` records of at most 1 MiB covering only the data extents
//!    inside the changed ranges (SEEK_DATA/SEEK_HOLE), `hole` where the target has a hole in a
//!    changed range over origin data, and `truncate` when the size differs (for a new file: when
//!    it ends in a hole);
//! 2. `chown` (also for symlinks; first, because a chown clears setuid/setgid and
//!    `security.capability`);
//! 3. `remove_xattr`, then `set_xattr`, names in byte order;
//! 4. `chmod` (not for symlinks; after the xattrs, which a non-root receiver could not set on a
//!    file already made read-only);
//! 5. `utimes` (atime and mtime; after the content, since writing moves mtime);
//! 6. `set_flags` last, because immutable and append-only forbid the changes before it.
//!
//! New objects get all of it; changed ones only what differs, plus what the receiver's own
//! earlier records undo: content writes and a chown drop setuid/setgid (chmod again when the
//! target has them) and `security.capability` (set again when the target has it), and writes
//! move mtime (utimes again).
//!
//! First come the `expect` records ([`Consumer::expect`]): every origin object the stream
//! changes, removes, renames or links, as the walk saw it, so that a receiver whose copy was
//! changed since refuses the stream before anything changes. Origin objects carrying
//! immutable/append-only that the plan will change then get a `set_flags` without those two
//! bits before every other record ([`Consumer::unlock`]); their update sets the target's flags
//! again.
//!
//! Errors are kept here with their type ([`Emitter::failure`]) and diff-core only sees that the
//! consumer failed, so the binary can tell "the target changed" from "the output is gone".

use crate::sink::Sink;
use crate::source::{
    atime, check_unchanged, next_data, read_exact_at, shown, Source, SourceChanged,
};
use anyhow::{anyhow, Context, Result};
use anysend_diff_core::{BoxError, Consumer, Handle, Kind, Meta, Side, Update, FLAGS_LOCKING};
use anysend_stream::format::PREFERRED_DATA_CHUNK;
use anysend_stream::{Data, NodeType, ObjectType, Record};
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

/// The xattr a chown or a content write makes the kernel drop.
const CAPABILITY: &[u8] = b"security.capability";

/// Whether file data is read (a real send, or a compressed dry run whose size depends on it) or
/// only its length matters (an uncompressed dry run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    Read,
    LengthOnly,
}

/// Turns the plan into records.
pub struct Emitter<'s, W: Write> {
    sink: &'s mut Sink<W>,
    source: Source,
    data: DataMode,
    buf: Vec<u8>,
    /// The first error, with its type; diff-core gets only a marker.
    pub failure: Option<anyhow::Error>,
}

#[derive(Debug)]
struct Failed;
impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sender failed")
    }
}
impl std::error::Error for Failed {}

impl<'s, W: Write> Emitter<'s, W> {
    pub fn new(sink: &'s mut Sink<W>, source: Source, data: DataMode) -> Self {
        Emitter { sink, source, data, buf: Vec::with_capacity(PREFERRED_DATA_CHUNK), failure: None }
    }

    fn guard(&mut self, r: Result<()>) -> Result<(), BoxError> {
        r.map_err(|e| {
            self.failure.get_or_insert(e);
            Box::new(Failed) as BoxError
        })
    }

    fn put(&mut self, rec: Record) -> Result<()> {
        self.sink.put(&rec)
    }

    fn update_inner(&mut self, u: &Update) -> Result<()> {
        let walked = u
            .target_meta
            .as_ref()
            .ok_or_else(|| anyhow!("update of {} without target metadata", shown(&u.path)))?;
        // The planner already opened and checked the object to read its details.
        let th = match &u.opened.target {
            Some(h) => h.clone(),
            None => Arc::new(self.source.object(
                Side::Target,
                &u.target_path,
                u.kind,
                Some(walked.ino),
            )?),
        };
        let new = u.diff.new;
        let path = &u.path;

        // 1. Content.
        let mut content_sent = false;
        if let (Some(delta), Handle::Fd(tfd)) = (&u.content, &*th) {
            check_unchanged(&th, &u.target_path, walked)?;
            let origin = match (&u.origin_path, new) {
                (Some(op), false) => {
                    let h = match &u.opened.origin {
                        Some(h) => h.clone(),
                        None => Arc::new(self.source.object(Side::Origin, op, Kind::File, None)?),
                    };
                    Some((h, op.clone()))
                }
                _ => None,
            };
            let origin = origin.as_ref().and_then(|(h, op)| match &**h {
                Handle::Fd(fd) => Some((fd, op.as_slice())),
                Handle::At { .. } => None,
            });
            let osize = match origin {
                Some((fd, op)) => {
                    rustix::fs::fstat(fd).with_context(|| format!("origin {}", shown(op)))?.st_size
                        as u64
                }
                None => 0,
            };
            let mut data_end = 0u64;
            for r in &delta.ranges {
                let r = r.start..r.end.min(delta.new_size);
                let mut pos = r.start;
                while let Some(seg) = next_data(tfd, pos, r.end)
                    .with_context(|| format!("target {}", shown(&u.target_path)))?
                {
                    if seg.start > pos {
                        self.holes(path, pos..seg.start, origin, osize)?;
                    }
                    self.writes(path, &u.target_path, tfd, seg.clone())?;
                    content_sent = true;
                    data_end = data_end.max(seg.end);
                    pos = seg.end;
                }
                if pos < r.end {
                    content_sent |= self.holes(path, pos..r.end, origin, osize)?;
                }
            }
            let size = delta.new_size;
            // After the writes the receiver's file is as long as the longer of its old version
            // and the data sent; anything else (a shrink, a trailing hole) needs a truncate.
            let have = if new { 0 } else { osize };
            let truncate = size != have.max(data_end);
            if truncate {
                self.put(Record::Truncate { path: path.clone(), size })?;
                content_sent = true;
            }
            check_unchanged(&th, &u.target_path, walked)?;
        }

        // 2. Owner.
        let chown = new || u.diff.owner;
        if chown {
            self.put(Record::Chown { path: path.clone(), uid: walked.uid, gid: walked.gid })?;
        }
        let privs_dropped = !new && (chown || content_sent);
        // 3. Extended attributes (before chmod: a non-root receiver cannot set them on a file it
        // has already made read-only).
        let (mut set, removed) = match (&u.xattrs, new) {
            (Some(x), _) => (x.set.clone(), x.removed.clone()),
            (None, true) => (th.xattr_names(Side::Target, &u.target_path)?, Vec::new()),
            (None, false) => (Vec::new(), Vec::new()),
        };
        if privs_dropped
            && !set.iter().any(|n| n == CAPABILITY)
            && th.xattr(Side::Target, &u.target_path, CAPABILITY)?.is_some()
        {
            set.push(CAPABILITY.to_vec());
            set.sort();
        }
        for name in removed {
            self.put(Record::RemoveXattr { path: path.clone(), name })?;
        }
        for name in set {
            let value =
                th.xattr(Side::Target, &u.target_path, &name)?.ok_or_else(|| SourceChanged {
                    path: u.target_path.clone(),
                    what: format!("xattr {} vanished", shown(&name)),
                })?;
            self.put(Record::SetXattr { path: path.clone(), name, value })?;
        }
        // 4. Mode: also again when the receiver's chown or writes dropped setuid/setgid.
        if u.kind != Kind::Symlink
            && (new || u.diff.mode || (privs_dropped && walked.mode & 0o6000 != 0))
        {
            self.put(Record::Chmod { path: path.clone(), mode: walked.mode })?;
        }
        // 5. Times.
        if new || u.diff.times || content_sent {
            let atime = atime(&th, &u.target_path)?;
            self.put(Record::Utimes {
                path: path.clone(),
                atime_sec: atime.sec,
                atime_nsec: atime.nsec,
                mtime_sec: walked.mtime.sec,
                mtime_nsec: walked.mtime.nsec,
            })?;
        }
        // 6. Flags, last.
        if let Some(f) = u.flags {
            if (new && f.target != 0) || (!new && u.diff.flags) {
                self.put(Record::SetFlags { path: path.clone(), flags: f.target })?;
            }
        }
        Ok(())
    }

    /// `write` records for the data extent `seg` of the target, 1 MiB at a time.
    fn writes(
        &mut self,
        path: &[u8],
        tpath: &[u8],
        fd: &rustix::fd::OwnedFd,
        seg: Range<u64>,
    ) -> Result<()> {
        let mut off = seg.start;
        while off < seg.end {
            let n = ((seg.end - off) as usize).min(PREFERRED_DATA_CHUNK);
            if self.sink.skipping() {
                // Before a resume point: counted, never read.
                let rec = Record::Write {
                    path: path.to_vec(),
                    offset: off,
                    data: Data::from(Vec::new()),
                };
                self.sink.put(&rec)?;
                off += n as u64;
                continue;
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.resize(n, 0);
            if self.data == DataMode::Read {
                read_exact_at(fd, &mut buf, off, tpath)?;
            }
            let rec = Record::Write { path: path.to_vec(), offset: off, data: Data::from(buf) };
            let r = self.sink.put(&rec);
            if let Record::Write { data, .. } = rec {
                self.buf = data.into_vec();
            }
            r?;
            off += n as u64;
        }
        Ok(())
    }

    /// `hole` records for the parts of `gap` (a hole in the target) where the origin had data.
    fn holes(
        &mut self,
        path: &[u8],
        gap: Range<u64>,
        origin: Option<(&rustix::fd::OwnedFd, &[u8])>,
        osize: u64,
    ) -> Result<bool> {
        let Some((ofd, opath)) = origin else { return Ok(false) };
        let end = gap.end.min(osize);
        let mut pos = gap.start;
        let mut sent = false;
        while let Some(seg) =
            next_data(ofd, pos, end).with_context(|| format!("origin {}", shown(opath)))?
        {
            self.put(Record::Hole {
                path: path.to_vec(),
                offset: seg.start,
                len: seg.end - seg.start,
            })?;
            sent = true;
            pos = seg.end;
        }
        Ok(sent)
    }
}

fn node_type(kind: Kind) -> Result<NodeType> {
    Ok(match kind {
        Kind::Fifo => NodeType::Fifo,
        Kind::Socket => NodeType::Socket,
        Kind::CharDev => NodeType::CharDevice,
        Kind::BlockDev => NodeType::BlockDevice,
        k => return Err(anyhow!("mknod of a {k:?}")),
    })
}

/// The stream's name for an object type.
fn object_type(kind: Kind) -> ObjectType {
    match kind {
        Kind::File => ObjectType::File,
        Kind::Dir => ObjectType::Dir,
        Kind::Symlink => ObjectType::Symlink,
        Kind::Fifo => ObjectType::Fifo,
        Kind::Socket => ObjectType::Socket,
        Kind::CharDev => ObjectType::CharDevice,
        Kind::BlockDev => ObjectType::BlockDevice,
    }
}

impl<W: Write> Consumer for Emitter<'_, W> {
    fn estimate(&mut self, estimate: &anysend_diff_core::Estimate) {
        self.sink.estimate(estimate);
    }
    fn expect(&mut self, origin_path: &[u8], meta: &Meta) -> Result<(), BoxError> {
        // A directory's size and link count differ between file systems: they say nothing.
        let dir = meta.kind == Kind::Dir;
        let r = self.put(Record::Expect {
            path: origin_path.to_vec(),
            otype: object_type(meta.kind),
            mode: meta.mode & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            nlink: if dir { 0 } else { u32::try_from(meta.nlink).unwrap_or(u32::MAX) },
            size: if dir { 0 } else { meta.size },
            mtime_sec: meta.mtime.sec,
            mtime_nsec: meta.mtime.nsec,
        });
        self.guard(r)
    }
    fn unlock(&mut self, origin_path: &[u8], _kind: Kind, flags: u32) -> Result<(), BoxError> {
        let r = self
            .put(Record::SetFlags { path: origin_path.to_vec(), flags: flags & !FLAGS_LOCKING });
        self.guard(r)
    }
    fn mk_tmp_dir(&mut self, path: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Mkdir { path: path.to_vec() });
        self.guard(r)
    }
    fn mkdir(&mut self, path: &[u8], _target_path: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Mkdir { path: path.to_vec() });
        self.guard(r)
    }
    fn create(&mut self, path: &[u8], _target_path: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Create { path: path.to_vec() });
        self.guard(r)
    }
    fn symlink(&mut self, path: &[u8], _t: &[u8], link_target: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Symlink { path: path.to_vec(), target: link_target.to_vec() });
        self.guard(r)
    }
    fn mknod(&mut self, path: &[u8], _t: &[u8], kind: Kind, rdev: u64) -> Result<(), BoxError> {
        let r = node_type(kind).and_then(|node| {
            let (major, minor) = if matches!(kind, Kind::CharDev | Kind::BlockDev) {
                (rustix::fs::major(rdev), rustix::fs::minor(rdev))
            } else {
                (0, 0)
            };
            self.put(Record::Mknod { path: path.to_vec(), node, major, minor })
        });
        self.guard(r)
    }
    fn link(&mut self, path: &[u8], existing: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Link { path: path.to_vec(), existing: existing.to_vec() });
        self.guard(r)
    }
    fn unlink(&mut self, path: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Unlink { path: path.to_vec() });
        self.guard(r)
    }
    fn rmdir(&mut self, path: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Rmdir { path: path.to_vec() });
        self.guard(r)
    }
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), BoxError> {
        let r = self.put(Record::Rename { from: from.to_vec(), to: to.to_vec() });
        self.guard(r)
    }
    fn update(&mut self, update: &Update) -> Result<(), BoxError> {
        let r = self.update_inner(update);
        self.guard(r)
    }
}
