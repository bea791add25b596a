//! Fixtures: signed statements and keys that tests and benchmarks of every crate share.

use nospy_inventory::{Device, Function};
use nospy_tlog::note::SignerKey;
use std::net::IpAddr;

/// A device of an inventory as judging's tests need one: `name` at `addresses`, an access
/// device of vendor "V", model "M", at site "s", not sensitive, no firmware digest, weight and
/// replacement cost 1 (change what a test is about with `Device { .., ..access_device(..) }`).
pub fn access_device(name: &str, addresses: Vec<IpAddr>) -> Device {
    Device {
        device: name.to_string(),
        vendor: "V".into(),
        model: "M".into(),
        function: Function::Access,
        technology: "5g".into(),
        site: "s".into(),
        sensitive: false,
        addresses,
        firmware_sha256: None,
        weight: 1.0,
        replacement_cost: 1.0,
    }
}

/// Submission `i` of the benchmark (and of tests that need many distinct ones): a release of
/// firmware "firmware {i}" by VendorX, with a one-rule manifest, signed by `vendor` (about
/// 1,080 bytes).
pub fn release_submission(i: u64, vendor: &SignerKey) -> Vec<u8> {
    use nospy_statement::predicate::{Release, Source};
    let manifest = nospy_manifest::Manifest::from_toml(
        "[device]\nvendor = \"VendorX\"\nmodel = \"vx-1\"\n[capabilities]\nvendor_remote_access = \"none\"\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"updates.vendorx.example\"\nprotocol = \"tcp\"\nports = \"443\"\n",
    )
    .expect("the benchmark's manifest is valid");
    let fw = nospy_tlog::Sha256::of(format!("firmware {i}").as_bytes());
    let p = nospy_statement::Predicate::Release(Box::new(Release {
        vendor: "VendorX".into(),
        product: "vx-1".into(),
        version: format!("1.{i}"),
        source: Source {
            repository: Some("https://git.vendorx.example/fw".into()),
            commit: format!("{i:040x}"),
            toolchain: None,
        },
        sbom: None,
        build_recipe: None,
        supersedes: vec![],
        manifest,
    }));
    let subject = vec![nospy_statement::ResourceDescriptor {
        name: Some(format!("fw-{i}.bin")),
        digest: Some(nospy_statement::DigestSet::sha256(&fw)),
        ..Default::default()
    }];
    nospy_statement::sign(subject, &p, &[vendor]).to_json()
}
