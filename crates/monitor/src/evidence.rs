//! Evidence: each device's violations as signed statements for the log (DESIGN.md §2, the
//! evidence predicate), and the words reports and statements use for a row's fields.

use crate::{Report, Row};
use nospy_inventory::Inventory;
use nospy_manifest::Direction;
use nospy_statement::intoto::{DigestSet, ResourceDescriptor};
use nospy_statement::predicate::{self, FlowViolation, Predicate, Window};
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;

/// One signed evidence statement, ready to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The device it is about (the inventory's id).
    pub device: String,
    /// How many of the device's violation groups (rows) it carries.
    pub groups: usize,
    /// The DSSE envelope.
    pub envelope: Vec<u8>,
}

/// What [`sign`] made of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The statements, device by device in the report's order.
    pub statements: Vec<Statement>,
    /// Devices with violations but no statement, and why.
    pub skipped: Vec<(String, String)>,
}

/// Signs the violations of every device of `report` with `key`: one statement per device, or
/// as many as it takes for each to fit a log entry. A statement's subject is the device's
/// firmware (from `inventory`, whose devices the report's are), `manifests[i]` names what
/// device `i`'s flows were checked against, and `input` is the SHA-256 of the capture or flow
/// file read.
pub fn sign(
    report: &Report,
    inventory: &Inventory,
    manifests: &[Option<String>],
    input: &Sha256,
    key: &SignerKey,
) -> Evidence {
    let window = report.window.unwrap_or((0, 0));
    let window = Window {
        start: format_time(window.0),
        end: format_time(window.1),
    };
    let mut out = Evidence::default();
    let mut rows = report.violations.iter().peekable();
    while let Some(first) = rows.next() {
        let mut mine = vec![first];
        while let Some(r) = rows.next_if(|r| r.device() == first.device()) {
            mine.push(r);
        }
        let i = first.device();
        let Some(dev) = inventory.devices.get(i) else {
            continue;
        };
        let Some(firmware) = dev.firmware_sha256.as_deref().and_then(Sha256::from_hex) else {
            out.skipped.push((
                dev.device.clone(),
                "no firmware digest in the inventory, so no release to name as the subject".into(),
            ));
            continue;
        };
        let flows: Vec<FlowViolation> = mine.iter().map(|r| violation(r)).collect();
        let manifest = manifests.get(i).cloned().flatten();
        for (envelope, groups) in sign_split(
            &dev.device,
            &firmware,
            &window,
            &flows,
            manifest,
            input,
            key,
        ) {
            out.statements.push(Statement {
                device: dev.device.clone(),
                groups,
                envelope,
            });
        }
    }
    out
}

/// A row as the evidence predicate states it.
fn violation(r: &Row) -> FlowViolation {
    FlowViolation {
        direction: direction_name(r.direction()).into(),
        peer: r.peer().to_string(),
        protocol: protocol_name(r.protocol()),
        port: r.port(),
        flows: r.flows(),
        packets: r.packets(),
        bytes: r.bytes(),
        first_seen: format_time(r.first_ns()),
        last_seen: format_time(r.last_ns()),
    }
}

/// Signed evidence statements for one device's flows: one, or as many as it takes for each to
/// fit a log entry (the flows split in halves until they do). Returns each envelope with the
/// number of flow groups it carries.
fn sign_split(
    device: &str,
    firmware: &Sha256,
    window: &Window,
    flows: &[FlowViolation],
    manifest: Option<String>,
    input: &Sha256,
    key: &SignerKey,
) -> Vec<(Vec<u8>, usize)> {
    let p = Predicate::Evidence(predicate::Evidence {
        device: device.to_string(),
        window: window.clone(),
        flows: flows.to_vec(),
        manifest: manifest.clone(),
        source: DigestSet::sha256(input),
    });
    let subject = vec![ResourceDescriptor {
        digest: Some(DigestSet::sha256(firmware)),
        ..Default::default()
    }];
    let env = nospy_statement::sign(subject, &p, &[key]).to_json();
    if env.len() <= nospy_tlog::tile::MAX_ENTRY_LEN || flows.len() < 2 {
        return vec![(env, flows.len())];
    }
    let (a, b) = flows.split_at(flows.len() / 2);
    let mut out = sign_split(device, firmware, window, a, manifest.clone(), input, key);
    out.extend(sign_split(
        device, firmware, window, b, manifest, input, key,
    ));
    out
}

/// A time in nanoseconds since the epoch as RFC 3339 with milliseconds.
pub fn format_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let s = nospy_statement::time::format_rfc3339(secs);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ns / 1_000_000 % 1000)
}

/// `from-device` or `to-device`, as manifests write it.
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::FromDevice => "from-device",
        Direction::ToDevice => "to-device",
    }
}

/// An IP protocol's name (tcp, udp, icmp, icmpv6), or its number.
pub fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}
