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
