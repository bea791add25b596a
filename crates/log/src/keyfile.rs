//! Private key files (Go's `PRIVATE+KEY+name+keyid+base64` form, DESIGN.md §2), read in one
//! place for every command and server that signs: the log's key, vendors', evaluators',
//! witnesses' and monitors'. This crate is the lowest one that touches the filesystem.
//!
//! A key file that its group or others may read is refused, as ssh refuses one: a private key
//! readable by others is not private. [`allow_open_keys`] lifts that for the process (the
//! binary's `--allow-open-keys`). The file's text is wiped from memory once parsed.

use crate::error::io;
use crate::LogError;
use nospy_tlog::note::SignerKey;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static ALLOW_OPEN: AtomicBool = AtomicBool::new(false);

/// Accepts, from now on in this process, key files that the group or others may read.
pub fn allow_open_keys() {
    ALLOW_OPEN.store(true, Ordering::SeqCst);
}

/// Reads the private key in the file `path`.
pub fn read_signer(path: &Path) -> Result<SignerKey, LogError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = f.metadata().map_err(io(path))?.permissions().mode();
        if mode & 0o077 != 0 && !ALLOW_OPEN.load(Ordering::SeqCst) {
            return Err(LogError::Key(format!(
                "{}: the private key is readable by its group or others (mode {:o}); make it owner-only (chmod 600 {}) or pass --allow-open-keys",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut &f, &mut text).map_err(io(path))?;
    SignerKey::parse(&text)
        .map_err(|e| LogError::Key(format!("{}: not a private key: {e}", path.display())))
}
