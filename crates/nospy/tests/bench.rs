//! The benchmark commands run end to end on small inputs and print the keys DESIGN §12 fixes
//! for their `--json` output. (No figure is asserted: timings on shared machines are noise.)

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;

fn bench(args: &[&str], keys: &[&str]) -> serde_json::Value {
    let t = tempfile::tempdir().unwrap();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--dir", s(t.path()), "--json"]);
    let r = ok(&all);
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bench {args:?}: not one JSON object ({e}):\n{}", r.stdout));
    for k in keys {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("bench {args:?}: no number {k:?} in {v}"));
        assert!(x.is_finite() && x >= 0.0, "bench {args:?}: {k} = {x}");
    }
    v
}

#[test]
fn bench_log_reports_the_design_keys() {
    let v = bench(
        &[
            "log",
            "--entries",
            "3000",
            "--batch",
            "1000",
            "--proofs",
            "200",
        ],
        &[
            "appends_per_s",
            "limit_appends_per_s",
            "limit_ratio",
            "proof_us_p50",
            "proof_us_p99",
        ],
    );
    assert!(v["appends_per_s"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn bench_verify_reports_the_design_keys() {
    bench(
        &[
            "verify",
            "--bundles",
            "40",
            "--seconds",
            "0.2",
            "--hash-mib",
            "1",
        ],
        &[
            "bundles_per_s_per_core",
            "hash_mb_per_s",
            "hash_ratio",
            "evidence_per_s_per_core",
            "evidence_with_capture_per_s_per_core",
        ],
    );
}

#[test]
fn bench_serve_submits_everything_and_reports_the_design_keys() {
    let v = bench(
        &[
            "serve",
            "--entries",
            "300",
            "--clients",
            "8",
            "--read-seconds",
            "0.2",
        ],
        &[
            "submissions_per_s",
            "latency_ms_p50",
            "latency_ms_p99",
            "tile_reads_per_s",
            "http_floor_per_s",
            "http_floor_ratio",
        ],
    );
    // Every submission was acknowledged, so the log holds every one.
    assert_eq!(v["log_size"], 300, "{v}");
    assert!(v["submissions_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["http_floor_per_s"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn bench_monitor_judges_everything_and_reports_the_design_keys() {
    let v = bench(
        &[
            "monitor",
            "--devices",
            "200",
            "--rules",
            "2000",
            "--records",
            "20000",
            "--packets",
            "20000",
        ],
        &[
            "ipfix_records_per_s_per_core",
            "pcap_packets_per_s",
            "tcpdump_packets_per_s",
            "pcap_ratio",
            "pcap_ratio_10k_devices",
        ],
    );
    // A fifth of the generated records go where no manifest allows.
    let viol = v["ipfix_violations"].as_u64().unwrap();
    assert!((3000..5000).contains(&viol), "{v}");
    assert_eq!(v["rules"], 2000, "{v}");
}

/// The monitor through NATS (the server at 127.0.0.1:4222): the single-process, raw JetStream
/// and end-to-end figures side by side; the bench itself fails unless each merged report has
/// the single process's flows, violation rows and device counts.
#[test]
fn bench_monitor_through_nats_reports_the_three_rates_side_by_side() {
    let v = bench(
        &[
            "monitor",
            "--nats",
            "nats://127.0.0.1:4222",
            "--devices",
            "200",
            "--rules",
            "2000",
            "--records",
            "20000",
            "--partitions",
            "4",
        ],
        &[
            "single_process_records_per_s",
            "two_single_processes_records_per_s",
            "ratio_two_single_processes",
            "jetstream_raw_records_per_s",
            "end_to_end_1_worker_records_per_s",
            "end_to_end_2_workers_records_per_s",
            "ratio_1_worker",
            "ratio_2_workers",
            "collector_alone_records_per_s",
            "worker_alone_records_per_s",
            "single_process_cpu_s_per_million_records",
            "collector_cpu_s_per_million_records",
            "worker_cpu_s_per_million_records",
            // The server runs on this machine: its CPU is read, and so the pipeline's.
            "server_cpu_s_per_million_records",
            "pipeline_cpu_s_per_million_records",
        ],
    );
    assert_eq!(v["records"], 20000, "{v}");
    let stages: f64 = [
        "collector_cpu_s_per_million_records",
        "worker_cpu_s_per_million_records",
        "server_cpu_s_per_million_records",
    ]
    .iter()
    .map(|k| v[k].as_f64().unwrap())
    .sum();
    let pipeline = v["pipeline_cpu_s_per_million_records"].as_f64().unwrap();
    assert!((stages - pipeline).abs() < 0.01, "{v}");
    // The most end to end can reach, from the pipeline's CPU (none when so few records took
    // less than the clock's tick).
    assert_eq!(v["ratio_ceiling"].is_number(), pipeline > 0.0, "{v}");
    // Batches of at most 8,192 flows: the 20,000 records' devices are in each of the 4
    // partitions, in one batch or more each.
    let batches = v["batches"].as_u64().unwrap();
    assert!((4..=4 + 20000 / 8192).contains(&batches), "{v}");
    assert!(v["bottleneck"].is_string(), "{v}");
}

#[test]
fn bench_kills_loses_nothing_over_a_few_kills() {
    let v = bench(
        &["kills", "--rounds", "3", "--clients", "4"],
        &["kills", "acknowledged", "lost"],
    );
    assert_eq!(v["kills"], 3);
    assert_eq!(v["lost"], 0);
    assert!(v["acknowledged"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn bench_soak_keeps_memory_bounded_and_loses_nothing() {
    let v = bench(
        &["soak", "--seconds", "3", "--ceiling-mb", "1024"],
        &["acknowledged", "lost", "peak_rss_mb"],
    );
    assert_eq!(v["lost"], 0);
    assert!(v["acknowledged"].as_u64().unwrap() > 0, "{v}");
    assert!(v["peak_rss_mb"].as_f64().unwrap() < 1024.0, "{v}");
    // The hostile requests were answered, not dropped on the floor.
    let requests = v["requests"].as_object().unwrap();
    assert!(requests.keys().any(|k| k == "oversize: 413"), "{v}");
    assert!(requests.keys().any(|k| k == "malformed: 400"), "{v}");
}
