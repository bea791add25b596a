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

/// A new vendor key in `t`: its file and verifier key.
fn vendor_key(t: &std::path::Path) -> (std::path::PathBuf, String) {
    let vendor = t.join("vendor.key");
    let vkey = new_key(&vendor, "release.vendorx.example");
    (vendor, vkey)
}

/// A new log `origin` in `t` served by `nospy serve` (with `extra` arguments) that admits one new
/// vendor key: the log's directory and verifier key, the vendor's key file and verifier key, the
/// server process and its URL.
struct Served {
    log: std::path::PathBuf,
    vkey: String,
    vendor: std::path::PathBuf,
    vendor_vkey: String,
    child: std::process::Child,
    url: String,
}

fn served(t: &std::path::Path, origin: &str, extra: &[&str]) -> Served {
    let (log, _key_file, vkey) = new_log(t, origin);
    let (vendor, vendor_vkey) = vendor_key(t);
    let cfg = serve_config(t, &vendor_vkey);
    let (child, url) = serve_with(&log, &cfg, extra);
    Served {
        log,
        vkey,
        vendor,
        vendor_vkey,
        child,
        url,
    }
}

/// An agreement trusting the log `origin` (verifier key `log_vkey`) and the vendor, with no
/// witness or evaluator quorum.
fn agreement(t: &std::path::Path, origin: &str, log_vkey: &str, vendor_vkey: &str) -> String {
    let p = t.join("agreement.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"server\"\n[log]\norigin = \"{origin}\"\nkey = \"{log_vkey}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n\
             [[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n",
            vendor_vkey.trim()
        ),
    )
    .unwrap();
    s(&p).to_string()
}

/// A revocation of the artifact `digest` (hex) signed with `key`, written in `t`.
fn revocation(t: &std::path::Path, key: &std::path::Path, digest: &str) -> String {
    let p = t.join("rev.json");
    ok(&[
        "revoke",
        "--key",
        s(key),
        "--artifact-digest",
        digest,
        "--reason",
        "recalled",
        "--out",
        s(&p),
    ]);
    s(&p).to_string()
}

fn sha256_hex(p: &std::path::Path) -> String {
    use sha2::Digest;
    nospy_tlog::hex::encode(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn add_over_http_then_mirror_and_catch_up() {
    let t = tempfile::tempdir().unwrap();
    let (log, key_file, vkey) = new_log(t.path(), "remote.example/log");
    let vendor = t.path().join("vendor.key");
    let vendor_vkey = new_key(&vendor, "vendor.example");
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
    let other_vkey = new_key(&other, "remote.example/log");
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
    let Served {
        log,
        vkey,
        vendor,
        vendor_vkey,
        mut child,
        url,
    } = served(t.path(), "remote2.example/log", &[]);
    let cfg = t.path().join("serve.toml");
    let rel = release(t.path(), &vendor, 7);
    let other = release(t.path(), &vendor, 8);
    ok(&["log", "add", "--server", &url, &rel, &other]);
    let agreement = agreement(t.path(), "remote2.example/log", &vkey, &vendor_vkey);
    let fw = t.path().join("fw7.bin");
    let v: serde_json::Value = serde_json::from_str(
        &ok(&[
            "verify",
            s(&fw),
            "--agreement",
            &agreement,
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
    let d = sha256_hex(&fw);
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
        &agreement,
        "--bundle",
        s(&b),
    ]);
    assert!(r.stdout.starts_with("ADMIT"), "{}", r.stdout);
    // A revocation submitted to the server denies.
    let revf = revocation(t.path(), &vendor, &d);
    let rev_index: u64 = ok(&["log", "add", "--server", &url, &revf])
        .stdout
        .split('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The lookup index follows the log on its own thread: a lookup answers for the entries it
    // has indexed (`size`), never beyond the checkpoint, and lists nothing at or above that
    // size; it catches up.
    let http = nospy_client::http::Blocking::new(std::time::Duration::from_secs(10)).unwrap();
    let checkpoint_size = rev_index + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: serde_json::Value =
            serde_json::from_slice(&http.get_ok(&format!("{url}/lookup?digest={d}")).unwrap())
                .unwrap();
        let size = v["size"].as_u64().unwrap();
        assert!(size <= checkpoint_size, "{v}");
        let listed: Vec<u64> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert!(listed.iter().all(|i| *i < size), "{v}");
        if size == checkpoint_size {
            assert_eq!(listed, vec![0, rev_index], "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the index never caught up: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = run(&[
        "verify",
        s(&fw),
        "--agreement",
        &agreement,
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
        &agreement,
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

#[test]
fn verify_from_a_server_reads_what_its_index_has_not_reached() {
    let t = tempfile::tempdir().unwrap();
    // An index that waits an hour before writing: every lookup answers for no entry at all.
    let Served {
        vkey,
        vendor,
        vendor_vkey,
        mut child,
        url,
        ..
    } = served(
        t.path(),
        "remote3.example/log",
        &["--index-delay", "3600000"],
    );
    let rel = release(t.path(), &vendor, 7);
    ok(&["log", "add", "--server", &url, &rel]);
    let fw = t.path().join("fw7.bin");
    let d = sha256_hex(&fw);
    let http = nospy_client::http::Blocking::new(std::time::Duration::from_secs(10)).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&http.get_ok(&format!("{url}/lookup?digest={d}")).unwrap()).unwrap();
    assert_eq!(v["size"], 0, "{v}");
    assert_eq!(v["entries"], serde_json::json!([]), "{v}");
    let agreement = agreement(t.path(), "remote3.example/log", &vkey, &vendor_vkey);
    let verify = || {
        run(&[
            "verify",
            s(&fw),
            "--agreement",
            &agreement,
            "--server",
            &url,
        ])
    };
    let r = verify();
    assert_eq!(
        r.code, 0,
        "the release is found beyond the index: {}",
        r.stdout
    );
    ok(&[
        "log",
        "add",
        "--server",
        &url,
        &revocation(t.path(), &vendor, &d),
    ]);
    let r = verify();
    assert_eq!(
        r.code, 1,
        "the revocation is found beyond the index: {}",
        r.stdout
    );
    assert!(r.stdout.contains("recalled"), "{}", r.stdout);
    child.kill().unwrap();
    child.wait().unwrap();
}
