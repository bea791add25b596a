//! Durability: `nospy log add` is killed with SIGKILL at random moments, many times over; every
//! index it acknowledged must survive with its exact entry, the log must audit clean, and
//! appends must continue.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A sample of the acknowledged entries reads back byte for byte, and the log audits clean.
fn check_acknowledged(
    log: &std::path::Path,
    vkey: &str,
    acked: &HashMap<u64, Vec<u8>>,
    kills: u32,
) {
    let mut sample: Vec<_> = acked.keys().copied().collect();
    sample.sort();
    let step = (sample.len() / 40).max(1);
    for &i in sample.iter().step_by(step).chain(sample.last()) {
        let r = ok(&["log", "entry", s(log), &i.to_string()]);
        assert_eq!(r.raw, acked[&i], "entry {i} after {kills} kills");
    }
    let r = ok(&["log", "audit", s(log), "--key", vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn sigkill_during_appends_never_loses_an_acknowledged_entry() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "crash.nospy.example/log");
    let seed = std::env::var("NOSPY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("seed {seed} (set NOSPY_CRASH_SEED to replay)");
    let mut rng = Rng(seed | 1);
    let mut acked: HashMap<u64, Vec<u8>> = HashMap::new();
    let (mut kills, mut completed, mut counter, mut mid_batch) = (0u32, 0, 0u64, 0);
    let rounds = 120;
    let mut typical = Duration::from_millis(20);
    let mut round = 0;
    // At least `rounds` rounds; more (up to 400) if too few kills landed inside a batch.
    while round < rounds || (mid_batch < 5 && round < 400) {
        // A batch of entries of varied sizes, written to files for `log add`.
        let n = 1 + rng.below(400) as usize;
        let dir = t.path().join(format!("batch{round}"));
        std::fs::create_dir(&dir).unwrap();
        let mut files = Vec::new();
        let mut contents = Vec::new();
        for i in 0..n {
            counter += 1;
            let len = rng.below(1500) as usize;
            let mut e = format!("entry {counter} of round {round} ").into_bytes();
            e.extend((0..len).map(|k| (k as u64 ^ counter) as u8));
            let f = dir.join(i.to_string());
            std::fs::write(&f, &e).unwrap();
            files.push(f);
            contents.push(e);
        }
        let mut cmd = nospy();
        cmd.args(["log", "add", "--raw", s(&log), "--json"])
            .args(&files);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        // Kill three rounds in four, at a random moment within the time an add usually takes.
        let kill_at = if rng.below(4) == 0 {
            None
        } else {
            Some(typical.mul_f64(rng.below(1000) as f64 / 1000.0 * 1.2))
        };
        if let Some(d) = kill_at {
            while start.elapsed() < d {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            completed += 1;
            if kill_at.is_none() {
                typical = (typical + start.elapsed()) / 2;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for (k, e) in v["entries"].as_array().unwrap().iter().enumerate() {
                let index = e["index"].as_u64().unwrap();
                if let Some(prev) = acked.insert(index, contents[k].clone()) {
                    assert_eq!(
                        prev, contents[k],
                        "index {index} acknowledged for two entries"
                    );
                }
            }
        } else {
            kills += 1;
            assert!(
                out.status.code().is_none(),
                "add failed on its own: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Did the kill land inside a batch, after tiles were written and before the checkpoint
            // covering them? Then files beyond the checkpoint are there, for recovery to remove.
            // The log must audit clean either way.
            let r = ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            assert_eq!(v["ok"], true);
            if !v["uncovered"].as_array().unwrap().is_empty() {
                mid_batch += 1;
            }
        }
        // Every few rounds, and at the end: all acknowledged entries are there, byte for byte.
        if round % 20 == 19 {
            check_acknowledged(&log, &vkey, &acked, kills);
        }
        round += 1;
    }
    check_acknowledged(&log, &vkey, &acked, kills);
    eprintln!(
        "{round} rounds: {kills} killed ({mid_batch} in the middle of a batch), {completed} completed, {} entries acknowledged",
        acked.len()
    );
    assert!(
        kills >= 40,
        "only {kills} rounds were killed: the test did not test much"
    );
    assert!(
        mid_batch >= 5,
        "only {mid_batch} kills landed inside a batch: the test did not test much"
    );
    assert!(completed >= 20);
    // Appends continue after all that, and every acknowledged entry is still where it was.
    let f = t.path().join("last");
    std::fs::write(&f, b"after the crashes").unwrap();
    ok(&["log", "add", "--raw", s(&log), s(&f)]);
    let size: u64 = serde_json::from_str::<serde_json::Value>(
        &ok(&["log", "checkpoint", s(&log), "--json"]).stdout,
    )
    .unwrap()["size"]
        .as_u64()
        .unwrap();
    for (i, e) in &acked {
        assert!(*i < size);
        // Re-adding an acknowledged entry must give back its index (deduplication survives crashes).
        if i % 97 == 0 {
            let f = t.path().join("again");
            std::fs::write(&f, e).unwrap();
            let v: serde_json::Value = serde_json::from_str(
                &ok(&["log", "add", "--raw", s(&log), s(&f), "--json"]).stdout,
            )
            .unwrap();
            assert_eq!(v["entries"][0]["index"].as_u64(), Some(*i));
            assert_eq!(v["entries"][0]["duplicate"], true);
        }
    }
}
