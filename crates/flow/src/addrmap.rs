//! A map from devices' addresses to what is kept of each device, made for traffic: most
//! addresses a flow carries are not a device's, and an IPv4 one is told apart by one multiply
//! and one bit before any map is searched. The monitor finds a flow's devices with it, and a
//! collector the partition of a flow's device.

use crate::fasthash::FastMap;
use std::net::IpAddr;

/// Devices' addresses to a value each (the last given for an address).
pub struct AddrMap<V> {
    v4: FastMap<u32, V>,
    v6: FastMap<IpAddr, V>,
    filter: AddrFilter,
}

impl<V: Copy> AddrMap<V> {
    /// A map to be given about `addresses` IPv4 addresses (more only make the filter say
    /// "maybe" more often).
    pub fn with_capacity(addresses: usize) -> AddrMap<V> {
        AddrMap {
            v4: FastMap::default(),
            v6: FastMap::default(),
            filter: AddrFilter::new(addresses),
        }
    }

    /// Maps `a` to `v` (in place of what it was mapped to).
    pub fn insert(&mut self, a: IpAddr, v: V) {
        match a {
            IpAddr::V4(v4) => {
                self.filter.insert(u32::from(v4));
                self.v4.insert(u32::from(v4), v);
            }
            IpAddr::V6(_) => {
                self.v6.insert(a, v);
            }
        }
    }

    /// What `a` is mapped to.
    #[inline]
    pub fn get(&self, a: IpAddr) -> Option<V> {
        match a {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                if !self.filter.may_hold(a) {
                    return None;
                }
                self.v4.get(&a).copied()
            }
            IpAddr::V6(_) => self.v6.get(&a).copied(),
        }
    }

    /// Whether `a` is mapped.
    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        self.get(a).is_some()
    }
}

/// A set of IPv4 addresses as one bit each in a table of 32 bits per address (at least 64 Ki
/// bits, 8 KiB): an address whose bit is clear is not in the set; one whose bit is set may be
/// (about one in 32 of those not in it). Addresses that share a bit only cost a search of the
/// map behind it, so the mixing needs no secret.
struct AddrFilter {
    bits: Vec<u64>,
    /// 64 minus the log2 of the table's size in bits: a product's top bits index it.
    shift: u32,
}

impl AddrFilter {
    fn new(addresses: usize) -> AddrFilter {
        let size = (addresses.saturating_mul(32))
            .next_power_of_two()
            .max(1 << 16);
        AddrFilter {
            bits: vec![0; size / 64],
            shift: 64 - size.trailing_zeros(),
        }
    }

    #[inline]
    fn slot(&self, a: u32) -> usize {
        (u64::from(a).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, a: u32) {
        let i = self.slot(a);
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    #[inline]
    fn may_hold(&self, a: u32) -> bool {
        let i = self.slot(a);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_filter_holds_every_address_given_and_few_others() {
        for n in [0usize, 1, 10, 10_000, 100_000] {
            let mut x = 0x9E37_79B9u32 ^ n as u32;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let given: Vec<u32> = (0..n).map(|_| next()).collect();
            let set: std::collections::HashSet<u32> = given.iter().copied().collect();
            let mut f = AddrFilter::new(n);
            for a in &given {
                f.insert(*a);
            }
            assert!(given.iter().all(|a| f.may_hold(*a)), "{n} addresses");
            // Neighbours of devices' addresses, as traffic has them, and others.
            let others: Vec<u32> = given
                .iter()
                .map(|a| a.wrapping_add(1))
                .chain((0..100_000).map(|_| next()))
                .filter(|a| !set.contains(a))
                .take(100_000)
                .collect();
            let held = others.iter().filter(|a| f.may_hold(**a)).count();
            assert!(
                held * 10 < others.len(),
                "{n} addresses: {held} of {} others held",
                others.len()
            );
        }
    }

    #[test]
    fn the_map_finds_what_was_given_and_nothing_else() {
        let mut m = AddrMap::with_capacity(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        m.insert(a, 1u32);
        m.insert(b, 2);
        m.insert(a, 3);
        assert_eq!(m.get(a), Some(3), "the last value given");
        assert_eq!(m.get(b), Some(2));
        assert!(m.contains(b));
        for other in ["10.0.0.2", "0.0.0.0", "::ffff:10.0.0.1", "2001:db8::2"] {
            assert_eq!(m.get(other.parse().unwrap()), None, "{other}");
        }
    }
}
