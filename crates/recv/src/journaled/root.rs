//! DEST's own immutable and append-only flags during a journaled receive.
//!
//! A DEST whose root carries `chattr +i` or `+a` (set by an earlier receive of a source whose
//! root has them) refuses the holding directory a receive makes in it, and every entry made,
//! renamed or removed directly in it; the stream lifts them only where it changes the root's
//! entries, not where it changes deeper objects. So, like every immutable or append-only flag,
//! the root's come after everything else that touches it: a receive lifts them before its
//! holding directory is made and keeps them lifted until that directory is gone, then sets what
//! the stream says (its `set_flags` of the root, if it has one; otherwise what the root had).
//!
//! Each time the flags to set at the end change, the journal says so first in a *root note*: an
//! ahead entry whose only step is `Undo::Flags` of the root (ahead entries do not move the
//! records in flight). The last note is what a resume sets at the end; the first `Flags` step
//! of the root anywhere in the journal is what the root had before the receive, which an abort
//! (or a receive that never began) puts back after everything else.

use anysend_stream::Record;
use rustix::fd::BorrowedFd;
use rustix::fs::{self as fs, IFlags};

use crate::journal::{Entry, Journal, Loaded, Undo};

/// The flags that refuse changes.
const LOCKING: IFlags = IFlags::IMMUTABLE.union(IFlags::APPEND);

/// Writes a root note at record `index`, durably (what it says must survive the lift after it).
fn note(journal: &mut Journal, index: u64, flags: u32) -> std::io::Result<()> {
    journal.append(&Entry::ahead(index, vec![Undo::Flags { path: Vec::new(), flags }]))?;
    journal.sync()
}

/// Lifts immutable and append-only from DEST's root `root`, if it has them, after a note of
/// what it has, unless `held` says already what to set at the end (a resume, or the completion
/// of a receive that held them all along). `index`: the record the note is written at.
pub(super) fn hold(
    journal: &mut Journal,
    root: BorrowedFd<'_>,
    index: u64,
    held: &mut Option<u32>,
) -> std::io::Result<()> {
    // A file system without inode flags has nothing to lift.
    let Ok(now) = fs::ioctl_getflags(root) else { return Ok(()) };
    if !now.intersects(LOCKING) {
        return Ok(());
    }
    if held.is_none() {
        note(journal, index, now.bits())?;
        *held = Some(now.bits());
    }
    fs::ioctl_setflags(root, now - LOCKING)?;
    Ok(())
}

/// The flags the stream's record `rec` sets on DEST's root, if it is one that does.
pub(super) fn set_by(rec: &Record) -> Option<u32> {
    match rec {
        Record::SetFlags { path, flags } if path.is_empty() => Some(*flags),
        _ => None,
    }
}

/// Before record `index`, the stream's `set_flags` of the root (`flags`), is applied: when it
/// locks the root and nothing is held yet, what the root has now is noted first, the flags an
/// abort puts back.
pub(super) fn before_set(
    journal: &mut Journal,
    root: BorrowedFd<'_>,
    index: u64,
    flags: u32,
    held: &mut Option<u32>,
) -> std::io::Result<()> {
    if held.is_some() || !IFlags::from_bits_retain(flags).intersects(LOCKING) {
        return Ok(());
    }
    if let Ok(now) = fs::ioctl_getflags(root) {
        note(journal, index, now.bits())?;
        *held = Some(now.bits());
    }
    Ok(())
}

/// After it: what the root has now (what the file system took of the stream's flags) is noted
/// as the flags to set at the end, and lifted again. A resume that stops before the note
/// applies the record again.
pub(super) fn after_set(
    journal: &mut Journal,
    root: BorrowedFd<'_>,
    index: u64,
    held: &mut Option<u32>,
) -> std::io::Result<()> {
    if held.is_none() {
        return Ok(());
    }
    let now = fs::ioctl_getflags(root)?;
    note(journal, index, now.bits())?;
    *held = Some(now.bits());
    if now.intersects(LOCKING) {
        fs::ioctl_setflags(root, now - LOCKING)?;
    }
    Ok(())
}

/// The flags to set on the root at the end, as the journal's last root note says.
pub fn noted(loaded: &Loaded) -> Option<u32> {
    let notes = loaded.entries.iter().filter(|e| e.ahead).rev();
    notes.flat_map(|e| e.undo.iter()).find_map(|u| match u {
        Undo::Flags { path, flags } if path.is_empty() => Some(*flags),
        _ => None,
    })
}

/// The flags DEST's root had before the receive, if the journal holds them: its first `Flags`
/// step of the root (a note, or the undo of the stream's `set_flags` of the root).
pub fn original(loaded: &Loaded) -> Option<u32> {
    loaded.entries.iter().flat_map(|e| e.undo.iter()).find_map(|u| match u {
        Undo::Flags { path, flags } if path.is_empty() => Some(*flags),
        _ => None,
    })
}

/// Sets `flags` on the root (after everything else that touched it).
pub fn set(root: BorrowedFd<'_>, flags: u32) -> std::io::Result<()> {
    Ok(fs::ioctl_setflags(root, IFlags::from_bits_retain(flags))?)
}

/// Lifts immutable and append-only from the root for an abort, whatever it has (the flags to
/// put back are the journal's).
pub fn lift(root: BorrowedFd<'_>) -> std::io::Result<()> {
    match fs::ioctl_getflags(root) {
        Ok(now) if now.intersects(LOCKING) => Ok(fs::ioctl_setflags(root, now - LOCKING)?),
        _ => Ok(()),
    }
}
