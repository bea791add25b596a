//! An entry's place in a log and a tree's size: two `u64`s that RFC 9162's proofs take side by
//! side (`index, size`; `size1, size2`), and that nothing stops a caller from swapping when both
//! are plain integers. The proof functions of [`merkle`](crate::merkle) take these instead, so
//! that each call names which number is which.

use std::fmt;

/// The 0-based position of an entry in a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

/// How many entries a tree (a log at one checkpoint) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TreeSize(pub u64);

impl TreeSize {
    /// Whether the tree holds the entry at `index`.
    pub fn contains(self, index: LogIndex) -> bool {
        index.0 < self.0
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
