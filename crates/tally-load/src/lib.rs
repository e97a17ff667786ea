//! Load generator behind `tally-bench ingest`: durable-ingest throughput and acknowledgement latency of
//! Tally over HTTP, and of the same workload against a PostgreSQL baseline built the way audit-log
//! guides describe it (an append-only table whose insert trigger extends a SHA-256 hash chain).
//!
//! - [`generate::EventGenerator`] makes realistic, seeded schema-v1 events (about 480 bytes of JSON on average).
//! - [`http::run_http`] drives `POST /v1/events` with [`http::HttpLoadOptions`].
//! - [`postgres::run_postgres`] drives the baseline with [`postgres::PgLoadOptions`], and
//!   [`postgres::verify_pg_chain`] recomputes its hash chain (feature `postgres`, on by default).
//! - Both return a [`LoadReport`]; [`print_comparison`] and [`markdown_table`] put runs side by side.
//! - `investigate` (feature `investigate`) is the investigation benchmark behind
//!   `tally-bench search`: search latency, index rebuild and lag on millions of events, against
//!   PostgreSQL.
//!
//! Both runs share one measurement loop: request bodies are generated before the clock starts,
//! `concurrency` tasks each keep one request in flight, a warm-up phase is sent but not counted,
//! and a request's latency runs from just before it is sent until its acknowledgement is read.
//! The library takes plain option structs and never parses command lines.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn bench() -> Result<(), tally_load::LoadError> {
//! use std::time::Duration;
//! use tally_load::http::{run_http, HttpLoadOptions};
//! use tally_load::postgres::{run_postgres, PgLoadOptions};
//! use tally_load::{print_comparison, LoadMode};
//!
//! let mode = LoadMode::Batched { batch_size: 1000 };
//! let ours = run_http(&HttpLoadOptions {
//!     url: "http://127.0.0.1:7700".into(),
//!     token: "tly_ingest_key".into(),
//!     mode,
//!     duration: Duration::from_secs(10),
//!     ..HttpLoadOptions::default()
//! })
//! .await?;
//! let baseline = run_postgres(&PgLoadOptions { mode, ..PgLoadOptions::default() }).await?;
//! print_comparison(&ours, &baseline);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

mod driver;
/// The event generator, shared with the tests ([`tally_eventgen`]).
pub use tally_eventgen as generate;
pub mod http;
#[cfg(feature = "investigate")]
pub mod investigate;
#[cfg(feature = "postgres")]
pub mod postgres;
mod report;

pub use report::{comparison, markdown_table, print_comparison, LoadReport};

/// How events are grouped into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `batch_size` events per request: a JSON array to Tally, one multi-row INSERT to PostgreSQL.
    Batched {
        /// Events per request; at least 1.
        batch_size: usize,
    },
    /// One event per request: a JSON object to Tally, one autocommitted INSERT to PostgreSQL.
    Single,
}

/// `batch=N` or `single`, as used in report labels.
impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadMode::Batched { batch_size } => write!(f, "batch={batch_size}"),
            LoadMode::Single => f.write_str("single"),
        }
    }
}

/// An error with its causes, `outer: inner: innermost`.
///
/// The drivers' own messages are terse ("db error", "error sending request") and keep the useful
/// part (the server's message, "connection refused") in their sources, which a report line or a
/// [`LoadError`] message must not lose. [`LoadError`] therefore puts the whole chain in its
/// message and does not expose the driver error as its `source()` a second time.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        // Some errors already repeat their cause in their own message.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// Why a load run or a verification could not produce a result.
///
/// Failures of individual requests are not errors: they are counted in [`LoadReport::errors`].
/// A run fails as a whole only when it cannot start or when no request succeeded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options cannot describe a run (zero concurrency, bad URL, unsafe schema name, …).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {}", error_chain(.0))]
    HttpClient(reqwest::Error),
    /// A PostgreSQL step outside the measured requests failed (connecting, creating the schema,
    /// preparing statements, reading the chain).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL, {context}: {}", error_chain(.error))]
    Postgres {
        /// What was being done.
        context: String,
        /// The driver's error; its SQLSTATE is in `error.code()`.
        error: tokio_postgres::Error,
    },
    /// Every measured request failed, so there is nothing to report.
    #[error("all {errors} requests failed; the first: {first_error}")]
    NoSuccess {
        /// Failed requests.
        errors: u64,
        /// The first failure: status and body, or the error.
        first_error: String,
    },
    /// The PostgreSQL hash chain does not verify: a row was altered, removed or reordered.
    #[error("hash chain broken at seq {seq}: {reason}")]
    ChainBroken {
        /// First sequence number at which the chain diverges.
        seq: i64,
        /// What did not match.
        reason: String,
    },
    /// A load task panicked or was cancelled.
    #[error("a load task failed: {0}")]
    Task(String),
}
