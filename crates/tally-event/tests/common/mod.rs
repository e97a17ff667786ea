//! Shared fixtures for the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use tally_event::{validate, EventInput, FieldError, IngestContext, ValidEvent};
use time::macros::datetime;
use time::Duration;

/// The context every test ingests under unless it says otherwise.
pub fn ctx() -> IngestContext<'static> {
    IngestContext {
        received_at: datetime!(2024-05-01 10:00:01.234567 UTC),
        key_id: "key-1",
        default_tenant: Some("acme"),
        max_future_skew: Duration::minutes(5),
    }
}

/// The smallest valid event, as JSON.
pub const MINIMAL: &str = r#"{"time":"2024-05-01T10:00:00Z","actor":{"id":"alice"},"action":"user.login","outcome":"SUCCESS"}"#;

/// The smallest valid event.
pub fn minimal() -> EventInput {
    serde_json::from_str(MINIMAL).unwrap()
}

/// Parses `json` as an event, panicking on shape errors (tests of rules want valid shapes).
pub fn event(json: &str) -> EventInput {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad fixture {json}: {e}"))
}

/// Validates `json` with [`ctx`].
pub fn check(json: &str) -> Result<ValidEvent, Vec<FieldError>> {
    validate(event(json), &ctx())
}

/// The minimal event with `field` (a top-level key) set to the JSON `value`.
pub fn minimal_with(field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v[field] = value;
    v.to_string()
}

/// The minimal event with `actor.<field>` set to the JSON `value`.
pub fn actor_with(field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(MINIMAL).unwrap();
    v["actor"][field] = value;
    v.to_string()
}

/// The field errors of `json`, as (field, rule) pairs; panics if it validates.
pub fn errors(json: &str) -> Vec<(String, String)> {
    match check(json) {
        Ok(_) => panic!("expected {json} to be rejected"),
        Err(errors) => errors.into_iter().map(|e| (e.field, e.rule)).collect(),
    }
}

/// Asserts that `json` is rejected with exactly one error, on `field`, whose rule contains
/// `rule_part`.
#[track_caller]
pub fn assert_rejected(json: &str, field: &str, rule_part: &str) {
    let errors = errors(json);
    assert_eq!(errors.len(), 1, "{json}: {errors:?}");
    assert_eq!(errors[0].0, field, "{json}: {errors:?}");
    assert!(
        errors[0].1.contains(rule_part),
        "{json}: rule {:?} does not mention {rule_part:?}",
        errors[0].1
    );
}

/// Asserts that `json` validates, returning the record as a string.
#[track_caller]
pub fn assert_accepted(json: &str) -> String {
    match check(json) {
        Ok(valid) => String::from_utf8(valid.record).unwrap(),
        Err(errors) => panic!("expected {json} to be accepted: {errors:?}"),
    }
}
