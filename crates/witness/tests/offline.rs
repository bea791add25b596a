//! The offline witness (`nospy witness cosign`): the state is committed, under its lock, before
//! a cosignature leaves, so that no crash and no second run can make it cosign a fork.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::{Log, Sequencer};
use nospy_tlog::note::SignerKey;
use nospy_witness::offline::cosign;
use nospy_witness::state::FileState;
use nospy_witness::{Cosigned, Error};
use std::path::Path;

const ORIGIN: &str = "test.nospy.example/witnessed";

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [3; 32]).unwrap()
}

fn witness_key() -> SignerKey {
    SignerKey::from_seed("witness.test.example", [4; 32]).unwrap()
}

/// A log in `dir` holding `n` entries, each tagged `tag` (two tags: two histories under one key).
fn log(dir: &Path, tag: &str, n: u64) -> Log {
    if !dir.join("checkpoint").exists() {
        Sequencer::init(dir, ORIGIN, &log_key(), None).unwrap();
    }
    let mut seq = Sequencer::open(dir, log_key()).unwrap();
    let es: Vec<Vec<u8>> = (seq.size()..n)
        .map(|i| format!("{tag} {i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
    seq.append(&refs).unwrap();
    drop(seq);
    Log::open(dir).unwrap()
}

fn state_of(state: &FileState) -> Option<Cosigned> {
    state.read(ORIGIN).unwrap()
}

#[test]
fn a_checkpoint_is_cosigned_only_after_the_state_records_it() {
    let t = tempfile::tempdir().unwrap();
    let l = log(&t.path().join("log"), "a", 3);
    let state = FileState::new(t.path().join("w.state"));
    let out = cosign(&witness_key(), &l, l.checkpoint(), &state, 1_000).unwrap();
    assert_eq!(out.note.signatures.len(), 2);
    assert_eq!(
        state_of(&state),
        Some(Cosigned {
            size: 3,
            root: l.checkpoint().checkpoint.root
        })
    );
    // The same checkpoint again, and an extension of it, are cosigned.
    cosign(&witness_key(), &l, l.checkpoint(), &state, 1_001).unwrap();
    let l = log(&t.path().join("log"), "a", 9);
    cosign(&witness_key(), &l, l.checkpoint(), &state, 1_002).unwrap();
    assert_eq!(state_of(&state).unwrap().size, 9);
}

#[test]
fn offline_witness_refuses_a_fork_and_a_rollback_and_keeps_its_state() {
    let t = tempfile::tempdir().unwrap();
    let a = log(&t.path().join("a"), "a", 5);
    let state = FileState::new(t.path().join("w.state"));
    cosign(&witness_key(), &a, a.checkpoint(), &state, 1).unwrap();
    let kept = state_of(&state);

    // Another history of the same size under the same key: a fork.
    let b = log(&t.path().join("b"), "b", 5);
    let e = cosign(&witness_key(), &b, b.checkpoint(), &state, 2).unwrap_err();
    assert!(matches!(e, Error::Fork { size: 5 }), "{e}");
    // Another history that is longer: its proof from size 5 cannot match what was cosigned.
    let b = log(&t.path().join("b"), "b", 8);
    let e = cosign(&witness_key(), &b, b.checkpoint(), &state, 3).unwrap_err();
    assert!(matches!(e, Error::Inconsistent(_)), "{e}");
    // An older checkpoint of the cosigned history: a rollback.
    let c = log(&t.path().join("c"), "a", 4);
    let e = cosign(&witness_key(), &c, c.checkpoint(), &state, 4).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Rollback {
                cosigned: 5,
                offered: 4
            }
        ),
        "{e}"
    );
    assert!(e.is_refusal());
    assert_eq!(state_of(&state), kept);
}

#[test]
fn offline_witness_cosigns_nothing_when_its_state_cannot_be_committed() {
    // Regression: the cosignature used to be written before the state; a state that cannot be
    // written must mean no cosignature at all.
    let t = tempfile::tempdir().unwrap();
    let l = log(&t.path().join("log"), "a", 2);
    let state = FileState::new(t.path().join("no-such-dir/w.state"));
    let e = cosign(&witness_key(), &l, l.checkpoint(), &state, 1).unwrap_err();
    assert!(matches!(e, Error::State { .. }), "{e}");
    assert!(!e.is_refusal());
}

#[test]
fn offline_witness_concurrent_runs_cosign_one_history_of_a_size() {
    // Regression: two runs at once against one state used to be able to cosign two different
    // trees of the same size. Under the lock exactly one of each pair of rivals succeeds.
    let t = tempfile::tempdir().unwrap();
    for round in 0..8 {
        let a = log(&t.path().join(format!("a{round}")), "a", 4);
        let b = log(&t.path().join(format!("b{round}")), "b", 4);
        let state = FileState::new(t.path().join(format!("w{round}.state")));
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| cosign(&witness_key(), &a, a.checkpoint(), &state, 1));
            let tb = s.spawn(|| cosign(&witness_key(), &b, b.checkpoint(), &state, 1));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {round}: {:?} / {:?}",
            ra.err(),
            rb.err()
        );
        let winner = if ra.is_ok() { &a } else { &b };
        assert_eq!(
            state_of(&state).unwrap().root,
            winner.checkpoint().checkpoint.root
        );
    }
}

#[test]
fn a_state_for_another_log_or_malformed_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let l = log(&t.path().join("log"), "a", 2);
    let p = t.path().join("w.state");
    std::fs::write(&p, "other.example/log 1 AAAA\n").unwrap();
    let e = cosign(&witness_key(), &l, l.checkpoint(), &FileState::new(&p), 1).unwrap_err();
    assert!(matches!(e, Error::State { .. }), "{e}");
    std::fs::write(
        &p,
        format!(
            "other.example/log 1 {}\n",
            nospy_tlog::Hash([0; 32]).to_base64()
        ),
    )
    .unwrap();
    let e = cosign(&witness_key(), &l, l.checkpoint(), &FileState::new(&p), 1).unwrap_err();
    assert!(matches!(e, Error::OtherLog { .. }), "{e}");
    std::fs::write(&p, "é 1\n").unwrap();
    let e = cosign(&witness_key(), &l, l.checkpoint(), &FileState::new(&p), 1).unwrap_err();
    assert!(matches!(e, Error::State { .. }), "{e}");
}
