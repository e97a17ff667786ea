//! Merkle tree math of RFC 6962 / RFC 9162: roots, inclusion and consistency proofs, and their
//! verification.
//!
//! Generation only ever asks a [`NodeSource`] for *complete* subtrees. A proof element that
//! RFC 6962 defines over an incomplete right edge (an "ephemeral" node) is rebuilt here from
//! the perfect subtrees of that edge, so a store only has to keep hashes of full subtrees,
//! which never change once written.

use crate::hash::{empty_root, node_hash, Hash};

/// Source of hashes of complete subtrees.
///
/// `node(level, index)` is the root of the perfect subtree covering leaves
/// `[index << level, (index + 1) << level)`; level 0 holds the leaf hashes. Callers in this
/// crate only ask for nodes whose subtree lies entirely inside the tree they work on.
pub trait NodeSource {
    /// Error reported when a node cannot be produced (missing data, I/O failure in a store...).
    type Error;

    /// Returns the hash of the complete subtree at `level` and `index`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    type Error = T::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Failure to generate a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The leaf index is not smaller than the tree size.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size the proof was asked for.
        size: u64,
    },
    /// A consistency proof needs `0 < size1 <= size2`.
    #[error("no consistency proof exists from size {size1} to size {size2}")]
    InvalidSizes {
        /// Size of the older tree.
        size1: u64,
        /// Size of the newer tree.
        size2: u64,
    },
    /// The node source failed.
    #[error("node source failed: {0}")]
    Source(#[source] E),
}

/// Failure to verify a proof. Every variant means "do not trust this claim".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not smaller than the tree size.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Claimed tree size.
        size: u64,
    },
    /// The sizes cannot be proven consistent: `size1 > size2`, or `size1 == 0`, which RFC 9162
    /// gives no proof for (every tree extends the empty one, so such a check proves nothing).
    #[error("sizes {size1} and {size2} cannot be proven consistent")]
    InvalidSizes {
        /// Claimed older size.
        size1: u64,
        /// Claimed newer size.
        size2: u64,
    },
    /// The proof does not have the number of hashes the sizes imply.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofSize {
        /// Length implied by the index and sizes.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The root recomputed from the proof differs from the claimed (newer) root.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// The root of the older tree recomputed from a consistency proof differs from `root1`.
    #[error("recomputed old root does not match the expected old root")]
    OldRootMismatch,
}

/// Root hash of the tree of the first `size` leaves; [`empty_root`] for `size == 0`.
///
/// Asks the source for one node per set bit of `size`.
pub fn root_hash<S: NodeSource>(size: u64, src: &S) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    edge_hash(0, size, src)
}

/// Inclusion proof (RFC 6962 `PATH(index, D[size])`) for leaf `index` in the tree of `size`
/// leaves, ordered from the leaf's sibling up to the root.
pub fn inclusion_proof<S: NodeSource>(
    index: u64,
    size: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(64);
    append_path(0, index, size, src, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

/// Consistency proof (RFC 6962 `PROOF(size1, D[size2])`) that the tree of `size1` leaves is a
/// prefix of the tree of `size2` leaves. Empty when the sizes are equal.
///
/// `size1 == 0` is refused: no proof is defined for it (RFC 9162 §2.1.4).
pub fn consistency_proof<S: NodeSource>(
    size1: u64,
    size2: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    // The old tree's last perfect subtree is the deepest node the two trees share on the old
    // right edge. Proving its inclusion in the new tree proves the whole old tree, because
    // everything left of it is made of complete nodes that both trees contain.
    let level = size1.trailing_zeros() as u8;
    let index = (size1 - 1) >> level;
    let mut proof = Vec::with_capacity(65);
    if index != 0 {
        // When size1 is a power of two that node *is* the old root, which the verifier holds
        // already, so RFC 6962 leaves it out.
        proof.push(src.node(level, index).map_err(ProofError::Source)?);
    }
    append_path(level, index, size2, src, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

/// Appends the audit path of the complete node (`level`, `index`) in the tree of `size`
/// leaves: one sibling per ancestor that has one, bottom-up.
fn append_path<S: NodeSource>(
    level: u8,
    index: u64,
    size: u64,
    src: &S,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    debug_assert!(level < 64 && ((index + 1) << level) <= size);
    let last = size - 1;
    let mut j = index;
    let mut l = u32::from(level);
    // Stop at the level where the ancestor covers the whole tree.
    while l < 64 && (last >> l) != 0 {
        let last_j = last >> l;
        if j & 1 == 1 {
            // Left siblings lie before a node that exists, so they are always complete.
            out.push(src.node(l as u8, j ^ 1)?);
        } else if j < last_j {
            let start = (j + 1) << l;
            // The right sibling may run past the end of the tree; RFC 6962 then uses the
            // hash of whatever part of it exists.
            let end = size.min(start.saturating_add(1 << l));
            out.push(edge_hash(start, end, src)?);
        }
        // A node holding the last leaf with an even index has no right sibling: RFC 6962
        // promotes it unchanged, so there is nothing to add at this level.
        j >>= 1;
        l += 1;
    }
    Ok(())
}

/// Hash of the RFC 6962 subtree over leaves `[start, end)`, where `start` is aligned to a
/// power of two larger than or equal to the range length (a node or the right edge of one).
///
/// The range is cut into the perfect subtrees of the binary decomposition of its length,
/// largest first, which are then folded right to left as RFC 6962 defines incomplete trees.
pub(crate) fn edge_hash<S: NodeSource>(start: u64, end: u64, src: &S) -> Result<Hash, S::Error> {
    debug_assert!(start < end);
    let len = end - start;
    // At most 64 parts; a fixed array keeps this allocation-free on the hot path.
    let mut parts = [[0u8; 32]; 64];
    let mut n = 0;
    let mut pos = start;
    for level in (0..64u32).rev() {
        if len & (1 << level) != 0 {
            parts[n] = src.node(level as u8, pos >> level)?;
            n += 1;
            pos += 1 << level;
        }
    }
    let mut acc = parts[n - 1];
    for part in parts[..n - 1].iter().rev() {
        acc = node_hash(part, &acc);
    }
    Ok(acc)
}

/// Number of hashes in the audit path of node (`level`, `index`) in a tree of `size` leaves.
fn path_len(level: u32, index: u64, size: u64) -> usize {
    let last = (size - 1) >> level;
    // Below the level where `index` and the last node diverge every ancestor has a sibling;
    // above it, only ancestors that are right children do.
    let inner = 64 - (index ^ last).leading_zeros();
    let border = if inner >= 64 {
        0
    } else {
        (index >> inner).count_ones()
    };
    inner as usize + border as usize
}

/// Verifies an inclusion proof of `leaf_hash` at `index` in the tree of `size` leaves with
/// root `root`, as RFC 9162 §2.1.3.2 specifies.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = path_len(0, index, size);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(VerifyError::WrongProofSize {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where the node was promoted without a sibling.
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
        return Err(VerifyError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between the tree of `size1` leaves with root `root1` and the
/// tree of `size2` leaves with root `root2`, as RFC 9162 §2.1.4.2 specifies.
///
/// Equal sizes need an empty proof and equal roots. `size1 == 0` is always rejected: a
/// "proof" that the empty tree is a prefix carries no information, so accepting one would
/// only hide a caller bug.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), VerifyError> {
    if size1 == 0 || size1 > size2 {
        return Err(VerifyError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofSize {
                expected: 0,
                got: proof.len(),
            });
        }
        if root1 != root2 {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }

    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let expected = usize::from(index != 0) + path_len(level, index, size2);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }

    // When size1 is a power of two the proof omits the old root; the verifier supplies it.
    let (seed, rest) = if index == 0 {
        (root1, proof)
    } else {
        (&proof[0], &proof[1..])
    };
    let mut fnode = size1 - 1;
    let mut snode = size2 - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if snode == 0 {
            return Err(VerifyError::WrongProofSize {
                expected,
                got: proof.len(),
            });
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
        return Err(VerifyError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }
    if fr != *root1 {
        return Err(VerifyError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::memory::MemoryTree;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    #[test]
    fn path_len_matches_generated_proofs() {
        for n in 1..70u64 {
            let t = tree(n);
            for i in 0..n {
                let p = inclusion_proof(i, n, &t).unwrap();
                assert_eq!(p.len(), path_len(0, i, n), "i={i} n={n}");
            }
        }
    }

    #[test]
    fn rfc6962_example_consistency_shape() {
        // RFC 6962 §2.1.3: PROOF(3, D[7]) = [c, d, g, l].
        let t = tree(7);
        let p = consistency_proof(3, 7, &t).unwrap();
        let c = t.node(0, 2).unwrap();
        let d = t.node(0, 3).unwrap();
        let g = t.node(1, 0).unwrap();
        let l = node_hash(&t.node(1, 2).unwrap(), &t.node(0, 6).unwrap());
        assert_eq!(p, vec![c, d, g, l]);
    }

    #[test]
    fn invalid_requests_are_refused() {
        let t = tree(4);
        assert_eq!(
            inclusion_proof(4, 4, &t),
            Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            consistency_proof(0, 4, &t),
            Err(ProofError::InvalidSizes { size1: 0, size2: 4 })
        );
        assert_eq!(
            consistency_proof(5, 4, &t),
            Err(ProofError::InvalidSizes { size1: 5, size2: 4 })
        );
        assert_eq!(consistency_proof(4, 4, &t), Ok(vec![]));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        // A tree whose leaves are all equal has one hash per level, which lets a consistent
        // source exist for sizes near 2^64.
        struct Fake([Hash; 64]);
        impl NodeSource for Fake {
            type Error = std::convert::Infallible;
            fn node(&self, level: u8, _index: u64) -> Result<Hash, Self::Error> {
                Ok(self.0[usize::from(level)])
            }
        }
        let mut levels = [leaf_hash(b"x"); 64];
        for l in 1..64 {
            levels[l] = node_hash(&levels[l - 1], &levels[l - 1]);
        }
        let fake = Fake(levels);
        for &(i, n) in &[
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            ((1 << 63) - 1, 1 << 63),
        ] {
            let p = inclusion_proof(i, n, &fake).unwrap();
            let leaf = fake.node(0, i).unwrap();
            let root = root_hash(n, &fake).unwrap();
            verify_inclusion(&leaf, i, n, &p, &root).unwrap();
        }
        for &(m, n) in &[(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            let p = consistency_proof(m, n, &fake).unwrap();
            let r1 = root_hash(m, &fake).unwrap();
            let r2 = root_hash(n, &fake).unwrap();
            verify_consistency(m, n, &p, &r1, &r2).unwrap();
        }
    }
}
