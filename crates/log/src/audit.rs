//! `audit`: the full self-check a sceptical evaluator runs on a copy of a log. Every entry is read
//! and hashed, every tile recomputed and compared with the file, every older partial tile and
//! bundle checked against what the full ones say, and the root compared with the signed
//! checkpoint. Needs nothing but the directory and the log's public key.

use crate::error::{corrupt, InFile, LogError};
use crate::read_checkpoint;
use crate::source::TileSource as _;
use crate::storage::DirStorage;
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::note::VerifierKey;
use nospy_tlog::tile::{self, TileId, TileTree, TILE_WIDTH};
use std::collections::HashMap;
use std::path::Path;

/// What an audit found in a log that passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash tiles checked (full and partial, older partial versions included).
    pub tiles: u64,
    /// Entry bundles checked (older partial versions included).
    pub bundles: u64,
    /// The root hash recomputed from the entries.
    pub root: Hash,
    /// Files under `tile/` that no published tree covers (left by a copy taken mid-append, say).
    /// Not part of what the checkpoint vouches for, so reported rather than failed.
    pub uncovered: Vec<String>,
}

/// Audits the tlog-tiles log in `dir` against the log key `key`; any inconsistency is an error
/// naming the file and the problem.
pub fn audit(
    dir: &Path,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<AuditReport, LogError> {
    let storage = DirStorage::new(dir);
    let sc = read_checkpoint(&storage, key)?;
    let size = sc.checkpoint.size;
    let mut report = AuditReport::default();
    let mut tree = TileTree::new();
    // Every tile and bundle content the entries determine, checked as soon as it is complete.
    let mut emitted: Vec<(TileId, Vec<Hash>)> = Vec::new();
    let bundles = size.div_ceil(TILE_WIDTH as u64);
    for b in 0..bundles {
        let width = tile::width_in(0, b, size);
        let id = TileId {
            level: 0,
            index: b,
            width,
        };
        let data = storage.read_bundle(id)?;
        let entries =
            tile::parse_bundle(&data, width).in_file(&storage.path(&id.entries_path()))?;
        report.bundles += 1;
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        check_older_bundles(&storage, id, &data)?;
        report.bundles += storage
            .partial_widths(&bundle_base(b))?
            .iter()
            .filter(|&&w| w < width)
            .count() as u64;
        for l in &leaves {
            tree.push(*l, |id, hs| emitted.push((id, hs.to_vec())));
        }
        report.entries += leaves.len() as u64;
        for (id, hs) in emitted.drain(..) {
            report.tiles += check_tile(&storage, id, &hs)?;
        }
        progress(report.entries, size);
    }
    for (id, hs) in tree.partial_tiles() {
        report.tiles += check_tile(&storage, id, hs)?;
    }
    report.root = tree.root();
    if report.root != sc.checkpoint.root {
        return Err(corrupt(
            storage.path("checkpoint"),
            format!(
                "the entries give root {}, the signed checkpoint says {}",
                report.root.to_base64(),
                sc.checkpoint.root.to_base64()
            ),
        ));
    }
    report.uncovered = uncovered_files(&storage, size)?;
    Ok(report)
}

fn bundle_base(index: u64) -> String {
    TileId {
        level: 0,
        index,
        width: TILE_WIDTH,
    }
    .entries_path()
}

/// Compares a tile the entries determine with its file, and every older partial version of it
/// with the prefix it must be. Returns how many files were checked.
fn check_tile(storage: &DirStorage, id: TileId, hashes: &[Hash]) -> Result<u64, LogError> {
    let path = id.path();
    let found = storage.read_tile(id)?;
    if let Some(k) = found.iter().zip(hashes).position(|(a, b)| a != b) {
        return Err(corrupt(
            storage.path(&path),
            format!(
                "hash {k} is {}, the entries give {}",
                found[k].to_base64(),
                hashes[k].to_base64()
            ),
        ));
    }
    let base = TileId {
        width: TILE_WIDTH,
        ..id
    }
    .path();
    let mut n = 1;
    for w in storage.partial_widths(&base)? {
        if w >= id.width {
            continue;
        }
        let older = TileId { width: w, ..id };
        let p = older.path();
        let hs = storage.read_tile(older)?;
        if hs[..] != hashes[..w as usize] {
            return Err(corrupt(
                storage.path(&p),
                "older partial tile disagrees with the tree",
            ));
        }
        n += 1;
    }
    Ok(n)
}

fn check_older_bundles(storage: &DirStorage, id: TileId, data: &[u8]) -> Result<(), LogError> {
    for w in storage.partial_widths(&bundle_base(id.index))? {
        if w >= id.width {
            continue;
        }
        let older_id = TileId { width: w, ..id };
        let p = older_id.entries_path();
        let older = storage.read_bundle(older_id)?;
        if !data.starts_with(&older) {
            return Err(corrupt(
                storage.path(&p),
                "older partial bundle is not a prefix of the current one",
            ));
        }
    }
    Ok(())
}

/// Lists files under `tile/` that are not a tile or bundle of the tree of `size` (or an older,
/// narrower partial version of one).
fn uncovered_files(storage: &DirStorage, size: u64) -> Result<Vec<String>, LogError> {
    let mut out = Vec::new();
    let mut widths: HashMap<(u8, u64), u16> = HashMap::new();
    let root = storage.path("tile");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::error::io(d)(e)),
        };
        for e in rd {
            let e = e.map_err(crate::error::io(&d))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(storage.root())
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let covered = match TileId::parse(&rel) {
                Ok((id, _)) => {
                    let w = *widths
                        .entry((id.level, id.index))
                        .or_insert_with(|| tile::width_in(id.level, id.index, size));
                    id.width <= w
                }
                Err(_) => false,
            };
            if !covered {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}
