//! The lookup index beside the tiles: entries by artifact digest, predicate type and signer, in
//! SQLite (`.nospy/index.sqlite`). The tiles answer "what is entry N"; the index answers "what
//! was said about this firmware". It is derived data: rebuilt from the log when missing or
//! behind, and never consulted to decide what the log holds.

use nospy_log::storage::DirStorage;
use nospy_log::{TileCache, TileReader};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::Hash;
use rusqlite::{params, Connection};
use std::path::Path;

/// One indexed entry, as `/lookup` answers it.
pub use nospy_client::api::LookupEntry as Found;

/// The index.
pub struct Index {
    db: Connection,
}

/// What the index needs of one entry.
pub struct Row {
    /// Index in the log.
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// Its predicate type.
    pub predicate_type: String,
    /// SHA-256 digests of its subjects.
    pub subjects: Vec<Hash>,
    /// The verifier keys its signatures name.
    pub signers: Vec<String>,
}

/// The layout's version, in `PRAGMA user_version`: an index of another version is rebuilt.
const SCHEMA_VERSION: i64 = 2;

impl Index {
    /// Opens (creating if needed) the index of the log in `dir`. An index written by another
    /// version of nospy is emptied, to be rebuilt from the log by [`Index::catch_up`].
    pub fn open(dir: &Path) -> Result<Index, String> {
        let p = dir.join(".nospy/index.sqlite");
        let at = |e: rusqlite::Error| format!("{}: {e}", p.display());
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
             CREATE TABLE IF NOT EXISTS subjects (digest BLOB NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (digest, idx)) WITHOUT ROWID;",
        )
        .map_err(at)?;
        Ok(Index { db })
    }

    /// How many entries are indexed (the index covers `0..size`).
    pub fn size(&self) -> Result<u64, String> {
        self.db
            .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| e.to_string())
    }

    /// Adds entries (in one transaction); entries already indexed are skipped.
    pub fn add(&mut self, rows: &[Row]) -> Result<(), String> {
        let tx = self.db.transaction().map_err(|e| e.to_string())?;
        {
            let mut e = tx
                .prepare_cached("INSERT OR IGNORE INTO entries (idx, leaf_hash, predicate_type, signers) VALUES (?1, ?2, ?3, ?4)")
                .map_err(|e| e.to_string())?;
            let mut s = tx
                .prepare_cached("INSERT OR IGNORE INTO subjects (digest, idx) VALUES (?1, ?2)")
                .map_err(|e| e.to_string())?;
            let mut ids = Interned::default();
            for r in rows {
                let kind = ids.id(&tx, "predicate_types", "uri", &r.predicate_type)?;
                let signers = ids.id(&tx, "signer_sets", "keys", &r.signers.join("\n"))?;
                let inserted = e
                    .execute(params![r.index as i64, &r.leaf_hash.0[..], kind, signers])
                    .map_err(|e| e.to_string())?;
                if inserted > 0 {
                    for d in &r.subjects {
                        s.execute(params![&d.0[..], r.index as i64])
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// The entries about `digest` below `size`, in log order.
    pub fn lookup(&self, digest: &Hash, size: u64) -> Result<Vec<Found>, String> {
        let mut st = self
            .db
            .prepare_cached(
                "SELECT e.idx, e.leaf_hash, p.uri, k.keys FROM subjects s
                 JOIN entries e ON e.idx = s.idx
                 JOIN predicate_types p ON p.id = e.predicate_type
                 JOIN signer_sets k ON k.id = e.signers
                 WHERE s.digest = ?1 AND s.idx < ?2 ORDER BY s.idx LIMIT 10000",
            )
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(params![&digest.0[..], size as i64], |r| {
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
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// Indexes the entries of the log from what is indexed up to `size`, reading the bundles.
    /// Entries that are not nospy statements are indexed with an empty predicate type.
    pub fn catch_up(&mut self, storage: &DirStorage, size: u64) -> Result<u64, String> {
        let from = self.size()?;
        if from >= size {
            return Ok(0);
        }
        let cache = TileCache::new(1);
        let reader = TileReader::new(storage, &cache, size);
        let mut done = 0;
        for b in from / 256..size.div_ceil(256) {
            let entries = reader.bundle(b).map_err(|e| e.to_string())?;
            let parsed: Vec<(u64, &Vec<u8>, Option<nospy_statement::Unverified>)> = entries
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    (
                        b * 256 + k as u64,
                        e,
                        nospy_statement::parse_unverified(e, |id| {
                            nospy_tlog::note::VerifierKey::parse(id).ok()
                        })
                        .ok(),
                    )
                })
                .filter(|(i, _, _)| *i >= from)
                .collect();
            let rows: Vec<Row> = parsed
                .iter()
                .map(|(i, e, p)| match p {
                    Some(u) => Row {
                        index: *i,
                        leaf_hash: leaf_hash(e),
                        predicate_type: u.statement.predicate_type.clone(),
                        subjects: u.statement.subject_sha256(),
                        signers: u.named.iter().map(|k| k.to_string()).collect(),
                    },
                    None => Row {
                        index: *i,
                        leaf_hash: leaf_hash(e),
                        predicate_type: String::new(),
                        subjects: vec![],
                        signers: vec![],
                    },
                })
                .collect();
            done += rows.len() as u64;
            self.add(&rows)?;
        }
        Ok(done)
    }
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
    ) -> Result<i64, String> {
        if let Some(id) = self.known.get(table).and_then(|m| m.get(value)) {
            return Ok(*id);
        }
        tx.prepare_cached(&format!(
            "INSERT INTO {table} ({column}) VALUES (?1) ON CONFLICT ({column}) DO NOTHING"
        ))
        .and_then(|mut st| st.execute([value]))
        .map_err(|e| e.to_string())?;
        let id: i64 = tx
            .prepare_cached(&format!("SELECT id FROM {table} WHERE {column} = ?1"))
            .and_then(|mut st| st.query_row([value], |r| r.get(0)))
            .map_err(|e| e.to_string())?;
        self.known
            .entry(table)
            .or_default()
            .insert(value.to_string(), id);
        Ok(id)
    }
}
