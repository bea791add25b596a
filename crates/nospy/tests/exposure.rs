//! `nospy exposure` through the binary: the §12 JSON, bad input refused with its line, and the
//! HTML report opened in headless Chromium (installed by `.ci/run`), without console errors and
//! with its charts drawn.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::path::{Path, PathBuf};

const HEADER: &str = "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n";

/// 2,000 elements: core 100 (Huawei 10), access 1,500 (Huawei 600 of weight 2, others 900 of
/// weight 1: 1,200 of 2,100 by weight), transport 400.
fn inventory(dir: &Path) -> PathBuf {
    let mut csv = String::from(HEADER);
    for i in 0..100 {
        let v = if i < 10 { "Huawei" } else { "Ericsson" };
        csv.push_str(&format!(
            "core-{i},{v},c,core,5g,site-{i},{},,,10,1000000\n",
            i < 2
        ));
    }
    for i in 0..1500 {
        let (v, w) = if i < 600 { ("Huawei", 2) } else { ("Nokia", 1) };
        let tech = if i % 2 == 0 { "5g" } else { "4g" };
        csv.push_str(&format!(
            "ran-{i},{v},r,access,{tech},site-{i},false,,,{w},50000\n"
        ));
    }
    for i in 0..400 {
        csv.push_str(&format!(
            "tx-{i},Ciena,t,transport,fibre,site-{i},false,,,1,20000\n"
        ));
    }
    let p = dir.join("inventory.csv");
    std::fs::write(&p, csv).unwrap();
    p
}

/// `nospy exposure --inventory INV --policy POLICY` and `extra`.
fn exposure(inv: &Path, policy: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["exposure", "--inventory", s(inv), "--policy", s(policy)];
    args.extend(extra);
    run(&args)
}

fn uk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/exposure-uk.toml")
}

#[test]
fn the_json_report_has_every_rule_with_its_share_deadline_and_replacement() {
    let t = tempfile::tempdir().unwrap();
    let inv = inventory(t.path());
    let r = exposure(
        &inv,
        &uk(),
        &["--at", "2024-06-01", "--what-if", "0:50:10", "--json"],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["at"], "2024-06-01");
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    let core = rules
        .iter()
        .find(|r| r["name"] == "Out of the core")
        .unwrap();
    assert_eq!(core["share"], 0.1);
    assert_eq!(core["max_share"], 0.0);
    assert_eq!(core["measure"], "devices");
    assert_eq!(core["effective"], "2023-12-31");
    assert_eq!(core["in_force"], true);
    assert_eq!(core["compliant"], false);
    assert_eq!(core["days_to_effective"], -153);
    assert_eq!(core["replacement"]["devices"].as_array().unwrap().len(), 10);
    assert_eq!(core["replacement"]["cost"], 10_000_000.0);
    let access = rules
        .iter()
        .find(|r| r["name"].as_str().unwrap().contains("35%"))
        .unwrap();
    // 1,200 of 2,100 by weight; within 35% means at most 735: 465 to replace, 233 devices.
    assert_eq!(
        access["replacement"]["devices"].as_array().unwrap().len(),
        233
    );
    assert_eq!(access["what_if"].as_array().unwrap().len(), 6);
    let g5 = rules.iter().find(|r| r["name"] == "Out of 5G").unwrap();
    assert_eq!(
        (g5["in_force"].as_bool(), g5["compliant"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(g5["days_to_effective"].as_i64().unwrap() > 0);
    // Before every deadline: no breach, exit 0.
    let r = exposure(&inv, &uk(), &["--at", "2022-01-01"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0 of 4 rules in breach"), "{}", r.stdout);
}

#[test]
fn bad_input_is_refused_with_its_line() {
    let t = tempfile::tempdir().unwrap();
    let bad = |name: &str, body: &str| -> PathBuf {
        let p = t.path().join(name);
        std::fs::write(&p, format!("{HEADER}{body}")).unwrap();
        p
    };
    for (inv, want) in [
        (
            bad(
                "f.csv",
                "a,V,m,core,5g,s,false,,,1,1\nb,V,m,kernel,5g,s,false,,,1,1\n",
            ),
            "line 3, column function",
        ),
        (
            bad("w.csv", "a,V,m,core,5g,s,false,,,-1,1\n"),
            "line 2, column weight",
        ),
        (
            bad(
                "d.csv",
                "a,V,m,core,5g,s,false,,,1,1\na,V,m,core,5g,s,false,,,1,1\n",
            ),
            "line 3",
        ),
    ] {
        let r = exposure(&inv, &uk(), &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(want), "want {want:?}: {}", r.stderr);
    }
    let inv = inventory(t.path());
    let r = exposure(&inv, &uk(), &["--at", "01/06/2024"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("YYYY-MM-DD"), "{}", r.stderr);
    let policy = t.path().join("p.toml");
    std::fs::write(&policy, "[[rule]]\nname = \"x\"\nvendor = \"V\"\nmax_share = 0.2\nmeasure = \"weight\"\neffective = \"2023-13-01\"\n").unwrap();
    let r = exposure(&inv, &policy, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 6"), "{}", r.stderr);
}

#[test]
fn the_html_report_opens_in_chromium_with_its_charts_drawn() {
    let t = tempfile::tempdir().unwrap();
    let inv = inventory(t.path());
    let html = t.path().join("exposure.html");
    let r = exposure(
        &inv,
        &uk(),
        &[
            "--at",
            "2024-06-01",
            "--what-if",
            "0:50:10",
            "--html",
            s(&html),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    // The report as written: no console message at all (it has no script).
    let (dom, err) = chromium_dom(&html, &t.path().join("profile1"));
    assert!(dom.contains("Designated-vendor exposure at 2024-06-01"));
    assert!(!err.contains(":CONSOLE"), "{err}");
    // The same report with a probe appended: every chart laid out with a size, every bar drawn.
    let probe = t.path().join("probe.html");
    let text = std::fs::read_to_string(&html).unwrap().replace(
        "</body>",
        "<script>const c=[...document.querySelectorAll('svg.chart')];\
         const drawn=c.filter(s=>{const b=s.getBBox();return b.width>0&&b.height>0;}).length;\
         const bars=[...document.querySelectorAll('svg.shares rect.bar')];\
         const wide=bars.filter(r=>r.getBBox().width>0).length;\
         const caps=[...document.querySelectorAll('svg.timeline polyline.cap')].filter(p=>p.getTotalLength()>0).length;\
         document.body.setAttribute('data-probe',[c.length,drawn,bars.length,wide,caps].join(' '));</script></body>",
    );
    std::fs::write(&probe, text).unwrap();
    let (dom, err) = chromium_dom(&probe, &t.path().join("profile2"));
    assert!(!err.contains(":CONSOLE"), "{err}");
    let probed = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the probe did not run: {dom}"));
    let n: Vec<usize> = probed.split(' ').map(|x| x.parse().unwrap()).collect();
    // Four rules: a shares chart, a timeline and a what-if chart each.
    assert_eq!(n[0], 12, "{probed}");
    assert_eq!(n[1], 12, "every chart has a size: {probed}");
    assert!(n[2] >= 4 && n[3] == n[2], "every bar is drawn: {probed}");
    assert_eq!(n[4], 4, "every cap line is drawn: {probed}");
}
