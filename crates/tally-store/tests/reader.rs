//! The read-only `LogReader`: it reads beside the writer without its lock, only up to the last
//! signed checkpoint, and checks every record it returns.

use std::time::Duration;

use tally_store::{LogReader, ReadError, StoreError, TenantRecords};

mod common;
use common::{append_bytes, append_n, config, last_segment, open};

/// Waits until the tenant's last signed checkpoint covers `size` leaves.
async fn signed(log: &tally_store::Log, tenant: &str, size: u64) {
    for _ in 0..500 {
        if log
            .tenant(tenant)
            .and_then(|t| t.checkpoint())
            .is_some_and(|c| c.size == size)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no checkpoint of size {size}");
}

#[tokio::test]
async fn a_reader_beside_the_writer_reads_exactly_the_signed_records() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config()).unwrap();
    append_n(&log, "acme", 300, 37).await;
    signed(&log, "acme", 300).await;

    // The writer holds the directory's lock; the reader does not need it.
    let reader = LogReader::open(tmp.path()).unwrap();
    assert_eq!(reader.tenants().unwrap(), vec!["acme".to_string()]);
    assert!(reader.tenant("nobody").unwrap().is_none());
    assert!(reader.tenant("../etc").unwrap().is_none());
    let acme = reader.tenant("acme").unwrap().unwrap();
    assert_eq!(acme.name(), "acme");
    assert_eq!(acme.size(), 300);
    let tlog = log.tenant("acme").unwrap();
    assert_eq!(
        acme.records(0, 300).unwrap(),
        tlog.records(0, 300).unwrap(),
        "the same records, byte for byte, across segments"
    );
    assert!(matches!(
        acme.records(290, 11),
        Err(ReadError::OutOfRange(_))
    ));
    assert!(matches!(
        acme.records(u64::MAX, 2),
        Err(ReadError::OutOfRange(_))
    ));
    log.shutdown();

    // A torn tail no recovery has cut yet (a crash mid-write) is beyond the signed extent:
    // the reader neither reads it nor changes it.
    let segment = last_segment(tmp.path(), "acme");
    append_bytes(&segment, &[0xAB; 40]);
    append_bytes(&tmp.path().join("tenants/acme/leaves"), &[0xCD; 23]);
    let seg_len = std::fs::metadata(&segment).unwrap().len();
    let acme = LogReader::open(tmp.path())
        .unwrap()
        .tenant("acme")
        .unwrap()
        .unwrap();
    assert_eq!(acme.size(), 300);
    assert_eq!(acme.records(299, 1).unwrap(), {
        let log = open(tmp.path(), config()).unwrap();
        let r = log.tenant("acme").unwrap().records(299, 1).unwrap();
        log.shutdown();
        r
    });
    // (Opening the writer above ran recovery, which cut the tail; the reader had left it.)
    assert!(std::fs::metadata(&segment).unwrap().len() < seg_len);
}

#[tokio::test]
async fn a_damaged_record_inside_the_signed_extent_is_an_error_not_bad_data() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config()).unwrap();
    append_n(&log, "acme", 20, 20).await;
    signed(&log, "acme", 20).await;
    log.shutdown();

    // Flip one byte inside the last record's body.
    let segment = last_segment(tmp.path(), "acme");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let acme = LogReader::open(tmp.path())
        .unwrap()
        .tenant("acme")
        .unwrap()
        .unwrap();
    assert_eq!(acme.records(0, 19).unwrap().len(), 19);
    match acme.records(0, 20) {
        Err(ReadError::Store(StoreError::Corrupt { index, .. })) => assert_eq!(index, 19),
        other => panic!("expected the damage to be reported, got {other:?}"),
    }
}

#[test]
fn a_directory_that_is_not_a_data_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    assert!(LogReader::open(tmp.path()).is_err());
}
