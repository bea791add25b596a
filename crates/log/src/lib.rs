//! A c2sp.org/tlog-tiles transparency log kept in a directory.
//!
//! - [`Log`] reads a log: its checkpoint (signature checked), entries, and inclusion and
//!   consistency proofs computed from the tiles.
//! - [`Sequencer`] appends: it batches entries, writes tiles and entry bundles, makes them durable,
//!   signs a new checkpoint and only then returns each entry's index. Opening a sequencer recovers
//!   from a crash at any point.
//! - [`audit()`] recomputes a whole log from its entries and checks every file.
//! - [`mirror::mirror`] copies a remote log, recomputing it from its entries, under the same
//!   writer lock as the sequencer.
//!
//! The directory is exactly what tlog-tiles serves (`checkpoint`, `tile/...`), so any static web
//! server can publish it; nospy's own bookkeeping lives in `.nospy/`, which holds no secret.

#![forbid(unsafe_code)]

mod audit;
pub mod clock;
pub mod cluster;
pub mod durable;
pub mod edge;
mod error;
pub mod history;
pub mod keyfile;
pub mod mirror;
pub mod object;
mod pgtls;
mod reader;
mod sequencer;
pub mod source;
pub mod storage;

pub use audit::{audit, AuditReport};
pub use error::LogError;
pub use reader::{ExpandedTile, TileCache, TileReader};
pub use sequencer::{Appended, Sequencer, MAX_BATCH};
pub use source::TileSource;

use error::{corrupt, io, InFile};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::Hash;
use nospy_tlog::merkle;
use nospy_tlog::note::VerifierKey;
use nospy_tlog::{LogIndex, TreeSize};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use storage::DirStorage;

/// Where the log's configuration is kept, relative to the log directory.
pub const CONFIG_FILE: &str = ".nospy/config.toml";

/// Tiles the reader keeps expanded in memory by default (16 KiB each at most: 64 MiB).
pub const DEFAULT_CACHE_TILES: usize = 4096;

/// The log's configuration, written by `init`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Layout version of the directory.
    pub format: u32,
    /// The checkpoint origin line.
    pub origin: String,
    /// The log's verifier key (its name is the origin).
    pub public_key: String,
    /// Where the private key was when the log was created; commands that append read it from
    /// there unless given another file. The key itself is never copied into the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
}

impl LogConfig {
    /// Reads `.nospy/config.toml` of a log directory.
    pub fn load(dir: &Path) -> Result<LogConfig, LogError> {
        let p = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LogError::NotALog {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "not a nospy log (no {CONFIG_FILE}; create one with `nospy log init`)"
                    ),
                })
            }
            Err(e) => return Err(io(p)(e)),
        };
        let c: LogConfig = toml::from_str(&text).map_err(|e| corrupt(&p, e.message()))?;
        if c.format != 1 {
            return Err(corrupt(
                &p,
                format!("layout format {} is not supported (expected 1)", c.format),
            ));
        }
        Ok(c)
    }

    /// The log's verifier key.
    pub fn verifier(&self, dir: &Path) -> Result<VerifierKey, LogError> {
        VerifierKey::parse(&self.public_key).in_file(&dir.join(CONFIG_FILE))
    }
}

/// A log opened for reading.
#[derive(Debug)]
pub struct Log {
    storage: DirStorage,
    key: VerifierKey,
    checkpoint: SignedCheckpoint,
    cache: TileCache,
}

impl Log {
    /// Opens a nospy log directory, checking its checkpoint against the key in its configuration.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Log, LogError> {
        let dir = dir.into();
        let key = LogConfig::load(&dir)?.verifier(&dir)?;
        Log::open_with_key(dir, key)
    }

    /// Opens any tlog-tiles directory (nospy's or another implementation's) with the log's key.
    pub fn open_with_key(dir: impl Into<PathBuf>, key: VerifierKey) -> Result<Log, LogError> {
        let storage = DirStorage::new(dir);
        let checkpoint = read_checkpoint(&storage, &key)?;
        Ok(Log {
            storage,
            key,
            checkpoint,
            cache: TileCache::new(DEFAULT_CACHE_TILES),
        })
    }

    /// Re-reads the checkpoint (after another process appended).
    pub fn refresh(&mut self) -> Result<(), LogError> {
        self.checkpoint = read_checkpoint(&self.storage, &self.key)?;
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.storage.root()
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The log's verifier key.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.checkpoint.checkpoint.size
    }

    /// A reader of the tiles of the current tree.
    pub fn reader(&self) -> TileReader<'_> {
        TileReader::new(&self.storage, &self.cache, self.size())
    }

    /// Entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        self.reader().entry(index)
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries (at most the log size).
    pub fn inclusion_proof(&self, index: LogIndex, size: TreeSize) -> Result<Vec<Hash>, LogError> {
        self.check_size(size.0)?;
        merkle::inclusion_proof(&self.reader(), index, size)
    }

    /// The consistency proof from the tree of `from` entries to the tree of `to` entries.
    pub fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<Vec<Hash>, LogError> {
        self.check_size(to.0)?;
        merkle::consistency_proof(&self.reader(), from, to)
    }

    /// The root of the tree of `size` entries (at most the log size).
    pub fn root_at(&self, size: TreeSize) -> Result<Hash, LogError> {
        self.check_size(size.0)?;
        merkle::root(&self.reader(), size)
    }

    /// The signed checkpoint of an earlier size, if the log kept it: nospy appends every
    /// checkpoint it signs to `.nospy/checkpoints` (see [`history`]).
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, LogError> {
        if size == self.size() {
            return Ok(Some(self.checkpoint.clone()));
        }
        let path = self.storage.path(history::FILE);
        let Some(text) = history::find(&self.storage, size)? else {
            return Ok(None);
        };
        let sc = SignedCheckpoint::open(&text, &self.key).in_file(&path)?;
        if sc.checkpoint.size != size {
            return Err(corrupt(
                path,
                format!("record for size {size} holds another size"),
            ));
        }
        Ok(Some(sc))
    }

    /// A signed checkpoint read from the file `path` (a cosigned copy of one, say), checked to
    /// be this log's: signed by its key, of a size the log has, and with the root the log's tree
    /// has at that size.
    pub fn checkpoint_from_file(&self, path: &Path) -> Result<SignedCheckpoint, LogError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let disagrees = |problem: String| LogError::Disagrees {
            path: path.to_path_buf(),
            problem,
        };
        let sc = SignedCheckpoint::open(&bytes, &self.key)
            .map_err(|e| disagrees(format!("not a checkpoint of this log: {e}")))?;
        if sc.checkpoint.size > self.size() {
            return Err(disagrees(format!(
                "checkpoint of size {} is beyond the log's {}",
                sc.checkpoint.size,
                self.size()
            )));
        }
        if self.root_at(TreeSize(sc.checkpoint.size))? != sc.checkpoint.root {
            return Err(disagrees(format!(
                "the log's tree of size {} has another root: the log and the checkpoint disagree",
                sc.checkpoint.size
            )));
        }
        Ok(sc)
    }

    /// The tile cache (for benchmarks that measure cold and warm proofs).
    pub fn cache(&self) -> &TileCache {
        &self.cache
    }

    fn check_size(&self, size: u64) -> Result<(), LogError> {
        if size > self.size() {
            return Err(LogError::OutOfRange(format!(
                "tree size {size} is beyond the log's size {}",
                self.size()
            )));
        }
        Ok(())
    }
}

/// Reads and checks the `checkpoint` file: parsed, signed by `key`, origin equal to the key name.
pub(crate) fn read_checkpoint(
    storage: &DirStorage,
    key: &VerifierKey,
) -> Result<SignedCheckpoint, LogError> {
    let path = storage.path("checkpoint");
    let bytes = storage
        .read("checkpoint")?
        .ok_or_else(|| LogError::NotALog {
            dir: storage.root().to_path_buf(),
            reason: "no checkpoint file: not a tlog-tiles log".into(),
        })?;
    SignedCheckpoint::open(&bytes, key).in_file(&path)
}
