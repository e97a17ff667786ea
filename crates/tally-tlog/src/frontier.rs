//! [`Frontier`]: the compact right edge of a growing tree.

use crate::hash::{empty_root, node_hash, Hash};
use crate::tree::NodeSource;

/// Error restoring a [`Frontier`] from persisted parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    /// A frontier of `size` leaves has exactly `size.count_ones()` hashes.
    #[error("a frontier of size {size} needs {expected} hashes, got {got}")]
    WrongHashCount {
        /// Claimed tree size.
        size: u64,
        /// `size.count_ones()`.
        expected: usize,
        /// Hashes supplied.
        got: usize,
    },
}

/// The roots of the perfect subtrees of the binary decomposition of the tree size, largest
/// first: everything needed to append leaves and compute the root without the rest of the
/// tree (at most 64 hashes).
///
/// A sequencer keeps one of these in memory and writes out the nodes that each
/// [`push`](Frontier::push) completes; those are exactly the nodes a [`NodeSource`] serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest (leftmost) first; persist these with
    /// [`size`](Frontier::size) and restore with [`from_parts`](Frontier::from_parts).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Rebuilds a frontier from a size and its perfect subtree roots, largest first.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Rebuilds the frontier of the first `size` leaves of a tree, asking `src` for one node
    /// per set bit of `size`.
    pub fn from_source<S: NodeSource>(size: u64, src: &S) -> Result<Self, S::Error> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                hashes.push(src.node(level as u8, start >> level)?);
                start += 1 << level;
            }
        }
        Ok(Self { size, hashes })
    }

    /// Appends a leaf (its leaf hash).
    ///
    /// `completed(level, index, hash)` is called for the leaf itself (level 0) and then for
    /// every node this leaf completes, bottom-up; over a whole log this reports each complete
    /// node exactly once.
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let index = self.size;
        let new_size = index.checked_add(1).expect("tree size overflows u64");
        completed(0, index, &leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        // Each set low bit of the old size is a perfect subtree that the new leaf's subtree
        // now pairs with, carrying upward like binary addition.
        while index & (1 << level) != 0 {
            let left = self.hashes.pop().expect("one hash per set bit of size");
            hash = node_hash(&left, &hash);
            level += 1;
            completed(level as u8, index >> level, &hash);
        }
        self.hashes.push(hash);
        self.size = new_size;
    }

    /// Root hash of the tree: the subtree roots folded right to left, as RFC 6962 hashes an
    /// unbalanced tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, h| node_hash(h, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn from_parts_checks_count() {
        assert!(Frontier::from_parts(0, vec![]).is_ok());
        assert_eq!(
            Frontier::from_parts(3, vec![[0; 32]]),
            Err(FrontierError::WrongHashCount {
                size: 3,
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn push_reports_completed_nodes_bottom_up() {
        let mut f = Frontier::new();
        for i in 0u8..3 {
            f.push(leaf_hash(&[i]), |_, _, _| {});
        }
        let mut seen = Vec::new();
        f.push(leaf_hash(&[3]), |l, i, _| seen.push((l, i)));
        assert_eq!(seen, vec![(0, 3), (1, 1), (2, 0)]);
        assert_eq!(f.hashes().len(), 1);
        let restored = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
        assert_eq!(restored.root(), f.root());
    }
}
