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
