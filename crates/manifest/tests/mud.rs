//! MUD import against the real MUD files in `../shared/vectors/net/mud`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_manifest::mud::{import, Note};
use nospy_manifest::{Direction, Initiator, Manifest, Peer, Ports, Protocol};
use std::path::{Path, PathBuf};

fn mud_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/net/mud")
}

fn load(name: &str) -> nospy_manifest::mud::MudImport {
    import(&std::fs::read(mud_dir().join(name)).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn skipped(n: &[Note]) -> Vec<String> {
    n.iter()
        .filter(|n| matches!(n, Note::Skipped { .. }))
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn every_mud_file_imports_or_is_refused_with_a_reason() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(mud_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 12);
    for f in files {
        let r = import(&std::fs::read(&f).unwrap());
        match r {
            Ok(imp) => {
                eprintln!(
                    "{}: {} rules from {} ACEs, {} notes",
                    f.display(),
                    imp.manifest.allow.len(),
                    imp.imported,
                    imp.notes.len()
                );
                for n in &imp.notes {
                    eprintln!("    {n}");
                }
                // The result is a valid manifest in both its forms.
                let toml = imp.manifest.to_toml();
                assert_eq!(
                    Manifest::from_toml(&toml).unwrap(),
                    imp.manifest,
                    "{}",
                    f.display()
                );
                assert_eq!(
                    Manifest::from_json(&imp.manifest.to_json()).unwrap(),
                    imp.manifest
                );
                assert!(!imp.manifest.allow.is_empty(), "{}: no rules", f.display());
            }
            Err(e) => panic!("{}: refused: {e}", f.display()),
        }
    }
}

#[test]
fn the_rfc_example_becomes_two_tcp_443_rules() {
    let imp = load("rfc8520-sec9-example_via-zeek-btest.json");
    assert_eq!(imp.manifest.device.model, "The BMS Example Light Bulb");
    assert!(skipped(&imp.notes).is_empty(), "{:?}", imp.notes);
    let name = Peer::Name("test.example.com".into());
    let rules = &imp.manifest.allow;
    assert_eq!(rules.len(), 2);
    let fr = rules
        .iter()
        .find(|r| r.direction == Direction::FromDevice)
        .unwrap();
    assert_eq!(
        (fr.peer.clone(), fr.protocol, fr.ports, fr.initiated_by),
        (
            name.clone(),
            Protocol::Tcp,
            Ports::Range(443, 443),
            Some(Initiator::Device)
        )
    );
    let to = rules
        .iter()
        .find(|r| r.direction == Direction::ToDevice)
        .unwrap();
    // To the device: the peer's (source) port is 443, the connection the device's own.
    assert_eq!(
        (to.peer.clone(), to.ports, to.initiated_by),
        (name, Ports::Range(443, 443), Some(Initiator::Device))
    );
}

#[test]
fn the_draft_format_of_osmud_imports() {
    let imp = load("osmud_lightbulb2000_draft-format.json");
    assert!(skipped(&imp.notes).is_empty(), "{:?}", imp.notes);
    assert!(imp
        .manifest
        .allow
        .iter()
        .any(|r| r.peer == Peer::Name("service.bms.example.com".into())
            && r.ports == Ports::Range(443, 443)));
}

#[test]
fn nist_abstractions_map_or_are_named() {
    let imp = load("nist-mud_mudfile-sensor.json");
    let peers: Vec<String> = imp
        .manifest
        .allow
        .iter()
        .map(|r| r.peer.to_string())
        .collect();
    for want in [
        "my-controller",
        "local-networks",
        "same-vendor",
        "controller:https://controller.nist.local",
    ] {
        assert!(
            peers.iter().any(|p| p == want),
            "{want} missing from {peers:?}"
        );
    }
    let s = skipped(&imp.notes);
    assert!(
        s.iter()
            .any(|n| n.contains("manufacturer") && n.contains("another manufacturer")),
        "{s:?}"
    );
}

#[test]
fn mudgee_ethernet_and_icmp_details_are_named_not_dropped() {
    let imp = load("unsw-mudgee_amazonecho_via-namib.json");
    let s = skipped(&imp.notes);
    assert!(s.iter().any(|n| n.contains("Ethernet")), "{s:?}");
    assert!(imp
        .manifest
        .allow
        .iter()
        .any(|r| r.peer == Peer::Name("softwareupdates.amazon.com".into())));
    assert!(imp.manifest.allow.iter().any(|r| r.peer
        == Peer::Controller("urn:ietf:params:mud:dns".into())
        || r.peer == Peer::Controller("urn:ietf:params:mud:gateway".into())));
}

#[test]
fn non_mud_input_is_refused_with_a_reason() {
    use nospy_manifest::mud::MudError;
    let too_large = vec![b' '; nospy_manifest::mud::MAX_MUD_LEN + 1];
    type Case<'a> = (&'a [u8], fn(&MudError) -> bool, &'static str);
    let cases: [Case; 7] = [
        (b"not json", |e| matches!(e, MudError::NotJson { line: 1, column: 2, .. }), "not JSON"),
        (b"[]", |e| *e == MudError::NotAnObject, "JSON object"),
        (b"{}", |e| *e == MudError::NoMudContainer, "not a MUD file"),
        (b"{\"ietf-mud:mud\": {\"mud-url\": \"https://x.example/m\"}}", |e| *e == MudError::NoAcls, "declares no traffic"),
        (b"{\"ietf-mud:mud\": {\"mud-url\": \"https://x.example/m\"}, \"ietf-access-control-list:acls\": {}}", |e| *e == MudError::NoAclList("ietf-access-control-list:acls"), "no \"acl\" list"),
        (b"{\"ietf-mud:mud\": {\"mud-url\": \"https://x.example/m\"}, \"ietf-access-control-list:acls\": {\"acl\": []}}", |e| *e == MudError::NoPolicy, "names an ACL"),
        (&too_large, |e| matches!(e, MudError::TooLarge { .. }), "4 MiB"),
    ];
    for (input, kind, reason) in cases {
        let e = import(input).unwrap_err();
        assert!(kind(&e), "{e:?}");
        assert!(e.to_string().contains(reason), "{e}");
    }
}
