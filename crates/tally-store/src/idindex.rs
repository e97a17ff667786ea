//! The on-disk event-id index: event id → leaf index, for idempotent retries and lookups by id,
//! without holding every id in memory.
//!
//! It is a projection of the `leaves` file, like the search index: one fjall database per
//! data directory (`DATA_DIR/ids/`), one keyspace per tenant, keyed `b'i' || id (16 bytes,
//! big-endian)` with the leaf index (u64 LE) as value, plus one watermark key `b"c"` holding
//! `w` (u64 LE): the keyspace covers leaves `[0, w)`. It may lag behind the log; the ids
//! published since (at most the lag) stay in memory ([`crate::tenant`]'s `recent`
//! generations) until the indexer thread ([`run`]) has made them durable here.
//!
//! Each write carries its own watermark atomically with its ids, so a crash leaves the keyspace
//! at some earlier write's watermark, never between writes. Two kinds of write, chosen by size:
//! - a small indexer pass (fewer than [`TABLE_PASS_IDS`] ids: a slow ingest) is one atomic
//!   batch in fjall's journal ([`TenantIds::append`]), *not* fsync'd: an fsync of the index
//!   every second competed with the log's own fsyncs on the same disk and cost single-event
//!   acknowledgements a third of their throughput and twice their p99 (BENCHMARKS.md). The
//!   index need not be durable: a watermark that a crash took back is caught up from `leaves`
//!   at the next start. A clean stop syncs it ([`IdIndex::close`]), so a clean restart has
//!   nothing to catch up.
//! - a big pass (a fast ingest) and the start-up catch-up are sorted runs ingested as whole
//!   tables ([`TenantIds::ingest`], fsync'd by fjall before they count): the cheapest write per
//!   id, its one fsync shared by many ids. At hundreds of thousands of ids a second, inserting
//!   them into the journal and memtable instead cost batched ingest a tenth of its throughput.
//!
//! Nothing here is on the acknowledgement path.
//!
//! Architecture Invariant: the index is never the truth. Every hit is checked against the
//! leaf entry it names before it is believed; a missing or unreadable index is rebuilt from
//! `leaves` at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::log::Inner;

/// The watermark key: sorts before every id key (`b'i' || …`).
const WATERMARK: &[u8] = b"c";
/// Marks a keyspace found damaged while running, so that the next start rebuilds it (sorts
/// between the watermark and the ids, and is never written by a run).
const DAMAGED: &[u8] = b"d";
/// The prefix of id keys.
const ID_PREFIX: u8 = b'i';
/// An indexer pass with at least this many ids is written as an ingested table (fsync'd), a
/// smaller one as a journal batch (not fsync'd); see the module docs.
pub(crate) const TABLE_PASS_IDS: usize = 65_536;
/// How many leaf entries a catch-up reads, sorts and ingests at a time (bounds its memory).
pub(crate) const CATCH_UP_CHUNK: u64 = 1 << 20;

/// The id index of a whole data directory.
pub(crate) struct IdIndex {
    path: PathBuf,
    /// `None` once closed ([`IdIndex::close`]).
    db: parking_lot::RwLock<Option<fjall::Database>>,
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdIndex").field("path", &self.path).finish()
    }
}

fn index_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::IdIndex(format!("{}: {e}", path.display()))
}

impl IdIndex {
    /// Opens the index at `path`, creating it if missing. An index that cannot be opened
    /// (damaged, or written by an incompatible version) is deleted and created empty: every
    /// tenant then rebuilds its keyspace from `leaves`.
    pub(crate) fn open(path: &Path) -> Result<IdIndex, StoreError> {
        // Ours, so that it is private whatever the umask (the engine's files inside take the
        // umask; the binaries set it to 077).
        let private =
            || crate::layout::create_private_dir_all(path).map_err(|e| StoreError::io(path, e));
        private()?;
        let open = || {
            fjall::Database::builder(path)
                // Small: lookups of new ids (the common case) are answered by bloom filters.
                .cache_size(32 << 20)
                // One thread for flushes and compactions: the index is a background
                // projection and must not take a second core from ingest on a small machine.
                .worker_threads(1)
                .open()
        };
        let db = match open() {
            Ok(db) => db,
            Err(fjall::Error::Locked) => {
                return Err(StoreError::IdIndex(format!(
                    "{} is open elsewhere (a log of this directory still open in this process?)",
                    path.display()
                )))
            }
            Err(e) => {
                tracing::warn!(
                    "the event-id index {} cannot be opened ({e}); deleting it: it is rebuilt from the leaves files",
                    path.display()
                );
                std::fs::remove_dir_all(path).map_err(|e| StoreError::io(path, e))?;
                private()?;
                open().map_err(|e| index_error(path, e))?
            }
        };
        Ok(IdIndex {
            path: path.to_path_buf(),
            db: parking_lot::RwLock::new(Some(db)),
        })
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&fjall::Database) -> fjall::Result<T>,
    ) -> Result<T, StoreError> {
        let db = self.db.read();
        let db = db.as_ref().ok_or_else(|| closed(&self.path))?;
        f(db).map_err(|e| index_error(&self.path, e))
    }

    /// The keyspace of one tenant (created empty if it has none).
    pub(crate) fn tenant(self: &Arc<Self>, tenant: &str) -> Result<TenantIds, StoreError> {
        let ks = self.with_db(|db| db.keyspace(tenant, keyspace_options))?;
        Ok(TenantIds {
            index: self.clone(),
            name: tenant.to_string(),
            ks: parking_lot::RwLock::new(Some(ks)),
        })
    }

    /// Deletes a tenant's keyspace (a tenant removed again because its first request was
    /// refused).
    pub(crate) fn forget(&self, ids: &TenantIds) -> Result<(), StoreError> {
        let Some(ks) = ids.ks.write().take() else {
            return Ok(());
        };
        self.with_db(|db| db.delete_keyspace(ks))
    }

    /// Makes everything written durable, then closes the database (once every tenant's
    /// keyspace is closed too, it is released, so the directory can be opened again in this
    /// process). Later calls fail. A failed sync costs only a catch-up at the next start.
    pub(crate) fn close(&self) {
        if let Some(db) = self.db.write().take() {
            if let Err(e) = db.persist(fjall::PersistMode::SyncAll) {
                tracing::warn!(
                    "syncing the event-id index {} at stop failed ({e}); the next start catches it up from the leaves files",
                    self.path.display()
                );
            }
        }
    }
}

fn closed(path: &Path) -> StoreError {
    StoreError::IdIndex(format!(
        "{}: closed (the log was shut down)",
        path.display()
    ))
}

fn keyspace_options() -> fjall::KeyspaceCreateOptions {
    // fjall's own bloom filters stay in its block cache, not pinned in memory: lookups of new
    // ids (the common case) are answered by `IdFilter` before they reach the tables. Filters
    // and indexes are partitioned at every level, so a lookup that does reach a table (a
    // retry, or one of the filter's false positives) reads a few small blocks, not a whole
    // table's filter (megabytes for a large table: measured at ~0.6 ms per lookup).
    let all = |on| fjall::config::PartitioningPolicy::all(on);
    fjall::KeyspaceCreateOptions::default()
        .filter_block_partitioning_policy(all(true))
        .index_block_partitioning_policy(all(true))
}

/// One tenant's keyspace of the id index.
pub(crate) struct TenantIds {
    index: Arc<IdIndex>,
    name: String,
    /// Replaced only by [`TenantIds::clear`] (at open, before anyone reads); `None` once
    /// closed.
    ks: parking_lot::RwLock<Option<fjall::Keyspace>>,
}

impl std::fmt::Debug for TenantIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantIds")
            .field("name", &self.name)
            .finish()
    }
}

fn id_key(id: u128) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = ID_PREFIX;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

impl TenantIds {
    /// `(w, h)`: the keyspace holds the ids of leaves `[0, w)`, and `h` is the leaf hash of
    /// leaf `w - 1` when it was indexed (zeros for `w = 0`), which binds the index to the
    /// `leaves` file it was built from. `Err` when the watermark is unreadable or the
    /// keyspace is marked damaged (the caller rebuilds).
    pub(crate) fn covers(&self) -> Result<(u64, tally_tlog::Hash), StoreError> {
        let ks = self.ks.read();
        let ks = ks.as_ref().ok_or_else(|| closed(&self.index.path))?;
        if ks
            .get(DAMAGED)
            .map_err(|e| index_error(&self.index.path, e))?
            .is_some()
        {
            return Err(StoreError::IdIndex(format!(
                "{}: tenant {}: marked damaged by a lookup",
                self.index.path.display(),
                self.name
            )));
        }
        match ks
            .get(WATERMARK)
            .map_err(|e| index_error(&self.index.path, e))?
        {
            None => Ok((0, [0; 32])),
            Some(v) if v.len() == 40 => Ok((
                u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
                v[8..].try_into().expect("32 bytes"),
            )),
            Some(_) => Err(StoreError::IdIndex(format!(
                "{}: tenant {}: the watermark is not 40 bytes",
                self.index.path.display(),
                self.name
            ))),
        }
    }

    /// The leaf index stored for `id`, unchecked (callers check it against `leaves`).
    pub(crate) fn get(&self, id: u128) -> Result<Option<u64>, StoreError> {
        let found = self
            .ks
            .read()
            .as_ref()
            .ok_or_else(|| closed(&self.index.path))?
            .get(id_key(id))
            .map_err(|e| index_error(&self.index.path, e))?;
        match found {
            None => Ok(None),
            Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                Ok(b) => Ok(Some(u64::from_le_bytes(b))),
                Err(_) => Err(StoreError::IdIndex(format!(
                    "{}: tenant {}: a value is not 8 bytes",
                    self.index.path.display(),
                    self.name
                ))),
            },
        }
    }

    /// Adds `entries` (id, leaf index) and moves the watermark to `covers`, atomically, in one
    /// journal batch that is not fsync'd (see the module docs). `entries` must be every id of
    /// leaves `[old watermark, covers)`.
    pub(crate) fn append(
        &self,
        entries: &mut [(u128, u64)],
        covers: u64,
        last_hash: tally_tlog::Hash,
    ) -> Result<(), StoreError> {
        let ks = self.ks.read();
        let ks = ks.as_ref().ok_or_else(|| closed(&self.index.path))?;
        self.index.with_db(|db| {
            let mut batch = db.batch().durability(None);
            batch.insert(ks, WATERMARK, watermark(covers, &last_hash));
            // In key order: the memtable's skiplist takes sorted inserts much faster than
            // random ones (client ids are random), at hundreds of thousands of ids a second.
            for (id, index) in sorted_unique(entries) {
                batch.insert(ks, id_key(id), index.to_le_bytes());
            }
            batch.commit()
        })
    }

    /// Durably adds `entries` (id, leaf index) and moves the watermark to `covers`: one sorted
    /// run ingested as a table, fsync'd before it counts (the start-up catch-up, and an
    /// indexer pass of [`TABLE_PASS_IDS`] or more). `entries` must be every id of leaves
    /// `[old watermark, covers)`.
    pub(crate) fn ingest(
        &self,
        entries: &mut [(u128, u64)],
        covers: u64,
        last_hash: tally_tlog::Hash,
    ) -> Result<(), StoreError> {
        let ks = self.ks.read();
        let ks = ks.as_ref().ok_or_else(|| closed(&self.index.path))?;
        let err = |e: fjall::Error| index_error(&self.index.path, e);
        let mut run = ks.start_ingestion().map_err(err)?;
        run.write(WATERMARK, watermark(covers, &last_hash))
            .map_err(err)?;
        for (id, index) in sorted_unique(entries) {
            run.write(id_key(id), index.to_le_bytes()).map_err(err)?;
        }
        run.finish().map_err(err)
    }

    /// Marks the keyspace damaged (a hit that named the wrong leaf), durably, so that the next
    /// start rebuilds it. Best effort: a failure is logged.
    pub(crate) fn invalidate(&self) {
        tracing::error!(
            tenant = %self.name,
            "the event-id index gave a leaf index holding another event: it is rebuilt at the next start"
        );
        let marked = match self.ks.read().as_ref() {
            Some(ks) => ks
                .insert(DAMAGED, [1u8])
                .map_err(|e| index_error(&self.index.path, e))
                .and_then(|()| {
                    self.index
                        .with_db(|db| db.persist(fjall::PersistMode::SyncAll))
                }),
            None => Err(closed(&self.index.path)),
        };
        if let Err(e) = marked {
            tracing::error!(tenant = %self.name, "marking the event-id index damaged failed: {e}");
        }
    }

    /// Empties the keyspace (watermark 0), for a rebuild.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        let mut ks = self.ks.write();
        if let Some(old) = ks.take() {
            self.index.with_db(|db| db.delete_keyspace(old))?;
        }
        *ks = Some(
            self.index
                .with_db(|db| db.keyspace(&self.name, keyspace_options))?,
        );
        Ok(())
    }

    /// Closes this tenant's keyspace (see [`IdIndex::close`]).
    pub(crate) fn close(&self) {
        self.ks.write().take();
    }
}

/// `entries` in ascending id order, each id once: an id stored twice (only a tampered `leaves`
/// file has one; the verifier and the scrub name it) keeps its first leaf, whichever kind of
/// write takes it (a table's keys must be strictly ascending anyway).
fn sorted_unique(entries: &mut [(u128, u64)]) -> impl Iterator<Item = (u128, u64)> + '_ {
    entries.sort_unstable();
    let mut last = None;
    entries.iter().copied().filter(move |&(id, _)| {
        let first = last != Some(id);
        last = Some(id);
        first
    })
}

/// The watermark value: the leaves covered (u64 LE) and the leaf hash of the last of them.
fn watermark(covers: u64, last_hash: &tally_tlog::Hash) -> Vec<u8> {
    let mut value = covers.to_le_bytes().to_vec();
    value.extend_from_slice(last_hash);
    value
}

/// The indexer thread: every `interval` (sooner when a tenant's lag passes a bound), moves
/// each tenant's published ids from memory into the on-disk index. Stops when `stop` is
/// dropped, after a last pass so that a clean restart has nothing to catch up.
pub(crate) fn run(inner: Arc<Inner>, interval: Duration, stop: Receiver<()>) {
    let tick = (interval / 4).max(Duration::from_millis(10));
    let mut last = Instant::now();
    loop {
        let stopping = !matches!(stop.recv_timeout(tick), Err(RecvTimeoutError::Timeout));
        if inner.crashed() {
            return;
        }
        let due = stopping || last.elapsed() >= interval;
        for log in inner.tenant_logs() {
            if let Err(e) = log.index_ids(due) {
                tracing::error!(
                    tenant = log.name(),
                    "updating the event-id index failed (the ids stay in memory; retried): {e}"
                );
            }
        }
        if due {
            last = Instant::now();
        }
        if stopping {
            return;
        }
    }
}

/// Ids the first filter segment is sized for; a full segment is followed by one twice its
/// size, so a lookup probes about log2(n / 4 M) segments, each with ~1% false positives.
const FILTER_SEGMENT_IDS: usize = 1 << 22;
/// Filter bits per id: about 1% false positives with 7 probes in one 512-bit block.
const FILTER_BITS_PER_ID: usize = 10;

/// A bloom filter of every id in the on-disk index, kept in memory (about 1.25 bytes per
/// event), so that looking up a new id, which every event with a client-supplied id does on
/// the writer thread, almost never reaches the index's tables. Blocked: the probes of one id
/// fall in one 64-byte block (one cache miss). Ids are hashed with a random seed, so no client
/// can aim at false positives (which would only cost a disk lookup anyway). Bits are atomics:
/// the one inserting thread (the indexer) never blocks a lookup.
#[derive(Debug)]
pub(crate) struct IdFilter {
    hasher: foldhash::fast::RandomState,
    segments: parking_lot::RwLock<Vec<Arc<FilterSegment>>>,
}

#[derive(Debug)]
struct FilterSegment {
    blocks: Box<[[AtomicU64; 8]]>,
    capacity: usize,
    len: AtomicUsize,
}

impl IdFilter {
    pub(crate) fn new() -> IdFilter {
        IdFilter {
            hasher: Default::default(),
            segments: Default::default(),
        }
    }

    /// The block (from the hash's high half) and the 7 bit positions in it (from its low
    /// half, mixed: independent of the block).
    fn probes(h: u64, blocks: usize) -> (usize, impl Iterator<Item = usize>) {
        let block = (((h >> 32) * blocks as u64) >> 32) as usize;
        let g = (h & 0xFFFF_FFFF).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (
            block,
            (0..7).map(move |i| ((g >> (1 + 9 * i)) & 511) as usize),
        )
    }

    fn hash(&self, id: u128) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    /// Adds an id (one thread at a time: the indexer).
    pub(crate) fn insert(&self, id: u128) {
        let next = match self.segments.read().last() {
            None => Some(FILTER_SEGMENT_IDS),
            Some(s) if s.len.load(Ordering::Relaxed) >= s.capacity => Some(2 * s.capacity),
            Some(_) => None,
        };
        if let Some(capacity) = next {
            let blocks = (0..capacity * FILTER_BITS_PER_ID / 512)
                .map(|_| Default::default())
                .collect();
            self.segments.write().push(Arc::new(FilterSegment {
                blocks,
                capacity,
                len: AtomicUsize::new(0),
            }));
        }
        let seg = self.segments.read().last().expect("ensured above").clone();
        let (block, probes) = Self::probes(self.hash(id), seg.blocks.len());
        let block = &seg.blocks[block];
        for p in probes {
            block[p / 64].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
        seg.len.fetch_add(1, Ordering::Relaxed);
    }

    /// False only if the id was never inserted (callers order the inserts before them with
    /// an atomic watermark).
    pub(crate) fn may_contain(&self, id: u128) -> bool {
        let h = self.hash(id);
        self.segments.read().iter().any(|seg| {
            let (block, mut probes) = Self::probes(h, seg.blocks.len());
            let block = &seg.blocks[block];
            probes.all(|p| block[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_stored_twice_keeps_its_first_leaf_in_either_kind_of_write() {
        let mut entries = vec![(9, 4), (3, 7), (9, 1), (5, 2), (3, 0)];
        let out: Vec<_> = sorted_unique(&mut entries).collect();
        assert_eq!(out, vec![(3, 0), (5, 2), (9, 1)]);
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let f = IdFilter::new();
        let ids: Vec<u128> = (0..(FILTER_SEGMENT_IDS as u128 * 3 + 1000))
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .collect();
        for &id in &ids {
            f.insert(id);
        }
        assert_eq!(f.segments.read().len(), 3);
        assert!(ids.iter().step_by(101).all(|&id| f.may_contain(id)));
        assert!(f.may_contain(*ids.last().unwrap()));
        let false_positives = (0..100_000u128)
            .filter(|i| f.may_contain(!i.wrapping_mul(0x1234_5678_9ABC_DEF1)))
            .count();
        // Three segments (4 M, 8 M, 16 M ids) probed: about 3%.
        assert!(false_positives < 4_000, "{false_positives}");
    }
}
