//! Finding and opening DEST: its canonical path (also when it does not exist yet), the
//! directory itself, and what the base check needs to know of it.
//!
//! Only DEST itself is ever created, never its parents: a missing DEST is named by its
//! canonical parent plus its last name.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};

use crate::error::RecvError;
use crate::state::{self, DestInfo, DestKind, Refusal};

/// DEST's canonical path and whether it exists (as a directory; anything else is refused).
pub fn locate(dest: &Path) -> Result<(PathBuf, bool), RecvError> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            let c = fs::canonicalize(dest).map_err(RecvError::dest(dest, "resolving the path"))?;
            Ok((c, true))
        }
        Ok(_) => Err(Refusal::NotADirectory { dest: state::show(dest) }.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((missing(dest)?, false)),
        Err(e) => Err(RecvError::dest(dest, "stat")(e)),
    }
}

/// The canonical path of DEST, or of where it would be (an interrupted full receive that made
/// it may have left none), whatever it is.
pub fn canonical(dest: &Path) -> Result<PathBuf, RecvError> {
    match fs::canonicalize(dest) {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => missing(dest),
        Err(e) => Err(RecvError::dest(dest, "resolving the path")(e)),
    }
}

/// The canonical path of a DEST that does not exist: its canonical parent and its name.
fn missing(dest: &Path) -> Result<PathBuf, RecvError> {
    let name = dest.file_name().ok_or_else(|| {
        RecvError::dest(dest, "naming the directory to create")(io::ErrorKind::InvalidInput.into())
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = fs::canonicalize(parent)
        .map_err(RecvError::dest(parent, "resolving the parent directory"))?;
    Ok(parent.join(name))
}

/// Opens the directory `p`.
pub fn open_dir(p: &Path) -> Result<OwnedFd, RecvError> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| RecvError::dest(p, "opening")(e.into()))
}

/// Makes the directory `p` (not its parents) and opens it.
pub fn create_dir(p: &Path) -> Result<OwnedFd, RecvError> {
    fs::DirBuilder::new().create(p).map_err(RecvError::dest(p, "creating the directory"))?;
    open_dir(p)
}

/// What the base check needs to know of DEST (open as `root`, if it exists).
pub fn info(
    canonical: &Path,
    root: Option<&OwnedFd>,
    state_file: &Path,
) -> Result<DestInfo, RecvError> {
    let Some(root) = root else {
        return Ok(DestInfo {
            kind: DestKind::Missing,
            identity: None,
            state_file: state_file.to_path_buf(),
        });
    };
    let st = rustix::fs::fstat(root).map_err(|e| RecvError::dest(canonical, "fstat")(e.into()))?;
    let mut entries = fs::read_dir(canonical).map_err(RecvError::dest(canonical, "listing"))?;
    let kind = match entries.next() {
        None => DestKind::Empty,
        Some(Ok(e)) => DestKind::NotEmpty(e.file_name().as_bytes().to_vec()),
        Some(Err(e)) => return Err(RecvError::dest(canonical, "listing")(e)),
    };
    Ok(DestInfo {
        kind,
        identity: Some((st.st_dev, st.st_ino)),
        state_file: state_file.to_path_buf(),
    })
}
