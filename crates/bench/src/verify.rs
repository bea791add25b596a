//! `nospy bench verify`.

use crate::print_json;
use anyhow::{Context as _, Result};
use nospy_manifest::Manifest;
use nospy_policy::{Agreement, Evidence, Verifier};
use nospy_statement::bundle::{Bundle, BundleEntry};
use nospy_statement::predicate::*;
use nospy_statement::{sign, DigestSet, ResourceDescriptor};
use nospy_tlog::checkpoint::{Checkpoint, TlogProof};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::{self, MemoryTree};
use nospy_tlog::note::SignerKey;
use nospy_tlog::{LogIndex, Sha256, TreeSize};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

const ORIGIN: &str = "bench.nospy.example/log";

/// Runs the benchmark: `n` bundles verified for `seconds`, and a `hash_mib` MiB artifact hashed
/// against `openssl speed`, in a directory under `dir`; prints the figures.
pub fn run(n: usize, seconds: f64, hash_mib: usize, dir: PathBuf, json: bool) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    let now = nospy_log::clock::Clock::now(&nospy_log::clock::SystemClock);
    let key = |name: &str, seed: u8| SignerKey::from_seed(name, [seed; 32]);
    let (log_key, w1, w2) = (
        key(ORIGIN, 1)?,
        key("witness.one.example", 2)?,
        key("witness.two.example", 3)?,
    );
    let (vendor, uk, de) = (
        key("release.vendorx.example", 4)?,
        key("eval.uk.example", 5)?,
        key("eval.de.example", 6)?,
    );
    let agreement = Agreement::from_toml(&format!(
        "name = \"bench\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 2\nmax_age = \"24h\"\nkeys = [\"{}\", \"{}\"]\n\
         [[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 2\n\
         [[evaluators.member]]\norganisation = \"UK\"\nkeys = [\"{}\"]\n[[evaluators.member]]\norganisation = \"DE\"\nkeys = [\"{}\"]\n\
         [manifest]\nvendor_remote_access = [\"none\"]\npeers_within = [\"*.vendorx.example\", \"operator-networks\"]\n",
        log_key.verifier(),
        w1.cosigner_verifier(),
        w2.cosigner_verifier(),
        vendor.verifier(),
        uk.verifier(),
        de.verifier()
    ))?;
    let manifest = Manifest::from_toml(
        "[device]\nvendor = \"VendorX\"\nmodel = \"vx-1\"\n[capabilities]\nvendor_remote_access = \"none\"\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"updates.vendorx.example\"\nprotocol = \"tcp\"\nports = \"443\"\ninitiated_by = \"device\"\n",
    )?;

    // The log: per artifact a release and two attestations.
    let mut tree = MemoryTree::new();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut artifacts = Vec::new();
    for i in 0..n {
        let fw = Sha256::of(format!("firmware {i}").as_bytes());
        let subject = vec![ResourceDescriptor {
            name: Some(format!("fw-{i}.bin")),
            digest: Some(DigestSet::sha256(&fw)),
            ..Default::default()
        }];
        let rel = Predicate::Release(Box::new(Release {
            vendor: "VendorX".into(),
            product: "vx-1".into(),
            version: format!("4.{i}.0"),
            source: Source {
                repository: Some("https://git.vendorx.example/fw".into()),
                commit: format!("{i:040x}"),
                toolchain: None,
            },
            sbom: Some(DigestSet::sha256(&Sha256::of(b"sbom"))),
            build_recipe: None,
            supersedes: vec![],
            manifest: manifest.clone(),
        }));
        let rb = sign(subject.clone(), &rel, &[&vendor]).to_json();
        let ri = entries.len() as u64;
        let mut idx = vec![ri];
        tree.push(leaf_hash(&rb));
        entries.push(rb.clone());
        for ev in [&uk, &de] {
            let a = Predicate::Attestation(Attestation {
                kind: AttestationKind::BinaryEquivalence,
                result: nospy_statement::predicate::Outcome::Pass,
                release: EntryRef {
                    log: ORIGIN.into(),
                    index: ri,
                    leaf_hash: leaf_hash(&rb).to_hex(),
                },
                rebuilt_from: None,
                diff: None,
            });
            let ab = sign(subject.clone(), &a, &[ev]).to_json();
            idx.push(entries.len() as u64);
            tree.push(leaf_hash(&ab));
            entries.push(ab);
        }
        artifacts.push((fw, idx));
    }
    let size = tree.size();
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: merkle::root(&tree, TreeSize(size))?,
        extensions: vec![],
    };
    let mut sc = cp.sign(&log_key)?;
    for w in [&w1, &w2] {
        sc.note.signatures.push(w.cosign(&sc.note.text, now - 60));
    }
    let cp_text = sc.to_text();
    let bundles: Vec<Vec<u8>> = artifacts
        .iter()
        .map(|(fw, idx)| {
            let entries = idx
                .iter()
                .map(|&i| {
                    let proof = merkle::inclusion_proof(&tree, LogIndex(i), TreeSize(size))?;
                    Ok(BundleEntry {
                        entry: entries[i as usize].clone(),
                        proof: TlogProof {
                            extra: None,
                            index: i,
                            proof,
                            checkpoint: cp_text.clone(),
                        },
                    })
                })
                .collect::<Result<Vec<_>, nospy_tlog::ProofError>>()?;
            Ok(Bundle {
                artifact: *fw,
                checkpoint: cp_text.clone(),
                entries,
                consistency: None,
            }
            .to_json())
        })
        .collect::<Result<_>>()?;

    // Verification, one thread: parse the bundles and decide, round after round. The statement
    // signatures of a round of bundles are checked in one batch, the checkpoint once.
    let verifier = Verifier::new(&agreement);
    let t = Instant::now();
    let mut done = 0u64;
    let mut signatures = 0u64;
    while t.elapsed().as_secs_f64() < seconds {
        let mut evidence = Vec::with_capacity(bundles.len());
        for b in &bundles {
            let bundle = Bundle::parse(b).map_err(|e| anyhow::anyhow!("bench bundle: {e}"))?;
            signatures += bundle.entries.len() as u64;
            evidence.push(Evidence::from(bundle));
        }
        let items: Vec<(&Sha256, &Evidence)> = artifacts
            .iter()
            .map(|(fw, _)| fw)
            .zip(evidence.iter())
            .collect();
        for v in verifier.verify_many(&items, now) {
            anyhow::ensure!(v.admit, "a bench bundle was denied: {:?}", v.checks);
            done += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let per_s = done as f64 / secs;

    // Evidence: a site's twenty minutes (50 radios, the first running artifact 0's firmware and
    // phoning home), judged by the monitor and signed as `nospy monitor --evidence-key` signs,
    // then verified as `nospy evidence verify` verifies, without and with the capture.
    let ev = evidence_case(&artifacts[0], &entries, &manifest, &log_key)?;
    let agreement_m = Agreement::from_toml(&format!(
        "name = \"bench\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 0\nmax_age = \"24h\"\n\
         [[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n\
         [monitors]\nquorum = 1\n[[monitors.member]]\norganisation = \"UK operator\"\nkeys = [\"{}\"]\n",
        log_key.verifier(),
        vendor.verifier(),
        ev.monitor.verifier(),
    ))?;
    let (evidence_per_s, rows) = {
        let t = Instant::now();
        let mut done = 0u64;
        let mut rows = 0;
        while t.elapsed().as_secs_f64() < seconds {
            let v = nospy_policy::breach::verify_evidence(&agreement_m, &ev.case, now);
            anyhow::ensure!(v.holds, "the bench evidence does not hold: {:?}", v.checks);
            rows = v.evidence.map_or(0, |e| e.flows.len());
            done += 1;
        }
        (done as f64 / t.elapsed().as_secs_f64(), rows)
    };
    let capture_per_s = {
        use nospy_monitor::reproduce::{compare, reproduce, Capture};
        let t = Instant::now();
        let mut done = 0u64;
        while t.elapsed().as_secs_f64() < seconds || done == 0 {
            let v = nospy_policy::breach::verify_evidence(&agreement_m, &ev.case, now);
            let (Some(e), Some(m)) = (v.evidence, v.manifest) else {
                anyhow::bail!("the bench evidence does not hold");
            };
            let r = reproduce(
                &e,
                &artifacts[0].0,
                &std::sync::Arc::new(m),
                &ev.capture[..],
                Capture::Packets,
            )
            .map_err(|e| anyhow::anyhow!("reading the bench capture: {e}"))?;
            compare(&e, &r).map_err(|(_, why)| anyhow::anyhow!("the bench capture: {why}"))?;
            done += 1;
        }
        done as f64 / t.elapsed().as_secs_f64()
    };

    // Hashing: our streaming SHA-256 of a file in the page cache, and OpenSSL's.
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("nospy-bench-hash-{}", std::process::id()));
    {
        let mut f =
            std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..hash_mib {
            f.write_all(&chunk)?;
        }
    }
    nospy_client::artifact::hash_file(&file, &mut |_, _| {})?; // into the page cache
    let t = Instant::now();
    nospy_client::artifact::hash_file(&file, &mut |_, _| {})?;
    let hash_mb_s = (hash_mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
    let _ = std::fs::remove_file(&file);
    let openssl = openssl_sha256_mb_s();

    let ratio = openssl.map(|o| hash_mb_s / o);
    let report = json!({
        "bundles": n,
        "log_size": size,
        "signatures_per_bundle": signatures as f64 / done.max(1) as f64,
        "bundles_per_s_per_core": per_s.round(),
        "verify_us_per_bundle": (1e6 / per_s * 10.0).round() / 10.0,
        "hash_mb_per_s": hash_mb_s.round(),
        "openssl_mb_per_s": openssl.map(f64::round),
        "hash_ratio": ratio.map(|r| (r * 1000.0).round() / 1000.0),
        "evidence_per_s_per_core": evidence_per_s.round(),
        "evidence_rows": rows,
        "evidence_with_capture_per_s_per_core": (capture_per_s * 10.0).round() / 10.0,
        "capture_packets": ev.packets,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        print_json(&report)?;
    } else {
        println!("bundle verification {per_s:>10.0} /s on one core ({:.1} µs each; {n} bundles, 3 statements each, one checkpoint)", 1e6 / per_s);
        println!("evidence verification {evidence_per_s:>8.0} /s on one core ({rows} rows re-judged each; {:.2} of the bundle figure)", evidence_per_s / per_s);
        println!("  with the capture    {capture_per_s:>8.1} /s on one core (re-reading {} packets each)", ev.packets);
        match openssl {
            Some(o) => println!("artifact hashing    {hash_mb_s:>10.0} MB/s   openssl speed -evp sha256: {o:.0} MB/s   ratio {:.2}", hash_mb_s / o),
            None => println!("artifact hashing    {hash_mb_s:>10.0} MB/s   (openssl not found: no reference)"),
        }
    }
    Ok(())
}

/// `openssl speed -evp sha256` on 1 MiB blocks, single-threaded, in MB/s; `None` if openssl is
/// not installed or its output is not understood.
fn openssl_sha256_mb_s() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("sha256") || l.trim_start().starts_with("SHA256"))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0 / 1e6)
}

/// An evidence entry about `artifact`'s firmware, logged after the bench's entries, with the
/// capture it came from.
struct EvidenceBench {
    case: nospy_policy::breach::Case,
    monitor: SignerKey,
    capture: Vec<u8>,
    packets: u64,
}

fn evidence_case(
    artifact: &(Sha256, Vec<u64>),
    entries: &[Vec<u8>],
    manifest: &Manifest,
    log_key: &SignerKey,
) -> Result<EvidenceBench> {
    use nospy_inventory::{Device, Function, Inventory, OperatorConfig};
    use nospy_monitor::evidence::{sign as sign_evidence, Basis};
    let monitor = SignerKey::from_seed("monitor.uk.example", [9; 32])?;
    let radios: Vec<[u8; 4]> = (0..50u8).map(|i| [10, 0, 1, i]).collect();
    let capture = nospy_demo::capture::morning(7, &radios, 0);
    let inventory = Inventory {
        devices: radios
            .iter()
            .enumerate()
            .map(|(i, r)| Device {
                device: format!("ran-{i:06}"),
                vendor: "VendorX".into(),
                model: "vx-1".into(),
                function: Function::Access,
                technology: "5g".into(),
                site: "site-0001".into(),
                sensitive: false,
                addresses: vec![std::net::IpAddr::from(*r)],
                firmware_sha256: (i == 0).then(|| artifact.0.to_hex()),
                weight: 1.0,
                replacement_cost: 1.0,
            })
            .collect(),
    };
    let m = std::sync::Arc::new(manifest.clone());
    let manifests = vec![Some(m.clone()); radios.len()];
    let operator = OperatorConfig::default();
    let mut mon = nospy_monitor::Monitor::new(&inventory, &manifests, &operator, None)?;
    mon.record_names(true);
    let stats = nospy_flow::source::read_traffic_from(&capture[..], 0, &mut mon, &mut |_, _| {})?;
    let report = mon.finish();
    let release = artifact.1[0];
    let mut bases = vec![None; radios.len()];
    bases[0] = Some(Basis {
        manifest: m,
        name: format!("release entry {release}"),
        release: Some(EntryRef {
            log: ORIGIN.into(),
            index: release,
            leaf_hash: leaf_hash(&entries[release as usize]).to_hex(),
        }),
    });
    let signed = sign_evidence(
        &report,
        &inventory,
        &bases,
        &operator,
        &Sha256::of(&capture),
        &monitor,
    );
    let env = signed
        .statements
        .first()
        .context("the bench monitor signed no evidence")?
        .envelope
        .clone();
    let mut tree = MemoryTree::new();
    for e in entries.iter().chain([&env]) {
        tree.push(leaf_hash(e));
    }
    let size = TreeSize(tree.size());
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: size.0,
        root: merkle::root(&tree, size)?,
        extensions: vec![],
    };
    let checkpoint = cp.sign(log_key)?.to_text();
    let logged = |i: u64, bytes: &[u8]| -> Result<nospy_policy::LoggedEntry> {
        Ok(nospy_policy::LoggedEntry {
            index: i,
            bytes: bytes.to_vec(),
            proof: merkle::inclusion_proof(&tree, LogIndex(i), size)?,
            proof_checkpoint: None,
        })
    };
    Ok(EvidenceBench {
        case: nospy_policy::breach::Case {
            checkpoint,
            evidence: logged(size.0 - 1, &env)?,
            release: Some(logged(release, &entries[release as usize])?),
        },
        monitor,
        capture,
        packets: stats.packets,
    })
}
