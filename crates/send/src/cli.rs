//! The command line: flags in the conventions of `zfs send` / `btrfs send`, the help text that
//! teaches, and the checks that turn flags into a [`Config`] the rest can trust.
//!
//! Everything that can be refused before touching a snapshot is refused here (a terminal as
//! stdout, `--from-label` without `--from`), so `run` only ever sees a consistent request.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Examples:
  Full stream of a read-only btrfs snapshot, received on another machine:
    anysend /mnt/snaps/mon | ssh backup anyrecv /backups/home
  Incremental stream: only what changed from mon to tue (the receiver holds mon):
    anysend --from /mnt/snaps/mon /mnt/snaps/tue | ssh backup anyrecv /backups/home
  Keep an archive chain in files, compressed:
    anysend -z -f home.0.stream /mnt/snaps/mon
    anysend -z -f home.1.stream --from /mnt/snaps/mon /mnt/snaps/tue
    (restore: anyrecv -f home.0.stream DEST, then anyrecv -f home.1.stream DEST)
  How big would it be, and what would it do?
    anysend -n -v --from /mnt/snaps/mon /mnt/snaps/tue
    anysend -n --json --from /mnt/snaps/mon /mnt/snaps/tue
  Resume an interrupted receive (same ORIGIN and TARGET as the interrupted send):
    anysend --resume \"$(ssh backup anyrecv --resume-token /backups/home)\" \\
        --from /mnt/snaps/mon /mnt/snaps/tue | ssh backup anyrecv /backups/home
  Two trees that are not snapshots of one file system (e.g. rsync copies):
    anysend --path-match --from-label v1 --label v2 --from /srv/v1 /srv/v2 > v2.stream

Snapshots: TARGET and ORIGIN should be read-only snapshots (btrfs subvolume snapshot -r, LVM or
ZFS snapshots mounted read-only). anysend warns when TARGET is writable, and fails (exit 4)
rather than send a file that changes while it is read, or a tree whose directories change while
they are walked.

Boundaries: like `rsync -x` and `btrfs send`, anysend stays on TARGET's file system: a mount
point or a nested btrfs subvolume inside TARGET is sent as an empty directory (its own owner,
mode and times) and its contents are neither walked nor sent. --cross-mounts enters them.
  Send a whole system, less what is not worth keeping:
    anysend -f root.stream --exclude 'var/cache/**' --exclude '**/*.tmp' /mnt/snaps/root

Exit status:
  0  the stream was written completely (or, with -n, estimated)
  1  reading the snapshots failed (or an internal error)
  2  the command line is wrong, stdout is a terminal, or ORIGIN cannot be an origin of TARGET
     (newer than TARGET: see --allow-reverse; on another file system: see --path-match)
  3  writing the stream failed (disk full, or the receiver went away: broken pipe)
  4  TARGET changed while it was being sent; send from a read-only snapshot";

/// Write a stream of the differences between two snapshots of a directory tree.
///
/// With only TARGET, a full stream that recreates TARGET on an empty destination. With
/// --from ORIGIN, an incremental stream that turns a received copy of ORIGIN into TARGET:
/// renames, hard links, content changes (only changed byte ranges, holes kept), owners, modes,
/// extended attributes and ACLs, times to the nanosecond and chattr flags. The stream goes to
/// standard output unless -f FILE is given; receive it with `anyrecv DEST`.
#[derive(Parser, Debug)]
#[command(name = "anysend", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The snapshot to send (a directory; ideally a read-only snapshot).
    #[arg(value_name = "TARGET", required_unless_present = "generate")]
    pub target: Option<PathBuf>,

    /// Print a man page or shell completions for anysend and exit (see "Install" in the
    /// README for where to put them).
    #[arg(long, value_enum, value_name = "KIND", exclusive = true)]
    pub generate: Option<anysend_ui::Generate>,

    /// Send only the differences from ORIGIN, a snapshot the receiver already holds
    /// (like `zfs send -i` / `btrfs send -p`).
    #[arg(long = "from", value_name = "ORIGIN")]
    pub from: Option<PathBuf>,

    /// Write the stream to FILE instead of standard output (a partial FILE is removed when
    /// the send fails).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Compress file data with zstd at LEVEL (1-19, default 3 when given without a level).
    #[arg(
        short = 'z',
        long = "compress",
        value_name = "LEVEL",
        num_args = 0..=1,
        default_missing_value = "3",
        require_equals = true,
        value_parser = clap::value_parser!(i32).range(1..=19)
    )]
    pub compress: Option<i32>,

    /// Do not send anything: print the exact size the stream would have and how many records
    /// of each type it would hold.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// List every record as `anyrecv --dump` would show it (on stdout with -n, else stderr).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// With -n: print the summary as one JSON object (for scripts): incremental, stream_id,
    /// origin_id (null for a full stream), target_id, stream_bytes, records, data_bytes,
    /// records_by_type, content_bytes_read, content_bytes_skipped, btrfs_index (whether
    /// btrfs's change index was used), dirs_listed, entries_statted, entries_skipped.
    #[arg(long, requires = "dry_run")]
    pub json: bool,

    /// Show progress on stderr (bytes, rate, records, current path, and of the planner's
    /// estimate of the stream's size the share and the time left): a status line on a terminal
    /// [the default there], otherwise a line every 5 seconds ($ANYSEND_PROGRESS_INTERVAL) and
    /// one at the end. The estimate also goes into the stream header, for anyrecv's progress.
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,

    /// No progress and no warnings; errors only.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Match objects of ORIGIN and TARGET by path, for two trees that are not snapshots of one
    /// file system (copies, other machines). Without it objects are matched by inode number,
    /// which only means something between snapshots of one file system (an ORIGIN on another
    /// file system is refused without this flag). With it there is no rename detection: a moved
    /// file is sent as a delete and a new file; and since ctime means nothing across trees, the
    /// xattrs and chattr flags of every matched object are read and compared.
    #[arg(long = "path-match")]
    pub path_match: bool,

    /// Send even though ORIGIN is newer than TARGET (two read-only btrfs snapshots of one file
    /// system, ORIGIN created later): the stream turns the newer snapshot back into the older
    /// one, which is refused without this flag.
    #[arg(long = "allow-reverse", requires = "from")]
    pub allow_reverse: bool,

    /// Match by inode number even though ORIGIN and TARGET are on different file systems, which
    /// is refused without this flag: only for block-level copies of one file system mounted
    /// apart (e.g. LVM snapshots); other trees need --path-match.
    #[arg(long = "allow-other-fs", requires = "from", conflicts_with = "path_match")]
    pub allow_other_fs: bool,

    /// Compare every entry of both snapshots. By default, for two read-only btrfs snapshots of
    /// one subvolume (and as root, which btrfs's tree search needs), anysend asks btrfs which
    /// objects changed since ORIGIN was taken and leaves the unchanged subtrees alone, as
    /// `btrfs send` does; -v says which way the walk went.
    #[arg(long = "full-walk")]
    pub full_walk: bool,

    /// Also walk and send what lies on other file systems inside TARGET (mount points, nested
    /// btrfs subvolumes), which by default are sent as empty directories. With --from it needs
    /// --path-match: inode numbers of different file systems say nothing about identity.
    #[arg(long = "cross-mounts")]
    pub cross_mounts: bool,

    /// Leave out the objects whose path relative to TARGET (and, with --from, relative to
    /// ORIGIN) matches PATTERN: neither walked nor sent, nor removed from the receiver. `*`
    /// matches within one path component, `?` one character, `[a-z]` a set, `**` any run
    /// including `/` (`**/x` is x at any depth); patterns are anchored at TARGET
    /// (`cache` is only the top-level cache). Repeatable. The stream is marked filtered.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<std::ffi::OsString>,

    /// Use an id derived from LABEL for TARGET instead of one derived from the snapshot; the
    /// stream header names TARGET so (else by its directory's name: `anyrecv --status`).
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,

    /// Use an id derived from LABEL for ORIGIN (must match the --label it was sent with).
    #[arg(long = "from-label", value_name = "LABEL", requires = "from")]
    pub from_label: Option<String>,

    /// Write only the rest of an interrupted stream, from where the receiver stopped: TOKEN is
    /// what `anyrecv --resume-token DEST` prints. ORIGIN and TARGET must be the snapshots of the
    /// interrupted stream (their ids are checked); the records before the resume point are
    /// planned but neither read nor written.
    #[arg(long, value_name = "TOKEN")]
    pub resume: Option<String>,
}

/// Where the stream goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
    /// Dry run: nothing is written.
    Nowhere,
}

/// A checked request.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: PathBuf,
    pub origin: Option<PathBuf>,
    pub output: Output,
    pub compression: Option<i32>,
    pub list_records: bool,
    pub json: bool,
    pub progress: bool,
    pub warnings: bool,
    pub path_match: bool,
    pub allow_reverse: bool,
    pub allow_other_fs: bool,
    pub full_walk: bool,
    pub verbose: bool,
    pub label: Option<String>,
    pub from_label: Option<String>,
    pub resume: Option<anysend_stream::ResumeToken>,
    pub cross_mounts: bool,
    pub exclude: Vec<anysend_diff_core::Glob>,
}

/// A request refused before anything was read (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl Cli {
    /// Check the request against the environment (is stdout a terminal, is stderr one).
    pub fn into_config(self) -> Result<Config, UsageError> {
        let output = match (&self.file, self.dry_run) {
            (_, true) => Output::Nowhere,
            (Some(f), false) => Output::File(f.clone()),
            (None, false) => {
                if std::io::stdout().is_terminal() {
                    return Err(UsageError(
                        "refusing to write a binary stream to a terminal: redirect it \
                         (anysend ... > FILE), pipe it (anysend ... | ssh HOST anyrecv DEST), \
                         use -f FILE, or -n to see what would be sent"
                            .into(),
                    ));
                }
                Output::Stdout
            }
        };
        if self.label.as_deref() == Some("") || self.from_label.as_deref() == Some("") {
            return Err(UsageError("a label must not be empty".into()));
        }
        let resume = match &self.resume {
            None => None,
            Some(t) => Some(anysend_stream::ResumeToken::decode(t).ok_or_else(|| {
                UsageError(
                    "--resume: not a resume token (give exactly what `anyrecv --resume-token \
                     DEST` prints)"
                        .into(),
                )
            })?),
        };
        if self.cross_mounts && self.from.is_some() && !self.path_match {
            return Err(UsageError(
                "--cross-mounts with --from needs --path-match: objects of different file \
                 systems cannot be matched by inode number"
                    .into(),
            ));
        }
        let exclude = self
            .exclude
            .iter()
            .map(|p| anysend_diff_core::Glob::new(p.as_encoded_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| UsageError(format!("--exclude: {e}")))?;
        let progress = !self.quiet && (self.progress || std::io::stderr().is_terminal());
        // Required by clap unless --generate, which never gets here.
        let target = self.target.ok_or_else(|| UsageError("TARGET is missing".into()))?;
        Ok(Config {
            target,
            origin: self.from,
            output,
            compression: self.compress,
            list_records: self.verbose,
            json: self.json,
            progress,
            warnings: !self.quiet,
            path_match: self.path_match,
            allow_reverse: self.allow_reverse,
            allow_other_fs: self.allow_other_fs,
            full_walk: self.full_walk,
            verbose: self.verbose,
            label: self.label,
            from_label: self.from_label,
            resume,
            cross_mounts: self.cross_mounts,
            exclude,
        })
    }
}
