//! Live updates: `GET /events`, server-sent events (`event: status`) carrying the status
//! page's figures each time the server publishes a checkpoint, its index grows or a witnessing
//! round ends, and every 15 s besides. At most [`crate::MAX_LIVE_STREAMS`] at once (each holds
//! a connection); every stream ends when the server stops.

use crate::{lock_read, AppState, Shared};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse as _;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The figures an event carries (the status page marks them `data-live`).
#[derive(Serialize)]
pub(super) struct Figures {
    pub(super) size: u64,
    pub(super) root: String,
    pub(super) cosignatures: usize,
    pub(super) indexed: u64,
    /// Growth and submissions per second, in words (`data-live` replaces text).
    pub(super) growth: String,
    pub(super) submissions: String,
    /// The same as numbers (none in the first second after the server started).
    pub(super) rates: Option<crate::metrics::RateReading>,
}

/// A rate per second as the page shows it.
pub(super) fn per_second(r: Option<f64>) -> String {
    match r {
        None => "not measured yet".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

pub(super) fn figures(s: &Shared) -> Figures {
    let p = lock_read(&s.published);
    let rates = s
        .metrics
        .rates
        .observe(p.size, s.metrics.append_latency.count());
    Figures {
        growth: per_second(rates.map(|r| r.growth_per_s)),
        submissions: per_second(rates.map(|r| r.submissions_per_s)),
        rates,
        size: p.size,
        root: p.root.to_base64(),
        cosignatures: p.signatures.saturating_sub(1),
        indexed: s
            .indexed
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(p.size),
    }
}

pub(super) async fn events(State(s): State<AppState>) -> Response<Body> {
    let Ok(permit) = s.live.clone().try_acquire_owned() else {
        return super::secured(crate::http::error(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "already {} live streams open: the page works without one",
                crate::MAX_LIVE_STREAMS
            ),
        ));
    };
    s.metrics.status(200);
    // The stream holds the shared state, not the handlers' (which hold the submission queue's
    // sender: a stream must not keep the queue open once the server stops).
    let shared: Arc<Shared> = s.shared.clone();
    let changes = shared.progress.subscribe();
    let stopping = shared.stopping.subscribe();
    let stream = futures_util::stream::unfold(
        (shared, changes, stopping, permit, true),
        |(shared, mut changes, mut stopping, permit, first)| async move {
            if *stopping.borrow() {
                return None;
            }
            if !first {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = stopping.changed() => return None,
                }
            }
            let data = crate::http::json_body(&figures(&shared));
            let event = Event::default().event("status").data(data);
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (shared, changes, stopping, permit, false),
            ))
        },
    );
    super::secured(Sse::new(stream).into_response())
}
