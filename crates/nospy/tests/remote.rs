//! Remote logs through the real binary: `nospy log add --server`, `nospy log mirror`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;

fn release(t: &std::path::Path, key: &std::path::Path, i: u32) -> String {
    let fw = t.join(format!("fw{i}.bin"));
    std::fs::write(&fw, format!("firmware {i}")).unwrap();
    let out = t.join(format!("rel{i}.json"));
    ok(&[
        "release",
        "sign",
        "--key",
        s(key),
        "--artifact",
        s(&fw),
        "--product",
        "vx-ran-5000",
        "--version",
        &format!("1.{i}"),
        "--source-commit",
        "abc",
        "--manifest",
        s(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/manifest.toml")),
        "--out",
        s(&out),
    ]);
    s(&out).to_string()
}

#[test]
fn add_over_http_then_mirror_and_catch_up() {
    let t = tempfile::tempdir().unwrap();
    let (log, key_file, vkey) = new_log(t.path(), "remote.example/log");
    let vendor = t.path().join("vendor.key");
    let vendor_vkey = ok(&[
        "key",
        "generate",
        "--name",
        "vendor.example",
        "--out",
        s(&vendor),
    ])
    .stdout;
    let cfg = serve_config(t.path(), &vendor_vkey);
    let (mut child, url) = serve(&log, &cfg);
    let files: Vec<String> = (0..300).map(|i| release(t.path(), &vendor, i)).collect();
    let mut args = vec!["log", "add", "--server", url.as_str(), "--json"];
    args.extend(files[..290].iter().map(|f| f.as_str()));
    let v: serde_json::Value = serde_json::from_str(&ok(&args).stdout).unwrap();
    assert_eq!(v["entries"][289]["index"], 289);
    // A second submission of the same statement gets the same index.
    let r = ok(&["log", "add", "--server", &url, &files[5]]);
    assert!(
        r.stdout.starts_with("5\t") && r.stdout.contains("already in the log"),
        "{}",
        r.stdout
    );

    let mirror = t.path().join("mirror");
    let r = ok(&["log", "mirror", &url, s(&mirror), "--key", &vkey, "--json"]);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (m["from_size"].as_u64(), m["size"].as_u64()),
        (Some(0), Some(290))
    );
    ok(&["log", "audit", s(&mirror), "--key", &vkey]);
    // The mirror is byte for byte the log's tiles, bundles and checkpoint.
    assert_eq!(
        std::fs::read(mirror.join("checkpoint")).unwrap(),
        std::fs::read(log.join("checkpoint")).unwrap()
    );
    assert_eq!(
        std::fs::read(mirror.join("tile/entries/000")).unwrap(),
        std::fs::read(log.join("tile/entries/000")).unwrap()
    );

    // The log grows; the mirror catches up from where it was.
    let mut args = vec!["log", "add", "--server", url.as_str()];
    args.extend(files[290..].iter().map(|f| f.as_str()));
    ok(&args);
    let r = ok(&["log", "mirror", &url, s(&mirror), "--key", &vkey, "--json"]);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (
            m["from_size"].as_u64(),
            m["size"].as_u64(),
            m["bundles_fetched"].as_u64()
        ),
        (Some(290), Some(300), Some(1))
    );
    ok(&["log", "audit", s(&mirror), "--key", &vkey]);
    // And the mirror serves the operator's checks.
    let d = ok(&["log", "entry", s(&mirror), "299"]).raw;
    assert_eq!(d, std::fs::read(&files[299]).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();

    // Another history under the same key (a fork): the mirror refuses it and keeps its state.
    let forked = t.path().join("forked");
    ok(&[
        "log",
        "init",
        s(&forked),
        "--origin",
        "remote.example/log",
        "--key",
        s(&key_file),
    ]);
    let mut args = vec!["log", "add", s(&forked)];
    args.extend(files[100..].iter().map(|f| f.as_str()));
    ok(&args);
    let (mut child, url2) = serve(&forked, &cfg);
    let before = std::fs::read(mirror.join("checkpoint")).unwrap();
    let r = run(&["log", "mirror", &url2, s(&mirror), "--key", &vkey]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("rolled back")
            || r.stderr.contains("rewrote history")
            || r.stderr.contains("forked"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(mirror.join("checkpoint")).unwrap(), before);
    // A key that is not the log's: refused before anything is copied.
    let other = t.path().join("other.key");
    let other_vkey = ok(&[
        "key",
        "generate",
        "--name",
        "remote.example/log",
        "--out",
        s(&other),
    ])
    .stdout;
    let r = run(&[
        "log",
        "mirror",
        &url2,
        s(&t.path().join("m2")),
        "--key",
        other_vkey.trim(),
    ]);
    assert_eq!(r.code, 2);
    assert!(!t.path().join("m2/checkpoint").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bundle_and_verify_from_a_server() {
    let t = tempfile::tempdir().unwrap();
    let (log, _key_file, vkey) = new_log(t.path(), "remote2.example/log");
    let vendor = t.path().join("vendor.key");
    let vendor_vkey = ok(&[
        "key",
        "generate",
        "--name",
        "release.vendorx.example",
        "--out",
        s(&vendor),
    ])
    .stdout;
    let cfg = serve_config(t.path(), &vendor_vkey);
    let (mut child, url) = serve(&log, &cfg);
    let rel = release(t.path(), &vendor, 7);
    let other = release(t.path(), &vendor, 8);
    ok(&["log", "add", "--server", &url, &rel, &other]);
    let agreement = t.path().join("agreement.toml");
    std::fs::write(
        &agreement,
        format!(
            "name = \"server\"\n[log]\norigin = \"remote2.example/log\"\nkey = \"{vkey}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n\
             [[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n",
            vendor_vkey.trim()
        ),
    )
    .unwrap();
    let fw = t.path().join("fw7.bin");
    let v: serde_json::Value = serde_json::from_str(
        &ok(&[
            "verify",
            s(&fw),
            "--agreement",
            s(&agreement),
            "--server",
            &url,
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(v["verdict"], "admit", "{v:#}");
    let rev = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "revocation")
        .unwrap();
    assert!(
        rev["reason"].as_str().unwrap().contains("the index of"),
        "{rev}"
    );
    // A bundle from the server verifies offline.
    let digest = ok(&["log", "entry", s(&log), "0", "--json"]).stdout;
    assert!(digest.contains("base64"));
    let b = t.path().join("fw7.bundle");
    let d = {
        use sha2::Digest;
        nospy_tlog::hex::encode(&sha2::Sha256::digest(std::fs::read(&fw).unwrap()))
    };
    ok(&[
        "bundle",
        "--server",
        &url,
        "--artifact-digest",
        &d,
        "--out",
        s(&b),
    ]);
    let r = ok(&[
        "verify",
        s(&fw),
        "--agreement",
        s(&agreement),
        "--bundle",
        s(&b),
    ]);
    assert!(r.stdout.starts_with("ADMIT"), "{}", r.stdout);
    // A revocation submitted to the server denies.
    let revf = t.path().join("rev.json");
    ok(&[
        "revoke",
        "--key",
        s(&vendor),
        "--artifact-digest",
        &d,
        "--reason",
        "recalled",
        "--out",
        s(&revf),
    ]);
    ok(&["log", "add", "--server", &url, s(&revf)]);
    let r = run(&[
        "verify",
        s(&fw),
        "--agreement",
        s(&agreement),
        "--server",
        &url,
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("recalled"), "{}", r.stdout);
    // The lookup answers 400 to nonsense.
    let r = run(&["bundle", "--server", &url, "--artifact-digest", "zz"]);
    assert_eq!(r.code, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    // A restart rebuilds nothing it does not need: the index is caught up from the log if behind.
    std::fs::remove_file(log.join(".nospy/index.sqlite")).unwrap();
    let (mut child, url) = serve(&log, &cfg);
    let r = run(&[
        "verify",
        s(&fw),
        "--agreement",
        s(&agreement),
        "--server",
        &url,
    ]);
    assert_eq!(
        r.code, 1,
        "the rebuilt index must still find the revocation: {}",
        r.stdout
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
