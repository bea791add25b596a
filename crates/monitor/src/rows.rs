//! Report rows gathered by appending and sort-merging instead of a hash map.
//!
//! A large input can have hundreds of thousands of distinct violation rows (a scan of many
//! peers and ports); a hash map of them outgrows the caches, so that every new row costs a
//! random memory access, and every growth of the map moves all of them again. Here a flow's
//! row is appended to a buffer (sequential writes); when the buffer holds a million rows and
//! as many as were already merged (and at the end), it is sorted, its equal rows combined, and
//! merged into the sorted rows. Each row is so moved a logarithmic number of times, in
//! sequential passes, and memory stays within twice the distinct rows and the buffer's 72 MB.
//! A small direct-mapped cache of the rows appended recently adds a flow to its row in place
//! when the row repeats (the usual case in real traffic: the same peer again and again), so
//! that repetition does not fill the buffer. Nothing here hashes with a secret: crafted keys
//! that collide in the cache only make every flow an append, which costs the same as distinct
//! rows. At most [`crate::MAX_ROWS`] distinct rows are kept: beyond, the rows last in the
//! report's order are dropped at each merge and their flows counted, so that memory stays
//! bounded whatever the traffic (the devices' own counts stay exact).

use nospy_flow::Flow;
use nospy_manifest::Direction;
use std::net::IpAddr;

/// Slots of the cache of recent rows (a power of two).
const RECENT: usize = 4096;

/// Appended rows a buffer holds at least before it is merged (72 MB): merging is cheapest done
/// rarely, on large sorted runs.
const MIN_PENDING: usize = 1 << 20;

/// Report rows (violations, or unattributable flows) while flows come in.
pub(crate) struct Rows {
    /// Distinct rows, sorted in the report's order.
    merged: Vec<Row>,
    /// Rows appended since the last merge, unsorted, possibly repeated.
    pending: Vec<Row>,
    /// Appended rows the buffer holds at least before it is merged.
    min_pending: usize,
    /// Most distinct rows kept.
    max_rows: usize,
    /// Flows of the rows dropped because `max_rows` were kept.
    pub(crate) dropped_flows: u64,
    /// Per slot, the hash and index in `pending` of the last row appended there (`u32::MAX`:
    /// none). The hash is compared first, so that a new row reads nothing of the buffer.
    recent: Box<[(u64, u32); RECENT]>,
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::merging_from(MIN_PENDING, crate::MAX_ROWS)
    }
}

impl Rows {
    /// Rows whose buffer is merged once it holds `min_pending` rows and as many as are merged,
    /// of which `max_rows` are kept.
    fn merging_from(min_pending: usize, max_rows: usize) -> Rows {
        Rows {
            merged: Vec::new(),
            pending: Vec::new(),
            min_pending,
            max_rows,
            dropped_flows: 0,
            recent: Box::new([(0, u32::MAX); RECENT]),
        }
    }
}

/// A row's hash: its slot in the cache is the top bits.
fn hash(k: &RowKey) -> u64 {
    (k.0[0] ^ k.0[1].rotate_left(21) ^ k.0[2].rotate_left(42)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Rows {
    /// Counts flow `f` in row `key`; `names` as [`Agg::names`], `opened` as [`Agg::openers`]
    /// (one bit).
    #[inline]
    pub(crate) fn add(&mut self, key: RowKey, f: &Flow, names: u32, opened: u8) {
        let h = hash(&key);
        let s = (h >> 52) as usize & (RECENT - 1);
        let (seen, at) = self.recent[s];
        if seen == h {
            if let Some(row) = self.pending.get_mut(at as usize) {
                if row.key == key {
                    row.agg.add(f);
                    row.agg.names = row.agg.names.min(names);
                    row.agg.openers |= opened;
                    return;
                }
            }
        }
        self.recent[s] = (h, self.pending.len() as u32);
        let mut agg = Agg::new(f, names);
        agg.add(f);
        agg.openers = opened;
        self.pending.push(Row { key, agg });
        if self.pending.len() >= self.min_pending.max(self.merged.len()) {
            self.merge();
        }
    }

    /// Sorts the appended rows, combines the equal ones and merges them into the sorted rows.
    fn merge(&mut self) {
        self.recent.fill((0, u32::MAX));
        if self.pending.is_empty() {
            return;
        }
        let mut new = std::mem::take(&mut self.pending);
        new.sort_unstable_by_key(|r| r.key);
        combine(&mut new);
        let old = std::mem::take(&mut self.merged);
        if old.is_empty() {
            self.merged = new;
        } else {
            let mut out = Vec::with_capacity(old.len() + new.len());
            let mut new = new.into_iter().peekable();
            for mut row in old {
                while let Some(n) = new.next_if(|n| n.key < row.key) {
                    out.push(n);
                }
                if let Some(n) = new.next_if(|n| n.key == row.key) {
                    row.agg.merge(&n.agg);
                }
                out.push(row);
            }
            out.extend(new);
            self.merged = out;
        }
        if self.merged.len() > self.max_rows {
            self.dropped_flows += self
                .merged
                .drain(self.max_rows..)
                .map(|r| r.agg.flows)
                .sum::<u64>();
        }
    }

    /// Every row kept, once, in the report's order; and the flows of the rows dropped.
    /// Rows held: at most this many distinct ones (appended ones may repeat).
    pub(crate) fn held(&self) -> usize {
        self.merged.len() + self.pending.len()
    }

    pub(crate) fn finish(mut self) -> (Vec<Row>, u64) {
        self.merge();
        (self.merged, self.dropped_flows)
    }
}

/// Combines adjacent rows with equal keys of a sorted list.
pub(crate) fn combine(rows: &mut Vec<Row>) {
    rows.dedup_by(|later, kept| {
        if later.key == kept.key {
            kept.agg.merge(&later.agg);
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    fn flow(i: u64) -> Flow {
        Flow {
            first_ns: 1_000 + i % 17,
            last_ns: 2_000 + i % 29,
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 2]),
            sport: 1,
            dport: 2,
            proto: 6,
            packets: 1 + i % 3,
            bytes: 60 + i % 7,
            initiator_known: false,
        }
    }

    /// Beyond the most rows kept, the last in order are dropped and their flows counted; what
    /// is kept is what an unbounded gathering keeps first.
    #[test]
    fn rows_beyond_the_most_kept_are_dropped_and_counted() {
        let mut all = Rows::merging_from(1_000, usize::MAX);
        let mut capped = Rows::merging_from(1_000, 2_500);
        for i in 0..20_000u64 {
            let peer = IpAddr::from((0xc633_6400 + (i * 7_919 % 9_000) as u32).to_be_bytes());
            let k = RowKey::new((i % 3) as u32, 0, peer, 6, 443);
            all.add(k, &flow(i), 0, 0);
            capped.add(k, &flow(i), 0, 0);
        }
        let (all, none) = all.finish();
        let (kept, dropped) = capped.finish();
        assert_eq!((all.len(), none, kept.len()), (9_000, 0, 2_500));
        assert!(kept[..] == all[..2_500]);
        assert_eq!(
            dropped,
            all[2_500..].iter().map(|r| r.agg.flows).sum::<u64>()
        );
        assert_eq!(
            dropped + kept.iter().map(|r| r.agg.flows).sum::<u64>(),
            20_000
        );
    }

    /// The same rows and counts as a map would give, in order, whatever the mix of repeats.
    #[test]
    fn agrees_with_a_map() {
        for distinct in [1u64, 7, 5_000, 70_000, 300_000] {
            // Merged every few thousand rows, so that merging is tested as much as sorting.
            let mut rows = Rows::merging_from(4_096, usize::MAX);
            let mut want: BTreeMap<_, (u64, u64, u64, u64, u64, u32)> = BTreeMap::new();
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            for i in 0..400_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = x % distinct;
                let peer = if n.is_multiple_of(5) {
                    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, (n >> 16) as u16, n as u16])
                } else {
                    IpAddr::from((0xc633_6400 + n as u32).to_be_bytes())
                };
                let k = RowKey::new((n % 13) as u32, (n % 2) as u8, peer, 6, (n % 3) as u16);
                let f = flow(i);
                rows.add(k, &f, (i % 5) as u32, 0);
                let e = want.entry(k).or_insert((0, 0, 0, u64::MAX, 0, u32::MAX));
                e.0 += 1;
                e.1 += f.packets;
                e.2 += f.bytes;
                e.3 = e.3.min(f.first_ns);
                e.4 = e.4.max(f.last_ns);
                e.5 = e.5.min((i % 5) as u32);
            }
            let (got, dropped) = rows.finish();
            assert_eq!(dropped, 0);
            let got: Vec<_> = got
                .into_iter()
                .map(|Row { key, agg: a }| {
                    (
                        key,
                        (a.flows, a.packets, a.bytes, a.first_ns, a.last_ns, a.names),
                    )
                })
                .collect();
            let want: Vec<_> = want.into_iter().collect();
            assert_eq!(got.len(), want.len(), "{distinct} distinct rows");
            assert!(got == want, "{distinct} distinct rows differ");
        }
    }
}

/// One line of the report: flows of one device, direction, peer, protocol and port, with
/// their counts. Kept as the monitor gathers it (packed, so that hundreds of thousands of rows
/// are sorted and handed over without being copied into another shape); read it through its
/// methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub(crate) key: RowKey,
    pub(crate) agg: Agg,
}

impl Row {
    /// The device: its index in [`Report::devices`](crate::Report::devices) (the inventory's order).
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

    /// Who opened its flows, of those seen: bits [`OPENED_BY_DEVICE`], [`OPENED_BY_PEER`],
    /// [`OPENER_UNKNOWN`]; 0 when not recorded.
    pub fn openers(&self) -> u8 {
        self.agg.openers
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
pub(crate) struct RowKey(pub(crate) [u64; 3]);

impl RowKey {
    #[inline]
    pub(crate) fn new(device: u32, dir: u8, peer: IpAddr, proto: u8, port: u16) -> RowKey {
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

    pub(crate) fn device(&self) -> u32 {
        (self.0[0] >> 32) as u32
    }

    pub(crate) fn dir(&self) -> u8 {
        (self.0[0] >> 31) as u8 & 1
    }

    pub(crate) fn proto(&self) -> u8 {
        (self.0[2] >> 16) as u8
    }

    pub(crate) fn port(&self) -> u16 {
        self.0[2] as u16
    }

    pub(crate) fn peer(&self) -> IpAddr {
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

/// The counts of one report row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agg {
    pub(crate) flows: u64,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    /// Unattributable rows: the names that could have covered it, in `Monitor::name_sets`
    /// (of the row's flows, the set numbered first).
    pub(crate) names: u32,
    /// Who opened the row's flows, of those seen: [`OPENED_BY_DEVICE`], [`OPENED_BY_PEER`],
    /// [`OPENER_UNKNOWN`] (0: not recorded, rows merged from an older worker's counts).
    pub(crate) openers: u8,
}

/// A flow of the row was opened by the device.
pub const OPENED_BY_DEVICE: u8 = 1;
/// A flow of the row was opened by the peer.
pub const OPENED_BY_PEER: u8 = 2;
/// Who opened a flow of the row is not known (a flow exporter's record, say).
pub const OPENER_UNKNOWN: u8 = 4;

impl Agg {
    #[inline]
    pub(crate) fn new(f: &Flow, names: u32) -> Agg {
        Agg {
            flows: 0,
            packets: 0,
            bytes: 0,
            first_ns: f.first_ns,
            last_ns: f.last_ns,
            names,
            openers: 0,
        }
    }

    #[inline]
    pub(crate) fn add(&mut self, f: &Flow) {
        self.flows += 1;
        self.packets += f.packets;
        self.bytes += f.bytes;
        self.first_ns = self.first_ns.min(f.first_ns);
        self.last_ns = self.last_ns.max(f.last_ns);
    }

    /// Adds the counts of the same row gathered apart.
    pub(crate) fn merge(&mut self, o: &Agg) {
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.names = self.names.min(o.names);
        self.openers |= o.openers;
    }
}
