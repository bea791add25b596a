//! nospy's signed statements: signing, opening, strictness.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::Manifest;
use nospy_statement::predicate::*;
use nospy_statement::{
    dsse::Envelope, inspect, open, sign, DigestSet, ResourceDescriptor, StatementError,
};
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;

fn vendor() -> SignerKey {
    SignerKey::from_seed("release.vendorx.example", [1; 32]).unwrap()
}

fn manifest() -> Manifest {
    Manifest::from_toml("[device]\nvendor = \"VendorX\"\nmodel = \"vx-1\"\n[capabilities]\nvendor_remote_access = \"none\"\n").unwrap()
}

fn release() -> Predicate {
    Predicate::Release(Box::new(Release {
        vendor: "VendorX".into(),
        product: "vx-1".into(),
        version: "4.2.0".into(),
        source: Source {
            repository: Some("https://git.vendorx.example/fw".into()),
            commit: "abc123".into(),
            toolchain: None,
        },
        sbom: Some(DigestSet::sha256(&Sha256::of(b"sbom"))),
        build_recipe: None,
        supersedes: vec!["4.1.0".into()],
        manifest: manifest(),
    }))
}

fn subject(d: &Sha256) -> Vec<ResourceDescriptor> {
    vec![ResourceDescriptor {
        name: Some("fw.bin".into()),
        digest: Some(DigestSet::sha256(d)),
        ..Default::default()
    }]
}

#[test]
fn sign_then_open_gives_back_the_statement() {
    let d = Sha256::of(b"firmware");
    let env = sign(subject(&d), &release(), &[&vendor()]);
    let bytes = env.to_json();
    let o = open(&bytes, &[vendor().verifier()]).unwrap();
    assert_eq!(o.signers, vec![0]);
    assert!(o.statement.is_about(&d));
    assert_eq!(o.predicate, release());
    // The keyid names the signer, so the log can check the signature without trusting anyone.
    let (_, keys) = inspect(&bytes).unwrap();
    assert_eq!(keys, vec![vendor().verifier()]);
}

#[test]
fn wrong_keys_tampering_and_duplicates() {
    let d = Sha256::of(b"firmware");
    let other = SignerKey::from_seed("release.vendorx.example", [2; 32]).unwrap();
    let env = sign(subject(&d), &release(), &[&vendor()]);
    assert!(matches!(
        open(&env.to_json(), &[other.verifier()]),
        Err(StatementError::Envelope(_))
    ));
    // A payload changed after signing.
    let mut t = env.clone();
    t.payload = String::from_utf8(t.payload)
        .unwrap()
        .replace("4.2.0", "4.2.1")
        .into_bytes();
    assert!(open(&t.to_json(), &[vendor().verifier()]).is_err());
    assert!(inspect(&t.to_json()).is_err());
    // The same key signing twice counts once.
    let twice = Envelope {
        signatures: [env.signatures.clone(), env.signatures.clone()].concat(),
        ..env.clone()
    };
    assert_eq!(
        open(&twice.to_json(), &[vendor().verifier()])
            .unwrap()
            .signers,
        vec![0]
    );
    // The keyid is a hint only: a lying keyid does not stop verification with the right key...
    let mut lying = env.clone();
    lying.signatures[0].keyid = Some(other.verifier().to_string());
    assert!(open(&lying.to_json(), &[vendor().verifier()]).is_ok());
    // ...and does not fool the self-check either.
    assert!(inspect(&lying.to_json()).is_err());
}

#[test]
fn nospy_predicates_are_strict_and_unknown_digests_are_ignored() {
    let d = Sha256::of(b"firmware");
    let mut v = release().to_json();
    v["colour"] = "red".into();
    // Refused as a predicate, and the message names the field.
    let e = Predicate::parse(RELEASE_V1, &v).unwrap_err();
    assert!(matches!(e, StatementError::Predicate(_)), "{e}");
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let mut v = release().to_json();
    v["manifest"]["allow"] =
        serde_json::json!([{"direction": "sideways", "peer": "x.example", "protocol": "tcp"}]);
    let e = Predicate::parse(RELEASE_V1, &v).unwrap_err();
    assert!(matches!(e, StatementError::Predicate(_)), "{e}");
    assert!(e.to_string().contains("sideways"), "{e}");
    let r = Predicate::parse(
        REVOCATION_V1,
        &serde_json::json!({"reason": "backdoor", "effective": "soon"}),
    );
    let e = r.unwrap_err();
    assert!(matches!(e, StatementError::Predicate(_)), "{e}");
    assert!(e.to_string().contains("RFC 3339"), "{e}");
    assert!(Predicate::parse("https://slsa.dev/provenance/v1", &serde_json::json!({})).is_err());
    // A subject with an unknown algorithm beside sha256 is fine; the unknown one is ignored.
    let mut ds = DigestSet::sha256(&d);
    ds.0.insert("blake9".into(), "zz".into());
    let sub = vec![ResourceDescriptor {
        digest: Some(ds),
        ..Default::default()
    }];
    let env = sign(sub, &release(), &[&vendor()]);
    assert!(open(&env.to_json(), &[vendor().verifier()])
        .unwrap()
        .statement
        .is_about(&d));
    // Without any SHA-256 the statement is refused.
    let sub = vec![ResourceDescriptor {
        digest: Some(DigestSet([("sha512".to_string(), "00".repeat(64))].into())),
        ..Default::default()
    }];
    let env = sign(sub, &release(), &[&vendor()]);
    assert!(open(&env.to_json(), &[vendor().verifier()]).is_err());
}

#[test]
fn malformed_envelopes_are_refused_not_panicked_on() {
    for bad in [
        &b""[..],
        b"{}",
        b"[]",
        br#"{"payload":"!!","payloadType":"x","signatures":[{"sig":"AA=="}]}"#,
        br#"{"payload":"AA==","payloadType":"x","signatures":[]}"#,
        br#"{"payload":"AA==","payloadType":"x","signatures":[{"sig":"AA=="}],"extra":1}"#,
        br#"{"payload":"AA==","payloadType":"x","signatures":[{"sig":"@@"}]}"#,
    ] {
        assert!(
            Envelope::parse(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(inspect(bad).is_err());
    }
    let big = vec![b' '; 70_000];
    assert!(Envelope::parse(&big)
        .unwrap_err()
        .to_string()
        .contains("limit"));
}

#[test]
fn opening_many_at_once_gives_what_opening_each_gives() {
    let d = Sha256::of(b"firmware");
    let other = SignerKey::from_seed("eval.example", [3; 32]).unwrap();
    let good = sign(subject(&d), &release(), &[&vendor()]).to_json();
    let by_other = sign(subject(&d), &release(), &[&other]).to_json();
    let mut lying = sign(subject(&d), &release(), &[&vendor()]);
    lying.signatures[0].keyid = Some(other.verifier().to_string());
    let lying = lying.to_json();
    let mut bad = sign(subject(&d), &release(), &[&vendor()]);
    bad.signatures[0].sig[0] ^= 1;
    let bad = bad.to_json();
    let keys = [vendor().verifier(), other.verifier()];
    let all: Vec<&[u8]> = vec![&good, &by_other, &lying, &bad, b"junk"];
    let many = nospy_statement::open_many(&all, &keys);
    for (b, m) in all.iter().zip(&many) {
        let one = open(b, &keys);
        assert_eq!(
            one.as_ref().map(|o| &o.signers).ok(),
            m.as_ref().map(|o| &o.signers).ok()
        );
        assert_eq!(one.is_ok(), m.is_ok());
    }
    assert_eq!(many[0].as_ref().unwrap().signers, vec![0]);
    assert_eq!(many[1].as_ref().unwrap().signers, vec![1]);
    assert_eq!(many[2].as_ref().unwrap().signers, vec![0]);
    assert!(many[3].is_err() && many[4].is_err());
    // Without the bad one the batch holds and gives the same answers.
    let fine: Vec<&[u8]> = vec![&good, &by_other, &lying];
    let many = nospy_statement::open_many(&fine, &keys);
    assert_eq!(
        many.iter()
            .map(|m| m.as_ref().unwrap().signers.clone())
            .collect::<Vec<_>>(),
        vec![vec![0], vec![1], vec![0]]
    );
}

/// A row's `names_left_out` (how many of its peer's names it does not list) is of the second
/// version, written only when not zero, and needs `names`: a count of names left out of a list
/// that is not there is refused, naming the row.
#[test]
fn names_left_out_is_v2_and_needs_names() {
    let seed: serde_json::Value =
        serde_json::from_str(include_str!("../../fuzz/seeds/evidence/v2-phone-home.json")).unwrap();
    let Predicate::Evidence(e) = Predicate::parse(EVIDENCE_V2, &seed).unwrap() else {
        panic!("not evidence")
    };
    assert_eq!(e.flows[1].names_left_out, 4000);
    assert_eq!(e.flows[0].names_left_out, 0);
    // Written back as read: absent where zero.
    let back = serde_json::to_value(&e.flows[0]).unwrap();
    assert!(back.get("names_left_out").is_none(), "{back}");
    assert_eq!(serde_json::to_value(&e).unwrap(), seed);

    let mut v = seed.clone();
    v["flows"][1]
        .as_object_mut()
        .unwrap()
        .remove("names")
        .unwrap();
    let err = Predicate::parse(EVIDENCE_V2, &v).unwrap_err().to_string();
    assert!(
        err.contains("flows[1]: `names_left_out` without `names`"),
        "{err}"
    );
    // Not in the first version.
    let v1 = serde_json::json!({
        "device": "d",
        "window": seed["window"],
        "flows": [{
            "direction": "from-device", "peer": "192.0.2.9", "protocol": "tcp", "port": 25,
            "flows": 1, "packets": 1, "bytes": 60,
            "first_seen": "2026-12-04T10:01:30.000Z", "last_seen": "2026-12-04T10:01:31.000Z",
            "names_left_out": 3
        }],
        "source": seed["source"],
    });
    let err = Predicate::parse(EVIDENCE_V1, &v1).unwrap_err().to_string();
    assert!(err.contains("carries fields of v2"), "{err}");
}
