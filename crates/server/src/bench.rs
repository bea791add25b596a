//! `nospy bench serve`: the real server driven over loopback by concurrent keep-alive clients.

use crate::witnessing;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use nospy_log::Sequencer;
use nospy_tlog::note::SignerKey;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Submissions acknowledged (durable) per second.
    pub submissions_per_s: f64,
    /// Submission latency percentiles, milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// 503 answers received (and retried).
    pub overloaded: u64,
    /// Tile and bundle reads per second.
    pub tile_reads_per_s: f64,
    /// Entries in the log at the end.
    pub size: u64,
    /// CPU time (user and system, all threads: server and clients) per submission, microseconds.
    pub cpu_us_per_submission: Option<f64>,
    /// The reference: requests per second the same clients get from a bare HTTP server on
    /// loopback, in this run, whose handler reads the same bodies and answers at once (no
    /// verification, no log, no fsync): the floor this machine's HTTP stack and loopback set.
    pub http_floor_per_s: f64,
}

/// CPU seconds this process has used so far (Linux: /proc/self/stat, 100 ticks a second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs the benchmark in `dir`: `entries` pre-signed submissions sent by `clients` concurrent
/// connections, then `read_seconds` of tile reads.
pub fn run(
    dir: &std::path::Path,
    entries: Vec<Vec<u8>>,
    submitter: &SignerKey,
    clients: usize,
    read_seconds: f64,
) -> Result<Figures, String> {
    let origin = "bench.nospy.example/serve";
    let key = SignerKey::from_seed(origin, [7; 32]).map_err(|e| e.to_string())?;
    let log = dir.join("log");
    Sequencer::init(&log, origin, &key, None).map_err(|e| e.to_string())?;
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            submitter.verifier()
        ),
    )
    .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let srv = crate::start(crate::Options {
            dir: log,
            key,
            config: Some(cfg),
            listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            queue: 65_536,
            max_batch: 16_384,
        })
        .await?;
        let addr = srv.addr;
        let client = witnessing::client();
        let entries = Arc::new(entries);

        // The reference first: a bare server, the same clients, the same bodies.
        let floor = {
            let app = axum::Router::new().route(
                "/add",
                axum::routing::post(|body: Bytes| async move {
                    format!("{{\"index\":{}}}\n", body.len())
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let floor_addr = listener.local_addr().map_err(|e| e.to_string())?;
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let t = Instant::now();
            // Its own client, so that its connections close with it.
            let (lat, _) = drive(&witnessing::client(), floor_addr, &entries, clients).await?;
            let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
            server.abort();
            rate
        };

        let cpu_before = cpu_seconds();
        let t = Instant::now();
        let (mut lat, overloaded) = drive(&client, addr, &entries, clients).await?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = match (cpu_before, cpu_seconds()) {
            (Some(a), Some(b)) if !lat.is_empty() => Some((b - a) * 1e6 / lat.len() as f64),
            _ => None,
        };
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() - 1) as f64 * p).round() as usize]
            }
        };
        let submissions_per_s = lat.len() as f64 / secs;
        let (p50, p99) = (pct(0.5), pct(0.99));

        // Reads: random full level-0 tiles and bundles of the log just written.
        let size = entries.len() as u64;
        let full_tiles = (size / 256).max(1);
        let reads = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let deadline = t + Duration::from_secs_f64(read_seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients.max(1) {
            let (client, reads) = (client.clone(), reads.clone());
            tasks.spawn(async move {
                let mut x = 0x9E37_79B9u64 ^ c as u64;
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = x % full_tiles;
                    let id = nospy_tlog::tile::TileId {
                        level: 0,
                        index: n,
                        width: 256,
                    };
                    let path = if x & 1 == 0 {
                        id.path()
                    } else {
                        id.entries_path()
                    };
                    let req = hyper::Request::get(format!("http://{addr}/{path}"))
                        .body(Full::new(Bytes::new()))
                        .map_err(|e| e.to_string())?;
                    let res = client.request(req).await.map_err(|e| e.to_string())?;
                    let status = res.status().as_u16();
                    let _ = res.into_body().collect().await;
                    if status != 200 {
                        return Err(format!("GET /{path}: HTTP {status}"));
                    }
                    reads.fetch_add(1, Relaxed);
                }
                Ok::<_, String>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        let tile_reads_per_s = reads.load(Relaxed) as f64 / t.elapsed().as_secs_f64();
        srv.shutdown().await?;
        Ok(Figures {
            submissions_per_s,
            latency_ms_p50: p50,
            latency_ms_p99: p99,
            overloaded,
            tile_reads_per_s,
            size,
            cpu_us_per_submission: cpu,
            http_floor_per_s: floor,
        })
    })
}

/// Sends every entry as `POST /add` to `addr` over `clients` keep-alive connections, each waiting
/// for its answer before the next; a 503 is retried after 5 ms. Returns each submission's latency
/// (milliseconds, retries included) and how many 503 answers came.
async fn drive(
    client: &witnessing::HttpClient,
    addr: std::net::SocketAddr,
    entries: &Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> Result<(Vec<f64>, u64), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (client, entries, next, overloaded) = (
            client.clone(),
            entries.clone(),
            next.clone(),
            overloaded.clone(),
        );
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(e) = entries.get(i) else { break };
                let start = Instant::now();
                loop {
                    let req = hyper::Request::post(format!("http://{addr}/add"))
                        .body(Full::new(Bytes::from(e.clone())))
                        .map_err(|e| e.to_string())?;
                    let res = client.request(req).await.map_err(|e| e.to_string())?;
                    let status = res.status().as_u16();
                    let _ = res.into_body().collect().await;
                    match status {
                        200 => break,
                        503 => {
                            overloaded.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        s => return Err(format!("submission {i} got HTTP {s}")),
                    }
                }
                lat.push(start.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, String>(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.map_err(|e| e.to_string())??);
    }
    Ok((lat, overloaded.load(Relaxed)))
}
