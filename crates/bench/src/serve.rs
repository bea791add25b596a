//! `nospy bench serve`: signed submissions to the real server over loopback, against a bare
//! HTTP server answering the same clients (the load generator is [`crate::load`]).

use crate::say;
use anyhow::{Context as _, Result};
use nospy_tlog::note::SignerKey;
use serde_json::json;
use std::path::Path;

/// Runs the benchmark in a new directory under `base`: `entries` signed releases submitted by
/// `clients` keep-alive connections, then `read_seconds` of tile reads; prints the figures.
pub fn run(
    base: &Path,
    entries: usize,
    clients: usize,
    read_seconds: f64,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        entries >= 1 && clients >= 1,
        "--entries and --clients must be at least 1"
    );
    let work = base.join(format!("nospy-bench-serve-{}", std::process::id()));
    // When the last run deleted its log: file creation on some file systems (ext4
    // without a journal) is slower for minutes after many deletions, which lowers the
    // figures; say so rather than let a low figure pass for the server's.
    let stamp = base.join("nospy-bench-serve.last");
    if let Some(ago) = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .filter(|d| d.as_secs() < 600)
    {
        eprintln!(
            "note: the previous run deleted its log {} s ago; on file systems that allocate files more slowly for a few minutes after many deletions (ext4 without a journal), wait 10 minutes for comparable figures",
            ago.as_secs()
        );
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let r = bench_serve(&work, entries, clients, read_seconds, json);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::write(&stamp, b"");
    r
}

fn bench_serve(work: &Path, n: usize, clients: usize, read_seconds: f64, json: bool) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    say(
        json,
        &format!("signing {n} release statements (not timed) ..."),
    );
    let vendor = SignerKey::from_seed("release.vendorx.example", [4; 32])?;
    let entries: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| nospy_testkit::fixtures::release_submission(i, &vendor))
        .collect();
    let bytes: usize = entries.iter().map(|e| e.len()).sum();
    say(
        json,
        &format!("submitting over loopback with {clients} connections ..."),
    );
    let f = crate::load::run(work, entries, &vendor, clients, read_seconds)?;
    let report = json!({
        "entries": n,
        "entry_bytes_avg": bytes / n,
        "clients": clients,
        "submissions_per_s": f.submissions_per_s.round(),
        "latency_ms_p50": (f.latency_ms_p50 * 100.0).round() / 100.0,
        "latency_ms_p99": (f.latency_ms_p99 * 100.0).round() / 100.0,
        "overloaded_503": f.overloaded,
        "mean_batch": f.mean_batch.round(),
        "cpu_us_per_submission": f.cpu_us_per_submission.map(|c| c.round()),
        "cpu_us_by_thread": f.cpu_us_by_thread.iter().map(|(k, v)| (k.clone(), json!((v * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>(),
        "tile_reads_per_s": f.tile_reads_per_s.round(),
        "http_floor_per_s": f.http_floor_per_s.round(),
        "http_floor_ratio": (f.submissions_per_s / f.http_floor_per_s * 1000.0).round() / 1000.0,
        "log_size": f.size,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        crate::print_json(&report)?;
    } else {
        println!("signed submissions  {:>10.0} /s durable ({n} of {} B each, {clients} connections, {} answered 503 and retried)", f.submissions_per_s, bytes / n, f.overloaded);
        println!(
            "latency             p50 {:.2} ms, p99 {:.2} ms; {:.0} entries per batch (fsync round) on average",
            f.latency_ms_p50, f.latency_ms_p99, f.mean_batch
        );
        if let Some(c) = f.cpu_us_per_submission {
            println!("cpu per submission  {c:>10.0} µs (server and clients, all threads, user and system)");
            let by: Vec<String> = f
                .cpu_us_by_thread
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect();
            println!("  by thread                    {}", by.join(", "));
        }
        println!(
            "tile reads          {:>10.0} /s (random full tiles and entry bundles)",
            f.tile_reads_per_s
        );
        println!(
            "reference           {:>10.0} /s bare HTTP POSTs of the same bodies, same clients, answered at once (ratio {:.2})",
            f.http_floor_per_s,
            f.submissions_per_s / f.http_floor_per_s
        );
    }
    Ok(())
}
