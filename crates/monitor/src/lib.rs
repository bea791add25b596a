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

pub mod evidence;
mod rows;
mod table;

use nospy_flow::fasthash::FastMap;
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::{Inventory, OperatorConfig};
use nospy_manifest::{Direction, Initiator, Manifest, Peer, Ports, Prefix, Protocol};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use table::{FlatId, FlatTables, Table};

/// One allowed service: what a rule allows once its peer matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Service {
    protocol: Protocol,
    ports: Ports,
    device_ports: Ports,
    initiated_by: Option<Initiator>,
}

/// A flow as one device sees it.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// The device's own address in the flow.
    device_addr: IpAddr,
    direction: Direction,
    proto: u8,
    peer_port: u16,
    device_port: u16,
    /// Whether the device opened the flow, when that is known.
    device_opened: Option<bool>,
}

impl Service {
    #[inline]
    fn allows(&self, s: &Side) -> bool {
        self.protocol.matches(s.proto)
            && (!matches!(s.proto, 6 | 17)
                || (self.ports.contains(s.peer_port) && self.device_ports.contains(s.device_port)))
            && match (self.initiated_by, s.device_opened) {
                (Some(Initiator::Device), Some(false)) | (Some(Initiator::Peer), Some(true)) => {
                    s.proto != 6
                }
                _ => true,
            }
    }
}

/// One direction of a compiled manifest.
#[derive(Default)]
struct DirRules {
    /// Prefix rules: address ranges naming sets of services (see [`Monitor`]'s `sets`).
    v4: Table<u32>,
    v6: Table<u128>,
    /// DNS-name rules by name.
    names: FastMap<String, Vec<Service>>,
    /// Every service a DNS-name rule allows (to tell unattributable flows from violations).
    name_services: Vec<Service>,
    /// `same-vendor` services.
    same_vendor: Vec<Service>,
}

/// A manifest compiled for matching.
struct Compiled {
    dirs: [DirRules; 2],
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::FromDevice => 0,
        Direction::ToDevice => 1,
    }
}

fn range(p: &Prefix) -> (bool, u128, u128) {
    match p.addr() {
        IpAddr::V4(a) => {
            let host = 32 - p.len() as u32;
            let start = u32::from(a) as u128;
            (true, start, start + ((1u128 << host) - 1))
        }
        IpAddr::V6(a) => {
            let host = 128 - p.len() as u32;
            let start = u128::from(a);
            let span = if host == 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
            (false, start, start + span)
        }
    }
}

fn key(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (true, u32::from(a) as u128),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (true, u32::from(v4) as u128),
            None => (false, u128::from(a)),
        },
    }
}

/// Why a monitor could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// Names to addresses, as the operator's resolver answered (a snapshot file).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    by_addr: FastMap<IpAddr, Vec<String>>,
}

impl Resolver {
    /// Reads a snapshot: one name per line followed by its addresses, separated by spaces or
    /// commas (`use1-api.tplinkra.com 52.209.43.100 52.213.21.82`); `#` starts a comment. Errors
    /// name the line.
    pub fn parse(text: &str) -> Result<Resolver, String> {
        let mut r = Resolver::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|p| !p.is_empty());
            let name = parts.next().unwrap_or_default();
            let name =
                nospy_manifest::dns_name(name).map_err(|e| format!("line {}: {e}", i + 1))?;
            let mut any = false;
            for a in parts {
                let addr: IpAddr = a
                    .parse()
                    .map_err(|_| format!("line {}: {a:?} is not an IP address", i + 1))?;
                r.by_addr.entry(addr).or_default().push(name.clone());
                any = true;
            }
            if !any {
                return Err(format!("line {}: {name} has no addresses", i + 1));
            }
        }
        Ok(r)
    }
}

/// One line of the report: flows of one device, direction, peer, protocol and port, with
/// their counts. Kept as the monitor gathers it (packed, so that hundreds of thousands of rows
/// are sorted and handed over without being copied into another shape); read it through its
/// methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    key: RowKey,
    agg: Agg,
}

impl Row {
    /// The device: its index in [`Report::devices`] (the inventory's order).
    pub fn device(&self) -> usize {
        self.key.device() as usize
    }

    /// From the device's side.
    pub fn direction(&self) -> Direction {
        if self.key.dir() == 0 {
            Direction::FromDevice
        } else {
            Direction::ToDevice
        }
    }

    /// The other side.
    pub fn peer(&self) -> IpAddr {
        self.key.peer()
    }

    /// IP protocol number.
    pub fn protocol(&self) -> u8 {
        self.key.proto()
    }

    /// The service port: the peer's for from-device flows, the device's for to-device flows.
    pub fn port(&self) -> u16 {
        self.key.port()
    }

    /// Flows.
    pub fn flows(&self) -> u64 {
        self.agg.flows
    }

    /// Packets.
    pub fn packets(&self) -> u64 {
        self.agg.packets
    }

    /// Bytes.
    pub fn bytes(&self) -> u64 {
        self.agg.bytes
    }

    /// First packet, nanoseconds since the Unix epoch.
    pub fn first_ns(&self) -> u64 {
        self.agg.first_ns
    }

    /// Last packet, nanoseconds since the Unix epoch.
    pub fn last_ns(&self) -> u64 {
        self.agg.last_ns
    }
}

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
    /// Violations and unattributable flows whose rows were dropped because [`MAX_ROWS`] rows
    /// were kept (counted in their devices' summaries all the same).
    pub flows_in_dropped_rows: u64,
    /// Per device, in inventory order.
    pub devices: Vec<DeviceSummary>,
    /// The sets of allowed names unattributable rows could stand for (see [`Report::names`]).
    pub name_sets: Vec<Arc<[String]>>,
    /// The observation window: the first and last packet of any flow (nanoseconds since the
    /// Unix epoch), `None` before the first flow.
    pub window: Option<(u64, u64)>,
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

/// A report row's key, packed small into three words whose order is the report's (device,
/// direction, peer with IPv4 before IPv6, protocol, port): rows are sorted and merged by it
/// for every flow judged, and the rows of a large input outgrow the caches.
///
/// The words: `[device (32) | direction (1) | IPv6 (1) | peer bits 127..98]`,
/// `[peer bits 97..34]`, `[6 unused | peer bits 33..0 | protocol (8) | port (16)]`, where an IPv4
/// peer (or an IPv4-mapped IPv6 one) is its 32 bits and the IPv6 bit is clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RowKey([u64; 3]);

impl RowKey {
    fn new(device: u32, dir: u8, peer: IpAddr, proto: u8, port: u16) -> RowKey {
        let (v6, p) = match peer {
            IpAddr::V4(a) => (0, u128::from(u32::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => (0, u128::from(u32::from(v4))),
                None => (1, u128::from(a)),
            },
        };
        RowKey([
            (u64::from(device) << 32) | (u64::from(dir & 1) << 31) | (v6 << 30) | (p >> 98) as u64,
            (p >> 34) as u64,
            ((p as u64 & ((1 << 34) - 1)) << 24) | (u64::from(proto) << 16) | u64::from(port),
        ])
    }

    fn device(&self) -> u32 {
        (self.0[0] >> 32) as u32
    }

    fn dir(&self) -> u8 {
        (self.0[0] >> 31) as u8 & 1
    }

    fn proto(&self) -> u8 {
        (self.0[2] >> 16) as u8
    }

    fn port(&self) -> u16 {
        self.0[2] as u16
    }

    fn peer(&self) -> IpAddr {
        let p = (u128::from(self.0[0] & ((1 << 30) - 1)) << 98)
            | (u128::from(self.0[1]) << 34)
            | u128::from(self.0[2] >> 24);
        if self.0[0] >> 30 & 1 == 0 {
            IpAddr::V4(std::net::Ipv4Addr::from(p as u32))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from(p))
        }
    }
}

/// Sets of services, each stored once (side by side in one list) and named by index.
#[derive(Default)]
struct Interner {
    service_ids: FastMap<Service, u32>,
    set_ids: FastMap<Vec<u32>, u32>,
    /// Each set's first service and count in `items`.
    sets: Vec<(u32, u32)>,
    items: Vec<Service>,
    services: Vec<Service>,
}

impl Interner {
    fn service(&mut self, s: Service) -> u32 {
        let n = self.services.len() as u32;
        *self.service_ids.entry(s).or_insert_with(|| {
            self.services.push(s);
            n
        })
    }

    fn set(&mut self, ids: Vec<u32>) -> u32 {
        if let Some(i) = self.set_ids.get(&ids) {
            return *i;
        }
        let i = self.sets.len() as u32;
        self.sets.push((self.items.len() as u32, ids.len() as u32));
        self.items
            .extend(ids.iter().map(|s| self.services[*s as usize]));
        self.set_ids.insert(ids, i);
        i
    }
}

/// What is kept per device: its compiled manifest and vendor (for `same-vendor` rules), and
/// what was counted; two to a cache line. (The flow path finds the compiled manifest with the
/// device's address, and that manifest's tables in `Monitor::v4_ids`.)
#[derive(Debug, Clone, Copy)]
struct Dev {
    /// Its compiled manifest in `Monitor::compiled`, or `NO_MANIFEST`.
    compiled: u32,
    /// Its vendor, numbered.
    vendor: u32,
    flows: u64,
    violations: u64,
    unattributable: u64,
}

const NO_MANIFEST: u32 = u32::MAX;

/// The counts of one report row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agg {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_ns: u64,
    last_ns: u64,
    /// Unattributable rows: the names that could have covered it, in `Monitor::name_sets`
    /// (of the row's flows, the set numbered first).
    names: u32,
}

impl Agg {
    fn new(f: &Flow, names: u32) -> Agg {
        Agg {
            flows: 0,
            packets: 0,
            bytes: 0,
            first_ns: f.first_ns,
            last_ns: f.last_ns,
            names,
        }
    }

    fn add(&mut self, f: &Flow) {
        self.flows += 1;
        self.packets += f.packets;
        self.bytes += f.bytes;
        self.first_ns = self.first_ns.min(f.first_ns);
        self.last_ns = self.last_ns.max(f.last_ns);
    }

    /// Adds the counts of the same row gathered apart.
    fn merge(&mut self, o: &Agg) {
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.names = self.names.min(o.names);
    }
}

/// The monitor: compiled manifests, the DNS answers seen, and what was found so far.
pub struct Monitor {
    /// Device (and its compiled manifest) by IPv6 address.
    by_addr: FastMap<IpAddr, Found>,
    /// Device (and its compiled manifest) by IPv4 address, keyed by the 32-bit address.
    by_v4: FastMap<u32, Found>,
    /// Which IPv4 addresses may be a device's: most addresses in traffic are not, and are so
    /// told apart with one multiply and one bit.
    v4_filter: AddrFilter,
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
    dns: FastMap<IpAddr, Vec<(Arc<str>, u64, u64)>>,
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
    /// DNS answers not kept because [`MAX_DNS_ANSWERS`] were.
    pub dns_dropped: u64,
}

/// Most DNS answers kept (memory stays bounded; beyond it answers are counted, not kept).
pub const MAX_DNS_ANSWERS: usize = 4_000_000;

/// Most distinct rows kept of each kind (violations, unattributable): 288 MB of them. Beyond,
/// the rows last in the report's order are dropped and their flows counted
/// ([`Report::flows_in_dropped_rows`]); every device's counts stay exact.
pub const MAX_ROWS: usize = 4_000_000;

fn compile(m: &Manifest, op: &OperatorConfig, int: &mut Interner) -> Compiled {
    let mut prefixes: [[Vec<(u128, u128, u32)>; 2]; 2] = Default::default();
    let mut dirs: [DirRules; 2] = Default::default();
    for r in &m.allow {
        let d = dir_index(r.direction);
        let service = Service {
            protocol: r.protocol,
            ports: r.ports,
            device_ports: r.device_ports,
            initiated_by: r.initiated_by,
        };
        let svc = int.service(service);
        let resolved: Vec<Prefix> = match &r.peer {
            Peer::Prefix(p) => vec![*p],
            Peer::OperatorNetworks => op.operator_networks.clone(),
            Peer::LocalNetworks => op.local_networks.clone(),
            Peer::MyController => op.my_controller.clone(),
            Peer::Controller(uri) => op.controllers.get(uri).cloned().unwrap_or_default(),
            Peer::SameVendor => {
                dirs[d].same_vendor.push(service);
                continue;
            }
            Peer::Name(name) => {
                dirs[d].names.entry(name.clone()).or_default().push(service);
                if !dirs[d].name_services.contains(&service) {
                    dirs[d].name_services.push(service);
                }
                continue;
            }
        };
        for p in resolved {
            let (v4, start, end) = range(&p);
            prefixes[d][if v4 { 0 } else { 1 }].push((start, end, svc));
        }
    }
    for (d, [p4, p6]) in prefixes.into_iter().enumerate() {
        dirs[d].v4 = Table::build(p4, |s| int.set(s)).narrow();
        dirs[d].v6 = Table::build(p6, |s| int.set(s));
    }
    Compiled { dirs }
}

fn any_allows(services: &[Service], side: &Side) -> bool {
    services.iter().any(|s| s.allows(side))
}

/// A set of IPv4 addresses as one bit each in a table of 32 bits per address (at least 64 Ki
/// bits, 8 KiB): an address whose bit is clear is not in the set; one whose bit is set may be
/// (about one in 32 of those not in it). Addresses that share a bit only cost a search of the
/// map behind it, so the mixing needs no secret.
struct AddrFilter {
    bits: Vec<u64>,
    /// 64 minus the log2 of the table's size in bits: a product's top bits index it.
    shift: u32,
}

impl AddrFilter {
    fn new(addresses: usize) -> AddrFilter {
        let size = (addresses.saturating_mul(32))
            .next_power_of_two()
            .max(1 << 16);
        AddrFilter {
            bits: vec![0; size / 64],
            shift: 64 - size.trailing_zeros(),
        }
    }

    #[inline]
    fn slot(&self, a: u32) -> usize {
        (u64::from(a).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, a: u32) {
        let i = self.slot(a);
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    #[inline]
    fn may_hold(&self, a: u32) -> bool {
        let i = self.slot(a);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// A device found by its address: its number, and its compiled manifest's (`NO_MANIFEST`:
/// none).
#[derive(Debug, Clone, Copy)]
struct Found(u32, u32);

/// One device's side of a flow.
#[derive(Debug, Clone, Copy)]
struct Part {
    device: u32,
    /// The device's compiled manifest (`NO_MANIFEST`: none).
    compiled: u32,
    peer: IpAddr,
    side: Side,
}

/// The verdict on one side of a flow.
enum Verdict {
    Allowed,
    Violation,
    Unattributable,
}

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
            return Err(SetupError(
                "one manifest (or none) per device is needed".into(),
            ));
        }
        let mut by_addr = FastMap::default();
        let mut by_v4 = FastMap::default();
        let mut vendors: Vec<&str> = Vec::new();
        let mut int = Interner::default();
        let mut compiled = Vec::new();
        let mut done: FastMap<usize, u32> = FastMap::default();
        let mut v4 = FlatTables::default();
        let mut v4_ids: Vec<[FlatId; 2]> = Vec::new();
        let mut devs = Vec::with_capacity(manifests.len());
        let mut v4_filter = AddrFilter::new(inventory.devices.len());
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
                match a {
                    IpAddr::V4(v4) => {
                        v4_filter.insert(u32::from(*v4));
                        by_v4.insert(u32::from(*v4), Found(i as u32, c))
                    }
                    IpAddr::V6(_) => by_addr.insert(*a, Found(i as u32, c)),
                };
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
            by_v4,
            v4_filter,
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
            dns_dropped: 0,
        })
    }

    /// The device with address `a`, and its compiled manifest (`NO_MANIFEST`: none).
    #[inline]
    fn device_of(&self, a: IpAddr) -> Option<Found> {
        match a {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                if !self.v4_filter.may_hold(a) {
                    return None;
                }
                self.by_v4.get(&a).copied()
            }
            IpAddr::V6(_) => self.by_addr.get(&a).copied(),
        }
    }

    /// Records a DNS answer seen in the traffic.
    pub fn dns(&mut self, seen: &DnsSeen) {
        self.first_answer.entry(seen.client).or_insert(seen.ts_ns);
        if self.dns_kept >= MAX_DNS_ANSWERS {
            self.dns_dropped += 1;
            return;
        }
        let until = seen
            .ts_ns
            .saturating_add(seen.answer.ttl as u64 * 1_000_000_000);
        let names = self.dns.entry(seen.answer.addr).or_default();
        if let Some(e) = names.iter_mut().find(|e| *e.0 == *seen.answer.name) {
            e.1 = e.1.min(seen.ts_ns);
            e.2 = e.2.max(until);
            return;
        }
        names.push((Arc::from(seen.answer.name.as_str()), seen.ts_ns, until));
        self.dns_kept += 1;
    }

    /// Judges one flow from the side of each device it belongs to, and counts it.
    pub fn flow(&mut self, f: &Flow) {
        self.report.flows += 1;
        self.report.packets += f.packets;
        self.report.bytes += f.bytes;
        self.report.window = Some(match self.report.window {
            None => (f.first_ns, f.last_ns),
            Some((a, b)) => (a.min(f.first_ns), b.max(f.last_ns)),
        });
        let parts = self.parts(f);
        if parts[0].is_none() && parts[1].is_none() {
            self.report.unknown_device_flows += 1;
            return;
        }
        for p in parts.iter().flatten() {
            let set = self.lookup(p.compiled, p.side.direction, p.peer);
            self.judge_and_count(p, set, f);
        }
    }

    /// Judges and counts flows (a flow export message's), as [`Monitor::flow`] one after the
    /// other.
    pub fn flows(&mut self, flows: &[Flow]) {
        for f in flows {
            self.flow(f);
        }
    }

    /// The flow from the side of each of its devices: the one that opened it (going out), the
    /// other (coming in).
    #[inline]
    fn parts(&self, f: &Flow) -> [Option<Part>; 2] {
        let (src, dst) = (self.device_of(f.src), self.device_of(f.dst));
        let opened = f.initiator_known;
        // The side that opened it: `src`, unless nothing says so and it looks like the answering
        // half of a conversation (a flow exporter's record of a reply).
        let (src, dst, sa, da, sport, dport) =
            if !opened && nospy_flow::looks_like_reply(f.proto, f.sport, f.dport) {
                (dst, src, f.dst, f.src, f.dport, f.sport)
            } else {
                (src, dst, f.src, f.dst, f.sport, f.dport)
            };
        let part =
            |found: Option<Found>, device_addr, peer, direction, peer_port, device_port, sent| {
                let Found(device, compiled) = found?;
                Some(Part {
                    device,
                    compiled,
                    peer,
                    side: Side {
                        device_addr,
                        direction,
                        proto: f.proto,
                        peer_port,
                        device_port,
                        device_opened: opened.then_some(sent),
                    },
                })
            };
        [
            part(src, sa, da, Direction::FromDevice, dport, sport, true),
            part(dst, da, sa, Direction::ToDevice, sport, dport, false),
        ]
    }

    /// The set of services compiled manifest `c` allows with `peer` in direction `dir` by its
    /// address (prefix rules), if any.
    #[inline]
    fn lookup(&self, c: u32, dir: Direction, peer: IpAddr) -> Option<u32> {
        let c = c as usize;
        match key(peer) {
            (true, k) => self
                .v4
                .lookup(self.v4_ids.get(c)?[dir_index(dir)], k as u32),
            (false, k) => self.compiled.get(c)?.dirs[dir_index(dir)].v6.lookup(k),
        }
    }

    /// The verdict on a flow from device `d`'s side, `None` when `d` has no manifest; `set` is
    /// what [`Monitor::lookup`] found for it.
    fn verdict(
        &self,
        d: u32,
        peer: IpAddr,
        side: &Side,
        set: Option<u32>,
        f: &Flow,
    ) -> Option<Verdict> {
        let c = self.compiled.get(self.devs[d as usize].compiled as usize)?;
        let verdict = self.judge(d, c, peer, side, set, f);
        if !f.initiator_known && matches!(verdict, Verdict::Violation | Verdict::Unattributable) {
            // Who opened it is unknown: it may be the reply half of a flow the other way (a
            // flow exporter's one-direction record). Allowed that way, it is not a violation.
            let reverse = Side {
                direction: match side.direction {
                    Direction::FromDevice => Direction::ToDevice,
                    Direction::ToDevice => Direction::FromDevice,
                },
                ..*side
            };
            let set = self.lookup(self.devs[d as usize].compiled, reverse.direction, peer);
            if matches!(self.judge(d, c, peer, &reverse, set, f), Verdict::Allowed) {
                return Some(Verdict::Allowed);
            }
        }
        Some(verdict)
    }

    fn judge_and_count(&mut self, part: &Part, set: Option<u32>, f: &Flow) {
        let Part {
            device: d,
            peer,
            side,
            ..
        } = *part;
        self.devs[d as usize].flows += 1;
        let Some(verdict) = self.verdict(d, peer, &side, set, f) else {
            return;
        };
        let port = match side.direction {
            Direction::FromDevice => side.peer_port,
            Direction::ToDevice => side.device_port,
        };
        let key = RowKey::new(d, dir_index(side.direction) as u8, peer, f.proto, port);
        match verdict {
            Verdict::Allowed => {}
            Verdict::Violation => {
                self.devs[d as usize].violations += 1;
                self.violations.add(key, f, 0);
            }
            Verdict::Unattributable => {
                self.devs[d as usize].unattributable += 1;
                let names = self.names_that_could_allow(d, &side);
                self.unattributable.add(key, f, names);
            }
        }
    }

    /// The allowed names whose rules would allow this side of a flow, as an index into
    /// `name_sets`. Which names those are depends only on which of the direction's name services
    /// allow the flow: each such combination is worked out once.
    fn names_that_could_allow(&mut self, d: u32, side: &Side) -> u32 {
        let compiled = self.devs[d as usize].compiled;
        let Some(c) = self.compiled.get(compiled as usize) else {
            return 0;
        };
        let dir = dir_index(side.direction);
        let rules = &c.dirs[dir];
        let mut mask = 0u64;
        for (i, s) in rules.name_services.iter().enumerate().take(64) {
            if s.allows(side) {
                mask |= 1 << i;
            }
        }
        let cacheable = rules.name_services.len() <= 64;
        if cacheable {
            if let Some(id) = self.name_set_ids.get(&(compiled, dir as u8, mask)) {
                return *id;
            }
        }
        let mut names: Vec<String> = rules
            .names
            .iter()
            .filter(|(_, services)| any_allows(services, side))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        // Each distinct set once, however it was reached (a manifest with more than 64 name
        // services is worked out for every flow, and must not grow the list every time).
        let id = match self.name_set_by_content.get(&names[..]) {
            Some(id) => *id,
            None => {
                let id = self.name_sets.len() as u32;
                let names: Arc<[String]> = Arc::from(names);
                self.name_sets.push(names.clone());
                self.name_set_by_content.insert(names, id);
                id
            }
        };
        if cacheable {
            self.name_set_ids.insert((compiled, dir as u8, mask), id);
        }
        id
    }

    /// The verdict on one side of a flow, given the set its peer's address found (`set`).
    fn judge(
        &self,
        d: u32,
        c: &Compiled,
        peer: IpAddr,
        side: &Side,
        set: Option<u32>,
        f: &Flow,
    ) -> Verdict {
        let rules = &c.dirs[dir_index(side.direction)];
        if let Some(set) = set {
            let (first, n) = self.sets[set as usize];
            if any_allows(&self.items[first as usize..(first + n) as usize], side) {
                return Verdict::Allowed;
            }
        }
        if !rules.same_vendor.is_empty() {
            if let Some(Found(p, _)) = self.device_of(peer) {
                if self.devs[p as usize].vendor == self.devs[d as usize].vendor
                    && any_allows(&rules.same_vendor, side)
                {
                    return Verdict::Allowed;
                }
            }
        }
        if rules.names.is_empty() {
            return Verdict::Violation;
        }
        // Names the peer's address stood for when the flow began.
        if let Some(tied) = self.dns.get(&peer) {
            for (name, from, until) in tied {
                if *from <= f.first_ns && f.first_ns <= *until {
                    if let Some(ids) = rules.names.get(&**name) {
                        if any_allows(ids, side) {
                            return Verdict::Allowed;
                        }
                    }
                }
            }
        }
        if let Some(r) = &self.resolver {
            for name in r.by_addr.get(&peer).into_iter().flatten() {
                if let Some(ids) = rules.names.get(name) {
                    if any_allows(ids, side) {
                        return Verdict::Allowed;
                    }
                }
            }
        }
        if !any_allows(&rules.name_services, side) {
            return Verdict::Violation;
        }
        // Only a name could allow it. Could the answer have been seen?
        let device_addr_answered =
            |a: &IpAddr| self.first_answer.get(a).is_some_and(|t| *t <= f.first_ns);
        let dns_visible = self.resolver.is_some()
            || ((f.initiator_known || f.proto != 6) && device_addr_answered(&side.device_addr));
        if dns_visible {
            return Verdict::Violation;
        }
        Verdict::Unattributable
    }

    /// The report: rows sorted by device, direction, peer, protocol and port.
    pub fn finish(mut self) -> Report {
        let ids = &self.ids;
        let (violations, dropped) = std::mem::take(&mut self.violations).finish();
        let (unattributable, also) = std::mem::take(&mut self.unattributable).finish();
        self.report.violations = violations;
        self.report.unattributable = unattributable;
        self.report.flows_in_dropped_rows = dropped + also;
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

/// Which manifests apply to which devices, when manifests are given as files: each device gets
/// the manifest naming its vendor and model (the first, if several do).
pub fn manifests_by_model(
    inventory: &Inventory,
    manifests: &[Arc<Manifest>],
) -> Vec<Option<Arc<Manifest>>> {
    let mut by: BTreeMap<(&str, &str), Arc<Manifest>> = BTreeMap::new();
    for m in manifests {
        by.entry((m.device.vendor.as_str(), m.device.model.as_str()))
            .or_insert_with(|| m.clone());
    }
    inventory
        .devices
        .iter()
        .map(|d| by.get(&(d.vendor.as_str(), d.model.as_str())).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{AddrFilter, RowKey};

    #[test]
    fn the_address_filter_holds_every_address_given_and_few_others() {
        for n in [0usize, 1, 10, 10_000, 100_000] {
            let mut x = 0x9E37_79B9u32 ^ n as u32;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let given: Vec<u32> = (0..n).map(|_| next()).collect();
            let set: std::collections::HashSet<u32> = given.iter().copied().collect();
            let mut f = AddrFilter::new(n);
            for a in &given {
                f.insert(*a);
            }
            assert!(given.iter().all(|a| f.may_hold(*a)), "{n} addresses");
            // Neighbours of devices' addresses, as traffic has them, and others.
            let others: Vec<u32> = given
                .iter()
                .map(|a| a.wrapping_add(1))
                .chain((0..100_000).map(|_| next()))
                .filter(|a| !set.contains(a))
                .take(100_000)
                .collect();
            let held = others.iter().filter(|a| f.may_hold(**a)).count();
            assert!(
                held * 10 < others.len(),
                "{n} addresses: {held} of {} others held",
                others.len()
            );
        }
    }
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
