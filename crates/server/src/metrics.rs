//! Prometheus text-format metrics, kept in atomics: no registry, no dependency.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// How many observations were made.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The mean of what was observed (0 when nothing was).
    pub fn mean(&self) -> f64 {
        match self.count.load(Relaxed) {
            0 => 0.0,
            n => self.sum_micros.load(Relaxed) as f64 / 1e6 / n as f64,
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Relaxed));
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// How fast the log grows and submissions are acknowledged, over about the last minute: from
/// samples taken whenever the figures are read (the status page, each live event), the oldest
/// kept being the newest one at least [`Rates::WINDOW`] old, so that an idle minute reads as
/// zero and not as unknown.
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<std::collections::VecDeque<(std::time::Instant, u64, u64)>>,
}

/// Rates at one reading.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateReading {
    /// Entries added to the log per second.
    pub growth_per_s: f64,
    /// Submissions this server acknowledged per second (duplicates included).
    pub submissions_per_s: f64,
    /// Over how many seconds.
    pub over_s: f64,
}

impl Rates {
    /// The span the rates are measured over, at least.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    /// Records the log's size and the acknowledged submissions now; the rates since the base
    /// sample, or none in the first second after the server started.
    pub fn observe(&self, size: u64, submissions: u64) -> Option<RateReading> {
        self.observe_at(std::time::Instant::now(), size, submissions)
    }

    /// [`Rates::observe`] at `now`.
    pub fn observe_at(
        &self,
        now: std::time::Instant,
        size: u64,
        submissions: u64,
    ) -> Option<RateReading> {
        let mut q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if q.back()
            .is_none_or(|b| now.duration_since(b.0) >= std::time::Duration::from_secs(1))
        {
            q.push_back((now, size, submissions));
        }
        while q.len() > 2 && now.duration_since(q[1].0) >= Self::WINDOW {
            q.pop_front();
        }
        let &(at, base_size, base_subs) = q.front()?;
        let over = now.duration_since(at).as_secs_f64();
        (over >= 1.0).then(|| RateReading {
            growth_per_s: size.saturating_sub(base_size) as f64 / over,
            submissions_per_s: submissions.saturating_sub(base_subs) as f64 / over,
            over_s: over,
        })
    }
}

/// Everything the server counts.
#[derive(Debug)]
pub struct Metrics {
    /// Entries appended (not counting duplicates).
    pub entries: AtomicU64,
    /// Current tree size.
    pub tree_size: AtomicU64,
    /// Seconds from receipt to acknowledgement of a submission.
    pub append_latency: Histogram,
    /// Entries per committed batch.
    pub batch_size: Histogram,
    /// Checkpoints whose witness quorum was missed.
    pub quorum_missed: AtomicU64,
    /// 1 while this instance sequences the log (always, for a log directory), 0 while another
    /// does.
    pub leader: AtomicU64,
    /// Growth and submission rates for the dashboard.
    pub rates: Rates,
    witness: Mutex<Vec<(String, u64, u64)>>,
    status: Mutex<Vec<(u16, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            entries: AtomicU64::new(0),
            tree_size: AtomicU64::new(0),
            append_latency: Histogram::new(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            batch_size: Histogram::new(&[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
            quorum_missed: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            rates: Rates::default(),
            witness: Mutex::new(Vec::new()),
            status: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Counts one witness request by outcome.
    pub fn witness(&self, name: &str, ok: bool) {
        let mut w = self.witness.lock().unwrap_or_else(|e| e.into_inner());
        match w.iter_mut().find(|(n, _, _)| n == name) {
            Some(e) => {
                if ok {
                    e.1 += 1
                } else {
                    e.2 += 1
                }
            }
            None => w.push((name.to_string(), ok as u64, (!ok) as u64)),
        }
    }

    /// Counts one HTTP response by status.
    pub fn status(&self, code: u16) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match s.iter_mut().find(|(c, _)| *c == code) {
            Some(e) => e.1 += 1,
            None => s.push((code, 1)),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP nospy_log_entries_total Entries appended since the server started.\n# TYPE nospy_log_entries_total counter\nnospy_log_entries_total {}", self.entries.load(Relaxed));
        let _ = writeln!(out, "# HELP nospy_log_tree_size Entries in the log.\n# TYPE nospy_log_tree_size gauge\nnospy_log_tree_size {}", self.tree_size.load(Relaxed));
        let _ = writeln!(out, "# HELP nospy_sequencer_leader Whether this instance sequences the log.\n# TYPE nospy_sequencer_leader gauge\nnospy_sequencer_leader {}", self.leader.load(Relaxed));
        self.append_latency.render(
            &mut out,
            "nospy_append_latency_seconds",
            "Time from receipt to durable acknowledgement.",
        );
        self.batch_size
            .render(&mut out, "nospy_batch_size", "Entries per committed batch.");
        let _ = writeln!(out, "# HELP nospy_witness_quorum_missed_total Checkpoints published without the witness quorum.\n# TYPE nospy_witness_quorum_missed_total counter\nnospy_witness_quorum_missed_total {}", self.quorum_missed.load(Relaxed));
        let _ = writeln!(out, "# HELP nospy_witness_requests_total Cosignature requests by witness and result.\n# TYPE nospy_witness_requests_total counter");
        for (n, ok, bad) in self
            .witness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let n = label(n);
            let _ = writeln!(
                out,
                "nospy_witness_requests_total{{witness=\"{n}\",result=\"ok\"}} {ok}"
            );
            let _ = writeln!(
                out,
                "nospy_witness_requests_total{{witness=\"{n}\",result=\"failed\"}} {bad}"
            );
        }
        let _ = writeln!(out, "# HELP nospy_http_requests_total HTTP responses by status code.\n# TYPE nospy_http_requests_total counter");
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.sort();
        for (c, n) in s {
            let _ = writeln!(out, "nospy_http_requests_total{{status=\"{c}\"}} {n}");
        }
        out
    }
}

/// A label value as the Prometheus text format writes it: backslash, double quote and line
/// feed escaped, so that a name cannot end the value and forge another series.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn rates_are_measured_over_the_last_minute_and_an_idle_minute_reads_zero() {
        let r = Rates::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.observe_at(t0, 0, 0), None, "no span yet");
        let x = r.observe_at(at(10), 100, 120).unwrap();
        assert_eq!(
            (x.growth_per_s, x.submissions_per_s, x.over_s),
            (10.0, 12.0, 10.0)
        );
        // Within a second of the last sample: measured, not recorded.
        let x = r
            .observe_at(at(10) + Duration::from_millis(500), 100, 120)
            .unwrap();
        assert_eq!(x.growth_per_s, 100.0 / 10.5);
        // 70 s on: the base is the newest sample at least a minute old (the one at 10 s).
        let x = r.observe_at(at(80), 400, 420).unwrap();
        assert_eq!((x.growth_per_s, x.over_s), (300.0 / 70.0, 70.0));
        // Idle for ten minutes: zero, over the span since the last activity's sample.
        let x = r.observe_at(at(680), 400, 420).unwrap();
        assert_eq!(x.growth_per_s, 0.0);
        assert_eq!(x.over_s, 600.0);
    }
}
