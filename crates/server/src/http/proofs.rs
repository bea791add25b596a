//! `GET /proof/inclusion` and `GET /proof/consistency`, from the tiles.

use crate::http::{error, json_body, respond, SHORT};
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Response, StatusCode};
use nospy_log::TileReader;
use nospy_tlog::merkle;
use nospy_tlog::{LogIndex, TreeSize};
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct InclusionQuery {
    pub(crate) index: u64,
    pub(crate) size: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    pub(crate) from: u64,
    pub(crate) to: Option<u64>,
}

pub(crate) async fn get_inclusion(
    State(s): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "expected ?index=N[&size=M] with decimal numbers",
        );
    };
    let current = lock_read(&s.published).size;
    let size = q.size.unwrap_or(current);
    if size > current || q.index >= size {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            format!("need index < size <= {current}"),
        );
    }
    let index = q.index;
    match from_tiles(&s, current, move |r| {
        merkle::inclusion_proof(r, LogIndex(index), TreeSize(size))
    })
    .await
    {
        Ok(p) => {
            let body = json_body(&nospy_client::api::InclusionResponse {
                index: q.index,
                size,
                proof: p,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err(e) => error(&s, StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

pub(crate) async fn get_consistency(
    State(s): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "expected ?from=N[&to=M] with decimal numbers",
        );
    };
    let current = lock_read(&s.published).size;
    let to = q.to.unwrap_or(current);
    if to > current || q.from == 0 || q.from > to {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            format!("need 0 < from <= to <= {current}"),
        );
    }
    let from = q.from;
    match from_tiles(&s, current, move |r| {
        merkle::consistency_proof(r, TreeSize(from), TreeSize(to))
    })
    .await
    {
        Ok(p) => {
            let body = json_body(&nospy_client::api::ConsistencyResponse {
                from: q.from,
                to,
                proof: p,
            });
            respond(&s, StatusCode::OK, "application/json", Some(SHORT), body)
        }
        Err(e) => error(&s, StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A proof computed from the tiles of the tree of `size`, on a blocking thread: tiles not in
/// the cache are read with blocking file reads, which must not hold an async worker.
async fn from_tiles(
    s: &AppState,
    size: u64,
    proof: impl FnOnce(&TileReader<'_>) -> Result<Vec<nospy_tlog::Hash>, nospy_log::LogError>
        + Send
        + 'static,
) -> Result<Vec<nospy_tlog::Hash>, String> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let reader = TileReader::new(s.source.as_ref(), &s.cache, size);
        proof(&reader).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
