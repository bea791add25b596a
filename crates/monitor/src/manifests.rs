//! Which manifest each device is judged against: the one in the release the agreement's
//! verdict found for its firmware in the log, else a manifest file naming its vendor and model.

use crate::evidence::Basis;
use crate::output::ManifestFrom;
use nospy_inventory::Inventory;
use nospy_manifest::Manifest;
use nospy_policy::{Outcome, Verdict};
use nospy_statement::predicate::EntryRef;
use nospy_tlog::Sha256;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a device's manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The manifest file given at this position.
    File(usize),
    /// The release of the device's firmware in the log.
    Log {
        /// The release's entry.
        index: u64,
        /// Its leaf hash.
        leaf_hash: nospy_tlog::Hash,
        /// Whether the firmware is admitted under the agreement (a denied release's manifest is
        /// still what the device declared).
        admitted: bool,
        /// The release's version.
        version: String,
    },
}

/// Each device's manifest (devices running one release share one `Arc`, compiled once), where
/// it came from, and for a device left without one, why.
#[derive(Debug, Default)]
pub struct Choice {
    /// Per device, in inventory order.
    pub manifests: Vec<Option<Arc<Manifest>>>,
    /// Per device.
    pub from: Vec<Option<Source>>,
    /// Per device without a manifest: why.
    pub notes: Vec<Option<String>>,
}

/// Chooses each device's manifest: from `verdicts` (by firmware digest, `digests[i]` being
/// device `i`'s) when the log was read, else from `files` by vendor and model.
pub fn choose(
    inventory: &Inventory,
    digests: &[Option<Sha256>],
    verdicts: Option<&HashMap<Sha256, Verdict>>,
    files: &[Arc<Manifest>],
) -> Choice {
    let n = inventory.devices.len();
    let mut c = Choice {
        manifests: vec![None; n],
        from: vec![None; n],
        notes: vec![None; n],
    };
    if let Some(by_digest) = verdicts {
        // One manifest per release entry, shared by every device running it.
        let mut by_entry: HashMap<u64, Arc<Manifest>> = HashMap::new();
        for (i, d) in digests.iter().enumerate().take(n) {
            let Some(d) = d else {
                c.notes[i] = Some("no firmware digest in the inventory".into());
                continue;
            };
            let v = by_digest.get(d);
            match v.and_then(|v| v.release.as_ref().map(|r| (v, r))) {
                Some((v, r)) => {
                    let m = by_entry
                        .entry(r.index)
                        .or_insert_with(|| Arc::new(r.release.manifest.clone()))
                        .clone();
                    c.manifests[i] = Some(m);
                    c.from[i] = Some(Source::Log {
                        index: r.index,
                        leaf_hash: r.leaf_hash,
                        admitted: v.admit,
                        version: r.release.version.clone(),
                    });
                }
                None => {
                    let why = v
                        .and_then(|v| {
                            v.checks
                                .iter()
                                .find(|c| c.outcome == Outcome::Fail)
                                .map(|c| c.reason.clone())
                        })
                        .unwrap_or_else(|| "no release of its firmware in the log".into());
                    c.notes[i] = Some(why);
                }
            }
        }
    }
    for (i, m) in crate::manifests_by_model(inventory, files)
        .into_iter()
        .enumerate()
    {
        if c.manifests[i].is_some() {
            continue;
        }
        if let Some(m) = m {
            c.from[i] = files
                .iter()
                .position(|f| Arc::ptr_eq(f, &m))
                .map(Source::File);
            c.manifests[i] = Some(m);
            c.notes[i] = None;
        }
    }
    c
}

/// A choice as reports and evidence name it.
#[derive(Debug, Default)]
pub struct Described {
    /// Per device, in inventory order (as [`Choice::manifests`]).
    pub manifests: Vec<Option<Arc<Manifest>>>,
    /// Per device: where its manifest came from, as the report says it.
    pub from: Vec<Option<ManifestFrom>>,
    /// Per device without a manifest: why.
    pub notes: Vec<Option<String>>,
    /// Per device whose manifest came from the log: the release entry.
    pub releases: Vec<Option<EntryRef>>,
}

impl Choice {
    /// Names each source: `files[k]` is the path and SHA-256 of the `k`-th manifest file given,
    /// `origin` the origin of the log the releases were read from.
    pub fn describe(self, files: &[(PathBuf, Sha256)], origin: &str) -> Described {
        let releases = self
            .from
            .iter()
            .map(|f| match f {
                Some(Source::Log {
                    index, leaf_hash, ..
                }) => Some(EntryRef {
                    log: origin.to_string(),
                    index: *index,
                    leaf_hash: leaf_hash.to_hex(),
                }),
                _ => None,
            })
            .collect();
        let from = self
            .from
            .into_iter()
            .map(|f| {
                f.map(|f| match f {
                    Source::File(k) => ManifestFrom::File(files[k].0.clone(), files[k].1),
                    Source::Log {
                        index,
                        admitted,
                        version,
                        ..
                    } => ManifestFrom::Log {
                        index,
                        admitted,
                        version,
                    },
                })
            })
            .collect();
        Described {
            manifests: self.manifests,
            from,
            notes: self.notes,
            releases,
        }
    }
}

impl Described {
    /// What each device's evidence names as what its flows were judged against (`log`: the
    /// log the release entries are in, for people).
    pub fn bases(&self, log: Option<&str>) -> Vec<Option<Basis>> {
        self.manifests
            .iter()
            .zip(&self.from)
            .zip(&self.releases)
            .map(|((m, f), r)| {
                Some(Basis {
                    manifest: m.clone()?,
                    name: f.as_ref()?.evidence_name(log),
                    release: r.clone(),
                })
            })
            .collect()
    }
}
