//! `nospy monitor`: the operator's traffic against each device's manifest.

use crate::util::read_parsed;
use crate::util::{print_json, Progress};
use anyhow::{bail, Context, Result};
use nospy_client::LogSource;
use nospy_inventory::{Inventory, OperatorConfig};
use nospy_manifest::Manifest;
use nospy_monitor::evidence;
use nospy_monitor::manifests::Described;
use nospy_monitor::output::{report_json, ManifestFrom};
use nospy_monitor::reproduce::{read_hashed, Capture};
use nospy_monitor::{Monitor, Report, Resolver};
use nospy_tlog::Sha256;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `nospy monitor`.
#[derive(clap::Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    command: Option<MonitorCommand>,
    /// The operator's inventory (CSV or JSON, DESIGN.md §12): which device has which addresses.
    /// Required, except by `nospy monitor report`.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Work on flows published by `nospy collect` to NATS JetStream (`nats://HOST:PORT`): a
    /// worker takes its share of the stream's partitions, judges their flows and appends each
    /// window's counts to the partition's chain; `nospy monitor report` merges them.
    #[arg(long, value_name = "URL", conflicts_with_all = ["pcap", "flows", "listen"])]
    nats: Option<String>,
    #[command(flatten)]
    worker: crate::streamcmd::WorkerArgs,
    /// A manifest (TOML, as `nospy manifest import-mud` writes, or a release statement's JSON
    /// form); it applies to the devices whose vendor and model it names. Repeatable.
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// The operator's configuration (operator.toml): its networks, controllers and local
    /// networks, which give a manifest's abstractions their addresses.
    #[arg(long)]
    operator: Option<PathBuf>,
    /// A resolver snapshot: lines of `name address...`, for DNS-name rules where the traffic
    /// carries no DNS (flow exports, or captures that began after the lookups).
    #[arg(long)]
    resolver: Option<PathBuf>,
    /// A packet capture (pcap or pcapng, recognised by content).
    #[arg(long, conflicts_with_all = ["flows", "listen"])]
    pcap: Option<PathBuf>,
    /// A capture of flow export packets (NetFlow v5, v9 or IPFIX over UDP).
    #[arg(long, conflicts_with = "listen")]
    flows: Option<PathBuf>,
    /// Collect NetFlow v5, v9 and IPFIX live on this UDP address (`udp:0.0.0.0:4739`) until
    /// interrupted (Ctrl-C, SIGTERM) or --duration has passed, then report.
    #[arg(long, value_name = "udp:ADDR")]
    listen: Option<String>,
    /// With --listen: stop after this long (`90s`, `15m`, `1h`).
    #[arg(long, requires = "listen")]
    duration: Option<String>,
    /// With --listen: where the collector keeps the templates and exporter state it learned, so
    /// that after a restart it reads data at once rather than waiting for every exporter to
    /// resend its templates. Saved (atomically) whenever they change.
    #[arg(long, requires = "listen", default_value = "nospy-collector.state")]
    templates: PathBuf,
    /// The agreement whose vendor keys must have signed a release for its manifest to be taken
    /// from the log (--log or --server): each device is then judged against the manifest of the
    /// release of its firmware (the inventory's firmware_sha256), ahead of any --manifest file.
    #[arg(long)]
    agreement: Option<PathBuf>,
    /// A log directory: where manifests are read (with --agreement) and evidence is appended
    /// (with --evidence-key; the log's private key comes from its configuration).
    #[arg(long, conflicts_with = "server")]
    log: Option<PathBuf>,
    /// A `nospy serve` server (base URL): as --log, through its index and its /add (which must
    /// admit the evidence key with role "monitor").
    #[arg(long)]
    server: Option<String>,
    /// With --log and --agreement: the signed checkpoint to take manifests under (one with the
    /// witnesses' cosignatures, as `nospy witness cosign` writes it), as `verify` and `fleet`
    /// take it; default the log's own, which offline witnesses have not cosigned.
    #[arg(long, requires_all = ["log", "agreement"])]
    checkpoint: Option<PathBuf>,
    /// The monitor's private key: sign one evidence statement per device with violations (more
    /// if its flows do not fit one 64 KiB entry), about the device's firmware, and append them to
    /// the log (--log or --server).
    #[arg(long)]
    evidence_key: Option<PathBuf>,
    /// Print one JSON object: totals, violations, unattributable, unknown_device_flows (flow
    /// records of no device), unknown_device_packets (captured packets of no device: counted,
    /// not tracked), flows_in_dropped_rows (beyond 4 million distinct rows of a kind, the last
    /// rows are dropped and their flows counted here), devices (and evidence, with
    /// --evidence-key).
    #[arg(long)]
    json: bool,
}

/// Reads a manifest file (TOML, or JSON when it starts with `{`), with the SHA-256 of its bytes
/// (what an evidence statement names).
fn load_manifest(p: &PathBuf) -> Result<(Manifest, Sha256)> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let digest = Sha256::of(&bytes);
    let text = String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", p.display()))?;
    let m = Manifest::parse(&text).with_context(|| format!("{}: not a manifest", p.display()))?;
    Ok((m, digest))
}

/// What `nospy monitor` does besides judging a source of its own.
#[derive(clap::Subcommand)]
pub enum MonitorCommand {
    /// The report of what workers (`nospy monitor --nats`) counted: every partition's counts for
    /// a window, a range of windows or everything, merged into the report `nospy monitor`
    /// prints for the same flows (the same JSON keys).
    ///
    /// Example:
    ///   nospy monitor report --nats nats://127.0.0.1:4222 --window 2026-12-04T10:00:00Z --json
    ///
    /// Exit status: 0 no violation, 1 violations found, 2 unusable input.
    #[command(verbatim_doc_comment)]
    Report(crate::streamcmd::ReportArgs),
}

/// Runs `nospy monitor`.
pub fn run(a: MonitorArgs) -> Result<ExitCode> {
    if let Some(MonitorCommand::Report(r)) = a.command {
        return crate::streamcmd::report(r);
    }
    let Some(inventory) = &a.inventory else {
        bail!("--inventory is required: the operator's devices and their addresses");
    };
    let inventory = read_parsed(inventory, Inventory::parse)?;
    let operator = match &a.operator {
        Some(p) => read_parsed(p, OperatorConfig::from_toml)?,
        None => OperatorConfig::default(),
    };
    let resolver = match &a.resolver {
        Some(p) => Some(read_parsed(p, Resolver::parse)?),
        None => None,
    };
    let source = LogSource::from_args(a.log.as_deref(), a.server.as_deref());
    let chosen = device_manifests(&a, &inventory, source.as_ref())?;
    let (from, notes) = (&chosen.from, &chosen.notes);
    let mut monitor = Monitor::new(&inventory, &chosen.manifests, &operator, resolver)?;
    // Signed evidence states the names each violating peer stood for.
    monitor.record_names(a.evidence_key.is_some());
    if let Some(url) = &a.nats {
        let setup = nospy_stream::report::Setup {
            inventory: nospy_stream::inventory_digest(&inventory),
            window_secs: 1,
            devices: inventory
                .devices
                .iter()
                .zip(&chosen.manifests)
                .zip(from.iter().zip(notes))
                .map(|((d, m), (f, n))| {
                    (
                        d.device.clone(),
                        m.is_some(),
                        f.as_ref()
                            .map_or(serde_json::Value::Null, ManifestFrom::json),
                        n.clone(),
                    )
                })
                .collect(),
        };
        let evidence = match &a.evidence_key {
            None => None,
            Some(k) => {
                let log = source.context(
                    "--evidence-key needs --log or --server: the log to append evidence to",
                )?;
                let key = crate::util::signer_key(k)?;
                let bases = chosen.bases(Some(&log.name()));
                Some(crate::streamcmd::EvidenceTo {
                    log,
                    key,
                    bases,
                    operator: operator.clone(),
                })
            }
        };
        return crate::streamcmd::work(
            url, &a.worker, &inventory, monitor, setup, evidence, a.json,
        );
    }
    let (stats, input) = if let Some(l) = &a.listen {
        let duration = a
            .duration
            .as_deref()
            .map(|d| crate::util::duration("--duration", d))
            .transpose()?;
        nospy_stream::listen::listen(
            "nospy monitor",
            crate::util::udp_addr(l)?,
            &mut FileTemplates(a.templates.clone()),
            duration,
            &mut monitor,
        )?
    } else {
        let (path, exports) = match (&a.pcap, &a.flows) {
            (Some(p), _) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => bail!("give --pcap FILE, --flows FILE or --listen udp:ADDR"),
        };
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let total = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut progress = Progress::new("read bytes");
        let kind = if exports {
            Capture::Flows
        } else {
            Capture::Packets
        };
        read_hashed(file, total, kind, &mut monitor, &mut |done, total| {
            progress.update(done as u64, total as u64)
        })
        .with_context(|| format!("{}", path.display()))?
    };
    let dns_not_kept = monitor.dns_dropped;
    if dns_not_kept > 0 {
        eprintln!(
            "nospy: {}",
            nospy_monitor::answers_not_kept_said(dns_not_kept)
        );
    }
    let report = monitor.finish();
    let evidence = match &a.evidence_key {
        Some(k) => {
            let source = source
                .as_ref()
                .context("--evidence-key needs --log or --server: the log to append evidence to")?;
            let bases = chosen.bases(Some(&source.name()));
            Some(append_evidence(
                &report, &inventory, &bases, &operator, source, &input, k,
            )?)
        }
        None => None,
    };
    if a.json {
        let mut v = report_json(&report, &stats, from, notes);
        if dns_not_kept > 0 {
            v["dns_answers_not_kept"] = dns_not_kept.into();
        }
        if let Some(e) = &evidence {
            v["evidence"] = e.json();
        }
        print_json(&v)?;
    } else {
        crate::monitortext::print_text(&report, &stats, from, notes);
        if let Some(e) = &evidence {
            e.print();
        }
    }
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Each device's manifest and where it came from: the release of its firmware in the log (with
/// --agreement and --log/--server), else the --manifest file naming its vendor and model; and,
/// for a device left without one, why.
fn device_manifests(
    a: &MonitorArgs,
    inventory: &Inventory,
    source: Option<&LogSource>,
) -> Result<Described> {
    let files: Vec<(Arc<Manifest>, Sha256)> = a
        .manifest
        .iter()
        .map(|p| {
            let (m, digest) = load_manifest(p)?;
            Ok((Arc::new(m), digest))
        })
        .collect::<Result<_>>()?;
    let from_log = match (&a.agreement, source) {
        (Some(p), Some(src)) => Some((p, src)),
        (Some(_), None) => bail!("--agreement is for reading manifests from a log: give --log or --server too"),
        (None, Some(_)) if a.evidence_key.is_none() => bail!(
            "--log/--server without --agreement: give the agreement whose vendor keys signed the releases, to take each device's manifest from the log"
        ),
        _ => None,
    };
    let digests = nospy_policy::fleet::firmware_digests(
        inventory
            .devices
            .iter()
            .map(|d| d.firmware_sha256.as_deref()),
    );
    let mut origin = String::new();
    let verdicts = match from_log {
        Some((agreement_path, src)) => {
            let agreement = read_parsed(agreement_path, nospy_policy::Agreement::from_toml)?;
            let verifier = nospy_policy::Verifier::new(&agreement);
            origin = agreement.log_origin.clone();
            Some(
                src.verdicts(
                    &digests,
                    &verifier,
                    a.checkpoint.as_deref(),
                    crate::statements::now(),
                    false,
                    &mut Progress::callback("scanned entries"),
                )
                .with_context(|| format!("reading releases from {}", src.name()))?
                .verdicts,
            )
        }
        None => None,
    };
    let list: Vec<Arc<Manifest>> = files.iter().map(|f| f.0.clone()).collect();
    let choice = nospy_monitor::manifests::choose(inventory, &digests, verdicts.as_ref(), &list);
    if choice.manifests.iter().all(Option::is_none) {
        if a.manifest.is_empty() && from_log.is_none() {
            bail!("no manifest given (--manifest FILE, or --agreement with --log/--server): nothing to check the traffic against");
        }
        bail!("no device of the inventory has a manifest: none of the manifests given names a device's vendor and model{}", if from_log.is_some() { ", and the log has no acceptable release of any device's firmware" } else { "" });
    }
    let named: Vec<(PathBuf, Sha256)> = a
        .manifest
        .iter()
        .cloned()
        .zip(files.iter().map(|f| f.1))
        .collect();
    Ok(choice.describe(&named, &origin))
}

/// The evidence statements appended.
struct EvidenceReport {
    log: String,
    appended: Vec<(String, usize, nospy_client::Appended)>,
    skipped: Vec<(String, String)>,
    unsigned_rows: Vec<(String, String)>,
}

impl EvidenceReport {
    fn json(&self) -> serde_json::Value {
        json!({
            "log": self.log,
            "statements": self.appended.iter().map(|(d, rows, a)| json!({
                "device": d, "groups": rows, "index": a.index, "hash": a.hash.to_hex(), "duplicate": a.duplicate,
            })).collect::<Vec<_>>(),
            "skipped": self.skipped.iter().map(|(d, why)| json!({"device": d, "reason": why})).collect::<Vec<_>>(),
            "unsigned_rows": self.unsigned_rows.iter().map(|(d, why)| json!({"device": d, "reason": why})).collect::<Vec<_>>(),
        })
    }

    fn print(&self) {
        use std::io::Write as _;
        let mut out = String::new();
        if self.appended.is_empty() && self.skipped.is_empty() && self.unsigned_rows.is_empty() {
            out.push_str("\nEVIDENCE: no violations, nothing appended\n");
        } else if !self.appended.is_empty() {
            out.push_str(&format!(
                "\nEVIDENCE appended to {} ({} signed statements):\n",
                self.log,
                self.appended.len()
            ));
            for (d, rows, a) in &self.appended {
                let dup = if a.duplicate {
                    "  (already in the log)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  {d:<16} entry {:<8} {} groups  {}{dup}\n",
                    a.index,
                    rows,
                    a.hash.to_hex()
                ));
            }
        }
        for (d, why) in &self.skipped {
            out.push_str(&format!("  {d:<16} no evidence statement: {why}\n"));
        }
        for (d, why) in &self.unsigned_rows {
            out.push_str(&format!("  {d:<16} row not signed: {why}\n"));
        }
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
}

/// Signs the evidence of every device with violations and appends it to the log, all of it in
/// one batch for a local log.
fn append_evidence(
    report: &Report,
    inventory: &Inventory,
    bases: &[Option<evidence::Basis>],
    operator: &OperatorConfig,
    log: &LogSource,
    input: &Sha256,
    key_path: &std::path::Path,
) -> Result<EvidenceReport> {
    let key = crate::util::signer_key(key_path)?;
    let signed = evidence::sign(report, inventory, bases, operator, input, &key);
    let appended = crate::util::append_statements(log, &signed.statements)?;
    Ok(EvidenceReport {
        log: log.name(),
        appended: signed
            .statements
            .into_iter()
            .zip(appended)
            .map(|(s, a)| (s.device, s.groups, a))
            .collect(),
        skipped: signed.skipped,
        unsigned_rows: signed.unsigned_rows,
    })
}

/// Templates in a file, replaced whole (written beside it, fsynced, renamed over it).
struct FileTemplates(PathBuf);

impl nospy_stream::listen::Templates for FileTemplates {
    fn load(&mut self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.0) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn save(&mut self, text: &str) -> std::io::Result<()> {
        crate::util::write_file(&self.0, text.as_bytes()).map_err(std::io::Error::other)
    }
    fn name(&self) -> String {
        self.0.display().to_string()
    }
}
