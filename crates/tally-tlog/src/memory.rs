//! [`MemoryTree`]: every complete node of a tree, kept in memory.

use std::convert::Infallible;

use crate::hash::{node_hash, Hash};
use crate::tree::{root_hash, NodeSource};

/// An in-memory Merkle tree holding every complete subtree hash, level by level.
///
/// Meant for tests, tools and small logs: it stores about `2 * size` hashes. It is the
/// reference [`NodeSource`] that stores on disk are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is node (`l`, `i`); only complete nodes are present.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf, given as its leaf hash, and computes every node it completes.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut level = 0;
        let mut hash = leaf_hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // An odd-length row just gained a left child; its parent is not complete yet.
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |row| row.len() as u64)
    }

    /// Root hash of the whole tree.
    pub fn root(&self) -> Hash {
        match root_hash(self.size(), self) {
            Ok(h) => h,
            Err(never) => match never {},
        }
    }

    /// Whether node (`level`, `index`) is complete in this tree.
    pub fn contains(&self, level: u8, index: u64) -> bool {
        self.levels
            .get(usize::from(level))
            .is_some_and(|row| index < row.len() as u64)
    }
}

impl NodeSource for MemoryTree {
    type Error = Infallible;

    /// # Panics
    ///
    /// If the node is not complete in this tree: asking for one is a bug in the caller, and
    /// the error type leaves no other way to say so.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        let row = self.levels.get(usize::from(level));
        match row.and_then(|r| usize::try_from(index).ok().and_then(|i| r.get(i))) {
            Some(h) => Ok(*h),
            None => panic!(
                "MemoryTree of size {} has no complete node at level {level} index {index}",
                self.size()
            ),
        }
    }
}

impl Extend<Hash> for MemoryTree {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, iter: I) {
        for h in iter {
            self.push(h);
        }
    }
}

impl FromIterator<Hash> for MemoryTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(iter: I) -> Self {
        let mut t = MemoryTree::new();
        t.extend(iter);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{empty_root, leaf_hash};

    #[test]
    fn small_trees_match_rfc_shape() {
        let leaves: Vec<Hash> = (0u8..3).map(|i| leaf_hash(&[i])).collect();
        let t: MemoryTree = leaves.iter().copied().collect();
        assert_eq!(t.size(), 3);
        let ab = node_hash(&leaves[0], &leaves[1]);
        assert_eq!(t.root(), node_hash(&ab, &leaves[2]));
        assert!(t.contains(1, 0));
        assert!(!t.contains(1, 1));
        assert_eq!(MemoryTree::new().root(), empty_root());
    }

    #[test]
    #[should_panic(expected = "no complete node")]
    fn incomplete_node_panics() {
        let t: MemoryTree = (0u8..3).map(|i| leaf_hash(&[i])).collect();
        let _ = t.node(1, 1);
    }
}
