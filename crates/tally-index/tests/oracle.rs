//! Generated events (tally-eventgen) against a brute-force evaluation of the same queries: many
//! segments, merges, two indexing threads, every page of every order.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_event::Record;
use tally_eventgen::EventGenerator;
use tally_index::{EventIndex, Order, SearchOptions, StatsRequest, TantivyIndex, TantivyOptions};
use tally_query::{Field, NoTokens, Query, Term, TermKind, TimeBound, Value};
use time::macros::datetime;

const N: u64 = 6000;

fn generated() -> Vec<Vec<u8>> {
    let mut base = datetime!(2024-05-01 00:00 UTC);
    let mut generator = EventGenerator::new(7).with_base_time(base);
    let mut out = Vec::new();
    for i in 0..N {
        if i % 500 == 0 {
            // Move the clock so that events span hours, roughly in order of receipt.
            base += time::Duration::minutes(20);
            generator = generator.with_base_time(base);
        }
        let json = String::from_utf8(generator.next_json()).unwrap();
        out.push(record_with(
            &json,
            "acme",
            if i % 5 == 0 { "key-b" } else { "key-a" },
            base,
        ));
    }
    out
}

fn value_of(r: &Record, f: Field) -> Option<String> {
    let res = r.resource.as_ref();
    match f {
        Field::Id => Some(r.id.to_string()),
        Field::ActorId => Some(r.actor.id.clone()),
        Field::ActorType => r.actor.kind.map(|k| k.as_str().to_owned()),
        Field::ActorIp => r.actor.ip.map(|ip| ip.to_string()),
        Field::SessionId => r.actor.session_id.clone(),
        Field::Action => Some(r.action.clone()),
        Field::Category => r.category.clone(),
        Field::Outcome => Some(r.outcome.as_str().to_owned()),
        Field::ResourceType => res.map(|x| x.kind.clone()),
        Field::ResourceId => res.and_then(|x| x.id.clone()),
        Field::ResourceName => res.and_then(|x| x.name.clone()),
        Field::RequestId => r.request_id.clone(),
        Field::TraceId => r.trace_id.clone(),
        Field::CorrelationId => r.correlation_id.clone(),
        Field::KeyId => Some(r.key_id.clone()),
    }
}

/// The brute-force answer: the in-memory evaluation of the same query, which follows the
/// grammar's meaning without an index.
fn matches(r: &Record, q: &Query, now_ms: i64) -> bool {
    q.matches(r, now_ms, &NoTokens)
}

fn random_term(rng: &mut StdRng, records: &[Record], now_ms: i64) -> Term {
    let r = &records[rng.gen_range(0..records.len())];
    let kind = match rng.gen_range(0..10) {
        0 => TermKind::After(TimeBound::At(
            (r.time.unix_timestamp_nanos() / 1_000_000) as i64,
        )),
        1 => TermKind::Before(TimeBound::Ago(rng.gen_range(0..now_ms - at(0, 0)))),
        2 => match r.actor.ip {
            Some(ip) => {
                let len = if ip.is_ipv4() {
                    rng.gen_range(8..=32)
                } else {
                    rng.gen_range(16..=128)
                };
                TermKind::Field {
                    field: Field::ActorIp,
                    values: vec![Value::Cidr {
                        network: ip,
                        prefix_len: len,
                    }],
                }
            }
            None => TermKind::Field {
                field: Field::Outcome,
                values: vec![Value::Exact("FAILURE".into())],
            },
        },
        3 => {
            let action = r.action.clone();
            let cut = action.find('.').map_or(action.len(), |i| i + 1);
            TermKind::Field {
                field: Field::Action,
                values: vec![Value::Prefix(action[..cut].to_owned())],
            }
        }
        _ => {
            // One to three values of a field seen in the data.
            let field = Field::ALL[rng.gen_range(0..Field::ALL.len())];
            let values = (0..rng.gen_range(1..=3))
                .map(|_| {
                    let other = &records[rng.gen_range(0..records.len())];
                    Value::Exact(value_of(other, field).unwrap_or_else(|| "absent".into()))
                })
                .collect();
            TermKind::Field { field, values }
        }
    };
    Term {
        negated: rng.gen_bool(0.25),
        kind,
        span: SPAN,
    }
}

fn check(ix: &TantivyIndex, records: &[Record], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let now_ms = at(0, 0) + 3 * 3_600_000;
    for round in 0..120 {
        let query = q((0..rng.gen_range(0..=3))
            .map(|_| random_term(&mut rng, records, now_ms))
            .collect());
        let upto = rng.gen_bool(0.5).then(|| rng.gen_range(0..=N + 10));
        let expected: Vec<u64> = (0..N)
            .filter(|&i| upto.is_none_or(|u| i < u))
            .filter(|&i| matches(&records[i as usize], &query, now_ms))
            .collect();
        let limit = [1, 3, 17, 100, 1000][rng.gen_range(0..5)];
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let mut got: Vec<u64> = Vec::new();
            let mut cursor = None;
            for _ in 0..50 {
                let page = ix
                    .search(
                        "acme",
                        &query,
                        &SearchOptions {
                            now_ms,
                            order,
                            cursor,
                            limit,
                            upto,
                        },
                    )
                    .unwrap();
                assert!(page.indexes.len() <= limit);
                got.extend(&page.indexes);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let mut want = expected.clone();
            if order == Order::NewestFirst {
                want.reverse();
            }
            let shown = want.len().min(50 * limit);
            assert_eq!(
                got,
                want[..shown],
                "round {round} {order:?} limit {limit} upto {upto:?} query {query:?}"
            );
        }
        let stats = ix
            .stats(
                "acme",
                &query,
                &StatsRequest {
                    now_ms,
                    by: Some(Field::Outcome),
                    interval_ms: None,
                    limit: 10,
                },
            )
            .unwrap();
        let all_matches = (0..N)
            .filter(|&i| matches(&records[i as usize], &query, now_ms))
            .count() as u64;
        assert_eq!(stats.total, all_matches, "round {round} stats");
        assert_eq!(
            stats.buckets.iter().map(|b| b.count).sum::<u64>(),
            all_matches
        );
        if round % 10 == 0 {
            // A field without a fast column: every event has its own trace id.
            let by_trace = ix
                .stats(
                    "acme",
                    &query,
                    &StatsRequest {
                        now_ms,
                        by: Some(Field::TraceId),
                        interval_ms: Some(600_000),
                        limit: 100_000,
                    },
                )
                .unwrap();
            assert_eq!(by_trace.total, all_matches);
            assert_eq!(by_trace.buckets.len() as u64, all_matches, "round {round}");
            assert!(by_trace
                .buckets
                .iter()
                .all(|b| b.count == 1 && b.key.is_some()));
        }
    }
}

fn build(options: TantivyOptions, records: &[Vec<u8>]) -> (tempfile::TempDir, TantivyIndex) {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open_with(dir.path(), options).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut start = 0usize;
    while start < records.len() {
        let end = (start + rng.gen_range(1..400)).min(records.len());
        add_from(&ix, "acme", start as u64, &records[start..end]);
        if rng.gen_bool(0.5) {
            ix.commit().unwrap();
        }
        start = end;
    }
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), N);
    (dir, ix)
}

#[test]
fn generated_events_match_brute_force() {
    let raw = generated();
    let records: Vec<Record> = raw.iter().map(|r| Record::parse(r).unwrap()).collect();
    let (_d, ix) = build(TantivyOptions::default(), &raw);
    check(&ix, &records, 11);

    // Two indexing threads interleave the leaves of one commit across segments.
    let (dir, ix) = build(
        TantivyOptions {
            writer_threads: 2,
            writer_memory_bytes: 64 << 20,
            ..TantivyOptions::default()
        },
        &raw,
    );
    check(&ix, &records, 12);
    // And after a reopen (merged segments, fresh caches).
    drop(ix);
    let ix = TantivyIndex::open(dir.path()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), N);
    check(&ix, &records, 13);
}
