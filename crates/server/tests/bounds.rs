//! The server's memory before signatures: submissions wait within a byte budget, connections
//! are bounded in all and per client; past either bound the answer is 503, at once.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::Sequencer;
use nospy_server::{start, Options};
use nospy_testkit::fixtures::release_submission;
use nospy_testkit::http::request;
use nospy_tlog::note::SignerKey;
use std::io::{Read, Write};

/// A connection that has had one answer and stays open.
fn kept_alive(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the head and the body it announces have arrived.
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let reply = nospy_testkit::http::parse(&got);
        let want: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        if reply.status == 200 && reply.body.len() >= want {
            return s;
        }
    }
}

const ORIGIN: &str = "bounds.nospy.example/log";

struct World {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    vendor: SignerKey,
    srv: nospy_server::Running,
}

fn world(max_queued_bytes: usize, max_connections: usize, per_client: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let key = SignerKey::from_seed(ORIGIN, [1; 32]).unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let log = dir.path().join("log");
    Sequencer::init(&log, ORIGIN, &key, None).unwrap();
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor.verifier()
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt
        .block_on(start(Options {
            config: Some(cfg),
            queue: 1024,
            max_batch: 256,
            index_delay: std::time::Duration::from_millis(10),
            max_queued_bytes,
            max_connections,
            max_connections_per_client: per_client,
            ..Options::new(
                nospy_server::Storage::Dir(log),
                key,
                "127.0.0.1:0".parse().unwrap(),
            )
        }))
        .unwrap();
    World {
        rt,
        _dir: dir,
        vendor,
        srv,
    }
}

#[test]
fn server_memory_submissions_beyond_the_byte_budget_get_503() {
    // Regression (issue 13, defect 5): the queue held up to 65,536 submissions of 64 KiB, whatever
    // memory that took. A budget smaller than one submission's share refuses every one, at once,
    // with Retry-After; a larger one takes them.
    let w = world(2048, 64, 64);
    let r = request(
        w.srv.addr,
        "POST",
        "/add",
        &release_submission(1, &w.vendor),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    w.rt.block_on(w.srv.shutdown()).unwrap();

    let w = world(64 << 10, 64, 64);
    for i in 0..20 {
        let r = request(
            w.srv.addr,
            "POST",
            "/add",
            &release_submission(i, &w.vendor),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    w.rt.block_on(w.srv.shutdown()).unwrap();
}

#[test]
fn server_connections_beyond_the_bound_get_503_and_close() {
    // Regression (issue 13, defect 5): connections were not bounded.
    let w = world(nospy_server::MAX_QUEUED_BYTES, 64, 2);
    let addr = w.srv.addr;
    // Two kept-alive connections from this address take its share (each answered once, so
    // that both are surely accepted before the third).
    let a = kept_alive(addr);
    let b = kept_alive(addr);
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let reply = nospy_testkit::http::parse(&raw);
    assert_eq!(reply.status, 503, "{}", reply.text());
    // A connection given back frees its place.
    drop(a);
    drop(b);
    let mut status = 0;
    for _ in 0..100 {
        status = request(addr, "GET", "/checkpoint", b"").status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status, 200);
    w.rt.block_on(w.srv.shutdown()).unwrap();
}
