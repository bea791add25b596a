//! The checkpoints a log has published, kept so that proofs can be made against an earlier tree
//! size (`nospy log prove --size`). One append-only file, `.nospy/checkpoints`, of records
//! `<size> <length>\n<signed checkpoint>`; written after each commit without fsync, because it
//! only serves convenience: a record lost or torn in a crash makes that size unprovable offline,
//! nothing more, and a torn last record is skipped.

use crate::error::LogError;
use crate::storage::DirStorage;

/// The history file, relative to the log directory.
pub const FILE: &str = ".nospy/checkpoints";

/// Appends one signed checkpoint of `size` entries.
pub fn append(storage: &DirStorage, size: u64, signed: &[u8]) -> Result<(), LogError> {
    storage.append_volatile(FILE, &record(size, signed))
}

/// The recorded checkpoint of `size` entries, if any (the last one recorded for that size).
pub fn find(storage: &DirStorage, size: u64) -> Result<Option<Vec<u8>>, LogError> {
    let Some(data) = storage.read(FILE)? else {
        return Ok(None);
    };
    Ok(records(&data)
        .filter(|(s, _)| *s == size)
        .last()
        .map(|(_, b)| b.to_vec()))
}

/// The records of a history file's bytes, in order: (size, signed checkpoint). Reading stops
/// at the first record that is malformed or cut short (a torn last record).
pub fn records(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&rest[..nl]).ok()?;
        let mut parts = header.split(' ');
        let (Some(Ok(size)), Some(Ok(len)), None) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<usize>),
            parts.next(),
        ) else {
            rest = &[];
            return None;
        };
        let body = &rest[nl + 1..];
        let Some(signed) = body.get(..len) else {
            rest = &[];
            return None;
        };
        rest = &body[len..];
        Some((size, signed))
    })
}

/// One record, as [`append`] writes it.
pub fn record(size: u64, signed: &[u8]) -> Vec<u8> {
    let mut rec = format!("{size} {}\n", signed.len()).into_bytes();
    rec.extend_from_slice(signed);
    rec
}
