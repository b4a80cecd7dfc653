//! After an interrupted receive: the resume token (`anyrecv --resume-token DEST`), and the
//! rollback (`anyrecv --abort DEST`).
//!
//! The token ([`anysend_stream::ResumeToken`], STREAM_FORMAT.md section 11) names the stream, its
//! snapshots and the record to continue at. `anysend --resume TOKEN` reads it back, checks the
//! ids against the snapshots it is given, and writes the rest of the stream from that record.
//!
//! anyrecv applies a record only after its CRC verified (STREAM_FORMAT.md section 8), so it never
//! holds part of a record's data: the data offset it puts in a token is always 0. The format
//! carries it for receivers that apply data as it arrives.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anysend_stream::{Id, ResumePoint};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::apply::{chmod_fd, open_path, proc_path};
use crate::config::Config;
use crate::error::RecvError;
use crate::fsutil;
use crate::journal::{self, Loaded, Undo};
use crate::path;
use crate::resolve::Resolver;
use crate::state::{self, State};

/// The token format is the stream crate's: the sender reads what this side writes.
pub use anysend_stream::ResumeToken as Token;

/// What is known of an interrupted receive into DEST.
#[derive(Debug)]
pub struct Interrupted {
    pub dest: PathBuf,
    pub state_file: PathBuf,
    pub state: State,
    pub journal: Option<Loaded>,
}

impl Interrupted {
    pub fn token(&self) -> Option<Token> {
        let j = self.journal.as_ref()?;
        Some(Token {
            stream: j.begin.stream,
            origin: j.begin.origin,
            target: j.begin.target,
            point: ResumePoint { first_record: j.next_record(), data_offset: 0 },
        })
    }
}

fn state_err<'a>(p: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> RecvError + 'a {
    move |source| RecvError::State { path: p.to_path_buf(), step, source }
}

fn dest_err<'a>(p: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> RecvError + 'a {
    move |source| RecvError::Dest { path: p.to_path_buf(), step, source }
}

/// The canonical path of DEST (or of where it would be, when a full receive that created it was
/// interrupted before, or while, making it).
fn canonical(dest: &Path) -> Result<PathBuf, RecvError> {
    match fs::canonicalize(dest) {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = dest.file_name().ok_or_else(|| dest_err(dest, "naming DEST")(e))?;
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let parent = fs::canonicalize(parent).map_err(dest_err(parent, "resolving"))?;
            Ok(parent.join(name))
        }
        Err(e) => Err(dest_err(dest, "resolving the path")(e)),
    }
}

/// The interrupted receive of `cfg.dest`, if there is one.
pub fn interrupted(cfg: &Config) -> Result<Option<Interrupted>, RecvError> {
    let dest = canonical(&cfg.dest)?;
    let state_file = state::state_file(&cfg.state_dir, &dest);
    let st = state::load(&state_file).map_err(state_err(&state_file, "reading"))?;
    if st.as_ref().is_none_or(|s| s.partial.is_none()) {
        // An interrupted --atomic receive: its staging copy holds the journal.
        if let Some(staging) = crate::atomic::interrupted_staging(cfg) {
            let mut c = cfg.clone();
            c.dest = staging;
            return interrupted(&c);
        }
    }
    let Some(st) = st else {
        return Ok(None);
    };
    if st.partial.is_none() {
        return Ok(None);
    }
    let jf = journal::journal_file(&state_file);
    let journal = journal::load(&jf).map_err(state_err(&jf, "reading the journal"))?;
    let journal =
        journal.filter(|j| st.partial.as_ref().is_some_and(|p| p.stream == j.begin.stream));
    Ok(Some(Interrupted { dest, state_file, state: st, journal }))
}

/// The resume token of DEST's interrupted receive.
pub fn resume_token(cfg: &Config) -> Result<Token, RecvError> {
    let shown = state::show(&cfg.dest);
    let Some(i) = interrupted(cfg)? else {
        return Err(RecvError::Refused(state::Refusal::NothingToResume { dest: shown }));
    };
    i.token().ok_or(RecvError::Refused(state::Refusal::NoJournal { dest: shown }))
}

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
    let dest = canonical(&cfg.dest)?;
    let state_file = state::state_file(&cfg.state_dir, &dest);
    let _lock = state::lock(&state_file, &shown).map_err(state_err(&state_file, "locking"))??;
    let dest_partial = state::load(&state_file)
        .map_err(state_err(&state_file, "reading"))?
        .is_some_and(|s| s.partial.is_some());
    if !dest_partial {
        if let Some(staging) = crate::atomic::interrupted_staging(cfg) {
            // An interrupted --atomic receive never touched DEST: its staging copy goes.
            let mut c = cfg.clone();
            c.dest = staging.clone();
            let origin = interrupted(&c)?.and_then(|i| i.journal).and_then(|j| j.begin.origin);
            crate::atomic::remove_staging(cfg, &staging)?;
            return Ok(Aborted {
                dest,
                full: origin.is_none(),
                removed_dest: false,
                undone: 0,
                origin,
            });
        }
        // A staging copy an --atomic receive left before its first record: DEST is untouched.
        let stale = crate::atomic::staging_dirs(cfg);
        if !stale.is_empty() {
            for p in &stale {
                crate::atomic::remove_staging(cfg, p)?;
            }
            let origin =
                state::load(&state_file).ok().flatten().and_then(|s| s.last).map(|l| l.target);
            return Ok(Aborted { dest, full: false, removed_dest: false, undone: 0, origin });
        }
    }
    let Some(i) = interrupted(cfg)? else {
        return Err(RecvError::Refused(state::Refusal::NothingToResume { dest: shown }));
    };
    let Some(j) = &i.journal else {
        return Err(RecvError::Refused(state::Refusal::NoJournal { dest: shown }));
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
        Err(e) => return Err(dest_err(&dest, "opening")(e.into())),
    };
    let mut out = Aborted {
        dest: dest.clone(),
        full: b.origin.is_none(),
        removed_dest: false,
        undone: 0,
        origin: b.origin,
    };
    if let Some(root) = root {
        if b.origin.is_none() {
            // A full receive: everything in DEST is its doing.
            fsutil::empty_dir(root.as_fd()).map_err(dest_err(&dest, "emptying"))?;
            if b.dest_created {
                drop(root);
                fs::remove_dir(&dest).map_err(dest_err(&dest, "removing"))?;
                out.removed_dest = true;
            } else {
                restore_root(root.as_fd(), &b.root).map_err(dest_err(&dest, "restoring"))?;
                rustix::fs::syncfs(&root).map_err(|e| dest_err(&dest, "syncfs")(e.into()))?;
            }
        } else {
            out.undone = undo_all(&root, j, &dest)?;
            crate::journaled::remove_holding(root.as_fd(), &b.holding)
                .map_err(dest_err(&dest, "removing the holding directory"))?;
            restore_root(root.as_fd(), &b.root).map_err(dest_err(&dest, "restoring"))?;
            rustix::fs::syncfs(&root).map_err(|e| dest_err(&dest, "syncfs")(e.into()))?;
        }
    } else {
        out.removed_dest = true;
    }
    let mut st = i.state.clone();
    st.partial = None;
    if b.origin.is_none() {
        st.last = None;
    }
    if out.removed_dest {
        match fs::remove_file(&state_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(state_err(&state_file, "removing")(e))
            }
            _ => {}
        }
    } else {
        state::save(&state_file, &st).map_err(state_err(&state_file, "recording the abort"))?;
    }
    match fs::remove_file(&jf) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(state_err(&jf, "removing the journal")(e))
        }
        _ => {}
    }
    Ok(out)
}

fn restore_root(root: BorrowedFd<'_>, m: &journal::RootMeta) -> io::Result<()> {
    let _ = rustix::fs::fchown(
        root,
        Some(rustix::fs::Uid::from_raw_unchecked(m.uid)),
        Some(rustix::fs::Gid::from_raw_unchecked(m.gid)),
    );
    rustix::fs::fchmod(root, Mode::from_raw_mode(m.mode))?;
    Ok(rustix::fs::futimens(root, &fsutil::timestamps(m.atime, m.mtime))?)
}

/// Applies every undo step in reverse. A step whose object is already as it should be (the
/// record in flight at the kill had not been applied) is skipped. Stops at the first step that
/// fails otherwise: DEST then stays marked as interrupted.
fn undo_all(root: &OwnedFd, j: &Loaded, dest: &Path) -> Result<usize, RecvError> {
    let dup =
        rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(|e| dest_err(dest, "dup")(e.into()))?;
    let mut res = Resolver::new(dup);
    let hold = rustix::fs::openat(
        root,
        std::ffi::OsStr::from_bytes(&j.begin.holding),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let mut n = 0;
    for e in j.entries.iter().rev() {
        for u in e.undo.iter().rev() {
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

use std::os::unix::ffi::OsStrExt;

fn describe(u: &Undo) -> String {
    let s = |p: &[u8]| path::Shown(p).to_string();
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
        Undo::New { .. } => String::new(),
    }
}

/// One undo step; `Ok(false)` when there was nothing to undo.
fn undo_one(
    res: &mut Resolver,
    root: BorrowedFd<'_>,
    hold: Option<BorrowedFd<'_>>,
    u: &Undo,
) -> io::Result<bool> {
    use std::ffi::OsStr;
    let gone = |e: &Errno| matches!(*e, Errno::NOENT);
    let parent = |res: &mut Resolver, p: &[u8]| -> io::Result<(OwnedFd, Vec<u8>)> {
        let (d, n) = path::split_last(p);
        let fd = res.dir_owned(d).map_err(|e| match e {
            crate::resolve::ResolveError::Os { errno, .. } => io::Error::from(errno),
            _ => io::Error::other("path leaves DEST"),
        })?;
        Ok((fd, n.to_vec()))
    };
    let done = |r: Result<(), Errno>| -> io::Result<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    match u {
        // Goes with the holding directory.
        Undo::New { .. } => Ok(false),
        Undo::Remove { path } => {
            let (d, n) = match parent(res, path) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            let n = OsStr::from_bytes(&n);
            let st = match rustix::fs::statat(&d, n, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let r = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                res.invalidate();
                rustix::fs::unlinkat(&d, n, AtFlags::REMOVEDIR)
            } else {
                rustix::fs::unlinkat(&d, n, AtFlags::empty())
            };
            match r {
                Err(Errno::PERM) => {
                    fsutil::remove_tree(d.as_fd(), n)?;
                    Ok(true)
                }
                r => done(r),
            }
        }
        Undo::Rename { from, to } => {
            let (td, tn) = match parent(res, to) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            let (fd, fname) = parent(res, from)?;
            res.invalidate();
            done(rustix::fs::renameat_with(
                &td,
                OsStr::from_bytes(&tn),
                &fd,
                OsStr::from_bytes(&fname),
                RenameFlags::NOREPLACE,
            ))
        }
        Undo::Restore { hold: h, path } => {
            let Some(hd) = hold else { return Ok(false) };
            let (hdir, hname) = match crate::journaled::held_dir(hd, h) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            let (d, n) = parent(res, path)?;
            res.invalidate();
            done(rustix::fs::renameat_with(
                &hdir,
                hname,
                &d,
                OsStr::from_bytes(&n),
                RenameFlags::NOREPLACE,
            ))
        }
        Undo::Mode { path, mode } => {
            if path::is_root(path) {
                return done(rustix::fs::fchmod(root, Mode::from_raw_mode(*mode)));
            }
            let (d, n) = parent(res, path)?;
            let fd = match open_path(d.as_fd(), OsStr::from_bytes(&n)) {
                Ok(fd) => fd,
                Err(_) => return Ok(false),
            };
            let st = rustix::fs::fstat(&fd)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Ok(false);
            }
            chmod_fd(&fd, *mode).map_err(|e| io::Error::other(e.to_string()))?;
            Ok(true)
        }
        Undo::Owner { path, uid, gid } => {
            let (o, g) = (
                Some(rustix::fs::Uid::from_raw_unchecked(*uid)),
                Some(rustix::fs::Gid::from_raw_unchecked(*gid)),
            );
            if path::is_root(path) {
                return done(rustix::fs::fchown(root, o, g));
            }
            let (d, n) = parent(res, path)?;
            done(rustix::fs::chownat(&d, OsStr::from_bytes(&n), o, g, AtFlags::SYMLINK_NOFOLLOW))
        }
        Undo::Times { path, atime, mtime } => {
            let t = fsutil::timestamps(*atime, *mtime);
            if path::is_root(path) {
                return done(rustix::fs::futimens(root, &t));
            }
            let (d, n) = match parent(res, path) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            done(rustix::fs::utimensat(&d, OsStr::from_bytes(&n), &t, AtFlags::SYMLINK_NOFOLLOW))
        }
        Undo::Xattr { path, name, value } => {
            let name = OsStr::from_bytes(name);
            let r = if path::is_root(path) {
                match value {
                    Some(v) => {
                        rustix::fs::fsetxattr(root, name, v, rustix::fs::XattrFlags::empty())
                    }
                    None => rustix::fs::fremovexattr(root, name),
                }
            } else {
                let (d, n) = parent(res, path)?;
                let p = proc_path(d.as_fd(), OsStr::from_bytes(&n));
                match value {
                    Some(v) => rustix::fs::lsetxattr(&p, name, v, rustix::fs::XattrFlags::empty()),
                    None => rustix::fs::lremovexattr(&p, name),
                }
            };
            match r {
                Err(Errno::NODATA) => Ok(false),
                r => done(r),
            }
        }
        Undo::Flags { path, flags } => {
            let fd = if path::is_root(path) {
                rustix::io::fcntl_dupfd_cloexec(root, 0)?
            } else {
                let (d, n) = parent(res, path)?;
                match fsutil::open_for_flags(d.as_fd(), OsStr::from_bytes(&n)) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            let f = rustix::fs::IFlags::from_bits_retain(*flags);
            done(rustix::fs::ioctl_setflags(&fd, f))
        }
        Undo::KeepMeta { path, size, mode, uid, gid, atime, mtime, cap, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            dst.set_len(*size)?;
            restore_meta(&dst, *uid, *gid, *mode, cap, *atime, *mtime)?;
            Ok(true)
        }
        Undo::Bytes { path, off, data, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            std::os::unix::fs::FileExt::write_all_at(&dst, data, *off)?;
            Ok(true)
        }
        Undo::Range { path, off, len, hold: h, at, .. } => {
            let Some(dst) = open_rw(res, path)? else { return Ok(false) };
            if h.is_empty() {
                fsutil::punch(&dst, *off, *len)?;
                return Ok(true);
            }
            let Some(hd) = hold else { return Ok(false) };
            let src = match rustix::fs::openat(
                hd,
                OsStr::from_bytes(h),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fs::File::from(fd),
                Err(Errno::NOENT) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            fsutil::copy_range(&src, *at, &dst, *off, *len)?;
            Ok(true)
        }
    }
}

/// Opens the regular file at `path` for restoring its content; `None` when it is gone.
fn open_rw(res: &mut Resolver, path: &[u8]) -> io::Result<Option<fs::File>> {
    use std::ffi::OsStr;
    let (d, n) = path::split_last(path);
    let d = match res.dir_owned(d) {
        Ok(fd) => fd,
        Err(crate::resolve::ResolveError::Os { errno: Errno::NOENT, .. }) => return Ok(None),
        Err(crate::resolve::ResolveError::Os { errno, .. }) => return Err(errno.into()),
        Err(_) => return Err(io::Error::other("path leaves DEST")),
    };
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(&d, OsStr::from_bytes(n), flags, Mode::empty()) {
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
    atime: journal::Time,
    mtime: journal::Time,
) -> io::Result<()> {
    let _ = rustix::fs::fchown(
        dst,
        Some(rustix::fs::Uid::from_raw_unchecked(uid)),
        Some(rustix::fs::Gid::from_raw_unchecked(gid)),
    );
    rustix::fs::fchmod(dst, Mode::from_raw_mode(mode))?;
    fsutil::fset_cap(dst, cap)?;
    rustix::fs::futimens(dst, &fsutil::timestamps(atime, mtime))?;
    Ok(())
}
