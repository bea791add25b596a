//! `nospy witness cosign`: the offline witness, against a log directory it can read.

use crate::state::FileState;
use crate::{check, Cosigned, Error};
use nospy_log::Log;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::SignerKey;
use nospy_tlog::TreeSize;

/// Cosigns `sc`, a checkpoint of `log` (the caller has checked it is one), as the witness
/// `key` at time `now` (POSIX seconds), if it extends what `state` says was cosigned last (by
/// a consistency proof computed from the log's tiles). The state is committed durably before
/// the cosigned checkpoint is returned; any cosignature by `key` already on `sc` is replaced.
pub fn cosign(
    key: &SignerKey,
    log: &Log,
    sc: &SignedCheckpoint,
    state: &FileState,
    now: u64,
) -> Result<SignedCheckpoint, Error> {
    let cp = &sc.checkpoint;
    let next = Cosigned {
        size: cp.size,
        root: cp.root,
    };
    state.check_and_commit(&cp.origin, next, |prev| {
        let old = prev.map_or(0, |p| p.size);
        let proof = if old > 0 && cp.size > old {
            log.consistency_proof(TreeSize(old), TreeSize(cp.size))?
        } else {
            Vec::new()
        };
        check(prev, cp, old, &proof)
    })?;
    let mut out = sc.clone();
    out.note.signatures.retain(|s| s.name != key.name());
    out.note.signatures.push(key.cosign(&out.note.text, now));
    Ok(out)
}
