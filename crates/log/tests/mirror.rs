//! The mirror: a copy recomputed from the entries, written under the log's writer lock.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::mirror::{mirror, MirrorError};
use nospy_log::{audit, LogError, Sequencer};
use nospy_tlog::note::SignerKey;
use std::path::Path;

const ORIGIN: &str = "test.nospy.example/mirrored";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [5; 32]).unwrap()
}

fn grow(dir: &Path, tag: &str, n: u64) {
    if !dir.join("checkpoint").exists() {
        Sequencer::init(dir, ORIGIN, &key(), None).unwrap();
    }
    let mut seq = Sequencer::open(dir, key()).unwrap();
    let es: Vec<Vec<u8>> = (seq.size()..n)
        .map(|i| format!("{tag} {i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
    seq.append(&refs).unwrap();
}

/// Serves `dir`'s files as a remote would.
fn from(dir: &Path) -> impl FnMut(&str) -> Result<Vec<u8>, std::io::Error> + '_ {
    move |path| std::fs::read(dir.join(path))
}

#[test]
fn a_mirror_copies_verifies_and_catches_up() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    grow(&src, "a", 300);
    let m = mirror(&dst, &key().verifier(), from(&src), &mut |_, _| {}).unwrap();
    assert_eq!((m.from_size, m.size, m.bundles_fetched), (0, 300, 2));
    audit(&dst, &key().verifier(), |_, _| {}).unwrap();
    grow(&src, "a", 700);
    let m = mirror(&dst, &key().verifier(), from(&src), &mut |_, _| {}).unwrap();
    assert_eq!((m.from_size, m.size), (300, 700));
    audit(&dst, &key().verifier(), |_, _| {}).unwrap();
    assert_eq!(
        std::fs::read(dst.join("checkpoint")).unwrap(),
        std::fs::read(src.join("checkpoint")).unwrap()
    );

    // Another history under the same key: refused, the mirror unchanged.
    let other = t.path().join("other");
    grow(&other, "b", 700);
    let e = mirror(&dst, &key().verifier(), from(&other), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, MirrorError::Fork { size: 700 }), "{e}");
    grow(&other, "b", 900);
    let e = mirror(&dst, &key().verifier(), from(&other), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, MirrorError::Rewritten { .. }), "{e}");
    let e = mirror(
        &dst,
        &key().verifier(),
        from(&t.path().join("none")),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, MirrorError::Fetch { .. }), "{e}");
    audit(&dst, &key().verifier(), |_, _| {}).unwrap();
}

#[test]
fn the_mirror_takes_the_writer_lock() {
    // Regression: the mirror used to write tiles without the log's lock, beside a sequencer.
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    grow(&src, "a", 10);
    mirror(&dst, &key().verifier(), from(&src), &mut |_, _| {}).unwrap();
    // Another writer of the mirror directory holds its lock (as a second mirror run would).
    let held = std::fs::File::options()
        .write(true)
        .open(dst.join(".nospy/lock"))
        .unwrap();
    held.lock().unwrap();
    grow(&src, "a", 20);
    let e = mirror(&dst, &key().verifier(), from(&src), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(e, MirrorError::Log(LogError::Locked { .. })),
        "{e}"
    );
    drop(held);
    mirror(&dst, &key().verifier(), from(&src), &mut |_, _| {}).unwrap();
    // And a sequencer of a log excludes a mirror into it.
    let _seq = Sequencer::open(&src, key()).unwrap();
    let e = mirror(&src, &key().verifier(), from(&dst), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(e, MirrorError::Log(LogError::Locked { .. })),
        "{e}"
    );
}
