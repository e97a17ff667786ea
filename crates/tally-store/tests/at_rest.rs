//! Encryption at rest end to end in the store: records written under a KEK are encrypted in
//! every segment, read back, recovered and verified (structure without the key, content with
//! it), retried idempotently, and a record changed on disk is caught.

mod common;

use std::sync::Arc;

use common::*;
use tally_store::at_rest::{is_encrypted, AtRest, EncryptedRecord, Kek};
use tally_store::verify::verify_tenant_with_key;
use tally_store::{DataDir, LogConfig, LogReader, TenantRecords};

fn kek() -> Kek {
    Kek::from_bytes(&[42; 32])
}

fn encrypted_config(path: &std::path::Path) -> LogConfig {
    let dir = DataDir::create_or_open(path).unwrap();
    LogConfig {
        at_rest: Some(Arc::new(AtRest::new(&dir, kek(), None))),
        ..config()
    }
}

fn stored_records(path: &std::path::Path, tenant: &str) -> Vec<(u64, Vec<u8>)> {
    let td = DataDir::open_existing(path).unwrap().tenant(tenant);
    td.list_segments()
        .unwrap()
        .into_iter()
        .flat_map(|s| frames(&td.segment_path(s)))
        .collect()
}

#[tokio::test]
async fn records_are_encrypted_in_segments_and_read_verified_and_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    // Records written before encryption was configured stay readable beside encrypted ones.
    let log = open(&path, config()).unwrap();
    append_n(&log, "acme", 20, 10).await;
    let plain_records = log.tenant("acme").unwrap().records(0, 20).unwrap();
    log.shutdown();

    let log = open(&path, encrypted_config(&path)).unwrap();
    append_n(&log, "acme", 300, 50).await;
    let tenant = log.tenant("acme").unwrap();
    let records = tenant.records(0, 320).unwrap();
    assert_eq!(records[..20], plain_records[..]);
    assert!(records.iter().all(|r| r.starts_with(b"{")));
    // Retrying an event stored encrypted is recognised against its plaintext.
    let id = uuid::Uuid::new_v4();
    let first = log.append(vec![event("acme", Some(id), 7)]).await.unwrap();
    let again = log.append(vec![event("acme", Some(id), 7)]).await.unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].index, first[0].index);
    let conflict = log.append(vec![event("acme", Some(id), 8)]).await;
    assert!(conflict.is_err());
    log.shutdown();

    let stored = stored_records(&path, "acme");
    assert_eq!(stored.len(), 321);
    assert!(stored[..20].iter().all(|(_, r)| !is_encrypted(r)));
    assert!(stored[20..].iter().all(|(_, r)| is_encrypted(r)));
    let segments: Vec<u8> = stored.iter().flat_map(|(_, r)| r.clone()).collect();
    // "user-25" is in event 25 of the second batch only, stored encrypted.
    assert!(!segments.windows(8).any(|w| w == b"user-25\""));
    // Only the 20 records written before encryption was configured hold it in the clear.
    assert_eq!(
        segments
            .windows(13)
            .filter(|w| *w == b"document.read")
            .count(),
        20
    );

    // The structure verifies without the key; the content with it.
    let dir = DataDir::open_existing(&path).unwrap();
    let without = verify(&path, "acme").unwrap();
    assert_eq!(
        (
            without.records,
            without.encrypted,
            without.contents_unchecked
        ),
        (321, 301, 301)
    );
    let at_rest = AtRest::new(&dir, kek(), None);
    let with = verify_tenant_with_key(
        &dir,
        "acme",
        &verifier(&path),
        &[],
        Some(&at_rest),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((with.encrypted, with.contents_unchecked), (301, 0));

    // The read-only reader needs the key for encrypted records, and says so.
    let reader = LogReader::open(&path).unwrap();
    let err = reader
        .tenant("acme")
        .unwrap()
        .unwrap()
        .records(0, 321)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--kek-file"), "{err}");
    let reader = LogReader::open(&path)
        .unwrap()
        .with_at_rest(Some(Arc::new(AtRest::new(&dir, kek(), None))));
    let read = reader
        .tenant("acme")
        .unwrap()
        .unwrap()
        .records(0, 320)
        .unwrap();
    assert_eq!(read, records);

    // A restart reads everything again.
    let log = open(&path, encrypted_config(&path)).unwrap();
    assert_eq!(
        log.tenant("acme").unwrap().records(0, 320).unwrap(),
        records
    );
    log.shutdown();
}

#[tokio::test]
async fn a_changed_ciphertext_passes_the_structure_check_but_not_the_content_check() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    let log = open(&path, encrypted_config(&path)).unwrap();
    append_n(&log, "acme", 50, 50).await;
    log.shutdown();

    // An attacker with file access flips a ciphertext byte and fixes up the frame checksum.
    let segment = last_segment(&path, "acme");
    let mut frames = frames(&segment);
    let (_, record) = &mut frames[17];
    let at = record.len() - 20;
    record[at] ^= 0x40;
    assert!(EncryptedRecord::parse(record).is_some());
    write_frames(&segment, &frames);

    // Without the key, only the structure can be checked: it is intact.
    assert!(verify(&path, "acme").is_ok());
    let dir = DataDir::open_existing(&path).unwrap();
    let at_rest = AtRest::new(&dir, kek(), None);
    let failure = verify_tenant_with_key(
        &dir,
        "acme",
        &verifier(&path),
        &[],
        Some(&at_rest),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(failure.index, Some(17));
    assert!(failure.detail.contains("does not decrypt"), "{failure}");

    // The running log refuses to serve it and reports the damage.
    let log = open(&path, encrypted_config(&path)).unwrap();
    let tenant = log.tenant("acme").unwrap();
    assert!(tenant.record(16).is_ok());
    assert!(tenant.record(17).is_err());
    assert_eq!(tenant.damage().unwrap().index, Some(17));
    log.shutdown();
}

#[tokio::test]
async fn a_torn_encrypted_tail_is_cut_by_recovery_without_the_key_being_needed_for_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    let log = open(&path, encrypted_config(&path)).unwrap();
    append_n(&log, "acme", 30, 10).await;
    log.shutdown();
    // Leaf entries lost after the last checkpoint are re-derived from the encrypted records'
    // headers; a torn frame after them is cut.
    let leaves = DataDir::open_existing(&path)
        .unwrap()
        .tenant("acme")
        .leaves_path();
    let len = std::fs::metadata(&leaves).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&leaves)
        .unwrap()
        .set_len(len - 56 * 3)
        .unwrap();
    append_bytes(&last_segment(&path, "acme"), &[9, 0, 0, 0, 1, 2]);
    let (log, report) = tally_store::Log::open(
        DataDir::open_existing(&path).unwrap(),
        encrypted_config(&path),
    )
    .unwrap();
    let report = &report.tenants[0].1;
    assert_eq!(report.size, 30);
    assert!(report.torn_bytes_cut > 0);
    assert_eq!(
        log.tenant("acme").unwrap().records(0, 30).unwrap().len(),
        30
    );
    log.shutdown();
    assert!(verify(&path, "acme").is_ok());
}
