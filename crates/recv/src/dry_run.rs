//! `anyrecv -n`: every record checked as a receive would check it, and, when DEST exists, the
//! base check and the comparison of DEST with the stream's `expect` records; nothing changed
//! anywhere. It walks the same checks as a receive with the applier left
//! out, so it refuses what a real receive would refuse for the stream's own content.

use std::fs;
use std::io::{self, Read};

use anysend_stream::{Class, StreamReader};

use crate::apply::Applier;
use crate::config::Config;
use crate::dest;
use crate::drift::{self, Expectations};
use crate::error::{Problem, RecordError, RecvError};
use crate::state::{self, Refusal};
use crate::summary::Summary;
use crate::validate;

/// Checks the stream whose header was read, and DEST's base.
pub fn dry_run<R: Read>(cfg: &Config, mut reader: StreamReader<R>) -> Result<Summary, RecvError> {
    let header = reader.header().clone();
    let mut dest = None;
    let mut state_file = None;
    // DEST's objects, to compare with the stream's `expect` records, and what they must match.
    let mut applier = None;
    let owners = rustix::process::geteuid().is_root();
    let mut expected = Expectations::new(None, owners);
    let base = match fs::metadata(&cfg.dest) {
        Ok(m) if m.is_dir() => {
            let (canonical, _) = dest::locate(&cfg.dest)?;
            let shown = state::show(&canonical);
            let path = dest::find_state(&cfg.state_dir, &canonical)?.path;
            let old = state::load(&path).map_err(RecvError::state(&path, "reading"))?;
            let root = dest::open_dir(&canonical)?;
            let info = dest::info(&canonical, Some(&root), &path)?;
            let base = state::check_base(&header, &shown, &info, old.as_ref(), cfg.force);
            let settled = old.as_ref().and_then(|s| s.last.as_ref()).and_then(|l| l.settled);
            expected = Expectations::new(settled, owners);
            applier = Some(Applier::new(root, cfg.policy));
            dest = Some(canonical);
            state_file = Some(path);
            Some(base)
        }
        Ok(_) => Some(Err(Refusal::NotADirectory { dest: state::show(&cfg.dest) })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(RecvError::dest(&cfg.dest, "stat")(e)),
    };
    while let Some(frame) = reader.next_frame()? {
        let Some(rec) = &frame.record else { continue };
        validate::check(rec, &cfg.policy)
            .and_then(|()| match header.origin {
                None => validate::without_origin(rec),
                Some(_) => Ok(()),
            })
            .map_err(|p| RecordError::new(frame.index, frame.offset, rec, p))?;
        if let (Class::Check, Some(a), Some(p)) = (rec.class(), &mut applier, rec.path()) {
            let found = a.object(p).and_then(|o| o.stat().map_err(Problem::os("")));
            expected.compare(rec, found);
        }
    }
    reader.expect_eof()?;
    let verdict = match base {
        Some(Err(r)) => return Err(r.into()),
        Some(Ok(v)) => Some(v),
        None => None,
    };
    if let (Some((named, more)), Some(d)) = (expected.drifted(), &dest) {
        let r = Refusal::Drifted {
            dest: state::show(d),
            count: expected.differ,
            changed: drift::describe(&named, more),
        };
        if !cfg.force {
            return Err(r.into());
        }
    }
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
