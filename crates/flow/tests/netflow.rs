//! NetFlow v5, v9 and IPFIX messages built by hand to the RFCs' layouts, and hostile variations.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_flow::netflow::Collector;
use nospy_flow::Flow;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPFIX message (RFC 7011): a template with a reduced-size counter, an enterprise element
/// and a variable-length element, then one data record, in one message of domain 7.
fn ipfix(with_template: bool, with_data: bool) -> Vec<u8> {
    let mut sets = Vec::new();
    if with_template {
        let mut t = Vec::new();
        t.extend_from_slice(&256u16.to_be_bytes());
        let fields: [(u16, u16); 9] = [
            (8, 4),            // sourceIPv4Address
            (12, 4),           // destinationIPv4Address
            (7, 2),            // sourceTransportPort
            (11, 2),           // destinationTransportPort
            (4, 1),            // protocolIdentifier
            (2, 8),            // packetDeltaCount
            (1, 4),            // octetDeltaCount, reduced to 4 bytes
            (152, 8),          // flowStartMilliseconds
            (0x8000 | 100, 4), // an enterprise element
        ];
        t.extend_from_slice(&((fields.len() + 1) as u16).to_be_bytes());
        for (id, len) in fields {
            t.extend_from_slice(&id.to_be_bytes());
            t.extend_from_slice(&len.to_be_bytes());
            if id & 0x8000 != 0 {
                t.extend_from_slice(&9999u32.to_be_bytes());
            }
        }
        // applicationName, variable length.
        t.extend_from_slice(&96u16.to_be_bytes());
        t.extend_from_slice(&0xffffu16.to_be_bytes());
        sets.extend_from_slice(&2u16.to_be_bytes());
        sets.extend_from_slice(&((t.len() + 4) as u16).to_be_bytes());
        sets.extend_from_slice(&t);
    }
    if with_data {
        let mut r = Vec::new();
        r.extend_from_slice(&[10, 1, 0, 1]);
        r.extend_from_slice(&[203, 0, 113, 9]);
        r.extend_from_slice(&51000u16.to_be_bytes());
        r.extend_from_slice(&443u16.to_be_bytes());
        r.push(6);
        r.extend_from_slice(&12u64.to_be_bytes());
        r.extend_from_slice(&3400u32.to_be_bytes());
        r.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        r.extend_from_slice(&[1, 2, 3, 4]);
        r.push(5);
        r.extend_from_slice(b"https");
        sets.extend_from_slice(&256u16.to_be_bytes());
        sets.extend_from_slice(&((r.len() + 4) as u16).to_be_bytes());
        sets.extend_from_slice(&r);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&((16 + sets.len()) as u16).to_be_bytes());
    m.extend_from_slice(&1_700_000_100u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&sets);
    m
}

#[test]
fn ipfix_templates_then_data() {
    let mut c = Collector::new();
    let mut out: Vec<Flow> = Vec::new();
    // Data before its template: counted, skipped.
    c.read("exp", &ipfix(false, true), &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(c.counters.no_template, 1);
    c.read("exp", &ipfix(true, true), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(
        (f.src, f.dst, f.sport, f.dport, f.proto),
        (ip("10.1.0.1"), ip("203.0.113.9"), 51000, 443, 6)
    );
    assert_eq!((f.packets, f.bytes), (12, 3400));
    assert_eq!(f.first_ns, 1_700_000_000_123_000_000);
    assert!(!f.initiator_known);
    // Another exporter does not share the template.
    let mut other = Vec::new();
    c.read("other", &ipfix(false, true), &mut other).unwrap();
    assert!(other.is_empty());
}

#[test]
fn netflow_v5_records() {
    let mut m = Vec::new();
    m.extend_from_slice(&5u16.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&60_000u32.to_be_bytes()); // uptime, ms
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&[0; 8]);
    let mut r = [0u8; 48];
    r[0..4].copy_from_slice(&[10, 0, 0, 1]);
    r[4..8].copy_from_slice(&[10, 0, 0, 2]);
    r[16..20].copy_from_slice(&3u32.to_be_bytes());
    r[20..24].copy_from_slice(&180u32.to_be_bytes());
    r[24..28].copy_from_slice(&59_000u32.to_be_bytes());
    r[28..32].copy_from_slice(&59_500u32.to_be_bytes());
    r[32..34].copy_from_slice(&40000u16.to_be_bytes());
    r[34..36].copy_from_slice(&53u16.to_be_bytes());
    r[38] = 17;
    m.extend_from_slice(&r);
    let mut out = Vec::new();
    Collector::new().read("x", &m, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(
        (f.src, f.dst, f.sport, f.dport, f.proto, f.packets, f.bytes),
        (ip("10.0.0.1"), ip("10.0.0.2"), 40000, 53, 17, 3, 180)
    );
    assert_eq!(f.first_ns, 1_699_999_999_000_000_000);
    assert_eq!(f.last_ns, 1_699_999_999_500_000_000);
    // A count that disagrees with the length is refused, whole.
    m[3] = 2;
    let mut out = Vec::new();
    assert!(Collector::new().read("x", &m, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn every_truncation_and_byte_change_is_refused_or_read_never_a_panic() {
    let full = ipfix(true, true);
    for n in 0..full.len() {
        let mut c = Collector::new();
        let mut out = Vec::new();
        let _ = c.read("exp", &full[..n], &mut out);
    }
    for i in 0..full.len() {
        for b in [0x00, 0xff, 0x80, 0x01] {
            let mut m = full.clone();
            m[i] = b;
            let mut c = Collector::new();
            let mut out = Vec::new();
            let _ = c.read("exp", &m, &mut out);
            assert!(out.len() <= 2);
        }
    }
}

/// A NetFlow v9 message (RFC 3954): a template flowset, an options template flowset (padded),
/// a data flowset with one record and padding, and an options data flowset.
#[test]
fn netflow_v9_templates_options_and_data() {
    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }
    let mut t = Vec::new();
    t.extend_from_slice(&300u16.to_be_bytes());
    let fields: [(u16, u16); 9] = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (2, 4),
        (1, 4),
        (22, 4),
        (21, 4),
    ];
    t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        t.extend_from_slice(&id.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    // Options template 301: one scope field (system, 4 bytes) and one option field (sampling
    // interval, 4 bytes); 6 + 8 = 14 bytes, padded to 16.
    let mut o = Vec::new();
    o.extend_from_slice(&301u16.to_be_bytes());
    o.extend_from_slice(&4u16.to_be_bytes());
    o.extend_from_slice(&4u16.to_be_bytes());
    o.extend_from_slice(&[0, 1, 0, 4, 0, 34, 0, 4, 0, 0]);
    let mut r = Vec::new();
    r.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1]);
    r.extend_from_slice(&5353u16.to_be_bytes());
    r.extend_from_slice(&123u16.to_be_bytes());
    r.push(17);
    r.extend_from_slice(&2u32.to_be_bytes());
    r.extend_from_slice(&152u32.to_be_bytes());
    r.extend_from_slice(&9_000u32.to_be_bytes());
    r.extend_from_slice(&9_250u32.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0]); // padding
    let mut m = Vec::new();
    m.extend_from_slice(&9u16.to_be_bytes());
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(&10_000u32.to_be_bytes()); // uptime, ms
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&42u32.to_be_bytes()); // source id
    m.extend(set(0, &t));
    m.extend(set(1, &o));
    m.extend(set(300, &r));
    m.extend(set(301, &[0, 0, 0, 1, 0, 0, 0, 100]));
    let mut c = Collector::new();
    let mut out = Vec::new();
    c.read("v9", &m, &mut out).unwrap();
    assert_eq!(c.counters.templates, 2);
    assert_eq!(out.len(), 1, "{out:?}");
    let f = &out[0];
    assert_eq!(
        (f.src, f.dst, f.sport, f.dport, f.proto, f.packets, f.bytes),
        (ip("192.0.2.7"), ip("198.51.100.1"), 5353, 123, 17, 2, 152)
    );
    // Boot was 10 s before the header's time; the flow ran from 9 s to 9.25 s after boot.
    assert_eq!(f.first_ns, 1_699_999_999_000_000_000);
    assert_eq!(f.last_ns, 1_699_999_999_250_000_000);
    // Another source id of the same exporter has its own templates.
    m[16..20].copy_from_slice(&43u32.to_be_bytes());
    let start = m.len() - 12 - (r.len() + 4);
    let data_only: Vec<u8> = m[..20]
        .iter()
        .chain(&m[start..m.len() - 12])
        .copied()
        .collect();
    let mut out = Vec::new();
    c.read("v9", &data_only, &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(c.counters.no_template, 1);
}

#[test]
fn a_saved_collector_reads_what_the_original_would() {
    // Learn templates (a data template with an unread element, and IPFIX state) from softflowd-
    // independent messages, save, restore, and read the same data with both.
    let mut c = Collector::new();
    let mut out = Vec::new();
    for m in every_message() {
        let _ = c.read("192.0.2.1:4739", &m, &mut out);
    }
    assert!(c.take_changed());
    assert!(!c.take_changed(), "nothing new since the last call");
    let text = c.save();
    let mut r = Collector::restore(&text).unwrap();
    assert_eq!(r.save(), text, "the saved state round-trips");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for m in every_message() {
        let _ = c.read("192.0.2.1:4739", &m, &mut a);
        let _ = r.read("192.0.2.1:4739", &m, &mut b);
    }
    assert!(!a.is_empty());
    assert_eq!(a, b);
    // Hostile state files are refused with the line, never a panic.
    for (bad, want) in [
        ("", 1),
        ("nospy-collector-state 2\n", 1),
        ("nospy-collector-state 1\ntemplate a 0 12 data 4:8\n", 2),
        (
            "nospy-collector-state 1\ntemplate a 0 300 data 65536:8\n",
            2,
        ),
        (
            "nospy-collector-state 1\ntemplate a 0 300 data 4:99999\n",
            2,
        ),
        ("nospy-collector-state 1\ntemplate a 0 300 nope 4:8\n", 2),
        ("nospy-collector-state 1\ninit a 99999999999 1\n", 2),
        ("nospy-collector-state 1\n\ninit a 1\n", 3),
    ] {
        let e = Collector::restore(bad).err().expect(bad);
        assert_eq!(e.line, want, "{bad:?}: {e}");
        assert!(e.to_string().starts_with(&format!("line {want}: ")), "{e}");
    }
}

/// Hand-built IPFIX: a template alone, data alone, both.
fn every_message() -> Vec<Vec<u8>> {
    vec![ipfix(true, false), ipfix(false, true), ipfix(true, true)]
}
