//! `nospy monitor`: the operator's traffic against each device's manifest.

use crate::util::{print_json, Progress};
use anyhow::{bail, Context, Result};
use nospy_flow::netflow::Collector;
use nospy_flow::source::{read_exports, read_traffic, Stats};
use nospy_inventory::{Inventory, OperatorConfig};
use nospy_manifest::{Direction, Manifest};
use nospy_monitor::{manifests_by_model, Monitor, Report, Resolver, Row};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `nospy monitor`.
#[derive(clap::Args)]
pub struct MonitorArgs {
    /// The operator's inventory (CSV or JSON, DESIGN.md §12): which device has which addresses.
    #[arg(long)]
    inventory: PathBuf,
    /// A manifest (TOML, as `nospy manifest import-mud` writes, or a release statement's JSON
    /// form); it applies to the devices whose vendor and model it names. Repeatable.
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// The operator's configuration (operator.toml): its networks, controllers and local
    /// networks, which give a manifest's abstractions their addresses.
    #[arg(long)]
    operator: Option<PathBuf>,
    /// A resolver snapshot: lines of `name address...`, for DNS-name rules where the traffic
    /// carries no DNS (flow exports, or captures that began after the lookups).
    #[arg(long)]
    resolver: Option<PathBuf>,
    /// A packet capture (pcap or pcapng, recognised by content).
    #[arg(long, conflicts_with = "flows", required_unless_present = "flows")]
    pcap: Option<PathBuf>,
    /// A capture of flow export packets (NetFlow v5, v9 or IPFIX over UDP).
    #[arg(long)]
    flows: Option<PathBuf>,
    /// Print one JSON object: totals, violations, unattributable, unknown_device_flows, devices.
    #[arg(long)]
    json: bool,
}

fn load_manifest(p: &PathBuf) -> Result<Manifest> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let m = if text.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        Manifest::from_json(&v)
    } else {
        Manifest::from_toml(&text)
    };
    m.with_context(|| format!("{}: not a manifest", p.display()))
}

/// Runs `nospy monitor`.
pub fn run(a: MonitorArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&a.inventory)
        .with_context(|| format!("reading {}", a.inventory.display()))?;
    let inventory =
        Inventory::parse(&text).with_context(|| format!("{}", a.inventory.display()))?;
    let operator = match &a.operator {
        Some(p) => OperatorConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => OperatorConfig::default(),
    };
    let resolver = match &a.resolver {
        Some(p) => Some(
            Resolver::parse(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let manifests: Vec<Arc<Manifest>> = a
        .manifest
        .iter()
        .map(|p| load_manifest(p).map(Arc::new))
        .collect::<Result<_>>()?;
    if manifests.is_empty() {
        bail!("no manifest given (--manifest FILE): nothing to check the traffic against");
    }
    let per_device = manifests_by_model(&inventory, &manifests);
    let mut monitor = Monitor::new(&inventory, &per_device, &operator, resolver)?;
    let (path, exports) = match (&a.pcap, &a.flows) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => bail!("give --pcap FILE or --flows FILE"),
    };
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut progress = Progress::new("read bytes");
    let mut tell = |done: usize, total: usize| progress.update(done as u64, total as u64);
    let stats = if exports {
        read_exports(&data, &mut Collector::new(), &mut monitor, &mut tell)
    } else {
        read_traffic(&data, &mut monitor, &mut tell)
    }
    .with_context(|| format!("{}", path.display()))?;
    let report = monitor.finish();
    if a.json {
        print_json(&to_json(&report, &stats))?;
    } else {
        print_text(&report, &stats);
    }
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let s = nospy_statement::time::format_rfc3339(secs);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ns / 1_000_000 % 1000)
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::FromDevice => "from-device",
        Direction::ToDevice => "to-device",
    }
}

fn protocol(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn row_json(r: &Row) -> serde_json::Value {
    let mut v = json!({
        "device": r.device,
        "direction": direction(r.direction),
        "peer": r.peer.to_string(),
        "protocol": protocol(r.protocol),
        "port": r.port,
        "flows": r.flows,
        "packets": r.packets,
        "bytes": r.bytes,
        "first_seen": time(r.first_ns),
        "last_seen": time(r.last_ns),
    });
    if !r.names.is_empty() {
        v["could_be"] = json!(r.names);
    }
    v
}

fn to_json(r: &Report, st: &Stats) -> serde_json::Value {
    json!({
        "totals": {"flows": r.flows, "packets": r.packets, "bytes": r.bytes},
        "violations": r.violations.iter().map(row_json).collect::<Vec<_>>(),
        "unattributable": r.unattributable.iter().map(row_json).collect::<Vec<_>>(),
        "unknown_device_flows": r.unknown_device_flows,
        "devices": r.devices.iter().map(|d| json!({
            "device": d.device,
            "flows": d.flows,
            "violations": d.violations,
            "unattributable": d.unattributable,
            "manifest": d.has_manifest,
        })).collect::<Vec<_>>(),
        "input": {
            "packets": st.packets,
            "not_ip": st.not_ip,
            "bad_packets": st.bad_packets,
            "other_link_types": st.other_link,
            "dns_responses": st.dns_responses,
            "dns_malformed": st.dns_malformed,
            "flows_ended_early": st.evicted,
            "export_messages": st.export.messages,
            "export_malformed": st.export.malformed,
            "export_records_without_template": st.export.no_template,
        },
    })
}

fn row_text(r: &Row) -> String {
    format!(
        "  {:<16} {:<11} {:<40} {:>5}/{:<6} {:>6} flows {:>8} packets {:>10} bytes  {} .. {}",
        r.device,
        direction(r.direction),
        r.peer,
        r.port,
        protocol(r.protocol),
        r.flows,
        r.packets,
        r.bytes,
        time(r.first_ns),
        time(r.last_ns)
    )
}

fn print_text(r: &Report, st: &Stats) {
    use std::fmt::Write as _;
    let mut out = String::new();
    macro_rules! println {
        ($($t:tt)*) => {{ let _ = writeln!(out, $($t)*); }};
    }
    println!(
        "{} flows ({} packets, {} bytes); {} violations in {} groups, {} unattributable flows, {} flows of no known device",
        r.flows,
        r.packets,
        r.bytes,
        r.devices.iter().map(|d| d.violations).sum::<u64>(),
        r.violations.len(),
        r.devices.iter().map(|d| d.unattributable).sum::<u64>(),
        r.unknown_device_flows
    );
    if !r.violations.is_empty() {
        println!("\nVIOLATIONS (device, direction, peer, port/protocol):");
        for v in &r.violations {
            println!("{}", row_text(v));
        }
    }
    if !r.unattributable.is_empty() {
        println!("\nUNATTRIBUTABLE (only a DNS-name rule could allow these, and no DNS answer in the input ties the peer to it):");
        for v in &r.unattributable {
            println!("{}  could be: {}", row_text(v), v.names.join(", "));
        }
    }
    println!("\nDEVICES:");
    for d in &r.devices {
        let status = if !d.has_manifest {
            "no manifest: flows counted, not judged".to_string()
        } else if d.violations > 0 {
            format!("{} violations", d.violations)
        } else {
            "conforms".to_string()
        };
        println!(
            "  {:<16} {:>8} flows  {:>6} unattributable  {status}",
            d.device, d.flows, d.unattributable
        );
    }
    // A reader that stops early (`| head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    if st.bad_packets + st.dns_malformed + st.export.malformed + st.export.no_template + st.evicted
        > 0
    {
        eprintln!(
            "note: {} packets malformed or cut short, {} DNS responses malformed, {} export messages malformed, {} data sets without their template, {} flows ended early (table full)",
            st.bad_packets, st.dns_malformed, st.export.malformed, st.export.no_template, st.evicted
        );
    }
}
