//! Conformance against the shared test data: transparency-dev/merkle proof vectors, the RFC 6962
//! reference tree and the C2SP signed-note example.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use tally_tlog::{
    consistency_proof, inclusion_proof, leaf_hash, open, root_hash, verify_consistency,
    verify_inclusion, Hash, MemoryTree, NoteError, NoteVerifier,
};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionVector {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyVector {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Debug, Deserialize)]
struct ReferenceTree {
    leaf_inputs: Vec<String>,
    root_by_size: Vec<String>,
}

/// Every `.json` file below `dir`, sorted so failures are reproducible.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Decodes a leaf hash. The API takes `&Hash`, so a leaf hash that is not 32 bytes cannot even
/// be passed in: decoding it is where such a claim is rejected (as transparency-dev/merkle
/// rejects a leaf hash of the wrong size before verifying).
fn to_leaf_hash(b64: &str) -> Option<Hash> {
    STANDARD.decode(b64).unwrap().try_into().ok()
}

/// Turns a vector's root or proof entry into a `Hash`.
///
/// Some vectors deliberately carry roots that are not 32 bytes ("don't care" placeholders),
/// and one expects two equal placeholders to be accepted as equal roots. So such a value is
/// mapped to a tagged digest of its bytes: equal inputs stay equal, and the result can never
/// coincide with a real tree hash, so the verifier itself, not this decoding, is what must
/// reject the vector.
fn to_hash(b64: &str) -> Hash {
    let bytes = STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("bad base64 {b64:?}: {e}"));
    match <Hash>::try_from(bytes.as_slice()) {
        Ok(h) => h,
        Err(_) => {
            let mut tagged = b"test-vector placeholder, not a hash:".to_vec();
            tagged.extend_from_slice(&bytes);
            leaf_hash(&tagged)
        }
    }
}

fn to_proof(proof: &Option<Vec<String>>) -> Vec<Hash> {
    proof.iter().flatten().map(|s| to_hash(s)).collect()
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&Path::new(TESTDATA).join("rfc6962/inclusion"));
    let (mut pos, mut neg) = (0, 0);
    for file in &files {
        let v: InclusionVector = serde_json::from_str(&fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let got = match to_leaf_hash(&v.leaf_hash) {
            Some(leaf) => verify_inclusion(
                &leaf,
                v.leaf_idx,
                v.tree_size,
                &to_proof(&v.proof),
                &to_hash(&v.root),
            )
            .map_err(|e| e.to_string()),
            None => Err("leaf hash is not 32 bytes".to_owned()),
        };
        assert_eq!(
            got.is_err(),
            v.want_err,
            "{} ({}): got {got:?}",
            file.display(),
            v.desc
        );
        if v.want_err {
            neg += 1;
        } else {
            pos += 1;
        }
    }
    // Guard against silently testing nothing if the data moves.
    assert!(
        pos >= 5 && neg >= 60,
        "only {pos} positive / {neg} negative vectors"
    );
    assert_eq!(pos + neg, files.len());
}

#[test]
fn consistency_vectors() {
    let files = json_files(&Path::new(TESTDATA).join("rfc6962/consistency"));
    let (mut pos, mut neg) = (0, 0);
    for file in &files {
        let v: ConsistencyVector = serde_json::from_str(&fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let got = verify_consistency(
            v.size1,
            v.size2,
            &to_proof(&v.proof),
            &to_hash(&v.root1),
            &to_hash(&v.root2),
        );
        assert_eq!(
            got.is_err(),
            v.want_err,
            "{} ({}): got {got:?}",
            file.display(),
            v.desc
        );
        if v.want_err {
            neg += 1;
        } else {
            pos += 1;
        }
    }
    assert!(
        pos >= 5 && neg >= 80,
        "only {pos} positive / {neg} negative vectors"
    );
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("additional")),
        "the additional vectors were not found"
    );
}

/// Positive vectors must also be what our generator produces for the same tree: the vectors'
/// leaves are the RFC 6962 reference inputs.
#[test]
fn generated_proofs_equal_positive_vectors() {
    let tree = reference_tree().0;
    let mut checked = 0;
    for file in json_files(&Path::new(TESTDATA).join("rfc6962/inclusion")) {
        let v: InclusionVector = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        if v.want_err
            || v.tree_size > tree.size()
            || to_hash(&v.root) != root_hash(v.tree_size, &tree).unwrap()
        {
            continue;
        }
        let p = inclusion_proof(v.leaf_idx, v.tree_size, &tree).unwrap();
        assert_eq!(p, to_proof(&v.proof), "{}", file.display());
        checked += 1;
    }
    for file in json_files(&Path::new(TESTDATA).join("rfc6962/consistency")) {
        let v: ConsistencyVector =
            serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        if v.want_err
            || v.size2 > tree.size()
            || to_hash(&v.root2) != root_hash(v.size2, &tree).unwrap()
        {
            continue;
        }
        let p = consistency_proof(v.size1, v.size2, &tree).unwrap();
        assert_eq!(p, to_proof(&v.proof), "{}", file.display());
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} vectors matched the reference tree"
    );
}

/// The reference tree and its expected roots by size.
fn reference_tree() -> (MemoryTree, Vec<Hash>) {
    let r: ReferenceTree = serde_json::from_str(
        &fs::read_to_string(Path::new(TESTDATA).join("rfc6962/reference-tree.json")).unwrap(),
    )
    .unwrap();
    let tree: MemoryTree = r
        .leaf_inputs
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    let roots = r
        .root_by_size
        .iter()
        .map(|h| hex::decode(h).unwrap().try_into().unwrap())
        .collect();
    (tree, roots)
}

#[test]
fn reference_tree_roots_and_proofs() {
    let (tree, roots) = reference_tree();
    assert_eq!(tree.size(), 8);
    assert_eq!(roots.len(), 9);
    let mut incremental = MemoryTree::new();
    for (n, want) in roots.iter().enumerate() {
        let n = n as u64;
        assert_eq!(&root_hash(n, &tree).unwrap(), want, "root of size {n}");
        assert_eq!(&incremental.root(), want, "incremental root of size {n}");
        if n < tree.size() {
            incremental.push(tree_leaf(&tree, n));
        }
    }
    for n in 1..=8u64 {
        for i in 0..n {
            let p = inclusion_proof(i, n, &tree).unwrap();
            verify_inclusion(&tree_leaf(&tree, i), i, n, &p, &roots[n as usize])
                .unwrap_or_else(|e| panic!("inclusion {i} in {n}: {e}"));
            if n > 1 {
                let other = tree_leaf(&tree, (i + 1) % n);
                assert!(verify_inclusion(&other, i, n, &p, &roots[n as usize]).is_err());
            }
        }
        for m in 1..=n {
            let p = consistency_proof(m, n, &tree).unwrap();
            verify_consistency(m, n, &p, &roots[m as usize], &roots[n as usize])
                .unwrap_or_else(|e| panic!("consistency {m} -> {n}: {e}"));
            if m < n {
                assert!(
                    verify_consistency(m, n, &p, &roots[m as usize - 1], &roots[n as usize])
                        .is_err()
                );
            }
        }
    }
}

fn tree_leaf(tree: &MemoryTree, i: u64) -> Hash {
    use tally_tlog::NodeSource as _;
    match tree.node(0, i) {
        Ok(h) => h,
        Err(never) => match never {},
    }
}

fn example_note() -> (String, NoteVerifier) {
    let dir = Path::new(TESTDATA).join("signed-note");
    let note = fs::read_to_string(dir.join("c2sp-example-note.txt")).unwrap();
    let vkey = fs::read_to_string(dir.join("c2sp-example.vkey")).unwrap();
    (note, NoteVerifier::parse_vkey(vkey.trim_end()).unwrap())
}

#[test]
fn signed_note_example_verifies() {
    let (note, v) = example_note();
    assert_eq!(v.name(), "example.com/foo");
    assert_eq!(v.key_id(), 0x530d903a);
    let opened = open(&note, std::slice::from_ref(&v)).unwrap();
    assert_eq!(opened.text, "This is an example message.\n");
    assert_eq!(opened.verified_by, vec!["example.com/foo".to_owned()]);
    assert_eq!(
        v.to_vkey(),
        fs::read_to_string(Path::new(TESTDATA).join("signed-note/c2sp-example.vkey"))
            .unwrap()
            .trim_end()
    );
}

#[test]
fn signed_note_example_rejects_every_single_byte_change_of_the_text() {
    let (note, v) = example_note();
    let text_len = note.rfind("\n\n").unwrap() + 1;
    let bytes = note.as_bytes();
    let mut tried = 0;
    for pos in 0..text_len {
        for replacement in [bytes[pos] ^ 0x01, bytes[pos] ^ 0x20, b'a', b' ', b'.'] {
            if replacement == bytes[pos] {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[pos] = replacement;
            let Ok(changed) = String::from_utf8(changed) else {
                continue;
            };
            let got = open(&changed, std::slice::from_ref(&v));
            assert!(got.is_err(), "byte {pos} -> {replacement:#x} accepted");
            // Printable changes inside the text must be caught by the signature itself.
            if (0x20..0x7f).contains(&replacement) && pos + 1 < text_len {
                assert!(
                    matches!(got, Err(NoteError::InvalidSignature { .. })),
                    "byte {pos} -> {replacement:#x}: {got:?}"
                );
            }
            tried += 1;
        }
    }
    assert!(tried > 4 * text_len);
}

#[test]
fn signed_note_example_rejects_any_change_anywhere() {
    let (note, v) = example_note();
    let chars: Vec<char> = note.chars().collect();
    for pos in 0..chars.len() {
        for replacement in ['A', '/', '\n', '-'] {
            if chars[pos] == replacement {
                continue;
            }
            let mut changed = chars.clone();
            changed[pos] = replacement;
            let changed: String = changed.into_iter().collect();
            assert!(
                open(&changed, std::slice::from_ref(&v)).is_err(),
                "char {pos} -> {replacement:?} accepted: {changed:?}"
            );
        }
        let mut removed = chars.clone();
        removed.remove(pos);
        let removed: String = removed.into_iter().collect();
        assert!(
            open(&removed, std::slice::from_ref(&v)).is_err(),
            "deleting char {pos} accepted"
        );
    }
}
