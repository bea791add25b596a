//! The fuzz targets on stable Rust: each is given its seeds (real inputs: the published vectors
//! of `../shared/vectors` and the files of `seeds/`) and thousands of deterministic mutations of
//! them. A panic fails the test and leaves the input in `target/fuzz-failures/` to reproduce
//! with `cargo fuzz run <target> <file>` or a unit test. `NOSPY_FUZZ_ROUNDS=N` multiplies the
//! number of mutations (for a longer run by hand).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failing test

use nospy_flow::netflow::Collector;
use std::path::{Path, PathBuf};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target)
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn captures() -> Vec<Vec<u8>> {
    files(&vectors().join("net/pcap"))
}

/// Packets of the published captures, each as link type (2 bytes) and bytes.
fn packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in captures() {
        let mut cap = nospy_flow::capture::Capture::new(&c).unwrap();
        while let Ok(Some(p)) = cap.next_packet() {
            let mut v = p.linktype.to_be_bytes().to_vec();
            v.extend_from_slice(p.data);
            out.push(v);
        }
    }
    out
}

fn export_seeds() -> Vec<Vec<u8>> {
    files(&seeds_dir("exports"))
}

/// The real inputs each target starts from.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let v = vectors();
    match target {
        "traffic" => captures(),
        "packet" => packets().into_iter().step_by(7).collect(),
        "dns" => packets()
            .iter()
            .filter_map(|p| {
                let lt = u16::from_be_bytes([p[0], p[1]]);
                let ip = nospy_flow::packet::decode(lt, &p[2..]).ok()?;
                (ip.proto == 17 && (ip.sport == 53 || ip.dport == 53)).then(|| ip.payload.to_vec())
            })
            .collect(),
        "exports" => export_seeds(),
        "collector_state" => export_seeds()
            .iter()
            .map(|e| {
                // The state a collector keeps after reading a real exporter's messages.
                let mut c = Collector::new();
                let mut rest = &e[..];
                let mut out = Vec::new();
                while rest.len() >= 3 {
                    let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    let _ = c.read("127.0.0.1:9995", &rest[3..3 + n], &mut out);
                    rest = &rest[3 + n..];
                }
                c.save().into_bytes()
            })
            .collect(),
        "mud" => files(&v.join("net/mud")),
        "manifest" => {
            let mut s = files(&seeds_dir("manifest"));
            for m in files(&v.join("net/mud")) {
                if let Ok(i) = nospy_manifest::mud::import(&m) {
                    s.push(i.manifest.to_toml().into_bytes());
                    s.push(i.manifest.to_json().to_string().into_bytes());
                }
            }
            s
        }
        "envelope" => {
            let key =
                nospy_tlog::note::SignerKey::from_seed("release.vendorx.example", [3; 32]).unwrap();
            let mut s: Vec<Vec<u8>> = (0..3)
                .map(|i| nospy_testkit::fixtures::release_submission(i, &key))
                .collect();
            s.extend(files(&v.join("attest/in-toto")));
            s
        }
        "bundle" => {
            let key =
                nospy_tlog::note::SignerKey::from_seed("release.vendorx.example", [3; 32]).unwrap();
            let checkpoint = String::from_utf8(
                std::fs::read(v.join("tlog/tessera-testdata-log/testdata/log/checkpoint.15"))
                    .unwrap(),
            )
            .unwrap();
            let entry = nospy_testkit::fixtures::release_submission(0, &key);
            let b = nospy_statement::bundle::Bundle {
                artifact: nospy_tlog::Sha256([7; 32]),
                checkpoint: checkpoint.clone(),
                entries: vec![nospy_statement::bundle::BundleEntry {
                    entry,
                    proof: nospy_tlog::checkpoint::TlogProof {
                        extra: None,
                        index: 3,
                        proof: vec![nospy_tlog::Hash([1; 32]), nospy_tlog::Hash([2; 32])],
                        checkpoint,
                    },
                }],
                consistency: Some((8, vec![nospy_tlog::Hash([9; 32])])),
            };
            vec![b.to_json()]
        }
        "checkpoint" => {
            let log = v.join("tlog/tessera-testdata-log/testdata/log");
            let mut s: Vec<Vec<u8>> = ["checkpoint.0", "checkpoint.8", "checkpoint.15"]
                .iter()
                .map(|f| std::fs::read(log.join(f)).unwrap())
                .collect();
            s.push(std::fs::read(v.join("tlog/sunlight-skylight/tree/checkpoint")).unwrap());
            s.push(std::fs::read(v.join("tlog/sunlight-skylight/witness/checkpoint")).unwrap());
            s.push(std::fs::read(v.join("tlog/sigsum-rs/example-proof.txt")).unwrap());
            s
        }
        "tile" => {
            let log = v.join("tlog/tessera-testdata-log/testdata/log/tile");
            let mut s = Vec::new();
            for (dir, entries) in [("0/000.p", false), ("entries/000.p", true)] {
                let d = log.join(dir);
                let mut names: Vec<String> = std::fs::read_dir(&d)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for n in names.iter().take(6) {
                    let width: u16 = n.parse().unwrap();
                    let mut b = width.to_be_bytes().to_vec();
                    b.extend(std::fs::read(d.join(n)).unwrap());
                    s.push(b);
                    if entries {
                        s.push(format!("tile/entries/000.p/{n}").into_bytes());
                    } else {
                        s.push(format!("tile/0/x001/234.p/{n}").into_bytes());
                    }
                }
            }
            s
        }
        "witness_request" => files(&seeds_dir("witness_request")),
        // The release entry's leaf hash is the fuzz world's, filled in here.
        "evidence" => files(&seeds_dir("evidence"))
            .into_iter()
            .map(|b| {
                String::from_utf8(b)
                    .unwrap()
                    .replace("LEAF", &nospy_fuzz::evidence_release_leaf())
                    .into_bytes()
            })
            .collect(),
        t => files(&seeds_dir(t)),
    }
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that matter to the text formats, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"=",
    b"\"",
    b"[",
    b"]",
    b"[[",
    b"{",
    b"}",
    b",",
    b":",
    b";",
    b"/",
    b"-",
    b"0",
    b"-1",
    b"18446744073709551616",
    b"99999999999",
    b"1e999",
    b"NaN",
    b"\\u0000",
    b"\xff\xfe",
    b"::",
    b"/129",
    b"255.255.255.256",
    b"any",
    b"\xe2\x80\x94 ",
    b"+",
    b"old ",
];

/// Changes `data` in one of the ways that find parser bugs: bit flips, boundary values, lengths
/// overwritten, ranges deleted or repeated, tokens inserted, truncation, splicing.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
        }
        2 if len >= 4 => {
            let i = rng.below(len - 3);
            let v: u32 = [
                0,
                0xffff_ffff,
                0x8000_0000,
                0xffff,
                0x1_0000,
                len as u32 + 1,
            ][rng.below(6)];
            if rng.below(2) == 0 {
                data[i..i + 2].copy_from_slice(&(v as u16).to_be_bytes());
            } else {
                data[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(16.min(len - i));
            data.drain(i..i + n);
        }
        4 if len > 0 && len < 1 << 20 => {
            let i = rng.below(len);
            let n = 1 + rng.below(64.min(len - i));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(len);
            data.splice(at..at, copy);
        }
        5 => {
            let t = TOKENS[rng.below(TOKENS.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, t.iter().copied());
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        7 if !other.is_empty() => {
            let at = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
    }
}

/// Runs `target` on its seeds and `rounds` mutations of them.
fn fuzz(name: &str, target: fn(&[u8]), rounds: usize) {
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let rounds = rounds
        * std::env::var("NOSPY_FUZZ_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
    let mut rng = Rng(name.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    }));
    let run = |input: &[u8], what: &str| {
        if std::panic::catch_unwind(|| target(input)).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let f = dir.join(format!("{name}-{}.bin", what.replace(' ', "-")));
            std::fs::write(&f, input).unwrap();
            panic!("{name} panicked on {what}; input saved in {}", f.display());
        }
    };
    for (i, s) in seeds.iter().enumerate() {
        run(s, &format!("seed {i}"));
    }
    for r in 0..rounds {
        let mut data = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut data, other);
        }
        run(&data, &format!("mutation {r}"));
    }
}

macro_rules! fuzz_tests {
    ($($name:ident: $rounds:expr,)*) => {$(
        #[test]
        fn $name() {
            fuzz(stringify!($name), nospy_fuzz::$name, $rounds);
        }
    )*
    #[test]
    fn every_target_is_exercised() {
        let tested = [$(stringify!($name)),*];
        for (name, _) in nospy_fuzz::TARGETS {
            assert!(tested.contains(name), "fuzz target {name} has no test");
        }
    }};
}

fuzz_tests! {
    traffic: 1000,
    packet: 20000,
    dns: 20000,
    exports: 15000,
    collector_state: 15000,
    inventory: 15000,
    operator: 15000,
    manifest: 10000,
    mud: 10000,
    envelope: 10000,
    bundle: 5000,
    checkpoint: 15000,
    tile: 15000,
    agreement: 10000,
    server_config: 10000,
    witness_request: 15000,
    resolver: 15000,
    diff: 3000,
    exposure: 10000,
    witness_state: 15000,
    history: 15000,
    time: 20000,
    flow_batch: 20000,
    monitor_part: 15000,
    evidence: 20000,
}

/// The seeds of the text formats are inputs the parsers accept (so mutations start from the
/// inside of each format, not from noise).
#[test]
fn the_seeds_are_accepted() {
    let text = |t: &str| -> Vec<String> {
        seeds(t)
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    };
    for s in text("inventory") {
        let ok = nospy_inventory::Inventory::parse(&s).is_ok()
            || nospy_inventory::Inventory::from_json(&s).is_ok();
        assert!(ok, "{s}");
    }
    for s in text("operator") {
        nospy_inventory::OperatorConfig::from_toml(&s).unwrap();
    }
    for s in text("agreement") {
        nospy_policy::Agreement::from_toml(&s).unwrap();
    }
    for s in text("manifest").iter().filter(|s| !s.starts_with('{')) {
        nospy_manifest::Manifest::from_toml(s).unwrap();
    }
    for s in text("resolver") {
        nospy_monitor::Resolver::parse(&s).unwrap();
    }
    for s in text("witness_request") {
        nospy_tlog::witness::parse_request(&s).unwrap();
    }
    for s in text("collector_state") {
        Collector::restore(&s).unwrap();
    }
    let serve = std::fs::read_to_string(seeds_dir("server_config").join("serve.toml")).unwrap();
    nospy_server::config::ServeConfig::from_toml(&serve).unwrap();
    let logs = std::fs::read_to_string(seeds_dir("server_config").join("logs.toml")).unwrap();
    nospy_witness::logs::parse_logs(&logs).unwrap();
    for s in seeds("envelope").iter().take(3) {
        nospy_statement::inspect(s).unwrap();
    }
    for s in seeds("bundle") {
        nospy_statement::bundle::Bundle::parse(&s).unwrap();
    }
    for s in text("exposure") {
        nospy_exposure::Policy::from_toml(&s).unwrap();
    }
    for s in text("witness_state") {
        nospy_witness::state::parse(&s).unwrap();
    }
    for s in seeds("flow_batch") {
        assert!(
            !nospy_stream::wire::decode_batch(&s, nospy_fuzz::batch_numbering())
                .unwrap()
                .is_empty()
        );
    }
    // The first evidence seed holds in the fuzz world, so that mutations reach every check.
    assert!(
        nospy_fuzz::evidence_holds(&seeds("evidence")[1]),
        "{:#?}",
        nospy_fuzz::evidence_checks(&seeds("evidence")[1])
    );
    assert!(!nospy_fuzz::evidence_holds(&seeds("evidence")[0]));
    // Parts, and a chunk of one.
    for s in seeds("monitor_part") {
        match nospy_stream::wire::read_chain_message(&s).unwrap() {
            nospy_stream::wire::ChainMessage::Part(b) => {
                nospy_stream::wire::decode_part(b).unwrap();
            }
            nospy_stream::wire::ChainMessage::Chunk(c) => assert_eq!((c.index, c.count), (0, 2)),
        }
    }
    for s in seeds("history") {
        assert_eq!(nospy_log::history::records(&s).count(), 2);
    }
    // Each diff seed is two builds that differ inside an archive.
    for s in seeds("diff") {
        let cut = s[0] as usize * (s.len() - 1) / 255;
        let (a, b) = s[1..].split_at(cut);
        let r = nospy_diff::compare_files("a", a, b, nospy_diff::Limits::default()).unwrap();
        assert!(
            r.differences.iter().any(|d| d.path.contains('!')),
            "{:?}",
            r.differences
        );
    }
}

/// The corpora grown by fuzzing campaigns (`fuzz/campaign.sh`, minimised), replayed: every input
/// a campaign found interesting stays a regression test.
#[test]
fn the_campaign_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    for (name, target) in nospy_fuzz::TARGETS {
        let dir = root.join(name);
        if !dir.is_dir() {
            continue;
        }
        for input in files(&dir) {
            if std::panic::catch_unwind(|| target(&input)).is_err() {
                panic!("{name}: a corpus input panics");
            }
            n += 1;
        }
    }
    eprintln!("{n} corpus inputs replayed");
}
