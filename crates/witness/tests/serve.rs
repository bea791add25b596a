//! The witness against the tlog-witness conformance scenario of torchwood's litewitness
//! (`../shared/vectors/tlog/torchwood-litewitness/litewitness.txt`), replayed over HTTP.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::clock::{Clock, FixedClock, SystemClock};
use nospy_testkit::http::request;
use nospy_tlog::note::{SignerKey, VerifierKey, ALG_ED25519};
use nospy_tlog::TreeSize;
use nospy_witness::serve::{start, WitnessOptions};
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
    let clock = std::sync::Arc::new(FixedClock::new(1_700_000_000));
    let w = rt
        .block_on(start(WitnessOptions {
            key: SignerKey::from_seed("example.com/witness", [9; 32]).unwrap(),
            logs: vec![(origin.clone(), log_key)],
            db: t.path().join("w.sqlite"),
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: clock.clone(),
        }))
        .unwrap();
    for (i, (body, status, expect)) in cases.iter().enumerate() {
        clock.advance(60);
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
            // The cosignature carries the witness's clock (c2sp.org/tlog-cosignature: key id,
            // then the timestamp, big-endian).
            let sig = r.text().trim().rsplit(' ').next().unwrap().to_string();
            let raw =
                base64::engine::Engine::decode(&base64::engine::general_purpose::STANDARD, sig)
                    .unwrap();
            let ts = u64::from_be_bytes(raw[4..12].try_into().unwrap());
            assert_eq!(ts, clock.now(), "request {}", i + 1);
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

#[test]
fn a_fork_or_a_rollback_is_refused_and_the_state_kept() {
    use nospy_tlog::checkpoint::Checkpoint;
    use nospy_tlog::merkle::{self, MemoryTree};
    let log = SignerKey::from_seed("log.example/w", [1; 32]).unwrap();
    let t = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt
        .block_on(start(WitnessOptions {
            key: SignerKey::from_seed("witness.example/w", [2; 32]).unwrap(),
            logs: vec![("log.example/w".into(), log.verifier())],
            db: t.path().join("w.sqlite"),
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: std::sync::Arc::new(SystemClock),
        }))
        .unwrap();
    let mut honest = MemoryTree::new();
    let mut fork = MemoryTree::new();
    for i in 0..8u8 {
        honest.push(nospy_tlog::hash::leaf_hash(&[i]));
        fork.push(nospy_tlog::hash::leaf_hash(&[
            i,
            if i >= 3 { 1 } else { 0 },
        ]));
    }
    let cp = |tree: &MemoryTree, size: u64| {
        Checkpoint {
            origin: "log.example/w".into(),
            size,
            root: merkle::root(tree, TreeSize(size)).unwrap(),
            extensions: vec![],
        }
        .sign(&log)
        .unwrap()
        .to_text()
    };
    let body = |old: u64, proof: &[nospy_tlog::Hash], c: &str| {
        nospy_tlog::witness::request_body(old, proof, c)
    };
    assert_eq!(
        request(
            w.addr,
            "POST",
            "/add-checkpoint",
            body(0, &[], &cp(&honest, 5)).as_bytes()
        )
        .status,
        200
    );
    // A fork: the same size, another root.
    let r = request(
        w.addr,
        "POST",
        "/add-checkpoint",
        body(5, &[], &cp(&fork, 5)).as_bytes(),
    );
    assert_eq!((r.status, r.text()), (409, "5\n".to_string()));
    // A fork that grows: its consistency proof from the fork's size 5 does not match what was
    // cosigned.
    let p = merkle::consistency_proof(&fork, TreeSize(5), TreeSize(8)).unwrap();
    let r = request(
        w.addr,
        "POST",
        "/add-checkpoint",
        body(5, &p, &cp(&fork, 8)).as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    // A rollback: a smaller checkpoint, claimed from 0 or from 5.
    let r = request(
        w.addr,
        "POST",
        "/add-checkpoint",
        body(0, &[], &cp(&honest, 3)).as_bytes(),
    );
    assert_eq!((r.status, r.text()), (409, "5\n".to_string()));
    let r = request(
        w.addr,
        "POST",
        "/add-checkpoint",
        body(5, &[], &cp(&honest, 3)).as_bytes(),
    );
    assert_eq!(r.status, 400);
    // The state is unchanged: the honest extension from 5 is cosigned.
    let p = merkle::consistency_proof(&honest, TreeSize(5), TreeSize(8)).unwrap();
    let r = request(
        w.addr,
        "POST",
        "/add-checkpoint",
        body(5, &p, &cp(&honest, 8)).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Malformed requests.
    for bad in ["", "old x\n\n", "old 1\nnot base64\n\n", "old 0\n"] {
        assert_eq!(
            request(w.addr, "POST", "/add-checkpoint", bad.as_bytes()).status,
            400,
            "{bad:?}"
        );
    }
    rt.block_on(w.shutdown());
}
