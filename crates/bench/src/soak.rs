//! `nospy bench soak`: `nospy serve` for a given time under a mix of valid signed submissions,
//! oversize and malformed bodies, slow clients and connection floods, with its resident memory
//! sampled all along. It must stay under the ceiling; every valid submission must be
//! acknowledged or refused with 503; nothing acknowledged may be lost (read back and audited at
//! the end, after a restart).

use crate::child::{request, serve};
use anyhow::{bail, Context as _, Result};
use nospy_log::{audit, Log};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ORIGIN: &str = "soak.bench.nospy.example/log";

/// What the clients saw, by kind of request and answer.
type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

/// Runs the soak for `seconds` in a new directory under `base`; fails if the server's resident
/// memory passes `ceiling_mb`, a valid submission gets anything but 200 or 503, or an
/// acknowledged entry is lost.
pub fn run(base: &Path, seconds: u64, ceiling_mb: u64, json: bool) -> Result<()> {
    let work = base.join(format!("nospy-bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let r = soak(&work, seconds, ceiling_mb, json);
    if r.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("the log is kept for a look: {}", work.display());
    }
    r
}

fn soak(work: &Path, seconds: u64, ceiling_mb: u64, json: bool) -> Result<()> {
    let crate::child::Served {
        log,
        key,
        vendor,
        config: cfg,
    } = crate::child::new_log(work, ORIGIN, 21)?;
    let (mut child, addr) = serve(&log, &cfg)?;
    let pid = child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Tally = Arc::new(Mutex::new(BTreeMap::new()));
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let peak_kb = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();

    // Valid signed submissions, from 6 clients.
    for c in 0..6u64 {
        let (stop, tally, acked, failures, vendor) = (
            stop.clone(),
            tally.clone(),
            acked.clone(),
            failures.clone(),
            vendor.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = c * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                let e = nospy_testkit::fixtures::release_submission(i, &vendor);
                i += 1;
                match request(addr, "POST", "/add", &e) {
                    Some((200, body)) => {
                        count(&tally, "valid: 200");
                        match serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["index"].as_u64())
                        {
                            Some(index) => {
                                lock(&acked).insert(index, e);
                            }
                            None => lock(&failures).push(format!("200 without an index: {body}")),
                        }
                    }
                    Some((503, _)) => count(&tally, "valid: 503"),
                    Some((s, body)) => {
                        count(&tally, &format!("valid: {s}"));
                        lock(&failures).push(format!("a valid submission got {s}: {body}"));
                    }
                    None => count(&tally, "valid: no answer (connection refused or reset)"),
                }
            }
        }));
    }
    // Oversize and malformed bodies, reads, and connection floods.
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let (what, r) = match k % 4 {
                    0 => (
                        "oversize",
                        request(addr, "POST", "/add", &vec![b'{'; 200_000]),
                    ),
                    1 => ("malformed", request(addr, "POST", "/add", &garbage(k))),
                    2 => ("tile read", request(addr, "GET", "/tile/0/000.p/1", b"")),
                    _ => ("lookup", request(addr, "GET", "/lookup?digest=00", b"")),
                };
                let label = match r {
                    Some((s, _)) => format!("{what}: {s}"),
                    None => format!("{what}: no answer"),
                };
                count(&tally, &label);
            }
        }));
    }
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // A flood: 300 connections at once, held for a moment, then dropped.
                let conns: Vec<TcpStream> = (0..300)
                    .filter_map(|_| TcpStream::connect(addr).ok())
                    .collect();
                count(
                    &tally,
                    &format!("flood: {} connections opened", conns.len()),
                );
                std::thread::sleep(Duration::from_millis(200));
                drop(conns);
                std::thread::sleep(Duration::from_millis(300));
            }
        }));
    }
    // Slow clients: a request started and never finished.
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let slow: Vec<TcpStream> = (0..20)
                    .filter_map(|_| {
                        let mut s = TcpStream::connect(addr).ok()?;
                        s.write_all(
                            b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{",
                        )
                        .ok()?;
                        Some(s)
                    })
                    .collect();
                count(&tally, "slow: requests left unfinished");
                std::thread::sleep(Duration::from_secs(2));
                drop(slow);
            }
        }));
    }
    // The server's resident memory, sampled.
    {
        let (stop, peak_kb) = (stop.clone(), peak_kb.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak_kb.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    let started = Instant::now();
    let mut next_report = 60;
    while started.elapsed().as_secs() < seconds {
        std::thread::sleep(Duration::from_millis(250));
        let peak = peak_kb.load(Ordering::Relaxed) / 1024;
        if peak > ceiling_mb {
            stop.store(true, Ordering::Relaxed);
            let _ = child.kill();
            bail!("the server's resident memory reached {peak} MiB, over the {ceiling_mb} MiB ceiling");
        }
        if !lock(&failures).is_empty() {
            break;
        }
        if !json && started.elapsed().as_secs() >= next_report {
            eprintln!(
                "{} s: {} acknowledged, peak RSS {peak} MiB",
                started.elapsed().as_secs(),
                lock(&acked).len()
            );
            next_report += 60;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Stop as an operator would (SIGTERM: it finishes what was acknowledged).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    child.wait()?;
    if let Some(f) = lock(&failures).first() {
        bail!("{f}");
    }
    let acked = lock(&acked);
    let report = audit(&log, &key.verifier(), |_, _| {})?;
    let l = Log::open(&log)?;
    for (i, e) in acked.iter() {
        if *i >= report.entries || &l.entry(*i)? != e {
            bail!("acknowledged entry {i} is lost");
        }
    }
    let peak = peak_kb.load(Ordering::Relaxed) as f64 / 1024.0;
    let tally = lock(&tally).clone();
    if json {
        crate::print_json(&json!({
            "seconds": seconds,
            "acknowledged": acked.len(),
            "lost": 0,
            "peak_rss_mb": (peak * 10.0).round() / 10.0,
            "ceiling_mb": ceiling_mb,
            "requests": tally,
        }))?;
    } else {
        println!(
            "{seconds} s: {} submissions acknowledged, none lost; peak RSS {peak:.1} MiB (ceiling {ceiling_mb} MiB)",
            acked.len()
        );
        for (k, n) in &tally {
            println!("  {k:<48} {n}");
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn count(t: &Tally, what: &str) {
    *lock(t).entry(what.to_string()).or_insert(0) += 1;
}

/// Bytes that are no statement: a JSON-ish prefix, then noise.
fn garbage(k: u64) -> Vec<u8> {
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = b"{\"payloadType\":".to_vec();
    for _ in 0..(k % 2000) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

/// The resident set of process `pid`, in KiB (Linux).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
