//! A query evaluated against one record in memory: what detection rules and live filters use,
//! where the search index answers the same query over the whole log. Both follow the grammar's
//! meaning (see the [crate documentation](crate)); the index's tests hold the index to a
//! brute-force evaluation of the same kind.

use std::net::IpAddr;

use tally_event::fields::{self, FieldValue};
use tally_event::Record;

use crate::{Field, Query, TermKind, Value};

/// How masking tokens in a query (`actor:tally:pii:…`) are compared: the token of a clear
/// value, under the tenant's token key. Without one, a token term matches nothing.
pub trait Tokens {
    /// The masking token of a string value.
    fn token_of(&self, value: &str) -> String;
}

/// No token key: token terms match nothing.
pub struct NoTokens;

impl Tokens for NoTokens {
    fn token_of(&self, _value: &str) -> String {
        String::new()
    }
}

impl Query {
    /// Whether `record` (opened: personal values in the clear) satisfies every term, `now_ms`
    /// (Unix milliseconds) resolving relative time bounds.
    pub fn matches(&self, record: &Record, now_ms: i64, tokens: &dyn Tokens) -> bool {
        let mut text: Option<Vec<Vec<String>>> = None;
        self.terms.iter().all(|term| {
            let holds = match &term.kind {
                TermKind::Field { field, values } => values
                    .iter()
                    .any(|v| field_matches(record, *field, v, tokens)),
                TermKind::After(bound) => time_ms(record) >= bound.resolve(now_ms),
                TermKind::Before(bound) => time_ms(record) < bound.resolve(now_ms),
                TermKind::Text {
                    text: words,
                    phrase,
                } => {
                    let strings = text.get_or_insert_with(|| full_text_tokens(record));
                    text_matches(strings, &tokenize(words), *phrase)
                }
            };
            holds != term.negated
        })
    }
}

fn time_ms(record: &Record) -> i64 {
    (record.time.unix_timestamp_nanos() / 1_000_000) as i64
}

fn as_v6(ip: IpAddr) -> u128 {
    u128::from(match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    })
}

fn field_matches(record: &Record, field: Field, value: &Value, tokens: &dyn Tokens) -> bool {
    let Some(actual) = field.spec().value(record) else {
        return false;
    };
    match (value, &actual) {
        (
            Value::Cidr {
                network,
                prefix_len,
            },
            FieldValue::Ip(ip),
        ) => {
            let len = u32::from(*prefix_len) + if network.is_ipv4() { 96 } else { 0 };
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            as_v6(*ip) & mask == as_v6(*network) & mask
        }
        (Value::Exact(s), FieldValue::Ip(ip)) => {
            s.parse::<IpAddr>().is_ok_and(|q| as_v6(q) == as_v6(*ip))
        }
        (_, FieldValue::Ip(_)) | (Value::Cidr { .. }, _) => false,
        (Value::Exact(s), _) => actual.as_text().is_some_and(|a| a == *s),
        (Value::Prefix(p), _) => actual.as_text().is_some_and(|a| a.starts_with(p.as_str())),
        (Value::Token(t), _) => actual.as_text().is_some_and(|a| tokens.token_of(&a) == *t),
    }
}

/// Words as the index's full-text field splits them: runs of alphanumeric characters,
/// lower-cased, those over 40 bytes dropped.
fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 40)
        .map(str::to_lowercase)
        .collect()
}

/// The words of every string of the record's full-text fields, one list per string.
fn full_text_tokens(record: &Record) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for spec in fields::FIELDS.iter().filter(|f| f.full_text) {
        match spec.value(record) {
            Some(FieldValue::Json(v)) => json_strings(v, &mut out),
            Some(FieldValue::Object(map)) => {
                for (k, v) in map {
                    out.push(tokenize(k));
                    json_strings(v, &mut out);
                }
            }
            Some(other) => {
                if let Some(text) = other.as_text() {
                    out.push(tokenize(&text));
                }
            }
            None => {}
        }
    }
    out
}

/// Every string, member name and number of a JSON value, as word lists.
fn json_strings(value: &serde_json::Value, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::String(s) => out.push(tokenize(s)),
        serde_json::Value::Number(n) => out.push(tokenize(&n.to_string())),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(tokenize(k));
                json_strings(v, out);
            }
        }
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
    }
}

fn text_matches(strings: &[Vec<String>], words: &[String], phrase: bool) -> bool {
    if words.is_empty() {
        return true;
    }
    if phrase {
        strings
            .iter()
            .any(|s| s.windows(words.len()).any(|w| w == words))
    } else {
        words
            .iter()
            .all(|word| strings.iter().any(|s| s.contains(word)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn record(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    const R: &str = r#"{"schema_version":1,"id":"0190a0b0-0000-7000-8000-000000000001",
        "tenant":"acme","time":"2026-05-01T12:00:00.000Z","received_at":"2026-05-01T12:00:01.000Z",
        "key_id":"k1","actor":{"id":"alice","type":"user","ip":"203.0.113.7"},
        "action":"auth.login","outcome":"FAILURE","resource":{"type":"account","id":"acct-1"},
        "metadata":{"note":"Password reset link sent","tries":3}}"#;

    fn holds(q: &str) -> bool {
        let now = 1_777_643_800_000; // 2026-05-01T13:56:40Z
        parse(q).unwrap().matches(&record(R), now, &NoTokens)
    }

    #[test]
    fn fields_values_and_negation() {
        assert!(holds("actor:alice outcome:failure"));
        assert!(holds("actor:bob,alice"));
        assert!(!holds("actor:bob"));
        assert!(holds("-actor:bob"));
        assert!(!holds("-actor:alice"));
        assert!(holds("action:auth.*"));
        assert!(!holds("action:user.*"));
        assert!(holds("resource.type:account"));
        assert!(!holds("request:r1"), "an absent field matches no value");
        assert!(holds("-request:r1"));
        assert!(holds(""));
    }

    #[test]
    fn addresses_and_time() {
        assert!(holds("ip:203.0.113.0/24"));
        assert!(holds("ip:203.0.113.7"));
        assert!(!holds("ip:198.51.100.0/24"));
        assert!(holds("ip:::ffff:203.0.113.7"));
        assert!(holds("ip:0.0.0.0/0"));
        assert!(holds(
            "after:2026-05-01T11:00:00Z before:2026-05-01T13:00:00Z"
        ));
        assert!(!holds("after:1h"), "the event is almost two hours old");
        assert!(holds("after:2h"));
    }

    #[test]
    fn free_text_and_phrases() {
        assert!(holds("password"));
        assert!(holds("RESET link"));
        assert!(holds(r#""reset link""#));
        assert!(!holds(r#""link reset""#));
        assert!(holds("tries 3"), "member names and numbers are words too");
        assert!(!holds("nowhere"));
        assert!(holds("-nowhere"));
    }
}
