//! The witness against the tlog-witness conformance scenario of torchwood's litewitness
//! (`../shared/vectors/tlog/torchwood-litewitness/litewitness.txt`), replayed over HTTP.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod http;
use http::request;
use nospy_server::witness::{start, WitnessOptions};
use nospy_tlog::note::{SignerKey, VerifierKey, ALG_ED25519};
use std::path::Path;

/// The `add-checkpoint.hurl` section: each request body with its expected status and body.
fn scenario() -> Vec<(String, u16, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/tlog/torchwood-litewitness/litewitness.txt"),
    )
    .unwrap();
    let hurl = text.split("-- add-checkpoint.hurl --").nth(1).unwrap();
    let mut out = Vec::new();
    for block in hurl
        .split("POST http://localhost:7380/add-checkpoint")
        .skip(1)
    {
        let body = block
            .split("```")
            .nth(1)
            .unwrap()
            .strip_prefix('\n')
            .unwrap()
            .to_string();
        let after = block.split("```").nth(2).unwrap();
        let status: u16 = after.split("HTTP ").nth(1).unwrap()[..3].parse().unwrap();
        let expect = after
            .lines()
            .find_map(|l| {
                l.strip_prefix("body == \"")
                    .or_else(|| l.strip_prefix("body contains \""))
            })
            .map(|s| s.trim_end_matches('"').replace("\\n", "\n"))
            .unwrap_or_default();
        out.push((body, status, expect));
    }
    out
}

#[test]
fn the_litewitness_scenario_gives_the_expected_statuses() {
    let cases = scenario();
    assert_eq!(cases.len(), 9);
    // The Sigsum log of the scenario: its origin is sigsum.org/v1/tree/<hex(SHA-256(key))>.
    let pk =
        nospy_tlog::hex::decode("ffdc2d4d98e4124d3feaf788c0c2f9abfd796083d1f0495437f302ec79cf100f")
            .unwrap();
    let origin = format!(
        "sigsum.org/v1/tree/{}",
        nospy_tlog::hash::sha256(&pk).to_hex()
    );
    assert_eq!(
        origin,
        "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562"
    );
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.try_into().unwrap()).unwrap();
    let log_key = VerifierKey::from_ed25519(&origin, ALG_ED25519, &vk).unwrap();
    let t = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(start(WitnessOptions {
            key: SignerKey::from_seed("example.com/witness", [9; 32]).unwrap(),
            logs: vec![(origin.clone(), log_key)],
            db: t.path().join("w.sqlite"),
            listen: "127.0.0.1:0".parse().unwrap(),
        }))
        .unwrap();
    for (i, (body, status, expect)) in cases.iter().enumerate() {
        let r = request(w.addr, "POST", "/add-checkpoint", body.as_bytes());
        // The file predates the spec's 404 for an unknown log (it says 403).
        let want = if expect == "unknown log" {
            404
        } else {
            *status
        };
        assert_eq!(r.status, want, "request {}: {}", i + 1, r.text());
        if want == 200 {
            assert!(
                r.text().starts_with("\u{2014} example.com/witness "),
                "{}",
                r.text()
            );
        } else if want == 409 {
            assert_eq!(r.text(), *expect);
            assert_eq!(r.header("content-type"), Some("text/x.tlog.size"));
        } else if want != 404 {
            assert!(
                r.text().contains(expect.as_str()),
                "request {}: want {expect:?} in {}",
                i + 1,
                r.text()
            );
        }
    }
    rt.block_on(w.shutdown());
}
