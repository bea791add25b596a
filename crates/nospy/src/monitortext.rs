//! The monitor's report as text, for `nospy monitor` and `nospy monitor report` alike.

use nospy_flow::source::Stats;
use nospy_monitor::evidence::{direction_name, format_time, protocol_name};
use nospy_monitor::output::ManifestFrom;
use nospy_monitor::{Report, Row};
use nospy_tlog::Sha256;
use std::path::PathBuf;

/// A device's manifest origin as the report's `manifest` object has it (the file's digest is
/// not in it, and is not needed to print).
pub fn manifest_from_json(v: &serde_json::Value) -> Option<ManifestFrom> {
    match v["from"].as_str()? {
        "file" => Some(ManifestFrom::File(
            PathBuf::from(v["path"].as_str().unwrap_or("")),
            Sha256([0; 32]),
        )),
        "log" => Some(ManifestFrom::Log {
            index: v["index"].as_u64()?,
            admitted: v["admitted"].as_bool()?,
            version: v["version"].as_str().unwrap_or("").to_string(),
        }),
        _ => None,
    }
}

fn row_text(report: &Report, r: &Row) -> String {
    format!(
        "  {:<16} {:<11} {:<40} {:>5}/{:<6} {:>6} flows {:>8} packets {:>10} bytes  {} .. {}",
        report.device_id(r),
        direction_name(r.direction()),
        r.peer(),
        r.port(),
        protocol_name(r.protocol()),
        r.flows(),
        r.packets(),
        r.bytes(),
        format_time(r.first_ns()),
        format_time(r.last_ns())
    )
}

/// Prints the report as text on standard output (notes on standard error).
pub fn print_text(r: &Report, st: &Stats, from: &[Option<ManifestFrom>], notes: &[Option<String>]) {
    use std::fmt::Write as _;
    let mut out = String::new();
    macro_rules! println {
        ($($t:tt)*) => {{ let _ = writeln!(out, $($t)*); }};
    }
    println!(
        "{} flows ({} packets, {} bytes); {} violations in {} groups, {} unattributable flows; {} flows and {} packets of no known device",
        r.flows,
        r.packets,
        r.bytes,
        r.devices.iter().map(|d| d.violations).sum::<u64>(),
        r.violations.len(),
        r.devices.iter().map(|d| d.unattributable).sum::<u64>(),
        r.unknown_device_flows,
        st.unwanted_packets
    );
    if r.flows_in_dropped_rows > 0 {
        println!(
            "{} violating or unattributable flows are counted in their devices' summaries but not listed: beyond {} distinct rows of a kind, the last rows were dropped",
            r.flows_in_dropped_rows,
            nospy_monitor::MAX_ROWS
        );
    }
    if !r.violations.is_empty() {
        println!("\nVIOLATIONS (device, direction, peer, port/protocol):");
        for v in &r.violations {
            println!("{}", row_text(r, v));
        }
    }
    if !r.unattributable.is_empty() {
        println!("\nUNATTRIBUTABLE (only a DNS-name rule could allow these, and no DNS answer in the input ties the peer to it):");
        for v in &r.unattributable {
            println!("{}  could be: {}", row_text(r, v), r.names(v).join(", "));
        }
    }
    println!("\nDEVICES:");
    for ((d, f), n) in r.devices.iter().zip(from).zip(notes) {
        let status = if !d.has_manifest {
            match n {
                Some(n) => format!("no manifest ({n}): flows counted, not judged"),
                None => "no manifest: flows counted, not judged".to_string(),
            }
        } else if let (
            Some(ManifestFrom::Log {
                admitted: false,
                index,
                ..
            }),
            true,
        ) = (f, d.violations == 0)
        {
            format!("conforms to release entry {index}, whose firmware is not admitted")
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
