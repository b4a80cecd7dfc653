//! Whether DEST still holds the stream's origin where the stream will change it, decided from
//! the stream's `expect` records before anything changes (STREAM_FORMAT.md section 5).
//!
//! Each `expect` names an origin object the stream changes, removes, renames or links, with its
//! type, permission bits, owner, link count, size and modification time as the sender read
//! them. DEST's object at that path must match, and must not have changed since the last
//! receive completed: its ctime (which the kernel moves on every change to content, metadata or
//! names, and which nobody can set) must not be after the `settled` time recorded then
//! (`state.rs`). The second test catches what the first cannot see, such as an edit that kept
//! the size and put the mtime back; the first still works where no settled time is known.
//!
//! Pure: the caller stats DEST's objects and passes the results in, so that the decisions are
//! tested without a file system.

use rustix::fs::{FileType, Stat};

use anysend_stream::{ObjectType, Record};

use crate::error::Problem;
use crate::fsutil::{self, Time};
use crate::path::Brief;

/// Changed objects named in a refusal; the rest are counted.
const NAMED: usize = 10;

/// One object of DEST that is not what the stream's origin was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub path: Vec<u8>,
    /// What differs, for people (`mode 0600, the origin has 0644`).
    pub what: String,
}

/// The comparison of a stream's `expect` records with DEST, as they come.
#[derive(Debug, Default)]
pub struct Expectations {
    /// When the last receive completed: no object of DEST had a later ctime then.
    settled: Option<Time>,
    /// Whether owners are compared (only root can have set them).
    owners: bool,
    /// The first [`NAMED`] objects that differ.
    named: Vec<Drift>,
    /// All objects that differ.
    pub differ: u64,
    /// `expect` records compared.
    pub checked: u64,
}

impl Expectations {
    /// Compares against DEST's state after a receive that completed at `settled` (if known);
    /// `owners` when the receiving user can set owners (root).
    pub fn new(settled: Option<Time>, owners: bool) -> Expectations {
        Expectations { settled, owners, ..Expectations::default() }
    }

    /// Compares the `expect` record `rec` with what DEST holds at its path: `found`, its status
    /// (or why it could not be had: a missing object or parent, a symlink on the way).
    pub fn compare(&mut self, rec: &Record, found: Result<Stat, Problem>) {
        let Record::Expect { path, .. } = rec else { return };
        self.checked += 1;
        if let Some(what) = difference(rec, found, self.settled, self.owners) {
            self.differ += 1;
            if self.named.len() < NAMED {
                self.named.push(Drift { path: path.clone(), what });
            }
        }
    }

    /// The objects that differ (the first few) and how many more there are; `None` when DEST
    /// holds the origin everywhere the stream looked.
    pub fn drifted(&self) -> Option<(Vec<Drift>, u64)> {
        (self.differ > 0).then(|| (self.named.clone(), self.differ - self.named.len() as u64))
    }
}

/// What differs between the `expect` record `rec` and DEST's object, if anything.
fn difference(
    rec: &Record,
    found: Result<Stat, Problem>,
    settled: Option<Time>,
    owners: bool,
) -> Option<String> {
    let Record::Expect { otype, mode, uid, gid, nlink, size, mtime_sec, mtime_nsec, .. } = rec
    else {
        return None;
    };
    let st = match found {
        Ok(st) => st,
        Err(Problem::Os { source, .. } | Problem::Parent { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Some("missing".into())
        }
        Err(p) => return Some(p.to_string()),
    };
    let have = object_type(&st);
    if have != Some(*otype) {
        let name = have.map_or("file of unknown type", |t| t.noun());
        return Some(format!("a {name}, the origin has a {}", otype.noun()));
    }
    let dir = *otype == ObjectType::Dir;
    let mut what = Vec::new();
    let st_mode = st.st_mode & 0o7777;
    // A symlink's own mode is not settable on Linux.
    if *otype != ObjectType::Symlink && st_mode != *mode {
        what.push(format!("mode {st_mode:04o}, the origin has {mode:04o}"));
    }
    if owners && (st.st_uid, st.st_gid) != (*uid, *gid) {
        what.push(format!("owner {}:{}, the origin has {uid}:{gid}", st.st_uid, st.st_gid));
    }
    if !dir && st.st_size as u64 != *size {
        what.push(format!("size {}, the origin has {size}", st.st_size));
    }
    if !dir && u64::from(*nlink) != st.st_nlink {
        what.push(format!("{} links, the origin has {nlink}", st.st_nlink));
    }
    let (_, (msec, mnsec)) = fsutil::times(&st);
    // A file system that keeps whole seconds only stores the origin's time without nanoseconds.
    if msec != *mtime_sec || (mnsec != *mtime_nsec && mnsec != 0) {
        what.push(format!(
            "modified {}, the origin {}",
            show_time((msec, mnsec)),
            show_time((*mtime_sec, *mtime_nsec))
        ));
    }
    let ctime = ctime(&st);
    if let Some(s) = settled.filter(|&s| ctime > s) {
        what.push(format!(
            "changed at {}, after the last receive ({})",
            show_time(ctime),
            show_time(s)
        ));
    }
    (!what.is_empty()).then(|| what.join("; "))
}

fn object_type(st: &Stat) -> Option<ObjectType> {
    Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => ObjectType::File,
        FileType::Directory => ObjectType::Dir,
        FileType::Symlink => ObjectType::Symlink,
        FileType::Fifo => ObjectType::Fifo,
        FileType::Socket => ObjectType::Socket,
        FileType::CharacterDevice => ObjectType::CharDevice,
        FileType::BlockDevice => ObjectType::BlockDevice,
        FileType::Unknown => return None,
    })
}

/// The status change time of a stat.
#[allow(clippy::unnecessary_cast)] // the field types differ between architectures
pub fn ctime(st: &Stat) -> Time {
    (st.st_ctime as i64, st.st_ctime_nsec as u32)
}

fn show_time((sec, nsec): Time) -> String {
    format!("{sec}.{nsec:09}")
}

/// The paths that differ, for a message: the named ones with what differs, and a count of the
/// rest.
pub fn describe(named: &[Drift], more: u64) -> String {
    let mut s: Vec<String> =
        named.iter().map(|d| format!("{} ({})", Brief(&d.path), d.what)).collect();
    if more > 0 {
        s.push(format!("and {more} more"));
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(p: &std::path::Path) -> Stat {
        rustix::fs::lstat(p).unwrap()
    }

    fn expect_of(st: &Stat) -> Record {
        let (_, (s, n)) = fsutil::times(st);
        let dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        Record::Expect {
            path: b"f".to_vec(),
            otype: object_type(st).unwrap(),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: if dir { 0 } else { st.st_nlink as u32 },
            size: if dir { 0 } else { st.st_size as u64 },
            mtime_sec: s,
            mtime_nsec: n,
        }
    }

    #[test]
    fn an_object_as_expected_and_unchanged_since_passes() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let st = stat_of(&f);
        let rec = expect_of(&st);
        assert_eq!(difference(&rec, Ok(st), Some(ctime(&st)), true), None);
        assert_eq!(difference(&rec, Ok(st), None, true), None);
        let dst = stat_of(t.path());
        assert_eq!(difference(&expect_of(&dst), Ok(dst), Some(ctime(&dst)), true), None);
    }

    #[test]
    fn each_property_and_a_later_change_is_named() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let st = stat_of(&f);
        let rec = expect_of(&st);
        let changed = |edit: &dyn Fn(&mut Record)| {
            let mut r = rec.clone();
            edit(&mut r);
            difference(&r, Ok(st), None, true).unwrap_or_default()
        };
        assert!(changed(&|r| if let Record::Expect { mode, .. } = r {
            *mode ^= 0o070
        })
        .contains("mode"));
        assert!(changed(&|r| if let Record::Expect { size, .. } = r {
            *size += 1
        })
        .contains("size"));
        assert!(changed(&|r| if let Record::Expect { nlink, .. } = r {
            *nlink += 1
        })
        .contains("links"));
        assert!(changed(&|r| if let Record::Expect { uid, .. } = r {
            *uid += 1
        })
        .contains("owner"));
        assert!(changed(&|r| if let Record::Expect { mtime_sec, .. } = r {
            *mtime_sec -= 1
        })
        .contains("modified"));
        assert!(changed(&|r| if let Record::Expect { otype, .. } = r {
            *otype = ObjectType::Dir
        })
        .contains("a regular file, the origin has a directory"));
        // Owners only where they could be set.
        let mut r = rec.clone();
        if let Record::Expect { uid, .. } = &mut r {
            *uid += 1;
        }
        assert_eq!(difference(&r, Ok(st), None, false), None);
        // A change after the last receive, whatever it kept.
        let (sec, nsec) = ctime(&st);
        let before = if nsec > 0 { (sec, nsec - 1) } else { (sec - 1, 999_999_999) };
        assert!(difference(&rec, Ok(st), Some(before), true)
            .unwrap()
            .contains("after the last receive"));
        let gone = Problem::Os { step: "", source: std::io::ErrorKind::NotFound.into() };
        assert_eq!(difference(&rec, Err(gone), None, true).as_deref(), Some("missing"));
    }

    #[test]
    fn the_first_few_are_named_and_the_rest_counted() {
        let mut e = Expectations::new(None, false);
        let gone = || Err(Problem::Os { step: "", source: std::io::ErrorKind::NotFound.into() });
        let rec = |i: u32| Record::Expect {
            path: format!("f{i}").into_bytes(),
            otype: ObjectType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
        };
        assert!(e.drifted().is_none());
        for i in 0..13 {
            e.compare(&rec(i), gone());
        }
        let (named, more) = e.drifted().unwrap();
        assert_eq!((named.len(), more, e.checked), (NAMED, 3, 13));
        assert!(describe(&named, more).ends_with("f9 (missing), and 3 more"));
    }
}
