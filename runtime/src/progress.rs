//! Progress of long work on standard error, one helper for every command: an indicatif bar when
//! standard error is a terminal, else (a log file, CI, a pipe) a plain line every few seconds,
//! `voxq: embedding 120/400 utterances (35 s)`, so a long run is never silent.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between plain progress lines (`VOXQ_PROGRESS_INTERVAL_S` overrides it; 0 prints a
/// line at every step).
pub const PLAIN_INTERVAL_S: f64 = 5.0;

/// The environment variable that sets the seconds between plain progress lines.
pub const INTERVAL_ENV: &str = "VOXQ_PROGRESS_INTERVAL_S";

/// A progress display over `len` steps of work (the length may grow). Cloning shares it.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Arc<Plain>>,
}

struct Plain {
    what: String,
    unit: String,
    interval: Duration,
    start: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    /// Progress of `len` steps of `what` (`"embedding"`), counted in `unit` (`"utterances"`);
    /// `show` false draws nothing (`--quiet`).
    pub fn new(len: u64, what: &str, unit: &str, show: bool) -> Progress {
        if !show {
            return Progress::hidden();
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{what} {{bar:40}} {{pos}}/{{len}} {unit} {{msg}} ({{eta}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            return Progress { bar, plain: None };
        }
        let interval = std::env::var(INTERVAL_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(PLAIN_INTERVAL_S);
        let now = Instant::now();
        let bar = ProgressBar::hidden();
        bar.set_length(len);
        Progress {
            bar,
            plain: Some(Arc::new(Plain {
                what: what.to_string(),
                unit: unit.to_string(),
                interval: Duration::from_secs_f64(interval.min(86_400.0)),
                start: now,
                last: Mutex::new(now),
            })),
        }
    }

    /// Progress that shows nothing.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            plain: None,
        }
    }

    /// `n` more steps done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.plain_line();
    }

    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }

    pub fn inc_length(&self, n: u64) {
        self.bar.inc_length(n);
    }

    /// A note shown after the count (the last measurement, say).
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    pub fn length(&self) -> Option<u64> {
        self.bar.length()
    }

    /// Removes the bar (plain lines stay where they were printed).
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints a plain line when the interval has passed since the last one.
    fn plain_line(&self) {
        let Some(p) = &self.plain else { return };
        let now = Instant::now();
        {
            let mut last = crate::sync::lock(&p.last);
            if now.duration_since(*last) < p.interval {
                return;
            }
            *last = now;
        }
        let msg = self.bar.message();
        let msg = if msg.is_empty() {
            String::new()
        } else {
            format!(" {msg}")
        };
        let len = self
            .bar
            .length()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "?".into());
        eprintln!(
            "voxq: {} {}/{len} {}{msg} ({:.0} s)",
            p.what,
            self.bar.position(),
            p.unit,
            now.duration_since(p.start).as_secs_f64()
        );
    }
}
