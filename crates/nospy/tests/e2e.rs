//! End to end through the real binary: a vendor signs and logs a release, evaluators of two
//! organisations rebuild and attest, witnesses cosign, a bundle is made, and the operator admits
//! the firmware; then one variation per reason to deny.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::path::{Path, PathBuf};

const MANIFEST: &str = r#"[device]
vendor = "VendorX"
model = "vx-ran-5000"
[capabilities]
vendor_remote_access = "none"
[[allow]]
direction = "from-device"
peer = "updates.vendorx.example"
protocol = "tcp"
ports = "443"
initiated_by = "device"
"#;

struct World {
    dir: PathBuf,
    log: PathBuf,
    vkey: String,
}

impl World {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn ps(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_string()
    }
    fn key(&self, file: &str, name: &str) -> String {
        ok(&["key", "generate", "--name", name, "--out", &self.ps(file)])
            .stdout
            .trim()
            .to_string()
    }
    fn witness_key(&self, file: &str) -> String {
        ok(&["key", "public", &self.ps(file), "--witness"])
            .stdout
            .trim()
            .to_string()
    }
    fn write(&self, name: &str, data: &[u8]) -> String {
        std::fs::write(self.p(name), data).unwrap();
        self.ps(name)
    }
    /// Copies agreement `from` to `to` with the UK evaluation centre holding a second key
    /// (`uk2.vkey`) beside its first.
    fn with_second_uk_key(&self, from: &str, to: &str) {
        let read = |f: &str| std::fs::read_to_string(self.p(f)).unwrap();
        let (uk, uk2) = (read("uk.vkey"), read("uk2.vkey"));
        let one = format!("keys = [\"{}\"]", uk.trim());
        let text = read(from);
        assert_eq!(text.matches(&one).count(), 1, "{from}: {one} once");
        let both = format!("keys = [\"{}\", \"{}\"]", uk.trim(), uk2.trim());
        self.write(to, text.replace(&one, &both).as_bytes());
    }
    fn add(&self, files: &[&str]) {
        let mut args = vec!["log", "add", s(&self.log)];
        let paths: Vec<String> = files.iter().map(|f| self.ps(f)).collect();
        args.extend(paths.iter().map(|p| p.as_str()));
        ok(&args);
    }
    fn release(&self, key: &str, fw: &str, version: &str, out: &str) {
        ok(&[
            "release",
            "sign",
            "--key",
            &self.ps(key),
            "--artifact",
            &self.ps(fw),
            "--product",
            "vx-ran-5000",
            "--version",
            version,
            "--source-commit",
            "9f2c1e7",
            "--manifest",
            &self.ps("manifest.toml"),
            "--out",
            &self.ps(out),
        ]);
    }
    fn attest(&self, key: &str, shipped: &str, rebuilt: &str, entry: u64, out: &str) {
        ok(&[
            "attest",
            "--key",
            &self.ps(key),
            "--kind",
            "binary-equivalence",
            "--shipped",
            &self.ps(shipped),
            "--rebuilt",
            &self.ps(rebuilt),
            "--release-entry",
            &entry.to_string(),
            "--log",
            s(&self.log),
            "--out",
            &self.ps(out),
        ]);
    }
    /// The witness whose key is `key` (its state in `state`) cosigns the log's latest
    /// checkpoint, or adds its cosignature to the checkpoint file `on`; returns the output file.
    fn cosign_with(&self, key: &str, state: &str, on: Option<&str>, out: &str) -> String {
        let (key, log, state, out) = (
            self.ps(key),
            s(&self.log).to_string(),
            self.ps(state),
            self.ps(out),
        );
        let mut args = vec![
            "witness", "cosign", "--key", &key, "--log", &log, "--state", &state,
        ];
        let on = on.map(|c| self.ps(c));
        if let Some(c) = &on {
            args.extend(["--checkpoint", c]);
        }
        args.extend(["--out", &out]);
        ok(&args);
        out
    }
    /// Both witnesses cosign the log's latest checkpoint; returns the cosigned checkpoint file.
    fn cosign(&self, out: &str) -> String {
        self.cosign_with("w1.key", "w1.state", None, "cp1");
        self.cosign_with("w2.key", "w2.state", Some("cp1"), out)
    }
    fn bundle(&self, fw: &str, checkpoint: &str, out: &str) -> String {
        let digest = sha256_of(&self.p(fw));
        ok(&[
            "bundle",
            "--log",
            s(&self.log),
            "--checkpoint",
            checkpoint,
            "--artifact-digest",
            &digest,
            "--out",
            &self.ps(out),
        ]);
        self.ps(out)
    }
    /// Cosigns the log's checkpoint (written as `cp`) and verifies `fw` under `agreement`
    /// from the log itself.
    fn verify_from_log(&self, fw: &str, agreement: &str, cp: &str) -> (i32, serde_json::Value) {
        let cp = self.cosign(cp);
        self.verify(fw, agreement, &["--log", s(&self.log), "--checkpoint", &cp])
    }
    fn verify(&self, fw: &str, agreement: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["verify", "--json"];
        let fwp = self.ps(fw);
        let ag = self.ps(agreement);
        args.extend([fwp.as_str(), "--agreement", ag.as_str()]);
        args.extend(extra);
        let r = run(&args);
        assert!(
            r.code == 0 || r.code == 1,
            "verify failed to run: {}",
            r.stderr
        );
        (
            r.code,
            serde_json::from_str(&r.stdout)
                .unwrap_or_else(|_| panic!("{}\n{}", r.stdout, r.stderr)),
        )
    }
}

fn sha256_of(p: &Path) -> String {
    use sha2::Digest;
    nospy_tlog::hex::encode(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

fn agreement(w: &World, name: &str, orgs: [(&str, &str); 2], peers: &str, max_age: &str) {
    let text = format!(
        r#"name = "e2e"
[log]
origin = "log.example.org/nospy"
key = "{}"
[witnesses]
quorum = 2
max_age = "{max_age}"
keys = ["{}", "{}"]
[[vendor]]
name = "VendorX"
keys = ["{}"]
[evaluators]
quorum = 2
[[evaluators.member]]
organisation = "{}"
keys = ["{}"]
[[evaluators.member]]
organisation = "{}"
keys = ["{}"]
[manifest]
vendor_remote_access = ["none", "operator-initiated"]
peers_within = [{peers}]
"#,
        w.vkey,
        w.witness_key("w1.key"),
        w.witness_key("w2.key"),
        std::fs::read_to_string(w.p("vendor.vkey")).unwrap().trim(),
        orgs[0].0,
        std::fs::read_to_string(w.p(orgs[0].1)).unwrap().trim(),
        orgs[1].0,
        std::fs::read_to_string(w.p(orgs[1].1)).unwrap().trim(),
    );
    w.write(name, text.as_bytes());
}

/// The honest world: release at entry 0, passing attestations by UK and DE at 1 and 2.
fn world(t: &Path) -> World {
    let (log, _, vkey) = new_log(t, "log.example.org/nospy");
    let w = World {
        dir: t.to_path_buf(),
        log,
        vkey,
    };
    let vendor = w.key("vendor.key", "release.vendorx.example");
    w.write("vendor.vkey", vendor.as_bytes());
    let uk = w.key("uk.key", "eval.uk.example");
    w.write("uk.vkey", uk.as_bytes());
    let uk2 = w.key("uk2.key", "eval2.uk.example");
    w.write("uk2.vkey", uk2.as_bytes());
    let de = w.key("de.key", "eval.de.example");
    w.write("de.vkey", de.as_bytes());
    w.key("w1.key", "witness.gov.example");
    w.key("w2.key", "witness.bund.example");
    w.key("stranger.key", "release.vendorx.example");
    w.write("manifest.toml", MANIFEST.as_bytes());
    w.write("fw.bin", b"VX firmware 4.2.0\n");
    w.write("rebuilt.bin", b"VX firmware 4.2.0\n");
    w.release("vendor.key", "fw.bin", "4.2.0", "release.json");
    w.add(&["release.json"]);
    w.attest("uk.key", "fw.bin", "rebuilt.bin", 0, "att-uk.json");
    w.attest("de.key", "fw.bin", "rebuilt.bin", 0, "att-de.json");
    w.add(&["att-uk.json", "att-de.json"]);
    agreement(
        &w,
        "agreement.toml",
        [
            ("UK evaluation centre", "uk.vkey"),
            ("DE evaluation lab", "de.vkey"),
        ],
        "\"operator-networks\", \"*.vendorx.example\"",
        "24h",
    );
    w
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn denied(r: (i32, serde_json::Value), name: &str, why: &str) {
    let (code, v) = r;
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["verdict"], "deny");
    let c = check(&v, name);
    assert_eq!(c["outcome"], "fail", "{name}: {v:#}");
    assert!(
        c["reason"].as_str().unwrap().contains(why),
        "{name}: want {why:?} in {}",
        c["reason"]
    );
}

#[test]
fn the_release_is_admitted_from_a_bundle_and_from_the_log() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let cp = w.cosign("cosigned");
    let b = w.bundle("fw.bin", &cp, "fw.bundle");
    let (code, v) = w.verify("fw.bin", "agreement.toml", &["--bundle", &b]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "revocation")["outcome"], "not-checked");
    let (code, v) = w.verify(
        "fw.bin",
        "agreement.toml",
        &[
            "--log",
            s(&w.log),
            "--checkpoint",
            &cp,
            "--state",
            &w.ps("op.state"),
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "revocation")["outcome"], "pass");
    // The text form names every check.
    let r = run(&[
        "verify",
        &w.ps("fw.bin"),
        "--agreement",
        &w.ps("agreement.toml"),
        "--bundle",
        &b,
    ]);
    assert_eq!(r.code, 0);
    for name in [
        "checkpoint",
        "release",
        "evaluators",
        "manifest",
        "revocation",
        "rollback",
        "minimum-version",
    ] {
        assert!(r.stdout.contains(name), "{}", r.stdout);
    }
}

#[test]
fn wrong_vendor_key() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    w.write("fw2.bin", b"VX firmware 4.2.1\n");
    w.release("stranger.key", "fw2.bin", "4.2.1", "forged.json");
    w.add(&["forged.json"]);
    w.write("rebuilt2.bin", b"VX firmware 4.2.1\n");
    w.attest("uk.key", "fw2.bin", "rebuilt2.bin", 3, "a1.json");
    w.attest("de.key", "fw2.bin", "rebuilt2.bin", 3, "a2.json");
    w.add(&["a1.json", "a2.json"]);
    denied(
        w.verify_from_log("fw2.bin", "agreement.toml", "cosigned"),
        "release",
        "signed by a vendor of the agreement",
    );
}

#[test]
fn swapped_artifact() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let cp = w.cosign("cosigned");
    let b = w.bundle("fw.bin", &cp, "fw.bundle");
    w.write("swapped.bin", b"VX firmware 4.2.0 with a little extra\n");
    denied(
        w.verify("swapped.bin", "agreement.toml", &["--bundle", &b]),
        "release",
        "a release of another artifact",
    );
}

#[test]
fn an_inclusion_proof_against_a_different_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let old_cp = w.cosign("cosigned-3");
    // The log grows; the bundle's proofs are for size 3, but its checkpoint is swapped for size 4.
    w.write("other.bin", b"other firmware\n");
    w.release("vendor.key", "other.bin", "1.0", "other.json");
    w.add(&["other.json"]);
    let new_cp = w.cosign("cosigned-4");
    let b = w.bundle("fw.bin", &old_cp, "fw.bundle");
    let text = std::fs::read_to_string(&b).unwrap();
    let old_text = serde_json::to_string(&std::fs::read_to_string(&old_cp).unwrap()).unwrap();
    let new_text = serde_json::to_string(&std::fs::read_to_string(&new_cp).unwrap()).unwrap();
    let swapped = text.replacen(old_text.trim_matches('"'), new_text.trim_matches('"'), 1);
    assert_ne!(swapped, text);
    let b2 = w.write("swapped.bundle", swapped.as_bytes());
    denied(
        w.verify("fw.bin", "agreement.toml", &["--bundle", &b2]),
        "release",
        "against another checkpoint",
    );
}

#[test]
fn a_missing_or_forged_cosignature() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let one = w.cosign_with("w1.key", "w1.state", None, "one");
    let b = w.bundle("fw.bin", &one, "one.bundle");
    denied(
        w.verify("fw.bin", "agreement.toml", &["--bundle", &b]),
        "checkpoint",
        "1 of the 2 witness cosignatures",
    );
    // A second "cosignature" line made by a key that is not the second witness's.
    w.key("fake.key", "witness.bund.example");
    w.cosign_with("fake.key", "fake.state", Some("one"), "two");
    let b = w.bundle("fw.bin", &w.ps("two"), "two.bundle");
    denied(
        w.verify("fw.bin", "agreement.toml", &["--bundle", &b]),
        "checkpoint",
        "1 of the 2",
    );
}

#[test]
fn fewer_than_k_evaluators_and_one_organisation_counted_once() {
    let t = tempfile::tempdir().unwrap();
    let (log, _, vkey) = new_log(t.path(), "log.example.org/nospy");
    let w = World {
        dir: t.path().to_path_buf(),
        log,
        vkey,
    };
    for (f, n) in [
        ("vendor.key", "release.vendorx.example"),
        ("uk.key", "eval.uk.example"),
        ("uk2.key", "eval2.uk.example"),
        ("de.key", "eval.de.example"),
    ] {
        let v = w.key(f, n);
        w.write(&f.replace(".key", ".vkey"), v.as_bytes());
    }
    w.key("w1.key", "witness.gov.example");
    w.key("w2.key", "witness.bund.example");
    w.write("manifest.toml", MANIFEST.as_bytes());
    w.write("fw.bin", b"fw");
    w.write("rebuilt.bin", b"fw");
    w.release("vendor.key", "fw.bin", "4.2.0", "release.json");
    w.add(&["release.json"]);
    w.attest("uk.key", "fw.bin", "rebuilt.bin", 0, "a1.json");
    w.add(&["a1.json"]);
    agreement(
        &w,
        "agreement.toml",
        [
            ("UK evaluation centre", "uk.vkey"),
            ("DE evaluation lab", "de.vkey"),
        ],
        "\"*.vendorx.example\"",
        "24h",
    );
    denied(
        w.verify_from_log("fw.bin", "agreement.toml", "c1"),
        "evaluators",
        "1 of the 2 organisations",
    );
    // A second attestation, by another key of the same organisation, still counts once.
    w.attest("uk2.key", "fw.bin", "rebuilt.bin", 0, "a2.json");
    w.add(&["a2.json"]);
    w.with_second_uk_key("agreement.toml", "agreement-uk2.toml");
    denied(
        w.verify_from_log("fw.bin", "agreement-uk2.toml", "c2"),
        "evaluators",
        "1 of the 2 organisations",
    );
}

#[test]
fn a_failing_attestation_denies() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    w.write(
        "rebuilt-differs.bin",
        b"VX firmware 4.2.0 (rebuilt differently)\n",
    );
    w.attest("uk2.key", "fw.bin", "rebuilt-differs.bin", 0, "fail.json");
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.p("fail.json")).unwrap()).unwrap();
    assert!(a["payload"].is_string());
    w.add(&["fail.json"]);
    w.with_second_uk_key("agreement.toml", "agreement2.toml");
    denied(
        w.verify_from_log("fw.bin", "agreement2.toml", "cosigned"),
        "evaluators",
        "attests a failure",
    );
}

#[test]
fn a_revocation_in_the_log_denies() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let d = sha256_of(&w.p("fw.bin"));
    ok(&[
        "revoke",
        "--key",
        &w.ps("de.key"),
        "--artifact-digest",
        &d,
        "--reason",
        "undeclared remote shell",
        "--out",
        &w.ps("rev.json"),
    ]);
    w.add(&["rev.json"]);
    denied(
        w.verify_from_log("fw.bin", "agreement.toml", "cosigned"),
        "revocation",
        "undeclared remote shell",
    );
}

#[test]
fn a_checkpoint_older_than_allowed() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let cp = w.cosign("cosigned");
    let b = w.bundle("fw.bin", &cp, "fw.bundle");
    let later = nospy_statement::time::format_rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 3 * 86_400,
    );
    denied(
        w.verify(
            "fw.bin",
            "agreement.toml",
            &["--bundle", &b, "--at", &later],
        ),
        "checkpoint",
        "older than",
    );
}

#[test]
fn rollback_to_a_checkpoint_that_does_not_extend_the_remembered_one() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    let old = w.cosign("cosigned-3");
    let old_bundle = w.bundle("fw.bin", &old, "old.bundle");
    w.write("other.bin", b"other firmware\n");
    w.release("vendor.key", "other.bin", "1.0", "other.json");
    w.add(&["other.json"]);
    let new = w.cosign("cosigned-4");
    let state = w.ps("op.state");
    // Admitted from the log at size 4: the state remembers size 4.
    let (code, v) = w.verify(
        "fw.bin",
        "agreement.toml",
        &["--log", s(&w.log), "--checkpoint", &new, "--state", &state],
    );
    assert_eq!(code, 0, "{v:#}");
    // The old bundle (size 3) is now a rollback.
    denied(
        w.verify(
            "fw.bin",
            "agreement.toml",
            &["--bundle", &old_bundle, "--state", &state],
        ),
        "rollback",
        "rollback",
    );
    // A bundle at size 4 without a consistency proof from a remembered size 3 cannot show that the
    // log only grew; with --since-size it can.
    w.write(
        "op3.state",
        format!(
            "3 {}\n",
            std::fs::read_to_string(&old)
                .unwrap()
                .lines()
                .nth(2)
                .unwrap()
        )
        .as_bytes(),
    );
    let b4 = w.bundle("fw.bin", &new, "b4.bundle");
    denied(
        w.verify(
            "fw.bin",
            "agreement.toml",
            &["--bundle", &b4, "--state", &w.ps("op3.state")],
        ),
        "rollback",
        "no consistency proof",
    );
    let d = sha256_of(&w.p("fw.bin"));
    ok(&[
        "bundle",
        "--log",
        s(&w.log),
        "--checkpoint",
        &new,
        "--artifact-digest",
        &d,
        "--since-size",
        "3",
        "--out",
        &w.ps("b4c.bundle"),
    ]);
    let (code, v) = w.verify(
        "fw.bin",
        "agreement.toml",
        &[
            "--bundle",
            &w.ps("b4c.bundle"),
            "--state",
            &w.ps("op3.state"),
        ],
    );
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn a_manifest_that_breaks_an_agreement_rule() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    agreement(
        &w,
        "strict.toml",
        [
            ("UK evaluation centre", "uk.vkey"),
            ("DE evaluation lab", "de.vkey"),
        ],
        "\"operator-networks\", \"192.0.2.0/24\"",
        "24h",
    );
    let cp = w.cosign("cosigned");
    let b = w.bundle("fw.bin", &cp, "fw.bundle");
    denied(
        w.verify("fw.bin", "strict.toml", &["--bundle", &b]),
        "manifest",
        "updates.vendorx.example",
    );
}

#[test]
fn unusable_input_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let w = world(t.path());
    w.write("bad.toml", b"name = 1\n");
    let r = run(&[
        "verify",
        &w.ps("fw.bin"),
        "--agreement",
        &w.ps("bad.toml"),
        "--log",
        s(&w.log),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bad.toml") && r.stderr.contains("line 1"),
        "{}",
        r.stderr
    );
    w.write("bad.bundle", b"{\"format\": 1}");
    let r = run(&[
        "verify",
        &w.ps("fw.bin"),
        "--agreement",
        &w.ps("agreement.toml"),
        "--bundle",
        &w.ps("bad.bundle"),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.bundle"), "{}", r.stderr);
    // A non-statement is kept out of the log unless --raw is given.
    w.write("junk.json", b"{\"hello\": 1}");
    let r = run(&["log", "add", s(&w.log), &w.ps("junk.json")]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("junk.json") && r.stderr.contains("not a signed nospy statement"),
        "{}",
        r.stderr
    );
}
