//! The log on a real S3 server (SeaweedFS, started by each test): a directory log copied into a
//! bucket is there byte for byte, and a mirror of the bucket audits clean; immutable paths
//! refuse other bytes and the checkpoint is replaced only from the version last seen.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::mirror::mirror;
use nospy_log::object::{upload, ObjectError, ObjectTiles, UploadError, Written};
use nospy_log::Sequencer;
use nospy_testkit::s3::SeaweedFs;
use nospy_tlog::note::{SignerKey, VerifierKey};
use std::path::{Path, PathBuf};

const TESSERA_KEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn tessera() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/tlog/tessera-testdata-log/testdata/log")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every file below `dir/rel`, as relative paths.
fn files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let child = format!("{rel}/{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            files(dir, &child, out);
        } else {
            out.push(child);
        }
    }
}

#[test]
fn the_tessera_log_copied_into_a_bucket_is_there_byte_for_byte_and_mirrors_back_clean() {
    let s3 = SeaweedFs::start();
    let rt = rt();
    let key = VerifierKey::parse(TESSERA_KEY).unwrap();
    let to = ObjectTiles::from_url(&s3.url("tessera")).unwrap();
    let up = rt
        .block_on(upload(&tessera(), &key, &to, &mut |_, _| {}))
        .unwrap();
    assert_eq!(up.size, 15);
    assert!(up.published);
    // Every tile and bundle of the directory (the older partial ones too) and the checkpoint.
    let mut rels = Vec::new();
    files(&tessera(), "tile", &mut rels);
    assert_eq!(up.created, rels.len() as u64);
    rels.push("checkpoint".into());
    for rel in &rels {
        let want = std::fs::read(tessera().join(rel)).unwrap();
        assert_eq!(rt.block_on(to.get(rel)).unwrap(), Some(want), "{rel}");
    }

    // Run again: everything is there, nothing is written, nothing published.
    let again = rt
        .block_on(upload(&tessera(), &key, &to, &mut |_, _| {}))
        .unwrap();
    assert_eq!((again.created, again.published), (0, false));
    assert_eq!(again.already_there, up.created);

    // The way back: a mirror of the bucket, verified entry by entry, audits clean.
    let t = tempfile::tempdir().unwrap();
    let back = t.path().join("back");
    let m = mirror(
        &back,
        &key,
        |rel| match rt.block_on(to.get(rel)) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(format!("{rel}: not in the bucket")),
            Err(e) => Err(e.to_string()),
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(m.size, 15);
    let report = nospy_log::audit(&back, &key, |_, _| {}).unwrap();
    assert_eq!(report.entries, 15);
}

#[test]
fn the_bucket_refuses_other_bytes_another_log_and_a_stale_checkpoint_writer() {
    let s3 = SeaweedFs::start();
    let rt = rt();
    let to = ObjectTiles::from_url(&s3.url("shared")).unwrap();

    // Immutable paths: the same bytes again are fine, others are a conflict (two writers).
    let w = rt.block_on(to.put_immutable("tile/0/000.p/1", vec![7; 32]));
    assert_eq!(w, Ok(Written::Created));
    let w = rt.block_on(to.put_immutable("tile/0/000.p/1", vec![7; 32]));
    assert_eq!(w, Ok(Written::AlreadyThere));
    let e = rt
        .block_on(to.put_immutable("tile/0/000.p/1", vec![8; 32]))
        .unwrap_err();
    assert!(matches!(e, ObjectError::Conflict { .. }), "{e}");

    // The checkpoint: replaced only from the version last seen (the store's ETag).
    let v1 = rt
        .block_on(to.replace_checkpoint(b"one".to_vec(), None))
        .unwrap();
    let e = rt.block_on(to.replace_checkpoint(b"again".to_vec(), None));
    assert!(matches!(e, Err(ObjectError::Fenced { .. })), "{e:?}");
    let _v2 = rt
        .block_on(to.replace_checkpoint(b"two".to_vec(), Some(&v1)))
        .unwrap();
    let e = rt.block_on(to.replace_checkpoint(b"stale".to_vec(), Some(&v1)));
    assert!(matches!(e, Err(ObjectError::Fenced { .. })), "{e:?}");
    assert_eq!(
        rt.block_on(to.checkpoint()).unwrap().unwrap().0,
        b"two".to_vec()
    );

    // A log of its own copied onto the Tessera log's prefix is refused before it writes.
    let tess = ObjectTiles::from_url(&s3.url("tessera")).unwrap();
    let tkey = VerifierKey::parse(TESSERA_KEY).unwrap();
    rt.block_on(upload(&tessera(), &tkey, &tess, &mut |_, _| {}))
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("own");
    let own = SignerKey::from_seed("own.nospy.example/log", [3; 32]).unwrap();
    Sequencer::init(&dir, "own.nospy.example/log", &own, None).unwrap();
    Sequencer::open(&dir, own.clone())
        .unwrap()
        .append(&[b"a".as_slice(), b"b"])
        .unwrap();
    let e = rt
        .block_on(upload(&dir, &own.verifier(), &tess, &mut |_, _| {}))
        .unwrap_err();
    assert!(matches!(e, UploadError::Refused(_)), "{e}");
    // And where the bucket holds its own tiles with other bytes but no checkpoint yet (a
    // writer that crashed before publishing), the copy stops at the first conflict.
    let half = ObjectTiles::from_url(&s3.url("half")).unwrap();
    rt.block_on(half.put_immutable("tile/0/000.p/2", vec![9; 64]))
        .unwrap();
    let e = rt
        .block_on(upload(&dir, &own.verifier(), &half, &mut |_, _| {}))
        .unwrap_err();
    assert!(
        matches!(e, UploadError::Object(ObjectError::Conflict { .. })),
        "{e}"
    );
    assert_eq!(rt.block_on(half.checkpoint()).unwrap(), None);
}
