//! `nospy bench dashboard`: every dashboard page of a large log (1,000,000 entries by default),
//! each answered by the real server over loopback, its time to the last byte at p50 and p99
//! and its size, against the budgets of the dashboard (p99 at most 20 ms, at most 100 KB) and
//! against a reference measured in the same run by the same client: the log's checkpoint, a
//! small file the server answers from memory.
//!
//! The log is made with the sequencer directly (not timed): signed releases of VendorX, every
//! hundredth firmware revoked; the server builds its lookup index from the tiles on start (not
//! timed either: it says how long). The operator pages get an inventory of `devices` devices
//! over as many distinct firmware as `devices / 10`, and the UK exposure rules; the fleet is
//! computed once per published size: the first computation is reported apart (`fleet_first_ms`),
//! then the cached page is timed like the others.

use crate::say;
use anyhow::{Context as _, Result};
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The dashboard's budgets per page.
pub const BUDGET_P99_MS: f64 = 20.0;
/// At most this many bytes per page (head and body).
pub const BUDGET_BYTES: usize = 100 * 1024;

const ORIGIN: &str = "bench.nospy.example/log";

fn fw(i: u64) -> Sha256 {
    Sha256::of(format!("firmware {i}").as_bytes())
}

/// Runs the benchmark in a new directory under `base` and prints the figures.
pub fn run(
    base: &Path,
    entries: u64,
    devices: usize,
    requests: usize,
    keep: bool,
    json: bool,
) -> Result<bool> {
    anyhow::ensure!(
        entries >= 200 && requests >= 10,
        "--entries must be at least 200 and --requests at least 10"
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    let work = base.join(format!("nospy-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let r = bench(&work, entries, devices.max(10), requests, json);
    if keep {
        say(json, &format!("kept {}", work.display()));
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    r
}

/// Appends `n` entries: releases of firmware i, and after every hundredth a revocation of it.
/// Returns how many releases it made (firmware 0 .. that).
fn build_log(dir: &Path, key: &SignerKey, vendor: &SignerKey, n: u64, json: bool) -> Result<u64> {
    use nospy_statement::predicate::{Predicate, Revocation};
    nospy_log::Sequencer::init(dir, ORIGIN, key, None)?;
    let mut seq = nospy_log::Sequencer::open(dir, key.clone())?;
    let started = Instant::now();
    let mut next = 0u64;
    let mut written = 0u64;
    while written < n {
        let chunk = (n - written).min(20_000);
        // Sign on every core: the statement for release i, and a revocation after i % 100 == 0.
        let mut plan = Vec::with_capacity(chunk as usize);
        while (plan.len() as u64) < chunk {
            plan.push((next, false));
            if next.is_multiple_of(100) && (plan.len() as u64) < chunk {
                plan.push((next, true));
            }
            next += 1;
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = plan.len().div_ceil(threads);
        let signed: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .chunks(per.max(1))
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&(i, revoke)| {
                                if revoke {
                                    nospy_statement::sign(
                                        vec![nospy_statement::ResourceDescriptor {
                                            digest: Some(nospy_statement::DigestSet::sha256(&fw(
                                                i,
                                            ))),
                                            ..Default::default()
                                        }],
                                        &Predicate::Revocation(Revocation {
                                            reason: "a remote shell".into(),
                                            effective: "2026-01-01T00:00:00Z".into(),
                                        }),
                                        &[vendor],
                                    )
                                    .to_json()
                                } else {
                                    nospy_testkit::fixtures::release_submission(i, vendor)
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("signing thread"))
                .collect()
        });
        let refs: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
        seq.append(&refs)?;
        written += chunk;
        say(
            json,
            &format!(
                "  {written} of {n} entries ({:.0} s)",
                started.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(next)
}

/// The operator's files: an inventory over `devices / 10` distinct firmware (the logged ones,
/// and a tenth unlogged), the UK's exposure rules.
fn operator_files(work: &Path, releases: u64, devices: usize) -> Result<()> {
    let mut csv = String::from("device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n");
    let distinct = (devices / 10).max(1) as u64;
    for d in 0..devices {
        let k = d as u64 % distinct;
        let firmware = if k % 10 == 9 {
            fw(releases * 10 + k)
        } else {
            fw((k * 7919) % releases)
        };
        let (vendor, function) = match d % 5 {
            0 | 1 => ("VendorX", "access"),
            2 => ("VendorY", "access"),
            3 => ("VendorY", "core"),
            _ => ("VendorZ", "transport"),
        };
        csv.push_str(&format!(
            "dev-{d:07},{vendor},vx-1,{function},5g,site-{:03},{},10.{}.{}.{},{},1.0,100000\n",
            d % 200,
            d % 200 < 10,
            (d >> 16) & 255,
            (d >> 8) & 255,
            d & 255,
            firmware.to_hex()
        ));
    }
    std::fs::write(work.join("inventory.csv"), csv)?;
    std::fs::write(
        work.join("exposure.toml"),
        "[[rule]]\nname = \"Out of sensitive sites\"\nvendor = \"VendorX\"\nscope = { sensitive = true }\nmax_share = 0.0\nmeasure = \"devices\"\neffective = \"2023-01-28\"\n\n\
         [[rule]]\nname = \"Out of the core\"\nvendor = \"VendorX\"\nscope = { functions = [\"core\"] }\nmax_share = 0.0\nmeasure = \"devices\"\neffective = \"2023-12-31\"\n\n\
         [[rule]]\nname = \"At most 35% of the access network\"\nvendor = \"VendorX\"\nscope = { functions = [\"access\"] }\nmax_share = 0.35\nmeasure = \"weight\"\neffective = \"2023-10-31\"\n",
    )?;
    Ok(())
}

/// One timed GET: milliseconds to the last byte, the bytes received (the body, and the head
/// counted from its status line and fields) and the status.
fn get(addr: SocketAddr, path: &str) -> (f64, usize, u16) {
    let t = Instant::now();
    let r = nospy_testkit::http::request(addr, "GET", path, b"");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let head: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    (ms, r.body.len() + head + 17, r.status)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench(work: &Path, n: u64, devices: usize, requests: usize, json: bool) -> Result<bool> {
    let key = SignerKey::from_seed(ORIGIN, [7; 32])?;
    let vendor = SignerKey::from_seed("release.vendorx.example", [4; 32])?;
    let dir = work.join("log");
    say(
        json,
        &format!("making a log of {n} signed entries (not timed) ..."),
    );
    let releases = build_log(&dir, &key, &vendor, n, json)?;
    operator_files(work, releases, devices)?;
    std::fs::write(
        work.join("agreement.toml"),
        format!(
            "name = \"bench\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n[[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n",
            key.verifier(),
            vendor.verifier()
        ),
    )?;
    std::fs::write(
        work.join("serve.toml"),
        "[dashboard]\nagreements = [\"agreement.toml\"]\ninventory = \"inventory.csv\"\nexposure = \"exposure.toml\"\n",
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    say(
        json,
        "starting the server; it indexes the log (not timed) ...",
    );
    let started = Instant::now();
    let server = rt.block_on(nospy_server::start(nospy_server::Options {
        config: Some(work.join("serve.toml")),
        queue: 1024,
        max_batch: 256,
        index_delay: Duration::from_millis(50),
        ..nospy_server::Options::new(
            nospy_server::Storage::Dir(dir),
            key,
            "127.0.0.1:0".parse().expect("an address"),
        )
    }))?;
    anyhow::ensure!(
        rt.block_on(server.wait_for(Duration::from_secs(3600), |p| p.indexed >= n)),
        "the server did not index the log within an hour"
    );
    let index_s = started.elapsed().as_secs_f64();
    let addr = server.addr;
    let t = Instant::now();
    let (_, _, status) = get(addr, "/fleet");
    let fleet_first_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(status == 200, "/fleet answered {status}");

    let mut rng = nospy_testkit::Rng::new(n);
    // Each page with a fresh random target per request.
    type Target<'a> = Box<dyn FnMut(&mut nospy_testkit::Rng) -> String + 'a>;
    let pages: Vec<(&str, Target)> = vec![
        ("status", Box::new(|_| "/".into())),
        ("entries", Box::new(|_| "/entries".into())),
        (
            "entries_deep",
            Box::new(|r| format!("/entries?before={}", 1 + r.below(n - 1))),
        ),
        ("entry", Box::new(|r| format!("/entries/{}", r.below(n)))),
        (
            "entry_proof",
            Box::new(|r| format!("/entries/{}/proof", r.below(n))),
        ),
        (
            "search",
            Box::new(|r| format!("/search?q={}", fw(r.below(releases)).to_hex())),
        ),
        (
            "search_vendor",
            Box::new(|r| {
                if r.below(2) == 0 {
                    "/search?q=VendorX".into()
                } else {
                    format!("/search?q=VendorX&after={}", r.below(n))
                }
            }),
        ),
        (
            "verdict",
            Box::new(|r| format!("/verdict/{}", fw(r.below(releases)).to_hex())),
        ),
        ("witnesses", Box::new(|_| "/witnesses".into())),
        ("fleet", Box::new(|_| "/fleet".into())),
        ("violations", Box::new(|_| "/violations".into())),
        ("exposure", Box::new(|_| "/exposure".into())),
        ("status_json", Box::new(|_| "/status.json".into())),
        ("reference_checkpoint", Box::new(|_| "/checkpoint".into())),
    ];
    say(
        json,
        &format!("timing {requests} requests of each page, one connection each ..."),
    );
    let mut figures = serde_json::Map::new();
    let mut reference = 0.0;
    let mut met = true;
    let mut worst: f64 = 0.0;
    for (name, mut target) in pages {
        let mut times = Vec::with_capacity(requests);
        let mut bytes_max = 0;
        for _ in 0..requests {
            let path = target(&mut rng);
            let (ms, bytes, status) = get(addr, &path);
            anyhow::ensure!(status == 200, "{path} answered {status}");
            times.push(ms);
            bytes_max = bytes_max.max(bytes);
        }
        times.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        if name == "reference_checkpoint" {
            reference = p99;
        } else {
            let ok = p99 <= BUDGET_P99_MS && bytes_max <= BUDGET_BYTES;
            met &= ok;
            worst = worst.max(p99);
        }
        figures.insert(
            name.to_string(),
            json!({"p50_ms": (p50 * 100.0).round() / 100.0, "p99_ms": (p99 * 100.0).round() / 100.0, "bytes_max": bytes_max}),
        );
    }
    rt.block_on(server.shutdown())?;
    let report = json!({
        "entries": n,
        "devices": devices,
        "requests_per_page": requests,
        "index_build_s": (index_s * 10.0).round() / 10.0,
        "fleet_first_ms": fleet_first_ms.round(),
        "pages": figures,
        "reference_p99_ms": (reference * 100.0).round() / 100.0,
        "worst_p99_ms": (worst * 100.0).round() / 100.0,
        "worst_p99_ratio": if reference > 0.0 { ((worst / reference) * 10.0).round() / 10.0 } else { 0.0 },
        "budget_p99_ms": BUDGET_P99_MS,
        "budget_bytes": BUDGET_BYTES,
        "budgets_met": met,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        crate::print_json(&report)?;
    } else {
        println!("log of {n} entries; the server indexed it in {index_s:.1} s; inventory of {devices} devices");
        println!(
            "fleet, first computation at this size: {fleet_first_ms:.0} ms (then cached until the log grows)"
        );
        println!(
            "{:<22} {:>9} {:>9} {:>10}",
            "page", "p50 ms", "p99 ms", "max bytes"
        );
        for (name, v) in &figures {
            println!(
                "{name:<22} {:>9.2} {:>9.2} {:>10}",
                v["p50_ms"].as_f64().unwrap_or_default(),
                v["p99_ms"].as_f64().unwrap_or_default(),
                v["bytes_max"]
            );
        }
        println!(
            "worst page p99 {worst:.2} ms = {:.1} x the reference (the checkpoint, p99 {reference:.2} ms); budgets (p99 <= {BUDGET_P99_MS} ms, <= {} KB): {}",
            if reference > 0.0 { worst / reference } else { 0.0 },
            BUDGET_BYTES / 1024,
            if met { "met" } else { "NOT MET" }
        );
    }
    Ok(met)
}
