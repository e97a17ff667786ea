//! The tantivy schema and the mapping of a record to a document.
//!
//! Both derive from the schema registry (`tally_event::fields`): one raw string field per
//! exact-match field of the query language ([`QField::ALL`], in that order), named after the
//! schema field with `_` for `.` (tantivy reads dots as paths into JSON fields); an IP field for
//! the address field; a time field for the field the time bounds apply to; one full-text field
//! with the strings of every field the registry marks full-text. The layout is frozen by the
//! indexes on disk: a test pins it byte for byte.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use serde_json::{Map, Value as Json};
use tally_event::fields::{self, FieldSpec, FieldValue};
use tally_event::Record;
use tally_query::Field as QField;
use tantivy::schema::{
    Field, IndexRecordOption, IpAddrOptions, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::RAW_TOKENIZER_NAME;
use tantivy::TantivyDocument;

/// Name of the leaf-index field (also the index sort field).
pub(crate) const INDEX: &str = "index";
/// Name of the event-time field (Unix milliseconds): the field time bounds apply to.
pub(crate) const TIME: &str = fields::TIME.name;
/// Name of the full-text field.
pub(crate) const TEXT: &str = "text";

/// Tokenizer of the full-text field: tantivy's `default` (split on non-alphanumerics, drop
/// tokens over 40 bytes, lower-case).
pub(crate) const TEXT_TOKENIZER: &str = "default";

/// Schema version written into each commit; an index written with another is rebuilt.
/// 2: the `personal` field (masking tokens and subject key ids of sealed values).
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// Name of the field of sealed personal values: `token:<path>=<token>` (what a masked reader
/// searches by) and `key:<key id>` (how erasure finds a subject's records).
pub(crate) const PERSONAL: &str = "personal";

/// The `personal` term of a masking token at a path.
pub(crate) fn token_term(path: &str, token: &str) -> String {
    format!("token:{path}={token}")
}

/// The `personal` term of a subject key id.
pub(crate) fn key_term(key: &str) -> String {
    format!("key:{key}")
}

/// The fields of the schema, resolved once.
#[derive(Clone)]
pub(crate) struct Fields {
    pub schema: Schema,
    pub index: Field,
    pub time: Field,
    pub text: Field,
    pub actor_ip: Field,
    /// One raw string field per string [`QField`], in [`QField::ALL`] order.
    strings: Vec<(QField, Field)>,
    /// See [`PERSONAL`].
    pub personal: Field,
}

/// The tantivy name of a schema field: its dotted name with `_` for `.`.
pub(crate) fn field_name(spec: &FieldSpec) -> String {
    spec.name.replace('.', "_")
}

/// Identifier fields: exact-match fields the registry keeps out of full text, (nearly) one
/// distinct value per event. A free-text word is matched against them whole instead (see
/// `query`), which keeps millions of unique tokens out of the text dictionary.
pub(crate) fn identifiers() -> impl Iterator<Item = QField> {
    QField::ALL.into_iter().filter(|f| !f.spec().full_text)
}

/// Identifier fields without a fast column (a column of unique strings costs as much as the
/// rest of the index); grouping by them walks their term dictionary instead (see `stats`).
/// An engine choice, not a schema fact, so it is not in the registry.
pub(crate) const NOT_FAST: [QField; 3] = [QField::Id, QField::RequestId, QField::TraceId];

/// The tantivy field name of a string [`QField`]; `None` for the address field.
pub(crate) fn string_field_name(field: QField) -> Option<String> {
    field.is_string().then(|| field_name(field.spec()))
}

impl Fields {
    pub(crate) fn new() -> Fields {
        let mut b = Schema::builder();
        // Fast only: ranges, ordering and the doc-id ↔ index mapping all go through the column
        // (an inverted index of unique numbers would double the size for nothing).
        let index = b.add_u64_field(INDEX, NumericOptions::default().set_fast());
        let time = b.add_i64_field(TIME, NumericOptions::default().set_fast());
        // No field norms anywhere: nothing is scored.
        let text = b.add_text_field(
            TEXT,
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TEXT_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                    .set_fieldnorms(false),
            ),
        );
        let raw = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(RAW_TOKENIZER_NAME)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        );
        let actor_ip = b.add_ip_addr_field(
            &field_name(&fields::ACTOR_IP),
            IpAddrOptions::default().set_indexed().set_fast(),
        );
        let strings = QField::ALL
            .iter()
            .filter_map(|&f| {
                let name = string_field_name(f)?;
                let options = if NOT_FAST.contains(&f) {
                    raw.clone()
                } else {
                    raw.clone().set_fast(RAW_TOKENIZER_NAME)
                };
                Some((f, b.add_text_field(&name, options)))
            })
            .collect();
        let personal = b.add_text_field(PERSONAL, raw.clone());
        Fields {
            schema: b.build(),
            index,
            time,
            text,
            actor_ip,
            strings,
            personal,
        }
    }

    /// The raw string field of a query field; `None` for the address field.
    pub(crate) fn string(&self, field: QField) -> Option<Field> {
        self.strings
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, tf)| *tf)
    }

    /// The tantivy document of a record. `Err` carries why the record cannot be read.
    pub(crate) fn document(
        &self,
        index: u64,
        bytes: &[u8],
        personal: &[crate::PersonalValue],
    ) -> Result<(TantivyDocument, String), String> {
        let r = Record::parse(bytes).map_err(|e| e.to_string())?;
        // Values are added in field order (index, time, text, actor_ip, strings), which spares
        // tantivy re-sorting them per document.
        let mut doc = TantivyDocument::with_capacity(bytes.len() * 2);
        doc.add_u64(self.index, index);
        if let Some(FieldValue::Time(t)) = fields::TIME.value(&r) {
            doc.add_i64(self.time, (t.unix_timestamp_nanos() / 1_000_000) as i64);
        }

        let strings: Vec<(QField, Option<Cow<'_, str>>)> = QField::ALL
            .into_iter()
            .filter(|f| f.is_string())
            .map(|f| (f, f.spec().value(&r).and_then(|v| v.as_text())))
            .collect();

        // Full text: the typed strings marked full-text, then the registry's other full-text
        // fields in registry order (the address, user agent, reason, and every string, key and
        // number of the free-form members).
        for (qf, value) in &strings {
            if let (Some(value), true) = (value, qf.spec().full_text) {
                doc.add_text(self.text, value);
            }
        }
        let typed = |f: &FieldSpec| f.exact && !f.is_ip();
        for spec in fields::FIELDS.iter().filter(|f| f.full_text && !typed(f)) {
            match spec.value(&r) {
                Some(FieldValue::Json(v)) => free_text(&mut doc, self.text, v),
                Some(FieldValue::Object(m)) => free_text_members(&mut doc, self.text, m),
                Some(v) => {
                    if let Some(text) = v.as_text() {
                        doc.add_text(self.text, text);
                    }
                }
                None => {}
            }
        }

        if let Some(FieldValue::Ip(ip)) = fields::ACTOR_IP.value(&r) {
            doc.add_ip_addr(self.actor_ip, ip_to_v6(ip));
        }
        for (qf, value) in strings {
            if let (Some(value), Some(f)) = (value, self.string(qf)) {
                doc.add_text(f, value);
            }
        }
        for p in personal {
            if let Some(token) = &p.token {
                doc.add_text(self.personal, token_term(&p.path, token));
            }
            doc.add_text(self.personal, key_term(&p.key));
        }
        Ok((doc, r.tenant))
    }
}

/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), as tantivy does.
pub(crate) fn ip_to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The display form of a stored address: IPv4-mapped addresses as IPv4.
pub(crate) fn ip_display(ip: Ipv6Addr) -> String {
    match ip.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    }
}

/// Adds every string, object key and number of a free-form JSON value to the text field.
fn free_text(doc: &mut TantivyDocument, text: Field, v: &Json) {
    match v {
        Json::String(s) => doc.add_text(text, s),
        Json::Number(n) => doc.add_text(text, n.to_string()),
        Json::Array(items) => items.iter().for_each(|i| free_text(doc, text, i)),
        Json::Object(map) => free_text_members(doc, text, map),
        Json::Null | Json::Bool(_) => {}
    }
}

/// Adds every key of an object, and every string, key and number of its values.
fn free_text_members(doc: &mut TantivyDocument, text: Field, map: &Map<String, Json>) {
    for (k, v) in map {
        doc.add_text(text, k);
        free_text(doc, text, v);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tantivy::schema::Document;

    use super::*;

    /// The layout assumes one address field and every other query field a string.
    #[test]
    fn the_registry_has_the_fields_the_layout_assumes() {
        let ips: Vec<&str> = fields::FIELDS
            .iter()
            .filter(|f| f.is_ip())
            .map(|f| f.name)
            .collect();
        assert_eq!(ips, [fields::ACTOR_IP.name]);
        const { assert!(fields::ACTOR_IP.exact) };
        let bounded: Vec<&str> = fields::FIELDS
            .iter()
            .filter(|f| f.time_bounds)
            .map(|f| f.name)
            .collect();
        assert_eq!(bounded, [TIME]);
        for f in identifiers() {
            assert!(f.is_string() && !f.spec().full_text, "{f:?}");
        }
    }

    /// Compares `actual` with the committed fixture `name`, or rewrites the fixture when
    /// `TALLY_WRITE_FIXTURES` is set (only when a format change is intended).
    fn matches_fixture(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        if std::env::var_os("TALLY_WRITE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert!(
            actual == expected,
            "{name} changed:\n{actual}\n(an index written with another schema is rebuilt from \
             the log on open; change the fixture only with SCHEMA_VERSION)"
        );
    }

    /// `TantivyIndex::open` compares the stored schema with this one and rebuilds the whole
    /// index when they differ, so the schema is pinned: fields, order, options.
    #[test]
    fn the_schema_is_the_one_existing_indexes_were_written_with() {
        let schema = serde_json::to_string_pretty(&Fields::new().schema).unwrap();
        matches_fixture("tantivy-schema-v2.json", &schema);
    }

    /// Which values of a record go to which field, in which order (positions in the text field
    /// follow it).
    #[test]
    fn a_record_maps_to_the_same_document() {
        let input = serde_json::from_value(serde_json::json!({
            "id": "0190C3A2-7B1E-7C4D-9A2F-3E5B6C7D8E9F",
            "time": "2026-03-01T10:00:00.125+01:00",
            "actor": {"id": "alice", "type": "user", "ip": "203.0.113.7",
                      "user_agent": "Mozilla/5.0 (X11)", "session_id": "sess-1"},
            "action": "user.update",
            "category": "UPDATE",
            "resource": {"type": "USER", "id": "u-1", "name": "Alice Liddell"},
            "outcome": "SUCCESS",
            "reason": "profile edit",
            "request_id": "req-1",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "correlation_id": "corr-1",
            "before": {"email": "old@example.com", "tags": ["a", 2, true, null]},
            "after": "new@example.com",
            "metadata": {"n": 1.5, "nested": {"k": "v"}},
        }))
        .unwrap();
        let ctx = tally_event::IngestContext {
            received_at: time::macros::datetime!(2026-03-01 10:00:05 UTC),
            key_id: "k1",
            default_tenant: Some("acme"),
            max_future_skew: time::Duration::minutes(5),
        };
        let record = tally_event::validate(input, &ctx).unwrap().record;
        let fields = Fields::new();
        let personal = [crate::PersonalValue {
            path: "actor.id".into(),
            token: Some("tally:pii:abc".into()),
            key: "k1".into(),
        }];
        let (doc, tenant) = fields.document(7, &record, &personal).unwrap();
        assert_eq!(tenant, "acme");
        matches_fixture("tantivy-document-v2.json", &doc.to_json(&fields.schema));
    }
}
