//! Example-based tests of the query language: every construct, normalisation and error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tally_query::{
    parse, parse_field_params, Field, ParseError, Query, Span, Term, TermKind, TimeBound, Value,
};

const DAY: i64 = 86_400_000;

fn exact(s: &str) -> Value {
    Value::Exact(s.to_owned())
}

fn prefix(s: &str) -> Value {
    Value::Prefix(s.to_owned())
}

fn field(field: Field, values: Vec<Value>) -> TermKind {
    TermKind::Field { field, values }
}

fn word(s: &str) -> TermKind {
    TermKind::Text {
        text: s.to_owned(),
        phrase: false,
    }
}

fn phrase(s: &str) -> TermKind {
    TermKind::Text {
        text: s.to_owned(),
        phrase: true,
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Value {
    Value::Cidr {
        network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix_len: len,
    }
}

/// The kinds of the terms of `input`, which must parse.
fn kinds(input: &str) -> Vec<TermKind> {
    parse(input)
        .unwrap_or_else(|e| panic!("{input:?} failed: {e}"))
        .terms
        .into_iter()
        .map(|t| t.kind)
        .collect()
}

/// The only term of `input`.
fn one(input: &str) -> TermKind {
    let mut k = kinds(input);
    assert_eq!(k.len(), 1, "{input:?}");
    k.remove(0)
}

/// The error for `input`, which must not parse.
fn err(input: &str) -> ParseError {
    match parse(input) {
        Ok(q) => panic!("{input:?} parsed as {q:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position, column and that the message contains `needle`.
#[track_caller]
fn assert_err(input: &str, position: usize, column: usize, needle: &str) {
    let e = err(input);
    assert_eq!(
        (e.position, e.column),
        (position, column),
        "{input:?}: {e:?}"
    );
    assert_eq!(e.span.start, e.position, "{input:?}: {e:?}");
    assert!(e.message.contains(needle), "{input:?}: {:?}", e.message);
    assert_eq!(e.to_string(), format!("column {column}: {}", e.message));
}

#[test]
fn the_example_from_the_brief() {
    let q = parse(
        r#"actor:alice action:user.delete resource.type:USER outcome:FAILURE ip:203.0.113.0/24 after:2026-01-01 before:2026-02-01 "free text""#,
    )
    .unwrap();
    let k: Vec<_> = q.terms.iter().map(|t| t.kind.clone()).collect();
    assert_eq!(
        k,
        vec![
            field(Field::ActorId, vec![exact("alice")]),
            field(Field::Action, vec![exact("user.delete")]),
            field(Field::ResourceType, vec![exact("USER")]),
            field(Field::Outcome, vec![exact("FAILURE")]),
            field(Field::ActorIp, vec![v4(203, 0, 113, 0, 24)]),
            TermKind::After(TimeBound::At(1_767_225_600_000)),
            TermKind::Before(TimeBound::At(1_769_904_000_000)),
            phrase("free text"),
        ]
    );
    assert!(q.terms.iter().all(|t| !t.negated));
    assert_eq!(q.terms[0].span, Span { start: 0, end: 11 }, "actor:alice");
    assert_eq!(
        q.terms[7].span,
        Span {
            start: 119,
            end: 130
        }
    );
}

#[test]
fn empty_and_whitespace_queries_match_everything() {
    for input in ["", " ", "\t \n", "\u{3000}"] {
        assert_eq!(parse(input), Ok(Query::default()), "{input:?}");
    }
    assert_eq!(Query::default().to_string(), "");
}

#[test]
fn whitespace_separates_terms() {
    assert_eq!(
        kinds("  alice\tbob\n actor:x\u{3000}carol "),
        vec![
            word("alice"),
            word("bob"),
            field(Field::ActorId, vec![exact("x")]),
            word("carol")
        ]
    );
}

#[test]
fn aliases_and_case_insensitive_names() {
    let cases: &[(&str, Field)] = &[
        ("id", Field::Id),
        ("actor", Field::ActorId),
        ("actor.id", Field::ActorId),
        ("actor.type", Field::ActorType),
        ("ip", Field::ActorIp),
        ("actor.ip", Field::ActorIp),
        ("session", Field::SessionId),
        ("session_id", Field::SessionId),
        ("actor.session_id", Field::SessionId),
        ("action", Field::Action),
        ("category", Field::Category),
        ("outcome", Field::Outcome),
        ("resource.type", Field::ResourceType),
        ("resource", Field::ResourceId),
        ("resource.id", Field::ResourceId),
        ("resource.name", Field::ResourceName),
        ("request", Field::RequestId),
        ("request_id", Field::RequestId),
        ("trace", Field::TraceId),
        ("trace_id", Field::TraceId),
        ("correlation", Field::CorrelationId),
        ("correlation_id", Field::CorrelationId),
        ("key", Field::KeyId),
        ("key_id", Field::KeyId),
    ];
    for &(name, expected) in cases {
        let value = match expected {
            Field::Id => "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
            Field::ActorType => "user",
            Field::ActorIp => "10.0.0.1",
            Field::Category => "LOGIN",
            Field::Outcome => "DENIED",
            _ => "v",
        };
        for spelled in [name.to_owned(), name.to_ascii_uppercase(), capitalise(name)] {
            match one(&format!("{spelled}:{value}")) {
                TermKind::Field { field, .. } => assert_eq!(field, expected, "{spelled}"),
                other => panic!("{spelled}: {other:?}"),
            }
        }
        assert_eq!(Field::from_name(name), Some(expected));
        assert!(expected.names().any(|n| n == expected.name()));
    }
    // Every field has at least one alias tested above, and the canonical names parse too.
    for f in Field::ALL {
        assert!(cases.iter().any(|&(_, g)| g == f), "{f:?}");
        assert_eq!(Field::from_name(f.name()), Some(f));
    }
    assert_eq!(Field::from_name("after"), None);
    assert_eq!(Field::from_name("acter"), None);
    assert_eq!(
        one("AFTER:1d"),
        TermKind::After(TimeBound::Ago(DAY)),
        "time bounds are case-insensitive too"
    );
    assert_eq!(one("Before:1d"), TermKind::Before(TimeBound::Ago(DAY)));
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[test]
fn string_values_are_kept_as_written() {
    assert_eq!(
        one("resource.type:User"),
        field(Field::ResourceType, vec![exact("User")])
    );
    assert_eq!(
        one("actor:Alice@Example.COM"),
        field(Field::ActorId, vec![exact("Alice@Example.COM")])
    );
    // `:`, `-`, `\` and non-ASCII are fine inside bare values.
    assert_eq!(
        one(r"resource:urn:x:-1\2é"),
        field(Field::ResourceId, vec![exact(r"urn:x:-1\2é")])
    );
    assert_eq!(
        one("request:ReQ-1"),
        field(Field::RequestId, vec![exact("ReQ-1")])
    );
}

#[test]
fn commas_mean_any_of() {
    assert_eq!(
        one("outcome:FAILURE,denied"),
        field(Field::Outcome, vec![exact("FAILURE"), exact("DENIED")])
    );
    assert_eq!(
        one(r#"actor:alice,"bob smith",carol*"#),
        field(
            Field::ActorId,
            vec![exact("alice"), exact("bob smith"), prefix("carol")]
        )
    );
    assert_eq!(
        one("ip:10.0.0.0/8,2001:db8::1"),
        field(
            Field::ActorIp,
            vec![
                v4(10, 0, 0, 0, 8),
                Value::Cidr {
                    network: "2001:db8::1".parse().unwrap(),
                    prefix_len: 128
                }
            ]
        )
    );
    // In free text a comma is just a character.
    assert_eq!(one("a,b"), word("a,b"));
}

#[test]
fn prefixes() {
    assert_eq!(
        one("action:user.*"),
        field(Field::Action, vec![prefix("user.")])
    );
    assert_eq!(
        one(r#"resource.name:"Q1 report"*"#),
        field(Field::ResourceName, vec![prefix("Q1 report")])
    );
    // Inside quotes `*` is literal.
    assert_eq!(
        one(r#"action:"user.*""#),
        field(Field::Action, vec![exact("user.*")])
    );
    assert_eq!(
        one(r#"action:"a*b"*"#),
        field(Field::Action, vec![prefix("a*b")])
    );
    // Enumerated fields: normalised, and must be able to match something.
    assert_eq!(
        one("outcome:fail*"),
        field(Field::Outcome, vec![prefix("FAIL")])
    );
    assert_eq!(
        one("actor.type:S*"),
        field(Field::ActorType, vec![prefix("s")])
    );
    assert_eq!(
        one("category:view_*"),
        field(Field::Category, vec![prefix("VIEW_")])
    );
    assert_eq!(
        one("id:0190C3A2-7B*"),
        field(Field::Id, vec![prefix("0190c3a2-7b")])
    );
    // Free text: `*` has no special meaning.
    assert_eq!(one("pass*"), word("pass*"));
    assert_eq!(one("*"), word("*"));
}

#[test]
fn prefix_errors() {
    assert_err(
        "action:us*er",
        9,
        10,
        "`*` is allowed only at the end of a value",
    );
    assert_err("action:user.**", 12, 13, "`*` is allowed only at the end");
    assert_err("action:*", 7, 8, "a prefix cannot be empty");
    assert_err("action:a,*", 9, 10, "expected text before `*` after `,`");
    assert_err("ip:10.*", 3, 4, "`ip` does not take a prefix");
    assert_err("outcome:X*", 8, 9, "`outcome` must be one of");
    assert_err(
        "actor.type:x*",
        11,
        12,
        "`actor.type` must be one of user, service, system",
    );
    assert_err("category:9*", 9, 10, "`category` must be a category name");
    assert_err("id:0190c3a2x*", 3, 4, "`id` must be a UUID");
    assert_err(
        r#"action:"a"*b"#,
        11,
        12,
        "expected `,`, whitespace or the end after a value",
    );
    assert_err("after:2026*", 6, 7, "`after` takes a time, not a prefix");
}

#[test]
fn outcome_normalisation() {
    for (input, out) in [
        ("success", "SUCCESS"),
        ("Failure", "FAILURE"),
        ("UNAUTHORIZED", "UNAUTHORIZED"),
        ("denied", "DENIED"),
    ] {
        assert_eq!(
            one(&format!("outcome:{input}")),
            field(Field::Outcome, vec![exact(out)])
        );
    }
    let e = err("outcome:ok");
    assert_eq!((e.position, e.column), (8, 9));
    assert_eq!(
        e.message,
        "`outcome` must be one of SUCCESS, FAILURE, UNAUTHORIZED, DENIED (found `ok`)"
    );
    assert_eq!(e.span, Span { start: 8, end: 10 });
    assert_err(
        "outcome:SUCCESS,nope",
        16,
        17,
        "must be one of SUCCESS, FAILURE, UNAUTHORIZED, DENIED",
    );
    // Upper-casing is ASCII only: no Unicode case tricks.
    assert_err("outcome:ſuccess", 8, 9, "must be one of");
}

#[test]
fn category_normalisation() {
    assert_eq!(
        one("category:view_pii"),
        field(Field::Category, vec![exact("VIEW_PII")])
    );
    assert_eq!(
        one("category:a1_"),
        field(Field::Category, vec![exact("A1_")])
    );
    let thirty_two = format!("A{}", "B".repeat(31));
    assert_eq!(
        one(&format!("category:{thirty_two}")),
        field(Field::Category, vec![exact(&thirty_two)])
    );
    assert_err(
        &format!("category:{thirty_two}C"),
        9,
        10,
        "^[A-Z][A-Z0-9_]{0,31}$",
    );
    assert_err(
        "category:1LOGIN",
        9,
        10,
        "`category` must be a category name",
    );
    assert_err("category:LOG-IN", 9, 10, "(found `LOG-IN`)");
    assert_err("category:_X", 9, 10, "category name");
    assert_err("category:É", 9, 10, "category name");
}

#[test]
fn actor_type_normalisation() {
    assert_eq!(
        one("actor.type:USER,Service,system"),
        field(
            Field::ActorType,
            vec![exact("user"), exact("service"), exact("system")]
        )
    );
    assert_err(
        "actor.type:robot",
        11,
        12,
        "`actor.type` must be one of user, service, system",
    );
}

#[test]
fn id_must_be_a_uuid() {
    assert_eq!(
        one("id:0190C3A2-7B1E-7C4D-9A2F-3E5B6C7D8E9F"),
        field(
            Field::Id,
            vec![exact("0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f")]
        )
    );
    assert_err(
        "id:0190c3a27b1e7c4d9a2f3e5b6c7d8e9f",
        3,
        4,
        "`id` must be a UUID in hyphenated form",
    );
    assert_err(
        "id:0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9",
        3,
        4,
        "must be a UUID",
    );
    assert_err(
        "id:0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f0",
        3,
        4,
        "must be a UUID",
    );
    assert_err(
        "id:g190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
        3,
        4,
        "must be a UUID",
    );
    assert_err("id:alice", 3, 4, "must be a UUID");
}

#[test]
fn ip_addresses_and_cidr_masking() {
    assert_eq!(
        one("ip:203.0.113.7"),
        field(Field::ActorIp, vec![v4(203, 0, 113, 7, 32)])
    );
    assert_eq!(
        one("ip:10.1.2.3/8"),
        field(Field::ActorIp, vec![v4(10, 0, 0, 0, 8)])
    );
    assert_eq!(
        one("actor.ip:192.168.77.200/20"),
        field(Field::ActorIp, vec![v4(192, 168, 64, 0, 20)])
    );
    assert_eq!(
        one("ip:1.2.3.4/0"),
        field(Field::ActorIp, vec![v4(0, 0, 0, 0, 0)])
    );
    assert_eq!(
        one("ip:1.2.3.4/32"),
        field(Field::ActorIp, vec![v4(1, 2, 3, 4, 32)])
    );
    assert_eq!(
        one(r#"ip:"10.9.8.7/31""#),
        field(Field::ActorIp, vec![v4(10, 9, 8, 6, 31)])
    );
    assert_eq!(
        one("ip:2001:db8:abcd:1234::1/48"),
        field(
            Field::ActorIp,
            vec![Value::Cidr {
                network: IpAddr::V6("2001:db8:abcd::".parse::<Ipv6Addr>().unwrap()),
                prefix_len: 48
            }]
        )
    );
    assert_eq!(
        one("ip:::1"),
        field(
            Field::ActorIp,
            vec![Value::Cidr {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix_len: 128
            }]
        )
    );
    assert_eq!(
        one("ip:ffff::1/0"),
        field(
            Field::ActorIp,
            vec![Value::Cidr {
                network: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                prefix_len: 0
            }]
        )
    );
    assert_err(
        "ip:10.0.0.0/33",
        3,
        4,
        "expected a prefix length from 0 to 32 after `/` for an IPv4 address",
    );
    assert_err("ip:::/129", 3, 4, "from 0 to 128");
    assert_err("ip:10.0.0.0/", 3, 4, "prefix length");
    assert_err("ip:10.0.0.0/-1", 3, 4, "prefix length");
    assert_err("ip:10.0.0.0/8/8", 3, 4, "prefix length");
    assert_err("ip:10.0.0", 3, 4, "expected an IP address or a CIDR block");
    assert_err("ip:localhost", 3, 4, "expected an IP address");
    assert_err("ip:fe80::1%eth0", 3, 4, "expected an IP address");
    assert_err("ip:1.1.1.1,x", 11, 12, "expected an IP address");
}

#[test]
fn time_bounds() {
    assert_eq!(one("after:1970-01-01"), TermKind::After(TimeBound::At(0)));
    assert_eq!(
        one("before:2026-02-01"),
        TermKind::Before(TimeBound::At(1_769_904_000_000))
    );
    assert_eq!(
        one("after:2026-01-01T10:30:00Z"),
        TermKind::After(TimeBound::At(
            1_767_225_600_000 + 10 * 3_600_000 + 30 * 60_000
        ))
    );
    assert_eq!(
        one("after:2026-01-01T10:30:00.5+02:00"),
        TermKind::After(TimeBound::At(
            1_767_225_600_000 + 8 * 3_600_000 + 30 * 60_000 + 500
        ))
    );
    // Sub-millisecond digits are truncated (toward the past).
    assert_eq!(
        one("after:1969-12-31T23:59:59.9999Z"),
        TermKind::After(TimeBound::At(-1))
    );
    assert_eq!(
        one(r#"after:"2026-01-01""#),
        TermKind::After(TimeBound::At(1_767_225_600_000))
    );
    assert_eq!(
        one("after:0000-01-01"),
        TermKind::After(TimeBound::At(tally_query::MIN_TIME_MS))
    );
    assert_eq!(
        one("before:9999-12-31T23:59:59.999Z"),
        TermKind::Before(TimeBound::At(tally_query::MAX_TIME_MS))
    );
}

#[test]
fn relative_times() {
    assert_eq!(one("after:30d"), TermKind::After(TimeBound::Ago(30 * DAY)));
    assert_eq!(
        one("after:15m"),
        TermKind::After(TimeBound::Ago(15 * 60_000))
    );
    assert_eq!(
        one("before:12h"),
        TermKind::Before(TimeBound::Ago(12 * 3_600_000))
    );
    assert_eq!(one("after:2w"), TermKind::After(TimeBound::Ago(14 * DAY)));
    assert_eq!(one("after:007d"), TermKind::After(TimeBound::Ago(7 * DAY)));
    assert_eq!(TimeBound::Ago(DAY).resolve(10 * DAY), 9 * DAY);
    assert_err("after:0d", 6, 7, "a relative time must be positive");
    assert_err("after:-5d", 6, 7, "a relative time must be positive");
    assert_err("after:5s", 6, 7, "unknown unit `s`");
    assert_err("after:5D", 6, 7, "unknown unit `D`");
    assert_err("after:99999999999999999999w", 6, 7, "too large");
    assert_err("after:9999999999999999w", 6, 7, "too large");
    assert_err(
        "after:1.5h",
        6,
        7,
        "expected a date (2026-01-31), an RFC 3339 date-time with a zone",
    );
}

#[test]
fn time_bound_errors() {
    assert_err(
        "after:2026-02-30",
        6,
        7,
        "`2026-02-30` is not a calendar date",
    );
    assert_err("after:2026-13-01", 6, 7, "not a calendar date");
    assert_err("after:2026-01-01T10:00:00", 6, 7, "date-time with a zone");
    assert_err("after:yesterday", 6, 7, "relative time (30m, 12h, 7d, 2w)");
    assert_err("after:26-1-1", 6, 7, "expected a date");
    assert_err("after:", 6, 7, "expected a value after `after:`");
    assert_err("after:1d,2d", 9, 10, "`after` takes a single value");
    assert_err("before:1d,2d", 10, 11, "`before` takes a single value");
    assert_err("after:0000-01-01T00:00:00+01:00", 6, 7, "out of range");
    assert_err(
        "x -after:1d",
        2,
        3,
        "`after` cannot be negated; use `before`",
    );
    assert_err(
        "-before:1d",
        0,
        1,
        "`before` cannot be negated; use `after`",
    );
}

#[test]
fn negation() {
    let q = parse(r#"-actor:bob -word -"a phrase" keep"#).unwrap();
    let got: Vec<(bool, TermKind)> = q
        .terms
        .iter()
        .map(|t| (t.negated, t.kind.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (true, field(Field::ActorId, vec![exact("bob")])),
            (true, word("word")),
            (true, phrase("a phrase")),
            (false, word("keep")),
        ]
    );
    assert_eq!(q.terms[0].span, Span { start: 0, end: 10 });
    assert_eq!(q.terms[1].span, Span { start: 11, end: 16 });
    assert_eq!(q.terms[2].span, Span { start: 17, end: 28 });
    assert_eq!(q.terms[3].span, Span { start: 29, end: 33 });
    // A `-` inside a word or value is just a character.
    assert_eq!(one("foo-bar"), word("foo-bar"));
    assert_eq!(one("actor:-x"), field(Field::ActorId, vec![exact("-x")]));
}

#[test]
fn negation_errors() {
    assert_err("-", 0, 1, "expected a term after `-`");
    assert_err("actor:a -", 8, 9, "a lone `-` negates nothing");
    assert_err("- actor:a", 0, 1, "remove the space");
    assert_err("--x", 1, 2, "found another `-`");
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(one(r#""a \"quoted\" word""#), phrase(r#"a "quoted" word"#));
    assert_eq!(one(r#""back\\slash""#), phrase(r"back\slash"));
    assert_eq!(
        one(r#""https://example.com/x""#),
        phrase("https://example.com/x")
    );
    assert_eq!(one(r#""actor:bob""#), phrase("actor:bob"));
    assert_eq!(one(r#""  ""#), phrase("  "));
    assert_eq!(one(r#""日本語 テキスト""#), phrase("日本語 テキスト"));
    assert_eq!(
        one(r#"actor:"Alice \"Al\" Smith""#),
        field(Field::ActorId, vec![exact(r#"Alice "Al" Smith"#)])
    );
    assert_eq!(kinds(r#""a" "b""#), vec![phrase("a"), phrase("b")]);
}

#[test]
fn quote_errors() {
    let e = err(r#"actor:a "free text"#);
    assert_eq!((e.position, e.column), (8, 9));
    assert_eq!(
        e.message,
        "unterminated quoted string: expected a closing `\"`"
    );
    assert_eq!(e.span, Span { start: 8, end: 18 });
    assert_err(r#""abc\"#, 0, 1, "unterminated quoted string");
    assert_err(r#"x "abc\""#, 2, 3, "unterminated quoted string");
    assert_err(r#"actor:"bob"#, 6, 7, "unterminated quoted string");
    assert_err(r#""a\nb""#, 2, 3, r#"unknown escape `\n`"#);
    assert_err(r#""""#, 0, 1, "expected text between the double quotes");
    assert_err(
        r#"actor:"""#,
        6,
        7,
        "expected a value between the double quotes after `actor:`",
    );
    assert_err(r#"actor:a,"""#, 8, 9, "after `,`");
    assert_err(r#"foo"bar""#, 3, 4, "unexpected `\"` inside a word");
    assert_err(r#"actor:ab"c""#, 8, 9, "unexpected `\"` inside a value");
    assert_err(
        r#""a"b"#,
        3,
        4,
        "expected whitespace or the end of the query after the closing `\"`, found `b`",
    );
    assert_err(r#""a":x"#, 3, 4, "found `:`");
    assert_err(
        r#"actor:"a"b"#,
        9,
        10,
        "expected `,`, whitespace or the end after a value, found `b`",
    );
}

#[test]
fn value_errors() {
    let e = err("actor:");
    assert_eq!((e.position, e.column), (6, 7));
    assert_eq!(e.message, "expected a value after `actor:`");
    assert_eq!(e.span, Span { start: 6, end: 6 });
    assert_err("Actor: alice", 6, 7, "expected a value after `Actor:`");
    assert_err("actor:,a", 6, 7, "expected a value after `actor:`");
    assert_err("actor:a,", 8, 9, "expected a value after `,`");
    assert_err("actor:a,,b", 8, 9, "expected a value after `,`");
    assert_err("actor:a, b", 8, 9, "expected a value after `,`");
}

#[test]
fn unknown_fields_are_errors_not_text() {
    let e = err("actor:alice acter:bob");
    assert_eq!((e.position, e.column), (12, 13));
    assert_eq!(e.span, Span { start: 12, end: 17 });
    assert!(
        e.message.starts_with("unknown field `acter` (did you mean `actor`?); known fields: id, actor, actor.id, actor.type, ip, actor.ip, session, session_id, actor.session_id, action, category, outcome, resource.type, resource, resource.id, resource.name, request, request_id, trace, trace_id, correlation, correlation_id, key, key_id, after, before;"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .ends_with(r#"put it in double quotes: "acter:bob""#),
        "{}",
        e.message
    );
    assert_err("https://example.com", 0, 1, "unknown field `https`");
    assert_err(
        "https://example.com",
        0,
        1,
        r#"put it in double quotes: "https://example.com""#,
    );
    assert_err("-bogus:x", 1, 2, "unknown field `bogus`; known fields:");
    assert_err(":x", 0, 1, "expected a field name before `:`");
    assert_err("a :x", 2, 3, "expected a field name before `:`");
    // No suggestion for names far from every known one.
    assert!(!err("zzzzzz:1").message.contains("did you mean"));
    assert!(err("ACTR:1").message.contains("did you mean `actor`?"));
}

#[test]
fn columns_count_characters_not_bytes() {
    // "日本 " is 7 bytes, 3 characters.
    let e = err("日本 acter:x");
    assert_eq!((e.position, e.column), (7, 4));
    let e = err("é \"never closed");
    assert_eq!((e.position, e.column), (3, 3));
    let e = err("ü actor:x,");
    assert_eq!((e.position, e.column), (11, 11));
}

#[test]
fn limits() {
    let long = "a ".repeat(2048) + "b";
    assert_eq!(long.len(), 4097);
    let e = err(&long);
    assert_eq!(e.position, 4096);
    assert!(
        e.message.contains("the limit is 4096 bytes"),
        "{}",
        e.message
    );
    // Exactly at the limit is fine (and within the term limit: one long word).
    assert!(parse(&"x".repeat(4096)).is_ok());
    // Over the byte limit inside a multi-byte character: the position is a char boundary.
    let e = err(&("a".repeat(4095) + "é"));
    assert_eq!(e.position, 4095);
    assert_eq!(e.column, 4096);

    let sixty_four = vec!["w"; 64].join(" ");
    assert_eq!(parse(&sixty_four).unwrap().terms.len(), 64);
    let e = err(&(sixty_four.clone() + " extra"));
    assert_eq!(e.position, 128);
    assert!(
        e.message.contains("too many terms; the limit is 64"),
        "{}",
        e.message
    );

    let values = vec!["v"; 64].join(",");
    match one(&format!("actor:{values}")) {
        TermKind::Field { values, .. } => assert_eq!(values.len(), 64),
        other => panic!("{other:?}"),
    }
    let e = err(&format!("actor:{values},x"));
    assert_eq!(e.position, 6 + 128);
    assert!(
        e.message
            .contains("too many values in one term; the limit is 64"),
        "{}",
        e.message
    );
}

#[test]
fn spans_cover_terms() {
    let input = r#"  -actor:a,"b c"   free  "x y"* -"q""#;
    // `"x y"*`: a phrase followed by `*` is an error, so use a valid variant.
    assert!(parse(input).is_err());
    let input = r#"  -actor:a,"b c"   free  "x y" -"q""#;
    let q = parse(input).unwrap();
    let texts: Vec<&str> = q
        .terms
        .iter()
        .map(|t| &input[t.span.start..t.span.end])
        .collect();
    assert_eq!(
        texts,
        vec![r#"-actor:a,"b c""#, "free", r#""x y""#, r#"-"q""#]
    );
}

#[test]
fn display_is_canonical() {
    let cases = [
        ("actor:alice", "actor.id:alice"),
        ("IP:10.1.2.3/8", "actor.ip:10.0.0.0/8"),
        ("ip:10.1.2.3", "actor.ip:10.1.2.3"),
        ("ip:::1/128", "actor.ip:::1"),
        ("session:s1", "actor.session_id:s1"),
        ("outcome:failure,denied", "outcome:FAILURE,DENIED"),
        (r#"actor:"alice""#, "actor.id:alice"),
        (r#"actor:"a b",c"#, r#"actor.id:"a b",c"#),
        (r#"action:"user.*""#, r#"action:"user.*""#),
        (r#"action:"a b"*"#, r#"action:"a b"*"#),
        ("action:user.*", "action:user.*"),
        (r#"resource:"x,y""#, r#"resource.id:"x,y""#),
        (r#"key:"q\"\\""#, r#"key_id:"q\"\\""#),
        ("after:2026-01-01", "after:2026-01-01"),
        ("after:2026-01-01T00:00:00+00:00", "after:2026-01-01"),
        ("before:2026-01-01T01:00:00+01:00", "before:2026-01-01"),
        (
            "after:2026-01-01T10:30:00.120Z",
            "after:2026-01-01T10:30:00.120Z",
        ),
        (
            "after:2026-01-01T10:30:05.000Z",
            "after:2026-01-01T10:30:05Z",
        ),
        ("after:0999-06-01", "after:0999-06-01"),
        ("after:60m", "after:1h"),
        ("after:14d", "after:2w"),
        ("after:48h", "after:2d"),
        ("after:90m", "after:90m"),
        ("-word", "-word"),
        (r#""word""#, r#""word""#),
        (r#"-"a phrase""#, r#"-"a phrase""#),
        ("  a   b  ", "a b"),
        ("", ""),
    ];
    for (input, canonical) in cases {
        let q = parse(input).unwrap();
        assert_eq!(q.to_string(), canonical, "{input:?}");
        assert_eq!(parse(canonical), Ok(q.with_canonical_spans()), "{input:?}");
    }
}

#[test]
fn display_of_hand_built_terms() {
    // Words that cannot be bare are quoted.
    let t = |text: &str| Term {
        negated: false,
        kind: word(text),
        span: Span { start: 0, end: 0 },
    };
    assert_eq!(t("-x").to_string(), r#""-x""#);
    assert_eq!(t("a:b").to_string(), r#""a:b""#);
    assert_eq!(t("a b").to_string(), r#""a b""#);
    assert_eq!(t("a,b*").to_string(), "a,b*");
    assert_eq!(exact("").to_string(), r#""""#);
    assert_eq!(TimeBound::Ago(1).to_string(), "1m");
    assert_eq!(TimeBound::Ago(60_001).to_string(), "2m");
    assert_eq!(TimeBound::Ago(0).to_string(), "1m");
    assert_eq!(TimeBound::At(i64::MIN).to_string(), "0000-01-01");
    assert_eq!(
        TimeBound::At(i64::MAX).to_string(),
        "9999-12-31T23:59:59.999Z"
    );
    assert_eq!(Field::SessionId.to_string(), "actor.session_id");
}

#[test]
fn field_params() {
    let q = parse_field_params(&[
        ("actor", "alice"),
        ("outcome", "FAILURE,denied"),
        ("after", "2026-01-01"),
        ("not.action", "user.login"),
        ("Resource.Type", "USER"),
        ("ip", "10.1.2.3/8"),
        ("action", "user.*"),
        ("resource.name", "\"Q1 report\""),
        ("NOT.session", "s1"),
    ])
    .unwrap();
    let got: Vec<(bool, TermKind)> = q
        .terms
        .iter()
        .map(|t| (t.negated, t.kind.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (false, field(Field::ActorId, vec![exact("alice")])),
            (
                false,
                field(Field::Outcome, vec![exact("FAILURE"), exact("DENIED")])
            ),
            (false, TermKind::After(TimeBound::At(1_767_225_600_000))),
            (true, field(Field::Action, vec![exact("user.login")])),
            (false, field(Field::ResourceType, vec![exact("USER")])),
            (false, field(Field::ActorIp, vec![v4(10, 0, 0, 0, 8)])),
            (false, field(Field::Action, vec![prefix("user.")])),
            (false, field(Field::ResourceName, vec![exact("Q1 report")])),
            (true, field(Field::SessionId, vec![exact("s1")])),
        ]
    );
    // Spans point into the canonical text, so the text form parses to the same query.
    assert_eq!(parse(&q.to_string()), Ok(q.clone()));
    assert_eq!(
        q.to_string(),
        r#"actor.id:alice outcome:FAILURE,DENIED after:2026-01-01 -action:user.login resource.type:USER actor.ip:10.0.0.0/8 action:user.* resource.name:"Q1 report" -actor.session_id:s1"#
    );
    assert_eq!(parse_field_params(&[]), Ok(Query::default()));
}

#[test]
fn field_param_errors() {
    let e = parse_field_params(&[("actor", "a"), ("outcome", "FAILURE,nope")]).unwrap_err();
    assert_eq!((e.position, e.column), (8, 9));
    assert_eq!(
        e.message,
        "parameter `outcome`: `outcome` must be one of SUCCESS, FAILURE, UNAUTHORIZED, DENIED (found `nope`)"
    );
    let e = parse_field_params(&[("actor", "")]).unwrap_err();
    assert_eq!(
        e.message,
        "parameter `actor`: expected a value after `actor=`"
    );
    assert_eq!((e.position, e.column), (0, 1));
    let e = parse_field_params(&[("q", "free text")]).unwrap_err();
    assert!(
        e.message
            .starts_with("parameter `q`: unknown parameter `q`"),
        "{}",
        e.message
    );
    let e = parse_field_params(&[("acter", "x")]).unwrap_err();
    assert!(e.message.contains("did you mean `actor`?"), "{}", e.message);
    assert!(
        e.message.contains("known parameters: id, actor,"),
        "{}",
        e.message
    );
    let e = parse_field_params(&[("not.after", "1d")]).unwrap_err();
    assert!(
        e.message
            .contains("parameter `not.after`: `after` cannot be negated; use `before`"),
        "{}",
        e.message
    );
    let e = parse_field_params(&[("actor", "alice smith")]).unwrap_err();
    assert_eq!((e.position, e.column), (5, 6));
    assert!(e.message.contains("quote"), "{}", e.message);
    let e = parse_field_params(&[("ip", "é,nope")]).unwrap_err();
    assert_eq!((e.position, e.column), (0, 1));
    let e = parse_field_params(&[("ip", "1.1.1.1,é")]).unwrap_err();
    assert_eq!((e.position, e.column), (8, 9));
    let e = parse_field_params(&[("action", "a*b")]).unwrap_err();
    assert_eq!((e.position, e.column), (1, 2));
    let e = parse_field_params(&[("after", "1d,2d")]).unwrap_err();
    assert!(e
        .message
        .starts_with("parameter `after`: `after` takes a single value"));
    let e = parse_field_params(&[("not.", "x")]).unwrap_err();
    assert!(e.message.contains("unknown parameter ``"), "{}", e.message);
    let many = vec![("actor", "a"); 65];
    let e = parse_field_params(&many).unwrap_err();
    assert!(
        e.message.contains("too many parameters; the limit is 64"),
        "{}",
        e.message
    );
    assert!(parse_field_params(&many[..64]).is_ok());
    let long = "x".repeat(4097);
    let e = parse_field_params(&[("actor", long.as_str())]).unwrap_err();
    assert!(
        e.message.contains("the limit is 4096 bytes"),
        "{}",
        e.message
    );
}

/// Every name and alias the schema registry gives an exact-match field parses, in any case, as
/// a term on that field; the registry's other fields are not query fields.
#[test]
fn every_registry_name_and_alias_parses() {
    use tally_event::fields::{FieldType, FIELDS};
    for spec in FIELDS {
        let value = match spec.ty {
            FieldType::Uuid => "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
            FieldType::Ip => "203.0.113.0/24",
            FieldType::Enum(values) => values[0],
            // Upper case suits the one patterned field searched exactly (`category`).
            _ => "LOGIN",
        };
        for name in spec.names() {
            for spelled in [name.to_owned(), name.to_ascii_uppercase(), capitalise(name)] {
                let text = format!("{spelled}:{value}");
                match (spec.exact, parse(&text)) {
                    (true, Ok(q)) => match &q.terms[..] {
                        [Term {
                            kind: TermKind::Field { field, .. },
                            ..
                        }] => assert_eq!(field.spec().name, spec.name, "{text}"),
                        other => panic!("{text}: {other:?}"),
                    },
                    (true, Err(e)) => panic!("{text}: {e}"),
                    // `before:`/`after:` are time bounds; every other name is unknown.
                    (false, result) if matches!(name, "before" | "after") => {
                        assert!(
                            !matches!(&result, Ok(q) if matches!(q.terms[0].kind, TermKind::Field { .. })),
                            "{text}"
                        )
                    }
                    (false, result) => {
                        let e = result.expect_err(&text);
                        assert!(e.message.starts_with("unknown field"), "{text}: {e}");
                    }
                }
            }
        }
    }
}
