//! The export stream: one JSON document per line, as `GET /v1/export` sends it and as a
//! `.jsonl` export file keeps it.
//!
//! ```text
//! {"tally_export":{…Header…}}
//! {"index":17,"event":{…the stored record, byte for byte…}}
//! {"index":18,"event":{…sealed record…},"shown":{…as the exporter saw it…},"keys":{"<key id>":"<event key>"}}
//! …
//! {"tally_export_end":{"rows":2,"proof":[{"start":0,"end":16,"hash":"base64"},…]}}
//! ```
//!
//! Version 2 ([`VIEWS_FORMAT_VERSION`]) adds the header's `view` (`clear` for a reader with
//! `read:pii`, `masked` otherwise) and, on the line of a record whose personal values are
//! sealed, `shown`: the record as the exporter saw it (values in the clear, masked as tokens,
//! or erased), and for a clear view `keys`: the event key of each subject key id whose values
//! are shown in the clear (unpadded base64url), which opens those values of that event only.
//! The verifier checks `shown` against `event` (`tally_privacy::record::check_shown`), so the
//! clear values of an export are as proven as the records hashed. Version 1 bundles (no view,
//! no `shown`) stay readable.
//!
//! A server that fails half-way sends `{"tally_export_error":{"message":"…"}}` instead of the
//! end line; a stream without an end line is incomplete and must not be trusted.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tally_tlog::{Hash, RangeHash};

/// Version of the bundle format without views: the records as stored, nothing else.
pub const FORMAT_VERSION: u32 = 1;
/// Version of the bundle format with a view and the records as shown (see the module docs).
pub const VIEWS_FORMAT_VERSION: u32 = 2;

/// What was exported, from which tree: the first line of a bundle.
///
/// Unknown fields are refused: a verifier must not pass over anything a reader of the file
/// might take for part of what was verified (a new field needs a new [`FORMAT_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The tenant whose log the records come from.
    pub tenant: String,
    /// The query the records match, in canonical form; empty for none.
    pub query: String,
    /// The leaf-index range `[from, to)` looked at. `to` never exceeds the checkpoint's size:
    /// an export covers what the checkpoint signs.
    pub range: IndexRange,
    /// True when nothing filtered the range (the query is empty): the bundle must then hold
    /// every record of it. Redundant with `query` on purpose, so that a reader of the header
    /// sees the claim; the verifier refuses a header where the two disagree.
    pub complete: bool,
    /// The signed checkpoint (C2SP signed note) every record is proven against.
    pub checkpoint: String,
    /// When the export started (RFC 3339, UTC).
    pub exported_at: String,
    /// Who asked for it (`api-key:<id>`).
    pub exported_by: String,
    /// How many rows the server expected when it started (for progress; the end line counts).
    /// For an unfiltered range it is the range's length, and the verifier holds it to that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_rows: Option<u64>,
    /// Version 2: how the exporter saw personal values, `clear` (`read:pii`) or `masked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
}

/// Leaf indexes `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRange {
    /// First leaf index.
    pub from: u64,
    /// One past the last.
    pub to: u64,
}

/// The last line of a bundle: the row count and the proof that binds every row to the
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// Records in the bundle.
    pub rows: u64,
    /// The multiproof of all the records' leaves (see `tally_tlog::multiproof`), in order.
    pub proof: Vec<ProofNode>,
}

/// One [`RangeHash`] of the proof, with its hash in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofNode {
    /// First leaf of the subtree.
    pub start: u64,
    /// One past its last leaf.
    pub end: u64,
    /// The subtree's hash, base64.
    pub hash: String,
}

impl From<&RangeHash> for ProofNode {
    fn from(r: &RangeHash) -> Self {
        ProofNode {
            start: r.start,
            end: r.end,
            hash: base64::engine::general_purpose::STANDARD.encode(r.hash),
        }
    }
}

impl ProofNode {
    /// The node as a [`RangeHash`]; `None` when the hash is not 32 bytes of base64.
    pub fn to_range_hash(&self) -> Option<RangeHash> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.hash)
            .ok()?;
        let hash: Hash = bytes.try_into().ok()?;
        Some(RangeHash {
            start: self.start,
            end: self.end,
            hash,
        })
    }
}

/// One line of the stream.
#[derive(Debug)]
pub enum Line<'a> {
    /// The first line.
    Header(Header),
    /// A record and its leaf index.
    Record {
        /// Leaf index.
        index: u64,
        /// The stored record, exactly as sent (and as hashed).
        event: &'a RawValue,
        /// Version 2: the record as the exporter saw it, when its values are sealed.
        shown: Option<&'a RawValue>,
        /// Version 2: the event keys disclosed for the values `shown` in the clear.
        keys: Option<&'a RawValue>,
    },
    /// The last line of a complete stream.
    End(End),
    /// The server gave up; the message says why.
    Error(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyLine<'a> {
    tally_export: Option<Header>,
    tally_export_end: Option<End>,
    tally_export_error: Option<ErrorLine>,
    index: Option<u64>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    shown: Option<&'a RawValue>,
    #[serde(borrow)]
    keys: Option<&'a RawValue>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorLine {
    message: String,
}

/// Why a line of an export bundle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not a JSON object of the bundle's line shapes.
    #[error("{0}")]
    Json(String),
    /// The line mixes kinds, or is of none.
    #[error("a line must be exactly one of a header, a record, an end or an error")]
    Kind,
    /// A record line without both `index` and `event`.
    #[error("a record line needs both \"index\" and \"event\"")]
    IncompleteRecord,
}

/// Parses one line (without its newline). A line is exactly one of the four kinds: a line
/// mixing them, or carrying fields of none, is refused rather than read one way here and
/// another way by some other reader of the file.
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    let any: AnyLine<'_> =
        serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let record =
        any.index.is_some() || any.event.is_some() || any.shown.is_some() || any.keys.is_some();
    let kinds = [
        any.tally_export.is_some(),
        any.tally_export_end.is_some(),
        any.tally_export_error.is_some(),
        record,
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(LineError::Kind);
    }
    match any {
        AnyLine {
            tally_export: Some(h),
            ..
        } => Ok(Line::Header(h)),
        AnyLine {
            tally_export_end: Some(e),
            ..
        } => Ok(Line::End(e)),
        AnyLine {
            tally_export_error: Some(e),
            ..
        } => Ok(Line::Error(e.message)),
        AnyLine {
            index: Some(index),
            event: Some(event),
            shown,
            keys,
            ..
        } => Ok(Line::Record {
            index,
            event,
            shown,
            keys,
        }),
        _ => Err(LineError::IncompleteRecord),
    }
}

/// The header line, newline included.
pub fn header_line(header: &Header) -> Vec<u8> {
    let mut out = serde_json::to_vec(&serde_json::json!({ "tally_export": header }))
        .expect("a header always serializes");
    out.push(b'\n');
    out
}

/// Appends the line of the record at `index`. `record` is a stored record: compact JSON
/// without newlines, copied unchanged so that its leaf hash can be recomputed from the line.
pub fn push_record_line(out: &mut Vec<u8>, index: u64, record: &[u8]) {
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b"}\n");
}

/// Appends the line of a sealed record at `index` with the record as shown to the exporter and,
/// for a clear view, the disclosed event keys (a JSON object). `shown` and `keys` are compact
/// JSON, as `record` is.
pub fn push_shown_record_line(
    out: &mut Vec<u8>,
    index: u64,
    record: &[u8],
    shown: &[u8],
    keys: Option<&str>,
) {
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b",\"shown\":");
    out.extend_from_slice(shown);
    if let Some(keys) = keys {
        out.extend_from_slice(b",\"keys\":");
        out.extend_from_slice(keys.as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

/// The end line, newline included.
pub fn end_line(end: &End) -> Vec<u8> {
    let mut out = serde_json::to_vec(&serde_json::json!({ "tally_export_end": end }))
        .expect("an end line always serializes");
    out.push(b'\n');
    out
}

/// The error line, newline included.
pub fn error_line(message: &str) -> Vec<u8> {
    let mut out = serde_json::to_vec(&serde_json::json!({
        "tally_export_error": ErrorLine { message: message.to_string() }
    }))
    .expect("an error line always serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let header = Header {
            version: FORMAT_VERSION,
            tenant: "acme".into(),
            query: "actor:alice".into(),
            range: IndexRange { from: 0, to: 9 },
            complete: false,
            checkpoint: "log/acme\n9\nAAAA\n\n— log sig\n".into(),
            exported_at: "2026-01-01T00:00:00Z".into(),
            exported_by: "api-key:k1".into(),
            expected_rows: Some(2),
            view: None,
        };
        let line = header_line(&header);
        match parse_line(std::str::from_utf8(&line).unwrap().trim_end()).unwrap() {
            Line::Header(h) => assert_eq!(h, header),
            other => panic!("{other:?}"),
        }
        let record = br#"{"id":"x","metadata":{"index":1,"event":"y"}}"#;
        let mut out = Vec::new();
        push_record_line(&mut out, 7, record);
        match parse_line(std::str::from_utf8(&out).unwrap().trim_end()).unwrap() {
            Line::Record { index, event, .. } => {
                assert_eq!(index, 7);
                assert_eq!(event.get().as_bytes(), record);
            }
            other => panic!("{other:?}"),
        }
        let end = End {
            rows: 1,
            proof: vec![ProofNode::from(&RangeHash {
                start: 0,
                end: 4,
                hash: [7; 32],
            })],
        };
        match parse_line(std::str::from_utf8(&end_line(&end)).unwrap().trim_end()).unwrap() {
            Line::End(e) => {
                assert_eq!(e.proof[0].to_range_hash().unwrap().hash, [7; 32]);
                assert_eq!(e, end);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_line(std::str::from_utf8(&error_line("disk")).unwrap().trim_end()),
            Ok(Line::Error(m)) if m == "disk"
        ));
        assert!(parse_line("{}").is_err());
        assert!(parse_line(r#"{"index":1}"#).is_err());
        assert!(parse_line(r#"{"index":1,"event":{},"note":"x"}"#).is_err());
        assert!(
            parse_line(r#"{"index":1,"event":{},"tally_export_error":{"message":"m"}}"#).is_err()
        );
        assert!(parse_line("not json").is_err());
    }
}
