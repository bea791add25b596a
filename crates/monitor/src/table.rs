//! Prefix tables: CIDR prefixes, each with a set of services, flattened into sorted disjoint
//! address ranges, so that a lookup is one binary search whatever the number of rules.

/// Disjoint address ranges (one address family), each naming a set of service indexes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    starts: Vec<u128>,
    ends: Vec<u128>,
    sets: Vec<u32>,
}

impl Table {
    /// Builds the table from `(first address, last address, service)` of CIDR prefixes (nested
    /// or disjoint, never partly overlapping). `intern` turns the services that apply to one
    /// range into a set index.
    pub(crate) fn build(
        mut prefixes: Vec<(u128, u128, u32)>,
        mut intern: impl FnMut(Vec<u32>) -> u32,
    ) -> Table {
        // Outer prefixes first, so that a stack holds the prefixes covering the sweep's position.
        prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut t = Table::default();
        // The prefixes covering the sweep's position, outermost first.
        let mut stack: Vec<(u128, u128, Vec<u32>)> = Vec::new();
        // The first address not yet emitted (None: past the last address).
        let mut pos: Option<u128> = Some(0);
        let mut emit =
            |t: &mut Table, from: Option<u128>, to: u128, stack: &[(u128, u128, Vec<u32>)]| {
                let Some(from) = from else { return };
                if from > to || stack.is_empty() {
                    return;
                }
                let mut s: Vec<u32> = stack.iter().flat_map(|e| e.2.iter().copied()).collect();
                s.sort_unstable();
                s.dedup();
                t.starts.push(from);
                t.ends.push(to);
                t.sets.push(intern(s));
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

    /// The set of the range holding `addr`, if any.
    #[inline]
    pub(crate) fn lookup(&self, addr: u128) -> Option<u32> {
        let i = self.starts.partition_point(|s| *s <= addr);
        if i == 0 {
            return None;
        }
        (self.ends[i - 1] >= addr).then(|| self.sets[i - 1])
    }
}
