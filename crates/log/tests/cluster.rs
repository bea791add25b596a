//! The log on object storage with its state in PostgreSQL (the server at 127.0.0.1:5432 that
//! this project's machines run; each test its own schema): batches are recorded, written,
//! published and deduplicated exactly; the tiles are the directory sequencer's, byte for byte;
//! one instance leads, a deposed one publishes nothing; a batch a failed leader recorded is
//! published by the next.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use nospy_log::cluster::{self, ClusterError, ClusterSequencer};
use nospy_log::mirror::mirror;
use nospy_log::object::ObjectTiles;
use nospy_log::Sequencer;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::note::SignerKey;
use object_store::memory::InMemory;
use std::sync::Arc;

const DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const ORIGIN: &str = "cluster.nospy.example/log";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, [5; 32]).unwrap()
}

/// A schema of this test's own.
fn schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t_{name}_{}_{nanos}", std::process::id())
}

/// Drops a test's schema (what a test leaves behind is only its schema).
fn drop_schema(rt: &tokio::runtime::Runtime, schema: &str) {
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("entry {i}").into_bytes())
        .collect()
}

async fn lead(schema: &str, tiles: &ObjectTiles) -> Option<ClusterSequencer> {
    ClusterSequencer::lead(DB, schema, tiles.clone(), key())
        .await
        .unwrap()
}

/// Leads once the lease is free. A dropped leader's lease connection closes in the background,
/// and PostgreSQL releases its advisory lock only when that backend has exited: the next
/// instance retries, as `nospy serve` does, for at most 20 seconds.
async fn lead_next(schema: &str, tiles: &ObjectTiles) -> ClusterSequencer {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(seq) = lead(schema, tiles).await {
            return seq;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease of schema {schema} was not released within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn batches_are_published_deduplicated_and_the_tiles_are_the_directory_logs() {
    let rt = rt();
    let s = schema("basic");
    let store = Arc::new(InMemory::new());
    let tiles = ObjectTiles::new(store, "log", "memory");
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        // Init again (every instance runs it at start): nothing changes.
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        let mut seq = lead(&s, &tiles).await.unwrap();
        assert_eq!(seq.size(), 0);
        let a = seq.append(&entries(0, 300)).await.unwrap();
        assert_eq!(
            a.iter().map(|x| x.index).collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>()
        );
        // A batch with entries already in the log and a repeat within itself.
        let mut batch = entries(290, 20);
        batch.push(b"entry 305".to_vec());
        let b = seq.append(&batch).await.unwrap();
        assert_eq!(b[0].index, 290);
        assert!(b[0].duplicate);
        assert_eq!((b[10].index, b[10].duplicate), (300, false));
        assert_eq!((b[20].index, b[20].duplicate), (305, true));
        assert_eq!(seq.size(), 310);
        let (text, _) = tiles.checkpoint().await.unwrap().unwrap();
        let sc = SignedCheckpoint::open(&text, &key().verifier()).unwrap();
        assert_eq!(sc.checkpoint.size, 310);
        drop(seq);
        // Deduplication survives the leader: a new one knows every entry.
        let mut next = lead_next(&s, &tiles).await;
        let written = next.objects_written();
        let again = next.append(&entries(0, 3)).await.unwrap();
        assert!(again.iter().all(|x| x.duplicate));
        assert_eq!(next.size(), 310);
        // A batch of repeats does not grow the tree, and writes nothing.
        assert_eq!(next.objects_written(), written);
    });

    // The same batches through the directory sequencer write the same objects, byte for byte,
    // and a mirror of the bucket audits clean.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("dir");
    Sequencer::init(&dir, ORIGIN, &key(), None).unwrap();
    let mut d = Sequencer::open(&dir, key()).unwrap();
    let e = entries(0, 300);
    d.append(&e.iter().map(|x| x.as_slice()).collect::<Vec<_>>())
        .unwrap();
    let e = entries(300, 10);
    d.append(&e.iter().map(|x| x.as_slice()).collect::<Vec<_>>())
        .unwrap();
    let mut objects = 0;
    for rel in [
        "tile/0/000",
        "tile/0/001.p/54",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/54",
    ] {
        let want = std::fs::read(dir.join(rel)).unwrap();
        assert_eq!(rt.block_on(tiles.get(rel)).unwrap(), Some(want), "{rel}");
        objects += 1;
    }
    assert_eq!(objects, 5);
    let back = t.path().join("back");
    let m = mirror(
        &back,
        &key().verifier(),
        |rel| rt.block_on(tiles.get(rel)).unwrap().ok_or("missing"),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(m.size, 310);
    assert_eq!(m.root, d.checkpoint().checkpoint.root);
    drop_schema(&rt, &s);
}

#[test]
fn one_instance_leads_and_a_deposed_one_publishes_nothing() {
    let rt = rt();
    let s = schema("fence");
    let tiles = ObjectTiles::new(Arc::new(InMemory::new()), "", "memory");
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        let mut a = lead(&s, &tiles).await.unwrap();
        a.append(&entries(0, 5)).await.unwrap();
        // The lease is held: another instance is a standby.
        assert!(lead(&s, &tiles).await.is_none());

        // A loses its lease without knowing (its connection is cut, as by a partition); B
        // takes over and appends.
        let admin = tokio_postgres::connect(DB, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(admin.1);
        let admin = admin.0;
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND objid = hashtext('nospy-sequencer:' || $1)::oid",
                &[&s],
            )
            .await
            .unwrap();
        let mut b = lead_next(&s, &tiles).await;
        assert!(b.epoch() > a.epoch());
        b.append(&entries(5, 3)).await.unwrap();
        let published = tiles.checkpoint().await.unwrap().unwrap().0;

        // A, still believing it leads, tries a batch: fenced, and nothing of it is published.
        let e = a.append(&entries(100, 4)).await.unwrap_err();
        assert!(matches!(e, ClusterError::Fenced), "{e}");
        assert!(!a.holds_lease().await);
        assert_eq!(tiles.checkpoint().await.unwrap().unwrap().0, published);
        // B goes on, and A's entries were never given indices.
        let more = b.append(&entries(100, 4)).await.unwrap();
        assert_eq!(more[0].index, 8);
        assert!(!more[0].duplicate);
        let (text, _) = tiles.checkpoint().await.unwrap().unwrap();
        let sc = SignedCheckpoint::open(&text, &key().verifier()).unwrap();
        assert_eq!(sc.checkpoint.size, 12);
    });
    drop_schema(&rt, &s);
}

/// An instance stopped (paused, frozen) while it holds the schema's migration lock, inside its
/// transaction, holds up no one: a schema already at this version is not migrated again, so
/// the others start and lead; a schema that still needs its migration is refused after a
/// bounded wait with an error that says who holds it, never waited on for ever (the hang CI
/// once met when `nospy log add` was stopped in its start).
#[test]
fn an_instance_stopped_in_its_migration_holds_up_no_one() {
    let rt = rt();
    let s = schema("migrating");
    let fresh = schema("unmigrated");
    let tiles = ObjectTiles::new(Arc::new(InMemory::new()), "", "memory");
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        let (mut stuck, conn) = tokio_postgres::connect(DB, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let tx = stuck.transaction().await.unwrap();
        for name in [&s, &fresh] {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('nospy-migrate:' || $1))",
                &[name],
            )
            .await
            .unwrap();
        }
        // The stopped instance's transaction stays open from here on. (The timeout only turns
        // the old hang into a failure; it measures nothing.)
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            cluster::init(DB, &s, &tiles, &key()),
        )
        .await
        .expect("init waited on the stopped instance's migration lock")
        .unwrap();
        let mut a = lead(&s, &tiles).await.unwrap();
        assert_eq!(a.append(&entries(0, 3)).await.unwrap()[2].index, 2);
        drop(a);

        let other = ObjectTiles::new(Arc::new(InMemory::new()), "", "memory");
        let e = cluster::init(DB, &fresh, &other, &key()).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("schema {fresh}")) && text.contains("nospy-migrate"),
            "{text}"
        );
        tx.rollback().await.unwrap();
        // Once that session has gone, the schema is created.
        cluster::init(DB, &fresh, &other, &key()).await.unwrap();
        assert!(lead(&fresh, &other).await.is_some());
    });
    drop_schema(&rt, &s);
    drop_schema(&rt, &fresh);
}

#[test]
fn a_batch_recorded_by_a_leader_whose_store_failed_is_published_by_the_next() {
    let rt = rt();
    let s = schema("recover");
    let tiles = ObjectTiles::new(Arc::new(InMemory::new()), "log", "memory");
    // The first leader's store: a real S3 server that goes away mid-batch, reached without
    // retries so that the failure comes at once.
    let s3 = nospy_testkit::s3::SeaweedFs::start();
    let dying = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(nospy_testkit::s3::BUCKET)
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_skip_signature(true)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap();
    let dying = ObjectTiles::new(Arc::new(dying), "log", "dying");
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        let mut first = lead(&s, &dying).await.unwrap();
        drop(s3);
        let e = first.append(&entries(0, 3)).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        // Poisoned: it must lead again before appending.
        let e = first.append(&entries(9, 1)).await.unwrap_err();
        assert!(matches!(e, ClusterError::Poisoned), "{e}");
        drop(first);

        // The next leader integrates the recorded batch at the indices it was given, and
        // publishes it.
        let mut next = lead_next(&s, &tiles).await;
        assert_eq!(next.size(), 3);
        let again = next.append(&entries(0, 3)).await.unwrap();
        assert!(again.iter().all(|x| x.duplicate));
        assert_eq!(again[2].index, 2);
        let (text, _) = tiles.checkpoint().await.unwrap().unwrap();
        let sc = SignedCheckpoint::open(&text, &key().verifier()).unwrap();
        assert_eq!(sc.checkpoint.size, 3);
        assert_eq!(
            tiles
                .get("tile/entries/000.p/3")
                .await
                .unwrap()
                .map(|b| b.len()),
            Some(3 * 2 + "entry 0".len() * 3)
        );
    });
    drop_schema(&rt, &s);
}

#[test]
fn tesseras_test_log_written_through_the_object_storage_driver_is_tesseras_byte_for_byte() {
    const SKEY: &str = "PRIVATE+KEY+example.com/log/testdata+33d7b496+AeymY/SZAX0jZcJ8enZ5FY1Dz+wTML2yWSkK+9DSF3eg";
    const WORDS: [&str; 15] = [
        "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven",
        "twelf", "threeten", "fourten", "fivten",
    ];
    let tessera = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/tlog/tessera-testdata-log/testdata/log");
    let key = SignerKey::parse(SKEY).unwrap();
    let rt = rt();
    let s = schema("tessera");
    let tiles = ObjectTiles::new(Arc::new(InMemory::new()), "testdata/log", "memory");
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key).await.unwrap();
        let read = |rel: &str| std::fs::read(tessera.join(rel)).unwrap();
        assert_eq!(
            tiles.checkpoint().await.unwrap().unwrap().0,
            read("checkpoint.0")
        );
        let mut seq = ClusterSequencer::lead(DB, &s, tiles.clone(), key.clone())
            .await
            .unwrap()
            .unwrap();
        // One add at a time, as Tessera's log was written: every checkpoint is Tessera's.
        for (i, w) in WORDS.iter().enumerate() {
            let a = seq.append(&[w.as_bytes().to_vec()]).await.unwrap();
            assert_eq!(a[0].index, i as u64);
            assert_eq!(
                tiles.checkpoint().await.unwrap().unwrap().0,
                read(&format!("checkpoint.{}", i + 1)),
                "checkpoint after {} entries",
                i + 1
            );
        }
        // And every tile and bundle Tessera wrote (the older partial ones too) is in the bucket
        // with the same bytes.
        let mut stack = vec!["tile".to_string()];
        let mut files = 0;
        while let Some(rel) = stack.pop() {
            for e in std::fs::read_dir(tessera.join(&rel)).unwrap() {
                let e = e.unwrap();
                let child = format!("{rel}/{}", e.file_name().to_string_lossy());
                if e.file_type().unwrap().is_dir() {
                    stack.push(child);
                } else {
                    assert_eq!(
                        tiles.get(&child).await.unwrap(),
                        Some(read(&child)),
                        "{child}"
                    );
                    files += 1;
                }
            }
        }
        assert_eq!(files, 30);
    });
    drop_schema(&rt, &s);
}

/// An in-memory store whose writes fail where `fail` says (a path, and how many writes came
/// before): a PUT that fails, at the moment a test chooses.
struct Faulty {
    inner: InMemory,
    fail: std::sync::Mutex<FailRule>,
}

type FailRule = Box<dyn FnMut(&str) -> bool + Send>;

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faulty")
    }
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("faulty")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if (self.fail.lock().unwrap())(location.as_ref()) {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected failure".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
    {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[test]
fn a_put_that_fails_anywhere_in_a_batch_loses_nothing_and_the_next_leader_publishes() {
    let rt = rt();
    for fail_at in ["tile/entries/000.p/3", "tile/0/000.p/3", "checkpoint"] {
        let s = schema("faults");
        let faulty = Arc::new(Faulty {
            inner: InMemory::new(),
            fail: std::sync::Mutex::new(Box::new(|_| false)),
        });
        let tiles = ObjectTiles::new(faulty.clone(), "", "faulty");
        rt.block_on(async {
            cluster::init(DB, &s, &tiles, &key()).await.unwrap();
            let mut first = lead(&s, &tiles).await.unwrap();
            // The next write of this path fails (once).
            let target = fail_at.to_string();
            let mut fired = false;
            *faulty.fail.lock().unwrap() = Box::new(move |p| {
                let hit = !fired && p == target;
                fired |= hit;
                hit
            });
            let e = first.append(&entries(0, 3)).await.unwrap_err();
            assert!(e.is_transient(), "{fail_at}: {e}");
            // Nothing was acknowledged; whatever reached the store is not yet published.
            let (text, _) = tiles.checkpoint().await.unwrap().unwrap();
            let sc = SignedCheckpoint::open(&text, &key().verifier()).unwrap();
            assert_eq!(sc.checkpoint.size, 0, "{fail_at}");
            drop(first);
            // The next leader publishes the recorded batch, at the indices it was given.
            let mut next = lead_next(&s, &tiles).await;
            assert_eq!(next.size(), 3, "{fail_at}");
            let (text, _) = tiles.checkpoint().await.unwrap().unwrap();
            let sc = SignedCheckpoint::open(&text, &key().verifier()).unwrap();
            assert_eq!(sc.checkpoint.size, 3, "{fail_at}");
            let again = next.append(&entries(0, 4)).await.unwrap();
            assert!(again[..3].iter().all(|x| x.duplicate), "{fail_at}");
            assert_eq!((again[3].index, again[3].duplicate), (3, false));
        });
        drop_schema(&rt, &s);
    }
}

/// `sslmode=require` is TLS with the certificate verified: the machine's PostgreSQL serves the
/// Debian "snakeoil" certificate (self-signed, for `localhost`), which is trusted only when it is
/// given as `sslrootcert`, and only for the name it is for.
#[test]
fn tls_to_the_database_verifies_the_certificate_and_its_name() {
    let cert = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let plain = nospy_log::cluster::connect(DB).await.unwrap();
        let on: String = plain.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        assert_eq!(
            on, "on",
            "this machine's PostgreSQL is expected to serve TLS"
        );
        let url = |host: &str, root: Option<&str>| {
            format!(
                "host={host} port=5432 user=postgres dbname=test sslmode=require{}",
                root.map(|r| format!(" sslrootcert={r}"))
                    .unwrap_or_default()
            )
        };
        // Trusted, for its name: the session is encrypted.
        let db = nospy_log::cluster::connect(&url("localhost", Some(cert)))
            .await
            .unwrap();
        let ssl: bool = db
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl);
        // The same certificate for another name, and a CA file that does not hold it (the
        // public roots).
        let e = nospy_log::cluster::connect(&url("127.0.0.1", Some(cert)))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate"), "{e}");
        let e = nospy_log::cluster::connect(&url(
            "localhost",
            Some("/etc/ssl/certs/ca-certificates.crt"),
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("certificate"), "{e}");
        // A CA file without sslmode=require is a mistake, said so.
        let e = nospy_log::cluster::connect(&format!("{DB} sslrootcert={cert}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not sslmode=require"), "{e}");
        // The URL form carries the CA file the same way.
        nospy_log::cluster::connect(&format!(
            "postgres://postgres@localhost:5432/test?sslmode=require&sslrootcert={cert}"
        ))
        .await
        .unwrap();
    });
}

/// Go's `golang.org/x/mod/sumdb/tlog` and `sumdb/note` (Debian's golang-golang-x-mod-dev,
/// installed by `.ci/run` with `golang-go`) read a log the object-storage sequencer wrote into
/// a real S3 server, straight from the bucket over HTTP: the checkpoint's signature, the tree
/// hash of the hash tiles, and every entry of the bundles proven against the signed root
/// (`tests/go/tlogcheck`). A tile changed in the bucket is caught by it.
#[test]
fn gos_tlog_client_reads_the_buckets_log_and_catches_a_changed_tile() {
    let s3 = nospy_testkit::s3::SeaweedFs::start();
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("tlogcheck");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlogcheck/main.go");
    let built = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOCACHE", work.path().join("gocache"))
        .output()
        .expect("running `go` (Debian: apt-get install golang-go golang-golang-x-mod-dev)");
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let rt = rt();
    let s = schema("gocheck");
    let tiles = ObjectTiles::from_url(&s3.url("gocheck")).unwrap();
    rt.block_on(async {
        cluster::init(DB, &s, &tiles, &key()).await.unwrap();
        let mut seq = lead(&s, &tiles).await.unwrap();
        // Batches that leave partial tiles and bundles behind, and cross two full bundles.
        for (from, n) in [(0, 1), (1, 100), (101, 300), (401, 199)] {
            seq.append(&entries(from, n)).await.unwrap();
        }
        assert_eq!(seq.size(), 600);
    });
    let base = format!("{}/{}/gocheck", s3.endpoint(), nospy_testkit::s3::BUCKET);
    let vkey = key().verifier().to_string();
    let check = || {
        std::process::Command::new(&bin)
            .args([&base, &vkey])
            .output()
            .unwrap()
    };
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok 600 "));
    // One hash flipped in a full tile, as anyone who can write the bucket could.
    let mut tile = rt.block_on(tiles.get("tile/0/001")).unwrap().unwrap();
    tile[40] ^= 1;
    let addr = s3.s3;
    let r = nospy_testkit::http::request(
        addr,
        "PUT",
        &format!("/{}/gocheck/tile/0/001", nospy_testkit::s3::BUCKET),
        &tile,
    );
    assert_eq!(r.status, 200);
    let out = check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid transparency proof"), "{err}");
    drop_schema(&rt, &s);
}
