//! nospy's demo world, every file of it from a seed (`nospy demo` writes it, then plays the
//! parties' parts with nospy's own commands and serves the result with the dashboard).
//!
//! The story, promise to packet:
//!
//! - **VendorX** ships three releases of its radio unit `vx-ran-5000`, each a firmware image (a
//!   cpio archive: kernel, daemon, library, release file) with a behaviour manifest: 4.1.0, then
//!   4.2.0 (which supersedes it), then 4.2.1.
//! - Two **evaluators** of different organisations rebuild from the reviewed source. Both find
//!   4.1.0 and 4.2.0 bit for bit the shipped images. The DE lab's rebuild of 4.2.1 differs in one
//!   member, `usr/bin/vxd`: the shipped daemon carries a beacon the reviewed source does not;
//!   the vendor revokes 4.2.1.
//! - An **operator** runs about a thousand devices across forty sites (four of them sensitive):
//!   VendorX radios on most firmware 4.2.0, some still on 4.1.0, some on the revoked 4.2.1, a
//!   few on a build that was never logged; other vendors in the core, transport and management.
//! - Its **capture** of a morning's traffic shows a radio on 4.2.1 phoning home to
//!   `203.0.113.66:8443`, which its manifest does not allow, beside traffic that it does.
//! - A **regulator's** policy (the UK's designated-vendor rules, applied to VendorX) finds VendorX
//!   at 38% of the access network, over the 35% cap; every other rule holds.
//!
//! [`World::new`] reads and writes no file, clock or network: it returns the files and the
//! parties' keys, the same for the same seed. [`play`] writes them into a directory and plays
//! the parties' parts there with a nospy executable, against a server the caller runs.

use nospy_testkit::rng::Rng;
use nospy_tlog::note::SignerKey;
use nospy_tlog::Sha256;

pub mod capture;
mod cpio;
pub mod play;

pub use capture::PHONE_HOME;

/// The log's origin (its key is named after it).
pub const ORIGIN: &str = "demo.nospy.example/log";
/// The vendor, as its releases and the operator's inventory name it.
pub const VENDOR: &str = "VendorX";
/// The product of the three releases.
pub const PRODUCT: &str = "vx-ran-5000";
/// When the capture begins (2026-12-01T10:00:00Z).
pub const CAPTURE_START: u64 = 1_796_119_200;
/// The name the resolver snapshot maps to the vendor's update server.
pub const UPDATE_HOST: &str = "updates.vendorx.example";
/// The update server's address in the resolver snapshot.
pub const UPDATE_ADDR: [u8; 4] = [198, 51, 100, 10];

/// One party of the demo: its role, its key, and the file the key is written to.
pub struct Party {
    /// What it does in the story ("log", "vendor", "evaluator", "witness", "monitor").
    pub role: &'static str,
    /// The organisation it speaks for (evaluators are counted by organisation).
    pub organisation: &'static str,
    /// The private key file, relative to the world's directory.
    pub key_file: String,
    /// Its signing key.
    pub key: SignerKey,
}

/// One release of the product, and what the evaluators found.
pub struct Release {
    /// Its version.
    pub version: &'static str,
    /// The shipped image, relative to the world's directory.
    pub firmware: String,
    /// SHA-256 of the shipped image.
    pub digest: Sha256,
    /// Its behaviour manifest, relative to the world's directory.
    pub manifest: String,
    /// The version it supersedes, if any.
    pub supersedes: Option<&'static str>,
    /// Each evaluator's rebuild (index into [`World::evaluators`], path) and whether it is bit
    /// for bit the shipped image.
    pub rebuilds: Vec<(usize, String, bool)>,
    /// Why the vendor revoked it, if it did.
    pub revoked: Option<&'static str>,
}

/// A file of the world.
pub struct File {
    /// Relative to the world's directory.
    pub path: String,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// A private key: to be written readable by its owner only.
    pub private: bool,
}

/// The whole world.
pub struct World {
    /// The seed it was made from.
    pub seed: u64,
    /// The log's key.
    pub log: Party,
    /// The vendor.
    pub vendor: Party,
    /// The two evaluators (UK, DE).
    pub evaluators: Vec<Party>,
    /// The two witnesses.
    pub witnesses: Vec<Party>,
    /// The operator's monitor (signs evidence).
    pub monitor: Party,
    /// The three releases, oldest first.
    pub releases: Vec<Release>,
    /// Every file: keys, images, rebuilds, manifests, agreement, inventory, operator
    /// configuration, resolver snapshot, capture, exposure policy, witnesses' logs file.
    pub files: Vec<File>,
    /// How many devices the inventory lists.
    pub devices: usize,
    /// The device that phones home, and the firmware version it runs.
    pub phoning_device: (String, &'static str),
}

/// A key derived from the seed and the key's name.
fn key(seed: u64, name: &str) -> SignerKey {
    let mut material = b"nospy demo key\0".to_vec();
    material.extend_from_slice(&seed.to_le_bytes());
    material.extend_from_slice(name.as_bytes());
    SignerKey::from_seed(name, Sha256::of(&material).0).expect("the demo's key names are valid")
}

fn party(
    seed: u64,
    role: &'static str,
    organisation: &'static str,
    name: &str,
    file: &str,
) -> Party {
    Party {
        role,
        organisation,
        key_file: format!("keys/{file}.key"),
        key: key(seed, name),
    }
}

/// `n` bytes from `rng`.
fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The members of an image of `version`; `beacon` adds what the reviewed source does not have.
fn image(seed: u64, version: &str, beacon: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ u64::from_le_bytes(*b"vx-image"));
    let kernel = bytes(&mut rng, 48 * 1024);
    let library = bytes(&mut rng, 8 * 1024);
    let mut rng = Rng::new(seed ^ Sha256::of(version.as_bytes()).0[0] as u64 ^ 0x7864);
    let mut daemon = b"\x7fVXD".to_vec();
    daemon.extend(bytes(&mut rng, 16 * 1024));
    daemon.extend_from_slice(format!("vxd {version}\n").as_bytes());
    if beacon {
        let (a, port) = PHONE_HOME;
        daemon.extend_from_slice(
            format!(
                "beacon {}.{}.{}.{}:{port} every 300s\n",
                a[0], a[1], a[2], a[3]
            )
            .as_bytes(),
        );
    }
    cpio::archive(&[
        ("boot/vmlinuz", &kernel),
        (
            "etc/vx-release",
            format!("{VENDOR} {PRODUCT} {version}\n").as_bytes(),
        ),
        ("usr/bin/vxd", &daemon),
        ("usr/lib/libvx.so.4", &library),
    ])
}

/// The manifest of `version` (4.2 adds time from the operator's controller).
fn manifest(version: &str) -> String {
    let mut m = format!(
        "# {VENDOR} {PRODUCT} {version}: whom the device may talk to.\n\
         [device]\nvendor = \"{VENDOR}\"\nmodel = \"{PRODUCT}\"\n\n\
         [capabilities]\nvendor_remote_access = \"none\"\n\n\
         [[allow]]\ndirection = \"from-device\"\npeer = \"{UPDATE_HOST}\"\nprotocol = \"tcp\"\nports = \"443\"\ninitiated_by = \"device\"\n\n\
         [[allow]]\ndirection = \"to-device\"\npeer = \"operator-networks\"\nprotocol = \"tcp\"\ndevice_ports = \"22\"\ninitiated_by = \"peer\"\n"
    );
    if version.starts_with("4.2") {
        m.push_str(
            "\n[[allow]]\ndirection = \"from-device\"\npeer = \"my-controller\"\nprotocol = \"udp\"\nports = \"123\"\n",
        );
    }
    m
}

/// The firmware a VendorX radio runs: the `k`-th of them (0-based).
fn firmware_of(k: usize) -> Firmware {
    match k {
        // The radio in the capture that phones home.
        6 => Firmware::Release(2),
        _ if k % 31 == 3 => Firmware::Release(0),
        _ if k % 37 == 5 => Firmware::Release(2),
        _ if k % 71 == 11 => Firmware::Unlogged,
        _ => Firmware::Release(1),
    }
}

enum Firmware {
    Release(usize),
    Unlogged,
}

/// Number of access (radio) devices; VendorX's share of them is [`VENDORX_RADIOS`] in 50.
const RADIOS: usize = 800;
/// VendorX radios per 50 radios (38%: over the UK's 35% cap).
const VENDORX_RADIOS: usize = 19;
/// The first sites are sensitive.
const SENSITIVE_SITES: usize = 4;
/// Sites in all.
const SITES: usize = 40;

/// The inventory (CSV) and the id of the radio that phones home.
fn inventory(releases: &[Release], unlogged: &Sha256) -> (String, usize, String) {
    let mut csv = String::from(
        "device,vendor,model,function,technology,site,sensitive,addresses,firmware_sha256,weight,replacement_cost\n",
    );
    let mut n = 0;
    let mut phoning = String::new();
    let mut vendorx = 0;
    let mut row = |csv: &mut String,
                   id: String,
                   vendor: &str,
                   model: &str,
                   function: &str,
                   technology: &str,
                   site: usize,
                   address: String,
                   firmware: String,
                   cost: u32| {
        n += 1;
        csv.push_str(&format!(
            "{id},{vendor},{model},{function},{technology},site-{site:03},{},{address},{firmware},1.0,{cost}\n",
            site <= SENSITIVE_SITES
        ));
    };
    for i in 1..=RADIOS {
        // Radios stand at the sites that are not sensitive.
        let site = SENSITIVE_SITES + 1 + (i - 1) % (SITES - SENSITIVE_SITES);
        let technology = if i % 3 == 0 { "4g" } else { "5g" };
        let address = format!("10.1.{}.{}", i >> 8, i & 255);
        let id = format!("ran-{i:06}");
        if (i - 1) % 50 < VENDORX_RADIOS {
            let firmware = match firmware_of(vendorx) {
                Firmware::Release(r) => releases[r].digest.to_hex(),
                Firmware::Unlogged => unlogged.to_hex(),
            };
            if vendorx == 6 {
                phoning = id.clone();
            }
            vendorx += 1;
            row(
                &mut csv, id, VENDOR, PRODUCT, "access", technology, site, address, firmware,
                120_000,
            );
        } else {
            row(
                &mut csv,
                id,
                "VendorY",
                "ny-ran-700",
                "access",
                technology,
                site,
                address,
                String::new(),
                110_000,
            );
        }
    }
    for i in 1..=40 {
        let site = 1 + (i - 1) % SENSITIVE_SITES;
        row(
            &mut csv,
            format!("core-{i:04}"),
            "VendorY",
            "ny-core-9",
            "core",
            "5g",
            site,
            format!("10.2.0.{i}"),
            String::new(),
            900_000,
        );
    }
    for i in 1..=120 {
        let site = 1 + (i - 1) % SITES;
        row(
            &mut csv,
            format!("tr-{i:04}"),
            "VendorZ",
            "zt-optic-40",
            "transport",
            "fibre",
            site,
            format!("10.3.0.{i}"),
            String::new(),
            40_000,
        );
    }
    for i in 1..=40 {
        let site = 1 + (i - 1) % SITES;
        row(
            &mut csv,
            format!("mgmt-{i:04}"),
            "VendorY",
            "ny-mgmt-2",
            "management",
            "ip",
            site,
            format!("10.4.0.{i}"),
            String::new(),
            15_000,
        );
    }
    (csv, n, phoning)
}

fn agreement(w: &World) -> String {
    let member = |p: &Party| {
        format!(
            "[[evaluators.member]]\norganisation = \"{}\"\nkeys = [\"{}\"]\n",
            p.organisation,
            p.key.verifier()
        )
    };
    format!(
        "# The operator's agreement with {VENDOR}: whom it trusts and what each release must satisfy.\n\
         name = \"demo-operator-{vendor}\"\n\n\
         [log]\norigin = \"{ORIGIN}\"\nkey = \"{log}\"\n\n\
         [witnesses]\nquorum = 2\nmax_age = \"24h\"\nkeys = [\"{w1}\", \"{w2}\"]\n\n\
         [[vendor]]\nname = \"{VENDOR}\"\nkeys = [\"{vk}\"]\n\n\
         [evaluators]\nquorum = 2\n\n{e1}\n{e2}\n\
         [manifest]\nvendor_remote_access = [\"none\", \"operator-initiated\"]\n\
         peers_within = [\"operator-networks\", \"my-controller\", \"*.vendorx.example\"]\n\n\
         # Breach evidence from the operator's own monitor, verified, denies the firmware.\n\
         [monitors]\nquorum = 1\non_breach = \"deny\"\n\n\
         [[monitors.member]]\norganisation = \"{mo}\"\nkeys = [\"{mk}\"]\n",
        vendor = VENDOR.to_ascii_lowercase(),
        log = w.log.key.verifier(),
        w1 = w.witnesses[0].key.cosigner_verifier(),
        w2 = w.witnesses[1].key.cosigner_verifier(),
        vk = w.vendor.key.verifier(),
        e1 = member(&w.evaluators[0]),
        e2 = member(&w.evaluators[1]),
        mo = w.monitor.organisation,
        mk = w.monitor.key.verifier(),
    )
}

/// The UK's designated-vendor rules (`examples/exposure-uk.toml`), applied to the demo's
/// designated vendor.
fn exposure_policy() -> String {
    let rules = [
        (
            "Out of sensitive sites",
            "{ sensitive = true }",
            "0.0",
            "devices",
            "2023-01-28",
        ),
        (
            "Out of the core",
            "{ functions = [\"core\"] }",
            "0.0",
            "devices",
            "2023-12-31",
        ),
        (
            "At most 35% of the access network",
            "{ functions = [\"access\"] }",
            "0.35",
            "weight",
            "2023-10-31",
        ),
        (
            "Out of 5G",
            "{ technology = [\"5g\"] }",
            "0.0",
            "devices",
            "2027-12-31",
        ),
    ];
    let mut s = format!(
        "# The UK's designated-vendor rules (examples/exposure-uk.toml), with {VENDOR} as the designated vendor.\n"
    );
    for (name, scope, max, measure, effective) in rules {
        s.push_str(&format!(
            "\n[[rule]]\nname = \"{name}\"\nvendor = \"{VENDOR}\"\nscope = {scope}\nmax_share = {max}\nmeasure = \"{measure}\"\neffective = \"{effective}\"\n"
        ));
    }
    s
}

impl World {
    /// The world of `seed`.
    pub fn new(seed: u64) -> World {
        let log = party(seed, "log", "the log operator", ORIGIN, "log");
        let vendor = party(seed, "vendor", VENDOR, "release.vendorx.example", "vendor");
        let evaluators = vec![
            party(
                seed,
                "evaluator",
                "UK evaluation centre",
                "eval.uk-centre.example",
                "eval-uk",
            ),
            party(
                seed,
                "evaluator",
                "DE evaluation lab",
                "eval.de-lab.example",
                "eval-de",
            ),
        ];
        let witnesses = vec![
            party(
                seed,
                "witness",
                "UK government witness",
                "witness.gov.example",
                "witness-1",
            ),
            party(
                seed,
                "witness",
                "DE government witness",
                "witness.bund.example",
                "witness-2",
            ),
        ];
        let monitor = party(
            seed,
            "monitor",
            "the operator",
            "monitor.operator.example",
            "monitor",
        );
        let mut files = Vec::new();
        let mut releases = Vec::new();
        for (i, version) in ["4.1.0", "4.2.0", "4.2.1"].into_iter().enumerate() {
            let beacon = version == "4.2.1";
            let shipped = image(seed, version, beacon);
            let firmware = format!("firmware/{PRODUCT}-{version}.bin");
            let digest = Sha256::of(&shipped);
            files.push(File {
                path: firmware.clone(),
                bytes: shipped,
                private: false,
            });
            let manifest_path = format!("manifests/{PRODUCT}-{version}.toml");
            files.push(File {
                path: manifest_path.clone(),
                bytes: manifest(version).into_bytes(),
                private: false,
            });
            // The UK centre has not yet rebuilt 4.2.1; the DE lab's rebuild of it, from the
            // reviewed source, has no beacon.
            let evaluated: &[usize] = if beacon { &[1] } else { &[0, 1] };
            let mut rebuilds = Vec::new();
            for &e in evaluated {
                let org = if e == 0 { "uk" } else { "de" };
                let path = format!("rebuilt/{org}/{PRODUCT}-{version}.bin");
                files.push(File {
                    path: path.clone(),
                    bytes: image(seed, version, false),
                    private: false,
                });
                rebuilds.push((e, path, !beacon));
            }
            releases.push(Release {
                version,
                firmware,
                digest,
                manifest: manifest_path,
                supersedes: (i == 1).then_some("4.1.0"),
                rebuilds,
                revoked: beacon.then_some(
                    "the DE evaluation lab's rebuild differs in usr/bin/vxd: withdrawn, use 4.2.0",
                ),
            });
        }
        // A build that was never logged.
        let unlogged = image(seed ^ 0x5eed, "4.2.2-hotfix", false);
        let unlogged_digest = Sha256::of(&unlogged);
        files.push(File {
            path: format!("firmware/{PRODUCT}-4.2.2-hotfix.bin"),
            bytes: unlogged,
            private: false,
        });
        let (csv, devices, phoning) = inventory(&releases, &unlogged_digest);
        files.push(File {
            path: "inventory.csv".into(),
            bytes: csv.into_bytes(),
            private: false,
        });
        files.push(File {
            path: "operator.toml".into(),
            bytes: b"# What the manifests' abstractions mean on the operator's network.\n\
                     operator_networks = [\"10.0.0.0/8\"]\nmy_controller = [\"10.0.0.10\"]\n"
                .to_vec(),
            private: false,
        });
        let [a, b, c, d] = UPDATE_ADDR;
        files.push(File {
            path: "resolver.txt".into(),
            bytes: format!("{UPDATE_HOST} {a}.{b}.{c}.{d}\n").into_bytes(),
            private: false,
        });
        files.push(File {
            path: "exposure.toml".into(),
            bytes: exposure_policy().into_bytes(),
            private: false,
        });
        let mut w = World {
            seed,
            log,
            vendor,
            evaluators,
            witnesses,
            monitor,
            releases,
            files,
            devices,
            phoning_device: (phoning, "4.2.1"),
        };
        let radio = |id: &str| -> [u8; 4] {
            let i: usize = id.trim_start_matches("ran-").parse().expect("a radio's id");
            [10, 1, (i >> 8) as u8, (i & 255) as u8]
        };
        // The capture: a radio on 4.2.0 that keeps its manifest, and the one on 4.2.1 that
        // does the same and phones home besides.
        let capture = capture::morning(seed, &[radio("ran-000001"), radio(&w.phoning_device.0)], 1);
        w.files.push(File {
            path: "capture.pcap".into(),
            bytes: capture,
            private: false,
        });
        let agreement = agreement(&w);
        w.files.push(File {
            path: "agreement.toml".into(),
            bytes: agreement.into_bytes(),
            private: false,
        });
        let logs = format!(
            "[[log]]\norigin = \"{ORIGIN}\"\nkey = \"{}\"\n",
            w.log.key.verifier()
        );
        w.files.push(File {
            path: "witness-logs.toml".into(),
            bytes: logs.into_bytes(),
            private: false,
        });
        let keys: Vec<File> = w
            .parties()
            .map(|p| File {
                path: p.key_file.clone(),
                bytes: format!("{}\n", p.key.to_private_string().as_str()).into_bytes(),
                private: true,
            })
            .collect();
        w.files.extend(keys);
        w
    }

    /// Every party.
    pub fn parties(&self) -> impl Iterator<Item = &Party> {
        [&self.log, &self.vendor]
            .into_iter()
            .chain(&self.evaluators)
            .chain(&self.witnesses)
            .chain([&self.monitor])
    }

    /// The log server's `serve.toml` for this world: its submitters, its witnesses (listening
    /// at `witnesses`, which change at each start), its dashboard (with a bearer token file
    /// when `token`).
    pub fn serve_config(&self, witnesses: &[std::net::SocketAddr], token: bool) -> String {
        let mut s =
            String::from("# Written by nospy demo at each start (the witnesses' ports change).\n");
        for p in [
            &self.vendor,
            &self.evaluators[0],
            &self.evaluators[1],
            &self.monitor,
        ] {
            s.push_str(&format!(
                "[[submitter]]\nrole = \"{}\"\nkey = \"{}\"\n\n",
                p.role,
                p.key.verifier()
            ));
        }
        s.push_str("[witnesses]\nquorum = 2\ntimeout = \"2s\"\n");
        for (p, a) in self.witnesses.iter().zip(witnesses) {
            s.push_str(&format!(
                "[[witnesses.member]]\nurl = \"http://{a}\"\nkey = \"{}\"\n",
                p.key.cosigner_verifier()
            ));
        }
        s.push_str(
            "\n[dashboard]\nagreements = [\"agreement.toml\"]\ninventory = \"inventory.csv\"\nexposure = \"exposure.toml\"\n",
        );
        if token {
            s.push_str("token_file = \"dashboard.token\"\n");
        }
        s
    }

    /// A file of the world by its path.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.bytes.as_slice())
    }
}

#[cfg(test)]
mod tests;
