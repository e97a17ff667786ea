//! The write path under failing disks, with faults injected where the log writes, syncs or
//! could crash. For every fault: the request that met it is refused (never acknowledged),
//! no acknowledged event is lost, health says what failed, and after a restart recovery and
//! the verifier pass. A failed *write* is undone and writing resumes by itself once the disk
//! works again; a failed *fsync* stops the log until a restart (the kernel may have dropped
//! the pages it could not write).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tally_store::faults::{Fault, FaultPoint, Faults};
use tally_store::{AppendError, Log, LogConfig};

fn faulty(path: &Path, faults: &Arc<Faults>) -> Log {
    open(
        path,
        LogConfig {
            faults: Some(faults.clone()),
            // Small segments: a group may start a new one.
            segment_bytes: 4 << 10,
            ..config()
        },
    )
    .unwrap()
}

/// Appends `count` new events in one request; `Ok` with their indexes once acknowledged.
async fn try_append(
    log: &Log,
    tenant: &str,
    from: u64,
    count: u64,
) -> Result<Vec<u64>, AppendError> {
    let events = (from..from + count)
        .map(|i| event(tenant, Some(uuid::Uuid::new_v4()), i))
        .collect();
    log.append(events)
        .await
        .map(|a| a.into_iter().map(|a| a.index).collect())
}

/// What a client was told was stored: index → the record read back right after.
type Acknowledged = BTreeMap<u64, Vec<u8>>;

async fn acknowledge(log: &Log, tenant: &str, from: u64, count: u64, acked: &mut Acknowledged) {
    let indexes = try_append(log, tenant, from, count).await.unwrap();
    let t = log.tenant(tenant).unwrap();
    for i in indexes {
        acked.insert(i, t.record(i).unwrap());
    }
}

/// After a restart: recovery passes, every acknowledged event is there byte for byte, the
/// verifier passes, and the log takes events again.
async fn restart_and_check(path: &Path, tenant: &str, acked: &Acknowledged) {
    let log = open(path, config()).expect("recovery after the fault");
    let t = log.tenant(tenant).unwrap();
    for (i, record) in acked {
        assert_eq!(&t.record(*i).unwrap(), record, "acknowledged event {i}");
    }
    try_append(&log, tenant, 9000, 3)
        .await
        .expect("writes after restart");
    log.shutdown();
    let report = verify(path, tenant).expect("tally verify after the fault");
    assert!(report.records >= acked.len() as u64 + 3);
}

const WRITE_FAULTS: [(FaultPoint, Fault); 6] = [
    (FaultPoint::RecordWrite, Fault::Error(libc::EIO)),
    (FaultPoint::RecordWrite, Fault::Error(libc::ENOSPC)),
    (FaultPoint::RecordWrite, Fault::ShortWrite { bytes: 100 }),
    (FaultPoint::LeafWrite, Fault::Error(libc::ENOSPC)),
    (FaultPoint::LeafWrite, Fault::ShortWrite { bytes: 30 }),
    (FaultPoint::SegmentRoll, Fault::Error(libc::ENOSPC)),
];

#[tokio::test]
async fn a_failed_write_is_undone_and_writing_resumes_without_a_restart() {
    for (point, fault) in WRITE_FAULTS {
        let name = format!("{point:?} {fault:?}");
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let log = faulty(tmp.path(), &faults);
        let mut acked = Acknowledged::new();
        acknowledge(&log, "acme", 0, 40, &mut acked).await;
        // Enough events that the group starts a new segment, for the roll fault.
        faults.arm(point, fault, 2);
        for attempt in 0..2 {
            let refused = try_append(&log, "acme", 100, 40).await;
            assert!(
                matches!(refused, Err(AppendError::Unavailable(ref m)) if m.contains("nothing of this request was stored")),
                "{name} attempt {attempt}: {refused:?}"
            );
            let health = log.health().expect_err(&name).to_string();
            assert!(health.contains("was undone"), "{name}: {health}");
        }
        assert_eq!(log.tenant("acme").unwrap().size(), 40, "{name}");
        // The disk works again: the next request is stored, at the next index, and health
        // recovers, with no restart.
        let indexes = try_append(&log, "acme", 200, 40).await.expect(&name);
        assert_eq!(indexes[0], 40, "{name}");
        let t = log.tenant("acme").unwrap();
        for i in indexes {
            acked.insert(i, t.record(i).unwrap());
        }
        log.health().expect(&name);
        log.shutdown();
        restart_and_check(tmp.path(), "acme", &acked).await;
    }
}

#[tokio::test]
async fn a_failed_write_in_one_tenant_undoes_the_whole_group() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let log = faulty(tmp.path(), &faults);
    let mut acked = Acknowledged::new();
    acknowledge(&log, "alpha", 0, 5, &mut acked).await;
    acknowledge(&log, "beta", 0, 5, &mut acked).await;
    // One request for both tenants; the second tenant's write fails after the first's
    // succeeded (tenants are written in name order): neither may keep its part.
    faults.arm_after(FaultPoint::RecordWrite, 1, Fault::Error(libc::ENOSPC), 1);
    let events = vec![
        event("alpha", Some(uuid::Uuid::new_v4()), 1),
        event("beta", Some(uuid::Uuid::new_v4()), 2),
    ];
    let refused = log.append(events).await;
    assert!(
        matches!(refused, Err(AppendError::Unavailable(_))),
        "{refused:?}"
    );
    assert_eq!(log.tenant("alpha").unwrap().size(), 5);
    assert_eq!(log.tenant("beta").unwrap().size(), 5);
    // Both go on from where they were.
    assert_eq!(try_append(&log, "alpha", 10, 1).await.unwrap(), vec![5]);
    assert_eq!(try_append(&log, "beta", 10, 1).await.unwrap(), vec![5]);
    log.shutdown();
    verify(tmp.path(), "alpha").unwrap();
    verify(tmp.path(), "beta").unwrap();
}

#[tokio::test]
async fn a_failed_fsync_stops_the_log_until_a_restart() {
    for point in [
        FaultPoint::RecordSync,
        FaultPoint::LeafSync,
        FaultPoint::CheckpointSync,
    ] {
        let name = format!("{point:?}");
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let log = faulty(tmp.path(), &faults);
        let mut acked = Acknowledged::new();
        acknowledge(&log, "acme", 0, 30, &mut acked).await;
        faults.arm(point, Fault::Error(libc::EIO), 1);
        // Checkpoint syncs happen on the checkpointer's schedule: keep writing until the
        // fault has struck and the log has stopped.
        let mut stopped = None;
        for round in 0..200 {
            match try_append(&log, "acme", 100 + round * 10, 10).await {
                Ok(indexes) => {
                    let t = log.tenant("acme").unwrap();
                    for i in indexes {
                        acked.insert(i, t.record(i).unwrap());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        let stopped = stopped.unwrap_or_else(|| panic!("{name}: the fault never struck"));
        assert!(matches!(stopped, AppendError::Unavailable(_)), "{name}");
        let health = log.health().expect_err(&name).to_string();
        assert!(health.contains("restart"), "{name}: {health}");
        // The disk works again, but a failed fsync is not retried: still refused.
        faults.clear();
        assert!(try_append(&log, "acme", 5000, 1).await.is_err(), "{name}");
        log.shutdown();
        restart_and_check(tmp.path(), "acme", &acked).await;
    }
}

/// Starting a new segment first fsyncs the one it closes; if that fsync fails the closed
/// segment's durable contents are unknown, so the log stops as after any failed fsync (it
/// used to take this for a failed write, undo the group and go on writing).
#[tokio::test]
async fn a_failed_fsync_while_starting_a_segment_stops_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let log = faulty(tmp.path(), &faults);
    let mut acked = Acknowledged::new();
    acknowledge(&log, "acme", 0, 5, &mut acked).await;
    let segments = || {
        std::fs::read_dir(tmp.path().join("tenants/acme/segments"))
            .unwrap()
            .count()
    };
    assert_eq!(segments(), 1);
    // Every sync of a segment from now on fails: the first is the one the roll does, since
    // the syncer has nothing to sync until the group is written.
    faults.arm(FaultPoint::RecordSync, Fault::Error(libc::EIO), usize::MAX);
    let refused = try_append(&log, "acme", 100, 100).await;
    assert!(
        matches!(refused, Err(AppendError::Unavailable(_))),
        "{refused:?}"
    );
    assert_eq!(segments(), 1, "no segment was started");
    let health = log.health().expect_err("a failed fsync");
    assert!(health.restart_needed());
    let health = health.to_string();
    assert!(health.contains("restart"), "{health}");
    faults.clear();
    assert!(
        try_append(&log, "acme", 300, 1).await.is_err(),
        "a failed fsync is not retried"
    );
    log.shutdown();
    restart_and_check(tmp.path(), "acme", &acked).await;
}

#[tokio::test]
async fn a_failed_checkpoint_write_is_undone_and_signed_again_later() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let log = faulty(tmp.path(), &faults);
    let mut acked = Acknowledged::new();
    acknowledge(&log, "acme", 0, 10, &mut acked).await;
    faults.arm(
        FaultPoint::CheckpointWrite,
        Fault::ShortWrite { bytes: 20 },
        3,
    );
    acknowledge(&log, "acme", 10, 10, &mut acked).await;
    // Events are still acknowledged while checkpoints fail; once the faults are spent the
    // tree is signed.
    let t = log.tenant("acme").unwrap();
    for _ in 0..500 {
        if t.checkpoint().is_some_and(|c| c.size == 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.checkpoint().unwrap().size, 20);
    log.health()
        .expect("healthy again after a successful write");
    log.shutdown();
    restart_and_check(tmp.path(), "acme", &acked).await;
}

/// A crash (the process dies) at every crash point of the write path, with a request in
/// flight: whatever was acknowledged before survives, and recovery and the verifier pass.
#[tokio::test]
async fn a_crash_at_each_crash_point_loses_nothing_acknowledged() {
    for point in [
        FaultPoint::RecordWrite,
        FaultPoint::LeafWrite,
        FaultPoint::BeforeSync,
        FaultPoint::RecordSync,
        FaultPoint::BeforePublish,
        FaultPoint::BeforeAcknowledge,
        FaultPoint::SegmentRoll,
        FaultPoint::LeafSync,
        FaultPoint::CheckpointWrite,
        FaultPoint::CheckpointSync,
    ] {
        let name = format!("{point:?}");
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let log = faulty(tmp.path(), &faults);
        let mut acked = Acknowledged::new();
        acknowledge(&log, "acme", 0, 30, &mut acked).await;
        faults.arm(point, Fault::Crash, 1);
        // Keep writing until the crash strikes (checkpoint points strike on their own
        // schedule): a request in flight at a crash is never acknowledged.
        for round in 0..500 {
            match try_append(&log, "acme", 100 + round * 10, 40).await {
                Ok(indexes) => {
                    let t = log.tenant("acme").unwrap();
                    for i in indexes {
                        acked.insert(i, t.record(i).unwrap());
                    }
                }
                Err(_) => break,
            }
            if faults.crashed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(faults.crashed(), "{name}: the crash never struck");
        assert!(try_append(&log, "acme", 7000, 1).await.is_err(), "{name}");
        log.shutdown();
        restart_and_check(tmp.path(), "acme", &acked).await;
    }
}
