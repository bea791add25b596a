//! A release's verdict: for an artifact, `nospy verify`'s verdict under each agreement the
//! server is configured with (`[dashboard] agreements` in serve.toml), every check with its
//! reason, drawn from this server's own published checkpoint, its lookup index and its tiles.

use super::{page, refuse, wants_json};
use crate::http::lookup::find;
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Response, StatusCode};
use maud::html;
use nospy_log::clock::Clock as _;
use nospy_policy::{Evidence, LoggedEntry, Outcome};
use serde::Serialize;

#[derive(Serialize)]
struct Verdicts {
    artifact: String,
    /// The tree size the evidence was gathered at.
    size: u64,
    /// Whether the lookup index covered the whole published log (else an absence, of a
    /// revocation say, proves nothing and the verdict says so).
    complete: bool,
    /// One per configured agreement, as `nospy verify --json` prints it.
    verdicts: Vec<serde_json::Value>,
}

/// `/verdict/<sha256>` (`.json` for JSON).
pub(super) async fn verdict(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath(digest): UrlPath<String>,
) -> Response<Body> {
    let (digest, json) = match digest.strip_suffix(".json") {
        Some(d) => (d.to_string(), true),
        None => (digest, wants_json(&headers)),
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
    let Some(artifact) = nospy_tlog::Sha256::from_hex(&hex.to_ascii_lowercase()) else {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            json,
            format!("{digest:?} is not an artifact's SHA-256 (64 hex digits)"),
        );
    };
    let agreements = lock_read(&s.config).agreements.clone();
    let (text, size) = {
        let p = lock_read(&s.published);
        (p.text.clone(), p.size)
    };
    let evidence = match gather(&s, artifact, text, size).await {
        Ok(e) => e,
        Err((status, why)) => return refuse(&s, status, json, why),
    };
    let now = nospy_log::clock::SystemClock.now();
    let verdicts: Vec<nospy_policy::Verdict> = agreements
        .iter()
        .map(|a| nospy_policy::verify(a, &artifact, &evidence, None, now))
        .collect();
    let v = Verdicts {
        artifact: artifact.to_hex(),
        size,
        complete: evidence.complete.is_some(),
        verdicts: verdicts
            .iter()
            .zip(&agreements)
            .map(|(v, a)| {
                serde_json::json!({
                    "admit": v.admit,
                    "verdict": if v.admit { "admit" } else { "deny" },
                    "artifact": v.artifact,
                    "agreement": a.name,
                    "checks": v.checks,
                })
            })
            .collect(),
    };
    let markup = html! {
        h1 { "Verdict on " code { (v.artifact) } }
        p.note {
            "As " code { "nospy verify" } " gives it, from this log's published checkpoint (size "
            (size) "). Admit firmware with " code { "nospy verify" } " on your side: this page displays."
        }
        @if !v.complete {
            p.bad { "The lookup index does not yet cover the whole log: an entry it has not indexed (a revocation, say) is not counted." }
        }
        @if agreements.is_empty() {
            p { "No agreement is configured: list agreement files under " code { "[dashboard] agreements" } " in serve.toml." }
        }
        @for (verdict, a) in verdicts.iter().zip(&agreements) {
            h2 {
                @if verdict.admit { span.ok { "ADMIT" } } @else { span.bad { "DENY" } }
                " under " (a.name)
            }
            table {
                caption.skip { "The checks under " (a.name) ", in order" }
                thead { tr { th scope="col" { "Check" } th scope="col" { "Outcome" } th scope="col" { "Reason" } } }
                tbody {
                    @for c in &verdict.checks {
                        tr {
                            td { (c.name) }
                            td {
                                @match c.outcome {
                                    Outcome::Pass => span.ok { "pass" },
                                    Outcome::Fail => span.bad { "FAIL" },
                                    Outcome::NotChecked => "not checked",
                                    Outcome::Skipped => "skipped",
                                }
                            }
                            td { (c.reason) }
                        }
                    }
                }
            }
        }
        h2 { "Check it yourself" }
        pre { "nospy verify --agreement AGREEMENT.toml --digest " (v.artifact) " --server URL-OF-THIS-LOG" }
    };
    page(
        &s,
        StatusCode::OK,
        json,
        &v,
        &format!("nospy: verdict on {}", &v.artifact[..12]),
        markup,
    )
}

/// The evidence about `artifact` under the checkpoint `text` of `size`: every entry the lookup
/// index lists about it (every page), with its inclusion proof from the tiles.
pub(super) async fn gather(
    s: &AppState,
    artifact: nospy_tlog::Sha256,
    text: String,
    size: u64,
) -> Result<Evidence, (StatusCode, String)> {
    let mut indexes = Vec::new();
    let mut after = None;
    let covered = loop {
        let (covered, page) = find(s, artifact, after, s.lookup_page).await?;
        indexes.extend(page.entries.iter().map(|e| e.index).filter(|&i| i < size));
        match page.next {
            Some(n) if after.is_none_or(|a| n > a) => after = Some(n),
            _ => break covered,
        }
    };
    let s2 = s.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let reader = nospy_log::TileReader::new(s2.source.as_ref(), &s2.cache, size);
        indexes
            .into_iter()
            .map(|i| {
                let bytes = reader.entry(i)?;
                let proof = nospy_tlog::merkle::inclusion_proof(
                    &reader,
                    nospy_tlog::LogIndex(i),
                    nospy_tlog::TreeSize(size),
                )?;
                Ok(LoggedEntry {
                    index: i,
                    bytes,
                    proof,
                    proof_checkpoint: None,
                })
            })
            .collect::<Result<Vec<_>, nospy_log::LogError>>()
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Evidence {
        checkpoint: text,
        entries,
        complete: (covered >= size).then(|| "this server's lookup index".to_string()),
        consistency: None,
    })
}
