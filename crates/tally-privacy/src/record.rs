//! Sealing a record's personal values at ingest, and opening a stored record for a reader.
//!
//! A sealed record (schema version 2) is the canonical schema-1 record with
//! `"schema_version":2` and every personal value replaced, in place, by the JSON string of its
//! sealed form (see [`crate::seal`]). Everything else is byte-for-byte the schema-1 encoding, so
//! opening every value in the clear gives back exactly the schema-1 bytes, with version 2.
//! The log hashes the sealed bytes: a proof never needs a personal value, and destroying a
//! subject's key erases its values without touching a hashed byte.

use std::collections::HashMap;

use uuid::Uuid;

use crate::json::{self, MalformedJson, Span, Step};
use crate::keystore::{KeyState, SubjectKeys};
use crate::policy::{Matching, Pattern, Policy, SubjectRule};
use crate::seal::{self, KeyId, OpenError, Sealed, SubjectKey, ERASED, SEALED_PREFIX, UNAVAILABLE};

const V1_PREFIX: &[u8] = br#"{"schema_version":1,"#;
const V2_PREFIX: &[u8] = br#"{"schema_version":2,"#;

/// The schema version of sealed records.
pub const SEALED_SCHEMA_VERSION: u32 = 2;

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not a record of the expected version, or not JSON.
    #[error("not a {expected} record: {detail}")]
    Malformed {
        /// Which form was expected.
        expected: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A subject has no key: [`SubjectKeys::ensure`] was not called for it.
    #[error("no key for a subject of this record (ensure its subjects first)")]
    MissingKey,
    /// A sealed value is damaged or does not open under its key.
    #[error("the personal value at `{path}` does not open: {source}")]
    Damaged {
        /// Where the value is.
        path: String,
        /// Why.
        #[source]
        source: OpenError,
    },
}

fn malformed(expected: &'static str, detail: impl ToString) -> RecordError {
    RecordError::Malformed {
        expected,
        detail: detail.to_string(),
    }
}

impl From<MalformedJson> for RecordError {
    fn from(e: MalformedJson) -> Self {
        malformed("JSON", e)
    }
}

/// A personal value found by the walk: where it is, its nonce, and the rule naming it.
struct Found {
    nonce: [u8; 12],
    span: Span,
    rule: usize,
}

/// A personal value to seal: where it is, its nonce, and its subject (a position in
/// [`Plan::subjects`]; `None` when the record names no subject for it).
struct Planned {
    nonce: [u8; 12],
    span: Span,
    subject: Option<usize>,
}

/// The personal values of a schema-1 record and their subjects.
struct Plan {
    values: Vec<Planned>,
    /// Every subject named, without duplicates, in order of first use.
    subjects: Vec<String>,
}

/// The values of a record that name subjects.
#[derive(Default)]
struct SubjectValues {
    actor: Option<String>,
    resource: Option<String>,
    resource_name: Option<String>,
    at_subject_paths: HashMap<String, String>,
}

impl SubjectValues {
    fn subject_of(&self, rule: &SubjectRule, span: &Span, record: &[u8]) -> Option<String> {
        match rule {
            SubjectRule::Actor => self.actor.clone(),
            SubjectRule::Resource => self
                .resource
                .clone()
                .or_else(|| self.resource_name.clone())
                .or_else(|| self.actor.clone()),
            SubjectRule::Value => Some(subject_text(record, span.clone())),
            SubjectRule::Path(p) => self
                .at_subject_paths
                .get(&p.to_string())
                .cloned()
                .or_else(|| self.actor.clone()),
        }
    }
}

/// The text of a value as a subject identifier: a string's content, or another value's JSON.
fn subject_text(bytes: &[u8], span: Span) -> String {
    json::string_at(bytes, span.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[span]).into_owned())
}

fn plan(record: &[u8], policy: &Policy) -> Result<Plan, RecordError> {
    let subject_paths: Vec<&Pattern> = policy
        .rules()
        .iter()
        .filter_map(|r| match &r.subject {
            SubjectRule::Path(p) => Some(p),
            _ => None,
        })
        .collect();
    let mut found: Vec<Found> = Vec::new();
    let mut named = SubjectValues::default();
    // Depth of the personal value being walked through (only to find subject values in it).
    let mut inside_taken: Option<usize> = None;
    let mut matching = Matching::default();
    json::walk(record, &mut |path, span| {
        if inside_taken.is_some_and(|d| path.len() <= d) {
            inside_taken = None;
        }
        let matched = matching.step(policy, path.len(), path.last().map_or("", |n| n));
        match path {
            [a, b] if a == "actor" && b == "id" => {
                named.actor = Some(subject_text(record, span.clone()))
            }
            [a, b] if a == "resource" && b == "id" => {
                named.resource = Some(subject_text(record, span.clone()))
            }
            [a, b] if a == "resource" && b == "name" => {
                named.resource_name = Some(subject_text(record, span.clone()))
            }
            _ => {}
        }
        if let Some(p) = subject_paths.iter().find(|p| p.matches(path)) {
            named
                .at_subject_paths
                .entry(p.to_string())
                .or_insert_with(|| subject_text(record, span.clone()));
        }
        let to_subject = subject_paths
            .iter()
            .any(|p| p.segments().len() > path.len() && p.prefix_matches(path));
        if inside_taken.is_none() {
            if let Some(rule) = matched.rule {
                found.push(Found {
                    nonce: policy.value_nonce(rule, path),
                    span,
                    rule,
                });
                if to_subject {
                    inside_taken = Some(path.len());
                    return Step::Enter;
                }
                return Step::Skip;
            }
        }
        if to_subject || (inside_taken.is_none() && matched.deeper) {
            Step::Enter
        } else {
            Step::Skip
        }
    })?;
    // Subjects are resolved after the walk: the value naming one may come after the values
    // it owns.
    let mut plan = Plan {
        values: Vec::with_capacity(found.len()),
        subjects: Vec::new(),
    };
    for f in found {
        let subject = named
            .subject_of(&policy.rules()[f.rule].subject, &f.span, record)
            .map(|s| match plan.subjects.iter().position(|x| *x == s) {
                Some(i) => i,
                None => {
                    plan.subjects.push(s);
                    plan.subjects.len() - 1
                }
            });
        plan.values.push(Planned {
            nonce: f.nonce,
            span: f.span,
            subject,
        });
    }
    Ok(plan)
}

/// A schema-1 record's personal values and their subjects, found in one walk: what sealing
/// it needs ([`plan_record`]).
pub struct RecordPlan<'a> {
    record: &'a [u8],
    plan: Plan,
}

/// Finds the personal values of a canonical schema-1 record under `policy`.
pub fn plan_record<'a>(record: &'a [u8], policy: &Policy) -> Result<RecordPlan<'a>, RecordError> {
    if !record.starts_with(V1_PREFIX) {
        return Err(malformed(
            "schema-1",
            "it does not start with schema_version 1",
        ));
    }
    Ok(RecordPlan {
        record,
        plan: plan(record, policy)?,
    })
}

impl RecordPlan<'_> {
    /// The subjects whose keys sealing the record needs, without duplicates.
    pub fn subjects(&self) -> Vec<String> {
        self.plan.subjects.clone()
    }

    /// Seals every personal value under its subject's key. The keys must exist
    /// ([`SubjectKeys::ensure`] with [`subjects`](Self::subjects)).
    pub fn seal(&self, keys: &SubjectKeys) -> Result<Vec<u8>, RecordError> {
        self.seal_with(&|subject| keys.key_for(subject))
    }

    /// [`seal`](Self::seal) with each subject's key from `key_of` (keys a caller already
    /// holds, from [`SubjectKeys::ensure_keys`]).
    pub fn seal_with(
        &self,
        key_of: &dyn Fn(&str) -> Option<(KeyId, SubjectKey)>,
    ) -> Result<Vec<u8>, RecordError> {
        let record = self.record;
        let id =
            tally_event::record_id(record).ok_or_else(|| malformed("schema-1", "no event id"))?;
        let mut out = Vec::with_capacity(record.len() + self.plan.values.len() * 160);
        out.extend_from_slice(V2_PREFIX);
        let mut at = V1_PREFIX.len();
        // Each subject's key is looked up, its event key derived and the head of its sealed
        // values encoded, once per record.
        let mut event_keys: Vec<Option<(seal::EventKey, Vec<u8>)>> =
            vec![None; self.plan.subjects.len()];
        let mut scratch = Vec::new();
        for value in &self.plan.values {
            let i = value.subject.ok_or(RecordError::MissingKey)?;
            if event_keys[i].is_none() {
                let (kid, key) = key_of(&self.plan.subjects[i]).ok_or(RecordError::MissingKey)?;
                let key = seal::event_key(&key, id);
                let head = seal::sealed_head(&key, kid);
                event_keys[i] = Some((key, head));
            }
            let (key, head) = event_keys[i].as_ref().expect("filled just above");
            out.extend_from_slice(&record[at..value.span.start]);
            out.push(b'"');
            seal::seal_value_into(
                &mut out,
                &mut scratch,
                key,
                head,
                &value.nonce,
                &record[value.span.clone()],
            );
            out.push(b'"');
            at = value.span.end;
        }
        out.extend_from_slice(&record[at..]);
        Ok(out)
    }
}

/// The subjects whose keys sealing this schema-1 record needs, without duplicates.
pub fn subjects(record: &[u8], policy: &Policy) -> Result<Vec<String>, RecordError> {
    Ok(plan_record(record, policy)?.subjects())
}

/// Seals every personal value of a canonical schema-1 record under its subject's key. The
/// keys must exist ([`SubjectKeys::ensure`] with [`subjects`]).
pub fn seal_record(
    record: &[u8],
    policy: &Policy,
    keys: &SubjectKeys,
) -> Result<Vec<u8>, RecordError> {
    plan_record(record, policy)?.seal(keys)
}

/// How a reader sees personal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// As they were sent (the `read:pii` scope).
    Clear,
    /// As masking tokens (`tally:pii:…`): equal values show equal tokens.
    Masked,
    /// In the clear, with each sealed value's token in [`Opened::tokens`] (for the search
    /// index, which answers masked readers' searches by token).
    Index,
}

/// A record as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The record's JSON: schema-1 members, the stored `schema_version`, each personal value
    /// clear, masked, [`ERASED`] or [`UNAVAILABLE`].
    pub bytes: Vec<u8>,
    /// Every sealed value: its dotted path and the key it is sealed under.
    pub sealed: Vec<(String, KeyId)>,
    /// With [`View::Index`]: the dotted path and masking token of every sealed value that
    /// opened.
    pub tokens: Vec<(String, String)>,
    /// How many values were erased.
    pub erased: usize,
    /// How many values had a key this key file does not know.
    pub unavailable: usize,
}

fn quoted(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    v.push(b'"');
    v.extend_from_slice(s.as_bytes());
    v.push(b'"');
    v
}

/// Opens a stored record for a reader. A schema-1 record holds its values in the clear: the
/// clear view is the record itself, and the masked view replaces the values `policy` names.
pub fn open_record(
    stored: &[u8],
    view: View,
    policy: &Policy,
    keys: &SubjectKeys,
) -> Result<Opened, RecordError> {
    let mut replacements: Vec<(Span, Vec<u8>)> = Vec::new();
    let mut opened = Opened {
        bytes: Vec::new(),
        sealed: Vec::new(),
        tokens: Vec::new(),
        erased: 0,
        unavailable: 0,
    };
    if stored.starts_with(V1_PREFIX) {
        if view == View::Masked {
            for value in plan(stored, policy)?.values {
                let token = keys.tokens().token(&stored[value.span.clone()]);
                replacements.push((value.span, quoted(&token)));
            }
        }
    } else if stored.starts_with(V2_PREFIX) {
        let id: Uuid =
            tally_event::record_id(stored).ok_or_else(|| malformed("sealed", "no event id"))?;
        let needle = format!("\"{SEALED_PREFIX}");
        let mut failure = None;
        // Each key's event key is derived once per record.
        let mut event_keys: Vec<(KeyId, seal::EventKey)> = Vec::new();
        json::walk(stored, &mut |path, span| {
            if failure.is_some() {
                return Step::Skip;
            }
            if !stored[span.clone()].starts_with(needle.as_bytes()) {
                return Step::Enter;
            }
            let text = json::string_at(stored, span.clone()).unwrap_or_default();
            let dotted = path.join(".");
            let sealed = match Sealed::parse(&text) {
                Ok(s) => s,
                Err(source) => {
                    failure = Some(RecordError::Damaged {
                        path: dotted,
                        source,
                    });
                    return Step::Skip;
                }
            };
            opened.sealed.push((dotted.clone(), sealed.kid));
            let replacement = match keys.key(&sealed.kid) {
                KeyState::Present(key) => match sealed.open(
                    match event_keys.iter().position(|(k, _)| *k == sealed.kid) {
                        Some(i) => &event_keys[i].1,
                        None => {
                            event_keys.push((sealed.kid, seal::event_key(&key, id)));
                            &event_keys[event_keys.len() - 1].1
                        }
                    },
                    path,
                ) {
                    Ok(plain) => match view {
                        View::Clear => plain,
                        View::Masked => quoted(&keys.tokens().token(&plain)),
                        View::Index => {
                            opened.tokens.push((dotted, keys.tokens().token(&plain)));
                            plain
                        }
                    },
                    Err(source) => {
                        failure = Some(RecordError::Damaged {
                            path: dotted,
                            source,
                        });
                        return Step::Skip;
                    }
                },
                KeyState::Erased => {
                    opened.erased += 1;
                    quoted(ERASED)
                }
                KeyState::Unknown => {
                    opened.unavailable += 1;
                    quoted(UNAVAILABLE)
                }
            };
            replacements.push((span, replacement));
            Step::Skip
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
    } else {
        return Err(malformed("stored", "unknown schema_version"));
    }
    let mut out = Vec::with_capacity(stored.len());
    let mut at = 0;
    for (span, with) in replacements {
        out.extend_from_slice(&stored[at..span.start]);
        out.extend_from_slice(&with);
        at = span.end;
    }
    out.extend_from_slice(&stored[at..]);
    opened.bytes = out;
    Ok(opened)
}

/// Whether a stored record is sealed (schema version 2).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(V2_PREFIX)
}

/// The schema-1 form of a clear-opened sealed record: what was sealed, byte for byte.
pub fn as_schema_1(opened_clear: &[u8]) -> Option<Vec<u8>> {
    let rest = opened_clear.strip_prefix(V2_PREFIX)?;
    let mut out = V1_PREFIX.to_vec();
    out.extend_from_slice(rest);
    Some(out)
}

/// The sealed values of a stored record: each one's path, span and parsed form.
fn sealed_values(stored: &[u8]) -> Result<Vec<(Vec<String>, Span, Sealed)>, RecordError> {
    let needle = format!("\"{SEALED_PREFIX}");
    let mut out = Vec::new();
    let mut failure = None;
    json::walk(stored, &mut |path, span| {
        if failure.is_some() || !stored[span.clone()].starts_with(needle.as_bytes()) {
            return Step::Enter;
        }
        let text = json::string_at(stored, span.clone()).unwrap_or_default();
        match Sealed::parse(&text) {
            Ok(sealed) => out.push((path.iter().map(|n| n.to_string()).collect(), span, sealed)),
            Err(source) => {
                failure = Some(RecordError::Damaged {
                    path: path.join("."),
                    source,
                })
            }
        }
        Step::Skip
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The event keys of a sealed record's values whose subject keys `keys` still holds: what an
/// export for a `read:pii` reader discloses, so that an offline verifier can open each value
/// shown in the clear and check it against the hashed record (and no other event's).
pub fn event_keys(
    stored: &[u8],
    keys: &SubjectKeys,
) -> Result<Vec<(KeyId, seal::EventKey)>, RecordError> {
    if !is_sealed(stored) {
        return Ok(Vec::new());
    }
    let id: Uuid =
        tally_event::record_id(stored).ok_or_else(|| malformed("sealed", "no event id"))?;
    let mut out: Vec<(KeyId, seal::EventKey)> = Vec::new();
    for (_, _, sealed) in sealed_values(stored)? {
        if out.iter().any(|(k, _)| *k == sealed.kid) {
            continue;
        }
        if let KeyState::Present(key) = keys.key(&sealed.kid) {
            out.push((sealed.kid, seal::event_key(&key, id)));
        }
    }
    Ok(out)
}

/// What [`check_shown`] found in a shown record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShownCheck {
    /// Values shown in the clear, each opened with a disclosed key and equal to what is shown.
    pub opened: usize,
    /// Values shown as masking tokens (their value cannot be checked without the tenant's key).
    pub masked: usize,
    /// Values shown as erased or unavailable.
    pub erased: usize,
}

/// Checks that `shown` is the sealed record `stored` as a reader saw it: byte for byte the same
/// outside its sealed values, and each sealed value either opened (with a key of `keys`, and
/// equal to what `shown` holds there) or shown as a masking token, `tally:erased` or
/// `tally:unavailable`. What an offline verifier of an export runs; the error names the first
/// place where `shown` is not what `stored` holds.
pub fn check_shown(
    stored: &[u8],
    shown: &[u8],
    keys: &[(KeyId, seal::EventKey)],
) -> Result<ShownCheck, String> {
    let mut check = ShownCheck::default();
    if !is_sealed(stored) {
        return if stored == shown {
            Ok(check)
        } else {
            Err("the record shown is not the record hashed".into())
        };
    }
    let values = sealed_values(stored).map_err(|e| e.to_string())?;
    let (mut at_stored, mut at_shown) = (0usize, 0usize);
    for (path, span, sealed) in values {
        let dotted = path.join(".");
        let literal = &stored[at_stored..span.start];
        if !shown[at_shown..].starts_with(literal) {
            return Err(format!(
                "the record shown differs from the record hashed before `{dotted}`"
            ));
        }
        at_shown += literal.len();
        let end = json::value_end(shown, at_shown)
            .ok_or_else(|| format!("the record shown has no value at `{dotted}`"))?;
        let value = &shown[at_shown..end];
        match keys.iter().find(|(k, _)| *k == sealed.kid) {
            Some((_, key)) => {
                let plain = sealed
                    .open(key, &path)
                    .map_err(|e| format!("`{dotted}` does not open with its disclosed key: {e}"))?;
                if plain != value {
                    return Err(format!(
                        "`{dotted}` shows a value other than the one sealed in the record hashed"
                    ));
                }
                check.opened += 1;
            }
            None if value.starts_with(format!("\"{}", seal::TOKEN_PREFIX).as_bytes()) => {
                check.masked += 1
            }
            None if value == quoted(ERASED).as_slice()
                || value == quoted(UNAVAILABLE).as_slice() =>
            {
                check.erased += 1
            }
            None => {
                return Err(format!(
                    "`{dotted}` is shown in the clear, but no key to check it against the record \
                     hashed was given"
                ))
            }
        }
        at_shown = end;
        at_stored = span.end;
    }
    if shown[at_shown..] != stored[at_stored..] {
        return Err(
            "the record shown differs from the record hashed after its last sealed value".into(),
        );
    }
    Ok(check)
}
