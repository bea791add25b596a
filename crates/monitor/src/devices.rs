//! Devices: what is kept per device, the address filter in front of the device map, and which
//! manifest files apply to which devices.

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

/// A set of IPv4 addresses as one bit each in a table of 32 bits per address (at least 64 Ki
/// bits, 8 KiB): an address whose bit is clear is not in the set; one whose bit is set may be
/// (about one in 32 of those not in it). Addresses that share a bit only cost a search of the
/// map behind it, so the mixing needs no secret.
pub(crate) struct AddrFilter {
    pub(crate) bits: Vec<u64>,
    /// 64 minus the log2 of the table's size in bits: a product's top bits index it.
    pub(crate) shift: u32,
}

impl AddrFilter {
    pub(crate) fn new(addresses: usize) -> AddrFilter {
        let size = (addresses.saturating_mul(32))
            .next_power_of_two()
            .max(1 << 16);
        AddrFilter {
            bits: vec![0; size / 64],
            shift: 64 - size.trailing_zeros(),
        }
    }

    #[inline]
    pub(crate) fn slot(&self, a: u32) -> usize {
        (u64::from(a).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    pub(crate) fn insert(&mut self, a: u32) {
        let i = self.slot(a);
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    #[inline]
    pub(crate) fn may_hold(&self, a: u32) -> bool {
        let i = self.slot(a);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

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
