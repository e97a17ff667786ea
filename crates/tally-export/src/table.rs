//! Records as table rows: the columns of CSV and Parquet exports.
//!
//! The columns are [`INDEX_COLUMN`] (the leaf index), the flat columns of the schema registry
//! ([`tally_event::fields::flat_columns`], named after their fields, in the registry's column
//! order) and [`EVENT_COLUMN`], the whole stored record (`before`, `after` and `metadata`
//! included), which is what verification hashes. Flat columns are copies for spreadsheets and
//! query engines; the verifier checks each against the record beside it.

use tally_event::fields::{self, FieldSpec, FieldValue};
use tally_event::Record;

/// The first column: the record's leaf index.
pub const INDEX_COLUMN: &str = "index";
/// The last column of a version 1 file: the stored record, unchanged.
pub const EVENT_COLUMN: &str = "event";
/// Version 2, after [`EVENT_COLUMN`]: the record as the exporter saw it (empty when it is the
/// stored record itself).
pub const SHOWN_COLUMN: &str = "shown";
/// Version 2, last: the event keys disclosed for the values shown in the clear (a JSON
/// object; empty when none).
pub const KEYS_COLUMN: &str = "keys";

/// The flat columns between [`INDEX_COLUMN`] and [`EVENT_COLUMN`], in file order.
pub fn flat_columns() -> &'static [&'static FieldSpec] {
    fields::flat_columns()
}

/// Every column name of a version 1 file, in file order.
pub fn columns() -> Vec<&'static str> {
    let mut c = vec![INDEX_COLUMN];
    c.extend(flat_columns().iter().map(|f| f.name));
    c.push(EVENT_COLUMN);
    c
}

/// Every column name of a file of bundle format `version`, in file order.
pub fn columns_for(version: u32) -> Vec<&'static str> {
    let mut c = columns();
    if version >= crate::VIEWS_FORMAT_VERSION {
        c.extend([SHOWN_COLUMN, KEYS_COLUMN]);
    }
    c
}

/// One flat cell. Time fields are typed timestamps (never empty: every record has both);
/// everything else is a string, empty when the record does not carry the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Unix milliseconds.
    Time(i64),
    /// The field's value as the record writes it.
    Text(Option<String>),
}

/// One record as a row.
pub struct Row {
    /// Leaf index.
    pub index: u64,
    /// The [`flat_columns`] values, in order.
    pub cells: Vec<Cell>,
    /// The stored record, unchanged.
    pub event: String,
    /// Version 2: the record as the exporter saw it, when it differs from the stored one; the
    /// flat cells are taken from it.
    pub shown: Option<String>,
    /// Version 2: the disclosed event keys (a JSON object).
    pub keys: Option<String>,
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Why a stored record cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leaf {index}: {reason}")]
pub struct RowError {
    /// The record's leaf index.
    pub index: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl Row {
    /// The row of the stored record `bytes` at leaf `index`.
    pub fn new(index: u64, bytes: &[u8]) -> Result<Row, RowError> {
        Row::shown(index, bytes, None, None)
    }

    /// The row of the stored record `bytes` at leaf `index` as shown to the exporter
    /// (`shown`, with the disclosed `keys`): its flat cells are what was shown.
    pub fn shown(
        index: u64,
        bytes: &[u8],
        shown: Option<&[u8]>,
        keys: Option<&[u8]>,
    ) -> Result<Row, RowError> {
        let error = |reason: String| RowError { index, reason };
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|_| error("the record is not UTF-8".into()))
        };
        let r = Record::parse(shown.unwrap_or(bytes)).map_err(|e| error(e.to_string()))?;
        let event = text(bytes)?;
        let shown = shown.map(text).transpose()?;
        let keys = keys.map(text).transpose()?;
        let cells = flat_columns()
            .iter()
            .map(|f| match f.value(&r) {
                Some(FieldValue::Time(t)) => Ok(Cell::Time(unix_ms(t))),
                _ if f.is_time() => Err(error(format!("the record has no {}", f.name))),
                value => Ok(Cell::Text(
                    value.and_then(|v| v.as_text()).map(|s| s.into_owned()),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Row {
            index,
            cells,
            event,
            shown,
            keys,
        })
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// A cell made safe for spreadsheets: a value starting with `=`, `+`, `-`, `@`, tab or
/// carriage return is prefixed with `'`, so that opening the file cannot run a formula that
/// an event's author planted (CSV injection). The `event` column is never changed.
pub fn spreadsheet_safe(value: &str) -> std::borrow::Cow<'_, str> {
    match value.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_other_values_kept() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("-1+2"), "'-1+2");
        assert_eq!(spreadsheet_safe("alice"), "alice");
        assert_eq!(spreadsheet_safe(""), "");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    /// The columns are exactly the registry's flat columns in order, between the leaf index
    /// and the record.
    #[test]
    fn the_columns_are_the_registrys_flat_columns_in_order() {
        let mut registry: Vec<&FieldSpec> = fields::FIELDS
            .iter()
            .filter(|f| f.column.is_some())
            .collect();
        registry.sort_by_key(|f| f.column);
        let mut expected = vec![INDEX_COLUMN];
        expected.extend(registry.iter().map(|f| f.name));
        expected.push(EVENT_COLUMN);
        assert_eq!(columns(), expected);
    }

    /// Files written before the registry have these columns; `tally verify --export` requires
    /// exactly them, so they must not move (see also `tests/compat.rs`).
    #[test]
    fn the_columns_are_those_of_files_already_written() {
        assert_eq!(
            columns().join(","),
            "index,time,received_at,id,tenant,key_id,actor.id,actor.type,actor.ip,\
             actor.user_agent,actor.session_id,action,category,resource.type,resource.id,\
             resource.name,outcome,reason,request_id,trace_id,correlation_id,event"
        );
    }
}
