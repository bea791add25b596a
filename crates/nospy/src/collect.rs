//! `nospy monitor --listen udp:ADDR`: a live NetFlow v5/v9 and IPFIX collector.
//!
//! Exporters send templates rarely (IPFIX over UDP every few minutes), so a collector that forgot
//! them on restart would skip every data set until they come again. The collector's templates and
//! exporter state are therefore saved to a file whenever they change (written beside it, fsynced,
//! renamed over it) and read back at start.

use anyhow::{Context as _, Result};
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
    fn load(&mut self) -> Result<Option<String>>;
    /// Saves the state (the text of [`Collector::save`]).
    fn save(&mut self, text: &str) -> Result<()>;
    /// Where, for messages.
    fn name(&self) -> String;
}

/// Templates in a file, written beside it, fsynced and renamed over it.
pub struct FileTemplates(pub std::path::PathBuf);

impl Templates for FileTemplates {
    fn load(&mut self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.0) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.0.display())),
        }
    }
    fn save(&mut self, text: &str) -> Result<()> {
        crate::util::write_file(&self.0, text.as_bytes())
    }
    fn name(&self) -> String {
        self.0.display().to_string()
    }
}

/// Reads the saved collector state, or starts afresh when there is none.
fn restore(store: &mut dyn Templates) -> Result<Collector> {
    match store.load()? {
        Some(text) => {
            let c = Collector::restore(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (a collector state that nospy did not write? remove it to start afresh)",
                    store.name()
                )
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

/// Collects on `addr` until interrupted or `duration` has passed, feeding every flow to `sink`.
/// Returns what was counted and the SHA-256 of what arrived (each message as a 4-byte big-endian
/// length and its bytes, in order): the "source" an evidence statement names.
pub fn listen(
    addr: SocketAddr,
    state: &mut dyn Templates,
    duration: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<(Stats, Sha256)> {
    let mut collector = restore(state)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the collector")?;
    rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("listening on udp:{addr}"))?;
        let local = sock.local_addr().context("the socket's address")?;
        // Both signals are caught before the collector says it is listening, so that a stop
        // sent as soon as it has said so is a stop, not the default death.
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        eprintln!("nospy monitor: collecting on udp:{local}");
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let show = std::io::stderr().is_terminal();
        let mut c = Collecting {
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
            "nospy monitor: collected {} messages ({} flows) on udp:{local}",
            st.packets, st.flows
        );
        Ok((st, Sha256(hasher.finalize().into())))
    })
}

/// The collector's state while it runs.
struct Collecting<'a> {
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
                    eprintln!("nospy monitor: warning: templates not saved: {e:#}");
                    self.save_failed = true;
                }
            }
        }
    }
}
