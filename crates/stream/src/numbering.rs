//! The inventory's device addresses, numbered: a collector, which has looked up each flow's
//! addresses to find its device, writes a device's address in a batch as its number here, and
//! a worker reads the device from the number instead of looking the address up again (the
//! lookups were the part of a worker's judging that grew most beside one process's).
//!
//! Numbers mean something only between a collector and a worker that read the same inventory:
//! a batch carries the [`Numbering::digest`] it was written under, a reader refuses a batch of
//! another, and a deployment records the digest of the first collector or worker that set it
//! up, so that one started with another inventory says so and stops ([`claim`]).

use nospy_flow::addrmap::AddrMap;
use nospy_inventory::Inventory;
use nospy_tlog::Sha256;
use std::net::IpAddr;

/// Which of a flow's addresses (its source's, its destination's) are a device's, by their
/// numbers in a [`Numbering`]; `None`: no device's.
pub type Refs = [Option<u32>; 2];

/// Every address of every device of an inventory, numbered in the inventory's order (a
/// device's addresses in the order it lists them).
pub struct Numbering {
    digest: [u8; 32],
    addrs: Vec<IpAddr>,
    /// Per number, the device (its place in the inventory).
    device: Vec<u32>,
    /// Address to number: where an address is listed twice, the later (as the monitor finds
    /// devices by address).
    by_addr: AddrMap<u32>,
}

impl Numbering {
    /// The numbering of `inventory`'s addresses.
    pub fn new(inventory: &Inventory) -> Numbering {
        use sha2::Digest as _;
        let n: usize = inventory.devices.iter().map(|d| d.addresses.len()).sum();
        let mut h = sha2::Sha256::new();
        h.update(b"nospy address numbering 1\n");
        let mut addrs = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut by_addr = AddrMap::with_capacity(n);
        for (i, d) in inventory.devices.iter().enumerate() {
            h.update((d.device.len() as u32).to_be_bytes());
            h.update(d.device.as_bytes());
            h.update((d.addresses.len() as u32).to_be_bytes());
            for a in &d.addresses {
                match a {
                    IpAddr::V4(v) => {
                        h.update([4]);
                        h.update(v.octets());
                    }
                    IpAddr::V6(v) => {
                        h.update([6]);
                        h.update(v.octets());
                    }
                }
                by_addr.insert(*a, addrs.len() as u32);
                addrs.push(*a);
                device.push(i as u32);
            }
        }
        Numbering {
            digest: h.finalize().into(),
            addrs,
            device,
            by_addr,
        }
    }

    /// The SHA-256 of the devices' ids and addresses in order: two numberings with the same
    /// digest number the same addresses the same way, of the same devices.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// How many addresses are numbered.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether no address is numbered.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The number of `a`, if it is a device's address.
    #[inline]
    pub fn of(&self, a: IpAddr) -> Option<u32> {
        self.by_addr.get(a)
    }

    /// Whether `a` is a device's address.
    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        self.by_addr.contains(a)
    }

    /// The numbers of a flow's source and destination.
    #[inline]
    pub fn refs(&self, src: IpAddr, dst: IpAddr) -> Refs {
        [self.of(src), self.of(dst)]
    }

    /// The address numbered `n`.
    #[inline]
    pub fn addr(&self, n: u32) -> Option<IpAddr> {
        self.addrs.get(n as usize).copied()
    }

    /// The device (its place in the inventory) whose address is numbered `n`.
    #[inline]
    pub fn device(&self, n: u32) -> Option<u32> {
        self.device.get(n as usize).copied()
    }

    /// The devices of a flow's source and destination, from their numbers.
    #[inline]
    pub fn devices(&self, refs: Refs) -> [Option<u32>; 2] {
        refs.map(|r| self.device(r?))
    }
}

impl std::fmt::Debug for Numbering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Numbering")
            .field("digest", &Sha256(self.digest).to_hex())
            .field("addresses", &self.addrs.len())
            .finish()
    }
}

/// Records `numbering` as the deployment's (`numbering` in its state store) if it has none,
/// and refuses another: a collector or worker started with an inventory other than the one
/// its deployment was set up with would write or read device numbers the others do not share.
#[cfg(feature = "nats")]
pub async fn claim<T: crate::transport::Transport>(
    t: &T,
    numbering: &Numbering,
) -> Result<(), crate::transport::TransportError> {
    let ours = Sha256(*numbering.digest()).to_hex();
    let Some(theirs) = t.set_once("numbering", ours.clone().into()).await? else {
        return Ok(());
    };
    let theirs = String::from_utf8_lossy(&theirs).into_owned();
    if theirs == ours {
        Ok(())
    } else {
        Err(crate::transport::TransportError::OtherInventory { ours, theirs })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nospy_testkit::fixtures::access_device;

    fn inventory() -> Inventory {
        Inventory {
            devices: vec![
                access_device("a", vec!["10.0.0.1".parse().unwrap()]),
                access_device(
                    "b",
                    vec!["10.0.0.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
                ),
            ],
        }
    }

    #[test]
    fn addresses_are_numbered_in_the_inventory_s_order() {
        let n = Numbering::new(&inventory());
        assert_eq!(n.len(), 3);
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(n.of(v6), Some(2));
        assert_eq!(n.addr(2), Some(v6));
        assert_eq!(n.device(2), Some(1));
        assert_eq!(n.device(0), Some(0));
        assert_eq!(n.device(3), None);
        assert_eq!(
            n.devices(n.refs("10.0.0.2".parse().unwrap(), "192.0.2.1".parse().unwrap())),
            [Some(1), None]
        );
    }

    #[test]
    fn the_digest_covers_ids_addresses_and_their_order() {
        let base = Numbering::new(&inventory());
        let mut renamed = inventory();
        renamed.devices[0].device = "a2".into();
        let mut moved = inventory();
        moved.devices[1].addresses.swap(0, 1);
        let mut swapped = inventory();
        swapped.devices.swap(0, 1);
        let mut vendor = inventory();
        vendor.devices[0].vendor = "Other".into();
        for other in [renamed, moved, swapped] {
            assert_ne!(Numbering::new(&other).digest(), base.digest());
        }
        // What numbering does not depend on does not change it.
        assert_eq!(Numbering::new(&vendor).digest(), base.digest());
    }
}
