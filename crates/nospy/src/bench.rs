//! `nospy bench`: performance measured against the same machine's own limits, in one run.

use crate::util::print_json;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use nospy_log::{Log, Sequencer};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle;
use nospy_tlog::note::SignerKey;
use nospy_tlog::tile::TileId;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Flow conformance: IPFIX records decoded and judged per second on one core, and pcap
    /// packets per second beside `tcpdump -r` with the equivalent one-device filter.
    ///
    /// Generates a fleet of --devices devices (a model per ten devices, each model's manifest
    /// with its share of --rules rules: IP prefixes with services, every tenth a DNS name),
    /// --records IPFIX records in 1,400-byte export messages (80% allowed, 20% not), decoded and
    /// judged on one thread; then writes a pcap of --packets packets (TCP conversations with
    /// handshakes, UDP exchanges) and reads and judges it with the whole fleet and with one
    /// device (and one device on a pcap of as many packets of its own traffic), beside `tcpdump
    /// -n -r FILE -w /dev/null 'host <that device>'` on the same file in the same run (IPFIX:
    /// best of three; pcap: five rounds taking each measurement in turn, the best of each
    /// kept). Needs tcpdump. Use a release build:
    /// `cargo run --release -- bench monitor`.
    Monitor {
        /// Devices in the fleet.
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Rules over all manifests.
        #[arg(long, default_value_t = 100_000)]
        rules: usize,
        /// IPFIX records to decode and judge.
        #[arg(long, default_value_t = 3_000_000)]
        records: usize,
        /// Packets in the pcap.
        #[arg(long, default_value_t = 2_000_000)]
        packets: usize,
        /// Directory for the pcap (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exposure on a national operator's inventory: parsing it, judging a policy's rules,
    /// sweeping the caps and writing the HTML report, and the whole `nospy exposure` command.
    ///
    /// Generates a CSV inventory of --devices devices (core, access, transport and management
    /// elements; a designated vendor in each; sensitive sites; 5G and 4G) into a temporary file
    /// (not timed), then times, beside a reference measured in the same run (reading the file and
    /// splitting every line into its fields, the least any reader must do): parsing it strictly,
    /// judging examples/exposure-uk.toml's rules, a 0-50% cap sweep by 5%, the HTML report; and
    /// the real binary doing all of it. Use a release build: `cargo run --release -- bench
    /// exposure`.
    Exposure {
        /// Devices in the inventory.
        #[arg(long, default_value_t = 1_000_000)]
        devices: usize,
        /// Directory for the inventory (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The real server over loopback: signed submissions per second (each acknowledged only
    /// once durable), their latency, and tile reads per second.
    ///
    /// Signs --entries release statements first (not timed), starts `nospy serve` on a new log
    /// in a temporary directory, and has --clients keep-alive connections submit them all
    /// (verify, deduplicate, sequence, fsync, acknowledge), then read random full tiles and entry
    /// bundles for --read-seconds. The reference, measured first in the same run: the same
    /// clients POSTing the same bodies to a bare HTTP server that answers at once, the floor set
    /// by this machine's HTTP stack and loopback (`http_floor_ratio` = submissions / floor). Use a
    /// release build: `cargo run --release -- bench serve`.
    Serve {
        /// Submissions to make.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Concurrent client connections (each waits for its answer before the next submission,
        /// so this bounds how large a batch can grow).
        #[arg(long, default_value_t = 512)]
        clients: usize,
        /// How long to read tiles.
        #[arg(long, default_value_t = 3.0)]
        read_seconds: f64,
        /// Directory for the log (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bundle verifications per second on one core, and artifact hashing beside
    /// `openssl speed -evp sha256` measured in the same run.
    ///
    /// Makes --bundles bundles (a release and two evaluators' attestations each, under one
    /// checkpoint cosigned by two witnesses, in a log of three entries per bundle), then verifies
    /// them on one thread, round after round, for --seconds, with one verifier (which checks each
    /// checkpoint's signatures once). Every verdict must be "admit". Then hashes a --hash-mib MiB
    /// file from the page cache and compares with OpenSSL's SHA-256 on 1 MiB blocks. Use a release
    /// build: `cargo run --release -- bench verify`.
    Verify {
        /// Distinct bundles to verify.
        #[arg(long, default_value_t = 200)]
        bundles: usize,
        /// How long to verify.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Size of the file hashed, in MiB.
        #[arg(long, default_value_t = 512)]
        hash_mib: usize,
        /// Directory for the file hashed (default: the system's temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Durable log appends and inclusion proofs, beside this machine's SHA-256 and fsynced write
    /// throughput measured in the same run.
    ///
    /// Appends --entries entries of --entry-size bytes in batches of --batch through the real
    /// sequencer (tiles, bundles, fsyncs, signed checkpoint per batch), then generates --proofs
    /// inclusion proofs for random entries of the resulting log: in the steady state of a reader
    /// whose tile cache holds the tiles (after one unmeasured pass), and with the entry's own
    /// level-0 tile evicted before each proof, so that it is read from its file and its interior
    /// nodes recomputed (255 SHA-256 node hashes).
    ///
    /// The machine's limit (DESIGN.md §11, "raw SHA-256 + sequential write") is the rate at which
    /// one core hashes each entry's bytes and the disk then writes them durably, one after the
    /// other; the write rate is measured as an ideal one-file log would write (the same bytes in
    /// all, the same bytes per fsync as a batch), before and after the appends. Two stricter limits are reported beside
    /// it: all cores hashing while the disk writes (whichever is slower), and that again bounded
    /// by the rate at which the file system makes new small files durable, since tlog-tiles needs
    /// two new files per 256 entries. Use a release build:
    /// `cargo run --release -- bench log`.
    Log {
        /// Number of entries to append.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Size of each entry in bytes (at most 65,535).
        #[arg(long, default_value_t = 1024)]
        entry_size: usize,
        /// Entries per batch (one checkpoint and one round of fsyncs per batch).
        #[arg(long, default_value_t = 32_768)]
        batch: usize,
        /// Inclusion proofs to time.
        #[arg(long, default_value_t = 20_000)]
        proofs: usize,
        /// Directory to create the log in (default: a new directory under the system's temporary
        /// directory). It is removed afterwards unless --keep is given.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the log afterwards.
        #[arg(long)]
        keep: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: BenchCommand) -> Result<ExitCode> {
    match c {
        BenchCommand::Exposure { devices, dir, json } => {
            crate::benchexposure::run(devices, &dir.unwrap_or_else(std::env::temp_dir), json)
        }
        BenchCommand::Monitor {
            devices,
            rules,
            records,
            packets,
            dir,
            json,
        } => crate::benchmonitor::run(
            devices,
            rules,
            records,
            packets,
            &dir.unwrap_or_else(std::env::temp_dir),
            json,
        ),
        BenchCommand::Serve {
            entries,
            clients,
            read_seconds,
            dir,
            json,
        } => {
            anyhow::ensure!(
                entries >= 1 && clients >= 1,
                "--entries and --clients must be at least 1"
            );
            let base = dir.unwrap_or_else(std::env::temp_dir);
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
            std::fs::create_dir_all(&work)
                .with_context(|| format!("creating {}", work.display()))?;
            let r = bench_serve(&work, entries, clients, read_seconds, json);
            let _ = std::fs::remove_dir_all(&work);
            let _ = std::fs::write(&stamp, b"");
            r
        }
        BenchCommand::Verify {
            bundles,
            seconds,
            hash_mib,
            dir,
            json,
        } => {
            anyhow::ensure!(
                bundles >= 1 && seconds > 0.0 && hash_mib >= 1,
                "--bundles, --seconds and --hash-mib must be positive"
            );
            crate::benchverify::run(
                bundles,
                seconds,
                hash_mib,
                dir.unwrap_or_else(std::env::temp_dir),
                json,
            )
        }
        BenchCommand::Log {
            entries,
            entry_size,
            batch,
            proofs,
            dir,
            keep,
            json,
        } => {
            anyhow::ensure!(
                (8..=65_535).contains(&entry_size),
                "--entry-size must be 8 to 65,535 bytes"
            );
            anyhow::ensure!(
                batch >= 1 && entries >= 1,
                "--batch and --entries must be at least 1"
            );
            let base = dir.unwrap_or_else(std::env::temp_dir);
            let work = base.join(format!("nospy-bench-{}", std::process::id()));
            let r = bench_log(&work, entries, entry_size, batch, proofs, json);
            if !keep {
                let _ = std::fs::remove_dir_all(&work);
            }
            r
        }
    }
}

fn say(json: bool, msg: &str) {
    if !json {
        eprintln!("{msg}");
    }
}

fn bench_log(
    work: &Path,
    n: u64,
    size: usize,
    batch: usize,
    proofs: usize,
    json: bool,
) -> Result<ExitCode> {
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
        std::hint::black_box(log.inclusion_proof(i, size_now)?);
    }
    let mut warm = Vec::with_capacity(proofs);
    for &i in &indexes {
        let t = Instant::now();
        let p = log.inclusion_proof(i, size_now)?;
        warm.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    // Cold tile: the entry's level-0 tile is evicted first, so each proof reads it from its file
    // and recomputes its interior nodes (the few higher tiles, and the right edge, stay cached).
    let mut cold = Vec::with_capacity(proofs);
    for &i in &indexes {
        log.cache().evict(&TileId::containing(0, i, size_now));
        let t = Instant::now();
        let p = log.inclusion_proof(i, size_now)?;
        cold.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p);
    }
    // The figures are only worth something if the proofs are right: check a sample.
    for &i in indexes.iter().step_by((proofs / 500).max(1)) {
        let mut e = fill.clone();
        e[..8].copy_from_slice(&i.to_be_bytes());
        let p = log.inclusion_proof(i, size_now)?;
        merkle::verify_inclusion(i, size_now, leaf_hash(&e).as_ref(), &p, root.as_ref())
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
        print_json(&report)?;
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
    Ok(ExitCode::SUCCESS)
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

fn bench_serve(
    work: &Path,
    n: usize,
    clients: usize,
    read_seconds: f64,
    json: bool,
) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    say(
        json,
        &format!("signing {n} release statements (not timed) ..."),
    );
    let vendor = SignerKey::from_seed("release.vendorx.example", [4; 32])?;
    let entries: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| nospy_server::bench::release_submission(i, &vendor))
        .collect();
    let bytes: usize = entries.iter().map(|e| e.len()).sum();
    say(
        json,
        &format!("submitting over loopback with {clients} connections ..."),
    );
    let f = nospy_server::bench::run(work, entries, &vendor, clients, read_seconds)
        .map_err(|e| anyhow::anyhow!(e))?;
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
        print_json(&report)?;
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
    Ok(ExitCode::SUCCESS)
}
