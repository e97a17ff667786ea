//! The export mutation suite: for every file format (JSON Lines, CSV + proof sidecar,
//! Parquet), every header field altered, rows dropped, duplicated, reordered or re-indexed,
//! record bytes and flat columns edited, proof hashes altered, files cut short or padded, and
//! metadata added that readers act on. Each altered file must be refused with a message that
//! names the problem; the unaltered ones must verify.
//!
//! Mutations come in two kinds: rewrites of the bundle's parts (written back through
//! `ExportFile`, as someone with the exporter's code would, with the proof recomputed where
//! that helps the forger) and edits of the file's bytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::json;
use tally_export::file::{PARQUET_END_KEY, PARQUET_HEADER_KEY};
use tally_export::{
    csv_sidecar, verify_file, End, ExportFile, Format, Header, IndexRange, ProofNode,
    FORMAT_VERSION,
};
use tally_tlog::{leaf_hash, multi_inclusion_proof, Checkpoint, MemoryTree, NoteSigner};

const ORIGIN: &str = "tally.test/log/acme";
const SIZE: u64 = 40;

fn record(i: u64, tenant: &str) -> Vec<u8> {
    let input = serde_json::from_value(json!({
        "time": "2026-03-01T10:00:00.000Z",
        "actor": {"id": if i.is_multiple_of(3) { "alice" } else { "bob" }, "type": "user", "ip": "203.0.113.7"},
        "action": "user.update",
        "resource": {"type": "USER", "id": format!("u-{i}")},
        "outcome": "SUCCESS",
        "before": {"email": format!("old{i}@example.com")},
    }))
    .unwrap();
    let ctx = tally_event::IngestContext {
        received_at: time::macros::datetime!(2026-03-01 10:00:01 UTC),
        key_id: "k1",
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::minutes(5),
    };
    tally_event::validate(input, &ctx).unwrap().record
}

struct Log {
    records: Vec<Vec<u8>>,
    tree: MemoryTree,
    signer: NoteSigner,
}

impl Log {
    fn new() -> Log {
        let records: Vec<Vec<u8>> = (0..SIZE).map(|i| record(i, "acme")).collect();
        let mut tree = MemoryTree::new();
        for r in &records {
            tree.push(leaf_hash(r));
        }
        Log {
            records,
            tree,
            signer: NoteSigner::from_seed(ORIGIN, [9; 32]).unwrap(),
        }
    }

    fn note(&self, origin: &str, size: u64) -> String {
        let cp = Checkpoint {
            origin: origin.into(),
            size,
            root: tally_tlog::root_hash(size, &self.tree).unwrap(),
            extensions: vec![],
        };
        self.signer.sign(&cp.to_body()).unwrap()
    }

    fn proof(&self, indexes: &[u64]) -> Vec<ProofNode> {
        multi_inclusion_proof(indexes, SIZE, &self.tree)
            .unwrap()
            .iter()
            .map(ProofNode::from)
            .collect()
    }

    /// The parts of an honest export: unfiltered `[from, to)`, or the rows of `[0, SIZE)`
    /// matching `actor:alice`.
    fn parts(&self, filtered: bool) -> Parts {
        let (query, indexes, range) = if filtered {
            (
                "actor:alice",
                (0..SIZE)
                    .filter(|i| i.is_multiple_of(3))
                    .collect::<Vec<_>>(),
                IndexRange { from: 0, to: SIZE },
            )
        } else {
            ("", (5..35).collect(), IndexRange { from: 5, to: 35 })
        };
        Parts {
            header: Header {
                version: FORMAT_VERSION,
                tenant: "acme".into(),
                query: query.into(),
                range,
                complete: !filtered,
                checkpoint: self.note(ORIGIN, SIZE),
                exported_at: "2026-03-02T00:00:00Z".into(),
                exported_by: "api-key:k1".into(),
                expected_rows: Some(if filtered { 14 } else { 30 }),
                view: None,
            },
            rows: indexes
                .iter()
                .map(|&i| (i, self.records[i as usize].clone()))
                .collect(),
            end: End {
                rows: indexes.len() as u64,
                proof: self.proof(&indexes),
            },
        }
    }
}

/// A bundle taken apart, to be altered and written back.
#[derive(Clone)]
struct Parts {
    header: Header,
    rows: Vec<(u64, Vec<u8>)>,
    end: End,
}

impl Parts {
    fn write(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        let mut file =
            ExportFile::create(path, Format::from_path(path).unwrap(), &self.header).unwrap();
        for (i, r) in &self.rows {
            file.record(*i, r).unwrap();
        }
        file.finish(&self.end).unwrap();
    }

    /// Recomputes the end line for the rows as they now are: what a forger does after
    /// dropping rows, so that only the completeness rule can catch it.
    fn reprove(&mut self, log: &Log) {
        let indexes: Vec<u64> = self.rows.iter().map(|(i, _)| *i).collect();
        self.end = End {
            rows: indexes.len() as u64,
            proof: log.proof(&indexes),
        };
    }
}

type PartsMutation = (&'static str, bool, fn(&Log, &mut Parts), &'static str);

/// Every rewrite of the parts: (name, start from the filtered export?, mutation, expected
/// text of the error).
fn parts_mutations() -> Vec<PartsMutation> {
    vec![
        (
            "version",
            false,
            |_, p| p.header.version = 3,
            "bundle version 3",
        ),
        (
            "version 2 without a view",
            false,
            |_, p| p.header.version = 2,
            "header field view",
        ),
        (
            "a view in a version 1 bundle",
            false,
            |_, p| p.header.view = Some("clear".into()),
            "header field view",
        ),
        (
            "tenant renamed",
            false,
            |_, p| p.header.tenant = "other".into(),
            "the checkpoint is for",
        ),
        (
            "tenant not a tenant name",
            false,
            |_, p| p.header.tenant = "Acme Corp".into(),
            "header field tenant",
        ),
        (
            "unfiltered range claims to be incomplete, a row dropped, proof recomputed",
            false,
            |log, p| {
                p.header.complete = false;
                p.rows.remove(7);
                p.reprove(log);
            },
            "header field complete",
        ),
        (
            "unfiltered range claims to be incomplete",
            false,
            |_, p| p.header.complete = false,
            "header field complete",
        ),
        (
            "filtered export claims to be complete",
            true,
            |_, p| p.header.complete = true,
            "header field complete",
        ),
        (
            "filtered export's query emptied, a row dropped, proof recomputed",
            true,
            |log, p| {
                p.header.query = String::new();
                p.rows.remove(2);
                p.reprove(log);
            },
            "header field complete",
        ),
        (
            "query emptied and marked complete over a filtered export",
            true,
            |_, p| {
                p.header.query = String::new();
                p.header.complete = true;
                p.header.expected_rows = Some(SIZE);
            },
            "claims to be complete for [0, 40) but holds 14 of its 40",
        ),
        (
            "query of only whitespace (an empty query in disguise), a row dropped",
            false,
            |log, p| {
                p.header.query = " ".into();
                p.header.complete = false;
                p.rows.remove(4);
                p.reprove(log);
            },
            "header field complete",
        ),
        (
            "query that does not parse",
            true,
            |_, p| p.header.query = "actor:".into(),
            "header field query",
        ),
        (
            "range end beyond the checkpoint",
            false,
            |_, p| p.header.range.to = SIZE + 1,
            "is not inside the checkpoint's tree",
        ),
        (
            "range start after its end",
            false,
            |_, p| p.header.range.from = 36,
            "is not inside the checkpoint's tree",
        ),
        (
            "range narrowed under the rows",
            false,
            |_, p| {
                p.header.range.from = 6;
                p.header.expected_rows = Some(29);
            },
            "row 1 (leaf index 5): outside the exported range [6, 35)",
        ),
        (
            "range widened over the rows",
            false,
            |_, p| {
                p.header.range.to = 36;
                p.header.expected_rows = Some(31);
            },
            "holds 30 of its 31 records",
        ),
        (
            "expected_rows of an unfiltered range",
            false,
            |_, p| p.header.expected_rows = Some(29),
            "header field expected_rows",
        ),
        (
            "checkpoint signature byte",
            false,
            |_, p| {
                let at = p.header.checkpoint.len() - 5;
                let mut b = p.header.checkpoint.clone().into_bytes();
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                p.header.checkpoint = String::from_utf8(b).unwrap();
            },
            "does not verify with this log key",
        ),
        (
            "checkpoint of another tenant",
            false,
            |log, p| p.header.checkpoint = log.note("tally.test/log/other", SIZE),
            "the checkpoint is for \"tally.test/log/other\"",
        ),
        (
            "an older checkpoint",
            false,
            |log, p| p.header.checkpoint = log.note(ORIGIN, 30),
            "is not inside the checkpoint's tree of 30 records",
        ),
        (
            "row dropped, end left alone",
            false,
            |_, p| {
                p.rows.remove(3);
            },
            "says 30 rows but holds 29",
        ),
        (
            "row dropped, row count fixed, proof left alone",
            false,
            |_, p| {
                p.rows.remove(3);
                p.end.rows = 29;
            },
            "claims to be complete",
        ),
        (
            "row dropped from a filtered export, row count fixed",
            true,
            |_, p| {
                p.rows.remove(3);
                p.end.rows -= 1;
            },
            "not all in the signed tree",
        ),
        (
            "row duplicated",
            false,
            |_, p| {
                let r = p.rows[4].clone();
                p.rows.insert(5, r);
            },
            "row 6 (leaf index 9): leaf indexes must increase",
        ),
        (
            "rows swapped",
            true,
            |_, p| p.rows.swap(1, 2),
            "row 3 (leaf index 3): leaf indexes must increase",
        ),
        (
            "a row's index changed",
            true,
            |_, p| p.rows[1].0 = 4,
            "not all in the signed tree",
        ),
        (
            "a record's bytes changed",
            false,
            |_, p| {
                let r = String::from_utf8(p.rows[2].1.clone()).unwrap();
                p.rows[2].1 = r.replace("old7@", "old8@").into_bytes();
            },
            "not all in the signed tree",
        ),
        (
            "another tenant's record",
            true,
            |_, p| p.rows[0].1 = record(0, "other"),
            "a record of tenant \"other\"",
        ),
        (
            "end row count",
            false,
            |_, p| p.end.rows += 1,
            "says 31 rows but holds 30",
        ),
        (
            "a proof hash",
            false,
            |_, p| {
                let h = &mut p.end.proof[0].hash;
                let first = if h.starts_with('A') { "B" } else { "A" };
                h.replace_range(0..1, first);
            },
            "not all in the signed tree",
        ),
        (
            "a proof hash that is not base64",
            true,
            |_, p| p.end.proof[0].hash = "!!".into(),
            "not 32 bytes of base64",
        ),
        (
            "a proof node dropped",
            true,
            |_, p| {
                p.end.proof.pop();
            },
            "not all in the signed tree",
        ),
        (
            "a proof node added",
            true,
            |_, p| {
                let n = p.end.proof[0].clone();
                p.end.proof.push(n);
            },
            "not all in the signed tree",
        ),
        (
            "a proof node's range moved",
            false,
            |_, p| p.end.proof[0].end += 1,
            "not all in the signed tree",
        ),
    ]
}

fn formats() -> [&'static str; 3] {
    ["jsonl", "csv", "parquet"]
}

#[test]
fn issue_7_unfiltered_export_cannot_drop_a_row_by_clearing_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let key = log.signer.verifier();
    for ext in formats() {
        let path = dir.path().join(format!("range.{ext}"));
        let mut parts = log.parts(false);
        parts.header.complete = false;
        parts.rows.remove(10);
        parts.reprove(&log);
        parts.write(&path);
        let e = verify_file(&path, &key, |_| {})
            .expect_err("an unfiltered range with a row missing verified");
        assert!(
            e.to_string()
                .contains("an unfiltered range must hold every one"),
            "{ext}: {e}"
        );
    }
}

#[test]
fn every_rewrite_of_the_parts_is_refused_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let key = log.signer.verifier();
    for ext in formats() {
        for filtered in [false, true] {
            let path = dir.path().join(format!("honest-{filtered}.{ext}"));
            log.parts(filtered).write(&path);
            let v = verify_file(&path, &key, |_| {}).unwrap_or_else(|e| panic!("{ext}: {e}"));
            assert_eq!(v.complete, !filtered, "{ext}");
        }
        for (name, filtered, mutate, expected) in parts_mutations() {
            let mut parts = log.parts(filtered);
            mutate(&log, &mut parts);
            let path = dir.path().join(format!("m.{ext}"));
            parts.write(&path);
            match verify_file(&path, &key, |_| {}) {
                Ok(v) => panic!("{ext}: {name}: verified: {v:?}"),
                Err(e) => assert!(
                    e.to_string().contains(expected),
                    "{ext}: {name}: expected {expected:?} in {e}"
                ),
            }
        }
    }
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

fn refused(path: &Path, key: &tally_tlog::NoteVerifier, what: &str, expected: &str) {
    match verify_file(path, key, |_| {}) {
        Ok(v) => panic!("{what}: verified: {v:?}"),
        Err(e) => assert!(
            e.to_string().contains(expected),
            "{what}: expected {expected:?} in {e}"
        ),
    }
}

/// Writes an honest export of `ext` and returns its path.
fn honest(dir: &Path, log: &Log, name: &str, filtered: bool) -> PathBuf {
    let path = dir.join(name);
    log.parts(filtered).write(&path);
    path
}

#[test]
fn byte_edits_of_json_lines_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let key = log.signer.verifier();
    let d = dir.path();
    type Edit = (&'static str, fn(String) -> String, &'static str);
    let edits: [Edit; 9] = [
        (
            "a record's bytes",
            |t| t.replacen("old7@", "old8@", 1),
            "not all in the signed tree",
        ),
        (
            "a line appended after the end",
            |t| {
                let first_record = t.lines().nth(1).unwrap().to_string();
                format!("{t}{first_record}\n")
            },
            "data after the end line",
        ),
        (
            "an unknown header field",
            |t| {
                t.replacen(
                    "{\"tally_export\":{",
                    "{\"tally_export\":{\"note\":\"ok\",",
                    1,
                )
            },
            "unknown field",
        ),
        (
            "a record line with an extra field",
            |t| t.replacen("{\"index\":6,", "{\"note\":\"x\",\"index\":6,", 1),
            "unknown field",
        ),
        (
            "a record line that is also an end line",
            |t| {
                t.replacen(
                    "{\"index\":6,",
                    "{\"tally_export_end\":{\"rows\":0,\"proof\":[]},\"index\":6,",
                    1,
                )
            },
            "exactly one of",
        ),
        (
            "cut in the middle of a line",
            |t| t[..t.find("{\"index\":20,").unwrap() + 30].to_string(),
            "line 17",
        ),
        (
            "cut at a line boundary",
            |t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[..lines.len() / 2]
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect()
            },
            "cut short",
        ),
        (
            "the header line removed",
            |t| t.lines().skip(1).map(|l| format!("{l}\n")).collect(),
            "the first line must be the export header",
        ),
        ("emptied", |_| String::new(), "the file is empty"),
    ];
    for (what, f, expected) in edits {
        let path = honest(d, &log, "e.jsonl", false);
        edit(&path, f);
        refused(&path, &key, what, expected);
    }
}

#[test]
fn byte_edits_of_csv_files_and_sidecars_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let key = log.signer.verifier();
    let d = dir.path();
    type Edit = (&'static str, fn(String) -> String, &'static str);
    let csv_edits: [Edit; 8] = [
        (
            "a flat column",
            |t| t.replacen(",alice,", ",mallory,", 1),
            "column actor.id does not match",
        ),
        (
            "the flat index column",
            |t| t.replacen("\n6,", "\n+6,", 1),
            "column index does not match",
        ),
        (
            "a record's bytes",
            |t| t.replacen("old7@", "old8@", 1),
            "not all in the signed tree",
        ),
        (
            "an extra column",
            |t| {
                t.lines()
                    .enumerate()
                    .map(|(i, l)| format!("{l},{}\n", if i == 0 { "note" } else { "ok" }))
                    .collect()
            },
            "the header row must be exactly",
        ),
        (
            "a column renamed",
            |t| t.replacen("actor.id", "actor.name", 1),
            "the header row must be exactly",
        ),
        (
            "a row duplicated",
            |t| {
                let lines: Vec<&str> = t.lines().collect();
                let mut out: Vec<&str> = lines[..3].to_vec();
                out.extend(&lines[2..]);
                out.iter().map(|l| format!("{l}\n")).collect()
            },
            "leaf indexes must increase",
        ),
        (
            "the last rows cut off",
            |t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[..20].iter().map(|l| format!("{l}\n")).collect()
            },
            "says 30 rows but holds 19",
        ),
        (
            "cut in the middle of a row",
            |t| {
                let at = t.find("\n20,").unwrap() + 40;
                t[..at].to_string()
            },
            "found record with",
        ),
    ];
    for (what, f, expected) in csv_edits {
        let path = honest(d, &log, "e.csv", false);
        edit(&path, f);
        refused(&path, &key, what, expected);
    }
    let sidecar_edits: [Edit; 3] = [
        (
            "an unknown header field in the sidecar",
            |t| t.replacen("\"tally_export\": {", "\"tally_export\": {\"note\": 1,", 1),
            "unknown field",
        ),
        (
            "an unknown top-level field in the sidecar",
            |t| t.replacen('{', "{\"note\": 1,", 1),
            "unknown field",
        ),
        (
            "the sidecar cut short",
            |t| t[..t.len() / 2].to_string(),
            "proof.json",
        ),
    ];
    for (what, f, expected) in sidecar_edits {
        let path = honest(d, &log, "e.csv", true);
        edit(&csv_sidecar(&path), f);
        refused(&path, &key, what, expected);
    }
    let path = honest(d, &log, "e.csv", false);
    std::fs::remove_file(csv_sidecar(&path)).unwrap();
    refused(&path, &key, "the sidecar removed", "keep the two together");
}

/// Reads a Parquet export back and writes it again after `f` changed its batches or
/// key-value metadata; `statistics` writes the column statistics Tally leaves out.
fn rewrite_parquet(
    path: &Path,
    statistics: bool,
    f: impl FnOnce(&mut Vec<RecordBatch>, &mut Vec<KeyValue>),
) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let mut kv: Vec<KeyValue> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|k| k.key != "ARROW:schema")
        .cloned()
        .collect();
    // Without the schema-level metadata the reader attaches, which the writer would copy.
    let schema = Arc::new(arrow_schema::Schema::new(builder.schema().fields().clone()));
    let mut batches: Vec<RecordBatch> = builder
        .build()
        .unwrap()
        .map(|b| RecordBatch::try_new(schema.clone(), b.unwrap().columns().to_vec()).unwrap())
        .collect();
    f(&mut batches, &mut kv);
    let mut props = WriterProperties::builder().set_key_value_metadata(Some(kv));
    if !statistics {
        props = props
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
            .set_offset_index_disabled(true);
    }
    let schema = batches[0].schema();
    let mut w =
        ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props.build())).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// `batch` with string column `name` replaced by `f` of its values.
fn map_strings(
    batch: &RecordBatch,
    name: &str,
    f: impl Fn(usize, Option<&str>) -> Option<String>,
) -> RecordBatch {
    let i = batch.schema().index_of(name).unwrap();
    let old = batch
        .column(i)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let new: StringArray = (0..old.len())
        .map(|r| f(r, (!old.is_null(r)).then(|| old.value(r))))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[i] = Arc::new(new);
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn edits_of_parquet_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new();
    let key = log.signer.verifier();
    let d = dir.path();

    // An untouched rewrite verifies: the refusals below are the edits', not the rewrite's.
    let path = honest(d, &log, "e.parquet", false);
    rewrite_parquet(&path, false, |_, _| {});
    verify_file(&path, &key, |_| {}).unwrap();

    type Edit = (
        &'static str,
        bool,
        fn(&mut Vec<RecordBatch>, &mut Vec<KeyValue>),
        &'static str,
    );
    let edits: [Edit; 10] = [
        (
            "a flat column",
            false,
            |b, _| {
                b[0] = map_strings(&b[0], "actor.id", |r, v| {
                    if r == 1 {
                        Some("mallory".into())
                    } else {
                        v.map(str::to_string)
                    }
                })
            },
            "column actor.id does not match",
        ),
        (
            "a flat column emptied",
            false,
            |b, _| {
                b[0] = map_strings(&b[0], "resource.id", |r, v| {
                    if r == 1 {
                        None
                    } else {
                        v.map(str::to_string)
                    }
                })
            },
            "column resource.id does not match",
        ),
        (
            "a record's bytes",
            false,
            |b, _| {
                b[0] = map_strings(&b[0], "event", |_, v| {
                    v.map(|s| s.replace("old7@", "old8@"))
                })
            },
            "not all in the signed tree",
        ),
        (
            "rows dropped",
            false,
            |b, _| b[0] = b[0].slice(0, 20),
            "says 30 rows but holds 20",
        ),
        (
            "an extra column",
            false,
            |b, _| {
                let mut fields: Vec<arrow_schema::Field> = b[0]
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields.push(arrow_schema::Field::new(
                    "note",
                    arrow_schema::DataType::Utf8,
                    true,
                ));
                let mut columns = b[0].columns().to_vec();
                columns.push(Arc::new(StringArray::from(vec![
                    Some("ok");
                    b[0].num_rows()
                ])));
                b[0] = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
                    .unwrap();
            },
            "the columns must be exactly",
        ),
        ("statistics added", true, |_, _| {}, "carries statistics"),
        (
            "an unknown metadata key",
            false,
            |_, kv| {
                kv.push(KeyValue::new(
                    "tally.export.note".into(),
                    "verified".to_string(),
                ))
            },
            "is not part of a Tally export",
        ),
        (
            "the header key twice",
            false,
            |_, kv| {
                let h = kv
                    .iter()
                    .find(|k| k.key == PARQUET_HEADER_KEY)
                    .unwrap()
                    .clone();
                kv.insert(0, h);
            },
            "appears twice",
        ),
        (
            "the end metadata removed",
            false,
            |_, kv| kv.retain(|k| k.key != PARQUET_END_KEY),
            "cut short",
        ),
        (
            "the header marked incomplete",
            false,
            |_, kv| {
                for k in kv.iter_mut().filter(|k| k.key == PARQUET_HEADER_KEY) {
                    k.value = k
                        .value
                        .as_ref()
                        .map(|v| v.replace("\"complete\":true", "\"complete\":false"));
                }
            },
            "header field complete",
        ),
    ];
    for (what, statistics, f, expected) in edits {
        let path = honest(d, &log, "e.parquet", false);
        rewrite_parquet(&path, statistics, f);
        refused(&path, &key, what, expected);
    }

    let path = honest(d, &log, "cut.parquet", false);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 8] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        refused(&path, &key, &format!("cut to {cut} bytes"), "cut.parquet");
    }
}
