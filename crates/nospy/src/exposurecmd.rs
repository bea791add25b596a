//! `nospy exposure`: the network's dependence on a designated vendor against a policy's caps and
//! deadlines, with what compliance would cost.

use crate::util::print_json;
use crate::util::read_parsed;
use anyhow::{bail, Context as _, Result};
use nospy_exposure::{evaluate, html, Date, Policy, RuleReport};
use nospy_inventory::Inventory;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nospy exposure`.
#[derive(clap::Args)]
pub struct ExposureArgs {
    /// The operator's inventory (CSV or JSON, DESIGN.md §12): vendor, function, technology,
    /// sensitive site, weight and replacement cost of every device.
    #[arg(long)]
    inventory: PathBuf,
    /// The designated-vendor policy (exposure.toml): rules of vendor, scope, max_share, measure
    /// and effective date. examples/exposure-uk.toml encodes the UK's direction on Huawei.
    #[arg(long)]
    policy: PathBuf,
    /// Judge at this date (YYYY-MM-DD) instead of today (UTC).
    #[arg(long)]
    at: Option<String>,
    /// Sweep each rule's cap from FROM% to TO% by STEP% (e.g. 0:50:5) and report what each level
    /// would take to reach: the fewest devices to replace and their cost.
    #[arg(long, value_name = "FROM:TO:STEP")]
    what_if: Option<String>,
    /// Write the report as a self-contained HTML file with charts.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print one JSON object: at, rules (share, cap, compliance, deadline, replacement).
    #[arg(long)]
    json: bool,
}

/// `FROM:TO:STEP` in percent, as shares.
fn sweep(s: &str) -> Result<Vec<f64>> {
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Vec<f64> = parts
        .iter()
        .map(|p| p.trim().trim_end_matches('%').parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<f64>| v.len() == 3)
        .with_context(|| {
            format!("--what-if {s:?}: expected FROM:TO:STEP in percent, such as 0:50:5")
        })?;
    let (from, to, step) = (nums[0], nums[1], nums[2]);
    if !(0.0..=100.0).contains(&from) || !(0.0..=100.0).contains(&to) || from > to || step <= 0.0 {
        bail!("--what-if {s:?}: need 0 <= FROM <= TO <= 100 and STEP > 0");
    }
    let n = ((to - from) / step).floor() as usize;
    if n > 1000 {
        bail!("--what-if {s:?}: more than 1,000 levels");
    }
    Ok((0..=n).map(|i| (from + i as f64 * step) / 100.0).collect())
}

fn rule_json(r: &RuleReport, inv: &Inventory) -> serde_json::Value {
    let sweep = &r.what_if;
    let ids = |ds: &[usize]| -> Vec<&str> {
        ds.iter().map(|&d| inv.devices[d].device.as_str()).collect()
    };
    let mut v = json!({
        "name": r.rule.name,
        "vendor": r.rule.vendor,
        "scope": r.rule.scope.to_string(),
        "share": r.share,
        "max_share": r.rule.max_share,
        "measure": r.rule.measure.as_str(),
        "effective": r.rule.effective.to_string(),
        "in_force": r.in_force,
        "compliant": r.compliant,
        "breach": r.breach(),
        "days_to_effective": r.days_to_effective,
        "scope_devices": r.scope_devices,
        "vendor_devices": r.vendor_devices,
        "replacement": {
            "devices": ids(&r.replacement.devices),
            "weight": r.replacement.weight,
            "cost": r.replacement.cost,
            "share_after": r.replacement.share_after,
        },
    });
    if !sweep.is_empty() {
        v["what_if"] = sweep
            .iter()
            .map(|p| {
                json!({
                    "cap": p.cap,
                    "devices": p.replacement.devices.len(),
                    "weight": p.replacement.weight,
                    "cost": p.replacement.cost,
                    "share_after": p.replacement.share_after,
                })
            })
            .collect();
    }
    v
}

/// Runs `nospy exposure`.
pub fn run(a: ExposureArgs) -> Result<ExitCode> {
    let inv = read_parsed(&a.inventory, Inventory::parse)?;
    let policy = read_parsed(&a.policy, Policy::from_toml)?;
    let at = match &a.at {
        Some(d) => Date::parse(d).map_err(|m| anyhow::anyhow!("--at: {m}"))?,
        None => Date::from_unix(crate::statements::now() as i64),
    };
    let caps = a
        .what_if
        .as_deref()
        .map(sweep)
        .transpose()?
        .unwrap_or_default();
    let rules = evaluate(&inv, &policy, at, &caps);
    if let Some(p) = &a.html {
        crate::util::write_output(Some(p), html::report(&inv, &rules, at).as_bytes())?;
    }
    if a.json {
        print_json(&json!({
            "at": at.to_string(),
            "devices": inv.devices.len(),
            "rules": rules.iter().map(|r| rule_json(r, &inv)).collect::<Vec<_>>(),
        }))?;
    } else {
        print_text(&rules, at, &inv);
        if let Some(p) = &a.html {
            eprintln!("report written to {}", p.display());
        }
    }
    Ok(if rules.iter().any(RuleReport::breach) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(rules: &[RuleReport], at: Date, inv: &Inventory) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} devices judged at {at}; {} of {} rules in breach",
        inv.devices.len(),
        rules.iter().filter(|r| r.breach()).count(),
        rules.len()
    );
    for r in rules {
        let sweep = &r.what_if;
        let status = match (r.in_force, r.compliant) {
            (true, true) => "compliant".to_string(),
            (true, false) => "IN BREACH".to_string(),
            (false, true) => format!("in force in {} days; within the cap", r.days_to_effective),
            (false, false) => format!("in force in {} days; OVER the cap", r.days_to_effective),
        };
        let _ = writeln!(
            out,
            "\n{}\n  {} in {}: {:.1}% by {} ({} of {} devices), cap {:.1}% from {}: {status}",
            r.rule.name,
            r.rule.vendor,
            r.rule.scope,
            r.share * 100.0,
            r.rule.measure.as_str(),
            r.vendor_devices,
            r.scope_devices,
            r.rule.max_share * 100.0,
            r.rule.effective
        );
        if !r.replacement.devices.is_empty() {
            let names: Vec<&str> = r
                .replacement
                .devices
                .iter()
                .take(5)
                .map(|&d| inv.devices[d].device.as_str())
                .collect();
            let more = r.replacement.devices.len().saturating_sub(5);
            let _ = writeln!(
                out,
                "  to comply: replace {} devices (weight {:.1}, cost {:.0}): {}{}; share after {:.1}%",
                r.replacement.devices.len(),
                r.replacement.weight,
                r.replacement.cost,
                names.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() },
                r.replacement.share_after * 100.0
            );
        }
        if !sweep.is_empty() {
            let _ = writeln!(out, "  what each cap would take:");
            for p in sweep {
                let _ = writeln!(
                    out,
                    "    cap {:>5.1}%  {:>8} devices  weight {:>12.1}  cost {:>14.0}",
                    p.cap * 100.0,
                    p.replacement.devices.len(),
                    p.replacement.weight,
                    p.replacement.cost
                );
            }
        }
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
}
