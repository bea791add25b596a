//! `nospy bench kills`: `nospy serve` SIGKILLed at random moments under concurrent signed
//! submissions, restarted, again and again; after every kill, every index it ever acknowledged
//! is read back with its exact entry and the whole log is audited. Not a speed measurement: a
//! long-running check of the promise that an acknowledged entry is never lost (the test suite
//! runs a few rounds of it; this runs a thousand).

use crate::child::{request, serve};
use anyhow::{bail, Context as _, Result};
use nospy_log::{audit, Log};
use nospy_tlog::note::SignerKey;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ORIGIN: &str = "kills.bench.nospy.example/log";

/// Runs `rounds` kills with `clients` concurrent submitters, in a new directory under `base`;
/// prints a line per 10 rounds (or the figures as JSON at the end with `json`).
pub fn run(base: &Path, rounds: usize, clients: usize, json: bool) -> Result<()> {
    let work = base.join(format!("nospy-bench-kills-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let r = kills(&work, rounds, clients.max(1), json);
    if r.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("the log is kept for a look: {}", work.display());
    }
    r
}

fn kills(work: &Path, rounds: usize, clients: usize, json: bool) -> Result<()> {
    let crate::child::Served {
        log,
        key,
        vendor,
        config: cfg,
    } = crate::child::new_log(work, ORIGIN, 11)?;
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = 0u64;
    let started = Instant::now();
    let mut refused = 0u64;
    for round in 0..rounds {
        let (mut child, addr) = serve(&log, &cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut threads = Vec::new();
        for c in 0..clients as u64 {
            let (acked, stop, vendor, errors, busy) = (
                acked.clone(),
                stop.clone(),
                vendor.clone(),
                errors.clone(),
                busy.clone(),
            );
            let mut i = next + c * 1_000_000_000;
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let e = nospy_testkit::fixtures::release_submission(i, &vendor);
                    i += 1;
                    match request(addr, "POST", "/add", &e) {
                        Some((200, body)) => {
                            let index = serde_json::from_str::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["index"].as_u64());
                            let Some(index) = index else {
                                lock(&errors).push(format!("an answer without an index: {body}"));
                                continue;
                            };
                            if let Some(prev) = lock(&acked).insert(index, e.clone()) {
                                if prev != e {
                                    lock(&errors).push(format!(
                                        "index {index} acknowledged for two entries"
                                    ));
                                }
                            }
                        }
                        Some((503, _)) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((status, body)) => {
                            lock(&errors).push(format!("HTTP {status}: {body}"))
                        }
                        None => {} // the server is gone: killed
                    }
                }
            }));
        }
        next += 1_000_000_000 * clients as u64;
        // A random moment: 20 to 500 ms of submissions.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 480));
        child.kill()?;
        child.wait()?;
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        refused += busy.load(Ordering::Relaxed);
        if let Some(e) = lock(&errors).first() {
            bail!("round {round}: {e}");
        }
        // Everything ever acknowledged, read back, and the log audited.
        check(&log, &key, &lock(&acked)).with_context(|| format!("after kill {}", round + 1))?;
        if !json && (round + 1) % 10 == 0 {
            eprintln!(
                "{} kills, {} entries acknowledged, all read back and audited ({:.0} s)",
                round + 1,
                lock(&acked).len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let n = lock(&acked).len();
    if json {
        crate::print_json(&json!({
            "kills": rounds,
            "clients": clients,
            "acknowledged": n,
            "answered_503": refused,
            "lost": 0,
            "seconds": started.elapsed().as_secs_f64().round(),
        }))?;
    } else {
        println!(
            "{rounds} kills under {clients} concurrent submitters: {n} entries acknowledged, none lost, the log audited after every kill ({refused} answered 503)"
        );
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every acknowledged index holds its entry, and the log audits clean. Entries are read a
/// bundle at a time (each bundle once), so that a thousand rounds stay affordable.
fn check(log: &Path, key: &SignerKey, acked: &HashMap<u64, Vec<u8>>) -> Result<()> {
    let report = audit(log, &key.verifier(), |_, _| {})?;
    let l = Log::open(log)?;
    let reader = l.reader();
    let mut indexes: Vec<&u64> = acked.keys().collect();
    indexes.sort_unstable();
    let mut bundle: Option<(u64, Vec<Vec<u8>>)> = None;
    for i in indexes {
        if *i >= report.entries {
            bail!(
                "acknowledged index {i} is beyond the log's {} entries",
                report.entries
            );
        }
        let b = i / 256;
        if bundle.as_ref().is_none_or(|(n, _)| *n != b) {
            bundle = Some((b, reader.bundle(b)?));
        }
        let entries = &bundle
            .as_ref()
            .map(|x| &x.1)
            .context("the bundle just read")?;
        if entries.get((i % 256) as usize) != acked.get(i) {
            bail!("acknowledged index {i} holds another entry");
        }
    }
    Ok(())
}
