//! The HTTP routes, and what every handler shares: responses, errors, bodies.

pub(crate) mod lookup;
mod proofs;
mod read;
mod write;

use crate::{AppState, Shared, MAX_BODY};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use lookup::get_lookup;
use proofs::{get_consistency, get_inclusion};
use read::{get_checkpoint, get_tile};
use std::time::Duration;
use write::post_add;

/// The API's routes: the log (c2sp.org/tlog-tiles), submissions, proofs, lookups, metrics.
/// (The server merges the dashboard's beside them.)
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkpoint", get(get_checkpoint))
        .route("/tile/{*path}", get(get_tile))
        .route("/add", post(post_add))
        .route("/proof/inclusion", get(get_inclusion))
        .route("/proof/consistency", get(get_consistency))
        .route("/metrics", get(get_metrics))
        .route("/lookup", get(get_lookup))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

pub(crate) fn respond(
    state: &Shared,
    status: StatusCode,
    content_type: &'static str,
    cache: Option<&'static str>,
    body: impl Into<Body>,
) -> Response<Body> {
    state.metrics.status(status.as_u16());
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = cache {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
    }
    r
}

pub(crate) fn error(
    state: &Shared,
    status: StatusCode,
    msg: impl std::fmt::Display,
) -> Response<Body> {
    respond(
        state,
        status,
        "text/plain; charset=utf-8",
        Some("no-store"),
        format!("{msg}\n"),
    )
}

pub(crate) const SHORT: &str = "public, max-age=2";
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The whole request body within 10 seconds and `max` bytes, or the status and message to answer
/// with: slow or huge uploads do not hold the server.
pub(crate) async fn read_body(
    req: axum::extract::Request,
    max: usize,
) -> Result<axum::body::Bytes, (StatusCode, String)> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        axum::body::to_bytes(req.into_body(), max),
    )
    .await
    {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long".into(),
        )),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {max} bytes"),
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

/// A body of the API's JSON types.
pub(crate) fn json_body(v: &impl serde::Serialize) -> String {
    // invariant: the API's types serialise to JSON without fail (strings, numbers, lists).
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) async fn get_metrics(State(s): State<AppState>) -> Response<Body> {
    let text = s.metrics.render();
    respond(
        &s,
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Some("no-store"),
        text,
    )
}
