//! Search: one box. An artifact's SHA-256 (64 hex digits, `sha256:` before it or not) finds
//! the entries about it through the lookup index, a page at a time; an entry index goes to
//! that entry. The answer says what the query was taken as.

use super::entries::{entry_index, found, read_at, table, EntrySummary};
use super::{page, refuse, wants_json};
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use maud::html;
use serde::{Deserialize, Serialize};

/// Entries per page of results.
const PAGE: usize = 50;

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
    /// The results after this entry index (the `next` of the page before).
    after: Option<u64>,
}

#[derive(Serialize)]
struct Results {
    query: String,
    /// What the query was taken as: `artifact`, `index`, `nothing` (empty), or `unknown`.
    matched: &'static str,
    /// Why nothing matched, for `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// For an artifact: the entries of the log the lookup index covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    covered: Option<u64>,
    entries: Vec<EntrySummary>,
    /// The `after` of the next page, if any.
    next: Option<u64>,
}

pub(super) async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    let json = wants_json(&headers);
    answer(s, json, q).await
}

pub(super) async fn search_json(
    State(s): State<AppState>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    answer(s, true, q).await
}

async fn answer(
    s: AppState,
    json: bool,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            json,
            "expected ?q=QUERY[&after=N] (N a decimal entry index)".into(),
        );
    };
    let query = q.q.trim().to_string();
    let size = lock_read(&s.published).size;
    let mut r = Results {
        query: query.clone(),
        matched: "nothing",
        note: None,
        covered: None,
        entries: Vec::new(),
        next: None,
    };
    let hex = query
        .strip_prefix("sha256:")
        .unwrap_or(&query)
        .to_ascii_lowercase();
    // An artifact's digest, or a search term (a key's name, a vendor, a product): either is a
    // key of the lookup index.
    let digits = query.bytes().all(|b| b.is_ascii_digit());
    let key = if query.is_empty() {
        None
    } else if let Some(d) = nospy_tlog::Sha256::from_hex(&hex) {
        Some(("artifact", d))
    } else if !digits && is_term(&query) {
        Some((
            "term",
            crate::index::term(query.split('+').next().unwrap_or(&query)),
        ))
    } else {
        None
    };
    if query.is_empty() {
    } else if let Some((matched, key)) = key {
        r.matched = matched;
        (r.covered, r.next, r.entries) = match found(&s, key, q.after, PAGE, size).await {
            Ok((covered, next, entries)) => (Some(covered), next, entries),
            Err((status, why)) => return refuse(&s, status, json, why),
        };
    } else if digits {
        let i = match entry_index(&query, size) {
            Ok(i) => i,
            Err((status, why)) => return refuse(&s, status, json, why),
        };
        if !json {
            // The entry's own page is the answer.
            let mut resp = super::secured(crate::http::respond(
                &s,
                StatusCode::SEE_OTHER,
                "text/plain; charset=utf-8",
                Some("no-store"),
                format!("entry {i}\n"),
            ));
            if let Ok(v) = HeaderValue::from_str(&format!("/entries/{i}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
        r.matched = "index";
        r.entries = match read_at(&s, size, vec![i]).await {
            Ok(l) => l,
            Err(e) => return refuse(&s, StatusCode::SERVICE_UNAVAILABLE, json, e),
        };
    } else {
        r.matched = "unknown";
        r.note = Some(
            "search takes an artifact's SHA-256 (64 hex digits), an entry index, a signer's key (or its name), a vendor or a product".into(),
        );
    }
    let markup = html! {
        h1 { "Search" }
        @match r.matched {
            "nothing" => p { "Give an artifact's SHA-256, an entry index, a signer's key (or its name), a vendor or a product." },
            "unknown" => p { "Nothing found for " code { (r.query) } ": " (r.note.clone().unwrap_or_default()) "." },
            "term" => {
                p {
                    (r.entries.len()) " entries signed by, or releases of, " code { (r.query) }
                    @if let Some(c) = r.covered { " (the lookup index covers " (c) " of " (size) " entries)" }
                    "."
                }
                (table(&r.entries, "Entries found, in log order"))
                @if let Some(n) = r.next {
                    nav.pager aria-label="Pages" { a href=(format!("/search?q={}&after={n}", encode(&r.query))) { "More entries" } }
                }
            },
            _ => {
                p {
                    (r.entries.len()) " entries about the artifact " code { (hex) }
                    @if let Some(c) = r.covered { " (the lookup index covers " (c) " of " (size) " entries)" }
                    "."
                }
                (table(&r.entries, "Entries about the artifact, in log order"))
                @if let Some(n) = r.next {
                    nav.pager aria-label="Pages" { a href=(format!("/search?q={hex}&after={n}")) { "More entries" } }
                }
            }
        }
    };
    // A term search cannot take is the asker's mistake: said, with a 400.
    let status = if r.matched == "unknown" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page(&s, status, json, &r, "nospy: search", markup)
}

/// Whether `q` can be a search term: a key name, a vendor or a product (letters, digits and
/// `.-_ /`), or a verifier key (`name+hex+base64`); at most 200 bytes.
fn is_term(q: &str) -> bool {
    let word = q.split('+').next().unwrap_or(q);
    !word.is_empty()
        && q.len() <= 200
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || " .-_/".contains(c))
}

/// `q` percent-encoded for a query string.
fn encode(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
