//! The one flow record every source is normalised into.

use std::net::IpAddr;

/// A flow: packets between two endpoints with one protocol and pair of ports.
///
/// From a capture, both directions of a conversation make one flow and `src` is the side that
/// opened it (from the TCP handshake when it was captured; otherwise the side seen sending first,
/// and `initiator_known` is false). From NetFlow and IPFIX, a flow is what the exporter reported:
/// one direction, `src` its sender, the initiator unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// First packet, nanoseconds since the Unix epoch.
    pub first_ns: u64,
    /// Last packet, nanoseconds since the Unix epoch.
    pub last_ns: u64,
    /// The opening (or first-seen, or sending) side.
    pub src: IpAddr,
    /// The other side.
    pub dst: IpAddr,
    /// `src`'s port (the ICMP type for ICMP).
    pub sport: u16,
    /// `dst`'s port (the ICMP code for ICMP).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Packets, both directions for a capture's flows.
    pub packets: u64,
    /// Bytes at the IP layer, both directions for a capture's flows.
    pub bytes: u64,
    /// Whether `src` is known to have opened the flow (a TCP handshake was captured).
    pub initiator_known: bool,
}

/// A DNS answer seen in traffic: `client` was told that `name` resolves to `addr` for `ttl`
/// seconds from `ts_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSeen {
    /// When the answer was captured, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Who received the answer.
    pub client: IpAddr,
    /// The answer.
    pub answer: crate::dns::Answer,
}

/// Whether a packet or one-direction flow from `sport` to `dport` looks like the answering half
/// of a conversation: TCP or UDP from a service port (below 1024) to an ephemeral one. Used only
/// where no handshake says who opened it.
pub fn looks_like_reply(proto: u8, sport: u16, dport: u16) -> bool {
    matches!(proto, 6 | 17) && sport < 1024 && dport >= 1024
}
