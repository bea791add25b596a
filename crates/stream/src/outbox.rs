//! A collector's way to the engine from ordinary (blocking) code: a thread of its own runs the
//! connection and stores, in the order they were handed on, the batches a [`Publisher`] sealed
//! and the state the collector keeps (exporters' templates, what each source read).
//!
//! Decoding stays on the caller's thread and never waits for the network, except when the
//! outbox's bounded queue is full (the engine is slower than the source): then it waits, so
//! memory stays bounded.

use crate::collect::{publish_all, Publisher};
use crate::nats::{Nats, Options};
use crate::transport::{Sealed, Transport, TransportError};
use bytes::Bytes;
use nospy_flow::source::Sink;
use nospy_flow::{DnsSeen, Flow};
use std::sync::mpsc;
use std::time::Duration;

/// How long a batch is published again (under its id: stored once) before the outbox fails.
const PATIENCE: Duration = Duration::from_secs(120);
/// Most batches published at once, of those handed on while the ones before were published.
const COALESCE: usize = 256;
/// The first line of a collector's saved state.
const STATE_HEADER: &str = "nospy-collector-state 1\n";

enum Msg {
    Batches(Vec<Sealed>),
    Put(String, Bytes),
    Done,
}

/// The thread that talks to the engine for a collector.
pub struct Outbox {
    tx: mpsc::SyncSender<Msg>,
    thread: Option<std::thread::JoinHandle<Result<u64, TransportError>>>,
    deployment: String,
}

/// What [`Outbox::start`] found on the engine.
pub struct Started {
    /// The outbox.
    pub outbox: Outbox,
    /// The flow stream's partitions (those of its first setup).
    pub partitions: u32,
    /// Every exporter's saved templates, as one collector state ([`nospy_flow::netflow::Collector::restore`]).
    pub templates: String,
}

impl Outbox {
    /// Connects to the NATS server at `url`, sets deployment `name`'s streams up (with
    /// `partitions` if they are new), records `numbering` as the deployment's or refuses it if
    /// the deployment has another ([`crate::numbering::claim`]), and reads the templates saved
    /// for exporters; and records `input` as begun, or refuses it where its batches would be
    /// taken for an earlier run's ([`crate::collect::begin`]).
    pub fn start(
        url: &str,
        name: &str,
        partitions: u32,
        options: Options,
        numbering: std::sync::Arc<crate::numbering::Numbering>,
        input: crate::collect::Input,
    ) -> Result<Started, TransportError> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(64);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(u32, String), TransportError>>();
        let (url, deployment) = (url.to_string(), name.to_string());
        let thread = std::thread::spawn(move || -> Result<u64, TransportError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| TransportError::Stopped(format!("starting the publisher: {e}")))?;
            rt.block_on(async move {
                let setup = async {
                    let nats = Nats::connect(&url, &deployment, options).await?;
                    let p = nats.setup(partitions).await?;
                    crate::numbering::claim(&nats, &numbering).await?;
                    let now_s = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let window = nats.dedup_window().await?;
                    crate::collect::begin(&nats, &input, window, now_s).await?;
                    let mut templates = String::from(STATE_HEADER);
                    for (k, _) in nats.keys("template.").await? {
                        if let Some((v, _)) = nats.get(&k).await? {
                            for line in String::from_utf8_lossy(&v).lines().skip(1) {
                                templates.push_str(line);
                                templates.push('\n');
                            }
                        }
                    }
                    Ok::<_, TransportError>((nats, p, templates))
                };
                let nats = match setup.await {
                    Ok((nats, p, t)) => {
                        let _ = ready_tx.send(Ok((p, t)));
                        nats
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(0);
                    }
                };
                let mut dups = 0;
                let mut next = rx.recv().ok();
                while let Some(m) = next.take() {
                    match m {
                        Msg::Batches(mut b) => {
                            // With the batches handed on meanwhile, in order: one publication
                            // (its acknowledgements awaited once) for all of them.
                            while b.len() < COALESCE {
                                match rx.try_recv() {
                                    Ok(Msg::Batches(more)) => b.extend(more),
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            dups += publish_all(&nats, &b, PATIENCE).await?;
                        }
                        Msg::Put(k, v) => {
                            nats.put(&k, v).await?;
                        }
                        Msg::Done => break,
                    }
                    if next.is_none() {
                        next = rx.recv().ok();
                    }
                }
                Ok(dups)
            })
        });
        let (partitions, templates) = ready_rx
            .recv()
            .map_err(|_| TransportError::Stopped("the publisher thread stopped".into()))??;
        Ok(Started {
            outbox: Outbox {
                tx,
                thread: Some(thread),
                deployment: name.to_string(),
            },
            partitions,
            templates,
        })
    }

    /// A sink that hands `publisher`'s sealed batches on to this outbox.
    pub fn sink(&self, publisher: Publisher) -> OutboxSink {
        OutboxSink {
            publisher,
            tx: self.tx.clone(),
            broken: false,
        }
    }

    /// A template store on the state bucket (`template.<hex of the exporter>`), which hands
    /// out `loaded` (from [`Started::templates`]) once.
    pub fn templates(&self, loaded: String) -> KvTemplates {
        KvTemplates {
            tx: self.tx.clone(),
            loaded: Some(loaded),
            name: format!("the state bucket {}_STATE", self.deployment),
        }
    }

    /// Stores `value` under `key` in the state bucket, after what was handed on before.
    pub fn put(&self, key: String, value: Bytes) -> Result<(), TransportError> {
        self.tx
            .send(Msg::Put(key, value))
            .map_err(|_| TransportError::Stopped("the publisher stopped".into()))
    }

    /// Waits until everything handed on is stored; returns how many batches were already
    /// stored (duplicates).
    pub fn finish(mut self) -> Result<u64, TransportError> {
        let _ = self.tx.send(Msg::Done);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| TransportError::Stopped("the publisher thread panicked".into()))?,
            None => Ok(0),
        }
    }
}

/// A [`Publisher`] whose sealed batches go to an [`Outbox`].
pub struct OutboxSink {
    publisher: Publisher,
    tx: mpsc::SyncSender<Msg>,
    broken: bool,
}

impl OutboxSink {
    fn hand_on(&mut self, all: bool) {
        if all {
            self.publisher.flush();
        }
        let sealed = self.publisher.take_sealed();
        if !sealed.is_empty() && self.tx.send(Msg::Batches(sealed)).is_err() {
            self.broken = true;
        }
    }

    /// Hands on what is left and returns the publisher (its counts), or fails if the outbox
    /// stopped taking batches.
    pub fn finish(mut self) -> Result<Publisher, TransportError> {
        self.hand_on(true);
        if self.broken {
            return Err(TransportError::Stopped(
                "publishing failed (the publisher stopped)".into(),
            ));
        }
        Ok(self.publisher)
    }
}

impl Sink for OutboxSink {
    fn wants(&self, src: std::net::IpAddr, dst: std::net::IpAddr) -> bool {
        self.publisher.wants(src, dst)
    }
    fn flow(&mut self, f: &Flow) {
        self.publisher.flow(f);
        self.hand_on(false);
    }
    fn flows(&mut self, flows: &[Flow]) {
        for f in flows {
            self.publisher.flow(f);
        }
        self.hand_on(false);
    }
    fn dns(&mut self, d: &DnsSeen) {
        self.publisher.dns(d);
        self.hand_on(false);
    }
    fn tick(&mut self) {
        self.hand_on(true);
    }
}

/// Templates kept per exporter in the state bucket (`template.<hex of the exporter>`), so that
/// any collector (a restarted one, or another taking over an exporter's address) reads data at
/// once.
pub struct KvTemplates {
    tx: mpsc::SyncSender<Msg>,
    loaded: Option<String>,
    name: String,
}

impl crate::listen::Templates for KvTemplates {
    fn load(&mut self) -> std::io::Result<Option<String>> {
        Ok(self.loaded.take())
    }
    fn save(&mut self, text: &str) -> std::io::Result<()> {
        let mut by: std::collections::BTreeMap<&str, String> = Default::default();
        for line in text.lines().skip(1) {
            let exporter = line.split(' ').nth(1).unwrap_or("");
            let e = by
                .entry(exporter)
                .or_insert_with(|| STATE_HEADER.to_string());
            e.push_str(line);
            e.push('\n');
        }
        for (exporter, v) in by {
            let hex: String = exporter.bytes().map(|b| format!("{b:02x}")).collect();
            self.tx
                .send(Msg::Put(format!("template.{hex}"), Bytes::from(v)))
                .map_err(|_| std::io::Error::other("the connection to NATS failed"))?;
        }
        Ok(())
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}
