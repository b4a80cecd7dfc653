//! `anyrecv --abort DEST`: rolls an interrupted receive back, an incremental to its origin
//! (its journal's undo steps, applied in reverse with the same system calls the applier uses,
//! `ops.rs`), a full receive to an empty (or, if it made it, no) DEST; an interrupted
//! `--atomic` receive only loses its staging copy.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anysend_stream::Id;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, IFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::atomic;
use crate::config::Config;
use crate::dest;
use crate::error::RecvError;
use crate::fsutil;
use crate::journal::{self, Loaded, RootMeta, Time, Undo};
use crate::journaled::{self, holding};
use crate::names;
use crate::ops::{self, ForFlags, Object};
use crate::path::{self, Shown};
use crate::resolve::{ResolveError, Resolver};
use crate::resume::interrupted;
use crate::state::{self, Refusal};

/// What an abort did.
#[derive(Debug)]
pub struct Aborted {
    pub dest: PathBuf,
    pub full: bool,
    /// DEST was created by the receive and is gone again.
    pub removed_dest: bool,
    pub undone: usize,
    pub origin: Option<Id>,
}

/// Rolls DEST's interrupted receive back: an incremental to its origin (through the undo log),
/// a full receive to an empty (or no) DEST.
pub fn abort(cfg: &Config) -> Result<Aborted, RecvError> {
    let shown = state::show(&cfg.dest);
    let dest = dest::canonical(&cfg.dest)?;
    let state_file = dest::find_state(&cfg.state_dir, &dest)?.path;
    let _lock =
        state::lock(&state_file, &shown).map_err(RecvError::state(&state_file, "locking"))??;
    let st = state::load(&state_file).map_err(RecvError::state(&state_file, "reading"))?;
    let dest_partial = st.as_ref().is_some_and(|s| s.partial.is_some());
    // A receive cut after it completed (or before it began): nothing to roll back, but its
    // leftovers go, so that DEST is what its state says.
    crate::leftover::settle(st.as_ref(), &state_file, &dest);
    if !dest_partial {
        if let Some(staging) = atomic::interrupted_staging(cfg) {
            // An interrupted --atomic receive never touched DEST: its staging copy goes.
            let mut c = cfg.clone();
            c.dest = staging.clone();
            let origin = interrupted(&c)?.and_then(|i| i.journal).and_then(|j| j.begin.origin);
            atomic::remove_staging(cfg, &staging)?;
            return Ok(Aborted {
                dest,
                full: origin.is_none(),
                removed_dest: false,
                undone: 0,
                origin,
            });
        }
        // A staging copy an --atomic receive left before its first record: DEST is untouched.
        let stale = atomic::staging_dirs(cfg);
        if !stale.is_empty() {
            for p in &stale {
                atomic::remove_staging(cfg, p)?;
            }
            let origin =
                state::load(&state_file).ok().flatten().and_then(|s| s.last).map(|l| l.target);
            return Ok(Aborted { dest, full: false, removed_dest: false, undone: 0, origin });
        }
    }
    let Some(i) = interrupted(cfg)? else {
        return Err(RecvError::Refused(Refusal::NothingToResume { dest: shown }));
    };
    let Some(j) = &i.journal else {
        return Err(RecvError::Refused(Refusal::NoJournal { dest: shown }));
    };
    let jf = journal::journal_file(&state_file);
    let b = &j.begin;
    let root = match rustix::fs::open(
        &dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Some(fd),
        Err(Errno::NOENT) if b.dest_created => None,
        Err(e) => return Err(RecvError::dest(&dest, "opening")(e.into())),
    };
    let mut out = Aborted {
        dest: dest.clone(),
        full: b.origin.is_none(),
        removed_dest: false,
        undone: 0,
        origin: b.origin,
    };
    let failed = |step| RecvError::dest(&dest, step);
    // DEST's own immutable or append-only flags: lifted for the abort (they refuse the holding
    // directory's removal and every entry put back in the root), and put back after
    // everything else, as the receive had them.
    let root_flags = journaled::root::original(j);
    if let Some(root) = root {
        journaled::root::lift(root.as_fd())
            .map_err(failed("lifting DEST's immutable or append-only flag"))?;
        if b.origin.is_none() {
            // A full receive: everything in DEST is its doing.
            fsutil::empty_dir(root.as_fd()).map_err(failed("emptying"))?;
            if b.dest_created {
                drop(root);
                fs::remove_dir(&dest).map_err(failed("removing"))?;
                out.removed_dest = true;
            } else {
                restore_root(root.as_fd(), &b.root).map_err(failed("restoring"))?;
                if let Some(f) = root_flags {
                    journaled::root::set(root.as_fd(), f)
                        .map_err(failed("restoring DEST's flags"))?;
                }
                rustix::fs::syncfs(&root).map_err(|e| failed("syncfs")(e.into()))?;
            }
        } else {
            out.undone = undo_all(&root, j, &dest)?;
            holding::remove(root.as_fd(), &b.holding)
                .map_err(failed("removing the holding directory"))?;
            restore_root(root.as_fd(), &b.root).map_err(failed("restoring"))?;
            if let Some(f) = root_flags {
                journaled::root::set(root.as_fd(), f).map_err(failed("restoring DEST's flags"))?;
            }
            rustix::fs::syncfs(&root).map_err(|e| failed("syncfs")(e.into()))?;
        }
    } else {
        out.removed_dest = true;
    }
    let mut st = i.state.clone();
    st.partial = None;
    match &mut st.last {
        // An empty DEST has no names to remember.
        _ if b.origin.is_none() => {
            st.last = None;
            let _ = fs::remove_file(names::names_file(&state_file));
        }
        // The objects put back have new ctimes: DEST settled again now.
        Some(l) => l.settled = Some(fsutil::settle()),
        None => {}
    }
    if out.removed_dest {
        match fs::remove_file(&state_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(RecvError::state(&state_file, "removing")(e))
            }
            _ => {}
        }
    } else {
        state::save(&state_file, &st)
            .map_err(RecvError::state(&state_file, "recording the abort"))?;
    }
    match fs::remove_file(&jf) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(RecvError::state(&jf, "removing the journal")(e))
        }
        _ => {}
    }
    Ok(out)
}

/// Puts back DEST's own owner, mode and times.
fn restore_root(root: BorrowedFd<'_>, m: &RootMeta) -> io::Result<()> {
    let obj = Object::Open(root);
    // Best effort: not root, DEST's owner is the receiving user already.
    let _ = obj.chown(m.uid, m.gid);
    obj.chmod(m.mode)?;
    Ok(obj.set_times(&fsutil::timestamps(m.atime, m.mtime))?)
}

/// Applies every undo step in reverse. A step whose object is already as it should be (the
/// record in flight at the kill had not been applied) is skipped. Stops at the first step that
/// fails otherwise: DEST then stays marked as interrupted.
fn undo_all(root: &OwnedFd, j: &Loaded, dest: &Path) -> Result<usize, RecvError> {
    let dup = ops::dup(root).map_err(|e| RecvError::dest(dest, "dup")(e.into()))?;
    let mut res = Resolver::new(dup);
    let hold = holding::open_existing(root.as_fd(), &j.begin.holding).map_err(|source| {
        RecvError::Abort {
            dest: dest.to_path_buf(),
            index: j.begin.first_record,
            step: "opening the holding directory".into(),
            source,
        }
    })?;
    let mut n = 0;
    for e in j.entries.iter().rev() {
        for u in e.undo.iter().rev() {
            if matches!(u, Undo::Flags { path, .. } if path::is_root(path)) {
                // DEST's own flags come last, after the holding directory is gone (`abort`).
                continue;
            }
            match undo_one(&mut res, root.as_fd(), hold.as_ref().map(|h| h.as_fd()), u) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(err) => {
                    return Err(RecvError::Abort {
                        dest: dest.to_path_buf(),
                        index: e.index,
                        step: describe(u),
                        source: err,
                    })
                }
            }
        }
    }
    Ok(n)
}

/// What an undo step does, for messages.
fn describe(u: &Undo) -> String {
    let s = |p: &[u8]| Shown(p).to_string();
    match u {
        Undo::Remove { path } => format!("removing {}", s(path)),
        Undo::Rename { from, to } => format!("renaming {} back to {}", s(to), s(from)),
        Undo::Restore { path, .. } => format!("putting back {}", s(path)),
        Undo::Mode { path, .. } => format!("restoring the mode of {}", s(path)),
        Undo::Owner { path, .. } => format!("restoring the owner of {}", s(path)),
        Undo::Times { path, .. } => format!("restoring the times of {}", s(path)),
        Undo::Xattr { path, name, .. } => {
            format!("restoring the xattr {} of {}", s(name), s(path))
        }
        Undo::Flags { path, .. } => format!("restoring the flags of {}", s(path)),
        Undo::Range { path, .. } | Undo::Bytes { path, .. } => {
            format!("restoring the content of {}", s(path))
        }
        Undo::KeepMeta { path, .. } => format!("restoring the size and metadata of {}", s(path)),
        Undo::New { .. } | Undo::Durable { .. } => String::new(),
    }
}

/// One undo step; `Ok(false)` when there was nothing to undo.
fn undo_one(
    res: &mut Resolver,
    root: BorrowedFd<'_>,
    hold: Option<BorrowedFd<'_>>,
    u: &Undo,
) -> io::Result<bool> {
    match u {
        // Goes with the holding directory.
        Undo::New { .. } => Ok(false),
        // A checkpoint: nothing was done.
        Undo::Durable { .. } => Ok(false),
        Undo::Remove { path } => {
            let Some((d, n)) = gone_is_none(parent(res, path))? else { return Ok(false) };
            let st = match Object::At(d.as_fd(), n).stat() {
                Ok(st) => st,
                Err(Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let directory = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            match ops::remove(d.as_fd(), n, directory) {
                // Immutable or append-only (its flags were set by the receive): lifted.
                Err(Errno::PERM) => {
                    fsutil::remove_tree(d.as_fd(), n)?;
                    Ok(true)
                }
                r => done(r),
            }
        }
        Undo::Rename { from, to } => {
            let Some((td, tn)) = gone_is_none(parent(res, to))? else { return Ok(false) };
            let (fd, fname) = parent(res, from)?;
            done(ops::rename_noreplace(td.as_fd(), tn, fd.as_fd(), fname))
        }
        Undo::Restore { hold: h, path } => {
            // Made before the first record: without it, what it held is lost.
            let Some(hd) = hold else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the holding directory is missing",
                ));
            };
            let Some((hdir, hname)) = gone_is_none(holding::held_dir(hd, h))? else {
                return Ok(false);
            };
            let (d, n) = parent(res, path)?;
            done(ops::rename_noreplace(hdir.as_fd(), hname, d.as_fd(), n))
        }
        Undo::Mode { path, mode } => on_object(res, root, path, |obj| match obj.chmod(*mode) {
            // A symlink has no mode of its own to put back.
            Ok(set) => Ok(set),
            Err(e) => done(Err(e)),
        }),
        Undo::Owner { path, uid, gid } => {
            on_object(res, root, path, |obj| done(obj.chown(*uid, *gid)))
        }
        Undo::Times { path, atime, mtime } => {
            let t = fsutil::timestamps(*atime, *mtime);
            let r = on_object(res, root, path, |obj| done(obj.set_times(&t)));
            Ok(gone_is_none(r)?.unwrap_or(false))
        }
        Undo::Xattr { path, name, value } => on_object(res, root, path, |obj| {
            match obj.put_xattr(OsStr::from_bytes(name), value.as_deref()) {
                Err(Errno::NODATA) => Ok(false),
                r => done(r),
            }
        }),
        Undo::Flags { path, flags } => on_object(res, root, path, |obj| {
            let fd = match obj.for_flags() {
                Ok(ForFlags::Fd(fd)) => fd,
                Ok(ForFlags::Holds(_) | ForFlags::Raced) | Err(Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            done(rustix::fs::ioctl_setflags(&fd, IFlags::from_bits_retain(*flags)))
        }),
        Undo::KeepMeta { path, size, mode, uid, gid, atime, mtime, cap, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            dst.set_len(*size)?;
            restore_meta(&dst, *uid, *gid, *mode, cap, *atime, *mtime)?;
            Ok(true)
        }
        Undo::Bytes { path, off, data, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            dst.write_all_at(data, *off)?;
            Ok(true)
        }
        Undo::Range { path, off, len, hold: h, at, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            if h.is_empty() {
                fsutil::punch(&dst, *off, *len)?;
                return Ok(true);
            }
            let Some(hd) = hold else { return Ok(false) };
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let src = match rustix::fs::openat(hd, OsStr::from_bytes(h), flags, Mode::empty()) {
                Ok(fd) => fs::File::from(fd),
                Err(Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            fsutil::copy_range(&src, *at, &dst, *off, *len)?;
            Ok(true)
        }
    }
}

/// A step's system call: done, or nothing to do when its object is gone.
fn done(r: Result<(), Errno>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `Ok(None)` for an error that says something is gone.
fn gone_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The parent directory of `p` (an fd of its own: the undo of a move needs two) and its name.
/// Never resolved from a cache, since the steps move directories.
fn parent<'p>(res: &mut Resolver, p: &'p [u8]) -> io::Result<(OwnedFd, &'p OsStr)> {
    let (d, n) = path::split_last(p);
    let fd = res.dir_owned(d).map_err(|e| match e {
        ResolveError::Os { errno, .. } => io::Error::from(errno),
        _ => io::Error::other("path leaves DEST"),
    })?;
    Ok((fd, OsStr::from_bytes(n)))
}

/// Runs `f` on the object at `p`: DEST itself for the empty path.
fn on_object(
    res: &mut Resolver,
    root: BorrowedFd<'_>,
    p: &[u8],
    f: impl FnOnce(Object<'_>) -> io::Result<bool>,
) -> io::Result<bool> {
    if path::is_root(p) {
        return f(Object::Open(root));
    }
    let (d, n) = parent(res, p)?;
    f(Object::At(d.as_fd(), n))
}

/// Opens the regular file at `path` for restoring its content; `None` when it is gone.
fn open_rw(res: &mut Resolver, path: &[u8]) -> io::Result<Option<fs::File>> {
    let Some((d, n)) = gone_is_none(parent(res, path))? else { return Ok(None) };
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(&d, n, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fs::File::from(fd))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Puts back the owner, mode, capability and times of a file whose content was restored.
fn restore_meta(
    dst: &fs::File,
    uid: u32,
    gid: u32,
    mode: u32,
    cap: &Option<Vec<u8>>,
    atime: Time,
    mtime: Time,
) -> io::Result<()> {
    let obj = Object::Open(dst.as_fd());
    // Best effort: not root, the file's owner is the receiving user already.
    let _ = obj.chown(uid, gid);
    obj.chmod(mode)?;
    fsutil::fset_cap(dst, cap)?;
    obj.set_times(&fsutil::timestamps(atime, mtime))?;
    Ok(())
}
