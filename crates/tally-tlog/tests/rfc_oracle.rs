//! Generated roots and proofs compared, exhaustively for small trees, with a direct
//! transcription of the recursive definitions of RFC 6962 §2.1 (MTH, PATH, PROOF).

use tally_tlog::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root_hash, Hash,
    MemoryTree,
};

fn split(n: usize) -> usize {
    // Largest power of two strictly smaller than n.
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => d[0],
        n => {
            let k = split(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    let mut p;
    if m < k {
        p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
    } else {
        p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
    }
    p
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = split(n);
    let mut p;
    if m <= k {
        p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
    } else {
        p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
    }
    p
}

#[test]
fn proofs_equal_the_rfc_definitions() {
    let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree: MemoryTree = leaves.iter().copied().collect();
    for n in 0..=leaves.len() {
        let d = &leaves[..n];
        assert_eq!(root_hash(n as u64, &tree).unwrap(), mth(d), "MTH of {n}");
        for m in 0..n {
            assert_eq!(
                inclusion_proof(m as u64, n as u64, &tree).unwrap(),
                path(m, d),
                "PATH({m}, D[{n}])"
            );
        }
        for m in 1..=n {
            assert_eq!(
                consistency_proof(m as u64, n as u64, &tree).unwrap(),
                subproof(m, d, true),
                "PROOF({m}, D[{n}])"
            );
        }
    }
}
