//! Export bundles: investigation results that anyone holding the log's public key can check
//! offline.
//!
//! An export is pinned to one signed checkpoint. It carries that checkpoint, every exported
//! record exactly as stored (with its leaf index), and one multiproof
//! ([`tally_tlog::multiproof`]) that binds all of them to the checkpoint's root. When the
//! export was not filtered, its leaf range must be complete, which the verifier checks too.
//!
//! - [`bundle`]: the line format the server streams (and `.jsonl` files keep).
//! - [`verify`]: [`BundleVerifier`], the checks.
//! - [`file`]: writing JSON Lines, CSV (+ proof sidecar) and Parquet files, and
//!   [`verify_file`] for any of them.
//! - [`table`]: records as rows (CSV and Parquet columns).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod file;
pub mod table;
pub mod verify;

pub use bundle::{End, Header, IndexRange, Line, ProofNode, FORMAT_VERSION, VIEWS_FORMAT_VERSION};
pub use file::{csv_sidecar, verify_file, ExportFile, Format};
pub use verify::{keys_json, BundleError, BundleVerifier, Verified};
