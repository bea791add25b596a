//! `nospy bench log`: durable appends against the machine's own SHA-256 and fsynced-write
//! limits, and inclusion proofs from tiles.

use crate::say;
use anyhow::{Context as _, Result};
use nospy_log::{Log, Sequencer};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle;
use nospy_tlog::note::SignerKey;
use nospy_tlog::tile::TileId;
use nospy_tlog::{LogIndex, TreeSize};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs the benchmark in a new directory under `base` (removed afterwards unless `keep`):
/// `entries` appends of `entry_size` bytes in batches of `batch`, then `proofs` inclusion
/// proofs; prints the figures (JSON with `json`).
pub fn run(
    base: &Path,
    entries: u64,
    entry_size: usize,
    batch: usize,
    proofs: usize,
    keep: bool,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        (8..=65_535).contains(&entry_size),
        "--entry-size must be 8 to 65,535 bytes"
    );
    anyhow::ensure!(
        batch >= 1 && entries >= 1,
        "--batch and --entries must be at least 1"
    );
    let work = base.join(format!("nospy-bench-{}", std::process::id()));
    let r = bench_log(&work, entries, entry_size, batch, proofs, json);
    if !keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    r
}

fn bench_log(
    work: &Path,
    n: u64,
    size: usize,
    batch: usize,
    proofs: usize,
    json: bool,
) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    say(json, "measuring the machine: SHA-256 ...");
    let sha1 = sha256_rate(size, 1);
    let sha_all = sha256_rate(size, cores);
    // Per entry: the leaf hash covers the entry plus one byte, the tiles about one 65-byte node
    // hash; the files take the entry, its 2-byte length and its 32-byte leaf hash (higher tiles
    // add 1/255 of that).
    let hashed = (size + 1 + 65) as f64;
    let written = (size + 2 + 32) as f64 * (1.0 + 1.0 / 255.0);
    say(
        json,
        "measuring the machine: fsynced sequential write, durable file creation ...",
    );
    // Written as an ideal log would: one file, the same bytes per batch, one fsync per batch.
    let chunk = (batch as f64 * written) as usize;
    let volume = (n as f64 * written) as usize;
    let write_before = fsync_write_rate(work, chunk, volume, "before")?;
    let files_before = durable_files_rate(work, "before")?;
    let origin = "bench.nospy.example/log";
    let key = SignerKey::from_seed(origin, [42; 32])?;
    let dir = work.join("log");
    Sequencer::init(&dir, origin, &key, None)?;
    let mut seq = Sequencer::open(&dir, key)?;
    say(
        json,
        &format!("appending {n} entries of {size} bytes in batches of {batch} ..."),
    );
    let mut buf: Vec<Vec<u8>> = Vec::new();
    let mut batch_times: Vec<Duration> = Vec::new();
    let mut done = 0u64;
    let fill: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    while done < n {
        let k = batch.min((n - done) as usize);
        buf.clear();
        for i in 0..k as u64 {
            let mut e = fill.clone();
            e[..8].copy_from_slice(&(done + i).to_be_bytes());
            buf.push(e);
        }
        let refs: Vec<&[u8]> = buf.iter().map(|e| e.as_slice()).collect();
        let t = Instant::now();
        let out = seq.append(&refs)?;
        batch_times.push(t.elapsed());
        anyhow::ensure!(
            out.iter().all(|a| !a.duplicate),
            "bench entries must be distinct"
        );
        done += k as u64;
        if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\r  {done}/{n}");
            let _ = std::io::stderr().flush();
        }
    }
    say(json, "");
    say(
        json,
        "measuring the machine again: fsynced sequential write, durable file creation ...",
    );
    let write_after = fsync_write_rate(work, chunk, volume, "after")?;
    let files_after = durable_files_rate(work, "after")?;
    // The disks of shared machines vary by a factor of several within minutes: the reference is
    // measured before and after the appends and averaged.
    let write_rate = (write_before + write_after) / 2.0;
    let files_rate = (files_before + files_after) / 2.0;
    // DESIGN.md §11: the machine's "raw SHA-256 + sequential-write limit", the rate at which one
    // core hashes each entry and the disk then writes it durably, one after the other.
    let limit = 1.0 / (hashed / sha1 + written / write_rate);
    // Stricter: all cores hashing while the disk writes, whichever is slower.
    let limit_overlapped = (sha_all / hashed).min(write_rate / written);
    // tlog-tiles puts every 256 entries in two new files (a tile and a bundle): the rate at which
    // this file system makes new small files durable bounds any tlog-tiles log here.
    let limit_files = limit_overlapped.min(files_rate * 256.0 / 2.0);
    let total: Duration = batch_times.iter().sum();
    let appends_per_s = n as f64 / total.as_secs_f64();
    let mut bt: Vec<f64> = batch_times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    bt.sort_by(f64::total_cmp);
    drop(seq);

    say(json, &format!("timing {proofs} inclusion proofs ..."));
    let log = Log::open(&dir)?;
    let size_now = log.size();
    let root = log.checkpoint().checkpoint.root;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let indexes: Vec<u64> = (0..proofs)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % size_now
        })
        .collect();
    // Steady state: a reader that has served proofs before holds the tiles in its cache (the
    // default cache holds 4,096 expanded tiles, a million entries); one unmeasured pass warms it.
    for &i in &indexes {
        std::hint::black_box(log.inclusion_proof(LogIndex(i), TreeSize(size_now))?);
    }
    let mut warm = Vec::with_capacity(proofs);
    for &i in &indexes {
        let t = Instant::now();
        let p = log.inclusion_proof(LogIndex(i), TreeSize(size_now))?;
        warm.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    // Cold tile: the entry's level-0 tile is evicted first, so each proof reads it from its file
    // and recomputes its interior nodes (the few higher tiles, and the right edge, stay cached).
    let mut cold = Vec::with_capacity(proofs);
    for &i in &indexes {
        log.cache().evict(&TileId::containing(0, i, size_now));
        let t = Instant::now();
        let p = log.inclusion_proof(LogIndex(i), TreeSize(size_now))?;
        cold.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    // The figures are only worth something if the proofs are right: check a sample.
    for &i in indexes.iter().step_by((proofs / 500).max(1)) {
        let mut e = fill.clone();
        e[..8].copy_from_slice(&i.to_be_bytes());
        let p = log.inclusion_proof(LogIndex(i), TreeSize(size_now))?;
        merkle::verify_inclusion(
            LogIndex(i),
            TreeSize(size_now),
            leaf_hash(&e).as_ref(),
            &p,
            root.as_ref(),
        )
        .with_context(|| format!("benchmark proof for entry {i} does not verify"))?;
    }
    cold.sort_by(f64::total_cmp);
    warm.sort_by(f64::total_cmp);

    let pct = |v: &[f64], p: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize]
        }
    };
    let report = json!({
        "entries": n,
        "entry_size": size,
        "batch": batch,
        "batches": batch_times.len(),
        "cores": cores,
        "appends_per_s": appends_per_s.round(),
        "append_mb_per_s": (appends_per_s * size as f64 / 1e6).round(),
        "batch_ms_p50": pct(&bt, 0.5),
        "batch_ms_p99": pct(&bt, 0.99),
        "sha256_mb_per_s_one_core": (sha1 / 1e6).round(),
        "sha256_mb_per_s_all_cores": (sha_all / 1e6).round(),
        "fsync_write_mb_per_s": (write_rate / 1e6).round(),
        "fsync_write_mb_per_s_before_after": [(write_before / 1e6).round(), (write_after / 1e6).round()],
        "durable_files_per_s": files_rate.round(),
        "durable_files_per_s_before_after": [files_before.round(), files_after.round()],
        "limit_appends_per_s": limit.round(),
        "limit_ratio": (appends_per_s / limit * 1000.0).round() / 1000.0,
        "limit_overlapped_appends_per_s": limit_overlapped.round(),
        "limit_overlapped_ratio": (appends_per_s / limit_overlapped * 1000.0).round() / 1000.0,
        "limit_with_files_appends_per_s": limit_files.round(),
        "limit_with_files_ratio": (appends_per_s / limit_files * 1000.0).round() / 1000.0,
        "proofs": proofs,
        "proof_us_p50": pct(&warm, 0.5),
        "proof_us_p99": pct(&warm, 0.99),
        "proof_cold_tile_us_p50": pct(&cold, 0.5),
        "proof_cold_tile_us_p99": pct(&cold, 0.99),
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        crate::print_json(&report)?;
    } else {
        println!(
            "durable appends     {:>12.0} /s  ({} entries of {} B, {} batches of {})",
            appends_per_s,
            n,
            size,
            batch_times.len(),
            batch
        );
        println!(
            "time per batch      p50 {:.1} ms, p99 {:.1} ms",
            pct(&bt, 0.5),
            pct(&bt, 0.99)
        );
        println!(
            "machine: SHA-256    {:>8.0} MB/s one core, {:.0} MB/s on {cores} cores",
            sha1 / 1e6,
            sha_all / 1e6
        );
        println!(
            "machine: fsync'd seq. write {:.0} MB/s (before {:.0}, after {:.0}; {} MB per fsync)",
            write_rate / 1e6,
            write_before / 1e6,
            write_after / 1e6,
            chunk / 1_000_000
        );
        println!(
            "machine: durable new files  {:.0}/s (before {:.0}, after {:.0})",
            files_rate, files_before, files_after
        );
        println!(
            "machine limit       {:>12.0} appends/s   ratio {:.2}  (SHA-256 on one core + sequential write)",
            limit,
            appends_per_s / limit
        );
        println!(
            "overlapped limit    {:>12.0} appends/s   ratio {:.2}  (SHA-256 on all cores while the disk writes)",
            limit_overlapped,
            appends_per_s / limit_overlapped
        );
        println!(
            "with file creation  {:>12.0} appends/s   ratio {:.2}  (two new files per 256 entries)",
            limit_files,
            appends_per_s / limit_files
        );
        println!(
            "inclusion proof     steady state (tiles cached) p50 {:.1} µs, p99 {:.1} µs",
            pct(&warm, 0.5),
            pct(&warm, 0.99)
        );
        println!(
            "                    entry's tile read from file p50 {:.1} µs, p99 {:.1} µs",
            pct(&cold, 0.5),
            pct(&cold, 0.99)
        );
    }
    Ok(())
}

/// SHA-256 throughput in bytes/s over `size`-byte inputs, on `threads` threads at once.
fn sha256_rate(size: usize, threads: usize) -> f64 {
    let run = Duration::from_millis(400);
    let data = vec![0x5au8; size];
    let bytes: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let data = &data;
                s.spawn(move || {
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < run {
                        for _ in 0..256 {
                            std::hint::black_box(nospy_tlog::hash::sha256(data));
                        }
                        n += 256 * data.len() as u64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    bytes as f64 / run.as_secs_f64()
}

/// Sequential write throughput to a new file in `dir`, in bytes/s: `volume` bytes (what the log
/// writes) in `chunk`-byte pieces (what a batch writes), each followed by an fsync.
fn fsync_write_rate(dir: &Path, chunk: usize, volume: usize, tag: &str) -> Result<f64> {
    let p = dir.join(format!("fsync-probe-{tag}"));
    // As many bytes as the log writes, so that host write caches flatter neither side.
    let total = volume.clamp(64 << 20, 4 << 30).next_multiple_of(1 << 20);
    let chunk = chunk.clamp(1 << 20, total);
    let data = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    {
        let mut f =
            std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        let mut done = 0;
        let mut since_sync = 0;
        while done < total {
            f.write_all(&data)?;
            done += data.len();
            since_sync += data.len();
            if since_sync >= chunk || done >= total {
                f.sync_all()?;
                since_sync = 0;
            }
        }
    }
    // Kept until the end: deleting now would make the disk discard blocks while the log is timed.
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// How many new 8 KiB files per second this file system makes durable, written and fsynced by
/// several threads at once as the sequencer does, directory included.
fn durable_files_rate(dir: &Path, tag: &str) -> Result<f64> {
    let d = dir.join(format!("files-probe-{tag}"));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let n = 1024usize;
    let data = vec![0x3cu8; 8192];
    let t = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..32)
            .map(|k| {
                let (d, data) = (&d, &data);
                s.spawn(move || -> std::io::Result<()> {
                    for i in (k..n).step_by(32) {
                        let mut f = std::fs::File::create(d.join(i.to_string()))?;
                        f.write_all(data)?;
                        f.sync_all()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join()
                .map_err(|_| anyhow::anyhow!("probe thread panicked"))??;
        }
        Ok(())
    })?;
    std::fs::File::open(&d)?.sync_all()?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
