//! DSSE and in-toto against the published vectors in `../shared/vectors/attest`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_statement::dsse::{pae, Envelope};
use nospy_statement::intoto::{ResourceDescriptor, Statement};
use nospy_tlog::hex;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn attest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/attest")
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(attest().join(rel)).unwrap()).unwrap()
}

#[test]
fn pae_matches_the_dsse_vector_byte_for_byte() {
    let v = json("dsse/dsse-vectors.json");
    let o = &v["official"];
    let got = pae(
        o["payloadType"].as_str().unwrap(),
        o["payload_utf8"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(got, o["pae_utf8"].as_str().unwrap().as_bytes());
    assert_eq!(hex::encode(&got), o["pae_hex"].as_str().unwrap());
    // The derived cases (empty, UTF-8 lengths in bytes): the type is given as bytes, so the
    // non-UTF-8-safe ones are skipped only if they are not valid UTF-8 (none is).
    for c in v["derived_pae_cases_NOT_OFFICIAL"].as_array().unwrap() {
        let t = String::from_utf8(hex::decode(c["payloadType_hex"].as_str().unwrap()).unwrap())
            .unwrap();
        let body = hex::decode(c["payload_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(&pae(&t, &body)),
            c["pae_hex"].as_str().unwrap(),
            "{}",
            c["label"]
        );
    }
}

#[test]
fn the_official_p256_signature_verifies_over_nospys_pae() {
    use p256::ecdsa::signature::Verifier;
    let v = json("dsse/dsse-vectors.json");
    let o = &v["official"];
    let point = hex::decode(o["key"]["sec1_uncompressed_hex"].as_str().unwrap()).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    for env in ["envelope_spec", "envelope_reference_impl_with_keyid"] {
        let e = Envelope::parse(serde_json::to_string(&o[env]).unwrap().as_bytes()).unwrap();
        assert_eq!(e.payload, b"hello world");
        let sig = p256::ecdsa::Signature::from_slice(&e.signatures[0].sig).unwrap();
        key.verify(&pae(&e.payload_type, &e.payload), &sig).unwrap();
        // And the signature is over exactly those bytes: one more byte of payload breaks it.
        assert!(key
            .verify(&pae(&e.payload_type, b"hello world!"), &sig)
            .is_err());
    }
    // URL-safe and unpadded base64 are accepted too.
    let url = r#"{"payload":"aGVsbG8gd29ybGQ","payloadType":"x","signatures":[{"sig":"A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F-FnZ-O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA"}]}"#;
    let e = Envelope::parse(url.as_bytes()).unwrap();
    assert_eq!(e.payload, b"hello world");
    assert_eq!(e.signatures[0].sig.len(), 64);
}

#[test]
fn the_in_toto_examples_parse() {
    let mut statements = 0;
    for entry in std::fs::read_dir(attest().join("in-toto")).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("resource_descriptor") {
            let rd: ResourceDescriptor = serde_json::from_slice(&bytes).unwrap();
            rd.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            let s = Statement::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!s.subject.is_empty());
            statements += 1;
        }
    }
    assert_eq!(statements, 9);
}
