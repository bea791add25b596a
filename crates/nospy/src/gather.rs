//! The fleet's verdicts: every device's firmware judged under the agreement from one reading of
//! the log.

use crate::util::Progress;
use anyhow::{Context as _, Result};
use nospy_client::{LogSource, LoggedRelease};
use nospy_tlog::Hash;
use std::path::Path;

/// What [`fleet_verdicts`] found.
pub struct FleetVerdicts {
    /// Each device's firmware digest, in inventory order.
    pub digests: Vec<Option<Hash>>,
    /// The verdict for each distinct digest the log knows anything about.
    pub verdicts: std::collections::HashMap<Hash, nospy_policy::Verdict>,
    /// Every release of a local log, when asked for (see [`LogSource::read`]).
    pub releases: Option<Vec<LoggedRelease>>,
}

/// Each device's firmware digest (from the inventory), and the verdict under `verifier` for each
/// distinct one the log knows anything about, at time `now`: one reading of the log for the
/// whole fleet (which also lists the log's releases, with `releases`), one batch of signature
/// checks.
pub fn fleet_verdicts(
    src: &LogSource,
    inventory: &nospy_inventory::Inventory,
    verifier: &nospy_policy::Verifier<'_>,
    checkpoint: Option<&Path>,
    now: u64,
    releases: bool,
) -> Result<FleetVerdicts> {
    let digests: Vec<Option<Hash>> = inventory
        .devices
        .iter()
        .map(|d| d.firmware_sha256.as_deref().and_then(Hash::from_hex))
        .collect();
    let mut wanted: Vec<Hash> = digests.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let (evidence, releases) = src
        .read(
            &wanted,
            checkpoint,
            releases,
            &mut Progress::callback("scanned entries"),
        )
        .with_context(|| format!("reading {}", src.name()))?;
    Ok(FleetVerdicts {
        digests,
        verdicts: verify_all(verifier, &wanted, &evidence, now),
        releases,
    })
}

/// The verdict for each of `digests` that `evidence` holds, in one batch of signature checks.
pub fn verify_all(
    verifier: &nospy_policy::Verifier<'_>,
    digests: &[Hash],
    evidence: &std::collections::HashMap<Hash, nospy_policy::Evidence>,
    now: u64,
) -> std::collections::HashMap<Hash, nospy_policy::Verdict> {
    let items: Vec<(&Hash, &nospy_policy::Evidence)> = digests
        .iter()
        .filter_map(|d| evidence.get(d).map(|e| (d, e)))
        .collect();
    items
        .iter()
        .map(|(d, _)| **d)
        .zip(verifier.verify_many(&items, now))
        .collect()
}
