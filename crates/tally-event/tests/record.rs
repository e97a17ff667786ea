//! The canonical record: exact bytes, reading records back, canonical-form checks and
//! idempotent-retry detection.

mod common;

use common::*;
use tally_event::{
    is_canonical, record_id, same_submission, validate, ActorType, IngestContext, Outcome, Record,
    RecordError, MAX_RECORD_BYTES,
};
use time::macros::datetime;

/// Every field set, written in a non-canonical way wherever the input allows it.
const FULL_EVENT: &str = r#"{
  "metadata": {"source": "web", "b": {"y": 2, "x": 1}, "": "empty key"},
  "after": "ok",
  "before": {"z": 1, "a": [true, null, 1.50, -0, 1e2, 18446744073709551615], "é": "\u0001\/"},
  "correlation_id": "corr-7",
  "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
  "request_id": "req-1",
  "reason": "policy:\n\tpassword reused",
  "outcome": "DENIED",
  "resource": {"name": "Alice\u2019s account", "id": "u-42", "type": "user"},
  "category": "UPDATE",
  "action": "user.password.change",
  "actor": {"session_id": "sess-9", "user_agent": "Mozilla/5.0 (X11; Linux) \"q\"",
            "ip": "2001:DB8:0::1", "type": "user", "id": "alice@example.com"},
  "tenant": "acme",
  "time": "2024-05-01T12:00:00.123456+02:00",
  "id": "0190F5A2-7C1B-7DEF-8ABC-0123456789AB",
  "schema_version": 1
}"#;

/// The one canonical encoding of [`FULL_EVENT`] received under [`ctx`]. Written out by hand
/// from the specification in the crate documentation, not captured from the code.
const FULL_RECORD: &str = concat!(
    r#"{"schema_version":1,"id":"0190f5a2-7c1b-7def-8abc-0123456789ab","tenant":"acme","#,
    r#""time":"2024-05-01T10:00:00.123Z","received_at":"2024-05-01T10:00:01.234Z","key_id":"key-1","#,
    r#""actor":{"id":"alice@example.com","type":"user","ip":"2001:db8::1","#,
    r#""user_agent":"Mozilla/5.0 (X11; Linux) \"q\"","session_id":"sess-9"},"#,
    r#""action":"user.password.change","category":"UPDATE","#,
    r#""resource":{"type":"user","id":"u-42","name":"Alice’s account"},"outcome":"DENIED","#,
    r#""reason":"policy:\n\tpassword reused","request_id":"req-1","#,
    r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","correlation_id":"corr-7","#,
    r#""before":{"a":[true,null,1.5,-0.0,100.0,18446744073709551615],"z":1,"é":"\u0001/"},"#,
    r#""after":"ok","#,
    r#""metadata":{"":"empty key","b":{"x":1,"y":2},"source":"web"}}"#
);

fn full_record() -> Vec<u8> {
    check(FULL_EVENT).unwrap().record
}

#[test]
fn record_id_reads_the_id_without_parsing() {
    let record = full_record();
    let id = record_id(&record).expect("id");
    assert_eq!(id, Record::parse(&record).unwrap().id);
    assert_eq!(id.to_string(), "0190f5a2-7c1b-7def-8abc-0123456789ab");
    // A changed id byte changes the answer; cut or garbled bytes give none.
    let mut changed = record.clone();
    changed[27] = b'f';
    assert_ne!(record_id(&changed), Some(id));
    assert_eq!(record_id(&record[..40]), None);
    assert_eq!(record_id(b"{}"), None);
    assert_eq!(record_id(b""), None);
    let mut unquoted = record.clone();
    unquoted[62] = b'x';
    assert_eq!(record_id(&unquoted), None);
}

#[test]
fn golden_full_event() {
    let record = full_record();
    assert_eq!(String::from_utf8(record).unwrap(), FULL_RECORD);
}

#[test]
fn golden_minimal_event() {
    let input = event(&minimal_with(
        "id",
        "936da01f-9abd-4d9d-80c7-02af85c822a8".into(),
    ));
    let record = validate(input, &ctx()).unwrap().record;
    assert_eq!(
        String::from_utf8(record).unwrap(),
        concat!(
            r#"{"schema_version":1,"id":"936da01f-9abd-4d9d-80c7-02af85c822a8","tenant":"acme","#,
            r#""time":"2024-05-01T10:00:00.000Z","received_at":"2024-05-01T10:00:01.234Z","#,
            r#""key_id":"key-1","actor":{"id":"alice"},"action":"user.login","outcome":"SUCCESS"}"#
        )
    );
}

#[test]
fn key_id_is_escaped_like_any_string() {
    let ctx = IngestContext {
        key_id: "k\"1\\",
        ..ctx()
    };
    let record = validate(minimal(), &ctx).unwrap().record;
    let record = String::from_utf8(record).unwrap();
    assert!(record.contains(r#""key_id":"k\"1\\""#), "{record}");
}

#[test]
fn record_parses_back_into_typed_fields() {
    let record = Record::parse(&full_record()).unwrap();
    assert_eq!(record.schema_version, 1);
    assert_eq!(
        record.id.to_string(),
        "0190f5a2-7c1b-7def-8abc-0123456789ab"
    );
    assert_eq!(record.tenant, "acme");
    assert_eq!(record.time, datetime!(2024-05-01 10:00:00.123 UTC));
    assert_eq!(record.received_at, datetime!(2024-05-01 10:00:01.234 UTC));
    assert_eq!(record.key_id, "key-1");
    assert_eq!(record.actor.id, "alice@example.com");
    assert_eq!(record.actor.kind, Some(ActorType::User));
    assert_eq!(record.actor.ip, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(
        record.actor.user_agent.as_deref(),
        Some("Mozilla/5.0 (X11; Linux) \"q\"")
    );
    assert_eq!(record.actor.session_id.as_deref(), Some("sess-9"));
    assert_eq!(record.action, "user.password.change");
    assert_eq!(record.category.as_deref(), Some("UPDATE"));
    let resource = record.resource.as_ref().unwrap();
    assert_eq!(
        (resource.kind.as_str(), resource.id.as_deref()),
        ("user", Some("u-42"))
    );
    assert_eq!(resource.name.as_deref(), Some("Alice’s account"));
    assert_eq!(record.outcome, Outcome::Denied);
    assert_eq!(record.reason.as_deref(), Some("policy:\n\tpassword reused"));
    assert_eq!(record.request_id.as_deref(), Some("req-1"));
    assert_eq!(
        record.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(record.correlation_id.as_deref(), Some("corr-7"));
    assert_eq!(record.before.as_ref().unwrap()["é"], "\u{1}/");
    assert_eq!(record.after.as_ref().unwrap(), "ok");
    assert_eq!(record.metadata.as_ref().unwrap()["b"]["y"], 2);
    assert_eq!(record.to_bytes(), full_record());
}

#[test]
fn minimal_record_round_trips() {
    let bytes = validate(minimal(), &ctx()).unwrap().record;
    let record = Record::parse(&bytes).unwrap();
    assert_eq!(record.actor.kind, None);
    assert_eq!(record.resource, None);
    assert_eq!(record.metadata, None);
    assert_eq!(record.to_bytes(), bytes);
    assert!(is_canonical(&bytes));
}

#[test]
fn produced_records_are_canonical() {
    assert!(is_canonical(&full_record()));
    assert!(is_canonical(FULL_RECORD.as_bytes()));
}

#[test]
fn non_canonical_variants_are_detected() {
    let canonical = FULL_RECORD;
    let variants = [
        // whitespace and framing
        format!("{canonical}\n"),
        format!(" {canonical}"),
        canonical.replacen(r#""tenant":"acme""#, r#""tenant": "acme""#, 1),
        // member order
        canonical.replacen(
            r#""tenant":"acme","time""#,
            r#""time":"2024-05-01T10:00:00.123Z","tenant":"acme","ignored""#,
            1,
        ),
        canonical.replacen(r#"{"x":1,"y":2}"#, r#"{"y":2,"x":1}"#, 1),
        canonical.replacen(
            r#""id":"alice@example.com","type":"user""#,
            r#""type":"user","id":"alice@example.com""#,
            1,
        ),
        // explicit nulls
        canonical.replacen(r#""after":"ok""#, r#""after":null"#, 1),
        canonical.replacen(r#""category":"UPDATE""#, r#""category":null"#, 1),
        // value forms
        canonical.replacen("0190f5a2-7c1b", "0190F5A2-7C1B", 1),
        canonical.replacen("10:00:00.123Z", "10:00:00.123000Z", 1),
        canonical.replacen("10:00:00.123Z", "12:00:00.123+02:00", 1),
        canonical.replacen("2001:db8::1", "2001:db8:0::1", 1),
        canonical.replacen("1.5,", "1.50,", 1),
        canonical.replacen("100.0", "1e2", 1),
        canonical.replacen("\\u0001/", "\\u0001\\/", 1),
        canonical.replacen("\\n\\t", "\\u000a\\t", 1),
        canonical.replacen("\\u0001", "\u{1}", 1),
        canonical.replacen("Alice’s", "Alice\\u2019s", 1),
        canonical.replacen(r#""schema_version":1"#, r#""schema_version":1.0"#, 1),
    ];
    for variant in variants {
        assert_ne!(variant, canonical, "variant did not change anything");
        assert!(!is_canonical(variant.as_bytes()), "{variant}");
    }
}

#[test]
fn non_records_are_not_canonical() {
    for bytes in [
        &b""[..],
        b"{}",
        b"null",
        b"[1]",
        b"\xff",
        MINIMAL.as_bytes(),
    ] {
        assert!(!is_canonical(bytes));
    }
}

#[test]
fn record_errors() {
    let too_large = vec![b' '; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        Record::parse(&too_large),
        Err(RecordError::TooLarge { len }) if len == MAX_RECORD_BYTES + 1
    ));

    let unknown = FULL_RECORD.replacen(r#""key_id":"key-1""#, r#""key_id":"key-1","shard":3"#, 1);
    match Record::parse(unknown.as_bytes()) {
        Err(RecordError::Malformed { path, .. }) => assert_eq!(path, "shard"),
        other => panic!("{other:?}"),
    }
    let bad_ip = FULL_RECORD.replacen("2001:db8::1", "not-an-ip", 1);
    match Record::parse(bad_ip.as_bytes()) {
        Err(err @ RecordError::Malformed { .. }) => {
            assert!(
                err.to_string()
                    .starts_with("malformed record at `actor.ip`"),
                "{err}"
            )
        }
        other => panic!("{other:?}"),
    }
    let old_time = FULL_RECORD.replacen("2024-05-01T10:00:00.123Z", "1960-05-01T10:00:00.123Z", 1);
    assert!(matches!(
        Record::parse(old_time.as_bytes()),
        Err(RecordError::Malformed { ref path, .. }) if path == "time"
    ));
    let positional_actor = FULL_RECORD
        .replacen(
            r#"{"id":"alice@example.com","type":"user","ip":"2001:db8::1","#,
            r#"["alice@example.com","user","2001:db8::1","#,
            1,
        )
        .replacen(r#""session_id":"sess-9"}"#, r#""sess-9"]"#, 1)
        .replacen(r#""user_agent":"#, "", 1);
    assert!(
        matches!(
            Record::parse(positional_actor.as_bytes()),
            Err(RecordError::Malformed { ref path, .. }) if path == "actor"
        ),
        "{positional_actor}"
    );
    assert!(Record::parse(b"[1]").is_err());
    let lower_outcome = FULL_RECORD.replacen("DENIED", "denied", 1);
    assert!(Record::parse(lower_outcome.as_bytes()).is_err());

    // Version 2 is an opened sealed record: the same members, and it re-encodes as itself.
    let v2 = FULL_RECORD.replacen(r#""schema_version":1"#, r#""schema_version":2"#, 1);
    assert_eq!(
        Record::parse(v2.as_bytes()).unwrap().to_bytes(),
        v2.as_bytes()
    );
    let v3 = FULL_RECORD.replacen(r#""schema_version":1"#, r#""schema_version":3"#, 1);
    assert!(matches!(
        Record::parse(v3.as_bytes()),
        Err(RecordError::UnsupportedVersion(3))
    ));
    // A withheld address (masked or erased) reads as absent; any other non-address is an error.
    let ip = Record::parse(FULL_RECORD.as_bytes())
        .unwrap()
        .actor
        .ip
        .unwrap()
        .to_string();
    let masked = v2.replacen(&ip, "tally:pii:abc", 1);
    assert_eq!(Record::parse(masked.as_bytes()).unwrap().actor.ip, None);
    let wrong = v2.replacen(&ip, "tally-pii-abc", 1);
    assert!(Record::parse(wrong.as_bytes()).is_err());
}

#[test]
fn same_submission_ignores_server_fields_only() {
    let first = check(FULL_EVENT).unwrap().record;
    let retry_ctx = IngestContext {
        received_at: datetime!(2024-05-01 10:03:00 UTC),
        key_id: "key-2",
        ..ctx()
    };
    let retry = validate(event(FULL_EVENT), &retry_ctx).unwrap().record;
    assert_ne!(first, retry);
    assert!(same_submission(&first, &retry));
    assert!(same_submission(&retry, &first));

    // The same instant with another offset, and metadata in another order, is the same content.
    let rewritten = FULL_EVENT
        .replace(
            "2024-05-01T12:00:00.123456+02:00",
            "2024-05-01T10:00:00.123Z",
        )
        .replace(r#"{"y": 2, "x": 1}"#, r#"{"x": 1, "y": 2}"#);
    let rewritten = validate(event(&rewritten), &retry_ctx).unwrap().record;
    assert!(same_submission(&first, &rewritten));

    for (from, to) in [
        ("user.password.change", "user.password.reset"),
        (r#""tenant": "acme""#, r#""tenant": "acme2""#),
        ("12:00:00.123456", "12:00:00.124"),
        (r#""after": "ok""#, r#""after": "ok ""#),
        ("1.50", "1.51"),
        (r#""ip": "2001:DB8:0::1", "#, ""),
    ] {
        assert!(FULL_EVENT.contains(from), "{from}");
        let changed = validate(event(&FULL_EVENT.replacen(from, to, 1)), &retry_ctx)
            .unwrap()
            .record;
        assert!(!same_submission(&first, &changed), "{from} -> {to}");
    }
    assert!(!same_submission(&first, b"{}"));
    assert!(!same_submission(b"garbage", &first));
}
