//! The engine-neutral interface: what the index consumer feeds and what the HTTP API asks.
//!
//! Everything here is independent of tantivy so that another engine (SQLite FTS5, a columnar
//! store, …) can be put behind [`EventIndex`] and compared on the same tests and benchmark.

use tally_query::{Field, Query};

/// One record of a tenant's log with its leaf index, as handed to [`EventIndex::add`].
#[derive(Debug, Clone, Copy)]
pub struct IndexedEvent<'a> {
    /// The record's leaf index in its tenant's tree.
    pub index: u64,
    /// The record with its personal values in the clear (a sealed record opened by the
    /// privacy layer, or a schema-1 record as stored).
    pub record: &'a [u8],
    /// The record's sealed personal values: what a masked reader searches by, and what
    /// erasure finds the records of a subject by.
    pub personal: &'a [PersonalValue],
}

/// One sealed personal value of an [`IndexedEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalValue {
    /// Its dotted path in the record (`actor.id`, `after.email`).
    pub path: String,
    /// Its masking token (`tally:pii:…`), if its key still exists.
    pub token: Option<String>,
    /// The id of the subject key it is sealed under.
    pub key: String,
}

/// Order of a result page, by leaf index (= order of receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Highest leaf index first.
    NewestFirst,
    /// Lowest leaf index first.
    OldestFirst,
}

/// How to page through the matches of a query.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// The current time in Unix milliseconds, for relative time bounds (`after:1h`).
    pub now_ms: i64,
    /// Page order.
    pub order: Order,
    /// Exclusive position: with [`Order::NewestFirst`] only indexes `< cursor`, with
    /// [`Order::OldestFirst`] only indexes `> cursor`. Normally the `next_cursor` of the previous
    /// page.
    pub cursor: Option<u64>,
    /// Page size; at most [`MAX_PAGE`] (larger values are reduced to it).
    pub limit: usize,
    /// Only indexes `< upto`: the log size when the first page was asked for, so that later
    /// pages stay consistent while events keep arriving.
    pub upto: Option<u64>,
}

/// The largest page [`EventIndex::search`] returns.
pub const MAX_PAGE: usize = 1000;

/// One page of matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Leaf indexes of the matching events, in the requested order.
    pub indexes: Vec<u64>,
    /// The last index of this page when at least one more match exists in the searched range;
    /// `None` when this page is the last.
    pub next_cursor: Option<u64>,
}

/// What to count.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    /// The current time in Unix milliseconds, for relative time bounds.
    pub now_ms: i64,
    /// Group by the distinct values of this field.
    pub by: Option<Field>,
    /// Group by time buckets of this many milliseconds (aligned to the Unix epoch).
    pub interval_ms: Option<i64>,
    /// At most this many groups (see [`EventIndex::stats`]).
    pub limit: usize,
}

/// One group of a [`StatsResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsBucket {
    /// The field value of the group (when grouped `by` a field); `None` for events without
    /// that field, or when not grouped by a field.
    pub key: Option<String>,
    /// Start of the time bucket, `floor(time / interval) * interval` (when grouped by time).
    pub start_ms: Option<i64>,
    /// Matching events in the group.
    pub count: u64,
}

/// Counts of matching events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsResult {
    /// All matching events.
    pub total: u64,
    /// The groups; empty when neither `by` nor `interval_ms` was asked for.
    pub buckets: Vec<StatsBucket>,
}

/// What went wrong, typed by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file system failed; retry later.
    #[error("search index I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine failed (or was asked something invalid, such as a bad tenant name).
    #[error("search index engine error: {0}")]
    Engine(String),
    /// Another process has the index directory open (one process at a time: a running server
    /// owns its index, so `tally reindex` waits for it to stop).
    #[error("the search index in {0} is open in another process (a running server?); stop that process first")]
    Busy(String),
    /// The tenant's index is damaged or from an incompatible version: `clear` it and rebuild it
    /// from the log.
    #[error("search index is corrupt: {0}")]
    Corrupt(String),
    /// `add` did not continue exactly where the index stands.
    #[error("events of tenant {tenant} added out of order: expected index {expected}, got {got}")]
    OutOfOrder {
        /// The tenant.
        tenant: String,
        /// The next index the index expects.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// A record could not be read (nothing of the batch was added).
    #[error("record {index} cannot be indexed: {detail}")]
    BadRecord {
        /// Its leaf index.
        index: u64,
        /// Why.
        detail: String,
    },
}

/// A searchable projection of every tenant's log.
///
/// Query semantics, shared by every engine:
///
/// - All terms of a [`Query`] must hold (AND); a negated term must not hold. A query with no
///   terms, or only negated ones, starts from every event.
/// - `Field { values }` holds when the field matches any of the values (OR):
///   [`Value::Exact`](tally_query::Value::Exact) is equality with the stored string (no
///   case folding: the parser normalises), [`Value::Prefix`](tally_query::Value::Prefix) is
///   "starts with" on the stored string (an empty prefix: the field is present), and
///   [`Value::Cidr`](tally_query::Value::Cidr) is "inside the block" on `actor.ip` (IPv4 blocks
///   also match the IPv4-mapped IPv6 form). On `actor.ip` an `Exact` value is parsed as an
///   address (a string that is not one matches nothing) and a `Prefix` matches nothing; a
///   `Cidr` on any other field matches nothing. An event without the field matches no value.
/// - `Text { phrase: false }`: the text is split on whitespace; each part must hold. A part
///   holds when every word of it occurs in some string of the event: its typed string fields
///   (but identifiers, below), `actor.ip`, `actor.user_agent`, `reason`, and every string,
///   object key and number inside `before`, `after` and `metadata`, at any depth. Words are
///   runs of letters and digits, compared case-insensitively; words longer than 40 bytes are
///   ignored; a part without any word holds for every event.
/// - Identifiers (`id`, `request_id`, `trace_id`, `correlation_id`, `actor.session_id`) are
///   not split into words: a part (or a phrase) also holds when it equals one of them whole
///   (a UUID in any case for `id`). Pasting an id finds its event; a piece of an id does not.
/// - `Text { phrase: true }` holds when its words occur consecutively, in order, within one
///   string of the event (or the whole phrase equals an identifier).
/// - `After(b)` holds when `time >= b.resolve(now_ms)`, `Before(b)` when
///   `time < b.resolve(now_ms)` (event time, milliseconds).
pub trait EventIndex: Send + Sync {
    /// Number of leading leaves of `tenant` that are committed in the index (the next index to
    /// add). 0 for a tenant never indexed.
    fn indexed(&self, tenant: &str) -> Result<u64, IndexError>;

    /// Adds events, in order, starting exactly at the next index (else
    /// [`IndexError::OutOfOrder`], whose `expected` says where to continue). Not visible until
    /// [`commit`](EventIndex::commit). A batch with a record that cannot be read is refused
    /// whole ([`IndexError::BadRecord`]). If the engine fails, everything added since the last
    /// commit is dropped: continue from [`indexed`](EventIndex::indexed).
    fn add(&self, tenant: &str, events: &[IndexedEvent<'_>]) -> Result<(), IndexError>;

    /// Makes everything added (for every tenant) durable and visible to searches; `indexed`
    /// advances. If it fails, what was added since the last commit is dropped: continue from
    /// [`indexed`](EventIndex::indexed).
    fn commit(&self) -> Result<(), IndexError>;

    /// One page of the matches of `query`, ordered by leaf index.
    fn search(
        &self,
        tenant: &str,
        query: &Query,
        opts: &SearchOptions,
    ) -> Result<SearchPage, IndexError>;

    /// Counts the matches of `query` (grouping by `id`, `request_id` or `trace_id`, fields
    /// without a column of values, reads their whole term dictionary: slow on big logs):
    ///
    /// - `total` is every match;
    /// - `by` only: one bucket per distinct value (events without the field under key `None`),
    ///   the `limit` largest by count, ties by key (`None` first);
    /// - `interval_ms` only: one bucket per non-empty time bucket, ascending; when there are
    ///   more than `limit`, the latest `limit`;
    /// - both: the `limit` largest keys as above, and for each key (in that order) its
    ///   non-empty time buckets ascending, restricted to the latest `limit` distinct buckets of
    ///   the whole result.
    fn stats(
        &self,
        tenant: &str,
        query: &Query,
        req: &StatsRequest,
    ) -> Result<StatsResult, IndexError>;

    /// Forgets a tenant's index entirely (for a rebuild); `indexed` is 0 afterwards.
    fn clear(&self, tenant: &str) -> Result<(), IndexError>;

    /// After a subject key was erased: replaces the document of every indexed record holding a
    /// value sealed under `key` (its id, as in [`PersonalValue::key`]) with the one `reopen`
    /// gives for its leaf index (the record opened again: those values now erased), commits,
    /// and rewrites the index's files so that none keeps a term of the old documents. Returns
    /// the leaf indexes replaced. Everything added before it is committed with it.
    fn erase_key(
        &self,
        tenant: &str,
        key: &str,
        reopen: &mut dyn FnMut(u64) -> Result<(Vec<u8>, Vec<PersonalValue>), String>,
    ) -> Result<Vec<u64>, IndexError>;
}
