//! What a monitor counted over a stretch of flows ([`Delta`]), taken from it while it runs, and
//! the report merged back from any number of them ([`Merger`]).
//!
//! A worker of a partitioned monitor judges only some devices' flows, a window at a time, and
//! hands on what it counted in pieces. Every count of the report is a sum, every time a minimum
//! or maximum, so the pieces merge, in any order, into the report one monitor would have made of
//! all the flows: the same totals, rows, device summaries. One exception is stated where it
//! lies: an unattributable row whose flows had different sets of names that could have covered
//! them shows the set smallest in content order here, the set met first in one monitor.

use crate::report::{DeviceSummary, Report, SeenNames};
use crate::rows::{Agg, Row, RowKey};
use crate::Monitor;
use nospy_manifest::Direction;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One device's counts over a stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCounts {
    /// The device's index in the inventory.
    pub device: u32,
    /// Flows it took part in.
    pub flows: u64,
    /// Of which violations.
    pub violations: u64,
    /// Of which unattributable.
    pub unattributable: u64,
}

/// A report row by its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowParts {
    /// The device's index in the inventory.
    pub device: u32,
    /// Traffic to the device (else from it).
    pub to_device: bool,
    /// The other side.
    pub peer: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// The peer's port going out, the device's coming in.
    pub port: u16,
    /// Flows, packets and bytes counted.
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// First packet of any of its flows (ns since the Unix epoch).
    pub first_ns: u64,
    /// Last packet.
    pub last_ns: u64,
    /// Unattributable rows: the names that could have covered it, an index into
    /// [`Delta::name_sets`] (0, the empty set, for violations).
    pub names: u32,
    /// Who opened its flows, as [`Row::openers`].
    pub openers: u8,
}

impl RowParts {
    fn of(r: &Row, names: u32) -> RowParts {
        RowParts {
            device: r.device() as u32,
            to_device: r.direction() == Direction::ToDevice,
            peer: r.peer(),
            proto: r.protocol(),
            port: r.port(),
            flows: r.flows(),
            packets: r.packets(),
            bytes: r.bytes(),
            first_ns: r.first_ns(),
            last_ns: r.last_ns(),
            names,
            openers: r.openers(),
        }
    }
}

/// What a monitor counted over a stretch of flows: totals, the devices that took part, rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    /// Flows judged or counted.
    pub flows: u64,
    /// Their packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Flows of no device of the inventory.
    pub unknown_device_flows: u64,
    /// Flows of rows dropped beyond [`MAX_ROWS`](crate::MAX_ROWS).
    pub flows_in_dropped_rows: u64,
    /// The devices that took part, by index.
    pub devices: Vec<DeviceCounts>,
    /// Violation rows, in the report's order.
    pub violations: Vec<RowParts>,
    /// Unattributable rows, in the report's order.
    pub unattributable: Vec<RowParts>,
    /// The sets of names rows refer to; the first is the empty set. Shared with the monitor
    /// that took the delta (a set is counted once however many deltas refer to it).
    pub name_sets: Vec<Arc<[String]>>,
    /// The names each violation row's peer stood for when the delta was taken (DNS answers
    /// seen by then, resolver entries: what signed evidence states), by peer in address order,
    /// peers that stood for no name left out. `None`: not recorded (the monitor did not
    /// [record names](Monitor::record_names)).
    pub peer_names: Option<Vec<NamedPeer>>,
}

/// The names a violation row's peer stood for, as a delta records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedPeer {
    /// The peer.
    pub peer: IpAddr,
    /// Its names, an index into the delta's `name_sets`: those evidence can state of any
    /// device's rows (every name a manifest of the monitor names, and the first others that
    /// fit [`OTHER_NAMES_BYTES`](crate::evidence::OTHER_NAMES_BYTES) and one more).
    pub set: u32,
    /// How many names it stood for.
    pub total: u64,
}

/// The names peers stood for, gathered from deltas: kept only if every delta with violation
/// rows recorded them (else their rows' names are unknown) and one did. A peer's names are
/// the union of the deltas', its count the largest (the deltas of one monitor are taken one
/// after another, and a monitor's names only grow).
#[derive(Default)]
struct Gathered {
    names: BTreeMap<IpAddr, (std::collections::BTreeSet<String>, u64)>,
    recorded: bool,
    unrecorded: bool,
}

impl Gathered {
    fn add(&mut self, d: &Delta) {
        match &d.peer_names {
            Some(list) => {
                self.recorded = true;
                for p in list {
                    if let Some(names) = d.name_sets.get(p.set as usize) {
                        if !names.is_empty() {
                            let e = self.names.entry(p.peer).or_default();
                            e.0.extend(names.iter().cloned());
                            e.1 = e.1.max(p.total);
                        }
                    }
                }
            }
            None => self.unrecorded |= !d.violations.is_empty(),
        }
    }

    fn kept(self) -> Option<BTreeMap<IpAddr, SeenNames>> {
        (self.recorded && !self.unrecorded).then(|| {
            self.names
                .into_iter()
                .map(|(peer, (names, total))| {
                    let names: Vec<String> = names.into_iter().collect();
                    let total = total.max(names.len() as u64);
                    (peer, SeenNames { names, total })
                })
                .collect()
        })
    }
}

/// A delta's sets of names being written: each set once, numbered in the order first given.
struct NameSets {
    sets: Vec<Arc<[String]>>,
    numbered: nospy_flow::fasthash::FastMap<Arc<[String]>, u32>,
}

impl NameSets {
    /// Starting from `sets` (distinct; the first the empty set).
    fn from(sets: Vec<Arc<[String]>>) -> NameSets {
        let numbered = sets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        NameSets { sets, numbered }
    }

    /// The number of `set`, given a new one if it is not there yet.
    fn id(&mut self, set: Arc<[String]>) -> u32 {
        if let Some(&i) = self.numbered.get(&set) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.numbered.insert(set.clone(), i);
        self.sets.push(set);
        i
    }

    /// [`NameSets::id`] of a set not yet shared (copied only when it is new).
    fn id_of(&mut self, set: &[String]) -> u32 {
        match self.numbered.get(set) {
            Some(&i) => i,
            None => self.id(Arc::from(set)),
        }
    }
}

/// The empty set of names.
fn no_names() -> Arc<[String]> {
    Arc::from(Vec::new())
}

impl Delta {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.flows == 0 && self.unknown_device_flows == 0 && self.devices.is_empty()
    }

    /// Adds `o` (counted over a later stretch, or apart) to this one, so that one delta stands
    /// for both: totals summed, devices and rows merged in order (rows of the same key
    /// combined), sets of names kept once ([`Delta::merged`] of the two).
    pub fn absorb(&mut self, o: Delta) {
        *self = Delta::merged(vec![std::mem::take(self), o]);
    }

    /// One delta standing for all of `deltas`, in order: totals summed, devices and rows merged
    /// (rows of the same key combined), sets of names numbered as first met. One stable sort
    /// of all their rows, each delta's already in order, so that it merges runs: `n log k` for
    /// `n` rows in `k` deltas. What a worker that holds many small deltas of one window hands
    /// on.
    pub fn merged(deltas: Vec<Delta>) -> Delta {
        let mut out = Delta::default();
        let mut sets = NameSets::from(vec![no_names()]);
        let (mut violations, mut unattributable) = (Vec::new(), Vec::new());
        let mut peer_names = Gathered::default();
        for d in deltas {
            peer_names.add(&d);
            out.flows += d.flows;
            out.packets += d.packets;
            out.bytes += d.bytes;
            out.unknown_device_flows += d.unknown_device_flows;
            out.flows_in_dropped_rows += d.flows_in_dropped_rows;
            out.devices.extend(d.devices);
            // Their sets of names, numbered in the order met (as absorbing numbers them).
            let ids: Vec<u32> = d.name_sets.into_iter().map(|set| sets.id(set)).collect();
            violations.extend(d.violations.into_iter().map(|mut r| {
                r.names = 0;
                r
            }));
            unattributable.extend(d.unattributable.into_iter().map(|mut r| {
                r.names = ids.get(r.names as usize).copied().unwrap_or(0);
                r
            }));
        }
        // Stable sorts: each delta's list is already in order, so these merge runs.
        out.devices.sort_by_key(|c| c.device);
        out.devices.dedup_by(|n, c| {
            let same = n.device == c.device;
            if same {
                c.flows += n.flows;
                c.violations += n.violations;
                c.unattributable += n.unattributable;
            }
            same
        });
        let combine = |mut rows: Vec<RowParts>| {
            let key =
                |r: &RowParts| RowKey::new(r.device, r.to_device as u8, r.peer, r.proto, r.port);
            rows.sort_by_key(key);
            rows.dedup_by(|n, r| {
                let same = key(n) == key(r);
                if same {
                    r.flows += n.flows;
                    r.packets += n.packets;
                    r.bytes += n.bytes;
                    r.first_ns = r.first_ns.min(n.first_ns);
                    r.last_ns = r.last_ns.max(n.last_ns);
                    r.names = r.names.min(n.names);
                    r.openers |= n.openers;
                }
                same
            });
            rows
        };
        out.violations = combine(violations);
        out.unattributable = combine(unattributable);
        out.peer_names = peer_names.kept().map(|by_peer| {
            by_peer
                .into_iter()
                .map(|(peer, seen)| NamedPeer {
                    peer,
                    set: sets.id_of(&seen.names),
                    total: seen.total,
                })
                .collect()
        });
        out.name_sets = sets.sets;
        out
    }
}

/// What a monitor counted and has not handed on, set aside while it counts another stretch
/// ([`Monitor::swap_counting`]): totals, rows, and the devices' counts. A monitor that judges
/// several streams of flows (a worker's partitions, read in turn) keeps one per stream, so that
/// each stream's rows grow in one place until they are taken, not in a delta per read.
#[derive(Default)]
pub struct Counting {
    flows: u64,
    packets: u64,
    bytes: u64,
    unknown_device_flows: u64,
    window: Option<(u64, u64)>,
    violations: crate::rows::Rows,
    unattributable: crate::rows::Rows,
    /// The devices that took part and their counts.
    devices: Vec<DeviceCounts>,
}

impl Counting {
    /// Whether nothing is counted in it.
    pub fn is_empty(&self) -> bool {
        self.flows == 0 && self.unknown_device_flows == 0 && self.devices.is_empty()
    }
}

impl Monitor {
    /// Exchanges what the monitor is counting with `other` (at first `Counting::default()`):
    /// what it counts from now on adds to what `other` held, and `other` holds what it had
    /// counted. The compiled manifests, the DNS answers seen and the sets of names stay. Costs
    /// the devices that took part on both sides, not the rows.
    pub fn swap_counting(&mut self, other: &mut Counting) {
        let mut parked = Vec::with_capacity(self.touched.len());
        for d in self.touched.drain(..) {
            if let Some(dev) = self.devs.get_mut(d as usize) {
                parked.push(DeviceCounts {
                    device: d,
                    flows: dev.flows,
                    violations: dev.violations,
                    unattributable: dev.unattributable,
                });
                (dev.flows, dev.violations, dev.unattributable) = (0, 0, 0);
            }
        }
        for c in other.devices.drain(..) {
            if let Some(dev) = self.devs.get_mut(c.device as usize) {
                (dev.flows, dev.violations, dev.unattributable) =
                    (c.flows, c.violations, c.unattributable);
                self.touched.push(c.device);
            }
        }
        other.devices = parked;
        let r = &mut self.report;
        std::mem::swap(&mut r.flows, &mut other.flows);
        std::mem::swap(&mut r.packets, &mut other.packets);
        std::mem::swap(&mut r.bytes, &mut other.bytes);
        std::mem::swap(&mut r.unknown_device_flows, &mut other.unknown_device_flows);
        std::mem::swap(&mut r.window, &mut other.window);
        std::mem::swap(&mut self.violations, &mut other.violations);
        std::mem::swap(&mut self.unattributable, &mut other.unattributable);
    }
}

impl Monitor {
    /// How much the next [`Monitor::take`] holds at most: rows of both kinds, and devices.
    pub fn held(&self) -> (usize, usize) {
        (
            self.violations.held() + self.unattributable.held(),
            self.touched.len(),
        )
    }

    /// What was counted since the monitor began or was last taken from; the counts start again
    /// from nothing (the compiled manifests and the DNS answers seen are kept). Costs what was
    /// counted, not the size of the inventory.
    pub fn take(&mut self) -> Delta {
        let (violations, dropped) = std::mem::take(&mut self.violations).finish();
        let (unattributable, also) = std::mem::take(&mut self.unattributable).finish();
        let mut sets: Vec<Arc<[String]>> = vec![no_names()];
        // The monitor's set numbers to the delta's, the empty set 0 in both.
        let mut renumber: Vec<Option<u32>> = vec![None; self.name_sets.len().max(1)];
        renumber[0] = Some(0);
        let unattributable = unattributable
            .iter()
            .map(|r| {
                let names = r.agg.names as usize;
                let id = match renumber.get(names).copied().flatten() {
                    Some(id) => id,
                    None => {
                        sets.push(self.name_sets.get(names).cloned().unwrap_or_else(no_names));
                        let id = (sets.len() - 1) as u32;
                        if let Some(slot) = renumber.get_mut(names) {
                            *slot = Some(id);
                        }
                        id
                    }
                };
                RowParts::of(r, id)
            })
            .collect();
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        let devices = touched
            .iter()
            .map(|&d| {
                let dev = &mut self.devs[d as usize];
                let c = DeviceCounts {
                    device: d,
                    flows: dev.flows,
                    violations: dev.violations,
                    unattributable: dev.unattributable,
                };
                (dev.flows, dev.violations, dev.unattributable) = (0, 0, 0);
                c
            })
            .collect();
        // What evidence states of the violation rows' peers: the names each stood for by now.
        let (sets, peer_names) = if self.record_names {
            let mut peers: Vec<IpAddr> = violations.iter().map(|r| r.peer()).collect();
            peers.sort_unstable();
            peers.dedup();
            let mut sets = NameSets::from(sets);
            let named = peers
                .into_iter()
                .filter_map(|peer| {
                    let all = self.names_of(peer);
                    (!all.is_empty()).then(|| NamedPeer {
                        peer,
                        set: sets.id_of(&crate::evidence::kept_names(&all, &self.named)),
                        total: all.len() as u64,
                    })
                })
                .collect();
            (sets.sets, Some(named))
        } else {
            (sets, None)
        };
        let r = &mut self.report;
        let delta = Delta {
            flows: r.flows,
            packets: r.packets,
            bytes: r.bytes,
            unknown_device_flows: r.unknown_device_flows,
            flows_in_dropped_rows: dropped + also,
            devices,
            violations: violations.iter().map(|r| RowParts::of(r, 0)).collect(),
            unattributable,
            name_sets: sets,
            peer_names,
        };
        (
            r.flows,
            r.packets,
            r.bytes,
            r.unknown_device_flows,
            r.window,
        ) = (0, 0, 0, 0, None);
        delta
    }
}

/// Why a delta cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeError {
    /// It names a device beyond the merger's inventory.
    Device {
        /// The device's index.
        device: u32,
        /// Devices in the inventory.
        devices: usize,
    },
    /// A row names a set of names the delta does not have.
    NameSet {
        /// The set's index.
        set: u32,
        /// Sets in the delta.
        sets: usize,
    },
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Device { device, devices } => {
                write!(f, "device {device} of an inventory of {devices} devices")
            }
            MergeError::NameSet { set, sets } => write!(f, "set of names {set} of {sets}"),
        }
    }
}

impl std::error::Error for MergeError {}

/// Deltas merged into one report.
pub struct Merger {
    report: Report,
    violations: Vec<Row>,
    unattributable: Vec<Row>,
    /// Every set of names met, numbered in the order met.
    sets: BTreeMap<Arc<[String]>, u32>,
    peer_names: Gathered,
}

impl Merger {
    /// A merger for the devices `ids` (the inventory's, in order), with whether each has a
    /// manifest.
    pub fn new(ids: &[String], has_manifest: &[bool]) -> Merger {
        let devices = ids
            .iter()
            .enumerate()
            .map(|(i, id)| DeviceSummary {
                device: id.clone(),
                has_manifest: has_manifest.get(i).copied().unwrap_or(false),
                ..DeviceSummary::default()
            })
            .collect();
        Merger {
            report: Report {
                devices,
                ..Report::default()
            },
            violations: Vec::new(),
            unattributable: Vec::new(),
            sets: BTreeMap::from([(no_names(), 0)]),
            peer_names: Gathered::default(),
        }
    }

    /// Adds a delta. Refuses (adding nothing) one that names a device or a set of names it does
    /// not have.
    pub fn add(&mut self, d: &Delta) -> Result<(), MergeError> {
        let n = self.report.devices.len();
        let bad_device = d
            .devices
            .iter()
            .map(|c| c.device)
            .chain(
                d.violations
                    .iter()
                    .chain(&d.unattributable)
                    .map(|r| r.device),
            )
            .find(|&i| i as usize >= n);
        if let Some(i) = bad_device {
            return Err(MergeError::Device {
                device: i,
                devices: n,
            });
        }
        if let Some(set) = d
            .violations
            .iter()
            .chain(&d.unattributable)
            .map(|r| r.names)
            .chain(d.peer_names.iter().flatten().map(|p| p.set))
            .find(|&set| set as usize >= d.name_sets.len().max(1))
        {
            return Err(MergeError::NameSet {
                set,
                sets: d.name_sets.len(),
            });
        }
        self.peer_names.add(d);
        let r = &mut self.report;
        r.flows += d.flows;
        r.packets += d.packets;
        r.bytes += d.bytes;
        r.unknown_device_flows += d.unknown_device_flows;
        r.flows_in_dropped_rows += d.flows_in_dropped_rows;
        for c in &d.devices {
            let s = &mut r.devices[c.device as usize];
            s.flows += c.flows;
            s.violations += c.violations;
            s.unattributable += c.unattributable;
        }
        let ids: Vec<u32> = d
            .name_sets
            .iter()
            .map(|s| {
                let next = self.sets.len() as u32;
                *self.sets.entry(s.clone()).or_insert(next)
            })
            .collect();
        let row = |p: &RowParts, names: u32| Row {
            key: RowKey::new(p.device, p.to_device as u8, p.peer, p.proto, p.port),
            agg: Agg {
                flows: p.flows,
                packets: p.packets,
                bytes: p.bytes,
                first_ns: p.first_ns,
                last_ns: p.last_ns,
                names,
                openers: p.openers,
            },
        };
        self.violations
            .extend(d.violations.iter().map(|p| row(p, 0)));
        self.unattributable.extend(
            d.unattributable
                .iter()
                .map(|p| row(p, ids.get(p.names as usize).copied().unwrap_or(0))),
        );
        Ok(())
    }

    /// The merged report: rows sorted and combined, at most [`MAX_ROWS`](crate::MAX_ROWS) of
    /// each kind (the flows of the rest counted in `flows_in_dropped_rows`).
    pub fn finish(mut self) -> Report {
        // Sets numbered in content order, so that a row's smallest number is its smallest set.
        let mut rank = vec![0u32; self.sets.len()];
        let mut name_sets = Vec::with_capacity(self.sets.len());
        for (k, (set, id)) in std::mem::take(&mut self.sets).into_iter().enumerate() {
            rank[id as usize] = k as u32;
            name_sets.push(set);
        }
        for r in &mut self.unattributable {
            r.agg.names = rank[r.agg.names as usize];
        }
        let mut dropped = 0;
        let mut finish = |mut rows: Vec<Row>| {
            rows.sort_unstable_by_key(|r| r.key);
            crate::rows::combine(&mut rows);
            if rows.len() > crate::MAX_ROWS {
                dropped += rows
                    .drain(crate::MAX_ROWS..)
                    .map(|r| r.agg.flows)
                    .sum::<u64>();
            }
            rows
        };
        self.report.violations = finish(std::mem::take(&mut self.violations));
        self.report.unattributable = finish(std::mem::take(&mut self.unattributable));
        self.report.flows_in_dropped_rows += dropped;
        self.report.name_sets = name_sets;
        // Every violation row's peer, as one monitor records them (none: an empty list).
        if let Some(mut by_peer) = std::mem::take(&mut self.peer_names).kept() {
            let mut peer_names = BTreeMap::new();
            for r in &self.report.violations {
                peer_names
                    .entry(r.peer())
                    .or_insert_with(|| by_peer.remove(&r.peer()).unwrap_or_default());
            }
            self.report.peer_names = Some(peer_names);
        }
        self.report
    }
}
