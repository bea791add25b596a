//! The read API, exactly c2sp.org/tlog-tiles: the checkpoint and tiles, nothing beyond the
//! published checkpoint.

use crate::http::{error, respond, IMMUTABLE, SHORT};
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Response, StatusCode};
use nospy_tlog::tile::{self, TileId};

pub(crate) async fn get_checkpoint(State(s): State<AppState>) -> Response<Body> {
    let text = lock_read(&s.published).text.clone();
    respond(
        &s,
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Some(SHORT),
        text,
    )
}

pub(crate) async fn get_tile(
    State(s): State<AppState>,
    UrlPath(path): UrlPath<String>,
) -> Response<Body> {
    let full = format!("tile/{path}");
    let (id, bundle) = match TileId::parse(&full) {
        Ok(x) => x,
        Err(e) => return error(&s, StatusCode::NOT_FOUND, e),
    };
    // Only what the published tree covers: a full tile it contains, or a partial tile of a width
    // the tile has, or had, in it.
    let size = lock_read(&s.published).size;
    let covered = tile::width_in(id.level, id.index, size);
    if id.width > covered || (bundle && id.level != 0) {
        return error(
            &s,
            StatusCode::NOT_FOUND,
            format!("{full} is not in the published tree of size {size}"),
        );
    }
    let rel = if bundle { id.entries_path() } else { id.path() };
    // Files and objects are read with blocking calls: off the async workers.
    let source = s.source.clone();
    let read = tokio::task::spawn_blocking(move || source.read(&rel)).await;
    match read {
        Ok(Ok(Some(data))) => {
            let cache = if id.is_full() { IMMUTABLE } else { SHORT };
            respond(
                &s,
                StatusCode::OK,
                "application/octet-stream",
                Some(cache),
                data,
            )
        }
        // An older partial tile a log may have deleted: the client falls back to the full one.
        Ok(Ok(None)) => error(&s, StatusCode::NOT_FOUND, format!("{full} is not kept")),
        Ok(Err(e)) => error(&s, StatusCode::SERVICE_UNAVAILABLE, format!("{full}: {e}")),
        Err(e) => error(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{full}: {e}"),
        ),
    }
}
