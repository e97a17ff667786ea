//! Property tests: canonical encoding is a function of the event's content alone, and every
//! record `validate` produces reads back to the same bytes.

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value};
use tally_event::{
    is_canonical, parse_body, same_submission, validate, ActorInput, BodyFormat, EventInput,
    Record, ResourceInput,
};

/// Any string, including control characters, quotes, backslashes and astral characters.
fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

/// Any finite JSON number: small and large integers and arbitrary doubles.
fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        (-1000i32..1000, 0u32..8).prop_map(|(m, q)| Value::from(f64::from(m) / f64::from(1 << q))),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            any_object(inner).prop_map(Value::Object),
        ]
    })
}

fn any_object(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((any_text(), values), 0..6)
        .prop_map(|members| members.into_iter().collect())
}

/// Strings that pass the identifier rules: non-empty, no control characters.
fn ident(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        any::<char>().prop_filter("no control", |c| !c.is_control()),
        1..=max_chars.min(20),
    )
    .prop_map(String::from_iter)
}

fn maybe<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

/// Valid events with every optional field sometimes present, and times in any offset.
fn valid_event() -> impl Strategy<Value = EventInput> {
    let time = (
        0i64..4_000_000_000,
        0u32..1_000_000_000,
        -23i32..=23,
        0u32..60,
    )
        .prop_map(|(secs, nanos, hours, minutes)| {
            let offset =
                time::UtcOffset::from_hms(hours as i8, minutes as i8 * hours.signum() as i8, 0)
                    .unwrap();
            let t = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(offset);
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        });
    let actor = (
        ident(256),
        maybe(prop::sample::select(vec!["user", "service", "system"])),
        maybe(prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string().to_uppercase()),
        ]),
        maybe(ident(1024)),
        maybe(ident(256)),
    )
        .prop_map(|(id, kind, ip, user_agent, session_id)| ActorInput {
            id: Some(id),
            kind: kind.map(String::from),
            ip,
            user_agent,
            session_id,
        });
    let resource =
        (ident(64), maybe(ident(256)), maybe(ident(256))).prop_map(|(kind, id, name)| {
            ResourceInput {
                kind: Some(kind),
                id,
                name,
            }
        });
    let ids = (
        maybe(any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())),
        maybe("[a-z0-9][a-z0-9_-]{0,20}"),
        "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,8}){0,3}",
        maybe("[A-Z][A-Z0-9_]{0,10}"),
        prop::sample::select(vec!["SUCCESS", "FAILURE", "UNAUTHORIZED", "DENIED"]),
    );
    let texts = (
        maybe(
            prop::collection::vec(
                any::<char>().prop_filter("reason chars", |c| {
                    !c.is_control() || matches!(c, '\n' | '\t' | '\r')
                }),
                1..40,
            )
            .prop_map(String::from_iter),
        ),
        maybe(ident(128)),
        maybe(ident(128)),
        maybe(ident(128)),
    );
    let free = (
        maybe(any_value().prop_filter("null is absent", |v| !v.is_null())),
        maybe(any_value().prop_filter("null is absent", |v| !v.is_null())),
        maybe(any_object(any_value())),
    );
    (
        time,
        actor,
        maybe(resource),
        ids,
        texts,
        free,
        maybe(Just(1u32)),
    )
        .prop_map(
            |(
                time,
                actor,
                resource,
                (id, tenant, action, category, outcome),
                (reason, request_id, trace_id, correlation_id),
                (before, after, metadata),
                schema_version,
            )| {
                EventInput {
                    schema_version,
                    id,
                    time: Some(time),
                    tenant,
                    actor: Some(actor),
                    action: Some(action),
                    category,
                    resource,
                    outcome: Some(outcome.to_string()),
                    reason,
                    request_id,
                    trace_id,
                    correlation_id,
                    before,
                    after,
                    metadata,
                }
            },
        )
}

/// The common context, but with any event time allowed: generated times reach past 2096.
fn ctx() -> tally_event::IngestContext<'static> {
    tally_event::IngestContext {
        max_future_skew: time::Duration::MAX,
        ..common::ctx()
    }
}

fn encode(value: &Value) -> Vec<u8> {
    // Through the public API: a free-form value is encoded as `before` of a minimal event, and
    // the member is cut back out of the record.
    let mut input = common::minimal();
    input.id = Some("936da01f-9abd-4d9d-80c7-02af85c822a8".into());
    input.before = Some(value.clone());
    let record = validate(input, &common::ctx()).unwrap().record;
    let start = record
        .windows(10)
        .position(|w| w == b",\"before\":")
        .unwrap()
        + 10;
    record[start..record.len() - 1].to_vec()
}

/// Rewrites `value` with every object's members in reverse order of their keys, as JSON text.
fn reversed_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| b.0.cmp(a.0));
            let inner: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed_json(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(reversed_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn free_form_encoding_is_stable(value in any_value().prop_filter("null is absent", |v| !v.is_null())) {
        let once = encode(&value);
        let reparsed: Value = serde_json::from_slice(&once).unwrap();
        prop_assert_eq!(encode(&reparsed), once);
    }

    #[test]
    fn member_order_does_not_matter(value in any_value().prop_filter("null is absent", |v| !v.is_null())) {
        let reversed: Value = serde_json::from_str(&reversed_json(&value)).unwrap();
        prop_assert_eq!(encode(&reversed), encode(&value));
    }

    #[test]
    fn validated_records_are_canonical(input in valid_event()) {
        let valid = validate(input.clone(), &ctx()).map_err(|e| TestCaseError::fail(format!("{e:?}")));
        let valid = valid?;
        prop_assert!(valid.record.len() <= tally_event::MAX_RECORD_BYTES);
        prop_assert!(is_canonical(&valid.record), "{}", String::from_utf8_lossy(&valid.record));
        let record = Record::parse(&valid.record).unwrap();
        prop_assert_eq!(record.to_bytes(), valid.record.clone());
        prop_assert_eq!(record.id, valid.id);
        prop_assert_eq!(&record.tenant, &valid.tenant);
        prop_assert_eq!(valid.id_supplied, input.id.is_some());

        // A retry of the same input is the same submission.
        let again = validate(input.clone(), &ctx()).unwrap();
        if valid.id_supplied {
            prop_assert_eq!(&again.record, &valid.record);
        }
        let mut retry = Record::parse(&again.record).unwrap();
        retry.id = record.id;
        prop_assert!(same_submission(&valid.record, &retry.to_bytes()));
    }

    #[test]
    fn serialized_inputs_parse_back(inputs in prop::collection::vec(valid_event(), 1..5)) {
        let array = serde_json::to_vec(&inputs).unwrap();
        prop_assert_eq!(&parse_body(&array, BodyFormat::Json, 10).unwrap(), &inputs);
        let mut lines = Vec::new();
        for input in &inputs {
            serde_json::to_writer(&mut lines, input).unwrap();
            lines.extend_from_slice(b"\n");
        }
        prop_assert_eq!(&parse_body(&lines, BodyFormat::Ndjson, 10).unwrap(), &inputs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_body(&bytes, BodyFormat::Json, 10);
        let _ = parse_body(&bytes, BodyFormat::Ndjson, 10);
        let _ = is_canonical(&bytes);
        let _ = Record::parse(&bytes);
    }
}
