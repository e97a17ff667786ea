//! Query semantics over a small hand-made corpus.

mod common;

use common::*;
use tally_index::{EventIndex, Order, SearchOptions, TantivyIndex};
use tally_query::{Field, Query, TermKind, TimeBound, Value};

fn corpus_index() -> (tempfile::TempDir, TantivyIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path()).unwrap();
    let records = corpus();
    // Two commits: two segments.
    add_from(&index, "acme", 0, &records[..4]);
    index.commit().unwrap();
    add_from(&index, "acme", 4, &records[4..]);
    index.commit().unwrap();
    (dir, index)
}

fn f(index: &TantivyIndex, terms: Vec<tally_query::Term>) -> Vec<u64> {
    find(index, "acme", &q(terms))
}

#[test]
fn every_field_filters_exactly() {
    let (_d, ix) = corpus_index();
    let cases: &[(Field, &str, &[u64])] = &[
        (Field::Id, "00000000-0000-4000-8000-000000000003", &[3]),
        (Field::ActorId, "alice", &[0, 2, 5]),
        (Field::ActorId, "Alice", &[]),
        (Field::ActorType, "service", &[3]),
        (Field::ActorType, "system", &[6]),
        (Field::ActorIp, "203.0.113.5", &[0]),
        (Field::ActorIp, "2001:db8::1", &[2]),
        (Field::ActorIp, "not an ip", &[]),
        (Field::SessionId, "s1", &[0]),
        (Field::Action, "user.login", &[0, 1]),
        (Field::Action, "user", &[]),
        (Field::Category, "LOGIN", &[0, 1]),
        (Field::Outcome, "SUCCESS", &[0, 2, 3, 5, 6, 7]),
        (Field::Outcome, "DENIED", &[4]),
        (Field::ResourceType, "user", &[2, 4]),
        (Field::ResourceId, "inv-42", &[3]),
        (Field::ResourceName, "Bob Jones", &[4]),
        (Field::ResourceName, "Bob", &[]),
        (Field::RequestId, "r1", &[0]),
        (Field::TraceId, "t-1", &[3]),
        (Field::CorrelationId, "c-9", &[3]),
        (Field::KeyId, "key-2", &[7]),
        (Field::KeyId, "key-1", &[0, 1, 2, 3, 4, 5, 6]),
    ];
    for (field, value, expected) in cases {
        assert_eq!(
            f(&ix, vec![exact(*field, &[value])]),
            expected.to_vec(),
            "{}:{value}",
            field.name()
        );
    }
}

#[test]
fn values_of_one_field_are_alternatives() {
    let (_d, ix) = corpus_index();
    assert_eq!(
        f(&ix, vec![exact(Field::ActorId, &["alice", "bob"])]),
        vec![0, 1, 2, 5, 7]
    );
    assert_eq!(
        f(&ix, vec![exact(Field::Outcome, &["DENIED", "FAILURE"])]),
        vec![1, 4]
    );
    // Terms AND, values OR.
    assert_eq!(
        f(
            &ix,
            vec![
                exact(Field::ActorId, &["alice", "bob"]),
                exact(Field::Category, &["LOGIN"])
            ]
        ),
        vec![0, 1]
    );
    // Mixed kinds of values.
    let mixed = term(TermKind::Field {
        field: Field::Action,
        values: vec![
            Value::Prefix("admin.".into()),
            Value::Exact("config.update".into()),
        ],
    });
    assert_eq!(f(&ix, vec![mixed]), vec![4, 6]);
}

#[test]
fn prefixes() {
    let (_d, ix) = corpus_index();
    assert_eq!(
        f(&ix, vec![prefix(Field::Action, "user.")]),
        vec![0, 1, 2, 5]
    );
    assert_eq!(
        f(&ix, vec![prefix(Field::Action, "user.log")]),
        vec![0, 1, 5]
    );
    assert_eq!(f(&ix, vec![prefix(Field::Action, "admin.")]), vec![4]);
    assert_eq!(
        f(&ix, vec![prefix(Field::Action, "zzz")]),
        Vec::<u64>::new()
    );
    assert_eq!(f(&ix, vec![prefix(Field::ResourceName, "Bob")]), vec![4]);
    assert_eq!(f(&ix, vec![prefix(Field::ActorId, "svc-")]), vec![3]);
    // Empty prefix: the field is present.
    assert_eq!(f(&ix, vec![prefix(Field::ResourceId, "")]), vec![2, 3, 4]);
    // Prefix on an address field matches nothing.
    assert_eq!(
        f(&ix, vec![prefix(Field::ActorIp, "203.")]),
        Vec::<u64>::new()
    );
}

#[test]
fn cidr_blocks_v4_and_v6() {
    let (_d, ix) = corpus_index();
    assert_eq!(f(&ix, vec![cidr("203.0.113.0", 24)]), vec![0, 5]);
    assert_eq!(f(&ix, vec![cidr("203.0.113.5", 32)]), vec![0]);
    assert_eq!(f(&ix, vec![cidr("10.0.0.0", 8)]), vec![3]);
    assert_eq!(f(&ix, vec![cidr("198.51.100.6", 31)]), vec![1]);
    assert_eq!(f(&ix, vec![cidr("198.51.100.0", 29)]), vec![1]);
    assert_eq!(f(&ix, vec![cidr("198.51.100.0", 28)]), vec![1, 7]);
    assert_eq!(f(&ix, vec![cidr("0.0.0.0", 0)]), vec![0, 1, 3, 5, 7]);
    assert_eq!(f(&ix, vec![cidr("2001:db8::", 32)]), vec![2, 4]);
    assert_eq!(f(&ix, vec![cidr("2001:db8::", 48)]), vec![2]);
    assert_eq!(f(&ix, vec![cidr("2001:db8:1::", 48)]), vec![4]);
    assert_eq!(f(&ix, vec![cidr("2001:db8::1", 128)]), vec![2]);
    // IPv4 is stored mapped: the mapped block holds every IPv4 address.
    assert_eq!(
        f(&ix, vec![cidr("::ffff:0.0.0.0", 96)]),
        vec![0, 1, 3, 5, 7]
    );
    assert_eq!(f(&ix, vec![cidr("::", 0)]), vec![0, 1, 2, 3, 4, 5, 7]);
    // OR of blocks.
    let two = term(TermKind::Field {
        field: Field::ActorIp,
        values: vec![
            Value::Cidr {
                network: "10.0.0.0".parse().unwrap(),
                prefix_len: 8,
            },
            Value::Cidr {
                network: "2001:db8:1::".parse().unwrap(),
                prefix_len: 48,
            },
        ],
    });
    assert_eq!(f(&ix, vec![two]), vec![3, 4]);
    // A block on a string field matches nothing.
    let wrong = term(TermKind::Field {
        field: Field::ActorId,
        values: vec![Value::Cidr {
            network: "10.0.0.0".parse().unwrap(),
            prefix_len: 8,
        }],
    });
    assert_eq!(f(&ix, vec![wrong]), Vec::<u64>::new());
}

#[test]
fn negation() {
    let (_d, ix) = corpus_index();
    assert_eq!(
        f(
            &ix,
            vec![
                exact(Field::ActorId, &["alice"]),
                not(exact(Field::Outcome, &["SUCCESS"]))
            ]
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        f(
            &ix,
            vec![
                exact(Field::Category, &["LOGIN"]),
                not(exact(Field::Outcome, &["SUCCESS"]))
            ]
        ),
        vec![1]
    );
    // Only negated terms.
    assert_eq!(
        f(&ix, vec![not(exact(Field::ActorId, &["alice"]))]),
        vec![1, 3, 4, 6, 7]
    );
    assert_eq!(
        f(
            &ix,
            vec![
                not(exact(Field::Outcome, &["SUCCESS"])),
                not(exact(Field::Outcome, &["FAILURE"]))
            ]
        ),
        vec![4]
    );
    // A negated alternative list excludes any of them.
    assert_eq!(
        f(&ix, vec![not(exact(Field::ActorId, &["alice", "bob"]))]),
        vec![3, 4, 6]
    );
    // Events without the field are kept by a negation.
    assert_eq!(
        f(&ix, vec![not(prefix(Field::ResourceId, ""))]),
        vec![0, 1, 5, 6, 7]
    );
    assert_eq!(f(&ix, vec![not(cidr("0.0.0.0", 0))]), vec![2, 4, 6]);
    assert_eq!(f(&ix, vec![not(text("password"))]), vec![0, 3, 4, 5, 6, 7]);
    // Negated phrases and word lists (tantivy's exclusion probes start before their first match).
    assert_eq!(
        f(&ix, vec![not(phrase("quick brown fox"))]),
        vec![0, 1, 2, 3, 4, 6, 7]
    );
    assert_eq!(
        f(&ix, vec![not(phrase("needle value"))]),
        vec![0, 1, 2, 3, 4, 5, 7]
    );
    assert_eq!(
        f(&ix, vec![not(text("country pt"))]),
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        f(
            &ix,
            vec![
                exact(Field::Outcome, &["SUCCESS"]),
                not(phrase("brown fox")),
                not(text("lisbon"))
            ]
        ),
        vec![2, 3, 6, 7]
    );
    // The empty query matches everything.
    assert_eq!(f(&ix, vec![]), (0..8).collect::<Vec<u64>>());
}

#[test]
fn free_text_over_every_string() {
    let (_d, ix) = corpus_index();
    let cases: &[(&str, &[u64])] = &[
        ("lisbon", &[0]),       // nested metadata value
        ("LISBON", &[0]),       // case-insensitive
        ("geo", &[0]),          // metadata key
        ("country pt", &[0]),   // key and value, both required
        ("mfa webauthn", &[2]), // `after` key and array element
        ("totp", &[2]),
        ("password", &[1, 2]), // reason; action tokens; `before` key
        ("set", &[2]),         // `password_set_at` split into words
        ("needle", &[6]),      // deep inside an array of objects
        ("needle value", &[6]),
        ("1250", &[3]), // numbers as text
        ("90", &[6]),
        ("rows csv", &[3]),
        ("firefox", &[0]),
        ("mozilla", &[0]),    // user agent
        ("privileges", &[4]), // reason
        ("jones", &[4]),      // resource.name
        ("march", &[3]),
        ("alice", &[0, 2, 5]), // actor.id
        ("smith", &[2]),
        ("inv", &[3]),    // resource.id split
        ("203", &[0, 5]), // address as text
        ("quick fox", &[5]),
        ("fox dog", &[]),
        ("nonexistent", &[]),
        ("!!!", &[0, 1, 2, 3, 4, 5, 6, 7]), // no words: no constraint
        // Identifiers match whole (they are not split into words).
        ("r1", &[0]),  // request_id
        ("s1", &[0]),  // actor.session_id
        ("t-1", &[3]), // trace_id
        ("c-9", &[3]), // correlation_id
        ("00000000-0000-4000-8000-000000000003", &[3]),
        ("00000000-0000-4000-8000-000000000003 csv", &[3]),
        ("00000000-0000-4000-8000-000000000003 lisbon", &[]),
        ("000000000003", &[]), // part of an id: no
    ];
    for (t, expected) in cases {
        assert_eq!(f(&ix, vec![text(t)]), expected.to_vec(), "text {t:?}");
    }
    // A UUID in any case.
    let upper = text("00000000-0000-4000-8000-00000000000A");
    assert_eq!(f(&ix, vec![upper]), Vec::<u64>::new());
    let upper = text(
        "00000000-0000-4000-8000-000000000006"
            .to_uppercase()
            .as_str(),
    );
    assert_eq!(f(&ix, vec![upper]), vec![6]);
    assert_eq!(f(&ix, vec![not(text("r1"))]), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(f(&ix, vec![phrase("r1")]), vec![0]);
}

#[test]
fn phrases() {
    let (_d, ix) = corpus_index();
    let cases: &[(&str, &[u64])] = &[
        ("quick brown fox", &[5]),
        ("Brown Fox", &[5]),
        ("fox brown", &[]),
        ("quick fox", &[]),
        ("bob jones", &[4]),
        ("bad password", &[1]),
        ("password bad", &[]),
        ("lisbon", &[0]), // one word: a plain term
        ("needle value", &[6]),
        ("user password change", &[2]),
        // Words of two different strings never form a phrase ("alice" then "user").
        ("alice user", &[]),
    ];
    for (t, expected) in cases {
        assert_eq!(f(&ix, vec![phrase(t)]), expected.to_vec(), "phrase {t:?}");
    }
    assert_eq!(f(&ix, vec![text("alice user")]), vec![0, 2, 5]);
}

#[test]
fn time_bounds() {
    let (_d, ix) = corpus_index();
    assert_eq!(
        f(&ix, vec![after(TimeBound::At(at(10, 30)))]),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(
        f(&ix, vec![before(TimeBound::At(at(10, 30)))]),
        vec![0, 1, 2]
    );
    assert_eq!(
        f(
            &ix,
            vec![
                after(TimeBound::At(at(10, 5))),
                before(TimeBound::At(at(11, 0)))
            ]
        ),
        vec![2, 3]
    );
    // One millisecond either side.
    assert_eq!(
        f(&ix, vec![after(TimeBound::At(at(10, 30) + 1))]),
        vec![4, 5, 6, 7]
    );
    assert_eq!(
        f(&ix, vec![before(TimeBound::At(at(10, 30) + 1))]),
        vec![0, 1, 2, 3]
    );
    // Relative to now = 12:00.
    let hour = 3_600_000;
    assert_eq!(f(&ix, vec![after(TimeBound::Ago(hour))]), vec![4, 5, 6, 7]);
    assert_eq!(f(&ix, vec![before(TimeBound::Ago(hour))]), vec![0, 1, 2, 3]);
    assert_eq!(
        f(
            &ix,
            vec![
                after(TimeBound::Ago(2 * hour)),
                before(TimeBound::Ago(hour)),
                exact(Field::ActorId, &["alice"])
            ]
        ),
        vec![0, 2]
    );
    let mut o = opts(Order::OldestFirst, 100);
    o.now_ms = at(11, 0) + 30_000;
    let page = ix
        .search("acme", &q(vec![after(TimeBound::Ago(hour))]), &o)
        .unwrap();
    assert_eq!(page.indexes, vec![1, 2, 3, 4, 5, 6, 7]);
    // Negated bound.
    assert_eq!(
        f(&ix, vec![not(after(TimeBound::At(at(10, 30))))]),
        vec![0, 1, 2]
    );
}

#[test]
fn ordering_both_ways() {
    let (_d, ix) = corpus_index();
    let all = Query::default();
    let newest = ix
        .search("acme", &all, &opts(Order::NewestFirst, 100))
        .unwrap();
    assert_eq!(newest.indexes, vec![7, 6, 5, 4, 3, 2, 1, 0]);
    assert_eq!(newest.next_cursor, None);
    let oldest = ix
        .search("acme", &all, &opts(Order::OldestFirst, 100))
        .unwrap();
    assert_eq!(oldest.indexes, (0..8).collect::<Vec<_>>());
    let alice = q(vec![exact(Field::ActorId, &["alice"])]);
    assert_eq!(
        ix.search("acme", &alice, &opts(Order::NewestFirst, 2))
            .unwrap(),
        tally_index::SearchPage {
            indexes: vec![5, 2],
            next_cursor: Some(2)
        }
    );
    assert_eq!(
        ix.search("acme", &alice, &opts(Order::OldestFirst, 2))
            .unwrap(),
        tally_index::SearchPage {
            indexes: vec![0, 2],
            next_cursor: Some(2)
        }
    );
    // Exactly `limit` matches: no next cursor.
    assert_eq!(
        ix.search("acme", &alice, &opts(Order::NewestFirst, 3))
            .unwrap()
            .next_cursor,
        None
    );
    // Limit 0 and over the maximum.
    assert!(ix
        .search("acme", &all, &opts(Order::NewestFirst, 0))
        .unwrap()
        .indexes
        .is_empty());
    assert_eq!(
        ix.search("acme", &all, &opts(Order::NewestFirst, 5000))
            .unwrap()
            .indexes
            .len(),
        8
    );
}

#[test]
fn cursor_and_upto_bounds() {
    let (_d, ix) = corpus_index();
    let all = Query::default();
    let run = |order, cursor, upto| {
        ix.search(
            "acme",
            &all,
            &SearchOptions {
                now_ms: 0,
                order,
                cursor,
                limit: 100,
                upto,
            },
        )
        .unwrap()
        .indexes
    };
    assert_eq!(run(Order::NewestFirst, Some(5), None), vec![4, 3, 2, 1, 0]);
    assert_eq!(run(Order::OldestFirst, Some(5), None), vec![6, 7]);
    assert_eq!(run(Order::NewestFirst, None, Some(3)), vec![2, 1, 0]);
    assert_eq!(run(Order::OldestFirst, None, Some(3)), vec![0, 1, 2]);
    assert_eq!(run(Order::OldestFirst, Some(1), Some(3)), vec![2]);
    assert_eq!(run(Order::NewestFirst, Some(0), None), Vec::<u64>::new());
    assert_eq!(run(Order::OldestFirst, Some(7), None), Vec::<u64>::new());
    assert_eq!(
        run(Order::OldestFirst, Some(u64::MAX), None),
        Vec::<u64>::new()
    );
    assert_eq!(run(Order::NewestFirst, None, Some(0)), Vec::<u64>::new());
    assert_eq!(
        run(Order::NewestFirst, None, Some(1000)),
        vec![7, 6, 5, 4, 3, 2, 1, 0]
    );
}

#[test]
fn unknown_tenant_is_empty_and_bad_names_are_refused() {
    let (_d, ix) = corpus_index();
    assert_eq!(ix.indexed("globex").unwrap(), 0);
    assert!(find(&ix, "globex", &Query::default()).is_empty());
    assert!(ix.indexed("../etc").is_err());
    assert!(ix
        .search("A/B", &Query::default(), &opts(Order::NewestFirst, 1))
        .is_err());
}
