//! Two servers on one log in object storage (a real SeaweedFS) and PostgreSQL (the server at
//! 127.0.0.1:5432; each test its own schema): both take submissions and serve reads, one
//! sequences and has the witness cosign, and when it stops the other takes over.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_server::{start, ClusterStorage, Options, Storage};
use nospy_testkit::fixtures::release_submission as release;
use nospy_testkit::http::request;
use nospy_testkit::s3::SeaweedFs;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::verify_inclusion;
use nospy_tlog::note::SignerKey;
use nospy_tlog::{Hash, LogIndex, Sha256, TreeSize};
use nospy_witness::serve::{self as witness, WitnessOptions};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const ORIGIN: &str = "cluster.test.example/nospy";
const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("srv_{name}_{}_{nanos}", std::process::id())
}

fn add(addr: SocketAddr, entry: &[u8]) -> serde_json::Value {
    let r = request(addr, "POST", "/add", entry);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn checkpoint(addr: SocketAddr, key: &SignerKey) -> SignedCheckpoint {
    let r = request(addr, "GET", "/checkpoint", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    SignedCheckpoint::open(&r.body, &key.verifier()).unwrap()
}

/// Waits (up to 20 s) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_instances_share_one_log_and_the_standby_takes_over() {
    let s3 = SeaweedFs::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::from_seed(ORIGIN, [1; 32]).unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let wkey = SignerKey::from_seed("w.example", [3; 32]).unwrap();
    let w = rt
        .block_on(witness::start(WitnessOptions {
            key: wkey.clone(),
            logs: vec![(ORIGIN.to_string(), log_key.verifier())],
            db: dir.path().join("w.sqlite"),
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: std::sync::Arc::new(nospy_log::clock::SystemClock),
        }))
        .unwrap();
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n[witnesses]\nquorum = 1\ntimeout = \"2s\"\n[[witnesses.member]]\nurl = \"http://{}\"\nkey = \"{}\"\n",
            vendor.verifier(),
            w.addr,
            wkey.cosigner_verifier()
        ),
    )
    .unwrap();
    let sc = schema("two");
    let server = || {
        rt.block_on(start(Options {
            storage: Storage::Cluster(ClusterStorage {
                tiles: s3.url("two"),
                database: DB.into(),
                schema: sc.clone(),
            }),
            key: log_key.clone(),
            config: Some(cfg.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            queue: 1024,
            max_batch: 256,
            index_delay: Duration::from_millis(50),
            lookup_page: nospy_server::LOOKUP_PAGE,
            max_queued_bytes: nospy_server::MAX_QUEUED_BYTES,
            max_connections: nospy_server::MAX_CONNECTIONS,
            max_connections_per_client: nospy_server::MAX_CONNECTIONS_PER_CLIENT,
        }))
        .unwrap()
    };
    let a = server();
    eventually("the first instance leads", || {
        a.metrics.leader.load(Relaxed) == 1
    });
    let b = server();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(b.metrics.leader.load(Relaxed), 0, "only one leads");

    // Submissions to both, at once: every one gets its own index, acknowledged only once a
    // checkpoint covering it is published (so each instance's read API shows it).
    let (aa, ba) = (a.addr, b.addr);
    let v1 = vendor.clone();
    let to_b = std::thread::spawn(move || {
        (0..60u64)
            .map(|i| {
                let e = release(1000 + i, &v1);
                let r = add(ba, &e);
                let cp = checkpoint(ba, &SignerKey::from_seed(ORIGIN, [1; 32]).unwrap());
                assert!(cp.checkpoint.size > r["index"].as_u64().unwrap());
                (
                    r["index"].as_u64().unwrap(),
                    r["duplicate"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    });
    let mut got: Vec<(u64, bool)> = (0..60u64)
        .map(|i| {
            let r = add(aa, &release(i, &vendor));
            (
                r["index"].as_u64().unwrap(),
                r["duplicate"].as_bool().unwrap(),
            )
        })
        .collect();
    got.extend(to_b.join().unwrap());
    let mut indices: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    indices.sort();
    assert_eq!(indices, (0..120).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, dup)| !dup));
    // A submission already in the log, given to the standby: its index, marked duplicate.
    let again = add(ba, &release(7, &vendor));
    assert_eq!(again["duplicate"], true);
    let i7 = got[7].0;
    assert_eq!(again["index"], i7);

    // Both serve the same tree, cosigned by the witness; the standby's tiles are the bucket's.
    eventually("the standby follows the cosigned checkpoint", || {
        let c = checkpoint(ba, &log_key);
        c.checkpoint.size == 120
            && c.cosignatures(&[wkey.cosigner_verifier()])
                .is_ok_and(|v| v.len() == 1)
    });
    let cp = checkpoint(aa, &log_key);
    assert_eq!(cp.checkpoint, checkpoint(ba, &log_key).checkpoint);
    let tile = request(ba, "GET", "/tile/0/000.p/120", b"");
    assert_eq!(tile.status, 200);
    assert_eq!(tile.body, request(aa, "GET", "/tile/0/000.p/120", b"").body);
    assert_eq!(
        &tile.body[32 * i7 as usize..32 * i7 as usize + 32],
        leaf_hash(&release(7, &vendor)).as_ref()
    );
    assert_eq!(request(ba, "GET", "/tile/0/001", b"").status, 404);
    let p: serde_json::Value = serde_json::from_slice(
        &request(
            ba,
            "GET",
            &format!("/proof/inclusion?index={i7}&size=120"),
            b"",
        )
        .body,
    )
    .unwrap();
    let proof: Vec<Hash> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect();
    verify_inclusion(
        LogIndex(i7),
        TreeSize(120),
        leaf_hash(&release(7, &vendor)).as_ref(),
        &proof,
        cp.checkpoint.root.as_ref(),
    )
    .unwrap();
    // The lookup index in PostgreSQL, asked of either instance.
    let fw7 = Sha256::of(b"firmware 7");
    eventually("the lookup index covers the log", || {
        let r = request(ba, "GET", &format!("/lookup?digest={fw7}"), b"");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["size"] == 120 && v["entries"].as_array().unwrap().len() == 1
    });

    // The leader stops: the standby takes over, and what it is given is sequenced.
    rt.block_on(a.shutdown()).unwrap();
    let t = Instant::now();
    let r = add(ba, &release(500, &vendor));
    assert_eq!(r["index"], 120);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(b.metrics.leader.load(Relaxed), 1);
    eventually("the new leader's checkpoint is cosigned", || {
        let c = checkpoint(ba, &log_key);
        c.checkpoint.size == 121
            && c.cosignatures(&[wkey.cosigner_verifier()])
                .is_ok_and(|v| v.len() == 1)
    });
    rt.block_on(b.shutdown()).unwrap();

    // The bucket audits clean.
    let tiles = nospy_log::object::ObjectTiles::from_url(&s3.url("two")).unwrap();
    let report = rt
        .block_on(nospy_log::object::audit(
            &tiles,
            &log_key.verifier(),
            &mut |_, _| {},
        ))
        .unwrap();
    assert_eq!(report.entries, 121);
    drop(w);
}

/// The database, then the object store, cut off from the one instance (a proxy between them):
/// submissions are answered 503 (not appended, not a hang), what was acknowledged before stays,
/// and once the network is back the instance leads again and the log audits clean; a
/// submission refused while the store was away keeps the index it was given when sent again.
#[test]
fn the_database_or_the_store_unreachable_gets_503_and_loses_nothing() {
    use nospy_testkit::proxy::Proxy;
    let s3 = SeaweedFs::start();
    let db = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let store = Proxy::start(s3.s3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::from_seed(ORIGIN, [1; 32]).unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor.verifier()
        ),
    )
    .unwrap();
    let srv = rt
        .block_on(start(Options {
            storage: Storage::Cluster(ClusterStorage {
                tiles: format!(
                    "s3://{}/faults?endpoint=http://{}&allow_http=true&region=us-east-1&skip_signature=true",
                    nospy_testkit::s3::BUCKET,
                    store.addr
                ),
                database: format!(
                    "host=127.0.0.1 port={} user=postgres dbname=test",
                    db.addr.port()
                ),
                schema: schema("faults"),
            }),
            key: log_key.clone(),
            config: Some(cfg),
            listen: "127.0.0.1:0".parse().unwrap(),
            queue: 1024,
            max_batch: 256,
            index_delay: Duration::from_millis(50),
            lookup_page: nospy_server::LOOKUP_PAGE,
            max_queued_bytes: nospy_server::MAX_QUEUED_BYTES,
            max_connections: nospy_server::MAX_CONNECTIONS,
            max_connections_per_client: nospy_server::MAX_CONNECTIONS_PER_CLIENT,
        }))
        .unwrap();
    let addr = srv.addr;
    let mut acked = std::collections::BTreeMap::new();
    for i in 0..20 {
        let e = release(i, &vendor);
        acked.insert(add(addr, &e)["index"].as_u64().unwrap(), e);
    }

    // The database away: refused, at once.
    db.cut();
    for i in 20..23 {
        let r = request(addr, "POST", "/add", &release(i, &vendor));
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    db.restore();
    eventually("the instance leads again", || {
        srv.metrics.leader.load(Relaxed) == 1
    });
    for i in 20..25 {
        let e = release(i, &vendor);
        acked.insert(add(addr, &e)["index"].as_u64().unwrap(), e);
    }

    // The store away: the batch fails part-way, the instance steps down, and the submitter is
    // answered 503 once its patience is spent.
    store.cut();
    let lost = release(99, &vendor);
    let r = request(addr, "POST", "/add", &lost);
    assert_eq!(r.status, 503, "{}", r.text());
    store.restore();
    eventually("the instance leads again", || {
        srv.metrics.leader.load(Relaxed) == 1
    });
    // Recorded before the store went away: sent again, it is in the log.
    let again = add(addr, &lost);
    acked.insert(again["index"].as_u64().unwrap(), lost);
    // The lookup index, written and read through new connections.
    let fw0 = Sha256::of(b"firmware 0");
    eventually("the lookup index covers the log again", || {
        let r = request(addr, "GET", &format!("/lookup?digest={fw0}"), b"");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v["size"] == 26 && v["entries"].as_array().is_some_and(|e| e.len() == 1)
    });
    rt.block_on(srv.shutdown()).unwrap();

    // Every acknowledged index holds its entry; the bucket audits clean.
    let tiles = nospy_log::object::ObjectTiles::from_url(&s3.url("faults")).unwrap();
    let report = rt
        .block_on(nospy_log::object::audit(
            &tiles,
            &log_key.verifier(),
            &mut |_, _| {},
        ))
        .unwrap();
    assert_eq!(report.entries, 26);
    let bundle = rt
        .block_on(tiles.get("tile/entries/000.p/26"))
        .unwrap()
        .unwrap();
    let entries = nospy_tlog::tile::parse_bundle(&bundle, 26).unwrap();
    for (i, e) in &acked {
        assert_eq!(entries[*i as usize], e.as_slice(), "index {i}");
    }
}
