//! Merkle tree math of RFC 6962 / RFC 9162 §2.1: roots, inclusion and consistency proofs, generated
//! from any source of complete-subtree hashes and verified from nothing but the proof.

use crate::hash::{node_hash, Hash};
use crate::position::{LogIndex, TreeSize};
use std::fmt;

/// Why a proof failed to verify, or could not be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first size of a consistency proof is larger than the second.
    SizesReversed {
        /// Older size.
        from: u64,
        /// Newer size.
        to: u64,
    },
    /// A consistency proof from the empty tree proves nothing and is refused.
    FromEmptyTree,
    /// The proof has the wrong number of hashes for the sizes given.
    WrongLength {
        /// How many hashes the proof carries.
        got: usize,
    },
    /// A hash (leaf, root or proof element) is not 32 bytes.
    BadHashLength {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The recomputed root does not equal the expected root.
    RootMismatch {
        /// Recomputed root.
        computed: Hash,
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::IndexOutOfRange { index, size } => {
                write!(f, "index {index} is not below tree size {size}")
            }
            ProofError::SizesReversed { from, to } => {
                write!(f, "consistency from size {from} to smaller size {to}")
            }
            ProofError::FromEmptyTree => {
                f.write_str("a consistency proof from the empty tree is meaningless")
            }
            ProofError::WrongLength { got } => {
                write!(f, "proof has the wrong number of hashes ({got})")
            }
            ProofError::BadHashLength { what, len } => {
                write!(f, "{what} is {len} bytes, not 32")
            }
            ProofError::RootMismatch { computed } => {
                write!(f, "proof leads to root {computed}, not the expected root")
            }
        }
    }
}

impl std::error::Error for ProofError {}

/// A source of hashes of complete subtrees.
///
/// `node(level, index)` is the hash of the complete subtree of `2^level` leaves whose first leaf is
/// `index << level`. Implementations: [`MemoryTree`] here, tiles on disk in the `log` crate.
/// Proof generation only ever asks for subtrees that are complete in the tree it works on.
pub trait NodeSource {
    /// What reading a hash can fail with.
    type Error: From<ProofError>;
    /// The hash of a complete subtree.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaves `[lo, hi)` where `lo` is aligned to a power of two at least `hi - lo`
/// (true of every range the RFC 9162 recursion produces): folds the complete subtrees that make up
/// the range, right to left.
pub fn range_hash<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    if lo == hi {
        return Ok(Hash::EMPTY_ROOT);
    }
    let mut parts: [(u8, u64); 64] = [(0, 0); 64];
    let mut n = 0;
    let mut a = lo;
    while a < hi {
        let level = 63 - (hi - a).leading_zeros() as u8;
        let level = level.min(if a == 0 { 63 } else { a.trailing_zeros() as u8 });
        parts[n] = (level, a >> level);
        n += 1;
        a += 1u64 << level;
    }
    let (l, i) = parts[n - 1];
    let mut acc = src.node(l, i)?;
    for &(l, i) in parts[..n - 1].iter().rev() {
        acc = node_hash(&src.node(l, i)?, &acc);
    }
    Ok(acc)
}

/// The root hash of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(src: &S, size: TreeSize) -> Result<Hash, S::Error> {
    range_hash(src, 0, size.0)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1), from the
/// leaf's sibling up to the root's child.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: LogIndex,
    size: TreeSize,
) -> Result<Vec<Hash>, S::Error> {
    let (index, size) = (index.0, size.0);
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::with_capacity(64);
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: NodeSource>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m - lo < k {
        path(src, m, lo, lo + k, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `from` and `to` leaves (RFC 9162 §2.1.4.1).
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    from: TreeSize,
    to: TreeSize,
) -> Result<Vec<Hash>, S::Error> {
    let (from, to) = (from.0, to.0);
    if from > to {
        return Err(ProofError::SizesReversed { from, to }.into());
    }
    if from == 0 {
        return Err(ProofError::FromEmptyTree.into());
    }
    let mut proof = Vec::with_capacity(64);
    if from < to {
        subproof(src, from, 0, to, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: NodeSource>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

fn hash_arg(what: &'static str, bytes: &[u8]) -> Result<Hash, ProofError> {
    Hash::from_slice(bytes).ok_or(ProofError::BadHashLength {
        what,
        len: bytes.len(),
    })
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2). Inputs are byte strings, as the RFC states them; any that is not 32 bytes
/// fails.
pub fn verify_inclusion(
    index: LogIndex,
    size: TreeSize,
    leaf: &[u8],
    proof: &[Hash],
    root: &[u8],
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    let root = hash_arg("root", root)?;
    if computed != root {
        return Err(ProofError::RootMismatch { computed });
    }
    Ok(())
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 without the final comparison).
pub fn root_from_inclusion(
    index: LogIndex,
    size: TreeSize,
    leaf: &[u8],
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let (index, size) = (index.0, size.0);
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut r = hash_arg("leaf hash", leaf)?;
    let (mut fnode, mut snode) = (index, size - 1);
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    Ok(r)
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1` leaves
/// with root `root1` (RFC 9162 §2.1.4.2). As in transparency-dev/merkle, a proof from size 0 is
/// always refused, and equal sizes need an empty proof and byte-equal roots.
pub fn verify_consistency(
    size1: TreeSize,
    size2: TreeSize,
    proof: &[Hash],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    let (size1, size2) = (size1.0, size2.0);
    if size2 < size1 {
        return Err(ProofError::SizesReversed {
            from: size1,
            to: size2,
        });
    }
    if size1 == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if root1 != root2 {
            let computed = Hash::from_slice(root1).unwrap_or_default();
            return Err(ProofError::RootMismatch { computed });
        }
        return Ok(());
    }
    let r1 = hash_arg("first root", root1)?;
    let r2 = hash_arg("second root", root2)?;
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0 });
    }
    let mut path: &[Hash] = proof;
    let seed;
    if size1.is_power_of_two() {
        seed = r1;
    } else {
        seed = path[0];
        path = &path[1..];
    }
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    if fr != r1 {
        return Err(ProofError::RootMismatch { computed: fr });
    }
    if sr != r2 {
        return Err(ProofError::RootMismatch { computed: sr });
    }
    Ok(())
}

/// A whole tree held in memory, every level of it: for tests, small logs and proof vectors.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        MemoryTree {
            levels: vec![Vec::new()],
        }
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        // invariant: every node the fold asks for is complete and stored.
        root(self, TreeSize(self.size())).unwrap_or_default()
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(ProofError::IndexOutOfRange {
                index: index << level,
                size: self.size(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    #[test]
    fn every_inclusion_and_consistency_proof_of_small_trees_verifies() {
        let t = tree(70);
        for size in 1..=70u64 {
            let (n, r) = (TreeSize(size), root(&t, TreeSize(size)).unwrap());
            for i in 0..size {
                let p = inclusion_proof(&t, LogIndex(i), n).unwrap();
                let leaf = t.node(0, i).unwrap();
                verify_inclusion(LogIndex(i), n, leaf.as_ref(), &p, r.as_ref()).unwrap();
                // The wrong leaf index must fail whenever it changes the path.
                if size > 1 {
                    let other = LogIndex((i + 1) % size);
                    assert!(verify_inclusion(other, n, leaf.as_ref(), &p, r.as_ref()).is_err());
                }
            }
            for from in 1..=size {
                let m = TreeSize(from);
                let p = consistency_proof(&t, m, n).unwrap();
                let r1 = root(&t, m).unwrap();
                verify_consistency(m, n, &p, r1.as_ref(), r.as_ref()).unwrap();
                if from < size {
                    let mut bad = p.clone();
                    bad[0].0[0] ^= 1;
                    assert!(verify_consistency(m, n, &bad, r1.as_ref(), r.as_ref()).is_err());
                }
            }
        }
    }
}
