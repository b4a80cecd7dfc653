//! The check of one crash copy: load it into the rig, mount it (the file systems replay their
//! journals, as after a reboot), then either resume the receive or roll it back, and compare
//! DEST with the target or the origin in every property the comparator checks.
//!
//! What the state directory says decides what "resume" and "abort" mean:
//! - an interrupted receive (`anyrecv --resume-token` prints a token): resume is `anysend
//!   --resume TOKEN [--from ORIGIN] TARGET` into `anyrecv`, abort is `anyrecv --abort`;
//! - a completed receive of this stream (the state names the target; the cut came after the
//!   state write): DEST must hold the target, for both (an abort rightly finds nothing to roll
//!   back);
//! - no sign of this receive (the state names the origin, or, for a full stream, there is no
//!   state): the cut came before the receive changed anything; resume is a plain receive of the
//!   whole stream, and DEST must hold the origin (empty or absent for a full stream).
//!
//! Anything else (a state that says the receive stopped but no token, a state naming another
//! snapshot) is a failure of the receiver's protocol, as is every failed command and every
//! difference.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::rig::{CrashImages, Rig};
use super::CrashError;
use crate::cmd::{capture, Captured};
use crate::compare::{compare, CompareOptions};

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Tools {
    pub anysend: PathBuf,
    pub anyrecv: PathBuf,
}

/// One stream of the chain, as the checks need it.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    pub name: &'a str,
    /// The whole stream, as a file (for a plain receive when the cut came before it began).
    pub stream_file: &'a Path,
    /// The origin snapshot (`None`: a full stream).
    pub origin: Option<&'a Path>,
    pub target: &'a Path,
    /// What the state file's `target` says before this stream (None: no state yet).
    pub origin_id: Option<&'a str>,
    /// What it says after this stream.
    pub target_id: &'a str,
}

/// What is done with a crash copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Resume,
    Abort,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Resume => "resume",
            Mode::Abort => "abort",
        })
    }
}

/// How a crash copy passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pass {
    /// Interrupted, resumed (or rolled back) to the expected tree.
    Interrupted,
    /// The state recorded the receive as complete, and DEST held the target.
    Complete,
    /// The receive had not begun; DEST held the origin (and a plain receive reached the target).
    NotBegun,
}

/// How a crash copy failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The step that failed: "mount", "resume-token", "anysend --resume", "anyrecv (resumed)",
    /// "anyrecv (whole stream)", "anyrecv --abort", "state", "compare", "still interrupted".
    pub step: &'static str,
    /// The exit code of the step's command (None: it was not a command, or a signal ended it).
    pub exit: Option<i32>,
    /// The error (first line of the command's error output), or the differing properties.
    pub message: String,
    /// More: the first differences, or the whole error output.
    pub detail: String,
}

impl Failure {
    /// A failure that looked like success: every command exited 0, yet the tree is wrong.
    pub fn silent(&self) -> bool {
        self.step == "compare"
    }

    /// What failures are grouped by: the step and its message with numbers made `N`.
    pub fn cause(&self) -> String {
        let mut out = String::new();
        let mut in_num = false;
        for c in self.message.chars() {
            if c.is_ascii_digit() {
                if !in_num {
                    out.push('N');
                }
                in_num = true;
            } else {
                in_num = false;
                out.push(c);
            }
        }
        format!("{}: {out}", self.step)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pass(Pass),
    Fail(Failure),
}

/// What DEST's state file says (the key=value lines; see anyrecv's state.rs).
#[derive(Debug, Default)]
struct StateSays {
    keys: HashMap<String, String>,
}

impl StateSays {
    /// The one `*.state` file in `dir`; none: empty.
    fn read(dir: &Path) -> Result<StateSays, CrashError> {
        let mut keys = HashMap::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(StateSays::default()) };
        for e in entries.flatten() {
            if e.file_name().as_encoded_bytes().ends_with(b".state") {
                let text = std::fs::read(e.path())
                    .map_err(super::io_err(format!("reading {}", e.path().display())))?;
                for line in String::from_utf8_lossy(&text).lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        keys.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
        Ok(StateSays { keys })
    }

    fn target(&self) -> Option<&str> {
        self.keys.get("target").map(String::as_str)
    }

    fn partial(&self) -> bool {
        self.keys.contains_key("partial_stream")
    }
}

/// The target id DEST's state names now (the rig mounted), for [`Case`].
pub fn state_target(rig: &Rig) -> Result<Option<String>, CrashError> {
    Ok(StateSays::read(&rig.state_dir())?.target().map(str::to_string))
}

fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("anyrecv: warning:"))
        .unwrap_or("(no error output)")
        .to_string()
}

fn failed(step: &'static str, c: &Captured, rig: &Rig) -> Outcome {
    let shorten = |s: &str| {
        s.replace(&rig.dest().display().to_string(), "DEST")
            .replace(&rig.state_dir().display().to_string(), "STATE")
    };
    Outcome::Fail(Failure {
        step,
        exit: Some(c.code),
        message: shorten(&first_error_line(&c.stderr)),
        detail: shorten(c.stderr.trim()),
    })
}

fn run(cmd: &mut Command) -> Captured {
    capture(cmd).into()
}

/// Loads `images` into `rig`, mounts them and checks them in `mode`. Errors are the harness's
/// own (a clone or an unmount that failed); everything the receiver does is in the outcome.
pub fn check(
    rig: &mut Rig,
    images: &CrashImages,
    case: &Case,
    mode: Mode,
    tools: &Tools,
    scratch: &Path,
) -> Result<Outcome, CrashError> {
    rig.load(images)?;
    if let Err(e) = rig.mount() {
        return Ok(Outcome::Fail(Failure {
            step: "mount",
            exit: None,
            message: e.to_string(),
            detail: String::new(),
        }));
    }
    let (dest, state) = (rig.dest(), rig.state_dir());
    let anyrecv = |args: &[&OsStr]| {
        let mut c = Command::new(&tools.anyrecv);
        c.arg("-q").arg("--state-dir").arg(&state).args(args).arg(&dest);
        run(&mut c)
    };

    let token = run(Command::new(&tools.anyrecv)
        .arg("--state-dir")
        .arg(&state)
        .arg("--resume-token")
        .arg(&dest));
    let says = StateSays::read(&state)?;
    let how = if token.code == 0 {
        Pass::Interrupted
    } else if says.partial() {
        return Ok(failed("resume-token", &token, rig));
    } else if says.target() == Some(case.target_id) {
        Pass::Complete
    } else if says.target() == case.origin_id {
        Pass::NotBegun
    } else {
        return Ok(Outcome::Fail(Failure {
            step: "state",
            exit: None,
            message: format!(
                "no interrupted receive, and the state names target {:?}, neither the origin \
                 {:?} nor the target {}",
                says.target(),
                case.origin_id,
                case.target_id
            ),
            detail: String::new(),
        }));
    };

    let expect = match (mode, how) {
        (Mode::Resume, Pass::Interrupted) => {
            let rest = scratch.join(format!("rest-{}", rig.kind()));
            let mut send = Command::new(&tools.anysend);
            send.arg("-q").arg("--resume").arg(token.stdout.trim());
            if let Some(o) = case.origin {
                send.arg("--from").arg(o);
            }
            send.arg("-f").arg(&rest).arg(case.target);
            let sent = run(&mut send);
            if sent.code != 0 {
                return Ok(failed("anysend --resume", &sent, rig));
            }
            let got = anyrecv(&["-f".as_ref(), rest.as_os_str()]);
            let _ = std::fs::remove_file(&rest);
            if got.code != 0 {
                return Ok(failed("anyrecv (resumed)", &got, rig));
            }
            Some(case.target)
        }
        (Mode::Resume, Pass::NotBegun) => {
            let got = anyrecv(&["-f".as_ref(), case.stream_file.as_os_str()]);
            if got.code != 0 {
                return Ok(failed("anyrecv (whole stream)", &got, rig));
            }
            Some(case.target)
        }
        (Mode::Abort, Pass::Interrupted) => {
            let got = anyrecv(&["--abort".as_ref()]);
            if got.code != 0 {
                return Ok(failed("anyrecv --abort", &got, rig));
            }
            case.origin
        }
        (Mode::Abort, Pass::NotBegun) => case.origin,
        (_, Pass::Complete) => Some(case.target),
    };
    if how == Pass::Interrupted {
        let again = anyrecv(&["--resume-token".as_ref()]);
        if again.code == 0 {
            return Ok(Outcome::Fail(Failure {
                step: "still interrupted",
                exit: Some(0),
                message: format!("after the {mode} DEST still has an interrupted receive"),
                detail: again.stdout,
            }));
        }
    }
    Ok(match expect {
        Some(tree) => same(tree, &dest, rig),
        None => empty_or_absent(&dest),
    }
    .map_or(Outcome::Pass(how), Outcome::Fail))
}

/// `None` when `dest` equals `tree` in every property; else what differs.
fn same(tree: &Path, dest: &Path, rig: &Rig) -> Option<Failure> {
    let opts = CompareOptions::for_dest(rig.kind());
    match compare(tree, dest, &opts) {
        Ok(r) if r.is_equal() => None,
        Ok(r) => {
            let props: Vec<&str> = r.properties().iter().map(|p| p.name()).collect();
            let shown: Vec<String> = r.differences.iter().take(4).map(|d| d.to_string()).collect();
            Some(Failure {
                step: "compare",
                exit: Some(0),
                message: format!("tree differs in {}", props.join(", ")),
                detail: format!("{} difference(s), e.g. {}", r.differences.len(), shown.join("; ")),
            })
        }
        Err(e) => Some(Failure {
            step: "compare",
            exit: Some(0),
            message: "DEST cannot be compared".into(),
            detail: e.to_string(),
        }),
    }
}

/// `None` when `dest` is absent or an empty directory (a full stream rolled back).
fn empty_or_absent(dest: &Path) -> Option<Failure> {
    match std::fs::read_dir(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Failure {
            step: "compare",
            exit: Some(0),
            message: "DEST is not an empty directory".into(),
            detail: e.to_string(),
        }),
        Ok(mut entries) => entries.next().map(|e| Failure {
            step: "compare",
            exit: Some(0),
            message: "DEST is not empty".into(),
            detail: format!("it holds {:?}", e.map(|e| e.file_name()).unwrap_or_default()),
        }),
    }
}
