//! The admission verdict (DESIGN.md §4): every check, in order, with its outcome and reason.

use crate::agreement::Agreement;
use crate::logged::{CheckedCheckpoint, Fault, LoggedEntry};
use nospy_statement::predicate::{AttestationKind, Outcome as Result_, Predicate};
use nospy_statement::time::{format_rfc3339, parse_rfc3339};
use nospy_statement::{open_many, Opened};
use nospy_tlog::checkpoint::SignedCheckpoint;
use nospy_tlog::hash::leaf_hash;
use nospy_tlog::merkle::verify_consistency;
use nospy_tlog::{Hash, Sha256, TreeSize};
use serde::Serialize;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// Cosignatures dated further in the future than this are not counted.
const CLOCK_SKEW: u64 = 300;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The check holds.
    Pass,
    /// The check fails: deny.
    Fail,
    /// The check could not be made from this evidence, and says so (does not deny).
    NotChecked,
    /// An earlier failure left nothing to check (denies).
    Skipped,
}

/// Which of the verdict's checks (DESIGN.md §4), in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckName {
    /// The checkpoint: the log's signature, a quorum of fresh witness cosignatures.
    Checkpoint,
    /// The release: signed by a vendor of the agreement, about this artifact, included.
    Release,
    /// Enough distinct evaluator organisations attest binary equivalence; none attests a failure.
    Evaluators,
    /// The release's manifest satisfies the agreement's rules.
    Manifest,
    /// No revocation of the artifact is in the log up to the checkpoint.
    Revocation,
    /// No breach evidence, verified, from a quorum of the agreement's monitors (`[monitors]`).
    Breach,
    /// The checkpoint extends the one remembered.
    Rollback,
    /// The release is not below the agreement's minimum version of its product.
    MinimumVersion,
}

impl CheckName {
    /// The name reports print (`checkpoint`, ..., `minimum-version`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Checkpoint => "checkpoint",
            CheckName::Release => "release",
            CheckName::Evaluators => "evaluators",
            CheckName::Manifest => "manifest",
            CheckName::Revocation => "revocation",
            CheckName::Breach => "breach",
            CheckName::Rollback => "rollback",
            CheckName::MinimumVersion => "minimum-version",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a check came out as it did, as a kind a program can test (the words are in
/// [`Check::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Why {
    /// The check holds.
    Holds,
    /// The check could not be made from this evidence ([`Outcome::NotChecked`]).
    Unprovable,
    /// An earlier check failed ([`Outcome::Skipped`]).
    Skipped,
    /// The checkpoint is not signed by the agreement's log key, or is not a checkpoint.
    LogSignature,
    /// The checkpoint is for another log than the agreement's.
    OtherLog,
    /// A witness cosignature is malformed or does not verify.
    BadCosignature,
    /// Fewer fresh witness cosignatures than the quorum (missing, too old, or dated ahead).
    WitnessQuorum,
    /// No release statement about the artifact signed by a vendor of the agreement.
    NoRelease,
    /// The only release signed by a vendor is about another artifact.
    OtherArtifact,
    /// A release names another vendor than the one whose key signed it.
    VendorMismatch,
    /// A release's inclusion proof does not verify against the checkpoint.
    NotIncluded,
    /// A trusted evaluator attests a failure.
    FailingAttestation,
    /// Fewer evaluator organisations attest than the quorum.
    EvaluatorQuorum,
    /// The manifest is for another device than the release.
    ManifestMismatch,
    /// The manifest declares vendor remote access the agreement does not accept.
    RemoteAccess,
    /// The manifest allows peers outside those the agreement allows.
    PeersOutside,
    /// The artifact is revoked.
    Revoked,
    /// Monitors of a quorum of organisations logged breach evidence that verifies.
    Breach,
    /// The checkpoint is smaller than the remembered one.
    Rollback,
    /// The checkpoint has another root for the remembered size.
    Fork,
    /// No consistency proof from the remembered checkpoint was given.
    NoConsistencyProof,
    /// The consistency proof from the remembered checkpoint does not verify.
    Inconsistent,
    /// The release is below the agreement's minimum version.
    BelowMinimum,
}

/// One check of the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// How it came out.
    pub outcome: Outcome,
    /// Why, as a kind.
    #[serde(skip)]
    pub why: Why,
    /// Why, for people.
    pub reason: String,
}

/// The verdict: admit or deny, and every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True if the artifact may run.
    pub admit: bool,
    /// The artifact's SHA-256, hex.
    pub artifact: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The checkpoint's size and root, if it verified (to remember on admission).
    #[serde(skip)]
    pub checkpoint: Option<State>,
    /// The release the verdict was drawn about, once it was found (signed by a vendor of the
    /// agreement, about this artifact, included under the checkpoint), whatever the later checks
    /// say: its manifest is what the device declared, admitted or not.
    #[serde(skip)]
    pub release: Option<LoggedRelease>,
    /// Why the artifact is admitted but flagged: breach evidence under `on_breach = "flag"`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// A release statement found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRelease {
    /// Its log index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The release.
    pub release: Box<nospy_statement::predicate::Release>,
}

/// A remembered checkpoint: the last one accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// A state file that is not `<size> <base64 root>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// Not two words.
    Shape,
    /// The first word is not a tree size.
    Size(String),
    /// The second word is not base64 of 32 bytes.
    Root,
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Shape => f.write_str("expected \"<size> <root>\""),
            StateError::Size(s) => write!(f, "size {s:?} is not a number"),
            StateError::Root => f.write_str("root is not base64 of 32 bytes"),
        }
    }
}

impl std::error::Error for StateError {}

impl State {
    /// Reads the state file's text: `<size> <base64 root>`, as [`State::to_text`] writes it.
    pub fn parse(text: &str) -> Result<State, StateError> {
        let mut it = text.split_whitespace();
        let (Some(s), Some(r), None) = (it.next(), it.next(), it.next()) else {
            return Err(StateError::Shape);
        };
        let size = s.parse().map_err(|_| StateError::Size(s.to_string()))?;
        let root = Hash::from_base64(r).ok_or(StateError::Root)?;
        Ok(State { size, root })
    }

    /// The state file's text, one line.
    pub fn to_text(&self) -> String {
        format!("{} {}\n", self.size, self.root.to_base64())
    }
}

/// What the verdict is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The signed checkpoint (with cosignatures), verbatim.
    pub checkpoint: String,
    /// The entries about the artifact.
    pub entries: Vec<LoggedEntry>,
    /// Where `entries` comes from when it holds every entry of the log up to the checkpoint that
    /// is about the artifact, so that an absence proves something: "the log" (a mirror, read
    /// whole) or "the server's index" (the server's word). `None` for a bundle.
    pub complete: Option<String>,
    /// A consistency proof from an earlier size to the checkpoint's.
    pub consistency: Option<(u64, Vec<Hash>)>,
}

/// What a key of the agreement stands for.
#[derive(Debug, Clone)]
enum Role {
    /// A release key of vendor `vendors[i]`.
    Vendor(usize),
    /// A key of this evaluator organisation.
    Evaluator(String),
    /// A key of a monitor organisation (its evidence says which, once verified).
    Monitor,
}

/// A check's failure: its kind, and the words for people.
pub(crate) type Denial = (Why, String);

/// Verifies artifacts under one agreement. Keeps the checkpoints it has checked, so that many
/// bundles under the same checkpoint verify its signatures once (DESIGN.md §11).
#[derive(Debug)]
pub struct Verifier<'a> {
    agreement: &'a Agreement,
    keys: Vec<nospy_tlog::note::VerifierKey>,
    roles: Vec<Role>,
    checked: RefCell<HashMap<Hash, Result<CheckedCheckpoint, Denial>>>,
}

impl From<nospy_statement::bundle::Bundle> for Evidence {
    /// A bundle's evidence: its checkpoint, its entries with their tlog-proofs, and no claim of
    /// completeness (a bundle cannot prove that a revocation does not exist).
    fn from(b: nospy_statement::bundle::Bundle) -> Evidence {
        Evidence {
            checkpoint: b.checkpoint,
            entries: b
                .entries
                .into_iter()
                .map(|e| LoggedEntry {
                    index: e.proof.index,
                    bytes: e.entry,
                    proof: e.proof.proof,
                    proof_checkpoint: Some(e.proof.checkpoint),
                })
                .collect(),
            complete: None,
            consistency: b.consistency,
        }
    }
}

struct Entry<'a> {
    entry: &'a LoggedEntry,
    opened: Opened,
    included: Result<(), String>,
}

/// Decides whether the artifact with SHA-256 `artifact` may run under `agreement`, at time `now`
/// (POSIX seconds), given what the operator last accepted.
pub fn verify(
    agreement: &Agreement,
    artifact: &Sha256,
    ev: &Evidence,
    state: Option<&State>,
    now: u64,
) -> Verdict {
    Verifier::new(agreement).verify(artifact, ev, state, now)
}

impl<'a> Verifier<'a> {
    /// A verifier for `agreement`.
    pub fn new(agreement: &'a Agreement) -> Self {
        let mut keys = Vec::new();
        let mut roles = Vec::new();
        for (i, v) in agreement.vendors.iter().enumerate() {
            for k in &v.keys {
                keys.push(k.clone());
                roles.push(Role::Vendor(i));
            }
        }
        for m in &agreement.evaluators {
            for k in &m.keys {
                keys.push(k.clone());
                roles.push(Role::Evaluator(m.organisation.clone()));
            }
        }
        for m in &agreement.monitors.members {
            for k in &m.keys {
                keys.push(k.clone());
                roles.push(Role::Monitor);
            }
        }
        Verifier {
            agreement,
            keys,
            roles,
            checked: RefCell::new(HashMap::new()),
        }
    }

    /// Decides whether the artifact with SHA-256 `artifact` may run, at time `now` (POSIX
    /// seconds), given what the operator last accepted.
    pub fn verify(
        &self,
        artifact: &Sha256,
        ev: &Evidence,
        state: Option<&State>,
        now: u64,
    ) -> Verdict {
        let bytes: Vec<&[u8]> = ev.entries.iter().map(|e| e.bytes.as_slice()).collect();
        self.decide(artifact, ev, open_many(&bytes, &self.keys), state, now)
    }

    /// Decides for many artifacts at once: every statement signature of every bundle is checked
    /// in one batch (each verdict is the one [`Verifier::verify`] gives without a remembered
    /// checkpoint).
    pub fn verify_many(&self, items: &[(&Sha256, &Evidence)], now: u64) -> Vec<Verdict> {
        let bytes: Vec<&[u8]> = items
            .iter()
            .flat_map(|(_, ev)| ev.entries.iter().map(|e| e.bytes.as_slice()))
            .collect();
        let mut opened = open_many(&bytes, &self.keys).into_iter();
        items
            .iter()
            .map(|(artifact, ev)| {
                let mine: Vec<_> = opened.by_ref().take(ev.entries.len()).collect();
                self.decide(artifact, ev, mine, None, now)
            })
            .collect()
    }

    fn decide(
        &self,
        artifact: &Sha256,
        ev: &Evidence,
        opened: Vec<Result<Opened, nospy_statement::StatementError>>,
        state: Option<&State>,
        now: u64,
    ) -> Verdict {
        let agreement = self.agreement;
        let mut checks = Vec::new();
        let mut push = |name, outcome, why: Why, reason: String| {
            let why = match outcome {
                Outcome::Pass => Why::Holds,
                Outcome::NotChecked => Why::Unprovable,
                Outcome::Skipped => Why::Skipped,
                Outcome::Fail => why,
            };
            checks.push(Check {
                name,
                outcome,
                why,
                reason,
            })
        };
        let finish = |checks: Vec<Check>, cp, release: Option<LoggedRelease>| {
            let admit = checks
                .iter()
                .all(|c| matches!(c.outcome, Outcome::Pass | Outcome::NotChecked));
            Verdict {
                admit,
                artifact: artifact.to_hex(),
                checks,
                checkpoint: cp,
                release,
                flags: Vec::new(),
            }
        };
        const LATER: [CheckName; 7] = [
            CheckName::Release,
            CheckName::Evaluators,
            CheckName::Manifest,
            CheckName::Revocation,
            CheckName::Breach,
            CheckName::Rollback,
            CheckName::MinimumVersion,
        ];

        // 1. The checkpoint: the log's signature, a quorum of fresh witness cosignatures.
        let sc = match self.checkpoint(ev, now) {
            Ok((sc, why)) => {
                push(CheckName::Checkpoint, Outcome::Pass, Why::Holds, why);
                sc
            }
            Err((kind, why)) => {
                push(CheckName::Checkpoint, Outcome::Fail, kind, why);
                for n in LATER {
                    push(
                        n,
                        Outcome::Skipped,
                        Why::Skipped,
                        "no trusted checkpoint".into(),
                    );
                }
                return finish(checks, None, None);
            }
        };
        let cp = &sc.checkpoint;
        let cp_state = State {
            size: cp.size,
            root: cp.root,
        };

        // Every entry is opened once, with every key of the agreement, and its inclusion checked
        // once; the checks below only sort what was found.
        let entries: Vec<Entry> = ev
            .entries
            .iter()
            .zip(opened)
            .filter_map(|(e, opened)| {
                let opened = opened.ok()?;
                let included = e.included(&ev.checkpoint, cp);
                Some(Entry {
                    entry: e,
                    opened,
                    included,
                })
            })
            .collect();
        let vendor_of = |o: &Opened| {
            o.signers.iter().find_map(|&k| match self.roles[k] {
                Role::Vendor(v) => Some((v, k)),
                Role::Evaluator(_) | Role::Monitor => None,
            })
        };

        // 2. The release: signed by a vendor of the agreement, about this artifact, in the log.
        let mut problems = Vec::new();
        let mut release: Option<&Entry> = None;
        for e in &entries {
            let Predicate::Release(r) = &e.opened.predicate else {
                continue;
            };
            let Some((v, _)) = vendor_of(&e.opened) else {
                continue;
            };
            if !e.opened.statement.is_about(artifact) {
                problems.push((
                    Why::OtherArtifact,
                    format!("entry {} is a release of another artifact", e.entry.index),
                ));
                continue;
            }
            let vendor = &agreement.vendors[v];
            if r.vendor != vendor.name {
                problems.push((
                    Why::VendorMismatch,
                    format!(
                        "entry {} names vendor {:?} but is signed by {:?}'s key",
                        e.entry.index, r.vendor, vendor.name
                    ),
                ));
                continue;
            }
            if let Err(p) = &e.included {
                problems.push((Why::NotIncluded, p.clone()));
                continue;
            }
            if release.is_none_or(|r| r.entry.index < e.entry.index) {
                release = Some(e);
            }
        }
        let Some(rel) = release else {
            let (kind, why) = match problems.first() {
                None => (
                    Why::NoRelease,
                    "no release statement for this artifact signed by a vendor of the agreement"
                        .to_string(),
                ),
                Some((kind, _)) => (
                    *kind,
                    format!(
                        "no acceptable release statement: {}",
                        problems
                            .iter()
                            .map(|p| p.1.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
            };
            push(CheckName::Release, Outcome::Fail, kind, why);
            for n in &LATER[1..] {
                push(*n, Outcome::Skipped, Why::Skipped, "no release".into());
            }
            return finish(checks, Some(cp_state), None);
        };
        let Predicate::Release(r) = &rel.opened.predicate else {
            // invariant: only releases are kept in `release` above.
            return finish(checks, Some(cp_state), None);
        };
        let release_leaf = leaf_hash(&rel.entry.bytes);
        let found = Some(LoggedRelease {
            index: rel.entry.index,
            leaf_hash: release_leaf,
            release: r.clone(),
        });
        let signer = vendor_of(&rel.opened)
            .map(|(_, k)| self.keys[k].name())
            .unwrap_or("?");
        push(
            CheckName::Release,
            Outcome::Pass,
            Why::Holds,
            format!(
                "{} {} {} (entry {}), signed by {signer}",
                r.vendor, r.product, r.version, rel.entry.index
            ),
        );

        // 3. Evaluators: k distinct organisations attest binary equivalence of this release; any
        // trusted failing attestation denies.
        let mut passed: BTreeSet<&str> = BTreeSet::new();
        let mut failed: Vec<String> = Vec::new();
        let mut ignored: Vec<String> = Vec::new();
        for e in &entries {
            let Predicate::Attestation(a) = &e.opened.predicate else {
                continue;
            };
            let orgs: BTreeSet<&str> = e
                .opened
                .signers
                .iter()
                .filter_map(|&k| match &self.roles[k] {
                    Role::Evaluator(o) => Some(o.as_str()),
                    Role::Vendor(_) | Role::Monitor => None,
                })
                .collect();
            if orgs.is_empty() || a.kind != AttestationKind::BinaryEquivalence {
                continue;
            }
            let index = e.entry.index;
            if !e.opened.statement.is_about(artifact) {
                ignored.push(format!("entry {index}: attests another artifact"));
                continue;
            }
            if a.release.log != agreement.log_origin
                || a.release.index != rel.entry.index
                || Hash::from_hex(&a.release.leaf_hash) != Some(release_leaf)
            {
                ignored.push(format!("entry {index}: refers to another release entry"));
                continue;
            }
            if let Err(p) = &e.included {
                ignored.push(p.clone());
                continue;
            }
            match a.result {
                Result_::Pass => passed.extend(orgs),
                Result_::Fail => {
                    let why = a
                        .diff
                        .as_ref()
                        .map(|d| d.summary.clone())
                        .unwrap_or_else(|| "no diff given".into());
                    failed.push(format!(
                        "{} attests a failure (entry {index}): {why}",
                        orgs.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        if !failed.is_empty() {
            push(
                CheckName::Evaluators,
                Outcome::Fail,
                Why::FailingAttestation,
                failed.join("; "),
            );
        } else if passed.len() < agreement.evaluator_quorum {
            let mut why = format!(
                "{} of the {} organisations required attest binary equivalence{}",
                passed.len(),
                agreement.evaluator_quorum,
                if passed.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        passed.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                }
            );
            if !ignored.is_empty() {
                why.push_str(&format!("; not counted: {}", ignored.join("; ")));
            }
            push(
                CheckName::Evaluators,
                Outcome::Fail,
                Why::EvaluatorQuorum,
                why,
            );
        } else {
            push(
                CheckName::Evaluators,
                Outcome::Pass,
                Why::Holds,
                format!(
                    "binary equivalence attested by {}",
                    passed.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }

        // 4. The manifest satisfies the agreement's rules.
        match manifest(agreement, r) {
            Ok(why) => push(CheckName::Manifest, Outcome::Pass, Why::Holds, why),
            Err((kind, why)) => push(CheckName::Manifest, Outcome::Fail, kind, why),
        }

        // 5. No revocation of the artifact in the log up to the checkpoint.
        let mut revoked = Vec::new();
        for e in &entries {
            let Predicate::Revocation(rv) = &e.opened.predicate else {
                continue;
            };
            // A vendor or an evaluator revokes; a monitor's key signs evidence, nothing else.
            let Some(&by) = e
                .opened
                .signers
                .iter()
                .find(|&&k| !matches!(self.roles[k], Role::Monitor))
            else {
                continue;
            };
            if !e.opened.statement.is_about(artifact) || e.included.is_err() {
                continue;
            }
            let when = parse_rfc3339(&rv.effective).unwrap_or(i64::MIN);
            if when <= now as i64 {
                revoked.push(format!(
                    "revoked by {} (entry {}): {}",
                    self.keys[by].name(),
                    e.entry.index,
                    rv.reason
                ));
            }
        }
        if !revoked.is_empty() {
            push(
                CheckName::Revocation,
                Outcome::Fail,
                Why::Revoked,
                revoked.join("; "),
            );
        } else if let Some(source) = &ev.complete {
            push(
                CheckName::Revocation,
                Outcome::Pass,
                Why::Holds,
                format!("no revocation in {source} up to size {}", cp.size),
            );
        } else {
            push(
                CheckName::Revocation,
                Outcome::NotChecked,
                Why::Unprovable,
                "revocation not checked: a bundle cannot prove that no revocation exists; verify against the log for that".into(),
            );
        }

        // 6. Breach: evidence from a quorum of the agreement's monitor organisations, each
        // verified as `nospy evidence verify` does (without a capture).
        let mut flags = Vec::new();
        self.breach(artifact, ev, &sc, &entries, &mut push, &mut flags);

        // 7. Rollback: the checkpoint extends the one remembered; and the minimum version.
        match state {
            None => push(
                CheckName::Rollback,
                Outcome::NotChecked,
                Why::Unprovable,
                "no remembered checkpoint (use --state to keep one)".into(),
            ),
            Some(old) => match rollback(old, &cp_state, ev.consistency.as_ref()) {
                Ok(why) => push(CheckName::Rollback, Outcome::Pass, Why::Holds, why),
                Err((kind, why)) => push(CheckName::Rollback, Outcome::Fail, kind, why),
            },
        }
        match agreement
            .minimum_versions
            .iter()
            .find(|m| m.product == r.product)
        {
            None => push(
                CheckName::MinimumVersion,
                Outcome::Pass,
                Why::Holds,
                format!("no minimum version for {}", r.product),
            ),
            Some(m) if compare_versions(&r.version, &m.version) == Ordering::Less => push(
                CheckName::MinimumVersion,
                Outcome::Fail,
                Why::BelowMinimum,
                format!(
                    "version {} is below the minimum {} for {}",
                    r.version, m.version, r.product
                ),
            ),
            Some(m) => push(
                CheckName::MinimumVersion,
                Outcome::Pass,
                Why::Holds,
                format!("version {} is at least {}", r.version, m.version),
            ),
        }
        let mut v = finish(checks, Some(cp_state), found);
        v.flags = flags;
        v
    }

    /// The breach check: every evidence entry about the artifact signed by a monitor of the
    /// agreement, verified with the release it names; denies (or flags) when those that hold
    /// come from at least the quorum of organisations.
    fn breach(
        &self,
        artifact: &Sha256,
        ev: &Evidence,
        sc: &SignedCheckpoint,
        entries: &[Entry<'_>],
        push: &mut impl FnMut(CheckName, Outcome, Why, String),
        flags: &mut Vec<String>,
    ) {
        let monitors = &self.agreement.monitors;
        if monitors.quorum == 0 {
            push(
                CheckName::Breach,
                Outcome::Pass,
                Why::Holds,
                "the agreement names no monitors".into(),
            );
            return;
        }
        let mut held: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        let mut not_counted = Vec::new();
        for e in entries {
            let Predicate::Evidence(evidence) = &e.opened.predicate else {
                continue;
            };
            if !e.opened.statement.is_about(artifact)
                || !e
                    .opened
                    .signers
                    .iter()
                    .any(|&k| matches!(self.roles[k], Role::Monitor))
            {
                continue;
            }
            let named = evidence.release.as_ref().map(|r| r.index);
            let case = crate::breach::Case {
                checkpoint: ev.checkpoint.clone(),
                evidence: e.entry.clone(),
                release: ev.entries.iter().find(|x| Some(x.index) == named).cloned(),
            };
            let v = crate::breach::verify_under(self.agreement, &case, sc);
            match (v.organisation, v.holds) {
                (Some(org), true) => held.entry(org).or_default().push(e.entry.index),
                _ => {
                    let why = v
                        .checks
                        .iter()
                        .find(|c| c.pass == Some(false))
                        .map_or(String::new(), |c| c.reason.clone());
                    not_counted.push(format!("entry {}: {why}", e.entry.index));
                }
            }
        }
        let by: Vec<String> = held
            .iter()
            .map(|(o, ix)| {
                let ix: Vec<String> = ix.iter().map(u64::to_string).collect();
                format!("{o} (entries {})", ix.join(", "))
            })
            .collect();
        let mut why = if held.is_empty() {
            "no verified breach evidence".to_string()
        } else {
            format!(
                "breach evidence verified from {} of the {} monitor organisations required: {}",
                held.len(),
                monitors.quorum,
                by.join("; ")
            )
        };
        if !not_counted.is_empty() {
            why.push_str(&format!("; not counted: {}", not_counted.join("; ")));
        }
        if held.len() >= monitors.quorum {
            match monitors.on_breach {
                crate::OnBreach::Deny => push(CheckName::Breach, Outcome::Fail, Why::Breach, why),
                crate::OnBreach::Flag => {
                    flags.push(why.clone());
                    push(
                        CheckName::Breach,
                        Outcome::Pass,
                        Why::Holds,
                        format!("flagged: {why}"),
                    )
                }
            }
        } else if let Some(source) = &ev.complete {
            push(
                CheckName::Breach,
                Outcome::Pass,
                Why::Holds,
                format!("{why} in {source}"),
            );
        } else {
            push(
                CheckName::Breach,
                Outcome::NotChecked,
                Why::Unprovable,
                format!("{why} in this bundle; a bundle cannot prove that no evidence exists"),
            );
        }
    }

    /// Checks the checkpoint's signatures once per distinct checkpoint text, then its freshness
    /// at `now` every time.
    fn checkpoint(&self, ev: &Evidence, now: u64) -> Result<(SignedCheckpoint, String), Denial> {
        let agreement = self.agreement;
        let id = nospy_tlog::hash::sha256(ev.checkpoint.as_bytes());
        let checked = {
            let mut cache = self.checked.borrow_mut();
            cache
                .entry(id)
                .or_insert_with(|| check_signatures(agreement, &ev.checkpoint))
                .clone()
        }?;
        let sc = checked.sc;
        if agreement.witness_quorum == 0 {
            let why = format!(
                "size {} signed by {}; the agreement requires no witnesses",
                sc.checkpoint.size, agreement.log_origin
            );
            return Ok((sc, why));
        }
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for &(w, ts) in &checked.cosigned {
            let name = agreement.witnesses[w].name();
            if ts > now + CLOCK_SKEW {
                stale.push(format!(
                    "{name} (dated in the future, {})",
                    format_rfc3339(ts as i64)
                ));
            } else if now.saturating_sub(ts) > agreement.max_age {
                stale.push(format!(
                    "{name} (cosigned {}, older than the {}s allowed)",
                    format_rfc3339(ts as i64),
                    agreement.max_age
                ));
            } else {
                fresh.push(name);
            }
        }
        if fresh.len() < agreement.witness_quorum {
            let mut why = format!(
                "{} of the {} witness cosignatures required are present and fresh",
                fresh.len(),
                agreement.witness_quorum
            );
            if !stale.is_empty() {
                why.push_str(&format!("; too old or too new: {}", stale.join(", ")));
            }
            return Err((Why::WitnessQuorum, why));
        }
        let why = format!(
            "size {} signed by {}, cosigned by {}",
            sc.checkpoint.size,
            agreement.log_origin,
            fresh.join(", ")
        );
        Ok((sc, why))
    }
}

/// The checkpoint's signatures checked, a fault as the verdict's kind.
fn check_signatures(agreement: &Agreement, text: &str) -> Result<CheckedCheckpoint, Denial> {
    crate::logged::check_signatures(agreement, text).map_err(|(f, why)| {
        let kind = match f {
            Fault::LogSignature => Why::LogSignature,
            Fault::OtherLog => Why::OtherLog,
            Fault::BadCosignature => Why::BadCosignature,
        };
        (kind, why)
    })
}

fn manifest(
    agreement: &Agreement,
    r: &nospy_statement::predicate::Release,
) -> Result<String, Denial> {
    let m = &r.manifest;
    if m.device.vendor != r.vendor || m.device.model != r.product {
        return Err((
            Why::ManifestMismatch,
            format!(
                "the manifest is for {} {}, the release for {} {}",
                m.device.vendor, m.device.model, r.vendor, r.product
            ),
        ));
    }
    let rules = &agreement.manifest;
    let ra = m.capabilities.vendor_remote_access;
    if !rules.vendor_remote_access.is_empty() && !rules.vendor_remote_access.contains(&ra) {
        return Err((
            Why::RemoteAccess,
            format!(
                "declares vendor remote access \"{}\", which the agreement does not accept",
                ra.as_str()
            ),
        ));
    }
    if !rules.peers_within.is_empty() {
        let outside: Vec<String> = m
            .allow
            .iter()
            .filter(|rule| !rules.peers_within.iter().any(|p| p.allows(&rule.peer)))
            .map(|rule| rule.peer.to_string())
            .collect();
        if !outside.is_empty() {
            return Err((
                Why::PeersOutside,
                format!(
                    "peers outside those the agreement allows: {}",
                    outside.join(", ")
                ),
            ));
        }
    }
    Ok(format!(
        "{} rules; vendor remote access \"{}\"",
        m.allow.len(),
        ra.as_str()
    ))
}

fn rollback(
    old: &State,
    new: &State,
    consistency: Option<&(u64, Vec<Hash>)>,
) -> Result<String, Denial> {
    match new.size.cmp(&old.size) {
        Ordering::Less => Err((
            Why::Rollback,
            format!(
                "checkpoint size {} is older than the remembered {} (rollback)",
                new.size, old.size
            ),
        )),
        Ordering::Equal if new.root != old.root => Err((
            Why::Fork,
            format!(
                "checkpoint of size {} has another root than the remembered one (a fork)",
                new.size
            ),
        )),
        Ordering::Equal => Ok(format!("the remembered checkpoint (size {})", old.size)),
        Ordering::Greater => {
            let Some((from, proof)) = consistency.filter(|(from, _)| *from == old.size) else {
                return Err((
                    Why::NoConsistencyProof,
                    format!(
                        "no consistency proof from the remembered size {} to {}: cannot show the log only grew (verify with --log, or make the bundle with --since-size {})",
                        old.size, new.size, old.size
                    ),
                ));
            };
            verify_consistency(
                TreeSize(*from),
                TreeSize(new.size),
                proof,
                old.root.as_ref(),
                new.root.as_ref(),
            )
            .map(|_| {
                format!(
                    "extends the remembered checkpoint (size {} to {})",
                    old.size, new.size
                )
            })
            .map_err(|e| {
                (
                    Why::Inconsistent,
                    format!(
                        "not a consistent extension of the remembered checkpoint (size {}): {e}",
                        old.size
                    ),
                )
            })
        }
    }
}

/// Compares versions segment by segment (`4.10.0` > `4.9.2`): numeric segments as numbers,
/// others as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let seg = |s: &str| -> Vec<String> { s.split(['.', '-', '+']).map(str::to_string).collect() };
    let (sa, sb) = (seg(a), seg(b));
    for i in 0..sa.len().max(sb.len()) {
        let (x, y) = (
            sa.get(i).map(String::as_str).unwrap_or("0"),
            sb.get(i).map(String::as_str).unwrap_or("0"),
        );
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
