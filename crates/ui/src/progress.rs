//! Progress on standard error, one format for both tools, as users know it from `zfs send -v`
//! and `pv`: bytes so far, rate, the path at hand, and when the total is known (a stream file's
//! size, say) a bar, the percentage and the time left.
//!
//! On a terminal it is an indicatif bar redrawn in place. Asked for without a terminal
//! (`--progress` into a log), it is a plain line every [`PLAIN_EVERY`] (or every
//! `$ANYSEND_PROGRESS_INTERVAL` seconds), the first after at most a second, and one at the end:
//! a log gets a few lines, not a flood.

use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Time between two plain lines, unless `$ANYSEND_PROGRESS_INTERVAL` (seconds) says otherwise.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The first plain line comes after this, or after the interval if shorter (a share and a
/// time left from the first record would say nothing).
const PLAIN_FIRST: Duration = Duration::from_secs(1);

/// Redraws on a terminal at most this often (the callers tell every record).
const DRAW_EVERY: Duration = Duration::from_millis(100);

/// `12.3 MiB` style sizes, for summaries.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How progress is shown.
enum Shown {
    Off,
    Bar(ProgressBar),
    Plain { last: Option<Instant>, every: Duration },
}

/// The interval of plain lines: `$ANYSEND_PROGRESS_INTERVAL` seconds, else [`PLAIN_EVERY`].
fn plain_every() -> Duration {
    std::env::var("ANYSEND_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PLAIN_EVERY, Duration::from_secs_f64)
}

/// The progress of one send or receive.
pub struct Meter {
    tool: &'static str,
    total: Option<u64>,
    shown: Shown,
    start: Instant,
    last_update: Option<Instant>,
}

impl Meter {
    /// A meter for `tool`, over `total` bytes if known; `show` false: nothing is shown.
    /// `terminal`: standard error is a terminal (a bar), else plain lines.
    pub fn new(tool: &'static str, total: Option<u64>, show: bool, terminal: bool) -> Meter {
        let shown = match (show, terminal) {
            (false, _) => Shown::Off,
            (true, false) => Shown::Plain { last: None, every: plain_every() },
            (true, true) => {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                bar.set_prefix(format!("{tool}:"));
                bar_style(&bar, total.is_some());
                Shown::Bar(bar)
            }
        };
        Meter { tool, total, shown, start: Instant::now(), last_update: None }
    }

    /// The total learnt once the meter runs (a stream header's estimate, a planned
    /// incremental's size), unless one is known already: from here on a bar, a share and the
    /// time left. An estimate below what is done already grows with it.
    pub fn estimate(&mut self, total: u64) {
        if self.total.is_some() {
            return;
        }
        self.total = Some(total);
        if let Shown::Bar(bar) = &self.shown {
            bar.set_length(total);
            bar_style(bar, true);
        }
    }

    /// The total shown, if any.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// `bytes` of the stream and `records` done, at the object `path` gives (asked only when
    /// it is shown). Cheap when nothing is redrawn.
    pub fn update(&mut self, bytes: u64, records: u64, path: impl FnOnce() -> String) {
        let now = Instant::now();
        match &mut self.shown {
            Shown::Off => {}
            Shown::Bar(bar) => {
                if self.last_update.is_some_and(|l| now.duration_since(l) < DRAW_EVERY) {
                    return;
                }
                self.last_update = Some(now);
                if bar.length().is_some_and(|l| bytes > l) {
                    bar.set_length(bytes);
                }
                bar.set_position(bytes);
                bar.set_message(format!("{records} records  {}", path()));
            }
            Shown::Plain { last, every } => {
                let since = now.duration_since(last.unwrap_or(self.start));
                let due = match last {
                    Some(_) => *every,
                    None => PLAIN_FIRST.min(*every),
                };
                if since < due {
                    return;
                }
                *last = Some(now);
                // An estimate that fell short grows with what was done.
                let total = self.total.map(|t| t.max(bytes));
                let line = plain(self.tool, total, bytes, records, now - self.start, false);
                eprintln!("{line}  {}", path());
            }
        }
    }

    /// Writes `line` on standard error, above the bar (a warning, say).
    pub fn say(&self, line: &str) {
        match &self.shown {
            Shown::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            _ => eprintln!("{line}"),
        }
    }

    /// Takes the bar off the screen (before an error message or the summary).
    pub fn clear(&mut self) {
        if let Shown::Bar(bar) = &self.shown {
            bar.finish_and_clear();
        }
    }

    /// The end: a last line with what was done, kept.
    pub fn finish(&mut self, bytes: u64, records: u64) {
        let line = plain(self.tool, Some(bytes), bytes, records, self.start.elapsed(), true);
        match &self.shown {
            Shown::Off => {}
            Shown::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{line}");
            }
            Shown::Plain { .. } => eprintln!("{line}"),
        }
        self.shown = Shown::Off;
    }
}

/// A bar's look: with a total, the bar, bytes of the total, share, rate and time left; without,
/// a spinner, bytes and rate.
fn bar_style(bar: &ProgressBar, total: bool) {
    let template = match total {
        true => {
            "{prefix} [{bar:25}] {bytes}/{total_bytes} {percent}% {bytes_per_sec} ETA {eta} {msg}"
        }
        false => "{prefix} {spinner} {bytes} {bytes_per_sec} {msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

/// A size as the progress lines write it (`1.20 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// One plain progress line: `anyrecv: 1.20 GiB of 4.00 GiB (30%), ETA 24 seconds, 120.00
/// MiB/s, 12345 records` (no total: no share and no ETA); `done`: the time it took instead.
fn plain(
    tool: &str,
    total: Option<u64>,
    bytes: u64,
    records: u64,
    elapsed: Duration,
    done: bool,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = bytes as f64 / secs;
    let mut line = format!("{tool}: {}", HumanBytes(bytes));
    if let Some(t) = total.filter(|&t| t > 0) {
        let pct = (bytes.min(t) as f64 * 100.0 / t as f64).floor();
        line.push_str(&format!(" of {} ({pct:.0}%)", HumanBytes(t)));
        if !done {
            let left = if rate > 0.0 { t.saturating_sub(bytes) as f64 / rate } else { 0.0 };
            line.push_str(&format!(", ETA {}", HumanDuration(Duration::from_secs_f64(left))));
        }
    }
    if done {
        line.push_str(&format!(" in {}", HumanDuration(elapsed)));
    }
    line.push_str(&format!(", {}/s, {records} records", HumanBytes(rate as u64)));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_has_the_share_and_eta_when_the_total_is_known() {
        let l = plain("anyrecv", Some(4 << 30), 1 << 30, 12, Duration::from_secs(10), false);
        assert!(l.starts_with("anyrecv: 1.00 GiB of 4.00 GiB (25%), ETA 30 seconds"), "{l}");
        assert!(l.ends_with("/s, 12 records"), "{l}");
        let l = plain("anysend", None, 1 << 20, 3, Duration::from_secs(1), false);
        assert!(!l.contains('%') && !l.contains("ETA"), "{l}");
        let l = plain("anyrecv", Some(4 << 30), 4 << 30, 12, Duration::from_secs(40), true);
        assert!(l.starts_with("anyrecv: 4.00 GiB of 4.00 GiB (100%) in 40 seconds"), "{l}");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(485_851), "474.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
