//! Loop-mounted file systems as RAII guards: a btrfs source and the
//! destination kinds a receiver may write to.
//!
//! Every resource is its own guard ([`Mount`], [`LoopDevice`], the backing
//! `TempDir`) and they sit in struct fields in teardown order, so Drop
//! unmounts, then detaches, then deletes, also while a test panics. Nothing
//! is global, so tests may create file systems from parallel threads.

use crate::cmd::{run, run_ok, CmdError};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors while setting up a file system.
#[derive(Debug, thiserror::Error)]
pub enum LoopFsError {
    #[error("{0}")]
    Cmd(#[from] CmdError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoopFsError {
    let what = what.into();
    move |source| LoopFsError::Io { what, source }
}

/// An attached loop device; Drop detaches it.
#[derive(Debug)]
pub struct LoopDevice {
    dev: String,
    backing: PathBuf,
}

impl LoopDevice {
    /// `losetup --find --show backing`, retried because parallel tests race
    /// for the same free device.
    pub fn attach(backing: &Path) -> Result<Self, LoopFsError> {
        Self::attach_with(backing, false)
    }

    /// [`attach`](Self::attach), with `--direct-io=on` when `direct_io`: the device then writes
    /// its backing file with O_DIRECT, so the file holds what the device was written rather
    /// than pages cached above it (the crash harness wants that; losetup falls back to
    /// buffered I/O, with a warning, where the backing file system refuses it).
    pub fn attach_with(backing: &Path, direct_io: bool) -> Result<Self, LoopFsError> {
        let mut args: Vec<&OsStr> = vec!["--find".as_ref(), "--show".as_ref()];
        if direct_io {
            args.push("--direct-io=on".as_ref());
        }
        args.push(backing.as_os_str());
        let mut last = None;
        for attempt in 0..8 {
            match run("losetup", &args) {
                Ok(out) => {
                    return Ok(LoopDevice {
                        dev: out.trim().to_string(),
                        backing: backing.to_path_buf(),
                    })
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
                }
            }
        }
        Err(last.expect("at least one attempt").into())
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// Whether the device does direct I/O on its backing file (`/sys/block/<dev>/loop/dio`).
    pub fn direct_io(&self) -> bool {
        let name = self.dev.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/loop/dio"))
            .is_ok_and(|v| v.trim() == "1")
    }

    /// Whether the device is still bound to our backing file (another test
    /// may already have reused the device number for its own image).
    fn still_ours(&self) -> bool {
        let name = self.dev.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .map(|b| {
                let b = b.trim_end();
                let b = b.strip_suffix(" (deleted)").unwrap_or(b);
                Path::new(b) == self.backing
            })
            .unwrap_or(false)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // A device still open somewhere (a lazily unmounted fs, or a
        // parallel test's `losetup`/`mkfs` probing it) only gets autoclear
        // from `-d` and is detached at its last close; wait a little for
        // that so a finished test leaves nothing behind.
        if let Err(e) = run("losetup", ["-d", self.dev.as_str()]) {
            eprintln!("*** anysend-testbed: could not detach {}: {e} ***", self.dev);
            return;
        }
        for _ in 0..100 {
            if !self.still_ours() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "*** anysend-testbed: {} still bound to {} after 2 s; autoclear detaches it on last close ***",
            self.dev,
            self.backing.display()
        );
    }
}

/// A mount; Drop unmounts it (lazily when it stays busy).
#[derive(Debug)]
pub struct Mount {
    point: PathBuf,
}

impl Mount {
    /// `mount [-t fstype] [-o opts] source point`.
    pub fn new(
        source: &str,
        point: &Path,
        fstype: Option<&str>,
        opts: Option<&str>,
    ) -> Result<Self, LoopFsError> {
        let mut args: Vec<&OsStr> = Vec::new();
        if let Some(t) = fstype {
            args.extend([OsStr::new("-t"), OsStr::new(t)]);
        }
        if let Some(o) = opts {
            args.extend([OsStr::new("-o"), OsStr::new(o)]);
        }
        args.extend([OsStr::new(source), point.as_os_str()]);
        run("mount", args)?;
        Ok(Mount { point: point.to_path_buf() })
    }

    pub fn point(&self) -> &Path {
        &self.point
    }

    /// Unmounts now, and fails if that does not work. Drop only reports a failure and falls
    /// back to a lazy unmount, which keeps the file system on its device until its last user
    /// goes: a caller that mounts the same device again must know it is really free. On an
    /// error the guard is dropped, so Drop tries again.
    pub fn unmount(self) -> Result<(), LoopFsError> {
        run("umount", [self.point.as_os_str()])?;
        // Unmounted: nothing left for Drop to do (it would only fail to unmount again).
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        for attempt in 0..3 {
            match run("umount", [self.point.as_os_str()]) {
                Ok(_) => return,
                Err(e) if attempt == 2 => {
                    eprintln!(
                        "*** anysend-testbed: umount {} failed ({e}); falling back to umount -l ***",
                        self.point.display()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        if let Err(e) = run("umount", ["-l".as_ref(), self.point.as_os_str()]) {
            eprintln!("*** anysend-testbed: lazy umount {} failed: {e} ***", self.point.display());
        }
    }
}

/// A mounted file system with its guards, fields in teardown order.
#[derive(Debug)]
struct MountedFs {
    mount: Mount,
    _loopdev: Option<LoopDevice>,
    _dir: tempfile::TempDir,
}

impl MountedFs {
    /// Sparse image in a fresh temp dir, loop device, `mkfs`, mount.
    fn on_loop(
        size: u64,
        mkfs: &str,
        mkfs_args: &[&str],
        opts: Option<&str>,
    ) -> Result<Self, LoopFsError> {
        let dir = tempdir()?;
        let image = dir.path().join("image");
        File::create(&image)
            .and_then(|f| f.set_len(size))
            .map_err(io_err(format!("creating sparse image {}", image.display())))?;
        let loopdev = LoopDevice::attach(&image)?;
        let mut args: Vec<&str> = mkfs_args.to_vec();
        args.push(loopdev.dev());
        run(mkfs, &args)?;
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point).map_err(io_err("creating mount point"))?;
        let mount = Mount::new(loopdev.dev(), &point, None, opts)?;
        Ok(MountedFs { mount, _loopdev: Some(loopdev), _dir: dir })
    }

    fn tmpfs(size: u64) -> Result<Self, LoopFsError> {
        let dir = tempdir()?;
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point).map_err(io_err("creating mount point"))?;
        let opts = format!("size={size},mode=0755");
        let mount = Mount::new("tmpfs", &point, Some("tmpfs"), Some(&opts))?;
        Ok(MountedFs { mount, _loopdev: None, _dir: dir })
    }

    fn path(&self) -> &Path {
        self.mount.point()
    }
}

fn tempdir() -> Result<tempfile::TempDir, LoopFsError> {
    tempfile::Builder::new()
        .prefix("anysend-testbed-")
        .tempdir()
        .map_err(io_err("creating temp dir"))
}

const MIB: u64 = 1 << 20;

/// A btrfs file system on a loop device: the source of snapshots.
#[derive(Debug)]
pub struct BtrfsFs {
    fs: MountedFs,
}

impl BtrfsFs {
    /// A fresh btrfs of `size` bytes (sparse; at least ~114 MiB). Panics
    /// with the failing command on error.
    pub fn new(size: u64) -> Self {
        Self::try_new(size).unwrap_or_else(|e| panic!("creating btrfs: {e}"))
    }

    pub fn try_new(size: u64) -> Result<Self, LoopFsError> {
        let fs = MountedFs::on_loop(size.max(128 * MIB), "mkfs.btrfs", &["-q", "-f"], None)?;
        Ok(BtrfsFs { fs })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.fs.path()
    }

    /// `btrfs subvolume create <mnt>/<name>`.
    pub fn create_subvolume(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        run_ok("btrfs", ["subvolume".as_ref(), "create".as_ref(), p.as_os_str()]);
        p
    }

    /// `btrfs subvolume snapshot -r <subvol> <mnt>/<name>`.
    pub fn snapshot_ro(&self, subvol: &Path, name: &str) -> PathBuf {
        let p = self.path().join(name);
        run_ok(
            "btrfs",
            [
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                "-r".as_ref(),
                subvol.as_os_str(),
                p.as_os_str(),
            ],
        );
        p
    }
}

/// Kinds of destination file system a receiver can write into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestKind {
    Ext4,
    Xfs,
    Tmpfs,
    Btrfs,
}

impl DestKind {
    pub const ALL: [DestKind; 4] =
        [DestKind::Ext4, DestKind::Xfs, DestKind::Tmpfs, DestKind::Btrfs];

    pub fn name(self) -> &'static str {
        match self {
            DestKind::Ext4 => "ext4",
            DestKind::Xfs => "xfs",
            DestKind::Tmpfs => "tmpfs",
            DestKind::Btrfs => "btrfs",
        }
    }
}

impl std::fmt::Display for DestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A mounted destination file system of a given kind.
#[derive(Debug)]
pub struct DestFs {
    kind: DestKind,
    fs: MountedFs,
}

impl DestFs {
    /// A fresh, empty destination; panics with the failing command on error.
    pub fn new(kind: DestKind) -> Self {
        Self::try_new(kind).unwrap_or_else(|e| panic!("creating {kind} destination: {e}"))
    }

    pub fn try_new(kind: DestKind) -> Result<Self, LoopFsError> {
        let fs = match kind {
            DestKind::Ext4 => {
                MountedFs::on_loop(
                    256 * MIB,
                    "mkfs.ext4",
                    // mke2fs picks 1 KiB blocks for a file system this small, and ext4 keeps an
                    // inode's xattrs in one block: 4 KiB blocks hold what real disks hold.
                    &["-q", "-F", "-b", "4096"],
                    Some("user_xattr,acl"),
                )?
            }
            // XFS refuses file systems smaller than 300 MiB.
            DestKind::Xfs => MountedFs::on_loop(320 * MIB, "mkfs.xfs", &["-q", "-f"], None)?,
            DestKind::Btrfs => MountedFs::on_loop(256 * MIB, "mkfs.btrfs", &["-q", "-f"], None)?,
            DestKind::Tmpfs => MountedFs::tmpfs(256 * MIB)?,
        };
        Ok(DestFs { kind, fs })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.fs.path()
    }

    pub fn kind(&self) -> DestKind {
        self.kind
    }
}
