//! The verifier thread: the signatures of queued submissions, checked in batches.

use crate::pipeline::{AddRequest, Refused};
use std::time::Duration;
use tokio::sync::mpsc;

/// The verifier thread: checks the signatures of whatever is queued in one batch, answers 403
/// to those that fail, and hands the rest to the sequencer. While the sequencer is busy making
/// the last batch durable, it keeps checking and gathers what passes into one batch (up to
/// `max_batch`), so that batches grow with the load and each fsync round covers more entries.
pub(crate) fn run_verifier(
    mut rx: mpsc::Receiver<AddRequest>,
    out: std::sync::mpsc::SyncSender<Vec<AddRequest>>,
    max_batch: usize,
) {
    let mut pending: Vec<AddRequest> = Vec::new();
    loop {
        let mut batch = Vec::new();
        if pending.is_empty() {
            match rx.blocking_recv() {
                Some(r) => batch.push(r),
                None => return,
            }
        }
        while batch.len() + pending.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let idle = batch.is_empty();
        if !idle {
            let ok = nospy_statement::check_signatures(
                &batch.iter().map(|r| &r.check).collect::<Vec<_>>(),
            );
            for (r, ok) in batch.into_iter().zip(ok) {
                if ok {
                    pending.push(r);
                } else {
                    let _ = r.reply.send(Err(Refused::Forbidden(
                        "a signature does not verify with the key its keyid names".into(),
                    )));
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        match out.try_send(std::mem::take(&mut pending)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(p)) => {
                pending = p;
                if idle || pending.len() >= max_batch {
                    // Nothing new to check: wait a little for the sequencer (or for more input).
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}
