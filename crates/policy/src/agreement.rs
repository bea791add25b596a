//! The agreement file (`agreement.toml`, DESIGN.md §12).

use nospy_manifest::{dns_name, Peer, RemoteAccess};
use nospy_statement::time::parse_duration;
use nospy_tlog::note::{VerifierKey, ALG_COSIGNATURE_V1, ALG_ED25519};
use serde::Deserialize;
use std::fmt;

/// An agreement that does not parse; `place` says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementError {
    /// Line (from the TOML parser) or section.
    pub place: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AgreementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

impl std::error::Error for AgreementError {}

/// Whom an operator trusts and what it requires, parsed and checked.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// A name for reports.
    pub name: String,
    /// The log's origin.
    pub log_origin: String,
    /// The log's key.
    pub log_key: VerifierKey,
    /// Witness cosignature keys (type 0x04).
    pub witnesses: Vec<VerifierKey>,
    /// How many distinct witnesses must cosign.
    pub witness_quorum: usize,
    /// Oldest acceptable newest cosignature, in seconds.
    pub max_age: u64,
    /// The vendors and their release keys.
    pub vendors: Vec<Vendor>,
    /// The evaluators, by organisation.
    pub evaluators: Vec<EvaluatorMember>,
    /// How many distinct organisations must attest.
    pub evaluator_quorum: usize,
    /// What every manifest must satisfy.
    pub manifest: ManifestRules,
    /// Minimum versions per product.
    pub minimum_versions: Vec<MinimumVersion>,
    /// The monitors whose breach evidence counts (`[monitors]`; none when absent).
    pub monitors: Monitors,
}

/// The monitors an agreement trusts for breach evidence, by organisation.
#[derive(Debug, Clone, Default)]
pub struct Monitors {
    /// The organisations and their keys (the same shape as evaluators).
    pub members: Vec<EvaluatorMember>,
    /// How many distinct organisations' verified evidence makes a breach (0: no `[monitors]`).
    pub quorum: usize,
    /// What a breach does to the verdict.
    pub on_breach: OnBreach,
}

/// What verified breach evidence from a quorum of monitors does to `nospy verify`'s verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBreach {
    /// The firmware is denied.
    #[default]
    Deny,
    /// The firmware is admitted, flagged with the evidence.
    Flag,
}

impl Monitors {
    /// Every monitor key, in order, with its organisation.
    pub fn keys(&self) -> (Vec<VerifierKey>, Vec<&str>) {
        member_keys(&self.members)
    }
}

/// Every key of `members`, in order, with its organisation.
fn member_keys(members: &[EvaluatorMember]) -> (Vec<VerifierKey>, Vec<&str>) {
    members
        .iter()
        .flat_map(|m| m.keys.iter().map(|k| (k.clone(), m.organisation.as_str())))
        .unzip()
}

/// A vendor.
#[derive(Debug, Clone)]
pub struct Vendor {
    /// The vendor's name, as release statements give it.
    pub name: String,
    /// Keys that sign its releases.
    pub keys: Vec<VerifierKey>,
}

/// An evaluator organisation.
#[derive(Debug, Clone)]
pub struct EvaluatorMember {
    /// The organisation: the quorum counts these.
    pub organisation: String,
    /// Its keys.
    pub keys: Vec<VerifierKey>,
}

/// Rules on manifests.
#[derive(Debug, Clone, Default)]
pub struct ManifestRules {
    /// Acceptable declarations of vendor remote access (empty: any).
    pub vendor_remote_access: Vec<RemoteAccess>,
    /// Every peer of every rule must lie within one of these (empty: no restriction).
    pub peers_within: Vec<PeerPattern>,
}

/// A minimum version for a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinimumVersion {
    /// The product.
    pub product: String,
    /// The lowest acceptable version.
    pub version: String,
}

/// What `peers_within` may hold: an abstraction, a prefix, a DNS name, or `*.domain` for any
/// name under a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPattern {
    /// This peer exactly (an abstraction or a name), or within it (a prefix).
    Peer(Peer),
    /// Any name below this domain.
    Subdomains(String),
}

impl PeerPattern {
    /// Whether a manifest peer lies within this pattern.
    pub fn allows(&self, p: &Peer) -> bool {
        match (self, p) {
            (PeerPattern::Peer(Peer::Prefix(a)), Peer::Prefix(b)) => a.covers(b),
            (PeerPattern::Peer(a), b) => a == b,
            (PeerPattern::Subdomains(d), Peer::Name(n)) => {
                n.len() > d.len() + 1
                    && n.ends_with(d.as_str())
                    && n.as_bytes()[n.len() - d.len() - 1] == b'.'
            }
            _ => false,
        }
    }
}

impl fmt::Display for PeerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerPattern::Peer(p) => write!(f, "{p}"),
            PeerPattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    log: RawLog,
    witnesses: RawWitnesses,
    #[serde(default)]
    vendor: Vec<RawVendor>,
    evaluators: RawEvaluators,
    #[serde(default)]
    manifest: RawManifest,
    #[serde(default)]
    minimum_version: Vec<RawMin>,
    #[serde(default)]
    monitors: Option<RawMonitors>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitors {
    quorum: usize,
    #[serde(default)]
    on_breach: OnBreach,
    #[serde(default)]
    member: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    origin: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitnesses {
    quorum: usize,
    max_age: String,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVendor {
    name: String,
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvaluators {
    quorum: usize,
    #[serde(default)]
    member: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    organisation: String,
    keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    vendor_remote_access: Vec<RemoteAccess>,
    #[serde(default)]
    peers_within: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMin {
    product: String,
    version: String,
}

fn err(place: impl Into<String>, message: impl Into<String>) -> AgreementError {
    AgreementError {
        place: place.into(),
        message: message.into(),
    }
}

fn key(place: &str, s: &str, alg: u8) -> Result<VerifierKey, AgreementError> {
    let k = VerifierKey::parse(s).map_err(|e| err(place, format!("{s:?}: {e}")))?;
    match (k.alg(), alg) {
        (a, b) if a == b => Ok(k),
        // The same Ed25519 key in its plain form, given for a witness: use its cosignature form.
        (ALG_ED25519, ALG_COSIGNATURE_V1) => k
            .with_alg(ALG_COSIGNATURE_V1)
            .map_err(|e| err(place, e.to_string())),
        (a, _) => Err(err(
            place,
            format!("{s:?} is a key of type 0x{a:02x}, not 0x{alg:02x}"),
        )),
    }
}

/// The members of `[evaluators]` or `[monitors]` (`role` names them in errors).
fn members(role: &str, raw: &[RawMember]) -> Result<Vec<EvaluatorMember>, AgreementError> {
    raw.iter()
        .map(|m| {
            let keys = m
                .keys
                .iter()
                .map(|k| key(&format!("{role} {:?}", m.organisation), k, ALG_ED25519))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(EvaluatorMember {
                organisation: m.organisation.clone(),
                keys,
            })
        })
        .collect()
}

/// Checks that a quorum counted in organisations can be met by the members listed.
fn quorum(place: &str, q: usize, members: &[EvaluatorMember]) -> Result<(), AgreementError> {
    let orgs: std::collections::BTreeSet<&str> =
        members.iter().map(|m| m.organisation.as_str()).collect();
    if q > orgs.len() {
        return Err(err(
            place,
            format!(
                "quorum {q} is more than the {} organisations listed",
                orgs.len()
            ),
        ));
    }
    Ok(())
}

impl Agreement {
    /// Parses and checks an agreement.
    pub fn from_toml(text: &str) -> Result<Agreement, AgreementError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| nospy_tlog::text::line_at(text, s.start));
            err(
                line.map(|l| format!("line {l}"))
                    .unwrap_or_else(|| "agreement".into()),
                e.message(),
            )
        })?;
        let log_key = key("[log] key", &raw.log.key, ALG_ED25519)?;
        if log_key.name() != raw.log.origin {
            return Err(err(
                "[log]",
                format!(
                    "the key is named {:?} but the origin is {:?}",
                    log_key.name(),
                    raw.log.origin
                ),
            ));
        }
        let witnesses = raw
            .witnesses
            .keys
            .iter()
            .map(|k| key("[witnesses] keys", k, ALG_COSIGNATURE_V1))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.witnesses.quorum > witnesses.len() {
            return Err(err(
                "[witnesses]",
                format!(
                    "quorum {} is more than the {} witnesses listed",
                    raw.witnesses.quorum,
                    witnesses.len()
                ),
            ));
        }
        let max_age = parse_duration(&raw.witnesses.max_age).ok_or_else(|| {
            err(
                "[witnesses] max_age",
                format!(
                    "{:?} is not a duration such as \"24h\"",
                    raw.witnesses.max_age
                ),
            )
        })?;
        if raw.vendor.is_empty() {
            return Err(err(
                "[[vendor]]",
                "no vendor is listed: no release could be admitted",
            ));
        }
        let vendors = raw
            .vendor
            .iter()
            .map(|v| {
                let keys = v
                    .keys
                    .iter()
                    .map(|k| key(&format!("vendor {:?}", v.name), k, ALG_ED25519))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Vendor {
                    name: v.name.clone(),
                    keys,
                })
            })
            .collect::<Result<Vec<_>, AgreementError>>()?;
        let evaluators = members("evaluator", &raw.evaluators.member)?;
        quorum("[evaluators]", raw.evaluators.quorum, &evaluators)?;
        let monitors = match &raw.monitors {
            None => Monitors::default(),
            Some(m) => {
                let members = members("monitor", &m.member)?;
                quorum("[monitors]", m.quorum, &members)?;
                if m.quorum == 0 {
                    return Err(err(
                        "[monitors]",
                        "quorum 0 would make a breach of no evidence at all: at least 1",
                    ));
                }
                Monitors {
                    members,
                    quorum: m.quorum,
                    on_breach: m.on_breach,
                }
            }
        };
        // One key in two roles would let one signer stand for two parties.
        let mut all: Vec<(&VerifierKey, String)> = Vec::new();
        for v in &vendors {
            all.extend(v.keys.iter().map(|k| (k, format!("vendor {:?}", v.name))));
        }
        for m in &evaluators {
            all.extend(
                m.keys
                    .iter()
                    .map(|k| (k, format!("evaluator {:?}", m.organisation))),
            );
        }
        for m in &monitors.members {
            all.extend(
                m.keys
                    .iter()
                    .map(|k| (k, format!("monitor {:?}", m.organisation))),
            );
        }
        for (i, (k, who)) in all.iter().enumerate() {
            if let Some((_, other)) = all[..i].iter().find(|(k2, w2)| k2 == k && w2 != who) {
                return Err(err(
                    "keys",
                    format!("key {} is listed for both {other} and {who}", k.name()),
                ));
            }
        }
        let peers_within = raw
            .manifest
            .peers_within
            .iter()
            .map(|p| match p.strip_prefix("*.") {
                Some(d) => dns_name(d)
                    .map(PeerPattern::Subdomains)
                    .map_err(|e| e.message),
                None => p.parse::<Peer>().map(PeerPattern::Peer),
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| err("[manifest] peers_within", e))?;
        Ok(Agreement {
            name: raw.name,
            log_origin: raw.log.origin,
            log_key,
            witnesses,
            witness_quorum: raw.witnesses.quorum,
            max_age,
            vendors,
            evaluators,
            evaluator_quorum: raw.evaluators.quorum,
            manifest: ManifestRules {
                vendor_remote_access: raw.manifest.vendor_remote_access,
                peers_within,
            },
            minimum_versions: raw
                .minimum_version
                .into_iter()
                .map(|m| MinimumVersion {
                    product: m.product,
                    version: m.version,
                })
                .collect(),
            monitors,
        })
    }

    /// Every vendor key, in order, with its vendor.
    pub fn vendor_keys(&self) -> (Vec<VerifierKey>, Vec<&Vendor>) {
        let mut keys = Vec::new();
        let mut owners = Vec::new();
        for v in &self.vendors {
            for k in &v.keys {
                keys.push(k.clone());
                owners.push(v);
            }
        }
        (keys, owners)
    }

    /// Every evaluator key, in order, with its organisation.
    pub fn evaluator_keys(&self) -> (Vec<VerifierKey>, Vec<&str>) {
        member_keys(&self.evaluators)
    }
}
