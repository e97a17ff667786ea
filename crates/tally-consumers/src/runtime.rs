//! The runtime: one thread per consumer, woken by log growth, delivering batches in leaf
//! order, flushing on an interval, persisting cursors, retrying with backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::{Deserialize, Serialize};
use tally_store::{Growth, Log};

use crate::cursor::{CursorError, CursorFile};
use crate::{Batch, Consumer};

/// How a consumer is fed.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Most records in one [`Consumer::deliver`] call.
    pub batch_records: u64,
    /// Longest time between flushes while records keep coming (a consumer is flushed as soon
    /// as it has caught up, too). Bounds how far its visible state trails the log.
    pub flush_interval: Duration,
    /// First pause after a failure; it doubles with each failure in a row…
    pub retry_min: Duration,
    /// …up to this.
    pub retry_max: Duration,
    /// On stop, how long to go on delivering what the log already holds before the last
    /// flush (a clean stop then normally leaves the consumer caught up; what is left is
    /// delivered at the next start).
    pub drain_on_stop: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            batch_records: 4096,
            flush_interval: Duration::from_millis(250),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            drain_on_stop: Duration::from_secs(5),
        }
    }
}

/// The last failure of a consumer, until it delivers again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    /// What failed.
    pub message: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Failures in a row so far.
    pub consecutive_failures: u64,
}

/// Where a consumer stands in one tenant's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantPosition {
    /// The tenant.
    pub tenant: String,
    /// Leaf index of the next record it has not durably consumed (its cursor).
    pub next: u64,
    /// The tenant's log size.
    pub size: u64,
    /// Records it has still to consume: `size - next`.
    pub lag: u64,
}

/// A consumer's state, for `/healthz`, `tally consumers` and tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsumerReport {
    /// Its name.
    pub name: String,
    /// `ok`, or `failing` while its last delivery or flush failed (it is being retried).
    pub state: &'static str,
    /// Records it has still to consume, over all tenants.
    pub lag: u64,
    /// Records delivered and flushed since start.
    pub delivered: u64,
    /// Per tenant.
    pub tenants: Vec<TenantPosition>,
    /// The last failure, until a delivery succeeds again.
    pub last_error: Option<LastError>,
}

/// What the runtime and the reporting side share about one consumer.
#[derive(Debug)]
struct Shared {
    name: String,
    /// Durable cursor per tenant: what lag is measured from.
    durable: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<LastError>>,
    delivered: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn failed(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_error.lock();
        let consecutive_failures = last.as_ref().map_or(0, |l| l.consecutive_failures) + 1;
        tracing::error!(
            consumer = self.name,
            consecutive_failures,
            "{message}; retrying"
        );
        *last = Some(LastError {
            message,
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            consecutive_failures,
        });
    }

    fn succeeded(&self) {
        if self.last_error.lock().take().is_some() {
            tracing::info!(consumer = self.name, "delivering again");
        }
    }

    fn report(&self, log: &Log) -> ConsumerReport {
        let durable = self.durable.lock().clone();
        let tenants: Vec<TenantPosition> = log
            .tenants()
            .into_iter()
            .map(|tenant| {
                let size = log.tenant(&tenant).map_or(0, |t| t.size());
                let next = durable.get(&tenant).copied().unwrap_or(0);
                TenantPosition {
                    lag: size.saturating_sub(next),
                    tenant,
                    next,
                    size,
                }
            })
            .collect();
        let last_error = self.last_error.lock().clone();
        ConsumerReport {
            name: self.name.clone(),
            state: if last_error.is_some() {
                "failing"
            } else {
                "ok"
            },
            lag: tenants.iter().map(|t| t.lag).sum(),
            delivered: self.delivered.load(Ordering::Relaxed),
            tenants,
            last_error,
        }
    }
}

/// The consumers of one log, each on its own thread. Stops them (flushing what they have and
/// writing their cursors) on [`Consumers::stop`] or drop.
pub struct Consumers {
    log: Log,
    shared: Arc<Mutex<Vec<Arc<Shared>>>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    waker: Growth,
}

impl Consumers {
    /// No consumers yet; add them with [`Consumers::spawn`].
    pub fn new(log: Log) -> Self {
        Consumers {
            waker: log.subscribe_growth(),
            log,
            shared: Default::default(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Starts feeding `consumer` under `name` from its cursor in the data directory. Fails if
    /// the name is taken or invalid, or its cursor file is unreadable (the message says what
    /// to do).
    pub fn spawn(
        &self,
        name: &str,
        consumer: impl Consumer,
        settings: ConsumerSettings,
    ) -> Result<(), CursorError> {
        if self.shared.lock().iter().any(|s| s.name == name) {
            return Err(CursorError::Name(format!("{name} (already running)")));
        }
        let cursor = match CursorFile::load(self.log.data_dir(), name)? {
            Some(c) => c,
            None => CursorFile::new(name)?,
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            durable: Mutex::new(cursor.tenants.clone()),
            last_error: Mutex::new(None),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let mut worker = Worker {
            log: self.log.clone(),
            consumer: Box::new(consumer),
            shared: shared.clone(),
            settings,
            stop: self.stop.clone(),
            growth: self.log.subscribe_growth(),
            cursor,
            next: BTreeMap::new(),
            unflushed: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("tally-{name}"))
            .spawn(move || worker.run())
            .map_err(|source| CursorError::Io {
                path: self.log.data_dir().consumers_path(),
                source,
            })?;
        self.shared.lock().push(shared);
        self.threads.lock().push(thread);
        Ok(())
    }

    /// Every consumer's position, lag and last error.
    pub fn reports(&self) -> Vec<ConsumerReport> {
        self.shared
            .lock()
            .iter()
            .map(|s| s.report(&self.log))
            .collect()
    }

    /// For `/healthz`: whether every consumer delivers, and each one's report by name.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let reports = self.reports();
        let healthy = reports.iter().all(|r| r.last_error.is_none());
        let body = reports
            .into_iter()
            .map(|r| (r.name.clone(), serde_json::to_value(r).expect("serializes")))
            .collect::<serde_json::Map<_, _>>();
        (healthy, serde_json::Value::Object(body))
    }

    /// Exports per consumer and tenant: `tally_consumer_next_index`, `tally_consumer_lag_events`,
    /// and per consumer `tally_consumer_delivered_events_total`, `tally_consumer_errors_total`,
    /// `tally_consumer_failing` (1 while failing). Measured at scrape time.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(ConsumerMetrics {
            log: self.log.clone(),
            shared: self.shared.clone(),
        }));
    }

    /// Stops every consumer and waits: each delivers what the log holds for up to its
    /// [`ConsumerSettings::drain_on_stop`], flushes, and writes its cursor. Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One consumer's thread.
struct Worker {
    log: Log,
    consumer: Box<dyn Consumer>,
    shared: Arc<Shared>,
    settings: ConsumerSettings,
    stop: Arc<AtomicBool>,
    growth: Growth,
    /// The durable cursor, as last written.
    cursor: CursorFile,
    /// Per tenant, the leaf index of the next record to deliver (ahead of the cursor by what
    /// is delivered but not yet flushed).
    next: BTreeMap<String, u64>,
    /// Records delivered since the last successful flush.
    unflushed: u64,
}

impl Worker {
    fn run(&mut self) {
        let mut last_flush = Instant::now();
        let mut failures = 0u32;
        // Set once a stop is asked for: until then, what is already in the log is still
        // delivered, so that a clean stop normally leaves the consumer caught up.
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_none() && self.stop.load(Ordering::Acquire) {
                drain_until = Some(Instant::now() + self.settings.drain_on_stop);
            }
            let mut out_of_time = drain_until.is_some_and(|d| Instant::now() >= d);
            let mut delivered = false;
            if !out_of_time {
                match self.deliver_round() {
                    Ok(d) => delivered = d,
                    Err(e) => {
                        self.shared.failed(e);
                        failures += 1;
                        if drain_until.is_none() {
                            self.pause(failures);
                            continue;
                        }
                        out_of_time = true;
                    }
                }
            }
            let finishing = drain_until.is_some() && (!delivered || out_of_time);
            let flush_due =
                !delivered || finishing || last_flush.elapsed() >= self.settings.flush_interval;
            if self.unflushed > 0 && flush_due {
                match self.flush() {
                    Ok(()) => {
                        last_flush = Instant::now();
                    }
                    Err(e) => {
                        self.shared.failed(e);
                        failures += 1;
                        if finishing {
                            // Records after the cursor are delivered again at the next start.
                            return;
                        }
                        self.pause(failures);
                        continue;
                    }
                }
            }
            if (delivered || self.unflushed == 0) && !out_of_time {
                if failures > 0 {
                    self.shared.succeeded();
                }
                failures = 0;
            }
            if finishing {
                return;
            }
            if !delivered && drain_until.is_none() {
                // Growth wakes this; the timeout only bounds the cost of a missed wake-up.
                self.growth.wait(Duration::from_secs(5));
            }
        }
    }

    /// Delivers up to one batch per tenant; returns whether anything was delivered.
    fn deliver_round(&mut self) -> Result<bool, String> {
        let mut delivered = false;
        for tenant in self.log.tenants() {
            let Some(tlog) = self.log.tenant(&tenant) else {
                continue;
            };
            let pos = match self.next.get(&tenant) {
                Some(&p) => p,
                None => {
                    let cursor = self.cursor.tenants.get(&tenant).copied();
                    let p = self.consumer.resume(&tenant, cursor).map_err(|e| {
                        format!("finding where to resume tenant {tenant} (cursor {cursor:?}): {e}")
                    })?;
                    self.next.insert(tenant.clone(), p);
                    // Its own state is what counts: lag is measured from it from now on.
                    self.shared.durable.lock().insert(tenant.clone(), p);
                    p
                }
            };
            let size = tlog.size();
            if pos > size {
                return Err(format!(
                    "the position in tenant {tenant}'s log is {pos} but the log holds only {size} records: was the data directory restored from an older copy? Delete this consumer's cursor (and its state) to start it again from the beginning"
                ));
            }
            if pos == size {
                continue;
            }
            let count = (size - pos).min(self.settings.batch_records.max(1));
            let records = tlog.records(pos, count).map_err(|e| {
                format!(
                    "reading records [{pos}, {}) of tenant {tenant}: {e}",
                    pos + count
                )
            })?;
            self.consumer
                .deliver(Batch {
                    tenant: &tenant,
                    first: pos,
                    records: &records,
                })
                .map_err(|e| describe(&tenant, pos, count, &*e))?;
            self.next.insert(tenant, pos + count);
            self.unflushed += count;
            delivered = true;
        }
        Ok(delivered)
    }

    /// Flushes the consumer, then writes the cursor.
    fn flush(&mut self) -> Result<(), String> {
        self.consumer
            .flush()
            .map_err(|e| format!("flushing: {e}"))?;
        self.cursor.tenants = self.next.clone();
        self.cursor
            .store(self.log.data_dir())
            .map_err(|e| format!("writing the cursor: {e}"))?;
        self.shared
            .delivered
            .fetch_add(std::mem::take(&mut self.unflushed), Ordering::Relaxed);
        *self.shared.durable.lock() = self.cursor.tenants.clone();
        Ok(())
    }

    /// Waits before retrying after `failures` failures in a row; a stop cuts it short.
    fn pause(&mut self, failures: u32) {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        let wait = self
            .settings
            .retry_min
            .saturating_mul(factor)
            .min(self.settings.retry_max);
        let deadline = Instant::now() + wait;
        while !self.stop.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.growth.wait(left);
        }
    }
}

fn describe(
    tenant: &str,
    pos: u64,
    count: u64,
    e: &(dyn std::error::Error + Send + Sync),
) -> String {
    format!(
        "delivering records [{pos}, {}) of tenant {tenant}: {e}",
        pos + count
    )
}

/// Reads every consumer's position at scrape time, so that lag is current even while a
/// consumer waits out a retry.
struct ConsumerMetrics {
    log: Log,
    shared: Arc<Mutex<Vec<Arc<Shared>>>>,
}

impl std::fmt::Debug for ConsumerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerMetrics")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Collector for ConsumerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = self.shared.lock().clone();
        let reports: Vec<ConsumerReport> = shared.iter().map(|s| s.report(&self.log)).collect();
        let per_tenant = |r: &ConsumerReport, t: &TenantPosition| {
            vec![
                ("consumer".to_string(), r.name.clone()),
                ("tenant".to_string(), t.tenant.clone()),
            ]
        };
        {
            let mut family = encoder.encode_descriptor(
                "tally_consumer_next_index",
                "Leaf index of the next record a consumer has not durably consumed (its cursor)",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for r in &reports {
                for t in &r.tenants {
                    ConstGauge::new(t.next as i64)
                        .encode(family.encode_family(&per_tenant(r, t))?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "tally_consumer_lag_events",
                "Records of a tenant's log a consumer has still to consume",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for r in &reports {
                for t in &r.tenants {
                    ConstGauge::new(t.lag as i64)
                        .encode(family.encode_family(&per_tenant(r, t))?)?;
                }
            }
        }
        let per_consumer = |s: &Shared| vec![("consumer".to_string(), s.name.clone())];
        {
            let mut family = encoder.encode_descriptor(
                "tally_consumer_delivered_events",
                "Records delivered to a consumer and flushed since start",
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for s in &shared {
                ConstCounter::new(s.delivered.load(Ordering::Relaxed))
                    .encode(family.encode_family(&per_consumer(s))?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "tally_consumer_errors",
                "Failed deliveries and flushes of a consumer (each is retried)",
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for s in &shared {
                ConstCounter::new(s.errors.load(Ordering::Relaxed))
                    .encode(family.encode_family(&per_consumer(s))?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "tally_consumer_failing",
                "1 while a consumer's last delivery or flush failed",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for s in &shared {
                let failing = i64::from(s.last_error.lock().is_some());
                ConstGauge::new(failing).encode(family.encode_family(&per_consumer(s))?)?;
            }
        }
        Ok(())
    }
}
