//! Hostile input: corrupt and truncated tiles and bundles, malformed checkpoints and proofs, wrong
//! keys, oversized entries. Each gives a clear error naming the file and the problem, never a
//! panic, and nothing is partially appended.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::path::Path;

/// A log of 300 entries (one full tile, one partial) made one batch at a time.
fn log_300(dir: &Path) -> (std::path::PathBuf, String) {
    let (log, _key, vkey) = new_log(dir, "hostile.nospy.example/log");
    for chunk in 0..3 {
        let files: Vec<String> = (0..100)
            .map(|i| {
                let f = dir.join(format!("e{chunk}-{i}"));
                std::fs::write(&f, format!("entry {} {}", chunk * 100 + i, "x".repeat(i))).unwrap();
                f.to_str().unwrap().to_string()
            })
            .collect();
        let mut args = vec!["log", "add", "--raw", s(&log)];
        args.extend(files.iter().map(|f| f.as_str()));
        ok(&args);
    }
    (log, vkey)
}

fn no_panic(r: &Run) {
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
}

fn audit_fails_naming(log: &Path, vkey: &str, file: &str, problem: &str) {
    let r = run(&["log", "audit", s(log), "--key", vkey]);
    no_panic(&r);
    assert_eq!(r.code, 1, "audit should fail: {}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(file),
        "error should name {file}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(problem),
        "error should say {problem:?}: {}",
        r.stderr
    );
}

#[test]
fn corrupt_tiles_and_bundles_are_named_by_audit() {
    let t = tempfile::tempdir().unwrap();
    let (log, vkey) = log_300(t.path());
    ok(&["log", "audit", s(&log), "--key", &vkey]);
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, &str); 6] = [
        ("tile/0/000", |b| b[100] ^= 1, "hash 3 is"),
        ("tile/0/000", |b| b.truncate(8000), "should be 8192 bytes"),
        ("tile/0/001.p/44", |b| b.push(0), "should be 1408 bytes"),
        (
            "tile/entries/000",
            |b| b.truncate(b.len() - 3),
            "truncated inside entry 255",
        ),
        (
            "tile/entries/001.p/44",
            |b| b.extend_from_slice(&[0, 1, 65]),
            "should hold 44 entries",
        ),
        ("tile/1/000.p/1", |b| b[0] ^= 0x80, "hash 0 is"),
    ];
    for (file, damage, problem) in cases {
        let p = log.join(file);
        let good = std::fs::read(&p).unwrap();
        let mut bad = good.clone();
        damage(&mut bad);
        std::fs::write(&p, &bad).unwrap();
        audit_fails_naming(&log, &vkey, file, problem);
        std::fs::write(&p, &good).unwrap();
    }
    // An entry changed inside a bundle: the recomputed leaf disagrees with the tile (entry 255,
    // which no older partial bundle holds), or the older partial bundle disagrees (entry 0).
    let p = log.join("tile/entries/000");
    let good = std::fs::read(&p).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&p, &bad).unwrap();
    audit_fails_naming(&log, &vkey, "tile/0/000", "hash 255 is");
    bad = good.clone();
    bad[5] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    audit_fails_naming(&log, &vkey, "tile/entries/000.p/100", "not a prefix");
    std::fs::write(&p, &good).unwrap();
    // A missing tile.
    std::fs::rename(log.join("tile/0/000"), t.path().join("moved")).unwrap();
    audit_fails_naming(&log, &vkey, "tile/0/000", "missing");
    std::fs::rename(t.path().join("moved"), log.join("tile/0/000")).unwrap();
    ok(&["log", "audit", s(&log), "--key", &vkey]);
}

#[test]
fn malformed_checkpoints_are_refused_with_the_line() {
    let t = tempfile::tempdir().unwrap();
    let (log, vkey) = log_300(t.path());
    let p = log.join("checkpoint");
    let good = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = good.split('\n').collect();
    let cases = [
        (
            good.replacen(lines[1], "3OO", 1),
            "tree size \"3OO\" is not a decimal number",
        ),
        (good.replacen(lines[2], "AAAA", 1), "not base64 of 32 bytes"),
        (good.replacen("300\n", "301\n", 1), "does not verify"),
        (good.replacen("\n\n", "\n", 1), "malformed note"),
        (
            good.replacen("\u{2014} ", "- ", 1),
            "line 5: signature line does not start",
        ),
        (String::new(), "malformed note"),
    ];
    for (bad, problem) in cases {
        std::fs::write(&p, bad).unwrap();
        let r = run(&["log", "audit", s(&log), "--key", &vkey]);
        no_panic(&r);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("checkpoint") && r.stderr.contains(problem),
            "want {problem:?}: {}",
            r.stderr
        );
        let r = run(&["log", "checkpoint", s(&log)]);
        no_panic(&r);
        assert_eq!(r.code, 2);
    }
    std::fs::write(&p, good).unwrap();
}

#[test]
fn an_oversized_entry_appends_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, vkey) = new_log(t.path(), "big.nospy.example/log");
    let small = t.path().join("small");
    let big = t.path().join("big");
    std::fs::write(&small, b"fine").unwrap();
    std::fs::write(&big, vec![7u8; 65_536]).unwrap();
    let before = files_under(&log);
    let r = run(&["log", "add", "--raw", s(&log), s(&small), s(&big)]);
    no_panic(&r);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("big") && r.stderr.contains("65536 bytes"),
        "{}",
        r.stderr
    );
    assert_eq!(files_under(&log), before, "nothing may change");
    // Exactly 65,535 bytes is allowed.
    std::fs::write(&big, vec![7u8; 65_535]).unwrap();
    ok(&["log", "add", "--raw", s(&log), s(&small), s(&big)]);
    ok(&["log", "audit", s(&log), "--key", &vkey]);
    assert_eq!(ok(&["log", "entry", s(&log), "1"]).raw.len(), 65_535);
}

#[test]
fn wrong_keys_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key, _vkey) = new_log(t.path(), "keys.nospy.example/log");
    let other = t.path().join("other.key");
    new_key(&other, "keys.nospy.example/log");
    let f = t.path().join("e");
    std::fs::write(&f, b"x").unwrap();
    let r = run(&["log", "add", "--raw", s(&log), s(&f), "--key", s(&other)]);
    no_panic(&r);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("this log's key is"), "{}", r.stderr);
    // A key named differently from the origin cannot start a log.
    let odd = t.path().join("odd.key");
    new_key(&odd, "someone.else");
    let r = run(&[
        "log",
        "init",
        s(&t.path().join("log2")),
        "--origin",
        "keys.nospy.example/log",
        "--key",
        s(&odd),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("named after its origin"), "{}", r.stderr);
    // Garbage where a private key should be.
    std::fs::write(&odd, "PRIVATE+KEY+a+00000000+AAAA\n").unwrap();
    owner_only(&odd);
    let r = run(&["log", "add", "--raw", s(&log), s(&f), "--key", s(&odd)]);
    no_panic(&r);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("odd.key") && r.stderr.contains("not a private key"),
        "{}",
        r.stderr
    );
    // The key file is never overwritten.
    let r = run(&["key", "generate", "--name", "x", "--out", s(&other)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("must not exist"), "{}", r.stderr);
}

#[test]
fn proofs_verify_and_tampering_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let (log, vkey) = log_300(t.path());
    let entry = t.path().join("e1-17");
    let proof = t.path().join("p");
    ok(&[
        "log",
        "prove",
        s(&log),
        "--index",
        "117",
        "--out",
        s(&proof),
    ]);
    ok(&[
        "log",
        "verify-proof",
        s(&proof),
        "--entry",
        s(&entry),
        "--key",
        &vkey,
    ]);
    // The JSON forms carry the same things.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["log", "prove", s(&log), "--index", "117", "--json"]).stdout)
            .unwrap();
    assert_eq!(
        v["tlog_proof"].as_str().unwrap(),
        std::fs::read_to_string(&proof).unwrap()
    );
    assert_eq!(v["size"], 300);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["log", "entry", s(&log), "117", "--json"]).stdout).unwrap();
    use base64::Engine as _;
    let got = base64::engine::general_purpose::STANDARD
        .decode(v["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, std::fs::read(&entry).unwrap());
    // Against an earlier checkpoint the log kept (size 200).
    let old = t.path().join("p200");
    ok(&[
        "log",
        "prove",
        s(&log),
        "--index",
        "117",
        "--size",
        "200",
        "--out",
        s(&old),
    ]);
    let r = ok(&[
        "log",
        "verify-proof",
        s(&old),
        "--entry",
        s(&entry),
        "--key",
        &vkey,
        "--json",
    ]);
    assert!(r.stdout.contains("\"size\": 200"), "{}", r.stdout);
    let r = run(&["log", "prove", s(&log), "--index", "117", "--size", "150"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no checkpoint of size 150"),
        "{}",
        r.stderr
    );
    // Wrong entry, wrong key, tampered hash, malformed file.
    let verify = |entry: &std::path::Path, key: &str| {
        run(&[
            "log",
            "verify-proof",
            s(&proof),
            "--entry",
            s(entry),
            "--key",
            key,
        ])
    };
    let other = t.path().join("e1-18");
    let r = verify(&other, &vkey);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let k2 = t.path().join("k2");
    let v2 = new_key(&k2, "hostile.nospy.example/log");
    let r = verify(&entry, v2.trim());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let text = std::fs::read_to_string(&proof).unwrap();
    let line = text.lines().nth(2).unwrap();
    let mut flipped = line.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    std::fs::write(
        &proof,
        text.replacen(line, std::str::from_utf8(&flipped).unwrap(), 1),
    )
    .unwrap();
    let r = verify(&entry, &vkey);
    assert_eq!(r.code, 1, "{}", r.stderr);
    std::fs::write(&proof, text.replacen("index 117", "index 11x", 1)).unwrap();
    let r = verify(&entry, &vkey);
    no_panic(&r);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("index"),
        "{}",
        r.stderr
    );
    // Out-of-range requests.
    for args in [
        vec!["log", "entry", s(&log), "300"],
        vec!["log", "prove", s(&log), "--index", "300"],
        vec!["log", "consistency", s(&log), "--from", "0"],
        vec!["log", "consistency", s(&log), "--from", "10", "--to", "301"],
        vec!["log", "entry", s(&log), "18446744073709551615"],
    ] {
        let r = run(&args);
        no_panic(&r);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
}

#[test]
fn consistency_proofs_from_the_cli_verify() {
    let t = tempfile::tempdir().unwrap();
    let (log, _vkey) = log_300(t.path());
    for (from, to) in [(1, 300), (100, 200), (200, 300), (256, 300), (300, 300)] {
        let r = ok(&[
            "log",
            "consistency",
            s(&log),
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let proof: Vec<nospy_tlog::Hash> = v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| nospy_tlog::Hash::from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        let r1 = nospy_tlog::Hash::from_base64(v["from_root"].as_str().unwrap()).unwrap();
        let r2 = nospy_tlog::Hash::from_base64(v["to_root"].as_str().unwrap()).unwrap();
        nospy_tlog::merkle::verify_consistency(
            nospy_tlog::TreeSize(from),
            nospy_tlog::TreeSize(to),
            &proof,
            r1.as_ref(),
            r2.as_ref(),
        )
        .unwrap();
    }
}

#[test]
fn not_a_log() {
    let t = tempfile::tempdir().unwrap();
    let r = run(&["log", "checkpoint", s(t.path())]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a nospy log"), "{}", r.stderr);
    std::fs::write(t.path().join("x"), b"x").unwrap();
    let key = t.path().join("k");
    new_key(&key, "a.example/log");
    let r = run(&[
        "log",
        "init",
        s(t.path()),
        "--origin",
        "a.example/log",
        "--key",
        s(&key),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
}

#[test]
fn write_file_leaves_no_temporary_file_on_error() {
    // Regression: a document that cannot be put in place (here its path is a directory) used to
    // leave its temporary file behind.
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("vendor.key");
    new_key(&key, "release.vendorx.example");
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    let r = revoke_with(&key, &["--out", s(&out)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("out"), "{}", r.stderr);
    let left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".nospy-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Makes a key file written by a test owner-only, as `nospy key generate` writes them.
fn owner_only(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn key_file_readable_by_others_is_refused_unless_allowed() {
    // Regression (issue 13, defect 9): key files were read whatever their permissions.
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("vendor.key");
    new_key(&key, "release.vendorx.example");
    let revoke = |extra: &[&str]| revoke_with(&key, extra);
    assert_eq!(revoke(&[]).code, 0, "owner-only, as generated");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = revoke(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("vendor.key") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing signed: {}", r.stdout);
    let r = revoke(&["--allow-open-keys"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `nospy revoke` of one digest signed with `key`, with `extra` arguments.
fn revoke_with(key: &Path, extra: &[&str]) -> Run {
    let digest = "ab".repeat(32);
    let mut args = vec![
        "revoke",
        "--key",
        s(key),
        "--artifact-digest",
        &digest,
        "--reason",
        "test",
    ];
    args.extend_from_slice(extra);
    run(&args)
}
