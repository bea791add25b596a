//! The dashboard: server-rendered pages of the log for people, each also JSON for scripts.
//!
//! Every page is a GET with a stable URL and works without JavaScript; the same data is JSON
//! when the request asks for it (`Accept: application/json`) or the path ends in `.json`. No
//! external resource: one stylesheet compiled into the binary, served under a name that
//! carries its digest (so it is cached for ever and replaced on change). Every answer sends a
//! strict Content-Security-Policy (`default-src 'none'`, style from the server itself, no
//! inline script or style), `nosniff` and `no-referrer`; no route sets a cookie.
//!
//! The pages display; the command line verifies. An entry's page shows what the entry says and
//! the proof and command to check it offline, and says so.

mod entries;
mod live;
mod operator;
mod search;
mod verdict;

use crate::http::respond;
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Serialize;
use std::sync::OnceLock;

pub(crate) use entries::EntrySummary;
pub(crate) use operator::FleetCache;

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(status))
        .route("/status.json", get(status_json))
        .route("/entries", get(entries::list))
        .route("/entries.json", get(entries::list_json))
        .route("/entries/{index}", get(entries::one))
        .route("/entries/{index}/proof", get(entries::proof))
        .route("/witnesses", get(witnesses))
        .route("/witnesses.json", get(witnesses_json))
        .route("/verdict/{digest}", get(verdict::verdict))
        .route("/search", get(search::search))
        .route("/search.json", get(search::search_json))
        .route("/events", get(live::events))
        .route("/fleet", get(operator::fleet))
        .route("/fleet.json", get(operator::fleet_json))
        .route("/violations", get(operator::violations))
        .route("/violations.json", get(operator::violations_json))
        .route("/exposure", get(operator::exposure))
        .route("/exposure.json", get(operator::exposure_json))
        .route("/assets/{name}", get(asset))
        .fallback(not_found)
}

/// Any other path: a 404 page (or JSON) with the dashboard's headers.
async fn not_found(
    State(s): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let json = wants_json(&headers) || uri.path().ends_with(".json");
    refuse(
        &s,
        StatusCode::NOT_FOUND,
        json,
        format!("nothing is served at {}", uri.path()),
    )
}

const CSS: &str = include_str!("style.css");
const JS: &str = include_str!("live.js");
const ICON: &str = include_str!("icon.svg");

/// An asset's path: its name carries the first 12 hex digits of its SHA-256.
fn asset_path(name: &str, ext: &str, text: &str) -> String {
    let hex = nospy_tlog::Sha256::of(text.as_bytes()).to_hex();
    format!("/assets/{name}-{}.{ext}", &hex[..12])
}

fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| asset_path("style", "css", CSS))
}

fn icon_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| asset_path("icon", "svg", ICON))
}

fn js_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| asset_path("live", "js", JS))
}

/// The policy every dashboard answer carries: nothing but what the server itself serves, no
/// inline script or style, no framing, forms only to the server.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the dashboard's security headers to `r`.
fn secured(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Whether the request asks for JSON.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .map(|p| p.split(';').next().unwrap_or("").trim())
                .any(|t| t == "application/json")
        })
}

/// A page: `data` as JSON when `json`, else `markup` in the layout.
fn page(
    s: &AppState,
    status: StatusCode,
    json: bool,
    data: &impl Serialize,
    title: &str,
    markup: Markup,
) -> Response<Body> {
    let r = if json {
        respond(
            s,
            status,
            "application/json",
            Some("no-store"),
            crate::http::json_body(data),
        )
    } else {
        respond(
            s,
            status,
            "text/html; charset=utf-8",
            Some("no-store"),
            layout(title, lock_read(&s.config).operator.is_some(), markup).into_string(),
        )
    };
    secured(r)
}

/// A refusal (a page that is not there, an index that is not a number), as a page or JSON.
fn refuse(s: &AppState, status: StatusCode, json: bool, why: String) -> Response<Body> {
    #[derive(Serialize)]
    struct Refusal<'a> {
        error: &'a str,
    }
    let markup = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        p { (why) }
    };
    page(
        s,
        status,
        json,
        &Refusal { error: &why },
        "nospy: error",
        markup,
    )
}

/// The frame of every page: landmarks, a skip link, the navigation (with the operator pages
/// when an inventory is configured).
fn layout(title: &str, operator: bool, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(css_path());
                link rel="icon" type="image/svg+xml" href=(icon_path());
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header {
                    a.brand href="/" { "nospy" }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/" { "Status" } }
                            li { a href="/entries" { "Entries" } }
                            li { a href="/witnesses" { "Witnesses" } }
                            @if operator {
                                li { a href="/fleet" { "Fleet" } }
                                li { a href="/violations" { "Violations" } }
                                li { a href="/exposure" { "Exposure" } }
                            }
                        }
                    }
                    form role="search" action="/search" method="get" {
                        label for="q" { "Artifact SHA-256, entry index, key, vendor or product" }
                        " "
                        input #q name="q" type="search" size="40";
                        " "
                        button type="submit" { "Search" }
                    }
                }
                main #main { (content) }
                footer {
                    "This page displays what the log holds; "
                    code { "nospy verify" }
                    " checks it. Every page is also JSON ("
                    code { "Accept: application/json" }
                    ")."
                }
            }
        }
    }
}

async fn asset(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Response<Body> {
    let path = format!("/assets/{name}");
    let (kind, text) = if path == css_path() {
        ("text/css; charset=utf-8", CSS)
    } else if path == js_path() {
        ("text/javascript; charset=utf-8", JS)
    } else if path == icon_path() {
        ("image/svg+xml", ICON)
    } else {
        return refuse(
            &s,
            StatusCode::NOT_FOUND,
            wants_json(&headers),
            format!("no asset {name:?}"),
        );
    };
    secured(respond(
        &s,
        StatusCode::OK,
        kind,
        Some(crate::http::IMMUTABLE),
        text,
    ))
}

/// The status page's data.
#[derive(Serialize)]
struct Status {
    origin: String,
    size: u64,
    root: String,
    /// Cosignatures on the published checkpoint (signatures besides the log's).
    cosignatures: usize,
    witnesses: usize,
    witness_quorum: usize,
    /// Entries the lookup index covers.
    indexed: u64,
    checkpoint: String,
    /// Seconds since this server published the checkpoint.
    published_seconds_ago: u64,
    /// Growth of the log and submissions this server acknowledged, per second over about the
    /// last minute (none in the server's first second).
    rates: Option<crate::metrics::RateReading>,
    /// The newest entries, newest first.
    recent: Vec<EntrySummary>,
}

/// How many of the newest entries the status page shows.
const RECENT: u64 = 10;

async fn status(State(s): State<AppState>, headers: HeaderMap) -> Response<Body> {
    let json = wants_json(&headers);
    status_page(s, json).await
}

async fn status_json(State(s): State<AppState>) -> Response<Body> {
    status_page(s, true).await
}

async fn status_page(s: AppState, json: bool) -> Response<Body> {
    let (text, size, root, signatures, at) = {
        let p = lock_read(&s.published);
        (p.text.clone(), p.size, p.root, p.signatures, p.at)
    };
    let (witnesses, witness_quorum) = {
        let c = lock_read(&s.config);
        (c.witnesses.len(), c.witness_quorum)
    };
    let origin = text.lines().next().unwrap_or("").to_string();
    let recent = match entries::read(&s, size, size.saturating_sub(RECENT)..size).await {
        Ok(mut list) => {
            list.reverse();
            list
        }
        Err(e) => return refuse(&s, StatusCode::SERVICE_UNAVAILABLE, json, e),
    };
    let st = Status {
        origin,
        size,
        root: root.to_base64(),
        cosignatures: signatures.saturating_sub(1),
        witnesses,
        witness_quorum,
        indexed: s
            .indexed
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(size),
        checkpoint: text,
        published_seconds_ago: at.elapsed().as_secs(),
        rates: live::figures(&s.shared).rates,
        recent,
    };
    let growth = live::per_second(st.rates.map(|r| r.growth_per_s));
    let submissions = live::per_second(st.rates.map(|r| r.submissions_per_s));
    let markup = html! {
        h1 { "Log " code { (st.origin) } }
        dl {
            dt { "Entries" } dd data-live="size" { (st.size) }
            dt { "Root" } dd.hash data-live="root" { (st.root) }
            dt { "Published" } dd { (st.published_seconds_ago) " s ago (when this page was made)" }
            dt { "Cosignatures" }
            dd {
                span data-live="cosignatures" { (st.cosignatures) } " on the published checkpoint; "
                @if st.witnesses == 0 {
                    "no witness configured"
                } @else {
                    (st.witnesses) " witnesses configured, quorum " (st.witness_quorum)
                    @if st.cosignatures < st.witness_quorum {
                        " " span.bad { "(below the quorum)" }
                    }
                }
            }
            dt { "Lookup index" } dd { "covers " span data-live="indexed" { (st.indexed) } " of the entries" }
            dt { "Growth (entries a second, over about the last minute)" } dd { span data-live="growth" { (growth) } }
            dt { "Submissions acknowledged by this server (a second, duplicates included)" } dd { span data-live="submissions" { (submissions) } }
        }
        p.note { "The figures above follow the log as it grows (with JavaScript; without it, reload the page)." }
        script src=(js_path()) defer {}
        h2 { "The newest entries" }
        (entries::table(&st.recent, "The newest entries of the log"))
        p { a href="/entries" { "All entries" } }
        h2 { "The published checkpoint" }
        pre { (st.checkpoint) }
    };
    page(&s, StatusCode::OK, json, &st, "nospy: status", markup)
}

/// One configured witness as the witnesses page shows it.
#[derive(Serialize)]
struct WitnessRow {
    name: String,
    url: String,
    key: String,
    /// The largest size it cosigned (0: none yet since the server started).
    cosigned_size: u64,
    /// Seconds since it last cosigned (none: not since the server started).
    seconds_since_cosigned: Option<u64>,
    /// Entries the published log is ahead of what it cosigned.
    lag: u64,
    cosigned: u64,
    failures: u64,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct WitnessPage {
    size: u64,
    quorum: usize,
    /// Cosignatures on the published checkpoint.
    cosignatures: usize,
    witnesses: Vec<WitnessRow>,
}

async fn witnesses(State(s): State<AppState>, headers: HeaderMap) -> Response<Body> {
    let json = wants_json(&headers);
    witness_page(s, json)
}

async fn witnesses_json(State(s): State<AppState>) -> Response<Body> {
    witness_page(s, true)
}

fn witness_page(s: AppState, json: bool) -> Response<Body> {
    let (size, signatures) = {
        let p = lock_read(&s.published);
        (p.size, p.signatures)
    };
    let cfg = lock_read(&s.config).clone();
    let seen = s
        .witnesses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let rows: Vec<WitnessRow> = cfg
        .witnesses
        .iter()
        .map(|w| {
            let v = seen.get(w.key.name()).cloned().unwrap_or_default();
            WitnessRow {
                name: w.key.name().to_string(),
                url: w.url.clone(),
                key: w.key.to_string(),
                cosigned_size: v.cosigned_size,
                seconds_since_cosigned: v.cosigned_at.map(|t| t.elapsed().as_secs()),
                lag: size.saturating_sub(v.cosigned_size),
                cosigned: v.cosigned,
                failures: v.failures,
                last_error: v.last_error,
            }
        })
        .collect();
    let p = WitnessPage {
        size,
        quorum: cfg.witness_quorum,
        cosignatures: signatures.saturating_sub(1),
        witnesses: rows,
    };
    let markup = html! {
        h1 { "Witnesses" }
        p {
            "The published checkpoint (size " (p.size) ") carries " (p.cosignatures)
            " cosignatures; the quorum is " (p.quorum) "."
            @if p.cosignatures < p.quorum { " " span.bad { "Below the quorum." } }
        }
        @if p.witnesses.is_empty() {
            p.note { "No witness is configured (serve.toml, [witnesses])." }
        } @else {
            table {
                caption.skip { "Each configured witness" }
                thead { tr {
                    th scope="col" { "Witness" } th scope="col" { "Cosigned size" }
                    th scope="col" { "Lag (entries)" } th scope="col" { "Last cosigned" }
                    th scope="col" { "Rounds cosigned / failed" } th scope="col" { "Last failure" }
                } }
                tbody {
                    @for w in &p.witnesses {
                        tr {
                            td { (w.name) br; code { (w.url) } }
                            td { (w.cosigned_size) }
                            td { @if w.lag > 0 { span.bad { (w.lag) } } @else { span.ok { "0" } } }
                            td { @match w.seconds_since_cosigned { Some(t) => { (t) " s ago" }, None => "not since the server started" } }
                            td { (w.cosigned) " / " (w.failures) }
                            td { (w.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    page(&s, StatusCode::OK, json, &p, "nospy: witnesses", markup)
}
