//! Export files written by an earlier exporter must still verify, and the exporter must still
//! write them byte for byte: a file handed to an auditor today is checked with whatever
//! `tally verify` exists next year, and the flat columns are derived (from the schema registry,
//! `tally_event::fields`) rather than written out, so a change there must not move a column.
//!
//! The fixtures in `tests/fixtures/` were written by the exporter as it was before the
//! registry, by this file's `write_fixtures` (run it again with
//! `TALLY_WRITE_FIXTURES=1 cargo test -p tally-export --test compat -- --ignored`, and commit
//! the files only if a format change is intended).

use std::path::{Path, PathBuf};

use serde_json::json;
use tally_export::{
    csv_sidecar, verify_file, End, ExportFile, Format, Header, IndexRange, ProofNode,
    FORMAT_VERSION,
};
use tally_tlog::{leaf_hash, multi_inclusion_proof, Checkpoint, MemoryTree, NoteSigner};

const ORIGIN: &str = "tally.test/log/acme";
const FORMATS: [&str; 3] = ["jsonl", "csv", "parquet"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Records that fill every flat column, leave every optional one empty, or hold what a
/// spreadsheet or a CSV reader could misread.
fn records() -> Vec<Vec<u8>> {
    let events = [
        json!({
            "id": "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f",
            "time": "2026-03-01T10:00:00.125+01:00",
            "actor": {"id": "alice", "type": "user", "ip": "203.0.113.7",
                      "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "session_id": "sess-1"},
            "action": "user.update",
            "category": "UPDATE",
            "resource": {"type": "USER", "id": "u-1", "name": "Alice Liddell"},
            "outcome": "SUCCESS",
            "reason": "profile edit,\n\"quoted\"",
            "request_id": "req-1",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "correlation_id": "corr-1",
            "before": {"email": "old@example.com"},
            "after": {"email": "new@example.com"},
            "metadata": {"n": 1},
        }),
        json!({
            "id": "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8ea0",
            "time": "2026-03-01T10:00:01Z",
            "actor": {"id": "=cmd|' /C calc'!A0"},
            "action": "user.login",
            "outcome": "FAILURE",
        }),
        json!({
            "id": "0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8ea1",
            "time": "2026-03-01T10:00:02Z",
            "actor": {"id": "svc-billing", "type": "service", "ip": "2001:db8::1"},
            "action": "payment.capture",
            "resource": {"type": "PAYMENT"},
            "outcome": "DENIED",
            "correlation_id": "-1+2",
        }),
    ];
    let ctx = tally_event::IngestContext {
        received_at: time::macros::datetime!(2026-03-01 10:00:05 UTC),
        key_id: "k1",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::minutes(5),
    };
    events
        .into_iter()
        .map(|e| {
            let input = serde_json::from_value(e).unwrap();
            tally_event::validate(input, &ctx).unwrap().record
        })
        .collect()
}

/// Writes the fixture export of every record in `format` into `dir`.
fn export(dir: &Path, ext: &str) -> PathBuf {
    let records = records();
    let mut tree = MemoryTree::new();
    for r in &records {
        tree.push(leaf_hash(r));
    }
    let signer = NoteSigner::from_seed(ORIGIN, [9; 32]).unwrap();
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    };
    let size = tree.size();
    let header = Header {
        version: FORMAT_VERSION,
        tenant: "acme".into(),
        query: String::new(),
        range: IndexRange { from: 0, to: size },
        complete: true,
        checkpoint: signer.sign(&checkpoint.to_body()).unwrap(),
        exported_at: "2026-03-02T00:00:00Z".into(),
        exported_by: "api-key:k1".into(),
        expected_rows: Some(size),
        view: None,
    };
    let path = dir.join(format!("export-v1.{ext}"));
    let mut file = ExportFile::create(&path, Format::from_path(&path).unwrap(), &header).unwrap();
    for (i, r) in records.iter().enumerate() {
        file.record(i as u64, r).unwrap();
    }
    let indexes: Vec<u64> = (0..size).collect();
    let proof = multi_inclusion_proof(&indexes, size, &tree).unwrap();
    file.finish(&End {
        rows: size,
        proof: proof.iter().map(ProofNode::from).collect(),
    })
    .unwrap();
    path
}

/// The files a fixture export consists of (a CSV's proof sits beside it).
fn parts(path: &Path) -> Vec<PathBuf> {
    let mut parts = vec![path.to_path_buf()];
    if path.extension().is_some_and(|e| e == "csv") {
        parts.push(csv_sidecar(path));
    }
    parts
}

#[test]
fn exports_written_before_the_schema_registry_still_verify() {
    let key = NoteSigner::from_seed(ORIGIN, [9; 32]).unwrap().verifier();
    for ext in FORMATS {
        let path = fixtures().join(format!("export-v1.{ext}"));
        let v = verify_file(&path, &key, |_| {}).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!((v.rows, v.size, v.complete), (3, 3, true), "{ext}");
    }
}

#[test]
fn the_exporter_still_writes_the_fixtures_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for ext in FORMATS {
        let written = export(dir.path(), ext);
        for part in parts(&written) {
            let name = part.file_name().unwrap();
            let fixture = std::fs::read(fixtures().join(name)).unwrap();
            assert!(
                std::fs::read(&part).unwrap() == fixture,
                "{} differs from the committed fixture",
                name.to_string_lossy()
            );
        }
    }
}

/// Rewrites the fixtures; only with `TALLY_WRITE_FIXTURES=1`, so that a stray `--ignored` run
/// cannot quietly bless a format change.
#[test]
#[ignore = "writes tests/fixtures; run with TALLY_WRITE_FIXTURES=1 when a format change is intended"]
fn write_fixtures() {
    if std::env::var_os("TALLY_WRITE_FIXTURES").is_none() {
        return;
    }
    std::fs::create_dir_all(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for ext in FORMATS {
        for part in parts(&export(dir.path(), ext)) {
            std::fs::copy(&part, fixtures().join(part.file_name().unwrap())).unwrap();
        }
    }
}
