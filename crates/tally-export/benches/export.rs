//! Export throughput: writing and verifying each file format, and the multiproof.
//!
//! `cargo bench -p tally-export --bench export`; records are realistic generated events
//! (tally-eventgen's generator) encoded by the real validator.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_export::{verify_file, End, ExportFile, Format, Header, IndexRange};
use tally_tlog::{leaf_hash, multi_inclusion_proof, verify_multi_inclusion, Checkpoint};
use tally_tlog::{MemoryTree, NoteSigner};

const ROWS: u64 = 20_000;
const ORIGIN: &str = "bench/log/acme";

fn records(n: u64) -> Vec<Vec<u8>> {
    let mut generator = tally_eventgen::EventGenerator::new(7);
    let ctx = tally_event::IngestContext {
        received_at: time::OffsetDateTime::now_utc(),
        key_id: "bench",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::minutes(5),
    };
    (0..n)
        .map(|_| {
            let input = serde_json::from_slice(&generator.next_json()).expect("generated JSON");
            tally_event::validate(input, &ctx)
                .expect("valid event")
                .record
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let records = records(ROWS);
    let mut tree = MemoryTree::new();
    for r in &records {
        tree.push(leaf_hash(r));
    }
    let signer = NoteSigner::from_seed(ORIGIN, [3; 32]).expect("key");
    let note = signer
        .sign(
            &Checkpoint {
                origin: ORIGIN.into(),
                size: ROWS,
                root: tree.root(),
                extensions: vec![],
            }
            .to_body(),
        )
        .expect("sign");
    let header = Header {
        version: tally_export::FORMAT_VERSION,
        tenant: "acme".into(),
        query: String::new(),
        range: IndexRange { from: 0, to: ROWS },
        complete: true,
        checkpoint: note,
        exported_at: "2026-01-01T00:00:00Z".into(),
        exported_by: "api-key:bench".into(),
        expected_rows: Some(ROWS),
        view: None,
    };
    let end = End {
        rows: ROWS,
        proof: Vec::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();

    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ROWS));
    for format in [Format::Jsonl, Format::Csv, Format::Parquet] {
        let path = dir.path().join(format!("bench.{}", format.name()));
        g.bench_function(format!("write_{}", format.name()), |b| {
            b.iter(|| {
                let mut f = ExportFile::create(&path, format, &header).expect("create");
                for (i, r) in records.iter().enumerate() {
                    f.record(i as u64, r).expect("record");
                }
                f.finish(&end).expect("finish");
            })
        });
        let size = std::fs::metadata(&path).expect("written").len();
        eprintln!(
            "{}: {:.2} bytes per record byte ({} bytes for {ROWS} records)",
            format.name(),
            size as f64 / bytes as f64,
            size
        );
        let key = signer.verifier();
        g.bench_function(format!("verify_{}", format.name()), |b| {
            b.iter(|| verify_file(&path, &key, |_| {}).expect("verifies"))
        });
    }

    // A scattered 2% of a million-leaf tree: what a filtered export proves.
    let mut big = MemoryTree::new();
    for i in 0..1_000_000u64 {
        big.push(leaf_hash(&i.to_le_bytes()));
    }
    let picked: Vec<u64> = (0..1_000_000u64).step_by(50).collect();
    let leaves: Vec<_> = picked
        .iter()
        .map(|&i| (i, leaf_hash(&i.to_le_bytes())))
        .collect();
    g.throughput(Throughput::Elements(picked.len() as u64));
    g.bench_function("multiproof_20k_of_1m", |b| {
        b.iter(|| {
            let proof = multi_inclusion_proof(&picked, big.size(), &big).expect("proof");
            verify_multi_inclusion(&leaves, big.size(), &proof, &big.root()).expect("ok");
            proof.len()
        })
    });
    let proof = multi_inclusion_proof(&picked, big.size(), &big).expect("proof");
    eprintln!(
        "multiproof of {} leaves in 1M: {} hashes ({:.2} per leaf; separate RFC 6962 paths: 20 per leaf)",
        picked.len(),
        proof.len(),
        proof.len() as f64 / picked.len() as f64
    );
    g.finish();
}

criterion_group!(export, benches);
criterion_main!(export);
