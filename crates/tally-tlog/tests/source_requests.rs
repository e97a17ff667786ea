//! What proof generation asks of a `NodeSource`: only complete subtrees of the tree being
//! proven, never the same node twice, O(log n) of them, and errors passed through.

use std::cell::RefCell;

use tally_tlog::{
    consistency_proof, inclusion_proof, leaf_hash, root_hash, tile_hashes, Frontier, Hash,
    MemoryTree, NodeSource, ProofError,
};

/// Serves a prefix of a `MemoryTree` as a store holding `size` leaves would, refusing any node
/// that is not complete within that size, and records every request.
struct Strict<'a> {
    tree: &'a MemoryTree,
    size: u64,
    requests: RefCell<Vec<(u8, u64)>>,
}

impl<'a> Strict<'a> {
    fn new(tree: &'a MemoryTree, size: u64) -> Self {
        Self {
            tree,
            size,
            requests: RefCell::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<(u8, u64)> {
        std::mem::take(&mut self.requests.borrow_mut())
    }
}

impl NodeSource for Strict<'_> {
    type Error = String;

    fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
        self.requests.borrow_mut().push((level, index));
        let end = (u128::from(index) + 1) << level;
        if end > u128::from(self.size) {
            return Err(format!(
                "node ({level}, {index}) is not complete in a tree of {}",
                self.size
            ));
        }
        Ok(self.tree.node(level, index).unwrap())
    }
}

fn tree(n: u64) -> MemoryTree {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

fn bits(n: u64) -> usize {
    (64 - n.leading_zeros()) as usize
}

fn assert_distinct(reqs: &[(u8, u64)], what: &str) {
    let mut sorted = reqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        reqs.len(),
        "{what}: repeated requests {reqs:?}"
    );
}

#[test]
fn proofs_request_few_complete_nodes() {
    let big = tree(300);
    for n in 1..=300u64 {
        let src = Strict::new(&big, n);

        root_hash(n, &src).unwrap();
        let reqs = src.take();
        assert_eq!(reqs.len(), n.count_ones() as usize, "root of {n}");

        for i in 0..n {
            inclusion_proof(i, n, &src).unwrap();
            let reqs = src.take();
            assert_distinct(&reqs, &format!("inclusion {i} in {n}"));
            assert!(reqs.len() <= 2 * bits(n), "inclusion {i} in {n}: {reqs:?}");
        }
        for m in 1..=n {
            consistency_proof(m, n, &src).unwrap();
            let reqs = src.take();
            assert_distinct(&reqs, &format!("consistency {m} -> {n}"));
            assert!(
                reqs.len() <= 2 * bits(n) + 1,
                "consistency {m} -> {n}: {reqs:?}"
            );
            if m == n {
                assert!(reqs.is_empty());
            }
        }

        Frontier::from_source(n, &src).unwrap();
        assert_eq!(src.take().len(), n.count_ones() as usize);
    }
}

#[test]
fn source_errors_are_propagated() {
    struct Failing;
    impl NodeSource for Failing {
        type Error = &'static str;
        fn node(&self, _: u8, _: u64) -> Result<Hash, &'static str> {
            Err("disk on fire")
        }
    }
    assert_eq!(root_hash(5, &Failing), Err("disk on fire"));
    assert_eq!(root_hash(0, &Failing), Ok(tally_tlog::empty_root()));
    assert_eq!(
        inclusion_proof(1, 5, &Failing),
        Err(ProofError::Source("disk on fire"))
    );
    assert_eq!(
        consistency_proof(3, 5, &Failing),
        Err(ProofError::Source("disk on fire"))
    );
    // Refused arguments are reported before the source is touched.
    assert_eq!(
        inclusion_proof(5, 5, &Failing),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        consistency_proof(6, 5, &Failing),
        Err(ProofError::InvalidSizes { size1: 6, size2: 5 })
    );
    assert_eq!(Frontier::from_source(3, &Failing), Err("disk on fire"));
    assert!(tile_hashes(0, 0, 1, &Failing).is_err());
}

#[test]
fn tile_hashes_are_tile_boundary_nodes() {
    let t = tree(256 * 3 + 5);
    let src = Strict::new(&t, t.size());
    let level0 = tile_hashes(0, 3, 5, &src).unwrap();
    assert_eq!(level0.len(), 5 * 32);
    for i in 0..5u64 {
        let want = t.node(0, 3 * 256 + i).unwrap();
        assert_eq!(&level0[i as usize * 32..][..32], &want);
    }
    assert_eq!(src.take(), (0..5).map(|i| (0, 768 + i)).collect::<Vec<_>>());
    let level1 = tile_hashes(1, 0, 3, &src).unwrap();
    assert_eq!(level1.len(), 3 * 32);
    assert_eq!(&level1[64..], &t.node(8, 2).unwrap());
    assert_eq!(src.take(), vec![(8, 0), (8, 1), (8, 2)]);
    // Asking beyond the tree fails through the source instead of inventing hashes.
    assert!(tile_hashes(1, 0, 4, &src).is_err());
}

#[test]
fn proofs_through_a_reference() {
    let t = tree(10);
    let by_ref: &dyn NodeSource<Error = std::convert::Infallible> = &t;
    assert_eq!(root_hash(10, &by_ref).unwrap(), t.root());
    assert_eq!(
        inclusion_proof(3, 10, &by_ref).unwrap(),
        inclusion_proof(3, 10, &t).unwrap()
    );
}
