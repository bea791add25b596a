//! Helpers for driving the real `nospy` binary.
#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

pub mod flows;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn nospy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nospy"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw: Vec<u8>,
}

pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

pub fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut c = nospy();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("spawn nospy");
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        raw: stdout,
    }
}

/// Waits for `child` (its stdout and stderr piped) at most `limit`; past it, kills it and
/// fails the test with what it printed (a guard against a hang, not a measurement).
pub fn wait_bounded(mut child: std::process::Child, limit: std::time::Duration, what: &str) -> Run {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {}s:\n{}\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        raw: stdout,
    }
}

/// Runs with a bound on its time (see [`wait_bounded`]) and requires exit status 0.
pub fn ok_within(args: &[&str], limit: std::time::Duration) -> Run {
    let child = nospy()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nospy");
    let r = wait_bounded(child, limit, &format!("nospy {args:?}"));
    assert_eq!(
        r.code, 0,
        "nospy {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Runs and requires exit status 0.
pub fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(
        r.code, 0,
        "nospy {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Generates a signing key named `name` into `file`; returns its verifier key.
pub fn new_key(file: &Path, name: &str) -> String {
    ok(&["key", "generate", "--name", name, "--out", s(file)])
        .stdout
        .trim()
        .to_string()
}

/// Creates a key and an empty log in `dir`; returns (log dir, key file, verifier key).
pub fn new_log(dir: &Path, origin: &str) -> (PathBuf, PathBuf, String) {
    let key = dir.join("log.key");
    let vkey = new_key(&key, origin);
    let log = dir.join("log");
    ok(&["log", "init", s(&log), "--origin", origin, "--key", s(&key)]);
    (log, key, vkey)
}

/// Every file under `dir`, as relative paths with their contents, sorted.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Starts `nospy serve` on a free loopback port; returns the child and its URL
/// (`http://127.0.0.1:N`), read from what it prints.
pub fn serve(dir: &Path, config: &Path) -> (std::process::Child, String) {
    serve_with(dir, config, &[])
}

/// [`serve`] with more arguments.
pub fn serve_with(dir: &Path, config: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = nospy()
        .args([
            "serve",
            "--dir",
            s(dir),
            "--config",
            s(config),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = said_after(&mut child, "nospy serve: listening on ");
    (child, url)
}

/// Reads `child`'s standard error (piped) until a line starting with `prefix`; returns the rest
/// of that line, and keeps draining the pipe so that the child never blocks on it.
pub fn said_after(child: &mut std::process::Child, prefix: &str) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let rest = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "exited before saying {prefix:?}"
        );
        if let Some(a) = line.trim().strip_prefix(prefix) {
            break a.to_string();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    rest
}

/// Writes `dir/serve.toml` admitting one vendor (its verifier key) as the only submitter.
pub fn serve_config(dir: &Path, vendor_vkey: &str) -> PathBuf {
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[submitter]]\nrole = \"vendor\"\nkey = \"{}\"\n",
            vendor_vkey.trim()
        ),
    )
    .unwrap();
    cfg
}

/// Loads `html` in headless Chromium and returns its DOM after load and its standard error.
pub fn chromium_dom(html: &Path, profile: &Path) -> (String, String) {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (apt-get install chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The entry of a JSON report's `devices` list with this `device` id.
pub fn device<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == id)
        .unwrap()
}

/// Reads `nospy demo`'s standard error until it says where it serves; keeps draining it after.
pub fn served_at(child: &mut std::process::Child) -> std::net::SocketAddr {
    let said = said_after(child, "nospy demo: serving on http://");
    said.split(';').next().unwrap().parse().unwrap()
}

/// Writes an agreement trusting `vendor_vkey` for `vendor`, with no witness or evaluator quorum
/// (monitoring takes the manifest from the vendor's logged release, admitted or not).
pub fn monitoring_agreement(t: &Path, log_vkey: &str, vendor: &str, vendor_vkey: &str) -> PathBuf {
    let p = t.join("agreement.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"monitoring\"\n[log]\norigin = \"log.example.org/nospy\"\nkey = \"{log_vkey}\"\n\
             [witnesses]\nquorum = 0\nmax_age = \"24h\"\nkeys = []\n\
             [[vendor]]\nname = \"{vendor}\"\nkeys = [\"{vendor_vkey}\"]\n\
             [evaluators]\nquorum = 0\n\
             [manifest]\nvendor_remote_access = [\"none\", \"operator-initiated\", \"vendor-initiated\"]\n"
        ),
    )
    .unwrap();
    p
}

/// The UT plug's release (its manifest imported from the MUD profile) signed and logged; an
/// inventory naming the plug by its firmware digest only (no --manifest files); the monitor's
/// key. Returns (inventory, agreement, monitor key, firmware digest, log dir, vendor vkey, monitor vkey).
pub fn logged_world(t: &Path) -> (PathBuf, PathBuf, PathBuf, String, PathBuf, String, String) {
    let (log, _, log_vkey) = new_log(t, "log.example.org/nospy");
    let vendor_key = t.join("vendor.key");
    let vendor_vkey = new_key(&vendor_key, "release.ut.example");
    let monitor_key = t.join("monitor.key");
    let monitor_vkey = new_key(&monitor_key, "monitor.operator.example");
    let m = t.join("ut.toml");
    ok(&[
        "manifest",
        "import-mud",
        s(&flows::net("mud/mudscope_ut-tplink-plugMud.json")),
        "--out",
        s(&m),
    ]);
    let fw = t.join("fw.bin");
    std::fs::write(&fw, b"ut plug firmware 1.0\n").unwrap();
    let digest = ok(&[
        "release",
        "sign",
        "--key",
        s(&vendor_key),
        "--artifact",
        s(&fw),
        "--product",
        "ut-tplink-plug",
        "--version",
        "1.0",
        "--source-commit",
        "abc123",
        "--manifest",
        s(&m),
        "--out",
        s(&t.join("release.json")),
        "--json",
    ]);
    let digest: serde_json::Value = serde_json::from_str(&digest.stdout).unwrap();
    let digest = digest["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["log", "add", s(&log), s(&t.join("release.json"))]);
    let inv = t.join("inventory.csv");
    std::fs::write(
        &inv,
        format!(
            "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
             ut-plug,SomeVendor,some-model,other,wifi,ut-lab,false,192.168.32.2,{digest},1,30\n\
             no-digest,SomeVendor,some-model,other,wifi,ut-lab,false,192.168.32.99,,1,30\n"
        ),
    )
    .unwrap();
    let agreement = monitoring_agreement(t, &log_vkey, "ut-tplink-plug.com", &vendor_vkey);
    (
        inv,
        agreement,
        monitor_key,
        digest,
        log,
        vendor_vkey,
        monitor_vkey,
    )
}

/// Log entry `index` of `log` as an evidence statement, and its predicate.
pub fn evidence_entry(log: &Path, index: u64) -> (nospy_statement::Statement, serde_json::Value) {
    let r = ok(&["log", "entry", s(log), &index.to_string()]);
    let env = nospy_statement::dsse::Envelope::parse(r.stdout.as_bytes()).unwrap();
    let st = nospy_statement::Statement::parse(&env.payload).unwrap();
    assert_eq!(st.predicate_type, nospy_statement::predicate::EVIDENCE_V2);
    let p = st.predicate.clone();
    (st, p)
}

/// `pcap` (any capture tcpdump reads) as a classic pcap with, before its first packet, a DNS
/// answer (from 192.0.2.53 to 192.0.2.99, neither a device) for each of `answers`.
pub fn with_dns_answers(pcap: &Path, answers: &[(std::net::Ipv4Addr, String)], out: &Path) {
    let classic = out.with_extension("classic.pcap");
    let st = std::process::Command::new("tcpdump")
        .args(["-r", s(pcap), "-w", s(&classic)])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("tcpdump (apt-get install tcpdump)");
    assert!(st.success());
    let original = std::fs::read(&classic).unwrap();
    // Little-endian microsecond pcap of Ethernet frames, as tcpdump writes it here.
    assert_eq!(&original[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(&original[20..24], &[1, 0, 0, 0]);
    let first_s = u32::from_le_bytes(original[24..28].try_into().unwrap());
    let (server, client) = ([192, 0, 2, 53].into(), [192, 0, 2, 99].into());
    let frames: Vec<(u32, u32, Vec<u8>)> = answers
        .iter()
        .enumerate()
        .map(|(i, (peer, name))| {
            let dns = dns_answer(i as u16, name, *peer);
            let frame = ipv4_frame(server, client, 17, &udp(53, 54321, &dns));
            (first_s - 1, i as u32, frame)
        })
        .collect();
    let mut w = classic_pcap(&frames);
    w.extend_from_slice(&original[24..]);
    std::fs::write(out, w).unwrap();
}

/// A classic little-endian microsecond pcap of Ethernet `frames`, each with its time (seconds
/// and microseconds).
pub fn classic_pcap(frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut w = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    w.extend_from_slice(&[0; 8]);
    w.extend_from_slice(&65535u32.to_le_bytes());
    w.extend_from_slice(&1u32.to_le_bytes());
    for (secs, usecs, frame) in frames {
        for v in [*secs, *usecs, frame.len() as u32, frame.len() as u32] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        w.extend_from_slice(frame);
    }
    w
}

/// An Ethernet frame of an IPv4 packet (protocol `proto`) from `src` to `dst` carrying
/// `payload` (checksums left zero, as nospy does not check them).
pub fn ipv4_frame(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram from `sport` to `dport` carrying `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::new();
    for v in [sport, dport, len, 0] {
        u.extend_from_slice(&v.to_be_bytes());
    }
    u.extend_from_slice(payload);
    u
}

/// A TCP segment from `sport` to `dport` with `flags` (0x02 SYN, 0x12 SYN and ACK) and no
/// payload.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A DNS response (id `id`) answering `name` (labels of 1 to 63 bytes) with `addr`, TTL an hour.
pub fn dns_answer(id: u16, name: &str, addr: std::net::Ipv4Addr) -> Vec<u8> {
    let mut qname = Vec::new();
    for label in name.split('.') {
        assert!(
            (1..=63).contains(&label.len()),
            "{name}: a label of 1 to 63 bytes"
        );
        qname.push(label.len() as u8);
        qname.extend_from_slice(label.as_bytes());
    }
    qname.push(0);
    let [hi, lo] = id.to_be_bytes();
    let mut dns = vec![hi, lo, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    dns.extend_from_slice(&qname);
    dns.extend_from_slice(&[0, 1, 0, 1]);
    dns.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    dns.extend_from_slice(&addr.octets());
    dns
}

/// About `total` bytes of DNS answers tying long names (about 200 bytes each, none a manifest
/// names) to `peers`, spread evenly: for [`with_dns_answers`].
pub fn long_names(peers: &[std::net::Ipv4Addr], total: usize) -> Vec<(std::net::Ipv4Addr, String)> {
    let per_peer = total / 200 / peers.len().max(1) + 1;
    let x = "x".repeat(60);
    peers
        .iter()
        .flat_map(|p| (0..per_peer).map(move |i| (*p, i)))
        .map(|(p, i)| (p, format!("n{i:05}.{x}.{x}.{x}.{p}.example")))
        .collect()
}

/// The UT plug's capture with DNS answers tying about `bytes` of long names, and pool.ntp.org
/// (which the plug's manifest allows for NTP only), to 1.1.1.1, the peer of the plug's one
/// violation (DNS to a resolver its manifest does not name), written in `t`; and `nospy monitor
/// --pcap` of it with `judged_by` (which signs evidence): the capture and the JSON report (a
/// violation: exit 1, asserted).
pub fn ut_names_on_its_violation(
    t: &Path,
    judged_by: &[String],
    bytes: usize,
) -> (PathBuf, serde_json::Value) {
    let peer: std::net::Ipv4Addr = "1.1.1.1".parse().unwrap();
    let mut answers = long_names(&[peer], bytes);
    answers.push((peer, "pool.ntp.org".into()));
    let hostile = t.join("hostile.pcap");
    with_dns_answers(&ut_capture(), &answers, &hostile);
    let mut args = vec!["monitor", "--pcap", s(&hostile), "--json"];
    args.extend(strs(judged_by));
    let r = run(&args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let peers: Vec<&serde_json::Value> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["peer"])
        .collect();
    assert_eq!(peers, ["1.1.1.1"], "the plug's one violation");
    (hostile, v)
}

/// `agreement` with a `[monitors]` section trusting one monitor (`monitor_vkey`, of the
/// organisation "UK operator", quorum 1, breaches denied), written beside it.
pub fn with_monitor(agreement: &Path, monitor_vkey: &str) -> PathBuf {
    let with_monitors = agreement.with_file_name("with-monitors.toml");
    let text = std::fs::read_to_string(agreement).unwrap();
    std::fs::write(
        &with_monitors,
        format!(
            "{text}[monitors]\nquorum = 1\non_breach = \"deny\"\n\
             [[monitors.member]]\norganisation = \"UK operator\"\nkeys = [\"{monitor_vkey}\"]\n"
        ),
    )
    .unwrap();
    with_monitors
}

/// The MUDscope capture of the UT plug (`../shared/vectors/net`).
pub fn ut_capture() -> PathBuf {
    flows::net("pcap/mudscope_malign_ut-tplink_2021-11-18_15-10-46.pcap")
}

/// An operator configuration naming the UT lab's gateway (the plug's MUD controller).
pub fn ut_operator(t: &Path) -> PathBuf {
    let op = t.join("operator.toml");
    std::fs::write(
        &op,
        "[controllers]\n\"urn:ietf:params:mud:gateway\" = [\"192.168.32.1\"]\n",
    )
    .unwrap();
    op
}

/// What judges the UT plug by its logged release and signs its evidence, with the files of
/// [`logged_world`] and [`ut_operator`]: `--inventory`, `--operator`, `--agreement`, `--log`
/// and `--evidence-key`.
pub fn ut_judged_by(
    inv: &Path,
    op: &Path,
    agreement: &Path,
    log: &Path,
    key: &Path,
) -> Vec<String> {
    [
        ("--inventory", inv),
        ("--operator", op),
        ("--agreement", agreement),
        ("--log", log),
        ("--evidence-key", key),
    ]
    .iter()
    .flat_map(|(flag, p)| [flag.to_string(), s(p).to_string()])
    .collect()
}

/// Arguments as the `&str`s `run` takes.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The UT plug's world of [`logged_world`] and [`ut_operator`], its capture judged once by one
/// process.
pub struct UtJudged {
    pub inventory: PathBuf,
    pub agreement: PathBuf,
    pub monitor_key: PathBuf,
    pub digest: String,
    pub log: PathBuf,
    pub monitor_vkey: String,
    pub pcap: PathBuf,
    /// [`ut_judged_by`]'s flags for this world.
    pub judged_by: Vec<String>,
    /// `nospy monitor --pcap` of the capture with `judged_by` and the `extra` flags.
    pub args: Vec<String>,
    /// What `args` gave: it finds violations, so its exit status is 1 (asserted).
    pub run: Run,
}

/// [`UtJudged`] in `t`: the world made, the capture judged with `extra` flags (`--json`, say).
pub fn ut_judged_once(t: &Path, extra: &[&str]) -> UtJudged {
    let (inventory, agreement, monitor_key, digest, log, _, monitor_vkey) = logged_world(t);
    let op = ut_operator(t);
    let pcap = ut_capture();
    let judged_by = ut_judged_by(&inventory, &op, &agreement, &log, &monitor_key);
    let mut args: Vec<String> = ["monitor", "--pcap", s(&pcap)]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
    args.extend(judged_by.iter().cloned());
    let run = run(&strs(&args));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    UtJudged {
        inventory,
        agreement,
        monitor_key,
        digest,
        log,
        monitor_vkey,
        pcap,
        judged_by,
        args,
        run,
    }
}
