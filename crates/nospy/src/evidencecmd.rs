//! `nospy evidence`: breach evidence read back and verified under an agreement.

use crate::util::{print_json, read_input, read_parsed};
use anyhow::{bail, Context as _, Result};
use nospy_client::LogSource;
use nospy_monitor::reproduce::{check_capture, Capture};
use nospy_policy::breach::{is_evidence, verify_evidence, Case, EvidenceVerdict};
use nospy_policy::Agreement;
use nospy_statement::bundle::Bundle;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `nospy evidence` does.
#[derive(clap::Subcommand)]
pub enum EvidenceCommand {
    /// Verify evidence under an agreement, as a third party would: one entry of a log, or every
    /// evidence entry of a case file (offline).
    ///
    /// Checks, in order: the checkpoint (the agreement's log signature and a quorum of its
    /// witnesses' cosignatures; no freshness is asked, evidence is read long after); the
    /// signature (a monitor key of the agreement's [monitors]: a changed statement and an
    /// unknown key are told apart); the entry's inclusion under the checkpoint; the release
    /// entry the evidence names (signed by a vendor of the agreement, included, about the
    /// evidence's firmware); and every row judged again against that release's manifest with
    /// the resolutions the evidence records: not allowed, for the reason the evidence gives. A
    /// row the manifest allows (a monitor framing a device), or whose judgement depends on what
    /// the evidence does not record, fails.
    ///
    /// With --capture (or --flows), the capture the evidence names is read again for the
    /// device: its SHA-256 must be the evidence's source, it must cover the evidence's window,
    /// and it must yield each of the evidence's rows exactly.
    ///
    /// Examples:
    ///   nospy evidence verify case.json --agreement agreement.toml
    ///   nospy evidence verify case.json --agreement agreement.toml --capture site-0001.pcap
    ///   nospy evidence verify --agreement agreement.toml --log ./mirror --index 12 \
    ///     --checkpoint cosigned-checkpoint
    ///   nospy evidence verify --agreement agreement.toml --server https://log.example --index 12
    ///
    /// Exit status: 0 the evidence holds, 1 it does not, 2 unusable input.
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Gather a case file: everything a third party needs to verify the evidence about a
    /// firmware offline.
    ///
    /// The file is a bundle (`nospy bundle`'s format): one witnessed checkpoint, the release,
    /// its attestations, revocations and every evidence entry about the firmware, each with its
    /// inclusion proof under that checkpoint (and a consistency proof from --since-size). The
    /// capture the evidence came from travels beside it (its digest is in the evidence).
    ///
    /// Example:
    ///   nospy evidence case 9f86d0... --log ./mirror --checkpoint cosigned-checkpoint \
    ///     --out case.json
    #[command(verbatim_doc_comment)]
    Case(CaseArgs),
}

/// Arguments of `nospy evidence verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A case file (`nospy evidence case`, or any bundle): verify its evidence entries offline.
    #[arg(value_name = "CASE", conflicts_with_all = ["log", "checkpoint"], required_unless_present_any = ["log", "server"])]
    case: Option<PathBuf>,
    /// The agreement (its [log], [witnesses], [[vendor]] and [monitors]).
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    /// The log directory (a mirror) holding the evidence, instead of a case file.
    #[arg(
        long,
        value_name = "DIR",
        requires = "index",
        conflicts_with = "server"
    )]
    log: Option<PathBuf>,
    /// A running `nospy serve` holding the evidence, instead of a case file (entries and proofs
    /// from it; nothing it says is trusted).
    #[arg(long, value_name = "URL", requires = "index", conflicts_with = "case")]
    server: Option<String>,
    /// The evidence entry's index (with --log or --server, required; with a case file, only
    /// that entry).
    #[arg(long, value_name = "N")]
    index: Option<u64>,
    /// With --log: the witnessed checkpoint to verify under (a cosigned copy of one of the
    /// log's checkpoints); default the log's own `checkpoint`.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The packet capture the evidence came from: its SHA-256 must be the evidence's source,
    /// and read again for the device (judged as the monitor did) it must cover the evidence's
    /// window and yield each of its rows exactly.
    #[arg(long, value_name = "FILE", conflicts_with = "flows")]
    capture: Option<PathBuf>,
    /// The captured flow exports (NetFlow, IPFIX) the evidence came from, as --capture.
    #[arg(long, value_name = "FILE")]
    flows: Option<PathBuf>,
    /// Print JSON: {"holds", "agreement", "evidence": [{"holds", "index", "organisation",
    /// "device", "firmware", "checks"}]}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `nospy evidence case`.
#[derive(clap::Args)]
pub struct CaseArgs {
    /// SHA-256 of the firmware the evidence is about (`sha256:<hex>` or `<hex>`).
    #[arg(value_name = "DIGEST")]
    digest: String,
    #[command(flatten)]
    from: crate::admit::GatherArgs,
    /// Write the case file here.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `nospy evidence`.
pub fn run(c: EvidenceCommand) -> Result<ExitCode> {
    match c {
        EvidenceCommand::Verify(a) => verify(a),
        EvidenceCommand::Case(a) => case(a),
    }
}

fn case(a: CaseArgs) -> Result<ExitCode> {
    let digest = crate::util::parse_digest(&a.digest)?;
    let (src, b) = a.from.gather(&digest)?;
    let evidence: Vec<u64> = b
        .entries
        .iter()
        .filter(|e| is_evidence(&e.entry))
        .map(|e| e.proof.index)
        .collect();
    if evidence.is_empty() {
        bail!(
            "{} holds no evidence about {} under the checkpoint: nothing to make a case of",
            src.name(),
            digest.to_hex()
        );
    }
    crate::util::write_output(Some(&a.out), &b.to_json())?;
    let list: Vec<String> = evidence.iter().map(u64::to_string).collect();
    eprintln!(
        "case for {}: {} entries, of which evidence entries {}, under checkpoint size {}; written to {}",
        digest.to_hex(),
        b.entries.len(),
        list.join(", "),
        b.checkpoint_size()?,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let agreement = read_parsed(&a.agreement, Agreement::from_toml)?;
    if agreement.monitors.quorum == 0 {
        bail!(
            "{}: no [monitors] section: the agreement trusts no monitor's evidence",
            a.agreement.display()
        );
    }
    let source = LogSource::from_args(a.log.as_deref(), a.server.as_deref());
    let cases = match (&a.case, source) {
        (Some(p), _) => {
            let b = Bundle::parse(&read_input(p)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let cases = Case::all_in(&b, a.index);
            match (cases.is_empty(), a.index) {
                (true, Some(i)) => bail!("{}: no evidence entry {i} in this case", p.display()),
                (true, None) => bail!("{}: no evidence entry in this case", p.display()),
                _ => cases,
            }
        }
        (None, Some(src)) => vec![src.case_at(a.index.unwrap_or(0), a.checkpoint.as_deref())?],
        (None, None) => bail!("give a case file, or --log DIR or --server URL with --index N"),
    };
    let now = crate::statements::now();
    let mut verdicts: Vec<EvidenceVerdict> = cases
        .iter()
        .map(|c| verify_evidence(&agreement, c, now))
        .collect();
    let capture = match (&a.capture, &a.flows) {
        (Some(p), _) => Some((p, Capture::Packets)),
        (None, Some(p)) => Some((p, Capture::Flows)),
        (None, None) => None,
    };
    if let Some((path, kind)) = capture {
        let name = path.display().to_string();
        for v in &mut verdicts {
            check_capture(v, kind, &name, || std::fs::File::open(path))
                .with_context(|| format!("reading {name}"))?;
        }
    }
    let holds = verdicts.iter().all(|v| v.holds);
    report(&verdicts, holds, &agreement, a.json)?;
    Ok(if holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(vs: &[EvidenceVerdict], holds: bool, agreement: &Agreement, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "holds": holds,
            "agreement": agreement.name,
            "evidence": vs,
        }));
    }
    for v in vs {
        println!(
            "{} evidence entry {}{} under {}",
            if v.holds { "HOLDS" } else { "FAILS" },
            v.index,
            match (&v.device, &v.organisation) {
                (Some(d), Some(o)) => format!(" (device {d}, monitor {o})"),
                _ => String::new(),
            },
            agreement.name
        );
        for c in &v.checks {
            let mark = match c.pass {
                Some(true) => "ok  ",
                Some(false) => "FAIL",
                None => "skip",
            };
            println!("  {mark} {:<11} {}", c.name.as_str(), c.reason);
        }
    }
    Ok(())
}
