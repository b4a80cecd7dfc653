//! Typed errors for the whole crate.
//!
//! Every error that comes from disk says which side (origin or target) and which path (as bytes,
//! relative to that side's root) it concerns, because "ENOENT" alone is useless when two trees
//! are being walked at once. Planner bugs surface as `Internal` instead of a panic so that a
//! sender can abort a stream cleanly.

use std::fmt;

/// Which snapshot a path or object belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The snapshot the receiver already holds.
    Origin,
    /// The snapshot the receiver should end up with.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Origin => "origin",
            Side::Target => "target",
        })
    }
}

/// Byte path shown lossily (paths are never assumed to be UTF-8).
pub(crate) struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        write!(f, "{}", String::from_utf8_lossy(self.0).escape_debug())
    }
}

/// A boxed error returned by a [`crate::Consumer`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of walking and planning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on one of the snapshots failed.
    #[error("{side} {}: {what}: {source}", show(path))]
    Io {
        side: Side,
        /// Path relative to that side's root.
        path: Vec<u8>,
        /// Which operation failed (`openat`, `getdents64`, `statx`, `read`, ...).
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The snapshots disagree with themselves (e.g. a file changed while being read, a link whose
    /// parent was never seen): the input is not a stable snapshot, or the inventory is malformed.
    #[error("inconsistent input: {0}")]
    Inconsistent(String),
    /// A tree that is not a read-only snapshot changed while it was walked or read (a directory
    /// listed while entries moved, a name now naming another object, an object gone): a plan
    /// made from it could mix two states of its namespace, so none is made.
    #[error("{} changed while it was read: {} ({what})", side_upper(*side), show(path))]
    Changed {
        side: Side,
        /// Path relative to that side's root.
        path: Vec<u8>,
        /// What was seen to move.
        what: String,
    },
    /// The consumer returned an error; planning stopped.
    #[error("consumer failed: {0}")]
    Consumer(#[source] BoxError),
    /// The consumer asked to stop (`Consumer::stop` returned true).
    #[error("stopped by consumer")]
    Stopped,
    /// A planner invariant was violated: a bug in diff-core, never a property of the input.
    #[error("internal planner error: {0}")]
    Internal(String),
}

fn side_upper(side: Side) -> &'static str {
    match side {
        Side::Origin => "ORIGIN",
        Side::Target => "TARGET",
    }
}

fn show(p: &[u8]) -> String {
    Shown(p).to_string()
}

impl Error {
    pub(crate) fn io(side: Side, path: &[u8], what: &'static str, e: rustix::io::Errno) -> Self {
        Error::Io { side, path: path.to_vec(), what, source: e.into() }
    }

    pub(crate) fn changed(side: Side, path: &[u8], what: impl Into<String>) -> Self {
        Error::Changed { side, path: path.to_vec(), what: what.into() }
    }

    /// For a tree that may change under the walk (`live`): an object that vanished between
    /// being listed and being opened (ENOENT, ENOTDIR, ESTALE) is the tree changing, not a
    /// failure to read it. A read-only snapshot's errors stay what they are.
    pub(crate) fn drift(self, live: bool) -> Self {
        use rustix::io::Errno;
        match self {
            Error::Io { side, path, source, what }
                if live
                    && source.raw_os_error().is_some_and(|n| {
                        [Errno::NOENT, Errno::NOTDIR, Errno::STALE]
                            .iter()
                            .any(|e| e.raw_os_error() == n)
                    }) =>
            {
                Error::Changed { side, path, what: format!("{what}: {source}") }
            }
            e => e,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    /// Issue 19 (8): a file that vanished while a live tree was walked is the tree changing
    /// (anysend exits 4, "changed while read"), not a read failure (exit 1); in a read-only
    /// snapshot the same error stays a read failure.
    #[test]
    fn an_object_gone_from_a_live_tree_is_a_change() {
        for errno in [Errno::NOENT, Errno::NOTDIR, Errno::STALE] {
            let e = Error::io(Side::Target, b"d/f", "open", errno).drift(true);
            assert!(matches!(&e, Error::Changed { path, .. } if path == b"d/f"), "{e}");
            assert!(e.to_string().contains("TARGET changed while it was read"), "{e}");
            let e = Error::io(Side::Target, b"d/f", "open", errno).drift(false);
            assert!(matches!(e, Error::Io { .. }), "{e}");
        }
        // Other failures stay what they are, live or not.
        let e = Error::io(Side::Target, b"d/f", "open", Errno::ACCESS).drift(true);
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
