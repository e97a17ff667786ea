//! Durable consumers: everything that follows the log (the search index today; alert rules,
//! SIEM sinks, the archiver and replication next) plugs in here as a [`Consumer`].
//!
//! Main items: [`Consumer`] (what a follower implements), [`Consumers`] (the runtime that
//! feeds each one on its own thread), [`cursor`] (the durable positions in
//! `DATA_DIR/consumers/<name>.json`) and [`index::IndexConsumer`] (the search index).
//!
//! Guarantees a consumer gets:
//! - **In leaf order, at least once.** Each tenant's records arrive in leaf order, in batches.
//!   After a crash or a failed delivery, records after the last durable cursor arrive again:
//!   the leaf index is the deduplication key.
//! - **Durable cursors.** The runtime advances a consumer's cursor only after its
//!   [`Consumer::flush`] succeeded, and writes it durably before it counts as delivered.
//!   At start each tenant resumes from [`Consumer::resume`], which by default is the cursor;
//!   a consumer whose own state is the truth (the search index knows what it committed)
//!   answers from that state, so one that lost it (a deleted index) starts again from zero.
//! - **No polling.** The runtime sleeps until the log announces growth
//!   ([`tally_store::Log::subscribe_growth`]).
//! - **Backpressure without slowing ingest.** Consumers pull from the log, which is the
//!   buffer: a slow or failing consumer lags (its lag is in `/metrics` and `/healthz`), it
//!   never holds back an acknowledgement.
//! - **Retries with backoff.** A failed delivery or flush is retried with the same records,
//!   waiting from [`ConsumerSettings::retry_min`] doubling to [`ConsumerSettings::retry_max`];
//!   the last error is reported until a delivery succeeds.
//!
//! Architecture Invariant: data flows one way, log → consumers. A consumer only reads the
//! log; nothing it does can change what the log holds.

#![forbid(unsafe_code)]

pub mod cursor;
pub mod index;
mod runtime;

pub use cursor::{CursorError, CursorFile};
pub use runtime::{ConsumerReport, ConsumerSettings, Consumers, LastError, TenantPosition};

/// What a consumer's methods return when they fail: any error, reported as its message.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// Consecutive records of one tenant's log, as delivered to a [`Consumer`].
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The tenant whose log they come from.
    pub tenant: &'a str,
    /// Leaf index of the first record.
    pub first: u64,
    /// The canonical record bytes, in leaf order (see `tally_event`).
    pub records: &'a [Vec<u8>],
}

impl<'a> Batch<'a> {
    /// Each record with its leaf index.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let first = self.first;
        self.records
            .iter()
            .enumerate()
            .map(move |(i, r)| (first + i as u64, r.as_slice()))
    }

    /// The leaf index after the last record.
    pub fn end(&self) -> u64 {
        self.first + self.records.len() as u64
    }
}

/// A follower of the log. It runs on its own thread, so its methods may block.
pub trait Consumer: Send + 'static {
    /// Where to start delivering `tenant`'s records, given the durable cursor (`None`: never
    /// delivered). Called once per tenant per start. The default trusts the cursor.
    fn resume(&mut self, tenant: &str, cursor: Option<u64>) -> Result<u64, ConsumerError> {
        let _ = tenant;
        Ok(cursor.unwrap_or(0))
    }

    /// Takes a batch of records. Records delivered but not flushed may be delivered again
    /// (after an error or a crash): treat the leaf index as the deduplication key.
    fn deliver(&mut self, batch: Batch<'_>) -> Result<(), ConsumerError>;

    /// Makes everything delivered so far durable (or visible) in the consumer's own store.
    /// The cursor advances past those records only once this has returned `Ok`.
    fn flush(&mut self) -> Result<(), ConsumerError>;
}

/// Whether `name` may name a consumer: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`,
/// starting with a letter or digit (it becomes a file name and a metrics label).
pub fn is_valid_consumer_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_safe_file_names() {
        for ok in ["search-index", "siem_1", "a", &"x".repeat(64)] {
            assert!(is_valid_consumer_name(ok), "{ok}");
        }
        for bad in ["", "-x", "A", "a/b", "..", "a.b", "é", &"x".repeat(65)] {
            assert!(!is_valid_consumer_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_batch_numbers_its_records_from_first() {
        let records = vec![b"a".to_vec(), b"b".to_vec()];
        let batch = Batch {
            tenant: "t",
            first: 7,
            records: &records,
        };
        let got: Vec<_> = batch.iter().collect();
        assert_eq!(got, vec![(7, &b"a"[..]), (8, &b"b"[..])]);
        assert_eq!(batch.end(), 9);
    }
}
