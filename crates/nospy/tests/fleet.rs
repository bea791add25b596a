//! `nospy fleet` through the binary on a log holding current, superseded, unattested and revoked
//! releases: each device's verdict, the summary, the server path, and the HTML report in
//! headless Chromium.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "[device]\nvendor = \"VendorX\"\nmodel = \"vx-ran-5000\"\n[capabilities]\nvendor_remote_access = \"none\"\n[[allow]]\ndirection = \"from-device\"\npeer = \"updates.vendorx.example\"\nprotocol = \"tcp\"\nports = \"443\"\n";

fn sha256_of(p: &Path) -> String {
    use sha2::Digest;
    nospy_tlog::hex::encode(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

struct Fleet {
    log: PathBuf,
    inventory: PathBuf,
    agreement: PathBuf,
    vendor_vkey: String,
    eval_vkey: String,
}

/// Releases 1.0 and 1.1 attested (1.1 supersedes 1.0), 0.9 never attested, 1.2 attested then
/// revoked; devices on each, one on unlogged firmware, one without a digest.
fn fleet(t: &Path) -> Fleet {
    let (log, _, log_vkey) = new_log(t, "log.example.org/nospy");
    let p = |n: &str| t.join(n);
    let vendor_vkey = new_key(&p("vendor.key"), "release.vendorx.example");
    let eval_vkey = new_key(&p("eval.key"), "eval.uk.example");
    std::fs::write(p("manifest.toml"), MANIFEST).unwrap();
    let mut digests = Vec::new();
    for v in ["1.0", "1.1", "0.9", "1.2"] {
        let fw = p(&format!("fw-{v}.bin"));
        std::fs::write(&fw, format!("VX firmware {v}\n")).unwrap();
        digests.push(sha256_of(&fw));
        let rel = p(&format!("rel-{v}.json"));
        ok(&[
            "release",
            "sign",
            "--key",
            s(&p("vendor.key")),
            "--artifact",
            s(&fw),
            "--product",
            "vx-ran-5000",
            "--version",
            v,
            "--source-commit",
            "abc",
            "--manifest",
            s(&p("manifest.toml")),
            "--out",
            s(&rel),
        ]);
        ok(&["log", "add", s(&log), s(&rel)]);
    }
    // Release entries 0..=3 are 1.0, 1.1, 0.9, 1.2; attest all but 0.9.
    for (entry, v) in [(0, "1.0"), (1, "1.1"), (3, "1.2")] {
        let fw = p(&format!("fw-{v}.bin"));
        let att = p(&format!("att-{v}.json"));
        ok(&[
            "attest",
            "--key",
            s(&p("eval.key")),
            "--kind",
            "binary-equivalence",
            "--shipped",
            s(&fw),
            "--rebuilt",
            s(&fw),
            "--release-entry",
            &entry.to_string(),
            "--log",
            s(&log),
            "--out",
            s(&att),
        ]);
        ok(&["log", "add", s(&log), s(&att)]);
    }
    let rev = p("revoke.json");
    ok(&[
        "revoke",
        "--key",
        s(&p("vendor.key")),
        "--artifact-digest",
        &digests[3],
        "--reason",
        "a debug backdoor left in",
        "--effective",
        "2026-01-01T00:00:00Z",
        "--out",
        s(&rev),
    ]);
    ok(&["log", "add", s(&log), s(&rev)]);
    let agreement = p("agreement.toml");
    std::fs::write(
        &agreement,
        format!(
            "name = \"fleet-test\"\n[log]\norigin = \"log.example.org/nospy\"\nkey = \"{log_vkey}\"\n\
             [witnesses]\nquorum = 0\nmax_age = \"24h\"\nkeys = []\n\
             [[vendor]]\nname = \"VendorX\"\nkeys = [\"{vendor_vkey}\"]\n\
             [evaluators]\nquorum = 1\n[[evaluators.member]]\norganisation = \"UK\"\nkeys = [\"{eval_vkey}\"]\n\
             [manifest]\nvendor_remote_access = [\"none\"]\n"
        ),
    )
    .unwrap();
    let unlogged = "ab".repeat(32);
    let inventory = p("inventory.csv");
    std::fs::write(
        &inventory,
        format!(
            "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
             on-1.0,VendorX,vx-ran-5000,access,5g,s1,false,10.0.0.1,{},1,1\n\
             on-1.1,VendorX,vx-ran-5000,access,5g,s2,false,10.0.0.2,{},1,1\n\
             on-0.9,VendorX,vx-ran-5000,access,5g,s3,false,10.0.0.3,{},1,1\n\
             on-1.2,VendorX,vx-ran-5000,access,5g,s4,false,10.0.0.4,{},1,1\n\
             unlogged,VendorX,vx-ran-5000,access,5g,s5,false,10.0.0.5,{unlogged},1,1\n\
             no-digest,VendorX,vx-ran-5000,access,5g,s6,false,10.0.0.6,,1,1\n",
            digests[0], digests[1], digests[2], digests[3]
        ),
    )
    .unwrap();
    Fleet {
        log,
        inventory,
        agreement,
        vendor_vkey,
        eval_vkey,
    }
}

impl Fleet {
    /// `nospy fleet --inventory I --agreement A` and `extra`.
    fn run(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "fleet",
            "--inventory",
            s(&self.inventory),
            "--agreement",
            s(&self.agreement),
        ];
        args.extend(extra);
        run(&args)
    }
}

#[test]
fn every_device_gets_the_verdict_of_its_firmware() {
    let t = tempfile::tempdir().unwrap();
    let f = fleet(t.path());
    let html = t.path().join("fleet.html");
    let r = f.run(&[
        "--json",
        "--log",
        s(&f.log),
        "--at",
        "2026-06-01",
        "--html",
        s(&html),
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["summary"],
        serde_json::json!({"devices": 6, "admitted": 2, "denied": 1, "unlogged": 1, "revoked": 1, "unknown": 1, "superseded": 2}),
        "{v:#}"
    );
    assert_eq!(device(&v, "on-1.0")["verdict"], "admitted");
    assert_eq!(device(&v, "on-1.0")["superseded_by"]["version"], "1.1");
    assert_eq!(device(&v, "on-1.1")["verdict"], "admitted");
    assert!(device(&v, "on-1.1").get("superseded_by").is_none());
    assert_eq!(device(&v, "on-0.9")["verdict"], "denied");
    // Denied or not, a device on 0.9 runs a release that 1.1 superseded.
    assert_eq!(device(&v, "on-0.9")["superseded_by"]["version"], "1.1");
    assert!(
        device(&v, "on-0.9")["reason"]
            .as_str()
            .unwrap()
            .starts_with("evaluators:"),
        "{v:#}"
    );
    assert_eq!(device(&v, "on-1.2")["verdict"], "revoked");
    assert!(
        device(&v, "on-1.2")["reason"]
            .as_str()
            .unwrap()
            .contains("backdoor"),
        "{v:#}"
    );
    assert_eq!(device(&v, "unlogged")["verdict"], "unlogged");
    assert_eq!(device(&v, "no-digest")["verdict"], "unknown");
    // Before the revocation took effect, 1.2 was admitted, and it superseded 1.1 as well.
    let r = f.run(&["--json", "--log", s(&f.log), "--at", "2025-06-01"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(device(&v, "on-1.2")["verdict"], "admitted", "{v:#}");
    assert_eq!(device(&v, "on-1.1")["superseded_by"]["version"], "1.2");
    assert_eq!(v["summary"]["superseded"], 3);
    // The report opens in Chromium without console errors, its chart drawn.
    let (dom, err) = chromium_dom(&html, &t.path().join("profile"));
    assert!(!err.contains(":CONSOLE"), "{err}");
    assert!(dom.contains("Fleet under fleet-test"));
    assert_eq!(dom.matches("class=\"bar\"").count(), 6);
    assert!(dom.contains("a debug backdoor left in"));
}

#[test]
fn through_a_server_the_same_verdicts_without_supersession() {
    let t = tempfile::tempdir().unwrap();
    let f = fleet(t.path());
    let cfg = t.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n[[submitter]]\nrole = \"evaluator\"\nkey = \"{}\"\n",
            f.vendor_vkey, f.eval_vkey
        ),
    )
    .unwrap();
    let (mut child, url) = serve(&f.log, &cfg);
    let r = f.run(&["--json", "--server", &url, "--at", "2026-06-01"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["summary"]["admitted"], 2, "{v:#}");
    assert_eq!(v["summary"]["revoked"], 1);
    assert_eq!(v["summary"]["superseded"], serde_json::Value::Null);
    let text = f.run(&["--log", s(&f.log), "--at", "2026-06-01"]);
    assert!(
        text.stdout.contains("2 running a superseded release"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("FAILING DEVICES"), "{}", text.stdout);
}

#[test]
fn bad_input_is_refused_with_its_place() {
    let t = tempfile::tempdir().unwrap();
    let f = fleet(t.path());
    let bad = t.path().join("bad.csv");
    std::fs::write(&bad, "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\nx,V,m,core,5g,s,false,,nothex,1,1\n").unwrap();
    let r = run(&[
        "fleet",
        "--inventory",
        s(&bad),
        "--agreement",
        s(&f.agreement),
        "--log",
        s(&f.log),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("line 2, column firmware_sha256"),
        "{}",
        r.stderr
    );
    let r = f.run(&["--log", s(&f.log), "--at", "June"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("YYYY-MM-DD"), "{}", r.stderr);
}
