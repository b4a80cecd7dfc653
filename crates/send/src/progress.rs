//! Progress on stderr: bytes written, records, rate and the path being sent, redrawn in place a
//! few times a second.
//!
//! Hand-rolled rather than a progress-bar crate: a stream's total size is unknown until the end,
//! so there is no bar to draw, only a status line; and throttling to a few redraws a second keeps
//! it off the hot path of a fast send.

use std::io::Write;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(250);
const WIDTH: usize = 100;

/// A status line on stderr.
pub struct Progress {
    start: Instant,
    last: Option<Instant>,
    drawn: bool,
}

/// `12.3 MiB` style sizes.
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

impl Default for Progress {
    fn default() -> Self {
        Progress { start: Instant::now(), last: None, drawn: false }
    }
}

impl Progress {
    /// Redraw if the last redraw is old enough.
    pub fn tick(&mut self, bytes: u64, records: u64, path: &[u8]) {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < EVERY) {
            return;
        }
        self.last = Some(now);
        self.draw(bytes, records, path, now);
    }

    fn draw(&mut self, bytes: u64, records: u64, path: &[u8], now: Instant) {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let rate = human((bytes as f64 / secs) as u64);
        let head = format!("{}  {records} records  {rate}/s  ", human(bytes));
        let room = WIDTH.saturating_sub(head.len()).max(10);
        let p = anysend_stream::dump::shown_tail(path, room);
        // Best effort: a progress line that cannot be drawn is no reason to fail a send.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{head}{p}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// The final line, kept on screen.
    pub fn finish(&mut self, bytes: u64, records: u64) {
        self.draw(bytes, records, b"done", Instant::now());
        let _ = writeln!(std::io::stderr());
    }

    /// Clear the line (before an error message).
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}
