//! `anyrecv -n`: every record checked as a receive would check it, and the base check when DEST
//! exists; nothing changed anywhere. It walks the same checks as a receive with the applier left
//! out, so it refuses what a real receive would refuse for the stream's own content.

use std::fs;
use std::io::{self, Read};

use anysend_stream::StreamReader;

use crate::config::Config;
use crate::dest;
use crate::error::{RecordError, RecvError};
use crate::state::{self, Refusal};
use crate::summary::Summary;
use crate::validate;

/// Checks the stream whose header was read, and DEST's base.
pub fn dry_run<R: Read>(cfg: &Config, mut reader: StreamReader<R>) -> Result<Summary, RecvError> {
    let header = reader.header().clone();
    let mut dest = None;
    let mut state_file = None;
    let base = match fs::metadata(&cfg.dest) {
        Ok(m) if m.is_dir() => {
            let (canonical, _) = dest::locate(&cfg.dest)?;
            let shown = state::show(&canonical);
            let path = state::state_file(&cfg.state_dir, &canonical);
            let old = state::load(&path).map_err(RecvError::state(&path, "reading"))?;
            let root = dest::open_dir(&canonical)?;
            let info = dest::info(&canonical, Some(&root), &path)?;
            let base = state::check_base(&header, &shown, &info, old.as_ref(), cfg.force);
            dest = Some(canonical);
            state_file = Some(path);
            Some(base)
        }
        Ok(_) => Some(Err(Refusal::NotADirectory { dest: state::show(&cfg.dest) })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(RecvError::dest(&cfg.dest, "stat")(e)),
    };
    while let Some(frame) = reader.next_frame()? {
        if let Some(rec) = &frame.record {
            validate::check(rec, &cfg.policy)
                .map_err(|p| RecordError::new(frame.index, frame.offset, rec, p))?;
        }
    }
    reader.expect_eof()?;
    let verdict = match base {
        Some(Err(r)) => return Err(r.into()),
        Some(Ok(v)) => Some(v),
        None => None,
    };
    Ok(Summary {
        header,
        records: reader.records_read(),
        bytes: reader.offset(),
        applied: 0,
        verdict,
        dest,
        state_file,
    })
}
