//! One send, start to end: identify the snapshots, open the output, let diff-core walk and plan
//! into the [`Emitter`], close the stream, and report.
//!
//! An incremental stream is planned by diff-core's general planner ([`anysend_diff_core::plan`]);
//! a full stream by its streaming one ([`anysend_diff_core::plan_full`]), which walks the target
//! alone and hands each entry on as it is met, so memory follows the depth of the tree and not
//! its size. Both feed the same [`Emitter`].

use crate::cli::{Config, Output};
use crate::emit::{DataMode, Emitter};
use crate::ids::{identify, stream_id};
use crate::sink::{Counts, Sink};
use crate::source::Source;
use anyhow::{anyhow, Context, Result};
use anysend_diff_core::{Identity, Options, Scope, Timestamp};
use anysend_stream::{Id, StreamHeader, WriterOptions};
use anysend_ui::{human, Meter};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a finished send reports.
#[derive(Debug)]
pub struct Outcome {
    pub counts: Counts,
    pub stream_id: Id,
    pub origin_id: Option<Id>,
    pub target_id: Id,
    pub plan: anysend_diff_core::Summary,
}

fn now() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos().max(1))
        }
    }
}

/// How long before the origin snapshot was taken a ctime must be for the quick check to trust
/// it: comfortably more than one tick of the kernel's coarse clock (at most 10 ms).
const CTIME_TICK_MARGIN_NS: i64 = 50_000_000;

fn ctime_horizon(taken: Timestamp) -> Timestamp {
    let ns = i128::from(taken.sec) * 1_000_000_000 + i128::from(taken.nsec)
        - i128::from(CTIME_TICK_MARGIN_NS);
    Timestamp {
        sec: ns.div_euclid(1_000_000_000) as i64,
        nsec: ns.rem_euclid(1_000_000_000) as u32,
    }
}

/// Run the send described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome> {
    let target = identify(&cfg.target, cfg.label.as_deref())
        .with_context(|| format!("TARGET {}", cfg.target.display()))?;
    let origin = match &cfg.origin {
        Some(o) => Some(
            identify(o, cfg.from_label.as_deref())
                .with_context(|| format!("ORIGIN {}", o.display()))?,
        ),
        None => None,
    };
    if cfg.warnings && !target.read_only {
        eprintln!(
            "anysend: warning: TARGET {} is not read-only, so it may change while it is walked \
             (a file that changes while it is read, or a directory that changes while it is \
             walked, fails the send); send a read-only snapshot (e.g. btrfs subvolume \
             snapshot -r) to be safe",
            cfg.target.display()
        );
    }
    if let (Some(o), Some(path)) = (&origin, &cfg.origin) {
        crate::origin::check(
            crate::origin::Side { path, info: o },
            crate::origin::Side { path: &cfg.target, info: &target },
            crate::origin::Overrides {
                path_match: cfg.path_match,
                allow_reverse: cfg.allow_reverse,
                allow_other_fs: cfg.allow_other_fs,
            },
        )
        .map_err(anyhow::Error::new)?;
    }
    if let Some(o) = &origin {
        if o.id == target.id {
            return Err(anyhow!(
                "ORIGIN and TARGET have the same id {} ({}): they are the same snapshot",
                target.id,
                target.how
            ));
        }
    }
    let origin_id = origin.as_ref().map(|o| o.id);
    let sid = stream_id(origin_id, target.id);
    let (sec, nsec) = now();
    let mut header = StreamHeader::new(sid, origin_id, target.id, sec, nsec);
    header.filtered = !cfg.exclude.is_empty();
    header.target_label = crate::ids::label(&cfg.target, cfg.label.as_deref());
    header.origin_label =
        cfg.origin.as_ref().and_then(|o| crate::ids::label(o, cfg.from_label.as_deref()));
    if let Some(t) = &cfg.resume {
        let show =
            |o: Option<Id>| o.map_or_else(|| "none (a full stream)".to_string(), |i| i.to_string());
        if t.stream != sid || t.origin != origin_id || t.target != target.id {
            return Err(anyhow!(
                "--resume: the token is for stream {} (origin {}, target {}), but these \
                 snapshots make stream {sid} (origin {}, target {}): give the ORIGIN and TARGET \
                 of the interrupted send",
                t.stream,
                show(t.origin),
                t.target,
                show(origin_id),
                target.id
            )
            .context(crate::cli::UsageError("the resume token does not match".into())));
        }
        header.resume = t.point;
    }

    let options = Options {
        identity: if cfg.path_match { Identity::Path } else { Identity::Inode },
        ctime_horizon: origin.as_ref().and_then(|o| o.taken).map(ctime_horizon),
        full_walk: cfg.full_walk,
        scope: Scope { cross_mounts: cfg.cross_mounts, exclude: cfg.exclude.clone() },
        // A tree that is not a read-only snapshot gets its namespace checked as it is walked.
        live: !target.read_only || origin.as_ref().is_some_and(|o| !o.read_only),
        // A stream's header carries the planner's estimate (a receiver's progress total) and
        // so does the progress display; a dry run's header too, so that it counts the bytes a
        // real run writes.
        estimate: true,
        ..Options::default()
    };

    let list: Option<Box<dyn Write>> = match (cfg.list_records, &cfg.output) {
        (false, _) => None,
        (true, Output::Nowhere) => Some(Box::new(std::io::stdout())),
        (true, _) => Some(Box::new(std::io::stderr())),
    };
    // The total comes with the planner's estimate, before the first record (`Sink::estimate`).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = cfg.progress.then(|| Meter::new("anysend", None, true, terminal));
    let wopts = WriterOptions { compression_level: cfg.compression };
    let source = match &cfg.origin {
        Some(o) => Source::open(o, &cfg.target)?,
        None => Source::open_target(&cfg.target)?,
    };

    // A dry run without compression needs only the data lengths, not the data.
    let data = match (&cfg.output, cfg.compression) {
        (Output::Nowhere, None) => DataMode::LengthOnly,
        _ => DataMode::Read,
    };
    let out: Box<dyn Write> = match &cfg.output {
        Output::Nowhere => Box::new(std::io::sink()),
        Output::Stdout => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
        Output::File(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path)
                .map_err(|source| crate::sink::CreateError { path: path.clone(), source })?,
        )),
    };
    let sent = send(out, &header, wopts, list, progress, source, data, cfg, &options);
    if let (Err(_), Output::File(path)) = (&sent, &cfg.output) {
        // A partial stream is of no use to anyone; anyrecv would refuse it anyway. Only a
        // regular file is removed: `-f /dev/stdout` or a fifo must survive a failed send.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(path);
        }
    }
    let (counts, plan) = sent?;
    if let (Some(o), true, false) = (&origin, cfg.warnings, cfg.path_match) {
        if let Some(w) = crate::origin::few_in_common(o, &target, &plan) {
            eprintln!("anysend: warning: {w}");
        }
    }
    Ok(Outcome { counts, stream_id: sid, origin_id, target_id: target.id, plan })
}

#[allow(clippy::too_many_arguments)]
fn send<W: Write>(
    out: W,
    header: &StreamHeader,
    wopts: WriterOptions,
    list: Option<Box<dyn Write>>,
    progress: Option<Meter>,
    source: Source,
    data: DataMode,
    cfg: &Config,
    options: &Options,
) -> Result<(Counts, anysend_diff_core::Summary)> {
    let mut sink = Sink::new(out, header, wopts, list, progress)?;
    let mut emitter = Emitter::new(&mut sink, source, data);
    let planned = match &cfg.origin {
        Some(origin) => anysend_diff_core::plan(origin, &cfg.target, options, &mut emitter),
        None => anysend_diff_core::plan_full(&cfg.target, options, &mut emitter),
    };
    let failure = emitter.failure.take();
    drop(emitter);
    let summary = match (planned, failure) {
        (Ok(s), None) => s,
        (_, Some(e)) => {
            sink.clear_progress();
            return Err(e);
        }
        (Err(e), None) => {
            sink.clear_progress();
            return Err(e.into());
        }
    };
    let (mut out, counts) = sink.finish()?;
    out.flush().map_err(|e| anyhow::Error::new(e).context("flushing the stream"))?;
    Ok((counts, summary))
}

/// The dry run's report, as text.
pub fn summary_text(o: &Outcome) -> String {
    let mut s = String::new();
    let kind = if o.origin_id.is_some() { "incremental" } else { "full" };
    s.push_str(&format!(
        "{kind} stream {}: {} bytes ({}), {} records, {} bytes of file data\n",
        o.stream_id,
        o.counts.stream_bytes,
        human(o.counts.stream_bytes),
        o.counts.records,
        o.counts.data_bytes
    ));
    for (name, n) in &o.counts.by_type {
        s.push_str(&format!("  {name:<16} {n}\n"));
    }
    s
}

/// One line on how the walk went: whether btrfs's change index was used, and what was read.
pub fn walk_text(o: &Outcome) -> String {
    use anysend_diff_core::IndexUse;
    let w = &o.plan.walk;
    let how = match &o.plan.index {
        IndexUse::NotTried => "every entry compared".to_string(),
        IndexUse::Used { changed, dirty, .. } => format!(
            "btrfs change index: {changed} objects changed since the origin, {dirty} directories above them"
        ),
        IndexUse::Unusable(why) => format!("every entry compared ({why})"),
    };
    format!(
        "walk: {how}; {} directory listings, {} entries stated, {} unchanged entries skipped",
        w.dirs_listed, w.entries_statted, w.entries_skipped
    )
}

/// The dry run's report, as one JSON object (keys are fixed ASCII; no escaping needed).
pub fn summary_json(o: &Outcome) -> String {
    let types: serde_json::Map<String, serde_json::Value> =
        o.counts.by_type.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    serde_json::json!({
        "incremental": o.origin_id.is_some(),
        "stream_id": o.stream_id.to_string(),
        "origin_id": o.origin_id.map(|i| i.to_string()),
        "target_id": o.target_id.to_string(),
        "stream_bytes": o.counts.stream_bytes,
        "records": o.counts.records,
        "data_bytes": o.counts.data_bytes,
        "records_by_type": types,
        "content_bytes_read": o.plan.content.bytes_read,
        "content_bytes_skipped": o.plan.content.bytes_skipped,
        "btrfs_index": matches!(o.plan.index, anysend_diff_core::IndexUse::Used { .. }),
        "dirs_listed": o.plan.walk.dirs_listed,
        "entries_statted": o.plan.walk.entries_statted,
        "entries_skipped": o.plan.walk.entries_skipped,
    })
    .to_string()
}
