//! The schema registry: every field of schema v1 declared once, with what each part of Tally
//! needs to know about it.
//!
//! A field is a leaf of the record: `actor.id`, not `actor`. [`FIELDS`] lists them in the
//! record's canonical member order (the order the crate documentation gives and the encoder
//! writes, which a test checks). Each [`FieldSpec`] says:
//!
//! - its canonical dotted **name** and the **aliases** the query language also accepts;
//! - its **type** ([`FieldType`]), with the rule a text value follows;
//! - whether a client sends it ([`Input`]) and a one-line **description**;
//! - how it is searched: **exact** match (`name:value` terms, keyword fields), **full text**
//!   (its strings go into the free-text field), **time bounds** (`after:`/`before:`);
//! - its place among the flat **export columns**, if it is one;
//! - whether it is **personal** data (see below);
//! - how to **read** its value from a stored [`Record`].
//!
//! Who derives what from it: `tally-query` its field names and aliases (and the values of
//! enumerated fields), `tally-index` its tantivy fields and the content of the full-text field,
//! `tally-export` the flat CSV/Parquet columns, `tally-server` the OpenAPI `Event` schema,
//! `tally-load` the fields generated events must carry, and [`validate`](crate::validate) the
//! names and length limits it checks. The canonical encoder (`canonical`) and [`Record`] are
//! written out by hand for speed and clarity; tests hold them to this registry.
//!
//! # Personal data
//!
//! A field is [`personal`](FieldSpec::personal) when its value identifies a person, directly or
//! through an online identifier (an account, an address, a device, a session). The schema cannot
//! tell a person from a service by looking at one value, so a field is decided as a whole:
//! `actor.id` is personal although many actors are services. These are the personal paths every
//! tenant has (`tally-privacy` seals each such value under its subject's key, masks it for
//! readers without the `read:pii` scope and erases it with the subject's key); a tenant adds
//! paths inside the free-form members.
//!
//! - Personal: `actor.id`, `actor.ip`, `actor.user_agent`, `actor.session_id` (who acted, from
//!   where, on what device, in which session); `resource.id` and `resource.name` (the resource
//!   acted on is often a person: a `USER`'s id is someone's account id, its name their name;
//!   masking `actor.id` but not `resource.id` would leak the same value).
//! - Free-form, personal where the tenant's policy says so: `before`, `after` and `metadata`
//!   (e-mail addresses, phone numbers, profile snapshots: a tenant names the paths, such as
//!   `after.email` or `metadata.patient.*`). `reason` is the application's explanation of an
//!   outcome and is not treated as personal.
//! - Not personal: the event's own identity and time (`schema_version`, `id`, `time`,
//!   `received_at`), the tenant, the ingesting key (`key_id` names a credential, not its
//!   holder), what kind of thing happened (`actor.type`, `action`, `category`,
//!   `resource.type`, `outcome`) and the technical correlation ids (`request_id`, `trace_id`,
//!   `correlation_id`), which link records to each other and to application logs but say
//!   nothing about anyone by themselves.
//!
//! ```
//! use tally_event::fields::{self, FieldType, FieldValue};
//!
//! let ip = fields::field("actor.ip").unwrap();
//! assert_eq!(ip.ty, FieldType::Ip);
//! assert!(ip.exact && ip.personal && ip.is_ip());
//! assert_eq!(fields::by_alias("IP").unwrap().name, "actor.ip");
//!
//! let columns: Vec<&str> = fields::flat_columns().iter().map(|f| f.name).collect();
//! assert_eq!(&columns[..3], ["time", "received_at", "id"]);
//!
//! # let record = tally_event::Record::parse(br#"{"schema_version":1,"id":"0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f","tenant":"acme","time":"2024-05-01T10:00:00.123Z","received_at":"2024-05-01T10:00:01.000Z","key_id":"k1","actor":{"id":"alice"},"action":"user.login","outcome":"SUCCESS"}"#)?;
//! assert_eq!(fields::ACTOR_ID.value(&record), Some(FieldValue::Text("alice")));
//! assert_eq!(fields::ACTOR_IP.value(&record), None);
//! # Ok::<(), tally_event::RecordError>(())
//! ```

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::record::Record;
use crate::schema::{ActorType, Outcome, MAX_ACTION_LEN};
use crate::timestamp;

/// What values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON integer, one of these values.
    Integer(&'static [u64]),
    /// A UUID: hyphenated 8-4-4-4-12 hexadecimal in events ([`UUID_PATTERN`]), lower-case in
    /// records.
    Uuid,
    /// A string following a [`TextRule`].
    Text(TextRule),
    /// One of these names, case-sensitive.
    Enum(&'static [&'static str]),
    /// An instant: RFC 3339 with a zone in events, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) in records.
    Time,
    /// An IPv4 or IPv6 address.
    Ip,
    /// Any JSON value (`null` counts as absent).
    Json,
    /// A JSON object.
    JsonObject,
}

/// The rule a [`FieldType::Text`] value follows. Lengths count characters (`char`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRule {
    /// 1 to `max` characters, no control character (Unicode category Cc): identifiers and
    /// names end up in indexes, CSV cells, syslog lines and terminals.
    Plain {
        /// Most characters.
        max: usize,
    },
    /// 1 to `max` characters; tab, line feed and carriage return are the only control
    /// characters allowed (prose).
    Prose {
        /// Most characters.
        max: usize,
    },
    /// Any string: written by the server, not checked by this crate (`key_id`).
    Unchecked,
    /// Matches `pattern` (a regular expression as JSON Schema writes them), which also bounds
    /// the length unless `max` does.
    Pattern {
        /// The regular expression, anchored.
        pattern: &'static str,
        /// Most characters, when the pattern does not say.
        max: Option<usize>,
    },
}

impl TextRule {
    /// The most characters a value may have, if the rule gives a number.
    pub const fn max_chars(self) -> Option<usize> {
        match self {
            TextRule::Plain { max } | TextRule::Prose { max } => Some(max),
            TextRule::Pattern { max, .. } => max,
            TextRule::Unchecked => None,
        }
    }
}

/// Whether and how a client sends a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Every event must carry it.
    Required,
    /// Required when its parent object is given (`resource.type`).
    RequiredInParent,
    /// The client may send it (the server fills in `id` and `tenant` when it does not).
    Optional,
    /// Written by the server (`received_at`, `key_id`); an event carrying it is rejected.
    Server,
}

/// One field of schema v1. See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Canonical dotted name, as in records and error messages: `actor.id`.
    pub name: &'static str,
    /// Other names the query language accepts (ASCII case-insensitive), shortest first; the
    /// canonical name is accepted too and is not repeated here.
    pub aliases: &'static [&'static str],
    /// The values it holds.
    pub ty: FieldType,
    /// Whether a client sends it.
    pub input: Input,
    /// One line for people: documentation, the OpenAPI document.
    pub description: &'static str,
    /// Searchable by exact value (and prefix, or CIDR block for an address): a query term
    /// `name:value` and a keyword field in the index.
    pub exact: bool,
    /// Its strings (every string, key and number, for a JSON value) go into the index's
    /// full-text field. Identifiers, nearly unique per event, stay out of it.
    pub full_text: bool,
    /// The query's time bounds (`after:`, `before:`) apply to it.
    pub time_bounds: bool,
    /// Its position among the flat export columns (0 first), if it is one. Column names are
    /// field names.
    pub column: Option<usize>,
    /// Personal data: identifies a person or may hold anything. See the
    /// [module documentation](self) for the rule.
    pub personal: bool,
    /// Reads the field from a stored record; `None` when the record does not carry it.
    pub read: fn(&Record) -> Option<FieldValue<'_>>,
}

impl FieldSpec {
    /// The field's value in `record`, if the record carries it.
    pub fn value<'a>(&self, record: &'a Record) -> Option<FieldValue<'a>> {
        (self.read)(record)
    }

    /// Every name the query language accepts: the [`aliases`](FieldSpec::aliases), then the
    /// canonical name.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.aliases.iter().copied().chain([self.name])
    }

    /// Whether the field holds an IP address (searched by CIDR block).
    pub fn is_ip(&self) -> bool {
        self.ty == FieldType::Ip
    }

    /// Whether the field holds an instant.
    pub fn is_time(&self) -> bool {
        self.ty == FieldType::Time
    }

    /// Whether the field's value is one string (typed text, enum, UUID, address, time), as
    /// opposed to an integer or free-form JSON.
    pub fn is_string(&self) -> bool {
        !matches!(
            self.ty,
            FieldType::Integer(_) | FieldType::Json | FieldType::JsonObject
        )
    }

    /// The path of the field: `["actor", "id"]`.
    pub fn path(&self) -> impl Iterator<Item = &'static str> {
        self.name.split('.')
    }
}

/// A field's value in a stored record, borrowed from it where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// [`FieldType::Integer`].
    Integer(u64),
    /// [`FieldType::Uuid`].
    Uuid(Uuid),
    /// [`FieldType::Text`] and [`FieldType::Enum`].
    Text(&'a str),
    /// [`FieldType::Time`], in UTC.
    Time(OffsetDateTime),
    /// [`FieldType::Ip`].
    Ip(IpAddr),
    /// [`FieldType::Json`].
    Json(&'a Value),
    /// [`FieldType::JsonObject`].
    Object(&'a Map<String, Value>),
}

impl<'a> FieldValue<'a> {
    /// The value as one string, written as the record writes it (UUID lower-case, address in
    /// its canonical form, time as `YYYY-MM-DDTHH:MM:SS.mmmZ`); `None` for JSON values.
    pub fn as_text(&self) -> Option<Cow<'a, str>> {
        Some(match *self {
            FieldValue::Integer(n) => n.to_string().into(),
            FieldValue::Uuid(id) => id.hyphenated().to_string().into(),
            FieldValue::Text(s) => s.into(),
            FieldValue::Time(t) => {
                let mut quoted = Vec::with_capacity(26);
                timestamp::write_quoted(&mut quoted, timestamp::unix_ms(t));
                String::from_utf8_lossy(&quoted[1..quoted.len() - 1])
                    .into_owned()
                    .into()
            }
            FieldValue::Ip(ip) => ip.to_string().into(),
            FieldValue::Json(_) | FieldValue::Object(_) => return None,
        })
    }
}

/// The pattern of an event id in events: a UUID in hyphenated form only, any case, so that
/// one id has one spelling.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// The pattern of a tenant name (see [`is_valid_tenant`](crate::is_valid_tenant)).
pub const TENANT_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";
/// The pattern of an action name (at most 128 characters as well).
pub const ACTION_PATTERN: &str = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$";
/// The pattern of a category.
pub const CATEGORY_PATTERN: &str = "^[A-Z][A-Z0-9_]{0,31}$";
/// No control character (Unicode category Cc): the pattern of [`TextRule::Plain`].
pub const PLAIN_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// No control character but tab, line feed and carriage return: the pattern of
/// [`TextRule::Prose`].
pub const PROSE_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";

/// The field template: a string nobody searches, exports or considers personal, read as
/// absent. Each field below changes what differs.
const BASE: FieldSpec = FieldSpec {
    name: "",
    aliases: &[],
    ty: FieldType::Text(TextRule::Plain { max: 0 }),
    input: Input::Optional,
    description: "",
    exact: false,
    full_text: false,
    time_bounds: false,
    column: None,
    personal: false,
    read: |_| None,
};

/// `schema_version`: always 1 in records this crate writes.
pub const SCHEMA_VERSION: FieldSpec = FieldSpec {
    name: "schema_version",
    ty: FieldType::Integer(&[crate::SCHEMA_VERSION as u64]),
    description: "Schema version of the event; 1 if absent.",
    read: |r| Some(FieldValue::Integer(u64::from(r.schema_version))),
    ..BASE
};

/// `id`: the event id.
pub const ID: FieldSpec = FieldSpec {
    name: "id",
    ty: FieldType::Uuid,
    description: "Client-chosen id; a retry with the same id and content is stored once. \
                  Assigned (UUIDv7) when absent.",
    exact: true,
    column: Some(2),
    read: |r| Some(FieldValue::Uuid(r.id)),
    ..BASE
};

/// `tenant`: whose log holds the event.
pub const TENANT: FieldSpec = FieldSpec {
    name: "tenant",
    ty: FieldType::Text(TextRule::Pattern {
        pattern: TENANT_PATTERN,
        max: None,
    }),
    description: "Tenant whose log holds the event; the API key's tenant when absent.",
    column: Some(3),
    read: |r| Some(FieldValue::Text(&r.tenant)),
    ..BASE
};

/// `time`: when the event happened.
pub const TIME: FieldSpec = FieldSpec {
    name: "time",
    ty: FieldType::Time,
    input: Input::Required,
    description: "RFC 3339 with a zone, from 1970 to 9999 and at most 24 hours (by default) \
                  after the server's clock; stored in UTC with millisecond precision.",
    time_bounds: true,
    column: Some(0),
    read: |r| Some(FieldValue::Time(r.time)),
    ..BASE
};

/// `received_at`: when the server received the event.
pub const RECEIVED_AT: FieldSpec = FieldSpec {
    name: "received_at",
    ty: FieldType::Time,
    input: Input::Server,
    description: "When the server received the event (UTC, milliseconds).",
    column: Some(1),
    read: |r| Some(FieldValue::Time(r.received_at)),
    ..BASE
};

/// `key_id`: the API key that ingested the event.
pub const KEY_ID: FieldSpec = FieldSpec {
    name: "key_id",
    aliases: &["key"],
    ty: FieldType::Text(TextRule::Unchecked),
    input: Input::Server,
    description: "Id of the API key that ingested the event.",
    exact: true,
    full_text: true,
    column: Some(4),
    read: |r| Some(FieldValue::Text(&r.key_id)),
    ..BASE
};

/// `actor.id`: who acted.
pub const ACTOR_ID: FieldSpec = FieldSpec {
    name: "actor.id",
    aliases: &["actor"],
    ty: FieldType::Text(TextRule::Plain { max: 256 }),
    input: Input::Required,
    description: "Who acted",
    exact: true,
    full_text: true,
    column: Some(5),
    personal: true,
    read: |r| Some(FieldValue::Text(&r.actor.id)),
    ..BASE
};

/// `actor.type`: what kind of principal acted.
pub const ACTOR_TYPE: FieldSpec = FieldSpec {
    name: "actor.type",
    ty: FieldType::Enum(&ActorType::NAMES),
    description: "Kind of principal: a person, a program with its own credentials, or the \
                  system itself.",
    exact: true,
    full_text: true,
    column: Some(6),
    read: |r| r.actor.kind.map(|k| FieldValue::Text(k.as_str())),
    ..BASE
};

/// `actor.ip`: the client's address.
pub const ACTOR_IP: FieldSpec = FieldSpec {
    name: "actor.ip",
    aliases: &["ip"],
    ty: FieldType::Ip,
    description: "IPv4 or IPv6 address",
    exact: true,
    full_text: true,
    column: Some(7),
    personal: true,
    read: |r| r.actor.ip.map(FieldValue::Ip),
    ..BASE
};

/// `actor.user_agent`: the client's User-Agent.
pub const ACTOR_USER_AGENT: FieldSpec = FieldSpec {
    name: "actor.user_agent",
    ty: FieldType::Text(TextRule::Plain { max: 1024 }),
    description: "User agent",
    full_text: true,
    column: Some(8),
    personal: true,
    read: |r| r.actor.user_agent.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `actor.session_id`: the actor's session.
pub const ACTOR_SESSION_ID: FieldSpec = FieldSpec {
    name: "actor.session_id",
    aliases: &["session", "session_id"],
    ty: FieldType::Text(TextRule::Plain { max: 256 }),
    description: "Session id",
    exact: true,
    column: Some(9),
    personal: true,
    read: |r| r.actor.session_id.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `action`: what was done.
pub const ACTION: FieldSpec = FieldSpec {
    name: "action",
    ty: FieldType::Text(TextRule::Pattern {
        pattern: ACTION_PATTERN,
        max: Some(MAX_ACTION_LEN),
    }),
    input: Input::Required,
    description: "Dotted action name, e.g. user.password.change",
    exact: true,
    full_text: true,
    column: Some(10),
    read: |r| Some(FieldValue::Text(&r.action)),
    ..BASE
};

/// `category`: the coarse class of the action.
pub const CATEGORY: FieldSpec = FieldSpec {
    name: "category",
    ty: FieldType::Text(TextRule::Pattern {
        pattern: CATEGORY_PATTERN,
        max: None,
    }),
    description: "LOGIN, LOGOUT, CREATE, READ, UPDATE, DELETE, EXPORT, VIEW_PII, AUTHZ, ADMIN, \
                  CONFIG, …",
    exact: true,
    full_text: true,
    column: Some(11),
    read: |r| r.category.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `resource.type`: the kind of resource acted on.
pub const RESOURCE_TYPE: FieldSpec = FieldSpec {
    name: "resource.type",
    ty: FieldType::Text(TextRule::Plain { max: 64 }),
    input: Input::RequiredInParent,
    description: "Resource type, e.g. USER",
    exact: true,
    full_text: true,
    column: Some(12),
    read: |r| r.resource.as_ref().map(|x| FieldValue::Text(&x.kind)),
    ..BASE
};

/// `resource.id`: the resource acted on.
pub const RESOURCE_ID: FieldSpec = FieldSpec {
    name: "resource.id",
    aliases: &["resource"],
    ty: FieldType::Text(TextRule::Plain { max: 256 }),
    description: "Resource id",
    exact: true,
    full_text: true,
    column: Some(13),
    personal: true,
    read: |r| {
        r.resource
            .as_ref()
            .and_then(|x| x.id.as_deref())
            .map(FieldValue::Text)
    },
    ..BASE
};

/// `resource.name`: the resource's human-readable name.
pub const RESOURCE_NAME: FieldSpec = FieldSpec {
    name: "resource.name",
    ty: FieldType::Text(TextRule::Plain { max: 256 }),
    description: "Resource name",
    exact: true,
    full_text: true,
    column: Some(14),
    personal: true,
    read: |r| {
        r.resource
            .as_ref()
            .and_then(|x| x.name.as_deref())
            .map(FieldValue::Text)
    },
    ..BASE
};

/// `outcome`: how it ended.
pub const OUTCOME: FieldSpec = FieldSpec {
    name: "outcome",
    ty: FieldType::Enum(&Outcome::NAMES),
    input: Input::Required,
    description: "How the operation ended.",
    exact: true,
    full_text: true,
    column: Some(15),
    read: |r| Some(FieldValue::Text(r.outcome.as_str())),
    ..BASE
};

/// `reason`: why, in prose.
pub const REASON: FieldSpec = FieldSpec {
    name: "reason",
    ty: FieldType::Text(TextRule::Prose { max: 1024 }),
    description: "Why, in prose: tab, line feed and carriage return are the only control \
                  characters allowed",
    full_text: true,
    column: Some(16),
    read: |r| r.reason.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `request_id`: the request that caused the event.
pub const REQUEST_ID: FieldSpec = FieldSpec {
    name: "request_id",
    aliases: &["request"],
    ty: FieldType::Text(TextRule::Plain { max: 128 }),
    description: "Correlates with application logs",
    exact: true,
    column: Some(17),
    read: |r| r.request_id.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `trace_id`: the distributed trace.
pub const TRACE_ID: FieldSpec = FieldSpec {
    name: "trace_id",
    aliases: &["trace"],
    ty: FieldType::Text(TextRule::Plain { max: 128 }),
    description: "Distributed trace id",
    exact: true,
    column: Some(18),
    read: |r| r.trace_id.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `correlation_id`: ties together the events of one business operation.
pub const CORRELATION_ID: FieldSpec = FieldSpec {
    name: "correlation_id",
    aliases: &["correlation"],
    ty: FieldType::Text(TextRule::Plain { max: 128 }),
    description: "Groups related events",
    exact: true,
    column: Some(19),
    read: |r| r.correlation_id.as_deref().map(FieldValue::Text),
    ..BASE
};

/// `before`: the resource before the action.
pub const BEFORE: FieldSpec = FieldSpec {
    name: "before",
    ty: FieldType::Json,
    description: "Snapshot of the resource before the change (any JSON; null is the same as \
                  absent)",
    full_text: true,
    read: |r| r.before.as_ref().map(FieldValue::Json),
    ..BASE
};

/// `after`: the resource after the action.
pub const AFTER: FieldSpec = FieldSpec {
    name: "after",
    ty: FieldType::Json,
    description: "Snapshot of the resource after the change (any JSON; null is the same as \
                  absent)",
    full_text: true,
    read: |r| r.after.as_ref().map(FieldValue::Json),
    ..BASE
};

/// `metadata`: further context.
pub const METADATA: FieldSpec = FieldSpec {
    name: "metadata",
    ty: FieldType::JsonObject,
    description: "Anything else (a JSON object; null is the same as absent)",
    full_text: true,
    read: |r| r.metadata.as_ref().map(FieldValue::Object),
    ..BASE
};

/// Every field of schema v1, in canonical record order.
pub const FIELDS: &[FieldSpec] = &[
    SCHEMA_VERSION,
    ID,
    TENANT,
    TIME,
    RECEIVED_AT,
    KEY_ID,
    ACTOR_ID,
    ACTOR_TYPE,
    ACTOR_IP,
    ACTOR_USER_AGENT,
    ACTOR_SESSION_ID,
    ACTION,
    CATEGORY,
    RESOURCE_TYPE,
    RESOURCE_ID,
    RESOURCE_NAME,
    OUTCOME,
    REASON,
    REQUEST_ID,
    TRACE_ID,
    CORRELATION_ID,
    BEFORE,
    AFTER,
    METADATA,
];

/// The field with this canonical name (exactly, case-sensitive).
pub fn field(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The exact-match field the query language calls `name`: any of its
/// [`names`](FieldSpec::names), ASCII case-insensitive.
pub fn by_alias(name: &str) -> Option<&'static FieldSpec> {
    FIELDS
        .iter()
        .filter(|f| f.exact)
        .find(|f| f.names().any(|n| n.eq_ignore_ascii_case(name)))
}

/// The flat export columns, in column order.
pub fn flat_columns() -> &'static [&'static FieldSpec] {
    // Sorted once: exporters ask for every row.
    static COLUMNS: OnceLock<Vec<&'static FieldSpec>> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut columns: Vec<&'static FieldSpec> =
            FIELDS.iter().filter(|f| f.column.is_some()).collect();
        columns.sort_by_key(|f| f.column);
        columns
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{validate, IngestContext};

    /// The fields DESIGN.md ("The event (schema version 1)") lists, and what the stored record
    /// adds (the receive time and the ingesting key; the leaf index is not in the record).
    const DESIGN: [&str; 24] = [
        "id",
        "time",
        "tenant",
        "actor.id",
        "actor.type",
        "actor.ip",
        "actor.user_agent",
        "actor.session_id",
        "action",
        "category",
        "resource.type",
        "resource.id",
        "resource.name",
        "outcome",
        "reason",
        "request_id",
        "trace_id",
        "correlation_id",
        "before",
        "after",
        "metadata",
        "schema_version",
        "received_at",
        "key_id",
    ];

    /// A record carrying every field.
    fn full_record() -> Vec<u8> {
        let input = serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "id": "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
            "time": "2024-05-01T12:00:00.123+02:00",
            "tenant": "acme",
            "actor": {"id": "alice", "type": "user", "ip": "2001:db8::1",
                      "user_agent": "curl/8", "session_id": "s1"},
            "action": "user.update",
            "category": "UPDATE",
            "resource": {"type": "USER", "id": "u1", "name": "Alice"},
            "outcome": "SUCCESS",
            "reason": "asked\nnicely",
            "request_id": "r1",
            "trace_id": "t1",
            "correlation_id": "c1",
            "before": {"id": 1},
            "after": [1],
            "metadata": {"k": "v"},
        }))
        .unwrap();
        let ctx = IngestContext {
            received_at: time::macros::datetime!(2024-05-01 10:00:01 UTC),
            key_id: "k1",
            default_tenant: None,
            max_future_skew: time::Duration::minutes(5),
        };
        validate(input, &ctx).unwrap().record
    }

    /// The dotted paths of a canonical record's members, in the order they are written:
    /// top-level members, and the members of the objects one level down except the free-form
    /// ones (whose members are data, not fields).
    fn member_paths(record: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(record).unwrap();
        let mut paths = Vec::new();
        let mut depth = 0;
        let mut parent: Option<String> = None;
        let mut last_key = String::new();
        let (mut i, bytes) = (0, text.as_bytes());
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    // A string: find its closing quote (an escape is a backslash and the next
                    // character, or `\u` and four hex digits, which skipping two covers).
                    let start = i + 1;
                    i += 1;
                    while bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    let s = serde_json::from_str::<String>(&text[start - 1..=i]).unwrap();
                    if bytes.get(i + 1) == Some(&b':') {
                        match (depth, &parent) {
                            (1, _) => paths.push(s.clone()),
                            // A member of a container (`actor`, `resource`); the members of a
                            // field's value (`before`, `metadata`) are data.
                            (2, Some(p)) if field(p).is_none() => paths.push(format!("{p}.{s}")),
                            _ => {}
                        }
                        last_key = s;
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth == 2 {
                        parent = Some(last_key.clone());
                    }
                }
                b'}' | b']' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        // `actor` and `resource` are containers, not fields.
        paths.retain(|p| !matches!(p.as_str(), "actor" | "resource"));
        paths
    }

    #[test]
    fn no_two_fields_share_a_name_or_an_alias() {
        let mut seen = HashSet::new();
        for f in FIELDS {
            for name in f.names() {
                assert!(
                    seen.insert(name.to_ascii_lowercase()),
                    "{name} is used twice"
                );
            }
        }
        // `after:` and `before:` are the query language's time bounds, so no searchable field
        // may be called so (the `before` and `after` snapshots are not searched by name).
        for f in FIELDS.iter().filter(|f| f.exact) {
            assert!(
                f.names().all(|n| !matches!(n, "after" | "before")),
                "{} takes a name of the query language's time bounds",
                f.name
            );
        }
    }

    #[test]
    fn every_field_design_md_lists_is_declared_and_nothing_else() {
        let declared: HashSet<&str> = FIELDS.iter().map(|f| f.name).collect();
        let design: HashSet<&str> = DESIGN.into_iter().collect();
        assert_eq!(declared, design);
        assert_eq!(FIELDS.len(), DESIGN.len(), "no field declared twice");
    }

    /// The encoder is written out by hand for speed; this holds it to the registry: a record
    /// with every field has exactly the registry's members, in the registry's order.
    #[test]
    fn the_registry_is_in_canonical_record_order() {
        let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(member_paths(&full_record()), names);
    }

    #[test]
    fn every_field_reads_its_value_from_a_record() {
        let record = crate::Record::parse(&full_record()).unwrap();
        for f in FIELDS {
            let value = f
                .value(&record)
                .unwrap_or_else(|| panic!("{} not read", f.name));
            let kind_matches = match (f.ty, &value) {
                (FieldType::Integer(allowed), FieldValue::Integer(n)) => allowed.contains(n),
                (FieldType::Uuid, FieldValue::Uuid(_))
                | (FieldType::Text(_), FieldValue::Text(_))
                | (FieldType::Time, FieldValue::Time(_))
                | (FieldType::Ip, FieldValue::Ip(_))
                | (FieldType::Json, FieldValue::Json(_))
                | (FieldType::JsonObject, FieldValue::Object(_)) => true,
                (FieldType::Enum(names), FieldValue::Text(s)) => names.contains(s),
                _ => false,
            };
            assert!(kind_matches, "{}: {value:?} is not a {:?}", f.name, f.ty);
            let json = matches!(f.ty, FieldType::Json | FieldType::JsonObject);
            assert_eq!(value.as_text().is_some(), !json, "{}", f.name);
        }
        // Read values are the record's, written as the record writes them.
        let text = |f: &FieldSpec| f.value(&record).unwrap().as_text().unwrap().into_owned();
        assert_eq!(text(&ID), "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f");
        assert_eq!(text(&TIME), "2024-05-01T10:00:00.123Z");
        assert_eq!(text(&ACTOR_IP), "2001:db8::1");
        assert_eq!(text(&RESOURCE_NAME), "Alice");

        let minimal = crate::Record::parse(
            br#"{"schema_version":1,"id":"0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f","tenant":"a","time":"2024-05-01T10:00:00.000Z","received_at":"2024-05-01T10:00:00.000Z","key_id":"k","actor":{"id":"x"},"action":"a","outcome":"DENIED"}"#,
        )
        .unwrap();
        for f in FIELDS {
            let always = matches!(
                f.name,
                "schema_version"
                    | "id"
                    | "tenant"
                    | "time"
                    | "received_at"
                    | "key_id"
                    | "actor.id"
                    | "action"
                    | "outcome"
            );
            assert_eq!(f.value(&minimal).is_some(), always, "{}", f.name);
        }
    }

    #[test]
    fn flat_columns_are_numbered_without_gaps() {
        let numbers: Vec<usize> = flat_columns().iter().map(|f| f.column.unwrap()).collect();
        assert_eq!(numbers, (0..numbers.len()).collect::<Vec<_>>());
        // JSON values have no flat form: they stay in the record column.
        assert!(flat_columns().iter().all(|f| f.is_string()));
    }

    #[test]
    fn flags_agree_with_types() {
        for f in FIELDS {
            if f.time_bounds {
                assert!(f.is_time(), "{}", f.name);
            }
            if f.exact {
                assert!(f.is_string(), "{}: exact match needs one string", f.name);
            }
            assert!(
                f.aliases.iter().all(|a| *a != f.name),
                "{}: the canonical name is not an alias",
                f.name
            );
            assert!(!f.description.is_empty(), "{}", f.name);
            if let FieldType::Text(rule) = f.ty {
                // Every client-sent string is bounded: by a length or by its pattern.
                assert!(
                    rule.max_chars().is_some()
                        || matches!(rule, TextRule::Pattern { .. })
                        || f.input == Input::Server,
                    "{}",
                    f.name
                );
            }
            // Parents of nested fields are containers the schema knows: actor and resource.
            if let Some((parent, _)) = f.name.split_once('.') {
                assert!(matches!(parent, "actor" | "resource"), "{}", f.name);
            }
        }
        assert_eq!(FIELDS.iter().filter(|f| f.time_bounds).count(), 1);
    }

    /// The rule for personal data (module documentation), field by field.
    #[test]
    fn personal_fields_are_the_documented_ones() {
        let personal: Vec<&str> = FIELDS
            .iter()
            .filter(|f| f.personal)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            personal,
            [
                "actor.id",
                "actor.ip",
                "actor.user_agent",
                "actor.session_id",
                "resource.id",
                "resource.name",
            ]
        );
    }

    #[test]
    fn aliases_resolve_case_insensitively_to_exact_fields_only() {
        assert_eq!(by_alias("Actor").unwrap().name, "actor.id");
        assert_eq!(by_alias("SESSION_ID").unwrap().name, "actor.session_id");
        assert_eq!(by_alias("key").unwrap().name, "key_id");
        assert!(by_alias("reason").is_none(), "not an exact-match field");
        assert!(by_alias("time").is_none(), "searched with after:/before:");
        assert!(by_alias("after").is_none());
    }
}
