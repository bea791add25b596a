//! `nospy serve`: the log over HTTP.
//!
//! - Read API, exactly c2sp.org/tlog-tiles: `GET /checkpoint`, `GET /tile/<L>/<N>[.p/<W>]`,
//!   `GET /tile/entries/<N>[.p/<W>]`, served from the log directory with the spec's content
//!   types and cache headers; nothing beyond the published checkpoint is ever served.
//! - Write API: `POST /add` with one DSSE envelope, admitted only when signed by a submitter of
//!   the configuration in a role that may submit its predicate; the answer carries the index
//!   once the entry is durable. A bounded queue in front of the sequencer answers 503 with
//!   `Retry-After` when full, so memory does not grow with load.
//! - Helpers: `GET /proof/inclusion?index=&size=`, `GET /proof/consistency?from=&to=`,
//!   `GET /metrics` (Prometheus).
//! - Witnessing: after each new checkpoint, the witnesses of the configuration are asked to
//!   cosign it (c2sp.org/tlog-witness), and the checkpoint is republished with the cosignatures
//!   received; a missed quorum is logged and counted.
//!
//! One thread owns the [`nospy_log::Sequencer`]; HTTP handlers never write to the log.

#![forbid(unsafe_code)]

pub mod config;
pub mod index;
pub mod metrics;
pub mod witnessing;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use config::{Role, ServeConfig};
use metrics::Metrics;
use nospy_log::storage::DirStorage;
use nospy_log::{Sequencer, TileCache, TileReader};
use nospy_statement::predicate::Predicate;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::merkle;
use nospy_tlog::note::SignerKey;
use nospy_tlog::tile::{self, TileId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Largest request body accepted by `POST /add` (one log entry).
pub const MAX_BODY: usize = 65_535;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The log directory (created by `nospy log init`).
    pub dir: PathBuf,
    /// The log's private key.
    pub key: SignerKey,
    /// The configuration file (submitters, witnesses), reloaded when it changes.
    pub config: Option<PathBuf>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Submissions waiting for the sequencer before new ones get 503.
    pub queue: usize,
    /// Most entries per batch.
    pub max_batch: usize,
    /// How long the lookup index gathers new entries before writing them in one transaction, at
    /// most (lookups answer for what is indexed; clients read the rest of the log themselves).
    pub index_delay: Duration,
}

/// A submission waiting for the sequencer: parsed, its signatures not yet checked (the
/// sequencer checks a whole batch's at once).
struct AddRequest {
    entry: Vec<u8>,
    check: nospy_statement::SignatureCheck,
    /// What the lookup index records of it.
    predicate_type: String,
    subjects: Vec<nospy_tlog::Hash>,
    signers: Vec<String>,
    received: Instant,
    reply: oneshot::Sender<Result<nospy_log::Appended, Refused>>,
}

/// Why the sequencer did not append a submission.
#[derive(Debug)]
enum Refused {
    /// Its signature does not verify (403).
    Forbidden(String),
    /// The append failed (500).
    Failed(String),
}

/// The checkpoint as published (with cosignatures), and its size.
#[derive(Debug, Clone)]
struct Published {
    text: String,
    size: u64,
}

/// How many rows the indexer writes in one transaction, at most.
const INDEX_ROWS: usize = 8192;

/// What handlers share.
struct Shared {
    storage: DirStorage,
    cache: TileCache,
    published: RwLock<Published>,
    config: RwLock<ServeConfig>,
    config_path: Option<PathBuf>,
    config_stamp: RwLock<Option<SystemTime>>,
    metrics: Arc<Metrics>,
    /// The lookup index, for reading (the indexer thread writes through its own connection).
    index: std::sync::Mutex<index::Index>,
    /// How many entries the lookup index covers: lookups are complete below this size only.
    indexed: AtomicU64,
}

/// What HTTP handlers hold: the shared state, and the way into the sequencer's queue. Only
/// handlers hold senders, so when the HTTP server stops the queue closes and the sequencer,
/// having acknowledged everything queued, stops too.
struct Handlers {
    shared: Arc<Shared>,
    queue: mpsc::Sender<AddRequest>,
}

impl std::ops::Deref for Handlers {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

type AppState = Arc<Handlers>;

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Reads the configuration file, if any.
pub fn load_config(path: Option<&std::path::Path>) -> Result<ServeConfig, String> {
    match path {
        None => Ok(ServeConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            ServeConfig::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
    }
}

/// A running server: its address, and a handle to stop it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// What it counts (as `/metrics` shows it).
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Stops accepting, finishes every acknowledged submission, and waits.
    pub async fn shutdown(mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.map_err(|e| e.to_string())?
    }

    /// Waits until the server stops (on SIGTERM or Ctrl-C).
    pub async fn wait(self) -> Result<(), String> {
        self.done.await.map_err(|e| e.to_string())?
    }
}

/// Starts the server: opens the log (recovering it if needed), starts the sequencer thread and
/// the HTTP listener.
pub async fn start(opts: Options) -> Result<Running, String> {
    let config = load_config(opts.config.as_deref())?;
    let mut seq = Sequencer::open(&opts.dir, opts.key.clone()).map_err(|e| e.to_string())?;
    // Dozens of batches a second would grow the checkpoint history without bound; clients ask
    // /proof/inclusion against the checkpoints they hold instead.
    seq.keep_history(false);
    let storage = DirStorage::new(&opts.dir);
    let published = Published {
        text: seq.checkpoint().to_text(),
        size: seq.size(),
    };
    let metrics = Arc::new(Metrics::default());
    metrics.tree_size.store(seq.size(), Relaxed);
    let (tx, rx) = mpsc::channel(opts.queue.max(1));
    let mut idx = index::Index::open(&opts.dir)?;
    let caught_up = idx.catch_up(&DirStorage::new(&opts.dir), seq.size())?;
    if caught_up > 0 {
        eprintln!("nospy serve: indexed {caught_up} entries the lookup index did not have");
    }
    let stamp = opts
        .config
        .as_ref()
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let shared = Arc::new(Shared {
        storage,
        cache: TileCache::new(nospy_log::DEFAULT_CACHE_TILES),
        published: RwLock::new(published),
        config: RwLock::new(config),
        config_path: opts.config.clone(),
        config_stamp: RwLock::new(stamp),
        metrics: metrics.clone(),
        index: std::sync::Mutex::new(index::Index::open(&opts.dir)?),
        indexed: AtomicU64::new(seq.size()),
    });
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = tokio::runtime::Handle::current();
    let seq_shared = shared.clone();
    let seq_key = opts.key.clone();
    let max_batch = opts.max_batch.clamp(1, nospy_log::MAX_BATCH);
    let (verified_tx, verified_rx) = std::sync::mpsc::sync_channel(1);
    // The lookup index is written by its own thread, so that SQLite never slows the sequencer.
    let (index_tx, index_rx) = std::sync::mpsc::channel::<Vec<index::Row>>();
    let index_shared = shared.clone();
    let index_delay = opts.index_delay;
    let indexer = std::thread::Builder::new()
        .name("indexer".into())
        .spawn(move || {
            let mut idx = idx;
            while let Ok(mut rows) = index_rx.recv() {
                // Rows are gathered for up to `index_delay` (or INDEX_ROWS of them) into one
                // transaction: digests are random keys, so each transaction writes about one page
                // per row until it covers a good part of the tree. Lookups answer for what is
                // indexed, and clients read the rest of the log themselves.
                let deadline = Instant::now() + index_delay;
                while rows.len() < INDEX_ROWS {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match index_rx.recv_timeout(left) {
                        Ok(more) => rows.extend(more),
                        Err(_) => break,
                    }
                }
                match idx.add(&rows) {
                    Ok(()) => {
                        if let Some(last) = rows.last() {
                            index_shared.indexed.fetch_max(last.index + 1, Relaxed);
                        }
                    }
                    Err(e) => eprintln!(
                        "nospy serve: the lookup index is behind (rebuilt at the next start): {e}"
                    ),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let verifier = std::thread::Builder::new()
        .name("verifier".into())
        .spawn(move || run_verifier(rx, verified_tx, max_batch))
        .map_err(|e| e.to_string())?;
    let (witness_tx, witness_rx) = std::sync::mpsc::channel::<SignedCheckpoint>();
    let (cosigned_tx, cosigned_rx) = std::sync::mpsc::channel::<SignedCheckpoint>();
    let witness_shared = shared.clone();
    let witnessing = std::thread::Builder::new()
        .name("witnessing".into())
        .spawn(move || run_witnessing(witness_shared, handle, witness_rx, cosigned_tx))
        .map_err(|e| e.to_string())?;
    let sequencer = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            let links = SequencerLinks {
                verified: verified_rx,
                index: index_tx,
                witness: witness_tx,
                cosigned: cosigned_rx,
            };
            run_sequencer(seq, seq_key, links, seq_shared, max_batch)
        })
        .map_err(|e| e.to_string())?;
    let reload_shared = shared.clone();
    let reloader = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reload_if_changed(&reload_shared);
        }
    });
    let app = router(Arc::new(Handlers {
        shared: shared.clone(),
        queue: tx,
    }));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve_http(listener, app, stop_rx).await;
        reloader.abort();
        // No more submissions can arrive: closing the queue lets the sequencer finish what is
        // queued, acknowledge it, and stop.
        drop(shared);
        tokio::task::spawn_blocking(move || {
            verifier
                .join()
                .and_then(|_| sequencer.join())
                .and_then(|_| indexer.join())
                .and_then(|_| witnessing.join())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the sequencer thread panicked".to_string())
    });
    Ok(Running {
        addr,
        metrics,
        stop: Some(stop_tx),
        done,
    })
}

/// Accepts connections until told to stop or until SIGTERM / Ctrl-C. Each connection gets a
/// header-read timeout, so slow clients cannot hold the server.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        // Answers go out at once, not held back to be coalesced with a next one that a client
        // waiting for this answer will never cause.
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = conn.await;
        });
        while conns.try_join_next().is_some() {}
    }
    // Let requests in flight finish (their submissions are acknowledged), for a while.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

fn reload_if_changed(s: &Shared) {
    let Some(p) = &s.config_path else { return };
    let stamp = std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if stamp == *lock_read(&s.config_stamp) {
        return;
    }
    *lock_write(&s.config_stamp) = stamp;
    match load_config(Some(p)) {
        Ok(c) => {
            eprintln!(
                "nospy serve: reloaded {} ({} submitters, {} witnesses)",
                p.display(),
                c.submitters.len(),
                c.witnesses.len()
            );
            *lock_write(&s.config) = c;
        }
        Err(e) => eprintln!("nospy serve: kept the previous configuration: {e}"),
    }
}

/// The verifier thread: checks the signatures of whatever is queued in one batch, answers 403
/// to those that fail, and hands the rest to the sequencer. While the sequencer is busy making
/// the last batch durable, it keeps checking and gathers what passes into one batch (up to
/// `max_batch`), so that batches grow with the load and each fsync round covers more entries.
fn run_verifier(
    mut rx: mpsc::Receiver<AddRequest>,
    out: std::sync::mpsc::SyncSender<Vec<AddRequest>>,
    max_batch: usize,
) {
    let mut pending: Vec<AddRequest> = Vec::new();
    loop {
        let mut batch = Vec::new();
        if pending.is_empty() {
            match rx.blocking_recv() {
                Some(r) => batch.push(r),
                None => return,
            }
        }
        while batch.len() + pending.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let idle = batch.is_empty();
        if !idle {
            let ok = nospy_statement::check_signatures(
                &batch.iter().map(|r| &r.check).collect::<Vec<_>>(),
            );
            for (r, ok) in batch.into_iter().zip(ok) {
                if ok {
                    pending.push(r);
                } else {
                    let _ = r.reply.send(Err(Refused::Forbidden(
                        "a signature does not verify with the key its keyid names".into(),
                    )));
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        match out.try_send(std::mem::take(&mut pending)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(p)) => {
                pending = p;
                if idle || pending.len() >= max_batch {
                    // Nothing new to check: wait a little for the sequencer (or for more input).
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}

/// How the sequencer thread talks to the others.
struct SequencerLinks {
    /// Batches whose signatures the verifier checked.
    verified: std::sync::mpsc::Receiver<Vec<AddRequest>>,
    /// Rows for the lookup index.
    index: std::sync::mpsc::Sender<Vec<index::Row>>,
    /// New checkpoints, for the witnessing thread.
    witness: std::sync::mpsc::Sender<SignedCheckpoint>,
    /// Checkpoints the witnesses cosigned.
    cosigned: std::sync::mpsc::Receiver<SignedCheckpoint>,
}

/// The sequencer thread: appends what the verifier passed (several of its batches at once when
/// they queue up, up to `max_batch`), acknowledges, hands the new checkpoint to the witnessing
/// thread, and republishes the checkpoints that come back cosigned.
fn run_sequencer(
    mut seq: Sequencer,
    key: SignerKey,
    links: SequencerLinks,
    shared: Arc<Shared>,
    max_batch: usize,
) {
    let SequencerLinks {
        verified: rx,
        index: index_tx,
        witness: witness_tx,
        cosigned: cosigned_rx,
    } = links;
    let dir = seq.dir().to_path_buf();
    loop {
        // Cosigned checkpoints come back from the witnessing thread; only the sequencer writes
        // the checkpoint file, and only the latest checkpoint is republished.
        while let Ok(sc) = cosigned_rx.try_recv() {
            publish_cosigned(&seq, &shared, sc);
        }
        let mut batch = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(b) => b,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let entries: Vec<&[u8]> = batch.iter().map(|r| r.entry.as_slice()).collect();
        let before = seq.size();
        let result = seq.append(&entries);
        match result {
            Ok(out) => {
                let added = seq.size() - before;
                shared.metrics.entries.fetch_add(added, Relaxed);
                shared.metrics.tree_size.store(seq.size(), Relaxed);
                shared.metrics.batch_size.observe(batch.len() as f64);
                *lock_write(&shared.published) = Published {
                    text: seq.checkpoint().to_text(),
                    size: seq.size(),
                };
                // Acknowledge first; then the lookup index follows the log on its own thread (it
                // is not part of the acknowledgement's durability: it can be rebuilt from the log).
                let mut rows = Vec::with_capacity(batch.len());
                for (r, a) in batch.into_iter().zip(out) {
                    shared
                        .metrics
                        .append_latency
                        .observe(r.received.elapsed().as_secs_f64());
                    let _ = r.reply.send(Ok(a));
                    if !a.duplicate {
                        rows.push(index::Row {
                            index: a.index,
                            leaf_hash: a.hash,
                            predicate_type: r.predicate_type,
                            subjects: r.subjects,
                            signers: r.signers,
                        });
                    }
                }
                let _ = index_tx.send(rows);
                if added > 0 {
                    let _ = witness_tx.send(seq.checkpoint().clone());
                }
            }
            Err(e) => {
                let msg = e.to_string();
                eprintln!("nospy serve: append failed: {msg}");
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(Refused::Failed(msg.clone())));
                }
                // A failed commit poisons the sequencer: reopen, which recovers from the disk.
                drop(seq);
                match Sequencer::open(&dir, key.clone()) {
                    Ok(mut s) => {
                        s.keep_history(false);
                        seq = s
                    }
                    Err(e) => {
                        eprintln!("nospy serve: cannot reopen the log, stopping: {e}");
                        return;
                    }
                }
            }
        }
    }
    // The queue is closed: let the witnessing thread finish its round and publish its result.
    drop(witness_tx);
    while let Ok(sc) = cosigned_rx.recv() {
        publish_cosigned(&seq, &shared, sc);
    }
}

/// Republishes the sequencer's latest checkpoint with the cosignatures the witnesses gave it,
/// unless the log has moved on since (then a newer round is on its way).
fn publish_cosigned(seq: &Sequencer, shared: &Shared, sc: SignedCheckpoint) {
    if sc.checkpoint != seq.checkpoint().checkpoint {
        return;
    }
    let text = sc.to_text();
    if let Err(e) =
        shared
            .storage
            .replace_atomically("checkpoint", ".nospy/checkpoint.tmp", text.as_bytes())
    {
        eprintln!("nospy serve: could not publish the cosigned checkpoint: {e}");
        return;
    }
    let size = sc.checkpoint.size;
    *lock_write(&shared.published) = Published { text, size };
}

/// The witnessing thread: for the latest checkpoint the sequencer sent (older ones still queued
/// are skipped), asks the witnesses to cosign and sends the cosigned checkpoint back. A witness
/// that is slow or down costs this thread its timeout, never the sequencer.
fn run_witnessing(
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    rx: std::sync::mpsc::Receiver<SignedCheckpoint>,
    cosigned: std::sync::mpsc::Sender<SignedCheckpoint>,
) {
    let client = nospy_client::http::client();
    // What each witness last cosigned, learnt from 409 answers.
    let mut sizes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    while let Ok(mut sc) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            sc = newer;
        }
        if let Some(done) = witness(sc, &shared, &rt, &client, &mut sizes) {
            if cosigned.send(done).is_err() {
                return;
            }
        }
    }
}

/// Asks every configured witness to cosign the sequencer's latest checkpoint, then publishes it
/// with the cosignatures received.
fn witness(
    sc: SignedCheckpoint,
    shared: &Shared,
    rt: &tokio::runtime::Handle,
    client: &nospy_client::http::HttpClient,
    sizes: &mut std::collections::HashMap<String, u64>,
) -> Option<SignedCheckpoint> {
    let cfg = lock_read(&shared.config).clone();
    if cfg.witnesses.is_empty() {
        return None;
    }
    let size = sc.checkpoint.size;
    let reader = TileReader::new(&shared.storage, &shared.cache, size);
    let proof_from = |old: u64| -> Vec<nospy_tlog::Hash> {
        if old == 0 || old >= size {
            Vec::new()
        } else {
            merkle::consistency_proof(&reader, old, size).unwrap_or_default()
        }
    };
    let requests: Vec<(config::Witness, u64, Vec<nospy_tlog::Hash>)> = cfg
        .witnesses
        .iter()
        .map(|w| {
            let old = sizes.get(&w.url).copied().unwrap_or(0).min(size);
            (w.clone(), old, proof_from(old))
        })
        .collect();
    let timeout = cfg.witness_timeout;
    let replies = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (w, old, proof)) in requests.iter().cloned().enumerate() {
            let client = client.clone();
            let sc = sc.clone();
            set.spawn(async move {
                (
                    i,
                    witnessing::add_checkpoint(&client, &w, &sc, old, &proof, timeout).await,
                )
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            out.push(r);
        }
        out
    });
    let mut cosigs = Vec::new();
    let mut retry = Vec::new();
    for (i, reply) in replies {
        let w = &requests[i].0;
        match reply {
            witnessing::Reply::Cosigned(s) => {
                sizes.insert(w.url.clone(), size);
                shared.metrics.witness(w.key.name(), true);
                cosigs.push(s);
            }
            witnessing::Reply::Conflict(n) if n <= size => {
                sizes.insert(w.url.clone(), n);
                retry.push((w.clone(), n, proof_from(n)));
            }
            witnessing::Reply::Conflict(n) => {
                shared.metrics.witness(w.key.name(), false);
                eprintln!(
                    "nospy serve: witness {} has cosigned size {n}, beyond this log's {size}",
                    w.key.name()
                );
            }
            witnessing::Reply::Failed(e) => {
                shared.metrics.witness(w.key.name(), false);
                eprintln!(
                    "nospy serve: witness {} did not cosign size {size}: {e}",
                    w.key.name()
                );
            }
        }
    }
    // Those that had seen another size are asked once more, with a proof from that size.
    if !retry.is_empty() {
        let again = rt.block_on(async {
            let mut out = Vec::new();
            for (w, old, proof) in &retry {
                out.push((
                    w.clone(),
                    witnessing::add_checkpoint(client, w, &sc, *old, proof, timeout).await,
                ));
            }
            out
        });
        for (w, reply) in again {
            match reply {
                witnessing::Reply::Cosigned(s) => {
                    sizes.insert(w.url.clone(), size);
                    shared.metrics.witness(w.key.name(), true);
                    cosigs.push(s);
                }
                other => {
                    shared.metrics.witness(w.key.name(), false);
                    eprintln!(
                        "nospy serve: witness {} did not cosign size {size}: {other:?}",
                        w.key.name()
                    );
                }
            }
        }
    }
    if cosigs.len() < cfg.witness_quorum {
        shared.metrics.quorum_missed.fetch_add(1, Relaxed);
        eprintln!(
            "nospy serve: checkpoint of size {size} has {} of the {} cosignatures of the quorum",
            cosigs.len(),
            cfg.witness_quorum
        );
    }
    if cosigs.is_empty() {
        return None;
    }
    let mut cosigned = sc;
    cosigned.note.signatures.extend(cosigs);
    Some(cosigned)
}

/// The HTTP routes.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/checkpoint", get(get_checkpoint))
        .route("/tile/{*path}", get(get_tile))
        .route("/add", post(post_add))
        .route("/proof/inclusion", get(get_inclusion))
        .route("/proof/consistency", get(get_consistency))
        .route("/metrics", get(get_metrics))
        .route("/lookup", get(get_lookup))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn respond(
    state: &Shared,
    status: StatusCode,
    content_type: &'static str,
    cache: Option<&'static str>,
    body: impl Into<Body>,
) -> Response<Body> {
    state.metrics.status(status.as_u16());
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = cache {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
    }
    r
}

fn error(state: &Shared, status: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    respond(
        state,
        status,
        "text/plain; charset=utf-8",
        Some("no-store"),
        format!("{msg}\n"),
    )
}

const SHORT: &str = "public, max-age=2";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

async fn get_checkpoint(State(s): State<AppState>) -> Response<Body> {
    let text = lock_read(&s.published).text.clone();
    respond(
        &s,
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Some(SHORT),
        text,
    )
}

async fn get_tile(State(s): State<AppState>, UrlPath(path): UrlPath<String>) -> Response<Body> {
    let full = format!("tile/{path}");
    let (id, bundle) = match TileId::parse(&full) {
        Ok(x) => x,
        Err(e) => return error(&s, StatusCode::NOT_FOUND, e),
    };
    // Only what the published tree covers: a full tile it contains, or a partial tile of a width
    // the tile has, or had, in it.
    let size = lock_read(&s.published).size;
    let covered = tile::width_in(id.level, id.index, size);
    if id.width > covered || (bundle && id.level != 0) {
        return error(
            &s,
            StatusCode::NOT_FOUND,
            format!("{full} is not in the published tree of size {size}"),
        );
    }
    let rel = if bundle { id.entries_path() } else { id.path() };
    let storage_path = s.storage.path(&rel);
    match tokio::fs::read(&storage_path).await {
        Ok(data) => {
            let cache = if id.is_full() { IMMUTABLE } else { SHORT };
            respond(
                &s,
                StatusCode::OK,
                "application/octet-stream",
                Some(cache),
                data,
            )
        }
        // An older partial tile a log may have deleted: the client falls back to the full one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            error(&s, StatusCode::NOT_FOUND, format!("{full} is not kept"))
        }
        Err(e) => error(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{full}: {e}"),
        ),
    }
}

fn may_submit(role: Role, p: &Predicate) -> bool {
    matches!(
        (role, p),
        (Role::Vendor, Predicate::Release(_))
            | (Role::Vendor, Predicate::Revocation(_))
            | (Role::Evaluator, Predicate::Attestation(_))
            | (Role::Evaluator, Predicate::Revocation(_))
            | (Role::Monitor, Predicate::Evidence(_))
    )
}

/// The whole request body within 10 seconds and `max` bytes, or the status and message to answer
/// with: slow or huge uploads do not hold the server.
pub(crate) async fn read_body(
    req: axum::extract::Request,
    max: usize,
) -> Result<axum::body::Bytes, (StatusCode, String)> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        axum::body::to_bytes(req.into_body(), max),
    )
    .await
    {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long".into(),
        )),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {max} bytes"),
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

async fn post_add(State(s): State<AppState>, req: axum::extract::Request) -> Response<Body> {
    let received = Instant::now();
    let body = match read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err((status, message)) => return error(&s, status, message),
    };
    // Every signature must name (by keyid) a submitter of the configuration; the sequencer then
    // checks that each verifies with that key before anything is appended (a batch at a time).
    let cfg = lock_read(&s.config).submitters.clone();
    let parsed = match nospy_statement::parse_unverified(&body, |id| {
        cfg.iter()
            .find(|sub| sub.key_text == id)
            .map(|sub| sub.key.clone())
    }) {
        Ok(x) => x,
        Err(nospy_statement::StatementError::UnknownKey(m)) => {
            return error(
                &s,
                StatusCode::FORBIDDEN,
                format!("not signed by a submitter this log admits: {m}"),
            )
        }
        Err(e) => {
            return error(
                &s,
                StatusCode::BAD_REQUEST,
                format!("not a signed nospy statement: {e}"),
            )
        }
    };
    let admitted = parsed.named.iter().any(|k| {
        cfg.iter()
            .any(|sub| &sub.key == k && may_submit(sub.role, &parsed.predicate))
    });
    if !admitted {
        return error(
            &s,
            StatusCode::FORBIDDEN,
            "not signed by a submitter this log admits for this kind of statement",
        );
    }
    let (tx, rx) = oneshot::channel();
    // Only what the verifier and the index need goes on: the parsed statement is dropped here,
    // on the handler's thread, not on the sequencer's.
    let req = AddRequest {
        entry: body.to_vec(),
        check: parsed.signature_check(),
        predicate_type: parsed.statement.predicate_type.clone(),
        subjects: parsed.statement.subject_sha256(),
        signers: parsed.named.iter().map(|k| k.to_string()).collect(),
        received,
        reply: tx,
    };
    drop(parsed);
    match s.queue.try_send(req) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            let mut r = error(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "the sequencer is busy; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "the log is shutting down",
            )
        }
    }
    match rx.await {
        Ok(Ok(a)) => {
            let body = json_body(&nospy_client::api::AddResponse {
                index: a.index,
                hash: a.hash,
                duplicate: a.duplicate,
            });
            respond(
                &s,
                StatusCode::OK,
                "application/json",
                Some("no-store"),
                body,
            )
        }
        Ok(Err(Refused::Forbidden(e))) => error(&s, StatusCode::FORBIDDEN, e),
        Ok(Err(Refused::Failed(e))) => error(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not appended: {e}"),
        ),
        Err(_) => error(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            "the log stopped before appending",
        ),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

async fn get_inclusion(
    State(s): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "expected ?index=N[&size=M] with decimal numbers",
        );
    };
    let current = lock_read(&s.published).size;
    let size = q.size.unwrap_or(current);
    if size > current || q.index >= size {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            format!("need index < size <= {current}"),
        );
    }
    let reader = TileReader::new(&s.storage, &s.cache, current);
    match merkle::inclusion_proof(&reader, q.index, size) {
        Ok(p) => {
            let body = json_body(&nospy_client::api::InclusionResponse {
                index: q.index,
                size,
                proof: p,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err(e) => error(&s, StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_consistency(
    State(s): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "expected ?from=N[&to=M] with decimal numbers",
        );
    };
    let current = lock_read(&s.published).size;
    let to = q.to.unwrap_or(current);
    if to > current || q.from == 0 || q.from > to {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            format!("need 0 < from <= to <= {current}"),
        );
    }
    let reader = TileReader::new(&s.storage, &s.cache, current);
    match merkle::consistency_proof(&reader, q.from, to) {
        Ok(p) => {
            let body = json_body(&nospy_client::api::ConsistencyResponse {
                from: q.from,
                to,
                proof: p,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err(e) => error(&s, StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct LookupQuery {
    digest: String,
}

async fn get_lookup(
    State(s): State<AppState>,
    q: Result<Query<LookupQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(&s, StatusCode::BAD_REQUEST, "expected ?digest=<sha256 hex>");
    };
    let hex = q.digest.strip_prefix("sha256:").unwrap_or(&q.digest);
    let Some(d) = nospy_tlog::Hash::from_hex(hex).filter(|_| hex.len() == 64) else {
        return error(&s, StatusCode::BAD_REQUEST, "digest is not 64 hex digits");
    };
    // The index follows the log on its own thread: the answer covers what it has indexed.
    let size = lock_read(&s.published).size.min(s.indexed.load(Relaxed));
    let found = s
        .index
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .lookup(&d, size);
    match found {
        Ok(entries) => {
            let body = json_body(&nospy_client::api::LookupResponse {
                digest: d,
                size,
                entries,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err(e) => error(&s, StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A body of the API's JSON types.
fn json_body(v: &impl serde::Serialize) -> String {
    // invariant: the API's types serialise to JSON without fail (strings, numbers, lists).
    serde_json::to_string(v).unwrap_or_default()
}

async fn get_metrics(State(s): State<AppState>) -> Response<Body> {
    let text = s.metrics.render();
    respond(
        &s,
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Some("no-store"),
        text,
    )
}

/// Runs the server until SIGTERM or Ctrl-C (the entry point of `nospy serve`).
pub fn run(opts: Options) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let running = start(opts).await?;
        eprintln!("nospy serve: listening on http://{}", running.addr);
        running.wait().await?;
        eprintln!("nospy serve: stopped; every acknowledged entry is in the log");
        Ok(())
    })
}
