//! The embedded Tally log: one RFC 6962 Merkle log per tenant on local files, made durable by
//! a group-committing sequencer and signed as C2SP checkpoints.
//!
//! Main types: [`Log`] (open a data directory, [`Log::append`] events, read tenants),
//! [`TenantLog`] (records, proofs, tiles, checkpoints of one tenant), [`DataDir`] (the on-disk
//! layout), [`CheckpointSigner`] (who signs checkpoints: a key, or a command holding it) and
//! [`verify::verify_tenant`] (the offline verifier behind `tally verify`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tally_store::{DataDir, Log, LogConfig};
//! let (log, _report) = Log::open(DataDir::create_or_open("./data")?, LogConfig::default())?;
//! let tenant = log.tenant("acme");
//! println!("acme has {} events", tenant.map_or(0, |t| t.size()));
//! log.shutdown();
//! # Ok(()) }
//! ```
//!
//! Guarantees: [`Log::append`] returns only after the events are fsync'd and integrated into
//! their tenant's tree; an event id supplied by the client is stored at most once, for as long
//! as the log exists (an on-disk id index, `DATA_DIR/ids/`, answers retries; memory holds only
//! the ids it has not taken yet); a crash at any instant loses no acknowledged event (recovery
//! cuts a torn tail and re-derives the in-memory tree from the persisted tree state and the
//! leaves after it, checking it against the last signed checkpoint). Memory and start-up time
//! do not grow with the number of events beyond the tree's tile-boundary levels (1/256 of the
//! leaf hashes) and the id index's in-memory bloom filter (about 1.25 bytes per event).

// The only unsafe code is one kill(2) call in `command`, allowed there.
#![deny(unsafe_code)]

pub mod at_rest;
mod command;
pub mod compare;
pub mod error;
pub mod faults;
pub mod frame;
mod growth;
mod idindex;
pub mod layout;
mod log;
pub mod metrics;
mod reader;
mod recovery;
mod scrub;
mod sequencer;
pub mod signer;
pub mod storage;
mod tenant;
pub mod throttle;
mod treestate;
pub mod verify;

pub use at_rest::{AtRest, Kek, KekSource};
pub use error::{AppendError, Damage, ReadError, SigningTrouble, StoreError, WriteHealth};
pub use frame::read_checkpoint_frames;
pub use growth::Growth;
pub use layout::{DataDir, TenantDir};
pub use log::{
    tenant_origin, Appended, CheckpointEvent, Log, LogConfig, OpenReport, PreparedEvent,
    RecordSealer,
};
pub use reader::{LogReader, TenantReader, TenantRecords};
pub use signer::{CheckpointSigner, KeySource};
pub use storage::{
    FaultyStorage, OpenMode, PosixStorage, SequentialReader, Storage, StoredFile, WriterLock,
};
pub use tenant::{open_checkpoint, CheckpointError, RecoveryReport, SignedCheckpoint, TenantLog};
