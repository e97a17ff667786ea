//! The typed query: what the parser produces and every index engine consumes.

use std::net::IpAddr;

use tally_event::fields::{self, FieldSpec};

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

/// A searchable field of the event schema: one per exact-match field of the schema registry
/// ([`tally_event::fields`]), which says its names, aliases and type ([`Field::spec`]).
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
    /// `session`, `session_id` or `actor.session_id`.
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
    /// Every field, in the order error messages list them (and the index lays out its
    /// fields). A test holds it to the registry's exact-match fields.
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

    /// The field's entry in the schema registry: names, type, flags, how to read it from a
    /// record.
    pub fn spec(self) -> &'static FieldSpec {
        match self {
            Field::Id => &fields::ID,
            Field::ActorId => &fields::ACTOR_ID,
            Field::ActorType => &fields::ACTOR_TYPE,
            Field::ActorIp => &fields::ACTOR_IP,
            Field::SessionId => &fields::ACTOR_SESSION_ID,
            Field::Action => &fields::ACTION,
            Field::Category => &fields::CATEGORY,
            Field::Outcome => &fields::OUTCOME,
            Field::ResourceType => &fields::RESOURCE_TYPE,
            Field::ResourceId => &fields::RESOURCE_ID,
            Field::ResourceName => &fields::RESOURCE_NAME,
            Field::RequestId => &fields::REQUEST_ID,
            Field::TraceId => &fields::TRACE_ID,
            Field::CorrelationId => &fields::CORRELATION_ID,
            Field::KeyId => &fields::KEY_ID,
        }
    }

    /// The canonical name, as in the event schema (`actor.id`, `resource.type`, …).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Every name the query language accepts for this field: the registry's aliases (short
    /// ones first), then the canonical [`name`](Field::name).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.spec().names()
    }

    /// The field called `name` (any of its [`names`](Field::names), ASCII case-insensitive),
    /// if any. `after` and `before` are time bounds, not fields.
    pub fn from_name(name: &str) -> Option<Field> {
        let spec = fields::by_alias(name)?;
        Field::ALL.into_iter().find(|f| f.spec().name == spec.name)
    }

    /// Whether values of this field are strings (exact or prefix); false only for the
    /// address field ([`Field::ActorIp`]), whose values are [`Value::Cidr`] blocks.
    pub fn is_string(self) -> bool {
        !self.spec().is_ip()
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
    /// A masking token (`actor:tally:pii:…`) of a personal field: the value it stands for,
    /// as readers without the `read:pii` scope see and search it.
    Token(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query language searches exactly the registry's exact-match fields, each once.
    #[test]
    fn the_fields_are_the_registrys_exact_match_fields() {
        let mut ours: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        let mut registry: Vec<&str> = fields::FIELDS
            .iter()
            .filter(|f| f.exact)
            .map(|f| f.name)
            .collect();
        ours.sort_unstable();
        registry.sort_unstable();
        assert_eq!(ours, registry);
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
    }
}
