//! `nospy release sign`, `nospy attest`, `nospy revoke`: the signed statements vendors and
//! evaluators put in the log.

use crate::util::{hash_file, parse_digest};
use crate::util::{print_json, read_input, signer_key, write_output};
use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use nospy_log::Log;
use nospy_manifest::Manifest;
use nospy_statement::predicate::{
    Attestation, AttestationKind, EntryRef, Outcome, Predicate, Release, Revocation, Source,
};
use nospy_statement::time::{format_rfc3339, parse_rfc3339};
use nospy_statement::{inspect, sign, DigestSet, Envelope, ResourceDescriptor};
use nospy_tlog::hash::leaf_hash;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Sign a release statement for a firmware build (the vendor's step).
    ///
    /// The statement names each artifact by SHA-256, the product and version, the source commit,
    /// the SBOM's and build recipe's digests, and embeds the behaviour manifest (whom the device
    /// may talk to). It is written as a DSSE envelope around an in-toto statement, ready for
    /// `nospy log add`.
    ///
    /// Example:
    ///   nospy release sign --key vendor.key --artifact fw.bin --product vx-ran-5000 \
    ///     --version 4.2.0 --source-commit 9f2c1e --manifest manifest.toml --out release.json
    #[command(verbatim_doc_comment)]
    #[command(disable_version_flag = true)]
    Sign(SignArgs),
}

#[derive(Args)]
pub struct SignArgs {
    /// The vendor's private key file.
    #[arg(long)]
    key: PathBuf,
    /// The firmware files (one or more).
    #[arg(long, required = true)]
    artifact: Vec<PathBuf>,
    /// The product (model); must be the manifest's model.
    #[arg(long)]
    product: String,
    /// The version.
    #[arg(long = "version", id = "release_version")]
    release_version: String,
    /// The source commit the build was made from.
    #[arg(long)]
    source_commit: String,
    /// The source repository (URL).
    #[arg(long)]
    source_repo: Option<String>,
    /// The SBOM file (its digest goes in the statement).
    #[arg(long)]
    sbom: Option<PathBuf>,
    /// The build recipe evaluators follow to rebuild (its digest goes in the statement).
    #[arg(long)]
    build_recipe: Option<PathBuf>,
    /// Versions this release replaces (repeatable).
    #[arg(long)]
    supersedes: Vec<String>,
    /// The behaviour manifest (TOML).
    #[arg(long)]
    manifest: PathBuf,
    /// The vendor's name (default: the manifest's vendor).
    #[arg(long)]
    vendor: Option<String>,
    /// Write the envelope here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON: {"subject": [...], "envelope": {...}}.
    #[arg(long)]
    json: bool,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// The shipped binary is bit for bit the one rebuilt from reviewed source.
    BinaryEquivalence,
    /// The source was reviewed.
    SourceReview,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum ResultArg {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
}

#[derive(Args)]
pub struct AttestArgs {
    /// The evaluator's private key file.
    #[arg(long)]
    key: PathBuf,
    /// What was checked.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The binary the vendor shipped.
    #[arg(long)]
    shipped: PathBuf,
    /// The binary rebuilt from reviewed source (binary-equivalence).
    #[arg(long)]
    rebuilt: Option<PathBuf>,
    /// The verdict, for source-review (binary-equivalence decides it by comparing).
    #[arg(long, value_enum)]
    result: Option<ResultArg>,
    /// Index of the release entry in the log.
    #[arg(long)]
    release_entry: u64,
    /// The log directory holding the release entry.
    #[arg(long)]
    log: PathBuf,
    /// The repository rebuilt from.
    #[arg(long)]
    source_repo: Option<String>,
    /// The commit rebuilt from (default: the release's).
    #[arg(long)]
    source_commit: Option<String>,
    /// The toolchain used.
    #[arg(long)]
    toolchain: Option<String>,
    /// Write the envelope here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON: {"result", "subject", "release_entry", "diff", "envelope"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The vendor's or evaluator's private key file.
    #[arg(long)]
    key: PathBuf,
    /// SHA-256 of an artifact to revoke (repeatable).
    #[arg(long, required = true)]
    artifact_digest: Vec<String>,
    /// Why.
    #[arg(long)]
    reason: String,
    /// From when (RFC 3339; default: now).
    #[arg(long)]
    effective: Option<String>,
    /// Write the envelope here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn subjects(files: &[PathBuf]) -> Result<Vec<ResourceDescriptor>> {
    files
        .iter()
        .map(|f| {
            let d = hash_file(f)?;
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            Ok(ResourceDescriptor {
                name,
                digest: Some(DigestSet::sha256(&d)),
                ..Default::default()
            })
        })
        .collect()
}

fn emit(env: &Envelope, out: Option<&Path>, json: bool, extra: serde_json::Value) -> Result<()> {
    let bytes = env.to_json();
    if bytes.len() > nospy_tlog::tile::MAX_ENTRY_LEN {
        bail!("the statement is {} bytes, over the 65,535-byte log entry limit (a manifest this large cannot be logged)", bytes.len());
    }
    if json {
        let mut v = extra;
        v["envelope"] = serde_json::from_slice(&bytes)?;
        if let Some(p) = out {
            write_output(Some(p), &bytes)?;
        }
        print_json(&v)
    } else {
        write_output(out, &bytes)
    }
}

pub fn release(c: ReleaseCommand) -> Result<ExitCode> {
    let ReleaseCommand::Sign(a) = c;
    let key = signer_key(&a.key)?;
    let text = String::from_utf8(read_input(&a.manifest)?)
        .with_context(|| format!("{}: not UTF-8", a.manifest.display()))?;
    let manifest =
        Manifest::from_toml(&text).with_context(|| format!("{}", a.manifest.display()))?;
    if manifest.device.model != a.product {
        bail!(
            "{}: the manifest is for model {:?}, not --product {:?}",
            a.manifest.display(),
            manifest.device.model,
            a.product
        );
    }
    let vendor = a.vendor.unwrap_or_else(|| manifest.device.vendor.clone());
    if vendor != manifest.device.vendor {
        bail!(
            "{}: the manifest is for vendor {:?}, not --vendor {:?}",
            a.manifest.display(),
            manifest.device.vendor,
            vendor
        );
    }
    let digest_of = |p: &Option<PathBuf>| -> Result<Option<DigestSet>> {
        p.as_ref()
            .map(|p| hash_file(p).map(|d| DigestSet::sha256(&d)))
            .transpose()
    };
    let subject = subjects(&a.artifact)?;
    let p = Predicate::Release(Box::new(Release {
        vendor,
        product: a.product,
        version: a.release_version,
        source: Source {
            repository: a.source_repo,
            commit: a.source_commit,
            toolchain: None,
        },
        sbom: digest_of(&a.sbom)?,
        build_recipe: digest_of(&a.build_recipe)?,
        supersedes: a.supersedes,
        manifest,
    }));
    let env = sign(subject.clone(), &p, &[&key]);
    emit(
        &env,
        a.out.as_deref(),
        a.json,
        json!({ "subject": subject }),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn attest(a: AttestArgs) -> Result<ExitCode> {
    let key = signer_key(&a.key)?;
    let log = Log::open(&a.log)?;
    let entry = log.entry(a.release_entry)?;
    let (opened, _) = inspect(&entry).with_context(|| {
        format!(
            "entry {} of {} is not a signed nospy statement",
            a.release_entry,
            a.log.display()
        )
    })?;
    let Predicate::Release(release) = &opened.predicate else {
        bail!(
            "entry {} of {} is not a release statement",
            a.release_entry,
            a.log.display()
        );
    };
    let shipped = hash_file(&a.shipped)?;
    if !opened.statement.is_about(&shipped) {
        bail!(
            "{} (sha256 {shipped}) is not an artifact of release entry {}",
            a.shipped.display(),
            a.release_entry
        );
    }
    let (result, diff) = match a.kind {
        KindArg::BinaryEquivalence => {
            if a.result.is_some() {
                bail!("--result is decided by comparing --shipped and --rebuilt for binary-equivalence");
            }
            let rebuilt = a
                .rebuilt
                .as_ref()
                .context("binary-equivalence needs --rebuilt")?;
            let report = crate::diffcmd::compare(&a.shipped, rebuilt)?;
            if report.identical {
                (Outcome::Pass, None)
            } else {
                (Outcome::Fail, Some(report.summary(32)))
            }
        }
        KindArg::SourceReview => {
            match a.result.context("source-review needs --result pass|fail")? {
                ResultArg::Pass => (Outcome::Pass, None),
                ResultArg::Fail => (Outcome::Fail, None),
            }
        }
    };
    let p = Predicate::Attestation(Attestation {
        kind: match a.kind {
            KindArg::BinaryEquivalence => AttestationKind::BinaryEquivalence,
            KindArg::SourceReview => AttestationKind::SourceReview,
        },
        result,
        release: EntryRef {
            log: log.checkpoint().checkpoint.origin.clone(),
            index: a.release_entry,
            leaf_hash: leaf_hash(&entry).to_hex(),
        },
        rebuilt_from: Some(Source {
            repository: a.source_repo.or_else(|| release.source.repository.clone()),
            commit: a
                .source_commit
                .unwrap_or_else(|| release.source.commit.clone()),
            toolchain: a.toolchain,
        }),
        diff: diff.clone(),
    });
    let subject = vec![ResourceDescriptor {
        name: a
            .shipped
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        digest: Some(DigestSet::sha256(&shipped)),
        ..Default::default()
    }];
    let env = sign(subject, &p, &[&key]);
    let word = if result == Outcome::Pass {
        "pass"
    } else {
        "fail"
    };
    if !a.json {
        eprintln!(
            "attestation: {word} for {} (release entry {})",
            a.shipped.display(),
            a.release_entry
        );
        if let Some(d) = &diff {
            eprintln!("  {}", d.summary);
        }
    }
    emit(
        &env,
        a.out.as_deref(),
        a.json,
        json!({ "result": word, "subject": shipped.to_hex(), "release_entry": a.release_entry, "diff": diff }),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(a: RevokeArgs) -> Result<ExitCode> {
    let key = signer_key(&a.key)?;
    let effective = match a.effective {
        Some(t) => {
            parse_rfc3339(&t).with_context(|| {
                format!("--effective {t:?} is not an RFC 3339 time (2026-11-28T12:00:00Z)")
            })?;
            t
        }
        None => format_rfc3339(now() as i64),
    };
    let subject = a
        .artifact_digest
        .iter()
        .map(|d| {
            Ok(ResourceDescriptor {
                digest: Some(DigestSet::sha256(&parse_digest(d)?)),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let p = Predicate::Revocation(Revocation {
        reason: a.reason,
        effective,
    });
    emit(
        &sign(subject, &p, &[&key]),
        a.out.as_deref(),
        false,
        json!({}),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The time now, POSIX seconds (the only clock the commands read).
pub fn now() -> u64 {
    use nospy_log::clock::Clock as _;
    nospy_log::clock::SystemClock.now()
}
