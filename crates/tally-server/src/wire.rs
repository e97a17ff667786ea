//! The JSON bodies of the HTTP API that clients read, shared by the server (which writes
//! them) and its clients (the `tally` CLI, which reads them): one definition, so that a
//! field renamed on one side fails to compile on the other instead of turning into a
//! missing value at run time. Errors are [`crate::error::ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::auth::ApiKey;
use crate::tenants::Tenant;

/// An inclusion proof (RFC 6962 audit path), hashes in standard base64.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    /// The tenant whose log holds the leaf.
    pub tenant: String,
    /// The leaf index.
    pub index: u64,
    /// The tree size the proof is against.
    pub size: u64,
    /// The leaf's RFC 6962 hash.
    pub leaf_hash: String,
    /// The root of the tree of `size`.
    pub root: String,
    /// The audit path, leaf to root.
    pub proof: Vec<String>,
    /// The signed checkpoint of `size`, when `size` is the latest checkpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// A consistency proof between two tree sizes, hashes in standard base64.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    /// The tenant whose log it is.
    pub tenant: String,
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The root of the tree of `from`.
    pub from_root: String,
    /// The root of the tree of `to`.
    pub to_root: String,
    /// The proof hashes.
    pub proof: Vec<String>,
    /// The signed checkpoint of `to`, when `to` is the latest checkpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// Where one event was stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    /// The event id (client-supplied, or assigned as a UUIDv7).
    pub id: String,
    /// The tenant whose log holds it.
    pub tenant: String,
    /// Its leaf index in that tenant's Merkle tree.
    pub index: u64,
    /// True when this was a retry of an event already stored; nothing was written.
    pub duplicate: bool,
}

/// Response of a successful ingest, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestResponse {
    /// One entry per event of the request, in order.
    pub events: Vec<StoredEvent>,
}

/// One tenant: its state and quotas, and its log's size.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantInfo {
    /// The registry's entry: name, state, quotas.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Events stored.
    pub size: u64,
    /// Bytes of stored records (what `quotas.max_stored_bytes` counts).
    pub record_bytes: u64,
    /// Size covered by the latest signed checkpoint.
    pub checkpoint_size: Option<u64>,
    /// The origin line of its checkpoints.
    pub origin: String,
}

/// A created key with its token, shown only once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key (without its token).
    pub key: ApiKey,
    /// The bearer token. Store it now: the server keeps only its hash.
    pub token: String,
}

/// The personal paths in force for a tenant.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyInfo {
    /// The schema's personal fields and the server's own, in force for every tenant.
    pub defaults: Vec<String>,
    /// The tenant's own paths inside `before`, `after` and `metadata`.
    pub personal_paths: Vec<crate::tenants::PersonalPath>,
    /// What happens to an event carrying a secret.
    pub secrets: crate::tenants::SecretHandling,
}

/// The tenant's legal holds.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldsInfo {
    /// On the whole tenant.
    pub legal_hold: Option<crate::tenants::LegalHold>,
    /// How many subjects are held.
    pub subject_holds: usize,
}

/// A tenant's data keys for encryption at rest.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataKeysInfo {
    /// Whether the server encrypts records at rest (a key-encryption key is configured).
    pub encryption: bool,
    /// The fingerprint of the key-encryption key wrapping the data keys (names it without
    /// revealing it), when encryption is on.
    pub kek_fingerprint: Option<String>,
    /// The tenant's data keys, oldest first (none before its first encrypted record).
    pub keys: Vec<DataKeyInfo>,
}

/// One data key.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataKeyInfo {
    /// Its number within the tenant (from 1); each encrypted record names the key it is
    /// sealed under.
    pub id: u32,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Whether new records are sealed under it.
    pub current: bool,
}

/// What an erasure did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErasureResult {
    /// Subjects that had personal data here (their keys are destroyed).
    pub erased_subjects: usize,
    /// Subjects with nothing here.
    pub unknown_subjects: usize,
    /// Records whose personal values were erased (they stay, showing `tally:erased`).
    pub records: u64,
    /// Erased subjects whose values the search index could not forget yet: their keys are
    /// destroyed (nothing can read the values), and the server retries the index's rewrite
    /// until it succeeds (at every start, and every minute). 0 normally.
    #[serde(default)]
    pub search_index_pending: usize,
}
