//! Packets into flows: both directions of a conversation become one [`Flow`], opened by the side
//! that sent the TCP SYN when the handshake was captured.

use crate::fasthash::FastMap;
use crate::packet::{tcp, IpPacket};
use crate::record::Flow;
use std::net::IpAddr;

/// A conversation's key, the same for both directions: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: IpAddr,
    b: IpAddr,
    pa: u16,
    pb: u16,
    proto: u8,
}

struct State {
    flow: Flow,
    /// A FIN or RST was seen: a new SYN on the same ports starts a new flow.
    closed: bool,
}

/// The flow table.
pub struct Tracker {
    table: FastMap<Key, State>,
    max_flows: usize,
    done: Vec<Flow>,
    /// Flows ended early because the table was full.
    pub evicted: u64,
}

impl Tracker {
    /// A table holding at most `max_flows` open flows: beyond that, the flows idle longest are
    /// ended early (and counted), so memory stays bounded whatever the capture holds.
    pub fn new(max_flows: usize) -> Tracker {
        Tracker {
            table: FastMap::default(),
            max_flows: max_flows.max(16),
            done: Vec::new(),
            evicted: 0,
        }
    }

    /// Adds one packet captured at `ts_ns`.
    pub fn add(&mut self, ts_ns: u64, p: &IpPacket<'_>) {
        let forward = (p.src, p.sport) <= (p.dst, p.dport);
        let key = if forward {
            Key {
                a: p.src,
                b: p.dst,
                pa: p.sport,
                pb: p.dport,
                proto: p.proto,
            }
        } else {
            Key {
                a: p.dst,
                b: p.src,
                pa: p.dport,
                pb: p.sport,
                proto: p.proto,
            }
        };
        let syn = p.proto == 6 && p.tcp_flags & (tcp::SYN | tcp::ACK) == tcp::SYN;
        let synack = p.proto == 6 && p.tcp_flags & (tcp::SYN | tcp::ACK) == (tcp::SYN | tcp::ACK);
        if let Some(s) = self.table.get_mut(&key) {
            if !(syn && s.closed) {
                let f = &mut s.flow;
                f.last_ns = f.last_ns.max(ts_ns);
                f.first_ns = f.first_ns.min(ts_ns);
                f.packets += 1;
                f.bytes += p.ip_len as u64;
                if p.proto == 6 && p.tcp_flags & (tcp::FIN | tcp::RST) != 0 {
                    s.closed = true;
                }
                return;
            }
            // The ports were reused for a new connection.
            if let Some(old) = self.table.remove(&key) {
                self.done.push(old.flow);
            }
        }
        if self.table.len() >= self.max_flows {
            self.evict();
        }
        // The opener: the SYN's sender, the SYN-ACK's receiver; without a handshake (a
        // conversation older than the capture, or UDP), the side with an ephemeral port when the
        // other's is a service port (below 1024), else whoever was seen first.
        let answer_first = synack || (!syn && crate::looks_like_reply(p.proto, p.sport, p.dport));
        let (src, dst, sport, dport) = if answer_first {
            (p.dst, p.src, p.dport, p.sport)
        } else {
            (p.src, p.dst, p.sport, p.dport)
        };
        self.table.insert(
            key,
            State {
                flow: Flow {
                    first_ns: ts_ns,
                    last_ns: ts_ns,
                    src,
                    dst,
                    sport,
                    dport,
                    proto: p.proto,
                    packets: 1,
                    bytes: p.ip_len as u64,
                    initiator_known: syn || synack,
                },
                closed: p.proto == 6 && p.tcp_flags & (tcp::FIN | tcp::RST) != 0,
            },
        );
    }

    /// Ends the half of the flows idle longest.
    fn evict(&mut self) {
        let mut idle: Vec<u64> = self.table.values().map(|s| s.flow.last_ns).collect();
        let mid = idle.len() / 2;
        let (_, cut, _) = idle.select_nth_unstable(mid);
        let cut = *cut;
        let before = self.table.len();
        let done = &mut self.done;
        self.table.retain(|_, s| {
            if s.flow.last_ns <= cut {
                done.push(s.flow.clone());
                false
            } else {
                true
            }
        });
        self.evicted += (before - self.table.len()) as u64;
    }

    /// Flows ended so far (taken).
    pub fn take_done(&mut self) -> Vec<Flow> {
        std::mem::take(&mut self.done)
    }

    /// Ends every flow: the capture is over.
    pub fn finish(mut self) -> Vec<Flow> {
        let mut out = std::mem::take(&mut self.done);
        out.extend(self.table.drain().map(|(_, s)| s.flow));
        out.sort_by_key(|f| f.first_ns);
        out
    }
}
