//! The report of a window (or a range of windows, or everything): every partition's parts for
//! it merged into the report one `nospy monitor` process prints for the same flows.

use crate::transport::{Transport, TransportError};
use crate::wire::{decode_part, Assembler};
use bytes::Bytes;
use nospy_flow::source::Stats;
use nospy_monitor::{Merger, Report};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What workers record once about the devices they judge (`setup` in the state store): the
/// inventory's devices in order, whether each has a manifest and where it came from, and the
/// window length.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The inventory's SHA-256 (as [`crate::inventory_digest`]).
    pub inventory: [u8; 32],
    /// Window length, seconds.
    pub window_secs: u64,
    /// Per device: id, whether it has a manifest, the `manifest` object of the report, a note.
    pub devices: Vec<(String, bool, Value, Option<String>)>,
}

/// Why a stored setup could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// It is not JSON.
    NotJson(String),
    /// A field is missing or of the wrong kind.
    Field {
        /// Which (`devices[3].device`).
        field: String,
        /// What it should be.
        problem: &'static str,
    },
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::NotJson(e) => write!(f, "not JSON: {e}"),
            SetupError::Field { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl Setup {
    /// As stored.
    pub fn to_bytes(&self) -> Bytes {
        let v = json!({
            "inventory_sha256": hex(&self.inventory),
            "window_secs": self.window_secs,
            "devices": self.devices.iter().map(|(d, has, m, note)| json!({
                "device": d, "has_manifest": has, "manifest": m, "note": note,
            })).collect::<Vec<_>>(),
        });
        Bytes::from(v.to_string())
    }

    /// Reads what [`Setup::to_bytes`] wrote.
    pub fn from_bytes(b: &[u8]) -> Result<Setup, SetupError> {
        let v: Value = serde_json::from_slice(b).map_err(|e| SetupError::NotJson(e.to_string()))?;
        let bad = |field: String, problem: &'static str| SetupError::Field { field, problem };
        let inv = v["inventory_sha256"]
            .as_str()
            .and_then(unhex)
            .ok_or_else(|| bad("inventory_sha256".into(), "not 64 hex digits"))?;
        let window_secs = v["window_secs"]
            .as_u64()
            .filter(|&w| w > 0)
            .ok_or_else(|| bad("window_secs".into(), "not a positive number"))?;
        let devices = v["devices"]
            .as_array()
            .ok_or_else(|| bad("devices".into(), "not a list"))?
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Ok((
                    d["device"]
                        .as_str()
                        .ok_or_else(|| bad(format!("devices[{i}].device"), "not a string"))?
                        .to_string(),
                    d["has_manifest"].as_bool().ok_or_else(|| {
                        bad(format!("devices[{i}].has_manifest"), "not true or false")
                    })?,
                    d["manifest"].clone(),
                    d["note"].as_str().map(str::to_string),
                ))
            })
            .collect::<Result<_, SetupError>>()?;
        Ok(Setup {
            inventory: inv,
            window_secs,
            devices,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Why there is no report.
#[derive(Debug)]
pub enum ReportError {
    /// The engine failed.
    Transport(TransportError),
    /// What is stored cannot be read or does not fit together.
    Bad(String),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Transport(e) => e.fmt(f),
            ReportError::Bad(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ReportError {}

impl From<TransportError> for ReportError {
    fn from(e: TransportError) -> Self {
        ReportError::Transport(e)
    }
}

/// A merged report.
#[derive(Debug)]
pub struct Merged {
    /// The report, as one monitor would have made it.
    pub report: Report,
    /// The sources' counts (every source's, whatever the windows).
    pub stats: Stats,
    /// What the workers recorded.
    pub setup: Setup,
    /// The windows merged (start, Unix seconds).
    pub windows: BTreeSet<u64>,
    /// Messages on the flow stream that were not batches (of the parts merged).
    pub refused: u64,
    /// Partitions whose chains have parts.
    pub partitions: BTreeSet<u32>,
}

/// Merges the parts of the windows starting in `from..=to` (all when `None`).
pub async fn merge<T: Transport>(t: &T, range: Option<(u64, u64)>) -> Result<Merged, ReportError> {
    let (setup_bytes, _) = t.get("setup").await?.ok_or_else(|| {
        ReportError::Bad("no worker has run yet: the state store has no setup".into())
    })?;
    let setup = Setup::from_bytes(&setup_bytes)
        .map_err(|e| ReportError::Bad(format!("the stored setup: {e}")))?;
    let ids: Vec<String> = setup.devices.iter().map(|d| d.0.clone()).collect();
    let has: Vec<bool> = setup.devices.iter().map(|d| d.1).collect();
    let mut merger = Merger::new(&ids, &has);
    let mut windows = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    let mut refused = 0;
    // Chunked parts are read whole once their last chunk is; chunks of parts never appended
    // whole are passed over.
    let mut assembler = Assembler::default();
    for (k, message) in t.all_parts().await?.iter().enumerate() {
        let bytes = assembler
            .add(message)
            .map_err(|e| ReportError::Bad(format!("part {} of the rows stream: {e}", k + 1)))?;
        let Some(bytes) = bytes else { continue };
        let part = decode_part(&bytes)
            .map_err(|e| ReportError::Bad(format!("part {} of the rows stream: {e}", k + 1)))?;
        if part.inventory != setup.inventory {
            return Err(ReportError::Bad(format!(
                "part {} of the rows stream (partition {}) was counted under another inventory ({}) than the setup's ({}): one deployment, one inventory",
                k + 1,
                part.partition,
                hex(&part.inventory),
                hex(&setup.inventory)
            )));
        }
        partitions.insert(part.partition);
        refused += part.refused;
        for (w, d) in &part.windows {
            if range.is_some_and(|(a, b)| *w < a || *w > b) {
                continue;
            }
            windows.insert(*w);
            merger.add(d).map_err(|e| {
                ReportError::Bad(format!(
                    "part {} of the rows stream (partition {}): {e}",
                    k + 1,
                    part.partition
                ))
            })?;
        }
    }
    let mut stats = Stats::default();
    for (key, _) in t.keys("input.").await? {
        let Some((v, _)) = t.get(&key).await? else {
            continue;
        };
        let v: Value = serde_json::from_slice(&v)
            .map_err(|e| ReportError::Bad(format!("{key}: not JSON: {e}")))?;
        nospy_monitor::output::add_input(&mut stats, &v);
        stats.unwanted_packets += v["unknown_device_packets"].as_u64().unwrap_or(0);
    }
    Ok(Merged {
        report: merger.finish(),
        stats,
        setup,
        windows,
        refused,
        partitions,
    })
}

/// The report's JSON: the keys of `nospy monitor --json`, each device's `manifest` as the
/// workers recorded it, and `input.stream_messages_refused`.
pub fn merged_json(m: &Merged) -> Value {
    let n = m.setup.devices.len();
    let notes: Vec<Option<String>> = m.setup.devices.iter().map(|d| d.3.clone()).collect();
    let mut v = nospy_monitor::output::report_json(&m.report, &m.stats, &vec![None; n], &notes);
    if let Some(devs) = v["devices"].as_array_mut() {
        for (d, s) in devs.iter_mut().zip(&m.setup.devices) {
            d["manifest"] = s.2.clone();
        }
    }
    v["input"]["stream_messages_refused"] = json!(m.refused);
    v
}

/// The evidence of one partition's closed window starting at `start` (Unix seconds): the
/// window's deltas merged into its report, whose window is the window's bounds and whose source
/// digest is the SHA-256 of that report's JSON, so that a window handed on twice signs the same
/// bytes (a duplicate in the log, not a second entry). `bases[i]` is what device `i`'s flows
/// were judged against and `operator` resolves its abstractions, as [`nospy_monitor::evidence::sign`]
/// takes them. No statement when the window has no violation.
pub fn sign_window(
    setup: &Setup,
    inventory: &nospy_inventory::Inventory,
    bases: &[Option<nospy_monitor::evidence::Basis>],
    operator: &nospy_inventory::OperatorConfig,
    key: &nospy_tlog::note::SignerKey,
    start: u64,
    deltas: &[nospy_monitor::Delta],
) -> Result<nospy_monitor::evidence::Evidence, nospy_monitor::MergeError> {
    let ids: Vec<String> = setup.devices.iter().map(|d| d.0.clone()).collect();
    let has: Vec<bool> = setup.devices.iter().map(|d| d.1).collect();
    let mut merger = Merger::new(&ids, &has);
    for d in deltas {
        merger.add(d)?;
    }
    let mut report = merger.finish();
    if report.violations.is_empty() {
        return Ok(nospy_monitor::evidence::Evidence::default());
    }
    report.window = Some((
        start.saturating_mul(1_000_000_000),
        (start.saturating_add(setup.window_secs))
            .saturating_mul(1_000_000_000)
            .saturating_sub(1),
    ));
    let n = ids.len();
    let json = nospy_monitor::output::report_json(
        &report,
        &Stats::default(),
        &vec![None; n],
        &vec![None; n],
    );
    let input = nospy_tlog::Sha256::of(json.to_string().as_bytes());
    Ok(nospy_monitor::evidence::sign(
        &report, inventory, bases, operator, &input, key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_setup_reads_back_and_a_damaged_one_names_its_field() {
        let s = Setup {
            inventory: [7; 32],
            window_secs: 300,
            devices: vec![
                ("d1".into(), true, json!({"from": "log"}), None),
                ("d2".into(), false, Value::Null, Some("no manifest".into())),
            ],
        };
        let back = Setup::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.to_bytes(), s.to_bytes());
        assert!(matches!(
            Setup::from_bytes(b"{"),
            Err(SetupError::NotJson(_))
        ));
        let damaged = String::from_utf8(s.to_bytes().to_vec())
            .unwrap()
            .replace("\"device\":\"d2\"", "\"device\":2");
        assert_eq!(
            Setup::from_bytes(damaged.as_bytes()),
            Err(SetupError::Field {
                field: "devices[1].device".into(),
                problem: "not a string"
            })
        );
        let zero = String::from_utf8(s.to_bytes().to_vec())
            .unwrap()
            .replace("\"window_secs\":300", "\"window_secs\":0");
        assert!(matches!(
            Setup::from_bytes(zero.as_bytes()),
            Err(SetupError::Field { ref field, .. }) if field == "window_secs"
        ));
    }
}
