//! A log in object storage with its sequencer's state in PostgreSQL: several instances, one
//! sequencer at a time.
//!
//! The database holds, in a schema of its own per log (created and migrated here, versioned):
//! `tree_state`, one row with the published size, root and checkpoint and an **epoch**;
//! `pending`, the entries of the batch being committed; `dedup`, every entry's leaf hash and
//! index (exact, never rebuilt in memory).
//!
//! **Lease and fence.** An instance tries to lead by taking a PostgreSQL session advisory lock on
//! a connection of its own (the lease: whoever holds it is the one that tries). On taking it, it
//! increments the epoch. Every write it makes afterwards is conditional on the tree state being
//! the size, root and epoch it last read or wrote (the fence): zero rows means another instance
//! leads now, and this one stops at once ([`ClusterError::Fenced`]), whatever it believes about
//! its lease. The checkpoint object is then replaced only from the version this leader last saw,
//! so even a leader paused between its database commit and its checkpoint write cannot put an
//! older checkpoint over a newer one.
//!
//! **One batch** ([`ClusterSequencer::append`]):
//!
//! 1. the new entries get their indices, and are recorded with their leaf hashes in `pending`
//!    and `dedup`, in one transaction under the fence;
//! 2. the tiles and entry bundles are written (create-if-absent; the same bytes already there
//!    are success), from the shared right edge ([`crate::edge`]);
//! 3. the new checkpoint is signed, and `tree_state` moves to it and `pending` is emptied, in one
//!    transaction under the fence;
//! 4. the checkpoint object is replaced (conditional on its last version); only then are the
//!    indices returned.
//!
//! A leader that stops anywhere in this leaves `pending` behind; the next leader integrates it
//! first (the same entries at the same indices, so the same bytes at every path), so nothing
//! recorded is lost and no path is ever written with two contents.
//!
//! Whoever can write this database can do what the log key's holder can (publish a checkpoint
//! of any content it chooses to record): it is trusted as the key is. The object store is not:
//! at worst it stops the log.

use crate::edge::{EdgeError, RightEdge};
use crate::object::{CheckpointVersion, ObjectError, ObjectTiles};
use crate::sequencer::Appended;
use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::note::SignerKey;
use nospy_tlog::tile::MAX_ENTRY_LEN;
use std::collections::HashMap;
use tokio_postgres::{Client, NoTls};

/// The version of the database schema this code writes: 1 (tree state, pending batch,
/// deduplication), 2 (submissions relayed by instances that do not lead).
pub const SCHEMA_VERSION: i32 = 2;

/// Why a cluster operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// Another instance leads: the tree state is not what this one last saw. This instance must
    /// stop sequencing; nothing it had not acknowledged is lost (the leader integrates it).
    Fenced,
    /// This instance stopped after a failure part-way through a batch: it must lead again
    /// ([`ClusterSequencer::lead`]), which integrates what was recorded.
    Poisoned,
    /// The database failed or refused.
    Database(String),
    /// The object store failed, or another writer is at work there.
    Object(ObjectError),
    /// The database or the bucket holds something this log did not write (another origin,
    /// another key, a malformed row or tile, a newer schema).
    Corrupt(String),
    /// A batch entry over 65,535 bytes: its position and length; nothing was appended.
    EntryTooLong {
        /// The entry's position in the batch.
        position: usize,
        /// Its length.
        len: usize,
    },
}

impl ClusterError {
    /// Whether this instance may simply try again (the store or the database failed), as
    /// opposed to having lost the lead or found something it must not write over.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::Database(_) => true,
            ClusterError::Object(e) => !e.is_fatal(),
            _ => false,
        }
    }
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterError::Fenced => f.write_str(
                "another instance sequences this log now (the tree state moved on): this one stopped",
            ),
            ClusterError::Poisoned => f.write_str(
                "a batch failed part-way: this instance must lead again before appending",
            ),
            ClusterError::Database(m) => write!(f, "database: {m}"),
            ClusterError::Object(e) => write!(f, "{e}"),
            ClusterError::Corrupt(m) => f.write_str(m),
            ClusterError::EntryTooLong { position, len } => write!(
                f,
                "entry {position} is {len} bytes, over the limit of {MAX_ENTRY_LEN}"
            ),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(e: tokio_postgres::Error) -> Self {
        ClusterError::Database(describe(&e))
    }
}

/// A PostgreSQL error with what the server said (the client's own text is only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {} ({})", d.severity(), d.message(), d.code().code()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

impl From<ObjectError> for ClusterError {
    fn from(e: ObjectError) -> Self {
        ClusterError::Object(e)
    }
}

/// Connects to `url` (`postgres://user@host:port/db?...`, or the key=value form); the
/// connection runs on a task of the current runtime until the client is dropped. With
/// `sslmode=require` the connection is TLS, and the server's certificate is verified (its
/// chain against the system's roots, or against the CA file `sslrootcert=FILE`, and the host
/// name), as libpq's `verify-full` does; otherwise it is not encrypted (the default, `prefer`,
/// does not encrypt here).
pub async fn connect(url: &str) -> Result<Client, ClusterError> {
    let bad = |m: String| ClusterError::Database(format!("{url}: {m}"));
    let (rest, root) = take_root_cert(url);
    let config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| bad(format!("not a connection string: {e}")))?;
    let require = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    if root.is_some() && !require {
        return Err(bad("sslrootcert is given, but not sslmode=require".into()));
    }
    let failed = |e: tokio_postgres::Error| {
        ClusterError::Database(format!("connecting to {url}: {}", describe(&e)))
    };
    let client = if require {
        let tls = crate::pgtls::Tls::new(root.as_deref()).map_err(bad)?;
        let (client, conn) = config.connect(tls).await.map_err(failed)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    } else {
        let (client, conn) = config.connect(NoTls).await.map_err(failed)?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the client then reports
            // every call as an error, which is how the caller learns of it.
            let _ = conn.await;
        });
        client
    };
    Ok(client)
}

/// `url` without its `sslrootcert` parameter (which `tokio-postgres` does not know), and the
/// parameter's value.
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let mut root = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| match p.strip_prefix("sslrootcert=") {
                Some(v) => {
                    root = Some(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, root)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|p| match p.strip_prefix("sslrootcert=") {
                Some(v) => {
                    root = Some(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), root)
    }
}

/// A schema name is used in SQL text: letters, digits and underscores only.
fn check_schema(schema: &str) -> Result<(), ClusterError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Corrupt(format!(
            "schema name {schema:?}: lower-case letters, digits and underscores, at most 63, not starting with a digit"
        )))
    }
}

/// How long a statement waits for a lock another instance holds (another one's migration of the
/// schema, say) before it fails with an error saying so.
const LOCK_WAIT: &str = "15s";

/// The schema's version, read without taking any lock; `None` when it has none yet.
async fn schema_version(db: &Client, schema: &str) -> Result<Option<i32>, ClusterError> {
    let table = format!("{schema}.nospy_schema");
    let exists: bool = db
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(db
        .query_one(&format!("SELECT max(version) FROM {table}"), &[])
        .await?
        .get(0))
}

/// Creates or migrates the schema, serialised by a transaction-scoped advisory lock. A schema
/// already at this version is left alone without taking the lock, so that an instance stopped
/// (paused, frozen) in the middle of its start never holds up the start of the others; the
/// session of one that migrates may sit idle in its transaction at most
/// [`IDLE_IN_TRANSACTION`], and the others wait for its lock at most [`LOCK_WAIT`].
async fn migrate(db: &mut Client, schema: &str) -> Result<(), ClusterError> {
    if schema_version(db, schema).await? == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    bound_waits(db).await?;
    let tx = db.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('nospy-migrate:' || $1))",
        &[&schema],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            ClusterError::Database(format!(
                "schema {schema}: another instance has been creating or migrating it for {LOCK_WAIT} (it holds the advisory lock 'nospy-migrate:{schema}'); try again, or end that session"
            ))
        } else {
            e.into()
        }
    })?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.nospy_schema (version integer NOT NULL);"
    ))
    .await?;
    let version: Option<i32> = tx
        .query_opt(
            &format!("SELECT max(version) FROM {schema}.nospy_schema"),
            &[],
        )
        .await?
        .and_then(|r| r.get(0));
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(ClusterError::Corrupt(format!(
                "schema {schema} is at version {v}, newer than this nospy's {SCHEMA_VERSION}: upgrade nospy"
            )))
        }
        Some(v) if v == SCHEMA_VERSION => {}
        v => {
            let v = v.unwrap_or(0);
            if v < 1 {
                tx.batch_execute(&format!(
                    "CREATE TABLE {schema}.tree_state (
                         id integer PRIMARY KEY CHECK (id = 0),
                         origin text NOT NULL,
                         size bigint NOT NULL CHECK (size >= 0),
                         root bytea NOT NULL,
                         epoch bigint NOT NULL,
                         checkpoint bytea NOT NULL);
                     CREATE TABLE {schema}.pending (idx bigint PRIMARY KEY, entry bytea NOT NULL);
                     CREATE TABLE {schema}.dedup (leaf_hash bytea PRIMARY KEY, idx bigint NOT NULL);"
                ))
                .await?;
            }
            if v < 2 {
                tx.batch_execute(&format!(
                    "CREATE TABLE {schema}.submissions (
                         id bigserial PRIMARY KEY,
                         entry bytea NOT NULL,
                         received timestamptz NOT NULL DEFAULT now());"
                ))
                .await?;
            }
            tx.execute(
                &format!("INSERT INTO {schema}.nospy_schema (version) VALUES ($1)"),
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Bounds what a session of `db` can make others wait for, and wait for itself: PostgreSQL ends
/// it when it sits in an open transaction longer than 5 s (its process paused, frozen or cut
/// off, say: its locks are freed), and a statement of it that waits longer than 15 s for a
/// lock fails (`55P03`) instead of waiting for ever. For every session that takes locks shared
/// between instances.
pub async fn bound_waits(db: &Client) -> Result<(), ClusterError> {
    db.batch_execute(&format!(
        "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}';
         SET lock_timeout = '{LOCK_WAIT}'"
    ))
    .await?;
    Ok(())
}

/// Creates the log `key` names (its origin) in the database's `schema` and in `tiles`, if it is
/// not there yet: the schema, the tree state of size 0 and the empty checkpoint. Run by every
/// instance at start; only the first creates anything.
pub async fn init(
    db_url: &str,
    schema: &str,
    tiles: &ObjectTiles,
    key: &SignerKey,
) -> Result<(), ClusterError> {
    check_schema(schema)?;
    let mut db = connect(db_url).await?;
    migrate(&mut db, schema).await?;
    let origin = key.name().to_string();
    let cp = Checkpoint {
        origin: origin.clone(),
        size: 0,
        root: Hash::EMPTY_ROOT,
        extensions: vec![],
    };
    let text = cp
        .sign(key)
        .map_err(|e| ClusterError::Corrupt(e.to_string()))?
        .to_text()
        .into_bytes();
    db.execute(
        &format!(
            "INSERT INTO {schema}.tree_state (id, origin, size, root, epoch, checkpoint)
             VALUES (0, $1, 0, $2, 0, $3) ON CONFLICT (id) DO NOTHING"
        ),
        &[&origin, &Hash::EMPTY_ROOT.0.as_slice(), &text],
    )
    .await?;
    let row = db
        .query_one(
            &format!("SELECT origin, size FROM {schema}.tree_state WHERE id = 0"),
            &[],
        )
        .await?;
    let (there, size): (String, i64) = (row.get(0), row.get(1));
    if there != origin {
        return Err(ClusterError::Corrupt(format!(
            "schema {schema} holds the log {there:?}, not {origin:?}"
        )));
    }
    if size == 0 && tiles.checkpoint().await?.is_none() {
        match tiles.replace_checkpoint(text, None).await {
            // Another instance published it meanwhile: the leader reconciles the object.
            Ok(_) | Err(ObjectError::Fenced { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The leader of a log: the only instance that appends, while its fence holds.
pub struct ClusterSequencer {
    db: Client,
    /// The connection holding the session advisory lock; dropping it releases the lease.
    lease: std::sync::Arc<Client>,
    /// Keeps the lease's session busy (see [`LEASE_IDLE`]) while this value lives.
    _heartbeat: Heartbeat,
    schema: String,
    tiles: ObjectTiles,
    key: SignerKey,
    epoch: i64,
    edge: RightEdge,
    checkpoint: SignedCheckpoint,
    version: Option<CheckpointVersion>,
    poisoned: bool,
    /// Objects written (tiles, bundles, checkpoints) since this leader took the lease.
    objects_written: u64,
}

impl std::fmt::Debug for ClusterSequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSequencer")
            .field("schema", &self.schema)
            .field("epoch", &self.epoch)
            .field("size", &self.edge.size())
            .finish()
    }
}

/// How many objects one batch writes at once.
const CONCURRENT_PUTS: usize = 16;

/// How long the lease's session may be idle before PostgreSQL ends it (`idle_session_timeout`),
/// releasing the lease. A leader's heartbeat task uses it every 700 ms; a leader that
/// is paused (stopped, swapped out, its VM frozen) or partitioned stops using it, so the lease
/// is free for a standby within this time, and the paused leader, when it wakes, is fenced out
/// by the epoch the new one took.
pub const LEASE_IDLE: std::time::Duration = std::time::Duration::from_secs(3);
/// How often a leader's heartbeat uses the lease's session.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(700);
/// How long a session of a leader may sit in an open transaction (`idle_in_transaction_session_timeout`):
/// a leader paused while it holds the tree state's row lock must not hold it for ever.
const IDLE_IN_TRANSACTION: &str = "5s";

/// The task that uses the lease's session every [`HEARTBEAT`], so that PostgreSQL keeps it
/// (and the lease) while the process runs; aborted when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(lease: std::sync::Arc<Client>) -> Heartbeat {
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                if lease.simple_query("SELECT 1").await.is_err() {
                    return;
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ClusterSequencer {
    /// Tries to lead the log in `schema` (created by [`init`]): `None` when another instance
    /// holds the lease (this one is a standby; try again later). On taking the lease, it moves
    /// the epoch on (fencing out any earlier leader), reads the tree's right edge from `tiles`,
    /// integrates the batch a previous leader left recorded but unpublished, and makes the
    /// checkpoint object the database's.
    pub async fn lead(
        db_url: &str,
        schema: &str,
        tiles: ObjectTiles,
        key: SignerKey,
    ) -> Result<Option<ClusterSequencer>, ClusterError> {
        check_schema(schema)?;
        let lease = connect(db_url).await?;
        lease
            .batch_execute(&format!(
                "SET idle_session_timeout = '{}ms'",
                LEASE_IDLE.as_millis()
            ))
            .await?;
        let taken: bool = lease
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('nospy-sequencer:' || $1))",
                &[&schema],
            )
            .await?
            .get(0);
        if !taken {
            return Ok(None);
        }
        let lease = std::sync::Arc::new(lease);
        let heartbeat = Heartbeat::start(lease.clone());
        let db = connect(db_url).await?;
        bound_waits(&db).await?;
        let row = db
            .query_one(
                &format!(
                    "UPDATE {schema}.tree_state SET epoch = epoch + 1 WHERE id = 0
                     RETURNING origin, size, root, epoch, checkpoint"
                ),
                &[],
            )
            .await?;
        let (origin, size, root, epoch, text): (String, i64, Vec<u8>, i64, Vec<u8>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let corrupt = |m: String| ClusterError::Corrupt(format!("schema {schema}: {m}"));
        if origin != key.name() {
            return Err(corrupt(format!(
                "holds the log {origin:?}, but the key is {:?}",
                key.name()
            )));
        }
        let checkpoint = SignedCheckpoint::open(&text, &key.verifier())
            .map_err(|e| corrupt(format!("its checkpoint does not verify: {e}")))?;
        let root = Hash::from_slice(&root).ok_or_else(|| corrupt("root is not 32 bytes".into()))?;
        let size = u64::try_from(size).map_err(|_| corrupt("negative size".into()))?;
        if checkpoint.checkpoint.size != size || checkpoint.checkpoint.root != root {
            return Err(corrupt("its checkpoint is not its tree state".into()));
        }
        let edge = read_edge(&tiles, size, &root).await?;
        let version = tiles.checkpoint().await?.map(|(_, v)| v);
        let mut seq = ClusterSequencer {
            db,
            lease,
            _heartbeat: heartbeat,
            schema: schema.to_string(),
            tiles,
            key,
            epoch,
            edge,
            checkpoint,
            version,
            poisoned: false,
            objects_written: 0,
        };
        seq.recover().await?;
        seq.publish().await?;
        Ok(Some(seq))
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.edge.size()
    }

    /// Objects this leader wrote (tiles, entry bundles and checkpoints; those found already
    /// there with the same bytes included): the store's requests per checkpoint, over time.
    pub fn objects_written(&self) -> u64 {
        self.objects_written
    }

    /// The epoch this leader took (each leader's is higher than every earlier one's).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether the lease's connection is still alive. A leader that finds it gone stops: another
    /// instance may have taken the lease (its fence would stop this one's next write anyway).
    pub async fn holds_lease(&self) -> bool {
        self.lease.simple_query("SELECT 1").await.is_ok()
    }

    /// Integrates the batch an earlier leader recorded in `pending` but did not publish.
    async fn recover(&mut self) -> Result<(), ClusterError> {
        let schema = &self.schema;
        let rows = self
            .db
            .query(
                &format!("SELECT idx, entry FROM {schema}.pending ORDER BY idx"),
                &[],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let size = self.edge.size();
        let mut entries = Vec::with_capacity(rows.len());
        for (k, r) in rows.iter().enumerate() {
            let idx: i64 = r.get(0);
            if idx as u64 != size + k as u64 {
                return Err(ClusterError::Corrupt(format!(
                    "schema {schema}: the pending batch holds index {idx} where {} was expected",
                    size + k as u64
                )));
            }
            entries.push(r.get::<_, Vec<u8>>(1));
        }
        let batch: Vec<(&[u8], Hash)> = entries
            .iter()
            .map(|e| (e.as_slice(), leaf_hash(e)))
            .collect();
        self.integrate(&batch).await
    }

    /// Appends a batch; returns each entry's index once the entries are recorded, written and
    /// covered by a published checkpoint. An entry already in the log (or earlier in the batch)
    /// keeps its index. After [`ClusterError::Fenced`] this instance no longer leads.
    pub async fn append(&mut self, entries: &[Vec<u8>]) -> Result<Vec<Appended>, ClusterError> {
        if self.poisoned {
            return Err(ClusterError::Poisoned);
        }
        check_lengths(entries)?;
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let known = known_indices(&self.db, &self.schema, &hashes).await?;
        let size = self.edge.size();
        let mut out = Vec::with_capacity(entries.len());
        let mut fresh: Vec<usize> = Vec::new();
        let mut in_batch: HashMap<Hash, u64> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            if let Some(&index) = known.get(h).or_else(|| in_batch.get(h)) {
                out.push(Appended {
                    index,
                    hash: *h,
                    duplicate: true,
                });
            } else {
                let index = size + fresh.len() as u64;
                in_batch.insert(*h, index);
                fresh.push(i);
                out.push(Appended {
                    index,
                    hash: *h,
                    duplicate: false,
                });
            }
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        let r = self.commit(entries, &hashes, &fresh).await;
        if r.is_err() {
            // What was recorded (if anything) is integrated by whoever leads next, this instance
            // included once it leads again.
            self.poisoned = true;
        }
        r.map(|()| out)
    }

    async fn commit(
        &mut self,
        entries: &[Vec<u8>],
        hashes: &[Hash],
        fresh: &[usize],
    ) -> Result<(), ClusterError> {
        let schema = self.schema.clone();
        let size = self.edge.size();
        let idx: Vec<i64> = (0..fresh.len()).map(|k| (size + k as u64) as i64).collect();
        let rows: Vec<&[u8]> = fresh.iter().map(|&i| entries[i].as_slice()).collect();
        let keys: Vec<&[u8]> = fresh.iter().map(|&i| hashes[i].0.as_slice()).collect();
        // 1. Recorded, under the fence.
        let tx = self.db.transaction().await?;
        fence(&tx, &schema, size, &self.edge.root(), self.epoch).await?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.pending (idx, entry) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])"
            ),
            &[&idx, &rows],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.dedup (leaf_hash, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[])"
            ),
            &[&keys, &idx],
        )
        .await?;
        tx.commit().await?;
        let batch: Vec<(&[u8], Hash)> = fresh
            .iter()
            .map(|&i| (entries[i].as_slice(), hashes[i]))
            .collect();
        self.integrate(&batch).await
    }

    /// Steps 2 to 4 of a batch (see the module documentation) for entries already recorded in
    /// `pending`.
    async fn integrate(&mut self, batch: &[(&[u8], Hash)]) -> Result<(), ClusterError> {
        let schema = self.schema.clone();
        let old_size = self.edge.size();
        let old_root = self.edge.root();
        let mut edge = self.edge.clone();
        let files = edge.append(batch).map_err(|e| match e {
            EdgeError::TooLong(position, len) => ClusterError::EntryTooLong { position, len },
            other => ClusterError::Corrupt(format!("{other:?}")),
        })?;
        // 2. Every tile and bundle, create-if-absent.
        for chunk in files.chunks(CONCURRENT_PUTS) {
            let mut puts = tokio::task::JoinSet::new();
            for (rel, data) in chunk {
                let tiles = self.tiles.clone();
                let (rel, data) = (rel.clone(), data.clone());
                puts.spawn(async move { tiles.put_immutable(&rel, data).await });
            }
            while let Some(r) = puts.join_next().await {
                r.map_err(|e| ClusterError::Database(format!("a write task failed: {e}")))??;
                self.objects_written += 1;
            }
        }
        // 3. The new tree state, under the fence.
        let cp = Checkpoint {
            origin: self.key.name().to_string(),
            size: edge.size(),
            root: edge.root(),
            extensions: vec![],
        };
        let sc = cp
            .sign(&self.key)
            .map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        let text = sc.to_text().into_bytes();
        let tx = self.db.transaction().await?;
        fence(&tx, &schema, old_size, &old_root, self.epoch).await?;
        tx.execute(
            &format!(
                "UPDATE {schema}.tree_state SET size = $1, root = $2, checkpoint = $3 WHERE id = 0"
            ),
            &[&(edge.size() as i64), &edge.root().0.as_slice(), &text],
        )
        .await?;
        tx.execute(&format!("DELETE FROM {schema}.pending"), &[])
            .await?;
        tx.commit().await?;
        self.edge = edge;
        self.checkpoint = sc;
        // 4. Published.
        self.publish().await
    }

    /// Makes the checkpoint object this leader's checkpoint, replacing only the version it last
    /// saw. An object holding the same checkpoint (with witnesses' cosignatures, say) is kept.
    async fn publish(&mut self) -> Result<(), ClusterError> {
        let text = self.checkpoint.to_text().into_bytes();
        if let Some((there, v)) = self.tiles.checkpoint().await? {
            let same = there == text
                || SignedCheckpoint::open(&there, &self.key.verifier())
                    .is_ok_and(|sc| sc.checkpoint == self.checkpoint.checkpoint);
            if same {
                self.version = Some(v);
                return Ok(());
            }
        }
        self.replace(text).await
    }

    /// Replaces the checkpoint object from the version this leader last saw.
    async fn replace(&mut self, text: Vec<u8>) -> Result<(), ClusterError> {
        match self
            .tiles
            .replace_checkpoint(text, self.version.as_ref())
            .await
        {
            Ok(v) => {
                self.version = Some(v);
                self.objects_written += 1;
                Ok(())
            }
            Err(ObjectError::Fenced { .. }) => Err(ClusterError::Fenced),
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes `sc`, this leader's latest checkpoint with witnesses' cosignatures added, in
    /// place of the bare one: false (nothing written) when the log has moved on since or `sc`
    /// is not this leader's checkpoint or its log signature does not verify.
    pub async fn publish_cosigned(&mut self, sc: &SignedCheckpoint) -> Result<bool, ClusterError> {
        let text = sc.to_text().into_bytes();
        let ours = SignedCheckpoint::open(&text, &self.key.verifier())
            .is_ok_and(|c| c.checkpoint == self.checkpoint.checkpoint);
        if !ours || self.poisoned {
            return Ok(false);
        }
        self.replace(text).await.map(|()| true)
    }

    /// The oldest submissions other instances recorded for the leader ([`Relay::submit`]), at
    /// most `limit`: their ids (for [`ClusterSequencer::forget_relayed`] once appended) and
    /// entries. Appending one twice is harmless (deduplication gives it its index again), so a
    /// leader that stops between appending and forgetting loses nothing and doubles nothing.
    pub async fn relayed(&self, limit: usize) -> Result<Vec<(i64, Vec<u8>)>, ClusterError> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT id, entry FROM {}.submissions ORDER BY id LIMIT $1",
                    self.schema
                ),
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Forgets relayed submissions that are appended.
    pub async fn forget_relayed(&self, ids: &[i64]) -> Result<(), ClusterError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.db
            .execute(
                &format!("DELETE FROM {}.submissions WHERE id = ANY($1)", self.schema),
                &[&ids],
            )
            .await?;
        Ok(())
    }
}

/// How an instance that does not lead hands submissions to the one that does: it records them
/// in the database, and learns their indices from the deduplication map once the leader has
/// appended them (it acknowledges them once a published checkpoint covers those indices).
pub struct Relay {
    db: Client,
    schema: String,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("schema", &self.schema)
            .finish()
    }
}

impl Relay {
    /// A relay into the log in `schema` (created by [`init`]).
    pub async fn connect(db_url: &str, schema: &str) -> Result<Relay, ClusterError> {
        check_schema(schema)?;
        Ok(Relay {
            db: connect(db_url).await?,
            schema: schema.to_string(),
        })
    }

    /// The indices of the entries with these leaf hashes that the log holds (recorded by a
    /// leader: published, or about to be by it or the next).
    pub async fn indices(&self, hashes: &[Hash]) -> Result<HashMap<Hash, u64>, ClusterError> {
        known_indices(&self.db, &self.schema, hashes).await
    }

    /// Records entries for the leader to append, except those the log holds already: their
    /// indices are returned in their places (`None`: recorded, no index yet).
    pub async fn submit(&self, entries: &[Vec<u8>]) -> Result<Vec<Option<u64>>, ClusterError> {
        check_lengths(entries)?;
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let known = self.indices(&hashes).await?;
        let out: Vec<Option<u64>> = hashes.iter().map(|h| known.get(h).copied()).collect();
        let rows: Vec<&[u8]> = entries
            .iter()
            .zip(&out)
            .filter(|(_, k)| k.is_none())
            .map(|(e, _)| e.as_slice())
            .collect();
        if !rows.is_empty() {
            self.db
                .execute(
                    &format!(
                        "INSERT INTO {}.submissions (entry) SELECT * FROM UNNEST($1::bytea[])",
                        self.schema
                    ),
                    &[&rows],
                )
                .await?;
        }
        Ok(out)
    }
}

/// The indices the deduplication map holds for these leaf hashes.
async fn known_indices(
    db: &Client,
    schema: &str,
    hashes: &[Hash],
) -> Result<HashMap<Hash, u64>, ClusterError> {
    let keys: Vec<&[u8]> = hashes.iter().map(|h| h.0.as_slice()).collect();
    Ok(db
        .query(
            &format!("SELECT leaf_hash, idx FROM {schema}.dedup WHERE leaf_hash = ANY($1)"),
            &[&keys],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let h: Vec<u8> = r.get(0);
            let i: i64 = r.get(1);
            Some((Hash::from_slice(&h)?, u64::try_from(i).ok()?))
        })
        .collect())
}

/// [`ClusterError::EntryTooLong`] for the first entry over the tlog-tiles limit, if any.
fn check_lengths(entries: &[Vec<u8>]) -> Result<(), ClusterError> {
    match entries
        .iter()
        .enumerate()
        .find(|(_, e)| e.len() > MAX_ENTRY_LEN)
    {
        Some((position, e)) => Err(ClusterError::EntryTooLong {
            position,
            len: e.len(),
        }),
        None => Ok(()),
    }
}

/// Locks the tree state row if it is still (size, root, epoch); [`ClusterError::Fenced`] if not.
async fn fence(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    size: u64,
    root: &Hash,
    epoch: i64,
) -> Result<(), ClusterError> {
    let n = tx
        .query(
            &format!(
                "SELECT 1 FROM {schema}.tree_state
                 WHERE id = 0 AND size = $1 AND root = $2 AND epoch = $3 FOR UPDATE"
            ),
            &[&(size as i64), &root.0.as_slice(), &epoch],
        )
        .await?
        .len();
    if n == 1 {
        Ok(())
    } else {
        Err(ClusterError::Fenced)
    }
}

/// Reads the right edge of the tree of `size` entries from the bucket.
async fn read_edge(tiles: &ObjectTiles, size: u64, root: &Hash) -> Result<RightEdge, ClusterError> {
    let (ids, bundle) = RightEdge::sources(size);
    let mut parts = Vec::with_capacity(ids.len());
    for id in &ids {
        parts.push(match id {
            Some(id) => tiles.get(&id.path()).await?,
            None => None,
        });
    }
    let bundle = match bundle {
        Some(id) => tiles.get(&id.entries_path()).await?,
        None => None,
    };
    RightEdge::restore(size, root, parts, bundle).map_err(|e| {
        ClusterError::Corrupt(format!(
            "{}: the right edge of the tree of size {size}: {e:?}",
            tiles.name()
        ))
    })
}
