//! End to end with the query parser: query text → `tally_query::parse` → index.

mod common;

use common::*;
use tally_index::{EventIndex, Order, TantivyIndex};

#[test]
fn parsed_queries() {
    let dir = tempfile::tempdir().unwrap();
    let ix = TantivyIndex::open(dir.path()).unwrap();
    add_from(&ix, "acme", 0, &corpus());
    ix.commit().unwrap();
    let cases: &[(&str, &[u64])] = &[
        ("", &[0, 1, 2, 3, 4, 5, 6, 7]),
        ("actor:alice", &[0, 2, 5]),
        ("actor:alice,bob -outcome:success", &[1]),
        ("action:user.*", &[0, 1, 2, 5]),
        ("-action:user.* -actor.type:system", &[3, 4, 7]),
        ("ip:203.0.113.0/24", &[0, 5]),
        ("ip:2001:db8::/32", &[2, 4]),
        ("ip:10.1.2.3", &[3]),
        ("resource.name:\"Bob Jones\"", &[4]),
        ("resource.type:user outcome:denied", &[4]),
        ("key:key-2", &[7]),
        ("lisbon", &[0]),
        ("\"quick brown fox\"", &[5]),
        ("-\"quick brown fox\" category:logout,login", &[0, 1]),
        ("webauthn actor:alice", &[2]),
        ("after:2024-05-01T11:00:00Z", &[4, 5, 6, 7]),
        ("before:2024-05-01T10:05:00Z actor:alice", &[0]),
        ("after:1h", &[4, 5, 6, 7]),
        ("before:90m", &[0, 1, 2]),
        ("id:00000000-0000-4000-8000-000000000006", &[6]),
    ];
    for (text, expected) in cases {
        let query = tally_query::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let page = ix
            .search("acme", &query, &opts(Order::OldestFirst, 100))
            .unwrap();
        assert_eq!(page.indexes, expected.to_vec(), "{text}");
    }
}
