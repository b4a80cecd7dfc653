//! The `anyrecv` command: read an anysend stream, verify every record, and apply it to a
//! directory.
//!
//! The binary (the root package's `src/bin/anyrecv.rs`) only calls [`main`]: it parses flags
//! into a validated `Config`, opens the input, runs the library's `receive` (or `--dump`), and
//! maps errors to messages, advice and exit codes (`report`). All logic lives in the library so
//! tests can call it.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::{self, EXIT_IO, EXIT_STREAM, EXIT_USAGE};
use crate::{config, Config, Policy, RecvError, Summary, Verdict, Warning};
use anysend_stream::dump::{dump_stream, DumpError};
use anysend_ui::Meter;
use clap::Parser;

const AFTER_HELP: &str = "\
Examples:
  anysend --from /snaps/mon /snaps/tue | ssh backup anyrecv /srv/replica
                                      apply an incremental stream over ssh
  anysend /snaps/mon | ssh backup anyrecv /srv/replica
                                      the first (full) stream creates /srv/replica
  anyrecv -f tue.stream /srv/replica  apply a stream kept in a file
  for s in mon.full tue.incr wed.incr; do anyrecv -f $s /srv/replica || break; done
                                      replay an archive chain, in order; each stream's
                                      origin must be what the previous one left
  anyrecv -n -f tue.stream /srv/replica
                                      check the whole stream and the base, change nothing
  anyrecv --dump -f tue.stream        one line per record, with index and byte offset
  anysend --resume \"$(ssh backup anyrecv --resume-token /srv/replica)\" \\
          --from /snaps/mon /snaps/tue | ssh backup anyrecv /srv/replica
                                      continue a receive that was interrupted
  ssh backup anyrecv --abort /srv/replica
                                      or roll it back to what DEST held before
  anyrecv --check /srv/replica        what was changed in DEST since its last receive

Interrupted receives:
  A receive keeps a journal next to DEST's state file (outside DEST): the records in flight,
  and for an incremental how to undo each step. Objects the stream removes are kept in a
  holding directory DEST/.anyrecv-<stream id> until the end record, and the bytes a change in
  place overwrites in the journal (or there); a full receive writes each new file there and
  gives it its name when its data is complete. An immutable or append-only DEST (chattr +i,
  +a) has those flags lifted while the receive runs (the journal notes them first) and set
  again at the end, to the stream's if it changes them. After a kill (of anyrecv, of the link, or of
  the power) DEST is marked as interrupted: only the same stream is accepted, either resumed
  (anysend --resume TOKEN, where TOKEN is what --resume-token prints) or sent again from its
  start (what DEST holds is skipped); anything else is refused unless --force. --abort rolls
  an interrupted incremental back to its origin and an interrupted full receive back to an
  empty (or, if it made it, no) DEST.

How a receive goes:
  The header is checked, then the base: a full stream goes only into an empty or new
  DEST (anyrecv creates DEST itself, not its parents); an incremental stream only into a
  DEST whose last receive was the stream's origin. Then DEST must still hold that origin
  wherever the stream changes it: the stream states each object it will change (its type,
  mode, owner, size, link count and mtime), and no such object may have changed since the
  last receive (its ctime); otherwise nothing is applied (--force applies anyway). Each record
  is applied once its checksum verified; paths never leave DEST and symbolic links inside DEST
  are never followed. After the end record verified, DEST is synced (syncfs) and its state is
  saved, with the time DEST settled and, beside it, the names DEST holds (for --check).

State:
  What DEST last received is kept OUTSIDE DEST, so DEST stays equal to the snapshot: one
  file per DEST in the state directory, named <path>-<hash>.state after DEST's canonical
  path, holding key=value lines (dest, dest_fs, dest_device, dest_inode, target, stream,
  origin, stream_created, sender, completed, settled, names_len; partial_* while a receive
  is under way or after one stopped), and DEST's names in <path>-<hash>.state.names. The
  state directory is --state-dir, else $ANYRECV_STATE_DIR, else /var/lib/anyrecv for root,
  else ${XDG_STATE_HOME:-$HOME/.local/state}/anyrecv.
  DEST is identified by its file system's UUID (dest_fs) and its inode, not its device
  number, which can change at a reboot. Reached by another path than the one it was received
  as (a bind mount, a mount point renamed or moved), DEST's state is found by that identity
  (anyrecv says so), if the old path is gone or is the same directory. Copied elsewhere, DEST
  has no state: pass --force once for the next incremental receive.

Not root:
  Files stay owned by the receiving user (one warning per receive; --strict-owner makes it
  an error); devices, trusted.* attributes and the immutable/append-only flags need root.

";

/// Receive an anysend stream into DEST: verify each record's checksum, then apply it.
#[derive(Parser, Debug)]
#[command(group = clap::ArgGroup::new("check_or_status").args(["check", "status"]).multiple(false))]
#[command(
    name = "anyrecv",
    version,
    after_help = format!("{AFTER_HELP}{}", report::EXIT_CODES)
)]
struct Args {
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Print the stream header and one line per record (index, byte offset, type, fields)
    /// instead of applying it; the whole stream is verified, like `btrfs receive --dump`.
    #[arg(long, conflicts_with_all = ["dry_run", "force"])]
    dump: bool,

    /// Check the whole stream (every checksum, every path, the end record) and, if DEST
    /// exists, the base check; change nothing. DEST need not exist.
    #[arg(short = 'n', long)]
    dry_run: bool,

    /// Apply an incremental stream although DEST's state does not show its origin (no state,
    /// another last target, an unfinished receive, DEST replaced). Never lets a full stream
    /// into a non-empty DEST.
    #[arg(long)]
    force: bool,

    /// Refuse character and block device nodes.
    #[arg(long)]
    no_devices: bool,

    /// Refuse modes with the setuid or setgid bit, and file capabilities (the xattr
    /// security.capability), which raise privileges on exec the same way.
    #[arg(long)]
    no_setuid: bool,

    /// When not root: fail instead of leaving ownership to the receiving user.
    #[arg(long)]
    strict_owner: bool,

    /// Where DEST's state is kept [default: $ANYRECV_STATE_DIR, or /var/lib/anyrecv for root,
    /// else ${XDG_STATE_HOME:-$HOME/.local/state}/anyrecv].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Print the resume token of DEST's interrupted receive (one line) and exit; give it to
    /// `anysend --resume TOKEN` to make the rest of the stream.
    #[arg(long, conflicts_with_all = ["dump", "dry_run", "force", "file", "abort"])]
    resume_token: bool,

    /// List what was changed in DEST since its last receive, as `zfs diff` does: `+ PATH` added,
    /// `- PATH` removed, `M PATH` changed in place (content, metadata, or another object under
    /// the name). Exit 0 when nothing was, 1 when something was.
    #[arg(long, conflicts_with_all = ["dump", "dry_run", "force", "file", "abort", "resume_token", "atomic"])]
    check: bool,

    /// Print what DEST holds and exit: the snapshot (target id, and the name the sender gave
    /// it) it was last received as, from which origin, by which stream, how many bytes and
    /// when, and whether a receive into it is interrupted (then the stream, the record it
    /// continues at and the resume token). Changes nothing.
    #[arg(long, conflicts_with_all = ["dump", "dry_run", "force", "file", "abort", "resume_token", "atomic", "check"])]
    status: bool,

    /// With --check: print one JSON object (dest, unchanged, added, removed, changed; paths
    /// escaped as in --dump) instead of lines. With --status: one JSON object with dest,
    /// state_file, received_as (null unless the state was found by DEST's identity), holds
    /// (null, or target, origin, stream, stream_created, sender, completed, settled,
    /// target_label, origin_label, stream_bytes) and interrupted (null, or stream, target,
    /// origin, next_record, started, target_label, resume_token); ids are UUIDs, times RFC 3339
    /// in UTC, labels escaped as in --dump (null when the stream had none).
    #[arg(long, requires = "check_or_status")]
    json: bool,

    /// Roll DEST's interrupted receive back: an incremental to its origin, a full receive to an
    /// empty (or no) DEST; or say why it cannot.
    #[arg(long, conflicts_with_all = ["dump", "dry_run", "force", "file"])]
    abort: bool,

    /// Receive into a staging copy beside DEST (files cloned with FICLONE) and switch DEST to
    /// it in one rename at the end: readers see the old tree or the new one. btrfs and XFS
    /// with reflink only. Interrupted: DEST is untouched; --abort removes the staging copy.
    #[arg(long, conflicts_with_all = ["dump", "dry_run"])]
    atomic: bool,

    /// Show progress on standard error: bytes, rate, records and the current path, and with
    /// -f FILE its share of the file and the time left. A bar on a terminal [the default
    /// there]; otherwise a line every 5 seconds ($ANYSEND_PROGRESS_INTERVAL) and one at the end.
    #[arg(long, conflicts_with_all = ["dump", "quiet"])]
    progress: bool,

    /// No progress line and no summary on success (warnings and errors are still printed).
    #[arg(short = 'q', long)]
    quiet: bool,

    /// The directory to apply the stream to.
    #[arg(value_name = "DEST", required_unless_present_any = ["dump", "generate"], conflicts_with = "dump")]
    dest: Option<PathBuf>,

    /// Print a man page or shell completions for anyrecv and exit (see "Install" in the
    /// README for where to put them).
    #[arg(long, value_enum, value_name = "KIND", exclusive = true)]
    generate: Option<anysend_ui::Generate>,
}

/// Tells the C allocator to keep memory it got back for the next allocation. A receive holds
/// records of up to 16 MiB while it looks ahead and frees them as they are applied; by default
/// glibc gives the larger of those back to the kernel (munmap, or trimming its heap) at once, so
/// every record's buffers were new pages the kernel had to zero: on the benchmark's incremental
/// receive, five in six of its page faults (about one per 4 KiB of stream) and a tenth of its
/// time. What is kept is bounded by the look-ahead, which bounds the peak anyway. Failing is
/// harmless.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two of the allocator's thresholds, before any thread starts.
    unsafe {
        // glibc's upper limit for this threshold on 64-bit, above the largest record payload.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Raises this process's soft limit on open files to its hard limit (at most 65,536), as file
/// servers and archivers do: a receive keeps files it will write open from the moment their
/// origin bytes are kept, a share of this limit (see `Applier`). Failing is harmless.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(u64::MAX).min(1 << 16);
    if lim.current.is_some_and(|cur| cur < want) {
        lim.current = Some(want);
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// The `anyrecv` command: parses the process's arguments, runs, and says what happened.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = args.generate {
        use clap::CommandFactory;
        return anysend_ui::generate_to_stdout(kind, Args::command(), EXIT_IO);
    }
    raise_fd_limit();
    keep_freed_memory();
    if args.resume_token || args.abort {
        return after_interruption(&args);
    }
    if args.check {
        return check(&args);
    }
    if args.status {
        return status(&args);
    }
    let input = match open_input(&args) {
        Ok(i) => i,
        Err(code) => return ExitCode::from(code),
    };
    if args.dump {
        return dump(input);
    }
    let cfg = match usable_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let terminal = io::stderr().is_terminal();
    let show = !cfg.dry_run && !args.quiet && (args.progress || terminal);
    // A stream file's size is the total: a bar, a share and the time left.
    let total = args.file.as_ref().and_then(|f| std::fs::metadata(f).ok()).filter(|m| m.is_file());
    let meter = Meter::new("anyrecv", total.map(|m| m.len()), show, terminal);
    let meter = std::cell::RefCell::new(meter);
    let mut warn = |w: &Warning| meter.borrow().say(&format!("anyrecv: warning: {w}"));
    let mut tick = |t: &crate::Tick| {
        // From a pipe, the header's estimate is the total (a file's size is, when there is one).
        if let Some(e) = t.estimate {
            meter.borrow_mut().estimate(e);
        }
        meter.borrow_mut().update(t.offset, t.index + 1, || {
            anysend_stream::dump::shown_tail(t.path, 60).to_string()
        })
    };
    let result = crate::receive_with_progress(&cfg, input, &mut warn, &mut tick);
    match &result {
        Ok(s) if show => meter.borrow_mut().finish(s.bytes, s.records),
        _ => meter.borrow_mut().clear(),
    }
    match result {
        Ok(s) => {
            if !args.quiet {
                eprintln!("anyrecv: {}", success(&cfg, &s));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", report::hint(&e, cfg.dry_run));
            if !cfg.dry_run {
                if let Ok(Some(i)) = crate::resume::interrupted(&cfg) {
                    how_to_continue(&cfg, &i);
                }
            }
            ExitCode::from(report::exit_code(&e))
        }
    }
}

/// Tells where an interrupted receive stopped and how to resume or roll it back.
fn how_to_continue(cfg: &Config, i: &crate::resume::Interrupted) {
    let d = cfg.dest.display();
    let Some(p) = &i.state.partial else { return };
    match &i.journal {
        Some(j) => {
            let from = if j.begin.origin.is_some() { " --from ORIGIN" } else { "" };
            eprintln!(
                "anyrecv: {d} holds stream {} up to record {} (the next to apply); it is marked \
                 as interrupted and takes only that stream.",
                p.stream,
                j.next_record()
            );
            eprintln!(
                "anyrecv: to resume:   anysend --resume \"$(anyrecv --resume-token {d})\"{from} \
                 TARGET | anyrecv {d}"
            );
            eprintln!("anyrecv: to roll back: anyrecv --abort {d}");
        }
        None => eprintln!(
            "anyrecv: {d} is partly updated (stream {}, stopped at record {}) and has no journal \
             to resume or roll back with",
            p.stream, p.next_record
        ),
    }
}

/// `--status [--json]`.
fn status(args: &Args) -> ExitCode {
    let cfg = match usable_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = match crate::status::status(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", report::hint(&e, true));
            return ExitCode::from(report::exit_code(&e));
        }
    };
    let text = match args.json {
        true => format!("{}\n", s.to_json()),
        false => s.to_text(),
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output_error(e),
    }
}

/// `--check [--json]`.
fn check(args: &Args) -> ExitCode {
    let cfg = match usable_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    note_identity(&cfg);
    let r = match crate::check::check(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", report::hint(&e, true));
            return ExitCode::from(report::exit_code(&e));
        }
    };
    let show = |p: &Vec<u8>| anysend_stream::dump::Shown(p).to_string();
    let mut lines: Vec<(&Vec<u8>, char)> = Vec::new();
    lines.extend(r.added.iter().map(|p| (p, '+')));
    lines.extend(r.removed.iter().map(|p| (p, '-')));
    lines.extend(r.changed.iter().map(|p| (p, 'M')));
    lines.sort();
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        let list = |v: &[Vec<u8>]| v.iter().map(show).collect::<Vec<_>>();
        let j = serde_json::json!({
            "dest": r.dest.display().to_string(),
            "unchanged": r.unchanged(),
            "added": list(&r.added),
            "removed": list(&r.removed),
            "changed": list(&r.changed),
            "names_compared": r.names_known,
            "changes_compared": r.changes_known,
        });
        writeln!(out, "{j}")
    } else {
        lines.iter().try_for_each(|(p, c)| writeln!(out, "{c}\t{}", show(p)))
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        return output_error(e);
    }
    let d = r.dest.display();
    if !r.names_known {
        eprintln!(
            "anyrecv: note: the record of the names {d} held is missing or damaged: added and \
             removed names are not listed (the next receive writes it anew)"
        );
    }
    if !r.changes_known {
        eprintln!(
            "anyrecv: note: the last receive into {d} was made by an older anyrecv: changes in \
             place are not listed"
        );
    }
    if r.unchanged() {
        if !args.quiet {
            eprintln!("anyrecv: {d} is as its last receive left it");
        }
        return ExitCode::SUCCESS;
    }
    if !args.quiet {
        eprintln!(
            "anyrecv: {d} was changed since its last receive: {} added, {} removed, {} changed",
            r.added.len(),
            r.removed.len(),
            r.changed.len()
        );
    }
    ExitCode::from(1)
}

/// `--resume-token` and `--abort`.
fn after_interruption(args: &Args) -> ExitCode {
    let cfg = match usable_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    note_identity(&cfg);
    if args.resume_token {
        return match crate::resume::resume_token(&cfg) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("anyrecv: {e}");
                eprintln!("anyrecv: {}", report::hint(&e, false));
                ExitCode::from(report::exit_code(&e))
            }
        };
    }
    match crate::rollback::abort(&cfg) {
        Ok(a) => {
            let d = a.dest.display();
            if a.removed_dest {
                eprintln!("anyrecv: aborted the interrupted full receive: {d} is removed again");
            } else if a.full {
                eprintln!("anyrecv: aborted the interrupted full receive: {d} is empty again");
            } else {
                let o = a.origin.map(|o| o.to_string()).unwrap_or_default();
                eprintln!(
                    "anyrecv: aborted the interrupted receive: {d} holds its origin {o} again \
                     ({} steps undone)",
                    a.undone
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", report::hint(&e, false));
            ExitCode::from(report::exit_code(&e))
        }
    }
}

/// Says so when DEST's state is found by DEST's identity, not by its path (on standard error:
/// standard output may be a token or JSON for a script).
fn note_identity(cfg: &Config) {
    let Ok(canonical) = crate::dest::canonical(&cfg.dest) else { return };
    let Ok(found) = crate::dest::find_state(&cfg.state_dir, &canonical) else { return };
    if let Some(was) = found.received_as {
        let w = Warning::StateByIdentity { state_file: found.path, received_as: was };
        eprintln!("anyrecv: note: {w}");
    }
}

fn open_input(args: &Args) -> Result<BufReader<Box<dyn Read>>, u8> {
    let input: Box<dyn Read> = match &args.file {
        Some(path) => match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("anyrecv: cannot open {}: {e}", path.display());
                return Err(EXIT_IO);
            }
        },
        None => {
            if io::stdin().is_terminal() {
                eprintln!(
                    "anyrecv: standard input is a terminal; pipe a stream in or give -f FILE"
                );
                return Err(EXIT_USAGE);
            }
            Box::new(io::stdin().lock())
        }
    };
    let mut input = BufReader::with_capacity(1 << 20, input);
    // Nothing at all is not a stream cut short: say what is missing.
    if let Ok(b) = io::BufRead::fill_buf(&mut input) {
        if b.is_empty() {
            match &args.file {
                Some(path) => eprintln!("anyrecv: {} is empty: no stream in it", path.display()),
                None => eprintln!(
                    "anyrecv: no stream on standard input (pipe anysend's output in, or give \
                     -f FILE)"
                ),
            }
            return Err(EXIT_STREAM);
        }
    }
    Ok(input)
}

/// [`make_config`], or the exit of a usage error (said).
fn usable_config(args: &Args) -> Result<Config, ExitCode> {
    make_config(args).map_err(|e| {
        eprintln!("anyrecv: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn make_config(args: &Args) -> Result<Config, config::ConfigError> {
    let is_root = rustix::process::geteuid().is_root();
    let state_dir = config::state_dir(args.state_dir.as_deref(), is_root, |k| std::env::var_os(k))?;
    Ok(Config {
        // clap guarantees DEST unless --dump, which returned before.
        dest: args.dest.clone().unwrap_or_default(),
        dry_run: args.dry_run,
        force: args.force,
        policy: Policy {
            no_devices: args.no_devices,
            no_setuid: args.no_setuid,
            strict_owner: args.strict_owner,
        },
        state_dir,
        atomic: args.atomic,
        no_journal: std::env::var_os("ANYRECV_NO_JOURNAL").is_some_and(|v| v == "1"),
    })
}

fn success(cfg: &Config, s: &Summary) -> String {
    let h = &s.header;
    let kind = match h.origin {
        Some(o) => format!("incremental stream {} (origin {o}, target {})", h.stream_id, h.target),
        None => format!("full stream {} (target {})", h.stream_id, h.target),
    };
    let forced = match &s.verdict {
        Some(Verdict::Forced(_)) => " (forced)",
        _ => "",
    };
    let dest = s.dest.as_ref().unwrap_or(&cfg.dest).display();
    if cfg.dry_run {
        let base = match &s.verdict {
            None => format!("{dest} does not exist, base not checked"),
            Some(Verdict::Forced(r)) => {
                format!("base check would refuse ({r}) but --force is given")
            }
            Some(_) => format!("base check passed for {dest}"),
        };
        return format!(
            "dry run: {kind} verified, {} records, {} bytes; {base}; nothing was changed",
            s.records, s.bytes
        );
    }
    let state = s.state_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "received {kind}{forced} into {dest}: {} records ({} applied), {} bytes; state in {state}",
        s.records, s.applied, s.bytes
    )
}

fn dump(input: impl Read) -> ExitCode {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    let result = dump_stream(input, &mut out);
    let flushed = out.flush();
    match result {
        Ok(summary) => {
            if let Err(e) = flushed {
                return output_error(e);
            }
            eprintln!(
                "anyrecv: stream verified: {} records, {} bytes",
                summary.records, summary.bytes
            );
            ExitCode::SUCCESS
        }
        Err(DumpError::Stream(e)) => {
            eprintln!("anyrecv: {e}");
            eprintln!("anyrecv: {}", e.hint());
            let err = RecvError::Stream(e);
            ExitCode::from(match report::exit_code(&err) {
                EXIT_IO => EXIT_IO,
                _ => EXIT_STREAM,
            })
        }
        Err(DumpError::Output(e)) => output_error(e),
    }
}

/// A closed pipe (`anyrecv --dump | head`) is the reader's choice, not a failure.
fn output_error(e: io::Error) -> ExitCode {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("anyrecv: writing the dump: {e}");
    ExitCode::from(EXIT_IO)
}
