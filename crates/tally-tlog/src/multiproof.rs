//! Inclusion of many leaves at once: the fewest subtree hashes that, with the leaves
//! themselves, recompute the root.
//!
//! A proof for one leaf is a path of about log2(size) hashes; a set of leaves shares most of
//! its paths, and a contiguous range needs only the hashes on its two borders. The multiproof
//! walks the RFC 6962 recursion `MTH(D[lo:hi])`, split at the largest power of two `k < hi - lo`,
//! left to right, and lists one [`RangeHash`] for each subtree that holds none of the proven
//! leaves. A subtree that is a single proven leaf needs nothing; any other is split again. The
//! verifier runs the same recursion, taking the listed hashes in order, and must use every one
//! of them exactly where it is named. So the proof is unique for a (size, leaf set) pair and a
//! third party can check it with nothing but SHA-256 and this description.

use crate::hash::{node_hash, Hash};
use crate::tree::{edge_hash, NodeSource, ProofError};

/// The hash of the RFC 6962 subtree over leaves `[start, end)`, an element of a multiproof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeHash {
    /// First leaf of the subtree.
    pub start: u64,
    /// One past its last leaf.
    pub end: u64,
    /// `MTH(D[start:end])`.
    pub hash: Hash,
}

/// Why a multiproof does not hold. Every variant means "do not trust these leaves".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultiProofError {
    /// Leaf indexes must be strictly increasing and below the tree size.
    #[error("leaf index {index} is out of order, repeated or not below tree size {size}")]
    BadIndex {
        /// The offending index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof lacks a hash the recursion needs, or names the wrong subtree.
    #[error("the proof has no hash for leaves [{start}, {end})")]
    Missing {
        /// First leaf of the subtree that needed a hash.
        start: u64,
        /// One past its last leaf.
        end: u64,
    },
    /// The proof carries hashes the recursion never asked for.
    #[error("the proof has {0} hashes more than the leaves need")]
    Extra(usize),
    /// The recomputed root differs from the expected one.
    #[error("the recomputed root does not match the checkpoint's root")]
    RootMismatch,
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

fn check_indexes(indexes: impl IntoIterator<Item = u64>, size: u64) -> Result<(), MultiProofError> {
    let mut last: Option<u64> = None;
    for index in indexes {
        if index >= size || last.is_some_and(|l| index <= l) {
            return Err(MultiProofError::BadIndex { index, size });
        }
        last = Some(index);
    }
    Ok(())
}

/// The multiproof of `indexes` (strictly increasing, each below `size`) in the tree of `size`
/// leaves, ordered as the verifier consumes it. Empty when `indexes` covers the whole tree.
pub fn multi_inclusion_proof<S: NodeSource>(
    indexes: &[u64],
    size: u64,
    src: &S,
) -> Result<Vec<RangeHash>, ProofError<S::Error>> {
    if let Err(MultiProofError::BadIndex { index, size }) =
        check_indexes(indexes.iter().copied(), size)
    {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    if size > 0 {
        collect(0, size, indexes, src, &mut out).map_err(ProofError::Source)?;
    }
    Ok(out)
}

fn collect<S: NodeSource>(
    lo: u64,
    hi: u64,
    indexes: &[u64],
    src: &S,
    out: &mut Vec<RangeHash>,
) -> Result<(), S::Error> {
    if indexes.is_empty() {
        out.push(RangeHash {
            start: lo,
            end: hi,
            hash: edge_hash(lo, hi, src)?,
        });
        return Ok(());
    }
    if hi - lo == 1 {
        return Ok(());
    }
    let mid = lo + split(hi - lo);
    let cut = indexes.partition_point(|&i| i < mid);
    collect(lo, mid, &indexes[..cut], src, out)?;
    collect(mid, hi, &indexes[cut..], src, out)
}

/// Checks that `leaves` (leaf index and leaf hash, strictly increasing indexes) are all in the
/// tree of `size` leaves with root `root`, given the multiproof `proof`.
pub fn verify_multi_inclusion(
    leaves: &[(u64, Hash)],
    size: u64,
    proof: &[RangeHash],
    root: &Hash,
) -> Result<(), MultiProofError> {
    check_indexes(leaves.iter().map(|l| l.0), size)?;
    if size == 0 {
        return match proof.len() {
            0 => Ok(()),
            n => Err(MultiProofError::Extra(n)),
        };
    }
    let mut next = 0;
    let computed = recompute(0, size, leaves, proof, &mut next)?;
    if next != proof.len() {
        return Err(MultiProofError::Extra(proof.len() - next));
    }
    if &computed != root {
        return Err(MultiProofError::RootMismatch);
    }
    Ok(())
}

fn recompute(
    lo: u64,
    hi: u64,
    leaves: &[(u64, Hash)],
    proof: &[RangeHash],
    next: &mut usize,
) -> Result<Hash, MultiProofError> {
    if leaves.is_empty() {
        let missing = MultiProofError::Missing { start: lo, end: hi };
        let node = proof.get(*next).ok_or(missing.clone())?;
        if (node.start, node.end) != (lo, hi) {
            return Err(missing);
        }
        *next += 1;
        return Ok(node.hash);
    }
    if hi - lo == 1 {
        // check_indexes made the leaves strictly increasing and in range, so the single
        // leaf of this subtree is `lo`.
        return Ok(leaves[0].1);
    }
    let mid = lo + split(hi - lo);
    let cut = leaves.partition_point(|l| l.0 < mid);
    let left = recompute(lo, mid, &leaves[..cut], proof, next)?;
    let right = recompute(mid, hi, &leaves[cut..], proof, next)?;
    Ok(node_hash(&left, &right))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::memory::MemoryTree;
    use proptest::prelude::*;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    fn leaves(indexes: &[u64]) -> Vec<(u64, Hash)> {
        indexes
            .iter()
            .map(|&i| (i, leaf_hash(&i.to_be_bytes())))
            .collect()
    }

    #[test]
    fn whole_tree_needs_no_hashes_and_a_range_needs_only_its_borders() {
        let t = tree(1000);
        let all: Vec<u64> = (0..1000).collect();
        assert!(multi_inclusion_proof(&all, 1000, &t).unwrap().is_empty());
        let range: Vec<u64> = (300..700).collect();
        let proof = multi_inclusion_proof(&range, 1000, &t).unwrap();
        assert!(proof.len() <= 2 * 10, "{} hashes", proof.len());
        verify_multi_inclusion(&leaves(&range), 1000, &proof, &t.root()).unwrap();
    }

    #[test]
    fn one_leaf_is_the_rfc_path() {
        let t = tree(77);
        for i in [0u64, 5, 63, 64, 76] {
            let proof = multi_inclusion_proof(&[i], 77, &t).unwrap();
            let path = crate::inclusion_proof(i, 77, &t).unwrap();
            // Same hashes, the multiproof lists them top-down, left to right.
            let mut a: Vec<Hash> = proof.iter().map(|r| r.hash).collect();
            let mut b = path.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "leaf {i}");
        }
    }

    #[test]
    fn refusals() {
        let t = tree(10);
        let idx = [1u64, 4, 9];
        let proof = multi_inclusion_proof(&idx, 10, &t).unwrap();
        let good = leaves(&idx);
        let root = t.root();
        verify_multi_inclusion(&good, 10, &proof, &root).unwrap();

        // A changed leaf, a changed hash, a missing, an extra, a renamed hash.
        let mut bad = good.clone();
        bad[1].1[0] ^= 1;
        assert_eq!(
            verify_multi_inclusion(&bad, 10, &proof, &root),
            Err(MultiProofError::RootMismatch)
        );
        let mut p = proof.clone();
        p[0].hash[31] ^= 1;
        assert_eq!(
            verify_multi_inclusion(&good, 10, &p, &root),
            Err(MultiProofError::RootMismatch)
        );
        assert!(matches!(
            verify_multi_inclusion(&good, 10, &proof[..proof.len() - 1], &root),
            Err(MultiProofError::Missing { .. })
        ));
        let mut p = proof.clone();
        p.push(proof[0]);
        assert_eq!(
            verify_multi_inclusion(&good, 10, &p, &root),
            Err(MultiProofError::Extra(1))
        );
        let mut p = proof.clone();
        p[0].end += 1;
        assert!(matches!(
            verify_multi_inclusion(&good, 10, &p, &root),
            Err(MultiProofError::Missing { .. })
        ));
        // A leaf claimed at another index, repeated, or beyond the tree.
        let moved = vec![(1, good[0].1), (5, good[1].1), (9, good[2].1)];
        assert!(verify_multi_inclusion(&moved, 10, &proof, &root).is_err());
        let repeated = vec![good[0], good[0], good[2]];
        assert!(matches!(
            verify_multi_inclusion(&repeated, 10, &proof, &root),
            Err(MultiProofError::BadIndex { .. })
        ));
        assert!(matches!(
            verify_multi_inclusion(&leaves(&[10]), 10, &[], &root),
            Err(MultiProofError::BadIndex { .. })
        ));
        assert!(multi_inclusion_proof(&[3, 3], 10, &t).is_err());
    }

    proptest! {
        #[test]
        fn any_subset_verifies_and_dropping_a_leaf_fails(
            size in 1u64..300,
            picks in proptest::collection::vec(any::<u64>(), 0..40),
            drop in any::<prop::sample::Index>(),
        ) {
            let t = tree(size);
            let mut idx: Vec<u64> = picks.iter().map(|p| p % size).collect();
            idx.sort_unstable();
            idx.dedup();
            let proof = multi_inclusion_proof(&idx, size, &t).unwrap();
            let root = t.root();
            prop_assert_eq!(verify_multi_inclusion(&leaves(&idx), size, &proof, &root), Ok(()));
            if !idx.is_empty() {
                // Leaving a proven leaf out leaves a hole the proof does not fill.
                let mut fewer = idx.clone();
                fewer.remove(drop.index(idx.len()));
                prop_assert!(verify_multi_inclusion(&leaves(&fewer), size, &proof, &root).is_err());
            }
        }
    }
}
