//! Progress of long work. On a terminal it is a bar (indicatif); when stderr is not a
//! terminal (a batch job, a log file) it is a log line through `tracing` every interval, with
//! the stage, done/total, the rate, the ETA and the latest message (the loss while training),
//! and one when the work ends. The interval is 30 s, or `MEDSYNTH_PROGRESS_SECS`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a batch log gets a progress line.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The progress of one stage's work, shared between threads.
#[derive(Debug)]
pub struct Progress {
    stage: String,
    unit: &'static str,
    total: u64,
    done: AtomicU64,
    /// Units already done when this process began (a resumed run's first position), which
    /// the rate and ETA leave out; set by the first `set_position`.
    before: AtomicU64,
    positioned: std::sync::atomic::AtomicBool,
    start: Instant,
    bar: ProgressBar,
    /// Periodic log lines (stderr is not a terminal); `None` on a terminal or when hidden.
    lines: Option<Mutex<Lines>>,
}

#[derive(Debug)]
struct Lines {
    interval: Duration,
    last: Instant,
    message: String,
}

impl Progress {
    /// Progress of `total` `unit`s of `stage` (e.g. `train`, `steps`): a bar on a terminal,
    /// periodic log lines otherwise.
    pub fn new(stage: &str, unit: &'static str, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {stage} {{pos}}/{{len}} {unit} [{{elapsed_precise}}<{{eta_precise}}] {{wide_bar}} {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Self::with(stage, unit, total, bar, None)
        } else {
            let interval = std::env::var("MEDSYNTH_PROGRESS_SECS")
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_INTERVAL);
            let lines = Lines {
                interval,
                last: Instant::now(),
                message: String::new(),
            };
            Self::with(
                stage,
                unit,
                total,
                ProgressBar::hidden(),
                Some(Mutex::new(lines)),
            )
        }
    }

    /// No output at all (tests, nested work).
    pub fn hidden() -> Self {
        Self::with("", "", 0, ProgressBar::hidden(), None)
    }

    fn with(
        stage: &str,
        unit: &'static str,
        total: u64,
        bar: ProgressBar,
        lines: Option<Mutex<Lines>>,
    ) -> Self {
        Self {
            stage: stage.to_owned(),
            unit,
            total,
            done: AtomicU64::new(0),
            before: AtomicU64::new(0),
            positioned: std::sync::atomic::AtomicBool::new(false),
            start: Instant::now(),
            bar,
            lines,
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
        self.maybe_log(false);
    }

    /// `done` units done in all (e.g. a resumed training step).
    pub fn set_position(&self, done: u64) {
        if !self.positioned.swap(true, Ordering::Relaxed) && self.done.load(Ordering::Relaxed) == 0
        {
            self.before.store(done, Ordering::Relaxed);
        }
        self.done.store(done, Ordering::Relaxed);
        self.bar.set_position(done);
        self.maybe_log(false);
    }

    /// The latest state worth showing beside the count (e.g. `loss 0.0123`).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(Ok(mut l)) = self.lines.as_ref().map(Mutex::lock) {
            l.message = message.clone();
        }
        self.bar.set_message(message);
    }

    /// The work stopped on an error: the bar stays where it is, so the message below it is
    /// read beside it; a batch log gets no closing line.
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    /// The work is over: the bar goes, a batch log gets a last line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        self.maybe_log(true);
    }

    /// Units done by this process (the rate's numerator): all done less a resumed start.
    fn done_here(&self) -> u64 {
        self.done
            .load(Ordering::Relaxed)
            .saturating_sub(self.before.load(Ordering::Relaxed))
    }

    fn maybe_log(&self, last: bool) {
        let Some(lines) = &self.lines else {
            return;
        };
        let Ok(mut l) = lines.lock() else {
            return;
        };
        if !last && l.last.elapsed() < l.interval {
            return;
        }
        l.last = Instant::now();
        let done = self.done.load(Ordering::Relaxed);
        let seconds = self.start.elapsed().as_secs_f64();
        let here = self.done_here();
        let rate = here as f64 / seconds.max(1e-9);
        let eta = if last || done >= self.total {
            "0s".to_owned()
        } else if here == 0 {
            "unknown".to_owned()
        } else {
            duration_text((self.total - done) as f64 / rate)
        };
        tracing::info!(
            stage = %self.stage,
            done,
            total = self.total,
            unit = self.unit,
            rate = format!("{rate:.2}/s"),
            elapsed = duration_text(seconds),
            eta,
            "{}progress{}",
            if last { "done: " } else { "" },
            if l.message.is_empty() {
                String::new()
            } else {
                format!(": {}", l.message)
            }
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// `4h 02m`, `3m 05s` or `12s`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(0.4), "0s");
        assert_eq!(duration_text(59.6), "1m 00s");
        assert_eq!(duration_text(185.0), "3m 05s");
        assert_eq!(duration_text(4.0 * 3600.0 + 125.0), "4h 02m");
    }

    #[test]
    fn a_resumed_position_does_not_count_toward_the_rate() {
        let resumed = Progress::hidden();
        resumed.set_position(400);
        assert_eq!(resumed.done_here(), 0);
        resumed.set_position(410);
        assert_eq!(resumed.done_here(), 10);
        // Work counted before the first position is this process's own.
        let fresh = Progress::hidden();
        fresh.inc(5);
        fresh.set_position(7);
        assert_eq!(fresh.done_here(), 7);
    }
}
