//! The manifest's TOML and JSON forms, and their errors.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::{Direction, Initiator, Manifest, Peer, Ports, Protocol, RemoteAccess};

const DESIGN_EXAMPLE: &str = r#"
[device]
vendor = "VendorX"
model = "vx-ran-5000"

[capabilities]
vendor_remote_access = "none"        # none | operator-initiated | vendor-initiated

[[allow]]
direction = "from-device"
peer = "updates.vendorx.example"
protocol = "tcp"
ports = "443"
initiated_by = "device"

[[allow]]
direction = "to-device"
peer = "operator-networks"
protocol = "tcp"
device_ports = "22"
initiated_by = "peer"

[[allow]]
direction = "from-device"
peer = "192.0.2.0/24"
protocol = "udp"
ports = "1024-65535"

[[allow]]
direction = "from-device"
peer = "2001:db8::/32"
protocol = "icmp"
"#;

#[test]
fn the_design_example_parses_and_round_trips() {
    let m = Manifest::from_toml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(m.capabilities.vendor_remote_access, RemoteAccess::None);
    assert_eq!(m.allow.len(), 4);
    let r = &m.allow[0];
    assert_eq!(r.direction, Direction::FromDevice);
    assert_eq!(r.peer, Peer::Name("updates.vendorx.example".into()));
    assert_eq!(
        (r.protocol, r.ports, r.initiated_by),
        (
            Protocol::Tcp,
            Ports::Range(443, 443),
            Some(Initiator::Device)
        )
    );
    assert_eq!(m.allow[1].device_ports, Ports::Range(22, 22));
    assert!(matches!(m.allow[2].peer, Peer::Prefix(p) if p.to_string() == "192.0.2.0/24"));
    assert_eq!(Manifest::from_toml(&m.to_toml()).unwrap(), m);
    assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
}

#[test]
fn errors_name_the_line_or_the_rule() {
    let cases = [
        (DESIGN_EXAMPLE.replace("\"443\"", "\"443x\""), "line 13: ports \"443x\""),
        (DESIGN_EXAMPLE.replace("192.0.2.0/24", "192.0.2.1/24"), "host bits set"),
        (DESIGN_EXAMPLE.replace("192.0.2.0/24", "192.0.2.0/33"), "prefix length"),
        (DESIGN_EXAMPLE.replace("1024-65535", "65535-1024"), "reversed"),
        (DESIGN_EXAMPLE.replace("\"udp\"", "\"sctp\""), "protocol \"sctp\""),
        (DESIGN_EXAMPLE.replace("vendor_remote_access = \"none\"", "vendor_remote_access = \"sometimes\""), "sometimes"),
        (DESIGN_EXAMPLE.replace("updates.vendorx.example", "bad name!"), "not a DNS name"),
        (DESIGN_EXAMPLE.replace("initiated_by = \"device\"", "initiated_by = \"device\"\ncolour = \"red\""), "unknown field `colour`"),
        (DESIGN_EXAMPLE.replace("protocol = \"icmp\"", "protocol = \"icmp\"\nports = \"7\""), "allow rule 4 (peer 2001:db8::/32): ports apply to tcp and udp only"),
        (DESIGN_EXAMPLE.replace("protocol = \"udp\"", "protocol = \"udp\"\ninitiated_by = \"peer\""), "allow rule 3 (peer 192.0.2.0/24): initiated_by applies to tcp only"),
        (DESIGN_EXAMPLE.replace("[capabilities]\nvendor_remote_access = \"none\"        # none | operator-initiated | vendor-initiated\n", ""), "missing field `capabilities`"),
    ];
    for (text, want) in cases {
        let e = Manifest::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn a_file_in_either_form() {
    let m = Manifest::from_toml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(Manifest::parse(DESIGN_EXAMPLE).unwrap(), m);
    let json = serde_json::to_string_pretty(&m.to_json()).unwrap();
    assert_eq!(Manifest::parse(&format!("\n  {json}")).unwrap(), m);
    let bad = json.replacen("\"443\"", "\"443x\"", 1);
    let line = 1 + bad[..bad.find("443x").unwrap()].matches('\n').count();
    let e = Manifest::parse(&bad).unwrap_err();
    assert!(e.place.starts_with(&format!("line {line} column ")), "{e}");
    assert!(e.message.contains("443x"), "{e}");
    let e = Manifest::parse(&format!("{json} trailing")).unwrap_err();
    assert!(e.message.contains("trailing"), "{e}");
    let e = Manifest::parse(&format!("{{{}", " ".repeat(1 << 20))).unwrap_err();
    assert!(e.message.contains("over 1 MiB"), "{e}");
}

#[test]
fn peers_parse_and_print() {
    for s in [
        "operator-networks",
        "my-controller",
        "same-vendor",
        "local-networks",
        "controller:urn:ietf:params:mud:dns",
        "10.0.0.0/8",
        "10.1.2.3/32",
        "::/0",
        "ntp.example.org",
    ] {
        let p: Peer = s.parse().unwrap();
        assert_eq!(
            p.to_string(),
            if s == "10.1.2.3" { "10.1.2.3/32" } else { s }
        );
    }
    assert_eq!(
        "10.1.2.3".parse::<Peer>().unwrap().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!(
        "NTP.Example.ORG.".parse::<Peer>().unwrap().to_string(),
        "ntp.example.org"
    );
    for bad in [
        "",
        "controller:",
        "a..b",
        "-a.example",
        "10.0.0.0/08",
        "300.1.1.1",
        "x/24",
    ] {
        assert!(bad.parse::<Peer>().is_err(), "{bad:?} should be refused");
    }
}
