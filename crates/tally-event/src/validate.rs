//! Validation of one [`EventInput`] against schema v1, producing the canonical record.

use std::net::IpAddr;

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::canonical::{ActorView, RecordView, ResourceView};
use crate::fields::{self, FieldSpec, FieldType, TextRule};
use crate::input::{ActorInput, EventInput, ResourceInput};
use crate::schema::{self, ActorType, Outcome};
use crate::{is_valid_tenant, scan, timestamp, MAX_RECORD_BYTES, SCHEMA_VERSION};

/// What the server knows about an ingest request that the event itself does not say.
#[derive(Debug, Clone, Copy)]
pub struct IngestContext<'a> {
    /// When the server received the request; written into the record as `received_at`
    /// (truncated to milliseconds) and the reference point for `max_future_skew`.
    /// Must lie in the years 1970..=9999.
    pub received_at: OffsetDateTime,
    /// Id of the API key that submitted the event; written into the record as `key_id`.
    pub key_id: &'a str,
    /// Tenant for events that do not name one (usually the API key's tenant). Whether the key
    /// may write to a tenant the event names is the caller's decision, not this crate's.
    pub default_tenant: Option<&'a str>,
    /// How far an event's `time` may lie after `received_at`, to absorb client clock skew.
    pub max_future_skew: Duration,
}

/// One broken rule: which field, and what it must be.
///
/// Serialises as `{"field": "...", "rule": "..."}` for error responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// Dotted path of the field, such as `actor.ip`; empty for the event as a whole.
    pub field: String,
    /// The rule the value breaks, phrased as what it must be, such as
    /// `must be an IPv4 or IPv6 address`.
    pub rule: String,
}

/// An event that passed validation, in its stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// The event id: the client's, normalised to lowercase, or a fresh UUIDv7.
    pub id: Uuid,
    /// Whether the client supplied `id` (and a retry with the same id is expected to be
    /// deduplicated, see [`same_submission`](crate::same_submission)).
    pub id_supplied: bool,
    /// The tenant whose log the event belongs in.
    pub tenant: String,
    /// The canonical record bytes, at most [`MAX_RECORD_BYTES`] long.
    pub record: Vec<u8>,
}

const REQUIRED: &str = "is required";

/// Checks every field of `input` against schema v1 and, if all rules hold, encodes the
/// canonical record.
///
/// On failure returns every broken rule, at most one per field, in schema order. The size limit
/// of the whole record ([`MAX_RECORD_BYTES`], reported with an empty `field`) can only be
/// checked once everything else is valid, because only then is there a record to measure.
pub fn validate(input: EventInput, ctx: &IngestContext<'_>) -> Result<ValidEvent, Vec<FieldError>> {
    let mut errors = Errors::default();

    if input.schema_version.is_some_and(|v| v != SCHEMA_VERSION) {
        errors.add("schema_version", "must be 1");
    }

    let supplied_id = input.id.as_deref().and_then(|id| {
        let parsed = parse_uuid(id);
        if parsed.is_none() {
            errors.add("id", "must be a UUID in 8-4-4-4-12 hexadecimal form");
        }
        parsed
    });

    let time_ms = check_time(&mut errors, input.time.as_deref(), ctx);
    let received_at_ms = timestamp::unix_ms(ctx.received_at);
    if !timestamp::in_range(received_at_ms) {
        errors.add(
            "received_at",
            "the server clock must be between 1970 and 9999",
        );
    }

    let tenant = input.tenant.as_deref().or(ctx.default_tenant);
    match tenant {
        None => errors.add("tenant", "is required (this API key has no default tenant)"),
        Some(t) if !is_valid_tenant(t) => {
            errors.add("tenant", "must match ^[a-z0-9][a-z0-9_-]{0,62}$")
        }
        Some(_) => {}
    }

    let actor = check_actor(&mut errors, input.actor.as_ref());

    let action = input.action.as_deref();
    match action {
        None => errors.add("action", REQUIRED),
        Some(a) if !schema::is_valid_action(a) => errors.add(
            "action",
            "must be 1 to 128 characters: segments of A-Z a-z 0-9 _ - separated by single dots",
        ),
        Some(_) => {}
    }

    let category = input.category.as_deref();
    if category.is_some_and(|c| !schema::is_valid_category(c)) {
        errors.add("category", "must match ^[A-Z][A-Z0-9_]{0,31}$");
    }

    let resource = input
        .resource
        .as_ref()
        .and_then(|r| check_resource(&mut errors, r));

    let outcome = match input.outcome.as_deref() {
        None => {
            errors.add("outcome", REQUIRED);
            None
        }
        Some(o) => {
            let parsed = Outcome::from_name(o);
            if parsed.is_none() {
                errors.add(
                    "outcome",
                    "must be one of SUCCESS, FAILURE, UNAUTHORIZED, DENIED",
                );
            }
            parsed
        }
    };

    check_text_field(&mut errors, &fields::REASON, input.reason.as_deref());
    check_text_field(
        &mut errors,
        &fields::REQUEST_ID,
        input.request_id.as_deref(),
    );
    check_text_field(&mut errors, &fields::TRACE_ID, input.trace_id.as_deref());
    check_text_field(
        &mut errors,
        &fields::CORRELATION_ID,
        input.correlation_id.as_deref(),
    );

    // Every `None` below has recorded an error above; the `let ... else` only proves it to the
    // compiler.
    let (Some(time_ms), Some(tenant), Some(actor), Some(action), Some(outcome), true) =
        (time_ms, tenant, actor, action, outcome, errors.0.is_empty())
    else {
        return Err(errors.0);
    };

    // Deferred until the event is known to be valid: generating a v7 UUID reads the clock.
    let id = supplied_id.unwrap_or_else(Uuid::now_v7);
    let record = RecordView {
        schema_version: SCHEMA_VERSION,
        id,
        tenant,
        time_ms,
        received_at_ms,
        key_id: ctx.key_id,
        actor,
        action,
        category,
        resource,
        outcome,
        reason: input.reason.as_deref(),
        request_id: input.request_id.as_deref(),
        trace_id: input.trace_id.as_deref(),
        correlation_id: input.correlation_id.as_deref(),
        before: input.before.as_ref(),
        after: input.after.as_ref(),
        metadata: input.metadata.as_ref(),
    }
    .encode();

    // Every string is written with its opening quote: one scan of the record rules out the
    // reserved prefixes on the common path, and only a hit pays for finding the field.
    if memfind(&record, b"\"tally:") {
        if let Some(field) = reserved_string_field(&input) {
            return Err(vec![FieldError {
                field,
                rule: "must not start with tally:sealed:, tally:pii:, tally:erased or \
                       tally:unavailable (reserved for what Tally shows in place of personal data)"
                    .into(),
            }]);
        }
    }

    if record.len() > MAX_RECORD_BYTES {
        return Err(vec![FieldError {
            field: String::new(),
            rule: format!(
                "the canonical record must be at most {MAX_RECORD_BYTES} bytes (this one is {})",
                record.len()
            ),
        }]);
    }

    Ok(ValidEvent {
        id,
        id_supplied: supplied_id.is_some(),
        tenant: tenant.to_owned(),
        record,
    })
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_reserved(s: &str) -> bool {
    crate::RESERVED_STRING_PREFIXES
        .iter()
        .any(|p| s.starts_with(p))
}

/// The dotted path of the first string value that starts with a reserved prefix.
fn reserved_string_field(input: &EventInput) -> Option<String> {
    let actor = input.actor.as_ref();
    let resource = input.resource.as_ref();
    let typed = [
        ("tenant", input.tenant.as_deref()),
        ("actor.id", actor.and_then(|a| a.id.as_deref())),
        (
            "actor.user_agent",
            actor.and_then(|a| a.user_agent.as_deref()),
        ),
        (
            "actor.session_id",
            actor.and_then(|a| a.session_id.as_deref()),
        ),
        ("resource.type", resource.and_then(|r| r.kind.as_deref())),
        ("resource.id", resource.and_then(|r| r.id.as_deref())),
        ("resource.name", resource.and_then(|r| r.name.as_deref())),
        ("reason", input.reason.as_deref()),
        ("request_id", input.request_id.as_deref()),
        ("trace_id", input.trace_id.as_deref()),
        ("correlation_id", input.correlation_id.as_deref()),
    ];
    if let Some((name, _)) = typed.iter().find(|(_, v)| v.is_some_and(is_reserved)) {
        return Some((*name).to_string());
    }
    fn within(path: String, value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::String(s) if is_reserved(s) => Some(path),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| within(format!("{path}[{i}]"), v)),
            serde_json::Value::Object(members) => members
                .iter()
                .find_map(|(k, v)| within(format!("{path}.{k}"), v)),
            _ => None,
        }
    }
    let metadata = input.metadata.clone().map(serde_json::Value::Object);
    let found = [
        ("before", input.before.as_ref()),
        ("after", input.after.as_ref()),
        ("metadata", metadata.as_ref()),
    ]
    .into_iter()
    .find_map(|(name, v)| v.and_then(|v| within(name.to_string(), v)));
    found
}

/// Errors collected so far. `Vec::new` does not allocate, so the valid path pays nothing.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, rule: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            rule: rule.into(),
        });
    }
}

/// Accepts only the hyphenated 36-character form, in any case: the other forms `uuid` parses
/// (braced, URN, bare hex) would let one id be written several ways in client code and logs.
fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() == uuid::fmt::Hyphenated::LENGTH {
        Uuid::try_parse(s).ok()
    } else {
        None
    }
}

/// Returns the event time in Unix milliseconds, truncated.
fn check_time(errors: &mut Errors, time: Option<&str>, ctx: &IngestContext<'_>) -> Option<i64> {
    let Some(text) = time else {
        errors.add("time", REQUIRED);
        return None;
    };
    let Some(t) = timestamp::parse_rfc3339(text) else {
        errors.add(
            "time",
            "must be an RFC 3339 timestamp with a zone offset, such as 2024-05-01T12:00:00.000Z",
        );
        return None;
    };
    let ms = timestamp::unix_ms(t);
    if !timestamp::in_range(ms) {
        errors.add(
            "time",
            "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z",
        );
        return None;
    }
    // Compared at full precision: truncation must not let a slightly-too-late time through.
    if t - ctx.received_at > ctx.max_future_skew {
        errors.add(
            "time",
            format!(
                "must not be more than {} after the server's receive time",
                describe(ctx.max_future_skew)
            ),
        );
        return None;
    }
    Some(ms)
}

/// A duration as people write it in configuration: `300 s`, `1.5 s`.
fn describe(d: Duration) -> String {
    if d.subsec_milliseconds() == 0 {
        format!("{} s", d.whole_seconds())
    } else {
        format!("{:.3} s", d.as_seconds_f64())
    }
}

fn check_actor<'a>(errors: &mut Errors, actor: Option<&'a ActorInput>) -> Option<ActorView<'a>> {
    let Some(actor) = actor else {
        errors.add("actor", REQUIRED);
        return None;
    };
    let id = actor.id.as_deref();
    if id.is_none() {
        errors.add(fields::ACTOR_ID.name, REQUIRED);
    }
    check_text_field(errors, &fields::ACTOR_ID, id);

    let kind = actor.kind.as_deref().and_then(|k| {
        let parsed = ActorType::from_name(k);
        if parsed.is_none() {
            errors.add("actor.type", "must be one of user, service, system");
        }
        parsed
    });
    let ip = actor.ip.as_deref().and_then(|ip| {
        let parsed = ip.parse::<IpAddr>().ok();
        if parsed.is_none() {
            errors.add("actor.ip", "must be an IPv4 or IPv6 address");
        }
        parsed
    });
    check_text_field(
        errors,
        &fields::ACTOR_USER_AGENT,
        actor.user_agent.as_deref(),
    );
    check_text_field(
        errors,
        &fields::ACTOR_SESSION_ID,
        actor.session_id.as_deref(),
    );

    Some(ActorView {
        id: id?,
        kind,
        ip,
        user_agent: actor.user_agent.as_deref(),
        session_id: actor.session_id.as_deref(),
    })
}

fn check_resource<'a>(
    errors: &mut Errors,
    resource: &'a ResourceInput,
) -> Option<ResourceView<'a>> {
    let kind = resource.kind.as_deref();
    if kind.is_none() {
        errors.add(
            fields::RESOURCE_TYPE.name,
            "is required when resource is given",
        );
    }
    check_text_field(errors, &fields::RESOURCE_TYPE, kind);
    check_text_field(errors, &fields::RESOURCE_ID, resource.id.as_deref());
    check_text_field(errors, &fields::RESOURCE_NAME, resource.name.as_deref());
    Some(ResourceView {
        kind: kind?,
        id: resource.id.as_deref(),
        name: resource.name.as_deref(),
    })
}

/// Checks a string field with a length rule, if present, against its registry entry:
/// non-empty, at most its maximum of characters, no control characters (identifiers and names
/// end up in indexes, CSV exports, syslog lines and terminals, where a stray control character
/// could forge or hide output) except line breaks and tabs in prose.
fn check_text_field(errors: &mut Errors, field: &FieldSpec, value: Option<&str>) {
    let Some(value) = value else {
        return;
    };
    let checked = match field.ty {
        FieldType::Text(TextRule::Prose { max }) => {
            check_text(value, max, |c| matches!(c, '\t' | '\n' | '\r'))
        }
        FieldType::Text(rule) => {
            check_text(value, rule.max_chars().unwrap_or(usize::MAX), |_| false)
        }
        // Not reached: only text fields come here (their registry entries say so).
        _ => check_text(value, usize::MAX, |_| false),
    };
    if let Err(rule) = checked {
        errors.add(field.name, rule);
    }
}

fn check_text(
    value: &str,
    max: usize,
    allowed_control: impl Fn(char) -> bool,
) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    // A char is at least one byte, so only long strings need counting.
    if value.len() > max && value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if has_forbidden_control(value, &allowed_control) {
        return Err(if allowed_control('\n') {
            "must not contain control characters other than tab, line feed and carriage return"
                .to_owned()
        } else {
            "must not contain control characters".to_owned()
        });
    }
    Ok(())
}

/// Whether `s` contains a Unicode control character (category Cc) not in `allowed`.
fn has_forbidden_control(s: &str, allowed: &impl Fn(char) -> bool) -> bool {
    // Cc is U+0000..=U+001F, U+007F and U+0080..=U+009F; the last block is encoded as
    // 0xC2 0x80..=0x9F, so a byte scan finds candidates without decoding UTF-8. The word-wise
    // pre-check settles the usual case of no candidate at all.
    if !scan::may_contain_control(s) {
        return false;
    }
    let bytes = s.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let control = b < 0x20
            || b == 0x7f
            || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)));
        control && !(b < 0x80 && allowed(char::from(b)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_scan_matches_char_is_control() {
        for c in (0..0x300u32).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            assert_eq!(
                has_forbidden_control(&s, &|_| false),
                c.is_control(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn durations_are_described_readably() {
        assert_eq!(describe(Duration::minutes(5)), "300 s");
        assert_eq!(describe(Duration::milliseconds(1500)), "1.500 s");
    }
}
