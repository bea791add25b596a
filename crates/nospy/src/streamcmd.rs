//! The monitor beyond one process, on NATS JetStream: `nospy collect` (sources into a partitioned
//! stream), `nospy monitor --nats` (a worker) and `nospy monitor report` (the merged report).
//! The logic is `nospy_stream`'s; here are the arguments, the threads and the printing.

use crate::util::{print_json, read_parsed};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use nospy_flow::netflow::Collector;
use nospy_flow::source::{read_exports_from, read_traffic_from};
use nospy_inventory::Inventory;
use nospy_stream::collect::{input_json, Publisher};
use nospy_stream::listen::listen;
use nospy_stream::nats::{Nats, Options};
use nospy_stream::numbering::Numbering;
use nospy_stream::outbox::Outbox;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the deployment's streams are.
#[derive(clap::Args, Clone)]
pub struct NatsArgs {
    /// The NATS server (JetStream enabled), `nats://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// The deployment's name: its streams are NAME_FLOWS, NAME_DNS and NAME_ROWS, its state
    /// NAME_STATE.
    #[arg(long, default_value = "NOSPY", value_name = "NAME")]
    pub stream: String,
}

/// Arguments of `nospy collect`.
#[derive(clap::Args)]
pub struct CollectArgs {
    /// The operator's inventory: which device has which addresses (its flows go to its
    /// partition; flows of no device are counted).
    #[arg(long)]
    inventory: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// Partitions of the flow stream, fixed when the stream is first set up (later values are
    /// ignored): the most workers that can share the judging.
    #[arg(long, default_value_t = 16)]
    partitions: u32,
    /// Captured flow exports (NetFlow v5/v9, IPFIX over UDP, in a pcap or pcapng file).
    #[arg(long, conflicts_with_all = ["pcap", "listen"], required_unless_present_any = ["pcap", "listen"])]
    flows: Option<PathBuf>,
    /// A packet capture (pcap or pcapng): its flows and DNS answers.
    #[arg(long, conflicts_with = "listen")]
    pcap: Option<PathBuf>,
    /// Collect NetFlow v5/v9 and IPFIX live on this UDP address (`udp:0.0.0.0:4739`) until
    /// interrupted or --duration has passed. Templates are kept in the state store, per
    /// exporter, so a collector started in this one's place reads data at once.
    #[arg(long, value_name = "udp:ADDR")]
    listen: Option<String>,
    /// With --listen: stop after this long (`90s`, `15m`, `1h`).
    #[arg(long, requires = "listen")]
    duration: Option<String>,
    /// Names the input in every batch's message id (default: a file's SHA-256, or the listening
    /// address and the start time). The same input under the same name is stored once, so a
    /// collector run again over a file it was killed reading adds nothing twice. A run again is
    /// refused (exit 2) where that would not hold: a file begun by a version that cuts batches
    /// otherwise, or begun more than half the deduplication window (15 minutes) ago, and a live
    /// input under a name used before.
    #[arg(long)]
    source: Option<String>,
    /// How long the flow stream keeps batches (when this collector creates it).
    #[arg(long, default_value = "24h")]
    retention: String,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
}

/// Runs `nospy collect`.
pub fn collect(a: CollectArgs) -> Result<ExitCode> {
    let inventory = read_parsed(&a.inventory, Inventory::parse)?;
    if a.partitions == 0 || a.partitions > 4096 {
        bail!("--partitions {}: between 1 and 4096", a.partitions);
    }
    let options = Options {
        retention: crate::util::duration("--retention", &a.retention)?,
        ..Options::default()
    };
    let file = a.flows.as_ref().or(a.pcap.as_ref());
    let source = match (&a.source, file, &a.listen) {
        (Some(s), _, _) => s.clone(),
        (None, Some(p), _) => format!("sha256-{}", crate::util::hash_file(p)?.to_hex()),
        (None, None, Some(l)) => format!(
            "{}-{}",
            l.replace([':', '.', '[', ']'], "-"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ),
        _ => bail!("give --flows FILE, --pcap FILE or --listen udp:ADDR"),
    };
    if source.is_empty()
        || !source
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        bail!("--source {source:?}: letters, digits, '-' and '_' only");
    }
    let numbering = std::sync::Arc::new(Numbering::new(&inventory));
    let started = Outbox::start(
        &a.nats.nats,
        &a.nats.stream,
        a.partitions,
        options,
        numbering.clone(),
        nospy_stream::collect::Input {
            source: source.clone(),
            live: a.listen.is_some(),
        },
    )
    .with_context(|| format!("NATS at {}", a.nats.nats))?;
    let (outbox, partitions) = (started.outbox, started.partitions);
    let mut sink = outbox.sink(Publisher::new(&inventory, numbering, partitions, &source));
    let stats = if let Some(l) = &a.listen {
        let addr = crate::util::udp_addr(l)?;
        let d = a
            .duration
            .as_deref()
            .map(|d| crate::util::duration("--duration", d))
            .transpose()?;
        let mut store = outbox.templates(started.templates);
        listen("nospy collect", addr, &mut store, d, &mut sink)?.0
    } else {
        let (path, exports) = match (&a.flows, &a.pcap) {
            (Some(p), _) => (p, true),
            (None, Some(p)) => (p, false),
            _ => bail!("give --flows FILE, --pcap FILE or --listen udp:ADDR"),
        };
        let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let total = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut progress = crate::util::Progress::new("read bytes");
        let mut tell = |done: usize, total: usize| progress.update(done as u64, total as u64);
        if exports {
            read_exports_from(f, total, &mut Collector::new(), &mut sink, &mut tell)
        } else {
            read_traffic_from(f, total, &mut sink, &mut tell)
        }
        .with_context(|| format!("{}", path.display()))?
    };
    let publisher = sink.finish()?;
    let (attributed, unattributed) = (publisher.attributed, publisher.unattributed);
    outbox.put(
        format!("input.{source}"),
        Bytes::from(input_json(&stats).to_string()),
    )?;
    let dups = outbox.finish()?;
    let out = json!({
        "source": source,
        "partitions": partitions,
        "flows": attributed,
        "flows_of_no_device": unattributed,
        "batches_already_stored": dups,
        "input": input_json(&stats),
    });
    if a.json {
        print_json(&out)?;
    } else {
        println!(
            "{attributed} flows of devices published to {} partitions of {}_FLOWS; {unattributed} flows of no device counted; {dups} batches were already stored (source {source})",
            partitions, a.nats.stream
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The worker's own arguments of `nospy monitor --nats`.
#[derive(clap::Args, Clone, Default)]
pub struct WorkerArgs {
    /// With --nats: the partitions this worker may take, `A-B` or `A` (default: all). Workers
    /// share the partitions they may take, each holding its fair share, and take over those of
    /// a worker that stops.
    #[arg(long, requires = "nats", value_name = "A-B")]
    pub partitions: Option<String>,
    /// With --nats: the window length of the rows (`5m`, `1h`): each window's counts can be
    /// reported apart (`nospy monitor report --window`).
    #[arg(long, requires = "nats", default_value = "5m")]
    pub window: String,
    /// With --nats: the longest time what a worker counted stays unappended to its chain.
    #[arg(long, requires = "nats", default_value = "1s")]
    pub flush: String,
    /// With --nats: stop once every partition this worker may take has been counted to the end
    /// of the stream (for a file's flows; a live worker runs until interrupted).
    #[arg(long, requires = "nats")]
    pub until_caught_up: bool,
    /// With --nats and --evidence-key: each window's violations are signed (per device, about
    /// its firmware, the window's bounds as the evidence's window) and appended once flows have
    /// started this long after the window's end (or, on a quiet partition, once the clock has),
    /// and at the end with --until-caught-up. A window signed twice (a worker died in between)
    /// gives the same statements: duplicates in the log, not new entries.
    #[arg(long, requires = "nats", default_value = "1m")]
    pub lateness: String,
    /// With --nats: this worker's name in its leases (default: host and process id).
    #[arg(long, requires = "nats")]
    pub worker_id: Option<String>,
    /// With --nats: the deployment's name.
    #[arg(long, requires = "nats", default_value = "NOSPY", value_name = "NAME")]
    pub stream: String,
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a = s.trim().parse().ok()?;
            Some((a, a))
        }
    }
}

/// Where a worker's evidence goes: the log, the monitor's key, what each device's flows are
/// judged against and the operator's resolutions, as evidence records them.
pub struct EvidenceTo {
    /// The log evidence is appended to.
    pub log: nospy_client::LogSource,
    /// The monitor's key.
    pub key: nospy_tlog::note::SignerKey,
    /// Per device, what its flows are judged against.
    pub bases: Vec<Option<nospy_monitor::evidence::Basis>>,
    /// The operator's configuration.
    pub operator: nospy_inventory::OperatorConfig,
}

/// Signs the evidence of one partition's closed window (`nospy_stream::report::sign_window`)
/// and appends it.
fn window_evidence(
    e: &EvidenceTo,
    inventory: &Inventory,
    setup: &nospy_stream::report::Setup,
    (p, w, deltas): (u32, u64, Vec<nospy_monitor::Delta>),
) -> Result<()> {
    let signed = nospy_stream::report::sign_window(
        setup,
        inventory,
        &e.bases,
        &e.operator,
        &e.key,
        w,
        &deltas,
    )?;
    // Rows the reference judgement does not reproduce from what they record are not signed
    // (as `nospy monitor --evidence-key` reports them): how many, and the first with why.
    if let Some((device, why)) = signed.unsigned_rows.first() {
        eprintln!(
            "nospy monitor: partition {p}, window {}: {} violation rows not signed, as the reference judgement does not reproduce them from what they record (the first, of {device}: {why})",
            nospy_monitor::evidence::format_time(w.saturating_mul(1_000_000_000)),
            signed.unsigned_rows.len(),
        );
    }
    if signed.statements.is_empty() {
        return Ok(());
    }
    // The log's client may run a runtime of its own: from a thread of its own.
    let appended = std::thread::scope(|s| {
        s.spawn(|| crate::util::append_statements(&e.log, &signed.statements))
            .join()
            .map_err(|_| anyhow::anyhow!("appending evidence panicked"))
    })??;
    let dups = appended.iter().filter(|a| a.duplicate).count();
    eprintln!(
        "nospy monitor: partition {p}, window {}: {} evidence statements appended to {} ({dups} already there): entries {}",
        nospy_monitor::evidence::format_time(w.saturating_mul(1_000_000_000)),
        appended.len(),
        e.log.name(),
        appended.iter().map(|a| a.index.to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Runs a worker: `monitor` judges, `setup` is what it records about the devices; with
/// `evidence`, each closed window's violations are signed and appended.
pub fn work(
    url: &str,
    w: &WorkerArgs,
    inventory: &Inventory,
    mut monitor: nospy_monitor::Monitor,
    setup: nospy_stream::report::Setup,
    evidence: Option<EvidenceTo>,
    json: bool,
) -> Result<ExitCode> {
    let lateness = crate::util::duration("--lateness", &w.lateness)?;
    let window = crate::util::duration("--window", &w.window)?
        .as_secs()
        .max(1);
    let flush = crate::util::duration("--flush", &w.flush)?;
    let id = w.worker_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::fs::read_to_string("/etc/hostname")
                .unwrap_or_default()
                .trim()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            std::process::id()
        )
    });
    let range = match &w.partitions {
        None => None,
        Some(s) => Some(
            parse_range(s).with_context(|| format!("--partitions {s:?}: A-B or A, such as 0-7"))?,
        ),
    };
    let cfg = nospy_stream::worker::Config {
        id,
        partitions: Default::default(),
        window_secs: window,
        flush,
        until_caught_up: w.until_caught_up,
        inventory: nospy_stream::inventory_digest(inventory),
        numbering: std::sync::Arc::new(nospy_stream::numbering::Numbering::new(inventory)),
        close_after: evidence.as_ref().map(|_| lateness),
    };
    let st = nospy_stream::worker::serve(
        url,
        &w.stream,
        range,
        cfg,
        setup,
        &mut monitor,
        &mut |m| eprintln!("nospy monitor: {m}"),
        &mut |setup, p, w, deltas| match &evidence {
            Some(e) => window_evidence(e, inventory, setup, (p, w, deltas))
                .map_err(|e| format!("{e:#}").into()),
            None => Ok(()),
        },
    );
    let st = st.map_err(|e| anyhow::anyhow!("{e}"))?;
    let v = json!({
        "flows": st.flows, "messages": st.messages, "refused": st.refused,
        "parts": st.parts, "partitions_taken": st.taken, "partitions_lost": st.lost,
        "late_flows": st.late, "chunked_parts": st.chunked_parts,
        "dns_answers_not_kept": monitor.dns_dropped,
        "partitions_taken_with_answers_unread": st.taken_with_answers_unread,
        "dns_answers_read_again": st.dns_answers_read_again,
        "dns_messages_refused": st.dns_messages_refused,
    });
    if json {
        print_json(&v)?;
    } else {
        println!(
            "{} flows judged from {} messages ({} refused); {} parts appended; {} partitions taken, {} lost",
            st.flows, st.messages, st.refused, st.parts, st.taken, st.lost
        );
    }
    if monitor.dns_dropped > 0 {
        eprintln!(
            "nospy monitor: {}",
            nospy_monitor::answers_not_kept_said(monitor.dns_dropped)
        );
    }
    if st.taken_with_answers_unread > 0 {
        eprintln!(
            "nospy monitor: {} partitions were taken where another worker's parts end (or this one's before it restarted) and the answers stream no longer kept every DNS answer before: for a day after, flows only a name could allow are unattributable, never violations",
            st.taken_with_answers_unread
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `nospy monitor report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// The window (its start, RFC 3339 or Unix seconds), or a range `START..END` of window
    /// starts; default: every window.
    #[arg(long)]
    window: Option<String>,
    /// Print the report as `nospy monitor --json` does.
    #[arg(long)]
    json: bool,
}

fn instant(s: &str) -> Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let t = nospy_statement::time::parse_rfc3339(s)
        .with_context(|| format!("--window {s:?}: a window start is RFC 3339 or Unix seconds"))?;
    Ok(t.max(0) as u64)
}

/// Runs `nospy monitor report`.
pub fn report(a: ReportArgs) -> Result<ExitCode> {
    let range = match &a.window {
        None => None,
        Some(w) => Some(match w.split_once("..") {
            Some((x, y)) => (instant(x)?, instant(y)?),
            None => (instant(w)?, instant(w)?),
        }),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting")?;
    let m = rt
        .block_on(async {
            let nats = Nats::connect(&a.nats.nats, &a.nats.stream, Options::default())
                .await
                .map_err(nospy_stream::report::ReportError::Transport)?;
            nospy_stream::report::merge(&nats, range).await
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let v = nospy_stream::report::merged_json(&m);
    eprintln!(
        "nospy monitor report: {} windows of {} s from {} partitions{}",
        m.windows.len(),
        m.setup.window_secs,
        m.partitions.len(),
        if m.refused > 0 {
            format!(
                "; {} messages on the flow stream were not batches",
                m.refused
            )
        } else {
            String::new()
        }
    );
    if a.json {
        print_json(&v)?;
    } else {
        let from: Vec<_> = m
            .setup
            .devices
            .iter()
            .map(|d| crate::monitortext::manifest_from_json(&d.2))
            .collect();
        let notes: Vec<_> = m.setup.devices.iter().map(|d| d.3.clone()).collect();
        crate::monitortext::print_text(&m.report, &m.stats, &from, &notes);
    }
    Ok(if m.report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
