//! The search index as a consumer: it follows every tenant's log into an [`EventIndex`].
//!
//! The index is derived data: it can be deleted at any time and is rebuilt from the log. Its
//! own record of what it committed ([`EventIndex::indexed`]) is where each tenant resumes, so
//! a deleted index starts again from zero, and one reported damaged is cleared first.

use std::sync::Arc;

use tally_index::{EventIndex, IndexError, IndexedEvent, PersonalValue};
use tally_privacy::record::Opened;
use tally_store::TenantRecords;

use crate::{Batch, Consumer, ConsumerError, ConsumerSettings};

/// The consumer name of the search index (its cursor is `consumers/search-index.json`).
pub const NAME: &str = "search-index";

/// Opens sealed records for the index: personal values in the clear, each with its masking
/// token (`tally_privacy::record::View::Index`). The server's privacy layer is one.
pub trait RecordOpener: Send + Sync + 'static {
    /// Opens one stored record of `tenant`.
    fn open_for_index(&self, tenant: &str, stored: &[u8]) -> Result<Opened, String>;
}

/// An opener for logs without sealed records (benchmarks filling a log through the store,
/// without the server's privacy layer): a sealed record is an error.
pub struct UnsealedOnly;

impl RecordOpener for UnsealedOnly {
    fn open_for_index(&self, _tenant: &str, _stored: &[u8]) -> Result<Opened, String> {
        Err("a sealed record, and no keys to open it with".into())
    }
}

/// Feeds an [`EventIndex`]; `on_commit` runs after each commit (the server wakes live
/// streams and exports waiting for the index with it).
pub struct IndexConsumer {
    index: Arc<dyn EventIndex>,
    opener: Arc<dyn RecordOpener>,
    on_commit: Box<dyn Fn() + Send>,
    uncommitted: bool,
}

impl IndexConsumer {
    /// A consumer feeding `index`, opening sealed records with `opener`.
    pub fn new(
        index: Arc<dyn EventIndex>,
        opener: Arc<dyn RecordOpener>,
        on_commit: impl Fn() + Send + 'static,
    ) -> Self {
        IndexConsumer {
            index,
            opener,
            on_commit: Box::new(on_commit),
            uncommitted: false,
        }
    }

    /// The settings `tally serve` uses: batches of 4096 records, a commit at least every
    /// `commit_interval` while records keep coming (which bounds how far search trails the
    /// log).
    pub fn settings(commit_interval: std::time::Duration) -> ConsumerSettings {
        ConsumerSettings {
            batch_records: 4096,
            flush_interval: commit_interval,
            ..ConsumerSettings::default()
        }
    }
}

impl Consumer for IndexConsumer {
    fn resume(&mut self, tenant: &str, _cursor: Option<u64>) -> Result<u64, ConsumerError> {
        // The index's own count is the truth: it commits documents and position together.
        match self.index.indexed(tenant) {
            Err(IndexError::Corrupt(detail)) => {
                tracing::warn!(
                    tenant,
                    "the search index is damaged ({detail}); rebuilding it from the log"
                );
                self.index.clear(tenant)?;
                Ok(0)
            }
            other => Ok(other?),
        }
    }

    fn deliver(&mut self, batch: Batch<'_>) -> Result<(), ConsumerError> {
        add(&*self.index, &*self.opener, batch)?;
        self.uncommitted = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        if self.uncommitted {
            self.index.commit()?;
            self.uncommitted = false;
            (self.on_commit)();
        }
        Ok(())
    }
}

/// A sealed record opened for the index: its bytes with personal values clear, and each
/// sealed value's path, token and key (what [`EventIndex::erase_key`] re-adds, too).
pub fn opened_with_personal(
    opener: &dyn RecordOpener,
    tenant: &str,
    stored: &[u8],
) -> Result<(Vec<u8>, Vec<PersonalValue>), String> {
    let o = opener.open_for_index(tenant, stored)?;
    let personal = o
        .sealed
        .iter()
        .map(|(path, key)| PersonalValue {
            path: path.clone(),
            token: o
                .tokens
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, t)| t.clone()),
            key: key.to_string(),
        })
        .collect();
    Ok((o.bytes, personal))
}

/// Adds a batch to the index (not committed), opening its sealed records.
fn add(
    index: &dyn EventIndex,
    opener: &dyn RecordOpener,
    batch: Batch<'_>,
) -> Result<(), IndexError> {
    // Schema-1 records are indexed as stored; sealed ones opened, with their personal values.
    let mut opened: Vec<Option<(Vec<u8>, Vec<PersonalValue>)>> =
        Vec::with_capacity(batch.records.len());
    for (i, record) in batch.iter() {
        if !tally_privacy::record::is_sealed(record) {
            opened.push(None);
            continue;
        }
        let (bytes, personal) = opened_with_personal(opener, batch.tenant, record)
            .map_err(|detail| IndexError::BadRecord { index: i, detail })?;
        opened.push(Some((bytes, personal)));
    }
    let events: Vec<IndexedEvent<'_>> = batch
        .iter()
        .zip(&opened)
        .map(|((index, record), opened)| match opened {
            Some((bytes, personal)) => IndexedEvent {
                index,
                record: bytes,
                personal,
            },
            None => IndexedEvent {
                index,
                record,
                personal: &[],
            },
        })
        .collect();
    index.add(batch.tenant, &events)
}

/// Rebuilds a tenant's index from its log with the consumer's own code: clears it, adds the
/// records `[0, upto)` (the whole log when `upto` is `None` or beyond it) and commits, calling
/// `progress` with the number of records added after each chunk. Returns how many records
/// were indexed. For `tally reindex` (from a read-only [`tally_store::LogReader`]) and
/// benchmarks; no consumer may feed the same index meanwhile.
pub fn rebuild(
    tlog: &dyn TenantRecords,
    index: &dyn EventIndex,
    opener: &dyn RecordOpener,
    upto: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, IndexError> {
    // Larger than a running consumer's batches: nobody waits for a commit in between.
    const REBUILD_CHUNK: u64 = 8192;
    index.clear(tlog.name())?;
    let size = upto.map_or(tlog.size(), |u| u.min(tlog.size()));
    let mut pos = 0;
    while pos < size {
        let count = (size - pos).min(REBUILD_CHUNK);
        let records = tlog
            .records(pos, count)
            .map_err(|e| IndexError::Engine(format!("reading the log of {}: {e}", tlog.name())))?;
        add(
            index,
            opener,
            Batch {
                tenant: tlog.name(),
                first: pos,
                records: &records,
            },
        )?;
        pos += count;
        progress(count);
    }
    index.commit()?;
    Ok(size)
}
