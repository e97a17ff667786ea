//! Records as table rows: the columns of CSV and Parquet exports.

use tally_event::Record;

/// Typed string columns, in file order, between `received_at` and `event`.
pub const STRING_COLUMNS: [&str; 17] = [
    "id",
    "tenant",
    "key_id",
    "actor.id",
    "actor.type",
    "actor.ip",
    "actor.user_agent",
    "actor.session_id",
    "action",
    "category",
    "resource.type",
    "resource.id",
    "resource.name",
    "outcome",
    "reason",
    "request_id",
    "trace_id",
];

/// Every column, in file order: `index`, `time`, `received_at`, the [`STRING_COLUMNS`],
/// `correlation_id`, and `event`, the whole stored record (before/after/metadata included),
/// which is what verification hashes.
pub fn columns() -> Vec<&'static str> {
    let mut c = vec!["index", "time", "received_at"];
    c.extend(STRING_COLUMNS);
    c.extend(["correlation_id", "event"]);
    c
}

/// One record as a row.
pub struct Row {
    /// Leaf index.
    pub index: u64,
    /// Event time, Unix milliseconds.
    pub time_ms: i64,
    /// Receive time, Unix milliseconds.
    pub received_at_ms: i64,
    /// The [`STRING_COLUMNS`] values and then `correlation_id`.
    pub strings: Vec<Option<String>>,
    /// The stored record, unchanged.
    pub event: String,
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Row {
    /// The row of the stored record `bytes` at leaf `index`.
    pub fn new(index: u64, bytes: &[u8]) -> Result<Row, String> {
        let r = Record::parse(bytes).map_err(|e| format!("leaf {index}: {e}"))?;
        let event = String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("leaf {index}: the record is not UTF-8"))?;
        let resource = r.resource.as_ref();
        let strings = vec![
            Some(r.id.hyphenated().to_string()),
            Some(r.tenant.clone()),
            Some(r.key_id.clone()),
            Some(r.actor.id.clone()),
            r.actor.kind.map(|k| k.as_str().to_string()),
            r.actor.ip.map(|ip| ip.to_string()),
            r.actor.user_agent.clone(),
            r.actor.session_id.clone(),
            Some(r.action.clone()),
            r.category.clone(),
            resource.map(|x| x.kind.clone()),
            resource.and_then(|x| x.id.clone()),
            resource.and_then(|x| x.name.clone()),
            Some(r.outcome.as_str().to_string()),
            r.reason.clone(),
            r.request_id.clone(),
            r.trace_id.clone(),
            r.correlation_id.clone(),
        ];
        Ok(Row {
            index,
            time_ms: unix_ms(r.time),
            received_at_ms: unix_ms(r.received_at),
            strings,
            event,
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
        assert_eq!(columns().len(), 3 + STRING_COLUMNS.len() + 2);
    }
}
