//! Hostile input for the parsers an operator feeds: agreements, manifests, MUD files, bundles and
//! envelopes. Every truncation of a valid document is an error or a valid document, never a
//! panic.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::{mud, Manifest};
use nospy_policy::Agreement;
use nospy_statement::bundle::Bundle;
use nospy_statement::dsse::Envelope;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn every_cut(doc: &[u8], f: impl Fn(&[u8])) {
    for cut in 0..doc.len() {
        f(&doc[..cut]);
    }
    for pos in (0..doc.len()).step_by(3) {
        for b in [b'"', b'[', b'0', b'\n', b'=', 0xff] {
            let mut m = doc.to_vec();
            m[pos] = b;
            f(&m);
        }
    }
}

#[test]
fn agreements_and_manifests() {
    let a = std::fs::read(root().join("../../examples/agreement.toml")).unwrap();
    every_cut(&a, |b| {
        if let Ok(s) = std::str::from_utf8(b) {
            let _ = Agreement::from_toml(s);
        }
    });
    let m = std::fs::read(root().join("../../examples/manifest.toml")).unwrap();
    every_cut(&m, |b| {
        if let Ok(s) = std::str::from_utf8(b) {
            if let Ok(m) = Manifest::from_toml(s) {
                assert_eq!(Manifest::from_toml(&m.to_toml()).unwrap(), m);
            }
        }
    });
}

#[test]
fn mud_files() {
    let f =
        std::fs::read(root().join("../../../shared/vectors/net/mud/nist-mud_mudfile-sensor.json"))
            .unwrap();
    every_cut(&f, |b| {
        let _ = mud::import(b);
    });
}

#[test]
fn bundles_and_envelopes() {
    let key = nospy_tlog::note::SignerKey::from_seed("k.example", [5; 32]).unwrap();
    let env = Envelope::sign(
        "application/vnd.in-toto+json",
        b"{\"a\":1}".to_vec(),
        &[&key],
    )
    .to_json();
    every_cut(&env, |b| {
        let _ = Envelope::parse(b);
        let _ = nospy_statement::inspect(b);
    });
    let bundle = format!(
        r#"{{"format":"https://nospy.example/bundle/v1","artifact_sha256":"{}","checkpoint":"x\n1\nAAAA\n\n","entries":[{{"entry":"e30=","proof":"c2sp.org/tlog-proof@v1\nindex 0\n\nx\n"}}],"consistency":{{"from_size":1,"proof":[]}}}}"#,
        "ab".repeat(32)
    );
    Bundle::parse(bundle.as_bytes()).unwrap();
    every_cut(bundle.as_bytes(), |b| {
        let _ = Bundle::parse(b);
    });
}

#[test]
fn verifier_state_files() {
    use nospy_policy::{State, StateError};
    let s = State {
        size: 42,
        root: nospy_tlog::Hash([7; 32]),
    };
    let text = s.to_text();
    assert_eq!(State::parse(&text), Ok(s));
    assert_eq!(State::parse(""), Err(StateError::Shape));
    assert_eq!(State::parse("1 2 3"), Err(StateError::Shape));
    assert_eq!(State::parse("-1 AAAA"), Err(StateError::Size("-1".into())));
    assert_eq!(State::parse("1 AAAA"), Err(StateError::Root));
    every_cut(text.as_bytes(), |b| {
        if let Ok(t) = std::str::from_utf8(b) {
            let _ = State::parse(t);
        }
    });
}
