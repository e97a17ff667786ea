//! Reading stored records back: typed access, canonical-form checks and retry detection.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::canonical::{ActorView, RecordView, ResourceView};
use crate::object;
use crate::schema::{ActorType, Outcome};
use crate::{timestamp, MAX_RECORD_BYTES, SCHEMA_VERSION, SEALED_SCHEMA_VERSION};

/// A stored event, read back from its canonical record bytes.
///
/// Parsing is strict about shape (unknown members are errors) but does not re-run ingest
/// validation: a record is what was accepted, and [`is_canonical`] is the check that bytes are
/// exactly what this crate writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an audit record object")]
pub struct Record {
    /// [`SCHEMA_VERSION`], or [`SEALED_SCHEMA_VERSION`] for an opened sealed record.
    pub schema_version: u32,
    /// The event id.
    pub id: Uuid,
    /// The tenant whose log holds the record.
    pub tenant: String,
    /// When the event happened, in UTC.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub time: OffsetDateTime,
    /// When the server received the event, in UTC.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub received_at: OffsetDateTime,
    /// Id of the API key that ingested the event.
    pub key_id: String,
    /// Who did it.
    #[serde(deserialize_with = "actor")]
    pub actor: Actor,
    /// What was done.
    pub action: String,
    /// Coarse class of the action.
    pub category: Option<String>,
    /// What it was done to.
    #[serde(default, deserialize_with = "resource")]
    pub resource: Option<Resource>,
    /// How it ended.
    pub outcome: Outcome,
    /// Free-text explanation.
    pub reason: Option<String>,
    /// Id of the request that caused the event.
    pub request_id: Option<String>,
    /// Distributed-tracing trace id.
    pub trace_id: Option<String>,
    /// Id tying together events of one business operation.
    pub correlation_id: Option<String>,
    /// Snapshot before the action.
    pub before: Option<Value>,
    /// Snapshot after the action.
    pub after: Option<Value>,
    /// Further context.
    pub metadata: Option<Map<String, Value>>,
}

/// The `actor` of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an actor object")]
pub struct Actor {
    /// Stable id of the principal.
    pub id: String,
    /// Kind of principal (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: Option<ActorType>,
    /// Client IP address. In an opened sealed record a masked, erased or unavailable address
    /// (a reserved `tally:` string) reads as absent.
    #[serde(default, deserialize_with = "ip_or_withheld")]
    pub ip: Option<IpAddr>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
}

/// The `resource` of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a resource object")]
pub struct Resource {
    /// Kind of resource (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the resource.
    pub id: Option<String>,
    /// Human-readable name of the resource.
    pub name: Option<String>,
}

const RECORD_EXPECTING: &str = "an audit record object";

fn ip_or_withheld<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    match text {
        None => Ok(None),
        Some(t)
            if crate::RESERVED_STRING_PREFIXES
                .iter()
                .any(|p| t.starts_with(p)) =>
        {
            Ok(None)
        }
        Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn actor<'de, D: Deserializer<'de>>(d: D) -> Result<Actor, D::Error> {
    object::required(d, "an actor object")
}

fn resource<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Resource>, D::Error> {
    object::optional(d, "a resource object")
}

/// Why bytes could not be read as a [`Record`].
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Longer than any record this crate writes.
    #[error("record is {len} bytes, more than the limit of {MAX_RECORD_BYTES}")]
    TooLarge {
        /// Length of the rejected bytes.
        len: usize,
    },
    /// Not JSON, or not shaped like a record.
    #[error("malformed record at `{path}`: {source}")]
    Malformed {
        /// Dotted path of the offending member; empty for the record as a whole.
        path: String,
        /// The underlying parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a schema version this crate does not read.
    #[error("unsupported record schema_version {0}")]
    UnsupportedVersion(u32),
}

impl Record {
    /// Reads a record from stored bytes.
    pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: bytes.len() });
        }
        // UTF-8 checked once up front spares serde_json checking every string (see `body`).
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => deserialize_record(serde_json::Deserializer::from_str(text)),
            Err(_) => deserialize_record(serde_json::Deserializer::from_slice(bytes)),
        };
        let record = match parsed {
            Ok(record) => record,
            // Parse again only to learn where it failed: records are normally well-formed, so
            // the path tracking is not paid on the common path.
            Err(first) => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let mut track = serde_path_to_error::Track::new();
                let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
                let (path, source) = match object::required::<_, Record>(tracked, RECORD_EXPECTING)
                {
                    Ok(_) => (String::new(), first),
                    Err(e) => (crate::body::dotted_path(&track.path(), false), e),
                };
                return Err(RecordError::Malformed { path, source });
            }
        };
        if record.schema_version != SCHEMA_VERSION && record.schema_version != SEALED_SCHEMA_VERSION
        {
            return Err(RecordError::UnsupportedVersion(record.schema_version));
        }
        Ok(record)
    }

    /// The canonical bytes of this record. For a record parsed from canonical bytes these are
    /// the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        RecordView {
            schema_version: self.schema_version,
            id: self.id,
            tenant: &self.tenant,
            time_ms: timestamp::unix_ms(self.time),
            received_at_ms: timestamp::unix_ms(self.received_at),
            key_id: &self.key_id,
            actor: ActorView {
                id: &self.actor.id,
                kind: self.actor.kind,
                ip: self.actor.ip,
                user_agent: self.actor.user_agent.as_deref(),
                session_id: self.actor.session_id.as_deref(),
            },
            action: &self.action,
            category: self.category.as_deref(),
            resource: self.resource.as_ref().map(|r| ResourceView {
                kind: &r.kind,
                id: r.id.as_deref(),
                name: r.name.as_deref(),
            }),
            outcome: self.outcome,
            reason: self.reason.as_deref(),
            request_id: self.request_id.as_deref(),
            trace_id: self.trace_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            before: self.before.as_ref(),
            after: self.after.as_ref(),
            metadata: self.metadata.as_ref(),
        }
        .encode()
    }
}

fn deserialize_record<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> serde_json::Result<Record> {
    let record = object::required(&mut de, RECORD_EXPECTING)?;
    de.end()?;
    Ok(record)
}

/// Whether `bytes` is a record in exactly the canonical encoding: it parses as a [`Record`] and
/// re-encoding gives the identical bytes. Catches whitespace, member order, `null` members,
/// escaping, number and timestamp forms, upper-case UUIDs and the like.
pub fn is_canonical(bytes: &[u8]) -> bool {
    Record::parse(bytes).is_ok_and(|record| record.to_bytes() == bytes)
}

/// The start of every canonical schema-1 record, and of every sealed (schema-2) one: the event
/// id follows at a fixed position.
const ID_PREFIX: &[u8] = br#"{"schema_version":1,"id":""#;
const SEALED_ID_PREFIX: &[u8] = br#"{"schema_version":2,"id":""#;

/// The event id of a stored record, read without parsing the record: in canonical schema-1
/// bytes the id is always the 36 characters after [`ID_PREFIX`]. Falls back to a full parse for
/// anything else (another schema version). `None` if the bytes hold no readable id.
///
/// Verifiers call this for every record, so it must cost next to nothing; it is only as good
/// as the record's integrity, which the caller checks against its leaf hash.
pub fn record_id(bytes: &[u8]) -> Option<uuid::Uuid> {
    if let Some(rest) = bytes
        .strip_prefix(ID_PREFIX)
        .or_else(|| bytes.strip_prefix(SEALED_ID_PREFIX))
    {
        let text = rest.get(..36)?;
        if rest.get(36) != Some(&b'"') {
            return None;
        }
        return uuid::Uuid::try_parse_ascii(text).ok();
    }
    Record::parse(bytes).ok().map(|r| r.id)
}

/// Whether two records carry the same client-supplied content, ignoring what the server added
/// on each ingest (`received_at`, `key_id`).
///
/// This is the test for an idempotent retry: a second submission with an id already in the log
/// is a harmless duplicate if this returns true, and a conflict otherwise. Content is compared
/// after normalisation, so the same instant written with another offset or sub-millisecond
/// digits, or free-form objects with their members in another order, count as the same.
/// Returns false if either side is not a record.
pub fn same_submission(a: &[u8], b: &[u8]) -> bool {
    // A sealed record cannot be decoded without its keys, but sealing is deterministic and the
    // bytes are canonical: the same content seals to the same bytes.
    if a.starts_with(SEALED_ID_PREFIX) || b.starts_with(SEALED_ID_PREFIX) {
        return match (without_server_fields(a), without_server_fields(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
    }
    let (Ok(mut a), Ok(b)) = (Record::parse(a), Record::parse(b)) else {
        return false;
    };
    a.received_at = b.received_at;
    a.key_id.clone_from(&b.key_id);
    // Compared as canonical bytes rather than with `==`: bytes are what the log hashes, and
    // `==` on JSON numbers treats 0.0 and -0.0 as equal although they encode differently.
    a.to_bytes() == b.to_bytes()
}

/// A canonical record's bytes around its `received_at` and `key_id` members (which follow
/// `time` at the top level, before any member a client writes).
fn without_server_fields(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    const RECEIVED: &[u8] = b",\"received_at\":\"";
    const KEY: &[u8] = b",\"key_id\":\"";
    let start = bytes.windows(RECEIVED.len()).position(|w| w == RECEIVED)?;
    let after_received = start + RECEIVED.len();
    let received_end =
        after_received + bytes[after_received..].iter().position(|&b| b == b'"')? + 1;
    let rest = bytes[received_end..].strip_prefix(KEY)?;
    // The key id is a JSON string: skip escapes up to its closing quote.
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => return Some((&bytes[..start], &rest[i + 1..])),
            _ => i += 1,
        }
    }
    None
}
