//! `nospy evidence`: breach evidence read back and verified under an agreement.

use crate::util::{print_json, read_input, read_parsed};
use anyhow::{bail, Context as _, Result};
use nospy_log::Log;
use nospy_policy::breach::{verify_evidence, Case, EvidenceVerdict};
use nospy_policy::{Agreement, LoggedEntry};
use nospy_tlog::{LogIndex, TreeSize};
use std::path::PathBuf;
use std::process::ExitCode;

/// What `nospy evidence` does.
#[derive(clap::Subcommand)]
pub enum EvidenceCommand {
    /// Verify one evidence entry under an agreement, as a third party would.
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
    /// Example:
    ///   nospy evidence verify --agreement agreement.toml --log ./mirror --index 12 \
    ///     --checkpoint cosigned-checkpoint
    ///
    /// Exit status: 0 the evidence holds, 1 it does not, 2 unusable input.
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
}

/// Arguments of `nospy evidence verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The agreement (its [log], [witnesses], [[vendor]] and [monitors]).
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    /// The log directory (a mirror) holding the evidence.
    #[arg(long, value_name = "DIR")]
    log: PathBuf,
    /// The evidence entry's index.
    #[arg(long, value_name = "N")]
    index: u64,
    /// The witnessed checkpoint to verify under (a cosigned copy of one of the log's
    /// checkpoints); default the log's own `checkpoint`.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Print JSON: {"holds", "index", "organisation", "device", "firmware", "checks"}.
    #[arg(long)]
    json: bool,
}

/// Runs `nospy evidence`.
pub fn run(c: EvidenceCommand) -> Result<ExitCode> {
    let EvidenceCommand::Verify(a) = c;
    let agreement = read_parsed(&a.agreement, Agreement::from_toml)?;
    if agreement.monitors.quorum == 0 {
        bail!(
            "{}: no [monitors] section: the agreement trusts no monitor's evidence",
            a.agreement.display()
        );
    }
    let log = Log::open(&a.log)?;
    let sc = match &a.checkpoint {
        None => log.checkpoint().clone(),
        Some(p) => log.checkpoint_from_file(p)?,
    };
    let checkpoint = match &a.checkpoint {
        Some(p) => String::from_utf8(read_input(p)?)
            .with_context(|| format!("{}: not UTF-8", p.display()))?,
        None => sc.to_text(),
    };
    let size = sc.checkpoint.size;
    let logged = |index: u64, what: &str| -> Result<LoggedEntry> {
        if index >= size {
            bail!("{what} entry {index} is not under the checkpoint (size {size})");
        }
        Ok(LoggedEntry {
            index,
            bytes: log.entry(index)?,
            proof: log.inclusion_proof(LogIndex(index), TreeSize(size))?,
            proof_checkpoint: None,
        })
    };
    let evidence = logged(a.index, "the evidence")?;
    let release = match release_index(&evidence.bytes) {
        Some(i) if i < size => Some(logged(i, "the release")?),
        _ => None,
    };
    let case = Case {
        checkpoint,
        evidence,
        release,
    };
    let v = verify_evidence(&agreement, &case, crate::statements::now());
    report(&v, &agreement, a.json)?;
    Ok(if v.holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The release entry an evidence statement names, read without verifying anything (the
/// verification checks it).
fn release_index(envelope: &[u8]) -> Option<u64> {
    let env = nospy_statement::dsse::Envelope::parse(envelope).ok()?;
    let st = nospy_statement::Statement::parse(&env.payload).ok()?;
    st.predicate.get("release")?.get("index")?.as_u64()
}

fn report(v: &EvidenceVerdict, agreement: &Agreement, json: bool) -> Result<()> {
    if json {
        let mut j = serde_json::to_value(v)?;
        j["agreement"] = agreement.name.clone().into();
        return print_json(&j);
    }
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
    Ok(())
}
