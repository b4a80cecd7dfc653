//! `anyrecv --atomic DEST`: the stream goes into a staging copy beside DEST, and DEST is switched
//! to it in one step at the end, so that readers of DEST see the old tree or the new one, never a
//! mix.
//!
//! - The staging copy is `.NAME.anyrecv-staging-<stream id prefix>` in DEST's parent directory
//!   (same file system, so the switch is a rename). For an incremental it is a clone of DEST:
//!   every regular file FICLONEd (no data copied), directories, symlinks, devices, fifos and
//!   sockets made anew, hard links kept, with owner, mode, xattrs (ACLs, capabilities), times and
//!   inode flags. For a full stream it starts empty.
//! - The stream is received into the staging copy like into any DEST, with its own state file
//!   (a copy of DEST's, naming the staging copy) and journal: an interrupted atomic receive
//!   leaves DEST untouched; `--abort` removes the staging copy; the resumed stream (with or
//!   without `--atomic`) continues into it.
//! - The switch: `renameat2(RENAME_EXCHANGE)` of DEST and the staging copy (a full stream into a
//!   missing DEST: RENAME_NOREPLACE), then DEST's state records the new target and the new
//!   directory's inode, and the old tree is removed. A kill between the exchange and the state
//!   update is finished by the next anyrecv of DEST.
//! - Only where FICLONE works (btrfs, XFS with reflink); elsewhere refused before anything.

use std::ffi::OsStr;
use std::fs as stdfs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anysend_stream::Id;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::config::Config;
use crate::dest;
use crate::direct;
use crate::error::{RecvError, Warning};
use crate::fsutil;
use crate::journal;
use crate::lookahead::Input;
use crate::names;
use crate::ops::{ForFlags, Object};
use crate::state::{self, Refusal, State, Verdict};
use crate::summary::{Summary, Tick};

const MARK: &str = ".anyrecv-staging-";

/// DEST's canonical path (or where it would be), its parent and its name.
fn split(dest: &Path) -> Result<(PathBuf, PathBuf, Vec<u8>), RecvError> {
    let (canonical, _) = dest::locate(dest)?;
    let parent = canonical.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = canonical.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    Ok((canonical, parent, name))
}

/// The staging copy of `canonical` for stream `id`.
pub fn staging_path(canonical: &Path, id: &Id) -> PathBuf {
    let parent = canonical.parent().unwrap_or(Path::new("/"));
    let name = canonical.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let mut n = b".".to_vec();
    n.extend_from_slice(name);
    n.extend_from_slice(MARK.as_bytes());
    n.extend_from_slice(id.short().as_bytes());
    parent.join(OsStr::from_bytes(&n))
}

/// The staging copies of DEST that have a state file (normally at most one): their paths and
/// states. Found through the state directory, so that a staging copy already renamed to DEST
/// is found too.
pub fn stagings(cfg: &Config) -> Result<Vec<(PathBuf, Option<State>)>, RecvError> {
    let (_, parent, name) = split(&cfg.dest)?;
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(&name);
    prefix.extend_from_slice(MARK.as_bytes());
    let mut out = Vec::new();
    let Ok(rd) = stdfs::read_dir(&cfg.state_dir) else { return Ok(out) };
    for e in rd.flatten() {
        let n = e.file_name();
        let nb = n.as_bytes();
        if !nb.ends_with(b".state") || !nb.windows(MARK.len()).any(|w| w == MARK.as_bytes()) {
            continue;
        }
        let sf = e.path();
        let Ok(Some(st)) = state::load(&sf) else { continue };
        let p = PathBuf::from(OsStr::from_bytes(&st.dest));
        let fname = p.file_name().map(|f| f.as_bytes()).unwrap_or_default();
        if p.parent() == Some(parent.as_path())
            && fname.starts_with(&prefix)
            && fname.len() == prefix.len() + 16
            && state::state_file(&cfg.state_dir, &p) == sf
        {
            out.push((p, Some(st)));
        }
    }
    Ok(out)
}

/// Staging copies of DEST on disk (beside it), whatever their state.
pub fn staging_dirs(cfg: &Config) -> Vec<PathBuf> {
    let Ok((_, parent, name)) = split(&cfg.dest) else { return Vec::new() };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(&name);
    prefix.extend_from_slice(MARK.as_bytes());
    let Ok(rd) = stdfs::read_dir(&parent) else { return Vec::new() };
    rd.flatten()
        .map(|e| e.file_name())
        .filter(|n| n.as_bytes().starts_with(&prefix) && n.as_bytes().len() == prefix.len() + 16)
        .map(|n| parent.join(n))
        .collect()
}

/// The staging copy of DEST whose receive was interrupted, if any.
pub fn interrupted_staging(cfg: &Config) -> Option<PathBuf> {
    stagings(cfg)
        .ok()?
        .into_iter()
        .find(|(_, st)| st.as_ref().is_some_and(|s| s.partial.is_some()))
        .map(|(p, _)| p)
}

/// Whether `dir` is on a file system that clones files (FICLONE).
pub fn reflink_supported(dir: &Path) -> bool {
    let Ok(d) = dest::open_dir(dir) else { return false };
    let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
    let (Ok(a), Ok(b)) = (
        fs::openat(&d, ".", flags, Mode::from_raw_mode(0o600)),
        fs::openat(&d, ".", flags, Mode::from_raw_mode(0o600)),
    ) else {
        return false;
    };
    let _ = rustix::io::write(&a, b"x");
    fs::ioctl_ficlone(&b, &a).is_ok()
}

/// An `--atomic` receive of the stream whose header was read.
pub(crate) fn receive<R: Read>(
    cfg: &Config,
    input: Input<R>,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let header = input.reader.header().clone();
    let (canonical, parent, _) = split(&cfg.dest)?;
    let shown = state::show(&canonical);
    if !reflink_supported(&parent) {
        return Err(Refusal::NoReflink { dest: shown }.into());
    }
    let state_path = dest::find_state(&cfg.state_dir, &canonical)?.path;
    state::create_dir(&cfg.state_dir).map_err(RecvError::state(&cfg.state_dir, "creating"))?;
    let lock =
        state::lock(&state_path, &shown).map_err(RecvError::state(&state_path, "locking"))??;
    finish_switches(cfg, &canonical, &state_path)?;
    let staging = staging_path(&canonical, &header.stream_id);
    let sstate = state::state_file(&cfg.state_dir, &staging);
    let resuming = state::load(&sstate)
        .map_err(RecvError::state(&sstate, "reading"))?
        .is_some_and(|s| s.partial.as_ref().is_some_and(|p| p.stream == header.stream_id))
        && staging.is_dir();
    let dest_state = state::load(&state_path).map_err(RecvError::state(&state_path, "reading"))?;
    if !resuming {
        // The same checks a receive into DEST makes, before anything is made.
        let root = match stdfs::metadata(&canonical) {
            Ok(_) => Some(dest::open_dir(&canonical)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(RecvError::dest(&canonical, "stat")(e)),
        };
        let info = dest::info(&canonical, root.as_ref(), &state_path)?;
        let verdict = state::check_base(&header, &shown, &info, dest_state.as_ref(), cfg.force)?;
        if let Verdict::Forced(r) = &verdict {
            warn(&Warning::Forced(r.to_string()));
        }
        if header.resume != Default::default() {
            return Err(Refusal::ResumeMismatch {
                dest: shown,
                stream: header.stream_id,
                first_record: header.resume.first_record,
                data_offset: header.resume.data_offset,
                have: None,
            }
            .into());
        }
        // Leftovers of an earlier staging copy of this stream go first.
        remove_staging(cfg, &staging)?;
        match &root {
            Some(r) if header.origin.is_some() => {
                clone_tree(r.as_fd(), &staging)
                    .map_err(RecvError::dest(&staging, "cloning DEST"))?;
                // The staging copy holds what DEST holds: it gets DEST's record.
                let id = dest::open_dir(&staging).and_then(|d| {
                    dest::identity(d.as_fd()).map_err(RecvError::dest(&staging, "fstat"))
                })?;
                let mut s = dest_state.clone().unwrap_or_else(|| State::new(&staging, &id));
                s.dest = State::new(&staging, &id).dest;
                s.set_identity(&id);
                s.partial = None;
                // The clone's objects were all made just now: what was changed in DEST before
                // shows in their metadata (`drift.rs`), not in their ctimes any more.
                if let Some(l) = &mut s.last {
                    l.settled = Some(fsutil::settle());
                }
                state::save(&sstate, &s).map_err(RecvError::state(&sstate, "writing"))?;
            }
            _ => {
                if header.origin.is_some() && !cfg.force {
                    return Err(Refusal::Missing {
                        dest: shown,
                        origin: header.origin.unwrap_or_default(),
                    }
                    .into());
                }
            }
        }
    }
    let mut inner = cfg.clone();
    inner.dest = staging.clone();
    inner.atomic = false;
    // A forced incremental: the base check passed above, for DEST.
    let summary = match direct::receive(&inner, input, warn, tick) {
        // The staging copy is complete: it takes DEST's place, then the error is told.
        Err(RecvError::TrailingData { offset, .. }) => {
            switch(cfg, &canonical, &staging, &state_path)?;
            return Err(RecvError::TrailingData { dest: canonical, offset });
        }
        r => r?,
    };
    switch(cfg, &canonical, &staging, &state_path)?;
    drop(lock);
    Ok(Summary { dest: Some(canonical), state_file: Some(state_path), ..summary })
}

/// Puts the completed staging copy in DEST's place, records it, removes the old tree.
fn switch(
    cfg: &Config,
    canonical: &Path,
    staging: &Path,
    state_path: &Path,
) -> Result<(), RecvError> {
    let parent = canonical.parent().unwrap_or(Path::new("/"));
    let pd = dest::open_dir(parent)?;
    let dn = canonical.file_name().unwrap_or_default();
    let sn = staging.file_name().unwrap_or_default();
    let exists = fs::statat(&pd, dn, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let r = if exists {
        fs::renameat_with(&pd, sn, &pd, dn, RenameFlags::EXCHANGE)
    } else {
        fs::renameat_with(&pd, sn, &pd, dn, RenameFlags::NOREPLACE)
    };
    r.map_err(|e| RecvError::dest(canonical, "switching to the staging copy")(e.into()))?;
    fs::fsync(&pd).map_err(|e| RecvError::dest(parent, "fsync")(e.into()))?;
    finish_switches(cfg, canonical, state_path)
}

/// Completes switches (one just made, or one a kill interrupted): a staging state that completed
/// and whose directory is DEST now becomes DEST's state, and the old tree at the staging path
/// goes.
fn finish_switches(cfg: &Config, canonical: &Path, state_path: &Path) -> Result<(), RecvError> {
    let dest_id = dest::open_dir(canonical).ok().and_then(|d| dest::identity(d.as_fd()).ok());
    for (p, st) in stagings(cfg)? {
        match (st, &dest_id) {
            (Some(s), Some(id)) if s.partial.is_none() && s.describes(id) => {
                // Switched: DEST is the received tree; the staging path holds the old one.
                let mut d = s.clone();
                d.dest = canonical.as_os_str().as_bytes().to_vec();
                // Its names log goes with it (a log the state does not match is written anew
                // by the next receive).
                let from = names::names_file(&state::state_file(&cfg.state_dir, &p));
                let to = names::names_file(state_path);
                match stdfs::rename(&from, &to) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(RecvError::state(&to, "moving the names log")(e))
                    }
                    _ => {}
                }
                state::save(state_path, &d).map_err(RecvError::state(state_path, "recording"))?;
                remove_staging(cfg, &p)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes a staging copy, its state, its journal and its names log.
pub fn remove_staging(cfg: &Config, staging: &Path) -> Result<(), RecvError> {
    let parent = staging.parent().unwrap_or(Path::new("/"));
    if let Ok(pd) = dest::open_dir(parent) {
        match fsutil::remove_tree(pd.as_fd(), staging.file_name().unwrap_or_default()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(RecvError::dest(staging, "removing the staging copy")(e))
            }
            _ => {}
        }
    }
    let sf = state::state_file(&cfg.state_dir, staging);
    let _ = stdfs::remove_file(journal::journal_file(&sf));
    let _ = stdfs::remove_file(names::names_file(&sf));
    let _ = stdfs::remove_file(&sf);
    let mut lock = sf.into_os_string();
    lock.push(".lock");
    let _ = stdfs::remove_file(lock);
    Ok(())
}

// ---- the clone ----

/// Makes `to` a copy of the directory `from`: files cloned, everything else made anew, with all
/// metadata; hard links kept.
pub fn clone_tree(from: BorrowedFd<'_>, to: &Path) -> io::Result<()> {
    stdfs::DirBuilder::new().create(to)?;
    let dst = fs::open(to, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut links = std::collections::HashMap::new();
    clone_dir(from, dst.as_fd(), dst.as_fd(), b"", &mut links)?;
    let st = fs::fstat(from)?;
    finish(Object::Open(from), Object::Open(dst.as_fd()), &st)?;
    fs::syncfs(&dst)?;
    Ok(())
}

type Links = std::collections::HashMap<u64, Vec<u8>>;

fn clone_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    rel: &[u8],
    links: &mut Links,
) -> io::Result<()> {
    for n in fsutil::names(src, usize::MAX)? {
        let name = OsStr::from_bytes(&n);
        let st = fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let mut path = rel.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&n);
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::Directory && st.st_nlink > 1 {
            if let Some(first) = links.get(&st.st_ino) {
                fs::linkat(root, OsStr::from_bytes(first), dst, name, AtFlags::empty())?;
                continue;
            }
            links.insert(st.st_ino, path.clone());
        }
        match kind {
            FileType::Directory => {
                fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let s = fs::openat(src, name, flags, Mode::empty())?;
                let t = fs::openat(dst, name, flags, Mode::empty())?;
                clone_dir(s.as_fd(), t.as_fd(), root, &path, links)?;
                finish(Object::Open(s.as_fd()), Object::Open(t.as_fd()), &st)?;
            }
            FileType::RegularFile => {
                let s = fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let t = fs::openat(
                    dst,
                    name,
                    OFlags::RDWR
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                fs::ioctl_ficlone(&t, &s)?;
                finish(Object::Open(s.as_fd()), Object::Open(t.as_fd()), &st)?;
            }
            FileType::Symlink => {
                let target = fs::readlinkat(src, name, Vec::new())?;
                fs::symlinkat(target.as_c_str(), dst, name)?;
                finish(Object::At(src, name), Object::At(dst, name), &st)?;
            }
            _ => {
                let dev = st.st_rdev;
                fs::mknodat(dst, name, kind, Mode::from_raw_mode(0o600), dev)?;
                finish(Object::At(src, name), Object::At(dst, name), &st)?;
            }
        }
    }
    Ok(())
}

/// Owner, mode, xattrs, times, then inode flags, from `src` to `dst`: open directories or
/// files, or symlinks and special files by name (never opened, never followed; they hold no
/// mode of their own, resp. no flags).
fn finish(src: Object<'_>, dst: Object<'_>, st: &fs::Stat) -> io::Result<()> {
    let mode = st.st_mode & 0o7777;
    // Not root, the clone's owner is the receiving user: it cannot be set, nor need be.
    let _ = dst.chown(st.st_uid, st.st_gid);
    dst.chmod(mode)?;
    copy_xattrs(src, dst)?;
    // chown clears setuid/setgid, and so may setting security.capability: the mode again.
    dst.chmod(mode)?;
    let (atime, mtime) = fsutil::times(st);
    dst.set_times(&fsutil::timestamps(atime, mtime))?;
    if let (Ok(ForFlags::Fd(s)), Ok(ForFlags::Fd(d))) = (src.for_flags(), dst.for_flags()) {
        if let Ok(f) = fs::ioctl_getflags(&s) {
            if !f.is_empty() {
                fs::ioctl_setflags(&d, f)?;
            }
        }
    }
    Ok(())
}

/// Copies every extended attribute of `src` to `dst`.
fn copy_xattrs(src: Object<'_>, dst: Object<'_>) -> io::Result<()> {
    let names = match src.xattr_names() {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for name in names {
        let name = OsStr::from_bytes(&name);
        if let Some(value) = src.xattr(name)? {
            dst.set_xattr(name, &value)?;
        }
    }
    Ok(())
}
