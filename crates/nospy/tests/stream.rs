//! The monitor through NATS JetStream (the server at 127.0.0.1:4222 that this project's
//! machines run; each test its own stream names): `nospy collect` into a partitioned stream,
//! one to four `nospy monitor --nats` workers, and `nospy monitor report`, which must print what
//! one `nospy monitor` process prints for the same exports: softflowd's, and generated IPFIX
//! over many devices and several windows. Faults: a collector killed and run again over the
//! same file, a worker SIGKILLed mid-stream; a message on the stream that is not a batch.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;
use common::flows::*;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NATS: &str = "nats://127.0.0.1:4222";
const BOUND: Duration = Duration::from_secs(300);

/// A deployment of this test's own (a name, on a NATS server); its streams and bucket are
/// deleted when dropped.
struct Deployment {
    name: String,
    url: String,
}

impl Deployment {
    /// On the machine's NATS server.
    fn new(tag: &str) -> Deployment {
        Deployment::on(NATS, tag)
    }

    fn on(url: &str, tag: &str) -> Deployment {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Deployment {
            name: format!("T{tag}{}X{nanos}", std::process::id()).to_uppercase(),
            url: url.to_string(),
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Deployment {
    /// The deployment's transport, its streams set up (with `partitions` if new).
    async fn transport(&self, partitions: u32) -> nospy_stream::nats::Nats {
        use nospy_stream::transport::Transport as _;
        let t = nospy_stream::nats::Nats::connect(
            &self.url,
            &self.name,
            nospy_stream::nats::Options::default(),
        )
        .await
        .unwrap();
        t.setup(partitions).await.unwrap();
        t
    }

    /// The consumers on the engine's stream `stream` (`{name}` in it is the deployment's name).
    async fn consumers(&self, stream: &str) -> usize {
        let js = async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap());
        let mut s = js
            .get_stream(stream.replace("{name}", &self.name))
            .await
            .unwrap();
        s.info().await.unwrap().state.consumer_count
    }

    /// Sets (`Some`) or deletes (`None`) keys of the deployment's state bucket, as a worker or
    /// an operator would.
    fn set_state(&self, keys: &[(String, Option<&str>)]) {
        rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap());
            let kv = js
                .get_key_value(format!("{}_STATE", self.name))
                .await
                .unwrap();
            for (k, v) in keys {
                match v {
                    Some(v) => drop(kv.put(k, v.to_string().into()).await.unwrap()),
                    None => kv.delete(k).await.unwrap(),
                }
            }
        });
    }

    /// Appends to partition `p`'s chain the first of three chunks of a part that says it covers
    /// flows up to sequence 1,000,000, as a worker that died before the second would have.
    fn abandon_chunk(&self, p: u32) {
        rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap());
            let subject = format!("{}.rows.{p}", self.name);
            let rows = js.get_stream(format!("{}_ROWS", self.name)).await.unwrap();
            let before = rows
                .get_last_raw_message_by_subject(&subject)
                .await
                .map_or(0, |m| m.sequence);
            let mut chunk = b"NSK1".to_vec();
            chunk.extend_from_slice(&p.to_be_bytes());
            chunk.extend_from_slice(&before.to_be_bytes());
            chunk.extend_from_slice(&0u32.to_be_bytes());
            chunk.extend_from_slice(&3u32.to_be_bytes());
            chunk.extend_from_slice(&1_000_000u64.to_be_bytes());
            chunk.extend_from_slice(&u64::MAX.to_be_bytes());
            chunk.extend_from_slice(b"NSP3 and the rest of a part");
            js.publish(subject, chunk.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
    }

    /// Publishes `bytes` on the deployment's subject `NAME.<subject>`, as anyone allowed to
    /// publish there could.
    fn publish(&self, subject: &str, bytes: &'static [u8]) {
        rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap());
            js.publish(format!("{}.{subject}", self.name), bytes.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
    }

    /// Removes every message of the deployment's stream `NAME_<which>`, as its retention
    /// would; or, with `delete`, the stream itself (as before a version that set it up).
    fn purge(&self, which: &str, delete: bool) {
        rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap());
            let name = format!("{}_{which}", self.name);
            if delete {
                js.delete_stream(name).await.unwrap();
            } else {
                js.get_stream(name).await.unwrap().purge().await.unwrap();
            }
        });
    }

    /// Forgets which windows of partitions `0..n` were handed on, so that they are again.
    fn reopen_windows(&self, n: u32) {
        let keys: Vec<_> = (0..n).map(|p| (format!("closed.{p}"), None)).collect();
        self.set_state(&keys);
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.url.clone());
        rt().block_on(async move {
            if let Ok(c) = async_nats::connect(url).await {
                let js = async_nats::jetstream::new(c);
                for s in ["FLOWS", "DNS", "ROWS"] {
                    let _ = js.delete_stream(format!("{name}_{s}")).await;
                }
                let _ = js.delete_key_value(format!("{name}_STATE")).await;
            }
        });
    }
}

/// Generated IPFIX exports (a pcap of raw IPv4 UDP datagrams): `records` flows of `devices`
/// devices (10.1.x.y) with peers in and out of the manifest's prefixes, some of no device,
/// spread over `span_s` seconds; and the inventory and manifest they are judged by.
fn generated(t: &Path, devices: u32, records: u32, span_s: u64) -> (PathBuf, Vec<String>) {
    generated_in_order(t, devices, records, span_s, false)
}

/// As [`generated`]; with `ordered`, the flows start in order (as an exporter reports them,
/// give or take its timeouts), rather than anywhere in the span.
fn generated_in_order(
    t: &Path,
    devices: u32,
    records: u32,
    span_s: u64,
    ordered: bool,
) -> (PathBuf, Vec<String>) {
    let mut inv = String::from(
        "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n",
    );
    for d in 0..devices {
        inv.push_str(&format!(
            "gen-{d},V,M,access,5g,site-{},false,10.1.{}.{},{:064x},1,1\n",
            d % 7,
            d >> 8,
            d & 255,
            0xf1f1_0000u64 + u64::from(d % 3)
        ));
    }
    std::fs::write(t.join("gen.csv"), inv).unwrap();
    std::fs::write(
        t.join("gen.toml"),
        "[device]\nvendor = \"V\"\nmodel = \"M\"\n[capabilities]\nvendor_remote_access = \"none\"\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"192.0.2.0/24\"\nprotocol = \"tcp\"\nports = \"443\"\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"198.51.100.0/25\"\nprotocol = \"udp\"\nports = \"123\"\n\
         [[allow]]\ndirection = \"to-device\"\npeer = \"203.0.113.0/24\"\nprotocol = \"tcp\"\nports = \"22\"\n",
    )
    .unwrap();
    let mut rng = nospy_testkit::Rng::new(0x5eed);
    let base_ms: u64 = 1_764_000_000_000;
    // Template 256: src, dst (IPv4), ports, protocol, packets, octets, start and end (ms).
    let template: Vec<(u16, u16)> = vec![
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (2, 8),
        (1, 8),
        (152, 8),
        (153, 8),
    ];
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut left = records;
    let mut seq = 0u32;
    while left > 0 {
        let n = left.min(30);
        left -= n;
        let mut body = Vec::new();
        if msgs.is_empty() || msgs.len().is_multiple_of(50) {
            let mut set = vec![0, 2, 0, 0, 1, 0, 0, template.len() as u8];
            for (id, len) in &template {
                set.extend_from_slice(&id.to_be_bytes());
                set.extend_from_slice(&len.to_be_bytes());
            }
            let l = set.len() as u16;
            set[2..4].copy_from_slice(&l.to_be_bytes());
            body.extend_from_slice(&set);
        }
        let mut data = vec![1, 0, 0, 0];
        for _ in 0..n {
            let dev = [10u8, 1, 0, 0];
            let d = rng.below(devices as u64 + 3) as u32;
            let dev = if d >= devices {
                [100, 64, 0, d as u8] // no device
            } else {
                [dev[0], dev[1], (d >> 8) as u8, d as u8]
            };
            let peer = match rng.below(4) {
                0 => [192, 0, 2, rng.below(256) as u8],
                1 => [198, 51, 100, rng.below(256) as u8],
                2 => [203, 0, 113, rng.below(8) as u8],
                _ => [45, 33, rng.below(4) as u8, 1],
            };
            let (proto, port) = match rng.below(3) {
                0 => (6u8, 443u16),
                1 => (17, 123),
                _ => (6, 22),
            };
            let out = rng.below(2) == 0;
            let (src, dst, sport, dport) = if out {
                (dev, peer, 40_000 + rng.below(1000) as u16, port)
            } else {
                (peer, dev, 40_000 + rng.below(1000) as u16, port)
            };
            let start = if ordered {
                base_ms
                    + (u64::from(seq) + data.len() as u64 / 49) * span_s * 1000 / u64::from(records)
            } else {
                base_ms + rng.below(span_s * 1000)
            };
            data.extend_from_slice(&src);
            data.extend_from_slice(&dst);
            data.extend_from_slice(&sport.to_be_bytes());
            data.extend_from_slice(&dport.to_be_bytes());
            data.push(proto);
            data.extend_from_slice(&(1 + rng.below(20)).to_be_bytes());
            data.extend_from_slice(&(60 + rng.below(5000)).to_be_bytes());
            data.extend_from_slice(&start.to_be_bytes());
            data.extend_from_slice(&(start + rng.below(5000)).to_be_bytes());
        }
        let l = data.len() as u16;
        data[2..4].copy_from_slice(&l.to_be_bytes());
        body.extend_from_slice(&data);
        let mut m = vec![0, 10];
        m.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
        m.extend_from_slice(&((base_ms / 1000) as u32).to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(&body);
        seq += n;
        msgs.push(m);
    }
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&[2, 0, 4, 0]);
    for v in [0u32, 0, 65_535, 228] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    for (i, m) in msgs.iter().enumerate() {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&((28 + m.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&4739u16.to_be_bytes());
        ip.extend_from_slice(&4739u16.to_be_bytes());
        ip.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(m);
        for v in [
            1_764_000_000 + i as u32,
            0,
            ip.len() as u32,
            ip.len() as u32,
        ] {
            pcap.extend_from_slice(&v.to_le_bytes());
        }
        pcap.extend_from_slice(&ip);
    }
    let f = t.join("gen-ipfix.pcap");
    std::fs::write(&f, pcap).unwrap();
    let args = vec![
        "--inventory".to_string(),
        s(&t.join("gen.csv")).to_string(),
        "--manifest".to_string(),
        s(&t.join("gen.toml")).to_string(),
    ];
    (f, args)
}

/// The single-process report of `exports`.
fn single(exports: &Path, judged_by: &[String]) -> serde_json::Value {
    let mut args = vec!["monitor".to_string(), "--json".into(), "--flows".into()];
    args.push(s(exports).into());
    args.extend(judged_by.iter().cloned());
    let r = run(&strs(&args));
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The inventory among a monitor's arguments.
fn inventory_of(judged_by: &[String]) -> String {
    judged_by
        .iter()
        .position(|a| a == "--inventory")
        .map(|i| judged_by[i + 1].clone())
        .unwrap()
}

/// `nospy collect` into `d` with `partitions`, reading what `source` says.
fn collect_args(
    d: &Deployment,
    judged_by: &[String],
    partitions: u32,
    source: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "collect".into(),
        "--inventory".into(),
        inventory_of(judged_by),
        "--nats".into(),
        d.url.clone(),
        "--stream".into(),
        d.name.clone(),
        "--partitions".into(),
        partitions.to_string(),
    ];
    args.extend(source.iter().map(|a| a.to_string()));
    args
}

fn collect(d: &Deployment, exports: &Path, judged_by: &[String], partitions: u32) -> Run {
    let args = collect_args(d, judged_by, partitions, &["--flows", s(exports), "--json"]);
    ok_within(&strs(&args), BOUND)
}

fn worker(d: &Deployment, judged_by: &[String], id: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec![
        "monitor".to_string(),
        "--nats".into(),
        d.url.clone(),
        "--stream".into(),
        d.name.clone(),
        "--worker-id".into(),
        id.into(),
        "--json".into(),
    ];
    args.extend(judged_by.iter().cloned());
    args.extend(extra.iter().map(|a| a.to_string()));
    nospy()
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(d: &Deployment, window: Option<&str>) -> serde_json::Value {
    let mut args = vec![
        "monitor", "report", "--nats", &d.url, "--stream", &d.name, "--json",
    ];
    if let Some(w) = window {
        args.extend(["--window", w]);
    }
    let r = run(&args);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The merged report without what only it has.
/// Where two reports differ, shortly (for a failing comparison).
fn difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let mut out = String::new();
    for k in [
        "totals",
        "unknown_device_flows",
        "flows_in_dropped_rows",
        "input",
    ] {
        if a[k] != b[k] {
            out.push_str(&format!("{k}: {} vs {}\n", a[k], b[k]));
        }
    }
    for k in ["violations", "unattributable", "devices"] {
        let (x, y) = (a[k].as_array().unwrap(), b[k].as_array().unwrap());
        if x.len() != y.len() {
            out.push_str(&format!("{k}: {} rows vs {}\n", x.len(), y.len()));
        }
        if let Some((i, (r, s))) = x.iter().zip(y).enumerate().find(|(_, (r, s))| r != s) {
            out.push_str(&format!("{k}[{i}]: {r} vs {s}\n"));
        }
    }
    out
}

fn comparable(mut v: serde_json::Value) -> serde_json::Value {
    v["input"]
        .as_object_mut()
        .unwrap()
        .remove("stream_messages_refused");
    v
}

/// Runs `n` workers until every partition is counted; returns their stderr.
fn workers_to_the_end(d: &Deployment, judged_by: &[String], n: usize) -> Vec<String> {
    let kids: Vec<_> = (0..n)
        .map(|i| {
            worker(
                d,
                judged_by,
                &format!("w{i}"),
                &["--until-caught-up", "--window", "5m", "--flush", "300ms"],
            )
        })
        .collect();
    kids.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let r = wait_bounded(k, BOUND, &format!("worker {i}"));
            assert_eq!(r.code, 0, "worker {i}: {}", r.stderr);
            r.stderr
        })
        .collect()
}

#[test]
fn one_two_or_four_workers_report_what_one_process_reports() {
    let t = tempfile::tempdir().unwrap();
    let (gen, gen_args) = generated(t.path(), 300, 6_000, 1_500);
    let mudscope = softflowd_exports(
        t.path(),
        "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap",
        "10",
    );
    let mud_args = setup(t.path());
    for (exports, judged_by) in [(&gen, &gen_args), (&mudscope, &mud_args)] {
        let want = single(exports, judged_by);
        assert!(want["totals"]["flows"].as_u64().unwrap() > 0);
        for n in [1usize, 2, 4] {
            let d = Deployment::new(&format!("eq{n}"));
            let c = collect(&d, exports, judged_by, 8);
            let cv: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
            assert_eq!(cv["batches_already_stored"], 0);
            workers_to_the_end(&d, judged_by, n);
            let got = report(&d, None);
            assert_eq!(got["input"]["stream_messages_refused"], 0);
            assert_eq!(
                comparable(got),
                want,
                "{} with {n} workers",
                exports.display()
            );
        }
    }
    // The windows add up: the generated flows span 25 minutes, five windows of 5 minutes.
    let d = Deployment::new("win");
    collect(&d, &gen, &gen_args, 4);
    workers_to_the_end(&d, &gen_args, 2);
    let all = report(&d, None);
    let mut flows = 0;
    // 1,764,000,000 is a multiple of 300: the first window starts with the first flow.
    let start = 1_764_000_000u64;
    for k in 0..6 {
        let w = (start + 300 * k).to_string();
        flows += report(&d, Some(&w))["totals"]["flows"].as_u64().unwrap();
    }
    assert_eq!(flows, all["totals"]["flows"].as_u64().unwrap());
    let first_two = report(&d, Some(&format!("{start}..{}", start + 300)));
    assert!(first_two["totals"]["flows"].as_u64().unwrap() < flows);
}

#[test]
fn a_killed_collector_and_a_killed_worker_lose_nothing_and_count_nothing_twice() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 500, 200_000, 900);
    let want = single(&gen, &args);
    let d = Deployment::new("kill");
    // A collector killed part way, and another run over the same file: the batches the first
    // stored are stored once.
    let mut first = nospy()
        .args(collect_args(&d, &args, 8, &["--flows", s(&gen)]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has stored some batches (polled on the server), not all if it can be helped.
    let stream = format!("{}_FLOWS", d.name);
    rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(NATS).await.unwrap());
        let t0 = std::time::Instant::now();
        while t0.elapsed() < BOUND {
            if let Ok(mut s) = js.get_stream(&stream).await {
                if s.info().await.is_ok_and(|i| i.state.messages > 0) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let _ = first.kill();
    let o = first.wait_with_output().unwrap();
    eprintln!(
        "the first collector {}",
        if o.status.success() {
            "had finished when killed"
        } else {
            "was killed part way"
        }
    );
    let c = collect(&d, &gen, &args, 8);
    let cv: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
    eprintln!(
        "the second collector found {} batches already stored",
        cv["batches_already_stored"]
    );
    // A worker killed mid-stream (its partitions taken over once its leases lapse).
    let mut a = worker(&d, &args, "doomed", &["--flush", "200ms", "--window", "5m"]);
    // Killed once it holds every partition and has appended some parts.
    let mut said = String::new();
    {
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(a.stderr.take().unwrap()).lines();
        while said.matches("taken").count() < 8 {
            match lines.next() {
                Some(Ok(l)) => {
                    said.push_str(&l);
                    said.push('\n');
                }
                _ => break,
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        a.kill().unwrap();
        let _ = a.wait();
    }
    assert_eq!(said.matches("taken").count(), 8, "{said}");
    let rest = workers_to_the_end(&d, &args, 2);
    assert!(
        rest.iter().any(|e| e.contains("taken")),
        "the other workers took the partitions over: {rest:?}"
    );
    let got = comparable(report(&d, None));
    assert!(got == want, "{}", difference(&got, &want));
}

#[test]
fn a_message_that_is_not_a_batch_is_counted_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 50, 2_000, 300);
    let want = single(&gen, &args);
    let d = Deployment::new("bad");
    collect(&d, &gen, &args, 2);
    // Someone else publishes to a partition's subject.
    let subject = format!("{}.flows.1", d.name);
    rt().block_on(async {
        let c = async_nats::connect(NATS).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.publish(subject, "not a batch".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let said = workers_to_the_end(&d, &args, 1);
    assert!(
        said[0].contains("is not a flow batch (byte 0: not a flow batch"),
        "{said:?}"
    );
    let got = report(&d, None);
    assert_eq!(got["input"]["stream_messages_refused"], 1);
    assert_eq!(comparable(got), want);
}

/// An input run again is published only where the stream would store each of its batches once:
/// a file run again soon, by a collector that cuts batches alike, adds nothing; one begun by a
/// collector that cuts them otherwise (the same ids for other flows), one begun longer ago than
/// half the stream's deduplication window (ids forgotten), and a live input under a name used
/// before are refused (exit 2, saying why) before a batch is published.
#[test]
fn an_input_run_again_is_published_only_where_nothing_is_lost_or_counted_twice() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 40, 3_000, 120);
    let want = single(&gen, &args);
    let d = Deployment::new("again");
    let first: serde_json::Value =
        serde_json::from_str(&collect(&d, &gen, &args, 2).stdout).unwrap();
    assert_eq!(first["batches_already_stored"], 0, "{first}");
    let stored = || -> u64 {
        rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&d.url).await.unwrap());
            let mut s = js.get_stream(format!("{}_FLOWS", d.name)).await.unwrap();
            s.info().await.unwrap().state.messages
        })
    };
    let batches = stored();
    assert!(batches >= 2, "{batches} batches");
    // The same file again at once: every batch already stored.
    let again: serde_json::Value =
        serde_json::from_str(&collect(&d, &gen, &args, 2).stdout).unwrap();
    assert_eq!(again["batches_already_stored"], batches, "{again}");
    assert_eq!(stored(), batches);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cut = nospy_stream::collect::cut();
    let older = format!(r#"{{"cut":"NSB2 2048 items 262144 bytes","began_s":{now},"live":false}}"#);
    let stale = format!(r#"{{"cut":"{cut}","began_s":{},"live":false}}"#, now - 3600);
    d.set_state(&[
        ("source.older".to_string(), Some(older.as_str())),
        ("source.stale".to_string(), Some(stale.as_str())),
    ]);
    let refused = |source: &[&str], says: &[&str]| {
        let r = run(&strs(&collect_args(&d, &args, 2, source)));
        assert_eq!(r.code, 2, "{source:?}: {}", r.stderr);
        for s in says {
            assert!(
                r.stderr.contains(s),
                "{source:?} should say {s:?}: {}",
                r.stderr
            );
        }
    };
    refused(
        &["--flows", s(&gen), "--source", "older"],
        &[
            "input older was begun by a collector that cuts batches as \"NSB2 2048 items 262144 bytes\"",
            &format!("this one cuts them as {cut:?}"),
        ],
    );
    refused(
        &["--flows", s(&gen), "--source", "stale"],
        &["input stale was begun 36", "half of that (450 s)"],
    );
    // A live input named as one run before.
    let listen = |source: &'static str| {
        [
            "--listen",
            "udp:127.0.0.1:0",
            "--duration",
            "200ms",
            "--source",
            source,
        ]
    };
    assert_eq!(
        run(&strs(&collect_args(&d, &args, 2, &listen("live-a")))).code,
        0
    );
    refused(
        &listen("live-a"),
        &["input live-a was begun before", "live input"],
    );
    // A file's name taken by a live input, and the other way round.
    refused(&listen("older"), &["input older was begun before"]);
    refused(
        &["--flows", s(&gen), "--source", "live-a"],
        &["by a live collector"],
    );
    // Nothing the refused runs read was published: counted once.
    assert_eq!(stored(), batches);
    workers_to_the_end(&d, &args, 1);
    let got = comparable(report(&d, None));
    assert!(got == want, "{}", difference(&got, &want));
}

/// Collectors write a device's address as its number in the inventory's addresses: a
/// deployment has one inventory, and a collector or worker started with another says so and
/// stops before it writes or reads a batch (rather than having its batches refused).
#[test]
fn a_collector_or_worker_with_another_inventory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 20, 500, 60);
    let d = Deployment::new("otherinv");
    collect(&d, &gen, &args, 2);
    // The same devices, one address changed.
    let inv = inventory_of(&args);
    let text = std::fs::read_to_string(&inv).unwrap();
    let other = t.path().join("other.csv");
    std::fs::write(&other, text.replacen("10.1.0.3,", "10.9.0.3,", 1)).unwrap();
    let other_args: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == inv {
                s(&other).to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let collector = run(&strs(&collect_args(
        &d,
        &other_args,
        2,
        &["--flows", s(&gen), "--source", "again"],
    )));
    let w = worker(&d, &other_args, "w-other", &["--until-caught-up"]);
    let worker = wait_bounded(w, BOUND, "the worker with another inventory");
    for (who, r) in [("collector", collector), ("worker", worker)] {
        assert_eq!(r.code, 2, "{who}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("this deployment was set up with another inventory"),
            "{who}: {}",
            r.stderr
        );
    }
    // With the deployment's inventory, a worker counts everything, as one process does.
    let want = single(&gen, &args);
    workers_to_the_end(&d, &args, 1);
    assert_eq!(comparable(report(&d, None)), want);
}

#[test]
fn without_a_nats_server_or_with_bad_arguments_the_errors_say_what() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 5, 30, 60);
    let inv = s(&t.path().join("gen.csv")).to_string();
    // Nothing listens on port 1.
    let r = run(&[
        "collect",
        "--inventory",
        &inv,
        "--nats",
        "nats://127.0.0.1:1",
        "--flows",
        s(&gen),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nats://127.0.0.1:1"), "{}", r.stderr);
    let r = run(&[
        "collect",
        "--inventory",
        &inv,
        "--nats",
        NATS,
        "--stream",
        "lower.case",
        "--flows",
        s(&gen),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stream name"), "{}", r.stderr);
    let mut a = vec!["monitor", "--nats", NATS, "--partitions", "9-3"];
    a.extend(strs(&args));
    let r = run(&a);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("9-3"), "{}", r.stderr);
    let r = run(&[
        "monitor",
        "report",
        "--nats",
        NATS,
        "--stream",
        "NOSUCHDEPLOYMENT",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// A NATS server of this test's own (Debian's `nats-server`, JetStream on, file storage in a
/// directory that outlives its restarts).
struct OwnNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnNats {
    fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = OwnNats {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.run();
        n
    }

    fn run(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        self.child = Some(child);
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_restart_of_the_nats_server_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let mut server = OwnNats::start();
    let d = Deployment::on(&server.url(), "restart");
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated(t.path(), 500, 200_000, 900);
    let want = single(&gen, &args);
    collect(&d, &gen, &args, 8);
    let mut w = worker(
        &d,
        &args,
        "survivor",
        &["--until-caught-up", "--flush", "200ms"],
    );
    // Once it holds every partition and is judging: the server is killed and started again on
    // the same storage.
    let stderr = w.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if l.contains("taken") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    for _ in 0..8 {
        rx.recv_timeout(BOUND)
            .expect("the worker takes the partitions");
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    std::thread::sleep(Duration::from_secs(1));
    server.run();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = w.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > BOUND {
            let _ = w.kill();
            panic!("the worker did not finish after the restart");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = reader.join().unwrap();
    eprintln!("{said}");
    assert!(status.success(), "{said}");
    assert_eq!(comparable(report(&d, None)), want, "{said}");
}

/// With the monitor's key, each closed window's violations are signed, per device, and
/// appended to the log; handed on again (as when a worker dies after signing and before
/// recording it), the same window signs the same statements: duplicates, not new entries.
#[test]
fn each_window_s_evidence_is_appended_once() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated_in_order(t.path(), 40, 3_000, 900, true);
    let want = single(&gen, &args);
    let with_violations = want["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["violations"].as_u64().unwrap() > 0)
        .count();
    assert!(with_violations > 0);
    let (log, _, vkey) = new_log(t.path(), "evidence.nospy.example/log");
    let key = t.path().join("monitor.key");
    new_key(&key, "monitor.operator.example");
    let d = Deployment::new("ev");
    collect(&d, &gen, &args, 4);
    let run_workers = || {
        let mut all = String::new();
        let kids: Vec<_> = (0..2)
            .map(|i| {
                worker(
                    &d,
                    &args,
                    &format!("e{i}"),
                    &[
                        "--until-caught-up",
                        "--window",
                        "5m",
                        "--evidence-key",
                        s(&key),
                        "--log",
                        s(&log),
                    ],
                )
            })
            .collect();
        for (i, k) in kids.into_iter().enumerate() {
            let r = wait_bounded(k, BOUND, &format!("worker {i}"));
            assert_eq!(r.code, 0, "{}", r.stderr);
            all.push_str(&r.stderr);
        }
        all
    };
    let said = run_workers();
    let appended: Vec<(usize, usize)> = said
        .lines()
        .filter(|l| l.contains("evidence statements appended"))
        .map(|l| {
            let n = l
                .split(" evidence statements appended")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap();
            let dups = l.split('(').nth(1).unwrap().split(' ').next().unwrap();
            (n.parse().unwrap(), dups.parse().unwrap())
        })
        .collect();
    let statements: usize = appended.iter().map(|a| a.0).sum();
    assert!(statements >= with_violations, "{said}");
    assert!(appended.iter().all(|a| a.1 == 0), "{said}");
    let audit = ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]);
    let a: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(
        a["entries"].as_u64().unwrap() as usize,
        statements,
        "{said}"
    );
    // Every window handed on again: the same statements, all already in the log.
    d.reopen_windows(4);
    let again = run_workers();
    let dups: usize = again
        .lines()
        .filter(|l| l.contains("evidence statements appended"))
        .map(|l| {
            l.split('(')
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(dups, statements, "{again}");
    let audit = ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]);
    let a: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(
        a["entries"].as_u64().unwrap() as usize,
        statements,
        "{said}\n----\n{again}"
    );
}

/// A worker run to the stream's end hands on the windows of partitions no worker holds (let go
/// by a worker that stopped, or that gave up its share as another joined), not only those of
/// its own fair share: found when a second worker ended without ever holding the partitions the
/// first had just let go to it, and their last windows were never signed.
#[test]
fn a_worker_that_ends_leaves_no_window_behind() {
    let t = tempfile::tempdir().unwrap();
    let (gen, args) = generated_in_order(t.path(), 40, 3_000, 900, true);
    let want = single(&gen, &args);
    let (log, _, vkey) = new_log(t.path(), "orphans.nospy.example/log");
    let key = t.path().join("monitor.key");
    new_key(&key, "monitor.operator.example");
    let d = Deployment::new("orph");
    collect(&d, &gen, &args, 4);
    let evidence = [
        "--window",
        "5m",
        "--evidence-key",
        s(&key),
        "--log",
        s(&log),
    ];
    // A counts everything and stops (SIGTERM) with the last windows not yet due: it appends
    // what it counted and frees its leases, every last window still open.
    let a = worker(
        &d,
        &args,
        "a",
        &[&evidence[..], &["--flush", "100ms"]].concat(),
    );
    let t0 = std::time::Instant::now();
    let counted = || {
        let r = run(&[
            "monitor", "report", "--nats", &d.url, "--stream", &d.name, "--json",
        ]);
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .is_ok_and(|v| v["totals"]["flows"] == want["totals"]["flows"])
    };
    while !counted() {
        assert!(t0.elapsed() < BOUND, "worker a did not count the stream");
        std::thread::sleep(Duration::from_millis(50));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let ra = wait_bounded(a, BOUND, "worker a");
    assert_eq!(ra.code, 0, "{}", ra.stderr);
    // Another worker seems alive, so the next one's fair share is half the partitions.
    d.set_state(&[("worker.ghost".into(), Some("ghost"))]);
    let to_the_end = |id: &str| {
        let w = worker(
            &d,
            &args,
            id,
            &[&evidence[..], &["--until-caught-up"]].concat(),
        );
        let r = wait_bounded(w, BOUND, &format!("worker {id}"));
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    let rb = to_the_end("b");
    assert!(
        rb.stderr.contains("taken to hand on its windows"),
        "b took the partitions it had left to the ghost at the end: {}",
        rb.stderr
    );
    let entries = |what: &str| {
        let audit = ok(&["log", "audit", s(&log), "--key", &vkey, "--json"]);
        let a: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
        let n = a["entries"].as_u64().unwrap();
        assert!(n > 0, "{what}");
        n
    };
    let signed = entries(&format!("{}\n{}", ra.stderr, rb.stderr));
    // Every window handed on again by one worker alone (the others' announcements gone, so
    // that it holds every partition): nothing new, so nothing was left.
    d.reopen_windows(4);
    let gone: Vec<_> = ["a", "b", "ghost"]
        .iter()
        .map(|w| (format!("worker.{w}"), None))
        .collect();
    d.set_state(&gone);
    let rc = to_the_end("c");
    assert_eq!(
        entries(&rc.stderr),
        signed,
        "windows left unsigned by a and b:\n{}\n{}\n{}",
        ra.stderr,
        rb.stderr,
        rc.stderr
    );
}

/// softflowd exporting a capture's flows live to `nospy collect --listen`, one worker, and the
/// report: what one `nospy monitor --flows` says of softflowd's exports of the same capture.
#[test]
fn a_real_exporter_s_live_flows_through_nats_give_the_single_process_report() {
    let t = tempfile::tempdir().unwrap();
    let capture = "mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap";
    let judged_by = setup(t.path());
    let want = single(&softflowd_exports(t.path(), capture, "10"), &judged_by);
    let d = Deployment::new("live");
    let args = collect_args(
        &d,
        &judged_by,
        4,
        &["--listen", "udp:127.0.0.1:0", "--json"],
    );
    let live = start_live(&args);
    softflowd_send(t.path(), capture, "10", live.port);
    let (code, v, err) = live.stop();
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert!(v["flows"].as_u64().unwrap() > 0, "{v:#}");
    workers_to_the_end(&d, &judged_by, 1);
    let got = comparable(report(&d, None));
    assert!(got == want, "{}", difference(&got, &want));
}

/// A worker's evidence states each violation as one process's does: the same flows, reasons
/// and names their peers stood for (the parts carry those names; without them a row a DNS-name
/// rule could allow would be left unsigned or signed without its names). The UT plug's capture,
/// read by a collector, judged against its logged release's manifest, which has name rules.
/// `pcap` collected into a deployment of its own (two partitions) and judged by one worker,
/// with `judged_by`, in one window holding the whole capture (so that its rows are one
/// process's rows), until everything is counted: the deployment and the worker's run (exit 0,
/// asserted).
fn capture_through_one_worker(tag: &str, pcap: &Path, judged_by: &[String]) -> (Deployment, Run) {
    let d = Deployment::new(tag);
    let c = collect_args(&d, judged_by, 2, &["--pcap", s(pcap), "--json"]);
    ok_within(&strs(&c), BOUND);
    let k = worker(
        &d,
        judged_by,
        "w0",
        &["--until-caught-up", "--window", "1d"],
    );
    let r = wait_bounded(k, BOUND, "worker");
    assert_eq!(r.code, 0, "{}", r.stderr);
    (d, r)
}

#[test]
fn a_worker_s_evidence_states_what_one_process_states() {
    let t = tempfile::tempdir().unwrap();
    let UtJudged {
        log,
        pcap,
        judged_by,
        ..
    } = ut_judged_once(t.path(), &["--json"]);
    let (_, one) = evidence_entry(&log, 1);
    assert!(
        one["flows"][0].get("names").is_some(),
        "one process records the peer's names: {one:#}"
    );
    let (_d, r) = capture_through_one_worker("names", &pcap, &judged_by);
    assert!(!r.stderr.contains("not signed"), "{}", r.stderr);
    let (_, nats) = evidence_entry(&log, 2);
    assert_eq!(nats["device"], one["device"]);
    assert_eq!(nats["flows"], one["flows"], "{nats:#}\n{one:#}");
}

/// A capture whose DNS answers tie 1.5 MB of names to the violation's peer, more than a log
/// entry or a part can carry: the worker's parts keep of them what evidence can state (every
/// name a manifest names, the first others that fit 1 KiB and one more, and how many there
/// were), so its parts fit in one message each, and its evidence states the same rows as one
/// process's (before, a part went without the names, and the rows needing them unsigned); the
/// report's counts are one process's.
#[test]
fn a_worker_bounds_a_row_s_names_as_one_process_does() {
    let t = tempfile::tempdir().unwrap();
    let UtJudged { log, judged_by, .. } = ut_judged_once(t.path(), &[]);
    let (hostile, v) = ut_names_on_its_violation(t.path(), &judged_by, 1_500_000);
    let index = v["evidence"]["statements"][0]["index"].as_u64().unwrap();
    let (_, one) = evidence_entry(&log, index);
    let row = &one["flows"][0];
    assert_eq!(row["peer"], "1.1.1.1");
    assert!(row["names_left_out"].as_u64().unwrap() > 1000, "{row:#}");
    assert!(row["names"]
        .as_array()
        .unwrap()
        .contains(&"pool.ntp.org".into()));
    let (d, r) = capture_through_one_worker("bounded", &hostile, &judged_by);
    assert!(!r.stderr.contains("not signed"), "{}", r.stderr);
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(st["chunked_parts"], 0, "{st}");
    let (_, nats) = evidence_entry(&log, index + 1);
    assert_eq!(nats["device"], one["device"]);
    assert_eq!(nats["flows"], one["flows"], "{nats:#}\n{one:#}");
    let got = report(&d, None);
    for k in ["totals", "unknown_device_flows", "devices", "violations"] {
        assert_eq!(got[k], v[k], "{k}");
    }
}

/// An inventory of one device, d1 at 10.0.0.1, and its `manifest` (TOML), written in `dir`:
/// the arguments that judge by them.
fn one_device_judged_by(dir: &Path, manifest: &str) -> Vec<String> {
    std::fs::write(
        dir.join("inv.csv"),
        "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
         d1,V,M,access,5g,site-0,false,10.0.0.1,,1,1\n",
    )
    .unwrap();
    std::fs::write(dir.join("m.toml"), manifest).unwrap();
    [
        "--inventory",
        s(&dir.join("inv.csv")),
        "--manifest",
        s(&dir.join("m.toml")),
    ]
    .map(String::from)
    .to_vec()
}

/// A vendor's manifest can make a window's part larger than the engine's messages: name rules
/// over nested port ranges give each port its own set of names that could have allowed a flow
/// there, and its device's unanswered flows to one port after another make every set one of
/// the window's (here 150 rules, 2.2 MB of sets). Such a part goes as chunks; before, its
/// append failed again and again until the worker gave up, and no worker counted the partition
/// any more. The report is one process's.
#[test]
fn a_part_larger_than_a_message_goes_as_chunks() {
    use std::net::Ipv4Addr;
    let t = tempfile::tempdir().unwrap();
    let rules = 150u16;
    let mut m = String::from(
        "[device]\nvendor = \"V\"\nmodel = \"M\"\n[capabilities]\nvendor_remote_access = \"none\"\n",
    );
    for i in 0..rules {
        m += &format!(
            "[[allow]]\ndirection = \"from-device\"\npeer = \"h{i:03}.{}.{}.{}.v.example\"\nprotocol = \"tcp\"\nports = \"{}-{}\"\n",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            1000 + i,
            2000 - i
        );
    }
    let judged_by = one_device_judged_by(t.path(), &m);
    // No answer ever reached the device: a flow only a name could allow is unattributable,
    // with the names that could have allowed it (port 1000 + k: k + 1 of them).
    let (device, peer): (Ipv4Addr, Ipv4Addr) = ([10, 0, 0, 1].into(), [198, 51, 100, 77].into());
    let frames = |from_port: u16, t0: u32| -> Vec<_> {
        (0..rules)
            .map(|k| {
                let syn = tcp(from_port + k, 1000 + k, 0x02);
                (t0 + u32::from(k), 0, ipv4_frame(device, peer, 6, &syn))
            })
            .collect()
    };
    let (first, second) = (frames(40_000, 1_764_000_000), frames(50_000, 1_764_001_000));
    let write = |name: &str, frames: &[(u32, u32, Vec<u8>)]| {
        let p = t.path().join(name);
        std::fs::write(&p, classic_pcap(frames)).unwrap();
        p
    };
    let pcap = write("ports.pcap", &first);
    let again = write("again.pcap", &second);
    let both = write("both.pcap", &[first, second].concat());
    let one_process = |pcap: &Path| -> serde_json::Value {
        let mut args = vec!["monitor", "--pcap", s(pcap), "--json"];
        args.extend(strs(&judged_by));
        let one = run(&args);
        assert_eq!(one.code, 0, "{}", one.stderr);
        serde_json::from_str(&one.stdout).unwrap()
    };
    let one = one_process(&pcap);
    let rows = one["unattributable"].as_array().unwrap();
    assert_eq!(rows.len(), usize::from(rules), "{one:#}");
    let names: usize = rows
        .iter()
        .map(|r| {
            r["could_be"]
                .as_array()
                .map_or(0, |n| n.iter().map(|n| n.as_str().unwrap().len()).sum())
        })
        .sum();
    assert!(names > 2_000_000, "{names} bytes of names");
    let (d, r) = capture_through_one_worker("chunks", &pcap, &judged_by);
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(st["chunked_parts"].as_u64().unwrap() >= 1, "{st}");
    let got = comparable(report(&d, None));
    let want = comparable(one);
    assert!(got == want, "{}", difference(&got, &want));

    // A worker that died between two chunks of its next part leaves the first alone at the
    // end of each chain (as if it had counted far). Readers pass it over; the next worker reads
    // from the last part appended whole, and appends after it: one process's report of both.
    d.abandon_chunk(0);
    d.abandon_chunk(1);
    let c = collect_args(&d, &judged_by, 2, &["--pcap", s(&again), "--json"]);
    ok_within(&strs(&c), BOUND);
    let k = worker(
        &d,
        &judged_by,
        "w1",
        &["--until-caught-up", "--window", "1d"],
    );
    let r = wait_bounded(k, BOUND, "worker");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = comparable(report(&d, None));
    let want = comparable(one_process(&both));
    assert!(got == want, "{}", difference(&got, &want));
}

/// A worker taking over a partition where another's parts end has not read the DNS answers
/// before: it reads them again from the answers stream, and a flow that an answer it missed
/// allows (its name answered before, another name after) is allowed, as one process allows
/// it. Where that stream no longer keeps the answer, the flow is unattributable for it, never
/// a violation (evidence against a device that kept its manifest), and it says so.
#[test]
fn a_worker_taking_a_partition_over_reads_the_answers_before_and_frames_no_device_without_them() {
    use std::net::Ipv4Addr;
    let t = tempfile::tempdir().unwrap();
    let judged_by = one_device_judged_by(
        t.path(),
        "[device]\nvendor = \"V\"\nmodel = \"M\"\n[capabilities]\nvendor_remote_access = \"none\"\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"updates.v.example\"\nprotocol = \"tcp\"\nports = \"443\"\n",
    );
    let (device, resolver): (Ipv4Addr, Ipv4Addr) = ([10, 0, 0, 1].into(), [192, 0, 2, 53].into());
    let (updates, other): (Ipv4Addr, Ipv4Addr) =
        ([203, 0, 113, 7].into(), [198, 51, 100, 1].into());
    let t0 = 1_764_000_000u32;
    // Each answer to its own port: one flow each, in one capture as in two.
    let answer = |s: u32, name: &str, addr, port| {
        let dns = dns_answer(1, name, addr);
        (s, 0, ipv4_frame(resolver, device, 17, &udp(53, port, &dns)))
    };
    let syn = |s: u32, to: Ipv4Addr, port: u16| {
        [
            (s, 0, ipv4_frame(device, to, 6, &tcp(40_001, port, 0x02))),
            (s, 1000, ipv4_frame(to, device, 6, &tcp(port, 40_001, 0x12))),
        ]
    };
    // A: the answer naming updates.v.example, and a flow to carry the stream on.
    let mut a = vec![answer(t0, "updates.v.example", updates, 40_000)];
    a.extend(syn(t0 + 1, other, 80));
    // B, a minute on: another name answered, then the flow the first answer allows.
    let mut b = vec![answer(t0 + 60, "other.example", other, 40_002)];
    b.extend(syn(t0 + 61, updates, 443));
    let write = |name: &str, frames: &[(u32, u32, Vec<u8>)]| {
        let p = t.path().join(name);
        std::fs::write(&p, classic_pcap(frames)).unwrap();
        p
    };
    let (pa, pb) = (write("a.pcap", &a), write("b.pcap", &b));
    let both = write("both.pcap", &[a, b].concat());

    let mut args = vec!["monitor", "--pcap", s(&both), "--json"];
    args.extend(strs(&judged_by));
    let one = run(&args);
    assert_eq!(one.code, 1, "{}", one.stderr);
    let one: serde_json::Value = serde_json::from_str(&one.stdout).unwrap();
    let peers = |v: &serde_json::Value, kind: &str| -> Vec<String> {
        v[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{}:{}", r["peer"].as_str().unwrap(), r["port"]))
            .collect()
    };
    // The answers' own packets are DNS the manifest does not allow; the flow to port 80 too.
    let want = ["192.0.2.53:53", "198.51.100.1:80"];
    assert_eq!(peers(&one, "violations"), want, "{one:#}");
    assert!(peers(&one, "unattributable").is_empty(), "{one:#}");

    // One partition: A collected and counted by w1, then B collected and counted by w2, which
    // reads A's answer again from the answers stream: one process's report.
    let takeover = |tag: &str, between: &dyn Fn(&Deployment)| {
        let d = Deployment::new(tag);
        let collect_then_count = |pcap: &Path, id: &str| {
            let c = collect_args(&d, &judged_by, 1, &["--pcap", s(pcap), "--json"]);
            ok_within(&strs(&c), BOUND);
            let k = worker(&d, &judged_by, id, &["--until-caught-up"]);
            let r = wait_bounded(k, BOUND, id);
            assert_eq!(r.code, 0, "{}", r.stderr);
            r
        };
        collect_then_count(&pa, "w1");
        between(&d);
        let w2 = collect_then_count(&pb, "w2");
        let st: serde_json::Value = serde_json::from_str(&w2.stdout).unwrap();
        (st, w2.stderr, report(&d, None))
    };
    // Someone else's message on the answers stream is said and skipped.
    let (st, stderr, got) = takeover("takeover", &|d: &Deployment| {
        d.publish("dns", b"not a batch")
    });
    assert_eq!(st["partitions_taken_with_answers_unread"], 0, "{st}");
    assert_eq!(st["dns_messages_refused"], 1, "{st}");
    assert!(
        stderr.contains("DNS answers stream: message 2 is not a batch"),
        "{stderr}"
    );
    // A's answer and B's (B's is read again from its partition: twice changes nothing).
    assert_eq!(st["dns_answers_read_again"], 2, "{st}");
    assert!(
        stderr.contains("2 DNS answers read again from the answers stream"),
        "{stderr}"
    );
    assert_eq!(comparable(got.clone()), comparable(one.clone()), "{got:#}");

    // The answers stream no longer keeps A's answer (as once its retention has passed), or was
    // set up after A was collected (as by a collector of this version after older ones): no
    // device is framed by it, the flow it allowed is unattributable, and the worker says so.
    for delete in [false, true] {
        let (st, stderr, got) = takeover("forgot", &|d: &Deployment| d.purge("DNS", delete));
        assert_eq!(st["partitions_taken_with_answers_unread"], 1, "{st}");
        assert_eq!(st["dns_answers_read_again"], 1, "{st}");
        assert!(
            stderr.contains("the answers stream no longer kept every DNS answer before"),
            "{stderr}"
        );
        assert!(
            stderr.contains("partition 0: the DNS answers before flow sequence"),
            "{stderr}"
        );
        assert_eq!(peers(&got, "violations"), want, "{got:#}");
        assert_eq!(
            peers(&got, "unattributable"),
            ["203.0.113.7:443"],
            "{got:#}"
        );
    }
}

/// Where each partition's flows and chain end, as a worker nearing the end of a run asks again
/// and again: the sequences, and the flows a chain's last part counted, from the engine
/// without the messages; a chain ending in a chunk of a part not appended whole (or a part
/// whose writer did not say) has no count, and the short-lived consumer asking is gone after.
#[test]
fn the_engine_says_where_each_partition_ends_without_sending_its_messages() {
    use bytes::Bytes;
    use nospy_stream::transport::{Sealed, To, Transport};
    use nospy_stream::wire::{chunk_part, encode_part, Part};
    let d = Deployment::new("ENDS");
    rt().block_on(async {
        let t = d.transport(4).await;
        assert_eq!(t.ends().await.unwrap(), Default::default());
        // Flows in partitions 0 and 2 (what they hold does not matter here).
        let batch = |p: u32, n: u32| Sealed {
            to: To::Partition(p),
            id: format!("t.{p}.{n}"),
            bytes: Bytes::from(vec![n as u8; 300_000]),
        };
        t.publish(&[batch(0, 1), batch(2, 1), batch(0, 2)])
            .await
            .unwrap();
        let part = |after: u64, last: u64| Part {
            inventory: [0; 32],
            partition: 0,
            after,
            last,
            watermark_ns: 5,
            window_secs: 300,
            refused: 0,
            windows: Vec::new(),
        };
        // Partition 0's chain: a part counting to flow sequence 1, then one counting to 3.
        let first = t
            .extend_chain(0, 0, Bytes::from(encode_part(&part(0, 1))), Some(1))
            .await
            .unwrap()
            .unwrap();
        let ends = t.ends().await.unwrap();
        assert_eq!(ends.flows, [(0, 3), (2, 2)].into());
        assert_eq!(ends.chains, [(0, (first, Some(1)))].into());
        let second = t
            .extend_chain(0, first, Bytes::from(encode_part(&part(1, 3))), Some(3))
            .await
            .unwrap()
            .unwrap();
        // Partition 2's: the first chunk of a part of three, the others never appended.
        let big = Part {
            partition: 2,
            windows: vec![(
                0,
                nospy_monitor::Delta {
                    name_sets: vec![Vec::new().into(), vec!["n".repeat(200); 3_000].into()],
                    ..Default::default()
                },
            )],
            ..part(0, 2)
        };
        let chunks = chunk_part(encode_part(&big), 2, 0, 2, 5, 250_000);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let chunk = t
            .extend_chain(2, 0, Bytes::from(chunks[0].clone()), None)
            .await
            .unwrap()
            .unwrap();
        let ends = t.ends().await.unwrap();
        assert_eq!(ends.flows, [(0, 3), (2, 2)].into());
        assert_eq!(
            ends.chains,
            [(0, (second, Some(3))), (2, (chunk, None))].into()
        );
        // The consumers that asked are gone.
        for s in ["{name}_FLOWS", "{name}_ROWS"] {
            assert_eq!(d.consumers(s).await, 0, "{s}");
        }
    });
}

/// The state store lists the keys under a prefix with their revisions, from the keys' last
/// messages alone: a deleted or purged key is left out, a key of another prefix too (whole
/// tokens or not), and the consumer that asked is gone after.
#[test]
fn the_state_store_lists_the_keys_under_a_prefix_with_their_revisions() {
    use bytes::Bytes;
    use nospy_stream::transport::Transport;
    let d = Deployment::new("KEYS");
    rt().block_on(async {
        let t = d.transport(2).await;
        assert_eq!(t.keys("worker.").await.unwrap(), Vec::new());
        let a = t.put("worker.a", Bytes::from_static(b"a")).await.unwrap();
        let b = t.put("worker.b", Bytes::from_static(b"b")).await.unwrap();
        let gone = t.put("worker.c", Bytes::from_static(b"c")).await.unwrap();
        t.put("workers.x", Bytes::from_static(b"x")).await.unwrap();
        t.put("input.one", Bytes::from_static(b"{}")).await.unwrap();
        // A key written again: its last revision.
        let a2 = t.put("worker.a", Bytes::from_static(b"a")).await.unwrap();
        assert!(a2 > a && a2 > gone);
        let js = async_nats::jetstream::new(async_nats::connect(&d.url).await.unwrap());
        let kv = js.get_key_value(format!("{}_STATE", d.name)).await.unwrap();
        kv.delete("worker.c").await.unwrap();
        t.put("input.two", Bytes::from_static(b"{}")).await.unwrap();
        kv.purge("input.two").await.unwrap();
        assert_eq!(
            t.keys("worker.").await.unwrap(),
            vec![("worker.a".to_string(), a2), ("worker.b".to_string(), b)]
        );
        // The revisions are those `get` gives.
        assert_eq!(t.get("worker.b").await.unwrap().unwrap().1, b);
        let names = |keys: Vec<(String, u64)>| -> Vec<String> {
            keys.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(names(t.keys("input.").await.unwrap()), ["input.one"]);
        // A prefix that is not whole tokens.
        let work = names(t.keys("work").await.unwrap());
        assert_eq!(work, ["worker.a", "worker.b", "workers.x"]);
        assert_eq!(d.consumers("KV_{name}_STATE").await, 0);
    });
}
