//! Plans as the tests read them: the path an operation acts on, and an operation as one line.
//!
//! The planner tests (hazards), the walker tests and the full-plan tests all look at ops this
//! way; one spelling keeps their expectations and failure messages alike. Paths are bytes and
//! are shown escaped (`anysend_testbed::escape`), never decoded as UTF-8.

use anysend_diff_core::Op;
use anysend_testbed::escape::escape_bytes_short;

/// The path an op makes, removes or changes: a rename's new name, an update's path.
pub fn path_of(op: &Op) -> &[u8] {
    match op {
        Op::MkTmpDir { path }
        | Op::Mkdir { path, .. }
        | Op::Create { path, .. }
        | Op::Symlink { path, .. }
        | Op::Mknod { path, .. }
        | Op::Link { path, .. }
        | Op::Unlink { path }
        | Op::Rmdir { path } => path,
        Op::Rename { to, .. } => to,
        Op::Update(u) => &u.path,
    }
}

/// `op` as a line such as `rename a b/a` or `link x -> y`, each path cut after `max` bytes
/// (deep trees have paths longer than a message can bear).
pub fn op_line(op: &Op, max: usize) -> String {
    let s = |p: &[u8]| escape_bytes_short(p, max);
    match op {
        Op::MkTmpDir { path } => format!("mktmpdir {}", s(path)),
        Op::Mkdir { path, .. } => format!("mkdir {}", s(path)),
        Op::Create { path, .. } => format!("create {}", s(path)),
        Op::Symlink { path, .. } => format!("symlink {}", s(path)),
        Op::Mknod { path, .. } => format!("mknod {}", s(path)),
        Op::Link { path, existing } => format!("link {} -> {}", s(path), s(existing)),
        Op::Unlink { path } => format!("unlink {}", s(path)),
        Op::Rmdir { path } => format!("rmdir {}", s(path)),
        Op::Rename { from, to } => format!("rename {} {}", s(from), s(to)),
        Op::Update(u) => format!("update {}", s(&u.path)),
    }
}
