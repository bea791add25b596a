//! Blocking work stays off the async workers (issue 13, defect 6): a proof whose tile read
//! blocks (here on a named pipe standing in for a slow disk) must not stop the server from
//! answering other requests, even with a single async worker.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::Sequencer;
use nospy_server::{start, Options};
use nospy_testkit::http::request;
use nospy_tlog::note::SignerKey;
use std::io::Write as _;

const ORIGIN: &str = "blocking.nospy.example/log";

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [4; 32]).unwrap()
}

#[test]
fn a_proof_blocked_on_its_tile_read_does_not_hold_the_only_async_worker() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // Two full level-0 tiles: the proof of entry 0 needs tile/0/000, which nothing reads at
    // start (the right edge is in tile/1/000.p/2).
    Sequencer::init(dir, ORIGIN, &log_key(), None).unwrap();
    let entries: Vec<Vec<u8>> = (0..512u32)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    Sequencer::open(dir, log_key())
        .unwrap()
        .append(&refs)
        .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(start(Options {
            queue: 16,
            max_batch: 16,
            index_delay: std::time::Duration::from_millis(10),
            ..Options::new(
                nospy_server::Storage::Dir(dir.to_path_buf()),
                log_key(),
                "127.0.0.1:0".parse().unwrap(),
            )
        }))
        .unwrap();
    let addr = running.addr;

    // The tile becomes a pipe: reading it blocks until this test writes the tile's bytes.
    let tile = dir.join("tile/0/000");
    let bytes = std::fs::read(&tile).unwrap();
    std::fs::remove_file(&tile).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&tile)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");

    let proof =
        std::thread::spawn(move || request(addr, "GET", "/proof/inclusion?index=0&size=512", b""));
    // Opening the pipe for writing returns once the server has opened it for reading: the
    // proof's read is now blocked.
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&tile).unwrap();
    // Meanwhile the server answers (the request gives up after 30 s, and a blocked worker
    // would never answer).
    let r = request(addr, "GET", "/checkpoint", b"");
    assert_eq!(
        r.status, 200,
        "the server did not answer while a tile read blocked"
    );
    assert!(r.text().starts_with(ORIGIN));
    // The tile arrives; the proof completes.
    pipe.write_all(&bytes).unwrap();
    drop(pipe);
    let p = proof.join().unwrap();
    assert_eq!(p.status, 200, "{}", p.text());
    assert!(p.text().contains("\"proof\""));
    drop(running);
}
