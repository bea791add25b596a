//! One test per attack the order of checks exists for (DESIGN.md §4), each against the same
//! honest fixture that is admitted.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::Manifest;
use nospy_policy::{
    verify, Agreement, CheckName, Evidence, LoggedEntry, Outcome, State, Verdict, Why,
};
use nospy_statement::predicate::Evidence as Evidence_;
use nospy_statement::predicate::*;
use nospy_statement::{dsse::Envelope, sign, DigestSet, ResourceDescriptor};
use nospy_tlog::checkpoint::Checkpoint;
use nospy_tlog::hash::{leaf_hash, sha256};
use nospy_tlog::merkle::{self, MemoryTree};
use nospy_tlog::note::SignerKey;
use nospy_tlog::{LogIndex, Sha256, TreeSize};

const ORIGIN: &str = "log.example.org/nospy";
const NOW: u64 = 1_800_000_000;

fn k(name: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(name, [seed; 32]).unwrap()
}

struct Keys {
    log: SignerKey,
    w1: SignerKey,
    w2: SignerKey,
    vendor: SignerKey,
    uk1: SignerKey,
    uk2: SignerKey,
    de: SignerKey,
    stranger: SignerKey,
}

fn keys() -> Keys {
    Keys {
        log: k(ORIGIN, 1),
        w1: k("witness.gov.example", 2),
        w2: k("witness.bund.example", 3),
        vendor: k("release.vendorx.example", 4),
        uk1: k("eval.centre.example/a", 5),
        uk2: k("eval.centre.example/b", 6),
        de: k("eval.lab.example", 7),
        stranger: k("release.vendorx.example", 8),
    }
}

fn agreement(k: &Keys, extra: &str) -> Agreement {
    let text = format!(
        r#"
name = "test"
[log]
origin = "{ORIGIN}"
key = "{}"
[witnesses]
quorum = 2
max_age = "24h"
keys = ["{}", "{}"]
[[vendor]]
name = "VendorX"
keys = ["{}"]
[evaluators]
quorum = 2
[[evaluators.member]]
organisation = "UK evaluation centre"
keys = ["{}", "{}"]
[[evaluators.member]]
organisation = "DE evaluation lab"
keys = ["{}"]
[manifest]
vendor_remote_access = ["none", "operator-initiated"]
peers_within = ["operator-networks", "*.vendorx.example", "192.0.2.0/24"]
{extra}
"#,
        k.log.verifier(),
        k.w1.cosigner_verifier(),
        k.w2.cosigner_verifier(),
        k.vendor.verifier(),
        k.uk1.verifier(),
        k.uk2.verifier(),
        k.de.verifier()
    );
    Agreement::from_toml(&text).unwrap()
}

fn manifest(peer: &str, remote: &str) -> Manifest {
    Manifest::from_toml(&format!(
        "[device]\nvendor = \"VendorX\"\nmodel = \"vx-1\"\n[capabilities]\nvendor_remote_access = \"{remote}\"\n[[allow]]\ndirection = \"from-device\"\npeer = \"{peer}\"\nprotocol = \"tcp\"\nports = \"443\"\ninitiated_by = \"device\"\n"
    ))
    .unwrap()
}

fn subject(d: &Sha256) -> Vec<ResourceDescriptor> {
    vec![ResourceDescriptor {
        name: Some("fw.bin".into()),
        digest: Some(DigestSet::sha256(d)),
        ..Default::default()
    }]
}

fn release(d: &Sha256, by: &SignerKey, m: Manifest, version: &str) -> Envelope {
    let p = Predicate::Release(Box::new(Release {
        vendor: "VendorX".into(),
        product: "vx-1".into(),
        version: version.into(),
        source: Source {
            repository: Some("https://git.vendorx.example/fw".into()),
            commit: "c0ffee".into(),
            toolchain: None,
        },
        sbom: None,
        build_recipe: None,
        supersedes: vec![],
        manifest: m,
    }));
    sign(subject(d), &p, &[by])
}

fn attestation(
    d: &Sha256,
    release_index: u64,
    release_entry: &[u8],
    result: Outcome_,
    by: &[&SignerKey],
) -> Envelope {
    let p = Predicate::Attestation(Attestation {
        kind: AttestationKind::BinaryEquivalence,
        result: match result {
            Outcome_::Pass => nospy_statement::predicate::Outcome::Pass,
            Outcome_::Fail => nospy_statement::predicate::Outcome::Fail,
        },
        release: EntryRef {
            log: ORIGIN.into(),
            index: release_index,
            leaf_hash: leaf_hash(release_entry).to_hex(),
        },
        rebuilt_from: None,
        diff: matches!(result, Outcome_::Fail).then(|| DiffSummary {
            summary: "section .text differs".into(),
            differences: vec![],
            total: 1,
        }),
    });
    sign(subject(d), &p, by)
}

#[derive(Clone, Copy)]
enum Outcome_ {
    Pass,
    Fail,
}

/// A log in memory: entries, tree, signed checkpoints with cosignatures.
struct Log {
    entries: Vec<Vec<u8>>,
    tree: MemoryTree,
}

impl Log {
    fn new() -> Log {
        Log {
            entries: vec![],
            tree: MemoryTree::new(),
        }
    }
    fn add(&mut self, e: &Envelope) -> u64 {
        let b = e.to_json();
        self.tree.push(leaf_hash(&b));
        self.entries.push(b);
        self.entries.len() as u64 - 1
    }
    fn checkpoint(&self, k: &Keys, size: u64, cosigners: &[&SignerKey], time: u64) -> String {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: merkle::root(&self.tree, TreeSize(size)).unwrap(),
            extensions: vec![],
        };
        let mut sc = cp.sign(&k.log).unwrap();
        for w in cosigners {
            sc.note.signatures.push(w.cosign(&sc.note.text, time));
        }
        sc.to_text()
    }
    fn evidence(&self, checkpoint: String, size: u64, complete: bool) -> Evidence {
        let entries = (0..size)
            .map(|i| LoggedEntry {
                index: i,
                bytes: self.entries[i as usize].clone(),
                proof: merkle::inclusion_proof(&self.tree, LogIndex(i), TreeSize(size)).unwrap(),
                proof_checkpoint: None,
            })
            .collect();
        Evidence {
            checkpoint,
            entries,
            complete: complete.then(|| "the log".to_string()),
            consistency: None,
        }
    }
}

struct Fixture {
    k: Keys,
    log: Log,
    fw: Sha256,
    rel_index: u64,
}

/// The honest case: a release, passing attestations from both organisations.
fn honest() -> Fixture {
    released(manifest("updates.vendorx.example", "none"), |k| {
        vec![&k.uk1, &k.de]
    })
}

/// A release of firmware 4.2.0 with manifest `m`, then one passing attestation by each of the
/// keys `attesters` picks.
fn released(m: Manifest, attesters: fn(&Keys) -> Vec<&SignerKey>) -> Fixture {
    let k = keys();
    let fw = Sha256::of(b"firmware image 4.2.0");
    let mut log = Log::new();
    let rel = release(&fw, &k.vendor, m, "4.2.0");
    let rel_index = log.add(&rel);
    let rb = rel.to_json();
    for by in attesters(&k) {
        log.add(&attestation(&fw, rel_index, &rb, Outcome_::Pass, &[by]));
    }
    Fixture {
        k,
        log,
        fw,
        rel_index,
    }
}

fn run(f: &Fixture, extra_agreement: &str, ev: &Evidence, state: Option<&State>) -> Verdict {
    verify(&agreement(&f.k, extra_agreement), &f.fw, ev, state, NOW)
}

fn full(f: &Fixture) -> Evidence {
    let n = f.log.entries.len() as u64;
    f.log.evidence(
        f.log.checkpoint(&f.k, n, &[&f.k.w1, &f.k.w2], NOW - 60),
        n,
        true,
    )
}

/// The verdict denies, and `check` failed for the reason of kind `why`.
fn denied_by(v: &Verdict, check: CheckName, why: Why) {
    assert!(!v.admit, "should be denied: {v:#?}");
    let c = v.checks.iter().find(|c| c.name == check).unwrap();
    assert_eq!(c.outcome, Outcome::Fail, "{check}: {v:#?}");
    assert_eq!(c.why, why, "{check}: {:?}", c.reason);
}

/// What `check` tells people names `what` (where the detail matters beyond the kind: which
/// organisations counted, which peer is outside).
fn reason_names(v: &Verdict, check: CheckName, what: &str) {
    let c = v.checks.iter().find(|c| c.name == check).unwrap();
    assert!(
        c.reason.contains(what),
        "{check}: want {what:?} in {:?}",
        c.reason
    );
}

#[test]
fn the_honest_release_is_admitted() {
    let f = honest();
    let v = run(&f, "", &full(&f), None);
    assert!(v.admit, "{v:#?}");
    let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkpoint",
            "release",
            "evaluators",
            "manifest",
            "revocation",
            "breach",
            "rollback",
            "minimum-version"
        ]
    );
    assert!(
        v.checks[2].reason.contains("DE evaluation lab")
            && v.checks[2].reason.contains("UK evaluation centre")
    );
}

#[test]
fn wrong_vendor_key() {
    let mut f = honest();
    let fw = f.fw;
    let forged = release(
        &fw,
        &f.k.stranger,
        manifest("updates.vendorx.example", "none"),
        "4.2.1",
    );
    // Only the forged release is offered.
    f.log = Log::new();
    let i = f.log.add(&forged);
    let fb = forged.to_json();
    f.log
        .add(&attestation(&fw, i, &fb, Outcome_::Pass, &[&f.k.uk1]));
    f.log
        .add(&attestation(&fw, i, &fb, Outcome_::Pass, &[&f.k.de]));
    denied_by(
        &run(&f, "", &full(&f), None),
        CheckName::Release,
        Why::NoRelease,
    );
}

#[test]
fn swapped_artifact() {
    let f = honest();
    let v = verify(
        &agreement(&f.k, ""),
        &Sha256::of(b"a different image"),
        &full(&f),
        None,
        NOW,
    );
    denied_by(&v, CheckName::Release, Why::OtherArtifact);
}

#[test]
fn statement_replayed_for_another_digest() {
    // A genuine release and attestations of firmware A, presented for firmware B by swapping the
    // subject: the signatures no longer verify, so nothing counts.
    let f = honest();
    let other = Sha256::of(b"firmware B");
    let mut ev = full(&f);
    for e in &mut ev.entries {
        let mut env = Envelope::parse(&e.bytes).unwrap();
        env.payload = String::from_utf8(env.payload)
            .unwrap()
            .replace(&f.fw.to_hex(), &other.to_hex())
            .into_bytes();
        e.bytes = env.to_json();
    }
    let v = verify(&agreement(&f.k, ""), &other, &ev, None, NOW);
    denied_by(&v, CheckName::Release, Why::NoRelease);
}

#[test]
fn inclusion_proof_against_a_different_checkpoint() {
    let mut f = honest();
    // The checkpoint offered is of a log that never held these entries.
    let mut other = Log::new();
    other.add(&release(
        &Sha256::of(b"x"),
        &f.k.vendor,
        manifest("updates.vendorx.example", "none"),
        "1",
    ));
    other.add(&release(
        &Sha256::of(b"y"),
        &f.k.vendor,
        manifest("updates.vendorx.example", "none"),
        "1",
    ));
    other.add(&release(
        &Sha256::of(b"z"),
        &f.k.vendor,
        manifest("updates.vendorx.example", "none"),
        "1",
    ));
    let cp = other.checkpoint(&f.k, 3, &[&f.k.w1, &f.k.w2], NOW - 60);
    let mut ev = full(&f);
    ev.checkpoint = cp;
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Release,
        Why::NotIncluded,
    );
    // And a tlog-proof whose own checkpoint is not the one given.
    let mut ev = full(&f);
    for e in &mut ev.entries {
        e.proof_checkpoint = Some(f.log.checkpoint(&f.k, 2, &[&f.k.w1, &f.k.w2], NOW - 60));
    }
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Release,
        Why::NotIncluded,
    );
    f.log.entries.clear();
}

#[test]
fn forged_or_missing_cosignature() {
    let f = honest();
    let n = f.log.entries.len() as u64;
    // Missing: one witness only.
    let ev = f
        .log
        .evidence(f.log.checkpoint(&f.k, n, &[&f.k.w1], NOW - 60), n, true);
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Checkpoint,
        Why::WitnessQuorum,
    );
    // Forged: a cosignature line taken from another checkpoint.
    let other = f.log.checkpoint(&f.k, n - 1, &[&f.k.w1, &f.k.w2], NOW - 60);
    let stolen = other.lines().last().unwrap();
    let honest_one = f.log.checkpoint(&f.k, n, &[&f.k.w1], NOW - 60);
    let forged = format!("{honest_one}{stolen}\n");
    let ev = f.log.evidence(forged, n, true);
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Checkpoint,
        Why::BadCosignature,
    );
    // A cosignature by a key that is not a witness of the agreement does not count.
    let ev = f.log.evidence(
        f.log.checkpoint(&f.k, n, &[&f.k.w1, &f.k.de], NOW - 60),
        n,
        true,
    );
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Checkpoint,
        Why::WitnessQuorum,
    );
}

#[test]
fn fewer_than_k_evaluators() {
    let f = released(manifest("updates.vendorx.example", "none"), |k| vec![&k.de]);
    denied_by(
        &run(&f, "", &full(&f), None),
        CheckName::Evaluators,
        Why::EvaluatorQuorum,
    );
}

#[test]
fn two_attestations_from_one_organisation_count_once() {
    let f = released(manifest("updates.vendorx.example", "none"), |k| {
        vec![&k.uk1, &k.uk2]
    });
    let v = run(&f, "", &full(&f), None);
    denied_by(&v, CheckName::Evaluators, Why::EvaluatorQuorum);
    reason_names(&v, CheckName::Evaluators, "(UK evaluation centre)");
}

#[test]
fn duplicate_signatures_count_once() {
    let k = keys();
    let fw = Sha256::of(b"firmware image 4.2.0");
    let mut log = Log::new();
    let rel = release(
        &fw,
        &k.vendor,
        manifest("updates.vendorx.example", "none"),
        "4.2.0",
    );
    let i = log.add(&rel);
    let mut a = attestation(&fw, i, &rel.to_json(), Outcome_::Pass, &[&k.uk1]);
    a.signatures = [
        a.signatures.clone(),
        a.signatures.clone(),
        a.signatures.clone(),
    ]
    .concat();
    log.add(&a);
    let f = Fixture {
        k,
        log,
        fw,
        rel_index: i,
    };
    denied_by(
        &run(&f, "", &full(&f), None),
        CheckName::Evaluators,
        Why::EvaluatorQuorum,
    );
}

#[test]
fn a_failing_attestation_denies() {
    let mut f = honest();
    let rb = f.log.entries[f.rel_index as usize].clone();
    let fw = f.fw;
    let failing = attestation(&fw, f.rel_index, &rb, Outcome_::Fail, &[&f.k.uk2]);
    f.log.add(&failing);
    denied_by(
        &run(&f, "", &full(&f), None),
        CheckName::Evaluators,
        Why::FailingAttestation,
    );
}

#[test]
fn a_revocation_in_the_log_denies() {
    let mut f = honest();
    let rv = Predicate::Revocation(Revocation {
        reason: "remote shell found".into(),
        effective: "2026-01-01T00:00:00Z".into(),
    });
    let env = sign(subject(&f.fw), &rv, &[&f.k.de]);
    f.log.add(&env);
    denied_by(
        &run(&f, "", &full(&f), None),
        CheckName::Revocation,
        Why::Revoked,
    );
}

#[test]
fn a_bundle_says_revocation_not_checked() {
    let f = honest();
    let mut ev = full(&f);
    ev.complete = None;
    let v = run(&f, "", &ev, None);
    assert!(v.admit);
    let c = v
        .checks
        .iter()
        .find(|c| c.name == CheckName::Revocation)
        .unwrap();
    assert_eq!(c.outcome, Outcome::NotChecked);
    assert_eq!(c.why, Why::Unprovable);
}

#[test]
fn a_checkpoint_older_than_allowed() {
    let f = honest();
    let n = f.log.entries.len() as u64;
    let ev = f.log.evidence(
        f.log
            .checkpoint(&f.k, n, &[&f.k.w1, &f.k.w2], NOW - 2 * 86_400),
        n,
        true,
    );
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Checkpoint,
        Why::WitnessQuorum,
    );
    let ev = f.log.evidence(
        f.log.checkpoint(&f.k, n, &[&f.k.w1, &f.k.w2], NOW + 86_400),
        n,
        true,
    );
    denied_by(
        &run(&f, "", &ev, None),
        CheckName::Checkpoint,
        Why::WitnessQuorum,
    );
}

#[test]
fn rollback_to_a_checkpoint_that_does_not_extend_the_remembered_one() {
    let f = honest();
    let n = f.log.entries.len() as u64;
    let ev = full(&f);
    let root = merkle::root(&f.log.tree, TreeSize(n)).unwrap();
    // Remembered: a larger tree than offered.
    let bigger = State { size: n + 5, root };
    denied_by(
        &run(&f, "", &ev, Some(&bigger)),
        CheckName::Rollback,
        Why::Rollback,
    );
    // Remembered: the same size with another root (a fork).
    let fork = State {
        size: n,
        root: sha256(b"fork"),
    };
    denied_by(
        &run(&f, "", &ev, Some(&fork)),
        CheckName::Rollback,
        Why::Fork,
    );
    // Remembered: an older size; without a consistency proof it cannot be shown to extend it.
    let older = State {
        size: 1,
        root: merkle::root(&f.log.tree, TreeSize(1)).unwrap(),
    };
    denied_by(
        &run(&f, "", &ev, Some(&older)),
        CheckName::Rollback,
        Why::NoConsistencyProof,
    );
    // With the right proof, it does; with a proof from another history, it does not.
    let mut ev2 = ev.clone();
    ev2.consistency = Some((
        1,
        merkle::consistency_proof(&f.log.tree, TreeSize(1), TreeSize(n)).unwrap(),
    ));
    assert!(run(&f, "", &ev2, Some(&older)).admit);
    let other = State {
        size: 1,
        root: sha256(b"other history"),
    };
    denied_by(
        &run(&f, "", &ev2, Some(&other)),
        CheckName::Rollback,
        Why::Inconsistent,
    );
}

#[test]
fn a_manifest_that_breaks_an_agreement_rule() {
    for (peer, remote, why) in [
        (
            "updates.vendorx.example",
            "vendor-initiated",
            Why::RemoteAccess,
        ),
        ("telemetry.elsewhere.example", "none", Why::PeersOutside),
        ("198.51.100.0/24", "none", Why::PeersOutside),
    ] {
        let f = released(manifest(peer, remote), |k| vec![&k.uk1, &k.de]);
        let v = run(&f, "", &full(&f), None);
        denied_by(&v, CheckName::Manifest, why);
        if why == Why::PeersOutside {
            reason_names(&v, CheckName::Manifest, peer);
        }
    }
}

#[test]
fn a_version_below_the_minimum() {
    let f = honest();
    let v = run(
        &f,
        "[[minimum_version]]\nproduct = \"vx-1\"\nversion = \"4.10.0\"\n",
        &full(&f),
        None,
    );
    denied_by(&v, CheckName::MinimumVersion, Why::BelowMinimum);
    assert!(
        run(
            &f,
            "[[minimum_version]]\nproduct = \"vx-1\"\nversion = \"4.2\"\n",
            &full(&f),
            None
        )
        .admit
    );
}

#[test]
fn agreement_errors_name_the_place() {
    let k = keys();
    let good = format!("name = \"x\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n[witnesses]\nquorum = 0\nmax_age = \"1h\"\n[[vendor]]\nname = \"V\"\nkeys = [\"{}\"]\n[evaluators]\nquorum = 0\n", k.log.verifier(), k.vendor.verifier());
    Agreement::from_toml(&good).unwrap();
    for (bad, why) in [
        (
            good.replace("quorum = 0\nmax_age", "quorum = 1\nmax_age"),
            "quorum 1 is more than the 0 witnesses",
        ),
        (good.replace("\"1h\"", "\"soon\""), "not a duration"),
        (
            good.replace(
                &format!("origin = \"{ORIGIN}\""),
                "origin = \"other.example/log\"",
            ),
            "but the origin is",
        ),
        (
            good.replace("name = \"V\"", "name = \"V\"\ncolour = 1"),
            "line 10",
        ),
        (
            good.replace(
                &k.vendor.verifier().to_string(),
                &k.log.cosigner_verifier().to_string(),
            ),
            "type 0x04",
        ),
        (
            format!(
                "{good}[[evaluators.member]]\norganisation = \"E\"\nkeys = [\"{}\"]\n",
                k.vendor.verifier()
            ),
            "listed for both",
        ),
    ] {
        let e = Agreement::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains(why), "want {why:?} in {e}");
    }
}

/// Two monitor organisations, the quorum and what a breach does.
fn monitors(quorum: usize, on_breach: &str) -> String {
    format!(
        "[monitors]\nquorum = {quorum}\non_breach = \"{on_breach}\"\n\
         [[monitors.member]]\norganisation = \"UK operator\"\nkeys = [\"{}\"]\n\
         [[monitors.member]]\norganisation = \"DE operator\"\nkeys = [\"{}\"]\n",
        k("monitor.uk.example", 20).verifier(),
        k("monitor.de.example", 21).verifier()
    )
}

/// Evidence about the fixture's firmware naming its release: the device phoning home to
/// `peer` on TCP 8443 (which its manifest does not allow), or, with `names`, a row its name
/// rule could allow.
fn breach(
    f: &Fixture,
    by: &SignerKey,
    peer: &str,
    port: u16,
    names: Option<Vec<String>>,
) -> Envelope {
    let rb = &f.log.entries[f.rel_index as usize];
    let p = Predicate::Evidence(Evidence_ {
        device: "ran-000001".into(),
        window: Window {
            start: "2026-12-04T10:00:00Z".into(),
            end: "2026-12-04T10:05:00Z".into(),
        },
        flows: vec![FlowViolation {
            direction: "from-device".into(),
            peer: peer.into(),
            protocol: "tcp".into(),
            port,
            flows: 3,
            packets: 30,
            bytes: 3000,
            first_seen: "2026-12-04T10:01:00Z".into(),
            last_seen: "2026-12-04T10:02:00Z".into(),
            why: Some(nospy_manifest::judge::Why::Peer),
            names,
            names_left_out: 0,
            same_vendor: false,
            opened_by: None,
        }],
        manifest: Some("release entry 0".into()),
        source: DigestSet::sha256(&Sha256([5; 32])),
        release: Some(EntryRef {
            log: ORIGIN.into(),
            index: f.rel_index,
            leaf_hash: leaf_hash(rb).to_hex(),
        }),
        resolutions: Some(Default::default()),
        device_addresses: vec!["10.0.0.1".parse().unwrap()],
    });
    sign(subject(&f.fw), &p, &[by])
}

#[test]
fn verified_breach_evidence_from_a_quorum_of_organisations_denies() {
    let (uk, de) = (k("monitor.uk.example", 20), k("monitor.de.example", 21));
    let mut f = honest();
    f.log
        .add(&breach(&f, &uk, "203.0.113.66", 8443, Some(vec![])));
    // One organisation is enough for a quorum of one.
    let v = run(&f, &monitors(1, "deny"), &full(&f), None);
    denied_by(&v, CheckName::Breach, Why::Breach);
    reason_names(&v, CheckName::Breach, "UK operator (entries 3)");
    // Not for a quorum of two, however many entries it logs.
    f.log
        .add(&breach(&f, &uk, "203.0.113.67", 8443, Some(vec![])));
    let v = run(&f, &monitors(2, "deny"), &full(&f), None);
    assert!(v.admit, "{v:#?}");
    reason_names(&v, CheckName::Breach, "1 of the 2 monitor organisations");
    // A second organisation's evidence makes the quorum.
    f.log
        .add(&breach(&f, &de, "203.0.113.66", 8443, Some(vec![])));
    let v = run(&f, &monitors(2, "deny"), &full(&f), None);
    denied_by(&v, CheckName::Breach, Why::Breach);
    // "flag" admits, and says so.
    let v = run(&f, &monitors(2, "flag"), &full(&f), None);
    assert!(v.admit, "{v:#?}");
    assert_eq!(v.flags.len(), 1, "{v:#?}");
    reason_names(&v, CheckName::Breach, "flagged: ");
    // Without [monitors], evidence is not read.
    let v = run(&f, "", &full(&f), None);
    assert!(v.admit, "{v:#?}");
}

#[test]
fn evidence_its_own_judgement_does_not_reproduce_never_counts() {
    let uk = k("monitor.uk.example", 20);
    let mut f = honest();
    // Port 443 to an address that stood for the allowed name: the manifest's name rule allows
    // it, depending on who opened the connection, which evidence does not record.
    f.log.add(&breach(
        &f,
        &uk,
        "198.51.100.1",
        443,
        Some(vec!["updates.vendorx.example".into()]),
    ));
    let v = run(&f, &monitors(1, "deny"), &full(&f), None);
    assert!(v.admit, "{v:#?}");
    reason_names(&v, CheckName::Breach, "not counted: entry 3");
    // A statement by a key the agreement does not list as a monitor is not read at all.
    f.log.add(&breach(
        &f,
        &k("monitor.stranger.example", 22),
        "203.0.113.66",
        8443,
        Some(vec![]),
    ));
    let v = run(&f, &monitors(1, "deny"), &full(&f), None);
    assert!(v.admit, "{v:#?}");
}

#[test]
fn a_monitor_key_cannot_revoke() {
    let uk = k("monitor.uk.example", 20);
    let mut f = honest();
    let p = Predicate::Revocation(Revocation {
        reason: "a monitor says so".into(),
        effective: "2020-01-01T00:00:00Z".into(),
    });
    f.log.add(&sign(subject(&f.fw), &p, &[&uk]));
    let v = run(&f, &monitors(1, "deny"), &full(&f), None);
    assert!(v.admit, "{v:#?}");
}

#[test]
fn evidence_with_a_proof_from_another_tree_or_checkpoint_is_not_included() {
    use nospy_policy::breach::{verify_evidence, Case, EvidenceCheck, Failure};
    let uk = k("monitor.uk.example", 20);
    let mut f = honest();
    let index = f
        .log
        .add(&breach(&f, &uk, "203.0.113.66", 8443, Some(vec![])));
    let agreement = agreement(&f.k, &monitors(1, "deny"));
    let ev = full(&f);
    let case = |evidence: LoggedEntry| Case {
        checkpoint: ev.checkpoint.clone(),
        evidence,
        release: Some(ev.entries[f.rel_index as usize].clone()),
    };
    let honest_case = case(ev.entries[index as usize].clone());
    assert!(verify_evidence(&agreement, &honest_case, NOW).holds);
    let failed = |c: &Case| {
        let v = verify_evidence(&agreement, c, NOW);
        assert!(!v.holds);
        let c = v.checks.iter().find(|c| c.pass == Some(false)).unwrap();
        (c.name, c.failure.unwrap())
    };
    // The proof of the same entry in another log's tree (one more entry before it).
    let mut other = Log::new();
    other.add(&breach(&f, &uk, "203.0.113.1", 1, Some(vec![])));
    for e in &f.log.entries {
        other.tree.push(leaf_hash(e));
        other.entries.push(e.clone());
    }
    let n = other.entries.len() as u64;
    let mut moved = ev.entries[index as usize].clone();
    moved.proof = merkle::inclusion_proof(&other.tree, LogIndex(index + 1), TreeSize(n)).unwrap();
    assert_eq!(
        failed(&case(moved)),
        (EvidenceCheck::Inclusion, Failure::NotIncluded)
    );
    // A tlog-proof made against another checkpoint.
    let mut elsewhere = ev.entries[index as usize].clone();
    elsewhere.proof_checkpoint = Some(other.checkpoint(&f.k, n, &[&f.k.w1, &f.k.w2], NOW));
    assert_eq!(
        failed(&case(elsewhere)),
        (EvidenceCheck::Inclusion, Failure::NotIncluded)
    );
    // A checkpoint the witnesses did not cosign.
    let mut bare = case(ev.entries[index as usize].clone());
    bare.checkpoint = f.log.checkpoint(&f.k, f.log.entries.len() as u64, &[], NOW);
    assert_eq!(
        failed(&bare),
        (EvidenceCheck::Checkpoint, Failure::Checkpoint)
    );
}

#[test]
fn evidence_about_two_firmwares_counts_against_neither() {
    use nospy_policy::breach::{verify_evidence, Case, EvidenceCheck, Failure};
    let uk = k("monitor.uk.example", 20);
    let mut f = honest();
    // The monitor's evidence against the release, re-signed about this firmware and another.
    let honest_ev = breach(&f, &uk, "203.0.113.66", 8443, Some(vec![]));
    let st = nospy_statement::Statement::parse(&honest_ev.payload).unwrap();
    let p = Predicate::parse(&st.predicate_type, &st.predicate).unwrap();
    let mut two = subject(&Sha256::of(b"other firmware"));
    two.extend(subject(&f.fw));
    let index = f.log.add(&sign(two, &p, &[&uk]));
    let agreement = agreement(&f.k, &monitors(1, "deny"));
    let ev = full(&f);
    let v = verify_evidence(
        &agreement,
        &Case {
            checkpoint: ev.checkpoint.clone(),
            evidence: ev.entries[index as usize].clone(),
            release: Some(ev.entries[f.rel_index as usize].clone()),
        },
        NOW,
    );
    let c = v.checks.iter().find(|c| c.pass == Some(false)).unwrap();
    assert_eq!(
        (c.name, c.failure),
        (EvidenceCheck::Signature, Some(Failure::Subjects))
    );
    let v = run(&f, &monitors(1, "deny"), &ev, None);
    assert!(v.admit, "{v:#?}");
    reason_names(&v, CheckName::Breach, "not counted: entry 3");
}
