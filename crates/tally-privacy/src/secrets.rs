//! Secrets that must never be stored: credentials by member name (`password`, `token`,
//! `api_key`, …) and payment card numbers by pattern (13 to 19 digits, spaces or dashes
//! between groups, passing the Luhn check), anywhere inside `before`, `after` and `metadata`.
//!
//! An audit log keeps what it is given for ever, so a secret sent by mistake would be there
//! for good (erasure covers personal data under a subject's key, not a password in a
//! snapshot). A tenant chooses what happens to an event carrying one: refused (422, the
//! default) or stored with the value replaced by [`REDACTED`] and the redacted paths listed
//! in `metadata.redacted`.

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Member names (compared case-insensitively, ignoring `_` and `-`) whose values are
/// credentials.
const SECRET_NAMES: [&str; 16] = [
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "privatekey",
    "cardnumber",
    "ccnumber",
    "cvv",
    "cvc",
];

/// One secret found: where, and why it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Dotted path (`after.password`, `metadata.note`, array elements as `[i]`).
    pub path: String,
    /// What makes it a secret.
    pub why: &'static str,
}

fn is_secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.contains(&folded.as_str())
}

/// Whether `text` holds a payment card number: 13 to 19 digits, optionally grouped by single
/// spaces or dashes, that pass the Luhn check.
pub fn holds_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        // A run of digits with single separators between them.
        let mut digits = Vec::with_capacity(19);
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                j += 1;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
                && j > i
            {
                j += 1;
            } else {
                break;
            }
            if digits.len() > 19 {
                break;
            }
        }
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A cheap look at canonical record bytes: false means [`find`] would find nothing, so
/// events without a hint of a secret are never parsed again.
pub fn may_hold_secrets(record: &[u8]) -> bool {
    let mut run = 0usize;
    for &b in record {
        if b.is_ascii_digit() {
            run += 1;
            if run >= 13 {
                return true;
            }
        } else if b != b' ' && b != b'-' {
            run = 0;
        }
    }
    secret_name_fragments().is_match(record)
}

/// Every fragment of a [`SECRET_NAMES`] entry as it may be written (`_`/`-` inside), found in
/// one pass whatever their number, case-insensitively; not `key` or `cc` alone, which every
/// record (`key_id`) or word (`success`) holds.
fn secret_name_fragments() -> &'static aho_corasick::AhoCorasick {
    static FRAGMENTS: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    FRAGMENTS.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build([
                "pass",
                "pwd",
                "secret",
                "token",
                "apikey",
                "api_key",
                "api-key",
                "private",
                "card",
                "ccnumber",
                "cc_number",
                "cc-number",
                "cvv",
                "cvc",
            ])
            .expect("fixed patterns build")
    })
}

/// Every secret inside a free-form member (`before`, `after` or `metadata`) named `root`.
pub fn find(root: &str, value: &Value) -> Vec<Secret> {
    let mut out = Vec::new();
    walk(root.to_string(), value, &mut out);
    out
}

fn walk(path: String, value: &Value, out: &mut Vec<Secret>) {
    match value {
        Value::String(s) if holds_card_number(s) => out.push(Secret {
            path,
            why: "holds a payment card number",
        }),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(format!("{path}[{i}]"), v, out);
            }
        }
        Value::Object(members) => {
            for (k, v) in members {
                let p = format!("{path}.{k}");
                // Null and already-redacted values hold nothing (a retry of a redacted event).
                if is_secret_name(k) && !v.is_null() && v.as_str() != Some(REDACTED) {
                    out.push(Secret {
                        path: p,
                        why: "is named as a credential",
                    });
                } else {
                    walk(p, v, out);
                }
            }
        }
        _ => {}
    }
}

/// Replaces every secret of a free-form member by [`REDACTED`]; returns their paths.
pub fn redact(root: &str, value: &mut Value) -> Vec<String> {
    let found = find(root, value);
    for secret in &found {
        if let Some(slot) = pointer_mut(value, root, &secret.path) {
            *slot = Value::String(REDACTED.into());
        }
    }
    found.into_iter().map(|s| s.path).collect()
}

/// The value at a dotted path (as [`find`] writes it) below `root`.
fn pointer_mut<'a>(value: &'a mut Value, root: &str, path: &str) -> Option<&'a mut Value> {
    let rest = path.strip_prefix(root)?;
    let mut at = value;
    let mut rest = rest;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            // A member name runs to the next `.` or `[` that starts another step; names
            // containing those are matched by trying the longest existing member first.
            let obj = at.as_object_mut()?;
            let name = obj
                .keys()
                .filter(|k| r.starts_with(k.as_str()))
                .filter(|k| {
                    let tail = &r[k.len()..];
                    tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')
                })
                .max_by_key(|k| k.len())?
                .clone();
            rest = &r[name.len()..];
            at = obj.get_mut(&name)?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            rest = &r[end + 1..];
            at = at.as_array_mut()?.get_mut(i)?;
        } else {
            return None;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn card_numbers_by_pattern_and_luhn() {
        for yes in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "card 5500-0000-0000-0004 on file",
            "378282246310005",
        ] {
            assert!(holds_card_number(yes), "{yes}");
        }
        for no in [
            "4111111111111112",
            "order 123456789012",
            "2026-11-30",
            "phone +1 555 0100",
            "41111111111111111111111",
        ] {
            assert!(!holds_card_number(no), "{no}");
        }
    }

    #[test]
    fn credentials_by_name_anywhere_and_redaction_in_place() {
        let mut v = json!({
            "user": {"Password": "hunter2", "name": "x"},
            "api-key": "abc",
            "notes": ["ok", "paid with 4111 1111 1111 1111"],
            "token": null,
        });
        let found: Vec<String> = find("after", &v).into_iter().map(|s| s.path).collect();
        assert_eq!(
            found,
            ["after.api-key", "after.notes[1]", "after.user.Password"]
        );
        let redacted = redact("after", &mut v);
        assert_eq!(redacted.len(), 3);
        assert_eq!(v["user"]["Password"], REDACTED);
        assert_eq!(v["notes"][1], REDACTED);
        assert_eq!(v["user"]["name"], "x");
        assert!(find("after", &v).is_empty());
    }

    #[test]
    fn the_quick_look_never_misses_what_find_finds() {
        let record = br#"{"after":{"Secret":"x"}}"#;
        assert!(may_hold_secrets(record));
        assert!(may_hold_secrets(b"pay 4111-1111-1111-1111"));
        assert!(!may_hold_secrets(
            br#"{"key_id":"k1","action":"user.login","outcome":"SUCCESS","category":"ACCESS"}"#
        ));
    }
}
