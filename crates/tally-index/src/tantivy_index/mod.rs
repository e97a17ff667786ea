//! [`EventIndex`] on tantivy: one tantivy index per tenant under `<dir>/<tenant>/`.
//!
//! # Documents
//!
//! One document per record (`schema`), nothing stored (results are leaf indexes; records come
//! from the log):
//!
//! | field | type | options | used for |
//! | --- | --- | --- | --- |
//! | `index` | u64 | fast; the index is sorted by it | cursor/`upto` ranges, order |
//! | `time` | i64 (Unix ms) | fast | `after:`/`before:`, interval buckets, zone maps |
//! | `text` | text, `default` tokenizer | positions | free text and phrases |
//! | `actor_ip` | IPv6 (IPv4 mapped) | indexed, fast | addresses and CIDR blocks |
//! | one per other [`tally_query::Field`] | raw string | indexed; fast but `id`, `request_id`, `trace_id` | exact, prefix, group by |
//!
//! `index` and `time` are not in the inverted index: their ranges are read from the columns
//! (and narrowed by binary search and zone maps, see `search`). Identifier fields are left out
//! of `text` and of the fast columns where they would hold one unique value per event (see
//! [`EventIndex`] for how free text still finds them). No field keeps norms (nothing is
//! scored). The term dictionary is tantivy's SSTable (feature `quickwit`), which builds about
//! twice as fast as the FST for dictionaries full of unique tokens.
//!
//! # Queries
//!
//! `query` turns the AST into tantivy queries, but the top-level time bounds, which `search`
//! and `stats` apply from the zone maps and the time column. Prefixes and CIDR blocks use
//! `range::AdaptiveRange` (inverted index when the range is selective, fast column otherwise).
//! Negated terms are wrapped so that tantivy's exclusion probes never seek backwards.
//!
//! # Durability
//!
//! Each commit carries a payload `{"version":1,"next":N}` in tantivy's `meta.json`, written
//! atomically with the commit: `indexed` is what the last commit recorded. On open a tenant
//! index is checked (schema, sort order, payload, document count = `next`, highest index =
//! `next - 1`, every segment's index and time columns readable); anything off is
//! [`IndexError::Corrupt`], and so is a panic inside tantivy while opening or searching
//! (tantivy does not promise panic-free reads of damaged files).

pub mod encrypted;
mod query;
mod range;
mod schema;
mod search;
mod stats;

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tally_query::Query;
use tantivy::index::SegmentId;
use tantivy::indexer::{IndexWriterOptions, UserOperation};
use tantivy::query::EnableScoring;
use tantivy::{
    Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, ReloadPolicy, TantivyError,
};

use crate::{
    EventIndex, IndexError, IndexedEvent, SearchOptions, SearchPage, StatsRequest, StatsResult,
    MAX_PAGE,
};
use schema::{Fields, INDEX, SCHEMA_VERSION, TEXT_TOKENIZER};
use search::SegmentInfos;

/// Marker file at the top of the index directory.
const FORMAT_FILE: &str = "FORMAT";
/// The lock file whose exclusive `flock` marks the index as open in a process.
const OWNER_LOCK: &str = "owner.lock";
const FORMAT: &str = "tally-index tantivy 1\n";
/// The marker of an index whose files are encrypted at rest: a change either way makes the
/// index unreadable as it is, so it is rebuilt from the log.
const FORMAT_ENCRYPTED: &str = "tally-index tantivy 1 encrypted\n";

/// Tuning of [`TantivyIndex`].
#[derive(Debug, Clone)]
pub struct TantivyOptions {
    /// Indexing memory of one tenant's writer, split between its threads; a segment is
    /// flushed when it is full. At least 15 MB per thread.
    pub writer_memory_bytes: usize,
    /// Indexing threads per tenant writer.
    pub writer_threads: usize,
    /// Background merge threads per tenant writer.
    pub merge_threads: usize,
    /// Encrypts every file of the index at rest under the tenants' data keys (none: files
    /// are plain).
    pub cipher: Option<Arc<dyn encrypted::IndexCipher>>,
}

impl Default for TantivyOptions {
    fn default() -> Self {
        TantivyOptions {
            writer_memory_bytes: 128 << 20,
            writer_threads: 1,
            merge_threads: 1,
            cipher: None,
        }
    }
}

/// The tantivy engine: one tantivy index per tenant under `<dir>/<tenant>/`, documents sorted
/// by leaf index, `indexed` recorded in each commit's payload. Tenant indexes are opened on
/// first use and checked then; a damaged one is reported as [`IndexError::Corrupt`] by that
/// tenant's calls (clear it and rebuild it from the log). Document layout and query strategy
/// are described in the source (`src/tantivy_index/mod.rs`).
pub struct TantivyIndex {
    dir: PathBuf,
    options: TantivyOptions,
    fields: Fields,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Serialises opening, creating and clearing tenant indexes.
    lifecycle: Mutex<()>,
    /// Held (an exclusive `flock`) while this index is open, so that no second process
    /// writes the same directory: tantivy's own writer lock is per tenant and taken lazily.
    _owner: std::fs::File,
}

struct Tenant {
    index: Index,
    reader: IndexReader,
    /// Committed leaf count.
    committed: AtomicU64,
    writer: Mutex<WriterState>,
    segments: SegmentInfos,
}

impl Tenant {
    /// Computes the segment infos (sortedness, zone map) of new segments here, on the
    /// writing thread, rather than in the first search, and forgets merged-away ones.
    fn prepare_segments(&self) -> Result<(), IndexError> {
        let searcher = self.reader.searcher();
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        self.segments.lock().retain(|id, _| live.contains(id));
        for reader in searcher.segment_readers() {
            search::segment_info(&self.segments, reader).map_err(engine)?;
        }
        Ok(())
    }
}

struct WriterState {
    writer: Option<IndexWriter>,
    /// Next index to add (committed + added since).
    next: u64,
    pending: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    version: u32,
    next: u64,
}

/// `mkdir -p`, each new directory the owner's only (0700): the index holds the records' text.
/// (tantivy's own files take the process umask, which `tally` sets to 077.)
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl TantivyIndex {
    /// Opens (creating if needed) the index directory `dir`. Tenant indexes are opened on first
    /// use; a damaged one is reported then, as [`IndexError::Corrupt`], by that tenant's calls.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        Self::open_with(dir, TantivyOptions::default())
    }

    /// [`open`](Self::open) with explicit tuning.
    pub fn open_with(dir: &Path, options: TantivyOptions) -> Result<Self, IndexError> {
        create_private_dir_all(dir)?;
        let owner = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(OWNER_LOCK))?;
        match owner.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(IndexError::Busy(dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let format = dir.join(FORMAT_FILE);
        let expected = if options.cipher.is_some() {
            FORMAT_ENCRYPTED
        } else {
            FORMAT
        };
        match std::fs::read(&format) {
            Ok(bytes) if bytes == expected.as_bytes() => {}
            Ok(_) => {
                return Err(IndexError::Corrupt(format!(
                    "{} is not {expected:?}",
                    format.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entries = std::fs::read_dir(dir)?;
                if entries.any(|e| e.is_ok_and(|e| e.file_name() != OWNER_LOCK)) {
                    return Err(IndexError::Corrupt(format!(
                        "{} is not empty and has no {FORMAT_FILE} file",
                        dir.display()
                    )));
                }
                write_durably(&format, expected.as_bytes())?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(TantivyIndex {
            dir: dir.to_owned(),
            options,
            fields: Fields::new(),
            tenants: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
            _owner: owner,
        })
    }

    /// Bytes of every file under the index directory (including files of merges cut short
    /// by a shutdown, until the next commit collects them).
    pub fn size_on_disk(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }

    /// Lets the background merges started by past commits finish, and makes their result
    /// visible to searches. Returns the number of segments each open tenant index has then.
    ///
    /// Segments written by a bulk load (a rebuild) are merged in the background for a while
    /// after its commit; a benchmark waits here to measure the index as it settles rather than
    /// half merged. Call it with nothing added since the last commit (anything added but not
    /// committed is dropped, as after a failed commit).
    pub fn wait_for_merges(&self) -> Result<Vec<(String, usize)>, IndexError> {
        let tenants: Vec<(String, Arc<Tenant>)> = self
            .tenants
            .read()
            .iter()
            .map(|(name, t)| (name.clone(), t.clone()))
            .collect();
        let mut segments = Vec::with_capacity(tenants.len());
        for (name, t) in tenants {
            {
                let mut state = t.writer.lock();
                if let Some(writer) = state.writer.take() {
                    writer.wait_merging_threads().map_err(engine)?;
                }
                state.next = t.committed.load(Ordering::Acquire);
                state.pending = false;
            }
            t.reader.reload().map_err(engine)?;
            t.prepare_segments()?;
            segments.push((name, t.reader.searcher().segment_readers().len()));
        }
        Ok(segments)
    }

    fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, IndexError> {
        if !tally_event::is_valid_tenant(tenant) {
            return Err(IndexError::Engine(format!(
                "invalid tenant name {tenant:?}"
            )));
        }
        Ok(self.dir.join(tenant))
    }

    /// The tenant's open index; `None` when it has none and `create` is false.
    fn tenant(&self, tenant: &str, create: bool) -> Result<Option<Arc<Tenant>>, IndexError> {
        let path = self.tenant_dir(tenant)?;
        if let Some(t) = self.tenants.read().get(tenant) {
            return Ok(Some(t.clone()));
        }
        let _guard = self.lifecycle.lock();
        if let Some(t) = self.tenants.read().get(tenant) {
            return Ok(Some(t.clone()));
        }
        let t = if path.join("meta.json").exists() {
            guard_panics("opening", || self.open_tenant(&path))?
        } else if create {
            // A directory without meta.json is an interrupted creation: start over.
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            create_private_dir_all(&path)?;
            self.create_tenant(&path)?
        } else {
            return Ok(None);
        };
        let t = Arc::new(t);
        self.tenants.write().insert(tenant.to_owned(), t.clone());
        Ok(Some(t))
    }

    /// The encrypted directory of a tenant's index at `path` (`None`: not encrypted).
    fn directory(&self, path: &Path) -> Result<Option<encrypted::EncryptedDirectory>, IndexError> {
        let Some(cipher) = &self.options.cipher else {
            return Ok(None);
        };
        let tenant = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| IndexError::Engine(format!("{} names no tenant", path.display())))?;
        let inner = tantivy::directory::MmapDirectory::open(path)
            .map_err(|e| IndexError::Engine(format!("{}: {e}", path.display())))?;
        Ok(Some(encrypted::EncryptedDirectory::new(
            Box::new(inner),
            cipher.clone(),
            tenant,
        )))
    }

    fn create_tenant(&self, path: &Path) -> Result<Tenant, IndexError> {
        let settings = IndexSettings {
            sort_by_field: Some(IndexSortByField {
                field: INDEX.to_owned(),
                order: tantivy::Order::Asc,
            }),
            ..IndexSettings::default()
        };
        let builder = Index::builder()
            .schema(self.fields.schema.clone())
            .settings(settings);
        let index = match self.directory(path)? {
            // The directory was just made empty: this creates.
            Some(dir) => builder.open_or_create(dir),
            None => builder.create_in_dir(path),
        }
        .map_err(engine)?;
        self.tenant_from(index, 0)
    }

    fn open_tenant(&self, path: &Path) -> Result<Tenant, IndexError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            IndexError::Corrupt(format!("{} ({what}): {e}", path.display()))
        };
        let index = match self.directory(path)? {
            Some(dir) => Index::open(dir),
            None => Index::open_in_dir(path),
        }
        .map_err(|e| corrupt("opening", &e))?;
        if index.schema() != self.fields.schema {
            return Err(corrupt("schema", &"written with another schema"));
        }
        let sorted = index
            .settings()
            .sort_by_field
            .as_ref()
            .is_some_and(|s| s.field == INDEX && s.order.is_asc());
        if !sorted {
            return Err(corrupt("settings", &"not sorted by leaf index"));
        }
        let metas = index.load_metas().map_err(|e| corrupt("meta.json", &e))?;
        let next = match &metas.payload {
            Some(p) => {
                let p: Payload =
                    serde_json::from_str(p).map_err(|e| corrupt("commit payload", &e))?;
                if p.version != SCHEMA_VERSION {
                    return Err(corrupt("version", &format!("version {}", p.version)));
                }
                p.next
            }
            None if metas.segments.is_empty() => 0,
            None => return Err(corrupt("commit payload", &"missing")),
        };
        let tenant = self
            .tenant_from(index, next)
            .map_err(|e| corrupt("reader", &e))?;
        let searcher = tenant.reader.searcher();
        if searcher.num_docs() != next {
            return Err(corrupt(
                "document count",
                &format!("{} documents, commit recorded {next}", searcher.num_docs()),
            ));
        }
        let mut max = None;
        for reader in searcher.segment_readers() {
            let column = reader
                .fast_fields()
                .u64(INDEX)
                .map_err(|e| corrupt("index column", &e))?;
            if reader.num_docs() > 0 {
                max = max.max(Some(column.max_value()));
            }
        }
        if max.map_or(0, |m| m + 1) != next {
            return Err(corrupt(
                "leaf indexes",
                &format!("highest is {max:?}, commit recorded {next} events"),
            ));
        }
        tenant.prepare_segments()?;
        Ok(tenant)
    }

    fn tenant_from(&self, index: Index, next: u64) -> Result<Tenant, IndexError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(engine)?;
        Ok(Tenant {
            index,
            reader,
            committed: AtomicU64::new(next),
            writer: Mutex::new(WriterState {
                writer: None,
                next,
                pending: false,
            }),
            segments: Mutex::new(HashMap::new()),
        })
    }

    fn writer_options(&self) -> IndexWriterOptions {
        let threads = self.options.writer_threads.max(1);
        IndexWriterOptions::builder()
            .num_worker_threads(threads)
            .memory_budget_per_thread(self.options.writer_memory_bytes / threads)
            .num_merge_threads(self.options.merge_threads.max(1))
            .build()
    }

    fn commit_tenant(&self, t: &Tenant) -> Result<(), IndexError> {
        let mut state = t.writer.lock();
        Self::commit_locked(t, &mut state)
    }

    fn commit_locked(t: &Tenant, state: &mut WriterState) -> Result<(), IndexError> {
        if !state.pending {
            return Ok(());
        }
        let next = state.next;
        let writer = state
            .writer
            .as_mut()
            .expect("a pending tenant has a writer");
        let payload = serde_json::to_string(&Payload {
            version: SCHEMA_VERSION,
            next,
        })
        .expect("payload serialises");
        let result = writer.prepare_commit().and_then(|mut prepared| {
            prepared.set_payload(&payload);
            prepared.commit()
        });
        match result {
            Ok(_) => {
                state.pending = false;
                t.committed.store(next, Ordering::Release);
                t.reader.reload().map_err(engine)?;
                t.prepare_segments()?;
                Ok(())
            }
            Err(e) => {
                // Drop what was added since the last commit; the caller resumes at `indexed`.
                if let Some(mut w) = state.writer.take() {
                    let _ = w.rollback();
                }
                state.next = t.committed.load(Ordering::Acquire);
                state.pending = false;
                Err(engine(e))
            }
        }
    }
}

impl EventIndex for TantivyIndex {
    fn indexed(&self, tenant: &str) -> Result<u64, IndexError> {
        Ok(match self.tenant(tenant, false)? {
            Some(t) => t.committed.load(Ordering::Acquire),
            None => 0,
        })
    }

    fn add(&self, tenant: &str, events: &[IndexedEvent<'_>]) -> Result<(), IndexError> {
        let t = self.tenant(tenant, true)?.expect("created");
        let mut state = t.writer.lock();
        for (i, e) in events.iter().enumerate() {
            let expected = state.next + i as u64;
            if e.index != expected {
                return Err(IndexError::OutOfOrder {
                    tenant: tenant.to_owned(),
                    expected,
                    got: e.index,
                });
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut docs = Vec::with_capacity(events.len());
        for e in events {
            let bad = |detail: String| IndexError::BadRecord {
                index: e.index,
                detail,
            };
            let (doc, record_tenant) = self
                .fields
                .document(e.index, e.record, e.personal)
                .map_err(bad)?;
            if record_tenant != tenant {
                return Err(bad(format!("record of tenant {record_tenant:?}")));
            }
            docs.push(doc);
        }
        if state.writer.is_none() {
            state.writer = Some(
                t.index
                    .writer_with_options(self.writer_options())
                    .map_err(engine)?,
            );
        }
        let writer = state.writer.as_ref().expect("just set");
        // Batches go to the indexing threads whole (one channel send, not one per document).
        let mut docs = docs.into_iter().peekable();
        while docs.peek().is_some() {
            let batch: Vec<UserOperation> =
                docs.by_ref().take(1024).map(UserOperation::Add).collect();
            if let Err(e) = writer.run(batch) {
                // Part of the batch may be in; drop everything since the last commit, as a
                // failed commit does: the caller resumes at `indexed`.
                if let Some(mut w) = state.writer.take() {
                    let _ = w.rollback();
                }
                state.next = t.committed.load(Ordering::Acquire);
                state.pending = false;
                return Err(engine(e));
            }
        }
        state.next += events.len() as u64;
        state.pending = true;
        Ok(())
    }

    fn commit(&self) -> Result<(), IndexError> {
        let tenants: Vec<Arc<Tenant>> = self.tenants.read().values().cloned().collect();
        let mut first_error = None;
        for t in tenants {
            if let Err(e) = self.commit_tenant(&t) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn search(
        &self,
        tenant: &str,
        query: &Query,
        opts: &SearchOptions,
    ) -> Result<SearchPage, IndexError> {
        let empty = SearchPage {
            indexes: Vec::new(),
            next_cursor: None,
        };
        let Some(t) = self.tenant(tenant, false)? else {
            return Ok(empty);
        };
        let limit = opts.limit.min(MAX_PAGE);
        let mut lo = 0u64;
        let mut hi = opts.upto.unwrap_or(u64::MAX);
        match (opts.order, opts.cursor) {
            (_, None) => {}
            (crate::Order::NewestFirst, Some(c)) => hi = hi.min(c),
            (crate::Order::OldestFirst, Some(c)) => lo = c.saturating_add(1),
        }
        if limit == 0 || lo >= hi {
            return Ok(empty);
        }
        let searcher = t.reader.searcher();
        let mut analyzer = t
            .index
            .tokenizers()
            .get(TEXT_TOKENIZER)
            .ok_or_else(|| IndexError::Engine("text tokenizer missing".into()))?;
        let q = query::build(&self.fields, &mut analyzer, query, opts.now_ms);
        let mut indexes = guard_panics("searching", || {
            let weight = q
                .weight(EnableScoring::disabled_from_searcher(&searcher))
                .map_err(engine)?;
            search::page(
                &searcher,
                weight.as_ref(),
                lo,
                hi,
                query::time_window(query, opts.now_ms),
                opts.order,
                limit + 1,
                &t.segments,
            )
            .map_err(engine)
        })?;
        let next_cursor = if indexes.len() > limit {
            indexes.truncate(limit);
            indexes.last().copied()
        } else {
            None
        };
        Ok(SearchPage {
            indexes,
            next_cursor,
        })
    }

    fn stats(
        &self,
        tenant: &str,
        query: &Query,
        req: &StatsRequest,
    ) -> Result<StatsResult, IndexError> {
        if req.interval_ms.is_some_and(|i| i <= 0) {
            return Err(IndexError::Engine("interval_ms must be positive".into()));
        }
        let Some(t) = self.tenant(tenant, false)? else {
            return Ok(StatsResult {
                total: 0,
                buckets: Vec::new(),
            });
        };
        let searcher = t.reader.searcher();
        let mut analyzer = t
            .index
            .tokenizers()
            .get(TEXT_TOKENIZER)
            .ok_or_else(|| IndexError::Engine("text tokenizer missing".into()))?;
        let q = query::build(&self.fields, &mut analyzer, query, req.now_ms);
        guard_panics("counting", || {
            let weight = q
                .weight(EnableScoring::disabled_from_searcher(&searcher))
                .map_err(engine)?;
            let time = query::time_window(query, req.now_ms);
            stats::stats(&searcher, weight.as_ref(), time, req, &t.segments).map_err(engine)
        })
    }

    fn erase_key(
        &self,
        tenant: &str,
        key: &str,
        reopen: &mut dyn FnMut(u64) -> Result<(Vec<u8>, Vec<crate::PersonalValue>), String>,
    ) -> Result<Vec<u64>, IndexError> {
        use tantivy::collector::DocSetCollector;
        use tantivy::query::TermQuery;
        use tantivy::schema::IndexRecordOption;
        use tantivy::Term;

        let Some(t) = self.tenant(tenant, false)? else {
            return Ok(Vec::new());
        };
        let term = Term::from_field_text(self.fields.personal, &schema::key_term(key));
        let mut state = t.writer.lock();
        // What the consumer added is committed first, so that the search below sees every
        // record under the key and the delete below removes nothing it does not put back.
        Self::commit_locked(&t, &mut state)?;
        let searcher = t.reader.searcher();
        let docs = searcher
            .search(
                &TermQuery::new(term.clone(), IndexRecordOption::Basic),
                &DocSetCollector,
            )
            .map_err(engine)?;
        let mut leaves = Vec::with_capacity(docs.len());
        for doc in docs {
            let column = searcher
                .segment_reader(doc.segment_ord)
                .fast_fields()
                .u64(INDEX)
                .map_err(engine)?;
            if let Some(i) = column.first(doc.doc_id) {
                leaves.push(i);
            }
        }
        leaves.sort_unstable();
        let mut ops = vec![UserOperation::Delete(term)];
        for &i in &leaves {
            let (record, personal) =
                reopen(i).map_err(|detail| IndexError::BadRecord { index: i, detail })?;
            let (doc, _) = self
                .fields
                .document(i, &record, &personal)
                .map_err(|detail| IndexError::BadRecord { index: i, detail })?;
            ops.push(UserOperation::Add(doc));
        }
        if state.writer.is_none() {
            state.writer = Some(
                t.index
                    .writer_with_options(self.writer_options())
                    .map_err(engine)?,
            );
        }
        let writer = state.writer.as_mut().expect("just set");
        if let Err(e) = writer.run(ops) {
            if let Some(mut w) = state.writer.take() {
                let _ = w.rollback();
            }
            return Err(engine(e));
        }
        // Nothing is added (the count stays), but the commit must happen.
        state.pending = true;
        Self::commit_locked(&t, &mut state)?;
        // The deleted documents' terms stay in their segments' files until those are merged
        // away: merge every segment into one and delete the files no longer used.
        let writer = state.writer.as_mut().expect("a writer after a commit");
        let segments: Vec<SegmentId> = t.index.searchable_segment_ids().map_err(engine)?;
        if !segments.is_empty() {
            writer.merge(&segments).wait().map_err(engine)?;
        }
        writer.garbage_collect_files().wait().map_err(engine)?;
        t.reader.reload().map_err(engine)?;
        t.prepare_segments()?;
        Ok(leaves)
    }

    fn clear(&self, tenant: &str) -> Result<(), IndexError> {
        let path = self.tenant_dir(tenant)?;
        let _guard = self.lifecycle.lock();
        let removed = self.tenants.write().remove(tenant);
        if let Some(t) = removed {
            let writer = t.writer.lock().writer.take();
            if let Some(w) = writer {
                // Stops the merge threads before their files disappear.
                if let Err(e) = w.wait_merging_threads() {
                    tracing::warn!(tenant, "stopping the index writer: {e}");
                }
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Maps a tantivy error to the recovery it needs.
fn engine(e: TantivyError) -> IndexError {
    match e {
        TantivyError::IoError(io) => IndexError::Io(std::io::Error::new(io.kind(), io.to_string())),
        TantivyError::DataCorruption(_)
        | TantivyError::OpenReadError(_)
        | TantivyError::IncompatibleIndex(_) => IndexError::Corrupt(e.to_string()),
        other => IndexError::Engine(other.to_string()),
    }
}

/// Runs `f`, turning a panic (tantivy reading damaged files) into [`IndexError::Corrupt`].
fn guard_panics<T>(what: &str, f: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(IndexError::Corrupt(format!(
                "{what} the index panicked: {msg}"
            )))
        }
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
