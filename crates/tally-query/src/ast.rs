//! The typed query: what the parser produces and every index engine consumes.

use std::net::IpAddr;

/// A byte range in the query text, for error messages and highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A whole query: every term must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The terms, in the order written.
    pub terms: Vec<Term>,
}

/// One term, possibly negated (`-field:value`, `-word`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// True when the term must NOT hold.
    pub negated: bool,
    /// What the term tests.
    pub kind: TermKind,
    /// Where it was written.
    pub span: Span,
}

/// What a term tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermKind {
    /// The field equals any of the values (`a,b` is OR).
    Field {
        /// The field.
        field: Field,
        /// The alternatives; at least one.
        values: Vec<Value>,
    },
    /// Free text: every word of it must occur in some string of the event (including
    /// `before`, `after` and `metadata`); a quoted phrase must occur as a phrase.
    Text {
        /// The words or the phrase, as written (not yet tokenised).
        text: String,
        /// Whether it was quoted (a phrase).
        phrase: bool,
    },
    /// The event's `time` is at or after this instant (`after:`).
    After(TimeBound),
    /// The event's `time` is before this instant (`before:`).
    Before(TimeBound),
}

/// A time bound as written: absolute, or relative to the moment the query runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// An absolute instant, in Unix milliseconds (UTC).
    At(i64),
    /// That many milliseconds before now (`after:30d`, `before:1h`).
    Ago(i64),
}

impl TimeBound {
    /// The instant in Unix milliseconds, given the current time.
    pub fn resolve(&self, now_ms: i64) -> i64 {
        match *self {
            TimeBound::At(ms) => ms,
            TimeBound::Ago(ms) => now_ms.saturating_sub(ms),
        }
    }
}

/// A searchable field of the event schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `id`: the event id.
    Id,
    /// `actor` or `actor.id`.
    ActorId,
    /// `actor.type`: user, service, system.
    ActorType,
    /// `ip` or `actor.ip`: an address or a CIDR block.
    ActorIp,
    /// `session` or `actor.session_id`.
    SessionId,
    /// `action`: exact or `prefix.*`.
    Action,
    /// `category`.
    Category,
    /// `outcome`.
    Outcome,
    /// `resource.type`.
    ResourceType,
    /// `resource` or `resource.id`.
    ResourceId,
    /// `resource.name`.
    ResourceName,
    /// `request` or `request_id`.
    RequestId,
    /// `trace` or `trace_id`.
    TraceId,
    /// `correlation` or `correlation_id`.
    CorrelationId,
    /// `key` or `key_id`: the API key that ingested the event.
    KeyId,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 15] = [
        Field::Id,
        Field::ActorId,
        Field::ActorType,
        Field::ActorIp,
        Field::SessionId,
        Field::Action,
        Field::Category,
        Field::Outcome,
        Field::ResourceType,
        Field::ResourceId,
        Field::ResourceName,
        Field::RequestId,
        Field::TraceId,
        Field::CorrelationId,
        Field::KeyId,
    ];

    /// The canonical name, as in the event schema (`actor.id`, `resource.type`, …).
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::ActorId => "actor.id",
            Field::ActorType => "actor.type",
            Field::ActorIp => "actor.ip",
            Field::SessionId => "actor.session_id",
            Field::Action => "action",
            Field::Category => "category",
            Field::Outcome => "outcome",
            Field::ResourceType => "resource.type",
            Field::ResourceId => "resource.id",
            Field::ResourceName => "resource.name",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
            Field::CorrelationId => "correlation_id",
            Field::KeyId => "key_id",
        }
    }

    /// Every name the query language accepts for this field, the canonical [`name`](Field::name)
    /// among them (short aliases first, as listed in the crate documentation).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::Id => &["id"],
            Field::ActorId => &["actor", "actor.id"],
            Field::ActorType => &["actor.type"],
            Field::ActorIp => &["ip", "actor.ip"],
            Field::SessionId => &["session", "session_id", "actor.session_id"],
            Field::Action => &["action"],
            Field::Category => &["category"],
            Field::Outcome => &["outcome"],
            Field::ResourceType => &["resource.type"],
            Field::ResourceId => &["resource", "resource.id"],
            Field::ResourceName => &["resource.name"],
            Field::RequestId => &["request", "request_id"],
            Field::TraceId => &["trace", "trace_id"],
            Field::CorrelationId => &["correlation", "correlation_id"],
            Field::KeyId => &["key", "key_id"],
        }
    }

    /// The field called `name` (any of its [`aliases`](Field::aliases), ASCII
    /// case-insensitive), if any. `after` and `before` are time bounds, not fields.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.aliases().iter().any(|a| a.eq_ignore_ascii_case(name)))
    }

    /// Whether values of this field are strings (exact or prefix); false only for
    /// [`Field::ActorIp`], whose values are [`Value::Cidr`] blocks.
    pub fn is_string(self) -> bool {
        self != Field::ActorIp
    }
}

/// One alternative value of a field term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Equals exactly (after the field's normalisation: outcome and category upper-case,
    /// actor.type lower-case, ids of UUIDs lower-case).
    Exact(String),
    /// Starts with (written `prefix*`, e.g. `action:user.*` gives prefix `user.`).
    Prefix(String),
    /// An IP address block (`ip:203.0.113.0/24`; a plain address is a /32 or /128).
    Cidr {
        /// The network address (host bits zero).
        network: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
}
