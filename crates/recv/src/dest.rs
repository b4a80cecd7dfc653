//! Finding and opening DEST: its canonical path (also when it does not exist yet), the
//! directory itself, and what the base check needs to know of it.
//!
//! Only DEST itself is ever created, never its parents: a missing DEST is named by its
//! canonical parent plus its last name.
//!
//! DEST's identity ([`identity`]) names its file system by its UUID (FS_IOC_GETFSUUID, Linux
//! 6.8 on: ext4, XFS and tmpfs answer it, tmpfs with a UUID made at mount), else by statfs's
//! f_fsid (btrfs, which does not answer FS_IOC_GETFSUUID, derives it from its UUID and the
//! subvolume; XFS would give its device number there), else by the device number, which does
//! not survive a reboot (the kernel hands it out at mount).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

use crate::error::RecvError;
use crate::state::{self, DestInfo, DestKind, Identity, Refusal};

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
    let parent = match fs::canonicalize(parent) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (dest, parent) = (state::show(dest), state::show(parent));
            return Err(Refusal::NoParent { dest, parent }.into());
        }
        Err(e) => return Err(RecvError::dest(parent, "resolving the parent directory")(e)),
    };
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
    let identity = identity(root.as_fd()).map_err(RecvError::dest(canonical, "fstat"))?;
    let mut entries = fs::read_dir(canonical).map_err(RecvError::dest(canonical, "listing"))?;
    let kind = match entries.next() {
        None => DestKind::Empty,
        Some(Ok(e)) => DestKind::NotEmpty(e.file_name().as_bytes().to_vec()),
        Some(Err(e)) => return Err(RecvError::dest(canonical, "listing")(e)),
    };
    Ok(DestInfo { kind, identity: Some(identity), state_file: state_file.to_path_buf() })
}

/// `struct fsuuid2` of FS_IOC_GETFSUUID.
#[repr(C)]
struct FsUuid2 {
    len: u8,
    uuid: [u8; 16],
}

/// FS_IOC_GETFSUUID: `_IOR(0x15, 0, struct fsuuid2)`.
const FS_IOC_GETFSUUID: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<FsUuid2>(0x15, 0);

/// STATX_SUBVOL (Linux 6.10): the subvolume of an object, on file systems that have them.
const STATX_SUBVOL: u32 = 0x8000;

/// The identity of the directory open as `dir` (see the module doc).
pub fn identity(dir: BorrowedFd<'_>) -> io::Result<Identity> {
    let st = rustix::fs::fstat(dir)?;
    let mut fs = match fs_uuid(dir) {
        Some(uuid) => format!("uuid:{}", hex(&uuid)),
        None => match rustix::fs::fstatvfs(dir) {
            Ok(v) if v.f_fsid != 0 => format!("fsid:{:016x}", v.f_fsid),
            _ => format!("dev:{}", st.st_dev),
        },
    };
    let want = StatxFlags::from_bits_retain(STATX_SUBVOL);
    if let Ok(x) = rustix::fs::statx(dir, "", AtFlags::EMPTY_PATH, want) {
        if x.stx_mask & STATX_SUBVOL != 0 {
            fs.push_str(&format!("/subvol:{}", x.stx_subvol));
        }
    }
    Ok(Identity { fs, device: st.st_dev, inode: st.st_ino })
}

/// The UUID of the file system holding `fd`, if the kernel and the file system give one.
fn fs_uuid(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    // SAFETY: the opcode is FS_IOC_GETFSUUID, and `FsUuid2` is the `struct fsuuid2` it fills.
    let getter = unsafe { rustix::ioctl::Getter::<FS_IOC_GETFSUUID, FsUuid2>::new() };
    // SAFETY: the ioctl only writes into the getter's `FsUuid2`.
    let u = unsafe { rustix::ioctl::ioctl(fd, getter) }.ok()?;
    let uuid = u.uuid.get(..usize::from(u.len))?;
    (!uuid.is_empty() && uuid.iter().any(|&b| b != 0)).then(|| uuid.to_vec())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// DEST's state file in `state_dir`: the one of its canonical path `canonical`, or, when there
/// is none, the one that describes DEST's directory (`state::find`).
pub fn find_state(state_dir: &Path, canonical: &Path) -> Result<state::Found, RecvError> {
    let identity = match open_dir(canonical) {
        Ok(fd) => Some(identity(fd.as_fd()).map_err(RecvError::dest(canonical, "fstat"))?),
        // Missing (or not to be opened): known by its path only.
        Err(_) => None,
    };
    Ok(state::find(state_dir, canonical, identity.as_ref()))
}
