//! RFC 6962 hashing: SHA-256 with one-byte domain separation between leaves and interior nodes.

use sha2::{Digest, Sha256};

/// Size in bytes of every hash in the tree.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; HASH_SIZE];

/// SHA-256 of the empty string, the root of the tree of size 0.
const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hash of a leaf: `SHA-256(0x00 || data)`.
///
/// The `0x00` prefix keeps a leaf from ever being mistaken for an interior node (second
/// preimage protection), as RFC 6962 §2.1 requires.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    EMPTY_ROOT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        let l = leaf_hash(b"");
        assert_ne!(l, empty_root());
        let mut concat = Vec::new();
        concat.extend_from_slice(&l);
        concat.extend_from_slice(&l);
        assert_ne!(node_hash(&l, &l), leaf_hash(&concat));
    }
}
