//! Firmware artifacts: their SHA-256, read fast enough to keep up with the hash.

use nospy_tlog::Sha256;
use sha2::Digest as _;
use std::io::Read;
use std::path::Path;

/// SHA-256 of the file at `path`, streamed in 1 MiB reads; `progress` is told (bytes hashed,
/// file size).
///
/// (An earlier version read ahead on a second thread and, for files of several MiB, returned a
/// wrong digest that changed from run to run; this one is the plain loop, checked against the
/// digest of the whole bytes in `tests/artifact.rs`.)
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> std::io::Result<Sha256> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        done += n as u64;
        progress(done, total);
    }
    Ok(Sha256(h.finalize().into()))
}
