//! `nospy fleet`: every device of the inventory under the agreement: is its firmware in the log,
//! admitted (the very verdict of `nospy verify`), revoked, superseded by a newer admitted release
//! of the same product?

use crate::util::print_json;
use crate::util::read_parsed;
use crate::util::Progress;
use anyhow::{bail, Context as _, Result};
use nospy_client::{FleetVerdicts, LogSource};
use nospy_inventory::Inventory;
use nospy_policy::fleet::{self, Kind, Standing};
use nospy_policy::{Agreement, Verifier};
use nospy_tlog::Sha256;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nospy fleet`.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// The operator's inventory (CSV or JSON, DESIGN.md §12): each device's firmware_sha256.
    #[arg(long)]
    inventory: PathBuf,
    /// The agreement the firmware must be admitted under.
    #[arg(long)]
    agreement: PathBuf,
    /// A log directory (the log itself or a mirror): read whole, so that absences prove
    /// something and newer releases are found.
    #[arg(long, conflicts_with = "server", required_unless_present = "server")]
    log: Option<PathBuf>,
    /// A `nospy serve` server: verdicts through its index (supersession is not checked: its
    /// index answers by digest; mirror the log and give --log for that).
    #[arg(long)]
    server: Option<String>,
    /// With --log: a signed checkpoint of the log to judge under (one with the witnesses'
    /// cosignatures); default the log's own.
    #[arg(long, requires = "log")]
    checkpoint: Option<PathBuf>,
    /// Judge at this time (YYYY-MM-DD, or RFC 3339) instead of now: the freshness of
    /// cosignatures and the effective time of revocations are taken at it.
    #[arg(long)]
    at: Option<String>,
    /// Write the report as a self-contained HTML file with a chart.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print one JSON object: summary (devices, admitted, denied, unlogged, revoked,
    /// superseded) and devices (device, verdict, reason).
    #[arg(long)]
    json: bool,
}

/// The time to judge at, POSIX seconds.
fn at_time(at: Option<&str>) -> Result<u64> {
    let Some(t) = at else {
        return Ok(crate::statements::now());
    };
    let secs = if t.len() == 10 {
        nospy_statement::time::parse_rfc3339(&format!("{t}T00:00:00Z"))
    } else {
        nospy_statement::time::parse_rfc3339(t)
    };
    secs.and_then(|s| u64::try_from(s).ok()).with_context(|| {
        format!("--at {t:?}: expected YYYY-MM-DD or an RFC 3339 time such as 2026-11-28T12:00:00Z")
    })
}

/// Runs `nospy fleet`.
pub fn run(a: FleetArgs) -> Result<ExitCode> {
    let inv = read_parsed(&a.inventory, Inventory::parse)?;
    let agreement = read_parsed(&a.agreement, Agreement::from_toml)?;
    let now = at_time(a.at.as_deref())?;
    let Some(src) = LogSource::from_args(a.log.as_deref(), a.server.as_deref()) else {
        bail!("give --log DIR or --server URL");
    };
    let verifier = Verifier::new(&agreement);
    let digests = fleet::firmware_digests(inv.devices.iter().map(|d| d.firmware_sha256.as_deref()));
    let FleetVerdicts { verdicts, releases } = src
        .verdicts(
            &digests,
            &verifier,
            a.checkpoint.as_deref(),
            now,
            true,
            &mut Progress::callback("scanned entries"),
        )
        .with_context(|| format!("reading {}", src.name()))?;

    // Supersession: the admitted releases of each product the fleet runs, from the whole log
    // (read in the same pass); only releases of firmware no device runs need a second reading.
    let mut newest = fleet::Newest::new();
    if let Some(all) = &releases {
        let candidates = fleet::supersession_candidates(all, &verdicts);
        let unseen: Vec<Sha256> = candidates
            .iter()
            .filter(|d| !verdicts.contains_key(d))
            .copied()
            .collect();
        let more = if unseen.is_empty() {
            HashMap::new()
        } else {
            let ev = src.evidence_under(
                &unseen,
                a.checkpoint.as_deref(),
                &mut Progress::callback("scanned entries"),
            )?;
            fleet::verify_all(&verifier, &unseen, &ev, now)
        };
        newest = fleet::newest_admitted(
            candidates
                .iter()
                .filter_map(|d| verdicts.get(d).or_else(|| more.get(d))),
        );
    }
    let standings = fleet::standings(&digests, &verdicts, &newest);

    let count = |k: Kind| fleet::count(&standings, k);
    let superseded = standings
        .iter()
        .filter(|s| s.superseded_by.is_some())
        .count();
    let summary = json!({
        "devices": inv.devices.len(),
        "admitted": count(Kind::Admitted),
        "denied": count(Kind::Denied),
        "unlogged": count(Kind::Unlogged),
        "revoked": count(Kind::Revoked),
        "unknown": count(Kind::Unknown),
        "superseded": if releases.is_some() { json!(superseded) } else { serde_json::Value::Null },
    });
    if let Some(p) = &a.html {
        crate::util::write_output(
            Some(p),
            html(&inv, &standings, &summary, &agreement.name).as_bytes(),
        )?;
    }
    if a.json {
        print_json(&json!({
            "agreement": agreement.name,
            "summary": summary,
            "devices": inv.devices.iter().zip(&standings).map(|(d, s)| {
                let mut v = json!({"device": d.device, "verdict": s.kind.as_str(), "reason": s.reason});
                if let Some((p, ver, i)) = &s.release {
                    v["release"] = json!({"product": p, "version": ver, "index": i});
                }
                if let Some((ver, i)) = &s.superseded_by {
                    v["superseded_by"] = json!({"version": ver, "index": i});
                }
                v
            }).collect::<Vec<_>>(),
        }))?;
    } else {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} devices under {}: {} admitted, {} denied, {} unlogged, {} revoked, {} without a firmware digest; {}",
            inv.devices.len(),
            agreement.name,
            count(Kind::Admitted),
            count(Kind::Denied),
            count(Kind::Unlogged),
            count(Kind::Revoked),
            count(Kind::Unknown),
            if releases.is_some() {
                format!("{superseded} running a superseded release")
            } else {
                "supersession not checked (give --log: a mirror of the log)".into()
            }
        );
        let bad: Vec<(&nospy_inventory::Device, &Standing)> = inv
            .devices
            .iter()
            .zip(&standings)
            .filter(|(_, s)| s.failing())
            .collect();
        if !bad.is_empty() {
            let _ = writeln!(out, "\nFAILING DEVICES:");
            for (d, s) in bad.iter().take(200) {
                let sup = match &s.superseded_by {
                    Some((v, i)) => format!(" (superseded by {v}, entry {i})"),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {:<20} {:<9} {}{sup}",
                    d.device,
                    s.kind.as_str(),
                    s.reason
                );
            }
            if bad.len() > 200 {
                let _ = writeln!(
                    out,
                    "  ... and {} more (--json lists every device)",
                    bad.len() - 200
                );
            }
        }
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    }
    Ok(if standings.iter().any(Standing::failing) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The fleet report: counts as a bar chart, then the failing devices.
fn html(
    inv: &Inventory,
    standings: &[Standing],
    summary: &serde_json::Value,
    agreement: &str,
) -> String {
    use std::fmt::Write as _;
    let bars = [
        ("admitted", "#1f883d"),
        ("denied", "#d1242f"),
        ("unlogged", "#9a6700"),
        ("revoked", "#8250df"),
        ("unknown", "#8c959f"),
        ("superseded", "#0969da"),
    ];
    let max = bars
        .iter()
        .map(|(k, _)| summary[k].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut s = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nospy fleet</title><style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left}}th{{background:#f6f8fa}}svg text{{font-family:system-ui,sans-serif;font-size:12px}}</style></head><body><h1>Fleet under {}</h1><p>{} devices.</p>",
        esc(agreement),
        inv.devices.len()
    );
    let h = 30 + bars.len() * 30;
    let _ = write!(s, "<svg class=\"chart verdicts\" role=\"img\" width=\"640\" height=\"{h}\" viewBox=\"0 0 640 {h}\" xmlns=\"http://www.w3.org/2000/svg\"><title>devices by verdict</title>");
    for (k, (name, color)) in bars.iter().enumerate() {
        let n = summary[name].as_u64();
        let y = 15 + k * 30;
        let w = n.map(|n| n as f64 / max * 420.0).unwrap_or(0.0).max(0.5);
        let label = n
            .map(|n| n.to_string())
            .unwrap_or_else(|| "not checked".into());
        let _ = write!(s, "<text x=\"110\" y=\"{}\" text-anchor=\"end\">{name}</text><rect class=\"bar\" x=\"120\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"{color}\"><title>{name}: {label}</title></rect><text x=\"{:.1}\" y=\"{}\">{label}</text>", y + 15, 126.0 + w, y + 15);
    }
    s.push_str("</svg><h2>Failing devices</h2><table><tr><th>device</th><th>site</th><th>verdict</th><th>release</th><th>reason</th></tr>");
    for (d, st) in inv.devices.iter().zip(standings) {
        if !st.failing() {
            continue;
        }
        let rel = match (&st.release, &st.superseded_by) {
            (Some((p, v, _)), Some((nv, _))) => format!("{p} {v} (superseded by {nv})"),
            (Some((p, v, _)), None) => format!("{p} {v}"),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.device),
            esc(&d.site),
            st.kind.as_str(),
            esc(&rel),
            esc(&st.reason)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}
