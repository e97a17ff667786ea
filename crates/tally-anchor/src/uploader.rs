//! The background uploader behind `tally serve --anchor`.
//!
//! It subscribes to the log's signed checkpoints and copies each to the bucket on its own
//! task, so ingest never waits for S3. Checkpoints wait in a bounded backlog: when S3 is down
//! for long, the oldest waiting ones are dropped (and counted), never the newest, which alone
//! is enough to pin everything before it. Failed uploads are retried with exponential backoff.
//! With an interval, at most one checkpoint per tenant and interval is uploaded (the newest).
//!
//! Re-uploading is idempotent: a key already holding the same bytes counts as uploaded; one
//! holding different bytes is a fork, reported in `/healthz` and `/metrics` and never retried.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tally_store::{CheckpointEvent, Log};
use tokio::sync::{broadcast, Notify};

use crate::s3::{PutOutcome, S3Client};
use crate::{layout, AnchorError, AnchorLocation};

/// Settings of the uploader.
#[derive(Debug, Clone)]
pub struct AnchorSettings {
    /// Where checkpoints go.
    pub location: AnchorLocation,
    /// How long each object stays locked (COMPLIANCE mode) after it is written.
    pub retention: Duration,
    /// At most one checkpoint per tenant per interval; zero uploads every checkpoint.
    pub interval: Duration,
    /// Most checkpoints waiting for upload; beyond it the oldest are dropped.
    pub backlog: usize,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl AnchorSettings {
    /// Settings with the defaults: every checkpoint, a backlog of 10,000, retries from
    /// 250 ms up to 30 s.
    pub fn new(location: AnchorLocation, retention: Duration) -> AnchorSettings {
        AnchorSettings {
            location,
            retention,
            interval: Duration::ZERO,
            backlog: 10_000,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// A checkpoint waiting for upload.
#[derive(Debug, Clone)]
struct Pending {
    tenant: String,
    size: u64,
    note: String,
    signed: Instant,
}

/// Prometheus metrics of the uploader.
#[derive(Debug, Clone, Default)]
struct AnchorMetrics {
    uploaded: Counter,
    failures: Counter,
    dropped: Counter,
    forks: Counter,
    backlog: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    last_success: Gauge<f64, AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Pending>,
    last_upload: HashMap<String, Instant>,
    consecutive_failures: u64,
    last_error: Option<String>,
    last_success: Option<time::OffsetDateTime>,
    fork: Option<String>,
    uploaded: u64,
    dropped: u64,
    stopping: bool,
}

/// Shared between the uploader task, `/healthz` and `/metrics`.
#[derive(Debug)]
pub struct AnchorStatus {
    settings: AnchorSettings,
    state: Mutex<State>,
    wake: Notify,
    metrics: AnchorMetrics,
}

impl AnchorStatus {
    /// Queues a checkpoint, keeping the backlog bounded (the oldest goes first) and, with an
    /// interval, only each tenant's newest.
    fn push(&self, p: Pending) {
        let mut st = self.state.lock();
        if !self.settings.interval.is_zero() {
            st.queue.retain(|q| q.tenant != p.tenant);
        }
        if st
            .queue
            .iter()
            .any(|q| q.tenant == p.tenant && q.size == p.size)
        {
            return;
        }
        st.queue.push_back(p);
        while st.queue.len() > self.settings.backlog.max(1) {
            let old = st.queue.pop_front().expect("non-empty");
            st.dropped += 1;
            self.metrics.dropped.inc();
            tracing::warn!(
                tenant = old.tenant,
                size = old.size,
                "anchoring backlog full: dropped the oldest waiting checkpoint"
            );
        }
        self.refresh_gauges(&st);
        drop(st);
        self.wake.notify_one();
    }

    fn refresh_gauges(&self, st: &State) {
        self.metrics.backlog.set(st.queue.len() as i64);
        let lag = st
            .queue
            .iter()
            .map(|p| p.signed.elapsed().as_secs_f64())
            .fold(0.0, f64::max);
        self.metrics.lag_seconds.set(lag);
    }

    /// The next checkpoint due for upload, or how long until one is.
    fn next_due(&self) -> Result<Pending, Option<Duration>> {
        let st = self.state.lock();
        // While stopping, the interval no longer holds back the newest checkpoints.
        let interval = if st.stopping {
            Duration::ZERO
        } else {
            self.settings.interval
        };
        let mut wait: Option<Duration> = None;
        for p in &st.queue {
            let ready_at = st.last_upload.get(&p.tenant).map(|t| *t + interval);
            match ready_at {
                Some(t) if t > Instant::now() => {
                    let d = t - Instant::now();
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                }
                _ => return Ok(p.clone()),
            }
        }
        Err(wait)
    }

    fn finish(&self, p: &Pending, result: &Result<(), AnchorError>) {
        let mut st = self.state.lock();
        match result {
            Ok(()) => {
                st.queue
                    .retain(|q| !(q.tenant == p.tenant && q.size == p.size));
                st.last_upload.insert(p.tenant.clone(), Instant::now());
                st.consecutive_failures = 0;
                st.last_error = None;
                st.uploaded += 1;
                let now = time::OffsetDateTime::now_utc();
                st.last_success = Some(now);
                self.metrics.uploaded.inc();
                self.metrics
                    .last_success
                    .set(now.unix_timestamp_nanos() as f64 / 1e9);
            }
            Err(e @ AnchorError::Fork { .. }) => {
                st.queue
                    .retain(|q| !(q.tenant == p.tenant && q.size == p.size));
                st.fork = Some(e.to_string());
                self.metrics.forks.inc();
                tracing::error!("anchoring: {e}");
            }
            Err(e) => {
                st.consecutive_failures += 1;
                st.last_error = Some(e.to_string());
                self.metrics.failures.inc();
                if !e.is_retryable() {
                    // Retrying cannot help (refused, not a transient fault): give up on this
                    // one so the newer checkpoints behind it still get through.
                    st.queue
                        .retain(|q| !(q.tenant == p.tenant && q.size == p.size));
                }
                tracing::warn!(
                    tenant = p.tenant,
                    size = p.size,
                    failures = st.consecutive_failures,
                    "anchoring failed: {e}"
                );
            }
        }
        self.refresh_gauges(&st);
    }

    /// Whether anchoring works now (no fork, last attempt succeeded), and its state as JSON.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let st = self.state.lock();
        self.refresh_gauges(&st);
        let lag = st
            .queue
            .iter()
            .map(|p| p.signed.elapsed().as_secs_f64())
            .fold(0.0, f64::max);
        let status = if st.fork.is_some() {
            "fork"
        } else if st.consecutive_failures > 0 {
            "failing"
        } else {
            "ok"
        };
        let rfc3339 = |t: &time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        (
            status == "ok",
            json!({
                "status": status,
                "target": self.settings.location.to_string(),
                "backlog": st.queue.len(),
                "lag_seconds": (lag * 1000.0).round() / 1000.0,
                "uploaded": st.uploaded,
                "dropped": st.dropped,
                "consecutive_failures": st.consecutive_failures,
                "last_error": st.last_error,
                "last_success": st.last_success.as_ref().map(rfc3339),
                "fork": st.fork,
            }),
        )
    }

    /// Adds the `tally_anchor_*` metrics to a registry.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tally_anchor");
        let m = &self.metrics;
        r.register(
            "uploaded",
            "Checkpoints written to (or found identical in) the anchor bucket",
            m.uploaded.clone(),
        );
        r.register(
            "upload_failures",
            "Failed checkpoint uploads (each is retried with backoff)",
            m.failures.clone(),
        );
        r.register(
            "dropped",
            "Waiting checkpoints dropped because the backlog was full (newer ones were kept)",
            m.dropped.clone(),
        );
        r.register(
            "forks",
            "Checkpoints refused because the bucket holds a different one of the same size",
            m.forks.clone(),
        );
        r.register(
            "backlog",
            "Checkpoints waiting for upload",
            m.backlog.clone(),
        );
        r.register(
            "lag_seconds",
            "Age of the oldest checkpoint waiting for upload (0 when none waits)",
            m.lag_seconds.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful upload",
            m.last_success.clone(),
        );
    }
}

/// The running uploader. [`Anchorer::stop`] drains what it can within a deadline.
pub struct Anchorer {
    status: Arc<AnchorStatus>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Anchorer {
    /// Checks that the bucket has Object Lock enabled, then starts copying every checkpoint
    /// the log signs (and each tenant's newest one right away: after a restart, that one may
    /// not be there yet).
    pub async fn start(
        client: S3Client,
        settings: AnchorSettings,
        log: Log,
    ) -> Result<Anchorer, AnchorError> {
        let bucket = &settings.location.bucket;
        if !client.object_lock_enabled(bucket).await? {
            return Err(AnchorError::Config(format!(
                "bucket {bucket} does not have S3 Object Lock enabled, so anchored checkpoints \
                 could be deleted or overwritten; anchor to a bucket created with Object Lock \
                 (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket)"
            )));
        }
        let status = Arc::new(AnchorStatus {
            settings,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            metrics: AnchorMetrics::default(),
        });
        // Subscribe before reading the current checkpoints, so none falls in between.
        let mut events = log.subscribe_checkpoints();
        for tenant in log.tenants() {
            if let Some(cp) = log.tenant(&tenant).and_then(|t| t.checkpoint()) {
                status.push(Pending {
                    tenant,
                    size: cp.size,
                    note: cp.note,
                    signed: Instant::now(),
                });
            }
        }
        let receiver = {
            let status = status.clone();
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(CheckpointEvent { tenant, checkpoint }) => status.push(Pending {
                            tenant,
                            size: checkpoint.size,
                            note: checkpoint.note,
                            signed: Instant::now(),
                        }),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("anchoring fell {n} checkpoints behind the log");
                            // Whatever was missed, each tenant's newest pins it.
                            for tenant in log.tenants() {
                                if let Some(cp) = log.tenant(&tenant).and_then(|t| t.checkpoint()) {
                                    status.push(Pending {
                                        tenant,
                                        size: cp.size,
                                        note: cp.note,
                                        signed: Instant::now(),
                                    });
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        let uploader = tokio::spawn(upload_loop(client, status.clone()));
        tracing::info!(target = %status.settings.location, "anchoring checkpoints");
        Ok(Anchorer {
            status,
            tasks: vec![receiver, uploader],
        })
    }

    /// The status `/healthz` and `/metrics` read.
    pub fn status(&self) -> Arc<AnchorStatus> {
        self.status.clone()
    }

    /// Stops after uploading what is waiting, or at `deadline`, whichever comes first. Call
    /// it after the log has signed its final checkpoints. Returns how many were left.
    pub async fn stop(self, deadline: Duration) -> usize {
        let give_up = Instant::now() + deadline;
        self.status.state.lock().stopping = true;
        self.status.wake.notify_one();
        // Let the receiver take the final checkpoints the log signed just before.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while Instant::now() < give_up && !self.status.state.lock().queue.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        let left = self.status.state.lock().queue.len();
        if left > 0 {
            tracing::warn!("stopping with {left} checkpoints not anchored");
        }
        left
    }
}

async fn upload_loop(client: S3Client, status: Arc<AnchorStatus>) {
    let mut backoff = status.settings.min_backoff;
    loop {
        let pending = match status.next_due() {
            Ok(p) => p,
            Err(wait) => {
                // Wake at least every second to keep the lag gauge current.
                let wait = wait.unwrap_or(Duration::MAX).min(Duration::from_secs(1));
                let _ = tokio::time::timeout(wait, status.wake.notified()).await;
                let st = status.state.lock();
                status.refresh_gauges(&st);
                continue;
            }
        };
        let result = upload(&client, &status.settings, &pending).await;
        let failed = result.as_ref().is_err_and(|e| e.is_retryable());
        status.finish(&pending, &result);
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(status.settings.max_backoff);
        } else {
            backoff = status.settings.min_backoff;
        }
    }
}

/// Writes one checkpoint; an object already there with the same bytes counts as written.
async fn upload(
    client: &S3Client,
    settings: &AnchorSettings,
    p: &Pending,
) -> Result<(), AnchorError> {
    let key = layout::checkpoint_key(&settings.location, &p.tenant, p.size);
    let bucket = &settings.location.bucket;
    let until = time::OffsetDateTime::now_utc() + settings.retention;
    match client
        .put_locked_if_absent(
            bucket,
            &key,
            p.note.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
            until,
        )
        .await?
    {
        PutOutcome::Created(_) => Ok(()),
        PutOutcome::Exists => match client.get_object(bucket, &key, None).await? {
            Some(bytes) if bytes == p.note.as_bytes() => Ok(()),
            Some(_) => Err(AnchorError::Fork {
                tenant: p.tenant.clone(),
                size: p.size,
                key: format!("s3://{bucket}/{key}"),
            }),
            None => Err(AnchorError::Protocol {
                op: "PutObject",
                target: format!("s3://{bucket}/{key}"),
                detail: "the key was reported to exist but cannot be read".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(interval: Duration, backlog: usize) -> AnchorStatus {
        let mut settings =
            AnchorSettings::new("s3://bkt/p".parse().unwrap(), Duration::from_secs(60));
        settings.interval = interval;
        settings.backlog = backlog;
        AnchorStatus {
            settings,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            metrics: AnchorMetrics::default(),
        }
    }

    fn pending(tenant: &str, size: u64) -> Pending {
        Pending {
            tenant: tenant.into(),
            size,
            note: format!("{tenant} {size}"),
            signed: Instant::now(),
        }
    }

    fn queued(s: &AnchorStatus) -> Vec<(String, u64)> {
        s.state
            .lock()
            .queue
            .iter()
            .map(|p| (p.tenant.clone(), p.size))
            .collect()
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_and_keeps_the_newest() {
        let s = status(Duration::ZERO, 3);
        for size in 1..=5 {
            s.push(pending("a", size));
        }
        s.push(pending("a", 5));
        assert_eq!(
            queued(&s),
            [("a".into(), 3), ("a".into(), 4), ("a".into(), 5)]
        );
        assert_eq!(s.state.lock().dropped, 2);
        let (healthy, report) = s.report();
        assert!(healthy);
        assert_eq!(report["backlog"], 3);
        assert_eq!(report["dropped"], 2);
    }

    #[test]
    fn an_interval_keeps_one_checkpoint_per_tenant_and_waits_for_it() {
        let s = status(Duration::from_secs(3600), 100);
        s.push(pending("a", 1));
        s.push(pending("b", 1));
        s.push(pending("a", 2));
        assert_eq!(queued(&s), [("b".into(), 1), ("a".into(), 2)]);
        let first = s.next_due().unwrap();
        assert_eq!((first.tenant.as_str(), first.size), ("b", 1));
        s.finish(&first, &Ok(()));
        // b was just uploaded: its next checkpoint waits for the interval, a's does not.
        s.push(pending("b", 2));
        let next = s.next_due().unwrap();
        assert_eq!((next.tenant.as_str(), next.size), ("a", 2));
        s.finish(&next, &Ok(()));
        assert!(matches!(s.next_due(), Err(Some(w)) if w > Duration::from_secs(3500)));
        // Stopping lifts the interval so the newest checkpoints still go out.
        s.state.lock().stopping = true;
        assert_eq!(s.next_due().unwrap().size, 2);
    }

    #[test]
    fn failures_and_forks_are_reported() {
        let s = status(Duration::ZERO, 10);
        s.push(pending("a", 1));
        s.push(pending("a", 2));
        let p = s.next_due().unwrap();
        s.finish(
            &p,
            &Err(AnchorError::Protocol {
                op: "PutObject",
                target: "x".into(),
                detail: "boom".into(),
            }),
        );
        let (healthy, report) = s.report();
        assert!(!healthy);
        assert_eq!(report["status"], "failing");
        assert_eq!(
            report["backlog"], 2,
            "a retryable failure keeps the checkpoint"
        );
        s.finish(&p, &Ok(()));
        assert_eq!(s.report().1["status"], "ok");
        let p = s.next_due().unwrap();
        s.finish(
            &p,
            &Err(AnchorError::Fork {
                tenant: "a".into(),
                size: 2,
                key: "k".into(),
            }),
        );
        let (healthy, report) = s.report();
        assert!(!healthy);
        assert_eq!(report["status"], "fork");
        assert_eq!(report["backlog"], 0, "a fork is never retried");
    }
}
