//! Traffic against manifests.
//!
//! A [`Monitor`] is built once from the operator's inventory, each device's manifest and the
//! operator's configuration: every distinct manifest is compiled into prefix tables (one per
//! direction and address family, `table.rs`), in which a peer's address finds, with one binary
//! search, the services the manifest allows with it; DNS-name rules are kept by name; the
//! abstractions (`operator-networks`, `my-controller`, `local-networks`, `controller:<uri>`) are
//! resolved from the operator's configuration into prefixes, and `same-vendor` from the
//! inventory. The cost per flow so depends on neither the number of rules nor of devices.
//!
//! Each flow is attributed to the device or devices whose address it carries and judged from
//! each one's side: allowed; a **violation**; or **unattributable**, when only a DNS-name rule
//! could allow it and nothing tells which name its peer's address stood for: no DNS answer tied
//! the address to an allowed name, and none could have been seen (no answer reached the device
//! before the flow began, or the flow was already under way when the capture began, and no
//! resolver snapshot was given). Unattributable flows are reported apart, never allowed.

#![forbid(unsafe_code)]

mod compile;
mod delta;
mod devices;
pub mod evidence;
mod judge;
pub mod manifests;
pub mod output;
mod report;
pub mod reproduce;
mod resolve;
mod rows;
mod table;
mod tied;

pub use delta::{Counting, Delta, DeviceCounts, MergeError, Merger, NamedPeer, RowParts};
pub use devices::manifests_by_model;
pub use report::{DeviceSummary, Report, SeenNames};
pub use resolve::Resolver;
pub use rows::{Row, OPENED_BY_DEVICE, OPENED_BY_PEER, OPENER_UNKNOWN};

use compile::*;
use devices::*;
use nospy_flow::addrmap::AddrMap;
use nospy_flow::fasthash::FastMap;
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::{Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use std::net::IpAddr;
use std::sync::Arc;
use table::{FlatId, FlatTables, Table};

/// Why a monitor (or the resolver snapshot it is given) could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// Not one manifest (or none) per device of the inventory.
    ManifestCount {
        /// Manifests given.
        manifests: usize,
        /// Devices in the inventory.
        devices: usize,
    },
    /// A resolver snapshot's line (from 1) names no valid DNS name (why).
    ResolverName {
        /// The line.
        line: usize,
        /// Why the name is refused.
        problem: String,
    },
    /// A resolver snapshot's line (from 1) gives something that is not an IP address.
    ResolverAddress {
        /// The line.
        line: usize,
        /// What it gives.
        text: String,
    },
    /// A resolver snapshot's line (from 1) gives a name without addresses.
    ResolverNoAddress {
        /// The line.
        line: usize,
        /// The name.
        name: String,
    },
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::ManifestCount { manifests, devices } => write!(
                f,
                "one manifest (or none) per device is needed ({manifests} for {devices} devices)"
            ),
            SetupError::ResolverName { line, problem } => write!(f, "line {line}: {problem}"),
            SetupError::ResolverAddress { line, text } => {
                write!(f, "line {line}: {text:?} is not an IP address")
            }
            SetupError::ResolverNoAddress { line, name } => {
                write!(f, "line {line}: {name} has no addresses")
            }
        }
    }
}

impl std::error::Error for SetupError {}

/// The monitor: compiled manifests, the DNS answers seen, and what was found so far.
pub struct Monitor {
    /// Device (and its compiled manifest) by address.
    by_addr: AddrMap<Found>,
    /// Per device, in inventory order.
    devs: Vec<Dev>,
    ids: Vec<Arc<str>>,
    /// Each distinct manifest, compiled.
    compiled: Vec<Compiled>,
    /// The IPv4 prefix tables of every compiled manifest.
    v4: FlatTables,
    /// Per compiled manifest, its IPv4 tables (from-device, to-device) in `v4`.
    v4_ids: Vec<[FlatId; 2]>,
    /// Sets of services: (first, count) in `items`.
    sets: Vec<(u32, u32)>,
    items: Vec<Service>,
    /// Address to the names answers tied it to: (name, from, until).
    dns: FastMap<IpAddr, tied::Tied>,
    /// When a DNS answer first reached each client.
    first_answer: FastMap<IpAddr, u64>,
    resolver: Option<Resolver>,
    report: Report,
    violations: rows::Rows,
    unattributable: rows::Rows,
    /// Sets of allowed names that could have covered unattributable rows: the first empty.
    name_sets: Vec<Arc<[String]>>,
    /// Which of `name_sets` a compiled manifest's direction gives for a mask of its
    /// `name_services` allowing a flow.
    name_set_ids: FastMap<(u32, u8, u64), u32>,
    /// Which of `name_sets` holds these names.
    name_set_by_content: FastMap<Arc<[String]>, u32>,
    dns_kept: usize,
    /// Most DNS answers kept ([`MAX_DNS_ANSWERS`] unless [limited](Monitor::limit_dns_answers)).
    dns_most: usize,
    /// Until when answers this monitor did not read may still tie names (nanoseconds since
    /// the epoch; 0: it read every answer): see [`Monitor::answers_unread_before`].
    unread_answers_until: u64,
    /// Answers were not read before a time not known: until the next answer read (whose time
    /// then stands for it, an hour of disorder aside), as if they tie names for ever.
    unread_answers_when_unknown: bool,
    /// Devices whose flows went from 0 since the monitor began or was last [taken](Monitor::take).
    touched: Vec<u32>,
    /// DNS answers not kept because [`MAX_DNS_ANSWERS`] were. Once one was not, a flow only a
    /// name could allow is unattributable, never a violation: the answer naming its peer may
    /// have been the one not kept (anything on the wire can send answers, so a flood of them
    /// must not turn allowed flows into evidence).
    pub dns_dropped: u64,
    /// Whether the report records the names violation rows' peers stood for.
    record_names: bool,
    /// Every name a rule of a manifest names (what a delta keeps of a peer's names, with the
    /// first others that fit [`evidence::OTHER_NAMES_BYTES`]).
    named: std::collections::BTreeSet<String>,
}

/// Most DNS answers kept (memory stays bounded; beyond it answers are counted, not kept).
pub const MAX_DNS_ANSWERS: usize = 4_000_000;

/// The longest an answer ties a name to an address, whatever its TTL: a day, as common
/// resolvers cap what they cache. So that a monitor that did not read the answers before some
/// time knows when those it missed have all expired ([`Monitor::answers_unread_before`]).
pub const DNS_TTL_MOST_SECS: u64 = 86_400;

/// How much later than the flows before it an answer may come in a stream (collectors read
/// sources apart): added to the time before which answers were not read.
const ANSWER_DISORDER_NS: u64 = 3_600_000_000_000;

/// How long before a flow's start an answer may still tie a name to its peer: the longest an
/// answer ties one ([`DNS_TTL_MOST_SECS`]) and an hour of disorder. Whoever keeps answers for
/// a monitor to read again keeps them this long beyond the flows.
pub const ANSWERS_MATTER_FOR: std::time::Duration =
    std::time::Duration::from_nanos(DNS_TTL_MOST_SECS * 1_000_000_000 + ANSWER_DISORDER_NS);

/// Whether an answer missed from `missed_ns` on could still tie a name at a flow from `ns` on:
/// for a monitor that reads answers again, whether those it could not read matter.
pub fn answers_matter(missed_ns: u64, ns: u64) -> bool {
    answers_expire_after(missed_ns) > ns
}

/// What to tell people when `n` DNS answers were not kept ([`Monitor::dns_dropped`]).
pub fn answers_not_kept_said(n: u64) -> String {
    format!(
        "{n} DNS answers were not kept (a monitor keeps {MAX_DNS_ANSWERS}): from the first, flows only a name could allow are unattributable, never violations"
    )
}

/// When every answer from before `ns` (and an hour of disorder) has expired.
fn answers_expire_after(ns: u64) -> u64 {
    ns.saturating_add(DNS_TTL_MOST_SECS * 1_000_000_000)
        .saturating_add(ANSWER_DISORDER_NS)
}

/// Most distinct rows kept of each kind (violations, unattributable): 288 MB of them. Beyond,
/// the rows last in the report's order are dropped and their flows counted
/// ([`Report::flows_in_dropped_rows`]); every device's counts stay exact.
pub const MAX_ROWS: usize = 4_000_000;

impl Monitor {
    /// Compiles the manifests: `manifests[i]` is device `i`'s (of `inventory`), or `None` when no
    /// manifest is known for it. Devices given the same `Arc` share one compiled manifest.
    pub fn new(
        inventory: &Inventory,
        manifests: &[Option<Arc<Manifest>>],
        operator: &OperatorConfig,
        resolver: Option<Resolver>,
    ) -> Result<Monitor, SetupError> {
        if manifests.len() != inventory.devices.len() {
            return Err(SetupError::ManifestCount {
                manifests: manifests.len(),
                devices: inventory.devices.len(),
            });
        }
        let mut by_addr = AddrMap::with_capacity(inventory.devices.len());
        let mut vendors: Vec<&str> = Vec::new();
        let mut int = Interner::default();
        let mut compiled = Vec::new();
        let mut done: FastMap<usize, u32> = FastMap::default();
        let mut v4 = FlatTables::default();
        let mut v4_ids: Vec<[FlatId; 2]> = Vec::new();
        let mut devs = Vec::with_capacity(manifests.len());
        let mut named = std::collections::BTreeSet::new();
        for (i, (d, m)) in inventory.devices.iter().zip(manifests).enumerate() {
            let vendor = match vendors.iter().position(|v| *v == d.vendor) {
                Some(v) => v,
                None => {
                    vendors.push(&d.vendor);
                    vendors.len() - 1
                }
            } as u32;
            let c = match m {
                None => NO_MANIFEST,
                Some(m) => *done.entry(Arc::as_ptr(m) as usize).or_insert_with(|| {
                    named.extend(
                        nospy_manifest::judge::names_named(m)
                            .into_iter()
                            .map(str::to_string),
                    );
                    let mut c = compile(m, operator, &mut int);
                    v4_ids.push([v4.add(&c.dirs[0].v4), v4.add(&c.dirs[1].v4)]);
                    // Lookups read the flat copies only.
                    c.dirs[0].v4 = Table::default();
                    c.dirs[1].v4 = Table::default();
                    compiled.push(c);
                    (compiled.len() - 1) as u32
                }),
            };
            for a in &d.addresses {
                by_addr.insert(*a, Found(i as u32, c));
            }
            devs.push(Dev {
                compiled: c,
                vendor,
                flows: 0,
                violations: 0,
                unattributable: 0,
            });
        }
        Ok(Monitor {
            by_addr,
            devs,
            ids: inventory
                .devices
                .iter()
                .map(|d| Arc::from(d.device.as_str()))
                .collect(),
            compiled,
            v4,
            v4_ids,
            sets: int.sets,
            items: int.items,
            dns: FastMap::default(),
            first_answer: FastMap::default(),
            resolver,
            report: Report::default(),
            violations: rows::Rows::default(),
            unattributable: rows::Rows::default(),
            name_sets: vec![Arc::from(Vec::new())],
            name_set_ids: FastMap::default(),
            name_set_by_content: FastMap::from_iter([(Arc::from(Vec::new()), 0)]),
            dns_kept: 0,
            dns_most: MAX_DNS_ANSWERS,
            unread_answers_until: 0,
            unread_answers_when_unknown: false,
            touched: Vec::new(),
            dns_dropped: 0,
            record_names: false,
            named,
        })
    }

    /// Records a DNS answer seen in the traffic.
    pub fn dns(&mut self, seen: &DnsSeen) {
        if std::mem::take(&mut self.unread_answers_when_unknown) {
            // Those not read came before this one: they expire a day (and an hour) after.
            self.unread_answers_until = self
                .unread_answers_until
                .max(answers_expire_after(seen.ts_ns));
        }
        self.first_answer.entry(seen.client).or_insert(seen.ts_ns);
        if self.dns_kept >= self.dns_most {
            self.dns_dropped += 1;
            return;
        }
        let ttl = u64::from(seen.answer.ttl).min(DNS_TTL_MOST_SECS);
        let until = seen.ts_ns.saturating_add(ttl * 1_000_000_000);
        let names = self.dns.entry(seen.answer.addr).or_default();
        if names.add(&seen.answer.name, seen.ts_ns, until) {
            self.dns_kept += 1;
        }
    }

    /// Says that this monitor did not read the DNS answers that came before flows that started
    /// at `ns` (a worker taking over a partition's stream where another worker's parts end): an
    /// answer it missed may still tie a name to an address for up to [`DNS_TTL_MOST_SECS`]
    /// (and an hour of disorder) after, so until then a flow only a name could allow is
    /// unattributable, never a violation.
    ///
    /// `ns` 0 (not known: the flows read so far carried no time) holds them so until the
    /// first answer read, whose time then stands for it.
    pub fn answers_unread_before(&mut self, ns: u64) {
        if ns == 0 {
            self.unread_answers_when_unknown = true;
        } else {
            self.unread_answers_until = self.unread_answers_until.max(answers_expire_after(ns));
        }
    }

    /// Whether answers not read may still tie names at `t`.
    pub(crate) fn answers_unread_at(&self, t: u64) -> bool {
        self.unread_answers_when_unknown || t < self.unread_answers_until
    }

    /// Keeps at most `most` DNS answers (distinct names of an address), fewer than
    /// [`MAX_DNS_ANSWERS`]: for a smaller memory, and for tests of what happens beyond.
    pub fn limit_dns_answers(&mut self, most: usize) {
        self.dns_most = most.min(MAX_DNS_ANSWERS);
    }

    /// Whether [`Monitor::finish`] records, in [`Report::peer_names`], the DNS names each
    /// violation row's peer stood for: what signed evidence states. Off by default (it costs a
    /// lookup per distinct peer of a violation row).
    pub fn record_names(&mut self, on: bool) {
        self.record_names = on;
    }

    /// The names each violation row's peer stood for (DNS answers seen at any time, resolver
    /// entries), sorted.
    fn peer_names(&self) -> std::collections::BTreeMap<IpAddr, SeenNames> {
        let mut peer_names = std::collections::BTreeMap::new();
        for r in &self.report.violations {
            let peer = r.peer();
            if peer_names.contains_key(&peer) {
                continue;
            }
            peer_names.insert(peer, SeenNames::all(self.names_of(peer)));
        }
        peer_names
    }

    /// The names `peer` stood for (DNS answers seen so far, resolver entries), sorted, once each.
    pub(crate) fn names_of(&self, peer: IpAddr) -> Vec<String> {
        let mut names: Vec<String> = self
            .dns
            .get(&peer)
            .into_iter()
            .flat_map(tied::Tied::names)
            .map(str::to_string)
            .chain(
                self.resolver
                    .as_ref()
                    .and_then(|r| r.by_addr.get(&peer))
                    .into_iter()
                    .flatten()
                    .cloned(),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The report: rows sorted by device, direction, peer, protocol and port.
    pub fn finish(mut self) -> Report {
        let ids = &self.ids;
        let (violations, dropped) = std::mem::take(&mut self.violations).finish();
        let (unattributable, also) = std::mem::take(&mut self.unattributable).finish();
        self.report.violations = violations;
        self.report.unattributable = unattributable;
        self.report.flows_in_dropped_rows = dropped + also;
        if self.record_names {
            self.report.peer_names = Some(self.peer_names());
        }
        self.report.name_sets = std::mem::take(&mut self.name_sets);
        self.report.devices = self
            .devs
            .iter()
            .zip(ids)
            .map(|(d, id)| DeviceSummary {
                device: id.to_string(),
                flows: d.flows,
                violations: d.violations,
                unattributable: d.unattributable,
                has_manifest: d.compiled != NO_MANIFEST,
            })
            .collect();
        self.report
    }
}

impl nospy_flow::source::Sink for Monitor {
    /// Only traffic of a device of the inventory is tracked.
    fn wants(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.device_of(src).is_some() || self.device_of(dst).is_some()
    }
    fn flow(&mut self, flow: &Flow) {
        Monitor::flow(self, flow)
    }
    fn flows(&mut self, flows: &[Flow]) {
        Monitor::flows(self, flows)
    }
    fn dns(&mut self, seen: &DnsSeen) {
        Monitor::dns(self, seen)
    }
}

#[cfg(test)]
mod tests {
    use crate::rows::RowKey;

    use std::net::IpAddr;

    #[test]
    fn row_keys_keep_their_parts_and_sort_as_the_report_does() {
        let peers: Vec<IpAddr> = [
            "0.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::fffe:0:1",
        ]
        .iter()
        .map(|a| a.parse().unwrap_or(IpAddr::from([0u8; 4])))
        .collect();
        let mut keys = Vec::new();
        for device in [0u32, 1, u32::MAX] {
            for dir in [0u8, 1] {
                for &peer in &peers {
                    for proto in [1u8, 6, 17, 255] {
                        for port in [0u16, 53, 65_535] {
                            let k = RowKey::new(device, dir, peer, proto, port);
                            assert_eq!(
                                (k.device(), k.dir(), k.peer(), k.proto(), k.port()),
                                (device, dir, peer, proto, port)
                            );
                            keys.push(k);
                        }
                    }
                }
            }
        }
        let mut by_order = keys.clone();
        by_order.sort_unstable();
        let mut by_parts = keys;
        by_parts.sort_unstable_by_key(|k| (k.device(), k.dir(), k.peer(), k.proto(), k.port()));
        assert_eq!(by_order, by_parts);
    }
}
