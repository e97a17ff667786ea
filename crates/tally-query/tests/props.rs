//! Property tests: the parser never panics, canonical text round-trips, spans are sane.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tally_query::{
    parse, parse_field_params, Field, ParseError, Query, Span, Term, TermKind, TimeBound, Value,
    ACTOR_TYPES, MAX_TIME_MS, MIN_TIME_MS, OUTCOMES,
};

/// Fragments that steer random input into every corner of the grammar.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_owned()),
        Just("-".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("*".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("/".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("é".to_owned()),
        Just("日本".to_owned()),
        Just("🦀".to_owned()),
        prop::sample::select(vec![
            "actor",
            "ACTOR.id",
            "ip",
            "outcome",
            "category",
            "id",
            "actor.type",
            "after",
            "before",
            "action",
            "acter",
            "https",
            "",
        ])
        .prop_map(|s| s.to_owned()),
        prop::sample::select(vec![
            "alice",
            "SUCCESS",
            "failure",
            "user.*",
            "10.1.2.3/8",
            "::1/64",
            "2026-01-01",
            "2026-01-01T10:00:00Z",
            "30d",
            "0m",
            "-5h",
            "99999999999999999999w",
            "LOGIN",
            "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
            "0190*",
            "service",
            "256.1.1.1",
        ])
        .prop_map(|s| s.to_owned()),
        "[a-z0-9.]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn grammar_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..24).prop_map(|v| v.concat())
}

fn check_error(input: &str, e: &ParseError) {
    assert!(e.position <= input.len(), "{input:?}: {e:?}");
    assert!(input.is_char_boundary(e.position), "{input:?}: {e:?}");
    assert_eq!(e.position, e.span.start, "{input:?}: {e:?}");
    assert!(
        e.span.end <= input.len() && e.span.start <= e.span.end,
        "{input:?}: {e:?}"
    );
    assert!(input.is_char_boundary(e.span.end), "{input:?}: {e:?}");
    assert_eq!(e.column, input[..e.position].chars().count() + 1);
    assert!(!e.message.is_empty());
}

/// Spans within the input, on char boundaries, non-empty, increasing and not overlapping,
/// separated by whitespace only, and each slice parses back to its own term.
fn check_spans(input: &str, q: &Query) {
    let mut previous_end = 0;
    for (i, term) in q.terms.iter().enumerate() {
        let Span { start, end } = term.span;
        assert!(start < end && end <= input.len(), "{input:?}: {term:?}");
        assert!(
            input.is_char_boundary(start) && input.is_char_boundary(end),
            "{input:?}: {term:?}"
        );
        assert!(start >= previous_end, "{input:?}: {term:?}");
        let gap = &input[previous_end..start];
        assert!(gap.chars().all(char::is_whitespace), "{input:?}: {gap:?}");
        assert!(i == 0 || !gap.is_empty(), "{input:?}: terms not separated");
        assert_eq!(term.negated, input[start..].starts_with('-'));
        let alone = parse(&input[start..end]).expect("a term's text parses alone");
        assert_eq!(alone.terms.len(), 1);
        assert_eq!(alone.terms[0].kind, term.kind);
        previous_end = end;
    }
    assert!(input[previous_end..].chars().all(char::is_whitespace));
}

fn check_any_input(input: &str) {
    match parse(input) {
        Ok(q) => {
            check_spans(input, &q);
            // Whatever parses, its canonical text parses to the same query.
            let text = q.to_string();
            assert_eq!(
                parse(&text),
                Ok(q.clone().with_canonical_spans()),
                "{input:?} → {text:?}"
            );
        }
        Err(e) => check_error(input, &e),
    }
}

// ---- A strategy for queries the parser can produce. ----

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._@/-]{1,12}",
        "[ a-z,*\"\\\\:é日🦀\t-]{1,12}",
        ".{1,8}",
    ]
    .prop_filter("non-empty", |s| !s.is_empty())
}

fn string_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_text().prop_map(Value::Exact),
        any_text().prop_map(Value::Prefix),
    ]
}

fn non_empty_prefix_of(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(options.to_vec())
        .prop_flat_map(|s| (1..=s.len()).prop_map(move |n| s[..n].to_owned()))
}

fn enum_value(options: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(options.to_vec()).prop_map(|s| Value::Exact(s.to_owned())),
        non_empty_prefix_of(options).prop_map(Value::Prefix),
    ]
}

fn uuid_text() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| {
        let h = format!("{n:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

fn value_for(field: Field) -> BoxedStrategy<Value> {
    match field {
        Field::Outcome => enum_value(&OUTCOMES).boxed(),
        Field::ActorType => enum_value(&ACTOR_TYPES).boxed(),
        Field::Category => prop_oneof![
            "[A-Z][A-Z0-9_]{0,31}".prop_map(Value::Exact),
            "[A-Z][A-Z0-9_]{0,31}".prop_map(Value::Prefix),
        ]
        .boxed(),
        Field::Id => prop_oneof![
            uuid_text().prop_map(Value::Exact),
            (uuid_text(), 1..=36usize).prop_map(|(u, n)| Value::Prefix(u[..n].to_owned())),
        ]
        .boxed(),
        Field::ActorIp => prop_oneof![
            (any::<u32>(), 0..=32u8).prop_map(|(a, len)| Value::Cidr {
                network: IpAddr::V4(Ipv4Addr::from(
                    a & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
                )),
                prefix_len: len,
            }),
            (any::<u128>(), 0..=128u8).prop_map(|(a, len)| Value::Cidr {
                network: IpAddr::V6(Ipv6Addr::from(
                    a & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
                )),
                prefix_len: len,
            }),
        ]
        .boxed(),
        _ => string_value().boxed(),
    }
}

fn time_bound() -> impl Strategy<Value = TimeBound> {
    prop_oneof![
        (MIN_TIME_MS..=MAX_TIME_MS).prop_map(TimeBound::At),
        // Midnights and whole seconds, which render differently.
        (-719_528i64..=2_932_896).prop_map(|d| TimeBound::At(d * 86_400_000)),
        (MIN_TIME_MS / 1000..=MAX_TIME_MS / 1000).prop_map(|s| TimeBound::At(s * 1000)),
        (
            1i64..=100_000,
            prop::sample::select(vec![60_000i64, 3_600_000, 86_400_000, 604_800_000])
        )
            .prop_map(|(n, unit)| TimeBound::Ago(n * unit)),
        (1i64..=i64::MAX / 60_000).prop_map(|n| TimeBound::Ago(n * 60_000)),
    ]
}

fn term_kind() -> impl Strategy<Value = (bool, TermKind)> {
    let field_term = prop::sample::select(Field::ALL.to_vec()).prop_flat_map(|field| {
        (any::<bool>(), prop::collection::vec(value_for(field), 1..4))
            .prop_map(move |(negated, values)| (negated, TermKind::Field { field, values }))
    });
    prop_oneof![
        4 => field_term,
        1 => (any::<bool>(), "[^\\s\":-][^\\s\":]{0,10}")
            .prop_map(|(negated, text)| (negated, TermKind::Text { text, phrase: false })),
        1 => (any::<bool>(), any_text())
            .prop_map(|(negated, text)| (negated, TermKind::Text { text, phrase: true })),
        1 => time_bound().prop_map(|b| (false, TermKind::After(b))),
        1 => time_bound().prop_map(|b| (false, TermKind::Before(b))),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    prop::collection::vec(term_kind(), 0..8).prop_map(|terms| {
        Query {
            terms: terms
                .into_iter()
                .map(|(negated, kind)| Term {
                    negated,
                    kind,
                    span: Span { start: 0, end: 0 },
                })
                .collect(),
        }
        .with_canonical_spans()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_strings(input in ".{0,64}") {
        check_any_input(&input);
    }

    #[test]
    fn never_panics_on_grammar_soup(input in grammar_soup()) {
        check_any_input(&input);
    }

    #[test]
    fn never_panics_near_the_limits(input in grammar_soup(), times in 1..400usize) {
        // Repeated soup crosses the 64-term, 64-value and 4096-byte limits, often inside a
        // multi-byte character.
        check_any_input(&input.repeat(times));
    }

    #[test]
    fn field_params_never_panic(
        params in prop::collection::vec((grammar_soup(), grammar_soup()), 0..4)
    ) {
        let borrowed: Vec<(&str, &str)> =
            params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        match parse_field_params(&borrowed) {
            Ok(q) => prop_assert_eq!(parse(&q.to_string()), Ok(q)),
            Err(e) => {
                let within_some_value = borrowed.iter().any(|(_, v)| {
                    e.position <= v.len() && e.span.end <= v.len() && v.is_char_boundary(e.position)
                });
                prop_assert!(within_some_value, "{:?}", e);
            }
        }
    }

    #[test]
    fn canonical_text_round_trips(q in query()) {
        let text = q.to_string();
        prop_assert_eq!(parse(&text), Ok(q.clone()), "text: {}", text);
        check_spans(&text, &q);
    }

    #[test]
    fn field_params_agree_with_text(q in query()) {
        // Each field or time term's canonical text after the `:` is a valid parameter value.
        let wanted: Vec<usize> = q
            .terms
            .iter()
            .enumerate()
            .filter(|(_, t)| match &t.kind {
                TermKind::Field { .. } => true,
                TermKind::After(_) | TermKind::Before(_) => !t.negated,
                TermKind::Text { .. } => false,
            })
            .map(|(i, _)| i)
            .collect();
        let rendered: Vec<(String, String)> = wanted
            .iter()
            .map(|&i| {
                let t = &q.terms[i];
                let plain = t.kind.to_string();
                let (name, value) = plain.split_once(':').expect("field terms have a `:`");
                let name = if t.negated { format!("not.{name}") } else { name.to_owned() };
                (name, value.to_owned())
            })
            .collect();
        let params: Vec<(&str, &str)> =
            rendered.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let from_params = parse_field_params(&params).expect("canonical values parse");
        let expected = Query {
            terms: wanted.iter().map(|&i| q.terms[i].clone()).collect(),
        }
        .with_canonical_spans();
        prop_assert_eq!(from_params, expected);
    }
}
