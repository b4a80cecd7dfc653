//! `--generate KIND` (as `rg --generate` does): man pages and shell completions made from a
//! tool's clap definition, so that they always follow its flags.

use std::io::{self, Write};
use std::process::ExitCode;

/// What `--generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// A roff man page (`anysend --generate man | man -l -`).
    Man,
    /// Completions for bash.
    CompleteBash,
    /// Completions for zsh.
    CompleteZsh,
    /// Completions for fish.
    CompleteFish,
}

/// Writes `kind` for the command `cmd` (its name is the binary's) to `out`.
pub fn generate(kind: Generate, mut cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    use clap_complete::Shell;
    let shell = match kind {
        Generate::Man => return clap_mangen::Man::new(cmd).render(out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    let name = cmd.get_name().to_string();
    // Made in memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut text);
    out.write_all(&text)
}

/// `--generate KIND` of a tool: writes it to standard output and says how that went, as an
/// exit status (`fail`, after a message, when it could not be written; a reader that stopped
/// reading, as `head` does, is no failure).
pub fn generate_to_stdout(kind: Generate, cmd: clap::Command, fail: u8) -> ExitCode {
    let name = cmd.get_name().to_string();
    match generate(kind, cmd, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: --generate: {e}");
            ExitCode::from(fail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("tool").about("does things").arg(Arg::new("verbose").long("verbose"))
    }

    #[test]
    fn every_kind_names_the_command_and_its_flags() {
        for kind in
            [Generate::Man, Generate::CompleteBash, Generate::CompleteZsh, Generate::CompleteFish]
        {
            let mut out = Vec::new();
            generate(kind, cmd(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("tool"), "{kind:?}: {text}");
            assert!(text.contains("verbose"), "{kind:?}: {text}");
        }
    }
}
