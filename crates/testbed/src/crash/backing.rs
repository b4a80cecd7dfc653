//! The backing store: a reflink file system holding the images of the file systems under test
//! and every crash copy of them, and the FICLONE that makes those copies.
//!
//! XFS (reflink=1, the mkfs.xfs default) on a loop device over a sparse file in a temp dir. Why
//! a file system of our own rather than the host's: the host's may not clone (ext4 does not),
//! and everything the harness makes then goes with one unmount. Why XFS rather than btrfs: its
//! FICLONE takes the inode locks of both files, waits for direct I/O in flight and writes the
//! source's dirty pages back before it shares the extents (`xfs_reflink_remap_prep`), so a clone
//! of an image that a loop device is writing is exactly what the device had been written when
//! the clone was made; btrfs does the same, and either would do.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::{io_err, CrashError};
use crate::cmd::run;
use crate::loopfs::{LoopDevice, Mount};

/// The mounted reflink file system; Drop unmounts it, detaches its device and deletes its file
/// (fields in teardown order).
#[derive(Debug)]
pub struct Backing {
    mount: Option<Mount>,
    _dev: LoopDevice,
    dir: tempfile::TempDir,
}

impl Backing {
    /// A fresh XFS of `size` bytes (sparse: only what is written takes room on the host).
    pub fn new(size: u64) -> Result<Backing, CrashError> {
        let dir = tempfile::Builder::new()
            .prefix("anysend-crash-")
            .tempdir()
            .map_err(io_err("creating the crash harness's temp dir"))?;
        let image = dir.path().join("backing.img");
        File::create(&image)
            .and_then(|f| f.set_len(size))
            .map_err(io_err(format!("creating {}", image.display())))?;
        let dev = LoopDevice::attach(&image)?;
        run("mkfs.xfs", ["-q", "-f", "-m", "reflink=1", dev.dev()])?;
        let point = dir.path().join("store");
        std::fs::create_dir(&point).map_err(io_err("creating the backing mount point"))?;
        let mount = Mount::new(dev.dev(), &point, None, None)?;
        Ok(Backing { mount: Some(mount), _dev: dev, dir })
    }

    /// Where the images go.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A directory outside the backing store for mount points and scratch files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // Unmount before the device guard detaches (field order does it too; explicit here
        // because the mount must go first even if fields are reordered).
        drop(self.mount.take());
    }
}

/// Makes `dst` a clone of the whole of `src` (FICLONE): it shares `src`'s extents, so it is
/// instant, and it is what `src` held at that instant, its dirty pages written back first.
pub fn clone_file(src: &Path, dst: &Path) -> Result<(), CrashError> {
    let from = File::open(src).map_err(io_err(format!("opening {}", src.display())))?;
    let to = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dst)
        .map_err(io_err(format!("opening {}", dst.display())))?;
    rustix::fs::ioctl_ficlone(&to, &from).map_err(|e| CrashError::Io {
        what: format!("FICLONE {} -> {}", src.display(), dst.display()),
        source: e.into(),
    })?;
    // Images of one rig all have one size; a stray longer target would keep a stale tail.
    let len = from.metadata().map_err(io_err(format!("stat {}", src.display())))?.len();
    to.set_len(len).map_err(io_err(format!("sizing {}", dst.display())))
}
