//! Each distinct manifest compiled once: per direction and address family, its prefix rules
//! (and the abstractions resolved from `operator.toml`) as sorted disjoint ranges, each naming
//! an interned set of services; name rules kept by name.

use crate::table::Table;
use nospy_flow::fasthash::FastMap;
use nospy_inventory::OperatorConfig;
use nospy_manifest::{Direction, Initiator, Manifest, Peer, Ports, Prefix, Protocol};
use std::net::IpAddr;

/// One allowed service: what a rule allows once its peer matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Service {
    pub(crate) protocol: Protocol,
    pub(crate) ports: Ports,
    pub(crate) device_ports: Ports,
    pub(crate) initiated_by: Option<Initiator>,
}

/// A flow as one device sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side {
    /// The device's own address in the flow.
    pub(crate) device_addr: IpAddr,
    pub(crate) direction: Direction,
    pub(crate) proto: u8,
    pub(crate) peer_port: u16,
    pub(crate) device_port: u16,
    /// Whether the device opened the flow, when that is known.
    pub(crate) device_opened: Option<bool>,
}

impl Service {
    #[inline]
    pub(crate) fn allows(&self, s: &Side) -> bool {
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
pub(crate) struct DirRules {
    /// Prefix rules: address ranges naming sets of services (see [`Monitor`]'s `sets`).
    pub(crate) v4: Table<u32>,
    pub(crate) v6: Table<u128>,
    /// DNS-name rules by name.
    pub(crate) names: FastMap<String, Vec<Service>>,
    /// Every service a DNS-name rule allows (to tell unattributable flows from violations).
    pub(crate) name_services: Vec<Service>,
    /// `same-vendor` services.
    pub(crate) same_vendor: Vec<Service>,
}

/// A manifest compiled for matching.
pub(crate) struct Compiled {
    pub(crate) dirs: [DirRules; 2],
}

pub(crate) fn dir_index(d: Direction) -> usize {
    match d {
        Direction::FromDevice => 0,
        Direction::ToDevice => 1,
    }
}

pub(crate) fn range(p: &Prefix) -> (bool, u128, u128) {
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

/// Sets of services, each stored once (side by side in one list) and named by index.
#[derive(Default)]
pub(crate) struct Interner {
    pub(crate) service_ids: FastMap<Service, u32>,
    pub(crate) set_ids: FastMap<Vec<u32>, u32>,
    /// Each set's first service and count in `items`.
    pub(crate) sets: Vec<(u32, u32)>,
    pub(crate) items: Vec<Service>,
    pub(crate) services: Vec<Service>,
}

impl Interner {
    pub(crate) fn service(&mut self, s: Service) -> u32 {
        let n = self.services.len() as u32;
        *self.service_ids.entry(s).or_insert_with(|| {
            self.services.push(s);
            n
        })
    }

    pub(crate) fn set(&mut self, ids: Vec<u32>) -> u32 {
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

pub(crate) fn compile(m: &Manifest, op: &OperatorConfig, int: &mut Interner) -> Compiled {
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

pub(crate) fn any_allows(services: &[Service], side: &Side) -> bool {
    services.iter().any(|s| s.allows(side))
}

/// An address as the prefix tables key it: IPv4 (and IPv4-mapped IPv6) as 32 bits.
#[inline]
pub(crate) fn key(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (true, u32::from(a) as u128),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (true, u32::from(v4) as u128),
            None => (false, u128::from(a)),
        },
    }
}
