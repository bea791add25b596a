//! `nospy bundle`, `nospy verify`, `nospy witness cosign`: the operator's side.

use crate::statements::now;
use crate::util::{
    hash_file, parse_digest, print_json, read_input, read_parsed, signer_key, verifier_key,
    write_output, Negative, Progress,
};
use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use nospy_client::LogSource;
use nospy_log::Log;
use nospy_policy::{verify, Agreement, Evidence, Outcome, State, Verdict};
use nospy_statement::bundle::Bundle;
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::TreeSize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the entries of a bundle (or a case file) come from, and under which checkpoint.
#[derive(Args)]
pub struct GatherArgs {
    /// The log directory (a log or a mirror).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    log: Option<PathBuf>,
    /// A running `nospy serve` instead: entries found with its lookup index, proofs from it.
    #[arg(long)]
    server: Option<String>,
    /// A signed checkpoint of this log to prove against (with witness cosignatures, from
    /// `nospy witness cosign`); default: the log's latest.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Include a consistency proof from this earlier tree size, for verifiers that remember it.
    #[arg(long)]
    since_size: Option<u64>,
}

impl GatherArgs {
    /// Every entry about `digest` with its proofs, and where they came from.
    pub fn gather(&self, digest: &nospy_tlog::Sha256) -> Result<(LogSource, Bundle)> {
        let src = LogSource::from_args(self.log.as_deref(), self.server.as_deref())
            .context("give --log or --server")?;
        let b = src.gather(
            digest,
            self.checkpoint.as_deref(),
            self.since_size,
            &mut Progress::callback("scanned entries"),
        )?;
        Ok((src, b))
    }
}

#[derive(Args)]
pub struct BundleArgs {
    #[command(flatten)]
    from: GatherArgs,
    /// SHA-256 of the artifact (`sha256:<hex>` or `<hex>`).
    #[arg(long)]
    artifact_digest: String,
    /// Write the bundle here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The firmware file (its SHA-256 is computed here). Use --digest instead to give the digest.
    #[arg(required_unless_present = "digest")]
    artifact: Option<PathBuf>,
    /// The artifact's SHA-256, instead of the file.
    #[arg(long, conflicts_with = "artifact")]
    digest: Option<String>,
    /// The agreement (TOML).
    #[arg(long)]
    agreement: PathBuf,
    /// A bundle made by `nospy bundle` (offline; cannot prove the absence of revocations).
    #[arg(long, conflicts_with = "log", required_unless_present_any = ["log", "server"])]
    bundle: Option<PathBuf>,
    /// The log directory (a mirror, say): every entry about the artifact is found there.
    #[arg(long, conflicts_with = "server")]
    log: Option<PathBuf>,
    /// A running `nospy serve`: entries found with its lookup index (whose completeness, for
    /// revocations, is the server's word), proofs from it.
    #[arg(long, conflicts_with = "bundle")]
    server: Option<String>,
    /// A signed checkpoint to verify against with --log (with witness cosignatures); default:
    /// the log's latest.
    #[arg(long, requires = "log")]
    checkpoint: Option<PathBuf>,
    /// Remember the last accepted checkpoint here; refuse any that does not extend it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Judge as of this time (RFC 3339) instead of now: the age of cosignatures and the dates of
    /// revocations are measured from it.
    #[arg(long)]
    at: Option<String>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Cosign a log's checkpoint offline, as a witness: only if it extends what this witness
    /// cosigned before (checked with a consistency proof computed from the log's tiles).
    ///
    /// Writes the checkpoint with this witness's c2sp.org/tlog-cosignature added (to standard
    /// output or --out), and remembers it in --state. Cosign a checkpoint already cosigned by
    /// others (--checkpoint) to collect several witnesses' cosignatures on one checkpoint.
    Cosign(CosignArgs),
    /// Run a c2sp.org/tlog-witness: POST /add-checkpoint cosigns a log's checkpoint when it is
    /// signed by the log and extends what this witness cosigned before (state in SQLite).
    ///
    /// Answers as the spec says: 404 for a log it does not witness, 403 for a bad signature, 400
    /// for a malformed request, 409 with the size it has cosigned (text/x.tlog.size) when the old
    /// size is not that one, 422 for a consistency proof that does not verify.
    ///
    /// Example: nospy witness serve --key witness.key --logs logs.toml --listen 127.0.0.1:7380
    Serve(WitnessServeArgs),
}

#[derive(Args)]
pub struct WitnessServeArgs {
    /// The witness's private key file.
    #[arg(long)]
    key: PathBuf,
    /// The logs it witnesses: `[[log]] origin = "..." key = "..."`.
    #[arg(long)]
    logs: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: std::net::SocketAddr,
    /// The state database (SQLite): what it last cosigned for each log.
    #[arg(long, default_value = "nospy-witness.sqlite")]
    state: PathBuf,
}

#[derive(Args)]
pub struct CosignArgs {
    /// The witness's private key file.
    #[arg(long)]
    key: PathBuf,
    /// The log directory.
    #[arg(long)]
    log: PathBuf,
    /// The log's verifier key (or a file holding it); default: the key in the log's config.
    #[arg(long)]
    log_key: Option<String>,
    /// A checkpoint of the log (perhaps cosigned already) to cosign; default: the log's latest.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The witness's state: the last checkpoint it cosigned for this log.
    #[arg(long)]
    state: PathBuf,
    /// Write the cosigned checkpoint here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn bundle(a: BundleArgs) -> Result<ExitCode> {
    let digest = parse_digest(&a.artifact_digest)?;
    let (src, b) = a.from.gather(&digest)?;
    write_output(a.out.as_deref(), &b.to_json())?;
    let n = b.entries.len();
    match &src {
        LogSource::Server(url) => {
            eprintln!("bundle: {n} entries about {} from {url}", digest.to_hex())
        }
        LogSource::Dir(_) => eprintln!(
            "bundle: {n} entries about {} under checkpoint size {}",
            digest.to_hex(),
            b.checkpoint_size()?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The state file: the last accepted checkpoint, as `<size> <base64 root>`.
fn read_state(p: &Path) -> Result<Option<State>> {
    match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(
            State::parse(&t).with_context(|| format!("{}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

pub fn verify_cmd(a: VerifyArgs) -> Result<ExitCode> {
    let text = String::from_utf8(read_input(&a.agreement)?)
        .with_context(|| format!("{}: not UTF-8", a.agreement.display()))?;
    let agreement =
        Agreement::from_toml(&text).with_context(|| format!("{}", a.agreement.display()))?;
    let artifact = match (&a.artifact, &a.digest) {
        (Some(f), _) => hash_file(f)?,
        (None, Some(d)) => parse_digest(d)?,
        (None, None) => bail!("give the artifact file or --digest"),
    };
    let state = a.state.as_deref().map(read_state).transpose()?.flatten();
    let evidence = if let Some(bp) = &a.bundle {
        let b = Bundle::parse(&read_input(bp)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", bp.display()))?;
        if b.artifact != artifact {
            eprintln!(
                "nospy: note: the bundle is for {}, not this artifact",
                b.artifact.to_hex()
            );
        }
        Evidence::from(b)
    } else {
        let src = LogSource::from_args(a.log.as_deref(), a.server.as_deref())
            .context("give --bundle, --log or --server")?;
        let mut ev = src
            .evidence_under(
                &[artifact],
                a.checkpoint.as_deref(),
                &mut Progress::callback("scanned entries"),
            )?
            .remove(&artifact)
            .context("no evidence gathered")?;
        if let (LogSource::Dir(dir), Some(s)) = (&src, &state) {
            let size = SignedCheckpoint::parse(ev.checkpoint.as_bytes())
                .context("the checkpoint")?
                .checkpoint
                .size;
            if s.size < size && s.size > 0 {
                ev.consistency = Some((
                    s.size,
                    Log::open(dir)?.consistency_proof(TreeSize(s.size), TreeSize(size))?,
                ));
            }
        }
        ev
    };
    let at = match &a.at {
        None => now(),
        Some(t) => nospy_statement::time::parse_rfc3339(t)
            .and_then(|s| u64::try_from(s).ok())
            .with_context(|| {
                format!("--at {t:?} is not an RFC 3339 time such as 2026-11-28T12:00:00Z")
            })?,
    };
    let v = verify(&agreement, &artifact, &evidence, state.as_ref(), at);
    report(&v, &agreement, a.json)?;
    if v.admit {
        if let (Some(p), Some(cp)) = (&a.state, &v.checkpoint) {
            let newer = state.is_none_or(|s| cp.size >= s.size);
            if newer {
                write_output(Some(p), cp.to_text().as_bytes())?;
            }
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn report(v: &Verdict, agreement: &Agreement, json: bool) -> Result<()> {
    if json {
        let mut j = json!({
            "admit": v.admit,
            "verdict": if v.admit { "admit" } else { "deny" },
            "artifact": v.artifact,
            "agreement": agreement.name,
            "checks": v.checks,
        });
        if !v.flags.is_empty() {
            j["flags"] = json!(v.flags);
        }
        return print_json(&j);
    }
    println!(
        "{} {} under {}",
        match (v.admit, v.flags.is_empty()) {
            (true, true) => "ADMIT",
            (true, false) => "ADMIT (FLAGGED)",
            (false, _) => "DENY",
        },
        v.artifact,
        agreement.name
    );
    for c in &v.checks {
        let mark = match c.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::NotChecked => "n/c ",
            Outcome::Skipped => "skip",
        };
        println!("  {mark} {:<16} {}", c.name, c.reason);
    }
    Ok(())
}

pub fn witness(c: WitnessCommand) -> Result<ExitCode> {
    let a = match c {
        WitnessCommand::Cosign(a) => a,
        WitnessCommand::Serve(s) => {
            let key = signer_key(&s.key)?;
            let logs = read_parsed(&s.logs, nospy_witness::logs::parse_logs)?;
            eprintln!(
                "nospy witness: {} for {} log(s)",
                key.cosigner_verifier(),
                logs.len()
            );
            nospy_witness::serve::run(nospy_witness::serve::WitnessOptions {
                key,
                logs,
                db: s.state,
                listen: s.listen,
                clock: std::sync::Arc::new(nospy_log::clock::SystemClock),
            })?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let key = signer_key(&a.key)?;
    let log = match &a.log_key {
        Some(k) => Log::open_with_key(&a.log, verifier_key(k)?)?,
        None => Log::open(&a.log)?,
    };
    let sc = match &a.checkpoint {
        None => log.checkpoint().clone(),
        Some(p) => log.checkpoint_from_file(p)?,
    };
    let state = nospy_witness::state::FileState::new(&a.state);
    // The state is committed (durably, under its lock) before the cosigned checkpoint is written.
    let out = nospy_witness::offline::cosign(&key, &log, &sc, &state, now()).map_err(|e| {
        if e.is_refusal() {
            anyhow::Error::from(Negative(format!("refused: {e}")))
        } else {
            e.into()
        }
    })?;
    write_output(a.out.as_deref(), out.to_text().as_bytes())?;
    let cp = &sc.checkpoint;
    eprintln!(
        "cosigned {} at size {} as {}",
        cp.origin,
        cp.size,
        key.cosigner_verifier()
    );
    Ok(ExitCode::SUCCESS)
}
