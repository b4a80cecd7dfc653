//! `anyrecv --status DEST [--json]`: what DEST holds, as `zfs list -t snapshot` tells what a
//! dataset holds: the snapshot (target id) it was last received as, from which origin, by which
//! stream, when, and whether a receive into it is interrupted (then where, and its resume
//! token). It reads DEST's state and journal and changes nothing.

use std::path::PathBuf;

use crate::config::Config;
use crate::dest;
use crate::error::RecvError;
use crate::resume;
use crate::state::{self, Partial, Received};

/// What DEST holds.
#[derive(Debug)]
pub struct Status {
    /// DEST's canonical path.
    pub dest: PathBuf,
    /// Its state file (whether or not it exists yet).
    pub state_file: PathBuf,
    /// The path DEST was received as, when its state was found by its identity.
    pub received_as: Option<String>,
    /// The last completed receive: what DEST holds.
    pub last: Option<Received>,
    /// A receive that began and did not complete.
    pub interrupted: Option<Partial>,
    /// The resume token of that receive, if its journal says where it stopped.
    pub resume_token: Option<String>,
}

/// What `cfg.dest` holds.
pub fn status(cfg: &Config) -> Result<Status, RecvError> {
    let canonical = dest::canonical(&cfg.dest)?;
    let found = dest::find_state(&cfg.state_dir, &canonical)?;
    let st = state::load(&found.path).map_err(RecvError::state(&found.path, "reading"))?;
    let (last, partial) = match st {
        Some(s) => (s.last, s.partial),
        None => (None, None),
    };
    let resume_token = match &partial {
        Some(_) => resume::interrupted(cfg)?.and_then(|i| i.token()).map(|t| t.to_string()),
        None => None,
    };
    Ok(Status {
        dest: canonical,
        state_file: found.path,
        received_as: found.received_as.map(|p| {
            use std::os::unix::ffi::OsStrExt;
            state::show(std::path::Path::new(std::ffi::OsStr::from_bytes(&p)))
        }),
        last,
        interrupted: partial,
        resume_token,
    })
}

/// A time as RFC 3339 UTC with nanoseconds (`1970-01-01T00:00:00.000000000Z`).
pub fn rfc3339((sec, nsec): (i64, u32)) -> String {
    // Days since 1970 to a civil date (Howard Hinnant's algorithm), then the time of day.
    let days = sec.div_euclid(86_400);
    let secs = sec.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nsec:09}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

impl Status {
    /// As one JSON object; the fields are documented in `anyrecv --help` (`--status`).
    pub fn to_json(&self) -> serde_json::Value {
        let id = |i: &anysend_stream::Id| i.to_string();
        let label = |l: &Option<Vec<u8>>| l.as_deref().map(shown);
        let last = self.last.as_ref().map(|l| {
            serde_json::json!({
                "target": id(&l.target),
                "origin": l.origin.as_ref().map(id),
                "stream": id(&l.stream),
                "stream_created": rfc3339(l.created),
                "sender": String::from_utf8_lossy(&l.sender),
                "completed": rfc3339(l.completed),
                "settled": l.settled.map(rfc3339),
                "target_label": label(&l.target_label),
                "origin_label": label(&l.origin_label),
                "stream_bytes": l.bytes,
            })
        });
        let interrupted = self.interrupted.as_ref().map(|p| {
            serde_json::json!({
                "stream": id(&p.stream),
                "target": id(&p.target),
                "origin": p.origin.as_ref().map(id),
                "next_record": p.next_record,
                "started": rfc3339(p.started),
                "target_label": label(&p.target_label),
                "resume_token": self.resume_token,
            })
        });
        serde_json::json!({
            "dest": self.dest.display().to_string(),
            "state_file": self.state_file.display().to_string(),
            "received_as": self.received_as,
            "holds": last,
            "interrupted": interrupted,
        })
    }

    /// In words, a line each.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.dest.display());
        match &self.last {
            None => out.push_str("  holds: nothing received (no completed receive recorded)\n"),
            Some(l) => {
                out.push_str(&format!(
                    "  holds: snapshot {}{}\n",
                    l.target,
                    named(&l.target_label)
                ));
                match &l.origin {
                    Some(o) => out.push_str(&format!(
                        "  from: snapshot {o}{} (incremental)\n",
                        named(&l.origin_label)
                    )),
                    None => out.push_str("  from: a full stream\n"),
                }
                out.push_str(&format!("  stream: {}", l.stream));
                if let Some(b) = l.bytes {
                    out.push_str(&format!(", {b} bytes"));
                }
                out.push('\n');
                out.push_str(&format!("  received: {}\n", rfc3339(l.completed)));
            }
        }
        match &self.interrupted {
            None => out.push_str("  interrupted: no\n"),
            Some(p) => {
                out.push_str(&format!(
                    "  interrupted: yes, stream {} to snapshot {}{}, at record {} (started {})\n",
                    p.stream,
                    p.target,
                    named(&p.target_label),
                    p.next_record,
                    rfc3339(p.started)
                ));
                if let Some(t) = &self.resume_token {
                    out.push_str(&format!("  resume token: {t}\n"));
                }
            }
        }
        if let Some(was) = &self.received_as {
            out.push_str(&format!("  received as: {was} (state found by DEST's identity)\n"));
        }
        out.push_str(&format!("  state: {}\n", self.state_file.display()));
        out
    }
}

/// A label as `--dump` shows bytes (escaped, quotes and all).
fn shown(l: &[u8]) -> String {
    anysend_stream::dump::Escaped(l).to_string()
}

/// ` "label"` after a snapshot id, when the sender named it.
fn named(l: &Option<Vec<u8>>) -> String {
    l.as_deref().map(|l| format!(" \"{}\"", shown(l))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339((0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339((1_796_313_190, 926_629_452)), "2026-12-03T15:53:10.926629452Z");
        assert_eq!(rfc3339((951_782_400, 1)), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339((-1, 0)), "1969-12-31T23:59:59.000000000Z");
    }
}
