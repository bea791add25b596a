//! Evidence statements: one per device with violations, split so that each fits a log entry,
//! signed by the monitor's key, naming the firmware and what the flows were checked against.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_flow::Flow;
use nospy_inventory::{Device, Inventory, OperatorConfig};
use nospy_manifest::judge::Why;
use nospy_manifest::Manifest;
use nospy_monitor::evidence::sign;
use nospy_monitor::Monitor;
use nospy_statement::predicate::{self, Predicate};
use nospy_testkit::fixtures::access_device;
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const MANIFEST: &str = r#"
[device]
vendor = "V"
model = "M"
[capabilities]
vendor_remote_access = "none"
[[allow]]
direction = "from-device"
peer = "192.0.2.0/24"
protocol = "tcp"
ports = "443"
"#;

fn device(i: u8, firmware: Option<Sha256>) -> Device {
    Device {
        firmware_sha256: firmware.map(|h| h.to_hex()),
        ..access_device(
            &format!("d{i}"),
            vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))],
        )
    }
}

/// A TCP flow device `dev` (10.0.0.`dev`) opened to `peer` on `port`, three packets in a
/// second from 2023-11-14T22:13:20Z.
fn flow(dev: u8, peer: IpAddr, port: u16) -> Flow {
    Flow {
        first_ns: T0,
        last_ns: T0 + 1_000_000_000,
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, dev)),
        dst: peer,
        sport: 40_000,
        dport: port,
        proto: 6,
        packets: 3,
        bytes: 300,
        initiator_known: true,
    }
}

/// When [`flow`]'s flows start, nanoseconds since the epoch.
const T0: u64 = 1_700_000_000_000_000_000;

#[test]
fn each_device_with_violations_gets_statements_that_fit_a_log_entry() {
    let fw = Sha256([1; 32]);
    let inventory = Inventory {
        devices: vec![device(1, Some(fw)), device(2, None), device(3, Some(fw))],
    };
    let m = Arc::new(Manifest::from_toml(MANIFEST).unwrap());
    let manifests = vec![Some(m.clone()), Some(m.clone()), Some(m)];
    let manifests = &manifests;
    let mut mon = Monitor::new(&inventory, manifests, &OperatorConfig::default(), None).unwrap();
    // Device 1: 3,000 distinct violating peers (far more than one entry holds); device 2: one,
    // but no firmware digest; device 3: allowed traffic only.
    for k in 0..3000u32 {
        let b = k.to_be_bytes();
        mon.flow(&flow(
            1,
            IpAddr::V4(Ipv4Addr::new(198, 18, b[2], b[3])),
            8443,
        ));
    }
    mon.flow(&flow(2, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 23));
    mon.flow(&flow(3, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 443));
    let report = mon.finish();
    let key = SignerKey::from_seed("monitor.test.example", [8; 32]).unwrap();
    let basis = nospy_monitor::evidence::Basis {
        manifest: manifests[0].clone().unwrap(),
        name: "file m.toml".into(),
        release: None,
    };
    let bases = vec![Some(basis), None, None];
    let input = Sha256([2; 32]);
    let ev = sign(
        &report,
        &inventory,
        &bases,
        &OperatorConfig::default(),
        &input,
        &key,
    );
    assert!(ev.unsigned_rows.is_empty());

    assert_eq!(ev.skipped.len(), 1);
    assert_eq!(ev.skipped[0].0, "d2");
    assert!(ev.statements.len() > 1, "3,000 groups need several entries");
    assert!(ev.statements.iter().all(|s| s.device == "d1"));
    assert_eq!(ev.statements.iter().map(|s| s.groups).sum::<usize>(), 3000);
    for s in &ev.statements {
        assert!(s.envelope.len() <= nospy_tlog::tile::MAX_ENTRY_LEN);
        let opened = nospy_statement::open(&s.envelope, &[key.verifier()]).unwrap();
        assert!(opened.statement.is_about(&fw));
        let Predicate::Evidence(e) = opened.predicate else {
            panic!("not evidence")
        };
        assert_eq!(e.device, "d1");
        assert_eq!(e.flows.len(), s.groups);
        assert_eq!(e.manifest.as_deref(), Some("file m.toml"));
        assert_eq!(e.source.get_sha256(), Some(input));
        assert!(e
            .flows
            .iter()
            .all(|f| f.port == 8443 && f.protocol == "tcp"));
        // v2: each row says why, and the resolutions are recorded (none: the manifest uses no
        // abstraction).
        assert!(e.is_v2());
        assert_eq!(opened.statement.predicate_type, predicate::EVIDENCE_V2);
        assert!(e.flows.iter().all(|f| f.why == Some(Why::Peer)));
        assert_eq!(e.resolutions, Some(Default::default()));
    }
}

/// The monitor's compiled tables and the reference judgement agree: no row the monitor counts
/// as a violation is one the reference judgement allows, whatever the flows.
#[test]
fn no_violation_row_is_one_the_reference_judgement_allows() {
    use nospy_manifest::judge::{judge, Judgement, Observed};
    const RULES: &str = r#"
[device]
vendor = "V"
model = "M"
[capabilities]
vendor_remote_access = "none"
[[allow]]
direction = "from-device"
peer = "192.0.2.0/24"
protocol = "tcp"
ports = "443"
initiated_by = "device"
[[allow]]
direction = "from-device"
peer = "192.0.2.128/25"
protocol = "udp"
ports = "53"
[[allow]]
direction = "to-device"
peer = "operator-networks"
protocol = "tcp"
device_ports = "22"
initiated_by = "peer"
[[allow]]
direction = "from-device"
peer = "operator-networks"
protocol = "tcp"
initiated_by = "peer"
[[allow]]
direction = "from-device"
peer = "my-controller"
protocol = "any"
[[allow]]
direction = "to-device"
peer = "198.51.100.0/24"
protocol = "udp"
ports = "123"
device_ports = "123"
"#;
    let m = Arc::new(Manifest::from_toml(RULES).unwrap());
    let op = OperatorConfig::from_toml(
        "operator_networks = [\"10.0.0.0/8\"]\nmy_controller = [\"172.16.0.1\"]\n",
    )
    .unwrap();
    let inventory = Inventory {
        devices: vec![device(1, Some(Sha256([1; 32])))],
    };
    let mut mon = Monitor::new(&inventory, &[Some(m.clone())], &op, None).unwrap();
    let peers: Vec<IpAddr> = [
        "192.0.2.1",
        "192.0.2.200",
        "10.5.5.5",
        "172.16.0.1",
        "198.51.100.7",
        "203.0.113.66",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    let ports = [22u16, 53, 123, 443, 8443, 50_000];
    let me: IpAddr = "10.0.0.1".parse().unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..20_000 {
        let peer = peers[next(peers.len())];
        let (src, dst) = if next(2) == 0 { (me, peer) } else { (peer, me) };
        mon.flow(&Flow {
            first_ns: 1_700_000_000_000_000_000,
            last_ns: 1_700_000_001_000_000_000,
            src,
            dst,
            sport: ports[next(ports.len())],
            dport: ports[next(ports.len())],
            proto: [6u8, 17, 1][next(3)],
            packets: 1,
            bytes: 60,
            initiator_known: next(2) == 0,
        });
    }
    let report = mon.finish();
    let res = op.resolutions(&m);
    let (mut decided, mut initiator) = (0, 0);
    for r in &report.violations {
        let o = Observed {
            direction: r.direction(),
            peer: r.peer(),
            protocol: r.protocol(),
            port: r.port(),
            names: Some(vec![]),
            same_vendor: false,
            openers: nospy_manifest::judge::Openers::from_bits(r.openers()),
        };
        match judge(&m, &res, &o) {
            Judgement::Allowed { rule } => panic!("row {o:?} is allowed by rule {rule}"),
            Judgement::NotAllowed(w) => {
                decided += 1;
                initiator += usize::from(w == nospy_manifest::judge::Why::Initiator);
            }
            Judgement::Undecided { .. } => {}
        }
    }
    assert!(
        decided > 10,
        "{decided} of {} rows decided",
        report.violations.len()
    );
    // Rows record who opened their flows, so the wrong side opening is decided too.
    assert!(initiator > 0, "no row decided for its opener");
}

/// DNS answers (which anything on the wire can send) tying thousands of long names to a
/// violation's peer cannot keep the violation out of the log: its row states every name the
/// manifest's rules name, the first others that fit a bound, and how many it leaves out, and
/// is judged as with them all. A row whose manifest names more of its peer's names than a log
/// entry holds is left unsigned and said, and the device's other rows are signed all the same.
#[test]
fn dns_answers_cannot_outgrow_a_violation_s_row() {
    use nospy_flow::{dns::Answer, DnsSeen};
    use nospy_monitor::evidence::OTHER_NAMES_BYTES;
    let fw = Sha256([1; 32]);
    let inventory = Inventory {
        devices: vec![device(1, Some(fw))],
    };
    let named = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("{0}.{0}.updates-{i:04}.v.example", "u".repeat(60)))
            .collect()
    };
    let evidence_with = |rules: usize| {
        let mut text = MANIFEST.to_string();
        for n in named(rules) {
            text.push_str(&format!(
                "[[allow]]\ndirection = \"from-device\"\npeer = \"{n}\"\nprotocol = \"tcp\"\nports = \"443\"\n"
            ));
        }
        let m = Arc::new(Manifest::from_toml(&text).unwrap());
        let manifests = vec![Some(m.clone())];
        let mut mon =
            Monitor::new(&inventory, &manifests, &OperatorConfig::default(), None).unwrap();
        mon.record_names(true);
        let (dev, peer, other) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        );
        // 5,000 names of 200 bytes, none a rule names, and every name the rules name.
        let answers = (0..5000)
            .map(|i| format!("n{i:04}.{0}.{0}.{0}.example", "x".repeat(60)))
            .chain(named(rules));
        for name in answers {
            mon.dns(&DnsSeen {
                ts_ns: T0 - 1_000_000_000,
                client: dev,
                answer: Answer {
                    name,
                    addr: peer,
                    ttl: 3600,
                },
            });
        }
        mon.flow(&flow(1, peer, 8443));
        mon.flow(&flow(1, other, 25));
        let report = mon.finish();
        let basis = nospy_monitor::evidence::Basis {
            manifest: m,
            name: "file m.toml".into(),
            release: None,
        };
        let key = SignerKey::from_seed("monitor.test.example", [8; 32]).unwrap();
        let ev = sign(
            &report,
            &inventory,
            &[Some(basis)],
            &OperatorConfig::default(),
            &Sha256([2; 32]),
            &key,
        );
        let mut rows = Vec::new();
        for s in &ev.statements {
            assert!(s.envelope.len() <= nospy_tlog::tile::MAX_ENTRY_LEN);
            let opened = nospy_statement::open(&s.envelope, &[key.verifier()]).unwrap();
            let Predicate::Evidence(e) = opened.predicate else {
                panic!("not evidence")
            };
            rows.extend(e.flows);
        }
        (ev.unsigned_rows, rows)
    };

    // Two rules name the peer's names: the row states both, and 1 KiB of the others.
    let (unsigned, rows) = evidence_with(2);
    assert!(unsigned.is_empty(), "{unsigned:?}");
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r.peer == "203.0.113.9").unwrap();
    // The rules admit the peer by name, but not on port 8443: as with every name.
    assert_eq!(row.why, Some(Why::Service));
    let names = row.names.as_ref().unwrap();
    for n in named(2) {
        assert!(names.contains(&n), "{n} not stated");
    }
    let others: Vec<&String> = names.iter().filter(|n| !named(2).contains(n)).collect();
    let bytes: usize = others.iter().map(|n| n.len()).sum();
    assert!(bytes <= OTHER_NAMES_BYTES && bytes + 200 > OTHER_NAMES_BYTES);
    // The first in order, and the rest counted.
    assert_eq!(
        others[0],
        &format!("n0000.{0}.{0}.{0}.example", "x".repeat(60))
    );
    assert_eq!(row.names_left_out, 5000 - others.len() as u64);
    let other = rows.iter().find(|r| r.peer == "203.0.113.10").unwrap();
    assert_eq!(
        (other.names.as_deref(), other.names_left_out),
        (Some(&[][..]), 0)
    );

    // A manifest naming 1,000 of the peer's names (more than an entry holds): that row alone
    // is left unsigned and said; the device's other row is signed.
    let (unsigned, rows) = evidence_with(1000);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].peer, "203.0.113.10");
    assert_eq!(unsigned.len(), 1);
    assert_eq!(unsigned[0].0, "d1");
    assert!(
        unsigned[0]
            .1
            .starts_with("from-device 203.0.113.9 tcp port 8443: its statement alone is"),
        "{}",
        unsigned[0].1
    );
}

/// Deltas keep of a violation peer's names only what evidence can state of any device's rows
/// (every name a manifest of the monitor names, the first others that fit 1 KiB and one more,
/// and how many there were), and evidence signed from their merged report states exactly what
/// one process's states: for two devices whose manifests name different names, deltas taken
/// as the names grow.
#[test]
fn deltas_keep_what_evidence_states_of_a_peer_s_names() {
    use nospy_flow::{dns::Answer, DnsSeen};
    use nospy_monitor::evidence::OTHER_NAMES_BYTES;
    use nospy_monitor::Merger;
    let fw = Sha256([1; 32]);
    let inventory = Inventory {
        devices: vec![device(1, Some(fw)), device(2, Some(fw))],
    };
    let rule = |name: &str| {
        format!("[[allow]]\ndirection = \"from-device\"\npeer = \"{name}\"\nprotocol = \"udp\"\nports = \"123\"\n")
    };
    // Names that sort among the noise: device 1's manifest names one, device 2's another.
    let (one_s, two_s) = ("n0003.named.example", "n2999.named.example");
    let manifests = [one_s, two_s].map(|n| {
        Some(Arc::new(
            Manifest::from_toml(&(MANIFEST.to_string() + &rule(n))).unwrap(),
        ))
    });
    let peer = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let x = "x".repeat(60);
    let noise = |i: usize| format!("n{i:04}.{x}.{x}.example");
    let answer = |name: String| DnsSeen {
        ts_ns: T0 - 1_000_000_000,
        client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        answer: Answer {
            name,
            addr: peer,
            ttl: 3600,
        },
    };
    let mut one = Monitor::new(&inventory, &manifests, &OperatorConfig::default(), None).unwrap();
    let mut parts = Monitor::new(&inventory, &manifests, &OperatorConfig::default(), None).unwrap();
    one.record_names(true);
    parts.record_names(true);
    let mut deltas = Vec::new();
    for stretch in 0..3 {
        for i in stretch * 1000..(stretch + 1) * 1000 {
            for m in [&mut one, &mut parts] {
                m.dns(&answer(noise(i)));
            }
        }
        if stretch == 1 {
            for m in [&mut one, &mut parts] {
                m.dns(&answer(one_s.into()));
                m.dns(&answer(two_s.into()));
            }
        }
        for m in [&mut one, &mut parts] {
            m.flow(&flow(1, peer, 8443));
            m.flow(&flow(2, peer, 8443));
        }
        deltas.push(parts.take());
    }
    for d in &deltas {
        let p = d.peer_names.as_ref().unwrap();
        assert_eq!(p.len(), 1);
        let set = &d.name_sets[p[0].set as usize];
        let others: usize = set
            .iter()
            .filter(|n| ![one_s, two_s].contains(&n.as_str()))
            .map(String::len)
            .sum();
        assert!(others <= OTHER_NAMES_BYTES + 200, "{others} bytes kept");
        assert!(p[0].total as usize > set.len());
    }
    let mut merger = Merger::new(&["d1".into(), "d2".into()], &[true, true]);
    for d in &deltas {
        merger.add(d).unwrap();
    }
    let merged = merger.finish();
    let one = one.finish();
    assert_eq!(merged.violations, one.violations);
    let key = SignerKey::from_seed("monitor.test.example", [8; 32]).unwrap();
    let rows = |report: &nospy_monitor::Report| {
        let bases: Vec<_> = manifests
            .iter()
            .map(|m| {
                Some(nospy_monitor::evidence::Basis {
                    manifest: m.clone().unwrap(),
                    name: "file m.toml".into(),
                    release: None,
                })
            })
            .collect();
        let ev = sign(
            report,
            &inventory,
            &bases,
            &OperatorConfig::default(),
            &Sha256([2; 32]),
            &key,
        );
        assert!(ev.unsigned_rows.is_empty(), "{:?}", ev.unsigned_rows);
        ev.statements
            .iter()
            .flat_map(|s| {
                let opened = nospy_statement::open(&s.envelope, &[key.verifier()]).unwrap();
                let Predicate::Evidence(e) = opened.predicate else {
                    panic!("not evidence")
                };
                e.flows
            })
            .collect::<Vec<_>>()
    };
    let (want, got) = (rows(&one), rows(&merged));
    assert_eq!(got, want);
    // Each device's row states its manifest's name, and the first others (to device 2, device
    // 1's name is one of them; to device 1, device 2's sorts beyond them), and counts the rest
    // of the 3,002.
    assert_eq!(want.len(), 2);
    let stated = |i: usize, name: &str| want[i].names.as_ref().unwrap().iter().any(|n| n == name);
    assert!(stated(0, one_s) && !stated(0, two_s));
    assert!(stated(1, two_s) && stated(1, one_s));
    assert!(stated(0, &noise(0)) && stated(1, &noise(0)) && !stated(1, &noise(2000)));
    for row in &want {
        assert_eq!(
            row.names_left_out + row.names.as_ref().unwrap().len() as u64,
            3002
        );
        assert_eq!(row.why, Some(Why::Service));
    }
}
