//! The lookup index in PostgreSQL (the server at 127.0.0.1:5432; each test its own schema)
//! holds to the SQLite index's rules: its size is the contiguous prefix it holds, and lookups
//! come a page at a time, every entry once.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_server::index::Row;
use nospy_server::index_pg::PgIndex;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::Sha256;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ix_{name}_{}_{nanos}", std::process::id())
}

fn row(index: u64, digest: &Sha256) -> Row {
    Row {
        index,
        leaf_hash: leaf_hash(format!("entry {index}").as_bytes()),
        predicate_type: "https://nospy.dev/revocation/v1".into(),
        subjects: vec![*digest],
        signers: vec!["vendor.example+1234abcd+key".into()],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn drop_schema(s: &str) {
    let (c, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
        .await
        .unwrap();
}

#[test]
fn a_gap_is_never_covered_and_filling_it_covers_what_follows() {
    let s = schema("gap");
    rt().block_on(async {
        let d = Sha256::of(b"firmware");
        let mut idx = PgIndex::open(DB, &s).await.unwrap();
        let rows = |r: std::ops::Range<u64>| -> Vec<Row> { r.map(|i| row(i, &d)).collect() };
        idx.add(&rows(0..5)).await.unwrap();
        // Entries 5..10 never arrive; 10..15 do.
        idx.add(&rows(10..15)).await.unwrap();
        assert_eq!(idx.size().await.unwrap(), 5, "a gap is not covered");
        let page = idx.lookup(&d, 15, None, 100).await.unwrap();
        assert_eq!(page.entries.len(), 10);
        // Filling the gap covers everything held after it too; a repeat changes nothing.
        idx.add(&rows(5..10)).await.unwrap();
        idx.add(&rows(3..7)).await.unwrap();
        assert_eq!(idx.size().await.unwrap(), 15);
        // Reopened (another instance), the size is the same.
        drop(idx);
        let again = PgIndex::open(DB, &s).await.unwrap();
        assert_eq!(again.size().await.unwrap(), 15);
        let e = &again.lookup(&d, 15, None, 1).await.unwrap().entries[0];
        assert_eq!(e.index, 0);
        assert_eq!(e.leaf_hash, leaf_hash(b"entry 0"));
        assert_eq!(e.signers, vec!["vendor.example+1234abcd+key".to_string()]);
        drop_schema(&s).await;
    });
}

#[test]
fn pages_cover_every_entry_once_and_nothing_beyond_the_size() {
    let s = schema("pages");
    rt().block_on(async {
        let d = Sha256::of(b"firmware");
        let other = Sha256::of(b"other");
        let mut idx = PgIndex::open(DB, &s).await.unwrap();
        let mut rows: Vec<Row> = (0..10).map(|i| row(i, &d)).collect();
        rows.push(row(10, &other));
        idx.add(&rows).await.unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = idx.lookup(&d, 11, after, 3).await.unwrap();
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries.iter().map(|e| e.index));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..10).collect::<Vec<u64>>());
        let page = idx.lookup(&d, 4, None, 100).await.unwrap();
        assert_eq!(page.entries.len(), 4);
        assert_eq!(page.next, None);
        assert!(idx
            .lookup(&Sha256::of(b"none"), 11, None, 10)
            .await
            .unwrap()
            .entries
            .is_empty());
        drop_schema(&s).await;
    });
}

/// An instance whose indexer is stopped (paused, frozen) inside its transaction, holding the
/// covered row, holds up the other instances' indexers only until PostgreSQL ends its session
/// (an open transaction may sit idle 5 s); one that holds a lock for longer without that bound
/// makes the others fail with an error, not wait for ever. And a stopped instance holding the
/// index's migration lock does not stop another from opening an index already at its version.
#[test]
fn a_stopped_instance_holds_up_no_other_indexer_for_ever() {
    let s = schema("stopped");
    rt().block_on(async {
        let d = Sha256::of(b"firmware");
        let mut idx = PgIndex::open(DB, &s).await.unwrap();
        idx.add(&[row(0, &d)]).await.unwrap();

        let connect = || async {
            let (c, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c
        };
        // As the stopped instance's session is (PgIndex::open bounds it): its transaction ends
        // with the session once idle for 5 s.
        let mut stopped = connect().await;
        stopped
            .batch_execute("SET idle_in_transaction_session_timeout = '5s'")
            .await
            .unwrap();
        let tx = stopped.transaction().await.unwrap();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nospy-index-migrate:' || $1))",
            &[&s],
        )
        .await
        .unwrap();
        tx.query_one(
            &format!("SELECT size FROM {s}.index_covered WHERE one = 0 FOR UPDATE"),
            &[],
        )
        .await
        .unwrap();
        let mut other = PgIndex::open(DB, &s).await.unwrap();
        other.add(&[row(1, &d)]).await.unwrap();
        assert_eq!(other.size().await.unwrap(), 2);
        assert!(tx.commit().await.is_err(), "its session was ended");

        // A session without that bound, holding the row: the indexer fails after its wait.
        let mut holder = connect().await;
        let tx = holder.transaction().await.unwrap();
        tx.query_one(
            &format!("SELECT size FROM {s}.index_covered WHERE one = 0 FOR UPDATE"),
            &[],
        )
        .await
        .unwrap();
        let e = other.add(&[row(2, &d)]).await.unwrap_err().to_string();
        assert!(e.contains("55P03"), "{e}");
        tx.rollback().await.unwrap();
        other.add(&[row(2, &d)]).await.unwrap();
        assert_eq!(other.size().await.unwrap(), 3);
        drop_schema(&s).await;
    });
}

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused_before_connecting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for bad in [
        "",
        "Upper",
        "1starts_with_a_digit",
        "semi;colon",
        "quote\"d",
        &"a".repeat(64),
    ] {
        // A database that does not exist: the name is refused before any connection.
        match rt.block_on(PgIndex::open("host=127.0.0.1 port=1 user=nobody", bad)) {
            Err(nospy_server::index_pg::PgIndexError::SchemaName(s)) => assert_eq!(s, bad),
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?} accepted"),
        }
    }
    // A good name against an unreachable database: a database error, said.
    match rt.block_on(PgIndex::open(
        "host=127.0.0.1 port=1 user=nobody connect_timeout=2",
        "fine_name",
    )) {
        Err(nospy_server::index_pg::PgIndexError::Database(e)) => assert!(!e.is_empty()),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to port 1"),
    }
}
