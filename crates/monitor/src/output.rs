//! The report `nospy monitor --json` prints: its keys are a format (DESIGN.md §12) that scripts
//! read and that a report merged from several workers must reproduce, so it is written here,
//! once, not by each command that prints one.

use crate::evidence::{direction_name, format_time, protocol_name};
use crate::{Report, Row};
use nospy_flow::source::Stats;
use nospy_tlog::Sha256;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where a device's manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestFrom {
    /// A manifest file given by the operator, with the SHA-256 of its bytes.
    File(PathBuf, Sha256),
    /// The release of the device's firmware in the log.
    Log {
        /// The release entry's index.
        index: u64,
        /// Whether the agreement admits the release.
        admitted: bool,
        /// The release's version.
        version: String,
    },
}

impl ManifestFrom {
    /// The `manifest` object of a device in the report.
    pub fn json(&self) -> Value {
        match self {
            ManifestFrom::File(p, _) => json!({"from": "file", "path": p.display().to_string()}),
            ManifestFrom::Log {
                index,
                admitted,
                version,
            } => json!({"from": "log", "index": index, "version": version, "admitted": admitted}),
        }
    }

    /// What an evidence statement names as the manifest the flows were checked against; `log`
    /// names the log the release entry is in.
    pub fn evidence_name(&self, log: Option<&str>) -> String {
        match self {
            ManifestFrom::File(p, h) => format!(
                "file {} (sha256:{})",
                p.file_name().unwrap_or_default().to_string_lossy(),
                h.to_hex()
            ),
            ManifestFrom::Log { index, .. } => match log {
                Some(l) => format!("release entry {index} of the log at {l}"),
                None => format!("release entry {index}"),
            },
        }
    }
}

/// One violation or unattributable row of the report.
pub fn row_json(report: &Report, r: &Row) -> Value {
    let mut v = json!({
        "device": report.device_id(r),
        "direction": direction_name(r.direction()),
        "peer": r.peer().to_string(),
        "protocol": protocol_name(r.protocol()),
        "port": r.port(),
        "flows": r.flows(),
        "packets": r.packets(),
        "bytes": r.bytes(),
        "first_seen": format_time(r.first_ns()),
        "last_seen": format_time(r.last_ns()),
    });
    let names = report.names(r);
    if !names.is_empty() {
        v["could_be"] = json!(names);
    }
    v
}

/// The whole report: totals, violations, unattributable rows, flows and packets of no known
/// device, each device with where its manifest came from (`from` and `notes` are per device, in
/// the inventory's order), and what the input held.
pub fn report_json(
    r: &Report,
    st: &Stats,
    from: &[Option<ManifestFrom>],
    notes: &[Option<String>],
) -> Value {
    json!({
        "totals": {"flows": r.flows, "packets": r.packets, "bytes": r.bytes},
        "violations": r.violations.iter().map(|v| row_json(r, v)).collect::<Vec<_>>(),
        "unattributable": r.unattributable.iter().map(|v| row_json(r, v)).collect::<Vec<_>>(),
        "unknown_device_flows": r.unknown_device_flows,
        "flows_in_dropped_rows": r.flows_in_dropped_rows,
        "unknown_device_packets": st.unwanted_packets,
        "devices": r.devices.iter().zip(from).zip(notes).map(|((d, f), n)| {
            let mut v = json!({
                "device": d.device,
                "flows": d.flows,
                "violations": d.violations,
                "unattributable": d.unattributable,
                "manifest": f.as_ref().map(ManifestFrom::json),
            });
            if let Some(n) = n {
                v["note"] = json!(n);
            }
            v
        }).collect::<Vec<_>>(),
        "input": input_json(st),
    })
}

/// The report's `input` object: what reading the source counted. A collector keeps the same
/// object per source, which a merged report reads back with [`add_input`].
pub fn input_json(st: &Stats) -> Value {
    json!({
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
    })
}

/// Adds the counts of an `input` object ([`input_json`]) to `st` (a key that is missing or not
/// a number counts 0).
pub fn add_input(st: &mut Stats, v: &Value) {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    st.packets += n("packets");
    st.not_ip += n("not_ip");
    st.bad_packets += n("bad_packets");
    st.other_link += n("other_link_types");
    st.dns_responses += n("dns_responses");
    st.dns_malformed += n("dns_malformed");
    st.evicted += n("flows_ended_early");
    st.export.messages += n("export_messages");
    st.export.malformed += n("export_malformed");
    st.export.no_template += n("export_records_without_template");
}
