//! `nospy bench monitor`: flow conformance throughput on generated, realistic inputs.
//!
//! A fleet of --devices devices of --devices/10 models, each model's manifest with its share of
//! --rules rules (IP prefixes with services, and every tenth a DNS name); IPFIX export messages
//! as an exporter sends them (a template, then data sets of 30 records in 1,400-byte messages),
//! from which --records records are decoded and judged on one core; and a pcap of --packets
//! packets (TCP conversations with handshakes, UDP exchanges; Ethernet) read and judged with
//! the whole fleet and with one device, beside `tcpdump -r` with the equivalent one-device
//! filter, measured in the same run on the same file.

use crate::print_json;
use anyhow::{Context, Result};
use nospy_flow::netflow::Collector;
use nospy_flow::source::{read_traffic_from, Sink};
use nospy_flow::{DnsSeen, Flow};
use nospy_inventory::{Device, Function, Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_monitor::Monitor;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
// A small seeded generator, so that runs are comparable.
use nospy_testkit::Rng;

fn device_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

/// Rule `r` of model `m`: its peer /24, protocol and port.
fn rule(m: usize, r: usize, per: usize) -> (Ipv4Addr, u8, u16) {
    let k = m * per + r;
    let net = Ipv4Addr::new(172, 16 + ((k >> 16) & 15) as u8, (k >> 8) as u8, 0);
    let (proto, port) = match r % 3 {
        0 => (6, 443),
        1 => (17, 123),
        _ => (6, 8000 + (r % 100) as u16),
    };
    // Spread the /24s so that models do not share them.
    (
        Ipv4Addr::from(u32::from(net) ^ ((k as u32 & 0xff) << 8)),
        proto,
        port,
    )
}

struct Fleet {
    inventory: Inventory,
    manifests: Vec<Option<Arc<Manifest>>>,
    models: usize,
    per: usize,
}

fn fleet(devices: usize, rules: usize) -> Result<Fleet> {
    let models = (devices / 10).max(1);
    let per = (rules / models).max(1);
    let mut manifests = Vec::with_capacity(models);
    for m in 0..models {
        let mut t = format!(
            "[device]\nvendor = \"V{}\"\nmodel = \"m{m}\"\n[capabilities]\nvendor_remote_access = \"none\"\n",
            m % 7
        );
        for r in 0..per {
            let (net, proto, port) = rule(m, r, per);
            let peer = if r % 10 == 9 {
                format!("svc{r}.m{m}.vendor.example")
            } else {
                format!("{net}/24")
            };
            let dir = if r % 4 == 3 {
                "to-device"
            } else {
                "from-device"
            };
            let proto = if proto == 6 { "tcp" } else { "udp" };
            t.push_str(&format!(
                "[[allow]]\ndirection = \"{dir}\"\npeer = \"{peer}\"\nprotocol = \"{proto}\"\nports = \"{port}\"\n"
            ));
        }
        manifests.push(Arc::new(Manifest::from_toml(&t)?));
    }
    let inventory = Inventory {
        devices: (0..devices)
            .map(|i| Device {
                device: format!("dev-{i:05}"),
                vendor: format!("V{}", (i % models) % 7),
                model: format!("m{}", i % models),
                function: Function::Access,
                technology: "5g".into(),
                site: format!("site-{}", i / 100),
                sensitive: false,
                addresses: vec![IpAddr::V4(device_addr(i))],
                firmware_sha256: None,
                weight: 1.0,
                replacement_cost: 1.0,
            })
            .collect(),
    };
    let manifests = (0..devices)
        .map(|i| Some(manifests[i % models].clone()))
        .collect();
    Ok(Fleet {
        inventory,
        manifests,
        models,
        per,
    })
}

/// A flow of a random device: 80% to a peer and service its manifest allows (most in an IP
/// rule; some to a named peer), 20% to somewhere it does not.
fn flow_of(f: &Fleet, rng: &mut Rng) -> (Ipv4Addr, Ipv4Addr, u16, u16, u8) {
    let i = rng.below(f.inventory.devices.len() as u64) as usize;
    flow_of_device(f, i, rng)
}

/// A flow of device `i`: eight in ten allowed by its manifest, the rest to a port it does not
/// declare.
fn flow_of_device(f: &Fleet, i: usize, rng: &mut Rng) -> (Ipv4Addr, Ipv4Addr, u16, u16, u8) {
    let m = i % f.models;
    let dev = device_addr(i);
    if rng.below(10) < 8 {
        let r = rng.below(f.per as u64) as usize;
        let (net, proto, port) = rule(m, r, f.per);
        let peer = Ipv4Addr::from(u32::from(net) | (1 + rng.below(250)) as u32);
        let eph = 32_768 + rng.below(28_000) as u16;
        if r % 4 == 3 {
            (peer, dev, port, eph, proto)
        } else {
            (dev, peer, eph, port, proto)
        }
    } else {
        let peer = Ipv4Addr::from(0xc633_6400u32 | rng.below(256) as u32);
        (
            dev,
            peer,
            40_000 + rng.below(20_000) as u16,
            1 + rng.below(1023) as u16,
            6,
        )
    }
}

/// IPFIX messages holding `records` records: a template set first, data sets of 30 records.
fn ipfix_messages(f: &Fleet, records: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    const FIELDS: [(u16, u16); 9] = [
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
    let header = |body: &[u8]| {
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    let mut t = vec![0, 2];
    t.extend_from_slice(&((8 + 4 * FIELDS.len()) as u16).to_be_bytes());
    t.extend_from_slice(&256u16.to_be_bytes());
    t.extend_from_slice(&(FIELDS.len() as u16).to_be_bytes());
    for (id, len) in FIELDS {
        t.extend_from_slice(&id.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    let mut out = vec![header(&t)];
    let mut left = records;
    let mut ms = 1_700_000_000_000u64;
    while left > 0 {
        let n = left.min(30);
        let mut set = vec![1, 0];
        set.extend_from_slice(&((4 + n * 45) as u16).to_be_bytes());
        for _ in 0..n {
            let (s, d, sp, dp, p) = flow_of(f, rng);
            set.extend_from_slice(&s.octets());
            set.extend_from_slice(&d.octets());
            set.extend_from_slice(&sp.to_be_bytes());
            set.extend_from_slice(&dp.to_be_bytes());
            set.push(p);
            set.extend_from_slice(&(1 + rng.below(40)).to_be_bytes());
            set.extend_from_slice(&(60 + rng.below(60_000)).to_be_bytes());
            set.extend_from_slice(&ms.to_be_bytes());
            set.extend_from_slice(&(ms + rng.below(30_000)).to_be_bytes());
            ms += 1;
        }
        out.push(header(&set));
        left -= n;
    }
    out
}

/// Writes a pcap of about `packets` packets: TCP conversations (SYN, SYN-ACK, ACK, two data
/// packets, FIN) and UDP exchanges (query, answer), Ethernet framed; of random devices of the
/// fleet, or all of device `only`.
fn write_pcap(
    path: &Path,
    f: &Fleet,
    packets: usize,
    only: Option<usize>,
    rng: &mut Rng,
) -> Result<usize> {
    let mut out = Vec::with_capacity(packets * 100 + 24);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0]);
    for v in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut n = 0;
    let mut us = 0u64;
    let mut packet = |out: &mut Vec<u8>,
                      s: Ipv4Addr,
                      d: Ipv4Addr,
                      sp: u16,
                      dp: u16,
                      proto: u8,
                      flags: u8,
                      payload: usize| {
        let l4 = if proto == 6 { 20 } else { 8 };
        let ip_len = 20 + l4 + payload;
        let mut fr = Vec::with_capacity(14 + ip_len);
        fr.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        fr.extend_from_slice(&[0x45, 0]);
        fr.extend_from_slice(&(ip_len as u16).to_be_bytes());
        fr.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        fr.extend_from_slice(&s.octets());
        fr.extend_from_slice(&d.octets());
        fr.extend_from_slice(&sp.to_be_bytes());
        fr.extend_from_slice(&dp.to_be_bytes());
        if proto == 6 {
            fr.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            fr.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            fr.extend_from_slice(&[0, 0]);
        }
        fr.resize(14 + ip_len, 0x5a);
        us += 7;
        out.extend_from_slice(&((1_700_000_000 + us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        out.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        out.extend_from_slice(&fr);
    };
    while n < packets {
        let (s, d, sp, dp, proto) = match only {
            Some(i) => flow_of_device(f, i, rng),
            None => flow_of(f, rng),
        };
        if proto == 6 {
            for (fwd, flags, len) in [
                (true, 0x02, 0),
                (false, 0x12, 0),
                (true, 0x10, 0),
                (true, 0x18, 40),
                (false, 0x18, 60),
                (true, 0x11, 0),
            ] {
                if fwd {
                    packet(&mut out, s, d, sp, dp, 6, flags, len);
                } else {
                    packet(&mut out, d, s, dp, sp, 6, flags, len);
                }
            }
            n += 6;
        } else {
            packet(&mut out, s, d, sp, dp, 17, 0, 48);
            packet(&mut out, d, s, dp, sp, 17, 0, 48);
            n += 2;
        }
    }
    std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// How many times each pcap measurement is taken (in turns; the best kept).
const PCAP_ROUNDS: usize = 5;

/// Counts what a sink is given, for the decode-only pass.
struct Count(u64);

impl Sink for Count {
    fn flow(&mut self, _: &Flow) {
        self.0 += 1;
    }
    fn dns(&mut self, _: &DnsSeen) {}
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let r = f()?;
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    Ok((best, last.expect("at least one run")))
}

/// Decodes IPFIX messages (as one exporter's) into `sink`, a message at a time.
fn decode(msgs: &[Vec<u8>], sink: &mut dyn Sink) -> Result<()> {
    let mut c = Collector::new();
    let mut out = Vec::with_capacity(30);
    for m in msgs {
        out.clear();
        c.read("bench", m, &mut out)?;
        sink.flows(&out);
    }
    Ok(())
}

/// The single process: a monitor of the fleet judges the decoded messages.
fn judge(f: &Fleet, op: &OperatorConfig, msgs: &[Vec<u8>]) -> Result<nospy_monitor::Report> {
    let mut mon = Monitor::new(&f.inventory, &f.manifests, op, None)?;
    decode(msgs, &mut mon)?;
    Ok(mon.finish())
}

/// The single process as a worker is when flows arrive: a monitor of the fleet built, then
/// judging `msgs` timed, each of `at_once` threads on its own monitor, started together. The
/// best of `runs`: seconds until the last thread's report, and the CPU seconds a thread spent
/// judging (the process's over the runs, per run and thread), and one report.
fn judge_built(
    f: &Fleet,
    op: &OperatorConfig,
    msgs: &[Vec<u8>],
    runs: usize,
    at_once: usize,
) -> Result<(f64, f64, nospy_monitor::Report)> {
    let at_once = at_once.max(1);
    let mut best = f64::MAX;
    let mut cpu = 0.0;
    let mut report = None;
    for _ in 0..runs.max(1) {
        let monitors = (0..at_once)
            .map(|_| Monitor::new(&f.inventory, &f.manifests, op, None))
            .collect::<Result<Vec<_>, _>>()?;
        let go = std::sync::Barrier::new(at_once);
        let started = process_cpu_s();
        let judge = |mut mon: Monitor| -> Result<(f64, nospy_monitor::Report)> {
            go.wait();
            let t = Instant::now();
            decode(msgs, &mut mon)?;
            let r = mon.finish();
            Ok((t.elapsed().as_secs_f64(), r))
        };
        let (secs, r) = std::thread::scope(|s| -> Result<(f64, nospy_monitor::Report)> {
            let mut monitors = monitors.into_iter();
            let mine = monitors.next().expect("at least one monitor");
            let others: Vec<_> = monitors.map(|m| s.spawn(move || judge(m))).collect();
            let (mut secs, r) = judge(mine)?;
            for o in others {
                let (other, _) = o
                    .join()
                    .map_err(|_| anyhow::anyhow!("a single process panicked"))??;
                secs = secs.max(other);
            }
            Ok((secs, r))
        })?;
        cpu += process_cpu_s() - started;
        best = best.min(secs);
        report = Some(r);
    }
    let per = (runs.max(1) * at_once) as f64;
    Ok((best, cpu / per, report.expect("at least one run")))
}

/// Runs the benchmark.
pub fn run(
    devices: usize,
    rules: usize,
    records: usize,
    packets: usize,
    work: &Path,
    json: bool,
) -> Result<()> {
    anyhow::ensure!(
        devices >= 1 && records >= 1 && packets >= 1,
        "--devices, --records and --packets must be at least 1"
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    let say = |m: &str| {
        if !json {
            eprintln!("{m}");
        }
    };
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    say(&format!(
        "generating a fleet of {devices} devices and {rules} rules ..."
    ));
    let f = fleet(devices, rules)?;
    let op = OperatorConfig::default();
    let t = Instant::now();
    drop(Monitor::new(&f.inventory, &f.manifests, &op, None)?);
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;

    // IPFIX: decode and judge on one core.
    say(&format!("generating {records} IPFIX records ..."));
    let msgs = ipfix_messages(&f, records, &mut rng);
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let (decode_s, decoded) = best_of(3, || {
        let mut c = Collector::new();
        let mut out = Vec::with_capacity(30);
        let mut n = 0u64;
        for m in &msgs {
            out.clear();
            c.read("bench", m, &mut out)?;
            n += out.len() as u64;
        }
        Ok(n)
    })?;
    anyhow::ensure!(
        decoded == records as u64,
        "decoded {decoded} of {records} records"
    );
    let (judge_s, report) = best_of(3, || judge(&f, &op, &msgs))?;
    let violations: u64 = report.devices.iter().map(|d| d.violations).sum();
    let ipfix_per_s = records as f64 / judge_s;

    // pcap: nospy with one device beside tcpdump with that device's filter, on the same file of
    // the whole fleet's traffic; and the cost of a flow with the whole fleet against one device,
    // each judging the same amount of its own traffic (the fleet on that file, the one device on
    // a file of only its traffic, as many packets).
    let pcap = work.join("bench-monitor.pcap");
    let own = work.join("bench-monitor-one-device.pcap");
    say(&format!("writing pcaps of {packets} packets ..."));
    let written = write_pcap(&pcap, &f, packets, None, &mut rng)?;
    let written_own = write_pcap(&own, &f, packets, Some(0), &mut rng)?;
    let one = Fleet {
        inventory: Inventory {
            devices: vec![f.inventory.devices[0].clone()],
        },
        manifests: vec![f.manifests[0].clone()],
        models: f.models,
        per: f.per,
    };
    // As `nospy monitor` reads a capture: streamed from the file. Seconds, and flows judged.
    let nospy_pcap = |fl: &Fleet, file: &Path| -> Result<(f64, u64)> {
        let t = Instant::now();
        let data = std::fs::File::open(file)?;
        let mut mon = Monitor::new(&fl.inventory, &fl.manifests, &op, None)?;
        read_traffic_from(data, 0, &mut mon, &mut |_, _| {})?;
        let flows = mon.finish().flows;
        Ok((t.elapsed().as_secs_f64(), flows))
    };
    let read_only = || -> Result<f64> {
        let t = Instant::now();
        let data = std::fs::File::open(&pcap)?;
        let mut c = Count(0);
        read_traffic_from(data, 0, &mut c, &mut |_, _| {})?;
        Ok(t.elapsed().as_secs_f64())
    };
    let filter = format!("host {}", device_addr(0));
    let tcpdump = || -> Result<f64> {
        let t = Instant::now();
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args(["-w", "/dev/null", &filter])
            .output()
            .context("running tcpdump (apt-get install tcpdump)")?;
        anyhow::ensure!(
            out.status.success(),
            "tcpdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed().as_secs_f64())
    };
    // Each is measured PCAP_ROUNDS times, in turns, so that a burst of other work on a shared
    // machine falls on all of them alike (the ratios compare figures taken side by side); the
    // best of each is kept.
    let mut best = [f64::MAX; 5];
    let mut flows = [0u64; 3];
    for _ in 0..PCAP_ROUNDS {
        let (one_s, one_flows) = nospy_pcap(&one, &pcap)?;
        let (all_s, all_flows) = nospy_pcap(&f, &pcap)?;
        let (own_s, own_flows) = nospy_pcap(&one, &own)?;
        let times = [one_s, all_s, own_s, tcpdump()?, read_only()?];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
        flows = [one_flows, all_flows, own_flows];
    }
    let [flows_1, flows_all, flows_own] = flows;
    let pcap_1 = written as f64 / best[0];
    let pcap_all = written as f64 / best[1];
    let pcap_own = written_own as f64 / best[2];
    let tcpdump_s = best[3];
    let read_only_s = best[4];
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&own);
    let tcpdump_per_s = written as f64 / tcpdump_s;
    let report = json!({
        "devices": devices,
        "rules": f.models * f.per,
        "manifests": f.models,
        "compile_ms": (compile_ms * 10.0).round() / 10.0,
        "ipfix_records": records,
        "ipfix_bytes": bytes,
        "ipfix_records_per_s_per_core": ipfix_per_s.round(),
        "ipfix_decode_only_per_s": (records as f64 / decode_s).round(),
        "ipfix_violations": violations,
        "pcap_packets": written,
        "pcap_packets_per_s": pcap_1.round(),
        "pcap_flows_judged_one_device": flows_1,
        "pcap_packets_per_s_10k_devices": pcap_all.round(),
        "pcap_flows_judged_10k_devices": flows_all,
        "pcap_packets_per_s_one_device_own_traffic": pcap_own.round(),
        "pcap_flows_judged_one_device_own_traffic": flows_own,
        "pcap_read_only_packets_per_s": (written as f64 / read_only_s).round(),
        "tcpdump_packets_per_s": tcpdump_per_s.round(),
        "pcap_ratio": ((pcap_1 / tcpdump_per_s) * 1000.0).round() / 1000.0,
        "pcap_ratio_10k_devices": ((pcap_all / tcpdump_per_s) * 1000.0).round() / 1000.0,
        "slowdown_10k_vs_1_device": ((1.0 - pcap_all / pcap_own) * 1000.0).round() / 1000.0,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        print_json(&report)?;
    } else {
        println!(
            "compiled {} manifests ({} rules) for {devices} devices in {compile_ms:.0} ms",
            f.models,
            f.models * f.per
        );
        println!("IPFIX decoded and judged {:>12.0} records/s on one core ({records} records, {violations} violations; decoding alone {:.0}/s)", ipfix_per_s, records as f64 / decode_s);
        println!(
            "pcap, one device        {:>12.0} packets/s  (ratio to tcpdump {:.2}; {flows_1} of its flows judged)",
            pcap_1,
            pcap_1 / tcpdump_per_s
        );
        println!("pcap, {devices} devices {:>12.0} packets/s  ({flows_all} flows judged; {:.0}% slower per packet than one device judging as many of its own: {:.0} packets/s, {flows_own} flows)", pcap_all, (1.0 - pcap_all / pcap_own) * 100.0, pcap_own);
        println!(
            "pcap, reading only      {:>12.0} packets/s",
            written as f64 / read_only_s
        );
        println!("reference: tcpdump -r   {:>12.0} packets/s  (`tcpdump -n -r FILE -w /dev/null '{filter}'`, same file, same run)", tcpdump_per_s);
    }
    Ok(())
}

/// `nospy bench monitor --nats URL`: on the same generated fleet and IPFIX records, in one run:
/// the single-process rate (decode and judge on one core); the raw JetStream rate for the same
/// batches (publish them all, then read them all back, nothing judged); and end to end, a
/// collector as `nospy collect` runs one (decoding and attributing on its thread, publishing
/// on its outbox's) with 1 and then 2 workers (judging and appending parts), from the
/// collector's start to every partition counted, the workers already holding their partitions
/// (as deployed, and as the single process is timed from its monitor built), each the best of
/// three runs as the single process is. Workers are threads of this process, each with its own
/// monitor and connection, as separate processes would be. The merged report is checked against
/// the single process's totals each time. And, for what two cores give here: two single
/// processes at once (two threads judging the same records), whose rate is the most any split
/// of the work over two cores can reach on this machine without a transport. Where the NATS
/// server runs on this machine, its CPU seconds too, and from the three stages' CPU per record
/// the most end to end can reach here (`ratio_ceiling`).
pub fn run_nats(
    url: &str,
    devices: usize,
    rules: usize,
    records: usize,
    partitions: u32,
    json: bool,
) -> Result<()> {
    use nospy_stream::collect::{publish_all, Publisher};
    use nospy_stream::nats::{Nats, Options};
    use nospy_stream::transport::{PartitionReader, Transport};
    anyhow::ensure!(
        devices >= 1 && records >= 1,
        "--devices and --records must be at least 1"
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean little (use --release)");
    }
    let say = |m: &str| {
        if !json {
            eprintln!("{m}");
        }
    };
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    say(&format!(
        "generating {devices} devices, {rules} rules, {records} IPFIX records ..."
    ));
    let f = fleet(devices, rules)?;
    let op = OperatorConfig::default();
    let msgs = ipfix_messages(&f, records, &mut rng);
    // Single process, its monitor built first (as end to end, the workers are running when
    // the collector starts).
    let (single_s, single_cpu, single) = judge_built(&f, &op, &msgs, 3, 1)?;
    let single_per_s = records as f64 / single_s;
    // Two at once: where two cores are not two of one (a VM's vCPUs sharing a host's core,
    // memory bandwidth), this is below twice the single rate.
    let (pair_s, _, _) = judge_built(&f, &op, &msgs, 3, 2)?;
    let pair_per_s = 2.0 * records as f64 / pair_s;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tag = std::process::id();
    let cleanup = |name: String| {
        let url = url.to_string();
        let _ = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| {
                rt.block_on(async move {
                    if let Ok(c) = async_nats::connect(url).await {
                        let js = async_nats::jetstream::new(c);
                        for s in ["FLOWS", "DNS", "ROWS"] {
                            let _ = js.delete_stream(format!("{name}_{s}")).await;
                        }
                        let _ = js.delete_stream(format!("KV_{name}_STATE")).await;
                    }
                })
            });
    };
    // The batches a collector makes of these records (decoded and attributed once here, to
    // time the transport alone on exactly them).
    let batches = {
        let numbering = Arc::new(nospy_stream::numbering::Numbering::new(&f.inventory));
        let mut p = Publisher::new(&f.inventory, numbering, partitions, "bench");
        decode(&msgs, &mut p)?;
        p.flush();
        p.take_sealed()
    };
    let batch_bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    say(&format!(
        "{} batches, {} bytes; raw JetStream publish and read back ...",
        batches.len(),
        batch_bytes
    ));
    let raw_name = format!("BENCHRAW{tag}");
    let raw_s = rt.block_on(async {
        let nats = Nats::connect(url, &raw_name, Options::default()).await?;
        nats.setup(partitions).await?;
        let t = Instant::now();
        publish_all(&nats, &batches, std::time::Duration::from_secs(60)).await?;
        let mut read = 0usize;
        for p in 0..partitions {
            let want = batches
                .iter()
                .filter(|b| b.to == nospy_stream::transport::To::Partition(p))
                .count();
            let mut r = nats.read(p, 0).await?;
            let mut got = 0;
            while got < want {
                let m = r.next(256, std::time::Duration::from_secs(10)).await?;
                anyhow::ensure!(!m.is_empty(), "partition {p}: {got} of {want} read back");
                got += m.len();
            }
            read += got;
        }
        anyhow::ensure!(read == batches.len(), "read {read} of {}", batches.len());
        Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64())
    });
    cleanup(raw_name);
    let raw_s = raw_s?;
    let raw_per_s = records as f64 / raw_s;
    // End to end, with 1 and 2 workers.
    let mut e2e = Vec::new();
    let mut alone = (0.0, 0.0);
    let mut alone_cpu = (0.0, 0.0);
    let mut alone_server_cpu = None;
    // The NATS server's CPU is read where it runs on this machine.
    let server = local_server(url);
    for (workers, apart) in [(1usize, false), (2, false), (1, true)] {
        say(&format!(
            "{} a collector and {workers} worker(s) ...",
            if apart {
                "one after the other:"
            } else {
                "end to end:"
            }
        ));
        // The best of three (as the single process), each in a deployment of its own; the
        // collector and the worker apart once.
        let mut best: Option<Run> = None;
        for run in 0..if apart { 1 } else { 3 } {
            let name = format!(
                "BENCHE2E{tag}W{workers}R{run}{}",
                if apart { "A" } else { "" }
            );
            let r = end_to_end(
                url,
                &name,
                &f,
                &msgs,
                partitions,
                workers,
                apart,
                server.as_deref(),
            );
            cleanup(name);
            let r = r?;
            if best.as_ref().is_none_or(|b| r.secs < b.secs) {
                best = Some(r);
            }
        }
        let Run {
            secs,
            collected,
            cpu,
            server_cpu,
            report: merged,
        } = best.expect("at least one run");
        anyhow::ensure!(
            merged.flows == single.flows
                && merged.violations.len() == single.violations.len()
                && merged.devices == single.devices,
            "{workers} workers: the merged report differs from the single process's ({} flows, {} violation rows; single {} and {})",
            merged.flows,
            merged.violations.len(),
            single.flows,
            single.violations.len()
        );
        if apart {
            alone = (
                records as f64 / collected,
                records as f64 / (secs - collected).max(1e-9),
            );
            alone_cpu = cpu;
            alone_server_cpu = server_cpu;
        } else {
            e2e.push(records as f64 / secs);
        }
    }
    let ratio = |x: f64| (x / single_per_s * 1000.0).round() / 1000.0;
    let per_million = |cpu: f64| (cpu / records as f64 * 1e6 * 1000.0).round() / 1000.0;
    // The slowest of the three stages, each measured alone: the transport alone (publish and
    // read back), the collector alone, one worker alone.
    let stages = [
        ("jetstream", raw_per_s),
        ("collector (decode, attribute, encode, publish)", alone.0),
        ("worker (read, decode, judge, append parts)", alone.1),
    ];
    let bottleneck = stages
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("", |s| s.0);
    // What the whole pipeline spends per record (collector and worker alone, and the server
    // over both), and so the most end to end could reach here were every core always busy, each
    // giving what two single processes at once get of two cores (a VM's are less than two).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let shared = (pair_per_s / (2.0 * single_per_s)).min(1.0);
    let pipeline_cpu = alone_server_cpu.map(|s| alone_cpu.0 + alone_cpu.1 + s);
    let ceiling = pipeline_cpu
        .filter(|&c| c > 0.0)
        .map(|c| ratio(cores * shared * records as f64 / c));
    let v = json!({
        "devices": devices,
        "rules": f.models * f.per,
        "records": records,
        "partitions": partitions,
        "batch_bytes": batch_bytes,
        "batches": batches.len(),
        "single_process_records_per_s": single_per_s.round(),
        "two_single_processes_records_per_s": pair_per_s.round(),
        "ratio_two_single_processes": ratio(pair_per_s),
        "jetstream_raw_records_per_s": raw_per_s.round(),
        "end_to_end_1_worker_records_per_s": e2e[0].round(),
        "end_to_end_2_workers_records_per_s": e2e[1].round(),
        "ratio_1_worker": ratio(e2e[0]),
        "ratio_2_workers": ratio(e2e[1]),
        "ratio_jetstream_raw": ratio(raw_per_s),
        "collector_alone_records_per_s": alone.0.round(),
        "worker_alone_records_per_s": alone.1.round(),
        "single_process_cpu_s_per_million_records": per_million(single_cpu),
        "collector_cpu_s_per_million_records": per_million(alone_cpu.0),
        "worker_cpu_s_per_million_records": per_million(alone_cpu.1),
        "server_cpu_s_per_million_records": alone_server_cpu.map(per_million),
        "pipeline_cpu_s_per_million_records": pipeline_cpu.map(per_million),
        "cores": cores,
        "ratio_ceiling": ceiling,
        "bottleneck": bottleneck,
        "debug_build": cfg!(debug_assertions),
    });
    if json {
        print_json(&v)?;
    } else {
        println!("single process (decode and judge, one core) {single_per_s:>12.0} records/s");
        println!(
            "two single processes at once (two cores)    {pair_per_s:>12.0} records/s  ({:.2} of single: what two cores give here)",
            ratio(pair_per_s)
        );
        println!(
            "JetStream alone (publish, read back)        {raw_per_s:>12.0} records/s  ({:.2} of single)",
            ratio(raw_per_s)
        );
        for (w, r) in [1, 2].iter().zip(&e2e) {
            println!(
                "end to end, collector and {w} worker(s)      {r:>12.0} records/s  ({:.2} of single)",
                ratio(*r)
            );
        }
        println!(
            "one after the other: the collector alone {:.0} records/s, then one worker alone {:.0} records/s",
            alone.0, alone.1
        );
        println!(
            "CPU seconds per million records: single process {:.3}, collector {:.3}, worker {:.3}",
            per_million(single_cpu),
            per_million(alone_cpu.0),
            per_million(alone_cpu.1)
        );
        match (alone_server_cpu, pipeline_cpu, ceiling) {
            (Some(server), Some(all), Some(ceiling)) => println!(
                "the NATS server {:.3}: the pipeline {:.3}, so on {cores} cores (each as two single processes find it) end to end reaches at most {ceiling:.2} of single",
                per_million(server),
                per_million(all)
            ),
            _ => println!("the NATS server's CPU: not measured (it does not run on this machine, or its process cannot be seen)"),
        }
        println!("bottleneck: {bottleneck}");
    }
    Ok(())
}

/// Waits until `workers` bench workers of deployment `name` hold every partition between
/// them, each at least its share (the partitions over the workers, rounded down); fails after
/// a minute, or once `gave_up` says a worker ended.
fn settled(
    url: &str,
    name: &str,
    partitions: u32,
    workers: usize,
    gave_up: &dyn Fn() -> bool,
) -> Result<()> {
    use nospy_stream::nats::{Nats, Options};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let nats = Nats::connect(url, name, Options::default()).await?;
        let started = Instant::now();
        let share = partitions as usize / workers.max(1);
        loop {
            let mut held = vec![0usize; workers];
            for who in nospy_stream::worker::holders(&nats, partitions).await? {
                if let Some(w) = who
                    .as_deref()
                    .and_then(|w| w.strip_prefix("bench-"))
                    .and_then(|w| w.parse::<usize>().ok())
                    .filter(|&w| w < workers)
                {
                    held[w] += 1;
                }
            }
            if held.iter().sum::<usize>() == partitions as usize && held.iter().all(|&n| n >= share)
            {
                return Ok(());
            }
            anyhow::ensure!(!gave_up(), "a worker ended before the collector started");
            anyhow::ensure!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the {workers} workers did not share the {partitions} partitions out within a minute (held: {held:?})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
}

/// The port of `url` (4222 when it gives none) when its host is a loopback address.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 4222,
    };
    (host == "localhost" || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())).then_some(port)
}

/// The CPU time this process has used, seconds (user and system, from `/proc/self/stat`; 0
/// where there is none). The NATS server's is not in it.
fn process_cpu_s() -> f64 {
    crate::load::stat_cpu(Path::new("/proc/self/stat")).map_or(0.0, |(_, cpu)| cpu)
}

/// What one end-to-end run measured.
struct Run {
    /// Seconds from the start to every partition counted.
    secs: f64,
    /// Seconds from the start to the collector's end.
    collected: f64,
    /// This process's CPU seconds until the collector's end and after it.
    cpu: (f64, f64),
    /// The NATS server's CPU seconds from the start to the end, when it runs here.
    server_cpu: Option<f64>,
    /// The partitions' parts merged.
    report: nospy_monitor::Report,
}

/// A collector thread publishing `msgs` and `workers` worker threads until every partition is
/// counted (with `one_after_the_other`, the collector first and then the workers, so that the
/// CPU seconds are the collector's and then the workers' alone); `server`, the NATS server's
/// `/proc` stat file when it runs here ([`local_server`]).
#[allow(clippy::too_many_arguments)]
fn end_to_end(
    url: &str,
    name: &str,
    f: &Fleet,
    msgs: &[Vec<u8>],
    partitions: u32,
    workers: usize,
    one_after_the_other: bool,
    server: Option<&Path>,
) -> Result<Run> {
    use nospy_stream::collect::Publisher;
    use nospy_stream::nats::{Nats, Options};
    use nospy_stream::transport::Transport;
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let digest = nospy_stream::inventory_digest(&f.inventory);
    let numbering = Arc::new(nospy_stream::numbering::Numbering::new(&f.inventory));
    rt()?.block_on(async {
        let nats = Nats::connect(url, name, Options::default()).await?;
        nats.setup(partitions).await?;
        let setup = nospy_stream::report::Setup {
            inventory: digest,
            window_secs: 300,
            devices: f
                .inventory
                .devices
                .iter()
                .zip(&f.manifests)
                .map(|(d, m)| (d.device.clone(), m.is_some(), serde_json::Value::Null, None))
                .collect(),
        };
        nats.put("setup", setup.to_bytes()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let server_cpu = || server.and_then(crate::load::stat_cpu).map(|(_, c)| c);
    let trace = std::env::var_os("NOSPY_BENCH_TRACE").is_some();
    let trace_from = Instant::now();
    let numbering = &numbering;
    let op = OperatorConfig::default();
    let op = &op;
    // Set when the workers are not to wait for the collector any more.
    let stop = &std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Run> {
        let worker = |w: usize| {
            s.spawn(move || -> Result<()> {
                let rt = nospy_stream::worker::runtime()?;
                let mut mon = Monitor::new(&f.inventory, &f.manifests, op, None)?;
                rt.block_on(async {
                    let nats = Nats::connect(url, name, Options::default()).await?;
                    let cfg = nospy_stream::worker::Config {
                        id: format!("bench-{w}"),
                        partitions: (0..partitions).collect(),
                        window_secs: 300,
                        flush: std::time::Duration::from_secs(1),
                        until_caught_up: true,
                        inventory: digest,
                        numbering: numbering.clone(),
                        close_after: None,
                    };
                    let st = nospy_stream::worker::run(
                        &nats,
                        &mut mon,
                        &cfg,
                        stop,
                        &mut |m| {
                            if trace {
                                let at = trace_from.elapsed().as_secs_f64();
                                eprintln!("{at:.3} s worker {w}: {m}")
                            }
                        },
                        &mut |_, _, _| Ok(()),
                    )
                    .await?;
                    if trace {
                        eprintln!("worker {w}: {st:?}");
                    }
                    Ok(())
                })
            })
        };
        // Workers that would wait for flows for ever stopped, a worker's own error said
        // before `e`.
        let stopped = |handles: Vec<std::thread::ScopedJoinHandle<'_, Result<()>>>,
                       e: anyhow::Error|
         -> Result<Run> {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            }
            Err(e)
        };
        // The workers first, as deployed: running, each holding its share of the partitions,
        // when flows arrive (one after the other, they start once the collector is done).
        let mut handles = Vec::new();
        if !one_after_the_other {
            handles = (0..workers).map(worker).collect();
            let gave_up = || handles.iter().any(|h| h.is_finished());
            if let Err(e) = settled(url, name, partitions, workers, &gave_up) {
                return stopped(handles, e);
            }
        }
        let server_start = server_cpu();
        let t = Instant::now();
        let cpu_start = process_cpu_s();
        // The collector as `nospy collect` runs: decoding on this thread, an outbox thread
        // publishing what it sealed meanwhile.
        let collect = || -> Result<()> {
            let started = nospy_stream::outbox::Outbox::start(
                url,
                name,
                partitions,
                Options::default(),
                numbering.clone(),
                nospy_stream::collect::Input {
                    source: "bench".into(),
                    live: false,
                },
            )?;
            let outbox = started.outbox;
            let mut sink = outbox.sink(Publisher::new(
                &f.inventory,
                numbering.clone(),
                started.partitions,
                "bench",
            ));
            let mut c = Collector::new();
            let mut out = Vec::with_capacity(30);
            for m in msgs {
                out.clear();
                c.read("bench", m, &mut out)?;
                nospy_flow::source::Sink::flows(&mut sink, &out);
            }
            sink.finish()?;
            outbox.put("input.bench".into(), bytes::Bytes::from_static(b"{}"))?;
            outbox.finish()?;
            Ok(())
        };
        if let Err(e) = collect() {
            return stopped(handles, e);
        }
        let collected = t.elapsed().as_secs_f64();
        let cpu_collected = process_cpu_s();
        if one_after_the_other {
            handles = (0..workers).map(worker).collect();
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        let judged = t.elapsed().as_secs_f64();
        let cpu_end = process_cpu_s();
        let server_end = server_cpu();
        let merged = rt()?.block_on(async {
            let nats = Nats::connect(url, name, Options::default()).await?;
            if trace {
                // What the engine stores of each: the batches, and the parts.
                let js = async_nats::jetstream::new(async_nats::connect(url).await?);
                let mut stored = Vec::new();
                for s in ["FLOWS", "ROWS"] {
                    let mut st = js.get_stream(format!("{name}_{s}")).await?;
                    let state = st.info().await?.state.clone();
                    stored.push(format!(
                        "{s} {} messages, {} bytes",
                        state.messages, state.bytes
                    ));
                }
                eprintln!(
                    "collector done at {collected:.2} s, workers at {judged:.2} s; stored: {}",
                    stored.join("; ")
                );
            }
            nospy_stream::report::merge(&nats, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        })?;
        Ok(Run {
            secs: judged,
            collected,
            cpu: (cpu_collected - cpu_start, cpu_end - cpu_collected),
            server_cpu: server_start.zip(server_end).map(|(a, b)| b - a),
            report: merged.report,
        })
    })
}

/// The `/proc` stat file of the process listening on `url`'s port, when `url` names a
/// loopback address and this machine lets it be found (`/proc/net/tcp` and `tcp6` give the
/// listening socket, the processes' descriptors its holder); `None` otherwise.
fn local_server(url: &str) -> Option<std::path::PathBuf> {
    let port = loopback_port(url)?;
    // Sockets listening (state 0A) on the port: their inodes.
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let on_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if on_port && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id().to_string();
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            {
                return Some(p.path().join("stat"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::loopback_port;

    /// Only a loopback server's port is looked for on this machine.
    #[test]
    fn a_server_is_looked_for_here_only_at_a_loopback_address() {
        assert_eq!(loopback_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(loopback_port("nats://localhost"), Some(4222));
        assert_eq!(loopback_port("nats://user:pw@[::1]:5000/"), Some(5000));
        assert_eq!(loopback_port("127.0.0.2:4223"), Some(4223));
        assert_eq!(loopback_port("nats://10.0.0.1:4222"), None);
        assert_eq!(loopback_port("nats://nats.example:4222"), None);
        assert_eq!(loopback_port("nats://127.0.0.1:port"), None);
        assert_eq!(loopback_port("nats://[::1"), None);
    }
}
