//! Where a reader finds a log's tiles and entry bundles: a directory
//! ([`crate::storage::DirStorage`]) or a
//! bucket ([`crate::object::BlockingObjects`]). Reads only: each storage writes in its own way
//! (fsyncs and renames on a disk, conditional PUTs in a bucket), so writing is not abstracted.

use crate::error::{corrupt, LogError};
use nospy_tlog::hash::Hash;
use nospy_tlog::tile::{self, TileId};
use std::path::PathBuf;

/// A log's objects at their tlog-tiles paths (`checkpoint`, `tile/...`), read blocking (from a
/// blocking thread: never from an async task).
pub trait TileSource: Send + Sync + std::fmt::Debug {
    /// The object at the tlog-tiles path `rel`, or `None` when there is none.
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LogError>;

    /// Where `rel` is, for messages (a file's path, an object's URL).
    fn locate(&self, rel: &str) -> PathBuf;

    /// The object at `rel`, which must exist; `what` names it in the error ("tile", "entry
    /// bundle").
    fn read_required(&self, rel: &str, what: &str) -> Result<Vec<u8>, LogError> {
        self.read(rel)?
            .ok_or_else(|| corrupt(self.locate(rel), format!("{what} is missing")))
    }

    /// Hash tile `id`: exactly `id.width` hashes, or an error naming the object.
    fn read_tile(&self, id: TileId) -> Result<Vec<Hash>, LogError> {
        let rel = id.path();
        let data = self.read_required(&rel, "tile")?;
        tile::parse_tile(&data, id.width).map_err(|e| corrupt(self.locate(&rel), e))
    }

    /// Entry bundle `id`, checked to hold exactly `id.width` entries; returns its bytes.
    fn read_bundle(&self, id: TileId) -> Result<Vec<u8>, LogError> {
        let rel = id.entries_path();
        let data = self.read_required(&rel, "entry bundle")?;
        tile::parse_bundle(&data, id.width).map_err(|e| corrupt(self.locate(&rel), e))?;
        Ok(data)
    }
}
