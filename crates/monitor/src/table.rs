//! Prefix tables: CIDR prefixes, each with a set of services, flattened into sorted disjoint
//! address ranges, so that a lookup costs the same whatever the number of rules.
//!
//! The ranges' first addresses are searched as a static B-tree of 16-way nodes (each node's keys
//! side by side, in one or two cache lines), so that a lookup reads a few cache lines, one per
//! level, instead of the dozen scattered ones of a binary search over a large table.

/// Keys per node of the search levels.
const B: usize = 16;

/// Disjoint address ranges (one address family), each naming a set of services.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table<K> {
    /// The first address of each range, ascending.
    starts: Vec<K>,
    /// The last address and the set of each range.
    rest: Vec<(K, u32)>,
    /// Search levels above `starts`, bottom up: `levels[0][j] = starts[j * B]`,
    /// `levels[k + 1][j] = levels[k][j * B]`; the last has at most `B` keys.
    levels: Vec<Vec<K>>,
}

/// How many of `keys` are at most `addr` (written so that it vectorises).
#[inline]
fn count_le<K: Ord + Copy>(keys: &[K], addr: K) -> usize {
    keys.iter().map(|&k| usize::from(k <= addr)).sum()
}

impl<K: Ord + Copy> Table<K> {
    /// The table of sorted, disjoint `(first, last, set)` ranges.
    fn from_ranges(ranges: Vec<(K, K, u32)>) -> Table<K> {
        let starts: Vec<K> = ranges.iter().map(|r| r.0).collect();
        let rest = ranges.iter().map(|r| (r.1, r.2)).collect();
        let mut levels: Vec<Vec<K>> = Vec::new();
        let mut below = &starts;
        while below.len() > B {
            let up: Vec<K> = below.iter().step_by(B).copied().collect();
            levels.push(up);
            below = levels.last().unwrap_or(&starts);
        }
        Table {
            starts,
            rest,
            levels,
        }
    }

    /// The set of the range holding `addr`, if any.
    #[inline]
    pub(crate) fn lookup(&self, addr: K) -> Option<u32> {
        // `p`: how many keys of the current level are at most `addr`, from the top down. The
        // count of the level below lies within the node under the last key counted.
        let mut levels = self.levels.iter().rev();
        let mut p = match levels.next() {
            Some(top) => count_le(top, addr),
            None => count_le(&self.starts, addr),
        };
        if !self.levels.is_empty() {
            for level in levels
                .map(Vec::as_slice)
                .chain(std::iter::once(&self.starts[..]))
            {
                let lo = p.checked_sub(1)? * B;
                let hi = (lo + B).min(level.len());
                p = lo + count_le(level.get(lo..hi)?, addr);
            }
        }
        let (end, set) = *self.rest.get(p.checked_sub(1)?)?;
        (end >= addr).then_some(set)
    }

    /// Number of ranges.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }
}

/// Many IPv4 tables in two flat arrays, each named by a small [`FlatId`]: a device's record
/// holds its manifest's ids, so that a lookup reads the arrays and nothing in between (no
/// per-table vector headers to chase).
#[derive(Debug, Default, Clone)]
pub(crate) struct FlatTables {
    /// Per table: its search levels, top first, then its range starts.
    keys: Vec<u32>,
    /// Per table: the last address and set of each range.
    rest: Vec<(u32, u32)>,
}

/// Where one table lies in a [`FlatTables`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlatId {
    keys: u32,
    rest: u32,
    n: u32,
}

impl FlatTables {
    /// Adds a table; returns its id. Panics never: offsets past 4 Gi entries are refused by
    /// the caller's limits long before (a manifest is bounded in size).
    pub(crate) fn add(&mut self, t: &Table<u32>) -> FlatId {
        let id = FlatId {
            keys: self.keys.len() as u32,
            rest: self.rest.len() as u32,
            n: t.starts.len() as u32,
        };
        for level in t.levels.iter().rev() {
            self.keys.extend_from_slice(level);
        }
        self.keys.extend_from_slice(&t.starts);
        self.rest.extend_from_slice(&t.rest);
        id
    }

    /// The set of the range holding `addr` in table `id`, if any.
    #[inline]
    pub(crate) fn lookup(&self, id: FlatId, addr: u32) -> Option<u32> {
        let n = id.n as usize;
        // Level sizes, bottom (the starts) up, as `Table::from_ranges` makes them.
        let mut sizes = [0usize; 9];
        sizes[0] = n;
        let mut top = 0;
        while sizes[top] > B {
            sizes[top + 1] = sizes[top].div_ceil(B);
            top += 1;
        }
        let mut off = id.keys as usize;
        let mut p = count_le(self.keys.get(off..off + sizes[top])?, addr);
        off += sizes[top];
        for k in (0..top).rev() {
            let lo = p.checked_sub(1)? * B;
            let hi = (lo + B).min(sizes[k]);
            p = lo + count_le(self.keys.get(off + lo..off + hi)?, addr);
            off += sizes[k];
        }
        let (end, set) = *self.rest.get(id.rest as usize + p.checked_sub(1)?)?;
        (end >= addr).then_some(set)
    }
}

impl Table<u128> {
    /// The same table with 32-bit addresses (IPv4: every address fits).
    pub(crate) fn narrow(self) -> Table<u32> {
        Table::from_ranges(
            self.starts
                .iter()
                .zip(&self.rest)
                .map(|(&a, &(b, s))| (a as u32, b as u32, s))
                .collect(),
        )
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
        let mut t: Vec<(u128, u128, u32)> = Vec::new();
        // The prefixes covering the sweep's position, outermost first.
        let mut stack: Vec<(u128, u128, Vec<u32>)> = Vec::new();
        // The first address not yet emitted (None: past the last address).
        let mut pos: Option<u128> = Some(0);
        let mut emit = |t: &mut Vec<(u128, u128, u32)>,
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
            t.push((from, to, intern(s)));
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
        Table::from_ranges(t)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn lookups_in_large_tables_agree_with_a_scan() {
        // Tables of every size around the node boundaries (1 to 5,000 ranges, so one to four
        // levels), ranges with gaps between them, probed at and around every boundary.
        for n in [
            1usize, 2, 15, 16, 17, 31, 32, 33, 255, 256, 257, 4095, 4096, 4097, 5000,
        ] {
            let ranges: Vec<(u32, u32, u32)> = (0..n as u32)
                .map(|i| (i * 10 + 3, i * 10 + 3 + i % 5, i))
                .collect();
            let t = Table::from_ranges(ranges.clone());
            assert_eq!(t.len(), n);
            let scan = |a: u32| ranges.iter().find(|r| r.0 <= a && a <= r.1).map(|r| r.2);
            for r in &ranges {
                for a in [r.0.saturating_sub(1), r.0, r.1, r.1 + 1, r.1 + 2] {
                    assert_eq!(t.lookup(a), scan(a), "{n} ranges, address {a}");
                }
            }
            assert_eq!(t.lookup(0), None);
            assert_eq!(t.lookup(u32::MAX), scan(u32::MAX));
        }
        assert_eq!(Table::<u32>::from_ranges(Vec::new()).lookup(7), None);
    }

    #[test]
    fn flat_tables_answer_as_their_tables() {
        use super::FlatTables;
        let mut flat = FlatTables::default();
        let mut tables = Vec::new();
        for n in [0usize, 1, 16, 17, 300, 4097, 5] {
            let ranges: Vec<(u32, u32, u32)> = (0..n as u32)
                .map(|i| (i * 7 + 1, i * 7 + 1 + i % 4, i + 1000 * n as u32))
                .collect();
            let t = Table::from_ranges(ranges);
            let id = flat.add(&t);
            tables.push((t, id, n as u32));
        }
        for (t, id, n) in &tables {
            for a in 0..(n * 7 + 10) {
                assert_eq!(flat.lookup(*id, a), t.lookup(a), "{n} ranges, address {a}");
            }
        }
    }

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
