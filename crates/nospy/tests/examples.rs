//! The commented examples in `examples/` stay valid.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::*;
use std::path::Path;

#[test]
fn the_examples_parse() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let a = nospy_policy::Agreement::from_toml(
        &std::fs::read_to_string(ex.join("agreement.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (a.witness_quorum, a.evaluator_quorum, a.witnesses.len()),
        (2, 2, 3)
    );
    let r = ok(&["manifest", "check", s(&ex.join("manifest.toml")), "--json"]);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(m["allow"].as_array().unwrap().len(), 3);
}
