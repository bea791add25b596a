//! The flow path: a flow's devices found by address, each side judged against its device's
//! compiled manifest, and counted into the report's rows. Kept in one module, so that the
//! functions a flow passes through are compiled together.

use crate::compile::*;
use crate::devices::*;
use crate::rows::RowKey;
use crate::Monitor;
use nospy_flow::Flow;
use nospy_manifest::Direction;
use std::net::IpAddr;
use std::sync::Arc;

/// One device's side of a flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub(crate) device: u32,
    /// The device's compiled manifest (`NO_MANIFEST`: none).
    pub(crate) compiled: u32,
    pub(crate) peer: IpAddr,
    /// The peer's device, when the peer is one (for `same-vendor` rules).
    pub(crate) peer_device: Option<u32>,
    pub(crate) side: Side,
}

/// The verdict on one side of a flow.
pub(crate) enum Verdict {
    Allowed,
    Violation,
    Unattributable,
}

impl Monitor {
    /// The device with address `a`, and its compiled manifest (`NO_MANIFEST`: none).
    #[inline]
    pub(crate) fn device_of(&self, a: IpAddr) -> Option<Found> {
        self.by_addr.get(a)
    }

    /// Judges one flow from the side of each device it belongs to, and counts it.
    pub fn flow(&mut self, f: &Flow) {
        let found = [self.device_of(f.src), self.device_of(f.dst)];
        self.flow_found(f, found);
    }

    /// Judges and counts one flow whose devices are already known: `devices` are the numbers,
    /// in the inventory's order, of the devices whose addresses are its source and its
    /// destination (`None`: that address is no device's), as a collector that attributed the
    /// flow found them. The same as [`Monitor::flow`] when they are what the inventory says
    /// of the flow's addresses; a number beyond the inventory counts as no device.
    pub fn flow_of(&mut self, f: &Flow, devices: [Option<u32>; 2]) {
        let found = devices.map(|d| {
            let d = d?;
            Some(Found(d, self.devs.get(d as usize)?.compiled))
        });
        self.flow_found(f, found);
    }

    #[inline]
    fn flow_found(&mut self, f: &Flow, found: [Option<Found>; 2]) {
        self.report.flows += 1;
        self.report.packets += f.packets;
        self.report.bytes += f.bytes;
        self.report.window = Some(match self.report.window {
            None => (f.first_ns, f.last_ns),
            Some((a, b)) => (a.min(f.first_ns), b.max(f.last_ns)),
        });
        let parts = self.parts(f, found);
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

    /// The flow from the side of each of its devices (`found`: its source's and its
    /// destination's): the one that opened it (going out), the other (coming in).
    #[inline]
    pub(crate) fn parts(&self, f: &Flow, found: [Option<Found>; 2]) -> [Option<Part>; 2] {
        let [src, dst] = found;
        let opened = f.initiator_known;
        // The side that opened it: `src`, unless nothing says so and it looks like the answering
        // half of a conversation (a flow exporter's record of a reply).
        let (src, dst, sa, da, sport, dport) =
            if !opened && nospy_flow::looks_like_reply(f.proto, f.sport, f.dport) {
                (dst, src, f.dst, f.src, f.dport, f.sport)
            } else {
                (src, dst, f.src, f.dst, f.sport, f.dport)
            };
        let part = |found: Option<Found>,
                    peer_found: Option<Found>,
                    device_addr,
                    peer,
                    direction,
                    peer_port,
                    device_port,
                    sent| {
            let Found(device, compiled) = found?;
            Some(Part {
                device,
                compiled,
                peer,
                peer_device: peer_found.map(|Found(p, _)| p),
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
            part(src, dst, sa, da, Direction::FromDevice, dport, sport, true),
            part(dst, src, da, sa, Direction::ToDevice, sport, dport, false),
        ]
    }

    /// The set of services compiled manifest `c` allows with `peer` in direction `dir` by its
    /// address (prefix rules), if any.
    #[inline]
    pub(crate) fn lookup(&self, c: u32, dir: Direction, peer: IpAddr) -> Option<u32> {
        let c = c as usize;
        match key(peer) {
            (true, k) => self
                .v4
                .lookup(self.v4_ids.get(c)?[dir_index(dir)], k as u32),
            (false, k) => self.compiled.get(c)?.dirs[dir_index(dir)].v6.lookup(k),
        }
    }

    /// The verdict on one side of a flow (`part`), `None` when its device has no manifest;
    /// `set` is what [`Monitor::lookup`] found for it.
    pub(crate) fn verdict(&self, part: &Part, set: Option<u32>, f: &Flow) -> Option<Verdict> {
        let d = part.device as usize;
        let c = self.compiled.get(self.devs[d].compiled as usize)?;
        let verdict = self.judge(part, &part.side, c, set, f);
        if !f.initiator_known && matches!(verdict, Verdict::Violation | Verdict::Unattributable) {
            // Who opened it is unknown: it may be the reply half of a flow the other way (a
            // flow exporter's one-direction record). Allowed that way, it is not a violation.
            let reverse = Side {
                direction: match part.side.direction {
                    Direction::FromDevice => Direction::ToDevice,
                    Direction::ToDevice => Direction::FromDevice,
                },
                ..part.side
            };
            let set = self.lookup(self.devs[d].compiled, reverse.direction, part.peer);
            if matches!(self.judge(part, &reverse, c, set, f), Verdict::Allowed) {
                return Some(Verdict::Allowed);
            }
        }
        Some(verdict)
    }

    pub(crate) fn judge_and_count(&mut self, part: &Part, set: Option<u32>, f: &Flow) {
        let Part {
            device: d,
            peer,
            side,
            ..
        } = *part;
        let dev = &mut self.devs[d as usize];
        if dev.flows == 0 {
            self.touched.push(d);
        }
        dev.flows += 1;
        let Some(verdict) = self.verdict(part, set, f) else {
            return;
        };
        let port = match side.direction {
            Direction::FromDevice => side.peer_port,
            Direction::ToDevice => side.device_port,
        };
        let key = RowKey::new(d, dir_index(side.direction) as u8, peer, f.proto, port);
        let opened = match side.device_opened {
            Some(true) => crate::rows::OPENED_BY_DEVICE,
            Some(false) => crate::rows::OPENED_BY_PEER,
            None => crate::rows::OPENER_UNKNOWN,
        };
        match verdict {
            Verdict::Allowed => {}
            Verdict::Violation => {
                self.devs[d as usize].violations += 1;
                self.violations.add(key, f, 0, opened);
            }
            Verdict::Unattributable => {
                self.devs[d as usize].unattributable += 1;
                let names = self.names_that_could_allow(d, &side);
                self.unattributable.add(key, f, names, opened);
            }
        }
    }

    /// The allowed names whose rules would allow this side of a flow, as an index into
    /// `name_sets`. Which names those are depends only on which of the direction's name services
    /// allow the flow: each such combination is worked out once.
    pub(crate) fn names_that_could_allow(&mut self, d: u32, side: &Side) -> u32 {
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

    /// The verdict on a flow from the side of `part`'s device, seen as `side` (the part's, or
    /// the reverse), with `c` the device's compiled manifest and `set` what its peer's address
    /// found there.
    pub(crate) fn judge(
        &self,
        part: &Part,
        side: &Side,
        c: &Compiled,
        set: Option<u32>,
        f: &Flow,
    ) -> Verdict {
        let (d, peer) = (part.device, part.peer);
        let rules = &c.dirs[dir_index(side.direction)];
        if let Some(set) = set {
            let (first, n) = self.sets[set as usize];
            if any_allows(&self.items[first as usize..(first + n) as usize], side) {
                return Verdict::Allowed;
            }
        }
        if !rules.same_vendor.is_empty() {
            if let Some(p) = part.peer_device {
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
        // Whichever is fewer is walked, the peer's names or the manifest's: DNS answers can tie
        // any number of names to one address.
        if let Some(tied) = self.dns.get(&peer) {
            let allowed = if tied.len() <= rules.names.len() {
                tied.at(f.first_ns)
                    .filter_map(|name| rules.names.get(name))
                    .any(|ids| any_allows(ids, side))
            } else {
                rules
                    .names
                    .iter()
                    .filter(|(name, _)| tied.tied_at(name, f.first_ns))
                    .any(|(_, ids)| any_allows(ids, side))
            };
            if allowed {
                return Verdict::Allowed;
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
        // Only a name could allow it. Could the answer have been seen, and was it kept?
        let device_addr_answered =
            |a: &IpAddr| self.first_answer.get(a).is_some_and(|t| *t <= f.first_ns);
        let dns_visible = self.resolver.is_some()
            || (self.dns_dropped == 0
                && !self.answers_unread_at(f.first_ns)
                && (f.initiator_known || f.proto != 6)
                && device_addr_answered(&side.device_addr));
        if dns_visible {
            return Verdict::Violation;
        }
        Verdict::Unattributable
    }
}
