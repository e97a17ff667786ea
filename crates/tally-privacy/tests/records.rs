//! Sealing, opening, masking and erasing over realistic generated events.

use proptest::prelude::*;
use tally_event::{parse_body, validate, BodyFormat, IngestContext, Record};
use tally_eventgen::EventGenerator;
use tally_privacy::json::{self, Step};
use tally_privacy::keystore::SubjectKeys;
use tally_privacy::policy::{Policy, RuleSpec};
use tally_privacy::record::{self, View};
use time::macros::datetime;

fn v1_record(json: &[u8]) -> Vec<u8> {
    let events = parse_body(json, BodyFormat::Json, 10).expect("parses");
    let ctx = IngestContext {
        received_at: datetime!(2026-05-01 12:00 UTC),
        key_id: "key-1",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::days(3650),
    };
    validate(events.into_iter().next().unwrap(), &ctx)
        .expect("valid")
        .record
}

/// The policy of a tenant that also treats contact details in snapshots as personal.
fn policy() -> Policy {
    Policy::with_tenant_rules(&[
        RuleSpec {
            path: "after.email".into(),
            subject: Some("value".into()),
        },
        RuleSpec {
            path: "before.email".into(),
            subject: Some("value".into()),
        },
        RuleSpec {
            path: "after.phone".into(),
            subject: None,
        },
        RuleSpec {
            path: "before.phone".into(),
            subject: None,
        },
        RuleSpec {
            path: "metadata.*".into(),
            subject: None,
        },
    ])
    .unwrap()
}

/// The personal values of a schema-1 record (their JSON text and, for strings, their content),
/// leaving out those that also occur outside the personal values (such as an actor id that is
/// also a resource type), which no masking could hide.
fn personal_values(v1: &[u8], policy: &Policy) -> Vec<String> {
    let mut spans = Vec::new();
    json::walk(v1, &mut |path, span| {
        if policy.rule_for(path).is_some() {
            spans.push(span);
            Step::Skip
        } else if policy.leads_below(path) {
            Step::Enter
        } else {
            Step::Skip
        }
    })
    .unwrap();
    let mut skeleton = Vec::new();
    let mut at = 0;
    for s in &spans {
        skeleton.extend_from_slice(&v1[at..s.start]);
        at = s.end;
    }
    skeleton.extend_from_slice(&v1[at..]);
    let skeleton = String::from_utf8(skeleton).unwrap();
    let mut out = Vec::new();
    for s in spans {
        let text = String::from_utf8(v1[s.clone()].to_vec()).unwrap();
        let inner = json::string_at(v1, s).unwrap_or_default();
        for candidate in [text, inner] {
            if candidate.len() >= 4 && !skeleton.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Opening a sealed record in the clear gives back the schema-1 bytes; the sealed bytes
    /// and the masked view hold no personal value; equal values mask to equal tokens.
    #[test]
    fn sealing_round_trips_and_masking_hides_every_personal_value(seed in any::<u64>(), n in 1usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
        let policy = policy();
        let mut gen = EventGenerator::new(seed);
        for _ in 0..n {
            let v1 = v1_record(&gen.next_json());
            keys.ensure(&record::subjects(&v1, &policy).unwrap()).unwrap();
            let sealed = record::seal_record(&v1, &policy, &keys).unwrap();
            prop_assert!(record::is_sealed(&sealed));
            // Sealing is deterministic: a retry stores the same bytes.
            prop_assert_eq!(&record::seal_record(&v1, &policy, &keys).unwrap(), &sealed);
            let clear = record::open_record(&sealed, View::Clear, &policy, &keys).unwrap();
            prop_assert_eq!(record::as_schema_1(&clear.bytes).unwrap(), v1.clone());
            let parsed = Record::parse(&clear.bytes).unwrap();
            prop_assert_eq!(parsed.to_bytes(), clear.bytes.clone());
            let masked = record::open_record(&sealed, View::Masked, &policy, &keys).unwrap();
            Record::parse(&masked.bytes).unwrap();
            let sealed_text = String::from_utf8(sealed.clone()).unwrap();
            let masked_text = String::from_utf8(masked.bytes.clone()).unwrap();
            for value in personal_values(&v1, &policy) {
                prop_assert!(!sealed_text.contains(&value), "{} in {}", value, sealed_text);
                prop_assert!(!masked_text.contains(&value), "{} in {}", value, masked_text);
            }
            // The actor's id masks to the token a masked reader can search with.
            let actor = Record::parse(&v1).unwrap().actor.id;
            prop_assert!(masked_text.contains(&keys.tokens().token_of_str(&actor)));
            // A schema-1 record is masked the same way.
            let masked_v1 = record::open_record(&v1, View::Masked, &policy, &keys).unwrap();
            prop_assert_eq!(
                record::as_schema_1(&masked.bytes).unwrap(),
                masked_v1.bytes
            );
        }
    }
}

#[test]
fn erasing_one_subject_leaves_the_others_and_every_hashed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    let policy = policy();
    let mut gen = EventGenerator::new(42);
    let mut stored = Vec::new();
    for _ in 0..400 {
        let v1 = v1_record(&gen.next_json());
        keys.ensure(&record::subjects(&v1, &policy).unwrap())
            .unwrap();
        stored.push((
            v1.clone(),
            record::seal_record(&v1, &policy, &keys).unwrap(),
        ));
    }
    // The busiest person actor.
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for (v1, _) in &stored {
        *counts
            .entry(Record::parse(v1).unwrap().actor.id)
            .or_default() += 1;
    }
    let (victim, _) = counts.iter().max_by_key(|(_, c)| **c).unwrap();
    let victim = victim.clone();
    let kid = keys.erase(&victim).unwrap().expect("the victim had a key");

    let mut touched = 0;
    for (v1, sealed) in &stored {
        let opened = record::open_record(sealed, View::Clear, &policy, &keys).unwrap();
        let about_victim = opened.sealed.iter().any(|(_, k)| *k == kid);
        let text = String::from_utf8(opened.bytes.clone()).unwrap();
        assert!(!text.contains(&format!("\"{victim}\"")), "{text}");
        if about_victim {
            touched += 1;
            assert!(opened.erased > 0);
            // Whatever is not the victim's is still there.
            let record = Record::parse(&opened.bytes).unwrap();
            let original = Record::parse(v1).unwrap();
            assert_eq!(record.action, original.action);
            if original.actor.id != victim {
                assert_eq!(record.actor.id, original.actor.id);
            }
        } else {
            assert_eq!(opened.erased, 0);
            assert_eq!(record::as_schema_1(&opened.bytes).unwrap(), *v1);
        }
    }
    assert!(touched >= counts[&victim], "{touched}");
    // The key file no longer knows the victim, and a reopened store agrees.
    drop(keys);
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    assert!(keys.key_for(&victim).is_none());
}

#[test]
fn retries_of_sealed_records_are_recognised_and_conflicts_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    let policy = Policy::default();
    let body = |ip: &str, key: &str| {
        let json = format!(
            r#"{{"id":"0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f","time":"2026-05-01T10:00:00Z","actor":{{"id":"alice","ip":"{ip}"}},"action":"user.login","outcome":"SUCCESS"}}"#
        );
        let events = parse_body(json.as_bytes(), BodyFormat::Json, 10).unwrap();
        let ctx = IngestContext {
            received_at: datetime!(2026-05-01 12:00 UTC),
            key_id: key,
            default_tenant: Some("acme"),
            max_future_skew: time::Duration::minutes(5),
        };
        let v1 = validate(events.into_iter().next().unwrap(), &ctx)
            .unwrap()
            .record;
        keys.ensure(&record::subjects(&v1, &policy).unwrap())
            .unwrap();
        record::seal_record(&v1, &policy, &keys).unwrap()
    };
    let first = body("203.0.113.5", "key-1");
    assert!(tally_event::same_submission(
        &first,
        &body("203.0.113.5", "key-2")
    ));
    assert!(!tally_event::same_submission(
        &first,
        &body("203.0.113.6", "key-1")
    ));
}

#[test]
fn client_strings_that_look_like_tally_markers_are_refused() {
    for (json, field) in [
        (r#"{"actor":{"id":"tally:erased"}}"#, "actor.id"),
        (
            r#"{"actor":{"id":"a"},"after":{"x":["ok","tally:sealed:1.a.b.c"]}}"#,
            "after.x[1]",
        ),
        (
            r#"{"actor":{"id":"a"},"metadata":{"note":"tally:pii:abc"}}"#,
            "metadata.note",
        ),
    ] {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["time"] = "2026-05-01T10:00:00Z".into();
        value["action"] = "user.login".into();
        value["outcome"] = "SUCCESS".into();
        let body = serde_json::to_vec(&value).unwrap();
        let events = parse_body(&body, BodyFormat::Json, 10).unwrap();
        let ctx = IngestContext {
            received_at: datetime!(2026-05-01 12:00 UTC),
            key_id: "k",
            default_tenant: Some("acme"),
            max_future_skew: time::Duration::minutes(5),
        };
        let errors = validate(events.into_iter().next().unwrap(), &ctx).unwrap_err();
        assert_eq!(errors[0].field, field, "{json}");
        assert!(errors[0].rule.contains("reserved"));
    }
}

/// What an export shows is checked against the record hashed: clear values with the disclosed
/// event keys, tokens and erased values by their form, everything else byte for byte.
#[test]
fn a_shown_record_is_checked_against_the_sealed_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    let policy = policy();
    let mut gen = EventGenerator::new(11);
    for _ in 0..50 {
        let v1 = v1_record(&gen.next_json());
        keys.ensure(&record::subjects(&v1, &policy).unwrap())
            .unwrap();
        let sealed = record::seal_record(&v1, &policy, &keys).unwrap();
        let disclosed = record::event_keys(&sealed, &keys).unwrap();
        let clear = record::open_record(&sealed, View::Clear, &policy, &keys).unwrap();
        let masked = record::open_record(&sealed, View::Masked, &policy, &keys).unwrap();
        let n = clear.sealed.len();
        let ok = record::check_shown(&sealed, &clear.bytes, &disclosed).unwrap();
        assert_eq!((ok.opened, ok.masked, ok.erased), (n, 0, 0));
        let ok = record::check_shown(&sealed, &masked.bytes, &[]).unwrap();
        assert_eq!((ok.opened, ok.masked, ok.erased), (0, n, 0));
        if n == 0 {
            continue;
        }
        // Clear values without their keys prove nothing.
        assert!(record::check_shown(&sealed, &clear.bytes, &[]).is_err());
        // A changed clear value, and a changed byte outside the values, are caught.
        let personal = personal_values(&v1, &policy);
        let first = personal.first().unwrap();
        let forged = String::from_utf8(clear.bytes.clone()).unwrap().replacen(
            first.as_str(),
            &format!("{first}x"),
            1,
        );
        assert!(record::check_shown(&sealed, forged.as_bytes(), &disclosed).is_err());
        let forged = String::from_utf8(clear.bytes.clone()).unwrap().replacen(
            "\"outcome\":\"",
            "\"outcome\":\"X",
            1,
        );
        assert!(record::check_shown(&sealed, forged.as_bytes(), &disclosed).is_err());
    }
    // Erased values show as erased and check as such.
    let v1 = v1_record(&gen.next_json());
    let subjects = record::subjects(&v1, &policy).unwrap();
    keys.ensure(&subjects).unwrap();
    let sealed = record::seal_record(&v1, &policy, &keys).unwrap();
    keys.erase(&subjects[0]).unwrap();
    let shown = record::open_record(&sealed, View::Clear, &policy, &keys).unwrap();
    let ok = record::check_shown(
        &sealed,
        &shown.bytes,
        &record::event_keys(&sealed, &keys).unwrap(),
    )
    .unwrap();
    assert_eq!(ok.erased, shown.erased);
    assert!(ok.erased > 0);
}
