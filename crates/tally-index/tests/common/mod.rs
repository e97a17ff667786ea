//! Shared test helpers: records made by tally-event from JSON, and hand-built queries.
#![allow(dead_code)]

use std::net::IpAddr;

use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_index::{EventIndex, IndexedEvent, Order, SearchOptions};
use tally_query::{Field, Query, Span, Term, TermKind, TimeBound, Value};
use time::macros::datetime;
use time::OffsetDateTime;

pub const SPAN: Span = Span { start: 0, end: 0 };

/// Unix ms of 2024-05-01 at `h:m` UTC.
pub fn at(h: u8, m: u8) -> i64 {
    let t = datetime!(2024-05-01 00:00 UTC)
        + time::Duration::hours(h.into())
        + time::Duration::minutes(m.into());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The canonical record of one JSON event, as the server would store it.
pub fn record_with(json: &str, tenant: &str, key_id: &str, received_at: OffsetDateTime) -> Vec<u8> {
    let events = parse_body(json.as_bytes(), BodyFormat::Json, 10).expect("parses");
    let ctx = IngestContext {
        received_at,
        key_id,
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::minutes(5),
    };
    validate(events.into_iter().next().expect("one event"), &ctx)
        .expect("valid event")
        .record
}

pub fn record(json: &str) -> Vec<u8> {
    record_with(json, "acme", "key-1", datetime!(2024-05-01 12:00 UTC))
}

/// A small, varied corpus: index i = the i-th entry.
pub fn corpus() -> Vec<Vec<u8>> {
    let events = [
        // 0
        r#"{"id":"00000000-0000-4000-8000-000000000000","time":"2024-05-01T10:00:00Z",
            "actor":{"id":"alice","type":"user","ip":"203.0.113.5","session_id":"s1","user_agent":"Mozilla/5.0 (X11; Linux)"},
            "action":"user.login","category":"LOGIN","outcome":"SUCCESS","request_id":"r1",
            "metadata":{"browser":"Firefox","geo":{"city":"Lisbon","country":"PT"}}}"#,
        // 1
        r#"{"id":"00000000-0000-4000-8000-000000000001","time":"2024-05-01T10:01:00Z",
            "actor":{"id":"bob","type":"user","ip":"198.51.100.7"},
            "action":"user.login","category":"LOGIN","outcome":"FAILURE","reason":"bad password"}"#,
        // 2
        r#"{"id":"00000000-0000-4000-8000-000000000002","time":"2024-05-01T10:05:00Z",
            "actor":{"id":"alice","type":"user","ip":"2001:db8::1"},
            "action":"user.password.change","category":"UPDATE","outcome":"SUCCESS",
            "resource":{"type":"user","id":"u-1","name":"Alice Smith"},
            "before":{"password_set_at":"2023-01-01"},
            "after":{"mfa":{"methods":["totp","webauthn"]}}}"#,
        // 3
        r#"{"id":"00000000-0000-4000-8000-000000000003","time":"2024-05-01T10:30:00Z",
            "actor":{"id":"svc-billing","type":"service","ip":"10.1.2.3"},
            "action":"invoice.export","category":"EXPORT","outcome":"SUCCESS",
            "resource":{"type":"invoice","id":"inv-42","name":"March invoice"},
            "trace_id":"t-1","correlation_id":"c-9",
            "metadata":{"rows":1250,"format":"csv"}}"#,
        // 4
        r#"{"id":"00000000-0000-4000-8000-000000000004","time":"2024-05-01T11:00:00Z",
            "actor":{"id":"carol","type":"user","ip":"2001:db8:1::5"},
            "action":"admin.user.delete","category":"ADMIN","outcome":"DENIED",
            "resource":{"type":"user","id":"u-2","name":"Bob Jones"},
            "reason":"insufficient privileges"}"#,
        // 5
        r#"{"id":"00000000-0000-4000-8000-000000000005","time":"2024-05-01T11:30:00Z",
            "actor":{"id":"alice","type":"user","ip":"203.0.113.77"},
            "action":"user.logout","category":"LOGOUT","outcome":"SUCCESS",
            "metadata":{"note":"the quick brown fox jumps"}}"#,
        // 6
        r#"{"id":"00000000-0000-4000-8000-000000000006","time":"2024-05-01T11:45:00Z",
            "actor":{"id":"system","type":"system"},
            "action":"config.update","category":"CONFIG","outcome":"SUCCESS",
            "after":{"retention_days":90,"nested":[{"deep":{"key":"Needle-Value"}}]}}"#,
    ];
    let mut out: Vec<Vec<u8>> = events.iter().map(|j| record(j)).collect();
    // 7: ingested with another key.
    out.push(record_with(
        r#"{"id":"00000000-0000-4000-8000-000000000007","time":"2024-05-01T11:50:00Z",
            "actor":{"id":"bob","type":"user","ip":"198.51.100.8"},
            "action":"report.view","category":"READ","outcome":"SUCCESS"}"#,
        "acme",
        "key-2",
        datetime!(2024-05-01 12:00 UTC),
    ));
    out
}

/// Adds `records` starting at index `start`.
pub fn add_from(index: &dyn EventIndex, tenant: &str, start: u64, records: &[Vec<u8>]) {
    let events: Vec<IndexedEvent<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| IndexedEvent {
            index: start + i as u64,
            record: r,
            personal: &[],
        })
        .collect();
    index.add(tenant, &events).expect("add");
}

pub fn q(terms: Vec<Term>) -> Query {
    Query { terms }
}

pub fn term(kind: TermKind) -> Term {
    Term {
        negated: false,
        kind,
        span: SPAN,
    }
}

pub fn not(mut t: Term) -> Term {
    t.negated = true;
    t
}

pub fn exact(field: Field, values: &[&str]) -> Term {
    term(TermKind::Field {
        field,
        values: values.iter().map(|v| Value::Exact(v.to_string())).collect(),
    })
}

pub fn prefix(field: Field, p: &str) -> Term {
    term(TermKind::Field {
        field,
        values: vec![Value::Prefix(p.to_string())],
    })
}

pub fn cidr(net: &str, prefix_len: u8) -> Term {
    term(TermKind::Field {
        field: Field::ActorIp,
        values: vec![Value::Cidr {
            network: net.parse::<IpAddr>().unwrap(),
            prefix_len,
        }],
    })
}

pub fn text(s: &str) -> Term {
    term(TermKind::Text {
        text: s.to_string(),
        phrase: false,
    })
}

pub fn phrase(s: &str) -> Term {
    term(TermKind::Text {
        text: s.to_string(),
        phrase: true,
    })
}

pub fn after(b: TimeBound) -> Term {
    term(TermKind::After(b))
}

pub fn before(b: TimeBound) -> Term {
    term(TermKind::Before(b))
}

pub fn opts(order: Order, limit: usize) -> SearchOptions {
    SearchOptions {
        now_ms: at(12, 0),
        order,
        cursor: None,
        limit,
        upto: None,
    }
}

/// Every match, oldest first.
pub fn find(index: &dyn EventIndex, tenant: &str, query: &Query) -> Vec<u64> {
    let page = index
        .search(tenant, query, &opts(Order::OldestFirst, 1000))
        .expect("search");
    assert_eq!(page.next_cursor, None);
    page.indexes
}
