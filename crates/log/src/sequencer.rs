//! The sequencer: the only writer of a log.
//!
//! One append is one batch, committed in this order:
//!
//! 1. `.nospy/pending` records a size the batch will not go beyond (replaced atomically and
//!    durably), so that recovery knows which tile paths a crash may have left half-written. It
//!    records the batch's end plus [`PENDING_HEADROOM`] entries, so that it is rewritten only
//!    once per that many entries, not for every batch;
//! 2. every new full tile, the new partial tiles, the full entry bundles and the new partial
//!    bundle are written and fsynced, and so are the directories that name them;
//! 3. the new checkpoint is signed and written to `.nospy/checkpoint.tmp` (fsynced together with
//!    the tiles of step 2), then, once all of those are durable, renamed over `checkpoint`, and
//!    the directory fsynced;
//! 4. only now are the indexes returned.
//!
//! **Invariant:** a path covered by the published checkpoint (a full tile, or a partial tile of
//! the width it has, or had, in a published tree) is never written again. Everything a crash can
//! leave behind lies beyond the checkpoint and is removed by [`Sequencer::open`] before anything
//! else happens, so an acknowledged entry is never lost and an unacknowledged one never half-seen.

use crate::edge::{EdgeError, RightEdge};
use crate::error::{corrupt, io, InFile, LogError};
use crate::source::TileSource as _;
use crate::storage::{DirStorage, PRIVATE_DIR};
use crate::{read_checkpoint, LogConfig, CONFIG_FILE};
use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::note::SignerKey;
use nospy_tlog::tile::{self, level_count, TileId, MAX_ENTRY_LEN, MAX_TILE_LEVEL, TILE_WIDTH};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

const PENDING: &str = ".nospy/pending";
const PENDING_TMP: &str = ".nospy/pending.tmp";

/// How far beyond a batch's end the pending record reaches (see the module documentation).
pub const PENDING_HEADROOM: u64 = 1 << 16;
const CHECKPOINT_TMP: &str = ".nospy/checkpoint.tmp";
const LOCK: &str = ".nospy/lock";

/// Most entries one batch may append (4 Mi). Bounds the memory of a batch and the work recovery
/// does for the batch a crash interrupted.
pub const MAX_BATCH: usize = 1 << 22;

/// One appended entry: its index, its leaf hash, and whether it was already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's index in the log.
    pub index: u64,
    /// Its RFC 6962 leaf hash.
    pub hash: Hash,
    /// True when the same entry was already in the log (or earlier in the batch): it was not
    /// appended again and `index` is the existing one.
    pub duplicate: bool,
}

/// The log's single writer. Holds an exclusive lock on the directory while it lives.
#[derive(Debug)]
pub struct Sequencer {
    storage: DirStorage,
    key: SignerKey,
    origin: String,
    checkpoint: SignedCheckpoint,
    edge: RightEdge,
    /// Leaf hash to index, built from the level-0 tiles on the first append.
    dedup: Option<HashMap<Hash, u64>>,
    /// Set when a commit failed part-way: the files on disk may be ahead of this object, so it
    /// refuses to append until the log is reopened (which recovers from the disk's state).
    poisoned: bool,
    /// The size `.nospy/pending` covers (0: no record yet).
    pending_target: u64,
    /// Whether each signed checkpoint is appended to `.nospy/checkpoints` (see [`crate::history`]).
    keep_history: bool,
    _lock: File,
}

impl Sequencer {
    /// Creates a new, empty log in `dir` (which must not exist or be empty), signed by `key`,
    /// whose name must be the origin. Writes the configuration and the checkpoint of size 0.
    pub fn init(
        dir: &Path,
        origin: &str,
        key: &SignerKey,
        key_file: Option<PathBuf>,
    ) -> Result<(), LogError> {
        if key.name() != origin {
            return Err(LogError::Key(format!(
                "the key is named {:?} but the origin is {origin:?}: a log signs its checkpoints with a key named after its origin",
                key.name()
            )));
        }
        if origin.is_empty() || origin.contains('\n') {
            return Err(LogError::Key(
                "the origin must be one non-empty line".into(),
            ));
        }
        match std::fs::read_dir(dir) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return Err(LogError::NotALog {
                        dir: dir.to_path_buf(),
                        reason: "directory is not empty; a new log needs an empty or new directory"
                            .into(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            Err(e) => return Err(io(dir)(e)),
        }
        let storage = DirStorage::new(dir);
        let config = LogConfig {
            format: 1,
            origin: origin.to_string(),
            public_key: key.verifier().to_string(),
            private_key_file: key_file,
        };
        let text = toml::to_string(&config).map_err(|e| LogError::Key(e.to_string()))?;
        storage.write_durably(&[(CONFIG_FILE.to_string(), text.into_bytes())])?;
        let cp = Checkpoint {
            origin: origin.to_string(),
            size: 0,
            root: Hash::EMPTY_ROOT,
            extensions: vec![],
        };
        let sc = cp.sign(key).in_file(&storage.path("checkpoint"))?;
        storage.replace_atomically("checkpoint", CHECKPOINT_TMP, sc.to_text().as_bytes())?;
        crate::storage::sync_dir(
            dir.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
        Ok(())
    }

    /// Opens the log in `dir` for appending with `key`, which must be the log's key. Recovers
    /// from any crash first: removes what an unfinished batch may have written, and checks that
    /// the partial tiles of the published tree give the published root.
    pub fn open(dir: &Path, key: SignerKey) -> Result<Sequencer, LogError> {
        Sequencer::open_in(DirStorage::new(dir), key)
    }

    /// [`Sequencer::open`], noting every change the sequencer makes to the directory (recovery
    /// included) in `recorder`: for crash-consistency tests, which replay what a crash at any
    /// point could have left.
    pub fn open_recording(
        dir: &Path,
        key: SignerKey,
        recorder: crate::storage::Recorder,
    ) -> Result<Sequencer, LogError> {
        Sequencer::open_in(DirStorage::new(dir).recording(recorder), key)
    }

    fn open_in(storage: DirStorage, key: SignerKey) -> Result<Sequencer, LogError> {
        let dir = storage.root().to_path_buf();
        let dir = dir.as_path();
        let config = LogConfig::load(dir)?;
        let vkey = config.verifier(dir)?;
        if key.verifier() != vkey {
            return Err(LogError::Key(format!(
                "the private key given is {} but this log's key is {}",
                key.verifier(),
                vkey
            )));
        }
        let lock = writer_lock(&storage)?;
        storage.remove(CHECKPOINT_TMP)?;
        let checkpoint = read_checkpoint(&storage, &vkey)?;
        let size = checkpoint.checkpoint.size;
        discard_unfinished_batch(&storage, size)?;

        let edge = storage.read_right_edge(size, &checkpoint.checkpoint.root)?;
        Ok(Sequencer {
            storage,
            key,
            origin: config.origin,
            checkpoint,
            edge,
            dedup: None,
            poisoned: false,
            pending_target: 0,
            keep_history: true,
            _lock: lock,
        })
    }

    /// Whether to keep every signed checkpoint in `.nospy/checkpoints` (the default), for
    /// `nospy log prove --size`. A server committing many batches a second turns it off: its
    /// clients hold the checkpoints they were given and ask for proofs against their sizes.
    pub fn keep_history(&mut self, keep: bool) {
        self.keep_history = keep;
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.edge.size()
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        self.storage.root()
    }

    /// Appends a batch of entries and returns, once they are durable and covered by a new signed
    /// checkpoint, the index of each (in order). An entry already in the log keeps its index.
    /// If any entry is over 65,535 bytes nothing is appended.
    pub fn append(&mut self, entries: &[&[u8]]) -> Result<Vec<Appended>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if entries.len() > MAX_BATCH {
            return Err(LogError::OutOfRange(format!(
                "a batch of {} entries is over the limit of {MAX_BATCH}",
                entries.len()
            )));
        }
        if let Some((position, e)) = entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.len() > MAX_ENTRY_LEN)
        {
            return Err(LogError::EntryTooLong {
                position,
                len: e.len(),
            });
        }
        let hashes = hash_entries(entries);
        self.load_dedup()?;
        let dedup = self
            .dedup
            .as_mut()
            .ok_or_else(|| LogError::OutOfRange("dedup index not loaded".into()))?;
        let old_size = self.edge.size();
        let mut out = Vec::with_capacity(entries.len());
        let mut fresh: Vec<usize> = Vec::new();
        let mut batch_seen: HashMap<Hash, u64> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            if let Some(&index) = dedup.get(h).or_else(|| batch_seen.get(h)) {
                out.push(Appended {
                    index,
                    hash: *h,
                    duplicate: true,
                });
            } else {
                let index = old_size + fresh.len() as u64;
                batch_seen.insert(*h, index);
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
        let new_size = old_size + fresh.len() as u64;
        let saved = self.edge.clone();
        match self.commit(entries, &hashes, &fresh, new_size) {
            Ok(()) => {
                let dedup = self.dedup.get_or_insert_with(HashMap::new);
                dedup.extend(batch_seen);
                Ok(out)
            }
            Err(e) => {
                // Nothing was acknowledged, but files beyond the checkpoint (perhaps the
                // checkpoint itself) may have been written: only a reopen, which recovers from
                // what is on disk, may append again.
                self.edge = saved;
                self.poisoned = true;
                Err(e)
            }
        }
    }

    fn commit(
        &mut self,
        entries: &[&[u8]],
        hashes: &[Hash],
        fresh: &[usize],
        new_size: u64,
    ) -> Result<(), LogError> {
        if new_size > self.pending_target {
            let target = new_size + PENDING_HEADROOM;
            self.storage
                .replace_atomically(PENDING, PENDING_TMP, target.to_string().as_bytes())?;
            self.pending_target = target;
        }
        let batch: Vec<(&[u8], Hash)> = fresh.iter().map(|&i| (entries[i], hashes[i])).collect();
        let mut files = self.edge.append(&batch).map_err(|e| match e {
            EdgeError::TooLong(k, len) => LogError::EntryTooLong {
                position: fresh[k],
                len,
            },
            other => LogError::OutOfRange(format!("{other:?}")),
        })?;
        // The new checkpoint is signed now and written (not yet published) with the tiles, so that
        // its fsync shares their round; it is renamed into place only once they are all durable.
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: new_size,
            root: self.edge.root(),
            extensions: vec![],
        };
        let sc = cp
            .sign(&self.key)
            .in_file(&self.storage.path("checkpoint"))?;
        let text = sc.to_text();
        files.push((CHECKPOINT_TMP.to_string(), text.clone().into_bytes()));
        self.storage.write_durably(&files)?;
        self.storage.rename_durably(CHECKPOINT_TMP, "checkpoint")?;
        self.checkpoint = sc;
        // Best effort, after the commit: the history only serves proofs against older sizes.
        if self.keep_history {
            let _ = crate::history::append(&self.storage, new_size, text.as_bytes());
        }
        Ok(())
    }

    /// Builds the leaf-hash index from the level-0 tiles, once.
    fn load_dedup(&mut self) -> Result<(), LogError> {
        if self.dedup.is_some() {
            return Ok(());
        }
        let size = self.edge.size();
        let mut map = HashMap::with_capacity(size as usize);
        let full = size / TILE_WIDTH as u64;
        for t in 0..full {
            let id = TileId {
                level: 0,
                index: t,
                width: TILE_WIDTH,
            };
            for (k, h) in self.storage.read_tile(id)?.into_iter().enumerate() {
                map.entry(h).or_insert(t * TILE_WIDTH as u64 + k as u64);
            }
        }
        if let Some((id, hs)) = self
            .edge
            .tree()
            .partial_tiles()
            .next()
            .filter(|(id, _)| id.level == 0)
        {
            for (k, h) in hs.iter().enumerate() {
                map.entry(*h)
                    .or_insert(id.index * TILE_WIDTH as u64 + k as u64);
            }
        }
        self.dedup = Some(map);
        Ok(())
    }
}

/// Leaf hashes of a batch, on two threads when the batch is large enough to be worth it.
fn hash_entries(entries: &[&[u8]]) -> Vec<Hash> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    if entries.len() < 512 || threads < 2 {
        return entries.iter().map(|e| leaf_hash(e)).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_default())
            .collect()
    })
}

/// Removes every file a batch growing the log from `size` to the size recorded in
/// `.nospy/pending` may have written, then the pending record itself.
fn discard_unfinished_batch(storage: &DirStorage, size: u64) -> Result<(), LogError> {
    let Some(bytes) = storage.read(PENDING)? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&bytes);
    let target: u64 = match text.trim().parse() {
        Ok(t) => t,
        // Unreadable (it is replaced atomically, so only if damaged): nothing to go by.
        Err(_) => size,
    };
    let bound = size.saturating_add(MAX_BATCH as u64 + PENDING_HEADROOM);
    if target > bound {
        return Err(corrupt(
            storage.path(PENDING),
            format!("records a batch to size {target}, more than {} entries beyond the checkpoint's {size}", bound - size),
        ));
    }
    if target > size {
        let mut dirs = std::collections::BTreeSet::new();
        for level in 0..=MAX_TILE_LEVEL {
            let (old, new) = (level_count(level, size), level_count(level, target));
            if old == new {
                continue;
            }
            for index in old / TILE_WIDTH as u64..=(new - 1) / TILE_WIDTH as u64 {
                // Whatever a batch ending anywhere up to `target` may have written for this tile:
                // the full tile, and any partial one wider than the published tree's.
                let covered = tile::width_in(level, index, size);
                let full = TileId {
                    level,
                    index,
                    width: TILE_WIDTH,
                };
                let mut paths = Vec::new();
                if covered < TILE_WIDTH {
                    paths.push(full.path());
                    if level == 0 {
                        paths.push(full.entries_path());
                    }
                }
                for w in storage
                    .partial_widths(&full.path())?
                    .into_iter()
                    .filter(|&w| w > covered)
                {
                    paths.push(TileId { width: w, ..full }.path());
                }
                if level == 0 {
                    for w in storage
                        .partial_widths(&full.entries_path())?
                        .into_iter()
                        .filter(|&w| w > covered)
                    {
                        paths.push(TileId { width: w, ..full }.entries_path());
                    }
                }
                for p in paths {
                    if storage.remove(&p)? {
                        if let Some(d) = Path::new(&p).parent() {
                            dirs.insert(d.to_string_lossy().into_owned());
                        }
                    }
                }
            }
        }
        for d in dirs {
            storage.sync_dir(&d)?;
        }
    }
    storage.remove(PENDING)?;
    storage.remove(PENDING_TMP)?;
    storage.sync_dir(PRIVATE_DIR)?;
    Ok(())
}

/// Takes the one writer's lock of the log in `storage` (`.nospy/lock`), held while the file
/// lives: the sequencer and the mirror both write a log only under it.
pub(crate) fn writer_lock(storage: &DirStorage) -> Result<File, LogError> {
    let lock_path = storage.path(LOCK);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked { path: lock_path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(lock_path)(e)),
    }
}
