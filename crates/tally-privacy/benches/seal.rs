//! What sealing costs per event beside what ingest already spends: validation and canonical
//! encoding of the same realistic events (the tally-eventgen generator) against sealing them
//! (subjects found, keys looked up, every personal value encrypted), and opening them for a
//! clear and a masked reader.
//!
//! `cargo bench -p tally-privacy --bench seal`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_privacy::keystore::SubjectKeys;
use tally_privacy::policy::Policy;
use tally_privacy::record::{self, View};
use time::macros::datetime;

const N: usize = 1000;

fn bench(c: &mut Criterion) {
    let ctx = IngestContext {
        received_at: datetime!(2026-05-01 12:00 UTC),
        key_id: "key-1",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::days(3650),
    };
    let mut gen = tally_eventgen::EventGenerator::new(7);
    let bodies: Vec<Vec<u8>> = (0..N).map(|_| gen.next_json()).collect();
    let v1: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            let input = parse_body(b, BodyFormat::Json, 1).unwrap().pop().unwrap();
            validate(input, &ctx).unwrap().record
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    let policy = Policy::default();
    for r in &v1 {
        keys.ensure(&record::subjects(r, &policy).unwrap()).unwrap();
    }
    let sealed: Vec<Vec<u8>> = v1
        .iter()
        .map(|r| record::seal_record(r, &policy, &keys).unwrap())
        .collect();

    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("parse_validate_encode", |b| {
        b.iter(|| {
            for body in &bodies {
                let input = parse_body(body, BodyFormat::Json, 1)
                    .unwrap()
                    .pop()
                    .unwrap();
                black_box(validate(input, &ctx).unwrap());
            }
        })
    });
    g.bench_function("seal_known_subjects", |b| {
        b.iter(|| {
            for r in &v1 {
                // As the server does: one walk, each subject's key looked up once.
                let plan = record::plan_record(r, &policy).unwrap();
                let subjects = plan.subjects();
                let found = keys.ensure_keys(&subjects).unwrap();
                let key_of = |s: &str| {
                    let i = subjects.iter().position(|x| x == s)?;
                    Some(found[i].clone())
                };
                black_box(plan.seal_with(&key_of).unwrap());
            }
        })
    });
    g.bench_function("open_clear", |b| {
        b.iter(|| {
            for s in &sealed {
                black_box(record::open_record(s, View::Clear, &policy, &keys).unwrap());
            }
        })
    });
    g.bench_function("open_masked", |b| {
        b.iter(|| {
            for s in &sealed {
                black_box(record::open_record(s, View::Masked, &policy, &keys).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
