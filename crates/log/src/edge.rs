//! The right edge of a tree: one partial hash tile per level and the partial entry bundle, all
//! a writer needs to extend the tree (the rest of it is never read again). Both sequencers,
//! the directory one and the object-storage one, build their batches here, so that they write
//! the same objects for the same entries, byte for byte.

use nospy_tlog::hash::Hash;
use nospy_tlog::tile::{
    self, level_count, TileId, TileTree, MAX_ENTRY_LEN, MAX_TILE_LEVEL, TILE_WIDTH,
};

/// The right edge of the tree of [`RightEdge::size`] entries.
#[derive(Debug, Clone, Default)]
pub struct RightEdge {
    tree: TileTree,
    /// The partial entry bundle (encoded) and how many entries it holds.
    bundle: Vec<u8>,
    bundle_count: u16,
}

/// Why a right edge could not be restored or extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// A partial tile or the partial bundle is malformed or missing: its path and the fault.
    Malformed(String, String),
    /// The partial tiles give another root than the checkpoint's.
    WrongRoot,
    /// An entry is over 65,535 bytes: its position in the batch and its length.
    TooLong(usize, usize),
}

impl RightEdge {
    /// The edge of the empty tree.
    pub fn new() -> RightEdge {
        RightEdge {
            tree: TileTree::new(),
            bundle: Vec::new(),
            bundle_count: 0,
        }
    }

    /// What the edge of the tree of `size` entries is read from: the partial hash tile of each
    /// level (`None` where the level has only full tiles) and the partial entry bundle.
    pub fn sources(size: u64) -> (Vec<Option<TileId>>, Option<TileId>) {
        let partial = |level: u8, count: u64| -> Option<TileId> {
            let width = (count % TILE_WIDTH as u64) as u16;
            (width != 0).then_some(TileId {
                level,
                index: count / TILE_WIDTH as u64,
                width,
            })
        };
        let mut tiles = Vec::new();
        for level in 0..=MAX_TILE_LEVEL {
            let count = level_count(level, size);
            if count == 0 && level > 0 {
                break;
            }
            tiles.push(partial(level, count));
        }
        (tiles, partial(0, size))
    }

    /// Restores the edge of the tree of `size` entries from the bytes of what
    /// [`RightEdge::sources`] named (in the same order), checking that it gives `root`.
    pub fn restore(
        size: u64,
        root: &Hash,
        tiles: Vec<Option<Vec<u8>>>,
        bundle: Option<Vec<u8>>,
    ) -> Result<RightEdge, EdgeError> {
        let (ids, bundle_id) = RightEdge::sources(size);
        let mut partials = Vec::with_capacity(ids.len());
        for (id, data) in ids
            .iter()
            .zip(tiles.into_iter().chain(std::iter::repeat(None)))
        {
            partials.push(match (id, data) {
                (None, _) => Vec::new(),
                (Some(id), Some(d)) => tile::parse_tile(&d, id.width)
                    .map_err(|e| EdgeError::Malformed(id.path(), e.to_string()))?,
                (Some(id), None) => return Err(EdgeError::Malformed(id.path(), "missing".into())),
            });
        }
        let tree = TileTree::from_partials(size, partials)
            .map_err(|e| EdgeError::Malformed("tile".into(), e.to_string()))?;
        if tree.root() != *root {
            return Err(EdgeError::WrongRoot);
        }
        let bundle = match (bundle_id, bundle) {
            (None, _) => Vec::new(),
            (Some(id), Some(b)) => {
                tile::parse_bundle(&b, id.width)
                    .map_err(|e| EdgeError::Malformed(id.entries_path(), e.to_string()))?;
                b
            }
            (Some(id), None) => {
                return Err(EdgeError::Malformed(id.entries_path(), "missing".into()))
            }
        };
        Ok(RightEdge {
            tree,
            bundle,
            bundle_count: (size % TILE_WIDTH as u64) as u16,
        })
    }

    /// The tree's size.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The tree and the partial bundle's bytes.
    pub fn into_parts(self) -> (TileTree, Vec<u8>) {
        (self.tree, self.bundle)
    }

    /// The tree itself (its partial tiles are the edge).
    pub fn tree(&self) -> &TileTree {
        &self.tree
    }

    /// Appends entries with their leaf hashes and returns every object the batch writes, by
    /// tlog-tiles path: each tile and entry bundle it fills, and the new partial tile of each
    /// level it changed and the new partial bundle. On an error the edge is unchanged.
    pub fn append(
        &mut self,
        entries: &[(&[u8], Hash)],
    ) -> Result<Vec<(String, Vec<u8>)>, EdgeError> {
        if let Some((i, (e, _))) = entries
            .iter()
            .enumerate()
            .find(|(_, (e, _))| e.len() > MAX_ENTRY_LEN)
        {
            return Err(EdgeError::TooLong(i, e.len()));
        }
        let old_size = self.tree.size();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut bundle_index = old_size / TILE_WIDTH as u64;
        for (entry, hash) in entries {
            self.tree
                .push(*hash, |id, hs| files.push((id.path(), tile_bytes(hs))));
            // invariant: every entry's length was checked above.
            let _ = tile::push_bundle_entry(&mut self.bundle, entry);
            self.bundle_count += 1;
            if self.bundle_count == TILE_WIDTH {
                let id = TileId {
                    level: 0,
                    index: bundle_index,
                    width: TILE_WIDTH,
                };
                files.push((id.entries_path(), std::mem::take(&mut self.bundle)));
                self.bundle_count = 0;
                bundle_index += 1;
            }
        }
        let new_size = self.tree.size();
        for (id, hs) in self.tree.partial_tiles() {
            if level_count(id.level, old_size) != level_count(id.level, new_size) {
                files.push((id.path(), tile_bytes(hs)));
            }
        }
        if self.bundle_count > 0 && new_size != old_size {
            let id = TileId {
                level: 0,
                index: bundle_index,
                width: self.bundle_count,
            };
            files.push((id.entries_path(), self.bundle.clone()));
        }
        Ok(files)
    }
}

/// A hash tile's bytes.
pub fn tile_bytes(hs: &[Hash]) -> Vec<u8> {
    let mut b = Vec::with_capacity(hs.len() * 32);
    for h in hs {
        b.extend_from_slice(&h.0);
    }
    b
}
