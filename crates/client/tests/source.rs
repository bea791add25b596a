//! A log directory as a source: a bundle (or case file) gathered under its checkpoint, with a
//! consistency proof when asked, and each refusal by its kind.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_client::{Error, LogSource};
use nospy_log::Sequencer;
use nospy_tlog::merkle::verify_consistency;
use nospy_tlog::note::SignerKey;
use nospy_tlog::{Sha256, TreeSize};

const ORIGIN: &str = "source.nospy.example/log";

fn log_of(n: u64) -> (tempfile::TempDir, LogSource) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let key = SignerKey::from_seed(ORIGIN, [9; 32]).unwrap();
    let vendor = SignerKey::from_seed("vendorx", [3; 32]).unwrap();
    Sequencer::init(&dir, ORIGIN, &key, None).unwrap();
    let mut seq = Sequencer::open(&dir, key).unwrap();
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| nospy_testkit::fixtures::release_submission(i, &vendor))
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    seq.append(&refs).unwrap();
    (t, LogSource::Dir(dir))
}

fn firmware(i: u64) -> Sha256 {
    Sha256::of(format!("firmware {i}").as_bytes())
}

#[test]
fn a_bundle_is_every_entry_about_the_digest_under_one_checkpoint() {
    let (_t, src) = log_of(5);
    let b = src
        .gather(&firmware(3), None, None, &mut |_, _| {})
        .unwrap();
    assert_eq!(b.artifact, firmware(3));
    assert_eq!(b.checkpoint_size().unwrap(), 5);
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.entries[0].proof.index, 3);
    assert!(b.consistency.is_none());
    // With an earlier size: a consistency proof from it that verifies against the log's roots.
    let b = src
        .gather(&firmware(3), None, Some(2), &mut |_, _| {})
        .unwrap();
    let (from, proof) = b.consistency.clone().unwrap();
    assert_eq!(from, 2);
    let LogSource::Dir(dir) = &src else {
        unreachable!()
    };
    let log = nospy_log::Log::open(dir).unwrap();
    let (r1, r2) = (
        log.root_at(TreeSize(2)).unwrap(),
        log.root_at(TreeSize(5)).unwrap(),
    );
    verify_consistency(TreeSize(2), TreeSize(5), &proof, r1.as_ref(), r2.as_ref()).unwrap();
    // The JSON form reads back the same.
    let again = nospy_statement::bundle::Bundle::parse(&b.to_json()).unwrap();
    assert_eq!(again, b);
}

#[test]
fn what_cannot_be_gathered_is_refused_by_its_kind() {
    let (_t, src) = log_of(3);
    match src.gather(&firmware(7), None, None, &mut |_, _| {}) {
        Err(Error::NothingAbout { digest, size, .. }) => {
            assert_eq!((digest, size), (firmware(7), 3));
        }
        other => panic!("{other:?}"),
    }
    match src.case_at(3, None) {
        Err(Error::BeyondCheckpoint { index, size }) => assert_eq!((index, size), (3, 3)),
        other => panic!("{other:?}"),
    }
    // A server cannot prove consistency from an earlier size, nor take a checkpoint file: said
    // before anything is asked of it.
    let server = LogSource::Server("http://127.0.0.1:1".into());
    assert!(matches!(
        server.gather(&firmware(0), None, Some(1), &mut |_, _| {}),
        Err(Error::NeedsLocalLog("--since-size"))
    ));
    assert!(matches!(
        server.case_at(0, Some(std::path::Path::new("cp"))),
        Err(Error::NeedsLocalLog("--checkpoint"))
    ));
}
