//! The sequencer thread: the only writer of the log, and the republishing of cosigned
//! checkpoints.

use crate::pipeline::{AddRequest, Refused};
use crate::{Published, Shared};
use nospy_log::storage::DirStorage;
use nospy_log::Sequencer;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::SignerKey;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// How the sequencer thread talks to the others.
pub(crate) struct SequencerLinks {
    /// Batches whose signatures the verifier checked.
    pub(crate) verified: std::sync::mpsc::Receiver<Vec<AddRequest>>,
    /// Rows for the lookup index.
    pub(crate) index: std::sync::mpsc::Sender<Vec<crate::index::Row>>,
    /// New checkpoints, for the witnessing thread.
    pub(crate) witness: std::sync::mpsc::Sender<SignedCheckpoint>,
    /// Checkpoints the witnesses cosigned.
    pub(crate) cosigned: std::sync::mpsc::Receiver<SignedCheckpoint>,
}

/// The sequencer thread: appends what the verifier passed (several of its batches at once when
/// they queue up, up to `max_batch`), acknowledges, hands the new checkpoint to the witnessing
/// thread, and republishes the checkpoints that come back cosigned.
pub(crate) fn run_sequencer(
    mut seq: Sequencer,
    key: SignerKey,
    links: SequencerLinks,
    shared: Arc<Shared>,
    max_batch: usize,
) {
    let SequencerLinks {
        verified: rx,
        index: index_tx,
        witness: witness_tx,
        cosigned: cosigned_rx,
    } = links;
    let dir = seq.dir().to_path_buf();
    loop {
        // Cosigned checkpoints come back from the witnessing thread; only the sequencer writes
        // the checkpoint file, and only the latest checkpoint is republished.
        while let Ok(sc) = cosigned_rx.try_recv() {
            publish_cosigned(&seq, &shared, sc);
        }
        let mut batch = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(b) => b,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let entries: Vec<&[u8]> = batch.iter().map(|r| r.entry.as_slice()).collect();
        let before = seq.size();
        let result = seq.append(&entries);
        match result {
            Ok(out) => {
                let added = seq.size() - before;
                shared.metrics.entries.fetch_add(added, Relaxed);
                shared.metrics.tree_size.store(seq.size(), Relaxed);
                shared.metrics.batch_size.observe(batch.len() as f64);
                crate::set_published(&shared, Published::of(seq.checkpoint()));
                // Acknowledge first; then the lookup index follows the log on its own thread (it
                // is not part of the acknowledgement's durability: it can be rebuilt from the log).
                let mut rows = Vec::with_capacity(batch.len());
                for (r, a) in batch.into_iter().zip(out) {
                    shared
                        .metrics
                        .append_latency
                        .observe(r.received.elapsed().as_secs_f64());
                    let _ = r.reply.send(Ok(a));
                    if !a.duplicate {
                        rows.push(crate::index::Row {
                            index: a.index,
                            leaf_hash: a.hash,
                            predicate_type: r.predicate_type,
                            subjects: r.subjects,
                            signers: r.signers,
                        });
                    }
                }
                let _ = index_tx.send(rows);
                if added > 0 {
                    let _ = witness_tx.send(seq.checkpoint().clone());
                }
            }
            Err(e) => {
                let msg = e.to_string();
                eprintln!("nospy serve: append failed: {msg}");
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(Refused::Failed(msg.clone())));
                }
                // A failed commit poisons the sequencer: reopen, which recovers from the disk.
                drop(seq);
                match Sequencer::open(&dir, key.clone()) {
                    Ok(mut s) => {
                        s.keep_history(false);
                        seq = s
                    }
                    Err(e) => {
                        eprintln!("nospy serve: cannot reopen the log, stopping: {e}");
                        return;
                    }
                }
            }
        }
    }
    // The queue is closed: let the witnessing thread finish its round and publish its result.
    drop(witness_tx);
    while let Ok(sc) = cosigned_rx.recv() {
        publish_cosigned(&seq, &shared, sc);
    }
}

/// Republishes the sequencer's latest checkpoint with the cosignatures the witnesses gave it,
/// unless the log has moved on since (then a newer round is on its way).
pub(crate) fn publish_cosigned(seq: &Sequencer, shared: &Shared, sc: SignedCheckpoint) {
    let size = sc.checkpoint.size;
    publish_if_latest(seq, shared, sc);
    shared
        .progress
        .send_modify(|p| p.witnessed = p.witnessed.max(size));
}

/// Publishes `sc` if it is still the sequencer's latest checkpoint.
fn publish_if_latest(seq: &Sequencer, shared: &Shared, sc: SignedCheckpoint) {
    if sc.checkpoint != seq.checkpoint().checkpoint {
        return;
    }
    let text = sc.to_text();
    if let Err(e) = DirStorage::new(seq.dir()).replace_atomically(
        "checkpoint",
        ".nospy/checkpoint.tmp",
        text.as_bytes(),
    ) {
        eprintln!("nospy serve: could not publish the cosigned checkpoint: {e}");
        return;
    }
    crate::set_published(shared, Published::of(&sc));
}
