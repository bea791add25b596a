//! A verifying mirror of a remote c2sp.org/tlog-tiles log (`nospy log mirror URL DIR`).
//!
//! Every entry bundle from the last mirrored size to the remote checkpoint's is fetched (or read
//! back from a previous, interrupted run), and the tree is recomputed from the entries: the
//! result must be the remote checkpoint's root, signed by the log's key, and the old part must be
//! the root this mirror had before. That is a consistency check by construction, stronger than a
//! proof. Full bundles and tiles are written as they are verified, the checkpoint last, so an
//! interrupted mirror resumes where it stopped and never publishes what it has not verified.
//!
//! The mirror writes the directory under the log's writer lock (`.nospy/lock`), like the
//! [`crate::Sequencer`]: two mirrors, or a mirror and a sequencer, never write one directory.

use crate::error::corrupt;
use crate::sequencer::writer_lock;
use crate::storage::DirStorage;
use crate::{LogConfig, LogError, CONFIG_FILE};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::note::VerifierKey;
use nospy_tlog::tile::{self, TileId, TileTree, TILE_WIDTH};
use std::path::Path;

/// What a mirror run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// The size the mirror had before.
    pub from_size: u64,
    /// The size it has now (the remote checkpoint's).
    pub size: u64,
    /// The root, recomputed from the entries and equal to the signed checkpoint's.
    pub root: Hash,
    /// How many entry bundles were fetched (the others were read back from an earlier run).
    pub bundles_fetched: u64,
}

/// Why a mirror run stopped; nothing it had not verified was published.
#[derive(Debug)]
#[non_exhaustive]
pub enum MirrorError {
    /// Fetching a path of the remote log failed.
    Fetch {
        /// The path asked for (`checkpoint`, `tile/entries/...`).
        path: String,
        /// What the fetcher said.
        problem: String,
    },
    /// What the remote served is malformed or not signed by the log's key.
    Malformed {
        /// The path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The remote checkpoint is older than the mirror's: the log rolled back.
    Rollback {
        /// The mirror's size.
        mirrored: u64,
        /// The remote checkpoint's.
        remote: u64,
    },
    /// The remote checkpoint has another root for the size the mirror holds: the log forked.
    Fork {
        /// The size.
        size: u64,
    },
    /// The remote's entries below the mirrored size differ from the mirror's: the log rewrote
    /// history.
    Rewritten {
        /// The entry bundle where it shows.
        path: String,
        /// How many of its entries the mirror held.
        held: usize,
    },
    /// The remote's entries do not give its signed checkpoint (count or root).
    Mismatch(String),
    /// Reading or writing the mirror's directory failed (or another writer holds it).
    Log(LogError),
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorError::Fetch { path, problem } => write!(f, "fetching {path}: {problem}"),
            MirrorError::Malformed { path, problem } => write!(f, "{path}: {problem}"),
            MirrorError::Rollback { mirrored, remote } => write!(
                f,
                "the remote checkpoint (size {remote}) is older than this mirror's ({mirrored}): the log rolled back"
            ),
            MirrorError::Fork { size } => write!(
                f,
                "the remote checkpoint of size {size} has another root than this mirror's: the log forked"
            ),
            MirrorError::Rewritten { path, held } => write!(
                f,
                "{path}: its first {held} entries differ from those this mirror holds: the log rewrote history"
            ),
            MirrorError::Mismatch(m) => f.write_str(m),
            MirrorError::Log(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MirrorError {}

impl From<LogError> for MirrorError {
    fn from(e: LogError) -> Self {
        MirrorError::Log(e)
    }
}

/// Brings the mirror in `dir` up to the remote log's checkpoint, verified with `key`. `fetch`
/// returns the bytes at a tlog-tiles path of the remote (`checkpoint`, `tile/entries/...`);
/// `progress` is told (entries mirrored, entries in all) as bundles are verified.
pub fn mirror<E: std::fmt::Display>(
    dir: &Path,
    key: &VerifierKey,
    mut fetch: impl FnMut(&str) -> Result<Vec<u8>, E>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Mirrored, MirrorError> {
    let mut get = |path: &str| {
        fetch(path).map_err(|e| MirrorError::Fetch {
            path: path.to_string(),
            problem: e.to_string(),
        })
    };
    let malformed = |path: &str, e: &dyn std::fmt::Display| MirrorError::Malformed {
        path: path.to_string(),
        problem: e.to_string(),
    };
    let remote = get("checkpoint")?;
    let sc = SignedCheckpoint::open(&remote, key).map_err(|e| malformed("checkpoint", &e))?;
    let n = sc.checkpoint.size;
    std::fs::create_dir_all(dir.join(".nospy")).map_err(crate::error::io(dir))?;
    let storage = DirStorage::new(dir);
    let _lock = writer_lock(&storage)?;

    // What this mirror has: its checkpoint, verified with the same key, and its right edge.
    let (m, mut tree, mut bundle) = match storage.read("checkpoint")? {
        None => (0, TileTree::new(), Vec::new()),
        Some(b) => {
            let old = SignedCheckpoint::open(&b, key).map_err(|e| {
                corrupt(
                    storage.path("checkpoint"),
                    format!("the mirror's checkpoint: {e}"),
                )
            })?;
            let m = old.checkpoint.size;
            if n < m {
                return Err(MirrorError::Rollback {
                    mirrored: m,
                    remote: n,
                });
            }
            if n == m && old.checkpoint.root != sc.checkpoint.root {
                return Err(MirrorError::Fork { size: n });
            }
            let (tree, bundle) = storage
                .read_right_edge(m, &old.checkpoint.root)?
                .into_parts();
            (m, tree, bundle)
        }
    };
    if !storage.exists(CONFIG_FILE) {
        let cfg = LogConfig {
            format: 1,
            origin: key.name().to_string(),
            public_key: key.to_string(),
            private_key_file: None,
        };
        let text = toml::to_string(&cfg)
            .map_err(|e| corrupt(storage.path(CONFIG_FILE), format!("writing: {e}")))?;
        storage.write_durably(&[(CONFIG_FILE.to_string(), text.into_bytes())])?;
    }

    let mut fetched = 0u64;
    let first = m / TILE_WIDTH as u64;
    let bundles = n.div_ceil(TILE_WIDTH as u64);
    for b in first..bundles {
        let width = tile::width_in(0, b, n);
        let id = TileId {
            level: 0,
            index: b,
            width,
        };
        let path = id.entries_path();
        // A full bundle written by an interrupted run is read back, and verified like the rest.
        let data = match (id.is_full(), storage.read(&path)?) {
            (true, Some(d)) => d,
            _ => {
                fetched += 1;
                get(&path)?
            }
        };
        let entries = tile::parse_bundle(&data, width).map_err(|e| malformed(&path, &e))?;
        let held = if b == first {
            (m % TILE_WIDTH as u64) as usize
        } else {
            0
        };
        if !data.starts_with(&bundle[..bundle.len().min(data.len())]) || held > entries.len() {
            return Err(MirrorError::Rewritten { path, held });
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for e in &entries[held..] {
            tree.push(leaf_hash(e), |tid, hs| {
                files.push((tid.path(), hs.iter().flat_map(|h| h.0).collect()))
            });
        }
        if id.is_full() {
            files.push((path.clone(), data.clone()));
            bundle.clear();
        } else {
            bundle = data.clone();
        }
        storage.write_durably(&files)?;
        progress(tree.size(), n);
    }
    if tree.size() != n {
        return Err(MirrorError::Mismatch(format!(
            "the remote bundles hold {} entries, its checkpoint says {n}",
            tree.size()
        )));
    }
    let root: Hash = tree.root();
    if root != sc.checkpoint.root {
        return Err(MirrorError::Mismatch(format!(
            "the remote entries give root {}, but its signed checkpoint says {}: not mirrored",
            root.to_base64(),
            sc.checkpoint.root.to_base64()
        )));
    }
    // The right edge of the new tree, then the checkpoint, verified, last.
    let mut files: Vec<(String, Vec<u8>)> = tree
        .partial_tiles()
        .map(|(id, hs)| (id.path(), hs.iter().flat_map(|h| h.0).collect()))
        .collect();
    if !bundle.is_empty() {
        let w = (n % TILE_WIDTH as u64) as u16;
        files.push((
            TileId {
                level: 0,
                index: n / TILE_WIDTH as u64,
                width: w,
            }
            .entries_path(),
            bundle,
        ));
    }
    storage.write_durably(&files)?;
    if n != m || storage.read("checkpoint")?.as_deref() != Some(remote.as_slice()) {
        storage.replace_atomically("checkpoint", ".nospy/checkpoint.tmp", &remote)?;
    }
    Ok(Mirrored {
        from_size: m,
        size: n,
        root,
        bundles_fetched: fetched,
    })
}
