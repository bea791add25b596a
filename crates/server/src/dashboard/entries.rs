//! The entries: a page of them, newest first, and one entry decoded with its proof.

use super::{page, refuse, wants_json, Markup};
use crate::http::{respond, SHORT};
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use maud::html;
use nospy_statement::predicate::Predicate;
use serde::{Deserialize, Serialize};

/// Entries per page.
const PAGE: u64 = 50;

/// One entry as the pages show it.
#[derive(Serialize, Clone)]
pub(crate) struct EntrySummary {
    pub(crate) index: u64,
    pub(crate) leaf_hash: String,
    /// `release`, `attestation`, `revocation`, `evidence`, or `other` (not a nospy statement).
    pub(crate) kind: &'static str,
    /// One line on what it says.
    pub(crate) about: String,
    /// Its subjects: name and SHA-256.
    pub(crate) subjects: Vec<Subject>,
    /// The key ids its signatures name (unauthenticated hints).
    pub(crate) signers: Vec<String>,
}

/// A subject of a statement.
#[derive(Serialize, Clone)]
pub(crate) struct Subject {
    name: Option<String>,
    sha256: Option<String>,
}

/// An entry opened once: its summary, its statement as JSON and its predicate (none when it is
/// not a nospy statement).
fn summarize(
    index: u64,
    bytes: &[u8],
) -> (EntrySummary, Option<serde_json::Value>, Option<Predicate>) {
    let leaf_hash = nospy_tlog::hash::leaf_hash(bytes).to_hex();
    match nospy_statement::inspect(bytes) {
        Ok((o, _)) => {
            let (kind, about) = match &o.predicate {
                Predicate::Release(r) => (
                    "release",
                    format!(
                        "{} {} {} (source {})",
                        r.vendor, r.product, r.version, r.source.commit
                    ),
                ),
                Predicate::Attestation(a) => (
                    "attestation",
                    format!(
                        "{:?} {:?} of release entry {} of {}",
                        a.kind, a.result, a.release.index, a.release.log
                    ),
                ),
                Predicate::Revocation(r) => (
                    "revocation",
                    format!("effective {}: {}", r.effective, r.reason),
                ),
                Predicate::Evidence(e) => (
                    "evidence",
                    format!(
                        "device {}: {} flow groups not allowed, {} .. {}",
                        e.device,
                        e.flows.len(),
                        e.window.start,
                        e.window.end
                    ),
                ),
            };
            let statement = serde_json::from_slice(&o.envelope.payload).ok();
            (
                EntrySummary {
                    index,
                    leaf_hash,
                    kind,
                    about,
                    subjects: o
                        .statement
                        .subject
                        .iter()
                        .map(|d| Subject {
                            name: d.name.clone(),
                            sha256: d
                                .digest
                                .as_ref()
                                .and_then(|s| s.get_sha256())
                                .map(|h| h.to_hex()),
                        })
                        .collect(),
                    signers: o
                        .envelope
                        .signatures
                        .iter()
                        .map(|s| s.keyid.clone().unwrap_or_default())
                        .collect(),
                },
                statement,
                Some(o.predicate),
            )
        }
        Err(e) => (
            EntrySummary {
                index,
                leaf_hash,
                kind: "other",
                about: format!("not a nospy statement: {e}"),
                subjects: Vec::new(),
                signers: Vec::new(),
            },
            None,
            None,
        ),
    }
}

/// The entries of `range` in the tree of `size`, read from the entry bundles (off the async
/// workers: reads block).
pub(super) async fn read(
    s: &AppState,
    size: u64,
    range: std::ops::Range<u64>,
) -> Result<Vec<EntrySummary>, String> {
    Ok(read_raw(s, size, range)
        .await?
        .into_iter()
        .map(|(i, b)| summarize(i, &b).0)
        .collect())
}

async fn read_raw(
    s: &AppState,
    size: u64,
    range: std::ops::Range<u64>,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let reader = nospy_log::TileReader::new(s.source.as_ref(), &s.cache, size);
        let mut out = Vec::new();
        let width = nospy_tlog::tile::TILE_WIDTH as u64;
        let mut at = range.start;
        while at < range.end.min(size) {
            let bundle = reader.bundle(at / width).map_err(|e| e.to_string())?;
            let first = at / width * width;
            for (k, e) in bundle.into_iter().enumerate() {
                let i = first + k as u64;
                if i >= at && i < range.end {
                    out.push((i, e));
                }
            }
            at = first + width;
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The entries at `indexes` (each below `size`), in that order.
pub(super) async fn read_at(
    s: &AppState,
    size: u64,
    indexes: Vec<u64>,
) -> Result<Vec<EntrySummary>, String> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let reader = nospy_log::TileReader::new(s.source.as_ref(), &s.cache, size);
        let width = nospy_tlog::tile::TILE_WIDTH as u64;
        let mut held: Option<(u64, Vec<Vec<u8>>)> = None;
        let mut out = Vec::with_capacity(indexes.len());
        for i in indexes.into_iter().filter(|&i| i < size) {
            let b = i / width;
            if held.as_ref().is_none_or(|h| h.0 != b) {
                held = Some((b, reader.bundle(b).map_err(|e| e.to_string())?));
            }
            let bytes = held
                .as_ref()
                .and_then(|h| h.1.get((i % width) as usize))
                .ok_or_else(|| format!("entry {i} is not in its bundle"))?;
            out.push(summarize(i, bytes).0);
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A table of entries, with its caption.
pub(super) fn table(list: &[EntrySummary], caption: &str) -> Markup {
    html! {
        @if list.is_empty() {
            p.note { "No entries." }
        } @else {
            table {
                caption.skip { (caption) }
                thead { tr { th scope="col" { "Index" } th scope="col" { "Kind" } th scope="col" { "What it says" } th scope="col" { "Subject" } } }
                tbody {
                    @for e in list {
                        tr {
                            td { a href=(format!("/entries/{}", e.index)) { (e.index) } }
                            td { (e.kind) }
                            td { (e.about) }
                            td.hash {
                                @for sub in &e.subjects {
                                    @if let Some(n) = &sub.name { (n) ": " }
                                    @match &sub.sha256 {
                                        Some(h) => a href=(format!("/verdict/{h}")) title="The verdict under the configured agreements" { (h) },
                                        None => "(no sha256)",
                                    }
                                    br;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// Show the entries before this index (default: the newest).
    before: Option<u64>,
}

#[derive(Serialize)]
struct EntryList {
    size: u64,
    /// The entries shown, newest first.
    entries: Vec<EntrySummary>,
    /// The `before` of the next (older) page, if any.
    next: Option<u64>,
}

pub(super) async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    let json = wants_json(&headers);
    list_page(s, json, q).await
}

pub(super) async fn list_json(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    list_page(s, true, q).await
}

async fn list_page(
    s: AppState,
    json: bool,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            json,
            "expected ?before=N with a decimal number".into(),
        );
    };
    let size = lock_read(&s.published).size;
    let end = q.before.unwrap_or(size).min(size);
    let start = end.saturating_sub(PAGE);
    let mut entries = match read(&s, size, start..end).await {
        Ok(l) => l,
        Err(e) => return refuse(&s, StatusCode::SERVICE_UNAVAILABLE, json, e),
    };
    entries.reverse();
    let l = EntryList {
        size,
        entries,
        next: (start > 0).then_some(start),
    };
    let markup = html! {
        h1 { "Entries" }
        p { "The log holds " (l.size) " entries. " @if end < size { a href="/entries" { "The newest" } } }
        (table(&l.entries, "Entries, newest first"))
        @if let Some(n) = l.next {
            nav.pager aria-label="Pages" { a href=(format!("/entries?before={n}")) { "Older entries" } }
        }
    };
    page(&s, StatusCode::OK, json, &l, "nospy: entries", markup)
}

#[derive(Serialize)]
struct EntryPage {
    #[serde(flatten)]
    summary: EntrySummary,
    /// The tree size the page was made at (its proof is against that checkpoint).
    size: u64,
    /// The signed statement as JSON, if the entry is one.
    statement: Option<serde_json::Value>,
    /// The c2sp.org/tlog-proof of the entry, to download.
    proof: String,
    /// Who each signature's key is: its part in each configured agreement, and as a submitter
    /// of this log (from the key ids the envelope names: the page does not verify them).
    signers: Vec<SignerRoles>,
    /// A release's manifest rules, one line each.
    manifest: Vec<ManifestRow>,
    /// Evidence's device, window and flows not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<nospy_statement::predicate::Evidence>,
    /// Evidence verified under each configured agreement with `[monitors]`, as `nospy evidence
    /// verify` does from this log (without a capture).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    verified: Vec<Verified>,
    /// Other entries about the same artifact (the first subject), from the lookup index.
    related: Vec<EntrySummary>,
    /// Whether there are more of those than listed (the search page lists them all).
    related_more: bool,
}

/// Evidence verified under one agreement.
#[derive(Serialize)]
struct Verified {
    agreement: String,
    #[serde(flatten)]
    verdict: nospy_policy::breach::EvidenceVerdict,
}

/// Evidence entry `index` about `firmware` verified under every configured agreement that
/// trusts monitors, from this log's published checkpoint (`text`, of `size`): the entry and the
/// release it names, with their proofs, gathered as the verdict page gathers them.
async fn verify_here(
    s: &AppState,
    index: u64,
    firmware: nospy_tlog::Sha256,
    named: Option<u64>,
    text: String,
    size: u64,
) -> Result<Vec<Verified>, (StatusCode, String)> {
    use nospy_log::clock::Clock as _;
    let agreements: Vec<_> = lock_read(&s.config)
        .agreements
        .iter()
        .filter(|a| a.monitors.quorum > 0)
        .cloned()
        .collect();
    if agreements.is_empty() {
        return Ok(Vec::new());
    }
    let ev = super::verdict::gather(s, firmware, text, size).await?;
    let pick = |i: Option<u64>| ev.entries.iter().find(|e| Some(e.index) == i).cloned();
    let Some(evidence) = pick(Some(index)) else {
        return Ok(Vec::new());
    };
    let case = nospy_policy::breach::Case {
        checkpoint: ev.checkpoint.clone(),
        evidence,
        release: pick(named),
    };
    let now = nospy_log::clock::SystemClock.now();
    Ok(agreements
        .iter()
        .map(|a| Verified {
            agreement: a.name.clone(),
            verdict: nospy_policy::breach::verify_evidence(a, &case, now),
        })
        .collect())
}

/// A signer and what it is.
#[derive(Serialize)]
struct SignerRoles {
    key: String,
    roles: Vec<String>,
}

/// One rule of a release's manifest.
#[derive(Serialize)]
struct ManifestRow {
    direction: String,
    peer: String,
    protocol: String,
    ports: String,
    device_ports: String,
    initiated_by: String,
}

/// Related entries listed on an entry's page, at most.
const RELATED: usize = 20;

/// A serde enum's word (`from-device`, `peer`).
fn word(v: &impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What each key id is, under the configured agreements and as a submitter.
fn roles(s: &AppState, keyids: &[String]) -> Vec<SignerRoles> {
    let cfg = lock_read(&s.config);
    keyids
        .iter()
        .map(|k| {
            let mut roles = Vec::new();
            if let Ok(key) = nospy_tlog::note::VerifierKey::parse(k) {
                let text = key.to_string();
                let same = |c: &nospy_tlog::note::VerifierKey| c.to_string() == text;
                for a in &cfg.agreements {
                    for v in a.vendors.iter().filter(|v| v.keys.iter().any(same)) {
                        roles.push(format!("vendor {} under {}", v.name, a.name));
                    }
                    for e in a.evaluators.iter().filter(|e| e.keys.iter().any(same)) {
                        roles.push(format!("evaluator {} under {}", e.organisation, a.name));
                    }
                }
                for sub in cfg.submitters.iter().filter(|x| x.key_text == text) {
                    roles.push(format!("{} submitter of this log", sub.role.as_str()));
                }
            }
            SignerRoles {
                key: k.clone(),
                roles,
            }
        })
        .collect()
}

/// `/entries/N` (`.json` for JSON).
pub(super) async fn one(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath(index): UrlPath<String>,
) -> Response<Body> {
    let (index, json) = match index.strip_suffix(".json") {
        Some(i) => (i.to_string(), true),
        None => (index, wants_json(&headers)),
    };
    let size = lock_read(&s.published).size;
    let i = match entry_index(&index, size) {
        Ok(i) => i,
        Err((status, why)) => return refuse(&s, status, json, why),
    };
    let raw = match read_raw(&s, size, i..i + 1).await {
        Ok(mut l) if l.len() == 1 => l.remove(0).1,
        Ok(_) => {
            return refuse(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                json,
                format!("entry {i} not read"),
            )
        }
        Err(e) => return refuse(&s, StatusCode::SERVICE_UNAVAILABLE, json, e),
    };
    let (summary, statement, predicate) = summarize(i, &raw);
    let mut evidence = None;
    let manifest = match predicate {
        Some(Predicate::Evidence(e)) => {
            evidence = Some(e);
            Vec::new()
        }
        Some(Predicate::Release(r)) => r
            .manifest
            .allow
            .iter()
            .map(|r| ManifestRow {
                direction: word(&r.direction),
                peer: r.peer.to_string(),
                protocol: r.protocol.to_string(),
                ports: r.ports.to_string(),
                device_ports: r.device_ports.to_string(),
                initiated_by: r.initiated_by.as_ref().map(word).unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let first = summary.subjects.iter().find_map(|s| s.sha256.clone());
    let (mut related, mut related_more) = (Vec::new(), false);
    if let Some(d) = first.as_deref().and_then(nospy_tlog::Sha256::from_hex) {
        // One more than listed (this entry is among them), to know whether there are more.
        let (_, next, mut others) = match found(&s, d, None, RELATED + 2, size).await {
            Ok(x) => x,
            Err((status, why)) => return refuse(&s, status, json, why),
        };
        others.retain(|e| e.index != i);
        related_more = others.len() > RELATED || next.is_some();
        others.truncate(RELATED);
        related = others;
    }
    let mut verified = Vec::new();
    if let (Some(e), Some(d)) = (
        &evidence,
        first.as_deref().and_then(nospy_tlog::Sha256::from_hex),
    ) {
        let text = lock_read(&s.published).text.clone();
        let named = e.release.as_ref().map(|r| r.index);
        verified = match verify_here(&s, i, d, named, text, size).await {
            Ok(v) => v,
            Err((status, why)) => return refuse(&s, status, json, why),
        };
    }
    let signers = roles(&s, &summary.signers);
    let p = EntryPage {
        summary,
        size,
        statement,
        proof: format!("/entries/{i}/proof"),
        signers,
        manifest,
        evidence,
        verified,
        related,
        related_more,
    };
    let subject = first.unwrap_or_else(|| "SHA256".into());
    let markup = html! {
        h1 { "Entry " (i) }
        p.note {
            "This page displays the entry; it does not verify it. Check it offline with the proof below, or under your agreement with "
            code { "nospy verify" } "."
        }
        dl {
            dt { "Kind" } dd { (p.summary.kind) }
            dt { "What it says" } dd { (p.summary.about) }
            dt { "Leaf hash" } dd.hash { (p.summary.leaf_hash) }
            dt { "Signatures (key ids as the envelope names them, unauthenticated)" }
            dd {
                @for k in &p.signers {
                    code { (k.key) }
                    @if k.roles.is_empty() { " (not a key of any configured agreement)" } @else { ": " (k.roles.join("; ")) }
                    br;
                }
            }
        }
        h2 { "Subjects" }
        (table(std::slice::from_ref(&p.summary), "This entry"))
        @if !p.manifest.is_empty() {
            h2 #manifest { "Its manifest: whom the device may talk to" }
            table {
                caption.skip { "The rules of the release's behaviour manifest" }
                thead { tr {
                    th scope="col" { "Direction" } th scope="col" { "Peer" } th scope="col" { "Protocol" }
                    th scope="col" { "Peer ports" } th scope="col" { "Device ports" } th scope="col" { "Opened by" }
                } }
                tbody {
                    @for r in &p.manifest {
                        tr {
                            td { (r.direction) } td { (r.peer) } td { (r.protocol) }
                            td { (r.ports) } td { (r.device_ports) } td { (r.initiated_by) }
                        }
                    }
                }
            }
        }
        @if let Some(e) = &p.evidence {
            h2 #flows { "What the monitor saw: flows the manifest does not allow" }
            p {
                "Device " (e.device) ", " (e.window.start) " to " (e.window.end)
                @if let Some(m) = &e.manifest { "; judged against " (m) }
                "."
            }
            (flows_table(&e.flows, "The flows this evidence records"))
            @for v in &p.verified {
                h3 {
                    @if v.verdict.holds { span.ok { "HOLDS" } } @else { span.bad { "FAILS" } }
                    " under " (v.agreement)
                }
                table {
                    caption.skip { "The evidence checks under " (v.agreement) ", in order" }
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Outcome" } th scope="col" { "Reason" } } }
                    tbody {
                        @for c in &v.verdict.checks {
                            tr {
                                td { (c.name.as_str()) }
                                td {
                                    @match c.pass {
                                        Some(true) => span.ok { "pass" },
                                        Some(false) => span.bad { "FAIL" },
                                        None => "not checked",
                                    }
                                }
                                td { (c.reason) }
                            }
                        }
                    }
                }
            }
        }
        h2 #related { "Other entries about this artifact" }
        @if p.related.is_empty() {
            p { "None." }
        } @else {
            (table(&p.related, "Other entries about the same artifact"))
        }
        @if p.related_more {
            p { a href=(format!("/search?q={subject}")) { "All entries about it" } }
        }
        h2 { "Check it" }
        p { a href=(p.proof) download=(format!("entry-{i}.tlog-proof")) { "Inclusion proof (c2sp.org/tlog-proof)" } " at tree size " (size) "." }
        pre { "nospy verify --agreement AGREEMENT.toml --digest " (subject) " --server URL-OF-THIS-LOG" }
        @if let Some(st) = &p.statement {
            h2 { "The signed statement" }
            pre { (serde_json::to_string_pretty(st).unwrap_or_default()) }
        }
    };
    page(
        &s,
        StatusCode::OK,
        json,
        &p,
        &format!("nospy: entry {i}"),
        markup,
    )
}

/// The entries the lookup index files under `key` (an artifact's SHA-256 or a search term),
/// after index `after`, at most `limit`, read from the tiles of the tree of `size`: how far the
/// index covers, where the next page starts, the entries.
pub(super) async fn found(
    s: &AppState,
    key: nospy_tlog::Sha256,
    after: Option<u64>,
    limit: usize,
    size: u64,
) -> Result<(u64, Option<u64>, Vec<EntrySummary>), (StatusCode, String)> {
    let (covered, page) = crate::http::lookup::find(s, key, after, limit).await?;
    let indexes = page.entries.iter().map(|e| e.index).collect();
    let entries = read_at(s, size, indexes)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok((covered, page.next, entries))
}

/// An evidence statement's flows (those its device's manifest does not allow) as a table.
pub(super) fn flows_table(
    flows: &[nospy_statement::predicate::FlowViolation],
    caption: &str,
) -> Markup {
    html! {
        table {
            caption.skip { (caption) }
            thead { tr {
                th scope="col" { "Direction" } th scope="col" { "Peer" } th scope="col" { "Protocol" }
                th scope="col" { "Port" } th scope="col" { "Flows" } th scope="col" { "Packets" }
                th scope="col" { "Bytes" } th scope="col" { "First seen" } th scope="col" { "Last seen" }
                th scope="col" { "Why not allowed" }
            } }
            tbody {
                @for f in flows {
                    tr {
                        td { (f.direction) } td { (f.peer) } td { (f.protocol) } td.num { (f.port) }
                        td.num { (f.flows) } td.num { (f.packets) } td.num { (f.bytes) }
                        td { (f.first_seen) } td { (f.last_seen) }
                        // Evidence of the first version gives no reason.
                        td { (f.why.map_or("not stated (evidence v1)", |w| w.explain())) }
                    }
                }
            }
        }
    }
}

/// An entry index from the URL, within the published tree.
pub(super) fn entry_index(s: &str, size: u64) -> Result<u64, (StatusCode, String)> {
    let i: u64 = nospy_tlog::checkpoint::parse_decimal(s).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!("{s:?} is not an entry index (a decimal number)"),
        )
    })?;
    if i >= size {
        return Err((
            StatusCode::NOT_FOUND,
            format!("entry {i} is beyond the published tree of size {size}"),
        ));
    }
    Ok(i)
}

/// `/entries/N/proof`: the entry's c2sp.org/tlog-proof against the published checkpoint.
pub(super) async fn proof(
    State(s): State<AppState>,
    UrlPath(index): UrlPath<String>,
) -> Response<Body> {
    let (text, size) = {
        let p = lock_read(&s.published);
        (p.text.clone(), p.size)
    };
    let i = match entry_index(&index, size) {
        Ok(i) => i,
        Err((status, why)) => return super::secured(crate::http::error(&s, status, why)),
    };
    let s2 = s.clone();
    let proof = tokio::task::spawn_blocking(move || {
        let reader = nospy_log::TileReader::new(s2.source.as_ref(), &s2.cache, size);
        nospy_tlog::merkle::inclusion_proof(
            &reader,
            nospy_tlog::LogIndex(i),
            nospy_tlog::TreeSize(size),
        )
        .map_err(|e| e.to_string())
    })
    .await;
    match proof {
        Ok(Ok(proof)) => {
            let body = nospy_tlog::checkpoint::TlogProof {
                extra: None,
                index: i,
                proof,
                checkpoint: text,
            }
            .to_text();
            super::secured(respond(
                &s,
                StatusCode::OK,
                "text/plain; charset=utf-8",
                Some(SHORT),
                body,
            ))
        }
        Ok(Err(e)) => super::secured(crate::http::error(&s, StatusCode::SERVICE_UNAVAILABLE, e)),
        Err(e) => super::secured(crate::http::error(&s, StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}
