//! Property tests over random trees, paths, bundles, checkpoints and notes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use tally_tlog::{
    consistency_proof, decode_entry_bundle, encode_entry_bundle, inclusion_proof, leaf_hash,
    node_hash, open, root_hash, verify_consistency, verify_inclusion, Checkpoint, Frontier, Hash,
    MemoryTree, NodeSource, NoteError, NoteSigner, TilePath,
};

/// A tree of `n` distinct leaves; distinct leaves matter, since with equal leaves moving a
/// proof to a symmetric position is legitimately indistinguishable.
fn tree(n: u64, seed: u64) -> MemoryTree {
    (0..n)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

fn leaf(t: &MemoryTree, i: u64) -> Hash {
    match t.node(0, i) {
        Ok(h) => h,
        Err(never) => match never {},
    }
}

fn root(t: &MemoryTree, n: u64) -> Hash {
    match root_hash(n, t) {
        Ok(h) => h,
        Err(never) => match never {},
    }
}

fn flip(h: &Hash, k: usize) -> Hash {
    let mut h = *h;
    h[(k * 7) % 32] ^= 1 << (k % 8);
    h
}

/// Mostly small trees, sometimes a few thousand leaves.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![9 => 1u64..=300, 1 => 300u64..=4000]
}

/// Shape of RFC 6962 `PATH(m, D[n])`, straight from the recursive definition: for each proof
/// element, bottom-up, whether it is the left sibling. Two (m, n) with the same shape produce
/// the same verifier computation, so a proof for one verifies for the other; different shapes
/// must never cross-verify.
fn path_shape(m: u64, n: u64) -> Vec<bool> {
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_pow2_below(n);
    let mut s = if m < k {
        path_shape(m, k)
    } else {
        path_shape(m - k, n - k)
    };
    s.push(m >= k);
    s
}

fn largest_pow2_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// Shape of RFC 6962 `SUBPROOF(m, D[n], b)` as tokens: 0 = old root given implicitly,
/// 1 = explicit shared subtree, 2 = new-only right sibling, 3 = shared left sibling.
fn consistency_shape(m: u64, n: u64, b: bool) -> Vec<u8> {
    if m == n {
        return vec![if b { 0 } else { 1 }];
    }
    let k = largest_pow2_below(n);
    let mut s;
    if m <= k {
        s = consistency_shape(m, k, b);
        s.push(2);
    } else {
        s = consistency_shape(m - k, n - k, false);
        s.push(3);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_reject_mutations(n in size(), seed in any::<u64>(), picks in prop::collection::vec(any::<Index>(), 40)) {
        let t = tree(n, seed);
        let r = t.root();
        let indices: Vec<u64> = if n <= 300 { (0..n).collect() } else { picks.iter().map(|p| p.index(n as usize) as u64).collect() };
        for i in indices {
            let l = leaf(&t, i);
            let p = inclusion_proof(i, n, &t).unwrap();
            prop_assert_eq!(p.len(), path_shape(i, n).len());
            prop_assert!(verify_inclusion(&l, i, n, &p, &r).is_ok(), "i={} n={}", i, n);

            prop_assert!(verify_inclusion(&flip(&l, i as usize), i, n, &p, &r).is_err());
            prop_assert!(verify_inclusion(&l, i, n, &p, &flip(&r, 3)).is_err());
            for k in 0..p.len() {
                let mut q = p.clone();
                q[k] = flip(&q[k], k + i as usize);
                prop_assert!(verify_inclusion(&l, i, n, &q, &r).is_err(), "hash {} of proof {} in {}", k, i, n);
            }
            if !p.is_empty() {
                prop_assert!(verify_inclusion(&l, i, n, &p[1..], &r).is_err());
                prop_assert!(verify_inclusion(&l, i, n, &p[..p.len() - 1], &r).is_err());
            }
            let mut longer = p.clone();
            longer.push(r);
            prop_assert!(verify_inclusion(&l, i, n, &longer, &r).is_err());

            for j in [i ^ 1, i.wrapping_add(1), i.wrapping_sub(1), i ^ 2, i + n] {
                if j != i {
                    prop_assert!(verify_inclusion(&l, j, n, &p, &r).is_err(), "index {} -> {} in {}", i, j, n);
                }
            }
            for m in [n - 1, n + 1, n * 2, n / 2, n ^ 4] {
                if m != n {
                    let ok = verify_inclusion(&l, i, m, &p, &r).is_ok();
                    let same = i < m && path_shape(i, m) == path_shape(i, n);
                    prop_assert_eq!(ok, same, "size {} -> {} for index {}", n, m, i);
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_mutations(n in size(), seed in any::<u64>(), picks in prop::collection::vec((any::<Index>(), any::<Index>()), 60)) {
        let t = tree(n, seed);
        for (a, b) in picks {
            let n2 = 1 + b.index(n as usize) as u64;
            let n1 = 1 + a.index(n2 as usize) as u64;
            let (r1, r2) = (root(&t, n1), root(&t, n2));
            let p = consistency_proof(n1, n2, &t).unwrap();
            prop_assert!(verify_consistency(n1, n2, &p, &r1, &r2).is_ok(), "{} -> {}", n1, n2);
            if n1 == n2 {
                prop_assert!(p.is_empty());
            } else {
                let shape = consistency_shape(n1, n2, true);
                prop_assert_eq!(p.len(), shape.iter().filter(|&&s| s != 0).count());
            }

            prop_assert!(verify_consistency(n1, n2, &p, &flip(&r1, 1), &r2).is_err());
            prop_assert!(verify_consistency(n1, n2, &p, &r1, &flip(&r2, 2)).is_err());
            for k in 0..p.len() {
                let mut q = p.clone();
                q[k] = flip(&q[k], k);
                prop_assert!(verify_consistency(n1, n2, &q, &r1, &r2).is_err(), "hash {} of {} -> {}", k, n1, n2);
            }
            if !p.is_empty() {
                prop_assert!(verify_consistency(n1, n2, &p[1..], &r1, &r2).is_err());
                prop_assert!(verify_consistency(n1, n2, &p[..p.len() - 1], &r1, &r2).is_err());
            }
            let mut longer = p.clone();
            longer.push(r1);
            prop_assert!(verify_consistency(n1, n2, &longer, &r1, &r2).is_err());
            prop_assert!(verify_consistency(0, n2, &[], &tally_tlog::empty_root(), &r2).is_err());

            for m1 in [n1 - 1, n1 + 1, n1 * 2, n1 / 2] {
                if m1 != n1 {
                    let ok = verify_consistency(m1, n2, &p, &r1, &r2).is_ok();
                    let same = m1 > 0 && m1 <= n2 && n1 != n2 && m1 != n2
                        && consistency_shape(m1, n2, true) == consistency_shape(n1, n2, true);
                    prop_assert_eq!(ok, same, "old size {} -> {} (new {})", n1, m1, n2);
                }
            }
            for m2 in [n2 - 1, n2 + 1, n2 * 2, n2 / 2] {
                if m2 != n2 {
                    let ok = verify_consistency(n1, m2, &p, &r1, &r2).is_ok();
                    let same = n1 <= m2 && n1 != n2 && n1 != m2
                        && consistency_shape(n1, m2, true) == consistency_shape(n1, n2, true);
                    prop_assert_eq!(ok, same, "new size {} -> {} (old {})", n2, m2, n1);
                }
            }
        }
    }

    #[test]
    fn frontier_matches_memory_tree(n in 0u64..=600, seed in any::<u64>()) {
        let mut t = MemoryTree::new();
        let mut f = Frontier::new();
        let mut completed: BTreeMap<(u8, u64), Hash> = BTreeMap::new();
        prop_assert_eq!(f.root(), t.root());
        for i in 0..n {
            let h = leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat());
            t.push(h);
            let mut last_level = None;
            f.push(h, |level, index, hash| {
                assert!(last_level.is_none_or(|l| level == l + 1), "callbacks must go bottom-up");
                last_level = Some(level);
                assert!(completed.insert((level, index), *hash).is_none(), "node reported twice");
            });
            prop_assert_eq!(f.size(), t.size());
            prop_assert_eq!(f.root(), t.root());
            let rebuilt = Frontier::from_source(t.size(), &t).unwrap();
            prop_assert_eq!(&rebuilt, &f);
            let restored = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            prop_assert_eq!(&restored, &f);
        }
        // The callbacks must report exactly the complete nodes, with the same hashes.
        let mut expected = BTreeMap::new();
        for level in 0..64u8 {
            let mut index = 0;
            while t.contains(level, index) {
                expected.insert((level, index), t.node(level, index).unwrap());
                index += 1;
            }
        }
        prop_assert_eq!(completed, expected);
    }

    #[test]
    fn tile_paths_roundtrip(level in 0u8..=63, index in prop_oneof![0u64..5000, any::<u64>()], width in 1u16..=256, entries in any::<bool>()) {
        let t = if entries { TilePath::entries(index, width).unwrap() } else { TilePath::hashes(level, index, width).unwrap() };
        let s = t.to_path();
        prop_assert_eq!(TilePath::parse(&s), Ok(t));
        prop_assert_eq!(s.contains(".p/"), width != 256);
    }

    #[test]
    fn accepted_tile_paths_are_canonical(s in "tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,4}(\\.p/[0-9]{1,3})?") {
        if let Ok(t) = TilePath::parse(&s) {
            prop_assert_eq!(t.to_path(), s);
        }
    }

    #[test]
    fn entry_bundles_roundtrip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40), cut in any::<Index>()) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let enc = encode_entry_bundle(refs.iter().copied()).unwrap();
        prop_assert_eq!(enc.len(), entries.iter().map(|e| e.len() + 2).sum::<usize>());
        prop_assert_eq!(decode_entry_bundle(&enc).unwrap(), refs.clone());
        if !enc.is_empty() {
            let k = cut.index(enc.len());
            // A cut is only decodable at an entry boundary, and then yields a prefix.
            let boundaries: Vec<usize> = entries.iter().scan(0, |o, e| { *o += e.len() + 2; Some(*o) }).collect();
            match decode_entry_bundle(&enc[..k]) {
                Ok(prefix) => {
                    prop_assert!(k == 0 || boundaries.contains(&k));
                    prop_assert_eq!(&prefix[..], &refs[..prefix.len()]);
                }
                Err(_) => prop_assert!(k != 0 && !boundaries.contains(&k)),
            }
        }
    }

    #[test]
    fn checkpoints_roundtrip(origin in "[a-z0-9./-]{1,30}|\\PC{1,10}", size in any::<u64>(), root in any::<[u8; 32]>(), extensions in prop::collection::vec("[ -~]{1,40}", 0..4)) {
        let origin: String = origin.chars().filter(|c| !c.is_control()).collect();
        prop_assume!(!origin.is_empty());
        let c = Checkpoint { origin, size, root, extensions };
        prop_assert!(c.validate().is_ok());
        prop_assert_eq!(Checkpoint::parse(&c.to_body()), Ok(c));
    }

    #[test]
    fn notes_sign_and_open(seed in any::<[u8; 32]>(), name in "[a-z0-9.]{1,12}(/[a-z0-9]{1,8})?", lines in prop::collection::vec("[^\\x00-\\x1f]{0,30}", 0..5)) {
        let signer = NoteSigner::from_seed(&name, seed).unwrap();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect::<String>() + "end\n";
        let note = signer.sign(&text).unwrap();
        let opened = open(&note, &[signer.verifier()]).unwrap();
        prop_assert_eq!(opened.text, text);
        prop_assert_eq!(opened.verified_by, vec![name.clone()]);

        let back = NoteSigner::parse_skey(&signer.to_skey()).unwrap();
        prop_assert_eq!(back.verifier(), signer.verifier());
        let other = NoteSigner::from_seed(&name, [seed[0] ^ 1; 32]).unwrap();
        prop_assert!(open(&note, &[other.verifier()]).is_err());
    }

    #[test]
    fn tampered_checkpoints_are_rejected(seed in any::<[u8; 32]>(), size in 1u64..u64::MAX, root in any::<[u8; 32]>(), pos in any::<Index>(), replacement in "[ -~]") {
        let signer = NoteSigner::from_seed("example.com/log", seed).unwrap();
        let c = Checkpoint { origin: "example.com/log".into(), size, root, extensions: vec![] };
        let body = c.to_body();
        let note = signer.sign(&body).unwrap();
        let opened = open(&note, &[signer.verifier()]).unwrap();
        prop_assert_eq!(Checkpoint::parse(&opened.text), Ok(c.clone()));

        let k = pos.index(body.len());
        let r = replacement.chars().next().unwrap();
        prop_assume!(body.as_bytes()[k] != r as u8);
        let mut tampered = note.clone();
        tampered.replace_range(k..k + 1, &replacement);
        let got = open(&tampered, &[signer.verifier()]);
        let rejected = matches!(got, Err(NoteError::InvalidSignature { .. }) | Err(NoteError::MalformedNote(_)));
        prop_assert!(rejected, "tampering byte {} accepted: {:?}", k, got);

        let bumped = Checkpoint { size: size - 1, ..c };
        let forged = note.replacen(&body, &bumped.to_body(), 1);
        prop_assert!(open(&forged, &[signer.verifier()]).is_err());
    }
}

/// Node hash recomputed from the children, as a check on MemoryTree itself.
#[test]
fn memory_tree_nodes_are_hashes_of_children() {
    let t = tree(77, 1);
    for level in 1..8u8 {
        let mut index = 0;
        while t.contains(level, index) {
            let l = t.node(level - 1, 2 * index).unwrap();
            let r = t.node(level - 1, 2 * index + 1).unwrap();
            assert_eq!(t.node(level, index).unwrap(), node_hash(&l, &r));
            index += 1;
        }
    }
}
