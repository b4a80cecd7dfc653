//! anysend's sender as a library: write a stream of the differences between two snapshots of a
//! directory tree.
//!
//! The `anysend` binary (the root package's `src/bin/anysend.rs`) only calls [`main`]: parse the
//! command line, check it into a [`cli::Config`], [`run::run`] it, and map the outcome to a
//! message and an exit status (listed in `--help`). Tests call [`run::run`] directly.

pub mod cli;
mod emit;
mod ids;
mod origin;
pub mod run;
mod sink;
mod source;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_OUTPUT: u8 = 3;
const EXIT_CHANGED: u8 = 4;

/// The `anysend` command: parses the process's arguments, runs, and says what happened.
pub fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if let Some(kind) = args.generate {
        use clap::CommandFactory;
        return anysend_ui::generate_to_stdout(kind, cli::Cli::command(), EXIT_OUTPUT);
    }
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anysend: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run::run(&cfg) {
        Ok(outcome) => {
            if cfg.verbose && cfg.warnings {
                eprintln!("anysend: {}", run::walk_text(&outcome));
            }
            if cfg.output == cli::Output::Nowhere {
                let text = if cfg.json {
                    format!("{}\n", run::summary_json(&outcome))
                } else {
                    run::summary_text(&outcome)
                };
                // A reader that stopped reading (`| head`) is no failure: quiet, as with the
                // listing below.
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.chain().any(|c| c.is::<sink::ListingClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if code == EXIT_OUTPUT && is_broken_pipe(&e) {
                eprintln!("anysend: the receiving end closed the stream (broken pipe)");
            } else {
                eprintln!("anysend: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    let drifted = |c: &(dyn std::error::Error + 'static)| {
        c.is::<source::SourceChanged>()
            || matches!(
                c.downcast_ref::<anysend_diff_core::Error>(),
                Some(anysend_diff_core::Error::Changed { .. })
            )
    };
    if e.chain().any(drifted) {
        EXIT_CHANGED
    } else if e.chain().any(|c| c.is::<sink::OutputError>() || c.is::<sink::CreateError>())
        || is_broken_pipe(e)
    {
        EXIT_OUTPUT
    } else if e.chain().any(|c| c.is::<cli::UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit statuses `--help` lists, for the errors that reach main: a source that changed
    /// while it was read is 4 (issue 19: a file vanishing under the walk gave 1), an output that
    /// cannot be made or written is 3.
    #[test]
    fn errors_map_to_the_documented_exit_statuses() {
        let changed = anysend_diff_core::Error::Changed {
            side: anysend_diff_core::error::Side::Target,
            path: b"d/f".to_vec(),
            what: "gone".into(),
        };
        let e = anyhow::Error::new(changed).context("walking TARGET");
        assert_eq!(exit_code(&e), EXIT_CHANGED);
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(sink::CreateError { path: "/x/y".into(), source: gone });
        assert_eq!(exit_code(&e), EXIT_OUTPUT);
        let e = anyhow::anyhow!("something else");
        assert_eq!(exit_code(&e), EXIT_FAILED);
    }
}
