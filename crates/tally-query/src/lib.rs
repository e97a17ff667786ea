//! Tally's investigation query language: search text such as
//! `actor:alice -outcome:SUCCESS after:7d "password reset"` parsed into a typed [`Query`].
//!
//! The crate is pure: no I/O and no clock. Relative times (`after:30d`) stay relative
//! ([`TimeBound::Ago`]) until the query runs and calls [`TimeBound::resolve`] with the current
//! time.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use tally_query::{parse, Field, TermKind, TimeBound, Value};
//!
//! let q = parse(r#"actor:alice,bob -outcome:success ip:10.1.2.3/8 action:user.* after:30d "reset link""#)?;
//! assert_eq!(q.terms.len(), 6);
//! assert_eq!(
//!     q.terms[0].kind,
//!     TermKind::Field {
//!         field: Field::ActorId,
//!         values: vec![Value::Exact("alice".into()), Value::Exact("bob".into())],
//!     }
//! );
//! assert!(q.terms[1].negated);
//! assert_eq!(
//!     q.terms[1].kind,
//!     TermKind::Field { field: Field::Outcome, values: vec![Value::Exact("SUCCESS".into())] }
//! );
//! assert_eq!(
//!     q.terms[2].kind,
//!     TermKind::Field {
//!         field: Field::ActorIp,
//!         values: vec![Value::Cidr { network: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), prefix_len: 8 }],
//!     }
//! );
//! assert_eq!(q.terms[4].kind, TermKind::After(TimeBound::Ago(30 * 86_400_000)));
//! assert_eq!(q.terms[5].kind, TermKind::Text { text: "reset link".into(), phrase: true });
//!
//! // Canonical text: canonical field names, normalised values, quotes only where needed.
//! let text = q.to_string();
//! assert_eq!(
//!     text,
//!     r#"actor.id:alice,bob -outcome:SUCCESS actor.ip:10.0.0.0/8 action:user.* after:30d "reset link""#
//! );
//! assert_eq!(parse(&text)?, q.with_canonical_spans());
//!
//! // Errors say where (byte offset and 1-based column in characters) and what was expected.
//! let err = parse("actor:alice acter:bob").unwrap_err();
//! assert_eq!((err.position, err.column), (12, 13));
//! assert!(err.message.starts_with("unknown field `acter` (did you mean `actor`?);"));
//! # Ok::<(), tally_query::ParseError>(())
//! ```
//!
//! # Grammar
//!
//! A query is a sequence of **terms** separated by whitespace (any Unicode white space);
//! leading and trailing whitespace is ignored. Every term must hold (AND). The empty query has
//! no terms and matches every event. There is no OR between terms and no grouping; OR is
//! written inside one term as a list of values.
//!
//! ```text
//! query     = ws* [ term { ws+ term } ] ws*
//! term      = [ "-" ] ( field-term | time-term | phrase | word )
//! field-term = field-name ":" value { "," value }
//! time-term = ( "after" | "before" ) ":" value          ; exactly one value
//! value     = bare [ "*" ]  |  quoted [ "*" ]
//! bare      = 1*( any char except white space, "," and '"' )
//! quoted    = '"' *( any char except '"' and "\"  |  '\"'  |  "\\" ) '"'
//! phrase    = quoted                                    ; not empty
//! word      = 1*( any char except white space, ":" and '"' ), not starting with "-"
//! ```
//!
//! - **Negation.** A `-` directly before a term negates it: `-actor:bob`, `-word`,
//!   `-"a phrase"`. A lone `-` (followed by whitespace or the end) is an error, and so is
//!   `--`. Time bounds cannot be negated: write `before:X` instead of `-after:X`.
//! - **Field terms.** `name:value` where the name is one of the names below, ASCII
//!   case-insensitive (`Actor:`, `RESOURCE.TYPE:`). `v1,v2,…` means any of the values (OR).
//!   A bare value runs to the next whitespace, `,` or `"`; a `"` inside a bare value is an
//!   error. A quoted value may hold anything; inside quotes the only escapes are `\"` and
//!   `\\` (any other backslash sequence is an error). Empty values (`actor:`, `actor:a,`,
//!   `actor:""`) are errors.
//! - **Prefixes.** A `*` at the end of a value makes it a prefix ([`Value::Prefix`]):
//!   `action:user.*` matches every action starting with `user.`; `"two words"*` is the prefix
//!   of a quoted value. A `*` anywhere else in a bare value is an error, a bare `*` alone
//!   (empty prefix) is an error, and inside quotes `*` is an ordinary character. Every field
//!   takes prefixes except `ip`; `outcome`, `actor.type`, `category` and `id` prefixes are
//!   normalised like their values and must be able to match a valid value.
//! - **Time bounds.** `after:X` holds for events whose `time` is at or after X, `before:X` for
//!   events strictly before X. X is one value (no commas, no `*`): a date `YYYY-MM-DD`
//!   (midnight UTC), an RFC 3339 date-time with zone (`2026-01-31T12:00:00Z`,
//!   `2026-01-31T12:00:00.250+01:00`; sub-millisecond digits are truncated), or a relative
//!   time `<n>m`, `<n>h`, `<n>d`, `<n>w` (minutes, hours, days, weeks; `n` a positive
//!   integer), meaning that long before the query runs ([`TimeBound::Ago`]). Instants must lie
//!   within 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999Z.
//! - **Free text.** A term without `:` is a word ([`TermKind::Text`] with `phrase: false`); a
//!   quoted string is a phrase (`phrase: true`). Words are taken as written: `,` and `*` have
//!   no special meaning in them. A word whose part before the first `:` is not a field name
//!   is an **error**, not text (so that a mistyped field never silently becomes a text search):
//!   to search for `https://example.com`, quote it. A `"` inside a word is an error.
//!
//! # Fields
//!
//! The searchable fields are the exact-match fields of the schema registry
//! ([`tally_event::fields`]), which gives each its canonical name and aliases
//! ([`Field::spec`]); this table shows them:
//!
//! | names (any case) | [`Field`] | values |
//! | --- | --- | --- |
//! | `id` | [`Field::Id`] | a hyphenated UUID, any case, lower-cased |
//! | `actor`, `actor.id` | [`Field::ActorId`] | as written |
//! | `actor.type` | [`Field::ActorType`] | `user`, `service` or `system`, lower-cased |
//! | `ip`, `actor.ip` | [`Field::ActorIp`] | an IPv4/IPv6 address (a /32 or /128 block) or a CIDR block `addr/len` (len ≤ 32 or 128; host bits are set to zero: `10.1.2.3/8` is `10.0.0.0/8`) → [`Value::Cidr`]; no prefixes |
//! | `session`, `session_id`, `actor.session_id` | [`Field::SessionId`] | as written |
//! | `action` | [`Field::Action`] | as written |
//! | `category` | [`Field::Category`] | upper-cased, must match `^[A-Z][A-Z0-9_]{0,31}$` |
//! | `outcome` | [`Field::Outcome`] | upper-cased, one of `SUCCESS`, `FAILURE`, `UNAUTHORIZED`, `DENIED` |
//! | `resource.type` | [`Field::ResourceType`] | as written |
//! | `resource`, `resource.id` | [`Field::ResourceId`] | as written |
//! | `resource.name` | [`Field::ResourceName`] | as written |
//! | `request`, `request_id` | [`Field::RequestId`] | as written |
//! | `trace`, `trace_id` | [`Field::TraceId`] | as written |
//! | `correlation`, `correlation_id` | [`Field::CorrelationId`] | as written |
//! | `key`, `key_id` | [`Field::KeyId`] | as written |
//! | `after`, `before` | ([`TermKind::After`], [`TermKind::Before`]) | a time, see above |
//!
//! "As written" values are case-sensitive and kept exactly (after unquoting). Upper- and
//! lower-casing is ASCII only.
//!
//! # Limits
//!
//! At most [`MAX_QUERY_BYTES`] (4096) bytes of query text, [`MAX_TERMS`] (64) terms and
//! [`MAX_VALUES_PER_TERM`] (64) values in one term; going over is an error saying the limit.
//!
//! # Errors and spans
//!
//! [`parse`] stops at the first problem and returns a [`ParseError`] with its byte
//! `position`, its 1-based `column` counted in characters, the offending `span` (empty when
//! something is missing) and a `message` saying what was expected there, such as
//! "expected a value after \`actor:\`", "unknown field \`acter\` (did you mean \`actor\`?); known
//! fields: …" or "\`outcome\` must be one of SUCCESS, FAILURE, UNAUTHORIZED, DENIED (found
//! \`x\`)". An unterminated quoted string is reported at its opening quote. The parser never
//! panics, whatever the input.
//!
//! Each [`Term`]'s span covers its text, the `-` included; spans are in increasing order.
//!
//! # Canonical text
//!
//! `Display` for [`Query`] (and for [`Term`], [`TermKind`], [`Value`], [`Field`],
//! [`TimeBound`]) renders canonical query text: canonical field names ([`Field::name`]),
//! normalised values, values quoted only when needed, a single space between terms, instants
//! as `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.mmm]Z`, relative times in the largest exact unit.
//! For every query `q` that [`parse`] returns, `parse(&q.to_string())` is
//! `Ok(q.with_canonical_spans())`.
//!
//! # Query parameters
//!
//! [`parse_field_params`] takes the same filters as URL query parameters
//! (`?actor=alice&outcome=FAILURE,DENIED&not.action=user.login&after=2026-01-01`): one term per
//! parameter, each value parsed as after `name:`; a `not.` prefix on the name negates the
//! term. The free-text parameter is not its business: parse it with [`parse`] and append its
//! terms.

#![forbid(unsafe_code)]

pub mod ast;
mod display;
mod eval;
mod parse;

pub use ast::*;
pub use eval::{NoTokens, Tokens};
pub use parse::{
    parse, parse_field_params, ParseError, ACTOR_TYPES, MAX_QUERY_BYTES, MAX_TERMS, MAX_TIME_MS,
    MAX_VALUES_PER_TERM, MIN_TIME_MS, OUTCOMES,
};
