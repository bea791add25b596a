//! The log library: appends, proofs from tiles, deduplication, recovery from crashes.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::{audit, Log, LogError, Sequencer};
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::{self, MemoryTree};
use nospy_tlog::note::SignerKey;
use nospy_tlog::{LogIndex, TreeSize};
use std::path::Path;

const ORIGIN: &str = "test.nospy.example/log";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [9; 32]).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    let mut e = format!("entry number {i}").into_bytes();
    e.extend(std::iter::repeat_n(b'.', (i % 37) as usize));
    e
}

fn new_log(dir: &Path) -> Sequencer {
    Sequencer::init(dir, ORIGIN, &key(), None).unwrap();
    Sequencer::open(dir, key()).unwrap()
}

fn append_range(seq: &mut Sequencer, from: u64, to: u64) {
    let es: Vec<Vec<u8>> = (from..to).map(entry).collect();
    let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
    let out = seq.append(&refs).unwrap();
    for (k, a) in out.iter().enumerate() {
        assert_eq!(a.index, from + k as u64);
        assert!(!a.duplicate);
    }
}

#[test]
fn proofs_from_tiles_match_an_in_memory_tree_at_every_size() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    let mut mem = MemoryTree::new();
    // Batches of awkward sizes, crossing tile boundaries at level 0 and level 1.
    let mut n = 0;
    for b in [1u64, 2, 253, 1, 256, 300, 511, 70_000 - 1324, 7] {
        append_range(&mut seq, n, n + b);
        n += b;
        for i in mem.size()..n {
            mem.push(leaf_hash(&entry(i)));
        }
        assert_eq!(
            seq.checkpoint().checkpoint.root,
            mem.root(),
            "root at size {n}"
        );
    }
    drop(seq);
    let log = Log::open(&dir).unwrap();
    assert_eq!(log.size(), n);
    let mut rng = 12345u64;
    for _ in 0..300 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = 1 + (rng >> 20) % n;
        let index = (rng >> 3) % size;
        let (index, size) = (LogIndex(index), TreeSize(size));
        let p = log.inclusion_proof(index, size).unwrap();
        assert_eq!(
            p,
            merkle::inclusion_proof(&mem, index, size).unwrap(),
            "inclusion {index} in {size}"
        );
        let from = TreeSize(1 + (rng >> 40) % size.0);
        let c = log.consistency_proof(from, size).unwrap();
        assert_eq!(
            c,
            merkle::consistency_proof(&mem, from, size).unwrap(),
            "consistency {from} to {size}"
        );
        assert_eq!(log.entry(index.0).unwrap(), entry(index.0));
    }
    assert!(log.inclusion_proof(LogIndex(n), TreeSize(n)).is_err());
    assert!(log.inclusion_proof(LogIndex(0), TreeSize(n + 1)).is_err());
    let report = audit(&dir, log.key(), |_, _| {}).unwrap();
    assert_eq!(report.entries, n);
    assert!(report.uncovered.is_empty());
}

#[test]
fn duplicates_keep_their_index_across_batches_and_reopens() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    let out = seq.append(&[b"a", b"b", b"a"]).unwrap();
    let got: Vec<(u64, bool)> = out.iter().map(|a| (a.index, a.duplicate)).collect();
    assert_eq!(got, [(0, false), (1, false), (0, true)]);
    assert_eq!(seq.size(), 2);
    drop(seq);
    let mut seq = Sequencer::open(&dir, key()).unwrap();
    let before = std::fs::read(dir.join("checkpoint")).unwrap();
    let out = seq.append(&[b"b"]).unwrap();
    assert_eq!((out[0].index, out[0].duplicate), (1, true));
    assert_eq!(
        std::fs::read(dir.join("checkpoint")).unwrap(),
        before,
        "nothing new: no new checkpoint"
    );
}

#[test]
fn an_oversized_entry_appends_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    let big = vec![0u8; 65_536];
    let e = seq.append(&[b"ok", &big]).unwrap_err();
    assert!(
        matches!(
            e,
            LogError::EntryTooLong {
                position: 1,
                len: 65_536
            }
        ),
        "{e}"
    );
    assert_eq!(seq.size(), 0);
    assert!(!dir.join("tile").exists());
}

#[test]
fn recovery_removes_what_an_unfinished_batch_left_and_appends_continue() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    append_range(&mut seq, 0, 300);
    drop(seq);
    // What a crash in the middle of a batch growing the log to 700 entries can leave: the
    // pending record, half-written tiles and bundles beyond the checkpoint, a temporary checkpoint.
    std::fs::write(dir.join(".nospy/pending"), "700").unwrap();
    for (p, data) in [
        ("tile/0/001", vec![1u8; 100]),
        ("tile/0/002.p/188", vec![]),
        ("tile/entries/001", vec![0, 5, 1]),
        ("tile/entries/002.p/188", vec![9; 10]),
        ("tile/1/000.p/2", vec![3; 64]),
        (".nospy/checkpoint.tmp", b"garbage".to_vec()),
    ] {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let key_v = key().verifier();
    let report = audit(&dir, &key_v, |_, _| {}).unwrap();
    assert_eq!(report.uncovered.len(), 5, "{:?}", report.uncovered);
    let mut seq = Sequencer::open(&dir, key()).unwrap();
    for p in [
        "tile/0/001",
        "tile/0/002.p/188",
        "tile/entries/001",
        "tile/entries/002.p/188",
        "tile/1/000.p/2",
    ] {
        assert!(!dir.join(p).exists(), "{p} should have been removed");
    }
    assert!(!dir.join(".nospy/checkpoint.tmp").exists());
    assert!(audit(&dir, &key_v, |_, _| {}).unwrap().uncovered.is_empty());
    append_range(&mut seq, 300, 800);
    drop(seq);
    let r = audit(&dir, &key_v, |_, _| {}).unwrap();
    assert_eq!(r.entries, 800);
    let log = Log::open(&dir).unwrap();
    assert_eq!(log.entry(299).unwrap(), entry(299));
    assert_eq!(log.entry(700).unwrap(), entry(700));
}

#[test]
fn a_damaged_right_edge_is_refused_at_open_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    append_range(&mut seq, 0, 300);
    drop(seq);
    let p = dir.join("tile/0/001.p/44");
    let good = std::fs::read(&p).unwrap();
    std::fs::write(&p, &good[..40]).unwrap();
    let e = Sequencer::open(&dir, key()).unwrap_err().to_string();
    assert!(
        e.contains("tile/0/001.p/44") && e.contains("should be 1408 bytes"),
        "{e}"
    );
    let mut bad = good.clone();
    bad[0] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    let e = Sequencer::open(&dir, key()).unwrap_err().to_string();
    assert!(e.contains("do not give the checkpoint's root"), "{e}");
    std::fs::write(&p, &good).unwrap();
    std::fs::remove_file(dir.join("tile/entries/001.p/44")).unwrap();
    let e = Sequencer::open(&dir, key()).unwrap_err().to_string();
    assert!(
        e.contains("tile/entries/001.p/44") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn only_one_writer_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let _seq = new_log(&dir);
    let e = Sequencer::open(&dir, key()).unwrap_err();
    assert!(matches!(e, LogError::Locked { .. }), "{e}");
}

#[test]
fn a_failed_commit_poisons_until_reopened() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    append_range(&mut seq, 0, 250);
    // A file where the next batch needs a directory: its partial tile cannot be written.
    std::fs::write(dir.join("tile/0/001.p"), b"in the way").unwrap();
    let es: Vec<Vec<u8>> = (250..260).map(entry).collect();
    let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
    let e = seq.append(&refs).unwrap_err();
    assert!(e.to_string().contains("tile/0/001.p"), "{e}");
    std::fs::remove_file(dir.join("tile/0/001.p")).unwrap();
    assert!(matches!(seq.append(&refs), Err(LogError::Poisoned)));
    assert_eq!(seq.checkpoint().checkpoint.size, 250);
    drop(seq);
    // Reopening recovers from what is on disk; the same entries then get the same indexes.
    let mut seq = Sequencer::open(&dir, key()).unwrap();
    append_range(&mut seq, 250, 260);
    drop(seq);
    assert_eq!(
        audit(&dir, &key().verifier(), |_, _| {}).unwrap().entries,
        260
    );
}

#[test]
fn an_implausible_pending_record_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    append_range(&mut seq, 0, 3);
    drop(seq);
    std::fs::write(dir.join(".nospy/pending"), "18446744073709551615").unwrap();
    let e = Sequencer::open(&dir, key()).unwrap_err().to_string();
    assert!(
        e.contains(".nospy/pending") && e.contains("beyond the checkpoint"),
        "{e}"
    );
}

#[test]
fn earlier_checkpoints_are_kept_for_proofs() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let mut seq = new_log(&dir);
    append_range(&mut seq, 0, 5);
    append_range(&mut seq, 5, 9);
    drop(seq);
    let log = Log::open(&dir).unwrap();
    let old = log.checkpoint_at(5).unwrap().unwrap();
    assert_eq!(old.checkpoint.size, 5);
    assert_eq!(old.checkpoint.root, log.root_at(TreeSize(5)).unwrap());
    assert!(log.checkpoint_at(6).unwrap().is_none());
    // A torn last record (a crash while appending to the history) is skipped.
    let h = dir.join(".nospy/checkpoints");
    let mut data = std::fs::read(&h).unwrap();
    data.extend_from_slice(b"12 400\nexample");
    std::fs::write(&h, data).unwrap();
    assert!(log.checkpoint_at(5).unwrap().is_some());
    assert!(log.checkpoint_at(12).unwrap().is_none());
}
