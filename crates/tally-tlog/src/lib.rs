//! Transparency log primitives for Tally: pure functions over bytes and hashes, no I/O.
//!
//! - [`hash`]: RFC 6962 hashing ([`leaf_hash`], [`node_hash`], [`empty_root`]).
//! - [`tree`]: the [`NodeSource`] trait, [`root_hash`], [`inclusion_proof`],
//!   [`consistency_proof`] and their verifiers [`verify_inclusion`] and
//!   [`verify_consistency`] (RFC 6962 / RFC 9162).
//! - [`multiproof`]: [`multi_inclusion_proof`] and [`verify_multi_inclusion`], one proof for
//!   many leaves (exports).
//! - [`memory`]: [`MemoryTree`], a whole tree in memory, for tests and tools.
//! - [`frontier`]: [`Frontier`], the compact right edge a sequencer appends to.
//! - [`tile`]: C2SP tlog-tiles paths ([`TilePath`]), hash tiles and entry bundles.
//! - [`checkpoint`]: C2SP tlog-checkpoint bodies ([`Checkpoint`]).
//! - [`note`]: C2SP signed-note with Ed25519 ([`NoteSigner`], [`NoteVerifier`], [`open`]).
//! - [`cosignature`]: C2SP tlog-cosignature `cosignature/v1` ([`CosignatureSigner`],
//!   [`CosignatureVerifier`], [`verify_cosignatures`]): witnesses' timestamped cosignatures.
//! - [`witness`]: the C2SP tlog-witness `add-checkpoint` bodies ([`AddCheckpointRequest`]).
//!
//! ```
//! use tally_tlog::{
//!     consistency_proof, inclusion_proof, leaf_hash, open, verify_consistency,
//!     verify_inclusion, Checkpoint, Frontier, MemoryTree, NoteSigner,
//! };
//!
//! // A sequencer appends to a Frontier; the nodes it completes go to storage.
//! let mut tree = MemoryTree::new();
//! let mut frontier = Frontier::new();
//! for entry in [&b"alpha"[..], b"beta", b"gamma"] {
//!     let h = leaf_hash(entry);
//!     tree.push(h);
//!     frontier.push(h, |_level, _index, _hash| { /* persist the node */ });
//! }
//! assert_eq!(frontier.root(), tree.root());
//!
//! // Proofs are built from stored complete subtrees and checked against roots alone.
//! let proof = inclusion_proof(1, 3, &tree).unwrap();
//! verify_inclusion(&leaf_hash(b"beta"), 1, 3, &proof, &tree.root()).unwrap();
//!
//! let old_root = tally_tlog::root_hash(2, &tree).unwrap();
//! let proof = consistency_proof(2, 3, &tree).unwrap();
//! verify_consistency(2, 3, &proof, &old_root, &tree.root()).unwrap();
//!
//! // The log publishes a signed checkpoint; clients open it with the log's public key.
//! let signer = NoteSigner::from_seed("example.com/log", [42; 32]).unwrap();
//! let checkpoint = Checkpoint {
//!     origin: "example.com/log".into(),
//!     size: tree.size(),
//!     root: tree.root(),
//!     extensions: vec![],
//! };
//! let note = signer.sign(&checkpoint.to_body()).unwrap();
//! let opened = open(&note, &[signer.verifier()]).unwrap();
//! assert_eq!(Checkpoint::parse(&opened.text).unwrap(), checkpoint);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod cosignature;
pub mod frontier;
pub mod hash;
pub mod memory;
pub mod multiproof;
pub mod note;
pub mod tile;
pub mod tree;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use cosignature::{
    verify_cosignatures, CheckedCosignatures, CosignatureError, CosignatureSigner,
    CosignatureVerifier,
};
pub use frontier::{Frontier, FrontierError};
pub use hash::{empty_root, leaf_hash, node_hash, Hash, HASH_SIZE};
pub use memory::MemoryTree;
pub use multiproof::{multi_inclusion_proof, verify_multi_inclusion, MultiProofError, RangeHash};
pub use note::{key_id, open, NoteError, NoteSigner, NoteVerifier, VerifiedNote};
pub use tile::{
    decode_entry_bundle, encode_entry_bundle, tile_hashes, BundleError, TilePath, TilePathError,
    TILE_HEIGHT, TILE_WIDTH,
};
pub use tree::{
    consistency_proof, inclusion_proof, root_hash, verify_consistency, verify_inclusion,
    NodeSource, ProofError, VerifyError,
};
pub use witness::AddCheckpointRequest;
