//! `nospy serve`: the log over HTTP.
//!
//! - Read API, exactly c2sp.org/tlog-tiles: `GET /checkpoint`, `GET /tile/<L>/<N>[.p/<W>]`,
//!   `GET /tile/entries/<N>[.p/<W>]`, served from the log directory or the bucket with the
//!   spec's content types and cache headers; nothing beyond the published checkpoint is ever
//!   served.
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
//! One thread owns the [`nospy_log::Sequencer`] (or, on object storage, leads or relays:
//! [`Storage::Cluster`]); HTTP handlers never write to the log.

#![forbid(unsafe_code)]

pub mod config;
mod dashboard;
mod http;
pub mod index;
pub mod index_pg;
pub mod metrics;
mod pipeline;
pub mod witnessing;

use crate::pipeline::sequencer::{run_sequencer, SequencerLinks};
use crate::pipeline::verifier::run_verifier;
use crate::pipeline::AddRequest;
use crate::witnessing::run_witnessing;
use axum::Router;
use config::ServeConfig;
use metrics::Metrics;
use nospy_log::storage::DirStorage;
use nospy_log::{Sequencer, TileCache, TileSource};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::SignerKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Largest request body accepted by `POST /add` (one log entry).
pub const MAX_BODY: usize = 65_535;

/// Where the log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A log directory (created by `nospy log init`), this server its only writer; the lookup
    /// index in SQLite beside it.
    Dir(PathBuf),
    /// Tiles in object storage and the sequencer's state and lookup index in PostgreSQL, shared
    /// by every instance started on the same ones: each serves reads and takes submissions,
    /// one at a time sequences and witnesses (`nospy_log::cluster`).
    Cluster(ClusterStorage),
}

/// A log on object storage and PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStorage {
    /// `s3://BUCKET/PREFIX[?options]` (see `nospy_log::object::ObjectTiles::from_url`).
    pub tiles: String,
    /// `postgres://...` or a key=value connection string.
    pub database: String,
    /// The log's schema in the database (created if absent).
    pub schema: String,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the log is.
    pub storage: Storage,
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
    /// Most entries in one answer of `/lookup` (a page; the answer says where the next starts).
    pub lookup_page: usize,
    /// The memory submissions may hold between their arrival and their acknowledgement, in
    /// bytes (each counted three times its size, for its copies); beyond it `POST /add` answers
    /// 503 at once.
    pub max_queued_bytes: usize,
    /// Most connections open at once; beyond, a new one is answered 503 and closed.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_connections_per_client: usize,
}

/// The default [`Options::queue`].
pub const QUEUE: usize = 65_536;
/// The default [`Options::max_batch`].
pub const MAX_BATCH: usize = 16_384;
/// The default [`Options::index_delay`].
pub const INDEX_DELAY: Duration = Duration::from_millis(100);

impl Options {
    /// The options of `nospy serve` by default for a log in `storage` signed with `key`,
    /// listening on `listen`, with no configuration file; change what differs with
    /// `Options { field: value, ..Options::new(..) }`.
    pub fn new(storage: Storage, key: SignerKey, listen: SocketAddr) -> Options {
        Options {
            storage,
            key,
            config: None,
            listen,
            queue: QUEUE,
            max_batch: MAX_BATCH,
            index_delay: INDEX_DELAY,
            lookup_page: LOOKUP_PAGE,
            max_queued_bytes: MAX_QUEUED_BYTES,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// The default [`Options::max_queued_bytes`]: 256 MiB.
pub const MAX_QUEUED_BYTES: usize = 256 << 20;
/// The default [`Options::max_connections`].
pub const MAX_CONNECTIONS: usize = 1024;
/// The default [`Options::max_connections_per_client`].
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// The default [`Options::lookup_page`].
pub const LOOKUP_PAGE: usize = 10_000;

/// The checkpoint as published (with cosignatures), and its size.
#[derive(Debug, Clone)]
struct Published {
    text: String,
    size: u64,
    /// Its root and how many signatures it carries (a cosigned version of the same checkpoint
    /// replaces a bare one, never the other way).
    root: nospy_tlog::Hash,
    signatures: usize,
    /// When this server published it.
    at: std::time::Instant,
}

impl Published {
    fn of(sc: &SignedCheckpoint) -> Published {
        Published {
            text: sc.to_text(),
            size: sc.checkpoint.size,
            root: sc.checkpoint.root,
            signatures: sc.note.signatures.len(),
            at: std::time::Instant::now(),
        }
    }
}

/// Publishes `p` for the read API and the dashboard, and says so to whoever waits on
/// [`Progress::publications`].
fn set_published(shared: &Shared, p: Published) {
    *lock_write(&shared.published) = p;
    shared.progress.send_modify(|g| g.publications += 1);
}

/// Publishes `sc` for the read API if it moves the log on: a larger tree, or the same
/// checkpoint with more cosignatures. A checkpoint of the published size with another root
/// (a fork, signed by the log's key) is refused and reported. Returns whether it was taken.
fn offer(shared: &Shared, sc: &SignedCheckpoint) -> bool {
    let mut p = lock_write(&shared.published);
    let c = &sc.checkpoint;
    let newer = c.size > p.size
        || (c.size == p.size && c.root == p.root && sc.note.signatures.len() > p.signatures);
    if c.size == p.size && c.root != p.root {
        eprintln!(
            "nospy serve: REFUSED a checkpoint of size {} with another root than the published one: the log's key signed a fork",
            c.size
        );
    }
    if newer {
        *p = Published::of(sc);
        shared.metrics.tree_size.store(c.size, Relaxed);
        drop(p);
        shared.progress.send_modify(|g| g.publications += 1);
    }
    newer
}

/// The lookup index: SQLite beside a log directory, or PostgreSQL beside a log on object
/// storage.
enum Lookup {
    Sqlite(Arc<std::sync::Mutex<index::Index>>),
    Postgres(index_pg::SharedPgIndex),
}

/// How many rows the indexer writes in one transaction, at most.
const INDEX_ROWS: usize = 8192;

/// What handlers share.
struct Shared {
    /// Where the tiles are read from.
    source: Arc<dyn TileSource>,
    cache: TileCache,
    published: RwLock<Published>,
    config: RwLock<ServeConfig>,
    config_path: Option<PathBuf>,
    config_stamp: RwLock<Option<SystemTime>>,
    metrics: Arc<Metrics>,
    /// The lookup index, for reading (the indexer thread writes through its own connection).
    index: Lookup,
    /// How many entries the lookup index covers: lookups are complete below this size only.
    indexed: AtomicU64,
    /// Most entries in one `/lookup` answer.
    lookup_page: usize,
    /// The queued submissions' memory, in KiB permits ([`Options::max_queued_bytes`]).
    queued: Arc<tokio::sync::Semaphore>,
    /// What the server has done, for [`Running::wait_for`].
    progress: tokio::sync::watch::Sender<Progress>,
    /// Set once the server stops taking connections: live streams end on it.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Live dashboard streams (`/events`) open now, at most [`MAX_LIVE_STREAMS`].
    live: Arc<tokio::sync::Semaphore>,
    /// What each witness did, by its cosignature key's name (for the dashboard).
    witnesses: std::sync::Mutex<std::collections::BTreeMap<String, witnessing::Seen>>,
    /// Where the server listens (the operator pages need a token beyond loopback).
    listen: SocketAddr,
    /// The operator pages' fleet, computed once per published size and configuration.
    fleet: dashboard::FleetCache,
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

/// Most live dashboard streams (`/events`) open at once: each holds a connection.
pub const MAX_LIVE_STREAMS: usize = 32;

/// Why the server could not start, or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read, or is not a valid `serve.toml`.
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The log could not be opened or recovered.
    Log(nospy_log::LogError),
    /// The lookup index could not be opened or brought up to the log.
    Index(index::IndexError),
    /// The object store or the database of a log on object storage refused or failed at start.
    Cluster(String),
    /// The operating system refused a resource: the listening address, a thread, the runtime.
    Start(String),
    /// A thread of the server failed while it ran (it panicked).
    Stopped(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config { path, problem } => write!(f, "{}: {problem}", path.display()),
            Error::Log(e) => write!(f, "{e}"),
            Error::Index(e) => write!(f, "the lookup index: {e}"),
            Error::Cluster(e) => f.write_str(e),
            Error::Start(e) | Error::Stopped(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Log(e) => Some(e),
            _ => None,
        }
    }
}

impl From<nospy_log::LogError> for Error {
    fn from(e: nospy_log::LogError) -> Self {
        Error::Log(e)
    }
}

fn os(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Start(format!("{what}: {e}"))
}

/// Reads the configuration file, if any.
pub fn load_config(path: Option<&std::path::Path>) -> Result<ServeConfig, Error> {
    match path {
        None => Ok(ServeConfig::default()),
        Some(p) => {
            let bad = |problem: String| Error::Config {
                path: p.to_path_buf(),
                problem,
            };
            let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
            let mut cfg = ServeConfig::from_toml(&text).map_err(|e| bad(e.to_string()))?;
            // The dashboard's agreements, beside the configuration file.
            let dir = p.parent().unwrap_or(std::path::Path::new("."));
            for f in &cfg.agreement_files {
                let path = dir.join(f);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("[dashboard] agreement {}: {e}", path.display())))?;
                let a = nospy_policy::Agreement::from_toml(&text)
                    .map_err(|e| bad(format!("[dashboard] agreement {}: {e}", path.display())))?;
                cfg.agreements.push(Arc::new(a));
            }
            cfg.operator = read_operator(dir, &cfg.operator_files).map_err(bad)?;
            Ok(cfg)
        }
    }
}

/// Reads the operator's files of `[dashboard]` (paths relative to `dir`).
fn read_operator(
    dir: &std::path::Path,
    files: &config::OperatorFiles,
) -> Result<Option<Arc<config::Operator>>, String> {
    let Some(inv) = &files.inventory else {
        return Ok(None);
    };
    let read = |what: &str, f: &std::path::Path| {
        let path = dir.join(f);
        std::fs::read_to_string(&path)
            .map(|t| (path.clone(), t))
            .map_err(|e| format!("[dashboard] {what} {}: {e}", path.display()))
    };
    let (path, text) = read("inventory", inv)?;
    let inventory = nospy_inventory::Inventory::parse(&text)
        .map_err(|e| format!("[dashboard] inventory {}: {e}", path.display()))?;
    let exposure = match &files.exposure {
        None => None,
        Some(f) => {
            let (path, text) = read("exposure", f)?;
            Some(
                nospy_exposure::Policy::from_toml(&text)
                    .map_err(|e| format!("[dashboard] exposure {}: {e}", path.display()))?,
            )
        }
    };
    let token = match &files.token_file {
        None => None,
        Some(f) => {
            let (path, text) = read("token_file", f)?;
            let t = text.trim();
            if t.len() < 16 || t.contains(char::is_whitespace) {
                return Err(format!(
                    "[dashboard] token_file {}: the token must be one word of at least 16 characters",
                    path.display()
                ));
            }
            Some(nospy_tlog::Sha256::of(t.as_bytes()))
        }
    };
    Ok(Some(Arc::new(config::Operator {
        inventory,
        exposure,
        token,
    })))
}

/// Refuses to show an operator's own data beyond loopback without a token.
fn check_operator_exposure(cfg: &ServeConfig, listen: SocketAddr) -> Result<(), String> {
    match &cfg.operator {
        Some(op) if op.token.is_none() && !listen.ip().is_loopback() => Err(format!(
            "[dashboard] the operator pages show the operator's own inventory: listening on {listen} (not loopback) they need token_file = \"...\" (a file holding a bearer token)"
        )),
        _ => Ok(()),
    }
}

/// A running server: its address, and a handle to stop it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// What it counts (as `/metrics` shows it).
    pub metrics: Arc<Metrics>,
    progress: tokio::sync::watch::Receiver<Progress>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), Error>>,
}

/// What the server has done so far, for whoever must wait on it (tests, a dashboard) rather
/// than sleep: every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The size of the checkpoint the last witnessing round was for, once the round ended and
    /// what it gathered was published (with or without a quorum; 0: none yet).
    pub witnessed: u64,
    /// How many entries the lookup index holds.
    pub indexed: u64,
    /// How many times the configuration file was read again after it changed (whether the new
    /// one was taken or refused).
    pub config_reloads: u64,
    /// How many checkpoints the server has published (a larger tree, or more cosignatures).
    pub publications: u64,
}

impl Running {
    /// What the server has done so far.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits until `done` holds of the server's [`Progress`], or `timeout` passes (false).
    pub async fn wait_for(&self, timeout: Duration, done: impl FnMut(&Progress) -> bool) -> bool {
        let mut rx = self.progress.clone();
        tokio::time::timeout(timeout, rx.wait_for(done))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops accepting, finishes every acknowledged submission, and waits.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.map_err(|e| Error::Stopped(e.to_string()))?
    }

    /// Waits until the server stops (on SIGTERM or Ctrl-C).
    pub async fn wait(self) -> Result<(), Error> {
        self.done.await.map_err(|e| Error::Stopped(e.to_string()))?
    }
}

/// The log as opened at start, before the threads that serve it are started.
struct Opened {
    source: Arc<dyn TileSource>,
    published: Published,
    index: Lookup,
    indexed: u64,
    writer: Writer,
}

/// What writes the log, and the lookup index's writer.
enum Writer {
    Dir {
        seq: Box<Sequencer>,
        index: index::Index,
    },
    Cluster {
        config: Box<pipeline::cluster::ClusterConfig>,
        index: index_pg::PgIndex,
    },
}

/// Opens a log directory: recovers it, and brings its SQLite lookup index up to it.
fn open_dir(dir: &std::path::Path, key: &SignerKey) -> Result<Opened, Error> {
    let mut seq = Sequencer::open(dir, key.clone())?;
    // Dozens of batches a second would grow the checkpoint history without bound; clients ask
    // /proof/inclusion against the checkpoints they hold instead.
    seq.keep_history(false);
    let source: Arc<dyn TileSource> = Arc::new(DirStorage::new(dir));
    let mut idx = index::Index::open(dir).map_err(Error::Index)?;
    let caught_up = idx
        .catch_up(source.as_ref(), seq.size(), seq.size())
        .map_err(Error::Index)?;
    if caught_up > 0 {
        eprintln!("nospy serve: indexed {caught_up} entries the lookup index did not have");
    }
    Ok(Opened {
        source,
        published: Published::of(seq.checkpoint()),
        index: Lookup::Sqlite(Arc::new(std::sync::Mutex::new(
            index::Index::open(dir).map_err(Error::Index)?,
        ))),
        indexed: seq.size(),
        writer: Writer::Dir {
            seq: Box::new(seq),
            index: idx,
        },
    })
}

/// Opens a log on object storage and PostgreSQL: creates it if it is not there yet, and reads
/// its published checkpoint. The lookup index catches up on its own thread.
async fn open_cluster(c: &ClusterStorage, key: &SignerKey) -> Result<Opened, Error> {
    use nospy_log::object::{BlockingObjects, ObjectTiles};
    let tiles = ObjectTiles::from_url(&c.tiles).map_err(|e| Error::Cluster(e.to_string()))?;
    nospy_log::cluster::init(&c.database, &c.schema, &tiles, key)
        .await
        .map_err(|e| Error::Cluster(format!("{}: {e}", c.tiles)))?;
    let sc = pipeline::cluster::read_published(&tiles, &key.verifier())
        .await
        .map_err(Error::Cluster)?
        .ok_or_else(|| Error::Cluster(format!("{}: no checkpoint", c.tiles)))?;
    let open_index = || async {
        index_pg::PgIndex::open(&c.database, &c.schema)
            .await
            .map_err(|e| Error::Cluster(e.to_string()))
    };
    let reading = open_index().await?;
    let writing = open_index().await?;
    let indexed = reading
        .size()
        .await
        .map_err(|e| Error::Cluster(e.to_string()))?
        .min(sc.checkpoint.size);
    Ok(Opened {
        source: Arc::new(BlockingObjects::new(
            tiles.clone(),
            tokio::runtime::Handle::current(),
        )),
        published: Published::of(&sc),
        index: Lookup::Postgres(index_pg::SharedPgIndex::new(
            &c.database,
            &c.schema,
            reading,
        )),
        indexed,
        writer: Writer::Cluster {
            config: Box::new(pipeline::cluster::ClusterConfig {
                tiles,
                database: c.database.clone(),
                schema: c.schema.clone(),
                key: key.clone(),
            }),
            index: writing,
        },
    })
}

/// Starts the server: opens the log (recovering it if needed), starts the sequencer thread and
/// the HTTP listener.
pub async fn start(opts: Options) -> Result<Running, Error> {
    let config = load_config(opts.config.as_deref())?;
    check_operator_exposure(&config, opts.listen).map_err(|problem| Error::Config {
        path: opts.config.clone().unwrap_or_default(),
        problem,
    })?;
    let opened = match &opts.storage {
        Storage::Dir(dir) => open_dir(dir, &opts.key)?,
        Storage::Cluster(c) => open_cluster(c, &opts.key).await?,
    };
    let metrics = Arc::new(Metrics::default());
    metrics.tree_size.store(opened.published.size, Relaxed);
    let (tx, rx) = mpsc::channel(opts.queue.max(1));
    let stamp = opts
        .config
        .as_ref()
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let shared = Arc::new(Shared {
        source: opened.source,
        cache: TileCache::new(nospy_log::DEFAULT_CACHE_TILES),
        published: RwLock::new(opened.published),
        config: RwLock::new(config),
        config_path: opts.config.clone(),
        config_stamp: RwLock::new(stamp),
        metrics: metrics.clone(),
        index: opened.index,
        indexed: AtomicU64::new(opened.indexed),
        lookup_page: opts.lookup_page.max(1),
        queued: Arc::new(tokio::sync::Semaphore::new(
            (opts.max_queued_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        )),
        progress: tokio::sync::watch::Sender::new(Progress {
            indexed: opened.indexed,
            ..Progress::default()
        }),
        witnesses: Default::default(),
        stopping: tokio::sync::watch::Sender::new(false),
        live: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_STREAMS)),
        listen: opts.listen,
        fleet: dashboard::FleetCache::default(),
    });
    let progress = shared.progress.subscribe();
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Start(format!("listening on {}: {e}", opts.listen)))?;
    let addr = listener.local_addr().map_err(os("listening"))?;
    let handle = tokio::runtime::Handle::current();
    let max_batch = opts.max_batch.clamp(1, nospy_log::MAX_BATCH);
    let (verified_tx, verified_rx) = std::sync::mpsc::sync_channel(1);
    let verifier = std::thread::Builder::new()
        .name("verifier".into())
        .spawn(move || run_verifier(rx, verified_tx, max_batch))
        .map_err(os("starting the verifier thread"))?;
    let (witness_tx, witness_rx) = std::sync::mpsc::channel::<SignedCheckpoint>();
    let (cosigned_tx, cosigned_rx) = std::sync::mpsc::channel::<SignedCheckpoint>();
    let witness_shared = shared.clone();
    let witness_rt = handle.clone();
    let witnessing = std::thread::Builder::new()
        .name("witnessing".into())
        .spawn(move || run_witnessing(witness_shared, witness_rt, witness_rx, cosigned_tx))
        .map_err(os("starting the witnessing thread"))?;
    // The lookup index is written by its own thread, so that it never slows the sequencer.
    let (index_tx, index_rx) = std::sync::mpsc::channel::<Vec<index::Row>>();
    let index_shared = shared.clone();
    let index_delay = opts.index_delay;
    let seq_shared = shared.clone();
    let mut background = Vec::new();
    let links = SequencerLinks {
        verified: verified_rx,
        index: index_tx,
        witness: witness_tx,
        cosigned: cosigned_rx,
    };
    let (indexer, sequencer) = match opened.writer {
        Writer::Dir { seq, index } => {
            metrics.leader.store(1, Relaxed);
            let indexer = std::thread::Builder::new()
                .name("indexer".into())
                .spawn(move || run_dir_indexer(index, index_rx, index_shared, index_delay))
                .map_err(os("starting the indexer thread"))?;
            let seq_key = opts.key.clone();
            let sequencer = std::thread::Builder::new()
                .name("sequencer".into())
                .spawn(move || run_sequencer(*seq, seq_key, links, seq_shared, max_batch))
                .map_err(os("starting the sequencer thread"))?;
            (indexer, sequencer)
        }
        Writer::Cluster { config, index } => {
            let rt = handle.clone();
            let at = (config.database.clone(), config.schema.clone());
            let indexer = std::thread::Builder::new()
                .name("indexer".into())
                .spawn(move || {
                    pipeline::cluster::run_indexer(
                        index,
                        at,
                        index_rx,
                        index_shared,
                        index_delay,
                        rt,
                    )
                })
                .map_err(os("starting the indexer thread"))?;
            background.push(tokio::spawn(pipeline::cluster::follow(
                shared.clone(),
                config.tiles.clone(),
                opts.key.verifier(),
            )));
            let rt = handle.clone();
            let sequencer = std::thread::Builder::new()
                .name("sequencer".into())
                .spawn(move || {
                    pipeline::cluster::run_cluster(*config, rt, links, seq_shared, max_batch)
                })
                .map_err(os("starting the sequencer thread"))?;
            (indexer, sequencer)
        }
    };
    let reload_shared = shared.clone();
    background.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // File reads: off the async workers.
            let s = reload_shared.clone();
            let _ = tokio::task::spawn_blocking(move || reload_if_changed(&s)).await;
        }
    }));
    let app = http::routes()
        .merge(dashboard::routes())
        .with_state(Arc::new(Handlers {
            shared: shared.clone(),
            queue: tx,
        }));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let limits = (opts.max_connections, opts.max_connections_per_client);
        serve_http(listener, app, stop_rx, limits, || {
            shared.stopping.send_replace(true);
        })
        .await;
        for b in &background {
            b.abort();
        }
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
        .map_err(|e| Error::Stopped(e.to_string()))?
        .map_err(|_| Error::Stopped("a thread of the server panicked".into()))
    });
    Ok(Running {
        addr,
        metrics,
        progress,
        stop: Some(stop_tx),
        done,
    })
}

/// The indexer of a log directory: the rows the sequencer sends, gathered for up to `delay`
/// (or INDEX_ROWS of them) into one transaction.
fn run_dir_indexer(
    mut idx: index::Index,
    rx: std::sync::mpsc::Receiver<Vec<index::Row>>,
    shared: Arc<Shared>,
    delay: Duration,
) {
    while let Ok(mut rows) = rx.recv() {
        // Digests are random keys, so each transaction writes about one page per row until it
        // covers a good part of the tree. Lookups answer for what is indexed, and clients read
        // the rest of the log themselves.
        let deadline = Instant::now() + delay;
        while rows.len() < INDEX_ROWS {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(more) => rows.extend(more),
                Err(_) => break,
            }
        }
        // A gap before these rows (a batch that failed to be written) is filled from the log
        // first: the index's size is the contiguous prefix it holds, and rows after a gap would
        // not count.
        let written = (|| {
            if let Some(first) = rows.first() {
                if idx.size()? < first.index {
                    let log_size = lock_read(&shared.published).size;
                    idx.catch_up(shared.source.as_ref(), log_size, first.index)?;
                }
            }
            idx.add(&rows)?;
            idx.size()
        })();
        match written {
            Ok(size) => indexed(&shared, size),
            Err(e) => eprintln!(
                "nospy serve: the lookup index is behind (filled from the log with the next entries): {e}"
            ),
        }
    }
}

/// Notes that the lookup index holds `size` entries.
fn indexed(shared: &Shared, size: u64) {
    shared.indexed.fetch_max(size, Relaxed);
    shared
        .progress
        .send_modify(|p| p.indexed = p.indexed.max(size));
}

/// Accepts connections until told to stop or until SIGTERM / Ctrl-C. Each connection gets a
/// header-read timeout, so slow clients cannot hold the server.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: oneshot::Receiver<()>,
    (max_connections, per_client): (usize, usize),
    stopping: impl FnOnce(),
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut conns = tokio::task::JoinSet::new();
    let open = OpenConnections::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Ok((mut stream, peer)) = accepted else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        // Connections are bounded, in all and per client address: each holds buffers and a
        // request body of up to MAX_BODY bytes. One over the bound is told so and closed.
        let Some(slot) = open.take(peer.ip(), conns.len(), max_connections, per_client) else {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\n\r\ntoo many connections now\n"),
                )
                .await;
            });
            continue;
        };
        // Answers go out at once, not held back to be coalesced with a next one that a client
        // waiting for this answer will never cause.
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        conns.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = conn.await;
        });
    }
    // Live streams end now; requests in flight finish (their submissions are acknowledged),
    // for a while.
    stopping();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// The connections open per client address, shared by the accept loop and the connections'
/// tasks, which give their slot back when they end.
#[derive(Default, Clone)]
struct OpenConnections(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// A connection's place among the open ones, given back when dropped.
struct Slot {
    open: OpenConnections,
    ip: std::net::IpAddr,
}

impl OpenConnections {
    /// A slot for a connection from `ip`, if neither bound is reached (`all` are open now).
    fn take(
        &self,
        ip: std::net::IpAddr,
        all: usize,
        max: usize,
        per_client: usize,
    ) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if all >= max || *n >= per_client {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.open.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

fn reload_if_changed(s: &Shared) {
    let Some(p) = &s.config_path else { return };
    let stamp = std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if stamp == *lock_read(&s.config_stamp) {
        return;
    }
    *lock_write(&s.config_stamp) = stamp;
    match load_config(Some(p)).and_then(|c| {
        check_operator_exposure(&c, s.listen).map_err(|problem| Error::Config {
            path: p.clone(),
            problem,
        })?;
        Ok(c)
    }) {
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
    s.progress.send_modify(|p| p.config_reloads += 1);
}

/// Runs the server until SIGTERM or Ctrl-C (the entry point of `nospy serve`).
pub fn run(opts: Options) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(os("starting the runtime"))?;
    rt.block_on(async {
        let running = start(opts).await?;
        eprintln!("nospy serve: listening on http://{}", running.addr);
        running.wait().await?;
        eprintln!("nospy serve: stopped; every acknowledged entry is in the log");
        Ok(())
    })
}
