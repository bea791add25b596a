//! Devices: what is kept per device, and which manifest files apply to which devices.

use nospy_inventory::Inventory;
use nospy_manifest::Manifest;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What is kept per device: its compiled manifest and vendor (for `same-vendor` rules), and
/// what was counted; two to a cache line. (The flow path finds the compiled manifest with the
/// device's address, and that manifest's tables in `Monitor::v4_ids`.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dev {
    /// Its compiled manifest in `Monitor::compiled`, or `NO_MANIFEST`.
    pub(crate) compiled: u32,
    /// Its vendor, numbered.
    pub(crate) vendor: u32,
    pub(crate) flows: u64,
    pub(crate) violations: u64,
    pub(crate) unattributable: u64,
}

pub(crate) const NO_MANIFEST: u32 = u32::MAX;

/// A device found by its address: its number, and its compiled manifest's (`NO_MANIFEST`:
/// none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found(pub(crate) u32, pub(crate) u32);

/// Which manifests apply to which devices, when manifests are given as files: each device gets
/// the manifest naming its vendor and model (the first, if several do).
pub fn manifests_by_model(
    inventory: &Inventory,
    manifests: &[Arc<Manifest>],
) -> Vec<Option<Arc<Manifest>>> {
    let mut by: BTreeMap<(&str, &str), Arc<Manifest>> = BTreeMap::new();
    for m in manifests {
        by.entry((m.device.vendor.as_str(), m.device.model.as_str()))
            .or_insert_with(|| m.clone());
    }
    inventory
        .devices
        .iter()
        .map(|d| by.get(&(d.vendor.as_str(), d.model.as_str())).cloned())
        .collect()
}
