//! What a monitor found: the report, its rows and each device's summary.

use crate::rows::Row;
use std::sync::Arc;

/// Per device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceSummary {
    /// The device's id.
    pub device: String,
    /// Flows it took part in.
    pub flows: u64,
    /// Of which violations.
    pub violations: u64,
    /// Of which unattributable.
    pub unattributable: u64,
    /// Whether a manifest was known for it (without one, its flows are counted, not judged).
    pub has_manifest: bool,
}

/// What the monitor found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Flows judged or counted.
    pub flows: u64,
    /// Their packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Violations, by device, direction, peer, protocol and port.
    pub violations: Vec<Row>,
    /// Unattributable flows, the same way.
    pub unattributable: Vec<Row>,
    /// Flows none of whose addresses belongs to a device of the inventory.
    pub unknown_device_flows: u64,
    /// Violations and unattributable flows whose rows were dropped because [`MAX_ROWS`](crate::MAX_ROWS) rows
    /// were kept (counted in their devices' summaries all the same).
    pub flows_in_dropped_rows: u64,
    /// Per device, in inventory order.
    pub devices: Vec<DeviceSummary>,
    /// The sets of allowed names unattributable rows could stand for (see [`Report::names`]).
    pub name_sets: Vec<Arc<[String]>>,
    /// The observation window: the first and last packet of any flow (nanoseconds since the
    /// Unix epoch), `None` before the first flow.
    pub window: Option<(u64, u64)>,
    /// The DNS names each violation row's peer stood for (answers seen at any time, resolver
    /// entries), for evidence to record; `None` when not known (a report merged from parts
    /// that did not record them).
    pub peer_names: Option<std::collections::BTreeMap<std::net::IpAddr, SeenNames>>,
}

/// The names a peer's address stood for, as a report keeps them for evidence: all of them
/// (one process), or (merged from parts) those that evidence can state of any device's rows
/// (see [`crate::evidence::OTHER_NAMES_BYTES`]), with how many there were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenNames {
    /// The names, sorted, once each.
    pub names: Vec<String>,
    /// How many names the address stood for: `names.len()`, or more when some were not kept.
    pub total: u64,
}

impl SeenNames {
    /// All of `names` (sorted, once each).
    pub fn all(names: Vec<String>) -> SeenNames {
        SeenNames {
            total: names.len() as u64,
            names,
        }
    }
}

impl Report {
    /// An unattributable row's allowed names that could have covered its peer, sorted (of its
    /// flows, those of the set numbered first); none for a violation.
    pub fn names(&self, row: &Row) -> &[String] {
        self.name_sets
            .get(row.agg.names as usize)
            .map_or(&[], |n| &n[..])
    }

    /// The id of a row's device.
    pub fn device_id(&self, row: &Row) -> &str {
        self.devices
            .get(row.device())
            .map_or("", |d| d.device.as_str())
    }
}
