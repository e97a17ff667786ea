//! One tenant's log: its files, its in-memory tree state and every read (recovery, which
//! opens it, is [`crate::recovery`]).
//!
//! The writer half ([`TenantWriter`]) is touched only by the sequencer; readers share
//! [`TenantState`] behind a read-write lock that the sequencer takes for writing only to
//! publish an already-durable group. Architecture Invariant: nothing a reader can observe
//! (size, ids, tree nodes, checkpoint) is ahead of what is fsync'd.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tally_tlog::{checkpoint::Checkpoint, note::NoteVerifier, Frontier, Hash, NodeSource};
use uuid::Uuid;

use crate::at_rest::AtRest;
use crate::error::{Damage, ReadError, StoreError};
use crate::frame::{FrameHeader, LeafEntry, FRAME_HEADER, LEAF_ENTRY};
use crate::idindex::{IdFilter, IdIndex, TenantIds};
use crate::layout::TenantDir;
use crate::recovery::{self, Recovered};
use crate::storage::{Storage, StoredFile};
use crate::treestate::{level_len, TreeState};

/// Published ids the on-disk index does not hold yet may pile up to this many before the
/// indexer moves them there without waiting for its interval.
pub(crate) const INDEX_LAG_BOUND: u64 = 1 << 18;
/// Leaf entries the indexer adds to a tenant's id filter per pass while building it after a
/// start.
const FILTER_BUILD_CHUNK: u64 = 1 << 22;

/// A checkpoint the log signed, with the note text exactly as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// The C2SP signed note (checkpoint body, blank line, signature lines).
    pub note: String,
}

/// Event id → leaf index. Ids are chosen by clients, so the hasher is randomly seeded
/// (foldhash: fast, and no client can predict collisions); SipHash measured slower here.
pub(crate) type IdMap = HashMap<u128, u64, foldhash::fast::RandomState>;

/// A read-only segment handle.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) file: Arc<dyn StoredFile>,
}

/// State visible to readers; replaced only by the sequencer after a durable write.
#[derive(Debug)]
pub(crate) struct TenantState {
    pub(crate) size: u64,
    pub(crate) frontier: Frontier,
    /// `upper[k]` holds the roots of the complete subtrees at tree level `8 * (k + 1)`:
    /// the hashes of tlog-tiles level `k + 1`. Small (1/256 of the leaves), so kept in memory.
    pub(crate) upper: Vec<Vec<Hash>>,
    /// Ids published since the on-disk index's watermark, in generations `(first leaf index,
    /// ids)`, oldest first: the indexer starts a new generation, writes everything before it
    /// to the index, then drops the older ones. Bounded by the index's lag.
    pub(crate) recent: VecDeque<(u64, IdMap)>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) checkpoint: Option<SignedCheckpoint>,
}

/// The append side of a tenant's files and what is written but not yet published: owned by
/// the sequencer's writing thread.
#[derive(Debug)]
pub(crate) struct TenantWriter {
    /// The current segment (the same handle readers and the syncing thread use).
    pub(crate) segment: Arc<dyn StoredFile>,
    pub(crate) segment_start: u64,
    pub(crate) segment_len: u64,
    pub(crate) leaves: Arc<dyn StoredFile>,
    /// Index of the next frame written (ahead of the published size while a group syncs).
    pub(crate) next_index: u64,
    /// Ids written but not yet published → (index, frame offset), so that a retry arriving
    /// while the original is being synced is still recognised.
    pub(crate) inflight: HashMap<u128, (u64, u64)>,
    /// The ids of each group in `inflight`, oldest first, to forget them once published.
    pub(crate) inflight_groups: std::collections::VecDeque<(u64, Vec<u128>)>,
}

impl TenantWriter {
    /// Logical offset where the next frame goes.
    pub(crate) fn end_offset(&self) -> u64 {
        self.segment_start + self.segment_len
    }
}

/// One tenant's Merkle log.
#[derive(Debug)]
pub struct TenantLog {
    name: String,
    origin: String,
    pub(crate) dir: TenantDir,
    /// Where this log's bytes are kept.
    pub(crate) storage: Arc<dyn Storage>,
    leaves: Arc<dyn StoredFile>,
    pub(crate) state: RwLock<TenantState>,
    pub(crate) writer: Mutex<TenantWriter>,
    /// Append handle of the checkpoints file: used by the syncing thread only.
    pub(crate) checkpoints: Mutex<Arc<dyn StoredFile>>,
    /// The first damage found in this log since start (start-up check, scrub or a read).
    damage: Mutex<Option<Damage>>,
    metrics: crate::metrics::LogMetrics,
    /// This tenant's keyspace of the on-disk event-id index.
    pub(crate) ids: TenantIds,
    /// The index's watermark: the ids of leaves `[0, indexed)` are durably in it.
    indexed: AtomicU64,
    /// Serialises passes of the indexer (its thread, and the last pass at shutdown).
    index_pass: Mutex<()>,
    /// The size of the tree-state file on disk (0: none).
    tree_state_size: AtomicU64,
    /// A bloom filter of the ids of leaves `[0, filter_covers)`: a lookup that it answers
    /// "absent" for, when it covers the whole on-disk index, needs no disk read. Empty at
    /// start; the indexer thread fills it from `leaves` in the background.
    filter: IdFilter,
    filter_covers: AtomicU64,
    /// Bytes of published records (the logical end of the last segment), for quotas.
    record_bytes: AtomicU64,
    /// Decrypts records encrypted at rest (none configured: encrypted records cannot be read).
    at_rest: Option<Arc<AtRest>>,
}

/// How [`TenantLog::open`] signs and what it may accept.
pub(crate) struct OpenTenant<'a> {
    pub(crate) name: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) verifier: &'a NoteVerifier,
    /// Signs a checkpoint body, returning the note.
    pub(crate) sign: &'a dyn Fn(&str) -> Result<String, StoreError>,
    /// Open a log whose records have no signed checkpoint history at all (an operator's
    /// explicit decision after a recovery by hand), instead of refusing.
    pub(crate) accept_unsigned_history: bool,
    /// Where damage is counted.
    pub(crate) metrics: &'a crate::metrics::LogMetrics,
    /// The data directory's event-id index.
    pub(crate) ids: &'a Arc<IdIndex>,
    /// Where the log's bytes are kept.
    pub(crate) storage: &'a Arc<dyn Storage>,
    /// Encryption at rest, if configured.
    pub(crate) at_rest: Option<&'a Arc<AtRest>>,
}

/// What recovery found and did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Leaves after recovery.
    pub size: u64,
    /// Bytes cut from the end of the segments (a torn tail write).
    pub torn_bytes_cut: u64,
    /// Leaf entries dropped because their record was not durable.
    pub leaf_entries_dropped: u64,
    /// Leaf entries rebuilt from records that were durable but not yet indexed.
    pub leaf_entries_rebuilt: u64,
    /// Records found without any signed checkpoint history and opened anyway because the
    /// operator said so (they are signed as they are at the next checkpoint).
    pub unsigned_history_accepted: Option<u64>,
    /// Damage found by the start-up check (the log opens; reads of the damaged records fail).
    pub damage: Option<Damage>,
    /// The size of the persisted tree state the tree was rebuilt from (`None`: it was
    /// missing or not usable, and every leaf entry was replayed).
    pub tree_state: Option<u64>,
    /// Leaf entries read to rebuild the tree (those after the tree state).
    pub leaves_replayed: u64,
    /// Leaf entries added to the event-id index to catch it up (all of them on a rebuild).
    pub ids_indexed: u64,
}

impl TenantLog {
    /// Opens (creating if needed) a tenant's files, recovers a consistent state
    /// ([`recovery::recover`]) and runs the cheap start-up check.
    pub(crate) fn open(
        dir: TenantDir,
        how: &OpenTenant<'_>,
    ) -> Result<(TenantLog, RecoveryReport), StoreError> {
        let Recovered {
            segments,
            leaves,
            checkpoints,
            checkpoint,
            size: n,
            frontier,
            upper,
            tree_state_size,
            ids,
            mut report,
        } = recovery::recover(&dir, how)?;
        let (name, origin) = (how.name, how.origin);
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |e| StoreError::io(&path, e)
        };

        let last = segments.last().expect("at least one segment");
        let last_path = dir.segment_path(last.start);
        let segment_len = last.file.len().map_err(io(&last_path))?;
        let record_bytes = last.start + segment_len;
        let writer = TenantWriter {
            segment_start: last.start,
            segment_len,
            segment: last.file.clone(),
            leaves: leaves.clone(),
            next_index: n,
            inflight: HashMap::new(),
            inflight_groups: Default::default(),
        };
        report.size = n;
        let log = TenantLog {
            name: name.to_string(),
            origin: origin.to_string(),
            leaves,
            storage: how.storage.clone(),
            dir,
            state: RwLock::new(TenantState {
                size: n,
                frontier,
                upper,
                recent: VecDeque::new(),
                segments,
                checkpoint,
            }),
            writer: Mutex::new(writer),
            checkpoints: Mutex::new(checkpoints),
            damage: Mutex::new(None),
            metrics: how.metrics.clone(),
            ids,
            indexed: AtomicU64::new(n),
            index_pass: Mutex::new(()),
            tree_state_size: AtomicU64::new(tree_state_size),
            filter: IdFilter::new(),
            filter_covers: AtomicU64::new(0),
            record_bytes: AtomicU64::new(record_bytes),
            at_rest: how.at_rest.cloned(),
        };
        report.damage = log.start_check()?;
        if let Some(d) = &report.damage {
            log.report_damage(d.clone());
        }
        Ok((log, report))
    }

    /// The cheap check at start: segments are contiguous, and the first and last frame of
    /// every segment are intact and where the leaf entries say. Costs a few reads per segment
    /// whatever the size of the log; damage inside a segment is the scrub's to find.
    fn start_check(&self) -> Result<Option<Damage>, StoreError> {
        let state = self.state.read();
        if state.size == 0 {
            return Ok(None);
        }
        let damage = |index: u64, detail: String| {
            Some(Damage {
                tenant: self.name.clone(),
                index: Some(index),
                detail,
                found_by: "the start-up check".into(),
            })
        };
        let segments = &state.segments;
        if segments[0].start != 0 {
            return Ok(damage(
                0,
                format!(
                    "the first segment starts at offset {}: the segments before it are missing",
                    segments[0].start
                ),
            ));
        }
        for (i, seg) in segments.iter().enumerate() {
            let path = self.dir.segment_path(seg.start);
            let len = file_len(&*seg.file, &path)?;
            let first = self.index_at_offset(segments, state.size, seg.start)?;
            if first >= state.size {
                break; // an empty last segment, or one holding only an unpublished tail
            }
            match read_frame_at(segments, &self.dir, seg.start)? {
                Some((header, _)) if header.index == first => {}
                _ => {
                    return Ok(damage(
                        first,
                        format!(
                            "the first record of segment {} is damaged or missing",
                            path.display()
                        ),
                    ))
                }
            }
            let Some(next) = segments.get(i + 1) else {
                break;
            };
            if seg.start + len != next.start {
                // The first record not wholly in the segment: the one straddling its end, or
                // the one that should start there.
                let end = seg.start + len.min(next.start - seg.start);
                let mut first_bad = self.index_at_offset(segments, state.size, end)?;
                if first_bad > 0 {
                    let before = self.leaf_entry(first_bad - 1)?;
                    let whole = read_frame_at(segments, &self.dir, before.offset)?
                        .is_some_and(|(h, _)| before.offset + h.frame_len() <= end);
                    if !whole {
                        first_bad -= 1;
                    }
                }
                return Ok(damage(
                    first_bad,
                    format!(
                        "segment {} holds {len} bytes but the next segment starts at offset {}: records are missing",
                        path.display(),
                        next.start
                    ),
                ));
            }
            let last = self
                .index_at_offset(segments, state.size, next.start)?
                .saturating_sub(1);
            let entry = self.leaf_entry(last)?;
            match read_frame_at(segments, &self.dir, entry.offset)? {
                Some((header, _))
                    if header.index == last && entry.offset + header.frame_len() == next.start => {}
                _ => {
                    return Ok(damage(
                        last,
                        format!(
                            "the last record of segment {} is damaged or missing",
                            path.display()
                        ),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// The first leaf index whose frame starts at or after `offset` (`size` if none).
    fn index_at_offset(
        &self,
        segments: &[Segment],
        size: u64,
        offset: u64,
    ) -> Result<u64, StoreError> {
        // Usually `offset` starts a frame, whose header names its index: two leaf entries
        // confirm it, instead of a binary search's log2(size) reads (a cold start of a large
        // log pays for every one of them).
        if let Some(index) = frame_index_at(segments, offset) {
            if index < size
                && self.leaf_entry(index)?.offset == offset
                && (index == 0 || self.leaf_entry(index - 1)?.offset < offset)
            {
                return Ok(index);
            }
        }
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.leaf_entry(mid)?.offset < offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Records damage found in this log (the first one found is kept) and says so loudly.
    pub(crate) fn report_damage(&self, damage: Damage) {
        let mut slot = self.damage.lock();
        if slot.is_none() {
            tracing::error!(
                tenant = %damage.tenant,
                index = ?damage.index,
                found_by = %damage.found_by,
                "LOG DAMAGED: {}; run `tally verify` and restore the damaged files from a backup",
                damage.detail
            );
            let labels = vec![("tenant".to_string(), self.name.clone())];
            self.metrics.damaged.get_or_create(&labels).set(1);
            self.metrics
                .damage_index
                .get_or_create(&labels)
                .set(damage.index.map_or(-1, |i| i as i64));
            *slot = Some(damage);
        }
    }

    /// Damage found in this log since start, if any.
    pub fn damage(&self) -> Option<Damage> {
        self.damage.lock().clone()
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The origin line of this tenant's checkpoints.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of durable leaves.
    pub fn size(&self) -> u64 {
        self.state.read().size
    }

    /// Bytes of published records in this log's segments (frames included; the leaves file,
    /// checkpoints and indexes not): what a stored-bytes quota counts.
    pub fn record_bytes(&self) -> u64 {
        self.record_bytes.load(Ordering::Acquire)
    }

    /// Called by the sequencer when records up to logical offset `end` are published.
    pub(crate) fn published_up_to(&self, end: u64) {
        self.record_bytes.fetch_max(end, Ordering::AcqRel);
    }

    /// The latest signed checkpoint, if one was issued.
    pub fn checkpoint(&self) -> Option<SignedCheckpoint> {
        self.state.read().checkpoint.clone()
    }

    /// The leaf index of the event with this id, for as long as the log exists: from the ids
    /// published since the on-disk index's watermark (memory), else from the index, whose
    /// answer is believed only if the leaf entry it names holds this id.
    pub fn lookup(&self, id: &Uuid) -> Result<Option<u64>, ReadError> {
        let key = id.as_u128();
        {
            let state = self.state.read();
            for (_, ids) in state.recent.iter().rev() {
                if let Some(&index) = ids.get(&key) {
                    return Ok(Some(index));
                }
            }
        }
        // An id not in memory is in the index already: the indexer drops a generation from
        // memory only after the index holds it (and the filter, when it is built, has it).
        let on_disk = self.indexed.load(Ordering::Acquire);
        if self.filter_covers.load(Ordering::Acquire) >= on_disk && !self.filter.may_contain(key) {
            return Ok(None);
        }
        let Some(index) = self.ids.get(key)? else {
            return Ok(None);
        };
        if index < self.size() && self.leaf_entry(index)?.id == key {
            return Ok(Some(index));
        }
        self.ids.invalidate();
        Err(StoreError::IdIndex(format!(
            "tenant {}: the index maps id {id} to leaf {index}, which holds another event; \
             the index is damaged and is rebuilt at the next start",
            self.name
        ))
        .into())
    }

    /// Moves the ids published since the index's watermark from memory into the on-disk index
    /// (the indexer thread, and once more at shutdown). Unless `due`, only when they number
    /// [`INDEX_LAG_BOUND`] or more.
    pub(crate) fn index_ids(&self, due: bool) -> Result<(), StoreError> {
        let _pass = self.index_pass.lock();
        let from = self.indexed.load(Ordering::Acquire);
        // After a start the filter covers nothing: fill it from `leaves`, a bounded chunk
        // per pass so that new ids keep moving to disk meanwhile.
        let covered = self.filter_covers.load(Ordering::Acquire);
        if covered < from {
            let count = FILTER_BUILD_CHUNK.min(from - covered);
            for_each_leaf_entry(
                &*self.leaves,
                &self.dir.leaves_path(),
                covered,
                count,
                |_, e| {
                    self.filter.insert(e.id);
                },
            )?;
            self.filter_covers.store(covered + count, Ordering::Release);
        }
        let size = self.size();
        if size == from || (!due && size - from < INDEX_LAG_BOUND) {
            return Ok(());
        }
        // A new generation from `to` on: everything published before it is in the older ones
        // and in `leaves`.
        let to = {
            let mut state = self.state.write();
            let to = state.size;
            state.recent.push_back((to, IdMap::default()));
            to
        };
        let mut entries = Vec::with_capacity((to - from) as usize);
        let mut last_hash = [0; 32];
        for_each_leaf_entry(
            &*self.leaves,
            &self.dir.leaves_path(),
            from,
            to - from,
            |i, e| {
                entries.push((e.id, i));
                last_hash = e.hash;
            },
        )?;
        // A big pass (a fast ingest) is a sorted table: cheapest per id, its fsync shared by many.
        // A small one is a journal batch: no fsync, which would cost a slow ingest's
        // acknowledgements more than the writing does (BENCHMARKS.md).
        if entries.len() >= crate::idindex::TABLE_PASS_IDS {
            self.ids.ingest(&mut entries, to, last_hash)?;
        } else {
            self.ids.append(&mut entries, to, last_hash)?;
        }
        // The filter first, then the watermark: a lookup that sees the new watermark finds
        // these ids in the filter (or uses the disk while the filter is still being built).
        if self.filter_covers.load(Ordering::Acquire) == from {
            for &(id, _) in &entries {
                self.filter.insert(id);
            }
            self.filter_covers.store(to, Ordering::Release);
        }
        self.indexed.store(to, Ordering::Release);
        let dropped: Vec<_> = {
            let mut state = self.state.write();
            let mut dropped = Vec::new();
            while state.recent.front().is_some_and(|g| g.0 < to) {
                dropped.extend(state.recent.pop_front());
            }
            dropped
        };
        drop(dropped); // freed outside the lock
        Ok(())
    }

    /// The index's watermark: the ids of leaves `[0, w)` are durably in the on-disk index.
    pub fn id_index_watermark(&self) -> u64 {
        self.indexed.load(Ordering::Acquire)
    }

    /// Whether the in-memory id filter covers the whole on-disk index (after a start it is
    /// filled in the background; until then lookups of unknown ids read the index).
    pub fn id_filter_ready(&self) -> bool {
        self.filter_covers.load(Ordering::Acquire) >= self.indexed.load(Ordering::Acquire)
    }

    /// Persists the tree's tile-boundary levels at `size` (the size of a signed checkpoint,
    /// whose root is `root`), so that the next start replays only the leaves after it.
    pub(crate) fn write_tree_state(&self, size: u64, root: Hash) -> Result<(), StoreError> {
        let upper = {
            let state = self.state.read();
            if size > state.size {
                return Ok(());
            }
            (0..8)
                .map_while(|k| {
                    let n = level_len(size, k) as usize;
                    (n > 0).then(|| state.upper[k][..n].to_vec())
                })
                .collect()
        };
        let bytes = TreeState { size, root, upper }.encode();
        let path = self.dir.tree_state_path();
        self.storage
            .replace(&path, &bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        self.tree_state_size.store(size, Ordering::Release);
        Ok(())
    }

    /// The size of the persisted tree state (0: none).
    pub(crate) fn tree_state_size(&self) -> u64 {
        self.tree_state_size.load(Ordering::Acquire)
    }

    /// The stored record bytes at `index`, exactly as hashed.
    pub fn record(&self, index: u64) -> Result<Vec<u8>, ReadError> {
        let segments = self.segments_for_read(index)?;
        let entry = self.leaf_entry(index)?;
        self.read_record(&segments, index, entry.offset)
    }

    /// The RFC 6962 leaf hash of the record at `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, ReadError> {
        let state = self.state.read();
        self.check_index(&state, index)?;
        Ok(self.leaf_entry(index)?.hash)
    }

    /// Records `[start, start + count)`, in order.
    pub fn records(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = start.checked_add(count - 1).ok_or_else(|| {
            ReadError::OutOfRange(format!("records [{start}, {start} + {count}) overflow"))
        })?;
        let segments = self.segments_for_read(last)?;
        let mut out = Vec::with_capacity(count as usize);
        let entries = self.leaf_entries(start, count)?;
        for (i, entry) in entries.iter().enumerate() {
            out.push(self.read_record(&segments, start + i as u64, entry.offset)?);
        }
        Ok(out)
    }

    /// Checks that `index` is published and returns the segment handles that hold it, so the
    /// disk reads happen after the state lock is released: publishing (and with it every
    /// acknowledgement) never waits for a reader's preads. Safe because published records
    /// and their leaf entries are durable and never rewritten.
    fn segments_for_read(&self, index: u64) -> Result<Vec<Segment>, ReadError> {
        let state = self.state.read();
        self.check_index(&state, index)?;
        Ok(state.segments.clone())
    }

    /// Root hash of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        let state = self.state.read();
        self.check_size(&state, size)?;
        if size == state.size {
            return Ok(state.frontier.root());
        }
        Ok(tally_tlog::root_hash(size, &self.nodes(&state))?)
    }

    /// Inclusion proof of leaf `index` in the tree of size `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let state = self.state.read();
        self.check_size(&state, size)?;
        if index >= size {
            return Err(ReadError::OutOfRange(format!(
                "index {index} is not in a tree of size {size}"
            )));
        }
        tally_tlog::inclusion_proof(index, size, &self.nodes(&state)).map_err(proof_error)
    }

    /// One proof that every leaf of `indexes` (strictly increasing) is in the tree of size
    /// `size`: see [`tally_tlog::multiproof`].
    pub fn multi_inclusion_proof(
        &self,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<tally_tlog::RangeHash>, ReadError> {
        let state = self.state.read();
        self.check_size(&state, size)?;
        tally_tlog::multi_inclusion_proof(indexes, size, &self.nodes(&state)).map_err(proof_error)
    }

    /// Consistency proof between tree sizes `size1 <= size2`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ReadError> {
        let state = self.state.read();
        self.check_size(&state, size2)?;
        if size1 == 0 || size1 > size2 {
            return Err(ReadError::OutOfRange(format!(
                "a consistency proof needs 0 < size1 <= size2 (got {size1} and {size2})"
            )));
        }
        tally_tlog::consistency_proof(size1, size2, &self.nodes(&state)).map_err(proof_error)
    }

    /// The bytes of tlog-tiles hash tile `level/index` of `width` hashes.
    pub fn hash_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>, ReadError> {
        let state = self.state.read();
        let tile = tally_tlog::tile::TilePath::hashes(level, index, width)
            .map_err(|e| ReadError::OutOfRange(e.to_string()))?;
        if !tile.is_within(state.size) {
            return Err(ReadError::OutOfRange(format!(
                "{} is beyond the tree of size {}",
                tile.to_path(),
                state.size
            )));
        }
        Ok(tally_tlog::tile::tile_hashes(
            level,
            index,
            width,
            &self.nodes(&state),
        )?)
    }

    /// The bytes of tlog-tiles entry bundle `index` of `width` entries.
    pub fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<u8>, ReadError> {
        let start = index
            .checked_mul(tally_tlog::tile::TILE_WIDTH)
            .ok_or_else(|| ReadError::OutOfRange("entry bundle index too large".into()))?;
        let records = self.records(start, u64::from(width))?;
        tally_tlog::tile::encode_entry_bundle(records.iter().map(Vec::as_slice))
            .map_err(|e| ReadError::OutOfRange(format!("entry bundle: {e}")))
    }

    fn check_index(&self, state: &TenantState, index: u64) -> Result<(), ReadError> {
        if index >= state.size {
            return Err(ReadError::OutOfRange(format!(
                "index {index} is beyond the log of tenant {} (size {})",
                self.name, state.size
            )));
        }
        Ok(())
    }

    fn check_size(&self, state: &TenantState, size: u64) -> Result<(), ReadError> {
        if size > state.size {
            return Err(ReadError::OutOfRange(format!(
                "tree size {size} is beyond the log of tenant {} (size {})",
                self.name, state.size
            )));
        }
        Ok(())
    }

    fn leaf_entry(&self, index: u64) -> Result<LeafEntry, StoreError> {
        read_leaf_entry(&*self.leaves, &self.dir.leaves_path(), index)
    }

    fn leaf_entries(&self, start: u64, count: u64) -> Result<Vec<LeafEntry>, StoreError> {
        read_leaf_entries(&*self.leaves, &self.dir.leaves_path(), start, count)
    }

    fn read_record(
        &self,
        segments: &[Segment],
        index: u64,
        offset: u64,
    ) -> Result<Vec<u8>, ReadError> {
        match read_frame_at(segments, &self.dir, offset)? {
            Some((header, stored)) if header.index == index => {
                open_stored(self.at_rest.as_deref(), &self.name, index, stored).inspect_err(|e| {
                    if let ReadError::Store(StoreError::Corrupt { detail, .. }) = e {
                        self.report_damage(Damage {
                            tenant: self.name.clone(),
                            index: Some(index),
                            detail: detail.clone(),
                            found_by: "a read".into(),
                        });
                    }
                })
            }
            _ => {
                let detail = format!("the record frame at offset {offset} is damaged or misplaced");
                self.report_damage(Damage {
                    tenant: self.name.clone(),
                    index: Some(index),
                    detail: detail.clone(),
                    found_by: "a read".into(),
                });
                Err(StoreError::Corrupt {
                    tenant: self.name.clone(),
                    index,
                    detail,
                }
                .into())
            }
        }
    }

    fn nodes<'a>(&'a self, state: &'a TenantState) -> Nodes<'a> {
        Nodes {
            leaves: &*self.leaves,
            dir: &self.dir,
            name: &self.name,
            upper: &state.upper,
            size: state.size,
        }
    }

    /// The record `stored` (leaf `index`) holds, decrypted if it is encrypted at rest.
    pub(crate) fn open_stored(&self, index: u64, stored: Vec<u8>) -> Result<Vec<u8>, ReadError> {
        open_stored(self.at_rest.as_deref(), &self.name, index, stored)
    }

    /// The record of a frame written but perhaps not yet published (retry checks).
    pub(crate) fn written_record(&self, index: u64, offset: u64) -> Result<Vec<u8>, ReadError> {
        let segments = self.state.read().segments.clone();
        self.read_record(&segments, index, offset)
    }

    /// The handle the syncing thread uses to make leaf entries durable before a checkpoint.
    pub(crate) fn leaves_handle(&self) -> &dyn StoredFile {
        &*self.leaves
    }

    /// Read access to the state, for the sequencer's checkpointing.
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, TenantState> {
        self.state.read()
    }
}

/// Adds a leaf to the frontier, keeping the tile-boundary levels the proofs read.
pub(crate) fn push_leaf(frontier: &mut Frontier, upper: &mut Vec<Vec<Hash>>, hash: Hash) {
    frontier.push(hash, |level, index, node| {
        if level > 0 && level % tally_tlog::tile::TILE_HEIGHT == 0 {
            let k = usize::from(level / tally_tlog::tile::TILE_HEIGHT) - 1;
            if upper.len() <= k {
                upper.resize_with(k + 1, Vec::new);
            }
            debug_assert_eq!(upper[k].len() as u64, index);
            upper[k].push(*node);
        }
    });
}

fn proof_error(e: tally_tlog::ProofError<StoreError>) -> ReadError {
    match e {
        tally_tlog::ProofError::Source(e) => ReadError::Store(e),
        other => ReadError::OutOfRange(other.to_string()),
    }
}

/// Complete-subtree hashes for proofs and tiles: leaves from the `leaves` file, tile-boundary
/// levels from memory, and anything in between hashed up from at most 128 of those.
pub(crate) struct Nodes<'a> {
    pub(crate) leaves: &'a dyn StoredFile,
    pub(crate) dir: &'a TenantDir,
    pub(crate) name: &'a str,
    pub(crate) upper: &'a [Vec<Hash>],
    pub(crate) size: u64,
}

impl NodeSource for Nodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let height = tally_tlog::tile::TILE_HEIGHT;
        let base = level - level % height;
        let rise = u32::from(level - base);
        let count = 1u64 << rise;
        let first = index << rise;
        let end_leaf = (index + 1)
            .checked_shl(u32::from(level))
            .unwrap_or(u64::MAX);
        let missing = || StoreError::Corrupt {
            tenant: self.name.to_string(),
            index: first,
            detail: format!(
                "node {level}/{index} is not a complete subtree of the tree of size {}",
                self.size
            ),
        };
        if end_leaf > self.size {
            return Err(missing());
        }
        let mut hashes: Vec<Hash> = if base == 0 {
            read_leaf_entries(self.leaves, &self.dir.leaves_path(), first, count)?
                .into_iter()
                .map(|e| e.hash)
                .collect()
        } else {
            let k = usize::from(base / height) - 1;
            let level_hashes = self.upper.get(k).ok_or_else(missing)?;
            level_hashes
                .get(first as usize..(first + count) as usize)
                .ok_or_else(missing)?
                .to_vec()
        };
        while hashes.len() > 1 {
            hashes = hashes
                .chunks_exact(2)
                .map(|pair| tally_tlog::node_hash(&pair[0], &pair[1]))
                .collect();
        }
        Ok(hashes[0])
    }
}

pub(crate) fn file_len(file: &dyn StoredFile, path: &std::path::Path) -> Result<u64, StoreError> {
    file.len().map_err(|e| StoreError::io(path, e))
}

pub(crate) fn read_file_from(
    file: &dyn StoredFile,
    path: &std::path::Path,
    from: u64,
) -> Result<Vec<u8>, StoreError> {
    let len = file_len(file, path)?;
    if from >= len {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut buf, from)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(buf)
}

/// Calls `f(index, entry)` for leaf entries `[start, start + count)`, reading 64 Ki entries
/// (3.5 MiB) at a time: a pass over millions of entries costs no more memory than that.
pub(crate) fn for_each_leaf_entry(
    file: &dyn StoredFile,
    path: &std::path::Path,
    start: u64,
    count: u64,
    mut f: impl FnMut(u64, LeafEntry),
) -> Result<(), StoreError> {
    const PIECE: u64 = 1 << 16;
    let mut buf = vec![0u8; PIECE.min(count) as usize * LEAF_ENTRY];
    let mut i = start;
    while i < start + count {
        let n = PIECE.min(start + count - i);
        let bytes = &mut buf[..n as usize * LEAF_ENTRY];
        file.read_exact_at(bytes, i * LEAF_ENTRY as u64)
            .map_err(|e| StoreError::io(path, e))?;
        for chunk in bytes.chunks_exact(LEAF_ENTRY) {
            f(i, LeafEntry::decode(chunk));
            i += 1;
        }
    }
    Ok(())
}

fn read_leaf_entries(
    file: &dyn StoredFile,
    path: &std::path::Path,
    start: u64,
    count: u64,
) -> Result<Vec<LeafEntry>, StoreError> {
    let mut buf = vec![0u8; count as usize * LEAF_ENTRY];
    file.read_exact_at(&mut buf, start * LEAF_ENTRY as u64)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(buf
        .chunks_exact(LEAF_ENTRY)
        .map(LeafEntry::decode)
        .collect())
}

pub(crate) fn read_leaf_entry(
    file: &dyn StoredFile,
    path: &std::path::Path,
    index: u64,
) -> Result<LeafEntry, StoreError> {
    let mut buf = [0u8; LEAF_ENTRY];
    file.read_exact_at(&mut buf, index * LEAF_ENTRY as u64)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(LeafEntry::decode(&buf))
}

/// The index in the header of the frame at logical `offset`, if one can be read there
/// (unchecked: a hint).
fn frame_index_at(segments: &[Segment], offset: u64) -> Option<u64> {
    let i = segments.partition_point(|s| s.start <= offset);
    let seg = segments.get(i.checked_sub(1)?)?;
    let mut head = [0u8; FRAME_HEADER];
    seg.file.read_exact_at(&mut head, offset - seg.start).ok()?;
    Some(FrameHeader::parse(&head).index)
}

/// Reads the frame at a logical offset; `Ok(None)` when it is missing, short or damaged.
pub(crate) fn read_frame_at(
    segments: &[Segment],
    dir: &TenantDir,
    offset: u64,
) -> Result<Option<(FrameHeader, Vec<u8>)>, StoreError> {
    let i = segments.partition_point(|s| s.start <= offset);
    if i == 0 {
        return Ok(None);
    }
    let seg = &segments[i - 1];
    let at = offset - seg.start;
    let mut head = [0u8; FRAME_HEADER];
    match seg.file.read_exact_at(&mut head, at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StoreError::io(&dir.segment_path(seg.start), e)),
    }
    let header = FrameHeader::parse(&head);
    if header.len as usize > crate::frame::MAX_STORED_RECORD_BYTES {
        return Ok(None);
    }
    let mut record = vec![0u8; header.len as usize];
    match seg
        .file
        .read_exact_at(&mut record, at + FRAME_HEADER as u64)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StoreError::io(&dir.segment_path(seg.start), e)),
    }
    Ok(header.matches(&record).then_some((header, record)))
}

/// The record a stored record holds: decrypted by `at_rest` if it is encrypted. An encrypted
/// record that does not decrypt is damage; one that cannot be opened for want of a key is not.
pub(crate) fn open_stored(
    at_rest: Option<&AtRest>,
    tenant: &str,
    index: u64,
    stored: Vec<u8>,
) -> Result<Vec<u8>, ReadError> {
    if !crate::at_rest::is_encrypted(&stored) {
        return Ok(stored);
    }
    let Some(at_rest) = at_rest else {
        return Err(StoreError::AtRest(format!(
            "tenant {tenant}'s records are encrypted at rest; give the key-encryption key              (--kek-file, --kek-env or --kek-command) to read them"
        ))
        .into());
    };
    Ok(at_rest.decrypt_record(tenant, index, stored)?)
}

/// Why a checkpoint note was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note carries no valid signature by the log's key.
    #[error("checkpoint signature: {0}")]
    Signature(String),
    /// The signed text is not a C2SP checkpoint.
    #[error("checkpoint body: {0}")]
    Body(String),
}

/// Parses a stored checkpoint note after checking its signature.
pub fn open_checkpoint(
    note: &str,
    verifier: &NoteVerifier,
) -> Result<SignedCheckpoint, CheckpointError> {
    let verified = tally_tlog::note::open(note, std::slice::from_ref(verifier))
        .map_err(|e| CheckpointError::Signature(e.to_string()))?;
    let cp = Checkpoint::parse(&verified.text).map_err(|e| CheckpointError::Body(e.to_string()))?;
    Ok(SignedCheckpoint {
        size: cp.size,
        root: cp.root,
        note: note.to_string(),
    })
}
