//! `POST /add`: a submission checked for its signers' roles and queued for the pipeline.

use crate::config::Role;
use crate::http::{error, json_body, read_body, respond};
use crate::pipeline::{AddRequest, Refused};
use crate::{lock_read, AppState, MAX_BODY};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Response, StatusCode};
use nospy_statement::predicate::Predicate;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub(crate) fn may_submit(role: Role, p: &Predicate) -> bool {
    matches!(
        (role, p),
        (Role::Vendor, Predicate::Release(_))
            | (Role::Vendor, Predicate::Revocation(_))
            | (Role::Evaluator, Predicate::Attestation(_))
            | (Role::Evaluator, Predicate::Revocation(_))
            | (Role::Monitor, Predicate::Evidence(_))
    )
}

pub(crate) async fn post_add(
    State(s): State<AppState>,
    req: axum::extract::Request,
) -> Response<Body> {
    let received = Instant::now();
    let body = match read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err((status, message)) => return error(&s, status, message),
    };
    // Every signature must name (by keyid) a submitter of the configuration; the sequencer then
    // checks that each verifies with that key before anything is appended (a batch at a time).
    let cfg = lock_read(&s.config).submitters.clone();
    let parsed = match nospy_statement::parse_unverified(&body, |id| {
        cfg.iter()
            .find(|sub| sub.key_text == id)
            .map(|sub| sub.key.clone())
    }) {
        Ok(x) => x,
        Err(nospy_statement::StatementError::UnknownKey(m)) => {
            return error(
                &s,
                StatusCode::FORBIDDEN,
                format!("not signed by a submitter this log admits: {m}"),
            )
        }
        Err(e) => {
            return error(
                &s,
                StatusCode::BAD_REQUEST,
                format!("not a signed nospy statement: {e}"),
            )
        }
    };
    let admitted = parsed.named.iter().any(|k| {
        cfg.iter()
            .any(|sub| &sub.key == k && may_submit(sub.role, &parsed.predicate))
    });
    if !admitted {
        return error(
            &s,
            StatusCode::FORBIDDEN,
            "not signed by a submitter this log admits for this kind of statement",
        );
    }
    // The memory it will hold until answered (the entry, the signed bytes checked, what the
    // index records: about three times its size), from the queued-memory budget: when that is
    // spent, 503 at once rather than memory without bound.
    let kib = (body.len() * 3).div_ceil(1024) as u32 + 1;
    let Ok(budget) = s.queued.clone().try_acquire_many_owned(kib) else {
        return busy(&s, "the queue of submissions is full; retry shortly");
    };
    let (tx, rx) = oneshot::channel();
    // Only what the verifier and the index need goes on: the parsed statement is dropped here,
    // on the handler's thread, not on the sequencer's.
    let req = AddRequest {
        entry: body.to_vec(),
        check: parsed.signature_check(),
        predicate_type: parsed.statement.predicate_type.clone(),
        subjects: crate::index::keys_of(&parsed),
        signers: parsed.named.iter().map(|k| k.to_string()).collect(),
        received,
        reply: tx,
        _budget: budget,
    };
    drop(parsed);
    match s.queue.try_send(req) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return busy(&s, "the sequencer is busy; retry shortly");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "the log is shutting down",
            )
        }
    }
    match rx.await {
        Ok(Ok(a)) => {
            let body = json_body(&nospy_client::api::AddResponse {
                index: a.index,
                hash: a.hash,
                duplicate: a.duplicate,
            });
            respond(
                &s,
                StatusCode::OK,
                "application/json",
                Some("no-store"),
                body,
            )
        }
        Ok(Err(Refused::Forbidden(e))) => error(&s, StatusCode::FORBIDDEN, e),
        Ok(Err(Refused::Unavailable(e))) => busy(&s, &format!("not appended: {e}")),
        Ok(Err(Refused::Failed(e))) => error(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not appended: {e}"),
        ),
        Err(_) => error(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            "the log stopped before appending",
        ),
    }
}

/// 503 with `Retry-After: 1`.
fn busy(s: &AppState, why: &str) -> Response<Body> {
    let mut r = error(s, StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
