//! Errors of the store, typed by the recovery they need.

use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Errors opening, reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system I/O error on a named file. Fatal for the writer: after a failed
    /// write or fsync the on-disk tail is unknown, so the log stops accepting events until a
    /// restart has run recovery.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory is not in a format this build understands.
    #[error("data directory format: {0}")]
    Format(String),
    /// Stored data does not match what the log committed to. Never repaired silently: the
    /// operator must investigate (run `tally verify`).
    #[error("corrupt log for tenant {tenant} at index {index}: {detail}")]
    Corrupt {
        /// The tenant whose log is damaged.
        tenant: String,
        /// The first leaf index found to be bad.
        index: u64,
        /// What was found.
        detail: String,
    },
    /// Another process holds the data directory.
    #[error("{0} is in use by another Tally process (its LOCK file is held); stop it first")]
    Locked(PathBuf),
    /// The signing key could not be loaded or does not match the configured origin.
    #[error("signing key: {0}")]
    Key(String),
    /// The checkpoint signer failed this time (a signing command timed out, failed, or
    /// returned a signature that does not verify). Retryable: the log keeps accepting events
    /// and signs again later.
    #[error("checkpoint signing failed: {0}")]
    Signer(String),
    /// The event-id index could not be read or written. Retryable: the ids it lacks stay in
    /// memory, and a restart rebuilds a damaged index from the `leaves` files.
    #[error("event-id index: {0}")]
    IdIndex(String),
    /// Encryption at rest failed: the key-encryption key is missing or wrong, a data key
    /// is missing, or an encrypted record does not decrypt (it was changed).
    #[error("encryption at rest: {0}")]
    AtRest(String),
}

impl StoreError {
    /// What failed, without local paths: what a client of the API may be told (the paths of
    /// the server's files are the operator's business, and go to the server's log).
    pub fn summary(&self) -> String {
        match self {
            StoreError::Io { source, .. } => format!("a disk operation failed: {source}"),
            StoreError::Format(_) => "the data directory is in an unreadable format".into(),
            StoreError::Corrupt { tenant, index, .. } => {
                format!("tenant {tenant}'s log is damaged at index {index}")
            }
            StoreError::Locked(_) => "the data directory is in use by another process".into(),
            StoreError::Key(_) => "the signing key is unusable".into(),
            StoreError::Signer(_) => "checkpoint signing failed".into(),
            StoreError::IdIndex(_) => "the event-id index failed".into(),
            StoreError::AtRest(_) => "a record could not be encrypted or decrypted".into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Damage found in a running log: stored bytes that no longer match what the log committed
/// to. The log keeps running (new events are unaffected and new checkpoints sign the tree as
/// it was committed, from the leaf hashes), but reads of the damaged records fail until the
/// files are restored, and `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The damaged tenant's log.
    pub tenant: String,
    /// The first damaged leaf index, when one can be named.
    pub index: Option<u64>,
    /// What was found.
    pub detail: String,
    /// What found it: the start-up check, the scrub, or a read.
    pub found_by: String,
}

/// Why an append was refused. Only [`AppendError::Unavailable`] is worth retrying as is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// An event reuses the id of a stored event with different content; nothing of the
    /// request was stored.
    #[error("event {position}: id {id} is already stored at index {index} with different content")]
    Conflict {
        /// Position of the event in its request.
        position: usize,
        /// The reused id.
        id: Uuid,
        /// Where the original is stored.
        index: u64,
    },
    /// The log cannot accept writes right now (stopped, or failed and awaiting restart).
    /// Retry later: an event that was in fact stored is recognised by its id.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
}

/// Errors of read operations (records, proofs, tiles).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No such tenant.
    #[error("tenant {0} has no log")]
    UnknownTenant(String),
    /// Index or size beyond the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// Storage failed or is damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// What failed, without local paths (see [`StoreError::summary`]).
    pub fn summary(&self) -> String {
        match self {
            ReadError::Store(e) => e.summary(),
            other => other.to_string(),
        }
    }
}

/// Why the log is not taking events normally ([`crate::Log::health`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteHealth {
    /// A failed fsync (or a failed write that could not be cut back) stopped the log: the
    /// tail on disk is unknown until a restart has run recovery. Every request gets 503.
    #[error("{0}")]
    Stopped(String),
    /// The last write failed (a full disk, EIO) and was undone: requests meeting a failing
    /// write get 503, nothing acknowledged is lost, and this clears by itself once a write
    /// succeeds again.
    #[error("the last write failed ({0}) and was undone: a request that meets a failing write is refused (503) and nothing acknowledged is lost; this clears by itself once a write succeeds, with no restart needed")]
    WriteUndone(String),
}

impl WriteHealth {
    /// Whether only a restart brings the log back.
    pub fn restart_needed(&self) -> bool {
        matches!(self, WriteHealth::Stopped(_))
    }
}

/// Checkpoint signing is failing ([`crate::Log::signer_health`]); the log still takes events
/// and signs them once the signer works again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint signing has failed {failures} times in a row: {error}")]
pub struct SigningTrouble {
    /// Failures in a row.
    pub failures: u64,
    /// The last error.
    pub error: String,
}
