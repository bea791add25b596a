//! The reference judgement: one group of observed flows (a monitor's report row) judged against
//! a manifest rule by rule, with the operator's resolutions of its abstractions as recorded. It
//! is what an evidence verifier re-runs, and what a monitor runs on each row before it signs, so
//! that a monitor never signs a row the verifier would not reproduce. It is written apart from
//! the monitor's compiled tables on purpose: a fault in those cannot frame a device.
//!
//! A row records its direction, peer, protocol and one port (the peer's going out, the
//! device's coming in), the names the peer's address stood for (when recorded) and whether the
//! peer is a device of the same vendor. It does not record the other port, nor who opened each
//! flow. So a row is judged *not allowed* only when no value of what it does not record would
//! allow it; when one would, the judgement says which ([`Unrecorded`]) rather than guess.

use crate::{Direction, Initiator, Manifest, Peer, Ports, Prefix, Rule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The operator's resolution of a manifest's abstractions, as an evidence statement records it
/// (only those its manifest uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolutions {
    /// `operator-networks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_networks: Vec<Prefix>,
    /// `local-networks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_networks: Vec<Prefix>,
    /// `my-controller`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub my_controller: Vec<Prefix>,
    /// `controller:<uri>`, by URI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub controllers: BTreeMap<String, Vec<Prefix>>,
}

/// One group of flows as observed from one device's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Which way.
    pub direction: Direction,
    /// The other side's address.
    pub peer: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// The peer's port going out (`from-device`), the device's coming in (`to-device`).
    pub port: u16,
    /// The DNS names the peer's address stood for during the window (answers seen, resolver
    /// entries), lower case; `None` when not recorded.
    pub names: Option<Vec<String>>,
    /// Whether the peer is a device of the same vendor (`same-vendor`).
    pub same_vendor: bool,
    /// Who opened the flows, of those seen; `None` when not recorded.
    pub openers: Option<Openers>,
}

/// Who opened a row's flows, of those seen (a row gathers flows opened either way). Written as
/// a list: `["device"]`, `["peer", "unknown"]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Openers {
    /// A flow was opened by the device.
    pub device: bool,
    /// A flow was opened by the peer.
    pub peer: bool,
    /// Who opened a flow is not known (a flow exporter's record of one direction, say).
    pub unknown: bool,
}

impl Openers {
    /// From the monitor's bits (1 the device, 2 the peer, 4 not known); `None` for none.
    pub fn from_bits(b: u8) -> Option<Openers> {
        (b & 7 != 0).then_some(Openers {
            device: b & 1 != 0,
            peer: b & 2 != 0,
            unknown: b & 4 != 0,
        })
    }

    fn names(&self) -> Vec<&'static str> {
        [
            (self.device, "device"),
            (self.peer, "peer"),
            (self.unknown, "unknown"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }
}

impl Serialize for Openers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Openers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Openers, D::Error> {
        use serde::de::Error as _;
        let names = Vec::<String>::deserialize(d)?;
        let mut o = Openers::default();
        for n in &names {
            let slot = match n.as_str() {
                "device" => &mut o.device,
                "peer" => &mut o.peer,
                "unknown" => &mut o.unknown,
                other => {
                    return Err(D::Error::custom(format!(
                        "opener {other:?} is not device, peer or unknown"
                    )))
                }
            };
            if *slot {
                return Err(D::Error::custom(format!("opener {n:?} is listed twice")));
            }
            *slot = true;
        }
        if names.is_empty() {
            return Err(D::Error::custom("no opener listed"));
        }
        Ok(o)
    }
}

/// Why a manifest does not allow a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// No rule of that direction admits the peer.
    Peer,
    /// Rules admit the peer, but none allows that protocol and port.
    Service,
    /// A rule admits the peer, protocol and port, but only for TCP connections opened by the
    /// other side.
    Initiator,
}

impl Why {
    /// As evidence writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Peer => "peer",
            Why::Service => "service",
            Why::Initiator => "initiator",
        }
    }

    /// What it means, for reports.
    pub fn explain(&self) -> &'static str {
        match self {
            Why::Peer => "no rule of that direction admits the peer",
            Why::Service => "a rule admits the peer, but none allows that protocol and port",
            Why::Initiator => {
                "a rule allows the peer, protocol and port, but not the side that opened the connection"
            }
        }
    }
}

/// What a row does not record, on which a rule's allowing it would depend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unrecorded {
    /// Which side opened the flows (the rule sets `initiated_by`).
    Opener,
    /// The port the row does not carry (the rule restricts it).
    OtherPort,
    /// Which names the peer stood for (a name rule would allow the service).
    Names,
    /// Whether the flows were replies to flows the other way, which a rule of the other
    /// direction allows (a monitor that does not know who opened a flow judges it both ways).
    Reply,
}

impl Unrecorded {
    /// What it means, for reports.
    pub fn explain(&self) -> &'static str {
        match self {
            Unrecorded::Opener => "which side opened the flows",
            Unrecorded::OtherPort => "the flows' other port",
            Unrecorded::Names => "the names the peer's address stood for",
            Unrecorded::Reply => "whether the flows answered flows the other way",
        }
    }
}

/// The judgement on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Not allowed, whatever the row does not record.
    NotAllowed(Why),
    /// Allowed by rule `rule` (its position in the manifest's list, from 0).
    Allowed {
        /// The rule.
        rule: usize,
    },
    /// Rule `rule` would allow it for some value of what the row does not record; `why` is the
    /// judgement were that value not the allowing one.
    Undecided {
        /// The rule.
        rule: usize,
        /// What the row would have to record.
        unrecorded: Unrecorded,
        /// Why it is not allowed otherwise.
        why: Why,
    },
}

/// Whether `rule` admits the peer: `None` when that depends on names the row does not record.
fn admits(rule: &Rule, res: &Resolutions, o: &Observed) -> Option<bool> {
    let within = |ps: &[Prefix]| ps.iter().any(|p| p.contains(o.peer));
    Some(match &rule.peer {
        Peer::Prefix(p) => p.contains(o.peer),
        Peer::OperatorNetworks => within(&res.operator_networks),
        Peer::LocalNetworks => within(&res.local_networks),
        Peer::MyController => within(&res.my_controller),
        Peer::Controller(uri) => res.controllers.get(uri).is_some_and(|ps| within(ps)),
        Peer::SameVendor => o.same_vendor,
        Peer::Name(n) => return o.names.as_ref().map(|ns| ns.iter().any(|x| x == n)),
    })
}

/// Whether a rule's service allows a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// It allows (some of) the row's flows.
    Yes,
    /// It does not: another protocol or port.
    No,
    /// It allows the protocol and ports, but only TCP connections the other side opened.
    WrongOpener,
    /// It allows them for some value of what the row does not record.
    Depends(Unrecorded),
}

/// Whether `rule`'s service allows the row seen in `direction`, with the recorded port on that
/// direction's side.
fn serves(rule: &Rule, o: &Observed, direction: Direction) -> Serves {
    if !rule.protocol.matches(o.protocol) {
        return Serves::No;
    }
    let mut depends = None;
    if matches!(o.protocol, 6 | 17) {
        // The row's port is the peer's when it went out, the device's when it came in; for
        // the direction judged, that is `ports` or `device_ports`.
        let (recorded, other): (&Ports, &Ports) = match (o.direction, direction) {
            (Direction::FromDevice, Direction::FromDevice) => (&rule.ports, &rule.device_ports),
            (Direction::ToDevice, Direction::ToDevice) => (&rule.device_ports, &rule.ports),
            // Judged the other way round (as a reply): the same two ports, the roles kept.
            (Direction::FromDevice, Direction::ToDevice) => (&rule.ports, &rule.device_ports),
            (Direction::ToDevice, Direction::FromDevice) => (&rule.device_ports, &rule.ports),
        };
        if !recorded.contains(o.port) {
            return Serves::No;
        }
        if !other.is_any() {
            depends = Some(Unrecorded::OtherPort);
        }
    }
    if o.protocol == 6 {
        let wanted = match rule.initiated_by {
            Some(Initiator::Device) => Some(true),
            Some(Initiator::Peer) => Some(false),
            _ => None,
        };
        if let Some(device_opens) = wanted {
            // As the monitor judges: a flow whose opener is not known is not held against
            // `initiated_by`; one opened by the side the rule names is allowed.
            match o.openers {
                None => depends = depends.or(Some(Unrecorded::Opener)),
                Some(op)
                    if op.unknown || (device_opens && op.device) || (!device_opens && op.peer) => {}
                Some(_) if depends.is_none() => return Serves::WrongOpener,
                Some(_) => return Serves::No,
            }
        }
    }
    match depends {
        None => Serves::Yes,
        Some(u) => Serves::Depends(u),
    }
}

/// Judges `o` against `m` with the operator's resolutions `res`.
pub fn judge(m: &Manifest, res: &Resolutions, o: &Observed) -> Judgement {
    let mut admitted = false;
    let mut wrong_opener = false;
    let mut undecided: Option<(usize, Unrecorded, Why)> = None;
    let note = |slot: &mut Option<(usize, Unrecorded, Why)>, i, u, w| {
        if slot.is_none() {
            *slot = Some((i, u, w));
        }
    };
    for (i, r) in m.allow.iter().enumerate() {
        if r.direction != o.direction {
            continue;
        }
        match (admits(r, res, o), serves(r, o, o.direction)) {
            (Some(false), _) => {}
            (Some(true), Serves::Yes) => return Judgement::Allowed { rule: i },
            (Some(true), Serves::No) => admitted = true,
            (Some(true), Serves::WrongOpener) => {
                admitted = true;
                wrong_opener = true;
            }
            (Some(true), Serves::Depends(u)) => {
                admitted = true;
                let why = if u == Unrecorded::Opener {
                    Why::Initiator
                } else {
                    Why::Service
                };
                note(&mut undecided, i, u, why);
            }
            (None, Serves::No) => {}
            (None, _) => note(&mut undecided, i, Unrecorded::Names, Why::Peer),
        }
    }
    let why = match (wrong_opener, admitted) {
        (true, _) => Why::Initiator,
        (false, true) => Why::Service,
        (false, false) => Why::Peer,
    };
    // Flows whose opener is not known (or not recorded) may be replies, which the monitor
    // judges the other way too.
    let maybe_replies = o.openers.is_none_or(|op| op.unknown);
    if undecided.is_none() && maybe_replies {
        let back = match o.direction {
            Direction::FromDevice => Direction::ToDevice,
            Direction::ToDevice => Direction::FromDevice,
        };
        for (i, r) in m.allow.iter().enumerate() {
            if r.direction == back
                && admits(r, res, o) != Some(false)
                && !matches!(serves(r, o, back), Serves::No | Serves::WrongOpener)
            {
                note(&mut undecided, i, Unrecorded::Reply, why);
                break;
            }
        }
    }
    match undecided {
        // The first undecided rule's reason, but a rule admitting the peer outranks `Peer`.
        Some((rule, unrecorded, w)) => Judgement::Undecided {
            rule,
            unrecorded,
            why: if w == Why::Peer { why } else { w },
        },
        None => Judgement::NotAllowed(why),
    }
}

/// The abstractions `m` uses, resolved from the operator's lists: what evidence about a device
/// with manifest `m` records. Lists the manifest does not use stay empty.
pub fn resolutions_for(
    m: &Manifest,
    operator_networks: &[Prefix],
    local_networks: &[Prefix],
    my_controller: &[Prefix],
    controllers: &BTreeMap<String, Vec<Prefix>>,
) -> Resolutions {
    let mut res = Resolutions::default();
    for r in &m.allow {
        match &r.peer {
            Peer::OperatorNetworks => res.operator_networks = operator_networks.to_vec(),
            Peer::LocalNetworks => res.local_networks = local_networks.to_vec(),
            Peer::MyController => res.my_controller = my_controller.to_vec(),
            Peer::Controller(uri) => {
                res.controllers.insert(
                    uri.clone(),
                    controllers.get(uri).cloned().unwrap_or_default(),
                );
            }
            _ => {}
        }
    }
    res
}

/// The DNS names `m`'s rules name, either direction: the only names a row's judgement depends
/// on ([`judge`] asks of each name rule whether its name is among the peer's), so a row's other
/// names can be left out of what it records without changing its judgement. Empty when `m` has
/// no name rule (and a row's names are then not needed at all).
pub fn names_named(m: &Manifest) -> std::collections::BTreeSet<&str> {
    m.allow
        .iter()
        .filter_map(|r| match &r.peer {
            Peer::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .collect()
}

/// The protocols reports and evidence name, by number; any other is written as its number.
const PROTOCOLS: [(u8, &str); 4] = [(6, "tcp"), (17, "udp"), (1, "icmp"), (58, "icmpv6")];

/// An IP protocol's name as reports and evidence write it (tcp, udp, icmp, icmpv6), or its
/// number.
pub fn protocol_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map_or_else(|| p.to_string(), |(_, name)| (*name).to_string())
}

/// The protocol number a name of [`protocol_name`] stands for.
pub fn protocol_number(name: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(p, _)| *p)
        .or_else(|| name.parse().ok())
}
