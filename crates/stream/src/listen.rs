//! A live NetFlow v5/v9 and IPFIX collector on a UDP socket, feeding any [`Sink`]: the
//! single-process monitor (`nospy monitor --listen`) and the collector that publishes to the
//! stream (`nospy collect --listen`) both run it.
//!
//! Exporters send templates rarely (IPFIX over UDP every few minutes), so a collector that forgot
//! them on restart would skip every data set until they come again. The collector's templates and
//! exporter state are therefore saved to a [`Templates`] store whenever they change and read back
//! at start.

use nospy_flow::netflow::Collector;
use nospy_flow::source::{Sink, Stats};
use nospy_tlog::Sha256;
use sha2::Digest as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a live collector keeps its templates and exporter state.
pub trait Templates {
    /// What was saved, if anything.
    fn load(&mut self) -> std::io::Result<Option<String>>;
    /// Saves the state (the text of [`Collector::save`]).
    fn save(&mut self, text: &str) -> std::io::Result<()>;
    /// Where, for messages.
    fn name(&self) -> String;
}

/// Why a collector could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenError {
    /// The saved templates could not be read from the store.
    Load {
        /// The store, as [`Templates::name`] gives it.
        store: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The store holds text that is not a collector state nospy wrote.
    Restore {
        /// The store.
        store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The socket could not be bound, or the signals caught, or the runtime started.
    Setup {
        /// What was being set up (`udp:ADDR`, `SIGINT`, ...).
        what: String,
        /// What failed.
        source: std::io::Error,
    },
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::Load { store, source } => write!(f, "reading {store}: {source}"),
            ListenError::Restore { store, reason } => write!(
                f,
                "{store}: {reason} (a collector state that nospy did not write? remove it to start afresh)"
            ),
            ListenError::Setup { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenError::Load { source, .. } | ListenError::Setup { source, .. } => Some(source),
            ListenError::Restore { .. } => None,
        }
    }
}

fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ListenError {
    let what = what.into();
    move |source| ListenError::Setup { what, source }
}

/// Reads the saved collector state, or starts afresh when there is none.
fn restore(store: &mut dyn Templates) -> Result<Collector, ListenError> {
    let text = store.load().map_err(|source| ListenError::Load {
        store: store.name(),
        source,
    })?;
    match text {
        Some(text) => {
            let c = Collector::restore(&text).map_err(|e| ListenError::Restore {
                store: store.name(),
                reason: e.to_string(),
            })?;
            eprintln!(
                "nospy: templates and exporter state restored from {}",
                store.name()
            );
            Ok(c)
        }
        None => Ok(Collector::new()),
    }
}

/// Collects on `addr` until interrupted (SIGINT, SIGTERM) or `duration` has passed, feeding
/// every flow to `sink` (and calling its `tick` every second). Returns what was counted and the
/// SHA-256 of what arrived (each message as a 4-byte big-endian length and its bytes, in order):
/// the "source" an evidence statement names. `who` names the command in what it says on
/// standard error.
pub fn listen(
    who: &str,
    addr: SocketAddr,
    state: &mut dyn Templates,
    duration: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<(Stats, Sha256), ListenError> {
    let mut collector = restore(state)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup("starting the collector"))?;
    rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(setup(format!("listening on udp:{addr}")))?;
        let local = sock.local_addr().map_err(setup("the socket's address"))?;
        // Both signals are caught before the collector says it is listening, so that a stop
        // sent as soon as it has said so is a stop, not the default death.
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).map_err(setup("catching SIGINT"))?;
        let mut term = signal(SignalKind::terminate()).map_err(setup("catching SIGTERM"))?;
        eprintln!("{who}: collecting on udp:{local}");
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let show = std::io::stderr().is_terminal();
        let mut c = Collecting {
            who,
            collector: &mut collector,
            sink,
            state,
            st: Stats::default(),
            hasher: sha2::Sha256::new(),
            flows: Vec::new(),
            save_failed: false,
        };
        let mut buf = vec![0u8; 65_536];
        let started = Instant::now();
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    // An error is an ICMP error for an earlier datagram, say: nothing to read.
                    if let Ok((n, from)) = r {
                        c.message(&buf[..n], from);
                    }
                }
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                _ = tick.tick() => {
                    c.sink.tick();
                    if show {
                        eprint!(
                            "\r{:>6.0} s  {} messages  {} flows  ",
                            started.elapsed().as_secs_f64(),
                            c.st.packets,
                            c.st.flows
                        );
                    }
                }
            }
        }
        // What had arrived before the stop is read too.
        while let Ok((n, from)) = sock.try_recv_from(&mut buf) {
            c.message(&buf[..n], from);
        }
        let (mut st, hasher) = (c.st, c.hasher);
        if show {
            eprintln!();
        }
        c.sink.tick();
        st.export = collector.counters;
        eprintln!(
            "{who}: collected {} messages ({} flows) on udp:{local}",
            st.packets, st.flows
        );
        Ok((st, Sha256(hasher.finalize().into())))
    })
}

/// The collector's state while it runs.
struct Collecting<'a> {
    who: &'a str,
    collector: &'a mut Collector,
    sink: &'a mut dyn Sink,
    state: &'a mut dyn Templates,
    st: Stats,
    hasher: sha2::Sha256,
    flows: Vec<nospy_flow::Flow>,
    save_failed: bool,
}

impl Collecting<'_> {
    /// One export message from `from`.
    fn message(&mut self, msg: &[u8], from: SocketAddr) {
        self.st.packets += 1;
        self.hasher.update((msg.len() as u32).to_be_bytes());
        self.hasher.update(msg);
        self.flows.clear();
        // A malformed message is counted by the collector and skipped.
        let _ = self.collector.read(&from.to_string(), msg, &mut self.flows);
        self.st.flows += self.flows.len() as u64;
        self.sink.flows(&self.flows);
        if self.collector.take_changed() {
            if let Err(e) = self.state.save(&self.collector.save()) {
                if !self.save_failed {
                    eprintln!(
                        "{}: warning: templates not saved to {}: {e}",
                        self.who,
                        self.state.name()
                    );
                    self.save_failed = true;
                }
            }
        }
    }
}
