//! `nospy monitor` through the binary, on the published MUDscope captures and profiles
//! (`../shared/vectors/net`): the verdicts their README describes.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::flows::*;
use common::*;
use std::path::Path;

fn monitor(t: &Path, capture: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args: Vec<String> = vec!["monitor".into(), "--json".into(), "--pcap".into()];
    args.push(s(&net(&format!("pcap/{capture}"))).to_string());
    args.extend(setup(t));
    args.extend(extra.iter().map(|a| a.to_string()));
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.code == 0 || r.code == 1, "{}\n{}", r.stdout, r.stderr);
    (r.code, serde_json::from_str(&r.stdout).unwrap())
}

/// The violation rows of a JSON report whose peer is `peer`.
fn violations_with_peer<'a>(v: &'a serde_json::Value, peer: &str) -> Vec<&'a serde_json::Value> {
    v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["peer"] == peer)
        .collect()
}

#[test]
fn the_quiet_capture_has_no_violation() {
    let t = tempfile::tempdir().unwrap();
    let (code, v) = monitor(
        t.path(),
        "mudscope_malign_tue-tplink_2021-11-18_15-10-34.pcap",
        &[],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["violations"], serde_json::json!([]));
    // DHCP with the gateway is allowed; the TLS session to 52.209.43.100 was open before the
    // capture began and the capture has no DNS: only the name rule could allow it, so it is
    // unattributable, not allowed and not a violation.
    let u = v["unattributable"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{v:#}");
    assert_eq!(
        (u[0]["peer"].as_str(), u[0]["port"].as_u64()),
        (Some("52.209.43.100"), Some(443))
    );
    assert_eq!(
        u[0]["could_be"],
        serde_json::json!(["use1-api.tplinkra.com"])
    );
    assert_eq!(device(&v, "tue-plug")["flows"], 2);
    // Everything else in the capture is other hosts' traffic: counted in packets, not tracked.
    assert_eq!(v["unknown_device_flows"], 0);
    assert_eq!(v["flows_in_dropped_rows"], 0);
    let other = v["unknown_device_packets"].as_u64().unwrap();
    assert!(
        other > 0 && other < v["input"]["packets"].as_u64().unwrap(),
        "{v:#}"
    );
}

#[test]
fn a_resolver_snapshot_ties_the_session_to_its_name() {
    let t = tempfile::tempdir().unwrap();
    // What MUDgee resolved the name to (its rule table, mudscope_tue-tplink-plugrule.csv).
    let r = t.path().join("resolver.txt");
    std::fs::write(&r, "use1-api.tplinkra.com 52.209.43.100 52.213.21.82\n").unwrap();
    let (code, v) = monitor(
        t.path(),
        "mudscope_malign_tue-tplink_2021-11-18_15-10-34.pcap",
        &["--resolver", s(&r)],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["violations"], serde_json::json!([]));
    assert_eq!(v["unattributable"], serde_json::json!([]));
}

#[test]
fn every_probe_of_the_port_scans_is_flagged() {
    let t = tempfile::tempdir().unwrap();
    let (code, v) = monitor(
        t.path(),
        "mudscope_malign_tue-tplink_2021-11-18_15-20-34.pcap",
        &[],
    );
    assert_eq!(code, 1);
    let probes = violations_with_peer(&v, "192.168.255.14");
    // 210 probes (two source ports) of 110 ports: one row per port, every probe counted.
    assert_eq!(probes.len(), 110);
    assert_eq!(
        probes
            .iter()
            .map(|r| r["flows"].as_u64().unwrap())
            .sum::<u64>(),
        210
    );
    assert!(probes
        .iter()
        .all(|r| r["direction"] == "to-device" && r["protocol"] == "tcp"));
    assert_eq!(device(&v, "tue-plug")["violations"], 210);

    let (code, v) = monitor(
        t.path(),
        "mudscope_malign_ut-tplink_2021-11-18_15-20-47.pcap",
        &[],
    );
    assert_eq!(code, 1);
    let scan = violations_with_peer(&v, "192.168.255.14");
    assert!(!scan.is_empty());
    assert!(
        scan.iter().all(|r| r["direction"] == "to-device"),
        "{scan:#?}"
    );
}

#[test]
fn the_dns_binding_case_is_unattributable_never_allowed() {
    let t = tempfile::tempdir().unwrap();
    let (code, v) = monitor(
        t.path(),
        "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap",
        &[],
    );
    // The UT profile has no rule for DNS itself: the plug's query to 1.1.1.1 is a violation
    // of that profile (MUDgee's rule table has it; the MUD file does not).
    assert_eq!(code, 1);
    let viol = v["violations"].as_array().unwrap();
    assert_eq!(viol.len(), 1, "{v:#}");
    assert_eq!(
        (viol[0]["peer"].as_str(), viol[0]["port"].as_u64()),
        (Some("1.1.1.1"), Some(53))
    );
    // 34.249.4.197 is in no answer the capture holds for use1-api.tplinkra.com, and its session
    // predates the capture (and the plug's first answer): unattributable.
    let u = v["unattributable"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{v:#}");
    assert_eq!(u[0]["peer"], "34.249.4.197");
    // The session to 52.206.238.222 opens after the plug's lookup returned that address: allowed.
    let all: Vec<&serde_json::Value> = viol.iter().chain(u).collect();
    assert!(all.iter().all(|r| r["peer"] != "52.206.238.222"));
    assert_eq!(device(&v, "ut-plug")["flows"], 3);
}

#[test]
fn unusable_input_is_refused_with_the_place() {
    let t = tempfile::tempdir().unwrap();
    let cut = t.path().join("cut.pcap");
    let data = std::fs::read(net(
        "pcap/mudscope_malign_tue-tplink_2021-11-18_15-20-34.pcap",
    ))
    .unwrap();
    std::fs::write(&cut, &data[..5000]).unwrap();
    let mut args: Vec<String> = vec!["monitor".into(), "--pcap".into(), s(&cut).to_string()];
    args.extend(setup(t.path()));
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("at byte 4984"), "{}", r.stderr);
    // An inventory error names the line and the column.
    let inv = t.path().join("bad.csv");
    std::fs::write(
        &inv,
        "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
         a,V,M,core,5g,s,false,10.0.0.1,,1,1\nb,V,M,core,5g,s,maybe,10.0.0.2,,1,1\n",
    )
    .unwrap();
    let r = run(&[
        "monitor",
        "--inventory",
        s(&inv),
        "--manifest",
        s(&t.path().join("tue.toml")),
        "--pcap",
        s(&cut),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("line 3, column sensitive"),
        "{}",
        r.stderr
    );
}

#[test]
fn flow_exports_from_a_real_exporter_give_the_capture_s_verdicts() {
    let t = tempfile::tempdir().unwrap();
    let capture = "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap";
    for version in ["5", "9", "10"] {
        let exports = softflowd_exports(t.path(), capture, version);
        let mut args: Vec<String> = vec!["monitor".into(), "--json".into(), "--flows".into()];
        args.push(s(&exports).to_string());
        args.extend(setup(t.path()));
        let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 1, "v{version}: {}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["input"]["export_malformed"], 0, "v{version}");
        // The same one violation as from the capture: the plug's DNS to 1.1.1.1, the query and
        // the answer records (one each way) judged as one conversation.
        let viol = v["violations"].as_array().unwrap();
        assert_eq!(viol.len(), 1, "v{version}: {v:#}");
        assert_eq!(
            (
                viol[0]["peer"].as_str(),
                viol[0]["port"].as_u64(),
                viol[0]["direction"].as_str()
            ),
            (Some("1.1.1.1"), Some(53), Some("from-device")),
            "v{version}"
        );
        assert_eq!(viol[0]["flows"], 2, "v{version}");
        // Flow exports carry no DNS: both TLS peers can be tied to the allowed name by nothing
        // in the input, so both are unattributable (from the capture, one was allowed).
        let mut peers: Vec<&str> = v["unattributable"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["peer"].as_str().unwrap())
            .collect();
        peers.sort();
        assert_eq!(
            peers,
            ["34.249.4.197", "52.206.238.222"],
            "v{version}: {v:#}"
        );
    }
}

#[test]
fn manifests_from_the_log_and_evidence_appended_to_it() {
    let t = tempfile::tempdir().unwrap();
    let UtJudged {
        digest,
        log,
        pcap,
        args,
        run: r,
        ..
    } = ut_judged_once(t.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // The plug was judged against the manifest of its firmware's release, entry 0 of the log:
    // the same verdicts as with the MUD profile given as a file.
    let plug = device(&v, "ut-plug");
    assert_eq!(plug["manifest"]["from"], "log", "{v:#}");
    assert_eq!(plug["manifest"]["index"], 0);
    assert_eq!(plug["manifest"]["admitted"], true);
    let viol = v["violations"].as_array().unwrap();
    assert_eq!(viol.len(), 1, "{v:#}");
    assert_eq!(viol[0]["peer"], "1.1.1.1");
    let other = device(&v, "no-digest");
    assert_eq!(other["manifest"], serde_json::Value::Null);
    assert!(other["note"]
        .as_str()
        .unwrap()
        .contains("no firmware digest"));
    // One evidence statement, appended as entry 1, signed by the monitor's key, about the
    // firmware, naming the device, the flows, the manifest and the capture's digest.
    let st = v["evidence"]["statements"].as_array().unwrap();
    assert_eq!(st.len(), 1, "{v:#}");
    assert_eq!(
        (st[0]["device"].as_str(), st[0]["index"].as_u64()),
        (Some("ut-plug"), Some(1))
    );
    ok(&["log", "audit", s(&log)]);
    let (statement, p) = evidence_entry(&log, 1);
    assert_eq!(statement.subject_sha256()[0].to_hex(), digest);
    assert_eq!(p["device"], "ut-plug");
    assert_eq!(p["flows"].as_array().unwrap().len(), 1);
    assert_eq!(p["flows"][0]["peer"], "1.1.1.1");
    assert_eq!(p["flows"][0]["port"], 53);
    assert!(
        p["manifest"].as_str().unwrap().contains("release entry 0"),
        "{p:#}"
    );
    assert_eq!(
        p["source"]["sha256"],
        sha256_hex(&std::fs::read(&pcap).unwrap())
    );
    assert!(
        p["window"]["start"]
            .as_str()
            .unwrap()
            .starts_with("2021-11-18T"),
        "{p:#}"
    );
    // Ed25519 signatures are deterministic: the same evidence again is the same entry, not a
    // second one.
    let again = run(&strs(&args));
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["evidence"]["statements"][0]["index"], 1);
    assert_eq!(again["evidence"]["statements"][0]["duplicate"], true);
}

/// `nospy evidence verify` with `args` (and `--json`): its exit status and the first
/// evidence's capture check (asserted made).
fn capture_check(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["evidence", "verify", "--json"];
    all.extend(args);
    let r = run(&all);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let c = v["evidence"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "capture")
        .unwrap_or_else(|| panic!("no capture check: {v:#}"))
        .clone();
    (r.code, c)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn evidence_through_a_server_needs_the_monitor_role() {
    let t = tempfile::tempdir().unwrap();
    let (inv, agreement, monitor_key, _, log, vendor_vkey, monitor_vkey) = logged_world(t.path());
    let pcap = ut_capture();
    let args = |url: &str| -> Vec<String> {
        [
            "monitor",
            "--json",
            "--pcap",
            s(&pcap),
            "--inventory",
            s(&inv),
            "--agreement",
            s(&agreement),
            "--server",
            url,
            "--evidence-key",
            s(&monitor_key),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    // A server that admits only the vendor refuses the evidence, and says so.
    let cfg = serve_config(t.path(), &vendor_vkey);
    let (mut child, url) = serve(&log, &cfg);
    let a = args(&url);
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("HTTP 403"), "{}", r.stderr);
    // Admitting the monitor's key: the manifest comes through the server's index, the evidence
    // goes in through its /add.
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{vendor_vkey}\"\n\
             [[submitter]]\nrole = \"monitor\"\nkey = \"{monitor_vkey}\"\n"
        ),
    )
    .unwrap();
    let (mut child, url) = serve(&log, &cfg);
    let a = args(&url);
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // The evidence, verified from the server (entries and proofs from it, nothing trusted).
    let with_monitors = t.path().join("with-monitors.toml");
    std::fs::write(
        &with_monitors,
        format!(
            "{}[monitors]\nquorum = 1\n[[monitors.member]]\norganisation = \"UK operator\"\nkeys = [\"{monitor_vkey}\"]\n",
            std::fs::read_to_string(&agreement).unwrap()
        ),
    )
    .unwrap();
    let verified = run(&[
        "evidence",
        "verify",
        "--server",
        &url,
        "--index",
        "1",
        "--agreement",
        s(&with_monitors),
        "--json",
    ]);
    let beyond = run(&[
        "evidence",
        "verify",
        "--server",
        &url,
        "--index",
        "99",
        "--agreement",
        s(&with_monitors),
    ]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(device(&v, "ut-plug")["manifest"]["index"], 0, "{v:#}");
    assert_eq!(v["evidence"]["statements"][0]["index"], 1, "{v:#}");
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);
    assert_eq!(beyond.code, 2, "{}", beyond.stderr);
    assert!(
        beyond
            .stderr
            .contains("entry 99 is not under the checkpoint"),
        "{}",
        beyond.stderr
    );
    let (_, p) = evidence_entry(&log, 1);
    assert_eq!(p["flows"][0]["peer"], "1.1.1.1");
}

#[test]
fn the_live_collector_takes_a_real_exporter_s_flows() {
    let t = tempfile::tempdir().unwrap();
    let capture = "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap";
    for version in ["5", "9", "10"] {
        let mut args: Vec<String> = ["monitor", "--json", "--listen", "udp:127.0.0.1:0"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend([
            "--templates".to_string(),
            s(&t.path().join(format!("v{version}.state"))).to_string(),
        ]);
        args.extend(setup(t.path()));
        let live = start_live(&args);
        softflowd_send(t.path(), capture, version, live.port);
        let (code, v, err) = live.stop();
        assert_eq!(code, 1, "v{version}: {v:#}\n{err}");
        assert!(v["input"]["export_messages"].as_u64().unwrap() > 0);
        assert_eq!(v["input"]["export_malformed"], 0, "v{version}");
        let viol = v["violations"].as_array().unwrap();
        assert_eq!(viol.len(), 1, "v{version}: {v:#}");
        assert_eq!(
            (viol[0]["peer"].as_str(), viol[0]["port"].as_u64()),
            (Some("1.1.1.1"), Some(53)),
            "v{version}"
        );
        assert_eq!(
            v["unattributable"].as_array().unwrap().len(),
            2,
            "v{version}: {v:#}"
        );
    }
}

/// An IPFIX message (domain 7) holding one set.
fn ipfix(set_id: u16, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&((16 + 4 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(&1_637_244_707u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&set_id.to_be_bytes());
    m.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Template 300: addresses, protocol, ports, counters, start and end in milliseconds.
fn template_message() -> Vec<u8> {
    let fields: [(u16, u16); 9] = [
        (8, 4),
        (12, 4),
        (4, 1),
        (7, 2),
        (11, 2),
        (2, 8),
        (1, 8),
        (152, 8),
        (153, 8),
    ];
    let mut b = Vec::new();
    b.extend_from_slice(&300u16.to_be_bytes());
    b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
    }
    ipfix(2, &b)
}

/// One record of template 300: the UT plug's DNS query to 1.1.1.1.
fn data_message() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[192, 168, 32, 2, 1, 1, 1, 1, 17]);
    b.extend_from_slice(&40_000u16.to_be_bytes());
    b.extend_from_slice(&53u16.to_be_bytes());
    b.extend_from_slice(&1u64.to_be_bytes());
    b.extend_from_slice(&80u64.to_be_bytes());
    b.extend_from_slice(&1_637_244_707_000u64.to_be_bytes());
    b.extend_from_slice(&1_637_244_707_010u64.to_be_bytes());
    ipfix(300, &b)
}

#[test]
fn the_live_collector_keeps_templates_across_restarts() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("collector.state");
    let args = |state: &Path| -> Vec<String> {
        let mut a: Vec<String> = [
            "monitor",
            "--json",
            "--listen",
            "udp:127.0.0.1:0",
            "--templates",
            s(state),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        a.extend(setup(t.path()));
        a
    };
    // Templates belong to the exporter (its address and port): one sender plays the exporter.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // First run: only the template arrives, and is saved.
    let live = start_live(&args(&state));
    sender
        .send_to(&template_message(), ("127.0.0.1", live.port))
        .unwrap();
    let (code, v, err) = live.stop();
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert!(
        std::fs::read_to_string(&state)
            .unwrap()
            .contains("template "),
        "{err}"
    );
    // After a restart, data for that template is read at once.
    let live = start_live(&args(&state));
    sender
        .send_to(&data_message(), ("127.0.0.1", live.port))
        .unwrap();
    let (code, v, err) = live.stop();
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert!(err.contains("restored from"), "{err}");
    assert_eq!(v["input"]["export_records_without_template"], 0, "{v:#}");
    assert_eq!(v["violations"][0]["peer"], "1.1.1.1", "{v:#}");
    // Without the saved state the same data cannot be read: counted, not guessed.
    let fresh = t.path().join("fresh.state");
    let live = start_live(&args(&fresh));
    sender
        .send_to(&data_message(), ("127.0.0.1", live.port))
        .unwrap();
    let (code, v, err) = live.stop();
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["input"]["export_records_without_template"], 1, "{v:#}");
    // A state file nospy did not write is refused, naming the line.
    std::fs::write(
        &fresh,
        "nospy-collector-state 1\ntemplate x 0 300 data 4:8,oops\n",
    )
    .unwrap();
    let r = run(&args(&fresh).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
}

#[test]
fn with_offline_witnesses_the_monitor_takes_manifests_under_the_cosigned_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let (inv, _, _, _, log, vendor_vkey, _) = logged_world(t.path());
    // The agreement wants one witness; the witness cosigns offline, into a file: the log's own
    // checkpoint carries no cosignature.
    let witness_key = t.path().join("witness.key");
    let witness_vkey = new_key(&witness_key, "witness.example");
    let log_vkey = std::fs::read_to_string(t.path().join("agreement.toml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("key = \"")
                .map(|k| k.trim_end_matches('"').to_string())
        })
        .unwrap();
    let agreement = t.path().join("witnessed.toml");
    std::fs::write(
        &agreement,
        format!(
            "name = \"witnessed\"\n[log]\norigin = \"log.example.org/nospy\"\nkey = \"{log_vkey}\"\n\
             [witnesses]\nquorum = 1\nmax_age = \"24h\"\nkeys = [\"{witness_vkey}\"]\n\
             [[vendor]]\nname = \"ut-tplink-plug.com\"\nkeys = [\"{vendor_vkey}\"]\n\
             [evaluators]\nquorum = 0\n\
             [manifest]\nvendor_remote_access = [\"none\", \"operator-initiated\", \"vendor-initiated\"]\n"
        ),
    )
    .unwrap();
    let cosigned = t.path().join("cosigned.checkpoint");
    ok(&[
        "witness",
        "cosign",
        "--key",
        s(&witness_key),
        "--log",
        s(&log),
        "--state",
        s(&t.path().join("witness.state")),
        "--out",
        s(&cosigned),
    ]);
    let pcap = ut_capture();
    let args = |checkpoint: Option<&Path>| {
        let mut a = vec![
            "monitor".to_string(),
            "--json".into(),
            "--pcap".into(),
            s(&pcap).into(),
            "--inventory".into(),
            s(&inv).into(),
            "--agreement".into(),
            s(&agreement).into(),
            "--log".into(),
            s(&log).into(),
        ];
        if let Some(c) = checkpoint {
            a.extend(["--checkpoint".into(), s(c).into()]);
        }
        a
    };
    // Under the log's own checkpoint (no cosignature) no release is acceptable: no manifest.
    let a = args(None);
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("no acceptable release"), "{}", r.stderr);
    // Under the cosigned checkpoint it is, and the plug is judged against its manifest.
    let a = args(Some(&cosigned));
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let plug = device(&v, "ut-plug");
    assert_eq!(plug["manifest"]["from"], "log", "{v:#}");
    assert_eq!(plug["manifest"]["admitted"], true, "{v:#}");
    assert_eq!(v["violations"].as_array().unwrap().len(), 1, "{v:#}");
    // --checkpoint belongs with --log (a server's index answers under its own checkpoint).
    let r = run(&[
        "monitor",
        "--pcap",
        s(&pcap),
        "--inventory",
        s(&inv),
        "--agreement",
        s(&agreement),
        "--server",
        "http://127.0.0.1:9",
        "--checkpoint",
        s(&cosigned),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// Evidence read back by a third party: `nospy evidence verify` holds for the monitor's own
/// evidence, and each forgery fails at its own check with its own kind.
#[test]
fn evidence_verifies_and_each_forgery_fails_with_its_own_reason() {
    use nospy_statement::predicate::Predicate;
    let t = tempfile::tempdir().unwrap();
    let UtJudged {
        inventory: inv,
        agreement,
        monitor_key,
        digest,
        log,
        monitor_vkey,
        pcap,
        ..
    } = ut_judged_once(t.path(), &[]);
    // An agreement with no [monitors] trusts no evidence: unusable input.
    let verify = |agreement: &Path, index: u64| {
        let r = run(&[
            "evidence",
            "verify",
            "--agreement",
            s(agreement),
            "--log",
            s(&log),
            "--index",
            &index.to_string(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| serde_json::json!({"stderr": r.stderr}));
        (r.code, v)
    };
    assert_eq!(verify(&agreement, 1).0, 2);
    let with_monitors = with_monitor(&agreement, &monitor_vkey);
    let (code, v) = verify(&with_monitors, 1);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["holds"], true);
    let v = &v["evidence"][0];
    assert_eq!(v["organisation"], "UK operator");
    assert_eq!(v["device"], "ut-plug");
    assert_eq!(v["firmware"], digest.as_str());
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["checkpoint", "signature", "inclusion", "release", "rows"]
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["pass"] == true),
        "{v:#}"
    );
    // The text form says the same.
    let r = run(&[
        "evidence",
        "verify",
        "--agreement",
        s(&with_monitors),
        "--log",
        s(&log),
        "--index",
        "1",
    ]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .starts_with("HOLDS evidence entry 1 (device ut-plug, monitor UK operator)"),
        "{}",
        r.stdout
    );

    // A case file, verified in a directory holding nothing else but the agreement.
    let case = t.path().join("case.json");
    ok(&[
        "evidence",
        "case",
        &digest,
        "--log",
        s(&log),
        "--out",
        s(&case),
    ]);
    let fresh = t.path().join("third-country");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::copy(&case, fresh.join("case.json")).unwrap();
    std::fs::copy(&with_monitors, fresh.join("agreement.toml")).unwrap();
    let r = run(&[
        "evidence",
        "verify",
        s(&fresh.join("case.json")),
        "--agreement",
        s(&fresh.join("agreement.toml")),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["evidence"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["evidence"][0]["index"], 1);
    // With the capture: read again for the device, it yields the evidence's rows.
    let with_capture = |capture: &Path| {
        capture_check(&[
            s(&fresh.join("case.json")),
            "--agreement",
            s(&fresh.join("agreement.toml")),
            "--capture",
            s(capture),
        ])
    };
    let (code, c) = with_capture(&pcap);
    assert_eq!((code, &c["pass"]), (0, &serde_json::json!(true)), "{c:#}");
    // One byte changed (a letter of a name in a packet's payload): not the capture the
    // evidence names.
    let mut bytes = std::fs::read(&pcap).unwrap();
    let at = bytes.windows(6).rposition(|w| w == b"tplink").unwrap();
    bytes[at] = b'T';
    std::fs::write(fresh.join("changed.pcap"), &bytes).unwrap();
    let (code, c) = with_capture(&fresh.join("changed.pcap"));
    assert_eq!(
        (code, c["failure"].as_str()),
        (1, Some("capture-changed")),
        "{c:#}"
    );
    // The same device's capture of the next ten minutes: another window.
    let (code, c) = with_capture(&net(
        "pcap/mudscope_malign_ut-tplink_2021-11-18_15-20-47.pcap",
    ));
    assert_eq!(
        (code, c["failure"].as_str()),
        (1, Some("capture-window")),
        "{c:#}"
    );

    // A case file cut short: a clear error naming the file, no panic.
    let text = std::fs::read(&case).unwrap();
    std::fs::write(fresh.join("cut.json"), &text[..text.len() / 2]).unwrap();
    let r = run(&[
        "evidence",
        "verify",
        s(&fresh.join("cut.json")),
        "--agreement",
        s(&with_monitors),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cut.json"), "{}", r.stderr);
    // No evidence about other firmware: no case.
    let r = run(&[
        "evidence",
        "case",
        &"ab".repeat(32),
        "--log",
        s(&log),
        "--out",
        s(&t.path().join("none.json")),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!t.path().join("none.json").exists());

    // Forgeries, each appended raw and verified.
    let entry = ok(&["log", "entry", s(&log), "1"]).stdout;
    let env = nospy_statement::dsse::Envelope::parse(entry.as_bytes()).unwrap();
    let st = nospy_statement::Statement::parse(&env.payload).unwrap();
    let Predicate::Evidence(ev) = Predicate::parse(&st.predicate_type, &st.predicate).unwrap()
    else {
        panic!("not evidence")
    };
    let monitor = nospy_log::keyfile::read_signer(&monitor_key).unwrap();
    let stranger =
        nospy_tlog::note::SignerKey::from_seed("monitor.stranger.example", [9; 32]).unwrap();
    let sign = |ev: &nospy_statement::predicate::Evidence, key: &nospy_tlog::note::SignerKey| {
        nospy_statement::sign(st.subject.clone(), &Predicate::Evidence(ev.clone()), &[key])
            .to_json()
    };
    let next = std::cell::Cell::new(2u64);
    let append = |bytes: &[u8]| -> u64 {
        let f = t.path().join(format!("forged-{}.json", next.get()));
        std::fs::write(&f, bytes).unwrap();
        ok(&["log", "add", "--raw", s(&log), s(&f)]);
        let i = next.get();
        next.set(i + 1);
        i
    };
    let failed = |index: u64, agreement: &Path| -> (String, String) {
        let (code, v) = verify(agreement, index);
        assert_eq!(code, 1, "{v:#}");
        assert_eq!(v["holds"], false);
        let c = v["evidence"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pass"] == false)
            .unwrap();
        (
            c["name"].as_str().unwrap().to_string(),
            c["failure"].as_str().unwrap().to_string(),
        )
    };

    // A row edited after signing: the signature names the monitor's key but does not verify.
    let mut payload: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
    payload["predicate"]["flows"][0]["port"] = 54.into();
    let mut raw: serde_json::Value = serde_json::from_str(&entry).unwrap();
    use base64::Engine as _;
    raw["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&payload).unwrap())
        .into();
    let i = append(&serde_json::to_vec(&raw).unwrap());
    assert_eq!(
        failed(i, &with_monitors),
        ("signature".into(), "bad-signature".into())
    );

    // The same evidence signed by a key the agreement does not know.
    let i = append(&sign(&ev, &stranger));
    assert_eq!(
        failed(i, &with_monitors),
        ("signature".into(), "unknown-monitor".into())
    );

    // A monitor framing the plug: a row its manifest allows (DHCP to the gateway).
    let mut framed = ev.clone();
    framed.flows[0].peer = "192.168.32.1".into();
    framed.flows[0].port = 67;
    let i = append(&sign(&framed, &monitor));
    assert_eq!(
        failed(i, &with_monitors),
        ("rows".into(), "row-allowed".into())
    );

    // The reason changed: the row is not allowed, but not for the reason given.
    let mut reason = ev.clone();
    reason.flows[0].why = Some(nospy_manifest::judge::Why::Service);
    let i = append(&sign(&reason, &monitor));
    assert_eq!(
        failed(i, &with_monitors),
        ("rows".into(), "row-reason".into())
    );

    // The release entry swapped for another release of the same vendor (other firmware).
    let other_fw = t.path().join("fw2.bin");
    std::fs::write(&other_fw, b"ut plug firmware 2.0\n").unwrap();
    ok(&[
        "release",
        "sign",
        "--key",
        s(&t.path().join("vendor.key")),
        "--artifact",
        s(&other_fw),
        "--product",
        "ut-tplink-plug",
        "--version",
        "2.0",
        "--source-commit",
        "def456",
        "--manifest",
        s(&t.path().join("ut.toml")),
        "--out",
        s(&t.path().join("release2.json")),
    ]);
    let r2 = ok(&[
        "log",
        "add",
        s(&log),
        s(&t.path().join("release2.json")),
        "--json",
    ]);
    let r2: serde_json::Value = serde_json::from_str(&r2.stdout).unwrap();
    let idx2 = r2["entries"][0]["index"].as_u64().unwrap();
    next.set(idx2 + 1);
    let mut swapped = ev.clone();
    let rref = swapped.release.as_mut().unwrap();
    rref.index = idx2;
    rref.leaf_hash = r2["entries"][0]["hash"].as_str().unwrap().to_string();
    let i = append(&sign(&swapped, &monitor));
    assert_eq!(
        failed(i, &with_monitors),
        ("release".into(), "release-other-firmware".into())
    );

    // Evidence of the first version cannot be judged again.
    let mut v1 = ev.clone();
    v1.release = None;
    v1.resolutions = None;
    v1.device_addresses.clear();
    for f in &mut v1.flows {
        f.why = None;
        f.names = None;
        f.same_vendor = false;
        f.opened_by = None;
    }
    let i = append(&sign(&v1, &monitor));
    assert_eq!(
        failed(i, &with_monitors),
        ("release".into(), "unjudgeable".into())
    );

    // The agreement acts on it: `nospy verify` of the firmware denies with the evidence named;
    // the forgeries above are not counted.
    let r = run(&[
        "verify",
        "--digest",
        &digest,
        "--agreement",
        s(&with_monitors),
        "--log",
        s(&log),
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let breach = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "breach")
        .unwrap();
    assert_eq!(breach["outcome"], "fail", "{v:#}");
    let reason = breach["reason"].as_str().unwrap();
    assert!(reason.contains("UK operator (entries 1)"), "{reason}");
    assert!(reason.contains("not counted"), "{reason}");
    // The fleet: the plug runs the breached firmware, and is denied for it.
    let r = run(&[
        "fleet",
        "--inventory",
        s(&inv),
        "--agreement",
        s(&with_monitors),
        "--log",
        s(&log),
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let fleet: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let plug = device(&fleet, "ut-plug");
    assert_eq!(plug["verdict"], "denied", "{plug}");
    assert!(
        plug["reason"]
            .as_str()
            .unwrap()
            .contains("breach evidence verified"),
        "{plug}"
    );
    // Under on_breach = "flag" it is admitted as far as the breach goes, and flagged.
    let flag = t.path().join("flag.toml");
    std::fs::write(
        &flag,
        std::fs::read_to_string(&with_monitors)
            .unwrap()
            .replace("on_breach = \"deny\"", "on_breach = \"flag\""),
    )
    .unwrap();
    let r = run(&[
        "verify",
        "--digest",
        &digest,
        "--agreement",
        s(&flag),
        "--log",
        s(&log),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("ADMIT (FLAGGED)"), "{}", r.stdout);

    // Under an agreement about another log, the checkpoint fails first.
    std::fs::create_dir(t.path().join("other")).unwrap();
    let (_, _, other_vkey) = new_log(&t.path().join("other"), "log.example.org/nospy");
    let other = t.path().join("other-log.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&with_monitors).unwrap().replace(
            &format!("key = \"{}\"", agreement_log_key(&agreement)),
            &format!("key = \"{other_vkey}\""),
        ),
    )
    .unwrap();
    assert_eq!(
        failed(1, &other),
        ("checkpoint".into(), "checkpoint".into())
    );
}

/// The `[log] key` of an agreement file.
fn agreement_log_key(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    let line = text.lines().find(|l| l.starts_with("key = ")).unwrap();
    line.trim_start_matches("key = ")
        .trim_matches('"')
        .to_string()
}

/// DNS answers in a capture (anything on the wire from port 53; a device can send them) tying
/// thousands of long names to a violation's peer cannot keep the violation out of the log: one
/// process signs and appends it (before, its statement outgrew a log entry and the run appended
/// nothing), the row stating every name the manifest's rules name and the first others that fit
/// 1 KiB, counting the rest, and a third party given the capture reproduces the row exactly. A
/// row stating every name, as monitors signed before, is reproduced too; one stating a name the
/// capture does not tie to the peer, or another count, is not.
#[test]
fn dns_answers_in_a_capture_cannot_keep_violations_out_of_the_log() {
    use nospy_statement::predicate::{Evidence, Predicate};
    let t = tempfile::tempdir().unwrap();
    let UtJudged {
        agreement,
        log,
        monitor_key,
        monitor_vkey,
        judged_by,
        ..
    } = ut_judged_once(t.path(), &[]);
    let (_, before) = evidence_entry(&log, 1);
    let with_monitors = with_monitor(&agreement, &monitor_vkey);
    let capture_check = |index: u64, capture: &Path| {
        capture_check(&[
            "--agreement",
            s(&with_monitors),
            "--log",
            s(&log),
            "--index",
            &index.to_string(),
            "--capture",
            s(capture),
        ])
    };
    // 1.5 MB of names, and (for rows stating every name, below, which must fit an entry) 30 kB.
    for bytes in [1_500_000, 30_000] {
        let dir = t.path().join(bytes.to_string());
        std::fs::create_dir(&dir).unwrap();
        let (hostile, v) = ut_names_on_its_violation(&dir, &judged_by, bytes);
        let ev = &v["evidence"];
        assert_eq!(ev["unsigned_rows"], serde_json::json!([]), "{ev:#}");
        assert_eq!(ev["statements"].as_array().unwrap().len(), 1, "{ev:#}");
        assert_eq!(ev["statements"][0]["groups"], 1, "{ev:#}");
        let index = ev["statements"][0]["index"].as_u64().unwrap();
        let (st, p) = evidence_entry(&log, index);
        let f = &p["flows"][0];
        let names: Vec<&str> = f["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        // Tied to pool.ntp.org, the peer is admitted by name: a violation of the service.
        assert!(names.contains(&"pool.ntp.org"), "{f:#}");
        assert_eq!(f["why"], "service", "{f:#}");
        let others: usize = names
            .iter()
            .filter(|n| **n != "pool.ntp.org")
            .map(|n| n.len())
            .sum();
        assert!((800..=1024).contains(&others), "{f:#}");
        // Every name the capture ties to the peer: those it tied before, and the answers'.
        let mut every: Vec<String> = before["flows"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .chain(
                long_names(&["1.1.1.1".parse().unwrap()], bytes)
                    .into_iter()
                    .map(|(_, n)| n),
            )
            .chain(["pool.ntp.org".to_string()])
            .collect();
        every.sort();
        every.dedup();
        assert_eq!(
            f["names_left_out"].as_u64().unwrap() as usize,
            every.len() - names.len(),
            "{f:#}"
        );
        // A third party with the capture: the row as the capture yields it.
        let (code, c) = capture_check(index, &hostile);
        assert_eq!((code, &c["pass"]), (0, &true.into()), "{c:#}");
        if bytes > 100_000 {
            continue;
        }

        // The same row stating every name, signed by the monitor as monitors did before rows
        // bounded their names, and forged variants.
        let Predicate::Evidence(signed) = Predicate::parse(&st.predicate_type, &p).unwrap() else {
            panic!("not evidence")
        };
        let key = nospy_log::keyfile::read_signer(&monitor_key).unwrap();
        let append_with = |edit: &dyn Fn(&mut Evidence)| -> u64 {
            let mut e = signed.clone();
            edit(&mut e);
            let env = nospy_statement::sign(st.subject.clone(), &Predicate::Evidence(e), &[&key]);
            let file = dir.join("edited.json");
            std::fs::write(&file, env.to_json()).unwrap();
            let r = ok(&["log", "add", "--raw", s(&log), s(&file), "--json"]);
            let r: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            r["entries"][0]["index"].as_u64().unwrap()
        };
        let every_name = append_with(&|e| {
            e.flows[0].names = Some(every.clone());
            e.flows[0].names_left_out = 0;
        });
        let (code, c) = capture_check(every_name, &hostile);
        assert_eq!((code, &c["pass"]), (0, &true.into()), "{c:#}");
        let mut bogus = every.clone();
        bogus.push("not-in-the-capture.example".into());
        bogus.sort();
        let with_bogus = append_with(&|e| {
            e.flows[0].names = Some(bogus.clone());
            e.flows[0].names_left_out = 0;
        });
        let miscounted = append_with(&|e| e.flows[0].names_left_out += 1);
        for i in [with_bogus, miscounted] {
            let (code, c) = capture_check(i, &hostile);
            assert_eq!(
                (code, c["failure"].as_str()),
                (1, Some("capture-rows")),
                "{c:#}"
            );
        }
    }
}
