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
}

impl StoreError {
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
