//! Flows given together (`Monitor::flows`, as flow export messages arrive) give the same report
//! as the same flows given one by one (`Monitor::flow`, as a capture's flows end), whatever the
//! groups, on a mix of everything the matcher tells apart: prefix, name, same-vendor and
//! operator rules, IPv4 and IPv6, initiators known and not, devices with and without a
//! manifest, peers that are devices. (Judging in groups, so that the memory reads of
//! independent flows overlap, was tried and measured no faster; this keeps any such change
//! honest.)

use nospy_flow::dns::Answer;
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::{Device, Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_monitor::{Monitor, Report};
use nospy_testkit::fixtures::access_device;
use std::net::IpAddr;
use std::sync::Arc;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const MANIFEST: &str = r#"
[device]
vendor = "V"
model = "M"
[capabilities]
vendor_remote_access = "none"
[[allow]]
direction = "from-device"
peer = "192.0.2.0/25"
protocol = "tcp"
ports = "443"
[[allow]]
direction = "from-device"
peer = "192.0.2.64/26"
protocol = "udp"
ports = "123"
[[allow]]
direction = "to-device"
peer = "2001:db8:1::/48"
protocol = "tcp"
ports = "22"
[[allow]]
direction = "from-device"
peer = "updates.vendor.example"
protocol = "tcp"
ports = "443"
[[allow]]
direction = "from-device"
peer = "same-vendor"
protocol = "udp"
ports = "4000-4100"
[[allow]]
direction = "from-device"
peer = "operator-networks"
protocol = "any"
"#;

fn addr(i: u64) -> IpAddr {
    if i.is_multiple_of(3) {
        IpAddr::from([0x2001, 0xdb8, 9, 0, 0, 0, 0, i as u16])
    } else {
        IpAddr::from([10, 9, 0, i as u8])
    }
}

fn peer(rng: &mut Rng, devices: u64) -> IpAddr {
    match rng.below(6) {
        0 => addr(rng.below(devices)),
        1 => IpAddr::from([192, 0, 2, rng.below(256) as u8]),
        2 => IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, rng.below(9) as u16]),
        3 => IpAddr::from([198, 51, 100, rng.below(4) as u8]),
        4 => IpAddr::from([172, 16, 0, rng.below(4) as u8]),
        _ => IpAddr::from([203, 0, 113, rng.below(256) as u8]),
    }
}

fn monitor(devices: u64) -> Monitor {
    let m = Arc::new(Manifest::from_toml(MANIFEST).expect("manifest"));
    let inventory = Inventory {
        devices: (0..devices)
            .map(|i| Device {
                vendor: if i % 4 == 0 { "W" } else { "V" }.into(),
                ..access_device(&format!("d{i}"), vec![addr(i)])
            })
            .collect(),
    };
    let manifests: Vec<_> = (0..devices)
        .map(|i| (i % 7 != 5).then(|| m.clone()))
        .collect();
    let op = OperatorConfig {
        operator_networks: vec!["172.16.0.0/30".parse().expect("prefix")],
        ..OperatorConfig::default()
    };
    let mut mon = Monitor::new(&inventory, &manifests, &op, None).expect("monitor");
    // The name is seen for two addresses, by one device only.
    for a in [[192, 0, 2, 200], [203, 0, 113, 7]] {
        mon.dns(&DnsSeen {
            ts_ns: 1_000,
            client: addr(1),
            answer: Answer {
                name: "updates.vendor.example".into(),
                addr: IpAddr::from(a),
                ttl: 600,
            },
        });
    }
    mon
}

fn flows(n: usize, devices: u64) -> Vec<Flow> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let dev = addr(rng.below(devices));
            let other = peer(&mut rng, devices);
            let (src, dst) = if rng.below(2) == 0 {
                (dev, other)
            } else {
                (other, dev)
            };
            let (proto, port) = match rng.below(4) {
                0 => (6, 443),
                1 => (17, 123),
                2 => (17, 4000 + rng.below(200) as u16),
                _ => (6, 22),
            };
            let first_ns = 500 + 10 * i as u64;
            Flow {
                first_ns,
                last_ns: first_ns + rng.below(1_000),
                src,
                dst,
                sport: 40_000 + rng.below(10) as u16,
                dport: port,
                proto: if rng.below(50) == 0 { 1 } else { proto },
                packets: 1 + rng.below(9),
                bytes: 60 + rng.below(900),
                initiator_known: rng.below(3) == 0,
            }
        })
        .collect()
}

#[test]
fn flows_judged_together_or_one_by_one_give_one_report() {
    let devices = 30;
    let all = flows(20_000, devices);
    let mut one = monitor(devices);
    for f in &all {
        one.flow(f);
    }
    let one: Report = one.finish();
    assert!(
        !one.violations.is_empty() && !one.unattributable.is_empty(),
        "the flows should give both kinds of rows"
    );
    assert!(one.unknown_device_flows == 0 && one.flows == all.len() as u64);
    let mut together = monitor(devices);
    together.flows(&all);
    assert!(together.finish() == one, "all in one call");
    let mut rng = Rng(7);
    let mut groups = monitor(devices);
    let mut rest = &all[..];
    while !rest.is_empty() {
        let (now, later) = rest.split_at((1 + rng.below(70) as usize).min(rest.len()));
        groups.flows(now);
        rest = later;
    }
    assert!(groups.finish() == one, "in groups of 1 to 70");
}

/// A worker is given each flow's devices by the collector that found them (`Monitor::flow_of`):
/// judged so, the flows give the report they give found by address, same-vendor rules (which
/// need the peer's device) included; a number beyond the inventory is no device.
#[test]
fn flows_whose_devices_are_given_are_judged_as_flows_found_by_address() {
    let devices = 30;
    let all = flows(20_000, devices);
    let mut by_addr = monitor(devices);
    by_addr.flows(&all);
    let want = by_addr.finish();
    let number = |a: IpAddr| (0..devices).find(|&i| addr(i) == a).map(|i| i as u32);
    let mut given = monitor(devices);
    for f in &all {
        given.flow_of(f, [number(f.src), number(f.dst)]);
    }
    assert!(given.finish() == want);
    // Told that neither address is a device's, or given numbers beyond the inventory's: the
    // flows are of no device.
    let mut none = monitor(devices);
    for f in &all[..100] {
        none.flow_of(f, [None, Some(devices as u32)]);
    }
    let none = none.finish();
    assert_eq!((none.flows, none.unknown_device_flows), (100, 100));
    assert!(none.violations.is_empty());
}

/// A report as its JSON has it: rows with their names by content (the numbering of the sets
/// is the monitor's own).
fn shown(r: &Report) -> impl PartialEq + std::fmt::Debug {
    let rows = |rows: &[nospy_monitor::Row]| -> Vec<_> {
        rows.iter()
            .map(|x| {
                (
                    x.device(),
                    x.direction(),
                    x.peer(),
                    x.protocol(),
                    x.port(),
                    (x.flows(), x.packets(), x.bytes(), x.first_ns(), x.last_ns()),
                    x.openers(),
                    r.names(x).to_vec(),
                )
            })
            .collect()
    };
    (
        (r.flows, r.packets, r.bytes, r.unknown_device_flows),
        r.flows_in_dropped_rows,
        rows(&r.violations),
        rows(&r.unattributable),
        r.devices.clone(),
    )
}

/// The flows split among monitors by device (as partitioned workers have them), each taken
/// from at arbitrary points (as windows and flushes cut them), and every piece merged, give
/// the report one monitor gives of all of them.
#[test]
fn pieces_taken_from_several_monitors_merge_into_the_one_report() {
    let devices = 30;
    let all = flows(20_000, devices);
    let mut one = monitor(devices);
    // The names violation rows' peers stood for, as evidence states them, are pieces too.
    one.record_names(true);
    one.flows(&all);
    let one = one.finish();
    let named = one.peer_names.as_ref().expect("names recorded");
    assert!(
        named.values().any(|n| !n.names.is_empty()),
        "a peer stood for a name"
    );
    for workers in [1u64, 2, 4] {
        let mut mons: Vec<Monitor> = (0..workers)
            .map(|_| {
                let mut m = monitor(devices);
                m.record_names(true);
                m
            })
            .collect();
        let mut deltas = Vec::new();
        let mut rng = Rng(11 + workers);
        for f in &all {
            // The partition of the flow's first device (as a collector attributes it).
            let of = |a: IpAddr| (0..devices).find(|&i| addr(i) == a);
            let d = of(f.src).or_else(|| of(f.dst)).unwrap_or(0);
            let w = (d % workers) as usize;
            mons[w].flow(f);
            if rng.below(500) == 0 {
                deltas.push(mons[w].take());
            }
        }
        for m in &mut mons {
            deltas.push(m.take());
            // Nothing is counted twice: a second take is empty.
            assert!(m.take().is_empty());
        }
        let ids: Vec<String> = one.devices.iter().map(|d| d.device.clone()).collect();
        let has: Vec<bool> = one.devices.iter().map(|d| d.has_manifest).collect();
        let mut merger = nospy_monitor::Merger::new(&ids, &has);
        // In reverse: the order of the pieces does not matter.
        for d in deltas.iter().rev() {
            merger.add(d).expect("merge");
        }
        let merged = merger.finish();
        assert_eq!(shown(&merged), shown(&one), "{workers} workers");
        assert_eq!(merged.peer_names, one.peer_names, "{workers} workers");
        // Pieces absorbed into one another first (as a worker holds a window) merge the same.
        let mut absorbed = nospy_monitor::Delta::default();
        for d in deltas.clone() {
            absorbed.absorb(d);
        }
        // Merged at once (as a worker hands on a window): the very delta absorbing gives.
        assert!(
            nospy_monitor::Delta::merged(deltas) == absorbed,
            "{workers} workers, merged at once"
        );
        let mut merger = nospy_monitor::Merger::new(&ids, &has);
        merger.add(&absorbed).expect("merge");
        let from_absorbed = merger.finish();
        assert_eq!(
            shown(&from_absorbed),
            shown(&one),
            "{workers} workers, absorbed"
        );
        assert_eq!(
            from_absorbed.peer_names, one.peer_names,
            "{workers} workers"
        );
        // A piece with violation rows whose peers' names were not recorded leaves them
        // unknown: the merged report records none, rather than too few.
        let mut unnamed = monitor(devices);
        unnamed.flows(&all[..2_000]);
        let unnamed = unnamed.take();
        assert!(unnamed.peer_names.is_none() && !unnamed.violations.is_empty());
        let mut merger = nospy_monitor::Merger::new(&ids, &has);
        merger.add(&absorbed).expect("merge");
        merger.add(&unnamed).expect("merge");
        assert_eq!(merger.finish().peer_names, None);
        assert_eq!(
            nospy_monitor::Delta::merged(vec![absorbed, unnamed]).peer_names,
            None
        );
    }
}

/// One monitor judging several partitions' flows in turn, each partition's counting set
/// aside while another's is counted (`Monitor::swap_counting`, as a worker reads the
/// partitions it holds), gives for each partition what a monitor of its flows alone gives, and
/// nothing of one partition in another's.
#[test]
fn countings_set_aside_keep_each_partition_apart() {
    let devices = 30;
    let all = flows(20_000, devices);
    let partitions = 4usize;
    let of = |a: IpAddr| (0..devices).find(|&i| addr(i) == a);
    let partition = |f: &Flow| (of(f.src).or_else(|| of(f.dst)).unwrap_or(0) % 4) as usize;
    let mut shared = monitor(devices);
    let mut aside: Vec<nospy_monitor::Counting> =
        (0..partitions).map(|_| Default::default()).collect();
    let mut deltas: Vec<Vec<nospy_monitor::Delta>> = vec![Vec::new(); partitions];
    let mut rng = Rng(5);
    let mut current: Option<usize> = None;
    for f in &all {
        let p = partition(f);
        if current != Some(p) {
            if let Some(c) = current {
                shared.swap_counting(&mut aside[c]);
            }
            shared.swap_counting(&mut aside[p]);
            current = Some(p);
        }
        shared.flow(f);
        if rng.below(300) == 0 {
            deltas[p].push(shared.take());
        }
    }
    if let Some(c) = current {
        shared.swap_counting(&mut aside[c]);
    }
    // Everything counted is set aside: the monitor itself holds nothing.
    assert!(shared.take().is_empty());
    for (p, counting) in aside.iter_mut().enumerate() {
        assert!(!counting.is_empty(), "partition {p}");
        shared.swap_counting(counting);
        deltas[p].push(shared.take());
        shared.swap_counting(counting);
        assert!(counting.is_empty(), "partition {p}, taken");
    }
    let mut whole = monitor(devices);
    whole.flows(&all);
    let whole = whole.finish();
    let ids: Vec<String> = whole.devices.iter().map(|d| d.device.clone()).collect();
    let has: Vec<bool> = whole.devices.iter().map(|d| d.has_manifest).collect();
    let mut everything = nospy_monitor::Merger::new(&ids, &has);
    for (p, ds) in deltas.iter().enumerate() {
        let mut alone = monitor(devices);
        for f in all.iter().filter(|f| partition(f) == p) {
            alone.flow(f);
        }
        let mut merger = nospy_monitor::Merger::new(&ids, &has);
        for d in ds {
            merger.add(d).expect("merge");
            everything.add(d).expect("merge");
        }
        assert_eq!(
            shown(&merger.finish()),
            shown(&alone.finish()),
            "partition {p}"
        );
    }
    assert_eq!(shown(&everything.finish()), shown(&whole), "all partitions");
}

/// A piece naming a device or a set of names the merger does not have is refused whole.
#[test]
fn a_piece_out_of_range_is_refused_and_adds_nothing() {
    let mut merger = nospy_monitor::Merger::new(&["a".into()], &[true]);
    let bad = nospy_monitor::Delta {
        flows: 5,
        devices: vec![nospy_monitor::DeviceCounts {
            device: 3,
            flows: 5,
            violations: 0,
            unattributable: 0,
        }],
        ..Default::default()
    };
    let e = merger.add(&bad).unwrap_err();
    assert_eq!(
        e,
        nospy_monitor::MergeError::Device {
            device: 3,
            devices: 1
        }
    );
    assert!(
        e.to_string().contains("device 3 of an inventory of 1"),
        "{e}"
    );
    // A row naming a set of names the piece does not carry.
    let row = nospy_monitor::RowParts {
        device: 0,
        to_device: false,
        peer: IpAddr::from([192, 0, 2, 1]),
        proto: 6,
        port: 443,
        flows: 1,
        packets: 1,
        bytes: 60,
        first_ns: 0,
        last_ns: 0,
        names: 2,
        openers: 0,
    };
    let bad = nospy_monitor::Delta {
        flows: 1,
        unattributable: vec![row],
        ..Default::default()
    };
    assert_eq!(
        merger.add(&bad).unwrap_err(),
        nospy_monitor::MergeError::NameSet { set: 2, sets: 0 }
    );
    assert_eq!(merger.finish().flows, 0);
}

/// A monitor is not built from one manifest too few, and a resolver snapshot is refused with
/// its line and the kind of fault.
#[test]
fn setup_errors_say_their_kind_and_line() {
    use nospy_monitor::{Resolver, SetupError as E};
    let inventory = Inventory { devices: vec![] };
    let one = vec![Some(Arc::new(
        Manifest::from_toml(MANIFEST).expect("manifest"),
    ))];
    let e = Monitor::new(&inventory, &one, &OperatorConfig::default(), None).err();
    assert_eq!(
        e,
        Some(E::ManifestCount {
            manifests: 1,
            devices: 0
        })
    );
    type Case = (&'static str, fn(&E) -> bool);
    let cases: [Case; 3] = [
        (
            "# names\nok.example 192.0.2.1\nbad..name 192.0.2.2\n",
            |e| matches!(e, E::ResolverName { line: 3, .. }),
        ),
        (
            "ok.example 192.0.2.1, 192.0.2.300\n",
            |e| matches!(e, E::ResolverAddress { line: 1, text } if text == "192.0.2.300"),
        ),
        (
            "\n\nlonely.example   # no address\n",
            |e| matches!(e, E::ResolverNoAddress { line: 3, name } if name == "lonely.example"),
        ),
    ];
    for (text, kind) in cases {
        let e = Resolver::parse(text).unwrap_err();
        assert!(kind(&e), "{text:?} => {e:?}");
        assert!(e.to_string().starts_with("line "), "{e}");
    }
    assert!(Resolver::parse("a.example 192.0.2.1 2001:db8::1\n").is_ok());
}
