//! `nospy serve` is SIGKILLed while clients submit concurrently, then restarted: every index it
//! acknowledged is there with its exact entry, the log audits clean, and it serves on.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use nospy_testkit::fixtures::release_submission;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

fn post(addr: SocketAddr, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    let head = format!(
        "POST /add HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

fn start(dir: &std::path::Path, cfg: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let (child, url) = serve(dir, cfg);
    (child, url.trim_start_matches("http://").parse().unwrap())
}

#[test]
fn sigkill_during_concurrent_submissions_loses_nothing_acknowledged() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "crash.serve.example/log");
    let vendor = nospy_tlog::note::SignerKey::from_seed("vendor.example", [5; 32]).unwrap();
    let cfg = serve_config(t.path(), &vendor.verifier().to_string());
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut next = 0u64;
    for round in 0..4 {
        let (mut child, addr) = start(&log, &cfg);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..8u64 {
            let (acked, stop, vendor) = (acked.clone(), stop.clone(), vendor.clone());
            let base = next + c * 1_000_000;
            clients.push(std::thread::spawn(move || {
                let mut i = base;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let e = release_submission(i, &vendor);
                    i += 1;
                    match post(addr, &e) {
                        Some((200, body)) => {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            let index = v["index"].as_u64().unwrap();
                            if let Some(prev) = acked.lock().unwrap().insert(index, e.clone()) {
                                assert_eq!(prev, e, "index {index} acknowledged for two entries");
                            }
                        }
                        Some((status, body)) if status != 503 => panic!("HTTP {status}: {body}"),
                        _ => {}
                    }
                }
            }));
        }
        next += 10_000_000;
        // Let them submit for a while, then kill the server without warning.
        std::thread::sleep(std::time::Duration::from_millis(300 + 200 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 50,
        "only {} submissions were acknowledged: the test tested little",
        acked.len()
    );
    // After a last restart (recovery) and stop: everything acknowledged is there, byte for byte.
    let (mut child, addr) = start(&log, &cfg);
    assert_eq!(
        post(addr, &release_submission(999_999_999, &vendor))
            .unwrap()
            .0,
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let r = ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let size = v["entries"].as_u64().unwrap();
    for (i, e) in acked.iter() {
        assert!(*i < size);
        if i % 7 == 0 {
            assert_eq!(
                &ok(&["log", "entry", s(&log), &i.to_string()]).raw,
                e,
                "entry {i}"
            );
        }
    }
}

#[test]
fn sigterm_finishes_what_was_acknowledged_and_exits() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "term.serve.example/log");
    let vendor = nospy_tlog::note::SignerKey::from_seed("vendor.example", [6; 32]).unwrap();
    let cfg = serve_config(t.path(), &vendor.verifier().to_string());
    let (mut child, addr) = start(&log, &cfg);
    let mut acked = 0;
    for i in 0..20 {
        if let Some((200, _)) = post(addr, &release_submission(i, &vendor)) {
            acked += 1;
        }
    }
    assert_eq!(acked, 20);
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "nospy serve exited with {status}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]).stdout)
            .unwrap();
    assert_eq!(v["entries"], 20);
}
