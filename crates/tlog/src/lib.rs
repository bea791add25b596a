//! The transparency log's mathematics and formats, with no I/O:
//!
//! - [`hash`]: RFC 6962 leaf and node hashing;
//! - [`merkle`]: roots, inclusion and consistency proofs (generated from any [`merkle::NodeSource`],
//!   and verified);
//! - [`note`]: c2sp.org/signed-note keys, signing and verification;
//! - [`checkpoint`]: c2sp.org/tlog-checkpoint, witness cosignatures (c2sp.org/tlog-cosignature),
//!   and c2sp.org/tlog-proof files;
//! - [`tile`]: c2sp.org/tlog-tiles paths, entry bundles, and the incremental tiled tree a sequencer
//!   appends to;
//! - [`witness`]: the c2sp.org/tlog-witness `add-checkpoint` request body.
//!
//! Nothing here reads a file, a clock or the network: every function's result depends on its
//! arguments alone, so every parser can be fuzzed and every result reproduced.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod digest;
pub mod hash;
pub mod hex;
pub mod merkle;
pub mod note;
pub mod position;
pub mod text;
pub mod tile;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, TlogProof};
pub use digest::Sha256;
pub use hash::{leaf_hash, node_hash, Hash};
pub use merkle::{NodeSource, ProofError};
pub use note::{Note, NoteError, SignerKey, VerifierKey};
pub use position::{LogIndex, TreeSize};
pub use tile::{TileError, TileId, TileTree};
