//! Private key files (Go's `PRIVATE+KEY+name+keyid+base64` form, DESIGN.md §2), read in one
//! place for every command and server that signs: the log's key, vendors', evaluators',
//! witnesses' and monitors'. This crate is the lowest one that touches the filesystem.

use crate::error::io;
use crate::LogError;
use nospy_tlog::note::SignerKey;
use std::path::Path;

/// Reads the private key in the file `path`.
pub fn read_signer(path: &Path) -> Result<SignerKey, LogError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    SignerKey::parse(&text)
        .map_err(|e| LogError::Key(format!("{}: not a private key: {e}", path.display())))
}
