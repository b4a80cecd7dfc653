//! The run: per file system kind (in parallel, one thread each: their rigs share nothing but
//! the backing store), receive every stream of a chain while cutting it at many moments, then
//! check every cut, resumed and aborted.
//!
//! Recording all cuts first and checking afterwards lets one rig (one pair of loop devices, one
//! pair of mount points) serve the whole run: the receives of the chain follow each other on
//! the live file systems, as on a real replica, and each check loads one crash copy into the
//! same devices. The two kinds run in parallel because the machine CI runs on has two cores and
//! a check mostly waits for mounts, syncs and the binaries; within one kind everything is
//! sequential, since the devices are shared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::backing::Backing;
pub use super::check::Tools;
use super::check::{check, state_target, Case, Mode};
use super::feed::{receive_frozen_at, Moment};
use super::points::{cut_points, CutAt};
use super::rig::{CrashImages, Rig};
use super::tally::{Entry, Tally};
use super::{io_err, CrashError};
use crate::compare::{compare, CompareOptions};
use crate::loopfs::DestKind;

/// One stream of the chain: stream `i` goes from stream `i-1`'s target (a full stream first).
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    pub origin: Option<PathBuf>,
    pub target: PathBuf,
    pub bytes: Vec<u8>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub tools: Tools,
    pub kinds: Vec<DestKind>,
    pub streams: Vec<StreamSpec>,
    /// Cuts inside each stream (byte offsets); the tail moments and the moment after exit come
    /// on top.
    pub points: usize,
    /// Delays after the last byte at which to cut the final steps.
    pub tail: Vec<Duration>,
    /// Size of the (sparse) backing store.
    pub backing_size: u64,
    /// The control run: sync both file systems before each copy, so that a copy is what a
    /// SIGKILL leaves (nothing lost); failures that remain are not the power cut's.
    pub sync_first: bool,
}

impl Config {
    /// ext4 and XFS, 40 cuts per stream, six moments in the final steps.
    pub fn new(tools: Tools, streams: Vec<StreamSpec>) -> Config {
        Config {
            tools,
            kinds: vec![DestKind::Ext4, DestKind::Xfs],
            streams,
            points: 40,
            tail: [0, 2, 5, 15, 40, 100].into_iter().map(Duration::from_millis).collect(),
            backing_size: 16 << 30,
            sync_first: false,
        }
    }
}

/// Runs the harness; errors are the harness's own (set-up, a recording receive that failed),
/// every crash state's outcome is in the tally.
pub fn run(cfg: &Config) -> Result<Tally, CrashError> {
    let backing = Backing::new(cfg.backing_size)?;
    let store = backing.store();
    let scratch = backing.scratch();
    let mut files = Vec::new();
    let mut cuts = Vec::new();
    for (i, s) in cfg.streams.iter().enumerate() {
        let f = scratch.join(format!("stream-{i}"));
        std::fs::write(&f, &s.bytes).map_err(io_err(format!("writing {}", f.display())))?;
        files.push(f);
        cuts.push(cut_points(&s.bytes, &s.name, cfg.points)?);
    }
    let results: Vec<Result<Tally, CrashError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = cfg
            .kinds
            .iter()
            .map(|&kind| {
                let (store, files, cuts) = (&store, &files, &cuts);
                sc.spawn(move || one_kind(cfg, kind, store, scratch, files, cuts))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut tally = Tally::default();
    for r in results {
        let t = r?;
        tally.entries.extend(t.entries);
        tally.notes.extend(t.notes);
    }
    drop(backing);
    Ok(tally)
}

/// The cuts of one stream on one kind.
struct Recorded {
    origin_id: Option<String>,
    target_id: String,
    moments: Vec<(Moment, CrashImages)>,
}

fn one_kind(
    cfg: &Config,
    kind: DestKind,
    store: &Path,
    scratch: &Path,
    files: &[PathBuf],
    cuts: &[Vec<CutAt>],
) -> Result<Tally, CrashError> {
    let mut tally = Tally::default();
    let mut rig = Rig::new(kind, store, scratch)?;
    tally.notes.push(format!("{kind}: loop devices with direct I/O: {}", rig.direct_io()));
    rig.mount()?;
    std::fs::create_dir_all(rig.state_dir()).map_err(io_err("creating the state directory"))?;

    let mut recorded = Vec::new();
    for (i, s) in cfg.streams.iter().enumerate() {
        let start = Instant::now();
        let origin_id = state_target(&rig)?;
        let dir = store.join(format!("{kind}-cuts-{i}"));
        let mut moments = Vec::new();
        let (state, dest) = (rig.state_dir(), rig.dest());
        receive_frozen_at(
            &cfg.tools.anyrecv,
            &state,
            &dest,
            &s.bytes,
            &cuts[i],
            &cfg.tail,
            &mut |m| {
                let images =
                    rig.capture(&dir.join(format!("{:03}", moments.len())), cfg.sync_first)?;
                moments.push((m, images));
                Ok(())
            },
        )?;
        let target_id = state_target(&rig)?.ok_or_else(|| {
            CrashError::Recording(format!("{kind} {}: no state after the receive", s.name))
        })?;
        // The harness's own sanity: the uninterrupted receive reached the target.
        let r = compare(&s.target, &dest, &CompareOptions::for_dest(kind))
            .map_err(|e| CrashError::Recording(format!("{kind} {}: {e}", s.name)))?;
        if !r.is_equal() {
            return Err(CrashError::Recording(format!(
                "{kind} {}: the receive being recorded did not reach its target:\n{r}",
                s.name
            )));
        }
        eprintln!(
            "crash harness: {kind} {}: recorded {} crash states in {:.1?}",
            s.name,
            moments.len(),
            start.elapsed()
        );
        recorded.push(Recorded { origin_id, target_id, moments });
    }
    rig.unmount()?;

    for (i, (s, rec)) in cfg.streams.iter().zip(&recorded).enumerate() {
        let start = Instant::now();
        let case = Case {
            name: &s.name,
            stream_file: &files[i],
            origin: s.origin.as_deref(),
            target: &s.target,
            origin_id: rec.origin_id.as_deref(),
            target_id: &rec.target_id,
        };
        let mut failed = 0;
        for (index, (moment, images)) in rec.moments.iter().enumerate() {
            for mode in [Mode::Resume, Mode::Abort] {
                let outcome = check(&mut rig, images, &case, mode, &cfg.tools, scratch)?;
                if matches!(outcome, super::check::Outcome::Fail(_)) {
                    failed += 1;
                }
                tally.entries.push(Entry {
                    fs: kind,
                    stream: s.name.clone(),
                    index,
                    moment: moment.clone(),
                    mode,
                    outcome,
                });
            }
        }
        rig.unmount()?;
        // The copies of this stream are checked: give their room back.
        for (_, images) in &rec.moments {
            let _ = std::fs::remove_file(&images.state);
            let _ = std::fs::remove_file(&images.dest);
        }
        eprintln!(
            "crash harness: {kind} {}: checked {} crash states x 2 in {:.1?}, {failed} checks failed",
            s.name,
            rec.moments.len(),
            start.elapsed()
        );
    }
    Ok(tally)
}
