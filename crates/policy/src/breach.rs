//! Breach evidence verified under an agreement: one evidence entry, signed by a monitor the
//! agreement trusts, included under a checkpoint its witnesses cosigned, naming a release of the
//! agreement's vendor that is included too and is about the evidence's firmware, and every row
//! of it not allowed by that release's manifest when judged again ([`nospy_manifest::judge`])
//! with the resolutions the evidence records. No I/O: the caller gathers the entries and proofs.
//!
//! Freshness is not asked of the checkpoint (evidence is verified long after it was logged, by
//! whoever receives the case); its log signature and a quorum of witness cosignatures are.

use crate::agreement::Agreement;
use crate::logged::{check_signatures, LoggedEntry};
use nospy_manifest::judge::{self, Judgement, Observed};
use nospy_manifest::Direction;
use nospy_statement::bundle::{Bundle, BundleEntry};
use nospy_statement::predicate::{Evidence, Predicate, Release, EVIDENCE_V1, EVIDENCE_V2};
use nospy_statement::{open, Opened, StatementError};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::Sha256;
use serde::Serialize;

/// Cosignatures dated further in the future than this are not counted.
const CLOCK_SKEW: u64 = 300;

/// What evidence verification is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The signed checkpoint (with cosignatures), verbatim.
    pub checkpoint: String,
    /// The evidence entry, with its inclusion proof.
    pub evidence: LoggedEntry,
    /// The release entry the evidence names, with its inclusion proof (`None`: not found).
    pub release: Option<LoggedEntry>,
}

impl Case {
    /// Every evidence entry of a bundle (a case file), or only entry `index`, each with the
    /// release entry it names when the bundle holds it. Nothing is verified here.
    pub fn all_in(bundle: &Bundle, index: Option<u64>) -> Vec<Case> {
        let logged = |e: &BundleEntry| LoggedEntry {
            index: e.proof.index,
            bytes: e.entry.clone(),
            proof: e.proof.proof.clone(),
            proof_checkpoint: Some(e.proof.checkpoint.clone()),
        };
        bundle
            .entries
            .iter()
            .filter(|e| is_evidence(&e.entry))
            .filter(|e| index.is_none_or(|i| e.proof.index == i))
            .map(|e| {
                let named = release_index(&e.entry);
                Case {
                    checkpoint: bundle.checkpoint.clone(),
                    evidence: logged(e),
                    release: bundle
                        .entries
                        .iter()
                        .find(|r| Some(r.proof.index) == named)
                        .map(logged),
                }
            })
            .collect()
    }
}

/// The statement an envelope carries, read without verifying anything.
fn unverified_statement(envelope: &[u8]) -> Option<nospy_statement::Statement> {
    let env = nospy_statement::dsse::Envelope::parse(envelope).ok()?;
    nospy_statement::Statement::parse(&env.payload).ok()
}

/// Whether a log entry is an evidence statement (of either version), read without verifying
/// anything: for choosing what to verify.
pub fn is_evidence(envelope: &[u8]) -> bool {
    unverified_statement(envelope)
        .is_some_and(|s| [EVIDENCE_V1, EVIDENCE_V2].contains(&s.predicate_type.as_str()))
}

/// The index of the release entry an evidence statement names, read without verifying
/// anything (the verification checks it).
pub fn release_index(envelope: &[u8]) -> Option<u64> {
    unverified_statement(envelope)?
        .predicate
        .get("release")?
        .get("index")?
        .as_u64()
}

/// Which check of an evidence verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EvidenceCheck {
    /// The checkpoint: the log's signature, a quorum of witness cosignatures.
    Checkpoint,
    /// The evidence is signed by a monitor of the agreement.
    Signature,
    /// The evidence entry is included under the checkpoint.
    Inclusion,
    /// The release it names: the agreement's vendor's, included, about the same firmware.
    Release,
    /// Every row, judged again against the release's manifest, is not allowed for the reason
    /// the evidence gives.
    Rows,
    /// With the capture given: its digest is the evidence's source, it covers the evidence's
    /// window, and read again it yields the evidence's rows (made by the caller, which reads
    /// the capture; see [`EvidenceVerdict::capture`]).
    Capture,
}

impl EvidenceCheck {
    /// The name reports print.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceCheck::Checkpoint => "checkpoint",
            EvidenceCheck::Signature => "signature",
            EvidenceCheck::Inclusion => "inclusion",
            EvidenceCheck::Release => "release",
            EvidenceCheck::Rows => "rows",
            EvidenceCheck::Capture => "capture",
        }
    }
}

/// Why an evidence check failed, as a kind a program can test (and `--json` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Failure {
    /// The checkpoint is not the agreement's log's, or lacks the witnesses' quorum.
    Checkpoint,
    /// The entry is not a DSSE envelope of a nospy statement.
    Malformed,
    /// A signature names a monitor key of the agreement but does not verify (the statement was
    /// changed after signing).
    BadSignature,
    /// No signature is by a monitor key of the agreement.
    UnknownMonitor,
    /// The statement is not evidence.
    NotEvidence,
    /// The evidence names more than one firmware.
    Subjects,
    /// The inclusion proof does not verify against the checkpoint (or is for another one).
    NotIncluded,
    /// Evidence of the first version, which names no release entry and records no resolutions:
    /// it cannot be judged again.
    Unjudgeable,
    /// The release entry it names is not in the case, or is another entry, or in another log.
    ReleaseMissing,
    /// The release entry is not a release signed by a vendor of the agreement (or names another
    /// vendor than the key's).
    ReleaseNotVendor,
    /// The release is about other firmware than the evidence.
    ReleaseOtherFirmware,
    /// A row the release's manifest allows.
    RowAllowed,
    /// A row the judgement cannot decide from what the evidence records.
    RowUndecided,
    /// A row not allowed, but for another reason than the evidence gives.
    RowReason,
    /// A row that cannot be read (an address, a protocol, a direction).
    RowMalformed,
    /// The capture covers another window than the evidence.
    CaptureWindow,
    /// The capture's bytes are not those the evidence names (its SHA-256 differs).
    CaptureChanged,
    /// The capture read again does not yield the evidence's rows.
    CaptureRows,
    /// The capture cannot be read.
    CaptureUnreadable,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceCheckResult {
    /// Which check.
    pub name: EvidenceCheck,
    /// Whether it holds (`None`: not made, an earlier check failed).
    pub pass: Option<bool>,
    /// Why it failed, as a kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Why, for people.
    pub reason: String,
}

/// The verdict on one evidence entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceVerdict {
    /// Whether every check holds: the evidence counts as a breach.
    pub holds: bool,
    /// The evidence entry's index.
    pub index: u64,
    /// The monitor organisation that signed it, when a trusted one did.
    pub organisation: Option<String>,
    /// The device it is about.
    pub device: Option<String>,
    /// The firmware (the statement's subject), hex.
    pub firmware: Option<String>,
    /// The checks, in order.
    pub checks: Vec<EvidenceCheckResult>,
    /// The evidence, once its signature verified (for a caller that reads the capture).
    #[serde(skip)]
    pub evidence: Option<Evidence>,
    /// The manifest of the release it names, once that verified.
    #[serde(skip)]
    pub manifest: Option<nospy_manifest::Manifest>,
}

impl EvidenceVerdict {
    /// Adds the capture check's outcome (`Ok`: why it holds); a failure makes the evidence not
    /// hold. Not made (skipped) when an earlier check failed.
    pub fn capture(&mut self, outcome: Result<String, (Failure, String)>) {
        if !self.holds {
            self.checks.push(EvidenceCheckResult {
                name: EvidenceCheck::Capture,
                pass: None,
                failure: None,
                reason: "not checked: an earlier check failed".into(),
            });
            return;
        }
        let (pass, failure, reason) = match outcome {
            Ok(r) => (true, None, r),
            Err((f, r)) => (false, Some(f), r),
        };
        self.holds = pass;
        self.checks.push(EvidenceCheckResult {
            name: EvidenceCheck::Capture,
            pass: Some(pass),
            failure,
            reason,
        });
    }
}

/// Verifies one evidence entry under `agreement` at time `now` (POSIX seconds; only used to
/// refuse cosignatures dated in the future).
pub fn verify_evidence(agreement: &Agreement, case: &Case, now: u64) -> EvidenceVerdict {
    verdict_of(case, |v| {
        let sc = checkpoint(agreement, &case.checkpoint, now)
            .map_err(|r| (EvidenceCheck::Checkpoint, Failure::Checkpoint, r))?;
        pass(
            v,
            EvidenceCheck::Checkpoint,
            format!(
                "size {} signed by {}, cosigned by a quorum of its witnesses",
                sc.checkpoint.size, agreement.log_origin
            ),
        );
        after_checkpoint(agreement, case, &sc, v)
    })
}

/// [`verify_evidence`] under a checkpoint the caller has checked already (the verdict's, whose
/// check is stricter: it also asks freshness), so that its signatures are not verified again
/// for every evidence entry.
pub(crate) fn verify_under(
    agreement: &Agreement,
    case: &Case,
    sc: &SignedCheckpoint,
) -> EvidenceVerdict {
    verdict_of(case, |v| {
        pass(
            v,
            EvidenceCheck::Checkpoint,
            format!(
                "size {}: the checkpoint the verdict checked",
                sc.checkpoint.size
            ),
        );
        after_checkpoint(agreement, case, sc, v)
    })
}

/// The verdict of running `checks`: a failure is recorded with its kind, and the checks after
/// it as not made.
fn verdict_of(
    case: &Case,
    checks: impl FnOnce(&mut EvidenceVerdict) -> Result<(), Failed>,
) -> EvidenceVerdict {
    let mut v = EvidenceVerdict {
        holds: false,
        index: case.evidence.index,
        organisation: None,
        device: None,
        firmware: None,
        checks: Vec::new(),
        evidence: None,
        manifest: None,
    };
    let order = [
        EvidenceCheck::Checkpoint,
        EvidenceCheck::Signature,
        EvidenceCheck::Inclusion,
        EvidenceCheck::Release,
        EvidenceCheck::Rows,
    ];
    let failed = match checks(&mut v) {
        Ok(()) => None,
        Err((at, failure, reason)) => {
            v.checks.push(EvidenceCheckResult {
                name: at,
                pass: Some(false),
                failure: Some(failure),
                reason,
            });
            Some(at)
        }
    };
    if let Some(at) = failed {
        for n in order.iter().skip_while(|n| **n != at).skip(1) {
            v.checks.push(EvidenceCheckResult {
                name: *n,
                pass: None,
                failure: None,
                reason: format!("not checked: the {} check failed", at.as_str()),
            });
        }
    }
    v.holds = failed.is_none();
    v
}

type Failed = (EvidenceCheck, Failure, String);

/// Records a check that holds.
fn pass(v: &mut EvidenceVerdict, name: EvidenceCheck, reason: String) {
    v.checks.push(EvidenceCheckResult {
        name,
        pass: Some(true),
        failure: None,
        reason,
    })
}

/// The checks after the checkpoint's, under `sc`.
fn after_checkpoint(
    agreement: &Agreement,
    case: &Case,
    sc: &SignedCheckpoint,
    v: &mut EvidenceVerdict,
) -> Result<(), Failed> {
    // 2. The signature: a monitor of the agreement's.
    let (keys, orgs) = agreement.monitors.keys();
    let sig = |f, r| (EvidenceCheck::Signature, f, r);
    let opened = open(&case.evidence.bytes, &keys).map_err(|e| match e {
        StatementError::Envelope(nospy_statement::dsse::DsseError::NoValidSignature) => {
            let hinted = nospy_statement::dsse::Envelope::parse(&case.evidence.bytes)
                .ok()
                .is_some_and(|env| env.signatures.iter().any(|s| s.hinted_key(&keys).is_some()));
            if hinted {
                sig(
                    Failure::BadSignature,
                    "a signature names a monitor key of the agreement but does not verify: the statement was changed after it was signed".into(),
                )
            } else {
                sig(
                    Failure::UnknownMonitor,
                    "no signature is by a monitor key of the agreement".into(),
                )
            }
        }
        e => sig(Failure::Malformed, format!("not a signed nospy statement: {e}")),
    })?;
    let Predicate::Evidence(ev) = &opened.predicate else {
        return Err(sig(
            Failure::NotEvidence,
            format!(
                "the statement is {}, not evidence",
                opened.statement.predicate_type
            ),
        ));
    };
    let org = orgs[opened.signers[0]].to_string();
    v.organisation = Some(org.clone());
    v.device = Some(ev.device.clone());
    v.evidence = Some(ev.clone());
    // Evidence is about one firmware: a second subject would let evidence judged against one
    // release be counted against another firmware.
    let firmware = match subjects(&opened)[..] {
        [one] => Some(one),
        [] => None,
        ref many => {
            return Err(sig(
                Failure::Subjects,
                format!(
                    "the evidence names {} firmware digests; evidence is about one",
                    many.len()
                ),
            ))
        }
    };
    v.firmware = firmware.map(|f| f.to_hex());
    pass(
        v,
        EvidenceCheck::Signature,
        format!("signed by monitor organisation {org:?}"),
    );

    // 3. Included under the checkpoint.
    case.evidence
        .included(&case.checkpoint, &sc.checkpoint)
        .map_err(|r| (EvidenceCheck::Inclusion, Failure::NotIncluded, r))?;
    pass(
        v,
        EvidenceCheck::Inclusion,
        format!(
            "entry {} is in the log under the checkpoint",
            case.evidence.index
        ),
    );

    // 4. The release it names.
    let rel = |f, r| (EvidenceCheck::Release, f, r);
    let (Some(reference), Some(_)) = (&ev.release, &ev.resolutions) else {
        return Err(rel(
            Failure::Unjudgeable,
            "evidence of the first version names no release entry and records no resolutions: it cannot be judged again".into(),
        ));
    };
    let Some(re) = &case.release else {
        return Err(rel(
            Failure::ReleaseMissing,
            format!("release entry {} is not in the case", reference.index),
        ));
    };
    if reference.log != agreement.log_origin
        || re.index != reference.index
        || leaf_hash(&re.bytes).to_hex() != reference.leaf_hash
    {
        return Err(rel(
            Failure::ReleaseMissing,
            format!(
                "the evidence names entry {} ({}) of {}; the case gives entry {} ({}) of {}",
                reference.index,
                reference.leaf_hash,
                reference.log,
                re.index,
                leaf_hash(&re.bytes).to_hex(),
                agreement.log_origin
            ),
        ));
    }
    let release = vendor_release(agreement, re)?;
    let Some(firmware) = firmware else {
        return Err(rel(
            Failure::ReleaseOtherFirmware,
            "the evidence names no firmware digest".into(),
        ));
    };
    if !release.0.statement.is_about(&firmware) {
        return Err(rel(
            Failure::ReleaseOtherFirmware,
            format!(
                "release entry {} is not about firmware {}",
                re.index,
                firmware.to_hex()
            ),
        ));
    }
    re.included(&case.checkpoint, &sc.checkpoint)
        .map_err(|r| rel(Failure::NotIncluded, r))?;
    let r = release.1;
    pass(
        v,
        EvidenceCheck::Release,
        format!(
            "entry {}: {} {} {}, signed by the vendor, included, about this firmware",
            re.index, r.vendor, r.product, r.version
        ),
    );

    // 5. Every row judged again.
    rows(&r, ev).map_err(|(f, why)| (EvidenceCheck::Rows, f, why))?;
    v.manifest = Some(r.manifest.clone());
    pass(
        v,
        EvidenceCheck::Rows,
        match ev.flows.len() {
            1 => "its row judged again against the release's manifest: not allowed, for the reason given".to_string(),
            n => format!("all {n} rows judged again against the release's manifest: not allowed, for the reasons given"),
        },
    );
    Ok(())
}

/// The statement's firmware digests (its subjects' SHA-256s), each once.
fn subjects(o: &Opened) -> Vec<Sha256> {
    let mut all: Vec<Sha256> = o
        .statement
        .subject
        .iter()
        .filter_map(|s| s.digest.as_ref()?.get_sha256())
        .collect();
    all.sort_unstable_by_key(|d| d.0);
    all.dedup();
    all
}

fn checkpoint(agreement: &Agreement, text: &str, now: u64) -> Result<SignedCheckpoint, String> {
    let checked = check_signatures(agreement, text).map_err(|(_, why)| why)?;
    let cosigners: std::collections::BTreeSet<usize> = checked
        .cosigned
        .iter()
        .filter(|(_, ts)| *ts <= now + CLOCK_SKEW)
        .map(|(w, _)| *w)
        .collect();
    if cosigners.len() < agreement.witness_quorum {
        return Err(format!(
            "{} of the {} witness cosignatures required",
            cosigners.len(),
            agreement.witness_quorum
        ));
    }
    Ok(checked.sc)
}

/// The release entry opened with the agreement's vendor keys, its vendor the key's.
fn vendor_release(agreement: &Agreement, re: &LoggedEntry) -> Result<(Opened, Release), Failed> {
    let bad = |r: String| (EvidenceCheck::Release, Failure::ReleaseNotVendor, r);
    let (keys, owners) = agreement.vendor_keys();
    let o = open(&re.bytes, &keys).map_err(|e| {
        bad(format!(
            "entry {} is not a statement signed by a vendor of the agreement: {e}",
            re.index
        ))
    })?;
    let Predicate::Release(r) = &o.predicate else {
        return Err(bad(format!("entry {} is not a release", re.index)));
    };
    let vendor = owners[o.signers[0]];
    if r.vendor != vendor.name {
        return Err(bad(format!(
            "entry {} names vendor {:?} but is signed by {:?}'s key",
            re.index, r.vendor, vendor.name
        )));
    }
    let r = (**r).clone();
    Ok((o, r))
}

/// Every row judged again against `r`'s manifest with the evidence's resolutions.
fn rows(r: &Release, ev: &Evidence) -> Result<(), (Failure, String)> {
    let res = ev.resolutions.clone().unwrap_or_default();
    for (i, f) in ev.flows.iter().enumerate() {
        let at = |m: String| {
            format!(
                "row {} ({} {} {} port {}): {m}",
                i + 1,
                f.direction,
                f.peer,
                f.protocol,
                f.port
            )
        };
        let direction = match f.direction.as_str() {
            "from-device" => Direction::FromDevice,
            "to-device" => Direction::ToDevice,
            d => return Err((Failure::RowMalformed, at(format!("direction {d:?}")))),
        };
        let peer = f.peer.parse().map_err(|_| {
            (
                Failure::RowMalformed,
                at("the peer is not an IP address".into()),
            )
        })?;
        let protocol = judge::protocol_number(&f.protocol)
            .ok_or_else(|| (Failure::RowMalformed, at("unknown protocol".into())))?;
        let o = Observed {
            direction,
            peer,
            protocol,
            port: f.port,
            names: f.names.clone(),
            same_vendor: f.same_vendor,
            openers: f.opened_by,
        };
        let Some(claimed) = f.why else {
            return Err((Failure::RowMalformed, at("no reason given".into())));
        };
        match judge::judge(&r.manifest, &res, &o) {
            Judgement::NotAllowed(w) if w == claimed => {}
            Judgement::NotAllowed(w) => {
                return Err((
                    Failure::RowReason,
                    at(format!(
                        "the evidence says {:?}, but the manifest does not allow it because {}",
                        claimed.as_str(),
                        w.explain()
                    )),
                ))
            }
            Judgement::Allowed { rule } => {
                return Err((
                    Failure::RowAllowed,
                    at(format!("the release's manifest allows it (allow rule {})", rule + 1)),
                ))
            }
            Judgement::Undecided {
                rule, unrecorded, ..
            } => {
                return Err((
                    Failure::RowUndecided,
                    at(format!(
                        "allow rule {} would allow it depending on {}, which the evidence does not record",
                        rule + 1,
                        unrecorded.explain()
                    )),
                ))
            }
        }
    }
    Ok(())
}
