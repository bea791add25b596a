//! The lookup index in PostgreSQL, for a log on object storage whose instances share one
//! database: the same rows, the same contiguous-prefix rule and the same paged queries as the
//! SQLite index ([`crate::index`]), in a schema of the log's own (beside the sequencer's tables,
//! `log::cluster`). Several instances may index at once: rows are inserted if absent, and the
//! covered size moves under a row lock, so it is the contiguous prefix whoever wrote it.
//!
//! `nospy serve --storage ... --database ...` uses it; a directory log is indexed in SQLite.

use crate::index::{Found, Page, Row};
use nospy_tlog::{Hash, Sha256};
use tokio_postgres::Client;

/// The layout's version, in the schema's `index_schema` table.
const INDEX_VERSION: i32 = 2;

/// Why the index could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgIndexError {
    /// The schema name is not lower-case letters, digits and underscores (at most 63, not
    /// starting with a digit).
    SchemaName(String),
    /// PostgreSQL could not be reached or refused a statement (its words, described).
    Database(String),
    /// A row holds what the index never writes (a leaf hash not 32 bytes long).
    Corrupt(&'static str),
}

impl std::fmt::Display for PgIndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgIndexError::SchemaName(s) => write!(
                f,
                "lookup index: schema name {s:?}: lower-case letters, digits and underscores"
            ),
            PgIndexError::Database(e) => write!(f, "lookup index: {e}"),
            PgIndexError::Corrupt(what) => write!(f, "lookup index: {what}"),
        }
    }
}

impl std::error::Error for PgIndexError {}

impl From<tokio_postgres::Error> for PgIndexError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgIndexError::Database(nospy_log::cluster::describe(&e))
    }
}

/// The lookup index of one log in PostgreSQL.
pub struct PgIndex {
    db: Client,
    schema: String,
}

impl PgIndex {
    /// Connects to `url` and opens (creating or migrating) the index in `schema` (lower-case
    /// letters, digits and underscores). An index of another layout version is emptied, to be
    /// rebuilt from the log.
    pub async fn open(url: &str, schema: &str) -> Result<PgIndex, PgIndexError> {
        let ok = !schema.is_empty()
            && schema.len() <= 63
            && !schema.as_bytes()[0].is_ascii_digit()
            && schema
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !ok {
            return Err(PgIndexError::SchemaName(schema.to_string()));
        }
        let mut db = nospy_log::cluster::connect(url)
            .await
            .map_err(|e| PgIndexError::Database(e.to_string()))?;
        // An instance paused inside a transaction (its indexer's, or its migration) must hold
        // up no other instance's indexer for longer than the database's bound.
        nospy_log::cluster::bound_waits(&db)
            .await
            .map_err(|e| PgIndexError::Database(e.to_string()))?;
        let table = format!("{schema}.index_schema");
        let exists: bool = db
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await?
            .get(0);
        if exists {
            let version: Option<i32> = db
                .query_one(&format!("SELECT max(version) FROM {table}"), &[])
                .await?
                .get(0);
            if version == Some(INDEX_VERSION) {
                return Ok(PgIndex {
                    db,
                    schema: schema.to_string(),
                });
            }
        }
        let tx = db.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nospy-index-migrate:' || $1))",
            &[&schema],
        )
        .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.index_schema (version integer NOT NULL);"
        ))
        .await?;
        let version: Option<i32> = tx
            .query_one(
                &format!("SELECT max(version) FROM {schema}.index_schema"),
                &[],
            )
            .await?
            .get(0);
        if version != Some(INDEX_VERSION) {
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {schema}.index_entries;
                 DROP TABLE IF EXISTS {schema}.index_subjects;
                 DROP TABLE IF EXISTS {schema}.index_covered;
                 DELETE FROM {schema}.index_schema;
                 CREATE TABLE {schema}.index_entries (
                     idx bigint PRIMARY KEY, leaf_hash bytea NOT NULL,
                     predicate_type text NOT NULL, signers text[] NOT NULL);
                 CREATE TABLE {schema}.index_subjects (
                     digest bytea NOT NULL, idx bigint NOT NULL, PRIMARY KEY (digest, idx));
                 CREATE TABLE {schema}.index_covered (
                     one integer PRIMARY KEY CHECK (one = 0), size bigint NOT NULL);
                 INSERT INTO {schema}.index_covered VALUES (0, 0);
                 INSERT INTO {schema}.index_schema VALUES ({INDEX_VERSION});"
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(PgIndex {
            db,
            schema: schema.to_string(),
        })
    }

    /// How many entries are indexed: the index holds every entry of `0..size`.
    pub async fn size(&self) -> Result<u64, PgIndexError> {
        let s: i64 = self
            .db
            .query_one(
                &format!(
                    "SELECT size FROM {}.index_covered WHERE one = 0",
                    self.schema
                ),
                &[],
            )
            .await?
            .get(0);
        Ok(s as u64)
    }

    /// Adds entries in one transaction; entries already indexed are skipped. The size grows
    /// only over entries contiguous with what is held.
    pub async fn add(&mut self, rows: &[Row]) -> Result<(), PgIndexError> {
        let schema = self.schema.clone();
        let tx = self.db.transaction().await?;
        // The covered row, locked: concurrent indexers move the size one after the other.
        let mut size: i64 = tx
            .query_one(
                &format!("SELECT size FROM {schema}.index_covered WHERE one = 0 FOR UPDATE"),
                &[],
            )
            .await?
            .get(0);
        let idx: Vec<i64> = rows.iter().map(|r| r.index as i64).collect();
        let leaf: Vec<&[u8]> = rows.iter().map(|r| r.leaf_hash.0.as_slice()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.predicate_type.as_str()).collect();
        let signers: Vec<String> = rows.iter().map(|r| r.signers.join("\n")).collect();
        tx.execute(
            &format!(
                "INSERT INTO {schema}.index_entries (idx, leaf_hash, predicate_type, signers)
                 SELECT i, h, p, string_to_array(s, E'\\n')
                 FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::text[]) AS t(i, h, p, s)
                 ON CONFLICT (idx) DO NOTHING"
            ),
            &[&idx, &leaf, &kinds, &signers],
        )
        .await?;
        let (digests, owners): (Vec<&[u8]>, Vec<i64>) = rows
            .iter()
            .flat_map(|r| {
                r.subjects
                    .iter()
                    .map(move |d| (d.0.as_slice(), r.index as i64))
            })
            .unzip();
        tx.execute(
            &format!(
                "INSERT INTO {schema}.index_subjects (digest, idx)
                 SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) ON CONFLICT DO NOTHING"
            ),
            &[&digests, &owners],
        )
        .await?;
        // The contiguous prefix: from what was covered, over every entry now held after it.
        let held = tx
            .query(
                &format!("SELECT idx FROM {schema}.index_entries WHERE idx >= $1 ORDER BY idx"),
                &[&size],
            )
            .await?;
        for r in held {
            if r.get::<_, i64>(0) != size {
                break;
            }
            size += 1;
        }
        tx.execute(
            &format!("UPDATE {schema}.index_covered SET size = $1 WHERE one = 0"),
            &[&size],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The entries about `digest` below `size` and after index `after` (from the start with
    /// `None`), in log order, at most `limit` of them; [`Page::next`] says where to go on.
    pub async fn lookup(
        &self,
        digest: &Sha256,
        size: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, PgIndexError> {
        let schema = &self.schema;
        let from = after
            .map_or(0, |a| a.saturating_add(1))
            .min(i64::MAX as u64) as i64;
        let limit = limit.max(1);
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT e.idx, e.leaf_hash, e.predicate_type, e.signers
                     FROM {schema}.index_subjects s JOIN {schema}.index_entries e ON e.idx = s.idx
                     WHERE s.digest = $1 AND s.idx < $2 AND s.idx >= $3
                     ORDER BY s.idx LIMIT $4"
                ),
                &[
                    &digest.0.as_slice(),
                    &(size.min(i64::MAX as u64) as i64),
                    &from,
                    // One more than the page, to know whether there are more.
                    &((limit + 1) as i64),
                ],
            )
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let leaf: Vec<u8> = r.get(1);
            let signers: Vec<String> = r.get(3);
            entries.push(Found {
                index: r.get::<_, i64>(0) as u64,
                leaf_hash: Hash::from_slice(&leaf)
                    .ok_or(PgIndexError::Corrupt("a leaf hash is not 32 bytes"))?,
                predicate_type: r.get(2),
                signers: signers.into_iter().filter(|s| !s.is_empty()).collect(),
            });
        }
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.index)
        } else {
            None
        };
        Ok(Page { entries, next })
    }
}

/// The lookup index of a log in PostgreSQL for readers that share it (the `/lookup` handlers):
/// one connection, opened again after it failed (the database restarted, the network came back).
pub struct SharedPgIndex {
    url: String,
    schema: String,
    current: std::sync::RwLock<Option<std::sync::Arc<PgIndex>>>,
}

impl SharedPgIndex {
    /// Readers of the index in `schema` of `url`, starting with `index` (opened already).
    pub fn new(url: &str, schema: &str, index: PgIndex) -> SharedPgIndex {
        SharedPgIndex {
            url: url.to_string(),
            schema: schema.to_string(),
            current: std::sync::RwLock::new(Some(std::sync::Arc::new(index))),
        }
    }

    /// [`PgIndex::lookup`] on the shared connection; after a failure the connection is
    /// dropped, and the next call opens another.
    pub async fn lookup(
        &self,
        digest: &Sha256,
        size: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, PgIndexError> {
        let held = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let index = match held {
            Some(i) => i,
            None => {
                let i = std::sync::Arc::new(PgIndex::open(&self.url, &self.schema).await?);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(i.clone());
                i
            }
        };
        let r = index.lookup(digest, size, after, limit).await;
        if r.is_err() {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
        r
    }
}
