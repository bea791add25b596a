//! `nospy demo`: the whole chain, played through the binary's own commands.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use common::*;
use std::time::Duration;

#[test]
fn the_demo_world_is_played_end_to_end_and_found_again() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("world");
    let args = [
        "demo",
        s(&dir),
        "--listen",
        "127.0.0.1:0",
        "--no-serve",
        "--json",
    ];
    let r = ok_within(&args, Duration::from_secs(300));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let entries = &v["entries"];
    assert_eq!(entries["releases"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(entries["attestations"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(entries["revocations"].as_array().unwrap().len(), 1, "{v}");
    assert!(!entries["evidence"].as_array().unwrap().is_empty(), "{v}");
    // The monitor found the radio on 4.2.1 phoning home, and only that.
    let monitor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("monitor.json")).unwrap()).unwrap();
    let violations = monitor["violations"].as_array().unwrap();
    assert!(!violations.is_empty(), "{}", monitor["violations"]);
    assert!(
        violations.iter().all(|x| x["device"] == "ran-000007"
            && x["peer"] == "203.0.113.66"
            && x["port"] == 8443),
        "{}",
        monitor["violations"]
    );
    // The fleet, checked against the operator's mirror: radios on the superseded 4.1.0, on
    // the failed 4.2.1 (the DE lab's rebuild differs) and on an unlogged build.
    let fleet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet.json")).unwrap()).unwrap();
    let summary = &fleet["summary"];
    assert_eq!(summary["devices"], 1000, "{summary}");
    assert!(summary["admitted"].as_u64().unwrap() > 200, "{summary}");
    assert!(summary["superseded"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["denied"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["unlogged"].as_u64().unwrap() > 0, "{summary}");
    let phoning = common::device(&fleet, "ran-000007");
    assert_eq!(phoning["verdict"], "denied", "{phoning}");
    assert!(
        phoning["reason"]
            .as_str()
            .unwrap()
            .contains("DE evaluation lab"),
        "{phoning}"
    );
    // A third country's view: the case of 4.2.1 verified offline in the play, and again here
    // in a directory holding only the case and the agreement.
    let transcript = std::fs::read_to_string(dir.join("transcript.txt")).unwrap();
    assert!(transcript.contains("HOLDS evidence entry"), "{transcript}");
    let third = dir.join("third-country");
    std::fs::create_dir(&third).unwrap();
    for f in ["case-4.2.1.json", "agreement.toml"] {
        std::fs::copy(dir.join(f), third.join(f)).unwrap();
    }
    let r = common::run(&[
        "evidence",
        "verify",
        common::s(&third.join("case-4.2.1.json")),
        "--agreement",
        common::s(&third.join("agreement.toml")),
        "--capture",
        common::s(&dir.join("capture.pcap")),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let case: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(case["evidence"][0]["device"], "ran-000007", "{case:#}");
    // The regulator's measure: exactly the access cap breached.
    let exposure: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("exposure.json")).unwrap()).unwrap();
    assert_eq!(
        breached(&exposure),
        ["At most 35% of the access network"],
        "{exposure}"
    );
    // Keys are the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("keys/vendor.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
    // Run again: the same world is found and served, nothing played twice.
    let again = ok_within(&args, Duration::from_secs(120));
    let w: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(w["entries"], v["entries"]);
    // Served: the dashboard answers for the world, until SIGTERM stops it cleanly.
    let mut child = nospy()
        .args(["demo", s(&dir), "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = served_at(&mut child);
    let revoked = v["releases"][2]["sha256"].as_str().unwrap();
    let verdict =
        nospy_testkit::http::request(addr, "GET", &format!("/verdict/{revoked}.json"), b"");
    assert_eq!(verdict.status, 200, "{}", verdict.text());
    let verdict: serde_json::Value = serde_json::from_slice(&verdict.body).unwrap();
    assert!(
        verdict.to_string().contains("DE evaluation lab"),
        "{verdict}"
    );
    // The page's verdict is the one `nospy verify` gives for the same question.
    let base = format!("http://{addr}");
    for (i, code) in [(1usize, 0), (2, 1)] {
        let digest = v["releases"][i]["sha256"].as_str().unwrap();
        let cli = run(&[
            "verify",
            "--agreement",
            s(&dir.join("agreement.toml")),
            "--digest",
            digest,
            "--server",
            &base,
            "--json",
        ]);
        assert_eq!(cli.code, code, "{}", cli.stderr);
        let cli: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
        let page =
            nospy_testkit::http::request(addr, "GET", &format!("/verdict/{digest}.json"), b"");
        let page: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        let checks = |v: &serde_json::Value| -> Vec<(String, String, String)> {
            v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].to_string(),
                        c["outcome"].to_string(),
                        c["reason"].to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(page["verdicts"][0]["admit"], cli["admit"], "{page} {cli}");
        // The same checks and reasons; only where the revocation check's index is is named
        // from each side.
        let ours = format!("the index of {base}");
        let cli_checks: Vec<_> = checks(&cli)
            .into_iter()
            .map(|(n, o, r)| (n, o, r.replace(&ours, "this server's lookup index")))
            .collect();
        assert_eq!(checks(&page["verdicts"][0]), cli_checks, "release {i}");
    }
    // The release 4.2.1's page: its manifest, who signed it, the entries about it.
    let release = entries["releases"][2].as_u64().unwrap();
    let page: serde_json::Value = serde_json::from_slice(
        &nospy_testkit::http::request(addr, "GET", &format!("/entries/{release}.json"), b"").body,
    )
    .unwrap();
    assert_eq!(
        page["signers"][0]["roles"][0], "vendor VendorX under demo-operator-vendorx",
        "{page}"
    );
    assert!(
        page["manifest"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["device_ports"] == "22"),
        "{page}"
    );
    let related: Vec<&str> = page["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(related, ["attestation", "revocation", "evidence"], "{page}");
    let evidence = entries["evidence"][0].as_u64().unwrap();
    let page = nospy_testkit::http::request(addr, "GET", &format!("/entries/{evidence}"), b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("203.0.113.66"), "{}", page.text());
    let page: serde_json::Value = serde_json::from_slice(
        &nospy_testkit::http::request(addr, "GET", &format!("/entries/{evidence}.json"), b"").body,
    )
    .unwrap();
    assert_eq!(page["evidence"]["device"], "ran-000007", "{page}");
    // Verified on the page under the agreement that trusts the operator's monitor, as `nospy
    // evidence verify` verifies it.
    assert_eq!(page["verified"][0]["holds"], true, "{page}");
    assert_eq!(
        page["verified"][0]["agreement"], "demo-operator-vendorx",
        "{page}"
    );
    assert_eq!(
        page["verified"][0]["checks"].as_array().unwrap().len(),
        5,
        "{page}"
    );
    assert_eq!(
        page["evidence"]["flows"][0]["peer"], "203.0.113.66",
        "{page}"
    );
    assert_eq!(page["evidence"]["flows"][0]["port"], 8443, "{page}");
    // The operator pages agree with the binary's own fleet report and the monitor's evidence.
    let page: serde_json::Value =
        serde_json::from_slice(&nospy_testkit::http::request(addr, "GET", "/fleet.json", b"").body)
            .unwrap();
    for k in [
        "devices",
        "admitted",
        "denied",
        "unlogged",
        "revoked",
        "unknown",
        "superseded",
    ] {
        assert_eq!(
            page["summary"][k], fleet["summary"][k],
            "{k}: {page} against {summary}"
        );
    }
    let page: serde_json::Value = serde_json::from_slice(
        &nospy_testkit::http::request(addr, "GET", "/violations.json", b"").body,
    )
    .unwrap();
    assert_eq!(
        page["evidence"][0]["index"], entries["evidence"][0],
        "{page}"
    );
    assert_eq!(page["evidence"][0]["device"], "ran-000007", "{page}");
    let page: serde_json::Value = serde_json::from_slice(
        &nospy_testkit::http::request(addr, "GET", "/exposure.json", b"").body,
    )
    .unwrap();
    assert_eq!(
        breached(&page),
        ["At most 35% of the access network"],
        "{page}"
    );
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let r = wait_bounded(child, Duration::from_secs(60), "nospy demo after SIGTERM");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Another seed in the same directory is refused, as is a directory with other things in it.
    let r = run(&[
        "demo",
        s(&dir),
        "--seed",
        "2",
        "--no-serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("seed 1"), "{}", r.stderr);
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let r = run(&["demo", s(&other), "--no-serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("remove it"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

/// The rules an exposure report (the command's JSON or the page's) finds in force and breached.
fn breached(report: &serde_json::Value) -> Vec<&str> {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["in_force"] == true && r["compliant"] == false)
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}
