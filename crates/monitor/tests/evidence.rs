//! Evidence statements: one per device with violations, split so that each fits a log entry,
//! signed by the monitor's key, naming the firmware and what the flows were checked against.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_flow::Flow;
use nospy_inventory::{Device, Function, Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_monitor::evidence::sign;
use nospy_monitor::Monitor;
use nospy_statement::predicate::Predicate;
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
        device: format!("d{i}"),
        vendor: "V".into(),
        model: "M".into(),
        function: Function::Access,
        technology: "5g".into(),
        site: "s".into(),
        sensitive: false,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))],
        firmware_sha256: firmware.map(|h| h.to_hex()),
        weight: 1.0,
        replacement_cost: 1.0,
    }
}

#[test]
fn each_device_with_violations_gets_statements_that_fit_a_log_entry() {
    let fw = Sha256([1; 32]);
    let inventory = Inventory {
        devices: vec![device(1, Some(fw)), device(2, None), device(3, Some(fw))],
    };
    let m = Arc::new(Manifest::from_toml(MANIFEST).unwrap());
    let manifests = vec![Some(m.clone()), Some(m.clone()), Some(m)];
    let mut mon = Monitor::new(&inventory, &manifests, &OperatorConfig::default(), None).unwrap();
    // Device 1: 3,000 distinct violating peers (far more than one entry holds); device 2: one,
    // but no firmware digest; device 3: allowed traffic only.
    let flow = |dev: u8, peer: IpAddr, port: u16| Flow {
        first_ns: 1_700_000_000_000_000_000,
        last_ns: 1_700_000_001_000_000_000,
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, dev)),
        dst: peer,
        sport: 40_000,
        dport: port,
        proto: 6,
        packets: 3,
        bytes: 300,
        initiator_known: true,
    };
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
    let names = vec![Some("file m.toml".to_string()), None, None];
    let input = Sha256([2; 32]);
    let ev = sign(&report, &inventory, &names, &input, &key);

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
    }
}
