//! Validated receive options: what the command line and the environment asked for, checked and
//! resolved once (the state directory's default depends on who runs and on XDG variables), so
//! that the library never looks at `std::env` or argv itself and tests can build a `Config`
//! directly.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What records may do, decided by the person running the receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Refuse character and block device nodes.
    pub no_devices: bool,
    /// Refuse chmod records with the setuid or setgid bit.
    pub no_setuid: bool,
    /// Fail, instead of warning once, when ownership cannot be set (not root).
    pub strict_owner: bool,
}

/// Everything a receive needs to know besides the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory to apply the stream to, as given.
    pub dest: PathBuf,
    /// Validate the whole stream and the base check without changing anything.
    pub dry_run: bool,
    /// Apply although the base check refuses (origin mismatch, no state, unfinished receive).
    pub force: bool,
    pub policy: Policy,
    /// Where the per-destination state files live (absolute).
    pub state_dir: PathBuf,
    /// Receive into a reflinked staging copy beside DEST and swap it in at the end
    /// (`--atomic`; btrfs and XFS with reflink only).
    pub atomic: bool,
    /// Apply without a journal (not resumable, not abortable). Hidden: only for measuring what
    /// the journal costs (`ANYRECV_NO_JOURNAL=1`).
    pub no_journal: bool,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no state directory: not running as root, and neither XDG_STATE_HOME nor HOME is set; \
         give --state-dir DIR or set ANYRECV_STATE_DIR"
    )]
    NoStateDir,
    #[error("cannot determine the current directory to make {0} absolute: {1}")]
    Cwd(PathBuf, String),
}

/// Where the state directory comes from, in order of precedence.
pub const STATE_DIR_ENV: &str = "ANYRECV_STATE_DIR";
/// The state directory of a receive run as root when nothing else is said.
pub const ROOT_STATE_DIR: &str = "/var/lib/anyrecv";

/// Resolves the state directory: `--state-dir`, then `ANYRECV_STATE_DIR`, then
/// `/var/lib/anyrecv` for root, else `${XDG_STATE_HOME:-$HOME/.local/state}/anyrecv`. `env` is
/// the environment lookup (`std::env::var_os` in the binary) so that tests need not change the
/// process environment.
pub fn state_dir(
    flag: Option<&Path>,
    is_root: bool,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, ConfigError> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let dir = if let Some(d) = flag {
        d.to_path_buf()
    } else if let Some(d) = nonempty(STATE_DIR_ENV) {
        PathBuf::from(d)
    } else if is_root {
        PathBuf::from(ROOT_STATE_DIR)
    } else if let Some(x) = nonempty("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        // The XDG spec says relative values are invalid and must be ignored.
        PathBuf::from(x).join("anyrecv")
    } else if let Some(h) = nonempty("HOME") {
        PathBuf::from(h).join(".local/state/anyrecv")
    } else {
        return Err(ConfigError::NoStateDir);
    };
    absolute(dir)
}

/// The state directory must not depend on the directory anyrecv happens to be started in.
fn absolute(p: PathBuf) -> Result<PathBuf, ConfigError> {
    if p.is_absolute() {
        return Ok(p);
    }
    std::env::current_dir().map(|cwd| cwd.join(&p)).map_err(|e| ConfigError::Cwd(p, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn precedence_flag_env_root_xdg_home() {
        let all = env_of(&[("ANYRECV_STATE_DIR", "/e"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(state_dir(Some(Path::new("/f")), true, &all), Ok(PathBuf::from("/f")));
        assert_eq!(state_dir(None, false, &all), Ok(PathBuf::from("/e")));
        let no_env = env_of(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(state_dir(None, true, &no_env), Ok(PathBuf::from("/var/lib/anyrecv")));
        assert_eq!(state_dir(None, false, &no_env), Ok(PathBuf::from("/x/anyrecv")));
        let home = env_of(&[("HOME", "/h"), ("XDG_STATE_HOME", "relative")]);
        assert_eq!(state_dir(None, false, &home), Ok(PathBuf::from("/h/.local/state/anyrecv")));
        assert_eq!(state_dir(None, false, env_of(&[])), Err(ConfigError::NoStateDir));
    }

    #[test]
    fn relative_state_dir_becomes_absolute() {
        let d = state_dir(Some(Path::new("rel")), false, env_of(&[])).unwrap();
        assert!(d.is_absolute() && d.ends_with("rel"));
    }
}
