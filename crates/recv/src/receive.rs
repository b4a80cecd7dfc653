//! The entry point of a receive: the stream's header is read, then the receive goes one of
//! three ways: a dry run (`dry_run.rs`), into a staging copy switched in at the end
//! (`--atomic`, or an interrupted atomic receive to continue: `atomic.rs`), or straight into
//! DEST (`direct.rs`).

use std::io::Read;

use crate::atomic;
use crate::config::Config;
use crate::direct;
use crate::dry_run::dry_run;
use crate::error::{RecvError, Warning};
use crate::lookahead::Input;
use crate::summary::{Summary, Tick};

/// Receives one stream into `cfg.dest` (or, with `cfg.dry_run`, only checks it).
pub fn receive<R: Read>(
    cfg: &Config,
    input: R,
    warn: &mut dyn FnMut(&Warning),
) -> Result<Summary, RecvError> {
    receive_with_progress(cfg, input, warn, &mut |_| {})
}

/// [`receive`], telling `tick` where it is after each record applied.
pub fn receive_with_progress<R: Read>(
    cfg: &Config,
    input: R,
    warn: &mut dyn FnMut(&Warning),
    tick: &mut dyn FnMut(&Tick),
) -> Result<Summary, RecvError> {
    let input = Input::open(input)?;
    if cfg.dry_run {
        return dry_run(cfg, input.reader);
    }
    if cfg.atomic || atomic::interrupted_staging(cfg).is_some() {
        return atomic::receive(cfg, input, warn, tick);
    }
    direct::receive(cfg, input, warn, tick)
}
