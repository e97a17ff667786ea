//! Tally's audit event, schema version 1: from request body to canonical record bytes.
//!
//! An ingest request goes through three steps, one per module:
//!
//! 1. [`parse_body`] turns an HTTP body ([`BodyFormat::Json`]: one object or an array of objects;
//!    [`BodyFormat::Ndjson`]: one object per line) into [`EventInput`]s, or a [`BodyError`] that
//!    knows its HTTP status. Unknown fields are rejected at every level, never dropped.
//! 2. [`validate`] checks every field of one [`EventInput`] against the rules of schema v1,
//!    reporting *all* broken rules as [`FieldError`]s, and on success returns a [`ValidEvent`]
//!    whose `record` holds the canonical record bytes.
//! 3. The log stores and hashes exactly those bytes. [`Record::parse`] reads them back into typed
//!    fields; [`is_canonical`] checks that bytes are in canonical form; [`same_submission`] tells
//!    whether two records carry the same client-supplied content (idempotent retries).
//!
//! [`fields`] is the schema registry: every field of schema v1 declared once, with its type,
//! query aliases, search flags, export column and whether it is personal data, for the other
//! crates to derive their field lists from.
//!
//! This crate does no I/O and knows nothing about API keys, tenants' permissions or storage: the
//! caller supplies the receive time, key id and default tenant in an [`IngestContext`].
//!
//! ```
//! use tally_event::{is_canonical, parse_body, validate, BodyFormat, IngestContext, Record};
//! use time::macros::datetime;
//!
//! let body = br#"{"time":"2024-05-01T12:00:00.123456+02:00","actor":{"id":"alice"},
//!                 "action":"user.login","category":"LOGIN","outcome":"SUCCESS"}"#;
//! let events = parse_body(body, BodyFormat::Json, 1000)?;
//!
//! let ctx = IngestContext {
//!     received_at: datetime!(2024-05-01 10:00:01.5 UTC),
//!     key_id: "key-1",
//!     default_tenant: Some("acme"),
//!     max_future_skew: time::Duration::minutes(5),
//! };
//! let event = validate(events.into_iter().next().unwrap(), &ctx).expect("valid event");
//! assert_eq!(event.tenant, "acme");
//! assert!(!event.id_supplied);
//! assert!(is_canonical(&event.record));
//!
//! let record = Record::parse(&event.record)?;
//! assert_eq!(record.action, "user.login");
//! assert_eq!(record.time, datetime!(2024-05-01 10:00:00.123 UTC)); // normalised, truncated to ms
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Schema version 1
//!
//! | field | required | rule |
//! | --- | --- | --- |
//! | `schema_version` | no | if present, must be `1` |
//! | `id` | no | UUID in 8-4-4-4-12 hex form, any version, any case; assigned (UUIDv7) if absent |
//! | `time` | yes | RFC 3339 with a zone offset; UTC year 1970..=9999; at most `max_future_skew` after `received_at` |
//! | `tenant` | no | defaults to [`IngestContext::default_tenant`]; one of them is required; see [`is_valid_tenant`] |
//! | `actor.id` | yes | 1..=256 characters |
//! | `actor.type` | no | one of [`ActorType::ALL`]: `user`, `service`, `system` |
//! | `actor.ip` | no | IPv4 or IPv6 address |
//! | `actor.user_agent` | no | 1..=1024 characters |
//! | `actor.session_id` | no | 1..=256 characters |
//! | `action` | yes | dot-separated non-empty segments of `[A-Za-z0-9_-]`, at most 128 characters |
//! | `category` | no | `^[A-Z][A-Z0-9_]{0,31}$`; the well-known ones are [`WELL_KNOWN_CATEGORIES`] |
//! | `resource.type` | if `resource` is given | 1..=64 characters |
//! | `resource.id`, `resource.name` | no | 1..=256 characters |
//! | `outcome` | yes | one of [`Outcome::ALL`]: `SUCCESS`, `FAILURE`, `UNAUTHORIZED`, `DENIED` |
//! | `reason` | no | 1..=1024 characters |
//! | `request_id`, `trace_id`, `correlation_id` | no | 1..=128 characters |
//! | `before`, `after` | no | any JSON value |
//! | `metadata` | no | a JSON object |
//!
//! Every string field above is non-empty and contains no control character (Unicode category
//! Cc: U+0000..=U+001F and U+007F..=U+009F), except that `reason` may contain tab, line feed and
//! carriage return. Lengths count Unicode scalar values (Rust `char`s), not bytes. A field given
//! as JSON `null` is treated exactly like an absent field. The whole canonical record must be at
//! most [`MAX_RECORD_BYTES`] bytes.
//!
//! # Canonical record encoding
//!
//! The record is the only representation of an event that is stored, hashed and served; the
//! Merkle leaf hash is computed over exactly these bytes, so each event has exactly one
//! encoding. It is a single JSON object (RFC 8259) in UTF-8 with no byte order mark, no
//! whitespace between tokens and no trailing newline.
//!
//! **Members.** The top-level object has these members in exactly this order. Optional members
//! are omitted when absent; no member is ever written as `null`.
//!
//! | key | presence | value |
//! | --- | --- | --- |
//! | `schema_version` | always | the number `1` |
//! | `id` | always | string: the UUID, lowercase hex, hyphenated 8-4-4-4-12 (36 characters) |
//! | `tenant` | always | string |
//! | `time` | always | timestamp string (below): the client's event time |
//! | `received_at` | always | timestamp string: the server's receive time |
//! | `key_id` | always | string: the id of the API key that ingested the event |
//! | `actor` | always | object with members `id` (always), `type`, `ip`, `user_agent`, `session_id` (each optional), in that order |
//! | `action` | always | string |
//! | `category` | optional | string |
//! | `resource` | optional | object with members `type` (always), `id`, `name` (each optional), in that order |
//! | `outcome` | always | string |
//! | `reason` | optional | string |
//! | `request_id` | optional | string |
//! | `trace_id` | optional | string |
//! | `correlation_id` | optional | string |
//! | `before` | optional | free-form value (any JSON value but `null`) |
//! | `after` | optional | free-form value (any JSON value but `null`) |
//! | `metadata` | optional | free-form object |
//!
//! `actor.ip` is written in Rust's [`std::net::IpAddr`] `Display` form: dotted decimal for
//! IPv4; for IPv6 the RFC 5952 form (lowercase, longest run of zero groups compressed as `::`),
//! with IPv4-mapped and IPv4-compatible addresses written with a dotted-decimal tail
//! (`::ffff:192.0.2.1`).
//!
//! **Timestamps** are strings of exactly 24 characters, `YYYY-MM-DDTHH:MM:SS.mmmZ`, in UTC,
//! with exactly three fraction digits. Input times in another offset are converted to UTC;
//! fraction digits beyond milliseconds are **truncated** (not rounded), so
//! `2024-05-01T12:00:00.1239+02:00` is stored as `2024-05-01T10:00:00.123Z`. Input accepts what
//! RFC 3339 allows: lower-case `t` and `z`, a space instead of `T`, `-00:00`; a leap second
//! (`23:59:60`) is stored as `23:59:59.999`.
//!
//! **Strings** (typed fields, object keys and strings inside free-form values alike) are written
//! between `"` with this minimal escaping, byte by byte: `"` as `\"`, `\` as `\\`, U+0008 as
//! `\b`, U+000C as `\f`, U+000A as `\n`, U+000D as `\r`, U+0009 as `\t`, every other character
//! below U+0020 as `\u00xx` with two **lowercase** hex digits; every other character (including
//! `/`, U+007F and all non-ASCII characters) as its literal UTF-8 bytes.
//!
//! **Free-form values** (`before`, `after`, `metadata` and everything inside them):
//! - `null`, `true`, `false` as those literals;
//! - objects with their members sorted by key, comparing the keys' UTF-8 bytes
//!   lexicographically (a key that is a prefix of another comes first; note that this differs
//!   from RFC 8785's UTF-16 order for characters above U+FFFF); keys are unique, and if the
//!   input repeated a key the last occurrence wins;
//! - arrays with their elements in input order;
//! - numbers: a JSON number written without fraction or exponent that fits in a 64-bit integer
//!   (−2⁶³ ..= 2⁶⁴−1) is written as that integer in decimal (`-` for negatives, no leading
//!   zeros, `0` for zero). Every other number is converted to the nearest IEEE 754 double and
//!   written from its shortest round-trip decimal digits d₁…dₙ (the fewest digits that parse
//!   back to the same double; among those, the closest to its exact value) and exponent E such
//!   that the magnitude is d₁.d₂…dₙ × 10ᴱ:
//!   - first `-` if the sign bit is set (so negative zero is `-0.0`); zero is `0.0`;
//!   - if −5 ≤ E ≤ 15 and n − 1 ≤ E: the digits, then E − n + 1 zeros, then `.0`
//!     (`1e2` → `100.0`, `1e15` → `1000000000000000.0`);
//!   - else if 0 ≤ E ≤ 15: d₁…d₍E+1₎, `.`, the remaining digits (`12.5`);
//!   - else if −5 ≤ E < 0: `0.`, then −E − 1 zeros, then the digits (`0.00001`, `0.000125`);
//!   - else d₁, then `.` and d₂…dₙ if n > 1, then `e`, then `+` or `-`, then |E| in decimal
//!     without leading zeros (`1e+16`, `1.5e-7`, `1.8446744073709552e+19`).
//!
//!   This is exactly how `serde_json` 1.0.154 prints numbers, but it is written by this crate,
//!   so a change in `serde_json`'s output cannot change stored records.
//!
//! Records are at most [`MAX_RECORD_BYTES`] bytes, so the length fits the 16-bit length prefix of
//! a C2SP tlog-tiles entry bundle.
//!
//! Architecture invariant: nothing in this crate performs I/O, and every input, however
//! malformed, yields an error value rather than a panic.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod body;
mod canonical;
pub mod fields;
mod input;
mod object;
mod record;
mod scan;
mod schema;
mod timestamp;
mod validate;

pub use body::{parse_body, BodyError, BodyFormat};
pub use fields::{FieldSpec, FieldType, FieldValue, FIELDS};
pub use input::{ActorInput, EventInput, ResourceInput};
pub use record::{is_canonical, record_id, same_submission, Actor, Record, RecordError, Resource};
pub use schema::{
    is_valid_tenant, reserved_for_server, ActorType, Outcome, KEY_ACTOR_PREFIX,
    SERVER_ACTION_NAMESPACE, SERVER_ACTOR_ID, WELL_KNOWN_CATEGORIES,
};
pub use validate::{validate, FieldError, IngestContext, ValidEvent};

/// The schema version this crate parses, validates and writes into every record.
pub const SCHEMA_VERSION: u32 = 1;

/// The schema version of a record whose personal values are sealed (`tally-privacy`): the
/// schema-1 members with each personal value replaced by a sealed string. [`Record::parse`]
/// reads such a record once it is opened (its values clear, masked or erased).
pub const SEALED_SCHEMA_VERSION: u32 = 2;

/// The start of a masking token: what a reader without the `read:pii` scope sees, and may
/// search with, in place of a personal value.
pub const MASKING_TOKEN_PREFIX: &str = "tally:pii:";

/// Strings no client may send anywhere in an event: they are what Tally shows in place of
/// personal values (sealed, masked, erased, unavailable), and a forged one would mislead.
pub const RESERVED_STRING_PREFIXES: [&str; 4] = [
    "tally:sealed:",
    "tally:pii:",
    "tally:erased",
    "tally:unavailable",
];

/// The largest canonical record, in bytes: the length must fit the 16-bit length prefix of a
/// C2SP tlog-tiles entry bundle.
pub const MAX_RECORD_BYTES: usize = 65_535;
