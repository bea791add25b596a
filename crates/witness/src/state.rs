//! What a witness cosigned last, per log, and the one way to change it: check, then commit
//! durably, under a lock, and only then cosign.

use crate::{Cosigned, Error};
use nospy_tlog::Hash;
use std::path::{Path, PathBuf};

/// The offline witness's state for one log: a file holding `<origin> <size> <base64 root>`,
/// and beside it a lock file (`<file>.lock`) that serialises every cosigning against it, in
/// this process and others.
#[derive(Debug, Clone)]
pub struct FileState {
    path: PathBuf,
}

impl FileState {
    /// The state kept in the file `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileState { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Under the lock: reads what was cosigned last for `origin`, asks `check` whether `next`
    /// may follow it, and if so replaces the state with `next` durably (a temporary file,
    /// fsynced, renamed over the state, the directory fsynced) before returning. When this
    /// returns `Ok`, the caller may cosign `next`; any error leaves the state as it was.
    pub fn check_and_commit(
        &self,
        origin: &str,
        next: Cosigned,
        check: impl FnOnce(Option<&Cosigned>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let fail = |problem: String| Error::State {
            path: self.path.clone(),
            problem,
        };
        let lock_path = {
            let mut p = self.path.clone().into_os_string();
            p.push(".lock");
            PathBuf::from(p)
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail(format!("opening the lock {}: {e}", lock_path.display())))?;
        // Held until `lock` is dropped at the end of this function (after the commit).
        lock.lock()
            .map_err(|e| fail(format!("locking {}: {e}", lock_path.display())))?;
        let prev = self.read(origin)?;
        check(prev.as_ref())?;
        self.write(origin, &next)
    }

    /// What was cosigned last for `origin` (`None`: nothing yet).
    pub fn read(&self, origin: &str) -> Result<Option<Cosigned>, Error> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::State {
                    path: self.path.clone(),
                    problem: format!("reading: {e}"),
                })
            }
        };
        let c = parse(&text).map_err(|e| match e {
            Error::State { problem, .. } => Error::State {
                path: self.path.clone(),
                problem,
            },
            e => e,
        })?;
        if c.0 != origin {
            return Err(Error::OtherLog {
                path: self.path.clone(),
                origin: c.0,
            });
        }
        Ok(Some(c.1))
    }

    fn write(&self, origin: &str, c: &Cosigned) -> Result<(), Error> {
        let fail = |e: std::io::Error| Error::State {
            path: self.path.clone(),
            problem: format!("writing: {e}"),
        };
        nospy_log::durable::replace(&self.path, format(origin, c).as_bytes()).map_err(fail)
    }
}

/// Parses a state file's text, `<origin> <size> <base64 root>`, as [`FileState`] writes it.
pub fn parse(text: &str) -> Result<(String, Cosigned), Error> {
    let bad = |problem: String| Error::State {
        path: PathBuf::new(),
        problem,
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [origin, size, root] = parts[..] else {
        return Err(bad("expected \"<origin> <size> <root>\"".into()));
    };
    let size = nospy_tlog::checkpoint::parse_decimal(size)
        .ok_or_else(|| bad(format!("size {size:?} is not a decimal number")))?;
    let root =
        Hash::from_base64(root).ok_or_else(|| bad("the root is not base64 of 32 bytes".into()))?;
    Ok((origin.to_string(), Cosigned { size, root }))
}

/// A state file's text for `origin` and `c`, as [`parse`] reads it.
pub fn format(origin: &str, c: &Cosigned) -> String {
    format!("{origin} {} {}\n", c.size, c.root.to_base64())
}

/// The online witness's state: every log's latest cosigned checkpoint in one SQLite database
/// (WAL, synchronous = FULL), checked and updated in one immediate transaction.
pub struct SqliteState {
    db: rusqlite::Connection,
    path: PathBuf,
}

impl SqliteState {
    /// Opens (creating if need be) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteState, Error> {
        let fail = |e: rusqlite::Error| Error::State {
            path: path.to_path_buf(),
            problem: e.to_string(),
        };
        let db = rusqlite::Connection::open(path).map_err(fail)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS checkpoints (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL);",
        )
        .map_err(fail)?;
        Ok(SqliteState {
            db,
            path: path.to_path_buf(),
        })
    }

    /// [`FileState::check_and_commit`] for `origin`, in one transaction: when this returns
    /// `Ok`, `next` is committed (fsynced) as the log's latest.
    pub fn check_and_commit(
        &mut self,
        origin: &str,
        next: Cosigned,
        check: impl FnOnce(Option<&Cosigned>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| Error::State {
            path: path.clone(),
            problem: e.to_string(),
        };
        let tx = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let stored: Option<(i64, [u8; 32])> = {
            let mut st = tx
                .prepare("SELECT size, root FROM checkpoints WHERE origin = ?1")
                .map_err(fail)?;
            let mut rows = st.query([origin]).map_err(fail)?;
            match rows.next().map_err(fail)? {
                Some(r) => Some((r.get(0).map_err(fail)?, r.get(1).map_err(fail)?)),
                None => None,
            }
        };
        let prev = stored.map(|(size, root)| Cosigned {
            size: size as u64,
            root: Hash(root),
        });
        check(prev.as_ref())?;
        tx.execute(
            "INSERT INTO checkpoints (origin, size, root) VALUES (?1, ?2, ?3)
             ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root",
            rusqlite::params![origin, next.size as i64, next.root.0.to_vec()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)
    }
}
