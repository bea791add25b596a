//! nospy against the tlog-tiles log written by Tessera's POSIX driver
//! (`../shared/vectors/tlog/tessera-testdata-log`).

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;

const VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
const SKEY: &str =
    "PRIVATE+KEY+example.com/log/testdata+33d7b496+AeymY/SZAX0jZcJ8enZ5FY1Dz+wTML2yWSkK+9DSF3eg";
const WORDS: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];

fn tessera() -> std::path::PathBuf {
    vectors().join("tlog/tessera-testdata-log/testdata/log")
}

#[test]
fn audit_passes_on_the_tessera_log() {
    let r = ok(&["log", "audit", s(&tessera()), "--key", VKEY, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 15);
    // tile/0/000.p/15 and its 14 older versions; the same for the bundles.
    assert_eq!(v["tiles"], 15);
    assert_eq!(v["bundles"], 15);
    assert_eq!(v["uncovered"].as_array().unwrap().len(), 0);
}

#[test]
fn audit_refuses_the_tessera_log_under_another_key() {
    // Same name, another key: the signature line is ignored as unknown, so nothing verifies.
    let t = tempfile::tempdir().unwrap();
    let k = t.path().join("k");
    let other = new_key(&k, "example.com/log/testdata");
    let r = run(&["log", "audit", s(&tessera()), "--key", other.trim()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("checkpoint"), "{}", r.stderr);
}

#[test]
fn one_add_at_a_time_writes_the_same_bytes_as_tessera() {
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("tessera.key");
    std::fs::write(&key, SKEY).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let log = t.path().join("log");
    ok(&[
        "log",
        "init",
        s(&log),
        "--origin",
        "example.com/log/testdata",
        "--key",
        s(&key),
    ]);
    assert_eq!(
        std::fs::read(log.join("checkpoint")).unwrap(),
        std::fs::read(tessera().join("checkpoint.0")).unwrap()
    );
    for (i, w) in WORDS.iter().enumerate() {
        let f = t.path().join(format!("e{i}"));
        std::fs::write(&f, w).unwrap();
        let r = ok(&["log", "add", "--raw", s(&log), s(&f), "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["entries"][0]["index"], i as u64);
        // Every intermediate checkpoint is Tessera's too.
        let want = std::fs::read(tessera().join(format!("checkpoint.{}", i + 1))).unwrap();
        assert_eq!(
            std::fs::read(log.join("checkpoint")).unwrap(),
            want,
            "checkpoint after {} entries",
            i + 1
        );
    }
    assert_eq!(
        std::fs::read(log.join("checkpoint")).unwrap(),
        std::fs::read(tessera().join("checkpoint")).unwrap()
    );
    let ours = files_under(&log.join("tile"));
    let theirs = files_under(&tessera().join("tile"));
    let names = |v: &Vec<(String, Vec<u8>)>| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    assert_eq!(ours, theirs, "tiles and bundles differ from Tessera's");
}
