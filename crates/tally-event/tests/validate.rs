//! Every rule of schema v1: the right field path and rule for each invalid value, and the
//! boundaries that must still pass.

mod common;

use common::*;
use serde_json::json;
use tally_event::{validate, IngestContext, Record, MAX_RECORD_BYTES};
use time::macros::datetime;
use time::Duration;

#[test]
fn minimal_event_is_accepted_with_defaults() {
    let valid = validate(minimal(), &ctx()).unwrap();
    assert!(!valid.id_supplied);
    assert_eq!(valid.id.get_version_num(), 7);
    assert_eq!(valid.tenant, "acme");
    let record = Record::parse(&valid.record).unwrap();
    assert_eq!(record.id, valid.id);
    assert_eq!(record.tenant, "acme");
    assert_eq!(record.key_id, "key-1");
    assert_eq!(record.received_at, datetime!(2024-05-01 10:00:01.234 UTC));
}

#[test]
fn assigned_ids_are_distinct() {
    let a = validate(minimal(), &ctx()).unwrap();
    let b = validate(minimal(), &ctx()).unwrap();
    assert_ne!(a.id, b.id);
}

#[test]
fn schema_version() {
    assert_accepted(&minimal_with("schema_version", json!(1)));
    assert_rejected(
        &minimal_with("schema_version", json!(2)),
        "schema_version",
        "must be 1",
    );
    assert_rejected(
        &minimal_with("schema_version", json!(0)),
        "schema_version",
        "must be 1",
    );
}

#[test]
fn supplied_id_is_normalised_to_lowercase() {
    let json = minimal_with("id", json!("0190F5A2-7C1B-7DEF-8ABC-0123456789AB"));
    let valid = check(&json).unwrap();
    assert!(valid.id_supplied);
    assert_eq!(valid.id.to_string(), "0190f5a2-7c1b-7def-8abc-0123456789ab");
    let record = String::from_utf8(valid.record).unwrap();
    assert!(
        record.contains(r#""id":"0190f5a2-7c1b-7def-8abc-0123456789ab""#),
        "{record}"
    );
}

#[test]
fn any_uuid_version_is_accepted() {
    for id in [
        "00000000-0000-0000-0000-000000000000",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8", // v1
        "936da01f-9abd-4d9d-80c7-02af85c822a8", // v4
    ] {
        assert_accepted(&minimal_with("id", json!(id)));
    }
}

#[test]
fn id_must_be_a_hyphenated_uuid() {
    for bad in [
        "",
        "not-a-uuid",
        "936da01f9abd4d9d80c702af85c822a8",
        "{936da01f-9abd-4d9d-80c7-02af85c822a8}",
        "urn:uuid:936da01f-9abd-4d9d-80c7-02af85c822a8",
        "936da01f-9abd-4d9d-80c7-02af85c822ag",
        " 936da01f-9abd-4d9d-80c7-02af85c822a8",
    ] {
        assert_rejected(&minimal_with("id", json!(bad)), "id", "UUID");
    }
}

#[test]
fn time_is_required_and_must_be_rfc3339_with_offset() {
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v.as_object_mut().unwrap().remove("time");
    assert_rejected(&v.to_string(), "time", "is required");
    for bad in [
        "",
        "2024-05-01",
        "2024-05-01T10:00:00",
        "2024-05-01T10:00Z",
        "2024-05-01T25:00:00Z",
        "2024-02-30T10:00:00Z",
        "1714557600",
        "yesterday",
    ] {
        assert_rejected(&minimal_with("time", json!(bad)), "time", "RFC 3339");
    }
}

#[test]
fn time_is_normalised_to_utc_milliseconds() {
    for (input, stored) in [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.500Z"),
        ("2024-05-01t10:00:00z", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T12:00:00.123+02:00", "2024-05-01T10:00:00.123Z"),
        ("2024-05-01T05:30:00-04:30", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T00:30:00+01:00", "2024-04-30T23:30:00.000Z"),
        // Digits beyond milliseconds are truncated, never rounded up.
        ("2024-05-01T10:00:00.123999999Z", "2024-05-01T10:00:00.123Z"),
        ("2024-05-01T10:00:00.9999+00:00", "2024-05-01T10:00:00.999Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("2024-05-01 10:00:00-00:00", "2024-05-01T10:00:00.000Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999Z"),
    ] {
        let record = assert_accepted(&minimal_with("time", json!(input)));
        assert!(
            record.contains(&format!(r#""time":"{stored}""#)),
            "{input} should be stored as {stored}: {record}"
        );
    }
}

#[test]
fn time_must_be_within_storable_years() {
    for bad in [
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:30:00+01:00",
        "0001-01-01T00:00:00Z",
    ] {
        assert_rejected(&minimal_with("time", json!(bad)), "time", "between 1970");
    }
    // In UTC this is year 10000: must be an error, not a panic in offset conversion.
    let ctx = IngestContext {
        max_future_skew: Duration::MAX,
        ..ctx()
    };
    let input = event(&minimal_with("time", json!("9999-12-31T23:30:00-01:00")));
    let errors = validate(input, &ctx).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "time");
    assert!(errors[0].rule.contains("between 1970"), "{errors:?}");
}

#[test]
fn time_may_not_be_too_far_in_the_future() {
    // received_at is 10:00:01.234567 and the allowed skew 5 minutes.
    assert_accepted(&minimal_with("time", json!("2024-05-01T10:05:01.234567Z")));
    assert_accepted(&minimal_with(
        "time",
        json!("2024-05-01T12:05:01.234567+02:00"),
    ));
    assert_rejected(
        &minimal_with("time", json!("2024-05-01T10:05:01.234568Z")),
        "time",
        "must not be more than 300 s after",
    );
    assert_rejected(
        &minimal_with("time", json!("2024-05-01T12:06:00+02:00")),
        "time",
        "after the server's receive time",
    );
    // The past is not limited.
    assert_accepted(&minimal_with("time", json!("1999-01-01T00:00:00Z")));
}

#[test]
fn received_at_is_truncated_and_must_be_storable() {
    let ctx = IngestContext {
        received_at: datetime!(2024-05-01 12:00:01.999999 +02:00),
        ..ctx()
    };
    let valid = validate(minimal(), &ctx).unwrap();
    let record = String::from_utf8(valid.record).unwrap();
    assert!(
        record.contains(r#""received_at":"2024-05-01T10:00:01.999Z""#),
        "{record}"
    );

    let ctx = IngestContext {
        received_at: datetime!(1960-01-01 00:00 UTC),
        max_future_skew: Duration::MAX,
        ..common::ctx()
    };
    let errors = validate(minimal(), &ctx).unwrap_err();
    assert_eq!(errors[0].field, "received_at");
}

#[test]
fn tenant_defaults_and_rules() {
    let valid = check(&minimal_with("tenant", json!("other-tenant_2"))).unwrap();
    assert_eq!(valid.tenant, "other-tenant_2");

    let no_default = IngestContext {
        default_tenant: None,
        ..ctx()
    };
    let errors = validate(minimal(), &no_default).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "tenant");
    assert!(errors[0].rule.contains("is required"));
    let explicit = event(&minimal_with("tenant", json!("acme")));
    assert_eq!(validate(explicit, &no_default).unwrap().tenant, "acme");

    for bad in ["", "Acme", "-acme", "acme.prod", "a/b", &"a".repeat(64)] {
        assert_rejected(&minimal_with("tenant", json!(bad)), "tenant", "must match");
    }
    let bad_default = IngestContext {
        default_tenant: Some("Bad Tenant"),
        ..ctx()
    };
    assert_eq!(
        validate(minimal(), &bad_default).unwrap_err()[0].field,
        "tenant"
    );
}

#[test]
fn actor_is_required() {
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v.as_object_mut().unwrap().remove("actor");
    assert_rejected(&v.to_string(), "actor", "is required");
    assert_rejected(&minimal_with("actor", json!({})), "actor.id", "is required");
}

#[test]
fn actor_id() {
    assert_accepted(&actor_with("id", json!("a".repeat(256))));
    // Lengths count characters, not bytes: 256 two-byte characters are fine.
    assert_accepted(&actor_with("id", json!("é".repeat(256))));
    assert_rejected(
        &actor_with("id", json!("")),
        "actor.id",
        "must not be empty",
    );
    assert_rejected(
        &actor_with("id", json!("a".repeat(257))),
        "actor.id",
        "at most 256",
    );
    assert_rejected(
        &actor_with("id", json!("é".repeat(257))),
        "actor.id",
        "at most 256",
    );
    for control in ["a\nb", "a\tb", "\u{0}", "a\u{7f}", "a\u{85}b", "\u{9f}"] {
        assert_rejected(
            &actor_with("id", json!(control)),
            "actor.id",
            "control characters",
        );
    }
}

#[test]
fn actor_type() {
    for ok in ["user", "service", "system"] {
        let record = assert_accepted(&actor_with("type", json!(ok)));
        assert!(record.contains(&format!(r#""type":"{ok}""#)));
    }
    for bad in ["", "User", "admin", "robot"] {
        assert_rejected(
            &actor_with("type", json!(bad)),
            "actor.type",
            "user, service, system",
        );
    }
}

#[test]
fn actor_ip_is_stored_in_canonical_form() {
    for (input, stored) in [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8::0001", "2001:db8::1"),
        ("::FFFF:192.0.2.1", "::ffff:192.0.2.1"),
        ("::1", "::1"),
    ] {
        let record = assert_accepted(&actor_with("ip", json!(input)));
        assert!(
            record.contains(&format!(r#""ip":"{stored}""#)),
            "{input}: {record}"
        );
    }
    for bad in [
        "",
        "192.0.2",
        "192.0.2.256",
        "192.000.002.001",
        "localhost",
        "fe80::1%eth0",
        "[::1]",
        "192.0.2.1:80",
        " 192.0.2.1",
    ] {
        assert_rejected(&actor_with("ip", json!(bad)), "actor.ip", "IPv4 or IPv6");
    }
}

#[test]
fn actor_user_agent_and_session_id() {
    assert_accepted(&actor_with("user_agent", json!("u".repeat(1024))));
    assert_rejected(
        &actor_with("user_agent", json!("u".repeat(1025))),
        "actor.user_agent",
        "at most 1024",
    );
    assert_rejected(
        &actor_with("user_agent", json!("")),
        "actor.user_agent",
        "must not be empty",
    );
    assert_rejected(
        &actor_with("user_agent", json!("a\rb")),
        "actor.user_agent",
        "control",
    );
    assert_accepted(&actor_with("session_id", json!("s".repeat(256))));
    assert_rejected(
        &actor_with("session_id", json!("s".repeat(257))),
        "actor.session_id",
        "at most 256",
    );
    assert_rejected(
        &actor_with("session_id", json!("")),
        "actor.session_id",
        "must not be empty",
    );
}

#[test]
fn action() {
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v.as_object_mut().unwrap().remove("action");
    assert_rejected(&v.to_string(), "action", "is required");
    for ok in [
        "login",
        "user.password.change",
        "Billing-v2.invoice_paid",
        &"a".repeat(128),
    ] {
        assert_accepted(&minimal_with("action", json!(ok)));
    }
    for bad in [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a b",
        "a/b",
        "a:b",
        "é",
        &"a".repeat(129),
    ] {
        assert_rejected(
            &minimal_with("action", json!(bad)),
            "action",
            "separated by single dots",
        );
    }
}

#[test]
fn category() {
    for ok in tally_event::WELL_KNOWN_CATEGORIES
        .iter()
        .copied()
        .chain(["CUSTOM_1", "X"])
    {
        let record = assert_accepted(&minimal_with("category", json!(ok)));
        assert!(record.contains(&format!(r#""category":"{ok}""#)));
    }
    for bad in ["", "login", "1LOGIN", "_X", "VIEW-PII", &"A".repeat(33)] {
        assert_rejected(
            &minimal_with("category", json!(bad)),
            "category",
            "^[A-Z][A-Z0-9_]{0,31}$",
        );
    }
}

#[test]
fn resource() {
    let record = assert_accepted(&minimal_with(
        "resource",
        json!({"name": "Invoice 7", "id": "inv-7", "type": "invoice"}),
    ));
    assert!(record.contains(r#""resource":{"type":"invoice","id":"inv-7","name":"Invoice 7"}"#));
    assert_rejected(
        &minimal_with("resource", json!({})),
        "resource.type",
        "is required",
    );
    assert_rejected(
        &minimal_with("resource", json!({"id": "x"})),
        "resource.type",
        "is required",
    );
    assert_rejected(
        &minimal_with("resource", json!({"type": ""})),
        "resource.type",
        "must not be empty",
    );
    assert_accepted(&minimal_with("resource", json!({"type": "t".repeat(64)})));
    assert_rejected(
        &minimal_with("resource", json!({"type": "t".repeat(65)})),
        "resource.type",
        "at most 64",
    );
    assert_rejected(
        &minimal_with("resource", json!({"type": "t", "id": ""})),
        "resource.id",
        "must not be empty",
    );
    assert_rejected(
        &minimal_with("resource", json!({"type": "t", "id": "i".repeat(257)})),
        "resource.id",
        "at most 256",
    );
    assert_rejected(
        &minimal_with("resource", json!({"type": "t", "name": "a\u{85}"})),
        "resource.name",
        "control",
    );
    assert_rejected(
        &minimal_with("resource", json!({"type": "t", "name": "n".repeat(257)})),
        "resource.name",
        "at most 256",
    );
}

#[test]
fn outcome() {
    for ok in ["SUCCESS", "FAILURE", "UNAUTHORIZED", "DENIED"] {
        assert_accepted(&minimal_with("outcome", json!(ok)));
    }
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v.as_object_mut().unwrap().remove("outcome");
    assert_rejected(&v.to_string(), "outcome", "is required");
    for bad in ["", "success", "OK", "ERROR"] {
        assert_rejected(
            &minimal_with("outcome", json!(bad)),
            "outcome",
            "SUCCESS, FAILURE, UNAUTHORIZED, DENIED",
        );
    }
}

#[test]
fn reason_allows_line_breaks_and_tabs_only() {
    let record = assert_accepted(&minimal_with("reason", json!("line one\r\nline\ttwo")));
    assert!(
        record.contains(r#""reason":"line one\r\nline\ttwo""#),
        "{record}"
    );
    assert_accepted(&minimal_with("reason", json!("r".repeat(1024))));
    assert_rejected(
        &minimal_with("reason", json!("r".repeat(1025))),
        "reason",
        "at most 1024",
    );
    assert_rejected(
        &minimal_with("reason", json!("")),
        "reason",
        "must not be empty",
    );
    for bad in ["bell\u{7}", "esc\u{1b}[31m", "\u{0}", "nel\u{85}"] {
        assert_rejected(
            &minimal_with("reason", json!(bad)),
            "reason",
            "other than tab, line feed",
        );
    }
}

#[test]
fn request_trace_and_correlation_ids() {
    for field in ["request_id", "trace_id", "correlation_id"] {
        assert_accepted(&minimal_with(field, json!("x".repeat(128))));
        assert_rejected(
            &minimal_with(field, json!("x".repeat(129))),
            field,
            "at most 128",
        );
        assert_rejected(&minimal_with(field, json!("")), field, "must not be empty");
        assert_rejected(
            &minimal_with(field, json!("a\nb")),
            field,
            "control characters",
        );
    }
}

#[test]
fn free_form_fields_accept_any_json() {
    for value in [
        json!(0),
        json!("s"),
        json!([1, "a", null]),
        json!({"a": {"b": [true]}}),
        json!(false),
    ] {
        assert_accepted(&minimal_with("before", value.clone()));
        assert_accepted(&minimal_with("after", value));
    }
    // Control characters are fine inside free-form values: they are escaped.
    let record = assert_accepted(&minimal_with("metadata", json!({"k": "a\u{1}b"})));
    assert!(
        record.contains(r#""metadata":{"k":"a\u0001b"}"#),
        "{record}"
    );
}

#[test]
fn null_fields_are_treated_as_absent() {
    let with_nulls = r#"{"time":"2024-05-01T10:00:00Z","actor":{"id":"alice","ip":null},
        "action":"user.login","outcome":"SUCCESS","reason":null,"before":null,"metadata":null,"id":null}"#;
    let a = check(with_nulls).unwrap();
    let record = String::from_utf8(a.record).unwrap();
    assert!(!record.contains("null"), "{record}");
    assert!(!a.id_supplied);
}

#[test]
fn all_errors_are_collected_in_schema_order() {
    let json = r#"{"schema_version":3,"id":"nope","time":"soon","tenant":"Bad",
        "actor":{"id":"","type":"robot","ip":"1.2.3","user_agent":"","session_id":""},
        "action":"a..b","category":"x","resource":{"name":""},"outcome":"OK",
        "reason":"\u0007","request_id":"","trace_id":"","correlation_id":""}"#;
    let fields: Vec<String> = errors(json).into_iter().map(|(field, _)| field).collect();
    assert_eq!(
        fields,
        [
            "schema_version",
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
            "resource.name",
            "outcome",
            "reason",
            "request_id",
            "trace_id",
            "correlation_id",
        ]
    );
    let missing: Vec<String> = errors("{}").into_iter().map(|(field, _)| field).collect();
    assert_eq!(missing, ["time", "actor", "action", "outcome"]);
}

#[test]
fn record_size_limit() {
    // The minimal record is a little over 200 bytes; fill the rest with metadata.
    let base = check(MINIMAL).unwrap().record.len();
    let overhead = r#","metadata":{"k":""}"#.len();
    let fits = MAX_RECORD_BYTES - base - overhead;
    let record = assert_accepted(&minimal_with("metadata", json!({"k": "x".repeat(fits)})));
    assert_eq!(record.len(), MAX_RECORD_BYTES);

    let errors = errors(&minimal_with(
        "metadata",
        json!({"k": "x".repeat(fits + 1)}),
    ));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "");
    assert!(errors[0].1.contains("at most 65535 bytes"), "{errors:?}");
}

#[test]
fn field_errors_display_and_serialize() {
    let errors = validate(event(&actor_with("ip", json!("x"))), &ctx()).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "actor.ip: must be an IPv4 or IPv6 address"
    );
    assert_eq!(
        serde_json::to_string(&errors[0]).unwrap(),
        r#"{"field":"actor.ip","rule":"must be an IPv4 or IPv6 address"}"#
    );
}
