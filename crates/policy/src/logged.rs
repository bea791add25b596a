//! What is read from a log, before any verdict: an entry with its inclusion proof, and a
//! checkpoint whose signatures were checked against the agreement. Both the admission verdict
//! (`verify`) and evidence verification (`breach`) stand on these.

use crate::agreement::Agreement;
use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::verify_inclusion;
use nospy_tlog::{Hash, LogIndex, TreeSize};

/// One log entry with its inclusion proof against the evidence's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    /// The entry's index.
    pub index: u64,
    /// The entry, byte for byte.
    pub bytes: Vec<u8>,
    /// Its inclusion proof in the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// The checkpoint the proof was made against, verbatim, if it came with one (a tlog-proof).
    pub proof_checkpoint: Option<String>,
}

impl LoggedEntry {
    /// Whether the entry is in the tree of `cp`, whose signed text is `checkpoint`: a
    /// tlog-proof made against another checkpoint is refused, whatever its hashes.
    pub(crate) fn included(&self, checkpoint: &str, cp: &Checkpoint) -> Result<(), String> {
        if self
            .proof_checkpoint
            .as_deref()
            .is_some_and(|p| p != checkpoint)
        {
            return Err(format!(
                "entry {}: its proof is against another checkpoint",
                self.index
            ));
        }
        verify_inclusion(
            LogIndex(self.index),
            TreeSize(cp.size),
            leaf_hash(&self.bytes).as_ref(),
            &self.proof,
            cp.root.as_ref(),
        )
        .map_err(|err| {
            format!(
                "entry {}: inclusion proof does not verify against the checkpoint: {err}",
                self.index
            )
        })
    }
}

/// What is wrong with a checkpoint's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Not signed by the agreement's log key, or not a checkpoint.
    LogSignature,
    /// For another log than the agreement's.
    OtherLog,
    /// A witness cosignature is malformed or does not verify.
    BadCosignature,
}

/// A checkpoint whose signatures were checked: the log's, and which witnesses cosigned when.
#[derive(Debug, Clone)]
pub(crate) struct CheckedCheckpoint {
    pub(crate) sc: SignedCheckpoint,
    /// (witness, cosignature time) of every valid cosignature by a witness of the agreement.
    pub(crate) cosigned: Vec<(usize, u64)>,
}

/// Checks the checkpoint text's signatures against the agreement: the log's key and origin,
/// and every cosignature by one of its witnesses (their times are judged by the caller).
pub(crate) fn check_signatures(
    agreement: &Agreement,
    text: &str,
) -> Result<CheckedCheckpoint, (Fault, String)> {
    let sc = SignedCheckpoint::open(text.as_bytes(), &agreement.log_key).map_err(|e| {
        (
            Fault::LogSignature,
            format!("checkpoint is not signed by the agreement's log: {e}"),
        )
    })?;
    if sc.checkpoint.origin != agreement.log_origin {
        return Err((
            Fault::OtherLog,
            format!(
                "checkpoint is for log {:?}, not {:?}",
                sc.checkpoint.origin, agreement.log_origin
            ),
        ));
    }
    let cosigned = if agreement.witness_quorum == 0 {
        Vec::new()
    } else {
        sc.cosignatures(&agreement.witnesses)
            .map_err(|e| (Fault::BadCosignature, format!("bad cosignature: {e}")))?
            .into_iter()
            .map(|c| (c.key, c.timestamp.unwrap_or(0)))
            .collect()
    };
    Ok(CheckedCheckpoint { sc, cosigned })
}
