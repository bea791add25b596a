//! The fleet under an agreement (`nospy fleet`, and the manifests `nospy monitor` takes from the
//! log): each device's standing from the verdict on its firmware, and supersession, a newer
//! admitted release of the same product. No I/O: the caller reads the log once for every
//! distinct digest and hands the evidence here.

use crate::{compare_versions, CheckName, Evidence, Outcome, Verdict, Verifier};
use nospy_statement::predicate::Release;
use nospy_tlog::Sha256;
use std::collections::{HashMap, HashSet};

/// A release statement listed from a log: its index, the release, its subjects' SHA-256.
pub type ListedRelease = (u64, Release, Vec<Sha256>);

/// The newest admitted release of each (vendor, product): (version, log index).
pub type Newest = HashMap<(String, String), (String, u64)>;

/// A device's standing, from the verdict on its firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Admitted under the agreement.
    Admitted,
    /// In the log, and denied by a check other than revocation.
    Denied,
    /// No release of the agreement's vendors in the log is about the firmware.
    Unlogged,
    /// Revoked.
    Revoked,
    /// The inventory gives no firmware digest for the device.
    Unknown,
}

impl Kind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 5] = [
        Kind::Admitted,
        Kind::Denied,
        Kind::Unlogged,
        Kind::Revoked,
        Kind::Unknown,
    ];

    /// The word reports use (`admitted`, `denied`, `unlogged`, `revoked`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Admitted => "admitted",
            Kind::Denied => "denied",
            Kind::Unlogged => "unlogged",
            Kind::Revoked => "revoked",
            Kind::Unknown => "unknown",
        }
    }
}

/// One device's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// What the verdict on its firmware makes of it.
    pub kind: Kind,
    /// Why, in words (the deciding check's reason).
    pub reason: String,
    /// The release it runs: (product, version, log index).
    pub release: Option<(String, String, u64)>,
    /// A newer admitted release of the same product: (version, log index).
    pub superseded_by: Option<(String, u64)>,
}

impl Standing {
    /// Whether the device fails the fleet check: not admitted, or running a superseded release.
    pub fn failing(&self) -> bool {
        self.kind != Kind::Admitted || self.superseded_by.is_some()
    }
}

/// Each device's firmware digest from its inventory text (hex), `None` where there is none or
/// it is not a SHA-256.
pub fn firmware_digests<'a>(hex: impl IntoIterator<Item = Option<&'a str>>) -> Vec<Option<Sha256>> {
    hex.into_iter()
        .map(|h| h.and_then(Sha256::from_hex))
        .collect()
}

/// The distinct digests among `digests`, sorted.
pub fn distinct(digests: &[Option<Sha256>]) -> Vec<Sha256> {
    let mut wanted: Vec<Sha256> = digests.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The verdict for each of `digests` that `evidence` holds, in one batch of signature checks.
pub fn verify_all(
    verifier: &Verifier<'_>,
    digests: &[Sha256],
    evidence: &HashMap<Sha256, Evidence>,
    now: u64,
) -> HashMap<Sha256, Verdict> {
    let items: Vec<(&Sha256, &Evidence)> = digests
        .iter()
        .filter_map(|d| evidence.get(d).map(|e| (d, e)))
        .collect();
    items
        .iter()
        .map(|(d, _)| **d)
        .zip(verifier.verify_many(&items, now))
        .collect()
}

/// What a verdict makes of a device, and why.
pub fn classify(v: &Verdict) -> (Kind, String) {
    let failed = v.checks.iter().find(|c| matches!(c.outcome, Outcome::Fail));
    if v.admit {
        let why = v
            .checks
            .iter()
            .find(|c| c.name == CheckName::Release)
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        return (Kind::Admitted, why);
    }
    match failed {
        Some(c) if c.name == CheckName::Release && v.release.is_none() => {
            (Kind::Unlogged, c.reason.clone())
        }
        Some(c) if c.name == CheckName::Revocation => (Kind::Revoked, c.reason.clone()),
        Some(c) => (Kind::Denied, format!("{}: {}", c.name, c.reason)),
        None => (Kind::Denied, "not admitted".into()),
    }
}

/// The digests of every listed release of a product that some verdict's release is of: the
/// candidates that could supersede the fleet's firmware.
pub fn supersession_candidates(
    releases: &[ListedRelease],
    verdicts: &HashMap<Sha256, Verdict>,
) -> Vec<Sha256> {
    let products: HashSet<(&str, &str)> = verdicts
        .values()
        .filter_map(|v| v.release.as_ref())
        .map(|r| (r.release.vendor.as_str(), r.release.product.as_str()))
        .collect();
    let mut out: Vec<Sha256> = releases
        .iter()
        .filter(|(_, r, _)| products.contains(&(r.vendor.as_str(), r.product.as_str())))
        .flat_map(|c| c.2.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The newest admitted release of each product among `verdicts` (by version, as
/// [`compare_versions`] orders them).
pub fn newest_admitted<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Newest {
    let mut newest = Newest::new();
    for v in verdicts {
        let (true, Some(r)) = (v.admit, v.release.as_ref()) else {
            continue;
        };
        let key = (r.release.vendor.clone(), r.release.product.clone());
        let better = newest
            .get(&key)
            .is_none_or(|(ver, _)| compare_versions(&r.release.version, ver).is_gt());
        if better {
            newest.insert(key, (r.release.version.clone(), r.index));
        }
    }
    newest
}

/// Each device's standing, from its firmware digest, the verdicts and the newest admitted
/// releases.
pub fn standings(
    digests: &[Option<Sha256>],
    verdicts: &HashMap<Sha256, Verdict>,
    newest: &Newest,
) -> Vec<Standing> {
    digests
        .iter()
        .map(|d| {
            let Some(d) = d else {
                return Standing {
                    kind: Kind::Unknown,
                    reason: "no firmware digest in the inventory".into(),
                    release: None,
                    superseded_by: None,
                };
            };
            let Some(v) = verdicts.get(d) else {
                return Standing {
                    kind: Kind::Unlogged,
                    reason: "no entry of the log is about this firmware".into(),
                    release: None,
                    superseded_by: None,
                };
            };
            let (kind, reason) = classify(v);
            let release = v.release.as_ref().map(|r| {
                (
                    r.release.product.clone(),
                    r.release.version.clone(),
                    r.index,
                )
            });
            let superseded_by = v.release.as_ref().and_then(|r| {
                newest
                    .get(&(r.release.vendor.clone(), r.release.product.clone()))
                    .filter(|(ver, _)| compare_versions(ver, &r.release.version).is_gt())
                    .cloned()
            });
            Standing {
                kind,
                reason,
                release,
                superseded_by,
            }
        })
        .collect()
}

/// How many devices stand each way.
pub fn count(standings: &[Standing], kind: Kind) -> usize {
    standings.iter().filter(|s| s.kind == kind).count()
}
