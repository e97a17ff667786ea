//! Anchoring: a copy of every signed checkpoint in write-once storage that the server itself
//! cannot rewrite, so that a history rewritten and re-signed with the log's own key is exposed.
//!
//! Checkpoints go to an S3 bucket with Object Lock: each one is its own object, written with
//! COMPLIANCE-mode retention (nobody, not even the bucket owner, can delete or overwrite that
//! object version before the retention date) under the key [`layout::checkpoint_key`] names.
//!
//! Main items: [`AnchorLocation`] (`s3://bucket/prefix`), [`s3::S3Client`] (the few S3 calls,
//! signed with AWS SigV4), [`uploader::Anchorer`] (the background uploader `tally serve
//! --anchor` runs; it never delays ingest) and [`fetch::fetch_anchored`] (what `tally verify
//! --since s3://…` reads back).
//!
//! Architecture Invariant: anchoring only ever reads the log; a failing or slow bucket costs
//! anchoring lag, never an event.

#![forbid(unsafe_code)]

pub mod fetch;
pub mod layout;
pub mod s3;
pub mod uploader;

mod location;

pub use location::AnchorLocation;

/// Why an anchoring operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A setting is missing or wrong; the message says which and how to fix it.
    #[error("{0}")]
    Config(String),
    /// The bucket could not be reached.
    #[error("cannot reach S3 ({op} {target}): {source}")]
    Unreachable {
        /// The S3 operation.
        op: &'static str,
        /// Bucket and key.
        target: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// S3 answered with an error.
    #[error("S3 refused {op} {target}: HTTP {status} {code}: {message}")]
    S3 {
        /// The S3 operation.
        op: &'static str,
        /// Bucket and key.
        target: String,
        /// HTTP status.
        status: u16,
        /// S3 error code (e.g. `AccessDenied`), or empty.
        code: String,
        /// S3's message.
        message: String,
    },
    /// S3 answered something this client cannot read.
    #[error("unexpected S3 answer to {op} {target}: {detail}")]
    Protocol {
        /// The S3 operation.
        op: &'static str,
        /// Bucket and key.
        target: String,
        /// What was wrong.
        detail: String,
    },
    /// An object in the anchor bucket is not a checkpoint this log signed.
    #[error("anchored object {key} is not a valid checkpoint of this log: {detail}")]
    Invalid {
        /// The object (and version).
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The bucket holds different bytes under a checkpoint's key: two histories of the same
    /// size were signed. Never retried.
    #[error("fork: {key} already holds a different checkpoint of tenant {tenant} at size {size} than the one this log signed")]
    Fork {
        /// The tenant.
        tenant: String,
        /// The tree size.
        size: u64,
        /// The object key.
        key: String,
    },
}

impl AnchorError {
    /// Whether trying again later may succeed (a network problem or a server-side error).
    pub fn is_retryable(&self) -> bool {
        match self {
            AnchorError::Unreachable { .. } => true,
            AnchorError::S3 { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            AnchorError::Protocol { .. } => true,
            AnchorError::Config(_) | AnchorError::Fork { .. } | AnchorError::Invalid { .. } => {
                false
            }
        }
    }

    /// The S3 error code, if S3 answered with one.
    pub fn s3_code(&self) -> Option<&str> {
        match self {
            AnchorError::S3 { code, .. } => Some(code),
            _ => None,
        }
    }
}
