//! The reference judgement of a report row against a manifest: each reason, each thing a row
//! does not record, and the abstractions as recorded.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::judge::{
    judge, names_named, resolutions_for, Judgement, Observed, Openers, Resolutions, Unrecorded, Why,
};
use nospy_manifest::{Direction, Manifest, Prefix};
use std::collections::BTreeMap;

const M: &str = r#"
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
[[allow]]
direction = "from-device"
peer = "198.51.100.0/24"
protocol = "tcp"
ports = "8443"
initiated_by = "device"
[[allow]]
direction = "from-device"
peer = "updates.v.example"
protocol = "tcp"
ports = "443"
[[allow]]
direction = "to-device"
peer = "operator-networks"
protocol = "tcp"
device_ports = "22"
initiated_by = "peer"
[[allow]]
direction = "from-device"
peer = "same-vendor"
protocol = "udp"
ports = "4789"
device_ports = "4789"
[[allow]]
direction = "from-device"
peer = "controller:urn:ietf:params:mud:dns"
protocol = "udp"
ports = "53"
"#;

fn obs(direction: Direction, peer: &str, protocol: u8, port: u16) -> Observed {
    Observed {
        direction,
        peer: peer.parse().unwrap(),
        protocol,
        port,
        names: Some(vec![]),
        same_vendor: false,
        openers: None,
    }
}

fn res() -> Resolutions {
    let m = Manifest::from_toml(M).unwrap();
    let p = |s: &str| -> Prefix { s.parse().unwrap() };
    let controllers = BTreeMap::from([
        ("urn:ietf:params:mud:dns".to_string(), vec![p("9.9.9.9/32")]),
        ("urn:other".to_string(), vec![p("8.8.8.8/32")]),
    ]);
    let r = resolutions_for(
        &m,
        &[p("10.0.0.0/8")],
        &[p("192.168.0.0/16")],
        &[],
        &controllers,
    );
    // Only what the manifest uses is recorded.
    assert!(r.local_networks.is_empty());
    assert_eq!(r.controllers.len(), 1);
    r
}

#[test]
fn each_reason_and_each_allowance() {
    use Direction::*;
    let m = Manifest::from_toml(M).unwrap();
    let r = res();
    let j = |o: &Observed| judge(&m, &r, o);
    assert_eq!(
        j(&obs(FromDevice, "192.0.2.7", 6, 443)),
        Judgement::Allowed { rule: 0 }
    );
    assert_eq!(
        j(&obs(FromDevice, "203.0.113.66", 6, 8443)),
        Judgement::NotAllowed(Why::Peer)
    );
    assert_eq!(
        j(&obs(FromDevice, "192.0.2.7", 6, 80)),
        Judgement::NotAllowed(Why::Service)
    );
    assert_eq!(
        j(&obs(FromDevice, "192.0.2.7", 17, 443)),
        Judgement::NotAllowed(Why::Service)
    );
    // initiated_by = device: who opened the flows is not recorded.
    assert_eq!(
        j(&obs(FromDevice, "198.51.100.5", 6, 8443)),
        Judgement::Undecided {
            rule: 1,
            unrecorded: Unrecorded::Opener,
            why: Why::Initiator
        }
    );
    // An abstraction, as recorded: the operator's networks may reach SSH, opened by them.
    assert_eq!(
        j(&obs(ToDevice, "10.1.2.3", 6, 22)),
        Judgement::Undecided {
            rule: 3,
            unrecorded: Unrecorded::Opener,
            why: Why::Initiator
        }
    );
    assert_eq!(
        j(&obs(ToDevice, "10.1.2.3", 6, 23)),
        Judgement::NotAllowed(Why::Service)
    );
    assert_eq!(
        j(&obs(ToDevice, "172.16.0.1", 6, 22)),
        Judgement::NotAllowed(Why::Peer)
    );
    // A controller class, resolved; another class's address is not admitted.
    assert_eq!(
        j(&obs(FromDevice, "9.9.9.9", 17, 53)),
        Judgement::Allowed { rule: 5 }
    );
    assert_eq!(
        j(&obs(FromDevice, "8.8.8.8", 17, 53)),
        Judgement::NotAllowed(Why::Peer)
    );
}

#[test]
fn names_same_vendor_and_replies() {
    use Direction::*;
    let m = Manifest::from_toml(M).unwrap();
    let r = res();
    let mut o = obs(FromDevice, "203.0.113.9", 6, 443);
    // The names it stood for, recorded: none of them allowed.
    o.names = Some(vec!["evil.example".into()]);
    assert_eq!(judge(&m, &r, &o), Judgement::NotAllowed(Why::Peer));
    o.names = Some(vec!["updates.v.example".into()]);
    assert_eq!(judge(&m, &r, &o), Judgement::Allowed { rule: 2 });
    // Not recorded: a name rule would allow the service, so nothing is decided.
    o.names = None;
    assert!(matches!(
        judge(&m, &r, &o),
        Judgement::Undecided {
            rule: 2,
            unrecorded: Unrecorded::Names,
            why: Why::Peer
        }
    ));
    // ... but a service no name rule allows is decided without them.
    o.port = 25;
    assert_eq!(judge(&m, &r, &o), Judgement::NotAllowed(Why::Peer));

    // same-vendor restricts the device's port, which a from-device row does not record.
    let mut o = obs(FromDevice, "10.9.9.9", 17, 4789);
    o.same_vendor = true;
    assert!(matches!(
        judge(&m, &r, &o),
        Judgement::Undecided {
            unrecorded: Unrecorded::OtherPort,
            ..
        }
    ));
    o.same_vendor = false;
    assert_eq!(judge(&m, &r, &o), Judgement::NotAllowed(Why::Peer));

    // From the device to the operator's network, from port 22: a reply to an SSH session the
    // operator opened, were the opener unknown.
    let o = obs(FromDevice, "10.1.2.3", 6, 50_000);
    assert!(matches!(
        judge(&m, &r, &o),
        Judgement::Undecided {
            rule: 3,
            unrecorded: Unrecorded::Reply,
            ..
        }
    ));
}

/// Only the names a manifest's rules name can change a row's judgement: with every other name
/// left out, each row of a grid (both directions, peers in and out of every rule, services
/// allowed and not, openers known and not) is judged the same. What lets evidence state a
/// peer's names a manifest does not name in part, or not at all.
#[test]
fn names_no_rule_names_do_not_change_a_judgement() {
    use Direction::*;
    let m = Manifest::from_toml(M).unwrap();
    let r = res();
    let named = names_named(&m);
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["updates.v.example"]);
    let none = Manifest::from_toml(&M.replace("updates.v.example", "192.0.2.9/32")).unwrap();
    assert!(names_named(&none).is_empty());
    let name_sets: [&[&str]; 4] = [
        &[],
        &["evil.example", "x.updates.v.example"],
        &["updates.v.example"],
        &["a.example", "updates.v.example", "zzz.example"],
    ];
    let openers = [None, Some(1u8), Some(2), Some(4)];
    let mut judged = 0;
    for direction in [FromDevice, ToDevice] {
        for peer in [
            "192.0.2.7",
            "198.51.100.5",
            "203.0.113.9",
            "10.1.2.3",
            "9.9.9.9",
        ] {
            for (protocol, port) in [(6, 443), (6, 8443), (6, 22), (17, 53), (17, 4789), (6, 25)] {
                for names in name_sets {
                    for op in openers {
                        let mut o = obs(direction, peer, protocol, port);
                        o.openers = op.and_then(Openers::from_bits);
                        o.names = Some(names.iter().map(|n| n.to_string()).collect());
                        let all = judge(&m, &r, &o);
                        o.names = Some(
                            names
                                .iter()
                                .filter(|n| names_named(&m).contains(**n))
                                .map(|n| n.to_string())
                                .collect(),
                        );
                        assert_eq!(judge(&m, &r, &o), all, "{o:?}");
                        judged += 1;
                    }
                }
            }
        }
    }
    assert_eq!(judged, 2 * 5 * 6 * 4 * 4);
}

#[test]
fn resolutions_round_trip_and_refuse_what_they_do_not_know() {
    let r = res();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"operator_networks": ["10.0.0.0/8"], "controllers": {"urn:ietf:params:mud:dns": ["9.9.9.9/32"]}})
    );
    assert_eq!(serde_json::from_value::<Resolutions>(v).unwrap(), r);
    for bad in [
        serde_json::json!({"operator_networks": ["10.0.0.1/8"]}),
        serde_json::json!({"operator_networks": "10.0.0.0/8"}),
        serde_json::json!({"dns": []}),
    ] {
        assert!(serde_json::from_value::<Resolutions>(bad).is_err());
    }
}

#[test]
fn who_opened_the_flows_decides_initiated_by() {
    use Direction::*;
    let m = Manifest::from_toml(M).unwrap();
    let r = res();
    let opened = |o: Observed, device: bool, peer: bool, unknown: bool| Observed {
        openers: Some(Openers {
            device,
            peer,
            unknown,
        }),
        ..o
    };
    // initiated_by = "device": the peer opening the connection is what is not allowed.
    let o = obs(FromDevice, "198.51.100.5", 6, 8443);
    assert_eq!(
        judge(&m, &r, &opened(o.clone(), false, true, false)),
        Judgement::NotAllowed(Why::Initiator)
    );
    assert_eq!(
        judge(&m, &r, &opened(o.clone(), true, false, false)),
        Judgement::Allowed { rule: 1 }
    );
    // An opener not known is not held against initiated_by, as the monitor judges.
    assert_eq!(
        judge(&m, &r, &opened(o, false, true, true)),
        Judgement::Allowed { rule: 1 }
    );
    // SSH from the operator's networks, opened by the device: the wrong side.
    assert_eq!(
        judge(
            &m,
            &r,
            &opened(obs(ToDevice, "10.1.2.3", 6, 22), true, false, false)
        ),
        Judgement::NotAllowed(Why::Initiator)
    );
    // Flows the device opened are not replies: judged one way only.
    let o = obs(FromDevice, "10.1.2.3", 6, 50_000);
    assert_eq!(
        judge(&m, &r, &opened(o.clone(), true, false, false)),
        Judgement::NotAllowed(Why::Peer)
    );
    assert!(matches!(
        judge(&m, &r, &opened(o, false, false, true)),
        Judgement::Undecided {
            unrecorded: Unrecorded::Reply,
            ..
        }
    ));
}

#[test]
fn openers_are_written_as_a_list_and_read_strictly() {
    let o = Openers {
        device: true,
        peer: false,
        unknown: true,
    };
    let v = serde_json::to_value(o).unwrap();
    assert_eq!(v, serde_json::json!(["device", "unknown"]));
    assert_eq!(serde_json::from_value::<Openers>(v).unwrap(), o);
    assert_eq!(Openers::from_bits(0), None);
    assert_eq!(Openers::from_bits(5), Some(o));
    for bad in [
        serde_json::json!([]),
        serde_json::json!(["device", "device"]),
        serde_json::json!(["someone"]),
        serde_json::json!("device"),
    ] {
        assert!(serde_json::from_value::<Openers>(bad).is_err());
    }
}
