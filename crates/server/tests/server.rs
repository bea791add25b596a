//! The real server and two real witnesses on loopback: submissions, tiles, proofs, witnessing
//! with a 2-of-2 quorum (lost and regained), and hostile requests.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::Sequencer;
use nospy_server::{start, Options};
use nospy_statement::predicate::*;
use nospy_statement::{sign, DigestSet, ResourceDescriptor};
use nospy_testkit::fixtures::release_submission as release;
use nospy_testkit::http::request;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::verify_inclusion;
use nospy_tlog::note::SignerKey;
use nospy_tlog::{Hash, LogIndex, Sha256, TreeSize};
use nospy_witness::serve::{self as witness, WitnessOptions};
use std::net::SocketAddr;
use std::path::Path;

const ORIGIN: &str = "log.test.example/nospy";

struct Setup {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    log_key: SignerKey,
    vendor: SignerKey,
    w: Vec<SignerKey>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::from_seed(ORIGIN, [1; 32]).unwrap();
    Sequencer::init(&dir.path().join("log"), ORIGIN, &log_key, None).unwrap();
    Setup {
        rt: tokio::runtime::Runtime::new().unwrap(),
        dir,
        log_key,
        vendor: SignerKey::from_seed("vendor.example", [2; 32]).unwrap(),
        w: vec![
            SignerKey::from_seed("w1.example", [3; 32]).unwrap(),
            SignerKey::from_seed("w2.example", [4; 32]).unwrap(),
        ],
    }
}

impl Setup {
    fn witness(&self, i: usize, addr: &str) -> witness::RunningWitness {
        self.rt
            .block_on(witness::start(WitnessOptions {
                key: self.w[i].clone(),
                logs: vec![(ORIGIN.to_string(), self.log_key.verifier())],
                db: self.dir.path().join(format!("w{i}.sqlite")),
                listen: addr.parse().unwrap(),
                clock: std::sync::Arc::new(nospy_log::clock::SystemClock),
            }))
            .unwrap()
    }

    fn config(&self, witnesses: &[SocketAddr]) -> std::path::PathBuf {
        let mut c = format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            self.vendor.verifier()
        );
        if !witnesses.is_empty() {
            c.push_str(&format!(
                "[witnesses]\nquorum = {}\ntimeout = \"2s\"\n",
                witnesses.len()
            ));
            for (i, a) in witnesses.iter().enumerate() {
                c.push_str(&format!(
                    "[[witnesses.member]]\nurl = \"http://{a}\"\nkey = \"{}\"\n",
                    self.w[i].cosigner_verifier()
                ));
            }
        }
        let p = self.dir.path().join("serve.toml");
        std::fs::write(&p, c).unwrap();
        p
    }

    fn server(&self, config: &Path) -> nospy_server::Running {
        self.rt
            .block_on(start(Options {
                config: Some(config.to_path_buf()),
                queue: 1024,
                max_batch: 256,
                index_delay: std::time::Duration::from_millis(100),
                ..Options::new(
                    nospy_server::Storage::Dir(self.dir.path().join("log")),
                    self.log_key.clone(),
                    "127.0.0.1:0".parse().unwrap(),
                )
            }))
            .unwrap()
    }
}

fn add(addr: SocketAddr, entry: &[u8]) -> serde_json::Value {
    let r = request(addr, "POST", "/add", entry);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

/// The cosignatures on the published checkpoint of `size`, once the server says the witnessing
/// round for it ended (within 20 s).
fn cosigners(srv: &nospy_server::Running, s: &Setup, size: u64) -> usize {
    let ended =
        s.rt.block_on(srv.wait_for(std::time::Duration::from_secs(20), |p| p.witnessed >= size));
    assert!(
        ended,
        "no witnessing round for size {size}: {:?}",
        srv.progress()
    );
    let keys: Vec<_> = s.w.iter().map(|w| w.cosigner_verifier()).collect();
    let r = request(srv.addr, "GET", "/checkpoint", b"");
    let sc = SignedCheckpoint::open(&r.body, &s.log_key.verifier()).unwrap();
    if sc.checkpoint.size == size {
        sc.cosignatures(&keys).unwrap().len()
    } else {
        0
    }
}

#[test]
fn submissions_tiles_proofs_and_a_two_of_two_quorum() {
    let s = setup();
    let w1 = s.witness(0, "127.0.0.1:0");
    let w2 = s.witness(1, "127.0.0.1:0");
    let (a1, a2) = (w1.addr, w2.addr);
    let cfg = s.config(&[a1, a2]);
    let srv = s.server(&cfg);
    let addr = srv.addr;

    // Submit; the same envelope twice gets the same index.
    let e0 = release(0, &s.vendor);
    let r = add(addr, &e0);
    assert_eq!(
        (r["index"].as_u64(), r["duplicate"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(add(addr, &e0)["index"], 0);
    for i in 1..300 {
        assert_eq!(add(addr, &release(i, &s.vendor))["index"], i);
    }
    // The published checkpoint carries both cosignatures.
    assert_eq!(cosigners(&srv, &s, 300), 2);
    let cp = request(addr, "GET", "/checkpoint", b"");
    assert_eq!(cp.header("content-type"), Some("text/plain; charset=utf-8"));
    let sc = SignedCheckpoint::open(&cp.body, &s.log_key.verifier()).unwrap();
    assert_eq!(sc.checkpoint.size, 300);

    // Tiles: the full one immutable, the partial one short-lived, both with the right bytes.
    let full = request(addr, "GET", "/tile/0/000", b"");
    assert_eq!(full.status, 200);
    assert_eq!(full.body.len(), 8192);
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(
        full.header("content-type"),
        Some("application/octet-stream")
    );
    let part = request(addr, "GET", "/tile/0/001.p/44", b"");
    assert_eq!(part.status, 200);
    assert!(!part.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(&full.body[..32], leaf_hash(&e0).as_ref());
    let bundle = request(addr, "GET", "/tile/entries/000", b"");
    assert_eq!(
        nospy_tlog::tile::parse_bundle(&bundle.body, 256).unwrap()[0],
        e0.as_slice()
    );

    // An inclusion proof from the helper verifies against the signed checkpoint.
    let p: serde_json::Value =
        serde_json::from_slice(&request(addr, "GET", "/proof/inclusion?index=123", b"").body)
            .unwrap();
    let proof: Vec<Hash> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect();
    verify_inclusion(
        LogIndex(123),
        TreeSize(300),
        leaf_hash(&release(123, &s.vendor)).as_ref(),
        &proof,
        sc.checkpoint.root.as_ref(),
    )
    .unwrap();
    let c: serde_json::Value = serde_json::from_slice(
        &request(addr, "GET", "/proof/consistency?from=100&to=300", b"").body,
    )
    .unwrap();
    assert!(!c["proof"].as_array().unwrap().is_empty());

    // One witness goes away: the quorum is missed, reported, and the log goes on.
    s.rt.block_on(w2.shutdown());
    add(addr, &release(1000, &s.vendor));
    assert_eq!(cosigners(&srv, &s, 301), 1);
    let m = request(addr, "GET", "/metrics", b"").text();
    assert!(m.contains("nospy_witness_quorum_missed_total 1"), "{m}");
    assert!(m.contains("result=\"failed\"} 1"), "{m}");
    assert!(m.contains("nospy_log_tree_size 301"), "{m}");
    // The dashboard's witness page says who is behind, by how much, and why.
    let witnesses = || -> serde_json::Value {
        let r = request(addr, "GET", "/witnesses.json", b"");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let v = witnesses();
    assert_eq!(
        (v["size"].as_u64(), v["quorum"].as_u64()),
        (Some(301), Some(2))
    );
    assert_eq!(v["cosignatures"], 1);
    let (one, two) = (&v["witnesses"][0], &v["witnesses"][1]);
    assert_eq!(one["name"], "w1.example");
    assert_eq!(
        (one["cosigned_size"].as_u64(), one["lag"].as_u64()),
        (Some(301), Some(0))
    );
    assert_eq!(one["failures"], 0);
    assert!(one["seconds_since_cosigned"].is_u64());
    assert_eq!(two["name"], "w2.example");
    assert_eq!(
        (two["cosigned_size"].as_u64(), two["lag"].as_u64()),
        (Some(300), Some(1))
    );
    assert_eq!(two["failures"], 1);
    assert!(!two["last_error"].as_str().unwrap().is_empty());
    let page = request(addr, "GET", "/witnesses", b"").text();
    assert!(page.contains("Below the quorum"), "{page}");
    assert!(page.contains(&format!("http://{a2}")), "{page}");
    // It comes back (same state, same port): it catches up through a 409 and a consistency
    // proof from the size it last cosigned, and the quorum is regained.
    let w2 = s.witness(1, &a2.to_string());
    add(addr, &release(1001, &s.vendor));
    assert_eq!(cosigners(&srv, &s, 302), 2);
    let v = witnesses();
    assert_eq!(v["witnesses"][1]["cosigned_size"], 302);
    assert_eq!(v["witnesses"][1]["lag"], 0);
    assert_eq!(v["cosignatures"], 2);
    s.rt.block_on(srv.shutdown()).unwrap();
    s.rt.block_on(w1.shutdown());
    s.rt.block_on(w2.shutdown());
    // The log on disk audits clean and holds all 302 entries.
    let r = nospy_log::audit(&s.dir.path().join("log"), &s.log_key.verifier(), |_, _| {}).unwrap();
    assert_eq!(r.entries, 302);
}

#[test]
fn hostile_requests_get_a_clear_4xx_and_nothing_is_appended() {
    let s = setup();
    let cfg = s.config(&[]);
    let srv = s.server(&cfg);
    let addr = srv.addr;
    let before = request(addr, "GET", "/checkpoint", b"").body;
    let stranger = SignerKey::from_seed("stranger.example", [7; 32]).unwrap();
    let mut tampered: serde_json::Value = serde_json::from_slice(&release(1, &s.vendor)).unwrap();
    tampered["payload"] =
        serde_json::Value::String(tampered["payload"].as_str().unwrap().replacen('e', "f", 1));
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/add", vec![b'{'; 70_000], 413),
        ("POST", "/add", b"{not json".to_vec(), 400),
        ("POST", "/add", serde_json::to_vec(&tampered).unwrap(), 400),
        ("POST", "/add", release(2, &stranger), 403),
        ("GET", "/tile/../checkpoint", vec![], 404),
        ("GET", "/tile/0/..%2f..%2fetc", vec![], 404),
        ("GET", "/tile/0/000", vec![], 404),
        ("GET", "/tile/0/000.p/1", vec![], 404),
        ("GET", "/tile/entries/x000/000", vec![], 404),
        ("GET", "/tile/99/000", vec![], 404),
        ("GET", "/proof/inclusion?index=0", vec![], 400),
        (
            "GET",
            "/proof/inclusion?index=18446744073709551615&size=18446744073709551615",
            vec![],
            400,
        ),
        ("GET", "/proof/inclusion?index=-1", vec![], 400),
        ("GET", "/proof/consistency?from=0", vec![], 400),
        ("GET", "/proof/consistency?from=5&to=2", vec![], 400),
    ];
    for (method, path, body, want) in cases {
        let r = request(addr, method, path, &body);
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
    }
    // Regression (issue 13, defect 1): a revocation whose time carries a multibyte character in
    // its offset used to panic the worker (the connection dropped); it is refused as malformed.
    let revocation = sign(
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&Sha256::of(b"x"))),
            ..Default::default()
        }],
        &Predicate::Revocation(Revocation {
            reason: "test".into(),
            effective: "2026-11-28T12:00:00+0\u{e9}00".into(),
        }),
        &[&s.vendor],
    )
    .to_json();
    let r = request(addr, "POST", "/add", &revocation);
    assert_eq!(r.status, 400, "{}", r.text());
    // A slow client that never finishes its request does not stop others being served.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    slow.write_all(b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    let r = add(addr, &release(3, &s.vendor));
    assert_eq!(r["index"], 0);
    drop(slow);
    // A role the submitter does not have: a vendor key cannot submit attestations.
    let att = Predicate::Attestation(Attestation {
        kind: AttestationKind::BinaryEquivalence,
        result: nospy_statement::predicate::Outcome::Pass,
        release: EntryRef {
            log: ORIGIN.into(),
            index: 0,
            leaf_hash: "00".repeat(32),
        },
        rebuilt_from: None,
        diff: None,
    });
    let env = sign(
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&Sha256::of(b"x"))),
            ..Default::default()
        }],
        &att,
        &[&s.vendor],
    );
    assert_eq!(request(addr, "POST", "/add", &env.to_json()).status, 403);
    // Only the one good submission was appended.
    let after = request(addr, "GET", "/checkpoint", b"").body;
    assert_ne!(before, after);
    let sc = SignedCheckpoint::open(&after, &s.log_key.verifier()).unwrap();
    assert_eq!(sc.checkpoint.size, 1);
    s.rt.block_on(srv.shutdown()).unwrap();
}

#[test]
fn submitters_are_reloaded_without_restart() {
    let s = setup();
    let cfg = s.config(&[]);
    let srv = s.server(&cfg);
    let other = SignerKey::from_seed("vendor2.example", [8; 32]).unwrap();
    assert_eq!(
        request(srv.addr, "POST", "/add", &release(1, &other)).status,
        403
    );
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            other.verifier()
        );
    // The modification time must move on, even on a file system with coarse timestamps.
    let before = std::fs::metadata(&cfg).unwrap().modified().unwrap();
    std::fs::write(&cfg, text).unwrap();
    let file = std::fs::File::options().write(true).open(&cfg).unwrap();
    file.set_modified(before + std::time::Duration::from_secs(1))
        .unwrap();
    drop(file);
    let reloads = srv.progress().config_reloads;
    assert!(s
        .rt
        .block_on(srv.wait_for(std::time::Duration::from_secs(20), |p| {
            p.config_reloads > reloads
        })));
    assert_eq!(
        request(srv.addr, "POST", "/add", &release(1, &other)).status,
        200
    );
    s.rt.block_on(srv.shutdown()).unwrap();
}
