//! The sources behind one interface: whatever the input, flows and DNS answers go to a [`Sink`].

use crate::capture::{CaptureError, CaptureReader};
use crate::conntrack::Tracker;
use crate::netflow::{Collector, Counters};
use crate::packet::{self, Skip};
use crate::record::{DnsSeen, Flow};
use std::fmt::Write as _;

/// Where flows and DNS answers go.
pub trait Sink {
    /// Whether traffic between these addresses matters to the sink: packets between two
    /// addresses it does not want are counted, not tracked into flows (DNS answers are read from
    /// every packet still). The default wants everything.
    fn wants(&self, _src: std::net::IpAddr, _dst: std::net::IpAddr) -> bool {
        true
    }
    /// One flow.
    fn flow(&mut self, flow: &Flow);
    /// Several flows, in order (a flow export message's): as many calls of [`Sink::flow`],
    /// unless the sink does better with them together.
    fn flows(&mut self, flows: &[Flow]) {
        for f in flows {
            self.flow(f);
        }
    }
    /// One DNS answer seen in the traffic (sources without DNS never call it).
    fn dns(&mut self, _seen: &DnsSeen) {}
    /// About once a second from a live source, whether anything came or not (a sink that
    /// batches hands its batches on).
    fn tick(&mut self) {}
}

impl Sink for Vec<Flow> {
    fn flow(&mut self, flow: &Flow) {
        self.push(flow.clone());
    }
}

/// What reading a source counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets read from the capture.
    pub packets: u64,
    /// Packets that are not IP (ARP, LLDP, ...).
    pub not_ip: u64,
    /// Packets of a link type nospy does not read.
    pub other_link: u64,
    /// Packets cut short or malformed below the transport header.
    pub bad_packets: u64,
    /// DNS responses read, and refused as malformed.
    pub dns_responses: u64,
    /// DNS responses refused as malformed.
    pub dns_malformed: u64,
    /// Flows ended early because the flow table was full.
    pub evicted: u64,
    /// Flows produced.
    pub flows: u64,
    /// Packets between addresses the sink did not want (counted, not tracked), and their bytes.
    pub unwanted_packets: u64,
    /// Bytes of those packets (as captured on the wire).
    pub unwanted_bytes: u64,
    /// Export messages read (flow exports only).
    pub export: Counters,
}

/// How many flows a capture may hold open at once (memory stays bounded; beyond it the flows idle
/// longest are ended early and counted).
pub const MAX_OPEN_FLOWS: usize = 2_000_000;

/// Reads a capture of traffic: packets become flows (both directions of a conversation in one),
/// DNS responses become answers. `progress` is told the bytes read so far and the total.
pub fn read_traffic(
    data: &[u8],
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Stats, CaptureError> {
    read_traffic_from(data, data.len(), sink, progress)
}

/// [`read_traffic`] from a stream (a file) of `total` bytes, through a buffer of bounded size.
pub fn read_traffic_from(
    src: impl std::io::Read,
    total: usize,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Stats, CaptureError> {
    let mut cap = CaptureReader::new(src)?;
    let mut tracker = Tracker::new(MAX_OPEN_FLOWS);
    let mut st = Stats::default();
    loop {
        if st.packets.is_multiple_of(65_536) {
            progress(cap.position(), total);
        }
        let Some(p) = cap.next_packet()? else { break };
        st.packets += 1;
        match packet::decode(p.linktype, p.data) {
            Ok(ip) => {
                if ip.proto == 17 && ip.sport == 53 && !ip.payload.is_empty() {
                    st.dns_responses += 1;
                    match crate::dns::answers(ip.payload) {
                        Ok(answers) => {
                            for answer in answers {
                                sink.dns(&DnsSeen {
                                    ts_ns: p.ts_ns,
                                    client: ip.dst,
                                    answer,
                                });
                            }
                        }
                        Err(_) => st.dns_malformed += 1,
                    }
                }
                if !sink.wants(ip.src, ip.dst) {
                    st.unwanted_packets += 1;
                    st.unwanted_bytes += u64::from(p.wire_len);
                    continue;
                }
                tracker.add(p.ts_ns, &ip);
                for f in tracker.take_done() {
                    st.flows += 1;
                    sink.flow(&f);
                }
            }
            Err(Skip::NotIp) => st.not_ip += 1,
            Err(Skip::LinkType) => st.other_link += 1,
            Err(Skip::Truncated(_) | Skip::Malformed(_)) => st.bad_packets += 1,
        }
    }
    st.evicted = tracker.evicted;
    for f in tracker.finish() {
        st.flows += 1;
        sink.flow(&f);
    }
    progress(total, total);
    Ok(st)
}

/// Reads a capture of flow export packets (NetFlow v5, v9, IPFIX over UDP, any port): each UDP
/// payload is one export message, its exporter the packet's source address and port. A message
/// that is not a valid export is counted as malformed and skipped.
pub fn read_exports(
    data: &[u8],
    collector: &mut Collector,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Stats, CaptureError> {
    read_exports_from(data, data.len(), collector, sink, progress)
}

/// [`read_exports`] from a stream (a file) of `total` bytes, through a buffer of bounded size.
pub fn read_exports_from(
    src: impl std::io::Read,
    total: usize,
    collector: &mut Collector,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Stats, CaptureError> {
    let mut cap = CaptureReader::new(src)?;
    let mut st = Stats::default();
    let mut flows = Vec::new();
    let mut exporter = String::new();
    loop {
        if st.packets.is_multiple_of(16_384) {
            progress(cap.position(), total);
        }
        let Some(p) = cap.next_packet()? else { break };
        st.packets += 1;
        match packet::decode(p.linktype, p.data) {
            Ok(ip) if ip.proto == 17 && !ip.fragment => {
                exporter.clear();
                let _ = write!(exporter, "{}:{}", ip.src, ip.sport);
                flows.clear();
                // A malformed message is counted by the collector and skipped.
                let _ = collector.read(&exporter, ip.payload, &mut flows);
                st.flows += flows.len() as u64;
                sink.flows(&flows);
            }
            Ok(_) => {}
            Err(Skip::NotIp) => st.not_ip += 1,
            Err(Skip::LinkType) => st.other_link += 1,
            Err(Skip::Truncated(_) | Skip::Malformed(_)) => st.bad_packets += 1,
        }
    }
    st.export = collector.counters;
    progress(total, total);
    Ok(st)
}
