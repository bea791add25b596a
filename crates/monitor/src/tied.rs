//! The names DNS answers tied one address to, each with when: what the judgement of a flow to
//! that address asks of a manifest's name rules. DNS answers are hostile input (anything on the
//! wire from port 53 is read as one, and a device can send them), so one address may be tied to
//! any number of names: recording an answer and judging a flow must not cost what the address
//! holds, only what the answer or the manifest brings.

use nospy_flow::fasthash::FastMap;
use std::sync::Arc;

/// Beyond this many names an address's names are indexed by name as well.
const INDEX_FROM: usize = 16;

/// One address's names, in the order first seen, each with the first time an answer tied it
/// and the last time an answer's TTL kept it (nanoseconds since the epoch).
#[derive(Debug, Default)]
pub(crate) struct Tied {
    list: Vec<(Arc<str>, u64, u64)>,
    /// Position in `list` by name, once `list` is longer than [`INDEX_FROM`].
    index: Option<FastMap<Arc<str>, usize>>,
}

impl Tied {
    /// Records that an answer tied `name` from `from` until `until`: a name tied again widens
    /// its span. Whether the name is new.
    pub(crate) fn add(&mut self, name: &str, from: u64, until: u64) -> bool {
        if let Some(i) = self.position(name) {
            let e = &mut self.list[i];
            e.1 = e.1.min(from);
            e.2 = e.2.max(until);
            return false;
        }
        let name: Arc<str> = Arc::from(name);
        let at = self.list.len();
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), at);
        } else if at + 1 > INDEX_FROM {
            let mut index: FastMap<Arc<str>, usize> = self
                .list
                .iter()
                .enumerate()
                .map(|(i, e)| (e.0.clone(), i))
                .collect();
            index.insert(name.clone(), at);
            self.index = Some(index);
        }
        self.list.push((name, from, until));
        true
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.list.iter().position(|e| *e.0 == *name),
        }
    }

    /// Whether `name` was tied at `t`.
    pub(crate) fn tied_at(&self, name: &str, t: u64) -> bool {
        self.position(name)
            .is_some_and(|i| self.list[i].1 <= t && t <= self.list[i].2)
    }

    /// How many names.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The names tied at `t`.
    pub(crate) fn at(&self, t: u64) -> impl Iterator<Item = &str> {
        self.list
            .iter()
            .filter(move |e| e.1 <= t && t <= e.2)
            .map(|e| &*e.0)
    }

    /// Every name, in the order first seen.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|e| &*e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_widen_and_the_index_agrees_with_the_list() {
        let mut t = Tied::default();
        for i in 0..100u64 {
            assert!(t.add(&format!("n{i}.example"), 10 * i, 10 * i + 5));
        }
        assert!(!t.add("n3.example", 100, 200));
        assert_eq!(t.len(), 100);
        assert!(t.tied_at("n3.example", 30) && t.tied_at("n3.example", 150));
        assert!(!t.tied_at("n3.example", 29) && !t.tied_at("n3.example", 201));
        assert!(!t.tied_at("n100.example", 1000));
        assert!(t.tied_at("n99.example", 995));
        let at: Vec<&str> = t.at(152).collect();
        assert_eq!(at, ["n3.example", "n15.example"]);
        assert_eq!(t.names().count(), 100);
        assert_eq!(t.names().next(), Some("n0.example"));
    }
}
