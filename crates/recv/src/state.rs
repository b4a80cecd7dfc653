//! What DEST last received, kept outside DEST, and the base check built on it.
//!
//! Why outside: a received tree must equal its snapshot under `rsync -naHAX`, `diff -r` and
//! `getfattr -R`, so no marker file or xattr may be put inside DEST. The state lives in a state
//! directory instead (`config.rs` resolves it), one file per DEST, named from DEST's canonical
//! path: `<readable tail>-<FNV-1a 64 of the path, hex>.state`. The file repeats the path and
//! DEST's identity ([`Identity`]: its file system's UUID and its inode), so a hash collision or
//! a DEST replaced by another directory is noticed rather than trusted.
//!
//! A DEST reached by another path than the one it was received as (a bind mount, a mount point
//! renamed or moved) has no state file of its own: [`find`] then looks for the state file that
//! describes DEST's identity, by reading the state directory's files (one per DEST, a few
//! hundred bytes each: a scan costs less than an index that a kill or a hand could leave out of
//! step with the files it points at, and is made only when the path finds nothing). Such a
//! state is taken only if the path it names is gone or is that very directory now, so that a
//! copy of the file system (same UUID) or an inode number used again does not inherit it. The
//! state file keeps its name; the receive records DEST's new path in it.
//!
//! Identity is (file system UUID, inode), not (st_dev, inode): st_dev is a number the kernel
//! hands out at mount time, and a disk can come back with another one after a reboot. State
//! files written before the UUID was recorded (`dest_device` and `dest_inode` only) are still
//! read: their device number is compared instead, and the UUID is added when the state is next
//! written.
//!
//! The file is small `key=value` text (byte strings escaped as `anyrecv --dump` shows them) so a
//! person can read it, and unknown keys are ignored so later versions can add some. It is
//! replaced atomically (temp file, fsync, rename, fsync of the directory). A receive first
//! records the stream it is applying (`partial_*` keys) before it changes DEST, and records the
//! new target only after the end record verified and DEST was synced: a receive that stops
//! half-way leaves a state that says so, and the next incremental is refused until DEST is
//! restored (or `--force`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anysend_stream::dump::Escaped;
use anysend_stream::{Id, StreamHeader};

use crate::path::Shown;

/// The version of the state file format written.
const FORMAT: u32 = 1;

/// One completed receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub target: Id,
    pub stream: Id,
    pub origin: Option<Id>,
    /// The stream's creation time (seconds, nanoseconds).
    pub created: (i64, u32),
    pub sender: Vec<u8>,
    /// When the receive completed (seconds, nanoseconds since 1970).
    pub completed: (i64, u32),
    /// No object of DEST had a later ctime when the receive completed (and every later change
    /// gets one): what `drift.rs` compares with. `None` in a state written by an older anyrecv.
    pub settled: Option<(i64, u32)>,
    /// The length of DEST's names log (`names.rs`) after the receive.
    pub names_len: Option<u64>,
    /// The names the sender gave the snapshots (stream header, 1.2), for people.
    pub target_label: Option<Vec<u8>>,
    pub origin_label: Option<Vec<u8>>,
    /// Bytes of the stream read (of its last part, when the receive was resumed).
    pub bytes: Option<u64>,
}

/// A receive that began changing DEST and has not completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub stream: Id,
    pub target: Id,
    pub origin: Option<Id>,
    /// Index of the first record not (completely) applied.
    pub next_record: u64,
    pub started: (i64, u32),
    /// The target's label in the stream header, if it has one.
    pub target_label: Option<Vec<u8>>,
}

/// What identifies DEST's directory, whatever path reaches it: its file system and its inode
/// number (`dest.rs` reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The file system, by what survives a reboot where there is one: `uuid:<hex>`
    /// (FS_IOC_GETFSUUID), else `fsid:<hex>` (statfs), else `dev:<st_dev>`; followed by
    /// `/subvol:<id>` on a file system with subvolumes (btrfs), whose inode numbers repeat in
    /// each.
    pub fs: String,
    /// The device number now: what older state files recorded instead of `fs`, and what tells
    /// whether two paths reach one directory now.
    pub device: u64,
    pub inode: u64,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file system {}, inode {}", self.fs, self.inode)
    }
}

/// The state of one DEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// DEST's canonical path (the last one it was received through).
    pub dest: Vec<u8>,
    /// DEST's file system ([`Identity::fs`]); `None` in a state written by an older anyrecv,
    /// which recorded only the device number.
    pub dest_fs: Option<String>,
    pub dest_device: u64,
    pub dest_inode: u64,
    pub last: Option<Received>,
    pub partial: Option<Partial>,
}

/// What DEST looks like before a receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestKind {
    Missing,
    Empty,
    /// Not empty; one of its entries, for the message.
    NotEmpty(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestInfo {
    pub kind: DestKind,
    /// DEST's identity, when it exists.
    pub identity: Option<Identity>,
    /// The state file that applies to DEST, for messages.
    pub state_file: PathBuf,
}

/// The base check's answer when the stream may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A full stream into an empty or new DEST.
    Full,
    /// An incremental stream whose origin is what DEST last received.
    Incremental,
    /// `--force` overrode this refusal.
    Forced(Refusal),
}

/// Why DEST refuses a stream. Nothing has been applied when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{dest}: not empty (it holds \"{}\"); a full stream creates every entry itself, so it \
         goes only into an empty or new directory",
        Escaped(.entry)
    )]
    NotEmpty { dest: String, entry: Vec<u8> },
    #[error("{dest}: does not exist; an incremental stream applies on top of its origin {origin}, which DEST must hold")]
    Missing { dest: String, origin: Id },
    #[error(
        "{dest}: the stream's origin is {need}, but DEST last received {have}; applying it \
         would build on the wrong base"
    )]
    OriginMismatch { dest: String, need: Id, have: Id },
    #[error(
        "{dest}: no record of an earlier receive (no state file {}), so nothing shows that DEST \
         holds the stream's origin {origin}",
        .state_file.display()
    )]
    NoState { dest: String, origin: Id, state_file: PathBuf },
    #[error(
        "{dest}: an earlier receive of stream {stream} (target {target}) stopped at record \
         {next_record}; DEST is partly updated"
    )]
    Unfinished { dest: String, stream: Id, target: Id, next_record: u64 },
    #[error(
        "{dest}: the state file {} describes {was} but DEST is now {now}: DEST was replaced \
         after its last receive",
        .state_file.display()
    )]
    Replaced { dest: String, state_file: PathBuf, was: String, now: String },
    #[error(
        "{dest}: changed since its last receive where this stream would change it ({count} \
         {}): {changed}",
        if *.count == 1 { "object" } else { "objects" }
    )]
    Drifted { dest: String, count: u64, changed: String },
    #[error("{dest}: another anyrecv is receiving into it (state lock {} is held)", .lock.display())]
    Busy { dest: String, lock: PathBuf },
    #[error("{dest}: exists and is not a directory")]
    NotADirectory { dest: String },
    #[error("{dest}: does not exist, and neither does {parent}, where it would be made")]
    NoParent { dest: String, parent: String },
    #[error(
        "{dest}: --atomic needs a file system that clones files (FICLONE: btrfs, XFS with \
         reflink=1); this one does not"
    )]
    NoReflink { dest: String },
    #[error(
        "{dest}: no record of a completed receive (no state file {}, or one without a last \
         receive)",
        .state_file.display()
    )]
    NothingReceived { dest: String, state_file: PathBuf },
    #[error("{dest}: no interrupted receive to resume or abort")]
    NothingToResume { dest: String },
    #[error(
        "{dest}: an earlier receive stopped, but its journal is missing (or belongs to another \
         stream), so it can be neither resumed nor rolled back"
    )]
    NoJournal { dest: String },
    #[error(
        "{dest}: this is stream {stream} resumed at record {first_record} (data offset \
         {data_offset}), but {}",
        match .have {
            Some((s, n)) => format!("DEST's interrupted receive is stream {s}, to continue at record {n} (data offset 0)"),
            None => "DEST has no interrupted receive".to_string(),
        }
    )]
    ResumeMismatch {
        dest: String,
        stream: Id,
        first_record: u64,
        data_offset: u64,
        have: Option<(Id, u64)>,
    },
}

impl Refusal {
    /// What a person should do.
    pub fn hint(&self) -> String {
        match self {
            // A fresh ext4 file system's root holds lost+found: the replica goes beneath it.
            Refusal::NotEmpty { entry, .. } if entry == b"lost+found" => "DEST looks like the \
                 root of a file system (it holds lost+found), which is never empty: receive into \
                 a directory beneath it, e.g. DEST/replica (anyrecv makes it)."
                .into(),
            Refusal::NotEmpty { .. } => "Receive a full stream into a new or empty directory, \
                 or send an incremental stream from the snapshot DEST holds."
                .into(),
            Refusal::Missing { .. } => "Receive the full stream of the origin first, or check \
                 the DEST path."
                .into(),
            Refusal::OriginMismatch { have, .. } => format!(
                "Send an incremental stream from {have} (what DEST holds), or a full stream \
                 into an empty directory. If you know DEST equals the stream's origin, --force \
                 applies it anyway."
            ),
            Refusal::NoState { .. } => "Receive a full stream first, or point --state-dir (or \
                 ANYRECV_STATE_DIR) at the state directory of the earlier receive. If you know \
                 DEST equals the stream's origin, --force applies it anyway."
                .into(),
            Refusal::Unfinished { .. } => "Resume it: anysend --resume \"$(anyrecv \
                 --resume-token DEST)\" [--from ORIGIN] TARGET | anyrecv DEST (the same stream \
                 sent again from its start is accepted too); or roll it back: anyrecv --abort \
                 DEST. --force applies this stream anyway (and drops the interrupted receive's \
                 journal)."
                .into(),
            Refusal::Replaced { .. } => "If DEST was restored from a copy of the same tree, \
                 --force applies anyway; otherwise receive a full stream into an empty directory."
                .into(),
            Refusal::Drifted { .. } => "Nothing was applied. `anyrecv --check DEST` lists \
                 every change made to DEST since its last receive. Put those objects back as \
                 they were (or receive a full stream into an empty directory); --force applies \
                 this stream over them anyway (what was changed there is overwritten, or \
                 merged where the stream changes part of a file)."
                .into(),
            Refusal::Busy { .. } => "Wait for the other receive to finish.".into(),
            Refusal::NotADirectory { .. } => "Give a directory as DEST.".into(),
            Refusal::NoParent { parent, .. } => {
                format!("Create the directories above DEST first (mkdir -p {parent}): anyrecv makes DEST itself, not its parents.")
            }
            Refusal::NoReflink { .. } => "Receive without --atomic (the receive is journaled: \
                 resumable and abortable), or put DEST on btrfs or XFS made with reflink=1."
                .into(),
            Refusal::NothingReceived { .. } => "Give the DEST a stream was received into, and \
                 --state-dir (or ANYRECV_STATE_DIR) if that receive used another state \
                 directory."
                .into(),
            Refusal::NothingToResume { .. } => "Nothing to do: DEST's last receive completed \
                 (or DEST never received anything)."
                .into(),
            Refusal::NoJournal { .. } => "Restore DEST from its origin snapshot and receive \
                 with --force, or receive a full stream into an empty directory."
                .into(),
            Refusal::ResumeMismatch { .. } => "Make the resumed stream from the token DEST \
                 gives: anysend --resume \"$(anyrecv --resume-token DEST)\" [--from ORIGIN] \
                 TARGET."
                .into(),
        }
    }

    /// Whether `--force` may override it.
    pub fn forceable(&self) -> bool {
        matches!(
            self,
            Refusal::OriginMismatch { .. }
                | Refusal::Drifted { .. }
                | Refusal::NoState { .. }
                | Refusal::Unfinished { .. }
                | Refusal::Replaced { .. }
        )
    }
}

/// Decides whether a stream may be applied to DEST. Pure: everything it needs is passed in.
pub fn check_base(
    header: &StreamHeader,
    dest_name: &str,
    dest: &DestInfo,
    state: Option<&State>,
    force: bool,
) -> Result<Verdict, Refusal> {
    let d = || dest_name.to_string();
    let Some(origin) = header.origin else {
        return match &dest.kind {
            DestKind::Missing | DestKind::Empty => Ok(Verdict::Full),
            DestKind::NotEmpty(entry) => Err(Refusal::NotEmpty { dest: d(), entry: entry.clone() }),
        };
    };
    let now = match (&dest.kind, &dest.identity) {
        (DestKind::Missing, _) | (_, None) => return Err(Refusal::Missing { dest: d(), origin }),
        (_, Some(id)) => id,
    };
    let refusal = match state {
        None => Some(Refusal::NoState { dest: d(), origin, state_file: dest.state_file.clone() }),
        Some(s) if !s.describes(now) => Some(Refusal::Replaced {
            dest: d(),
            state_file: dest.state_file.clone(),
            was: s.identity_text(),
            now: now.to_string(),
        }),
        Some(State { partial: Some(p), .. }) => Some(Refusal::Unfinished {
            dest: d(),
            stream: p.stream,
            target: p.target,
            next_record: p.next_record,
        }),
        Some(State { last: None, .. }) => {
            Some(Refusal::NoState { dest: d(), origin, state_file: dest.state_file.clone() })
        }
        Some(State { last: Some(l), .. }) if l.target != origin => {
            Some(Refusal::OriginMismatch { dest: d(), need: origin, have: l.target })
        }
        Some(_) => None,
    };
    match refusal {
        None => Ok(Verdict::Incremental),
        Some(r) if force && r.forceable() => Ok(Verdict::Forced(r)),
        Some(r) => Err(r),
    }
}

/// The state file of a DEST with this canonical path, inside `state_dir`.
pub fn state_file(state_dir: &Path, canonical_dest: &Path) -> PathBuf {
    let bytes = canonical_dest.as_os_str().as_bytes();
    let readable: String = bytes
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => b as char,
            b'/' => '-',
            _ => '_',
        })
        .collect();
    let readable = readable.trim_start_matches('-');
    // The tail is the part that tells DESTs apart for a person; the hash does it for anyrecv.
    let tail: String = {
        let chars: Vec<char> = readable.chars().collect();
        chars[chars.len().saturating_sub(48)..].iter().collect()
    };
    let tail = if tail.is_empty() { "root".to_string() } else { tail };
    state_dir.join(format!("{tail}-{:016x}.state", fnv1a64(bytes)))
}

/// FNV-1a, 64 bits: stable across versions and platforms, which a file name must be.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl State {
    /// The text of the state file.
    pub fn to_text(&self) -> String {
        let id = |i: &Id| i.to_string();
        let opt = |i: &Option<Id>| i.as_ref().map_or_else(|| "none".to_string(), id);
        let t = |(s, n): (i64, u32)| format!("{s}.{n:09}");
        let mut o = String::new();
        o.push_str(
            "# anyrecv state of one destination: what it last received. Written by anyrecv;\n",
        );
        o.push_str("# do not edit (anyrecv --help, section STATE).\n");
        o.push_str(&format!("format={FORMAT}\n"));
        o.push_str(&format!("dest={}\n", Escaped(&self.dest)));
        if let Some(fs) = &self.dest_fs {
            o.push_str(&format!("dest_fs={fs}\n"));
        }
        o.push_str(&format!("dest_device={}\n", self.dest_device));
        o.push_str(&format!("dest_inode={}\n", self.dest_inode));
        if let Some(l) = &self.last {
            o.push_str(&format!("target={}\n", id(&l.target)));
            o.push_str(&format!("stream={}\n", id(&l.stream)));
            o.push_str(&format!("origin={}\n", opt(&l.origin)));
            o.push_str(&format!("stream_created={}\n", t(l.created)));
            o.push_str(&format!("sender={}\n", Escaped(&l.sender)));
            o.push_str(&format!("completed={}\n", t(l.completed)));
            if let Some(s) = l.settled {
                o.push_str(&format!("settled={}\n", t(s)));
            }
            if let Some(n) = l.names_len {
                o.push_str(&format!("names_len={n}\n"));
            }
            if let Some(x) = &l.target_label {
                o.push_str(&format!("target_label={}\n", Escaped(x)));
            }
            if let Some(x) = &l.origin_label {
                o.push_str(&format!("origin_label={}\n", Escaped(x)));
            }
            if let Some(b) = l.bytes {
                o.push_str(&format!("stream_bytes={b}\n"));
            }
        }
        if let Some(p) = &self.partial {
            o.push_str(&format!("partial_stream={}\n", id(&p.stream)));
            o.push_str(&format!("partial_target={}\n", id(&p.target)));
            o.push_str(&format!("partial_origin={}\n", opt(&p.origin)));
            o.push_str(&format!("partial_next_record={}\n", p.next_record));
            o.push_str(&format!("partial_started={}\n", t(p.started)));
            if let Some(x) = &p.target_label {
                o.push_str(&format!("partial_target_label={}\n", Escaped(x)));
            }
        }
        o
    }

    /// Parses a state file's text; the error says which line is wrong.
    pub fn parse(text: &str) -> Result<State, String> {
        let mut kv: Vec<(&str, &str)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(format!("line {}: no `=`", n + 1))?;
            kv.push((k, v));
        }
        let get = |k: &str| kv.iter().rev().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let need = |k: &str| get(k).ok_or(format!("missing `{k}`"));
        let num = |k: &str| need(k)?.parse::<u64>().map_err(|e| format!("`{k}`: {e}"));
        let id = |k: &str| Id::parse(need(k)?).ok_or(format!("`{k}` is not an id"));
        let opt_id = |k: &str| match need(k)? {
            "none" => Ok(None),
            v => Id::parse(v).map(Some).ok_or(format!("`{k}` is not an id")),
        };
        let time = |k: &str| parse_time(need(k)?).ok_or(format!("`{k}` is not a time"));
        let format = num("format")?;
        if format != u64::from(FORMAT) {
            return Err(format!("format {format} is not known to this version (knows {FORMAT}); written by a newer anyrecv?"));
        }
        let last = match get("target") {
            None => None,
            Some(_) => Some(Received {
                target: id("target")?,
                stream: id("stream")?,
                origin: opt_id("origin")?,
                created: time("stream_created")?,
                sender: unescape(get("sender").unwrap_or("")),
                completed: time("completed")?,
                settled: match get("settled") {
                    None => None,
                    Some(_) => Some(time("settled")?),
                },
                names_len: match get("names_len") {
                    None => None,
                    Some(_) => Some(num("names_len")?),
                },
                target_label: get("target_label").map(unescape),
                origin_label: get("origin_label").map(unescape),
                bytes: match get("stream_bytes") {
                    None => None,
                    Some(_) => Some(num("stream_bytes")?),
                },
            }),
        };
        let partial = match get("partial_stream") {
            None => None,
            Some(_) => Some(Partial {
                stream: id("partial_stream")?,
                target: id("partial_target")?,
                origin: opt_id("partial_origin")?,
                next_record: num("partial_next_record")?,
                started: time("partial_started")?,
                target_label: get("partial_target_label").map(unescape),
            }),
        };
        Ok(State {
            dest: unescape(need("dest")?),
            dest_fs: get("dest_fs").map(str::to_string),
            dest_device: num("dest_device")?,
            dest_inode: num("dest_inode")?,
            last,
            partial,
        })
    }

    /// A state for `dest` with nothing received yet.
    pub fn new(dest: &Path, identity: &Identity) -> State {
        let mut s = State {
            dest: dest.as_os_str().as_bytes().to_vec(),
            dest_fs: None,
            dest_device: 0,
            dest_inode: 0,
            last: None,
            partial: None,
        };
        s.set_identity(identity);
        s
    }

    /// Records `identity` as DEST's (an older state gets its file system's UUID here).
    pub fn set_identity(&mut self, identity: &Identity) {
        self.dest_fs = Some(identity.fs.clone());
        self.dest_device = identity.device;
        self.dest_inode = identity.inode;
    }

    /// Whether this state describes the directory `identity`: the same inode of the same file
    /// system. A state of an older anyrecv names the file system by its device number.
    pub fn describes(&self, identity: &Identity) -> bool {
        self.dest_inode == identity.inode
            && match &self.dest_fs {
                Some(fs) => *fs == identity.fs,
                None => self.dest_device == identity.device,
            }
    }

    /// The identity the state records, for messages.
    pub fn identity_text(&self) -> String {
        match &self.dest_fs {
            Some(fs) => format!("file system {fs}, inode {}", self.dest_inode),
            None => format!("device {}, inode {}", self.dest_device, self.dest_inode),
        }
    }

    /// When it was last written to by a receive (to choose between two states of one DEST).
    fn touched(&self) -> (i64, u32) {
        let done = self.last.as_ref().map(|l| l.completed);
        let begun = self.partial.as_ref().map(|p| p.started);
        done.max(begun).unwrap_or_default()
    }

    /// Records that `header`'s stream is being applied, from record `next_record` on.
    pub fn begin(&mut self, header: &StreamHeader, next_record: u64) {
        self.partial = Some(Partial {
            stream: header.stream_id,
            target: header.target,
            origin: header.origin,
            next_record,
            started: now(),
            target_label: header.target_label.clone(),
        });
    }

    /// Records that `header`'s stream (`bytes` long) was received completely, DEST settled at
    /// `settled`, its names log `names_len` bytes long.
    pub fn complete(
        &mut self,
        header: &StreamHeader,
        settled: Option<(i64, u32)>,
        names_len: Option<u64>,
        bytes: Option<u64>,
    ) {
        self.partial = None;
        self.last = Some(Received {
            target: header.target,
            stream: header.stream_id,
            origin: header.origin,
            created: (header.created_sec, header.created_nsec),
            sender: header.sender_version.clone(),
            completed: now(),
            settled,
            names_len,
            target_label: header.target_label.clone(),
            origin_label: header.origin_label.clone(),
            bytes,
        });
    }
}

fn now() -> (i64, u32) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

fn parse_time(s: &str) -> Option<(i64, u32)> {
    let (sec, nsec) = s.split_once('.')?;
    let nsec: u32 = nsec.parse().ok()?;
    (nsec < 1_000_000_000).then_some(())?;
    Some((sec.parse().ok()?, nsec))
}

/// Reverses `Escaped`: `\\`, `\"`, `\n`, `\t`, `\xNN`; anything else is taken as it is.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'\\' | b'"' => {
                    out.push(b[i + 1]);
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                b'x' if i + 4 <= b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
                    if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Where DEST's state file is: the one of its canonical path `canonical`, or, when there is
/// none and DEST exists (its `identity`), the one that describes the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// Found by DEST's identity: the path DEST was last received as, which differs.
    pub received_as: Option<Vec<u8>>,
}

/// Finds DEST's state file in `state_dir` (see the module doc). The state file of
/// `canonical`'s path is the answer when it exists, or when nothing else describes DEST (a
/// new one is made there).
pub fn find(state_dir: &Path, canonical: &Path, identity: Option<&Identity>) -> Found {
    let by_path = Found { path: state_file(state_dir, canonical), received_as: None };
    let Some(id) = identity else { return by_path };
    if fs::symlink_metadata(&by_path.path).is_ok() {
        return by_path;
    }
    let Ok(entries) = fs::read_dir(state_dir) else { return by_path };
    let mut best: Option<(State, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.as_bytes();
        // Temporary files of `save` start with a dot.
        if !name.ends_with(b".state") || name.starts_with(b".") {
            continue;
        }
        let path = e.path();
        let Ok(Some(st)) = load(&path) else { continue };
        if !st.describes(id) || !still_there(&st.dest, id) {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| st.touched() > b.touched()) {
            best = Some((st, path));
        }
    }
    match best {
        Some((st, path)) => Found {
            received_as: (st.dest != canonical.as_os_str().as_bytes()).then_some(st.dest),
            path,
        },
        None => by_path,
    }
}

/// Whether the path a state names can still be DEST's: it is gone (DEST was moved or its mount
/// point renamed), or it is the directory `identity` now (a bind mount, another name).
fn still_there(recorded: &[u8], identity: &Identity) -> bool {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(Path::new(std::ffi::OsStr::from_bytes(recorded))) {
        Ok(m) => (m.dev(), m.ino()) == (identity.device, identity.inode),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Reads a state file; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<State>, io::Error> {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))?;
            State::parse(&text).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the state directory (and its parents), private to the user.
pub fn create_dir(dir: &Path) -> Result<(), io::Error> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Replaces the state file atomically and durably: a crash leaves the old or the new file,
/// never a mix, and the new one survives once this returns.
pub fn save(path: &Path, state: &State) -> Result<(), io::Error> {
    let dir = path.parent().ok_or_else(|| io::Error::other("state file has no directory"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        f.write_all(state.to_text().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// An exclusive lock on one DEST's state, held for the whole receive (released on drop).
pub struct Lock {
    _file: File,
}

/// Takes the lock next to the state file, without waiting: two receives into one DEST would
/// interleave their records.
pub fn lock(state_path: &Path, dest_name: &str) -> Result<Result<Lock, Refusal>, io::Error> {
    let mut lock_path = state_path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file =
        OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(&lock_path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Ok(Lock { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Ok(Err(Refusal::Busy { dest: dest_name.to_string(), lock: lock_path }))
        }
        Err(e) => Err(e.into()),
    }
}

/// A lock on DEST's directory itself, held with [`Lock`]: one directory reached by two paths
/// (a bind mount, another name of it) has two state files and two of those locks, and two
/// receives into it would each pass the empty check and undo the other's work.
pub struct DirLock {
    _dir: rustix::fd::OwnedFd,
}

/// Takes the lock of DEST's directory `dir` (open), without waiting.
pub fn lock_dir(
    dir: rustix::fd::BorrowedFd<'_>,
    dest: &Path,
) -> Result<Result<DirLock, Refusal>, io::Error> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    // An open file description of its own: the lock is not the caller's descriptor's.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let own = rustix::fs::openat(dir, ".", flags, Mode::empty())?;
    match rustix::fs::flock(&own, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Ok(DirLock { _dir: own })),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Ok(Err(Refusal::Busy { dest: show(dest), lock: dest.to_path_buf() }))
        }
        Err(e) => Err(e.into()),
    }
}

/// A DEST path as shown in messages.
pub fn show(p: &Path) -> String {
    Shown(p.as_os_str().as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(origin: Option<u8>, target: u8) -> StreamHeader {
        StreamHeader::new(Id([9; 16]), origin.map(|o| Id([o; 16])), Id([target; 16]), 5, 6)
    }

    fn ident(fs: &str, device: u64, inode: u64) -> Identity {
        Identity { fs: fs.to_string(), device, inode }
    }

    /// The DEST of these tests.
    fn dest_id() -> Identity {
        ident("uuid:00112233445566778899aabbccddeeff", 1, 2)
    }

    fn info(kind: DestKind) -> DestInfo {
        let identity = (kind != DestKind::Missing).then(dest_id);
        DestInfo { kind, identity, state_file: PathBuf::from("/s/x.state") }
    }

    fn state_with_target(t: u8) -> State {
        let mut s = State::new(Path::new("/d"), &dest_id());
        s.complete(&header(None, t), None, None, None);
        s
    }

    #[test]
    fn full_streams_need_an_empty_or_new_dest() {
        let h = header(None, 1);
        assert_eq!(check_base(&h, "d", &info(DestKind::Missing), None, false), Ok(Verdict::Full));
        assert_eq!(check_base(&h, "d", &info(DestKind::Empty), None, false), Ok(Verdict::Full));
        let ne = info(DestKind::NotEmpty(b"x".to_vec()));
        assert!(matches!(check_base(&h, "d", &ne, None, true), Err(Refusal::NotEmpty { .. })));
        // A file system's root: told to receive beneath it.
        let lf = info(DestKind::NotEmpty(b"lost+found".to_vec()));
        let r = check_base(&h, "d", &lf, None, false).unwrap_err();
        assert!(r.hint().contains("beneath it"), "{}", r.hint());
    }

    #[test]
    fn incremental_needs_the_remembered_target_as_origin() {
        let h = header(Some(1), 2);
        let d = info(DestKind::NotEmpty(b"x".to_vec()));
        assert_eq!(
            check_base(&h, "d", &d, Some(&state_with_target(1)), false),
            Ok(Verdict::Incremental)
        );
        let e = check_base(&h, "d", &d, Some(&state_with_target(7)), false).unwrap_err();
        assert_eq!(
            e,
            Refusal::OriginMismatch { dest: "d".into(), need: Id([1; 16]), have: Id([7; 16]) }
        );
        let msg = e.to_string();
        assert!(msg.contains(&Id([1; 16]).to_string()) && msg.contains(&Id([7; 16]).to_string()));
        assert!(matches!(
            check_base(&h, "d", &d, Some(&state_with_target(7)), true),
            Ok(Verdict::Forced(Refusal::OriginMismatch { .. }))
        ));
        assert!(matches!(check_base(&h, "d", &d, None, false), Err(Refusal::NoState { .. })));
        assert!(matches!(check_base(&h, "d", &d, None, true), Ok(Verdict::Forced(_))));
        assert!(matches!(
            check_base(&h, "d", &info(DestKind::Missing), None, true),
            Err(Refusal::Missing { .. })
        ));
    }

    #[test]
    fn unfinished_and_replaced_dests_are_refused() {
        let h = header(Some(1), 2);
        let d = info(DestKind::Empty);
        let mut s = state_with_target(1);
        s.begin(&header(Some(1), 2), 17);
        assert!(matches!(
            check_base(&h, "d", &d, Some(&s), false),
            Err(Refusal::Unfinished { next_record: 17, .. })
        ));
        let mut moved = state_with_target(1);
        moved.dest_inode = 99;
        assert!(matches!(
            check_base(&h, "d", &d, Some(&moved), false),
            Err(Refusal::Replaced { .. })
        ));
    }

    #[test]
    fn text_round_trips_with_odd_paths() {
        let mut s =
            State::new(Path::new(std::ffi::OsStr::from_bytes(b"/srv/a\nb\xff\\c=d")), &dest_id());
        assert_eq!(State::parse(&s.to_text()), Ok(s.clone()));
        s.complete(&header(Some(1), 2), Some((1_764_115_200, 5)), Some(1234), Some(99));
        assert_eq!(State::parse(&s.to_text()), Ok(s.clone()));
        s.begin(&header(Some(2), 3), 5);
        assert_eq!(State::parse(&s.to_text()), Ok(s.clone()));
        assert!(State::parse("format=2\n").unwrap_err().contains("newer"));
        assert!(State::parse("format=1\ndest=/x\n").is_err());
    }

    /// The same inode of the same file system (by UUID) is the same DEST whatever its device
    /// number now (a disk back after a reboot with another one); another inode or file system
    /// is not.
    #[test]
    fn identity_is_the_file_system_and_the_inode_not_the_device_number() {
        let h = header(Some(1), 2);
        let s = state_with_target(1);
        let mut d = info(DestKind::NotEmpty(b"x".to_vec()));
        d.identity = Some(Identity { device: 77, ..dest_id() });
        assert_eq!(check_base(&h, "d", &d, Some(&s), false), Ok(Verdict::Incremental));
        d.identity = Some(Identity { inode: 3, ..dest_id() });
        let e = check_base(&h, "d", &d, Some(&s), false).unwrap_err();
        assert!(matches!(e, Refusal::Replaced { .. }), "{e}");
        assert!(e.to_string().contains("inode 3") && e.to_string().contains("uuid:0011"), "{e}");
        d.identity = Some(ident("uuid:ffff", 1, 2));
        let e = check_base(&h, "d", &d, Some(&s), false).unwrap_err();
        assert!(matches!(e, Refusal::Replaced { .. }), "{e}");
    }

    /// A state file written before the file system's UUID was recorded: read as before, its
    /// device number compared, and the UUID added when it is written again.
    #[test]
    fn a_state_without_the_file_system_is_read_and_upgraded() {
        let old = "# anyrecv state\nformat=1\ndest=/srv/r\ndest_device=2049\ndest_inode=12\n\
                   target=01010101010101010101010101010101\n\
                   stream=02020202020202020202020202020202\norigin=none\n\
                   stream_created=5.000000006\nsender=anysend 0.1\ncompleted=7.000000008\n";
        let mut s = State::parse(old).unwrap();
        assert_eq!((s.dest_fs.as_deref(), s.dest_device, s.dest_inode), (None, 2049, 12));
        assert_eq!(s.last.as_ref().map(|l| l.target), Some(Id([1; 16])));
        assert!(s.describes(&ident("uuid:abcd", 2049, 12)));
        assert!(!s.describes(&ident("uuid:abcd", 2050, 12)));
        assert!(!s.describes(&ident("uuid:abcd", 2049, 13)));
        assert!(s.identity_text().contains("device 2049"));
        s.set_identity(&ident("uuid:abcd", 2049, 12));
        let text = s.to_text();
        assert!(text.contains("dest_fs=uuid:abcd\n"), "{text}");
        let again = State::parse(&text).unwrap();
        assert_eq!(again, s);
        // Once upgraded, another device number no longer matters, another UUID does.
        assert!(again.describes(&ident("uuid:abcd", 2050, 12)));
        assert!(!again.describes(&ident("uuid:abce", 2049, 12)));
    }

    /// A DEST reached by another path than the one it was received as finds its state by its
    /// identity, if that path is gone or is the same directory; not if it is another one.
    #[test]
    fn a_state_is_found_by_identity_when_the_path_has_none() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let sd = t.path().join("state");
        create_dir(&sd).unwrap();
        let dest = t.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let m = fs::metadata(&dest).unwrap();
        let id = ident("uuid:abcd", m.dev(), m.ino());
        // Nothing recorded: the path's own file.
        let f = find(&sd, &dest, Some(&id));
        assert_eq!(f, Found { path: state_file(&sd, &dest), received_as: None });
        // Recorded under a path that is gone (DEST moved there from).
        let old = t.path().join("old");
        let mut s = State::new(&old, &id);
        s.complete(&header(None, 1), None, None, None);
        save(&state_file(&sd, &old), &s).unwrap();
        let f = find(&sd, &dest, Some(&id));
        assert_eq!(f.path, state_file(&sd, &old));
        assert_eq!(f.received_as.as_deref(), Some(old.as_os_str().as_bytes()));
        // Without an identity (DEST missing), or for another directory: the path only.
        assert_eq!(find(&sd, &dest, None).path, state_file(&sd, &dest));
        let other = Identity { inode: id.inode + 1, ..id.clone() };
        assert_eq!(find(&sd, &dest, Some(&other)).path, state_file(&sd, &dest));
        // The recorded path is another directory now: not this DEST's state (a copy of the
        // file system, or the inode number used again).
        fs::create_dir(&old).unwrap();
        assert_eq!(find(&sd, &dest, Some(&id)).path, state_file(&sd, &dest));
        fs::remove_dir(&old).unwrap();
        // The recorded path is this directory (another name of it): found.
        std::os::unix::fs::symlink(&dest, &old).unwrap();
        assert_eq!(find(&sd, &dest, Some(&id)).path, state_file(&sd, &old));
        // A state file of DEST's own path wins.
        save(&state_file(&sd, &dest), &State::new(&dest, &id)).unwrap();
        assert_eq!(
            find(&sd, &dest, Some(&id)),
            Found { path: state_file(&sd, &dest), received_as: None }
        );
    }

    #[test]
    fn file_names_are_stable_readable_and_distinct() {
        let a = state_file(Path::new("/s"), Path::new("/srv/replica"));
        assert_eq!(a.parent(), Some(Path::new("/s")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("srv-replica-") && name.ends_with(".state"), "{name}");
        assert_eq!(a, state_file(Path::new("/s"), Path::new("/srv/replica")));
        assert_ne!(a, state_file(Path::new("/s"), Path::new("/srv/replicb")));
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        let root = state_file(Path::new("/s"), Path::new("/"));
        assert!(root.file_name().unwrap().to_str().unwrap().starts_with("root-"));
    }

    #[test]
    fn save_is_atomic_and_loads_back() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.state");
        assert_eq!(load(&p).unwrap(), None);
        let s = state_with_target(3);
        save(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap(), Some(s));
        let names: Vec<_> =
            fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_second_lock_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.state");
        let first = lock(&p, "d").unwrap().unwrap();
        assert!(matches!(lock(&p, "d").unwrap(), Err(Refusal::Busy { .. })));
        drop(first);
        assert!(lock(&p, "d").unwrap().is_ok());
    }
}
