//! The lookup index beside the tiles: entries by artifact digest, predicate type and signer, in
//! SQLite (`.nospy/index.sqlite`). The tiles answer "what is entry N"; the index answers "what
//! was said about this firmware". It is derived data: rebuilt from the log when missing or
//! behind, and never consulted to decide what the log holds.
//!
//! **Invariant:** [`Index::size`] is the length of the contiguous prefix of the log the index
//! holds, kept in the same transaction as the rows: entries beyond a gap (a batch that failed
//! to be written) never count, and the gap is filled from the log's tiles ([`Index::catch_up`])
//! before anything after it is added. `/lookup` answers only for `0..size`; clients read the
//! rest from the log.

use nospy_log::TileSource;
use nospy_log::{TileCache, TileReader};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::{Hash, Sha256};
use rusqlite::{params, Connection};
use std::path::Path;

/// One indexed entry, as `/lookup` answers it.
pub use nospy_client::api::LookupEntry as Found;

/// The index.
pub struct Index {
    db: Connection,
}

/// Why the index could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum IndexError {
    /// SQLite refused: opening the index file (`path`) or a statement on it.
    Sqlite {
        /// The index file, when the failure was opening it.
        path: Option<std::path::PathBuf>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading the log's entries to index them failed.
    Log(nospy_log::LogError),
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::Sqlite {
                path: Some(p),
                source,
            } => write!(f, "{}: {source}", p.display()),
            IndexError::Sqlite { path: None, source } => write!(f, "{source}"),
            IndexError::Log(e) => write!(f, "reading the log: {e}"),
        }
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IndexError::Sqlite { source, .. } => Some(source),
            IndexError::Log(e) => Some(e),
        }
    }
}

impl From<rusqlite::Error> for IndexError {
    fn from(source: rusqlite::Error) -> Self {
        IndexError::Sqlite { path: None, source }
    }
}

impl From<nospy_log::LogError> for IndexError {
    fn from(e: nospy_log::LogError) -> Self {
        IndexError::Log(e)
    }
}

/// One page of a [`Index::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, in log order.
    pub entries: Vec<Found>,
    /// When there are more: the last index of this page, to ask for the entries after it.
    pub next: Option<u64>,
}

/// The digest under which the index files an entry for a search term: a signer's key name,
/// a release's vendor or product (case folded). No artifact's SHA-256 can be one (that would
/// be a preimage of SHA-256), so terms share the subjects' table and its lookups, paging
/// included, in SQLite and PostgreSQL alike.
pub fn term(word: &str) -> Sha256 {
    Sha256::of(format!("nospy-search-term\n{}", word.trim().to_lowercase()).as_bytes())
}

/// What an entry is filed under: its subjects' SHA-256, and the [`term`]s of its signers' key
/// names and, for a release, its vendor and product.
pub fn keys_of(u: &nospy_statement::Unverified) -> Vec<Sha256> {
    let mut keys = u.statement.subject_sha256();
    keys.extend(u.named.iter().map(|k| term(k.name())));
    if let nospy_statement::predicate::Predicate::Release(r) = &u.predicate {
        keys.push(term(&r.vendor));
        keys.push(term(&r.product));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// What the index needs of one entry.
pub struct Row {
    /// Index in the log.
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// Its predicate type.
    pub predicate_type: String,
    /// SHA-256 digests of its subjects, and its search [`term`]s.
    pub subjects: Vec<Sha256>,
    /// The verifier keys its signatures name.
    pub signers: Vec<String>,
}

/// The layout's version, in `PRAGMA user_version`: an index of another version is rebuilt.
const SCHEMA_VERSION: i64 = 4;

impl Index {
    /// Opens (creating if needed) the index of the log in `dir`. An index written by another
    /// version of nospy is emptied, to be rebuilt from the log by [`Index::catch_up`].
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let p = dir.join(".nospy/index.sqlite");
        let at = |source: rusqlite::Error| IndexError::Sqlite {
            path: Some(p.clone()),
            source,
        };
        let db = Connection::open(&p).map_err(at)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
        )
        .map_err(at)?;
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(at)?;
        if version != SCHEMA_VERSION {
            db.execute_batch(&format!(
                "DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS subjects;
                 DROP TABLE IF EXISTS predicate_types; DROP TABLE IF EXISTS signer_sets;
                 DROP TABLE IF EXISTS covered;
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(at)?;
        }
        // Predicate types and signer sets repeat from entry to entry: each is stored once and
        // entries name it by number. Subjects are one B-tree keyed by (digest, entry).
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS predicate_types (id INTEGER PRIMARY KEY, uri TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS signer_sets (id INTEGER PRIMARY KEY, keys TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL, predicate_type INTEGER NOT NULL, signers INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS subjects (digest BLOB NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (digest, idx)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS covered (one INTEGER PRIMARY KEY CHECK (one = 0), size INTEGER NOT NULL);
             INSERT OR IGNORE INTO covered (one, size) VALUES (0, 0);",
        )
        .map_err(at)?;
        Ok(Index { db })
    }

    /// How many entries are indexed: the index holds every entry of `0..size`.
    pub fn size(&self) -> Result<u64, IndexError> {
        Ok(covered(&self.db)?)
    }

    /// Adds entries (in one transaction); entries already indexed are skipped. The size grows
    /// only over entries contiguous with what is held.
    pub fn add(&mut self, rows: &[Row]) -> Result<(), IndexError> {
        let tx = self.db.transaction()?;
        {
            let mut e = tx.prepare_cached("INSERT OR IGNORE INTO entries (idx, leaf_hash, predicate_type, signers) VALUES (?1, ?2, ?3, ?4)")?;
            let mut s =
                tx.prepare_cached("INSERT OR IGNORE INTO subjects (digest, idx) VALUES (?1, ?2)")?;
            let mut ids = Interned::default();
            for r in rows {
                let kind = ids.id(&tx, "predicate_types", "uri", &r.predicate_type)?;
                let signers = ids.id(&tx, "signer_sets", "keys", &r.signers.join("\n"))?;
                let inserted =
                    e.execute(params![r.index as i64, &r.leaf_hash.0[..], kind, signers])?;
                if inserted > 0 {
                    for d in &r.subjects {
                        s.execute(params![&d.0[..], r.index as i64])?;
                    }
                }
            }
        }
        // The contiguous prefix: from what was covered, over every entry now held after it.
        let mut size = covered(&tx)?;
        {
            let mut st =
                tx.prepare_cached("SELECT idx FROM entries WHERE idx >= ?1 ORDER BY idx")?;
            let mut held = st.query(params![size as i64])?;
            while let Some(r) = held.next()? {
                if r.get::<_, i64>(0)? as u64 != size {
                    break;
                }
                size += 1;
            }
        }
        tx.execute(
            "UPDATE covered SET size = ?1 WHERE one = 0",
            params![size as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The entries about `digest` below `size` and after index `after` (from the start with
    /// `None`), in log order, at most `limit` of them; [`Page::next`] says where to go on.
    pub fn lookup(
        &self,
        digest: &Sha256,
        size: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, IndexError> {
        let mut st = self.db.prepare_cached(
            "SELECT e.idx, e.leaf_hash, p.uri, k.keys FROM subjects s
             JOIN entries e ON e.idx = s.idx
             JOIN predicate_types p ON p.id = e.predicate_type
             JOIN signer_sets k ON k.id = e.signers
             WHERE s.digest = ?1 AND s.idx < ?2 AND s.idx >= ?3 ORDER BY s.idx LIMIT ?4",
        )?;
        let from = after
            .map_or(0, |a| a.saturating_add(1))
            .min(i64::MAX as u64);
        let limit = limit.max(1);
        let rows = st.query_map(
            params![
                &digest.0[..],
                size.min(i64::MAX as u64) as i64,
                from as i64,
                // One more than the page, to know whether there are more.
                (limit + 1) as i64
            ],
            |r| {
                let leaf: [u8; 32] = r.get(1)?;
                let signers: String = r.get(3)?;
                Ok(Found {
                    index: r.get::<_, i64>(0)? as u64,
                    leaf_hash: Hash(leaf),
                    predicate_type: r.get(2)?,
                    signers: signers
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            },
        )?;
        let mut entries = rows.collect::<Result<Vec<_>, _>>()?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.index)
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    /// Indexes the entries of the log (of `log_size` entries, as its checkpoint says) from what
    /// is indexed up to `upto`, reading the bundles. Entries that are not nospy statements are
    /// indexed with an empty predicate type.
    pub fn catch_up(
        &mut self,
        source: &dyn TileSource,
        log_size: u64,
        upto: u64,
    ) -> Result<u64, IndexError> {
        let size = upto.min(log_size);
        let from = self.size()?;
        if from >= size {
            return Ok(0);
        }
        let cache = TileCache::new(1);
        let reader = TileReader::new(source, &cache, log_size);
        let mut done = 0;
        for b in from / 256..size.div_ceil(256) {
            let rows = bundle_rows(&reader, b, from, size)?;
            done += rows.len() as u64;
            self.add(&rows)?;
        }
        Ok(done)
    }
}

/// The index rows of the entries of bundle `b` within `from..size`, read from the log: what
/// the index records of an entry is found in it again (entries that are not nospy statements
/// get an empty predicate type).
pub fn bundle_rows(
    reader: &TileReader<'_>,
    b: u64,
    from: u64,
    size: u64,
) -> Result<Vec<Row>, nospy_log::LogError> {
    let entries = reader.bundle(b)?;
    Ok(entries
        .iter()
        .enumerate()
        .map(|(k, e)| (b * 256 + k as u64, e))
        .filter(|(i, _)| *i >= from && *i < size)
        .map(|(i, e)| {
            match nospy_statement::parse_unverified(e, |id| {
                nospy_tlog::note::VerifierKey::parse(id).ok()
            }) {
                Ok(u) => Row {
                    index: i,
                    leaf_hash: leaf_hash(e),
                    predicate_type: u.statement.predicate_type.clone(),
                    subjects: keys_of(&u),
                    signers: u.named.iter().map(|k| k.to_string()).collect(),
                },
                Err(_) => Row {
                    index: i,
                    leaf_hash: leaf_hash(e),
                    predicate_type: String::new(),
                    subjects: vec![],
                    signers: vec![],
                },
            }
        })
        .collect())
}

/// The numbers of the predicate types and signer sets one transaction has used, so that each is
/// looked up (or inserted) once per transaction, not once per entry.
#[derive(Default)]
struct Interned {
    known: std::collections::HashMap<&'static str, std::collections::HashMap<String, i64>>,
}

impl Interned {
    fn id(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        table: &'static str,
        column: &'static str,
        value: &str,
    ) -> Result<i64, rusqlite::Error> {
        if let Some(id) = self.known.get(table).and_then(|m| m.get(value)) {
            return Ok(*id);
        }
        tx.prepare_cached(&format!(
            "INSERT INTO {table} ({column}) VALUES (?1) ON CONFLICT ({column}) DO NOTHING"
        ))
        .and_then(|mut st| st.execute([value]))?;
        let id: i64 = tx
            .prepare_cached(&format!("SELECT id FROM {table} WHERE {column} = ?1"))
            .and_then(|mut st| st.query_row([value], |r| r.get(0)))?;
        self.known
            .entry(table)
            .or_default()
            .insert(value.to_string(), id);
        Ok(id)
    }
}

/// The size the index covers, as its `covered` row says.
fn covered(db: &Connection) -> Result<u64, rusqlite::Error> {
    db.query_row("SELECT size FROM covered WHERE one = 0", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
}
