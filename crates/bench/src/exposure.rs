//! `nospy bench exposure`: a national operator's inventory checked against a designated-vendor
//! policy, each stage timed beside the least work any reader of the file must do.

use crate::print_json;
use anyhow::{Context as _, Result};
use nospy_exposure::{evaluate, html, Date, Policy};
use nospy_inventory::Inventory;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The UK example policy, as shipped.
const UK: &str = include_str!("../../../examples/exposure-uk.toml");

/// A national operator's inventory of `n` devices, as CSV: 1% core, 70% access, 20% transport,
/// 9% management; Huawei a share of each (more in access), 0.5% at sensitive sites, half of
/// the access network 5G.
fn generate(n: usize) -> String {
    let mut out = String::with_capacity(n * 120);
    out.push_str("device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = x % 1000;
        let (function, tech) = match i % 100 {
            0 => ("core", "5g"),
            1..=70 => ("access", if i % 2 == 0 { "5g" } else { "4g" }),
            71..=90 => ("transport", "fibre"),
            _ => ("management", ""),
        };
        let vendor = match (function, r) {
            ("access", 0..=379) => "Huawei",
            (_, 0..=99) => "Huawei",
            (_, 100..=549) => "Ericsson",
            _ => "Nokia",
        };
        let sensitive = i % 200 == 7;
        let weight = 1 + x % 5;
        let cost = 20_000 + (x >> 8) % 200_000;
        let _ = writeln!(
            out,
            "el-{i:07},{vendor},{vendor}-{function},{function},{tech},site-{:06},{sensitive},10.{}.{}.{},,{weight},{cost}",
            i / 8,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
    }
    out
}

/// Runs the benchmark.
pub fn run(devices: usize, work: &Path, json: bool) -> Result<()> {
    anyhow::ensure!(devices >= 1, "--devices must be at least 1");
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    if !json {
        eprintln!("generating an inventory of {devices} devices ...");
    }
    let path = work.join(format!("bench-exposure-{}.csv", std::process::id()));
    std::fs::write(&path, generate(devices))
        .with_context(|| format!("writing {}", path.display()))?;
    let policy = Policy::from_toml(UK)?;
    let at = Date::parse("2025-06-01").map_err(anyhow::Error::msg)?;

    // The reference: read the file and split every line into its fields.
    let t = Instant::now();
    let text = std::fs::read_to_string(&path)?;
    let fields: usize = text.lines().map(|l| l.split(',').count()).sum();
    let reference_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let inv = Inventory::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rules = evaluate(&inv, &policy, at, &[]);
    let evaluate_s = t.elapsed().as_secs_f64();
    let caps: Vec<f64> = (0..=10).map(|i| i as f64 * 0.05).collect();
    let t = Instant::now();
    let swept = evaluate(&inv, &policy, at, &caps);
    let sweep_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let page = html::report(&inv, &swept, at);
    let html_s = t.elapsed().as_secs_f64();

    // The whole command, as a user runs it.
    let policy_file = work.join(format!("bench-exposure-{}.toml", std::process::id()));
    std::fs::write(&policy_file, UK)?;
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "exposure",
            "--json",
            "--at",
            "2025-06-01",
            "--what-if",
            "0:50:5",
            "--inventory",
        ])
        .arg(&path)
        .arg("--policy")
        .arg(&policy_file)
        .arg("--html")
        .arg(work.join(format!("bench-exposure-{}.html", std::process::id())))
        .output()?;
    let command_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&policy_file);
    let _ = std::fs::remove_file(work.join(format!("bench-exposure-{}.html", std::process::id())));
    anyhow::ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "nospy exposure failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let breaches = rules.iter().filter(|r| r.breach()).count();
    let replaced: usize = rules.iter().map(|r| r.replacement.devices.len()).sum();
    let figures = json!({
        "devices": devices,
        "bytes": text.len(),
        "fields": fields,
        "reference_split_s": reference_s,
        "parse_s": parse_s,
        "parse_ratio_to_reference": parse_s / reference_s,
        "evaluate_s": evaluate_s,
        "evaluate_with_what_if_s": sweep_s,
        "html_s": html_s,
        "html_bytes": page.len(),
        "command_s": command_s,
        "rules": rules.len(),
        "breaches": breaches,
        "devices_to_replace": replaced,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        print_json(&figures)?;
    } else {
        println!(
            "inventory of {devices} devices ({} MB, {fields} fields)",
            text.len() / 1_000_000
        );
        println!("reference: read and split  {:>8.3} s", reference_s);
        println!(
            "parse (strict)             {:>8.3} s  ({:.1}x the reference)",
            parse_s,
            parse_s / reference_s
        );
        println!("judge {} rules             {:>8.3} s  ({breaches} in breach, {replaced} devices to replace)", rules.len(), evaluate_s);
        println!("judged with 11-cap sweeps  {:>8.3} s", sweep_s);
        println!(
            "HTML report                {:>8.3} s  ({} KB)",
            html_s,
            page.len() / 1000
        );
        println!("the whole command          {:>8.3} s  (`nospy exposure --json --what-if 0:50:5 --html ...`)", command_s);
    }
    Ok(())
}
