//! Reading a log from its tiles: entries, hashes of any complete subtree, and so proofs, with a
//! bounded cache of expanded tiles (every interior node of a tile computed once).

use crate::error::{corrupt, LogError};
use crate::source::TileSource;
use nospy_tlog::hash::{node_hash, Hash};
use nospy_tlog::merkle::{NodeSource, ProofError};
use nospy_tlog::tile::{self, TileId, TILE_HEIGHT, TILE_WIDTH};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One tile with all its interior nodes: `levels[h]` holds the complete nodes of height `h`
/// (relative to the tile's level) that the tile's hashes determine.
#[derive(Debug)]
pub struct ExpandedTile {
    levels: Vec<Vec<Hash>>,
}

impl ExpandedTile {
    /// Expands `hashes` (1 to 256 of them): `w - 1` node hashes at most.
    pub fn new(hashes: Vec<Hash>) -> Self {
        let mut levels = vec![hashes];
        for _ in 0..TILE_HEIGHT {
            let prev = &levels[levels.len() - 1];
            let next: Vec<Hash> = prev
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        ExpandedTile { levels }
    }

    /// The tile's own hashes.
    pub fn hashes(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// The complete node of height `h` at position `i` within the tile, if the tile holds it.
    pub fn node(&self, h: u8, i: usize) -> Option<Hash> {
        self.levels.get(h as usize).and_then(|l| l.get(i)).copied()
    }
}

/// A bounded cache of expanded tiles, keyed by tile id (width included, so a partial tile that
/// grew is never confused with its wider version).
#[derive(Debug)]
pub struct TileCache {
    capacity: usize,
    tiles: Mutex<HashMap<TileId, Arc<ExpandedTile>>>,
}

impl TileCache {
    /// A cache holding at most `capacity` tiles (each up to 16 KiB expanded).
    pub fn new(capacity: usize) -> Self {
        TileCache {
            capacity: capacity.max(1),
            tiles: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, id: &TileId) -> Option<Arc<ExpandedTile>> {
        self.tiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn put(&self, id: TileId, t: Arc<ExpandedTile>) {
        let mut m = self.tiles.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.capacity {
            // Evict an arbitrary tile: HashMap order is effectively random, which is all a cache of
            // uniformly-accessed immutable tiles needs.
            if let Some(k) = m.keys().next().copied() {
                m.remove(&k);
            }
        }
        m.insert(id, t);
    }

    /// Forgets one tile.
    pub fn evict(&self, id: &TileId) {
        self.tiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Forgets every tile.
    pub fn clear(&self) {
        self.tiles.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Reads tiles and entries of a log of `size` entries from its directory or its bucket.
#[derive(Debug, Clone, Copy)]
pub struct TileReader<'a> {
    pub(crate) storage: &'a dyn TileSource,
    pub(crate) cache: &'a TileCache,
    /// The tree size the tiles are read for: each tile is read at its width in this tree.
    pub(crate) size: u64,
}

impl<'a> TileReader<'a> {
    /// A reader of the tiles of a tree of `size` entries.
    pub fn new(storage: &'a dyn TileSource, cache: &'a TileCache, size: u64) -> Self {
        TileReader {
            storage,
            cache,
            size,
        }
    }

    /// Reads (or takes from the cache) tile `index` at tile level `level`, at its width in the tree.
    pub fn tile(&self, level: u8, index: u64) -> Result<Arc<ExpandedTile>, LogError> {
        let width = tile::width_in(level, index, self.size);
        if width == 0 {
            return Err(LogError::OutOfRange(format!(
                "tile {index} of level {level} is beyond tree size {}",
                self.size
            )));
        }
        let id = TileId {
            level,
            index,
            width,
        };
        if let Some(t) = self.cache.get(&id) {
            return Ok(t);
        }
        let t = Arc::new(ExpandedTile::new(self.storage.read_tile(id)?));
        self.cache.put(id, t.clone());
        Ok(t)
    }

    /// The entry bundle holding entry `index`, split into entries, and the index's position in it.
    pub fn bundle(&self, bundle_index: u64) -> Result<Vec<Vec<u8>>, LogError> {
        let width = tile::width_in(0, bundle_index, self.size);
        if width == 0 {
            return Err(LogError::OutOfRange(format!(
                "entry bundle {bundle_index} is beyond tree size {}",
                self.size
            )));
        }
        let id = TileId {
            level: 0,
            index: bundle_index,
            width,
        };
        let data = self.storage.read_bundle(id)?;
        let entries = tile::parse_bundle(&data, width)
            .map_err(|e| corrupt(self.storage.locate(&id.entries_path()), e))?;
        Ok(entries.into_iter().map(|e| e.to_vec()).collect())
    }

    /// Entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        if index >= self.size {
            return Err(LogError::OutOfRange(format!(
                "entry {index} is beyond tree size {}",
                self.size
            )));
        }
        let mut b = self.bundle(index / TILE_WIDTH as u64)?;
        Ok(b.swap_remove((index % TILE_WIDTH as u64) as usize))
    }
}

impl NodeSource for TileReader<'_> {
    type Error = LogError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        let t = level / TILE_HEIGHT;
        let h = level % TILE_HEIGHT;
        // Position of the node's leftmost descendant among the nodes stored at tile level `t`.
        let first = index
            .checked_shl(h as u32)
            .filter(|f| f >> h == index)
            .ok_or(ProofError::IndexOutOfRange {
                index,
                size: self.size,
            })?;
        let tile = self.tile(t, first / TILE_WIDTH as u64)?;
        let within = (first % TILE_WIDTH as u64) as usize >> h;
        tile.node(h, within).ok_or_else(|| {
            LogError::OutOfRange(format!(
                "node {index} at level {level} is not complete in tree size {}",
                self.size
            ))
        })
    }
}
