//! The write pipeline behind `POST /add`: handlers queue parsed submissions, the verifier
//! thread checks their signatures in batches, the sequencer thread appends them and answers.
//! Handlers hold the only senders of the queue, so stopping the HTTP server closes it and the
//! sequencer stops after acknowledging everything queued.

pub(crate) mod cluster;
pub(crate) mod sequencer;
pub(crate) mod verifier;

use std::time::Instant;
use tokio::sync::oneshot;

/// A submission waiting for the sequencer: parsed, its signatures not yet checked (the
/// sequencer checks a whole batch's at once).
pub(crate) struct AddRequest {
    pub(crate) entry: Vec<u8>,
    pub(crate) check: nospy_statement::SignatureCheck,
    /// What the lookup index records of it.
    pub(crate) predicate_type: String,
    pub(crate) subjects: Vec<nospy_tlog::Sha256>,
    pub(crate) signers: Vec<String>,
    pub(crate) received: Instant,
    pub(crate) reply: oneshot::Sender<Result<nospy_log::Appended, Refused>>,
    /// Its share of the queued-memory budget, given back when the request is dropped (once
    /// answered).
    pub(crate) _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Why the sequencer did not append a submission.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Its signature does not verify (403).
    Forbidden(String),
    /// The append failed (500).
    Failed(String),
    /// The log cannot take it now: the database or the object store failed, or no instance
    /// sequences the log (503, with `Retry-After`).
    Unavailable(String),
}
