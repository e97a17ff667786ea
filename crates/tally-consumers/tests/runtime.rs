//! The consumer runtime over a real log: leaf order, durable cursors, resuming, restarting
//! from zero, retries with backoff, and what `/healthz` and `/metrics` are given.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tally_consumers::{Batch, Consumer, ConsumerError, ConsumerSettings, Consumers, CursorFile};
use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_store::{DataDir, Log, LogConfig, PreparedEvent};

/// What a [`Recorder`] saw, shared with the test.
#[derive(Debug, Default)]
struct Seen {
    /// Every delivered (tenant, leaf index), in delivery order (redeliveries included).
    delivered: Vec<(String, u64)>,
    /// Records whose flush succeeded, per tenant: the recorder's own "durable state".
    flushed: BTreeMap<String, Vec<u64>>,
    /// Deliveries still to refuse.
    fail_deliveries: u32,
    /// Flushes still to refuse (`u32::MAX`: all of them).
    fail_flushes: u32,
    /// What `resume` answers instead of the cursor.
    resume_from: Option<u64>,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    pending: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Consumer for Recorder {
    fn resume(&mut self, _tenant: &str, cursor: Option<u64>) -> Result<u64, ConsumerError> {
        Ok(self.seen.lock().resume_from.unwrap_or(cursor.unwrap_or(0)))
    }

    fn deliver(&mut self, batch: Batch<'_>) -> Result<(), ConsumerError> {
        let mut seen = self.seen.lock();
        if seen.fail_deliveries > 0 {
            seen.fail_deliveries -= 1;
            return Err("the receiver refused the batch".into());
        }
        for (i, record) in batch.iter() {
            assert!(!record.is_empty());
            seen.delivered.push((batch.tenant.to_string(), i));
            self.pending.lock().push((batch.tenant.to_string(), i));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        let mut seen = self.seen.lock();
        if seen.fail_flushes > 0 {
            if seen.fail_flushes != u32::MAX {
                seen.fail_flushes -= 1;
            }
            return Err("the receiver's disk is gone".into());
        }
        for (tenant, i) in self.pending.lock().drain(..) {
            seen.flushed.entry(tenant).or_default().push(i);
        }
        Ok(())
    }
}

fn event(tenant: &str, n: u64) -> PreparedEvent {
    let body = format!(
        r#"{{"id":"{}","time":"2026-01-02T03:04:05Z","actor":{{"id":"user-{n}"}},"action":"document.read","outcome":"SUCCESS"}}"#,
        uuid::Uuid::new_v4()
    );
    let input = parse_body(body.as_bytes(), BodyFormat::Json, 1)
        .unwrap()
        .pop()
        .unwrap();
    let ctx = IngestContext {
        received_at: time::macros::datetime!(2026-01-02 03:04:06 UTC),
        key_id: "test",
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::hours(1),
    };
    PreparedEvent::new(validate(input, &ctx).unwrap())
}

fn open(path: &Path) -> Log {
    let config = LogConfig {
        checkpoint_interval: Duration::from_millis(20),
        scrub_interval: None,
        ..LogConfig::default()
    };
    Log::open(DataDir::create_or_open(path).unwrap(), config)
        .unwrap()
        .0
}

async fn append(log: &Log, tenant: &str, count: u64) {
    let mut left = count;
    while left > 0 {
        let k = left.min(500);
        log.append((0..k).map(|n| event(tenant, n)).collect())
            .await
            .unwrap();
        left -= k;
    }
}

fn settings() -> ConsumerSettings {
    ConsumerSettings {
        batch_records: 100,
        flush_interval: Duration::from_millis(20),
        retry_min: Duration::from_millis(5),
        retry_max: Duration::from_millis(50),
        drain_on_stop: Duration::from_secs(5),
    }
}

/// Waits (up to a generous limit: this is not a timing assertion) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn caught_up(consumers: &Consumers) -> bool {
    consumers
        .reports()
        .iter()
        .all(|r| r.lag == 0 && r.last_error.is_none())
}

fn delivered(seen: &Seen, tenant: &str) -> Vec<u64> {
    seen.delivered
        .iter()
        .filter(|(t, _)| t == tenant)
        .map(|(_, i)| *i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_arrives_in_leaf_order_once_and_the_cursor_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append(&log, "acme", 250).await;
    let consumers = Consumers::new(log.clone());
    let rec = Recorder::default();
    consumers.spawn("rec", rec.clone(), settings()).unwrap();
    // Growth after start is delivered too, and so is a tenant created after start.
    append(&log, "acme", 130).await;
    append(&log, "beta", 42).await;
    wait_until("the consumer caught up", || caught_up(&consumers));
    let seen = rec.seen.lock();
    assert_eq!(delivered(&seen, "acme"), (0..380).collect::<Vec<_>>());
    assert_eq!(delivered(&seen, "beta"), (0..42).collect::<Vec<_>>());
    drop(seen);
    let report = &consumers.reports()[0];
    assert_eq!(report.name, "rec");
    assert_eq!(report.state, "ok");
    assert_eq!(report.delivered, 422);
    let cursor = CursorFile::load(log.data_dir(), "rec").unwrap().unwrap();
    assert_eq!(
        cursor.tenants,
        BTreeMap::from([("acme".to_string(), 380), ("beta".to_string(), 42)])
    );
    consumers.stop();
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_cursor_with_no_gap_and_no_repeat() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append(&log, "acme", 300).await;
    let first = Recorder::default();
    {
        let consumers = Consumers::new(log.clone());
        consumers.spawn("rec", first.clone(), settings()).unwrap();
        wait_until("the first run caught up", || caught_up(&consumers));
    }
    append(&log, "acme", 77).await;
    log.shutdown();
    drop(log);

    let log = open(tmp.path());
    let second = Recorder::default();
    let consumers = Consumers::new(log.clone());
    consumers.spawn("rec", second.clone(), settings()).unwrap();
    wait_until("the second run caught up", || caught_up(&consumers));
    assert_eq!(
        delivered(&first.seen.lock(), "acme"),
        (0..300).collect::<Vec<_>>()
    );
    assert_eq!(
        delivered(&second.seen.lock(), "acme"),
        (300..377).collect::<Vec<_>>(),
        "the second run starts exactly at the first run's cursor"
    );
    consumers.stop();
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_lost_its_state_starts_again_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append(&log, "acme", 120).await;
    {
        let consumers = Consumers::new(log.clone());
        consumers
            .spawn("rec", Recorder::default(), settings())
            .unwrap();
        wait_until("caught up", || caught_up(&consumers));
    }
    // Like a deleted search index: its own state says "nothing", whatever the cursor says.
    let rebuilt = Recorder::default();
    rebuilt.seen.lock().resume_from = Some(0);
    let consumers = Consumers::new(log.clone());
    consumers.spawn("rec", rebuilt.clone(), settings()).unwrap();
    wait_until("the rebuild caught up", || {
        delivered(&rebuilt.seen.lock(), "acme").len() >= 120 && caught_up(&consumers)
    });
    assert_eq!(
        delivered(&rebuilt.seen.lock(), "acme"),
        (0..120).collect::<Vec<_>>()
    );
    assert_eq!(
        consumers.reports()[0].delivered,
        120,
        "counted as delivered"
    );
    consumers.stop();
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_and_reported_until_a_delivery_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let rec = Recorder::default();
    rec.seen.lock().fail_deliveries = u32::MAX;
    let mut registry = prometheus_client::registry::Registry::default();
    let consumers = Consumers::new(log.clone());
    consumers.register_metrics(&mut registry);
    consumers.spawn("rec", rec.clone(), settings()).unwrap();
    append(&log, "acme", 50).await;
    wait_until("a failure is reported", || {
        consumers.reports()[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.consecutive_failures >= 3)
    });
    let (healthy, body) = consumers.health();
    assert!(!healthy);
    assert_eq!(body["rec"]["state"], "failing");
    assert_eq!(body["rec"]["lag"], 50);
    let message = body["rec"]["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("records [0, 50) of tenant acme")
            && message.contains("the receiver refused the batch"),
        "{message}"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"tally_consumer_lag_events{consumer="rec",tenant="acme"} 50"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tally_consumer_failing{consumer="rec"} 1"#),
        "{text}"
    );

    // The receiver comes back: the same records arrive, once, in order; the error clears.
    rec.seen.lock().fail_deliveries = 0;
    wait_until("caught up after the failures", || caught_up(&consumers));
    assert_eq!(
        delivered(&rec.seen.lock(), "acme"),
        (0..50).collect::<Vec<_>>()
    );
    let (healthy, body) = consumers.health();
    assert!(healthy, "{body}");
    assert!(body["rec"]["last_error"].is_null());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"tally_consumer_lag_events{consumer="rec",tenant="acme"} 0"#),
        "{text}"
    );
    assert!(text.contains(r#"tally_consumer_failing{consumer="rec"} 0"#));
    let errors: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"tally_consumer_errors_total{consumer="rec"} "#))
        .unwrap_or_else(|| panic!("no error counter in {text}"))
        .parse()
        .unwrap();
    assert!(errors >= 3, "{errors} errors counted");
    consumers.stop();
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_delivered_but_not_flushed_are_delivered_again_after_a_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append(&log, "acme", 60).await;
    {
        let consumers = Consumers::new(log.clone());
        consumers
            .spawn("rec", Recorder::default(), settings())
            .unwrap();
        wait_until("caught up", || caught_up(&consumers));
    }
    append(&log, "acme", 40).await;
    let broken = Recorder::default();
    broken.seen.lock().fail_flushes = u32::MAX;
    {
        let consumers = Consumers::new(log.clone());
        consumers.spawn("rec", broken.clone(), settings()).unwrap();
        wait_until("the new records were delivered", || {
            delivered(&broken.seen.lock(), "acme").len() == 40
        });
        // Stopped while its flushes fail: the cursor must not move past unflushed records.
    }
    let cursor = CursorFile::load(log.data_dir(), "rec").unwrap().unwrap();
    assert_eq!(cursor.tenants["acme"], 60);
    let again = Recorder::default();
    let consumers = Consumers::new(log.clone());
    consumers.spawn("rec", again.clone(), settings()).unwrap();
    wait_until("caught up again", || caught_up(&consumers));
    assert_eq!(
        delivered(&again.seen.lock(), "acme"),
        (60..100).collect::<Vec<_>>(),
        "at least once: the unflushed records arrive again, from the cursor"
    );
    consumers.stop();
    log.shutdown();
}

#[test]
fn a_name_in_use_or_a_damaged_cursor_is_refused_at_spawn() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let consumers = Consumers::new(log.clone());
    consumers
        .spawn("rec", Recorder::default(), settings())
        .unwrap();
    let e = consumers
        .spawn("rec", Recorder::default(), settings())
        .unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    std::fs::create_dir_all(log.data_dir().consumers_path()).unwrap();
    std::fs::write(log.data_dir().consumer_cursor_path("other"), b"garbage").unwrap();
    let e = consumers
        .spawn("other", Recorder::default(), settings())
        .unwrap_err();
    assert!(e.to_string().contains("move it away"), "{e}");
    consumers.stop();
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_first_delivers_what_the_log_already_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append(&log, "acme", 1000).await;
    let rec = Recorder::default();
    let consumers = Consumers::new(log.clone());
    consumers.spawn("rec", rec.clone(), settings()).unwrap();
    // Asked to stop at once: it still delivers the 1000 records (10 batches), then flushes.
    consumers.stop();
    assert_eq!(
        delivered(&rec.seen.lock(), "acme"),
        (0..1000).collect::<Vec<_>>()
    );
    let cursor = CursorFile::load(log.data_dir(), "rec").unwrap().unwrap();
    assert_eq!(cursor.tenants["acme"], 1000);
    log.shutdown();
}
