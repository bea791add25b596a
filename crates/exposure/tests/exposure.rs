//! Exposure on generated inventories whose shares, breaches and minimal replacement sets are
//! known by construction, and the minimal sets against exhaustive search.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_exposure::{evaluate, minimal_replacement, what_if, Date, Measure, Policy};
use nospy_inventory::{Device, Function, Inventory};

fn device(
    id: String,
    vendor: &str,
    function: Function,
    tech: &str,
    sensitive: bool,
    weight: f64,
    cost: f64,
) -> Device {
    Device {
        device: id,
        vendor: vendor.into(),
        model: "m".into(),
        function,
        technology: tech.into(),
        site: "s".into(),
        sensitive,
        addresses: Vec::new(),
        firmware_sha256: None,
        weight,
        replacement_cost: cost,
    }
}

/// A national operator's network, by construction:
/// - core: 200 elements, 30 of them Huawei (15%), 5 of those at sensitive sites;
/// - access: 30,000 elements: Huawei 12,000 of weight 2 (24,000), others 18,000 of weight 1
///   (18,000): Huawei's share by weight 24/42 = 57.14%, by count 40%; of Huawei's, the first
///   6,000 are 5G;
/// - transport: 8,000 elements, none Huawei;
/// - sensitive sites: 400 other elements plus the 5 Huawei core ones.
fn national() -> Inventory {
    let mut devices = Vec::new();
    for i in 0..200 {
        let huawei = i < 30;
        devices.push(device(
            format!("core-{i:05}"),
            if huawei { "Huawei" } else { "Ericsson" },
            Function::Core,
            "5g",
            huawei && i < 5,
            10.0,
            1_000_000.0 + i as f64,
        ));
    }
    for i in 0..30_000 {
        let huawei = i < 12_000;
        devices.push(device(
            format!("ran-{i:06}"),
            if huawei {
                "Huawei"
            } else if i % 2 == 0 {
                "Nokia"
            } else {
                "Ericsson"
            },
            Function::Access,
            if i < 6_000 { "5g" } else { "4g" },
            false,
            if huawei { 2.0 } else { 1.0 },
            // Huawei's heavier than others; among Huawei's, cost grows with the index.
            if huawei {
                50_000.0 + i as f64
            } else {
                40_000.0
            },
        ));
    }
    for i in 0..8_000 {
        devices.push(device(
            format!("tx-{i:05}"),
            "Ciena",
            Function::Transport,
            "fibre",
            false,
            1.0,
            20_000.0,
        ));
    }
    for i in 0..400 {
        devices.push(device(
            format!("mgmt-{i:04}"),
            "Cisco",
            Function::Management,
            "",
            true,
            1.0,
            5_000.0,
        ));
    }
    Inventory { devices }
}

fn uk() -> Policy {
    Policy::from_toml(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/exposure-uk.toml"
        ))
        .unwrap(),
    )
    .unwrap()
}

#[test]
fn shares_breaches_and_minimal_sets_are_those_of_the_construction() {
    let inv = national();
    let at = Date::parse("2024-06-01").unwrap();
    let r = evaluate(&inv, &uk(), at, &[]);
    let by = |name: &str| r.iter().find(|x| x.rule.name.contains(name)).unwrap();

    let sensitive = by("sensitive");
    assert_eq!(
        (sensitive.scope_devices, sensitive.vendor_devices),
        (405, 5)
    );
    assert!((sensitive.share - 5.0 / 405.0).abs() < 1e-12);
    assert!(sensitive.breach());
    assert_eq!(sensitive.replacement.devices.len(), 5);
    assert_eq!(sensitive.replacement.share_after, 0.0);

    let core = by("core");
    assert!((core.share - 0.15).abs() < 1e-12);
    assert!(core.breach() && core.in_force);
    assert_eq!(
        core.days_to_effective,
        Date::parse("2023-12-31").unwrap().0 - at.0
    );
    assert!(core.days_to_effective < 0);
    assert_eq!(core.replacement.devices.len(), 30);
    let cost: f64 = (0..30).map(|i| 1_000_000.0 + i as f64).sum();
    assert_eq!(core.replacement.cost, cost);

    // Access, by weight: 24,000 of 42,000. Within 35% needs Huawei's weight at most 14,700:
    // 9,300 to replace, 4,650 devices of weight 2, the cheapest of equal weight first.
    let access = by("35%");
    assert!((access.share - 24.0 / 42.0).abs() < 1e-12);
    assert!(access.breach());
    assert_eq!(access.replacement.devices.len(), 4_650);
    assert_eq!(access.replacement.weight, 9_300.0);
    let first = &inv.devices[access.replacement.devices[0]];
    assert_eq!(
        first.device, "ran-000000",
        "the cheapest of equal weight first"
    );
    assert!((access.replacement.share_after - 14_700.0 / 42_000.0).abs() < 1e-12);

    // 5G: Huawei has its 30 core elements and 6,000 access ones of the 200 + 6,000 5G elements;
    // not in force until the end of 2027.
    let g5 = by("5G");
    assert_eq!((g5.scope_devices, g5.vendor_devices), (6_200, 6_030));
    assert!(!g5.in_force && !g5.compliant && !g5.breach());
    assert_eq!(
        g5.days_to_effective,
        Date::parse("2027-12-31").unwrap().0 - at.0
    );
    assert_eq!(g5.replacement.devices.len(), 6_030);

    // Before the first deadline nothing is in breach.
    let early = evaluate(&inv, &uk(), Date::parse("2022-01-01").unwrap(), &[]);
    assert!(early.iter().all(|x| !x.breach()));

    // The sweep: at a cap of 60% access complies as it is; each lower cap costs more.
    let caps = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let sweep = what_if(&inv, &access.rule, &caps);
    assert!(sweep[6].replacement.devices.is_empty());
    for w in sweep.windows(2) {
        assert!(w[0].replacement.cost >= w[1].replacement.cost);
        assert!(w[0].replacement.devices.len() >= w[1].replacement.devices.len());
    }
    assert_eq!(sweep[0].replacement.devices.len(), 12_000);
}

/// The fewest devices whose replacement brings `amount` within the cap, by trying every subset.
fn exhaustive(weights: &[f64], total: f64, amount: f64, cap: f64) -> usize {
    let n = weights.len();
    let mut best = usize::MAX;
    for mask in 0u32..(1 << n) {
        let removed: f64 = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| weights[i])
            .sum();
        if amount - removed <= cap * total + 1e-9 * total.max(1.0) {
            best = best.min(mask.count_ones() as usize);
        }
    }
    best
}

#[test]
fn the_minimal_set_is_minimal_by_exhaustive_search() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for case in 0..400 {
        let n = 1 + next(11) as usize;
        let others = next(20) as f64;
        let measure = if case % 2 == 0 {
            Measure::Weight
        } else {
            Measure::Devices
        };
        let devices: Vec<Device> = (0..n)
            .map(|i| {
                device(
                    format!("d{i}"),
                    "V",
                    Function::Access,
                    "",
                    false,
                    next(9) as f64 + if case % 3 == 0 { 0.5 } else { 0.0 },
                    next(100) as f64,
                )
            })
            .collect();
        let candidates: Vec<usize> = (0..n).collect();
        let m: Vec<f64> = devices.iter().map(|d| measure.of(d)).collect();
        let amount: f64 = m.iter().sum();
        let total = amount + others;
        let cap = next(101) as f64 / 100.0;
        let r = minimal_replacement(&devices, &candidates, measure, amount, total, cap);
        let best = exhaustive(&m, total, amount, cap);
        if best == usize::MAX {
            // Only zero-weight devices stand between the share and the cap: no set suffices.
            assert!(amount - r.amount > cap * total, "case {case}");
            continue;
        }
        assert_eq!(
            r.devices.len(),
            best,
            "case {case}: {m:?} of {total}, cap {cap}"
        );
        assert!(
            amount - r.amount <= cap * total + 1e-9 * total.max(1.0),
            "case {case}"
        );
        if measure == Measure::Devices {
            // Any `best` devices will do: the chosen are the cheapest.
            let mut costs: Vec<f64> = devices.iter().map(|d| d.replacement_cost).collect();
            costs.sort_by(f64::total_cmp);
            assert_eq!(r.cost, costs[..best].iter().sum::<f64>(), "case {case}");
        }
    }
}

#[test]
fn a_bad_policy_is_refused_with_its_line() {
    use nospy_exposure::{DateError, PolicyError as E};
    let good = "[[rule]]\nname = \"x\"\nvendor = \"V\"\nscope = { functions = [\"core\"] }\nmax_share = 0.35\nmeasure = \"weight\"\neffective = \"2023-12-31\"\n";
    assert!(Policy::from_toml(good).is_ok());
    type Case = (String, usize, &'static str, fn(&E) -> bool);
    let cases: [Case; 10] = [
        (
            good.replace("\"core\"", "\"kernel\""),
            4,
            "not a function",
            |e| matches!(e, E::Function { .. }),
        ),
        (
            good.replace("0.35", "-0.1"),
            5,
            "not a share",
            |e| matches!(e, E::Share { share, .. } if *share == -0.1),
        ),
        (good.replace("0.35", "35"), 5, "not a share", |e| {
            matches!(e, E::Share { .. })
        }),
        (
            good.replace("\"weight\"", "\"bytes\""),
            6,
            "neither weight nor devices",
            |e| matches!(e, E::Measure { measure, .. } if measure == "bytes"),
        ),
        (
            good.replace("2023-12-31", "31/12/2023"),
            7,
            "YYYY-MM-DD",
            |e| {
                matches!(
                    e,
                    E::Date {
                        problem: DateError::Form(_),
                        ..
                    }
                )
            },
        ),
        (
            good.replace("2023-12-31", "2023-02-30"),
            7,
            "not a day",
            |e| {
                matches!(
                    e,
                    E::Date {
                        problem: DateError::NoSuchDay(_),
                        ..
                    }
                )
            },
        ),
        (
            good.replace("measure", "measured"),
            6,
            "unknown field",
            |e| matches!(e, E::Toml { .. }),
        ),
        (
            format!("{good}{good}"),
            8,
            "a second rule",
            |e| matches!(e, E::DuplicateRule { rule, .. } if rule == "x"),
        ),
        (
            good.replace("name = \"x\"", "name = \"\""),
            2,
            "empty",
            |e| matches!(e, E::EmptyName { .. }),
        ),
        (
            good.replace("vendor = \"V\"", "vendor = \" \""),
            3,
            "vendor is empty",
            |e| matches!(e, E::EmptyVendor { .. }),
        ),
    ];
    for (bad, line, what, kind) in cases {
        let e = Policy::from_toml(&bad).unwrap_err();
        assert!(kind(&e), "{bad}\n=> {e:?}");
        assert_eq!(e.line(), Some(line), "{bad}\n=> {e}");
        let e = e.to_string();
        assert!(e.starts_with(&format!("line {line}:")), "{bad}\n=> {e}");
        assert!(e.contains(what), "{bad}\n=> {e}");
    }
    let e = Policy::from_toml("").unwrap_err();
    assert!(e == nospy_exposure::PolicyError::NoRule && e.line().is_none());
    assert!(e.to_string().contains("no [[rule]]"));
}
