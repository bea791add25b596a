#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use super::*;

#[test]
fn the_same_seed_gives_the_same_world_and_another_seed_other_keys() {
    let (a, b, c) = (World::new(1), World::new(1), World::new(2));
    assert_eq!(a.files.len(), b.files.len());
    for (x, y) in a.files.iter().zip(&b.files) {
        assert_eq!((&x.path, &x.bytes), (&y.path, &y.bytes));
    }
    assert_ne!(
        a.vendor.key.verifier().to_string(),
        c.vendor.key.verifier().to_string()
    );
    // Every key file is private, and nothing else is.
    for f in &a.files {
        assert_eq!(f.private, f.path.starts_with("keys/"), "{}", f.path);
    }
    assert_eq!(a.parties().count(), 7);
}

#[test]
fn only_the_de_rebuild_of_4_2_1_differs_and_only_in_its_daemon() {
    let w = World::new(1);
    for r in &w.releases {
        let shipped = w.file(&r.firmware).unwrap();
        assert_eq!(Sha256::of(shipped), r.digest);
        for (_, path, equal) in &r.rebuilds {
            let rebuilt = w.file(path).unwrap();
            let report = nospy_diff::compare_files(
                "fw.bin",
                shipped,
                rebuilt,
                nospy_diff::Limits::default(),
            )
            .unwrap();
            assert_eq!(report.identical, *equal, "{path}");
            if !equal {
                let paths: Vec<_> = report.differences.iter().map(|d| d.path.as_str()).collect();
                assert_eq!(paths, ["fw.bin!usr/bin/vxd"], "{path}");
            }
        }
    }
    let revoked: Vec<_> = w.releases.iter().filter(|r| r.revoked.is_some()).collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].version, w.phoning_device.1);
    assert_eq!(w.releases[1].supersedes, Some("4.1.0"));
}

#[test]
fn the_inventory_and_manifests_are_what_the_parsers_take() {
    let w = World::new(1);
    let text = std::str::from_utf8(w.file("inventory.csv").unwrap()).unwrap();
    let inv = nospy_inventory::Inventory::parse(text).unwrap();
    assert_eq!(inv.devices.len(), w.devices);
    assert!((950..=1050).contains(&w.devices), "{}", w.devices);
    let access: Vec<_> = inv
        .devices
        .iter()
        .filter(|d| d.function == nospy_inventory::Function::Access)
        .collect();
    let vendorx = access.iter().filter(|d| d.vendor == VENDOR).count();
    assert_eq!(vendorx * 100 / access.len(), 38);
    // No designated-vendor device at a sensitive site or in the core.
    assert!(inv
        .devices
        .iter()
        .filter(|d| d.vendor == VENDOR)
        .all(|d| !d.sensitive && d.function == nospy_inventory::Function::Access));
    assert!(inv.devices.iter().any(|d| d.sensitive));
    // Devices on each release, and on the unlogged build.
    let on = |digest: &str| {
        inv.devices
            .iter()
            .filter(|d| d.firmware_sha256.as_deref() == Some(digest))
            .count()
    };
    let counts: Vec<usize> = w.releases.iter().map(|r| on(&r.digest.to_hex())).collect();
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    assert!(counts[1] > counts[0] + counts[2], "{counts:?}");
    let unlogged = Sha256::of(w.file("firmware/vx-ran-5000-4.2.2-hotfix.bin").unwrap());
    assert!(on(&unlogged.to_hex()) > 0);
    let phoning = inv
        .devices
        .iter()
        .find(|d| d.device == w.phoning_device.0)
        .unwrap();
    assert_eq!(
        phoning.firmware_sha256.as_deref(),
        Some(w.releases[2].digest.to_hex().as_str())
    );
    for r in &w.releases {
        let text = std::str::from_utf8(w.file(&r.manifest).unwrap()).unwrap();
        nospy_manifest::Manifest::from_toml(text).unwrap();
    }
}

#[test]
fn the_capture_is_a_pcap_with_the_phone_home_in_it() {
    let w = World::new(1);
    let data = w.file("capture.pcap").unwrap();
    let mut c = nospy_flow::capture::Capture::new(data).unwrap();
    let (mut packets, mut home) = (0, 0);
    let needle = PHONE_HOME.0;
    while let Some(p) = c.next_packet().unwrap() {
        packets += 1;
        assert!(p.ts_ns / 1_000_000_000 >= CAPTURE_START);
        if p.data.windows(4).any(|x| x == needle) {
            home += 1;
        }
    }
    assert!(packets > 200, "{packets}");
    assert_eq!(home, 4 * 7, "four connections of seven packets");
}
