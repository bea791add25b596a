//! The lookup index: its size is the contiguous prefix it holds (a gap is never covered, and is
//! filled from the log), and `/lookup` answers a page at a time, saying where the next starts,
//! so that no entry, a revocation least of all, can be buried out of a client's sight.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_client::LogSource;
use nospy_log::storage::DirStorage;
use nospy_log::Sequencer;
use nospy_server::index::{Index, Row};
use nospy_server::{start, Options};
use nospy_statement::predicate::{Predicate, Revocation};
use nospy_statement::{sign, DigestSet, ResourceDescriptor};
use nospy_testkit::http::request;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;
use std::path::Path;

const ORIGIN: &str = "lookup.nospy.example/log";

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [1; 32]).unwrap()
}

/// `n` signed revocations of `digest`, each with its own reason.
fn revocations(digest: &Sha256, n: usize, by: &SignerKey) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            sign(
                vec![ResourceDescriptor {
                    digest: Some(DigestSet::sha256(digest)),
                    ..Default::default()
                }],
                &Predicate::Revocation(Revocation {
                    reason: format!("reason {i}"),
                    effective: "2026-01-01T00:00:00Z".into(),
                }),
                &[by],
            )
            .to_json()
        })
        .collect()
}

fn log_with(dir: &Path, entries: &[Vec<u8>]) {
    Sequencer::init(dir, ORIGIN, &log_key(), None).unwrap();
    let mut seq = Sequencer::open(dir, log_key()).unwrap();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    seq.append(&refs).unwrap();
}

fn row(index: u64, entry: &[u8], digest: &Sha256) -> Row {
    Row {
        index,
        leaf_hash: leaf_hash(entry),
        predicate_type: "t".into(),
        subjects: vec![*digest],
        signers: vec![],
    }
}

#[test]
fn lookup_index_gap_is_never_covered_and_is_filled_from_the_log() {
    // Regression (issue 13, defect 3): a batch that failed to be written left a gap that the
    // index's size (then the largest index + 1) covered for ever.
    let t = tempfile::tempdir().unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let d = Sha256::of(b"firmware");
    let entries = revocations(&d, 15, &vendor);
    log_with(t.path(), &entries);
    let mut idx = Index::open(t.path()).unwrap();
    let rows = |r: std::ops::Range<u64>| -> Vec<Row> {
        r.map(|i| row(i, &entries[i as usize], &d)).collect()
    };
    idx.add(&rows(0..5)).unwrap();
    // Entries 5..10 never arrive (their write failed); 10..15 do.
    idx.add(&rows(10..15)).unwrap();
    assert_eq!(idx.size().unwrap(), 5, "a gap is not covered");
    let page = idx.lookup(&d, 15, None, 100).unwrap();
    assert_eq!(page.entries.len(), 10);
    // Filling the gap from the log covers everything held after it too.
    idx.catch_up(&DirStorage::new(t.path()), 15, 10).unwrap();
    assert_eq!(idx.size().unwrap(), 15);
    // Reopened, the size is the same (kept with the rows, not recomputed from them).
    drop(idx);
    assert_eq!(Index::open(t.path()).unwrap().size().unwrap(), 15);
}

#[test]
fn lookup_pages_cover_every_entry_once() {
    let t = tempfile::tempdir().unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let d = Sha256::of(b"firmware");
    let entries = revocations(&d, 10, &vendor);
    log_with(t.path(), &entries);
    let mut idx = Index::open(t.path()).unwrap();
    idx.catch_up(&DirStorage::new(t.path()), 10, 10).unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = idx.lookup(&d, 10, after, 3).unwrap();
        assert!(page.entries.len() <= 3);
        seen.extend(page.entries.iter().map(|e| e.index));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    // Below a size, nothing beyond it.
    let page = idx.lookup(&d, 4, None, 100).unwrap();
    assert_eq!(page.entries.len(), 4);
    assert_eq!(page.next, None);
}

fn serve(dir: &Path, page: usize, rt: &tokio::runtime::Runtime) -> nospy_server::Running {
    rt.block_on(start(Options {
        queue: 16,
        max_batch: 16,
        index_delay: std::time::Duration::from_millis(10),
        lookup_page: page,
        ..Options::new(
            nospy_server::Storage::Dir(dir.to_path_buf()),
            log_key(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }))
    .unwrap()
}

#[test]
fn lookup_answers_more_than_ten_thousand_entries_in_pages() {
    // Regression (issue 13, defect 4): /lookup stopped at 10,000 entries about a digest and said
    // nothing, so that a revocation could be buried under 10,000 others.
    let t = tempfile::tempdir().unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let d = Sha256::of(b"firmware");
    log_with(t.path(), &revocations(&d, 10_001, &vendor));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(t.path(), nospy_server::LOOKUP_PAGE, &rt);
    let get = |q: &str| -> serde_json::Value {
        let r = request(
            srv.addr,
            "GET",
            &format!("/lookup?digest={}{q}", d.to_hex()),
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let first = get("");
    assert_eq!(first["size"], 10_001);
    assert_eq!(first["entries"].as_array().unwrap().len(), 10_000);
    assert_eq!(first["next"], 9_999);
    let second = get("&after=9999");
    assert_eq!(second["entries"].as_array().unwrap().len(), 1);
    assert_eq!(second["entries"][0]["index"], 10_000);
    assert!(second.get("next").is_none());
    rt.block_on(srv.shutdown()).unwrap();
}

#[test]
fn a_client_reads_every_page() {
    let t = tempfile::tempdir().unwrap();
    let vendor = SignerKey::from_seed("vendor.example", [2; 32]).unwrap();
    let d = Sha256::of(b"firmware");
    log_with(t.path(), &revocations(&d, 11, &vendor));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = serve(t.path(), 3, &rt);
    let url = format!("http://{}", srv.addr);
    let ev = std::thread::scope(|s| {
        s.spawn(|| {
            LogSource::Server(url)
                .evidence_under(&[d], None, &mut |_, _| {})
                .unwrap()
        })
        .join()
        .unwrap()
    });
    let got: Vec<u64> = ev[&d].entries.iter().map(|e| e.index).collect();
    assert_eq!(got, (0..11).collect::<Vec<u64>>());
    rt.block_on(srv.shutdown()).unwrap();
}
