//! `nospy log copy` between a log directory and a real S3 server (SeaweedFS), both ways.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use nospy_testkit::s3::SeaweedFs;

#[test]
fn a_log_goes_into_a_bucket_and_back_and_audits_clean() {
    let s3 = SeaweedFs::start();
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "copy.nospy.example/log");
    // 300 entries: a full tile and a partial one, their bundles, a level-1 partial tile.
    let entries: Vec<std::path::PathBuf> = (0..300)
        .map(|i| {
            let p = t.path().join(format!("e{i}"));
            std::fs::write(&p, format!("entry {i}")).unwrap();
            p
        })
        .collect();
    let mut args = vec!["log", "add", s(&log), "--raw"];
    args.extend(entries.iter().map(|p| s(p)));
    ok(&args);

    let url = s3.url("logs/copy");
    let r = ok(&["log", "copy", s(&log), &url, "--key", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["size"], 300);
    assert_eq!(v["published"], true);
    let created = v["created"].as_u64().unwrap();
    assert!(created >= 5, "{v}");

    // Again: everything is there already.
    let r = ok(&["log", "copy", s(&log), &url, "--key", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["created"], 0);
    assert_eq!(v["already_there"], created);
    assert_eq!(v["published"], false);

    // The bucket audits clean on its own; a tile changed in it does not.
    let r = ok(&["log", "audit", &url, "--key", &vkey, "--json"]);
    let a: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (a["ok"].clone(), a["entries"].clone()),
        (true.into(), 300.into())
    );
    assert_eq!(a["tiles"], 3, "{a}");
    assert_eq!(a["bundles"], 2, "{a}");

    // Back into a directory: verified, and the same files as the original's tiles.
    let back = t.path().join("back");
    let r = ok(&["log", "copy", &url, s(&back), "--key", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["size"], 300);
    let r = ok(&["log", "audit", s(&back), "--key", &vkey, "--json"]);
    let a: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(a["ok"], true);
    assert_eq!(a["entries"], 300);
    let tiles = |d: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        files_under(&d.join("tile"))
            .into_iter()
            .filter(|(p, _)| !p.contains(".p/") || p.ends_with("000.p/44"))
            .collect()
    };
    assert_eq!(tiles(&back), tiles(&log));
    assert_eq!(
        std::fs::read(back.join("checkpoint")).unwrap(),
        std::fs::read(log.join("checkpoint")).unwrap()
    );
}

#[test]
fn a_bucket_whose_tile_was_changed_fails_its_audit() {
    let s3 = SeaweedFs::start();
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "audit.nospy.example/log");
    let entries: Vec<std::path::PathBuf> = (0..260)
        .map(|i| {
            let p = t.path().join(format!("e{i}"));
            std::fs::write(&p, format!("entry {i}")).unwrap();
            p
        })
        .collect();
    let mut args = vec!["log", "add", s(&log), "--raw"];
    args.extend(entries.iter().map(|p| s(p)));
    ok(&args);
    // The bucket is changed behind the log's back: a full tile's first hash flipped by a plain
    // PUT, as anyone who can write the bucket could.
    let url = s3.url("logs/tampered");
    ok(&["log", "copy", s(&log), &url, "--key", &vkey]);
    let endpoint = s3.endpoint();
    let put = |path: &str, body: &[u8]| {
        let addr: std::net::SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
        nospy_testkit::http::request(
            addr,
            "PUT",
            &format!("/{}/logs/tampered/{path}", nospy_testkit::s3::BUCKET),
            body,
        )
    };
    let mut tile = std::fs::read(log.join("tile/0/000")).unwrap();
    tile[0] ^= 1;
    assert_eq!(put("tile/0/000", &tile).status, 200);
    let r = run(&["log", "audit", &url, "--key", &vkey, "--json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let a: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(a["ok"], false);
    assert!(a["error"].as_str().unwrap().contains("tile/0/000"), "{a}");
    // Without --key: refused, a bucket holds no configuration to take one from.
    let r = run(&["log", "audit", &url]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("needs --key"), "{}", r.stderr);
}

#[test]
fn copy_errors_name_what_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "copy.nospy.example/log");
    for (args, want) in [
        (
            vec!["log", "copy", s(&log), "s3://", "--key", &vkey],
            "no bucket",
        ),
        (
            vec![
                "log",
                "copy",
                s(&log),
                "s3://b/p?frobnicate=1",
                "--key",
                &vkey,
            ],
            "is not an S3 option",
        ),
        (
            vec!["log", "copy", s(&log), s(&log), "--key", &vkey],
            "one log directory and one s3://",
        ),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("cli_{name}_{}_{nanos}", std::process::id())
}

fn drop_schema(s: &str) {
    let _ = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
        .arg(format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
        .output();
}

/// `n` files of distinct entries named after `tag`.
fn entry_files(dir: &std::path::Path, tag: &str, n: usize) -> Vec<std::path::PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{tag}-{i}"));
            std::fs::write(&p, format!("{tag} entry {i}")).unwrap();
            p
        })
        .collect()
}

fn indexes(stdout: &str) -> Vec<(u64, bool)> {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["duplicate"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn adds_on_object_storage_survive_kills_and_wait_for_each_other() {
    let s3 = SeaweedFs::start();
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("log.key");
    let vkey = new_key(&key, "cluster.nospy.example/log");
    let url = s3.url("cluster");
    let sc = schema("kills");
    let add = |files: &[std::path::PathBuf]| {
        let mut args = vec![
            "log".to_string(),
            "add".into(),
            url.clone(),
            "--database".into(),
            DB.into(),
            "--schema".into(),
            sc.clone(),
            "--key".into(),
            s(&key).into(),
            "--raw".into(),
            "--json".into(),
        ];
        args.extend(files.iter().map(|p| s(p).to_string()));
        args
    };
    let first = entry_files(t.path(), "first", 10);
    let r = ok(&add(&first).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        indexes(&r.stdout),
        (0..10).map(|i| (i, false)).collect::<Vec<_>>()
    );

    // Kill appends at moments of the batch; each time, the next add of the same files finds
    // them (or appends them) and the bucket audits clean.
    let mut rng = nospy_testkit::Rng::new(11);
    for round in 0..4 {
        let files = entry_files(t.path(), &format!("round{round}"), 300);
        let args = add(&files);
        let mut child = nospy()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + rng.below(400)));
        let _ = child.kill();
        let _ = child.wait();
        let r = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let got = indexes(&r.stdout);
        assert_eq!(got.len(), 300);
        let audit = ok(&["log", "audit", &url, "--key", &vkey, "--json"]);
        let a: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
        assert_eq!(a["ok"], true, "round {round}: {a}");
        assert_eq!(
            a["entries"].as_u64().unwrap(),
            10 + 300 * (round + 1),
            "round {round}"
        );
    }
    // What was acknowledged first keeps its indices.
    let r = ok(&add(&first).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        indexes(&r.stdout),
        (0..10).map(|i| (i, true)).collect::<Vec<_>>()
    );

    // Two at once: one leads, the other waits for the lease; both are appended.
    let (a, b) = (
        entry_files(t.path(), "a", 50),
        entry_files(t.path(), "b", 50),
    );
    let (aa, ba) = (add(&a), add(&b));
    let cb = std::thread::spawn(move || nospy().args(&ba).output().unwrap());
    let ca = nospy().args(&aa).output().unwrap();
    let cb = cb.join().unwrap();
    assert!(
        ca.status.success(),
        "{}",
        String::from_utf8_lossy(&ca.stderr)
    );
    assert!(
        cb.status.success(),
        "{}",
        String::from_utf8_lossy(&cb.stderr)
    );
    let audit = ok(&["log", "audit", &url, "--key", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(v["entries"], 10 + 1200 + 100);
    drop_schema(&sc);
}

/// Every checkpoint the bucket showed, by size: two of one size must be the same.
fn remember(seen: &mut std::collections::BTreeMap<u64, String>, url: &str, vkey: &str) {
    let t = tempfile::tempdir().unwrap();
    let back = t.path().join("m");
    let r = run(&["log", "copy", url, s(&back), "--key", vkey, "--json"]);
    if r.code != 0 {
        return;
    }
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let size = v["size"].as_u64().unwrap();
    let root = v["root"].as_str().unwrap().to_string();
    if let Some(before) = seen.insert(size, root.clone()) {
        assert_eq!(
            before, root,
            "two checkpoints of size {size} with different roots"
        );
    }
}

/// How long any one command of the paused-leader test may take before the test fails (each
/// waits at most 60 s for the lease): a guard against a hang, not a measurement.
const BOUND: std::time::Duration = std::time::Duration::from_secs(240);

/// Wakes (SIGCONT) and ends (SIGKILL) a process when dropped, so that a failing test leaves no
/// stopped process behind.
/// Disarmed once the process is woken and awaited (which kills it if it hangs), before its
/// pid can be reused.
struct Wake(Option<String>);

impl Drop for Wake {
    fn drop(&mut self) {
        for sig in ["-CONT", "-KILL"] {
            if let Some(pid) = &self.0 {
                let _ = std::process::Command::new("kill")
                    .args([sig, pid])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

#[test]
fn a_paused_leader_that_lost_its_lease_publishes_nothing_when_it_wakes() {
    let s3 = SeaweedFs::start();
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("log.key");
    let vkey = new_key(&key, "paused.nospy.example/log");
    let url = s3.url("paused");
    let sc = schema("paused");
    let add = |files: &[std::path::PathBuf]| {
        let mut args: Vec<String> = vec![
            "log".into(),
            "add".into(),
            url.clone(),
            "--database".into(),
            DB.into(),
            "--schema".into(),
            sc.clone(),
            "--key".into(),
            s(&key).into(),
            "--raw".into(),
            "--json".into(),
            "--wait".into(),
            "60s".into(),
        ];
        args.extend(files.iter().map(|p| s(p).to_string()));
        args
    };
    ok(&add(&entry_files(t.path(), "seed", 5))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let mut seen = std::collections::BTreeMap::new();
    remember(&mut seen, &url, &vkey);
    let mut rng = nospy_testkit::Rng::new(5);
    let mut expected = 5u64;
    for round in 0..3 {
        let a_files = entry_files(t.path(), &format!("a{round}"), 2000);
        let a = nospy()
            .args(add(&a_files))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30 + rng.below(300)));
        let pid = a.id().to_string();
        // Whatever happens below, the stopped instance is woken and ended with the test.
        let mut wake = Wake(Some(pid.clone()));
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status();
        // A partition: the paused leader's lease connection is cut; it does not know.
        let cut = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qAtc"])
            .arg(format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('nospy-sequencer:{sc}')::oid"
            ))
            .output()
            .unwrap();
        assert!(cut.status.success());
        // Another instance takes over and appends.
        let b_files = entry_files(t.path(), &format!("b{round}"), 20);
        let b = ok_within(
            &add(&b_files).iter().map(String::as_str).collect::<Vec<_>>(),
            BOUND,
        );
        let b_got = indexes(&b.stdout);
        remember(&mut seen, &url, &vkey);
        // The paused one wakes: either it never led (and appends now, after B), or it is fenced
        // and publishes nothing.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status();
        wake.0 = None;
        let out = wait_bounded(a, BOUND, "the woken instance");
        remember(&mut seen, &url, &vkey);
        eprintln!(
            "round {round}: the paused instance {}",
            if out.code == 0 {
                "appended after waking"
            } else {
                "stopped (fenced, or its database session ended while it was paused)"
            }
        );
        if out.code == 0 {
            let got = indexes(&out.stdout);
            assert!(got.iter().all(|(i, _)| !b_got.iter().any(|(j, _)| j == i)));
        } else {
            // Fenced by the new epoch, or its sessions ended by the database while it slept
            // (the lease's after 3 s idle, a transaction's after 5 s): either way it stops with
            // an error, having published nothing (the checkpoints seen are checked below).
            let err = &out.stderr;
            assert!(
                err.contains("another instance")
                    || err.contains("stopped")
                    || err.contains("database"),
                "{err}"
            );
            // Its batch, if it recorded one, is published by whoever leads next; add it again
            // to be sure every entry is in.
            ok_within(
                &add(&a_files).iter().map(String::as_str).collect::<Vec<_>>(),
                BOUND,
            );
            remember(&mut seen, &url, &vkey);
        }
        expected += 2000 + 20;
        let audit = ok(&["log", "audit", &url, "--key", &vkey, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
        assert_eq!(v["entries"].as_u64().unwrap(), expected, "round {round}");
        // B's acknowledged entries kept their indices.
        let again = ok_within(
            &add(&b_files).iter().map(String::as_str).collect::<Vec<_>>(),
            BOUND,
        );
        let again = indexes(&again.stdout);
        assert!(again.iter().zip(&b_got).all(|(x, y)| x.0 == y.0 && x.1));
    }
    drop_schema(&sc);
}

/// The short version of `nospy bench failover` (which runs a hundred rounds): two `nospy serve
/// --storage --database` instances under submissions to both; the sequencing one SIGKILLed
/// twice and SIGSTOPped once. Nothing acknowledged is lost, no two checkpoints of one size
/// differ, and the other instance publishes a larger checkpoint within 5 s of a kill.
#[test]
fn the_standby_takes_over_from_a_killed_or_paused_leader_and_nothing_acknowledged_is_lost() {
    let s3 = SeaweedFs::start();
    let t = tempfile::tempdir().unwrap();
    let r = ok(&[
        "bench",
        "failover",
        "--storage",
        &s3.url("failover"),
        "--database",
        DB,
        "--rounds",
        "3",
        "--pause-every",
        "3",
        "--clients",
        "3",
        "--dir",
        s(t.path()),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["kills"].as_u64(), v["pauses"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["lost"], 0);
    assert_eq!(v["forks"], 0);
    assert!(v["acknowledged"].as_u64().unwrap() > 0, "{v}");
    assert!(v["checkpoints_seen"].as_u64().unwrap() >= 3, "{v}");
    // After a kill, within the 5 s the design promises (a pause waits for the lease's session
    // to time out, 3 s, first).
    assert!(v["takeover_ms_max"].as_f64().unwrap() < 5000.0, "{v}");
    assert!(v["pause_takeover_ms_max"].as_f64().unwrap() > 0.0, "{v}");
}

/// With sslmode=require the database's certificate must verify for the host named: the
/// machine's PostgreSQL serves one for `localhost`, so reaching it as 127.0.0.1 is refused,
/// saying why, before anything is written.
#[test]
fn a_database_whose_certificate_does_not_verify_is_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("log.key");
    new_key(&key, "tls.nospy.example/log");
    let entry = t.path().join("e");
    std::fs::write(&entry, "an entry").unwrap();
    let r = run(&[
        "log",
        "add",
        "s3://b/p?endpoint=http://127.0.0.1:9&allow_http=true",
        "--database",
        "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=require sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        "--key",
        s(&key),
        "--raw",
        s(&entry),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
}
