//! `nospy bench failover --storage s3://... --database postgres://...`: two `nospy serve`
//! instances on one log in object storage, under concurrent signed submissions to both; again
//! and again the one that sequences is SIGKILLed (or, every few rounds, SIGSTOPped until the
//! other has taken over, then SIGCONTed), and restarted. It measures how long the other takes
//! to publish a larger checkpoint, and checks, at the end, that every acknowledged index holds
//! its exact entry, that the bucket audits clean, and that no two checkpoints of one size seen
//! anywhere (either instance's read API, the bucket) had different roots: every one of them is
//! the final tree's root at its size. Not a speed measurement: a check of the failover promise,
//! with its timing.

use crate::child::request_within;
use anyhow::{bail, Context as _, Result};
use nospy_log::object::{BlockingObjects, ObjectTiles};
use nospy_log::{TileCache, TileReader};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::SignerKey;
use nospy_tlog::Hash;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ORIGIN: &str = "failover.bench.nospy.example/log";

/// How the run is set up.
#[derive(Debug, Clone)]
pub struct Failover {
    /// `s3://BUCKET/PREFIX[?options]`: the log goes into a new prefix under it.
    pub storage: String,
    /// The PostgreSQL database: the log gets a new schema in it (dropped at the end).
    pub database: String,
    /// How many times the sequencing instance is stopped.
    pub rounds: usize,
    /// Every how many rounds the stop is SIGSTOP (then SIGCONT) rather than SIGKILL; 0: never.
    pub pause_every: usize,
    /// Concurrent submitters (each sends to either instance).
    pub clients: usize,
    /// Where the keys and configuration go.
    pub dir: PathBuf,
    /// Print the figures as JSON.
    pub json: bool,
}

/// One `nospy serve` child and its address; killed when dropped (paused or not), so that a run
/// that fails leaves no instance behind.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the benchmark (see the module documentation).
pub fn run(f: &Failover) -> Result<()> {
    let run_id = format!(
        "failover_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let work = f.dir.join(format!("nospy-bench-{run_id}"));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let (base, query) = f.storage.split_once('?').unwrap_or((&f.storage, ""));
    let url = format!(
        "{}/{run_id}{}{query}",
        base.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" }
    );
    let r = failover(f, &work, &url, &run_id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _ = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&f.database, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {run_id} CASCADE"))
            .await
    });
    if r.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("what the instances said is kept: {}", work.display());
    }
    r
}

fn failover(f: &Failover, work: &Path, url: &str, schema: &str) -> Result<()> {
    let key = SignerKey::from_seed(ORIGIN, [21; 32])?;
    let vendor = SignerKey::from_seed("vendor.bench.example", [22; 32])?;
    let key_file = work.join("log.key");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(&key_file)?
        .write_all(key.to_private_string().as_bytes())?;
    let cfg = work.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor.verifier()
        ),
    )?;
    let start = || serve(url, &f.database, schema, &key_file, &cfg);
    let mut instances = [start()?, start()?];
    let addrs: Arc<Mutex<[SocketAddr; 2]>> =
        Arc::new(Mutex::new([instances[0].addr, instances[1].addr]));
    let seen: Arc<Mutex<BTreeMap<u64, Hash>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let faults: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // The watcher: every checkpoint either instance serves, or the bucket holds.
    {
        let (addrs, seen, faults, stop) =
            (addrs.clone(), seen.clone(), faults.clone(), stop.clone());
        let (tiles, vkey) = (ObjectTiles::from_url(url)?, key.verifier());
        threads.push(std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return lock(&faults).push(format!("the watcher's runtime: {e}")),
            };
            while !stop.load(Relaxed) {
                let mut texts = Vec::new();
                for a in *lock(&addrs) {
                    if let Some((200, body)) = probe(a, "/checkpoint") {
                        texts.push(body.into_bytes());
                    }
                }
                if let Ok(Some((b, _))) = rt.block_on(tiles.checkpoint()) {
                    texts.push(b);
                }
                for t in texts {
                    let Ok(sc) = SignedCheckpoint::open(&t, &vkey) else {
                        lock(&faults).push("a checkpoint that does not verify".into());
                        continue;
                    };
                    let c = sc.checkpoint;
                    if let Some(r) = lock(&seen).insert(c.size, c.root) {
                        if r != c.root {
                            lock(&faults).push(format!(
                                "two checkpoints of size {} with different roots",
                                c.size
                            ));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    // The submitters: each to either instance, the other when one does not answer.
    for c in 0..f.clients as u64 {
        let (addrs, acked, faults, stop, busy, vendor) = (
            addrs.clone(),
            acked.clone(),
            faults.clone(),
            stop.clone(),
            busy.clone(),
            vendor.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = c * 1_000_000_000;
            let mut pick = c as usize;
            while !stop.load(Relaxed) {
                let e = nospy_testkit::fixtures::release_submission(i, &vendor);
                i += 1;
                pick += 1;
                let a = lock(&addrs)[pick % 2];
                // A paused instance answers nothing: the client gives up and tries the other, as
                // a client behind a load balancer would.
                match request_within(a, "POST", "/add", &e, Duration::from_secs(3)) {
                    Some((200, body)) => {
                        let index = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["index"].as_u64());
                        match index {
                            Some(index) => {
                                if let Some(prev) = lock(&acked).insert(index, e.clone()) {
                                    if prev != e {
                                        lock(&faults)
                                            .push(format!("index {index} acknowledged twice"));
                                    }
                                }
                            }
                            None => lock(&faults).push(format!("no index in {body}")),
                        }
                    }
                    Some((503, _)) | None => {
                        busy.fetch_add(1, Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Some((status, body)) => lock(&faults).push(format!("HTTP {status}: {body}")),
                }
            }
        }));
    }
    let started = Instant::now();
    // Milliseconds from the stop to a larger checkpoint served by the other, kills and pauses
    // apart (a paused leader's lease ends only when its session has been idle for 3 s).
    let (mut after_kill, mut after_pause): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut kills, mut pauses) = (0usize, 0usize);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..f.rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(100 + rng % 400));
        let leader = wait_for_leader(&instances)?;
        let other = 1 - leader;
        let size_before = published_size(instances[leader].addr).unwrap_or(0);
        let pid = instances[leader].child.id().to_string();
        let pause = f.pause_every > 0 && (round + 1) % f.pause_every == 0;
        let t = Instant::now();
        if pause {
            signal("-STOP", &pid)?;
        } else {
            instances[leader].child.kill()?;
            instances[leader].child.wait()?;
        }
        // The other publishes a larger checkpoint: the failover is done.
        loop {
            if published_size(instances[other].addr).is_some_and(|s| s > size_before)
                && leads(instances[other].addr)
            {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("round {round}: no takeover within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if pause {
            after_pause.push(ms);
            pauses += 1;
            signal("-CONT", &pid)?;
            // It wakes, finds itself fenced or its lease gone, and steps down.
            let t = Instant::now();
            while leads(instances[leader].addr) {
                if t.elapsed() > Duration::from_secs(30) {
                    bail!("round {round}: the paused instance still leads 30 s after waking");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            after_kill.push(ms);
            kills += 1;
            instances[leader] = start()?;
            lock(&addrs)[leader] = instances[leader].addr;
        }
        if let Some(e) = lock(&faults).first() {
            bail!("round {round}: {e}");
        }
        if !f.json && (round + 1) % 10 == 0 {
            eprintln!(
                "{} rounds, {} entries acknowledged ({:.0} s)",
                round + 1,
                lock(&acked).len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    drop(instances);
    if let Some(e) = lock(&faults).first() {
        bail!("{e}");
    }
    // Every acknowledged index holds its entry, the bucket audits clean, and every checkpoint
    // seen is the final tree at its size.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tiles = ObjectTiles::from_url(url)?;
    let report = rt.block_on(nospy_log::object::audit(
        &tiles,
        &key.verifier(),
        &mut |_, _| {},
    ))?;
    let source = BlockingObjects::new(tiles, rt.handle().clone());
    let cache = TileCache::new(64);
    let reader = TileReader::new(&source, &cache, report.entries);
    let acked = lock(&acked).clone();
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
        if bundle.as_ref().and_then(|(_, e)| e.get((i % 256) as usize)) != acked.get(i) {
            bail!("acknowledged index {i} holds another entry");
        }
    }
    let seen = lock(&seen).clone();
    for (size, root) in &seen {
        if *size > 0 && nospy_tlog::merkle::root(&reader, nospy_tlog::TreeSize(*size))? != *root {
            bail!("a checkpoint of size {size} seen during the run is not the final tree's");
        }
    }
    after_kill.sort_by(f64::total_cmp);
    after_pause.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
            .round()
    };
    let figures = json!({
        "rounds": f.rounds,
        "kills": kills,
        "pauses": pauses,
        "clients": f.clients,
        "acknowledged": acked.len(),
        "entries": report.entries,
        "answered_503": busy.load(Relaxed),
        "lost": 0,
        "forks": 0,
        "checkpoints_seen": seen.len(),
        "takeover_ms_p50": pct(&after_kill, 0.5),
        "takeover_ms_p99": pct(&after_kill, 0.99),
        "takeover_ms_max": pct(&after_kill, 1.0),
        "pause_takeover_ms_p50": pct(&after_pause, 0.5),
        "pause_takeover_ms_max": pct(&after_pause, 1.0),
        "seconds": started.elapsed().as_secs_f64().round(),
    });
    if f.json {
        crate::print_json(&figures)?;
    } else {
        println!(
            "{kills} kills and {pauses} pauses of the sequencing instance under {} submitters: {} entries acknowledged, none lost, no fork among {} checkpoints seen, the bucket audits clean; takeover after a kill p50 {} ms, p99 {} ms, max {} ms; after a pause max {} ms",
            f.clients,
            acked.len(),
            seen.len(),
            figures["takeover_ms_p50"],
            figures["takeover_ms_p99"],
            figures["takeover_ms_max"],
            figures["pause_takeover_ms_max"]
        );
    }
    Ok(())
}

/// A GET that a paused instance does not hold up for long.
fn probe(a: SocketAddr, path: &str) -> Option<(u16, String)> {
    request_within(a, "GET", path, b"", Duration::from_millis(500))
}

fn signal(sig: &str, pid: &str) -> Result<()> {
    let ok = Command::new("kill").args([sig, pid]).status()?.success();
    anyhow::ensure!(ok, "kill {sig} {pid} failed");
    Ok(())
}

/// The size of the checkpoint an instance serves.
fn published_size(a: SocketAddr) -> Option<u64> {
    let (status, body) = probe(a, "/checkpoint")?;
    (status == 200)
        .then(|| body.lines().nth(1)?.parse().ok())
        .flatten()
}

/// Whether an instance says it sequences the log.
fn leads(a: SocketAddr) -> bool {
    probe(a, "/metrics")
        .is_some_and(|(_, body)| body.lines().any(|l| l == "nospy_sequencer_leader 1"))
}

fn wait_for_leader(instances: &[Instance; 2]) -> Result<usize> {
    let t = Instant::now();
    loop {
        for (k, i) in instances.iter().enumerate() {
            if leads(i.addr) {
                return Ok(k);
            }
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("no instance leads within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `nospy serve --storage` (this very binary) on a free loopback port.
fn serve(url: &str, database: &str, schema: &str, key: &Path, cfg: &Path) -> Result<Instance> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--storage",
            url,
            "--database",
            database,
            "--schema",
            schema,
        ])
        .arg("--key")
        .arg(key)
        .arg("--config")
        .arg(cfg)
        .args(["--listen", "127.0.0.1:0", "--max-batch", "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting nospy serve")?;
    let (addr, mut err) = crate::child::listening(&mut child)?;
    // What it says goes on into a file beside the keys (kept when the run fails).
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.with_file_name(format!("instance-{}.log", child.id())))?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut log);
    });
    Ok(Instance { child, addr })
}
