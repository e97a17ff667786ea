//! Export files end to end without a server: real records in a real tree, a signed
//! checkpoint, every format written and verified, and every kind of tampering refused.

use std::path::{Path, PathBuf};

use serde_json::json;
use tally_export::{
    csv_sidecar, verify_file, BundleError, End, ExportFile, Format, Header, IndexRange, ProofNode,
    FORMAT_VERSION,
};
use tally_tlog::{leaf_hash, multi_inclusion_proof, Checkpoint, MemoryTree, NoteSigner};

const ORIGIN: &str = "tally.test/log/acme";

struct Log {
    records: Vec<Vec<u8>>,
    tree: MemoryTree,
    signer: NoteSigner,
}

fn record(i: u64) -> Vec<u8> {
    let input = serde_json::from_value(json!({
        "time": "2026-03-01T10:00:00.000Z",
        "actor": {"id": if i.is_multiple_of(3) { "alice" } else { "=cmd|' /C calc'!A0" }, "type": "user", "ip": "203.0.113.7"},
        "action": "user.update",
        "resource": {"type": "USER", "id": format!("u-{i}")},
        "outcome": "SUCCESS",
        "before": {"email": format!("old{i}@example.com"), "note": "comma, \"quote\"\nnewline"},
        "metadata": {"n": i},
    }))
    .unwrap();
    let ctx = tally_event::IngestContext {
        received_at: time::macros::datetime!(2026-03-01 10:00:01 UTC),
        key_id: "k1",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::minutes(5),
    };
    tally_event::validate(input, &ctx).unwrap().record
}

fn log(n: u64) -> Log {
    let mut tree = MemoryTree::new();
    let records: Vec<Vec<u8>> = (0..n).map(record).collect();
    for r in &records {
        tree.push(leaf_hash(r));
    }
    Log {
        records,
        tree,
        signer: NoteSigner::from_seed(ORIGIN, [9; 32]).unwrap(),
    }
}

impl Log {
    fn note(&self) -> String {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: self.tree.size(),
            root: self.tree.root(),
            extensions: vec![],
        };
        self.signer.sign(&cp.to_body()).unwrap()
    }

    /// Writes an export of `indexes` and returns its path.
    fn export(
        &self,
        dir: &Path,
        name: &str,
        indexes: &[u64],
        range: IndexRange,
        complete: bool,
    ) -> PathBuf {
        let path = dir.join(name);
        let header = Header {
            version: FORMAT_VERSION,
            tenant: "acme".into(),
            query: if complete {
                String::new()
            } else {
                "actor:alice".into()
            },
            range,
            complete,
            checkpoint: self.note(),
            exported_at: "2026-03-02T00:00:00Z".into(),
            exported_by: "api-key:k1".into(),
            expected_rows: Some(indexes.len() as u64),
            view: None,
        };
        let format = Format::from_path(&path).unwrap();
        let mut file = ExportFile::create(&path, format, &header).unwrap();
        for &i in indexes {
            file.record(i, &self.records[i as usize]).unwrap();
        }
        let proof = multi_inclusion_proof(indexes, self.tree.size(), &self.tree).unwrap();
        assert!(!path.exists(), "nothing appears before finish");
        file.finish(&End {
            rows: indexes.len() as u64,
            proof: proof.iter().map(ProofNode::from).collect(),
        })
        .unwrap();
        path
    }
}

const FORMATS: [&str; 3] = ["jsonl", "csv", "parquet"];

#[test]
fn every_format_verifies_filtered_and_complete_exports() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(100);
    let key = log.signer.verifier();
    let alice: Vec<u64> = (0..100u64).filter(|i| i.is_multiple_of(3)).collect();
    for ext in FORMATS {
        let path = log.export(
            dir.path(),
            &format!("alice.{ext}"),
            &alice,
            IndexRange { from: 0, to: 100 },
            false,
        );
        let v = verify_file(&path, &key, |_| {}).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!((v.rows, v.size, v.complete), (34, 100, false), "{ext}");

        let range: Vec<u64> = (20..70).collect();
        let path = log.export(
            dir.path(),
            &format!("range.{ext}"),
            &range,
            IndexRange { from: 20, to: 70 },
            true,
        );
        let v = verify_file(&path, &key, |_| {}).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(
            (v.rows, v.complete, v.range),
            (50, true, IndexRange { from: 20, to: 70 }),
            "{ext}"
        );
    }
}

#[test]
fn csv_defuses_formulas_but_keeps_the_record_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(3);
    let path = log.export(
        dir.path(),
        "all.csv",
        &[0, 1, 2],
        IndexRange { from: 0, to: 3 },
        true,
    );
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let actor = headers.iter().position(|h| h == "actor.id").unwrap();
    let event = headers.iter().position(|h| h == "event").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(&rows[0][actor], "alice");
    assert_eq!(&rows[1][actor], "'=cmd|' /C calc'!A0");
    assert_eq!(rows[1][event].as_bytes(), &log.records[1][..]);
}

/// Rewrites a text export with `edit` applied to its content.
fn edit_text(path: &Path, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, edit(text)).unwrap();
}

#[test]
fn tampering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(40);
    let key = log.signer.verifier();
    let all: Vec<u64> = (0..40).collect();
    let full = IndexRange { from: 0, to: 40 };

    // A changed byte inside a record.
    for ext in ["jsonl", "csv"] {
        let path = log.export(dir.path(), &format!("changed.{ext}"), &all, full, true);
        edit_text(&path, |t| {
            t.replacen("old7@example.com", "old8@example.com", 1)
        });
        let e = verify_file(&path, &key, |_| {}).unwrap_err();
        assert!(matches!(e, BundleError::Proof(_)), "{ext}: {e}");
    }

    // A flat column edited: not hashed, but checked against the record beside it.
    let path = log.export(dir.path(), "flat.csv", &all, full, true);
    edit_text(&path, |t| t.replacen(",alice,", ",mallory,", 1));
    let e = verify_file(&path, &key, |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("column actor.id does not match"),
        "{e}"
    );

    // A record left out of a complete range: the proof cannot cover a hole, and the count
    // no longer matches.
    let path = log.export(dir.path(), "hole.jsonl", &all, full, true);
    edit_text(&path, |t| {
        t.lines()
            .filter(|l| !l.starts_with("{\"index\":5,"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert!(matches!(
        verify_file(&path, &key, |_| {}).unwrap_err(),
        BundleError::RowCount { .. }
    ));

    // A range export that leaves a record out and claims it with a proof for fewer leaves.
    let fewer: Vec<u64> = all.iter().copied().filter(|&i| i != 5).collect();
    let path = log.export(dir.path(), "incomplete.jsonl", &fewer, full, true);
    assert!(matches!(
        verify_file(&path, &key, |_| {}).unwrap_err(),
        BundleError::Incomplete { .. }
    ));

    // Rows out of order.
    let path = log.export(dir.path(), "order.jsonl", &[1, 4], full, false);
    edit_text(&path, |t| {
        let lines: Vec<&str> = t.lines().collect();
        format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3])
    });
    assert!(matches!(
        verify_file(&path, &key, |_| {}).unwrap_err(),
        BundleError::Record {
            row: 2,
            index: 1,
            ..
        }
    ));

    // Cut short: no end line.
    let path = log.export(dir.path(), "cut.jsonl", &all, full, true);
    edit_text(&path, |t| {
        t.lines()
            .filter(|l| !l.starts_with("{\"tally_export_end\""))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert_eq!(
        verify_file(&path, &key, |_| {}).unwrap_err(),
        BundleError::Truncated
    );

    // Another log's key, and a claim of completeness beyond the signed tree.
    let path = log.export(dir.path(), "key.jsonl", &all, full, true);
    let other = NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap().verifier();
    assert!(matches!(
        verify_file(&path, &other, |_| {}).unwrap_err(),
        BundleError::Checkpoint(_)
    ));
    edit_text(&path, |t| t.replacen("\"to\":40", "\"to\":41", 1));
    assert!(matches!(
        verify_file(&path, &key, |_| {}).unwrap_err(),
        BundleError::BadRange { .. }
    ));

    // A CSV without its proof sidecar says where the proof should be.
    let path = log.export(dir.path(), "alone.csv", &all, full, true);
    std::fs::remove_file(csv_sidecar(&path)).unwrap();
    let e = verify_file(&path, &key, |_| {}).unwrap_err().to_string();
    assert!(e.contains("alone.csv.proof.json"), "{e}");

    // A Parquet file cut short (its footer, with the proof, gone).
    let path = log.export(dir.path(), "cut.parquet", &all, full, true);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(verify_file(&path, &key, |_| {}).is_err());
}
