//! c2sp.org/tlog-tiles: tile coordinates and paths (`tile/<L>/<N>[.p/<W>]`,
//! `tile/entries/<N>[.p/<W>]`), entry bundles, and [`TileTree`], the incremental state that turns
//! appended leaves into tiles and roots.

use crate::hash::{node_hash, Hash};
use std::fmt;

/// Hashes (or entries) in a full tile: tiles have height 8.
pub const TILE_WIDTH: u16 = 256;
/// Height of a tile in tree levels.
pub const TILE_HEIGHT: u8 = 8;
/// Largest entry a bundle can carry (uint16 length prefix).
pub const MAX_ENTRY_LEN: usize = 65_535;
/// Highest tile level a 64-bit tree can need (level 7 holds nodes of height 56).
pub const MAX_TILE_LEVEL: u8 = 7;

/// A tile or entry-bundle path that does not follow tlog-tiles, or a bundle that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TileError {
    /// A path is not a tlog-tiles path; the message says which part is wrong.
    BadPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tile's byte length is not 32 times its width.
    BadTileLength {
        /// Expected number of hashes.
        width: u16,
        /// Bytes found.
        len: usize,
    },
    /// A bundle is cut off inside a length prefix or an entry.
    TruncatedBundle {
        /// Entry being read when the data ran out.
        entry: usize,
    },
    /// A bundle holds more or fewer entries than its width says.
    BundleCount {
        /// Entries expected.
        expected: u16,
        /// Entries found (counting any trailing bytes as one more).
        found: usize,
    },
    /// An entry is longer than 65,535 bytes and cannot be put in a bundle.
    EntryTooLong {
        /// Its length.
        len: usize,
    },
    /// Partial tiles given to restore a [`TileTree`] do not fit its size.
    BadPartials {
        /// Tile level whose partial tile has the wrong width.
        level: u8,
        /// Width expected from the tree size.
        expected: usize,
        /// Width given.
        found: usize,
    },
}

impl fmt::Display for TileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TileError::BadPath { path, reason } => write!(f, "tile path {path:?}: {reason}"),
            TileError::BadTileLength { width, len } => {
                write!(
                    f,
                    "tile of width {width} should be {} bytes, is {len}",
                    *width as usize * 32
                )
            }
            TileError::TruncatedBundle { entry } => {
                write!(f, "entry bundle is truncated inside entry {entry}")
            }
            TileError::BundleCount { expected, found } => {
                write!(
                    f,
                    "entry bundle should hold {expected} entries, holds {found}"
                )
            }
            TileError::EntryTooLong { len } => {
                write!(
                    f,
                    "entry is {len} bytes, over the 65,535-byte limit of tlog-tiles"
                )
            }
            TileError::BadPartials {
                level,
                expected,
                found,
            } => write!(
                f,
                "partial tile at level {level} has {found} hashes, the tree size needs {expected}"
            ),
        }
    }
}

impl std::error::Error for TileError {}

/// Which tile: level `level` (0 holds leaf hashes, `L` holds nodes of height `8L`), `index`
/// (counting tiles from the left), and `width` (1..=256 hashes; 256 is a full tile).
///
/// An entry bundle is addressed with the same index and width as the level-0 tile it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level.
    pub level: u8,
    /// Tile index within the level.
    pub index: u64,
    /// Number of hashes (or entries) in the tile, 1..=256.
    pub width: u16,
}

impl TileId {
    /// Whether the tile is full (256 wide).
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, index_path(self.index, self.width))
    }

    /// `tile/entries/<N>[.p/<W>]`: the entry bundle matching this level-0 tile.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", index_path(self.index, self.width))
    }

    /// The tile at `level` that holds node `node_index` (a node of height `8*level`) in a tree of
    /// `size` leaves, with the width it has in that tree.
    pub fn containing(level: u8, node_index: u64, size: u64) -> TileId {
        let index = node_index / TILE_WIDTH as u64;
        TileId {
            level,
            index,
            width: width_in(level, index, size),
        }
    }

    /// Parses a hash-tile path (`tile/<L>/...`) or an entry-bundle path (`tile/entries/...`).
    /// Returns the id and whether it names an entry bundle.
    pub fn parse(path: &str) -> Result<(TileId, bool), TileError> {
        let bad = |reason| TileError::BadPath {
            path: path.to_string(),
            reason,
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("does not start with tile/"))?;
        let (first, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad("has no tile index"))?;
        let (level, bundle) = if first == "entries" {
            (0, true)
        } else {
            (
                parse_level(first).ok_or_else(|| bad("level is not a number from 0 to 63"))?,
                false,
            )
        };
        let (index, width) = parse_index(rest).map_err(bad)?;
        Ok((
            TileId {
                level,
                index,
                width,
            },
            bundle,
        ))
    }
}

/// Width of tile `index` at `level` in a tree of `size` leaves (0 if the tree has no such tile).
pub fn width_in(level: u8, index: u64, size: u64) -> u16 {
    let count = level_count(level, size);
    let start = index.saturating_mul(TILE_WIDTH as u64);
    if count <= start {
        0
    } else {
        (count - start).min(TILE_WIDTH as u64) as u16
    }
}

/// How many hashes tile level `level` holds in a tree of `size` leaves.
pub fn level_count(level: u8, size: u64) -> u64 {
    if level > MAX_TILE_LEVEL {
        0
    } else {
        size >> (TILE_HEIGHT as u32 * level as u32)
    }
}

/// Every tile (full and partial, at every level) of a tree of `size` leaves, lowest level first.
pub fn tiles_for_size(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..=MAX_TILE_LEVEL {
        let count = level_count(level, size);
        if count == 0 {
            break;
        }
        let full = count / TILE_WIDTH as u64;
        out.extend((0..full).map(|index| TileId {
            level,
            index,
            width: TILE_WIDTH,
        }));
        let w = (count % TILE_WIDTH as u64) as u16;
        if w > 0 {
            out.push(TileId {
                level,
                index: full,
                width: w,
            });
        }
    }
    out
}

/// The entry bundle path that holds entry `index` of a log of `size` entries.
pub fn entries_path_for_index(index: u64, size: u64) -> Option<String> {
    if index >= size {
        return None;
    }
    let tile = index / TILE_WIDTH as u64;
    Some(
        TileId {
            level: 0,
            index: tile,
            width: width_in(0, tile, size),
        }
        .entries_path(),
    )
}

fn parse_level(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 2 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    let v: u8 = s.parse().ok()?;
    (v <= 63).then_some(v)
}

/// `N` in the `x001/x234/067` form, with `.p/<W>` for a partial tile.
pub fn index_path(index: u64, width: u16) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(4 * groups.len() + 6);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            s.push_str(&format!("x{g:03}/"));
        } else {
            s.push_str(&format!("{g:03}"));
        }
    }
    if width < TILE_WIDTH {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

/// Parses `x001/x234/067[.p/W]`.
fn parse_index(s: &str) -> Result<(u64, u16), &'static str> {
    let (idx, width) = match s.split_once(".p/") {
        Some((i, w)) => {
            let ok = !w.is_empty()
                && w.len() <= 3
                && !w.starts_with('0')
                && w.bytes().all(|c| c.is_ascii_digit());
            let w: u16 = if ok {
                w.parse().map_err(|_| "partial width is not a number")?
            } else {
                0
            };
            if !(1..TILE_WIDTH).contains(&w) {
                return Err("partial width is not a number from 1 to 255");
            }
            (i, w)
        }
        None => (s, TILE_WIDTH),
    };
    let parts: Vec<&str> = idx.split('/').collect();
    let mut n: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            p.strip_prefix('x')
                .ok_or("index element before the last must be xNNN")?
        } else {
            p
        };
        if digits.len() != 3 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err("index elements must be three decimal digits");
        }
        let d: u64 = digits
            .parse()
            .map_err(|_| "index element is not a number")?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or("index overflows 64 bits")?;
    }
    if parts.len() > 1 && parts[0] == "x000" {
        return Err("index has a leading x000 element");
    }
    Ok((n, width))
}

/// Go's sumdb tile path, which names the tile height: `tile/<H>/<L>/<N>[.p/<W>]`, with level `-1`
/// written `data` (golang.org/x/mod/sumdb/tlog). Only for reading and writing sumdb-style paths;
/// nospy's own logs use tlog-tiles paths.
pub fn sumdb_tile_path(height: u8, level: i8, index: u64, width: u16) -> String {
    let l = if level < 0 {
        "data".to_string()
    } else {
        level.to_string()
    };
    let full = 1u16 << height;
    let mut s = format!("tile/{height}/{l}/{}", index_path(index, TILE_WIDTH));
    if width < full {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

/// Parses a sumdb tile path; returns `(height, level, index, width)`.
pub fn parse_sumdb_tile_path(path: &str) -> Result<(u8, i8, u64, u16), TileError> {
    let bad = |reason| TileError::BadPath {
        path: path.to_string(),
        reason,
    };
    let rest = path
        .strip_prefix("tile/")
        .ok_or_else(|| bad("does not start with tile/"))?;
    let mut it = rest.splitn(3, '/');
    let h = it
        .next()
        .and_then(|h| h.parse::<u8>().ok())
        .filter(|h| (1..=30).contains(h));
    let h = h.ok_or_else(|| bad("height is not a number from 1 to 30"))?;
    let l = match it.next() {
        Some("data") => -1,
        Some(l) => parse_level(l).ok_or_else(|| bad("level is not a number or data"))? as i8,
        None => return Err(bad("has no level")),
    };
    let rest = it.next().ok_or_else(|| bad("has no tile index"))?;
    let (n, w) = parse_index(rest).map_err(bad)?;
    let full = 1u16 << h.min(15);
    let w = if w == TILE_WIDTH { full } else { w };
    if w > full {
        return Err(bad("partial width exceeds the tile width"));
    }
    Ok((h, l, n, w))
}

/// Reads a hash tile: `width` hashes of 32 bytes, nothing more or less.
pub fn parse_tile(data: &[u8], width: u16) -> Result<Vec<Hash>, TileError> {
    if data.len() != width as usize * 32 {
        return Err(TileError::BadTileLength {
            width,
            len: data.len(),
        });
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| Hash(c.try_into().unwrap_or([0; 32])))
        .collect())
}

/// Appends one entry to an entry bundle under construction (uint16 big-endian length, then bytes).
pub fn push_bundle_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileError> {
    if entry.len() > MAX_ENTRY_LEN {
        return Err(TileError::EntryTooLong { len: entry.len() });
    }
    bundle.extend_from_slice(&(entry.len() as u16).to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle into its entries; it must hold exactly `width` entries.
pub fn parse_bundle(data: &[u8], width: u16) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::with_capacity(width as usize);
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() == width as usize {
            return Err(TileError::BundleCount {
                expected: width,
                found: out.len() + 1,
            });
        }
        if rest.len() < 2 {
            return Err(TileError::TruncatedBundle { entry: out.len() });
        }
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        if rest.len() < 2 + n {
            return Err(TileError::TruncatedBundle { entry: out.len() });
        }
        out.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    if out.len() != width as usize {
        return Err(TileError::BundleCount {
            expected: width,
            found: out.len(),
        });
    }
    Ok(out)
}

/// Root of a perfect tree over `hashes` (a power-of-two count, at least one).
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let mut buf: Vec<Hash> = hashes
        .chunks_exact(2)
        .map(|p| node_hash(&p[0], &p[1]))
        .collect();
    while buf.len() > 1 {
        let n = buf.len() / 2;
        for i in 0..n {
            buf[i] = node_hash(&buf[2 * i], &buf[2 * i + 1]);
        }
        buf.truncate(n);
    }
    buf[0]
}

/// The right edge of a tiled tree: for each tile level, the hashes of its last, incomplete tile.
///
/// This is all the state a sequencer needs to append: pushing leaves hands back each tile the
/// moment it becomes full, [`TileTree::root`] folds the partial tiles into the tree root, and the
/// partial tiles themselves are what gets written (and read back after a restart).
#[derive(Debug, Clone, Default)]
pub struct TileTree {
    size: u64,
    partial: Vec<Vec<Hash>>,
}

impl TileTree {
    /// The empty tree.
    pub fn new() -> Self {
        TileTree {
            size: 0,
            partial: vec![Vec::new()],
        }
    }

    /// Restores the tree of `size` leaves from its partial tiles, lowest level first: level `L`
    /// must hold exactly `(size >> 8L) % 256` hashes, for every level that has any hash at all.
    pub fn from_partials(size: u64, mut partials: Vec<Vec<Hash>>) -> Result<Self, TileError> {
        let levels = (0..=MAX_TILE_LEVEL)
            .take_while(|&l| level_count(l, size) > 0)
            .count()
            .max(1);
        partials.resize(levels.max(partials.len()), Vec::new());
        for (level, p) in partials.iter().enumerate() {
            let expected = (level_count(level as u8, size) % TILE_WIDTH as u64) as usize;
            if p.len() != expected {
                return Err(TileError::BadPartials {
                    level: level as u8,
                    expected,
                    found: p.len(),
                });
            }
        }
        Ok(TileTree {
            size,
            partial: partials,
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; `full` is called with each tile that this leaf completes (the level-0
    /// tile, and in turn the higher tiles whose last node it completes).
    pub fn push(&mut self, leaf: Hash, mut full: impl FnMut(TileId, &[Hash])) {
        self.size += 1;
        let mut level = 0usize;
        let mut h = leaf;
        loop {
            self.partial[level].push(h);
            if self.partial[level].len() < TILE_WIDTH as usize {
                return;
            }
            let count = level_count(level as u8, self.size);
            let id = TileId {
                level: level as u8,
                index: count / TILE_WIDTH as u64 - 1,
                width: TILE_WIDTH,
            };
            full(id, &self.partial[level]);
            h = perfect_root(&self.partial[level]);
            self.partial[level].clear();
            level += 1;
            if self.partial.len() == level {
                self.partial.push(Vec::new());
            }
        }
    }

    /// The partial (incomplete) tiles of the tree, lowest level first; empty levels are skipped.
    pub fn partial_tiles(&self) -> impl Iterator<Item = (TileId, &[Hash])> {
        self.partial
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(move |(l, p)| {
                let count = level_count(l as u8, self.size);
                (
                    TileId {
                        level: l as u8,
                        index: count / TILE_WIDTH as u64,
                        width: p.len() as u16,
                    },
                    p.as_slice(),
                )
            })
    }

    /// The tree root.
    pub fn root(&self) -> Hash {
        // The complete subtrees making up the tree, largest (leftmost) first.
        let mut nodes: Vec<Hash> = Vec::new();
        for p in self.partial.iter().rev() {
            let mut start = 0;
            for h in (0..TILE_HEIGHT).rev() {
                let n = 1usize << h;
                if p.len() & n != 0 {
                    nodes.push(perfect_root(&p[start..start + n]));
                    start += n;
                }
            }
        }
        match nodes.pop() {
            None => Hash::EMPTY_ROOT,
            Some(last) => nodes.iter().rev().fold(last, |acc, n| node_hash(n, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::{MemoryTree, NodeSource};

    #[test]
    fn tile_tree_matches_memory_tree_and_emits_every_full_tile() {
        let mut t = TileTree::new();
        let mut m = MemoryTree::new();
        let mut tiles = Vec::new();
        for i in 0..70_000u64 {
            let l = leaf_hash(&i.to_le_bytes());
            t.push(l, |id, h| tiles.push((id, h.to_vec())));
            m.push(l);
            if i % 9_999 == 0 || i < 600 {
                assert_eq!(t.root(), m.root(), "size {}", i + 1);
            }
        }
        assert_eq!(t.root(), m.root());
        assert_eq!(tiles.len(), 273 + 1);
        for (id, hashes) in &tiles {
            for (k, h) in hashes.iter().enumerate() {
                let node = id.index * 256 + k as u64;
                assert_eq!(*h, m.node(id.level * 8, node).unwrap());
            }
        }
        let widths: Vec<_> = t
            .partial_tiles()
            .map(|(id, _)| (id.level, id.width))
            .collect();
        assert_eq!(widths, vec![(0, 112), (1, 17), (2, 1)]);
        // Restoring from the partial tiles gives the same tree.
        let partials = t.partial.clone();
        let r = TileTree::from_partials(70_000, partials).unwrap();
        assert_eq!(r.root(), m.root());
        assert!(TileTree::from_partials(70_001, t.partial.clone()).is_err());
    }

    #[test]
    fn bundles_round_trip_and_refuse_bad_input() {
        let mut b = Vec::new();
        for e in [&b"one"[..], b"", b"three"] {
            push_bundle_entry(&mut b, e).unwrap();
        }
        assert_eq!(
            parse_bundle(&b, 3).unwrap(),
            vec![&b"one"[..], b"", b"three"]
        );
        assert!(matches!(
            parse_bundle(&b, 2),
            Err(TileError::BundleCount { .. })
        ));
        assert!(matches!(
            parse_bundle(&b, 4),
            Err(TileError::BundleCount { .. })
        ));
        assert!(matches!(
            parse_bundle(&b[..b.len() - 1], 3),
            Err(TileError::TruncatedBundle { entry: 2 })
        ));
        assert!(matches!(
            parse_bundle(&b[..1], 1),
            Err(TileError::TruncatedBundle { entry: 0 })
        ));
        let big = vec![0u8; 65_536];
        assert!(matches!(
            push_bundle_entry(&mut b, &big),
            Err(TileError::EntryTooLong { len: 65_536 })
        ));
    }

    #[test]
    fn odd_paths_are_refused() {
        for p in [
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/00/000",
            "tile/64/000",
            "tile/0/../000",
            "tile/0/x1/000",
            "tile/entries/abc",
            "tile/0/000.p/",
            "tiles/0/000",
            "tile/0/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(TileId::parse(p).is_err(), "{p} should be refused");
        }
    }
}
