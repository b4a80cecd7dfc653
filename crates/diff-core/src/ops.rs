//! What the planner emits and how a consumer receives it.
//!
//! Modelled on the Go ancestor's `DifferenceOperations`: one method per namespace operation,
//! `stop()` for cancellation, plus the `MkTmpDir`/`Rename` pair it never finished (here: the
//! orphan directory). Every path is a receiver-side byte path relative to the destination root,
//! valid in the receiver's namespace at the moment the call is made; the root itself is the
//! empty path. `target_path` is where the consumer reads content and metadata from (relative to
//! the target snapshot's root). Paths are bytes, never UTF-8 strings.

use crate::error::BoxError;
use crate::stat::{Kind, Meta};
use std::ops::Range;

/// Which metadata of an object differs between origin and target (or, for new objects, all of
/// it must be sent). Fields that are false are known equal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaDiff {
    /// The object is new on the receiver: send everything.
    pub new: bool,
    /// Permission bits (12 bits) differ.
    pub mode: bool,
    /// uid or gid differ.
    pub owner: bool,
    /// mtime differs (or, for a directory whose entries the plan changed, must be restored).
    pub times: bool,
    /// Size differs.
    pub size: bool,
    /// Regular file whose content may differ (quick check failed): ranges are in
    /// [`Update::content`].
    pub content: bool,
    /// Extended attributes may differ (ctime moved without another visible cause, or the
    /// attribute lists compared unequal); details in [`Update::xattrs`] when compared.
    pub xattrs: bool,
    /// Inode flags (chattr, within [`crate::stat::FLAGS_MASK`]) differ; values in
    /// [`Update::flags`].
    pub flags: bool,
}

impl MetaDiff {
    /// Everything must be sent (new object).
    pub fn all() -> Self {
        MetaDiff {
            new: true,
            mode: true,
            owner: true,
            times: true,
            size: true,
            content: true,
            xattrs: true,
            flags: true,
        }
    }

    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        *self == MetaDiff::default()
    }
}

/// Changed content of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentDelta {
    /// Size of the target version (truncate or extend to this).
    pub new_size: u64,
    /// Byte ranges of the target file whose content must be sent, sorted and disjoint. For a
    /// new file this is the whole file (`0..new_size`, or empty for an empty file).
    pub ranges: Vec<Range<u64>>,
}

impl ContentDelta {
    /// All of a file of `size` bytes (what a new file sends; the sender skips its holes).
    pub fn whole(size: u64) -> Self {
        ContentDelta {
            new_size: size,
            ranges: std::iter::once(0..size).filter(|r| !r.is_empty()).collect(),
        }
    }
}

/// Extended attributes that differ (names are raw bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XattrDiff {
    /// Names present in the target whose value is new or changed: read them from the target.
    pub set: Vec<Vec<u8>>,
    /// Names present in the origin but not in the target.
    pub removed: Vec<Vec<u8>>,
}

/// Inode flags of an object (masked to [`crate::stat::FLAGS_MASK`]), read when its update is
/// planned. Files and directories only: other kinds cannot be opened to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeFlags {
    /// Flags of the origin version (None for new objects or where the file system has none).
    pub origin: Option<u32>,
    /// Flags of the target version.
    pub target: u32,
}

impl InodeFlags {
    /// Whether the origin version carried immutable or append-only, which a consumer lifted at
    /// the start (see [`Consumer::unlock`]) and must set again.
    pub fn was_locked(&self) -> bool {
        self.origin.is_some_and(|o| o & crate::stat::FLAGS_LOCKING != 0)
    }
}

/// "Object at receiver path `path` needs its content/metadata brought to the target's."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Receiver-side path, valid now (all namespace operations are done by then).
    pub path: Vec<u8>,
    /// Where to read the target version, relative to the target root.
    pub target_path: Vec<u8>,
    /// Where the origin version was, relative to the origin root (None for new objects).
    pub origin_path: Option<Vec<u8>>,
    /// Object type.
    pub kind: Kind,
    /// Which metadata differs.
    pub diff: MetaDiff,
    /// The target's metadata (mode, owner, times, size, rdev).
    pub target_meta: Option<Meta>,
    /// Content ranges for regular files whose content may differ; None otherwise.
    pub content: Option<ContentDelta>,
    /// Extended attribute differences, when compared.
    pub xattrs: Option<XattrDiff>,
    /// Inode flags of both versions, when read (regular files and directories on disk).
    pub flags: Option<InodeFlags>,
    /// The target and origin objects as the planner opened and checked them to fill in the
    /// details above, so the consumer need not resolve the paths again.
    pub opened: Opened,
}

/// Open handles of an update's target and origin object (see [`Update::opened`]). They are how
/// the plan was read, not part of what it says: two updates compare equal whatever they hold.
#[derive(Clone, Default)]
pub struct Opened {
    /// The target object, checked to be the walked one (inode number and type).
    pub target: Option<std::sync::Arc<crate::content::Handle>>,
    /// The origin object, likewise.
    pub origin: Option<std::sync::Arc<crate::content::Handle>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Opened {{ target: {}, origin: {} }}",
            self.target.is_some(),
            self.origin.is_some()
        )
    }
}

impl PartialEq for Opened {
    fn eq(&self, _: &Opened) -> bool {
        true
    }
}

impl Eq for Opened {}

/// One planned operation (an owned, recordable form of the [`Consumer`] calls).
// `Update` is the large variant and by far the most frequent one: boxing it would cost an
// allocation per update to save bytes on the rare namespace variants.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the orphan directory (empty, default permissions; only renames go in and out of
    /// it; removed with `Rmdir` before the end).
    MkTmpDir { path: Vec<u8> },
    /// Create a directory (metadata follows in a later `Update`).
    Mkdir { path: Vec<u8>, target_path: Vec<u8> },
    /// Create an empty regular file (content and metadata follow in a later `Update`).
    Create { path: Vec<u8>, target_path: Vec<u8> },
    /// Create a symbolic link pointing at `link_target`.
    Symlink { path: Vec<u8>, target_path: Vec<u8>, link_target: Vec<u8> },
    /// Create a fifo, socket or device node.
    Mknod { path: Vec<u8>, target_path: Vec<u8>, kind: Kind, rdev: u64 },
    /// New hard link `path` to the existing object at `existing`.
    Link { path: Vec<u8>, existing: Vec<u8> },
    /// Remove a non-directory name.
    Unlink { path: Vec<u8> },
    /// Remove an empty directory.
    Rmdir { path: Vec<u8> },
    /// Rename; `to` never exists at that moment (no implicit replace).
    Rename { from: Vec<u8>, to: Vec<u8> },
    /// Bring content/metadata of an object to the target's.
    Update(Update),
}

impl Op {
    /// Deliver this operation to a consumer.
    pub fn send_to<C: Consumer + ?Sized>(&self, c: &mut C) -> Result<(), BoxError> {
        match self {
            Op::MkTmpDir { path } => c.mk_tmp_dir(path),
            Op::Mkdir { path, target_path } => c.mkdir(path, target_path),
            Op::Create { path, target_path } => c.create(path, target_path),
            Op::Symlink { path, target_path, link_target } => {
                c.symlink(path, target_path, link_target)
            }
            Op::Mknod { path, target_path, kind, rdev } => c.mknod(path, target_path, *kind, *rdev),
            Op::Link { path, existing } => c.link(path, existing),
            Op::Unlink { path } => c.unlink(path),
            Op::Rmdir { path } => c.rmdir(path),
            Op::Rename { from, to } => c.rename(from, to),
            Op::Update(u) => c.update(u),
        }
    }

    /// Whether this operation changes the namespace (everything but `Update`).
    pub fn is_namespace(&self) -> bool {
        !matches!(self, Op::Update(_))
    }
}

/// Receives the plan, one call per operation, in order.
///
/// A method returning `Err` aborts planning with [`crate::Error::Consumer`]; `stop()` is polled
/// between operations (and between directories during the walk) for cancellation and aborts
/// with [`crate::Error::Stopped`].
pub trait Consumer {
    /// Before any other call: the origin object at `origin_path` (valid now: nothing has changed
    /// yet), which the plan changes, removes, renames or links, as the walk saw it (`meta`). A
    /// receiver can check that it still holds exactly this before anything changes.
    fn expect(&mut self, origin_path: &[u8], meta: &crate::stat::Meta) -> Result<(), BoxError> {
        let _ = (origin_path, meta);
        Ok(())
    }
    /// After the `expect` calls and before any other: the origin object at `origin_path` (valid
    /// now: nothing has changed yet) carries immutable or append-only (`flags`, masked to [`crate::stat::FLAGS_MASK`]) and
    /// the plan will change it, its names, or (a directory) its entries. Lift those flags here;
    /// if the object survives, its [`Update`] follows with [`InodeFlags::was_locked`] set, to set
    /// the target's flags again.
    fn unlock(&mut self, origin_path: &[u8], kind: Kind, flags: u32) -> Result<(), BoxError> {
        let _ = (origin_path, kind, flags);
        Ok(())
    }
    /// Before any other call, when [`crate::Options::estimate`] asks for it: what the plan
    /// will carry, about (for a progress display).
    fn estimate(&mut self, estimate: &crate::estimate::Estimate) {
        let _ = estimate;
    }
    /// Create the orphan directory `path`.
    fn mk_tmp_dir(&mut self, path: &[u8]) -> Result<(), BoxError>;
    /// Create directory `path`; its metadata comes with a later `update`.
    fn mkdir(&mut self, path: &[u8], target_path: &[u8]) -> Result<(), BoxError>;
    /// Create empty regular file `path`; content and metadata come with a later `update`.
    fn create(&mut self, path: &[u8], target_path: &[u8]) -> Result<(), BoxError>;
    /// Create symlink `path` -> `link_target`.
    fn symlink(
        &mut self,
        path: &[u8],
        target_path: &[u8],
        link_target: &[u8],
    ) -> Result<(), BoxError>;
    /// Create a fifo, socket or device node at `path`.
    fn mknod(
        &mut self,
        path: &[u8],
        target_path: &[u8],
        kind: Kind,
        rdev: u64,
    ) -> Result<(), BoxError>;
    /// Add hard link `path` to the object at `existing`.
    fn link(&mut self, path: &[u8], existing: &[u8]) -> Result<(), BoxError>;
    /// Remove non-directory name `path`.
    fn unlink(&mut self, path: &[u8]) -> Result<(), BoxError>;
    /// Remove empty directory `path`.
    fn rmdir(&mut self, path: &[u8]) -> Result<(), BoxError>;
    /// Rename `from` to `to` (`to` does not exist).
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), BoxError>;
    /// Bring the object's content/metadata to the target's.
    fn update(&mut self, update: &Update) -> Result<(), BoxError>;
    /// All operations were delivered.
    fn end(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
    /// Polled between operations: return true to cancel.
    fn stop(&self) -> bool {
        false
    }
}

/// A consumer that records every operation (tests, dry runs).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Whether `end` was called.
    pub ended: bool,
    /// `unlock` calls: (origin path, kind, flags), in order; they precede every op.
    pub unlocks: Vec<(Vec<u8>, Kind, u32)>,
    /// `expect` calls: origin paths, in order; they precede every other call.
    pub expects: Vec<Vec<u8>>,
}

impl Consumer for Recorder {
    fn expect(&mut self, origin_path: &[u8], _meta: &crate::stat::Meta) -> Result<(), BoxError> {
        self.expects.push(origin_path.to_vec());
        Ok(())
    }

    fn unlock(&mut self, origin_path: &[u8], kind: Kind, flags: u32) -> Result<(), BoxError> {
        self.unlocks.push((origin_path.to_vec(), kind, flags));
        Ok(())
    }
    fn mk_tmp_dir(&mut self, path: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::MkTmpDir { path: path.to_vec() });
        Ok(())
    }
    fn mkdir(&mut self, path: &[u8], target_path: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Mkdir { path: path.to_vec(), target_path: target_path.to_vec() });
        Ok(())
    }
    fn create(&mut self, path: &[u8], target_path: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Create { path: path.to_vec(), target_path: target_path.to_vec() });
        Ok(())
    }
    fn symlink(
        &mut self,
        path: &[u8],
        target_path: &[u8],
        link_target: &[u8],
    ) -> Result<(), BoxError> {
        self.ops.push(Op::Symlink {
            path: path.to_vec(),
            target_path: target_path.to_vec(),
            link_target: link_target.to_vec(),
        });
        Ok(())
    }
    fn mknod(
        &mut self,
        path: &[u8],
        target_path: &[u8],
        kind: Kind,
        rdev: u64,
    ) -> Result<(), BoxError> {
        self.ops.push(Op::Mknod {
            path: path.to_vec(),
            target_path: target_path.to_vec(),
            kind,
            rdev,
        });
        Ok(())
    }
    fn link(&mut self, path: &[u8], existing: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Link { path: path.to_vec(), existing: existing.to_vec() });
        Ok(())
    }
    fn unlink(&mut self, path: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Unlink { path: path.to_vec() });
        Ok(())
    }
    fn rmdir(&mut self, path: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Rmdir { path: path.to_vec() });
        Ok(())
    }
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), BoxError> {
        self.ops.push(Op::Rename { from: from.to_vec(), to: to.to_vec() });
        Ok(())
    }
    fn update(&mut self, update: &Update) -> Result<(), BoxError> {
        self.ops.push(Op::Update(update.clone()));
        Ok(())
    }
    fn end(&mut self) -> Result<(), BoxError> {
        self.ended = true;
        Ok(())
    }
}
