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
