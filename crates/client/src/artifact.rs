//! Firmware artifacts: their SHA-256, read fast enough to keep up with the hash.

use nospy_tlog::Sha256;
use sha2::Digest as _;
use std::io::Read;
use std::path::Path;

/// SHA-256 of the file at `path`, streamed; `progress` is told (bytes hashed, file size). A
/// second thread reads ahead while this one hashes, so that the copy out of the page cache
/// overlaps the hashing.
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> std::io::Result<Sha256> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        // invariant: the channel has room for the three buffers.
        let _ = empty_tx.send(vec![0u8; 1 << 20]);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                let r = f.read(&mut buf).map(|n| (buf, n));
                let stop = !matches!(r, Ok((_, n)) if n > 0);
                if full_tx.send(r).is_err() || stop {
                    break;
                }
            }
        });
        let mut h = sha2::Sha256::new();
        let mut done = 0u64;
        loop {
            let (buf, n) = full_rx
                .recv()
                .map_err(|_| std::io::Error::other("the reader thread stopped"))??;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            done += n as u64;
            progress(done, total);
            if empty_tx.send(buf).is_err() {
                break;
            }
        }
        drop(empty_tx);
        Ok(Sha256(h.finalize().into()))
    })
}
