//! Indexing throughput, index size, first-page latency of typical queries, and stats, on
//! realistic generated events (tally-eventgen's generator, made into canonical records by
//! tally-event exactly as the server does).
//!
//! `cargo bench -p tally-index --bench index` (`TALLY_INDEX_BENCH_EVENTS=1000000` for a larger
//! corpus; default 200,000). Sizes are printed before the timings.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tally_event::{parse_body, validate, BodyFormat, IngestContext, Record};
use tally_eventgen::EventGenerator;
use tally_index::{
    EventIndex, IndexedEvent, Order, SearchOptions, StatsRequest, TantivyIndex, TantivyOptions,
};
use tally_query::Field;
use time::macros::datetime;

/// Records per `add` call (what the index consumer reads from the log per batch).
const CHUNK: usize = 4096;
/// Records between commits (about one second of ingest at 100k events/s).
const COMMIT_EVERY: usize = 100_000;

fn events() -> usize {
    std::env::var("TALLY_INDEX_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// `n` canonical records, times advancing about a minute per 1,000 events.
fn records(n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut base = datetime!(2026-01-05 00:00 UTC);
    let mut generator = EventGenerator::new(42)
        .with_tenant(Some("acme".into()))
        .with_base_time(base);
    let mut out = Vec::with_capacity(n);
    let mut json_bytes = 0;
    for i in 0..n {
        if i % 1000 == 0 {
            base += time::Duration::minutes(1);
            generator = generator.with_base_time(base);
        }
        let json = generator.next_json();
        json_bytes += json.len();
        let input = parse_body(&json, BodyFormat::Json, 1)
            .expect("generated JSON parses")
            .pop()
            .expect("one event");
        let ctx = IngestContext {
            received_at: base,
            key_id: if i % 10 == 0 { "key-batch" } else { "key-app" },
            default_tenant: None,
            max_future_skew: time::Duration::minutes(5),
        };
        out.push(
            validate(input, &ctx)
                .expect("generated events are valid")
                .record,
        );
    }
    (out, json_bytes)
}

fn index_all(ix: &TantivyIndex, records: &[Vec<u8>]) {
    let mut since_commit = 0;
    for (c, chunk) in records.chunks(CHUNK).enumerate() {
        let start = (c * CHUNK) as u64;
        let events: Vec<IndexedEvent<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, record)| IndexedEvent {
                index: start + i as u64,
                record,
                personal: &[],
            })
            .collect();
        ix.add("acme", &events).expect("add");
        since_commit += chunk.len();
        if since_commit >= COMMIT_EVERY {
            ix.commit().expect("commit");
            since_commit = 0;
        }
    }
    ix.commit().expect("commit");
}

fn benches(c: &mut Criterion) {
    let n = events();
    let t = Instant::now();
    let (records, json_bytes) = records(n);
    let record_bytes: usize = records.iter().map(Vec::len).sum();
    eprintln!(
        "{n} events generated in {:.1?}: {:.0} JSON bytes/event, {:.0} record bytes/event",
        t.elapsed(),
        json_bytes as f64 / n as f64,
        record_bytes as f64 / n as f64
    );

    // Indexing: from records to committed, searchable index.
    let mut ingest = c.benchmark_group("index");
    ingest.sample_size(10);
    ingest.measurement_time(Duration::from_secs(20));
    ingest.throughput(Throughput::Elements(n as u64));
    for threads in [1usize, 2] {
        ingest.bench_function(format!("add_commit_{n}_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let options = TantivyOptions {
                        writer_threads: threads,
                        ..TantivyOptions::default()
                    };
                    let ix = TantivyIndex::open_with(dir.path(), options).expect("open");
                    let t = Instant::now();
                    index_all(&ix, &records);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    ingest.finish();

    // One index for the queries.
    let dir = tempfile::tempdir().expect("tempdir");
    let ix = TantivyIndex::open(dir.path()).expect("open");
    let t = Instant::now();
    index_all(&ix, &records);
    let took = t.elapsed();
    // Let background merges settle, then measure what stays on disk.
    drop(ix);
    let ix = TantivyIndex::open(dir.path()).expect("reopen");
    let t = Instant::now();
    assert_eq!(ix.indexed("acme").expect("indexed"), n as u64);
    let open = t.elapsed();
    let size = ix.size_on_disk();
    // What the committed segments take (size_on_disk also counts files of merges that were
    // cut short when the writer closed; the next commit collects them).
    let live = tantivy::Index::open_in_dir(dir.path().join("acme"))
        .and_then(|i| i.reader())
        .expect("open the tenant index")
        .searcher()
        .space_usage()
        .expect("space usage")
        .total()
        .get_bytes();
    eprintln!(
        "committed segments {:.1} MB = {:.1} bytes/event",
        live as f64 / 1e6,
        live as f64 / n as f64
    );
    eprintln!(
        "indexed {n} events in {took:.2?} ({:.0} events/s, 1 thread); index {:.1} MB = {:.1} bytes/event \
         ({:.0}% of the records); tenant open + checks {open:.2?}",
        n as f64 / took.as_secs_f64(),
        size as f64 / 1e6,
        size as f64 / n as f64,
        100.0 * size as f64 / record_bytes as f64,
    );

    // Query values taken from the data.
    let sample = Record::parse(&records[n / 2]).expect("record");
    let actor = sample.actor.id.clone();
    let rare_request = Record::parse(&records[n / 3])
        .expect("record")
        .request_id
        .expect("generated events have request ids");
    let ip_block = records
        .iter()
        .rev()
        .filter_map(|r| Record::parse(r).ok()?.actor.ip)
        .find(|ip| ip.is_ipv4())
        .map(|ip| {
            let o = match ip {
                std::net::IpAddr::V4(v4) => v4.octets(),
                std::net::IpAddr::V6(_) => unreachable!(),
            };
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        })
        .expect("an IPv4 client");
    let mid_time = |at: usize| {
        Record::parse(&records[at])
            .expect("record")
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats")
    };
    let now_ms =
        (datetime!(2026-01-05 00:00 UTC).unix_timestamp() + 60 * (n as i64 / 1000 + 2)) * 1000;
    let queries: Vec<(&str, String)> = vec![
        ("all", String::new()),
        ("actor", format!("actor:{actor}")),
        ("outcome_failure", "outcome:FAILURE".into()),
        ("action_prefix", "action:payment.*".into()),
        ("category_or", "category:EXPORT,VIEW_PII".into()),
        ("cidr_v4_24", format!("ip:{ip_block}")),
        ("rare_request_id", format!("request:{rare_request}")),
        ("text_word", "central".into()),
        ("text_two_words", "eu central".into()),
        ("phrase", "\"eu-central-1\"".into()),
        ("only_negated", "-outcome:SUCCESS".into()),
        (
            "time_window_old",
            format!(
                "after:{} before:{}",
                mid_time(n / 10),
                mid_time(n / 10 + 2000)
            ),
        ),
        ("relative_30m_failures", "after:30m outcome:FAILURE".into()),
        (
            "combined",
            "action:user.* -outcome:SUCCESS -actor.type:service category:LOGIN".into(),
        ),
    ];
    let parsed: Vec<(&str, tally_query::Query)> = queries
        .iter()
        .map(|(name, text)| {
            (
                *name,
                tally_query::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")),
            )
        })
        .collect();

    let mut first = c.benchmark_group("first_page_50");
    for (name, query) in &parsed {
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let opts = SearchOptions {
                now_ms,
                order,
                cursor: None,
                limit: 50,
                upto: Some(n as u64),
            };
            let hits = ix
                .search("acme", query, &opts)
                .expect("search")
                .indexes
                .len();
            let label = match order {
                Order::NewestFirst => "newest",
                Order::OldestFirst => "oldest",
            };
            first.bench_function(format!("{name}_{label}_({hits}_hits)"), |b| {
                b.iter(|| black_box(ix.search("acme", query, &opts).expect("search")))
            });
        }
    }
    // A page deep in the middle (cursor), as when paging on.
    let deep = SearchOptions {
        now_ms,
        order: Order::NewestFirst,
        cursor: Some(n as u64 / 2),
        limit: 50,
        upto: Some(n as u64),
    };
    for (name, query) in parsed
        .iter()
        .filter(|(n, _)| ["actor", "outcome_failure"].contains(n))
    {
        first.bench_function(format!("{name}_newest_from_middle"), |b| {
            b.iter(|| black_box(ix.search("acme", query, &deep).expect("search")))
        });
    }
    first.finish();

    let mut stats = c.benchmark_group("stats");
    stats.sample_size(20);
    let all = tally_query::Query::default();
    let failures = tally_query::parse("outcome:FAILURE").expect("parses");
    let cases: Vec<(&str, &tally_query::Query, Option<Field>, Option<i64>)> = vec![
        ("count_failures", &failures, None, None),
        ("all_by_actor", &all, Some(Field::ActorId), None),
        ("all_by_action", &all, Some(Field::Action), None),
        ("all_by_10min", &all, None, Some(600_000)),
        ("failures_by_actor", &failures, Some(Field::ActorId), None),
        ("failures_by_ip", &failures, Some(Field::ActorIp), None),
        (
            "all_by_outcome_and_10min",
            &all,
            Some(Field::Outcome),
            Some(600_000),
        ),
    ];
    for (name, query, by, interval_ms) in cases {
        let req = StatsRequest {
            now_ms,
            by,
            interval_ms,
            limit: 10,
        };
        stats.bench_function(name, |b| {
            b.iter(|| black_box(ix.stats("acme", query, &req).expect("stats")))
        });
    }
    stats.finish();
}

criterion_group!(index, benches);
criterion_main!(index);
