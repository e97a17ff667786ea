//! Adding, committing, reopening, clearing, paging, stats, isolation and damage.

mod common;

use std::path::Path;

use common::*;
use tally_index::{
    EventIndex, IndexError, IndexedEvent, Order, SearchOptions, StatsBucket, StatsRequest,
    TantivyIndex,
};
use tally_query::{Field, Query};

/// A simple valid record: actor `user<i % 7>`, every third one a failure, one per second
/// from midnight.
fn synthetic(i: u64) -> Vec<u8> {
    let secs = i % 40_000;
    let time = format!(
        "2024-05-01T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let outcome = if i.is_multiple_of(3) {
        "FAILURE"
    } else {
        "SUCCESS"
    };
    record(&format!(
        r#"{{"time":"{time}","actor":{{"id":"user{}","ip":"10.0.{}.{}"}},"action":"doc.read","outcome":"{outcome}",
            "metadata":{{"seq":"n{i}"}}}}"#,
        i % 7,
        i / 256 % 256,
        i % 256
    ))
}

fn add_synthetic(index: &dyn EventIndex, tenant: &str, range: std::ops::Range<u64>) {
    let records: Vec<Vec<u8>> = range.clone().map(synthetic).collect();
    add_from(index, tenant, range.start, &records);
}

fn page(
    index: &dyn EventIndex,
    query: &Query,
    order: Order,
    cursor: Option<u64>,
    upto: Option<u64>,
    limit: usize,
) -> tally_index::SearchPage {
    index
        .search(
            "acme",
            query,
            &SearchOptions {
                now_ms: 0,
                order,
                cursor,
                limit,
                upto,
            },
        )
        .unwrap()
}

#[test]
fn cursor_pages_are_stable_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    // Several segments.
    for chunk in 0..5u64 {
        add_synthetic(&ix, "acme", chunk * 60..(chunk + 1) * 60);
        ix.commit().unwrap();
    }
    let size = ix.indexed("acme").unwrap();
    assert_eq!(size, 300);
    let user3 = q(vec![exact(Field::ActorId, &["user3"])]);
    let expected: Vec<u64> = (0..300).filter(|i| i % 7 == 3).collect();

    let mut added = size;
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let mut seen: Vec<u64> = Vec::new();
        let mut cursor = None;
        loop {
            let p = page(&ix, &user3, order, cursor, Some(size), 9);
            assert!(p.indexes.len() <= 9);
            seen.extend(&p.indexes);
            // More events arrive and are committed between pages.
            add_synthetic(&ix, "acme", added..added + 50);
            ix.commit().unwrap();
            added += 50;
            match p.next_cursor {
                Some(c) => {
                    assert_eq!(Some(&c), p.indexes.last());
                    cursor = Some(c);
                }
                None => break,
            }
        }
        let mut want = expected.clone();
        if order == Order::NewestFirst {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}");
    }
    // Without `upto` the newest page sees the new events.
    let p = page(&ix, &user3, Order::NewestFirst, None, None, 1);
    let last = ix.indexed("acme").unwrap() - 1;
    assert_eq!(
        p.indexes,
        vec![(0..=last).rev().find(|i| i % 7 == 3).unwrap()]
    );
}

#[test]
fn indexed_survives_reopen_and_uncommitted_adds_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ix = TantivyIndex::open(dir.path()).unwrap();
        assert_eq!(ix.indexed("acme").unwrap(), 0);
        add_synthetic(&ix, "acme", 0..100);
        assert_eq!(ix.indexed("acme").unwrap(), 0, "not before commit");
        assert!(
            find(&ix, "acme", &Query::default()).is_empty(),
            "not visible before commit"
        );
        ix.commit().unwrap();
        assert_eq!(ix.indexed("acme").unwrap(), 100);
        add_synthetic(&ix, "acme", 100..150);
        ix.commit().unwrap();
        add_synthetic(&ix, "acme", 150..170); // never committed
        assert_eq!(ix.indexed("acme").unwrap(), 150);
    }
    let ix = TantivyIndex::open(dir.path()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 150);
    assert_eq!(
        find(&ix, "acme", &Query::default()),
        (0..150).collect::<Vec<_>>()
    );
    // Continue exactly where the commit stood.
    let err = ix
        .add(
            "acme",
            &[IndexedEvent {
                index: 170,
                record: &synthetic(170),
                personal: &[],
            }],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::OutOfOrder {
                expected: 150,
                got: 170,
                ..
            }
        ),
        "{err}"
    );
    add_synthetic(&ix, "acme", 150..200);
    ix.commit().unwrap();
    drop(ix);
    let ix = TantivyIndex::open(dir.path()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 200);
    assert_eq!(find(&ix, "acme", &Query::default()).len(), 200);
}

#[test]
fn out_of_order_and_bad_records_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let r: Vec<Vec<u8>> = (0..4).map(synthetic).collect();
    // Not starting at 0.
    let err = ix
        .add(
            "acme",
            &[IndexedEvent {
                index: 1,
                record: &r[1],
                personal: &[],
            }],
        )
        .unwrap_err();
    assert!(
        matches!(&err, IndexError::OutOfOrder { tenant, expected: 0, got: 1 } if tenant == "acme"),
        "{err}"
    );
    // A gap inside the batch.
    let err = ix
        .add(
            "acme",
            &[
                IndexedEvent {
                    index: 0,
                    record: &r[0],
                    personal: &[],
                },
                IndexedEvent {
                    index: 2,
                    record: &r[2],
                    personal: &[],
                },
            ],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::OutOfOrder {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    // A record that does not parse: nothing of the batch is added.
    let err = ix
        .add(
            "acme",
            &[
                IndexedEvent {
                    index: 0,
                    record: &r[0],
                    personal: &[],
                },
                IndexedEvent {
                    index: 1,
                    record: b"{\"not\":\"a record\"}",
                    personal: &[],
                },
            ],
        )
        .unwrap_err();
    assert!(
        matches!(err, IndexError::BadRecord { index: 1, .. }),
        "{err}"
    );
    // A record of another tenant.
    let other = record_with(
        r#"{"time":"2024-05-01T10:00:00Z","actor":{"id":"x"},"action":"a","outcome":"SUCCESS"}"#,
        "globex",
        "k",
        time::macros::datetime!(2024-05-01 12:00 UTC),
    );
    let err = ix
        .add(
            "acme",
            &[IndexedEvent {
                index: 0,
                record: &other,
                personal: &[],
            }],
        )
        .unwrap_err();
    assert!(
        matches!(err, IndexError::BadRecord { index: 0, .. }),
        "{err}"
    );
    // Replaying an index already added.
    add_synthetic(&ix, "acme", 0..2);
    let err = ix
        .add(
            "acme",
            &[IndexedEvent {
                index: 1,
                record: &r[1],
                personal: &[],
            }],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::OutOfOrder {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 2);
    assert_eq!(find(&ix, "acme", &Query::default()), vec![0, 1]);
    // Empty batches are fine.
    ix.add("acme", &[]).unwrap();
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 2);
}

#[test]
fn clear_then_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    add_synthetic(&ix, "acme", 0..120);
    ix.commit().unwrap();
    add_synthetic(&ix, "acme", 120..130); // pending, dropped by clear
    ix.clear("acme").unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 0);
    assert!(find(&ix, "acme", &Query::default()).is_empty());
    assert!(!dir.path().join("acme").exists());
    add_synthetic(&ix, "acme", 0..30);
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 30);
    assert_eq!(
        find(&ix, "acme", &Query::default()),
        (0..30).collect::<Vec<_>>()
    );
    // Clearing an unknown tenant is fine.
    ix.clear("nobody").unwrap();
    drop(ix);
    let ix = TantivyIndex::open(dir.path()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 30);
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let acme = corpus();
    let globex: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            record_with(
                &format!(
                    r#"{{"time":"2024-05-01T10:0{i}:00Z","actor":{{"id":"alice"}},"action":"globex.thing","outcome":"SUCCESS"}}"#
                ),
                "globex",
                "key-g",
                time::macros::datetime!(2024-05-01 12:00 UTC),
            )
        })
        .collect();
    add_from(&ix, "acme", 0, &acme);
    add_from(&ix, "globex", 0, &globex);
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 8);
    assert_eq!(ix.indexed("globex").unwrap(), 3);
    let alice = q(vec![exact(Field::ActorId, &["alice"])]);
    assert_eq!(find(&ix, "acme", &alice), vec![0, 2, 5]);
    assert_eq!(find(&ix, "globex", &alice), vec![0, 1, 2]);
    assert!(find(&ix, "acme", &q(vec![prefix(Field::Action, "globex.")])).is_empty());
    assert!(find(&ix, "globex", &q(vec![text("lisbon")])).is_empty());
    let stats = ix
        .stats(
            "globex",
            &Query::default(),
            &StatsRequest {
                now_ms: 0,
                by: Some(Field::ActorId),
                interval_ms: None,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!(stats.total, 3);
    assert_eq!(stats.buckets, vec![bucket(Some("alice"), None, 3)]);
    // Clearing one tenant leaves the other.
    ix.clear("globex").unwrap();
    assert_eq!(find(&ix, "acme", &alice), vec![0, 2, 5]);
    assert!(find(&ix, "globex", &alice).is_empty());
}

fn bucket(key: Option<&str>, start_ms: Option<i64>, count: u64) -> StatsBucket {
    StatsBucket {
        key: key.map(str::to_owned),
        start_ms,
        count,
    }
}

#[test]
fn stats_by_field_interval_and_both() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let records = corpus();
    add_from(&ix, "acme", 0, &records[..3]);
    ix.commit().unwrap();
    add_from(&ix, "acme", 3, &records[3..]);
    ix.commit().unwrap();
    let stats = |query: &Query, by, interval_ms, limit| {
        ix.stats(
            "acme",
            query,
            &StatsRequest {
                now_ms: at(12, 0),
                by,
                interval_ms,
                limit,
            },
        )
        .unwrap()
    };
    let all = Query::default();

    let s = stats(&all, None, None, 10);
    assert_eq!((s.total, s.buckets.len()), (8, 0));
    let s = stats(
        &q(vec![exact(Field::Outcome, &["SUCCESS"])]),
        None,
        None,
        10,
    );
    assert_eq!(s.total, 6);

    // By field: count desc, ties by key; missing values under None.
    let s = stats(&all, Some(Field::ActorId), None, 10);
    assert_eq!(s.total, 8);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("alice"), None, 3),
            bucket(Some("bob"), None, 2),
            bucket(Some("carol"), None, 1),
            bucket(Some("svc-billing"), None, 1),
            bucket(Some("system"), None, 1),
        ]
    );
    let s = stats(&all, Some(Field::ActorId), None, 2);
    assert_eq!(s.total, 8);
    assert_eq!(
        s.buckets,
        vec![bucket(Some("alice"), None, 3), bucket(Some("bob"), None, 2)]
    );
    let s = stats(&all, Some(Field::ResourceType), None, 10);
    assert_eq!(
        s.buckets,
        vec![
            bucket(None, None, 5),
            bucket(Some("user"), None, 2),
            bucket(Some("invoice"), None, 1)
        ]
    );
    let s = stats(&q(vec![cidr("::", 0)]), Some(Field::ActorIp), None, 3);
    assert_eq!(s.total, 7);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("10.1.2.3"), None, 1),
            bucket(Some("198.51.100.7"), None, 1),
            bucket(Some("198.51.100.8"), None, 1),
        ]
    );
    let s = stats(
        &q(vec![exact(Field::ActorId, &["alice"])]),
        Some(Field::Outcome),
        None,
        10,
    );
    assert_eq!(
        (s.total, s.buckets),
        (3, vec![bucket(Some("SUCCESS"), None, 3)])
    );

    // Identifier fields without a fast column.
    let s = stats(&all, Some(Field::RequestId), None, 10);
    assert_eq!(
        s.buckets,
        vec![bucket(None, None, 7), bucket(Some("r1"), None, 1)]
    );
    let s = stats(
        &q(vec![exact(Field::ActorId, &["alice", "bob"])]),
        Some(Field::Id),
        None,
        3,
    );
    assert_eq!(s.total, 5);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("00000000-0000-4000-8000-000000000000"), None, 1),
            bucket(Some("00000000-0000-4000-8000-000000000001"), None, 1),
            bucket(Some("00000000-0000-4000-8000-000000000002"), None, 1),
        ]
    );
    let s = stats(&all, Some(Field::TraceId), Some(3_600_000), 10);
    assert_eq!(
        s.buckets,
        vec![
            bucket(None, Some(at(10, 0)), 3),
            bucket(None, Some(at(11, 0)), 4),
            bucket(Some("t-1"), Some(at(10, 0)), 1),
        ]
    );
    let s = stats(&all, Some(Field::SessionId), None, 10);
    assert_eq!(
        s.buckets,
        vec![bucket(None, None, 7), bucket(Some("s1"), None, 1)]
    );

    // By interval: ascending buckets, floor(time / interval) * interval.
    let hour = 3_600_000;
    let s = stats(&all, None, Some(hour), 10);
    assert_eq!(
        s.buckets,
        vec![
            bucket(None, Some(at(10, 0)), 4),
            bucket(None, Some(at(11, 0)), 4)
        ]
    );
    let s = stats(&all, None, Some(30 * 60_000), 10);
    assert_eq!(
        s.buckets,
        vec![
            bucket(None, Some(at(10, 0)), 3),
            bucket(None, Some(at(10, 30)), 1),
            bucket(None, Some(at(11, 0)), 1),
            bucket(None, Some(at(11, 30)), 3),
        ]
    );
    // Too many buckets: the latest `limit`.
    let s = stats(&all, None, Some(30 * 60_000), 2);
    assert_eq!(s.total, 8);
    assert_eq!(
        s.buckets,
        vec![
            bucket(None, Some(at(11, 0)), 1),
            bucket(None, Some(at(11, 30)), 3)
        ]
    );

    // Both.
    let s = stats(&all, Some(Field::Category), Some(hour), 3);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("LOGIN"), Some(at(10, 0)), 2),
            bucket(Some("ADMIN"), Some(at(11, 0)), 1),
            bucket(Some("CONFIG"), Some(at(11, 0)), 1),
        ]
    );
    let s = stats(
        &q(vec![exact(Field::ActorId, &["alice", "bob"])]),
        Some(Field::ActorId),
        Some(hour),
        10,
    );
    assert_eq!(s.total, 5);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("alice"), Some(at(10, 0)), 2),
            bucket(Some("alice"), Some(at(11, 0)), 1),
            bucket(Some("bob"), Some(at(10, 0)), 1),
            bucket(Some("bob"), Some(at(11, 0)), 1),
        ]
    );
    // Query filters apply; relative bounds use now_ms.
    let s = stats(
        &q(vec![after(tally_query::TimeBound::Ago(hour))]),
        Some(Field::Outcome),
        None,
        10,
    );
    assert_eq!(s.total, 4);
    assert_eq!(
        s.buckets,
        vec![
            bucket(Some("SUCCESS"), None, 3),
            bucket(Some("DENIED"), None, 1)
        ]
    );
    // Unknown tenant, bad interval.
    assert_eq!(
        ix.stats(
            "nobody",
            &all,
            &StatsRequest {
                now_ms: 0,
                by: None,
                interval_ms: None,
                limit: 1
            }
        )
        .unwrap()
        .total,
        0
    );
    assert!(ix
        .stats(
            "acme",
            &all,
            &StatsRequest {
                now_ms: 0,
                by: None,
                interval_ms: Some(0),
                limit: 1
            }
        )
        .is_err());
}

/// Files of the tenant's tantivy index with the given extension.
fn files_with(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect()
}

fn damaged_index(damage: impl FnOnce(&Path)) -> (tempfile::TempDir, Result<u64, IndexError>) {
    let dir = tempfile::tempdir().unwrap();
    {
        let ix = TantivyIndex::open(dir.path()).unwrap();
        add_synthetic(&ix, "acme", 0..200);
        ix.commit().unwrap();
    }
    damage(&dir.path().join("acme"));
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let result = ix.indexed("acme");
    (dir, result)
}

#[test]
fn damaged_indexes_are_reported_corrupt_and_can_be_rebuilt() {
    let cases: Vec<(&str, Damage)> = vec![
        (
            "garbled meta.json",
            Box::new(|d: &Path| std::fs::write(d.join("meta.json"), b"{\"garbage\": tru").unwrap()),
        ),
        (
            "payload removed",
            Box::new(|d: &Path| {
                let meta = std::fs::read_to_string(d.join("meta.json")).unwrap();
                let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
                v.as_object_mut().unwrap().remove("payload");
                std::fs::write(d.join("meta.json"), v.to_string()).unwrap();
            }),
        ),
        (
            "payload claims more",
            Box::new(|d: &Path| {
                let meta = std::fs::read_to_string(d.join("meta.json")).unwrap();
                let meta = meta.replace("\\\"next\\\":200", "\\\"next\\\":250");
                assert!(meta.contains("250"));
                std::fs::write(d.join("meta.json"), meta).unwrap();
            }),
        ),
        (
            "segment file deleted",
            Box::new(|d: &Path| {
                for f in files_with(d, "idx") {
                    std::fs::remove_file(f).unwrap();
                }
            }),
        ),
        (
            "fast fields truncated",
            Box::new(|d: &Path| {
                for f in files_with(d, "fast") {
                    let bytes = std::fs::read(&f).unwrap();
                    std::fs::write(&f, &bytes[..bytes.len() / 3]).unwrap();
                }
            }),
        ),
        (
            "fast fields zeroed",
            Box::new(|d: &Path| {
                for f in files_with(d, "fast") {
                    let len = std::fs::metadata(&f).unwrap().len() as usize;
                    std::fs::write(&f, vec![0u8; len]).unwrap();
                }
            }),
        ),
    ];
    for (name, damage) in cases {
        let (dir, result) = damaged_index(damage);
        assert!(
            matches!(result, Err(IndexError::Corrupt(_))),
            "{name}: {result:?}"
        );
        // The index consumer's recovery: clear and rebuild.
        let ix = TantivyIndex::open(dir.path()).unwrap();
        ix.clear("acme").unwrap();
        assert_eq!(ix.indexed("acme").unwrap(), 0, "{name}");
        add_synthetic(&ix, "acme", 0..10);
        ix.commit().unwrap();
        assert_eq!(find(&ix, "acme", &Query::default()).len(), 10, "{name}");
    }
}

#[test]
fn a_foreign_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("something"), b"else").unwrap();
    assert!(matches!(
        TantivyIndex::open(dir.path()),
        Err(IndexError::Corrupt(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), b"other format\n").unwrap();
    assert!(matches!(
        TantivyIndex::open(dir.path()),
        Err(IndexError::Corrupt(_))
    ));
}

#[test]
fn waiting_for_merges_keeps_every_event_and_adding_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    // Many small commits: many segments for the merge policy to work on.
    for start in (0..400).step_by(20) {
        add_synthetic(&ix, "acme", start..start + 20);
        ix.commit().unwrap();
    }
    let segments = ix.wait_for_merges().unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].0, "acme");
    assert!((1..20).contains(&segments[0].1), "{segments:?}");
    assert_eq!(ix.indexed("acme").unwrap(), 400);
    assert_eq!(
        find(&ix, "acme", &Query::default()),
        (0..400).collect::<Vec<_>>()
    );
    // The writer is made again on the next add.
    add_synthetic(&ix, "acme", 400..410);
    ix.commit().unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 410);
    drop(ix);
    let ix = TantivyIndex::open(dir.path()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 410);
}

#[test]
fn size_on_disk_grows() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let empty = ix.size_on_disk();
    add_synthetic(&ix, "acme", 0..500);
    ix.commit().unwrap();
    assert!(ix.size_on_disk() > empty + 500);
}

#[test]
fn time_bounds_with_events_far_out_of_order() {
    // Mostly in order, but every 97th event is a late arrival from the previous day and every
    // 89th claims the next day: the zone map must not hide any of them.
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    let n = 5000u64;
    let day = |i: u64| {
        if i % 97 == 5 {
            "2024-04-30"
        } else if i % 89 == 7 {
            "2024-05-02"
        } else {
            "2024-05-01"
        }
    };
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let s = i % 40_000;
            record_with(
                &format!(
                    r#"{{"time":"{}T{:02}:{:02}:{:02}Z","actor":{{"id":"u{}"}},"action":"a.b","outcome":"SUCCESS"}}"#,
                    day(i),
                    s / 3600,
                    s / 60 % 60,
                    s % 60,
                    i % 3
                ),
                "acme",
                "k",
                time::macros::datetime!(2024-05-03 00:00 UTC),
            )
        })
        .collect();
    for chunk in 0..5 {
        let range = chunk * 1000..(chunk + 1) * 1000;
        add_from(
            &ix,
            "acme",
            range.start,
            &records[range.start as usize..range.end as usize],
        );
        ix.commit().unwrap();
    }
    let may1 = at(0, 0);
    let may2 = may1 + 86_400_000;
    let cases: Vec<(Query, Expect<'_>)> = vec![
        (
            q(vec![before(tally_query::TimeBound::At(may1))]),
            Box::new(|i| day(i) == "2024-04-30"),
        ),
        (
            q(vec![after(tally_query::TimeBound::At(may2))]),
            Box::new(|i| day(i) == "2024-05-02"),
        ),
        (
            q(vec![
                after(tally_query::TimeBound::At(may1 + 600_000)),
                before(tally_query::TimeBound::At(may1 + 1_200_000)),
            ]),
            Box::new(|i| day(i) == "2024-05-01" && (600..1200).contains(&(i % 40_000))),
        ),
        (
            q(vec![
                before(tally_query::TimeBound::At(may1)),
                exact(Field::ActorId, &["u1"]),
            ]),
            Box::new(|i| day(i) == "2024-04-30" && i % 3 == 1),
        ),
    ];
    for (k, (query, want)) in cases.iter().enumerate() {
        let expected: Vec<u64> = (0..n).filter(|&i| want(i)).collect();
        assert!(!expected.is_empty());
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let mut got: Vec<u64> = Vec::new();
            let mut cursor = None;
            loop {
                let p = page(&ix, query, order, cursor, None, 7);
                got.extend(&p.indexes);
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let mut e = expected.clone();
            if order == Order::NewestFirst {
                e.reverse();
            }
            assert_eq!(got, e, "case {k} {order:?}");
        }
        let s = ix
            .stats(
                "acme",
                query,
                &StatsRequest {
                    now_ms: 0,
                    by: None,
                    interval_ms: None,
                    limit: 1,
                },
            )
            .unwrap();
        assert_eq!(s.total, expected.len() as u64, "case {k} count");
        let s = ix
            .stats(
                "acme",
                query,
                &StatsRequest {
                    now_ms: 0,
                    by: Some(Field::ActorId),
                    interval_ms: Some(86_400_000),
                    limit: 10,
                },
            )
            .unwrap();
        assert_eq!(
            s.buckets.iter().map(|b| b.count).sum::<u64>(),
            expected.len() as u64,
            "case {k} buckets"
        );
    }
}

/// A way of damaging an index directory.
type Damage = Box<dyn FnOnce(&Path)>;
/// Which leaf indexes a query must match.
type Expect<'a> = Box<dyn Fn(u64) -> bool + 'a>;

#[derive(Debug)]
struct TestKeys;

impl tally_index::IndexCipher for TestKeys {
    fn current(&self, tenant: &str) -> std::io::Result<(u32, chacha20poly1305::XChaCha20Poly1305)> {
        Ok((1, self.key(tenant, 1)?))
    }

    fn key(&self, _tenant: &str, id: u32) -> std::io::Result<chacha20poly1305::XChaCha20Poly1305> {
        use chacha20poly1305::KeyInit;
        Ok(chacha20poly1305::XChaCha20Poly1305::new(
            &[id as u8; 32].into(),
        ))
    }
}

/// An encrypted index works as a plain one does, holds no term in the clear, and is never
/// opened as plain (nor a plain one as encrypted): either way the index is reported corrupt,
/// which makes the server rebuild it from the log.
#[test]
fn an_encrypted_index_searches_alike_and_is_never_mixed_with_a_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let encrypted = || tally_index::TantivyOptions {
        cipher: Some(std::sync::Arc::new(TestKeys)),
        ..tally_index::TantivyOptions::default()
    };
    {
        let ix = TantivyIndex::open_with(dir.path(), encrypted()).unwrap();
        add_synthetic(&ix, "acme", 0..50);
        ix.commit().unwrap();
        assert_eq!(find(&ix, "acme", &Query::default()).len(), 50);
    }
    let ix = TantivyIndex::open_with(dir.path(), encrypted()).unwrap();
    assert_eq!(ix.indexed("acme").unwrap(), 50);
    assert_eq!(find(&ix, "acme", &Query::default()).len(), 50);
    drop(ix);
    let mut clear_terms = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("acme")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if bytes.windows(8).any(|w| w == b"doc.read") {
            clear_terms.push(bytes.len());
        }
    }
    assert!(clear_terms.is_empty(), "a file holds a term in the clear");
    assert!(matches!(
        TantivyIndex::open(dir.path()),
        Err(IndexError::Corrupt(_))
    ));
    let plain = tempfile::tempdir().unwrap();
    {
        let ix = TantivyIndex::open(plain.path()).unwrap();
        add_synthetic(&ix, "acme", 0..50);
        ix.commit().unwrap();
    }
    // The same check finds the term in a plain index: it would see one in the clear.
    let plain_files: Vec<Vec<u8>> = std::fs::read_dir(plain.path().join("acme"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(plain_files
        .iter()
        .any(|b| b.windows(8).any(|w| w == b"doc.read")));
    assert!(matches!(
        TantivyIndex::open_with(plain.path(), encrypted()),
        Err(IndexError::Corrupt(_))
    ));
}
