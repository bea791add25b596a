//! Unattributable rows name the allowed names that could have covered them, each distinct set
//! kept once: also for a manifest with more name services than the monitor works out once per
//! combination (64), whose names are worked out for every flow.

use nospy_flow::Flow;
use nospy_inventory::{Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_monitor::Monitor;
use nospy_testkit::fixtures::access_device;
use std::net::IpAddr;
use std::sync::Arc;

fn monitor(services: u16) -> Monitor {
    let mut t = String::from(
        "[device]\nvendor = \"V\"\nmodel = \"M\"\n[capabilities]\nvendor_remote_access = \"none\"\n",
    );
    for i in 0..services {
        // Two names per port, so that each set has two names.
        for name in ["a", "b"] {
            t.push_str(&format!(
                "[[allow]]\ndirection = \"from-device\"\npeer = \"{name}{i}.vendor.example\"\nprotocol = \"tcp\"\nports = \"{}\"\n",
                1000 + i
            ));
        }
    }
    let m = Arc::new(Manifest::from_toml(&t).expect("manifest"));
    let inventory = Inventory {
        devices: vec![access_device("d", vec![IpAddr::from([10, 0, 0, 1])])],
    };
    Monitor::new(&inventory, &[Some(m)], &OperatorConfig::default(), None).expect("monitor")
}

fn flow(i: u64, services: u16) -> Flow {
    Flow {
        first_ns: 1_000 + i,
        last_ns: 2_000 + i,
        src: IpAddr::from([10, 0, 0, 1]),
        dst: IpAddr::from([203, 0, 113, (i % 200) as u8]),
        sport: 40_000,
        dport: 1000 + (i % u64::from(services)) as u16,
        proto: 6,
        packets: 1,
        bytes: 60,
        initiator_known: true,
    }
}

#[test]
fn each_set_of_names_is_kept_once() {
    for services in [3u16, 64, 65, 100] {
        let mut mon = monitor(services);
        for i in 0..5_000 {
            mon.flow(&flow(i, services));
        }
        let r = mon.finish();
        assert_eq!(r.devices[0].unattributable, 5_000, "{services} services");
        // The empty set, and one per port.
        assert_eq!(
            r.name_sets.len(),
            1 + services as usize,
            "{services} services"
        );
        for row in &r.unattributable {
            let p = row.port() - 1000;
            assert_eq!(
                r.names(row),
                [
                    format!("a{p}.vendor.example"),
                    format!("b{p}.vendor.example")
                ],
                "{services} services"
            );
        }
    }
}

/// DNS answers tying 200,000 names to one address (a device can send them) cost what they
/// bring, not what the address already holds: recording each is not a walk of the address's
/// names, nor is judging each of 20,000 flows to it (before, both were: some 2·10^10 name
/// comparisons to record the answers, 4·10^9 to judge the flows).
/// The judgement is the same as with few names: the name a rule names, tied when the flow
/// began, allows it; tied after, it does not.
#[test]
fn many_names_for_one_address_cost_what_they_bring() {
    use nospy_flow::{dns::Answer, DnsSeen};
    let mut mon = monitor(3);
    let peer = IpAddr::from([203, 0, 113, 7]);
    let answer = |name: String, ts_ns: u64| DnsSeen {
        ts_ns,
        client: IpAddr::from([10, 0, 0, 1]),
        answer: Answer {
            name,
            addr: peer,
            ttl: 60,
        },
    };
    for i in 0..200_000 {
        mon.dns(&answer(format!("n{i}.noise.example"), 0));
    }
    // a1.vendor.example allows TCP 1001; tied at 0 (for 60 s).
    mon.dns(&answer("a1.vendor.example".into(), 0));
    // b2.vendor.example allows TCP 1002; tied only from 100 s.
    mon.dns(&answer("b2.vendor.example".into(), 100_000_000_000));
    let flow = |i: u64, port: u16| Flow {
        first_ns: 1_000_000_000 + i,
        last_ns: 2_000_000_000 + i,
        src: IpAddr::from([10, 0, 0, 1]),
        dst: peer,
        sport: 40_000,
        dport: port,
        proto: 6,
        packets: 1,
        bytes: 60,
        initiator_known: true,
    };
    for i in 0..10_000 {
        mon.flow(&flow(i, 1001));
        mon.flow(&flow(i, 1002));
    }
    let r = mon.finish();
    assert_eq!(r.devices[0].flows, 20_000);
    assert_eq!(r.devices[0].violations, 10_000, "only TCP 1002's");
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].port(), 1002);
}

/// A flood of DNS answers (anything on the wire can send them) beyond what the monitor keeps
/// cannot frame a device: once an answer was not kept, a flow only a name could allow is
/// unattributable, not a violation, as the answer naming its peer may have been that one.
#[test]
fn answers_not_kept_make_name_flows_unattributable_never_violations() {
    use nospy_flow::{dns::Answer, DnsSeen};
    let peer = IpAddr::from([203, 0, 113, 7]);
    let answer = |name: &str| DnsSeen {
        ts_ns: 0,
        client: IpAddr::from([10, 0, 0, 1]),
        answer: Answer {
            name: name.into(),
            addr: peer,
            ttl: 60,
        },
    };
    let to_peer = |port: u16| Flow {
        dst: peer,
        dport: port,
        ..flow(0, 3)
    };
    let judged = |flood: usize| {
        let mut mon = monitor(3);
        mon.limit_dns_answers(10);
        for i in 0..flood {
            mon.dns(&answer(&format!("n{i}.noise.example")));
        }
        // a1.vendor.example would allow TCP 1001 to the peer; a2 is never answered.
        mon.dns(&answer("a1.vendor.example"));
        mon.flow(&to_peer(1001));
        let r = mon.finish();
        (
            r.devices[0].violations,
            r.devices[0].unattributable,
            mon_allowed(&r),
        )
    };
    fn mon_allowed(r: &nospy_monitor::Report) -> u64 {
        r.devices[0].flows - r.devices[0].violations - r.devices[0].unattributable
    }
    // The answer kept: allowed.
    assert_eq!(judged(3), (0, 0, 1));
    // The answer not kept (ten others were): not a violation.
    assert_eq!(judged(10), (0, 1, 0));
    // A flow no name could allow is a violation all the same.
    let mut mon = monitor(3);
    mon.limit_dns_answers(1);
    mon.dns(&answer("x.noise.example"));
    mon.dns(&answer("y.noise.example"));
    mon.flow(&to_peer(9));
    assert_eq!(mon.finish().devices[0].violations, 1);
}

/// A monitor that did not read the answers before some time (a worker taking a partition's
/// stream over where another's parts end) holds no flow only a name could allow against a
/// device until every answer it may have missed has expired (a day, and an hour of disorder);
/// an answer ties a name for at most a day, whatever its TTL.
#[test]
fn answers_not_read_cannot_frame_a_device_and_expire_after_a_day() {
    use nospy_flow::{dns::Answer, DnsSeen};
    const S: u64 = 1_000_000_000;
    let peer = IpAddr::from([203, 0, 113, 7]);
    let t0 = 1_700_000_000 * S;
    let at = |ts_ns: u64, port: u16| Flow {
        first_ns: ts_ns,
        last_ns: ts_ns + S,
        dst: peer,
        dport: port,
        ..flow(0, 3)
    };
    // An answer for the device naming another address (so that answers are seen for it).
    let other_answer = |mon: &mut nospy_monitor::Monitor, ts_ns: u64| {
        mon.dns(&DnsSeen {
            ts_ns,
            client: IpAddr::from([10, 0, 0, 1]),
            answer: Answer {
                name: "other.example".into(),
                addr: IpAddr::from([198, 51, 100, 1]),
                ttl: 60,
            },
        })
    };
    let verdicts = |mon: nospy_monitor::Monitor| {
        let r = mon.finish();
        (r.devices[0].violations, r.devices[0].unattributable)
    };
    // Another name's answer read after the takeover (so answers are seen for the device); the
    // flow's name, a1.vendor.example, answered before it, was not read.
    let taken_over = || {
        let mut mon = monitor(3);
        mon.answers_unread_before(t0);
        other_answer(&mut mon, t0 + S);
        mon
    };
    let mut mon = taken_over();
    mon.flow(&at(t0 + 3_600 * S, 1001));
    assert_eq!(
        verdicts(mon),
        (0, 1),
        "within the day: may be a missed answer's"
    );
    let mut mon = taken_over();
    mon.flow(&at(t0 + 26 * 3_600 * S, 1001));
    assert_eq!(
        verdicts(mon),
        (1, 0),
        "a day and more after: every missed answer expired"
    );
    // When answers were not read before a time not known (the chain's parts carried no flow
    // time): held so until the next answer read, whose time then stands for it.
    let unknown = |first_answer_s: Option<u64>, flow_s: u64| {
        let mut mon = monitor(3);
        mon.answers_unread_before(0);
        if let Some(a) = first_answer_s {
            other_answer(&mut mon, t0 + a * S);
        }
        mon.flow(&at(t0 + flow_s * S, 1001));
        verdicts(mon)
    };
    // An answer read first (and so seen for the device), then the flow within the day.
    assert_eq!(unknown(Some(0), 3_600), (0, 1));
    assert_eq!(unknown(Some(0), 26 * 3_600), (1, 0));
    // A monitor that had seen answers for the device, then missed some, and read none since.
    let mut mon = monitor(3);
    other_answer(&mut mon, t0);
    mon.answers_unread_before(0);
    mon.flow(&at(t0 + 30 * 86_400 * S, 1001));
    assert_eq!(
        verdicts(mon),
        (0, 1),
        "no answer read since: still not held"
    );
    // A week's TTL ties the name for a day.
    let week = |after_s: u64| {
        let mut mon = monitor(3);
        mon.dns(&DnsSeen {
            ts_ns: t0,
            client: IpAddr::from([10, 0, 0, 1]),
            answer: Answer {
                name: "a1.vendor.example".into(),
                addr: peer,
                ttl: 7 * 86_400,
            },
        });
        mon.flow(&at(t0 + after_s * S, 1001));
        let r = mon.finish();
        r.devices[0].flows - r.devices[0].violations - r.devices[0].unattributable
    };
    assert_eq!(week(12 * 3_600), 1, "allowed within the day");
    assert_eq!(week(2 * 86_400), 0, "not two days on");
}
