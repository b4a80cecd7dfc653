//! One destination set-up under test: DEST's file system and the state directory's file system,
//! each an image in the backing store behind a loop device, and the moves the harness makes on
//! them: mount, unmount, copy both images at a crash moment, load a crash copy back.
//!
//! The loop devices stay attached from the first receive to the last check, and a crash copy is
//! loaded by cloning it over the attached image (then dropping the device's cached blocks):
//! anyrecv's state records DEST's device number (and a changed one is refused as "DEST was
//! replaced"), so the checks must see DEST on the device the receive wrote it on, as a disk
//! does after a reboot. Both file systems are of the same kind, and the mount points stay the
//! same too (the state file is named after DEST's canonical path).

use std::path::{Path, PathBuf};

use super::backing::clone_file;
use super::{io_err, CrashError};
use crate::cmd::run;
use crate::loopfs::{DestKind, LoopDevice, Mount};

const MIB: u64 = 1 << 20;

/// The two images of one crash moment: the state directory's file system and DEST's.
#[derive(Debug, Clone)]
pub struct CrashImages {
    pub state: PathBuf,
    pub dest: PathBuf,
}

/// DEST's and the state directory's file systems; Drop unmounts, then detaches (fields in
/// teardown order). The images themselves go with the backing store.
#[derive(Debug)]
pub struct Rig {
    dest_mount: Option<Mount>,
    state_mount: Option<Mount>,
    dest_dev: LoopDevice,
    state_dev: LoopDevice,
    kind: DestKind,
    dest_img: PathBuf,
    state_img: PathBuf,
    dest_point: PathBuf,
    state_point: PathBuf,
}

impl Rig {
    /// Makes both images in `store` and their mount points in `scratch` (names prefixed with
    /// the kind), attaches them with direct I/O and makes the file systems (not mounted).
    pub fn new(kind: DestKind, store: &Path, scratch: &Path) -> Result<Rig, CrashError> {
        let (size, mkfs, args): (u64, &str, &[&str]) = match kind {
            // 4 KiB blocks as real disks have (see loopfs.rs).
            DestKind::Ext4 => (256 * MIB, "mkfs.ext4", &["-q", "-F", "-b", "4096"]),
            // XFS refuses file systems smaller than 300 MiB.
            DestKind::Xfs => (320 * MIB, "mkfs.xfs", &["-q", "-f"]),
            other => {
                return Err(CrashError::Io {
                    what: format!("crash rig on {other}"),
                    source: std::io::Error::other("only ext4 and XFS survive a power cut"),
                })
            }
        };
        let name = kind.name();
        let dest_img = store.join(format!("{name}-dest.img"));
        let state_img = store.join(format!("{name}-state.img"));
        for img in [&dest_img, &state_img] {
            std::fs::File::create(img)
                .and_then(|f| f.set_len(size))
                .map_err(io_err(format!("creating {}", img.display())))?;
        }
        let dest_dev = LoopDevice::attach_with(&dest_img, true)?;
        let state_dev = LoopDevice::attach_with(&state_img, true)?;
        for dev in [&dest_dev, &state_dev] {
            let mut a = args.to_vec();
            a.push(dev.dev());
            run(mkfs, &a)?;
        }
        let dest_point = scratch.join(format!("{name}-dest-mnt"));
        let state_point = scratch.join(format!("{name}-state-mnt"));
        for p in [&dest_point, &state_point] {
            std::fs::create_dir_all(p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        Ok(Rig {
            dest_mount: None,
            state_mount: None,
            dest_dev,
            state_dev,
            kind,
            dest_img,
            state_img,
            dest_point,
            state_point,
        })
    }

    pub fn kind(&self) -> DestKind {
        self.kind
    }

    /// Whether both devices do direct I/O (reported in the summary: without it the backing
    /// files' dirty pages are what FICLONE writes back first, which is equivalent).
    pub fn direct_io(&self) -> bool {
        self.dest_dev.direct_io() && self.state_dev.direct_io()
    }

    /// DEST: a directory in DEST's file system (anyrecv makes it on the first receive).
    pub fn dest(&self) -> PathBuf {
        self.dest_point.join("dest")
    }

    /// The state directory: in the other file system, outside DEST as anyrecv requires.
    pub fn state_dir(&self) -> PathBuf {
        self.state_point.join("state")
    }

    /// Mounts both (the state's first); mounting a crash copy replays its file system journal.
    pub fn mount(&mut self) -> Result<(), CrashError> {
        // ext4 as DestFs mounts it; XFS refuses a second file system with a UUID it has
        // mounted already, and a crash copy has its original's.
        let opts = match self.kind {
            DestKind::Ext4 => "user_xattr,acl",
            _ => "nouuid",
        };
        if self.state_mount.is_none() {
            self.state_mount =
                Some(Mount::new(self.state_dev.dev(), &self.state_point, None, Some(opts))?);
        }
        if self.dest_mount.is_none() {
            self.dest_mount =
                Some(Mount::new(self.dest_dev.dev(), &self.dest_point, None, Some(opts))?);
        }
        Ok(())
    }

    /// Unmounts both, failing if either stays mounted.
    pub fn unmount(&mut self) -> Result<(), CrashError> {
        if let Some(m) = self.dest_mount.take() {
            m.unmount()?;
        }
        if let Some(m) = self.state_mount.take() {
            m.unmount()?;
        }
        Ok(())
    }

    /// Copies both images as they are on their devices now into `dir` (made here): the state's
    /// first, then DEST's, so that no copy of the journal is newer than the copy of DEST (the
    /// receiver is frozen meanwhile; only write-back of what it wrote before goes on).
    /// With `sync_first` both file systems are synced before (the control: what a SIGKILL
    /// leaves, the page cache kept, which `e2e_kill` shows the receiver handles).
    pub fn capture(&self, dir: &Path, sync_first: bool) -> Result<CrashImages, CrashError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        if sync_first {
            for p in [&self.state_point, &self.dest_point] {
                let d =
                    std::fs::File::open(p).map_err(io_err(format!("opening {}", p.display())))?;
                rustix::fs::syncfs(&d).map_err(|e| CrashError::Io {
                    what: format!("syncfs {}", p.display()),
                    source: e.into(),
                })?;
            }
        }
        let images = CrashImages { state: dir.join("state.img"), dest: dir.join("dest.img") };
        clone_file(&self.state_img, &images.state)?;
        clone_file(&self.dest_img, &images.dest)?;
        Ok(images)
    }

    /// Puts a crash copy on the devices (unmounting first): its images are cloned over the
    /// attached ones, and the devices' cached blocks are dropped so that the next mount reads
    /// the copy, as a machine does after a reboot.
    pub fn load(&mut self, images: &CrashImages) -> Result<(), CrashError> {
        self.unmount()?;
        clone_file(&images.state, &self.state_img)?;
        clone_file(&images.dest, &self.dest_img)?;
        for dev in [&self.state_dev, &self.dest_dev] {
            run("blockdev", ["--flushbufs", dev.dev()])?;
        }
        Ok(())
    }
}
