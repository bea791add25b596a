//! `nospy log mirror URL DIR`: copy a remote tlog-tiles log, verifying as it goes.
//!
//! Every entry bundle from the last mirrored size to the remote checkpoint's is fetched (or read
//! back from a previous, interrupted run), and the tree is recomputed from the entries: the
//! result must be the remote checkpoint's root, signed by the log's key, and the old part must be
//! the root this mirror had before. That is a consistency check by construction, stronger than a
//! proof. Full bundles and tiles are written as they are verified, the checkpoint last, so an
//! interrupted mirror resumes where it stopped and never publishes what it has not verified.

use crate::util::{print_json, verifier_key, Progress};
use anyhow::{bail, Context as _, Result};
use nospy_log::storage::DirStorage;
use nospy_log::LogConfig;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::{leaf_hash, Hash};
use nospy_tlog::tile::{self, TileId, TileTree, TILE_WIDTH};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(url: &str, dir: &Path, key: &str, json: bool) -> Result<ExitCode> {
    let key = verifier_key(key)?;
    let base = url.trim_end_matches('/');
    let http = nospy_client::http::Blocking::new(Duration::from_secs(60))?;
    let fetch = |path: &str| -> Result<Vec<u8>> { Ok(http.get_ok(&format!("{base}/{path}"))?) };
    let remote = fetch("checkpoint")?;
    let sc = SignedCheckpoint::open(&remote, &key).with_context(|| format!("{base}/checkpoint"))?;
    let n = sc.checkpoint.size;
    let storage = DirStorage::new(dir);

    // What this mirror has: its checkpoint, verified with the same key, and its right edge.
    let (m, mut tree, mut bundle) = match storage.read("checkpoint")? {
        None => (0, TileTree::new(), Vec::new()),
        Some(b) => {
            let old = SignedCheckpoint::open(&b, &key)
                .with_context(|| format!("{}: the mirror's checkpoint", dir.display()))?;
            let m = old.checkpoint.size;
            if n < m {
                bail!("the remote checkpoint (size {n}) is older than this mirror's ({m}): the log rolled back");
            }
            if n == m && old.checkpoint.root != sc.checkpoint.root {
                bail!("the remote checkpoint of size {n} has another root than this mirror's: the log forked");
            }
            let (tree, bundle) = storage
                .read_right_edge(m, &old.checkpoint.root)
                .with_context(|| format!("{}: the mirror's right edge", dir.display()))?;
            (m, tree, bundle)
        }
    };
    if !dir.join(nospy_log::CONFIG_FILE).exists() {
        let cfg = LogConfig {
            format: 1,
            origin: key.name().to_string(),
            public_key: key.to_string(),
            private_key_file: None,
        };
        let text = toml::to_string(&cfg).context("writing the mirror's configuration")?;
        storage.write_durably(&[(nospy_log::CONFIG_FILE.to_string(), text.into_bytes())])?;
    }

    let mut progress = Progress::new("mirrored entries");
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
                fetch(&path)?
            }
        };
        let entries = tile::parse_bundle(&data, width).with_context(|| format!("{base}/{path}"))?;
        let have = if b == first {
            (m % TILE_WIDTH as u64) as usize
        } else {
            0
        };
        if !data.starts_with(&bundle[..bundle.len().min(data.len())]) || have > entries.len() {
            bail!("{base}/{path}: its first {have} entries differ from those this mirror holds: the log rewrote history");
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for e in &entries[have..] {
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
        progress.update(tree.size(), n);
    }
    if tree.size() != n {
        bail!(
            "the remote bundles hold {} entries, its checkpoint says {n}",
            tree.size()
        );
    }
    let root: Hash = tree.root();
    if root != sc.checkpoint.root {
        bail!(
            "the remote entries give root {}, but its signed checkpoint says {}: not mirrored",
            root.to_base64(),
            sc.checkpoint.root.to_base64()
        );
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
    if json {
        print_json(
            &json!({"url": base, "dir": dir, "from_size": m, "size": n, "root": root.to_base64(), "bundles_fetched": fetched}),
        )?;
    } else {
        println!(
            "mirrored {} from size {m} to {n} ({fetched} bundles fetched); root {} verified",
            key.name(),
            root.to_base64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
