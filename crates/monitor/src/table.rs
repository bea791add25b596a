//! Prefix tables: CIDR prefixes, each with a set of services, flattened into sorted disjoint
//! address ranges, so that a lookup is one binary search whatever the number of rules.

/// Disjoint address ranges (one address family), each naming a set of services: first address,
/// last address, set, side by side so that each probe of the search reads one place.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table<K> {
    ranges: Vec<(K, K, u32)>,
}

impl<K: Ord + Copy> Table<K> {
    /// The set of the range holding `addr`, if any.
    #[inline]
    pub(crate) fn lookup(&self, addr: K) -> Option<u32> {
        let i = self.ranges.partition_point(|r| r.0 <= addr);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (r.1 >= addr).then_some(r.2)
    }
}

impl Table<u128> {
    /// The same table with 32-bit addresses (IPv4: every address fits).
    pub(crate) fn narrow(self) -> Table<u32> {
        Table {
            ranges: self
                .ranges
                .into_iter()
                .map(|(a, b, s)| (a as u32, b as u32, s))
                .collect(),
        }
    }

    /// Builds the table from `(first address, last address, service)` of CIDR prefixes (nested
    /// or disjoint, never partly overlapping). `intern` turns the services that apply to one
    /// range into a set index.
    pub(crate) fn build(
        mut prefixes: Vec<(u128, u128, u32)>,
        mut intern: impl FnMut(Vec<u32>) -> u32,
    ) -> Table<u128> {
        // Outer prefixes first, so that a stack holds the prefixes covering the sweep's position.
        prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut t = Table { ranges: Vec::new() };
        // The prefixes covering the sweep's position, outermost first.
        let mut stack: Vec<(u128, u128, Vec<u32>)> = Vec::new();
        // The first address not yet emitted (None: past the last address).
        let mut pos: Option<u128> = Some(0);
        let mut emit = |t: &mut Table<u128>,
                        from: Option<u128>,
                        to: u128,
                        stack: &[(u128, u128, Vec<u32>)]| {
            let Some(from) = from else { return };
            if from > to || stack.is_empty() {
                return;
            }
            let mut s: Vec<u32> = stack.iter().flat_map(|e| e.2.iter().copied()).collect();
            s.sort_unstable();
            s.dedup();
            t.ranges.push((from, to, intern(s)));
        };
        for (start, end, svc) in prefixes {
            if let Some(top) = stack.last_mut() {
                if top.0 == start && top.1 == end {
                    // The same prefix again: its services join the one open.
                    top.2.push(svc);
                    continue;
                }
            }
            // Close what ends before this prefix starts.
            while let Some(&(_, top_end, _)) = stack.last() {
                if top_end >= start {
                    break;
                }
                emit(&mut t, pos, top_end, &stack);
                pos = top_end.checked_add(1);
                stack.pop();
            }
            if let Some(p) = pos.filter(|p| start > *p) {
                emit(&mut t, Some(p), start - 1, &stack);
            }
            pos = Some(start);
            stack.push((start, end, vec![svc]));
        }
        while let Some(&(_, top_end, _)) = stack.last() {
            emit(&mut t, pos, top_end, &stack);
            pos = top_end.checked_add(1);
            stack.pop();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    /// Each range's set, by its first and last address, for the sets built from `prefixes`.
    fn build(prefixes: &[(u128, u128, u32)]) -> (Table<u128>, Vec<Vec<u32>>) {
        let mut sets: Vec<Vec<u32>> = Vec::new();
        let t = Table::build(prefixes.to_vec(), |s| {
            sets.push(s);
            (sets.len() - 1) as u32
        });
        (t, sets)
    }

    fn at(t: &Table<u128>, sets: &[Vec<u32>], a: u128) -> Vec<u32> {
        t.lookup(a)
            .map(|i| sets[i as usize].clone())
            .unwrap_or_default()
    }

    #[test]
    fn nested_and_repeated_prefixes_give_the_union_of_their_services() {
        // 10.0.0.0/8 (service 1) holding 10.1.0.0/16 (2) holding 10.1.2.0/24 (3, and 4 twice
        // listed), beside 192.168.0.0/16 (5).
        let p8 = (0x0a00_0000, 0x0aff_ffff, 1);
        let p16 = (0x0a01_0000, 0x0a01_ffff, 2);
        let p24 = (0x0a01_0200, 0x0a01_02ff, 3);
        let p24b = (0x0a01_0200, 0x0a01_02ff, 4);
        let other = (0xc0a8_0000, 0xc0a8_ffff, 5);
        let (t, sets) = build(&[p24, other, p8, p24b, p16]);
        assert_eq!(at(&t, &sets, 0x09ff_ffff), Vec::<u32>::new());
        assert_eq!(at(&t, &sets, 0x0a00_0000), vec![1]);
        assert_eq!(at(&t, &sets, 0x0a01_0000), vec![1, 2]);
        assert_eq!(at(&t, &sets, 0x0a01_01ff), vec![1, 2]);
        assert_eq!(at(&t, &sets, 0x0a01_0200), vec![1, 2, 3, 4]);
        assert_eq!(at(&t, &sets, 0x0a01_02ff), vec![1, 2, 3, 4]);
        assert_eq!(at(&t, &sets, 0x0a01_0300), vec![1, 2]);
        assert_eq!(at(&t, &sets, 0x0a02_0000), vec![1]);
        assert_eq!(at(&t, &sets, 0x0aff_ffff), vec![1]);
        assert_eq!(at(&t, &sets, 0x0b00_0000), Vec::<u32>::new());
        assert_eq!(at(&t, &sets, 0xc0a8_1234), vec![5]);
    }

    #[test]
    fn prefixes_reaching_the_last_address() {
        // ::/0 (1) holding ffff::/16 (2): both end at the last IPv6 address.
        let (t, sets) = build(&[(0, u128::MAX, 1), (0xffff << 112, u128::MAX, 2)]);
        assert_eq!(at(&t, &sets, 0), vec![1]);
        assert_eq!(at(&t, &sets, (0xffff << 112) - 1), vec![1]);
        assert_eq!(at(&t, &sets, u128::MAX), vec![1, 2]);
        // Brute force against the definition on a small space.
        let prefixes: Vec<(u128, u128, u32)> = vec![
            (0, 255, 0),
            (0, 127, 1),
            (64, 127, 2),
            (64, 71, 3),
            (200, 203, 4),
            (200, 200, 5),
        ];
        let (t, sets) = build(&prefixes);
        for a in 0..=260u128 {
            let want: Vec<u32> = prefixes
                .iter()
                .filter(|p| p.0 <= a && a <= p.1)
                .map(|p| p.2)
                .collect();
            assert_eq!(at(&t, &sets, a), want, "address {a}");
        }
    }
}
