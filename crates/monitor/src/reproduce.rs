//! A capture read again for one evidence statement: the device (its addresses as the evidence
//! records them) judged against the release's manifest with the evidence's resolutions, as the
//! monitor did, and its rows made as [`crate::evidence::sign`] makes them. What a verifier given
//! the capture compares the evidence with: the capture's digest, its window, the rows.

use crate::evidence::{format_time, Judging};
use crate::Monitor;
use nospy_flow::capture::CaptureError;
use nospy_flow::netflow::Collector;
use nospy_flow::source::{read_exports_from, read_traffic_from, Sink, Stats};
use nospy_inventory::{Device, Function, Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_policy::breach::{EvidenceVerdict, Failure};
use nospy_statement::predicate::{Evidence, FlowViolation, Window};
use nospy_tlog::Sha256;
use sha2::Digest as _;
use std::sync::Arc;

/// What the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Captured packets (pcap, pcapng).
    Packets,
    /// Captured flow export packets (NetFlow v5/v9, IPFIX).
    Flows,
}

/// The capture read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reproduced {
    /// SHA-256 of the file's bytes.
    pub source: Sha256,
    /// Its span: the first and last packet of any flow in it.
    pub window: Window,
    /// The device's rows, as evidence states them.
    pub rows: Vec<FlowViolation>,
    /// The same rows stating every name their peer stood for, as evidence signed before rows
    /// bounded them ([`crate::evidence::OTHER_NAMES_BYTES`]) did.
    pub rows_every_name: Vec<FlowViolation>,
}

/// Why a capture does not reproduce a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// The capture covers another window.
    Window,
    /// The capture's bytes are not those the evidence names.
    Source,
    /// A row of the evidence the capture does not yield as stated.
    Rows,
}

/// Reads `input` as the monitor would have for the device `ev` is about: the device with the
/// addresses `ev` records, of the manifest's vendor and model (running `firmware`), and every
/// peer `ev` marks as of the same vendor as another device of that vendor.
pub fn reproduce(
    ev: &Evidence,
    firmware: &Sha256,
    manifest: &Arc<Manifest>,
    input: impl std::io::Read,
    kind: Capture,
) -> Result<Reproduced, String> {
    let device = |id: String, addresses| Device {
        device: id,
        vendor: manifest.device.vendor.clone(),
        model: manifest.device.model.clone(),
        function: Function::Other,
        technology: String::new(),
        site: String::new(),
        sensitive: false,
        addresses,
        firmware_sha256: Some(firmware.to_hex()),
        weight: 1.0,
        replacement_cost: 0.0,
    };
    let mut devices = vec![device(ev.device.clone(), ev.device_addresses.clone())];
    let mut peers: Vec<std::net::IpAddr> = ev
        .flows
        .iter()
        .filter(|f| f.same_vendor)
        .filter_map(|f| f.peer.parse().ok())
        .filter(|p| !ev.device_addresses.contains(p))
        .collect();
    peers.sort();
    peers.dedup();
    for (i, p) in peers.iter().enumerate() {
        devices.push(device(format!("same-vendor-peer-{i}"), vec![*p]));
    }
    let inventory = Inventory { devices };
    let mut manifests = vec![Some(manifest.clone())];
    manifests.resize(inventory.devices.len(), None);
    let res = ev.resolutions.clone().unwrap_or_default();
    let operator = OperatorConfig::from(res.clone());
    let mut monitor =
        Monitor::new(&inventory, &manifests, &operator, None).map_err(|e| e.to_string())?;
    monitor.record_names(true);
    // Every flow is handed to the monitor (a flow of no device is only counted), so that the
    // window is the capture's whole span, which the monitor's window lies within whatever its
    // inventory was.
    let (_, source) = read_hashed(
        input,
        0,
        kind,
        &mut Everything(&mut monitor),
        &mut |_, _| {},
    )
    .map_err(|e| e.to_string())?;
    let report = monitor.finish();
    let (a, b) = report.window.unwrap_or((0, 0));
    let mine: Vec<&crate::Row> = report
        .violations
        .iter()
        .filter(|r| r.device() == 0)
        .collect();
    let judging = Judging::new(&report, &inventory);
    let (rows, _) = judging.rows(0, &mine, manifest, &res);
    let (rows_every_name, _) = judging.stating_every_name().rows(0, &mine, manifest, &res);
    Ok(Reproduced {
        source,
        window: Window {
            start: format_time(a),
            end: format_time(b),
        },
        rows,
        rows_every_name,
    })
}

/// Reads a capture of `kind` into `sink`, streamed (it may be larger than memory) and hashed on
/// the way: what was read, and the SHA-256 of its bytes (the source an evidence statement
/// names). `total` (the input's size, 0 when not known) is for `progress` (bytes read, total).
pub fn read_hashed(
    input: impl std::io::Read,
    total: usize,
    kind: Capture,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Stats, Sha256), CaptureError> {
    let mut src = Hashing {
        inner: input,
        hash: sha2::Sha256::new(),
    };
    let stats = match kind {
        Capture::Packets => read_traffic_from(&mut src, total, sink, progress),
        Capture::Flows => read_exports_from(&mut src, total, &mut Collector::new(), sink, progress),
    }?;
    Ok((stats, Sha256(src.hash.finalize().into())))
}

/// The monitor, handed every flow of the source.
struct Everything<'a>(&'a mut Monitor);

impl nospy_flow::source::Sink for Everything<'_> {
    fn flow(&mut self, f: &nospy_flow::Flow) {
        self.0.flow(f)
    }
    fn flows(&mut self, f: &[nospy_flow::Flow]) {
        self.0.flows(f)
    }
    fn dns(&mut self, seen: &nospy_flow::DnsSeen) {
        self.0.dns(seen)
    }
}

/// An evidence time (RFC 3339, milliseconds as evidence writes them) in milliseconds.
fn millis(t: &str) -> Option<i128> {
    let odt =
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    Some(odt.unix_timestamp_nanos() / 1_000_000)
}

/// Whether the capture read again reproduces `ev`: its window lies within the capture's span,
/// the capture's bytes are those `ev` names, and every row of `ev` is yielded exactly as
/// stated (a statement split to fit a log entry carries part of the rows): its names bounded
/// as a monitor bounds them now, or every name, as before it did.
pub fn compare(ev: &Evidence, r: &Reproduced) -> Result<String, (Mismatch, String)> {
    let within = match (
        millis(&ev.window.start),
        millis(&ev.window.end),
        millis(&r.window.start),
        millis(&r.window.end),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => c <= a && b <= d,
        _ => false,
    };
    if !within {
        return Err((
            Mismatch::Window,
            format!(
                "the capture covers {} to {}, the evidence's window {} to {} is not within it",
                r.window.start, r.window.end, ev.window.start, ev.window.end
            ),
        ));
    }
    if ev.source.get_sha256() != Some(r.source) {
        return Err((
            Mismatch::Source,
            format!(
                "the capture's SHA-256 is {}, not the evidence's source",
                r.source.to_hex()
            ),
        ));
    }
    for (i, row) in ev.flows.iter().enumerate() {
        if !r.rows.contains(row) && !r.rows_every_name.contains(row) {
            return Err((
                Mismatch::Rows,
                format!(
                    "row {} ({} {} {} port {}) is not what the capture yields for the device",
                    i + 1,
                    row.direction,
                    row.peer,
                    row.protocol,
                    row.port
                ),
            ));
        }
    }
    Ok(format!(
        "the capture (SHA-256 {}) yields all {} rows, of the {} it yields for the device",
        r.source.to_hex(),
        ev.flows.len(),
        r.rows.len()
    ))
}

/// The capture check of a verified evidence entry ([`EvidenceVerdict::capture`]): the capture
/// (`name`, opened by `open`) read again for the evidence's device must reproduce the evidence
/// ([`compare`]). Made only when every earlier check held; otherwise recorded as not made. A
/// capture that cannot be opened is the caller's error, not the evidence's failure.
pub fn check_capture<R: std::io::Read>(
    v: &mut EvidenceVerdict,
    kind: Capture,
    name: &str,
    open: impl FnOnce() -> std::io::Result<R>,
) -> std::io::Result<()> {
    let outcome = match (&v.evidence, &v.manifest, &v.firmware) {
        (Some(ev), Some(m), Some(fw)) if v.holds => {
            let unreadable = |e: String| (Failure::CaptureUnreadable, format!("{name}: {e}"));
            let input = open()?;
            Sha256::from_hex(fw)
                .ok_or_else(|| unreadable(format!("the evidence's firmware {fw:?} is no digest")))
                .and_then(|fw| {
                    let m = Arc::new(m.clone());
                    reproduce(ev, &fw, &m, std::io::BufReader::new(input), kind).map_err(unreadable)
                })
                .and_then(|r| {
                    compare(ev, &r).map_err(|(m, why)| {
                        let f = match m {
                            Mismatch::Window => Failure::CaptureWindow,
                            Mismatch::Source => Failure::CaptureChanged,
                            Mismatch::Rows => Failure::CaptureRows,
                        };
                        (f, why)
                    })
                })
        }
        _ => Ok(String::new()),
    };
    v.capture(outcome);
    Ok(())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
