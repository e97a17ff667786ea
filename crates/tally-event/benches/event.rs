//! Ingest hot path: body parsing, validation and canonical encoding of a realistic event,
//! against the budget baseline of a plain `serde_json` parse of the same event into a struct.
//!
//! `cargo bench -p tally-event --bench event`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Deserialize;
use tally_event::{is_canonical, parse_body, validate, BodyFormat, EventInput, IngestContext};
use time::macros::datetime;

/// A realistic event of about 400 bytes: every common field, a little metadata.
const EVENT: &str = concat!(
    r#"{"id":"0190f5a2-7c1b-7def-8abc-0123456789ab","time":"2024-05-01T12:00:00.123+02:00","#,
    r#""actor":{"id":"user-8f14e45f","type":"user","ip":"203.0.113.42","#,
    r#""user_agent":"Mozilla/5.0 Firefox/125.0","session_id":"s-3c59dc048e88"},"#,
    r#""action":"user.password.change","category":"UPDATE","#,
    r#""resource":{"type":"user","id":"user-8f14e45f","name":"Alice Example"},"#,
    r#""outcome":"SUCCESS","#,
    r#""metadata":{"mfa":true,"method":"totp"}}"#
);

/// The same shape with plain field types and no unknown-field checks: what "a plain serde_json
/// parse of a ~400-byte event into a struct" means in the design budget.
#[allow(dead_code)]
#[derive(Deserialize)]
struct Plain {
    id: String,
    time: String,
    actor: PlainActor,
    action: String,
    category: String,
    resource: PlainResource,
    outcome: String,
    metadata: serde_json::Map<String, serde_json::Value>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct PlainActor {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    ip: String,
    user_agent: String,
    session_id: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct PlainResource {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    name: String,
}

fn ctx() -> IngestContext<'static> {
    IngestContext {
        received_at: datetime!(2024-05-01 10:00:01.234 UTC),
        key_id: "key-1",
        default_tenant: Some("acme-prod"),
        max_future_skew: time::Duration::minutes(5),
    }
}

fn benches(c: &mut Criterion) {
    assert!(
        (380..=420).contains(&EVENT.len()),
        "event is {} bytes",
        EVENT.len()
    );
    let ctx = ctx();
    let input: EventInput = serde_json::from_str(EVENT).unwrap();
    let record = validate(input.clone(), &ctx).unwrap().record;

    let mut single = c.benchmark_group("single_event");
    single.throughput(Throughput::Elements(1));
    single.bench_function("baseline_serde_json_plain_struct", |b| {
        b.iter(|| serde_json::from_str::<Plain>(black_box(EVENT)).unwrap())
    });
    // Request bodies arrive as bytes, where serde_json also validates UTF-8.
    single.bench_function("baseline_serde_json_plain_struct_from_slice", |b| {
        b.iter(|| serde_json::from_slice::<Plain>(black_box(EVENT.as_bytes())).unwrap())
    });
    single.bench_function("parse_body", |b| {
        b.iter(|| parse_body(black_box(EVENT.as_bytes()), BodyFormat::Json, 1000).unwrap())
    });
    single.bench_function("validate_encode", |b| {
        b.iter_batched(
            || input.clone(),
            |input| validate(input, black_box(&ctx)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    single.bench_function("parse_body_validate_encode", |b| {
        b.iter(|| {
            let events = parse_body(black_box(EVENT.as_bytes()), BodyFormat::Json, 1000).unwrap();
            for event in events {
                black_box(validate(event, &ctx).unwrap());
            }
        })
    });
    single.bench_function("is_canonical", |b| {
        b.iter(|| is_canonical(black_box(&record)))
    });
    single.finish();

    let array = format!("[{}]", vec![EVENT; 1000].join(","));
    let lines = vec![EVENT; 1000].join("\n");
    let mut batch = c.benchmark_group("batch_1000");
    batch.throughput(Throughput::Elements(1000));
    batch.bench_function("baseline_serde_json_plain_vec", |b| {
        b.iter(|| serde_json::from_str::<Vec<Plain>>(black_box(&array)).unwrap())
    });
    batch.bench_function("parse_body_json_array", |b| {
        b.iter(|| parse_body(black_box(array.as_bytes()), BodyFormat::Json, 1000).unwrap())
    });
    batch.bench_function("parse_body_ndjson", |b| {
        b.iter(|| parse_body(black_box(lines.as_bytes()), BodyFormat::Ndjson, 1000).unwrap())
    });
    batch.bench_function("parse_body_validate_encode", |b| {
        b.iter(|| {
            let events = parse_body(black_box(array.as_bytes()), BodyFormat::Json, 1000).unwrap();
            for event in events {
                black_box(validate(event, &ctx).unwrap());
            }
        })
    });
    batch.finish();
}

criterion_group!(event, benches);
criterion_main!(event);
