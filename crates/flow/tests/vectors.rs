//! The capture readers against the published captures in `../shared/vectors/net/pcap`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_flow::capture::{Capture, Format};
use nospy_flow::source::{read_traffic, Sink};
use nospy_flow::{DnsSeen, Flow};
use std::net::IpAddr;
use std::path::PathBuf;

fn pcap(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/net/pcap")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn packets(data: &[u8]) -> Vec<(u64, u16, Vec<u8>, u32)> {
    let mut c = Capture::new(data).unwrap();
    let mut out = Vec::new();
    while let Some(p) = c.next_packet().unwrap() {
        out.push((p.ts_ns, p.linktype, p.data.to_vec(), p.wire_len));
    }
    out
}

#[derive(Default)]
struct Collected {
    flows: Vec<Flow>,
    dns: Vec<DnsSeen>,
}

impl Sink for Collected {
    fn flow(&mut self, f: &Flow) {
        self.flows.push(f.clone());
    }
    fn dns(&mut self, d: &DnsSeen) {
        self.dns.push(d.clone());
    }
}

fn traffic(name: &str) -> Collected {
    let mut c = Collected::default();
    read_traffic(&pcap(name), &mut c, &mut |_, _| {}).unwrap();
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn little_and_big_endian_pcapng_read_identically() {
    let le = pcap("pcap-parser_test001-le.pcapng");
    let be = pcap("pcap-parser_test001-be.pcapng");
    assert_ne!(le, be);
    assert_eq!(Capture::new(&le).unwrap().format(), Format::Pcapng);
    let (a, b) = (packets(&le), packets(&be));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b);
    // DHCP over Ethernet: every packet is UDP between ports 67 and 68.
    for (_, lt, data, _) in &a {
        let p = nospy_flow::packet::decode(*lt, data).unwrap();
        assert_eq!(p.proto, 17);
        assert!(
            [67, 68].contains(&p.sport) && [67, 68].contains(&p.dport),
            "{p:?}"
        );
    }
}

#[test]
fn classic_pcap_is_read() {
    let d = pcap("pcap-parser_ntp.pcap");
    assert_eq!(Capture::new(&d).unwrap().format(), Format::Pcap);
    let ps = packets(&d);
    assert_eq!(ps.len(), 12);
    for (_, lt, data, _) in &ps {
        let p = nospy_flow::packet::decode(*lt, data).unwrap();
        assert_eq!((p.proto, p.sport.min(p.dport)), (17, 123), "{p:?}");
    }
    assert!(ps.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn mudscope_captures_are_pcapng_despite_their_names() {
    for (name, n) in [
        ("mudscope_malign_tue-tplink_2021-11-18_15-10-34.pcap", 91),
        ("mudscope_malign_tue-tplink_2021-11-18_15-20-34.pcap", 299),
        ("mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap", 1268),
        ("mudscope_malign_ut-tplink_2021-11-18_15-20-47.pcap", 470),
    ] {
        let d = pcap(name);
        assert_eq!(Capture::new(&d).unwrap().format(), Format::Pcapng, "{name}");
        assert_eq!(packets(&d).len(), n, "{name}");
    }
}

#[test]
fn the_plug_opens_its_tls_session_in_the_quiet_capture() {
    let c = traffic("mudscope_malign_tue-tplink_2021-11-18_15-10-34.pcap");
    let f: Vec<&Flow> = c
        .flows
        .iter()
        .filter(|f| f.src == ip("192.168.10.206") || f.dst == ip("192.168.10.206"))
        .collect();
    assert_eq!(f.len(), 2, "{f:#?}");
    // A TLS session already open when the capture began: no handshake, so its opener is taken
    // from the ports (the plug's ephemeral port to 443).
    assert_eq!(
        (f[0].src, f[0].dst, f[0].sport, f[0].dport, f[0].proto),
        (ip("192.168.10.206"), ip("52.209.43.100"), 60325, 443, 6)
    );
    assert!(!f[0].initiator_known);
    assert_eq!(f[0].packets, 3);
    // DHCP with the gateway: request and reply in one flow.
    assert_eq!(
        (
            f[1].src,
            f[1].dst,
            f[1].sport,
            f[1].dport,
            f[1].proto,
            f[1].packets
        ),
        (ip("192.168.10.206"), ip("192.168.10.1"), 68, 67, 17, 2)
    );
}

#[test]
fn dns_answers_and_a_session_older_than_the_capture() {
    let c = traffic("mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap");
    let plug = ip("192.168.32.2");
    let mut tied: Vec<(IpAddr, u32)> = c
        .dns
        .iter()
        .filter(|d| d.client == plug && d.answer.name == "use1-api.tplinkra.com")
        .map(|d| (d.answer.addr, d.answer.ttl))
        .collect();
    tied.sort();
    let mut want: Vec<(IpAddr, u32)> = [
        "52.206.238.222",
        "35.170.132.81",
        "52.205.82.112",
        "52.6.157.174",
        "18.233.32.113",
    ]
    .iter()
    .map(|a| (ip(a), 60))
    .collect();
    want.sort();
    assert_eq!(tied, want);
    let to = |peer: &str| {
        c.flows
            .iter()
            .find(|f| f.src == plug && f.dst == ip(peer) && f.dport == 443)
            .unwrap_or_else(|| panic!("no flow to {peer}"))
    };
    // The session to 34.249.4.197 was open before the capture began: its opener is a guess.
    assert!(!to("34.249.4.197").initiator_known);
    let answered = c.dns.iter().find(|d| d.client == plug).unwrap().ts_ns;
    assert!(to("34.249.4.197").first_ns < answered);
    // The one to 52.206.238.222 starts with a captured SYN, after the answer.
    assert!(to("52.206.238.222").initiator_known);
    assert!(to("52.206.238.222").first_ns > answered);
}

#[test]
fn the_scan_is_one_flow_per_probe() {
    let c = traffic("mudscope_malign_tue-tplink_2021-11-18_15-20-34.pcap");
    let probes: Vec<&Flow> = c
        .flows
        .iter()
        .filter(|f| f.src == ip("192.168.255.14") && f.dst == ip("192.168.10.206"))
        .collect();
    // 210 distinct (source port, destination port) probes, from two source ports, over 110
    // ports of the plug (as `tcpdump -n` lists them); each opened by the scanner's SYN.
    assert_eq!(probes.len(), 210);
    assert!(probes.iter().all(|f| f.proto == 6 && f.initiator_known));
    let ports: std::collections::BTreeSet<u16> = probes.iter().map(|f| f.dport).collect();
    assert_eq!(ports.len(), 110);
}

/// A reader that hands out at most a few bytes at a time, as a slow pipe might.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 7 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A packet as a reader returned it: time, link type, bytes, length on the wire.
type Seen = (u64, u16, Vec<u8>, u32);

/// Every packet a reader gives, then its error if it stops on one.
fn drain(
    mut next: impl FnMut() -> Result<Option<Seen>, nospy_flow::capture::CaptureError>,
) -> (Vec<Seen>, Option<String>) {
    let mut seen = Vec::new();
    loop {
        match next() {
            Ok(Some(p)) => seen.push(p),
            Ok(None) => return (seen, None),
            Err(e) => return (seen, Some(e.to_string())),
        }
    }
}

/// Every packet, or the error, as the in-memory reader and the streaming reader see them.
fn both_ways(data: &[u8]) -> (Vec<Seen>, Vec<Seen>, Option<String>, Option<String>) {
    use nospy_flow::capture::{CaptureReader, Packet};
    let own = |p: Packet<'_>| (p.ts_ns, p.linktype, p.data.to_vec(), p.wire_len);
    let (a, ea) = match Capture::new(data) {
        Err(e) => (Vec::new(), Some(e.to_string())),
        Ok(mut c) => drain(|| c.next_packet().map(|p| p.map(own))),
    };
    let (b, eb) = match CaptureReader::new(Trickle { data, step: 0 }) {
        Err(e) => (Vec::new(), Some(e.to_string())),
        Ok(mut c) => drain(|| c.next_packet().map(|p| p.map(own))),
    };
    (a, b, ea, eb)
}

#[test]
fn the_streaming_reader_reads_what_the_in_memory_reader_reads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/net/pcap");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let data = std::fs::read(&p).unwrap();
        let (a, b, ea, eb) = both_ways(&data);
        assert!(!a.is_empty() && ea.is_none(), "{}", p.display());
        assert_eq!(a, b, "{}", p.display());
        assert_eq!(ea, eb, "{}", p.display());
        // Cut anywhere: the same packets, then the same error at the same offset.
        for cut in [1, 5, 23, 24, 25, 40, data.len() / 2, data.len() - 1] {
            let (a, b, ea, eb) = both_ways(&data[..cut]);
            assert_eq!((a, ea), (b, eb), "{} cut at {cut}", p.display());
        }
    }
}

#[test]
fn the_streaming_reader_skips_more_blocks_than_its_buffer_holds() {
    // pcapng: a section, an Ethernet interface, 300 custom blocks of 4 KiB (more than the
    // reader's buffer), then one enhanced packet block.
    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b
    }
    let mut f = block(
        0x0A0D_0D0A,
        &[
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
    for _ in 0..300 {
        f.extend(block(0x0000_0BAD, &[7; 4096]));
    }
    let mut epb = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0];
    epb.extend_from_slice(&[1, 2, 3, 4]);
    f.extend(block(6, &epb));
    let (a, b, ea, eb) = both_ways(&f);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].2, vec![1, 2, 3, 4]);
    assert_eq!((a, ea), (b, eb));
}
