//! `nospy bench log --storage s3://... --database postgres://...`: durable appends of the log on
//! object storage with its state in PostgreSQL, beside the two servers' own limits measured in
//! the same run (the store's conditional PUTs of the same sizes at the same concurrency, and
//! PostgreSQL's insert rate for the rows each entry costs).

use crate::say;
use anyhow::{Context as _, Result};
use nospy_log::cluster::{self, ClusterSequencer};
use nospy_log::object::ObjectTiles;
use nospy_testkit::Rng;
use nospy_tlog::note::SignerKey;
use serde_json::json;
use std::time::Instant;

/// Objects written at once in the PUT measurement, as the sequencer writes them.
const CONCURRENCY: usize = 16;

/// Runs the benchmark in a new prefix of `storage` and a new schema of `database`, both left
/// behind only with `keep`: `entries` appends of `entry_size` bytes in batches of `batch`, one
/// entry in ten a repeat of an earlier one (deduplication at work).
pub fn run(
    storage: &str,
    database: &str,
    entries: u64,
    entry_size: usize,
    batch: usize,
    keep: bool,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        (16..=65_535).contains(&entry_size),
        "--entry-size must be 16 to 65,535 bytes"
    );
    anyhow::ensure!(
        batch >= 1 && entries >= 1,
        "--batch and --entries must be at least 1"
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    let run_id = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let (base, query) = storage.split_once('?').unwrap_or((storage, ""));
    let url = format!(
        "{}/{run_id}{}{query}",
        base.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" }
    );
    let tiles = ObjectTiles::from_url(&url)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let r = rt.block_on(bench(
        &tiles, database, &run_id, entries, entry_size, batch, json,
    ));
    if !keep {
        let _ = rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(database, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {run_id} CASCADE"))
                .await
        });
    }
    r
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

async fn bench(
    tiles: &ObjectTiles,
    database: &str,
    schema: &str,
    n: u64,
    size: usize,
    batch: usize,
    json: bool,
) -> Result<()> {
    let key = SignerKey::from_seed("bench.nospy.example/log", [9; 32])?;
    cluster::init(database, schema, tiles, &key).await?;
    let mut seq = ClusterSequencer::lead(database, schema, tiles.clone(), key)
        .await?
        .context("another instance holds the bench schema's lease")?;

    say(
        json,
        &format!("appending {n} entries of {size} bytes in batches of {batch} ..."),
    );
    let mut rng = Rng::new(7);
    let mut made = 0u64;
    let mut fresh_total = 0u64;
    let mut times = Vec::new();
    let objects_before = seq.objects_written();
    let start = Instant::now();
    while made < n {
        let k = batch.min((n - made) as usize);
        let entries: Vec<Vec<u8>> = (0..k as u64)
            .map(|j| {
                let i = made + j;
                // One in ten repeats an earlier entry: deduplicated, not appended.
                let id = if i >= 10 && i.is_multiple_of(10) {
                    rng.below(i)
                } else {
                    i
                };
                let mut e = vec![0x5a; size];
                e[..8].copy_from_slice(&id.to_be_bytes());
                e
            })
            .collect();
        let t = Instant::now();
        let out = seq.append(&entries).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        fresh_total += out.iter().filter(|a| !a.duplicate).count() as u64;
        made += k as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let appends_per_s = n as f64 / elapsed;
    let objects = seq.objects_written() - objects_before;
    let puts_per_batch = objects as f64 / times.len() as f64;
    times.sort_by(f64::total_cmp);

    // The store's limit: conditional PUTs of a batch's object sizes, CONCURRENCY at a time.
    say(
        json,
        "measuring the store: conditional PUTs of the same sizes ...",
    );
    let sizes: Vec<usize> = vec![8192, 256 * (size + 2), 32 * 64, 600];
    let put_count = objects.clamp(64, 2048) as usize;
    let t = Instant::now();
    let mut done = 0usize;
    while done < put_count {
        let mut set = tokio::task::JoinSet::new();
        for j in done..(done + CONCURRENCY).min(put_count) {
            let tiles = tiles.clone();
            let data = vec![(j % 251) as u8; sizes[j % sizes.len()]];
            set.spawn(async move { tiles.put_immutable(&format!("scratch/{j}"), data).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
            done += 1;
        }
    }
    let puts_per_s = put_count as f64 / t.elapsed().as_secs_f64();

    // PostgreSQL's limit: the rows each entry costs (a pending row with the entry and a dedup
    // row), inserted a batch at a time.
    say(json, "measuring PostgreSQL: inserts of the same rows ...");
    let (mut db, conn) = tokio_postgres::connect(database, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    db.batch_execute(&format!(
        "CREATE TABLE {schema}.scratch_dedup (leaf_hash bytea PRIMARY KEY, idx bigint NOT NULL);
         CREATE TABLE {schema}.scratch_pending (idx bigint PRIMARY KEY, entry bytea NOT NULL);"
    ))
    .await?;
    let rows = (n as usize).min(200_000);
    let t = Instant::now();
    let mut at = 0usize;
    while at < rows {
        let k = batch.min(rows - at);
        let idx: Vec<i64> = (at..at + k).map(|i| i as i64).collect();
        let keys: Vec<Vec<u8>> = (0..k)
            .map(|_| {
                let mut h = vec![0u8; 32];
                for c in h.chunks_mut(8) {
                    c.copy_from_slice(&rng.next_u64().to_be_bytes());
                }
                h
            })
            .collect();
        let data: Vec<Vec<u8>> = (0..k).map(|_| vec![0x5a; size]).collect();
        let tx = db.transaction().await?;
        tx.execute(
            &format!("INSERT INTO {schema}.scratch_pending SELECT * FROM UNNEST($1::bigint[], $2::bytea[])"),
            &[&idx, &data],
        )
        .await?;
        tx.execute(
            &format!("INSERT INTO {schema}.scratch_dedup SELECT * FROM UNNEST($1::bytea[], $2::bigint[])"),
            &[&keys, &idx],
        )
        .await?;
        tx.commit().await?;
        at += k;
    }
    let pg_entries_per_s = rows as f64 / t.elapsed().as_secs_f64();
    // A batch needs its rows inserted, then its objects written: one after the other.
    let per_batch = batch as f64;
    let limit = per_batch / (per_batch / pg_entries_per_s + puts_per_batch / puts_per_s);

    let report = json!({
        "storage": tiles.name(),
        "entries": n,
        "appended": fresh_total,
        "entry_size": size,
        "batch": batch,
        "batches": times.len(),
        "appends_per_s": appends_per_s.round(),
        "batch_ms_p50": pct(&times, 0.5),
        "batch_ms_p99": pct(&times, 0.99),
        "puts_per_checkpoint": (puts_per_batch * 10.0).round() / 10.0,
        "store_puts_per_s": puts_per_s.round(),
        "database_entries_per_s": pg_entries_per_s.round(),
        "limit_appends_per_s": limit.round(),
        "limit_ratio": (appends_per_s / limit * 1000.0).round() / 1000.0,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        crate::print_json(&report)?;
    } else {
        println!(
            "durable appends     {:>10.0} /s  ({n} entries of {size} B, {fresh_total} new, the rest repeats; {} batches of {batch})",
            appends_per_s,
            times.len()
        );
        println!(
            "time per batch      p50 {:.1} ms, p99 {:.1} ms (an entry's acknowledgement waits at most its batch and the one before)",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
        println!("objects per batch   {puts_per_batch:.1} (tiles, bundles, the checkpoint)");
        println!(
            "store: conditional PUTs {puts_per_s:.0}/s ({CONCURRENCY} at a time, tile and bundle sizes)"
        );
        println!("database: entries recorded {pg_entries_per_s:.0}/s (a pending row and a dedup row each)");
        println!(
            "limit               {:>10.0} appends/s   ratio {:.2}  (the batch's rows, then its objects)",
            limit,
            appends_per_s / limit
        );
    }
    Ok(())
}
