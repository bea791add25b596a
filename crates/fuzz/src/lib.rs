//! Fuzz targets: one function per parser of nospy, each taking arbitrary bytes.
//!
//! A target must never panic, whatever it is given, and where a parser has a writer, what it
//! writes must parse back to the same thing (so the targets check round trips too). The same
//! functions are driven two ways:
//!
//! - `tests/mutations.rs`: a deterministic mutation harness on stable Rust, run by `cargo test`
//!   (and so by CI): each target gets real seeds (the vectors of `../shared/vectors`, and
//!   `seeds/`) and thousands of mutations of them;
//! - `fuzz/` at the top of the repository: the same targets for libFuzzer (`cargo fuzz run
//!   <target>`), coverage-guided, for as long as one cares to run them.

use nospy_flow::netflow::Collector;
use nospy_flow::source::Sink;

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every target, by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("traffic", traffic),
    ("packet", packet),
    ("dns", dns),
    ("exports", exports),
    ("collector_state", collector_state),
    ("inventory", inventory),
    ("operator", operator),
    ("manifest", manifest),
    ("mud", mud),
    ("envelope", envelope),
    ("bundle", bundle),
    ("checkpoint", checkpoint),
    ("tile", tile),
    ("agreement", agreement),
    ("server_config", server_config),
    ("witness_request", witness_request),
    ("resolver", resolver),
    ("diff", diff),
    ("exposure", exposure),
    ("witness_state", witness_state),
    ("history", history),
    ("time", time),
    ("flow_batch", flow_batch),
    ("monitor_part", monitor_part),
    ("evidence", evidence),
];

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

struct Discard(u64);

impl Sink for Discard {
    fn flow(&mut self, f: &nospy_flow::Flow) {
        self.0 += f.packets;
    }
}

/// A reader handing out a few bytes at a time.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1 = self.1 % 5 + 1;
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// A capture (pcap or pcapng) read whole: packets, flows, DNS answers; and the streaming
/// reader, fed a few bytes at a time, sees the same packets and the same error as the
/// in-memory one.
pub fn traffic(data: &[u8]) {
    let mut sink = Discard(0);
    if let Ok(st) = nospy_flow::source::read_traffic(data, &mut sink, &mut |_, _| {}) {
        assert!(st.flows <= st.packets, "more flows than packets");
    }
    use nospy_flow::capture::{Capture, CaptureError, CaptureReader, Packet};
    type Owned = (u64, u16, Vec<u8>, u32);
    let own = |p: Packet<'_>| (p.ts_ns, p.linktype, p.data.to_vec(), p.wire_len);
    // Every packet a reader gives, then its error if it stops on one.
    fn drain(
        mut next: impl FnMut() -> Result<Option<Owned>, CaptureError>,
    ) -> (Vec<Owned>, Option<String>) {
        let mut seen = Vec::new();
        loop {
            match next() {
                Ok(Some(p)) => seen.push(p),
                Ok(None) => return (seen, None),
                Err(e) => return (seen, Some(e.to_string())),
            }
        }
    }
    let mem = match Capture::new(data) {
        Err(e) => (Vec::new(), Some(e.to_string())),
        Ok(mut c) => drain(|| c.next_packet().map(|p| p.map(own))),
    };
    let stream = match CaptureReader::new(Trickle(data, 0)) {
        Err(e) => (Vec::new(), Some(e.to_string())),
        Ok(mut c) => drain(|| c.next_packet().map(|p| p.map(own))),
    };
    assert_eq!(
        mem, stream,
        "the streaming reader differs from the in-memory one"
    );
}

/// One packet: the first two bytes are the link type.
pub fn packet(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let linktype = u16::from_be_bytes([data[0], data[1]]);
    if let Ok(p) = nospy_flow::packet::decode(linktype, &data[2..]) {
        assert!(p.payload.len() <= data.len());
    }
}

/// One DNS message.
pub fn dns(data: &[u8]) {
    let _ = nospy_flow::dns::answers(data);
}

/// A stream of export messages (NetFlow v5, v9, IPFIX), each prefixed by its length (2 bytes)
/// and whether it comes from the first or second exporter (1 byte); then the collector's saved
/// state must restore to a collector that saves the same.
pub fn exports(data: &[u8]) {
    let mut c = Collector::new();
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let exporter = if rest[2] & 1 == 0 {
            "192.0.2.1:4739"
        } else {
            "[2001:db8::1]:2055"
        };
        let msg = &rest[3..(3 + n).min(rest.len())];
        let _ = c.read(exporter, msg, &mut out);
        rest = &rest[(3 + n).min(rest.len())..];
    }
    let saved = c.save();
    let back = Collector::restore(&saved).expect("a saved collector restores");
    assert_eq!(back.save(), saved, "saved state round-trips");
}

/// A collector state file.
pub fn collector_state(data: &[u8]) {
    if let Ok(c) = Collector::restore(&text(data)) {
        let saved = c.save();
        let back = Collector::restore(&saved).expect("a saved collector restores");
        assert_eq!(back.save(), saved);
    }
}

/// An inventory, as CSV and as JSON.
pub fn inventory(data: &[u8]) {
    let t = text(data);
    let _ = nospy_inventory::Inventory::parse(&t);
    let _ = nospy_inventory::Inventory::from_json(&t);
}

/// An operator configuration.
pub fn operator(data: &[u8]) {
    let _ = nospy_inventory::OperatorConfig::from_toml(&text(data));
}

/// A manifest, as TOML and as JSON; what parses is written and parsed back to the same.
pub fn manifest(data: &[u8]) {
    let t = text(data);
    if let Ok(m) = nospy_manifest::Manifest::from_toml(&t) {
        let back = nospy_manifest::Manifest::from_toml(&m.to_toml()).expect("written TOML parses");
        assert_eq!(back, m, "TOML round trip");
        let j = nospy_manifest::Manifest::from_json(&m.to_json()).expect("written JSON parses");
        assert_eq!(j, m, "JSON round trip");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = nospy_manifest::Manifest::from_json(&v);
    }
}

/// A MUD file (RFC 8520) imported into a manifest.
pub fn mud(data: &[u8]) {
    let _ = nospy_manifest::mud::import(data);
}

/// A DSSE envelope, its in-toto statement and its predicate; a parsed envelope is written and
/// parsed back to the same.
pub fn envelope(data: &[u8]) {
    use nospy_statement::dsse::Envelope;
    if let Ok(e) = Envelope::parse(data) {
        let back = Envelope::parse(&e.to_json()).expect("a written envelope parses");
        assert_eq!(back, e, "envelope round trip");
        if let Ok(st) = nospy_statement::Statement::parse(&e.payload) {
            let _ = nospy_statement::predicate::Predicate::parse(&st.predicate_type, &st.predicate);
        }
    }
    let _ = nospy_statement::Statement::parse(data);
    let _ = nospy_statement::inspect(data);
}

/// A bundle (entries with their tlog-proofs).
pub fn bundle(data: &[u8]) {
    if let Ok(b) = nospy_statement::bundle::Bundle::parse(data) {
        let back =
            nospy_statement::bundle::Bundle::parse(&b.to_json()).expect("a written bundle parses");
        assert_eq!(back.to_json(), b.to_json(), "bundle round trip");
    }
}

/// Signed notes and checkpoints, tlog-proofs, keys; a parsed checkpoint is written and parsed back
/// to the same.
pub fn checkpoint(data: &[u8]) {
    use nospy_tlog::checkpoint::{Checkpoint, SignedCheckpoint, TlogProof};
    if let Ok(sc) = SignedCheckpoint::parse(data) {
        let back =
            SignedCheckpoint::parse(sc.to_text().as_bytes()).expect("a written checkpoint parses");
        assert_eq!(back.checkpoint, sc.checkpoint, "checkpoint round trip");
    }
    let t = text(data);
    let _ = Checkpoint::parse(&t);
    let _ = TlogProof::parse(&t);
    let _ = nospy_tlog::note::Note::parse(data);
    let _ = nospy_tlog::note::VerifierKey::parse(&t);
    let _ = nospy_tlog::note::SignerKey::parse(&t);
}

/// A tile path, and tile and entry-bundle contents: the first two bytes are the width.
pub fn tile(data: &[u8]) {
    use nospy_tlog::tile;
    let _ = tile::TileId::parse(&text(data));
    let _ = tile::parse_sumdb_tile_path(&text(data));
    if data.len() < 2 {
        return;
    }
    let width = u16::from_be_bytes([data[0], data[1]]);
    if let Ok(hs) = tile::parse_tile(&data[2..], width) {
        assert_eq!(hs.len(), width as usize);
    }
    if let Ok(es) = tile::parse_bundle(&data[2..], width) {
        assert_eq!(es.len(), width as usize);
    }
}

/// An agreement.
pub fn agreement(data: &[u8]) {
    let _ = nospy_policy::Agreement::from_toml(&text(data));
}

/// `nospy serve`'s configuration and a witness's logs file.
pub fn server_config(data: &[u8]) {
    let t = text(data);
    let _ = nospy_server::config::ServeConfig::from_toml(&t);
    let _ = nospy_witness::logs::parse_logs(&t);
}

/// A tlog-witness `add-checkpoint` request body.
pub fn witness_request(data: &[u8]) {
    let _ = nospy_tlog::witness::parse_request(&text(data));
}

/// A resolver snapshot, RFC 3339 times and durations.
pub fn resolver(data: &[u8]) {
    let t = text(data);
    let _ = nospy_monitor::Resolver::parse(&t);
    let _ = nospy_statement::time::parse_rfc3339(&t);
    let _ = nospy_statement::time::parse_duration(&t);
}

/// Two builds compared (`nospy diff`'s readers: tar, gzip, zip, cpio, ELF): the first byte says
/// where the input splits into the shipped and the rebuilt. Within small bounds, whatever the
/// headers declare; a comparison of a build with itself finds it identical.
pub fn diff(data: &[u8]) {
    let Some((&at, rest)) = data.split_first() else {
        return;
    };
    let cut = (at as usize * rest.len() / 255).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let limits = nospy_diff::Limits {
        member: 1 << 20,
        total: 4 << 20,
        depth: 4,
    };
    let _ = nospy_diff::compare_files("a", a, b, limits);
    let same = nospy_diff::compare_files("a", rest, rest, limits).expect("a build is itself");
    assert!(same.identical && same.differences.is_empty());
    let _ = nospy_diff::archive("a", rest);
}

/// A designated-vendor policy (`exposure.toml`).
pub fn exposure(data: &[u8]) {
    let _ = nospy_exposure::Policy::from_toml(&text(data));
}

/// A witness's state file; what parses is written and parsed back to the same.
pub fn witness_state(data: &[u8]) {
    if let Ok((origin, c)) = nospy_witness::state::parse(&text(data)) {
        let back = nospy_witness::state::parse(&nospy_witness::state::format(&origin, &c))
            .expect("a written state parses");
        assert_eq!(back, (origin, c), "state round trip");
    }
}

/// A log's checkpoint history (`.nospy/checkpoints`): its records, and the same records
/// written again read back the same.
pub fn history(data: &[u8]) {
    use nospy_log::history::{record, records};
    let got: Vec<(u64, &[u8])> = records(data).collect();
    let again: Vec<u8> = got.iter().flat_map(|(s, b)| record(*s, b)).collect();
    let back: Vec<(u64, &[u8])> = records(&again).collect();
    assert_eq!(back, got, "history round trip");
}

/// RFC 3339 times and durations: whatever parses, formatted and parsed again, is the same
/// instant; text with multibyte characters anywhere is refused or parsed, never a panic.
pub fn time(data: &[u8]) {
    use nospy_statement::time::{format_rfc3339, parse_duration, parse_rfc3339};
    let t = text(data);
    if let Some(secs) = parse_rfc3339(&t) {
        assert_eq!(
            parse_rfc3339(&format_rfc3339(secs)),
            Some(secs),
            "time round trip"
        );
    }
    let _ = parse_duration(&t);
    let _ = nospy_exposure::Date::parse(&t);
}

/// The inventory the flow batch seeds are numbered under: devices' addresses 10.0.0.1 (0);
/// 10.0.0.2 (1) and 2001:db8::2 (2); 10.1.0.7 (3); 10.1.0.8 (4); 10.1.2.3 (5).
pub fn batch_numbering() -> &'static nospy_stream::numbering::Numbering {
    static N: std::sync::OnceLock<nospy_stream::numbering::Numbering> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let inv = nospy_inventory::Inventory::parse(
            "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n\
             a,V,m,access,5g,s,false,10.0.0.1,,1,1\n\
             b,V,m,access,5g,s,false,10.0.0.2;2001:db8::2,,1,1\n\
             c,V,m,access,5g,s,false,10.1.0.7,,1,1\n\
             d,V,m,access,5g,s,false,10.1.0.8,,1,1\n\
             e,V,m,access,5g,s,false,10.1.2.3,,1,1\n",
        )
        .expect("the fuzz inventory parses");
        nospy_stream::numbering::Numbering::new(&inv)
    })
}

/// A flow batch from the stream (anyone who can publish to a partition's subject writes one),
/// read under [`batch_numbering`]; what reads is written and read back to the same items.
pub fn flow_batch(data: &[u8]) {
    use nospy_stream::wire::{decode_batch, encode_batch};
    let n = batch_numbering();
    if let Ok(items) = decode_batch(data, n) {
        let back = decode_batch(&encode_batch(n, &items), n).expect("a written batch reads");
        assert_eq!(back, items, "batch round trip");
    }
}

/// A worker's part from the rows stream; what reads is written as it was read (a part of the
/// earlier forms NSP2 and NSP3 is written in today's, and reads back the same). As a chain's message, a
/// chunk's head is read and kept within its bounds.
pub fn monitor_part(data: &[u8]) {
    let mut chain = nospy_stream::wire::Assembler::default();
    for _ in 0..3 {
        if let Ok(Some(whole)) = chain.add(data) {
            assert!(
                whole.len() <= data.len() * 3,
                "a part assembled from its chunks"
            );
        }
    }
    if let Ok(part) = nospy_stream::wire::decode_part(data) {
        let bytes = nospy_stream::wire::encode_part(&part);
        if data.starts_with(b"NSP2") || data.starts_with(b"NSP3") {
            let back = nospy_stream::wire::decode_part(&bytes).expect("a written part reads");
            assert_eq!(
                back, part,
                "a part of an earlier format written as NSP4 reads back the same"
            );
        } else {
            assert_eq!(bytes, data, "a part is written as it was read");
        }
    }
}

/// The fixed world the `evidence` target verifies in: an agreement trusting one log, one
/// vendor and one monitor organisation, and the vendor's release of the firmware (the manifest
/// of DESIGN.md §12, with an abstraction and a name rule).
struct EvidenceWorld {
    agreement: nospy_policy::Agreement,
    log: nospy_tlog::note::SignerKey,
    monitor: nospy_tlog::note::SignerKey,
    release: Vec<u8>,
    firmware: nospy_tlog::Sha256,
}

fn evidence_world() -> &'static EvidenceWorld {
    use nospy_statement::predicate::{Predicate, Release, Source};
    static WORLD: std::sync::OnceLock<EvidenceWorld> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let key = |n: &str, s: u8| nospy_tlog::note::SignerKey::from_seed(n, [s; 32]).expect("a key");
        let (log, vendor, monitor) = (
            key("log.example.org/nospy", 1),
            key("release.vendorx.example", 2),
            key("monitor.uk.example", 3),
        );
        let agreement = nospy_policy::Agreement::from_toml(&format!(
            "name = \"fuzz\"\n[log]\norigin = \"log.example.org/nospy\"\nkey = \"{}\"\n\
             [witnesses]\nquorum = 0\nmax_age = \"24h\"\n[[vendor]]\nname = \"VendorX\"\nkeys = [\"{}\"]\n\
             [evaluators]\nquorum = 0\n[monitors]\nquorum = 1\n[[monitors.member]]\n\
             organisation = \"UK operator\"\nkeys = [\"{}\"]\n",
            log.verifier(),
            vendor.verifier(),
            monitor.verifier()
        ))
        .expect("the fuzz agreement");
        let manifest = nospy_manifest::Manifest::from_toml(
            "[device]\nvendor = \"VendorX\"\nmodel = \"vx-1\"\n[capabilities]\nvendor_remote_access = \"none\"\n\
             [[allow]]\ndirection = \"from-device\"\npeer = \"updates.vendorx.example\"\nprotocol = \"tcp\"\nports = \"443\"\ninitiated_by = \"device\"\n\
             [[allow]]\ndirection = \"to-device\"\npeer = \"operator-networks\"\nprotocol = \"tcp\"\ndevice_ports = \"22\"\n\
             [[allow]]\ndirection = \"from-device\"\npeer = \"192.0.2.0/24\"\nprotocol = \"udp\"\nports = \"1024-65535\"\n",
        )
        .expect("the fuzz manifest");
        let firmware = nospy_tlog::Sha256([7; 32]);
        let release = Predicate::Release(Box::new(Release {
            vendor: "VendorX".into(),
            product: "vx-1".into(),
            version: "1.0".into(),
            source: Source {
                repository: None,
                commit: "c0ffee".into(),
                toolchain: None,
            },
            sbom: None,
            build_recipe: None,
            supersedes: vec![],
            manifest,
        }));
        let release = nospy_statement::sign(subject(&firmware), &release, &[&vendor]).to_json();
        EvidenceWorld {
            agreement,
            log,
            monitor,
            release,
            firmware,
        }
    })
}

fn subject(d: &nospy_tlog::Sha256) -> Vec<nospy_statement::ResourceDescriptor> {
    vec![nospy_statement::ResourceDescriptor {
        digest: Some(nospy_statement::DigestSet::sha256(d)),
        ..Default::default()
    }]
}

/// The leaf hash of the `evidence` target's release entry (what its seeds name), hex.
pub fn evidence_release_leaf() -> String {
    nospy_tlog::hash::leaf_hash(&evidence_world().release).to_hex()
}

/// Whether `data`, as the `evidence` target reads it, is evidence that holds.
pub fn evidence_holds(data: &[u8]) -> bool {
    evidence_verdicts(data).iter().any(|v| v.holds)
}

/// What the `evidence` target's checks say of `data` (for a failing seed's message).
pub fn evidence_checks(data: &[u8]) -> Vec<Vec<nospy_policy::breach::EvidenceCheckResult>> {
    evidence_verdicts(data)
        .into_iter()
        .map(|v| v.checks)
        .collect()
}

/// An evidence predicate (JSON, either version), signed by the trusted monitor, logged after the
/// release it names and verified as `nospy evidence verify` does: every row judged again. Only
/// second-version evidence can hold.
pub fn evidence(data: &[u8]) {
    let _ = evidence_verdicts(data);
}

fn evidence_verdicts(data: &[u8]) -> Vec<nospy_policy::breach::EvidenceVerdict> {
    use nospy_statement::predicate::{Predicate, EVIDENCE_V1, EVIDENCE_V2};
    use nospy_tlog::merkle::{self, MemoryTree};
    use nospy_tlog::{LogIndex, TreeSize};
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let w = evidence_world();
    let mut out = Vec::new();
    for t in [EVIDENCE_V1, EVIDENCE_V2] {
        let Ok(p @ Predicate::Evidence(_)) = Predicate::parse(t, &v) else {
            continue;
        };
        let env = nospy_statement::sign(subject(&w.firmware), &p, &[&w.monitor]).to_json();
        let mut tree = MemoryTree::new();
        for e in [&w.release, &env] {
            tree.push(nospy_tlog::hash::leaf_hash(e));
        }
        let size = TreeSize(2);
        let cp = nospy_tlog::checkpoint::Checkpoint {
            origin: "log.example.org/nospy".into(),
            size: 2,
            root: merkle::root(&tree, size).expect("a root"),
            extensions: vec![],
        };
        let checkpoint = cp.sign(&w.log).expect("a checkpoint").to_text();
        let entry = |i: u64, bytes: &[u8]| nospy_policy::LoggedEntry {
            index: i,
            bytes: bytes.to_vec(),
            proof: merkle::inclusion_proof(&tree, LogIndex(i), size).expect("a proof"),
            proof_checkpoint: None,
        };
        let case = nospy_policy::breach::Case {
            checkpoint,
            evidence: entry(1, &env),
            release: Some(entry(0, &w.release)),
        };
        let verdict = nospy_policy::breach::verify_evidence(&w.agreement, &case, 1_800_000_000);
        if verdict.holds {
            let Predicate::Evidence(e) = &p else { continue };
            assert!(e.is_v2(), "v1 evidence cannot hold");
        }
        out.push(verdict);
    }
    out
}
