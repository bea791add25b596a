//! `GET /lookup?digest=[&after=]`: the entries the lookup index holds about an artifact, a
//! page at a time (`next` names where the following page starts).

use crate::http::{error, json_body, respond, SHORT};
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Response, StatusCode};
use serde::Deserialize;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Deserialize)]
pub(crate) struct LookupQuery {
    pub(crate) digest: String,
    pub(crate) after: Option<u64>,
}

pub(crate) async fn get_lookup(
    State(s): State<AppState>,
    q: Result<Query<LookupQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "expected ?digest=<sha256 hex>[&after=<index>]",
        );
    };
    let hex = q.digest.strip_prefix("sha256:").unwrap_or(&q.digest);
    let Some(d) = nospy_tlog::Sha256::from_hex(hex) else {
        return error(&s, StatusCode::BAD_REQUEST, "digest is not 64 hex digits");
    };
    match find(&s, d, q.after, s.lookup_page).await {
        Ok((size, page)) => {
            let body = json_body(&nospy_client::api::LookupResponse {
                digest: d,
                size,
                entries: page.entries,
                next: page.next,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err((status, e)) => error(&s, status, e),
    }
}

/// One page (at most `page` entries after `after`) of the entries about `d` that the lookup
/// index holds, and how many entries of the log it covered; or the status and why not.
pub(crate) async fn find(
    s: &AppState,
    d: nospy_tlog::Sha256,
    after: Option<u64>,
    page: usize,
) -> Result<(u64, crate::index::Page), (StatusCode, String)> {
    // The index follows the log on its own thread: the answer covers what it has indexed.
    let size = lock_read(&s.published).size.min(s.indexed.load(Relaxed));
    let found = match &s.index {
        // SQLite blocks: off the async workers.
        crate::Lookup::Sqlite(i) => {
            let i = i.clone();
            tokio::task::spawn_blocking(move || {
                i.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .lookup(&d, size, after, page)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
        }
        crate::Lookup::Postgres(i) => Ok(i
            .lookup(&d, size, after, page)
            .await
            .map_err(|e| e.to_string())),
    };
    match found {
        Ok(Ok(page)) => Ok((size, page)),
        Ok(Err(e)) => Err((StatusCode::SERVICE_UNAVAILABLE, e)),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}
