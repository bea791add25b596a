//! nospy's own predicates, each with a versioned type URI: release (vendor), attestation
//! (evaluator), revocation (vendor or evaluator), evidence (monitor). Parsing is strict: an
//! unknown field is an error, so that a verifier never ignores something a signer meant.

use crate::intoto::DigestSet;
use crate::time::parse_rfc3339;
use nospy_manifest::judge::{Openers, Resolutions, Why};
use nospy_manifest::Manifest;
use serde::{Deserialize, Deserializer, Serialize};

/// Predicate type of release statements.
pub const RELEASE_V1: &str = "https://nospy.example/predicate/release/v1";
/// Predicate type of evaluator attestations.
pub const ATTESTATION_V1: &str = "https://nospy.example/predicate/attestation/v1";
/// Predicate type of revocations.
pub const REVOCATION_V1: &str = "https://nospy.example/predicate/revocation/v1";
/// Predicate type of monitoring evidence, first version: rows without the reason they are not
/// allowed, no resolutions. Still read; no longer written.
pub const EVIDENCE_V1: &str = "https://nospy.example/predicate/evidence/v1";
/// Predicate type of monitoring evidence: every row says why the manifest does not allow it,
/// the operator's resolutions of the manifest's abstractions are recorded, and the release
/// entry whose manifest was applied is named.
pub const EVIDENCE_V2: &str = "https://nospy.example/predicate/evidence/v2";

/// A vendor's release of a firmware build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The vendor.
    pub vendor: String,
    /// The product (model) the firmware is for.
    pub product: String,
    /// The firmware version.
    pub version: String,
    /// Where the source is and which commit was built.
    pub source: Source,
    /// Digest of the SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<DigestSet>,
    /// Digest of the build recipe (the instructions evaluators follow to rebuild).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_recipe: Option<DigestSet>,
    /// Versions of the same product this release replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    /// The behaviour manifest: whom the device may talk to.
    #[serde(deserialize_with = "manifest_json")]
    pub manifest: Manifest,
}

fn manifest_json<'de, D: Deserializer<'de>>(d: D) -> Result<Manifest, D::Error> {
    Manifest::from_deserializer(d).map_err(serde::de::Error::custom)
}

/// A source repository and commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The repository (URL), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The commit built.
    pub commit: String,
    /// The toolchain used (for rebuilds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<String>,
}

/// What an evaluator checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttestationKind {
    /// The shipped binary is bit for bit the one rebuilt from the reviewed source.
    BinaryEquivalence,
    /// The source was reviewed.
    SourceReview,
}

/// Pass or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed.
    Fail,
}

/// A log entry referred to by origin, index and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRef {
    /// The log's origin.
    pub log: String,
    /// The entry's index.
    pub index: u64,
    /// The entry's RFC 6962 leaf hash, hex.
    pub leaf_hash: String,
}

/// An evaluator's verdict on a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// What was checked.
    pub kind: AttestationKind,
    /// The verdict.
    pub result: Outcome,
    /// The release entry judged.
    pub release: EntryRef,
    /// What the evaluator rebuilt from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_from: Option<Source>,
    /// Where the builds differ, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffSummary>,
}

/// A summary of where two builds differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffSummary {
    /// One line for people.
    pub summary: String,
    /// The first differences (bounded so that the statement fits in a log entry).
    pub differences: Vec<Difference>,
    /// How many differences there are in all.
    pub total: u64,
}

/// One difference between two builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    /// Path of the member (or `section .text` of an ELF file).
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// More, if there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A revocation of artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Why.
    pub reason: String,
    /// From when (RFC 3339).
    #[serde(deserialize_with = "rfc3339")]
    pub effective: String,
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    parse_rfc3339(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time")))?;
    Ok(s)
}

/// Monitoring evidence: traffic a device's manifest did not declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The device, as the operator's inventory names it.
    pub device: String,
    /// The observation window.
    pub window: Window,
    /// The undeclared flows, aggregated.
    pub flows: Vec<FlowViolation>,
    /// Which manifest the flows were checked against (its release entry, say), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Digest of the capture or flow export the evidence comes from.
    pub source: DigestSet,
    /// v2: the release entry whose manifest the flows were judged against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<EntryRef>,
    /// v2: the operator's resolution of the manifest's abstractions during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolutions: Option<Resolutions>,
    /// v2: the device's addresses in the operator's inventory (what a capture is re-read for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_addresses: Vec<std::net::IpAddr>,
}

impl Evidence {
    /// Whether it is of the second version (it records why and how rows were judged).
    pub fn is_v2(&self) -> bool {
        self.resolutions.is_some()
    }

    /// The v1/v2 rule: v2 carries resolutions and every row's reason, v1 none of what v2 added.
    fn check_version(&self, v2: bool) -> Result<(), String> {
        let row_v2 = |f: &FlowViolation| {
            f.why.is_some()
                || f.names.is_some()
                || f.names_left_out != 0
                || f.same_vendor
                || f.opened_by.is_some()
        };
        if v2 {
            if self.resolutions.is_none() {
                return Err("evidence v2 predicate: missing field `resolutions`".into());
            }
            if let Some(i) = self.flows.iter().position(|f| f.why.is_none()) {
                return Err(format!(
                    "evidence v2 predicate: flows[{i}]: missing field `why`"
                ));
            }
            if let Some(i) = self
                .flows
                .iter()
                .position(|f| f.names_left_out != 0 && f.names.is_none())
            {
                return Err(format!(
                    "evidence v2 predicate: flows[{i}]: `names_left_out` without `names`"
                ));
            }
        } else if self.release.is_some()
            || self.resolutions.is_some()
            || !self.device_addresses.is_empty()
            || self.flows.iter().any(row_v2)
        {
            return Err(
                "evidence v1 predicate: carries fields of v2 (release, resolutions, device_addresses, why, names, names_left_out, same_vendor, opened_by)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start (RFC 3339).
    #[serde(deserialize_with = "rfc3339")]
    pub start: String,
    /// End (RFC 3339).
    #[serde(deserialize_with = "rfc3339")]
    pub end: String,
}

/// Undeclared flows between a device and one peer on one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowViolation {
    /// `from-device` or `to-device`.
    pub direction: String,
    /// The peer's address.
    pub peer: String,
    /// The protocol.
    pub protocol: String,
    /// The port.
    pub port: u16,
    /// Flows counted.
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// v2: why the manifest does not allow these flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
    /// v2: the DNS names the peer's address stood for during the window (answers seen, the
    /// resolver's entries), when the manifest has name rules; absent when not recorded. Every
    /// name a rule of the manifest names is here (only those can change the row's judgement);
    /// of the others, the first in order while they fit a bound (a monitor's is 1 KiB), the
    /// rest counted in `names_left_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// v2: how many more names the peer stood for, none of which a rule of the manifest names,
    /// than `names` lists (DNS answers can tie any number of names to an address, and a row
    /// must fit a log entry); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub names_left_out: u64,
    /// v2: the peer is a device of the same vendor (what `same-vendor` rules admit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_vendor: bool,
    /// v2: who opened these flows, of those seen (`device`, `peer`, `unknown`); absent when
    /// not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<Openers>,
}

/// Whether a count is zero (a field written only when it is not).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    /// A release.
    Release(Box<Release>),
    /// An attestation.
    Attestation(Attestation),
    /// A revocation.
    Revocation(Revocation),
    /// Evidence.
    Evidence(Evidence),
}

impl Predicate {
    /// Parses the predicate of type `predicate_type` strictly. A type that is not nospy's is an
    /// error naming it.
    pub fn parse(
        predicate_type: &str,
        v: &serde_json::Value,
    ) -> Result<Predicate, crate::StatementError> {
        Predicate::parse_text(predicate_type, v).map_err(crate::StatementError::Predicate)
    }

    fn parse_text(predicate_type: &str, v: &serde_json::Value) -> Result<Predicate, String> {
        fn strict<T: for<'de> Deserialize<'de>>(
            what: &str,
            v: &serde_json::Value,
        ) -> Result<T, String> {
            T::deserialize(v).map_err(|e| format!("{what} predicate: {e}"))
        }
        match predicate_type {
            RELEASE_V1 => strict("release", v).map(|r| Predicate::Release(Box::new(r))),
            ATTESTATION_V1 => strict("attestation", v).map(Predicate::Attestation),
            REVOCATION_V1 => strict("revocation", v).map(Predicate::Revocation),
            EVIDENCE_V1 | EVIDENCE_V2 => {
                let e: Evidence = strict("evidence", v)?;
                e.check_version(predicate_type == EVIDENCE_V2)?;
                Ok(Predicate::Evidence(e))
            }
            other => Err(format!("predicate type {other:?} is not one of nospy's")),
        }
    }

    /// The predicate type URI.
    pub fn type_uri(&self) -> &'static str {
        match self {
            Predicate::Release(_) => RELEASE_V1,
            Predicate::Attestation(_) => ATTESTATION_V1,
            Predicate::Revocation(_) => REVOCATION_V1,
            Predicate::Evidence(e) if e.is_v2() => EVIDENCE_V2,
            Predicate::Evidence(_) => EVIDENCE_V1,
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        // invariant: predicates are plain data and always serialise.
        match self {
            Predicate::Release(r) => serde_json::to_value(r),
            Predicate::Attestation(a) => serde_json::to_value(a),
            Predicate::Revocation(r) => serde_json::to_value(r),
            Predicate::Evidence(e) => serde_json::to_value(e),
        }
        .unwrap_or_default()
    }
}
