//! Tally's search index: a rebuildable projection of the log that answers investigation
//! queries ([`tally_query::Query`]) with pages of leaf indexes, and counts.
//!
//! The log is the truth. Each tenant's records (leaf indexes 0, 1, 2, …, canonical bytes as
//! documented in `tally_event`) are fed in order to an [`EventIndex`] by a consumer of the log (`tally_consumers::index`), which
//! commits regularly; [`EventIndex::indexed`] says where to resume after a restart, and a
//! tenant index reported [`IndexError::Corrupt`] is [`cleared`](EventIndex::clear) and rebuilt
//! from the log. Results are leaf indexes: the caller reads the records (and their proofs)
//! from the log, so the index never has to be trusted for content.
//!
//! - [`engine`]: the engine-neutral trait, options and results (query semantics are documented
//!   on [`EventIndex`]);
//! - [`TantivyIndex`]: the engine on tantivy (one index per tenant, sorted by leaf index).
//!
//! ```
//! use tally_index::{EventIndex, IndexedEvent, Order, SearchOptions, TantivyIndex};
//! use tally_query::{Field, Query, Span, Term, TermKind, Value};
//!
//! let dir = tempfile::tempdir()?;
//! let index = TantivyIndex::open(dir.path())?;
//! # let record = br#"{"schema_version":1,"id":"0190c7a8-5f1e-7c3a-9d2b-3e4f5a6b7c8d","tenant":"acme","time":"2024-05-01T10:00:00.000Z","received_at":"2024-05-01T10:00:01.000Z","key_id":"k1","actor":{"id":"alice"},"action":"user.login","outcome":"SUCCESS"}"#;
//! index.add("acme", &[IndexedEvent { index: 0, record, personal: &[] }])?;
//! index.commit()?;
//! assert_eq!(index.indexed("acme")?, 1);
//!
//! let query = Query {
//!     terms: vec![Term {
//!         negated: false,
//!         kind: TermKind::Field { field: Field::ActorId, values: vec![Value::Exact("alice".into())] },
//!         span: Span { start: 0, end: 11 },
//!     }],
//! };
//! let opts = SearchOptions { now_ms: 0, order: Order::NewestFirst, cursor: None, limit: 50, upto: None };
//! assert_eq!(index.search("acme", &query, &opts)?.indexes, vec![0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod engine;
mod tantivy_index;

pub use engine::{
    EventIndex, IndexError, IndexedEvent, Order, PersonalValue, SearchOptions, SearchPage,
    StatsBucket, StatsRequest, StatsResult, MAX_PAGE,
};
pub use tantivy_index::encrypted::{EncryptedDirectory, IndexCipher};
pub use tantivy_index::{TantivyIndex, TantivyOptions};
