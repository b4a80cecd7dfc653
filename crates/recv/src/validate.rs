//! What a record may ask for, decided from the record alone before anything is touched.
//!
//! One function serves both the dry run and the applier (which calls it first for every record),
//! so a dry run refuses exactly what a real receive would refuse for the record's own content:
//! path rules, records that would create, remove or rename DEST itself, and the command-line
//! policies (`--no-devices`, `--no-setuid`). What only the file system can tell (a symlink on the
//! way, a missing parent) is found when applying.

use anysend_stream::{NodeType, Record};

use crate::config::Policy;
use crate::error::Problem;
use crate::path::{self, PathProblem};

/// Checks one record against the path rules and the policy.
pub fn check(rec: &Record, policy: &Policy) -> Result<(), Problem> {
    use Record::*;
    match rec {
        Mkdir { path } | Create { path } | Symlink { path, .. } => {
            not_root(path, "path", "created")
        }
        Mknod { path, node, major, minor } => {
            not_root(path, "path", "created")?;
            if policy.no_devices && matches!(node, NodeType::CharDevice | NodeType::BlockDevice) {
                return Err(Problem::Policy(format!(
                    "--no-devices refuses device nodes (this one is a {} device {major}:{minor})",
                    node.as_str()
                )));
            }
            Ok(())
        }
        Link { path, existing } => {
            not_root(path, "path", "created")?;
            not_root(existing, "existing", "hard-linked")
        }
        Unlink { path } | Rmdir { path } => not_root(path, "path", "removed"),
        Rename { from, to } => {
            not_root(from, "from", "renamed")?;
            not_root(to, "to", "replaced")
        }
        Write { path, .. }
        | Hole { path, .. }
        | Truncate { path, .. }
        | CopyFromOrigin { path, .. } => not_root(path, "path", "written to (it is a directory)"),
        Chmod { path, mode } => {
            rules(path, "path")?;
            if policy.no_setuid && mode & 0o6000 != 0 {
                return Err(Problem::Policy(format!(
                    "--no-setuid refuses mode {mode:04o}, which has the setuid or setgid bit"
                )));
            }
            Ok(())
        }
        Chown { path, uid, gid } => {
            rules(path, "path")?;
            // -1 tells chown(2) "leave unchanged": it cannot be set, and the stream cannot mean it.
            for (what, v) in [("uid", uid), ("gid", gid)] {
                if *v == u32::MAX {
                    return Err(Problem::Invalid(format!(
                        "{what} 4294967295 (-1) cannot be set on Linux"
                    )));
                }
            }
            Ok(())
        }
        SetXattr { path, name, .. } => {
            rules(path, "path")?;
            // File capabilities raise privileges on exec as setuid does (cap_setuid=ep is
            // root's power in a file): the same policy refuses them.
            if policy.no_setuid && name.as_slice() == b"security.capability" {
                return Err(Problem::Policy(
                    "--no-setuid refuses file capabilities (xattr security.capability)".into(),
                ));
            }
            Ok(())
        }
        RemoveXattr { path, .. } | Utimes { path, .. } => rules(path, "path"),
        SetFlags { path, .. } | Expect { path, .. } => rules(path, "path"),
        End { .. } => Ok(()),
    }
}

/// Checks a record of a full stream: there is no origin to copy from or to compare with.
pub fn without_origin(rec: &Record) -> Result<(), Problem> {
    match rec {
        Record::CopyFromOrigin { .. } | Record::Expect { .. } => {
            Err(Problem::Invalid(format!("`{}` in a full stream, which has no origin", rec.name())))
        }
        _ => Ok(()),
    }
}

fn rules(p: &[u8], field: &'static str) -> Result<(), Problem> {
    path::check(p).map_err(|problem| Problem::BadPath { field, problem })
}

fn not_root(p: &[u8], field: &'static str, what: &'static str) -> Result<(), Problem> {
    rules(p, field)?;
    if path::is_root(p) {
        return Err(Problem::BadPath { field, problem: PathProblem::Root(what) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(rec: Record, policy: Policy) -> bool {
        check(&rec, &policy).is_err_and(|p| p.is_refusal())
    }

    #[test]
    fn root_can_carry_metadata_only() {
        let p = Policy::default();
        assert!(check(&Record::Chmod { path: vec![], mode: 0o755 }, &p).is_ok());
        assert!(check(
            &Record::Utimes {
                path: vec![],
                atime_sec: 0,
                atime_nsec: 0,
                mtime_sec: 0,
                mtime_nsec: 0
            },
            &p
        )
        .is_ok());
        assert!(refused(Record::Mkdir { path: vec![] }, p));
        assert!(refused(Record::Rmdir { path: vec![] }, p));
        assert!(refused(Record::Rename { from: vec![], to: b"x".to_vec() }, p));
        assert!(refused(Record::Rename { from: b"x".to_vec(), to: vec![] }, p));
        assert!(refused(Record::Link { path: b"x".to_vec(), existing: vec![] }, p));
        assert!(refused(Record::Truncate { path: vec![], size: 0 }, p));
    }

    #[test]
    fn every_path_field_is_checked() {
        let p = Policy::default();
        assert!(refused(
            Record::Link { path: b"x".to_vec(), existing: b"../canary/f".to_vec() },
            p
        ));
        assert!(refused(
            Record::Link { path: b"x".to_vec(), existing: b"/etc/passwd".to_vec() },
            p
        ));
        assert!(refused(Record::Rename { from: b"../canary/f".to_vec(), to: b"x".to_vec() }, p));
        assert!(refused(Record::Rename { from: b"x".to_vec(), to: b"../x".to_vec() }, p));
        assert!(refused(
            Record::SetXattr { path: b"a/./b".to_vec(), name: b"user.x".to_vec(), value: vec![] },
            p
        ));
    }

    #[test]
    fn policies() {
        let strict = Policy { no_devices: true, no_setuid: true, strict_owner: false };
        let dev =
            Record::Mknod { path: b"d".to_vec(), node: NodeType::CharDevice, major: 1, minor: 3 };
        assert!(check(&dev, &Policy::default()).is_ok());
        assert!(refused(dev, strict));
        let fifo = Record::Mknod { path: b"f".to_vec(), node: NodeType::Fifo, major: 0, minor: 0 };
        assert!(check(&fifo, &strict).is_ok());
        assert!(refused(Record::Chmod { path: b"f".to_vec(), mode: 0o4755 }, strict));
        assert!(refused(Record::Chmod { path: b"f".to_vec(), mode: 0o2755 }, strict));
        assert!(check(&Record::Chmod { path: b"f".to_vec(), mode: 0o1777 }, &strict).is_ok());
        let cap = |name: &[u8]| Record::SetXattr {
            path: b"f".to_vec(),
            name: name.to_vec(),
            value: vec![1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        assert!(refused(cap(b"security.capability"), strict));
        assert!(check(&cap(b"security.capability"), &Policy::default()).is_ok());
        assert!(check(&cap(b"user.capability"), &strict).is_ok());
        assert!(refused(
            Record::Chown { path: b"f".to_vec(), uid: u32::MAX, gid: 0 },
            Policy::default()
        ));
    }
}
