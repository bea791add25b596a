//! The operator pages, shown when serve.toml's `[dashboard]` names an inventory: the fleet under
//! the first configured agreement (by verdict, site and vendor, and every device that fails),
//! the violations that the log's evidence entries record about the fleet's firmware, and the
//! designated-vendor exposure per rule with the charts of `nospy exposure --html`
//! ([`nospy_exposure::chart`]).
//!
//! These show the operator's own records, so when a bearer token is configured
//! (`token_file`) they answer only a request carrying it, and the server refuses to start
//! without one when it listens on anything but loopback.

use super::entries::flows_table;
use super::verdict::gather;
use super::{page, refuse, secured, wants_json};
use crate::config::Operator;
use crate::{lock_read, AppState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use maud::{html, PreEscaped};
use nospy_log::clock::Clock as _;
use nospy_policy::fleet::{self, Kind, Standing};
use nospy_statement::predicate::{FlowViolation, Predicate};
use nospy_tlog::Sha256;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The fleet as last computed. While the configuration is unchanged and only the log has grown,
/// pages answer from it at once (they name the size it was judged at) and one background task
/// judges the fleet again at the new size: judging every firmware of a large fleet takes far
/// longer than a page may (about 0.3 ms per distinct firmware on a 1,000,000-entry log).
#[derive(Default)]
pub(crate) struct FleetCache {
    view: tokio::sync::Mutex<Option<Arc<FleetView>>>,
    /// Whether a background judgement is running.
    judging: std::sync::atomic::AtomicBool,
}

/// The fleet under one agreement at one tree size.
pub(crate) struct FleetView {
    size: u64,
    reloads: u64,
    agreement: String,
    /// Whether the lookup index covered the whole log when the fleet was judged.
    complete: bool,
    standings: Vec<Standing>,
    /// Evidence entries about the fleet's firmware, by log index.
    evidence: Vec<EvidenceEntry>,
}

/// One evidence entry as the violations page shows it.
#[derive(Serialize, Clone)]
struct EvidenceEntry {
    index: u64,
    device: String,
    /// The device's site in the inventory (empty when the inventory does not list it).
    site: String,
    window_start: String,
    window_end: String,
    /// The firmware the flows were judged against: its SHA-256.
    firmware: String,
    /// The key names of its signatures.
    signers: Vec<String>,
    flows: Vec<FlowViolation>,
}

/// The operator's data, if the request may see it; else the answer to send.
#[allow(clippy::result_large_err)] // the Err is the response itself, sent at once
fn authorized(
    s: &AppState,
    headers: &HeaderMap,
    json: bool,
) -> Result<Arc<Operator>, Response<Body>> {
    let Some(op) = lock_read(&s.config).operator.clone() else {
        return Err(refuse(
            s,
            StatusCode::NOT_FOUND,
            json,
            "no operator pages: serve.toml's [dashboard] names no inventory".into(),
        ));
    };
    if let Some(want) = op.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Sha256::of(t.trim().as_bytes()));
        if given != Some(want) {
            let mut r = refuse(
                s,
                StatusCode::UNAUTHORIZED,
                json,
                "the operator pages need the bearer token of serve.toml's [dashboard] token_file (Authorization: Bearer ...)".into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nospy operator pages\""),
            );
            return Err(secured(r));
        }
    }
    Ok(op)
}

/// The fleet: the cached judgement if the configuration is unchanged (judged again in the
/// background when the log has grown since), else judged now.
async fn fleet_view(
    s: &AppState,
    op: &Arc<Operator>,
) -> Result<Arc<FleetView>, (StatusCode, String)> {
    use std::sync::atomic::Ordering::SeqCst;
    let size = lock_read(&s.published).size;
    let reloads = s.progress.borrow().config_reloads;
    let cached = s.fleet.view.lock().await.clone();
    match cached {
        Some(v) if v.reloads == reloads => {
            if v.size != size && !s.fleet.judging.swap(true, SeqCst) {
                let (s, op) = (s.clone(), op.clone());
                tokio::spawn(async move {
                    if let Err((_, why)) = judge(&s, &op).await {
                        eprintln!("nospy serve: judging the fleet: {why}");
                    }
                    s.fleet.judging.store(false, SeqCst);
                });
            }
            Ok(v)
        }
        _ => judge(s, op).await,
    }
}

/// Judges the fleet at the published size and keeps it in the cache.
async fn judge(s: &AppState, op: &Operator) -> Result<Arc<FleetView>, (StatusCode, String)> {
    let (text, size) = {
        let p = lock_read(&s.published);
        (p.text.clone(), p.size)
    };
    let reloads = s.progress.borrow().config_reloads;
    let Some(agreement) = lock_read(&s.config).agreements.first().cloned() else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the fleet is judged under an agreement: list one under [dashboard] agreements in serve.toml".into(),
        ));
    };
    let digests = fleet::firmware_digests(
        op.inventory
            .devices
            .iter()
            .map(|d| d.firmware_sha256.as_deref()),
    );
    let wanted = fleet::distinct(&digests);
    let mut gathered = HashMap::new();
    let mut complete = true;
    for d in &wanted {
        let ev = gather(s, *d, text.clone(), size).await?;
        complete &= ev.complete.is_some();
        gathered.insert(*d, ev);
    }
    let now = nospy_log::clock::SystemClock.now();
    let verifier = nospy_policy::Verifier::new(&agreement);
    let verdicts = fleet::verify_all(&verifier, &wanted, &gathered, now);
    let newest = fleet::newest_admitted(verdicts.values());
    let standings = fleet::standings(&digests, &verdicts, &newest);
    let mut evidence = BTreeMap::new();
    for (digest, ev) in &gathered {
        for e in &ev.entries {
            let Ok((o, keys)) = nospy_statement::inspect(&e.bytes) else {
                continue;
            };
            if let Predicate::Evidence(x) = o.predicate {
                let site = op
                    .inventory
                    .get(&x.device)
                    .map(|d| d.site.clone())
                    .unwrap_or_default();
                evidence.insert(
                    e.index,
                    EvidenceEntry {
                        index: e.index,
                        device: x.device,
                        site,
                        window_start: x.window.start,
                        window_end: x.window.end,
                        firmware: digest.to_hex(),
                        signers: keys.iter().map(|k| k.name().to_string()).collect(),
                        flows: x.flows,
                    },
                );
            }
        }
    }
    let view = Arc::new(FleetView {
        size,
        reloads,
        agreement: agreement.name.clone(),
        complete,
        standings,
        evidence: evidence.into_values().collect(),
    });
    let mut cache = s.fleet.view.lock().await;
    // A judgement at a larger size, or under a newer configuration, may have landed meanwhile.
    if cache
        .as_ref()
        .is_none_or(|c| (c.reloads, c.size) <= (reloads, size))
    {
        *cache = Some(view.clone());
    }
    Ok(view)
}

/// Devices that fail the fleet check, per page.
const FAILING_PAGE: usize = 100;

#[derive(Deserialize)]
pub(super) struct FleetQuery {
    /// Show failing devices from this position in the inventory on.
    #[serde(default)]
    from: usize,
}

/// Counts per standing, and how many run a superseded release.
#[derive(Serialize, Default, Clone)]
struct Counts {
    devices: usize,
    admitted: usize,
    denied: usize,
    unlogged: usize,
    revoked: usize,
    unknown: usize,
    superseded: usize,
}

impl Counts {
    fn add(&mut self, st: &Standing) {
        self.devices += 1;
        *match st.kind {
            Kind::Admitted => &mut self.admitted,
            Kind::Denied => &mut self.denied,
            Kind::Unlogged => &mut self.unlogged,
            Kind::Revoked => &mut self.revoked,
            Kind::Unknown => &mut self.unknown,
        } += 1;
        if st.superseded_by.is_some() {
            self.superseded += 1;
        }
    }
}

#[derive(Serialize)]
struct FailingDevice {
    /// Its position in the inventory.
    position: usize,
    device: String,
    site: String,
    vendor: String,
    verdict: &'static str,
    reason: String,
    /// The release it runs: product, version, entry.
    release: Option<(String, String, u64)>,
    superseded_by: Option<(String, u64)>,
}

#[derive(Serialize)]
struct FleetPage {
    agreement: String,
    /// The tree size the fleet was judged at.
    size: u64,
    /// The log's published size now (larger while the fleet is judged again).
    published: u64,
    complete: bool,
    summary: Counts,
    /// Per site: (site, sensitive, counts).
    sites: Vec<(String, bool, Counts)>,
    vendors: Vec<(String, Counts)>,
    /// Devices that fail (not admitted, or on a superseded release), from `from` on; those
    /// whose inventory gives no firmware digest are only counted (`summary.unknown`).
    failing: Vec<FailingDevice>,
    failing_total: usize,
    /// Where the next page of failing devices starts, if there is one.
    next: Option<usize>,
}

type FleetQueryResult = Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>;

/// `/fleet`.
pub(super) async fn fleet(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: FleetQueryResult,
) -> Response<Body> {
    let json = wants_json(&headers);
    fleet_page(s, headers, q, json).await
}

/// `/fleet.json`.
pub(super) async fn fleet_json(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: FleetQueryResult,
) -> Response<Body> {
    fleet_page(s, headers, q, true).await
}

async fn fleet_page(
    s: AppState,
    headers: HeaderMap,
    q: FleetQueryResult,
    json: bool,
) -> Response<Body> {
    let Ok(Query(q)) = q else {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            json,
            "expected /fleet[?from=N] (N a position in the inventory)".into(),
        );
    };
    let op = match authorized(&s, &headers, json) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let view = match fleet_view(&s, &op).await {
        Ok(v) => v,
        Err((status, why)) => return refuse(&s, status, json, why),
    };
    let mut summary = Counts::default();
    let mut sites: BTreeMap<&str, (bool, Counts)> = BTreeMap::new();
    let mut vendors: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut failing = Vec::new();
    let mut failing_total = 0;
    let mut next = None;
    for (i, (d, st)) in op.inventory.devices.iter().zip(&view.standings).enumerate() {
        summary.add(st);
        let site = sites.entry(&d.site).or_default();
        site.0 |= d.sensitive;
        site.1.add(st);
        vendors.entry(&d.vendor).or_default().add(st);
        if st.failing() && st.kind != Kind::Unknown {
            failing_total += 1;
            if i >= q.from {
                if failing.len() < FAILING_PAGE {
                    failing.push(FailingDevice {
                        position: i,
                        device: d.device.clone(),
                        site: d.site.clone(),
                        vendor: d.vendor.clone(),
                        verdict: st.kind.as_str(),
                        reason: st.reason.clone(),
                        release: st.release.clone(),
                        superseded_by: st.superseded_by.clone(),
                    });
                } else if next.is_none() {
                    next = Some(i);
                }
            }
        }
    }
    let p = FleetPage {
        agreement: view.agreement.clone(),
        size: view.size,
        published: lock_read(&s.published).size,
        complete: view.complete,
        summary,
        sites: sites
            .into_iter()
            .map(|(k, (sens, c))| (k.to_string(), sens, c))
            .collect(),
        vendors: vendors
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect(),
        failing,
        failing_total,
        next,
    };
    let counts_head = html! {
        th scope="col" { "Devices" } th scope="col" { "Admitted" } th scope="col" { "Denied" }
        th scope="col" { "Unlogged" } th scope="col" { "Revoked" } th scope="col" { "Unknown" }
        th scope="col" { "Superseded" }
    };
    let counts = |c: &Counts| {
        html! {
            td.num { (c.devices) } td.num { (c.admitted) }
            td.num { @if c.denied > 0 { span.bad { (c.denied) } } @else { "0" } }
            td.num { @if c.unlogged > 0 { span.bad { (c.unlogged) } } @else { "0" } }
            td.num { @if c.revoked > 0 { span.bad { (c.revoked) } } @else { "0" } }
            td.num { (c.unknown) } td.num { (c.superseded) }
        }
    };
    let markup = html! {
        h1 { "The fleet under " (p.agreement) }
        p.note {
            "Each device's firmware judged as " code { "nospy verify" } " judges it, from this log's published checkpoint (size "
            (p.size) "); supersession among the releases the fleet runs. " code { "nospy fleet" }
            " checks it on your side."
        }
        @if !p.complete {
            p.bad { "The lookup index does not yet cover the whole log: an entry it has not indexed (a revocation, say) is not counted." }
        }
        @if p.published > p.size {
            p.bad { "The log has grown to " (p.published) " entries since: the fleet is being judged again; reload in a moment." }
        }
        table {
            caption { "Devices by standing" }
            thead { tr { (counts_head) } }
            tbody { tr { (counts(&p.summary)) } }
        }
        h2 #sites { "By site" }
        table {
            caption.skip { "Devices by site and standing" }
            thead { tr { th scope="col" { "Site" } (counts_head) } }
            tbody {
                @for (site, sensitive, c) in &p.sites {
                    tr { th scope="row" { (site) @if *sensitive { " (sensitive)" } } (counts(c)) }
                }
            }
        }
        h2 #vendors { "By vendor" }
        table {
            caption.skip { "Devices by vendor and standing" }
            thead { tr { th scope="col" { "Vendor" } (counts_head) } }
            tbody {
                @for (vendor, c) in &p.vendors {
                    tr { th scope="row" { (vendor) } (counts(c)) }
                }
            }
        }
        h2 #failing { "Devices that fail (" (p.failing_total) ")" }
        @if p.summary.unknown > 0 {
            p.note { (p.summary.unknown) " more devices have no firmware digest in the inventory: they are counted as unknown above, not listed." }
        }
        @if p.failing.is_empty() {
            p { "None." }
        } @else {
            table {
                caption.skip { "Devices that are not admitted or run a superseded release" }
                thead { tr {
                    th scope="col" { "Device" } th scope="col" { "Site" } th scope="col" { "Vendor" }
                    th scope="col" { "Standing" } th scope="col" { "Release" } th scope="col" { "Why" }
                } }
                tbody {
                    @for f in &p.failing {
                        tr {
                            td { (f.device) } td { (f.site) } td { (f.vendor) }
                            td { span.bad { (f.verdict) } @if f.superseded_by.is_some() { " (superseded)" } }
                            td {
                                @if let Some((product, version, index)) = &f.release {
                                    a href={ "/entries/" (index) } { (product) " " (version) }
                                    @if let Some((v, i)) = &f.superseded_by {
                                        " superseded by " a href={ "/entries/" (i) } { (v) }
                                    }
                                }
                            }
                            td { (f.reason) }
                        }
                    }
                }
            }
            @if let Some(n) = p.next {
                p { a href={ "/fleet?from=" (n) "#failing" } { "The next devices that fail" } }
            }
        }
    };
    page(&s, StatusCode::OK, json, &p, "nospy: fleet", markup)
}

#[derive(Serialize)]
struct ViolationsPage {
    agreement: String,
    size: u64,
    complete: bool,
    /// Evidence entries about the fleet's firmware, oldest first.
    evidence: Vec<EvidenceEntry>,
}

/// `/violations`.
pub(super) async fn violations(State(s): State<AppState>, headers: HeaderMap) -> Response<Body> {
    let json = wants_json(&headers);
    violations_page(s, headers, json).await
}

/// `/violations.json`.
pub(super) async fn violations_json(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Response<Body> {
    violations_page(s, headers, true).await
}

async fn violations_page(s: AppState, headers: HeaderMap, json: bool) -> Response<Body> {
    let op = match authorized(&s, &headers, json) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let view = match fleet_view(&s, &op).await {
        Ok(v) => v,
        Err((status, why)) => return refuse(&s, status, json, why),
    };
    let p = ViolationsPage {
        agreement: view.agreement.clone(),
        size: view.size,
        complete: view.complete,
        evidence: view.evidence.clone(),
    };
    let markup = html! {
        h1 { "Violations" }
        p.note {
            "Flows that a device's manifest does not allow, as the monitors' signed evidence entries in this log record them (size "
            (p.size) "), about the firmware the inventory's devices run. Each entry's page has its inclusion proof."
        }
        @if !p.complete {
            p.bad { "The lookup index does not yet cover the whole log: evidence it has not indexed is not shown." }
        }
        @if p.evidence.is_empty() {
            p { "No evidence entry in the log is about the fleet's firmware." }
        }
        @for e in &p.evidence {
            section aria-labelledby={ "evidence-" (e.index) } {
                h2 #{ "evidence-" (e.index) } {
                    "Device " (e.device)
                    @if !e.site.is_empty() { " at " (e.site) }
                    ": " a href={ "/entries/" (e.index) } { "entry " (e.index) }
                }
                p {
                    "Window " (e.window_start) " to " (e.window_end) "; firmware "
                    a href={ "/verdict/" (e.firmware) } { code { (&e.firmware[..12]) } }
                    "; signed by " (e.signers.join(", ")) "."
                }
                (flows_table(&e.flows, &format!("The flows of entry {} that the manifest does not allow", e.index)))
            }
        }
    };
    page(&s, StatusCode::OK, json, &p, "nospy: violations", markup)
}

/// `/exposure`.
pub(super) async fn exposure(State(s): State<AppState>, headers: HeaderMap) -> Response<Body> {
    let json = wants_json(&headers);
    exposure_page(s, headers, json)
}

/// `/exposure.json`.
pub(super) async fn exposure_json(State(s): State<AppState>, headers: HeaderMap) -> Response<Body> {
    exposure_page(s, headers, true)
}

#[derive(Serialize)]
struct RuleRow {
    name: String,
    vendor: String,
    scope: String,
    share: f64,
    cap: f64,
    effective: String,
    in_force: bool,
    compliant: bool,
    devices_to_replace: usize,
    cost: f64,
}

#[derive(Serialize)]
struct ExposurePage {
    at: String,
    devices: usize,
    rules: Vec<RuleRow>,
}

fn exposure_page(s: AppState, headers: HeaderMap, json: bool) -> Response<Body> {
    use nospy_exposure::chart;
    let op = match authorized(&s, &headers, json) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let Some(policy) = &op.exposure else {
        return refuse(
            &s,
            StatusCode::NOT_FOUND,
            json,
            "no exposure page: serve.toml's [dashboard] names no exposure policy".into(),
        );
    };
    let at = nospy_exposure::Date::from_unix(nospy_log::clock::SystemClock.now() as i64);
    let rules = nospy_exposure::evaluate(&op.inventory, policy, at, &[]);
    let (from, to) = chart::span(&rules, at);
    let p = ExposurePage {
        at: at.to_string(),
        devices: op.inventory.devices.len(),
        rules: rules
            .iter()
            .map(|r| RuleRow {
                name: r.rule.name.clone(),
                vendor: r.rule.vendor.clone(),
                scope: r.rule.scope.to_string(),
                share: r.share,
                cap: r.rule.max_share,
                effective: r.rule.effective.to_string(),
                in_force: r.in_force,
                compliant: r.compliant,
                devices_to_replace: r.replacement.devices.len(),
                cost: r.replacement.cost,
            })
            .collect(),
    };
    let breaches = rules.iter().filter(|r| r.breach()).count();
    let markup = html! {
        h1 { "Designated-vendor exposure at " (p.at) }
        p {
            (p.devices) " devices in the inventory; " (rules.len()) " rules, "
            @if breaches > 0 { span.bad { (breaches) " in breach" } } @else { span.ok { "none in breach" } }
            ". " code { "nospy exposure --what-if" } " prices other caps."
        }
        table {
            caption.skip { "Each rule of the exposure policy" }
            thead { tr {
                th scope="col" { "Rule" } th scope="col" { "Vendor" } th scope="col" { "Scope" }
                th scope="col" { "Share" } th scope="col" { "Cap" } th scope="col" { "Effective" }
                th scope="col" { "Standing" } th scope="col" { "To replace" } th scope="col" { "Cost" }
            } }
            tbody {
                @for (i, r) in rules.iter().enumerate() {
                    @let (word, class) = chart::status(r);
                    tr {
                        th scope="row" { a href={ "#rule-" (i) } { (r.rule.name) } }
                        td { (r.rule.vendor) } td { (r.rule.scope.to_string()) }
                        td.num { (chart::pct(r.share)) } td.num { (chart::pct(r.rule.max_share)) }
                        td { (r.rule.effective.to_string()) }
                        td { span class=(if class == "breach" { "bad" } else if class == "ok" { "ok" } else { "" }) { (word) } }
                        td.num { (r.replacement.devices.len()) } td.num { (chart::money(r.replacement.cost)) }
                    }
                }
            }
        }
        @for (i, r) in rules.iter().enumerate() {
            section aria-labelledby={ "rule-" (i) } {
                h2 #{ "rule-" (i) } { (r.rule.name) }
                figure {
                    (PreEscaped(chart::shares(r, i)))
                    figcaption { "Each vendor's share of the scope; the dashed line is the cap." }
                }
                details { summary { "The chart's figures" } (PreEscaped(chart::shares_table(r))) }
                figure {
                    (PreEscaped(chart::timeline(r, i, at, from, to)))
                    figcaption { "The share (solid) against the cap (dashed) over time; dotted, the share once the fewest devices are replaced; the grey line is today." }
                }
                details { summary { "The chart's figures" } (PreEscaped(chart::timeline_table(r, at))) }
            }
        }
    };
    page(&s, StatusCode::OK, json, &p, "nospy: exposure", markup)
}
