//! Reading what a log says about an artifact: hashing artifacts, and finding the entries whose
//! statements name a digest.

use crate::util::Progress;
use anyhow::{Context as _, Result};
use nospy_log::Log;
use nospy_statement::dsse::Envelope;
use nospy_statement::Statement;
use nospy_tlog::Hash;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// SHA-256 of a file, streamed, with progress on a terminal for large files. A second thread
/// reads ahead while this one hashes, so that the copy out of the page cache overlaps the
/// hashing.
pub fn hash_file(path: &Path) -> Result<Hash> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut progress = (total > 256 << 20).then(|| Progress::new("hashed bytes"));
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        // invariant: the channel has room for the three buffers.
        let _ = empty_tx.send(vec![0u8; 1 << 20]);
    }
    std::thread::scope(|s| -> Result<Hash> {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                let r = f.read(&mut buf).map(|n| (buf, n));
                let stop = !matches!(r, Ok((_, n)) if n > 0);
                if full_tx.send(r).is_err() || stop {
                    break;
                }
            }
        });
        let mut h = Sha256::new();
        let mut done = 0u64;
        loop {
            let (buf, n) = full_rx
                .recv()
                .context("reader thread stopped")?
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            done += n as u64;
            if let Some(p) = progress.as_mut() {
                p.update(done, total);
            }
            if empty_tx.send(buf).is_err() {
                break;
            }
        }
        drop(empty_tx);
        Ok(Hash(h.finalize().into()))
    })
}

/// Parses `sha256:<hex>` or `<hex>`.
pub fn parse_digest(s: &str) -> Result<Hash> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    Hash::from_hex(hex)
        .filter(|_| hex.len() == 64)
        .with_context(|| {
            format!("{s:?} is not a SHA-256 digest (64 hex digits, optionally after sha256:)")
        })
}

/// Every entry of the log (up to its checkpoint) whose statement has `digest` among its subjects:
/// `(index, entry bytes)`. Reads the whole log; the index of the server makes this a lookup.
pub fn entries_about(log: &Log, digest: &Hash) -> Result<Vec<(u64, Vec<u8>)>> {
    let size = log.size();
    let reader = log.reader();
    let mut out = Vec::new();
    let mut progress = Progress::new("scanned entries");
    let bundles = size.div_ceil(256);
    for b in 0..bundles {
        for (k, e) in reader.bundle(b)?.into_iter().enumerate() {
            if is_about(&e, digest) {
                out.push((b * 256 + k as u64, e));
            }
        }
        progress.update(((b + 1) * 256).min(size), size);
    }
    Ok(out)
}

/// Whether a log entry is a statement with `digest` among its subjects (signatures unchecked:
/// this only finds candidates, which the verdict then checks).
pub fn is_about(entry: &[u8], digest: &Hash) -> bool {
    let Ok(env) = Envelope::parse(entry) else {
        return false;
    };
    // Cheap filter first: the digest's hex must appear in the payload.
    let hex = digest.to_hex();
    env.payload
        .windows(hex.len())
        .any(|w| w.eq_ignore_ascii_case(hex.as_bytes()))
        && Statement::parse(&env.payload).is_ok_and(|s| s.is_about(digest))
}
