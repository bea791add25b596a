//! One clock for everything that reads the time (the witness's cosignature timestamps, the
//! verdict's "now", the collector's windows): the system's, or one a test sets, so that tests
//! set the time instead of sleeping. Lives here, in the lowest crate that touches the outside
//! world; the core crates take the time as an argument.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where the time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system's clock (0 if it is set before 1970).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that says what it is told.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    /// A clock stopped at `secs`.
    pub fn new(secs: u64) -> Self {
        FixedClock(AtomicU64::new(secs))
    }

    /// Sets it to `secs`.
    pub fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// Moves it on by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
