//! Packets to their IP header fields: the link layers captures carry (Ethernet with any number of
//! VLAN tags, Linux cooked capture v1 and v2, raw IP, BSD loopback), then IPv4 or IPv6 (extension
//! headers skipped), then TCP, UDP or ICMP.

use std::net::IpAddr;

/// LINKTYPE_NULL: BSD loopback, a 4-byte address family in the host's byte order.
pub const LINKTYPE_NULL: u16 = 0;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// LINKTYPE_RAW: the packet starts with the IP header.
pub const LINKTYPE_RAW: u16 = 101;
/// LINKTYPE_LINUX_SLL: Linux cooked capture.
pub const LINKTYPE_LINUX_SLL: u16 = 113;
/// LINKTYPE_IPV4.
pub const LINKTYPE_IPV4: u16 = 228;
/// LINKTYPE_IPV6.
pub const LINKTYPE_IPV6: u16 = 229;
/// LINKTYPE_LINUX_SLL2: Linux cooked capture v2.
pub const LINKTYPE_LINUX_SLL2: u16 = 276;

/// TCP flag bits.
pub mod tcp {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The IP-level view of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// Source port (TCP and UDP; the ICMP type for ICMP; else 0).
    pub sport: u16,
    /// Destination port (TCP and UDP; the ICMP code for ICMP; else 0).
    pub dport: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// The IP packet's length as its header gives it (bytes on the wire above the link layer).
    pub ip_len: u32,
    /// The transport payload, as far as it was captured (for DNS).
    pub payload: &'a [u8],
    /// A non-first fragment: no transport header, ports unknown (0).
    pub fragment: bool,
}

/// Why a packet gave no IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not IP (ARP, LLDP, ...).
    NotIp,
    /// A link type nospy does not read.
    LinkType,
    /// Cut short (by the capture's snap length or malformed), with what was being read.
    Truncated(&'static str),
    /// An IP header that is not valid.
    Malformed(&'static str),
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;
const ETH_QINQ_OLD: u16 = 0x9100;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Decodes one captured packet of link type `linktype`.
#[inline]
pub fn decode(linktype: u16, data: &[u8]) -> Result<IpPacket<'_>, Skip> {
    let (ethertype, rest) = match linktype {
        LINKTYPE_ETHERNET => {
            let mut t = be16(data, 12).ok_or(Skip::Truncated("Ethernet header"))?;
            let mut at = 14;
            // Any number of 802.1Q / 802.1ad tags.
            while matches!(t, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
                t = be16(data, at + 2).ok_or(Skip::Truncated("VLAN tag"))?;
                at += 4;
            }
            (t, &data[at.min(data.len())..])
        }
        LINKTYPE_LINUX_SLL => (
            be16(data, 14).ok_or(Skip::Truncated("Linux cooked header"))?,
            data.get(16..).unwrap_or(&[]),
        ),
        LINKTYPE_LINUX_SLL2 => (
            be16(data, 0).ok_or(Skip::Truncated("Linux cooked v2 header"))?,
            data.get(20..)
                .ok_or(Skip::Truncated("Linux cooked v2 header"))?,
        ),
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            match data.first().map(|b| b >> 4) {
                Some(4) => (ETH_IPV4, data),
                Some(6) => (ETH_IPV6, data),
                Some(_) => return Err(Skip::Malformed("IP version")),
                None => return Err(Skip::Truncated("IP header")),
            }
        }
        LINKTYPE_NULL => {
            let fam = data.get(0..4).ok_or(Skip::Truncated("loopback header"))?;
            // Host byte order of whoever captured it: read both ways.
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let t = match (le, be) {
                (2, _) | (_, 2) => ETH_IPV4,
                (24 | 28 | 30, _) | (_, 24 | 28 | 30) => ETH_IPV6,
                _ => return Err(Skip::NotIp),
            };
            (t, &data[4..])
        }
        _ => return Err(Skip::LinkType),
    };
    match ethertype {
        ETH_IPV4 => ipv4(rest),
        ETH_IPV6 => ipv6(rest),
        _ => Err(Skip::NotIp),
    }
}

#[inline]
fn ipv4(d: &[u8]) -> Result<IpPacket<'_>, Skip> {
    if d.len() < 20 {
        return Err(Skip::Truncated("IPv4 header"));
    }
    if d[0] >> 4 != 4 {
        return Err(Skip::Malformed("IPv4 version"));
    }
    let ihl = ((d[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Skip::Malformed("IPv4 header length"));
    }
    let total = u16::from_be_bytes([d[2], d[3]]) as usize;
    if total < ihl {
        return Err(Skip::Malformed("IPv4 total length"));
    }
    let frag = u16::from_be_bytes([d[6], d[7]]);
    let proto = d[9];
    let src = IpAddr::from([d[12], d[13], d[14], d[15]]);
    let dst = IpAddr::from([d[16], d[17], d[18], d[19]]);
    let body = d
        .get(ihl..total.min(d.len()))
        .ok_or(Skip::Truncated("IPv4 options"))?;
    transport(src, dst, proto, total as u32, body, frag & 0x1fff != 0)
}

fn ipv6(d: &[u8]) -> Result<IpPacket<'_>, Skip> {
    if d.len() < 40 {
        return Err(Skip::Truncated("IPv6 header"));
    }
    if d[0] >> 4 != 6 {
        return Err(Skip::Malformed("IPv6 version"));
    }
    let plen = u16::from_be_bytes([d[4], d[5]]) as usize;
    let mut next = d[6];
    let mut s = [0u8; 16];
    s.copy_from_slice(&d[8..24]);
    let mut t = [0u8; 16];
    t.copy_from_slice(&d[24..40]);
    let (src, dst) = (IpAddr::from(s), IpAddr::from(t));
    let end = (40 + plen).min(d.len());
    let mut at = 40;
    let mut fragment = false;
    // Extension headers: hop-by-hop, routing, fragment, destination options, AH (at most 8).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let h = d
                    .get(at..at + 2)
                    .ok_or(Skip::Truncated("IPv6 extension header"))?;
                next = h[0];
                at += (h[1] as usize + 1) * 8;
            }
            44 => {
                let h = d
                    .get(at..at + 8)
                    .ok_or(Skip::Truncated("IPv6 fragment header"))?;
                next = h[0];
                fragment = u16::from_be_bytes([h[2], h[3]]) >> 3 != 0;
                at += 8;
            }
            51 => {
                let h = d.get(at..at + 2).ok_or(Skip::Truncated("IPv6 AH header"))?;
                next = h[0];
                at += (h[1] as usize + 2) * 4;
            }
            _ => break,
        }
    }
    let body = d
        .get(at..end.max(at))
        .ok_or(Skip::Truncated("IPv6 extension header"))?;
    transport(src, dst, next, 40 + plen as u32, body, fragment)
}

#[inline]
fn transport(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ip_len: u32,
    body: &[u8],
    fragment: bool,
) -> Result<IpPacket<'_>, Skip> {
    let mut p = IpPacket {
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ip_len,
        payload: &[],
        fragment,
    };
    if fragment {
        return Ok(p);
    }
    match proto {
        6 => {
            if body.len() < 14 {
                return Err(Skip::Truncated("TCP header"));
            }
            p.sport = u16::from_be_bytes([body[0], body[1]]);
            p.dport = u16::from_be_bytes([body[2], body[3]]);
            p.tcp_flags = body[13];
            let off = ((body[12] >> 4) as usize) * 4;
            p.payload = body.get(off..).unwrap_or(&[]);
        }
        17 => {
            if body.len() < 8 {
                return Err(Skip::Truncated("UDP header"));
            }
            p.sport = u16::from_be_bytes([body[0], body[1]]);
            p.dport = u16::from_be_bytes([body[2], body[3]]);
            p.payload = &body[8..];
        }
        1 | 58 => {
            if body.len() < 2 {
                return Err(Skip::Truncated("ICMP header"));
            }
            p.sport = body[0] as u16;
            p.dport = body[1] as u16;
        }
        _ => {}
    }
    Ok(p)
}
