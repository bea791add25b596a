//! The load generator of `nospy bench serve`: the real server driven over loopback by
//! concurrent keep-alive clients, each a minimal HTTP/1.1 client on a raw socket, so that it
//! takes little of the CPU the server is measured on.

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
    /// Mean entries per committed batch (each batch is one round of fsyncs).
    pub mean_batch: f64,
    /// Tile and bundle reads per second.
    pub tile_reads_per_s: f64,
    /// Entries in the log at the end.
    pub size: u64,
    /// CPU time (user and system, all threads: server and clients) per submission, microseconds.
    pub cpu_us_per_submission: Option<f64>,
    /// That CPU time by thread name (`tokio-rt-worker` is HTTP, handlers and the load
    /// generator; `other` is threads that ended during the run, such as a batch's writers),
    /// microseconds per submission, largest first.
    pub cpu_us_by_thread: Vec<(String, f64)>,
    /// The reference: requests per second the same clients get from a bare HTTP server on
    /// loopback, in this run, whose handler reads the same bodies and answers at once (no
    /// verification, no log, no fsync): the floor this machine's HTTP stack and loopback set.
    pub http_floor_per_s: f64,
}

/// One keep-alive HTTP/1.1 connection of the load generator. It writes whole requests and reads
/// answers framed by Content-Length (all the server sends), and nothing more: hyper's client
/// costs several times as much CPU per request, and on two shared cores every microsecond the
/// load generator spends is one the server under test does not get. Both the reference and the
/// real server are driven through it.
struct Conn {
    addr: std::net::SocketAddr,
    stream: Option<tokio::net::TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: std::net::SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            out: Vec::with_capacity(2048),
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and returns the answer's status and body length.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, usize), String> {
        use std::io::Write;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.out.clear();
        let _ = write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.out.extend_from_slice(body);
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = tokio::net::TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
                let _ = s.set_nodelay(true);
                self.stream.insert(s)
            }
        };
        stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        self.buf.clear();
        let (head, status, len, close) = loop {
            if let Some(h) = find(&self.buf, b"\r\n\r\n") {
                let (status, len, close) = parse_head(&self.buf[..h])
                    .ok_or_else(|| format!("{method} {path}: a malformed answer"))?;
                break (h + 4, status, len, close);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(format!("{method} {path}: an answer's head is over 64 KiB"));
            }
            if fill(stream, &mut self.buf).await? == 0 {
                return Err(format!("{method} {path}: the server closed the connection"));
            }
        };
        while self.buf.len() < head + len {
            let want = head + len - self.buf.len();
            self.buf.reserve(want);
            if stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?
                == 0
            {
                return Err(format!("{method} {path}: the answer was cut short"));
            }
        }
        if close {
            self.stream = None;
        }
        Ok((status, len))
    }
}

async fn fill(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    use tokio::io::AsyncReadExt;
    buf.reserve(4096);
    stream.read_buf(buf).await.map_err(|e| e.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status, Content-Length and whether the server will close, from an answer's head.
fn parse_head(head: &[u8]) -> Option<(u16, usize, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let (mut len, mut close) = (None, false);
    for l in lines {
        let (name, value) = l.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Some((status, len?, close))
}

/// CPU seconds (user and system) a /proc stat file reports, with the task's name (Linux, 100
/// ticks a second).
pub(crate) fn stat_cpu(path: &std::path::Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / 100.0))
}

/// CPU seconds this process has used so far, and the same by thread name for the threads alive.
fn cpu_seconds() -> Option<(f64, std::collections::BTreeMap<String, f64>)> {
    let total = stat_cpu(std::path::Path::new("/proc/self/stat"))?.1;
    let mut by = std::collections::BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if let Some((name, c)) = stat_cpu(&t.path().join("stat")) {
            *by.entry(name).or_insert(0.0) += c;
        }
    }
    Some((total, by))
}

/// Microseconds per submission between two readings, in all and by thread name.
fn cpu_between(
    a: Option<(f64, std::collections::BTreeMap<String, f64>)>,
    b: Option<(f64, std::collections::BTreeMap<String, f64>)>,
    n: usize,
) -> (Option<f64>, Vec<(String, f64)>) {
    let (Some((ta, ba)), Some((tb, bb)), true) = (a, b, n > 0) else {
        return (None, Vec::new());
    };
    let per = |secs: f64| secs * 1e6 / n as f64;
    let mut by: Vec<(String, f64)> = bb
        .iter()
        .map(|(k, v)| (k.clone(), per(v - ba.get(k).copied().unwrap_or(0.0))))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let named: f64 = by.iter().map(|(_, v)| v).sum();
    let other = per(tb - ta) - named;
    if other > 0.5 {
        by.push(("other".into(), other));
    }
    by.sort_by(|x, y| y.1.total_cmp(&x.1));
    (Some(per(tb - ta)), by)
}

/// Runs the benchmark in `dir`: `entries` pre-signed submissions sent by `clients` concurrent
/// connections, then `read_seconds` of tile reads.
/// Starts a server on a new log in `dir` that admits `submitter`, measures a bare HTTP server
/// answering the same `clients` first, then submits `entries` to the real one and reads tiles
/// for `read_seconds`.
pub fn run(
    dir: &std::path::Path,
    entries: Vec<Vec<u8>>,
    submitter: &SignerKey,
    clients: usize,
    read_seconds: f64,
) -> anyhow::Result<Figures> {
    measure(dir, entries, submitter, clients, read_seconds).map_err(anyhow::Error::msg)
}

fn measure(
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
        let srv = nospy_server::start(nospy_server::Options {
            storage: nospy_server::Storage::Dir(log),
            key,
            config: Some(cfg),
            listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            queue: 65_536,
            max_batch: 16_384,
            index_delay: Duration::from_millis(100),
            lookup_page: nospy_server::LOOKUP_PAGE,
            max_queued_bytes: nospy_server::MAX_QUEUED_BYTES,
            // Every client of the benchmark comes from 127.0.0.1: the per-address cap (a bound
            // against one hostile host) would turn the load itself away.
            max_connections: nospy_server::MAX_CONNECTIONS.max(2 * clients),
            max_connections_per_client: nospy_server::MAX_CONNECTIONS_PER_CLIENT.max(2 * clients),
        })
        .await
        .map_err(|e| e.to_string())?;
        let addr = srv.addr;
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
            let (lat, _) = drive(floor_addr, &entries, clients).await?;
            let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
            server.abort();
            rate
        };

        let cpu_before = cpu_seconds();
        let t = Instant::now();
        let (mut lat, overloaded) = drive(addr, &entries, clients).await?;
        let secs = t.elapsed().as_secs_f64();
        let (cpu, cpu_by_thread) = cpu_between(cpu_before, cpu_seconds(), lat.len());
        let mean_batch = srv.metrics.batch_size.mean();
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
            let reads = reads.clone();
            tasks.spawn(async move {
                let mut conn = Conn::new(addr);
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
                    let (status, _) = conn.request("GET", &format!("/{path}"), b"").await?;
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
        srv.shutdown().await.map_err(|e| e.to_string())?;
        Ok(Figures {
            submissions_per_s,
            latency_ms_p50: p50,
            latency_ms_p99: p99,
            overloaded,
            tile_reads_per_s,
            size,
            cpu_us_per_submission: cpu,
            cpu_us_by_thread: cpu_by_thread,
            mean_batch,
            http_floor_per_s: floor,
        })
    })
}

/// Sends every entry as `POST /add` to `addr` over `clients` keep-alive connections, each waiting
/// for its answer before the next; a 503 is retried after 5 ms. Returns each submission's latency
/// (milliseconds, retries included) and how many 503 answers came.
async fn drive(
    addr: std::net::SocketAddr,
    entries: &Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> Result<(Vec<f64>, u64), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (entries, next, overloaded) = (entries.clone(), next.clone(), overloaded.clone());
        tasks.spawn(async move {
            let mut conn = Conn::new(addr);
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(e) = entries.get(i) else { break };
                let start = Instant::now();
                loop {
                    match conn.request("POST", "/add", e).await?.0 {
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
