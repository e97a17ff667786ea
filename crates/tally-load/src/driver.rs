//! The measurement loop shared by the Tally and PostgreSQL runs, so both are timed identically:
//! the same phases, the same claiming of work, the same histogram.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::{LoadError, LoadMode, LoadReport};

/// Upper bound on distinct events generated before a run. Beyond it, bodies are reused with
/// fresh ids, which keeps memory bounded (about 50 MB) for long duration-based runs.
pub(crate) const POOL_EVENTS: usize = 100_000;

/// After a failed request, wait this long before the next one so that a server that is down
/// or shedding load is not hammered by a tight error loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Validated, mode-independent shape of a run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub label: String,
    /// Events per request: the batch size, or 1 in single mode.
    pub batch: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub total_events: Option<u64>,
    pub quiet: bool,
    /// Events per second to send at most, warm-up included (`None`: as fast as acknowledged).
    pub rate: Option<f64>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        system: &str,
        mode: LoadMode,
        concurrency: usize,
        duration: Duration,
        warmup: Duration,
        total_events: Option<u64>,
        quiet: bool,
    ) -> Result<Self, LoadError> {
        let batch = match mode {
            LoadMode::Batched { batch_size: 0 } => {
                return Err(LoadError::InvalidOptions(
                    "batch_size must be at least 1".into(),
                ))
            }
            LoadMode::Batched { batch_size } => batch_size,
            LoadMode::Single => 1,
        };
        if concurrency == 0 {
            return Err(LoadError::InvalidOptions(
                "concurrency must be at least 1".into(),
            ));
        }
        if total_events == Some(0) {
            return Err(LoadError::InvalidOptions(
                "total_events must be at least 1".into(),
            ));
        }
        if duration.is_zero() && total_events.is_none() {
            return Err(LoadError::InvalidOptions(
                "give a duration, a total number of events, or both".into(),
            ));
        }
        Ok(Self {
            label: format!("{system} {mode} c={concurrency}"),
            batch,
            concurrency,
            duration,
            warmup,
            total_events,
            quiet,
            rate: None,
        })
    }

    /// How many distinct events to pre-generate: enough for a count-based run, capped at
    /// `cap`, and rounded up to whole batches so every pooled body is a full batch.
    pub fn pool_events(&self, cap: usize) -> usize {
        let wanted = self.total_events.map_or(cap as u64, |t| t.min(cap as u64)) as usize;
        wanted.div_ceil(self.batch).max(1) * self.batch
    }
}

/// The RNG worker `index` draws fresh ids from: distinct per worker, reproducible per seed.
pub(crate) fn worker_rng(seed: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// One request's worth of work handed to a [`Worker`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    /// Global sequence number of the request. `index % pool_len` picks the pooled body and
    /// `index / pool_len` says how often it was used before, i.e. whether it needs fresh ids.
    pub index: u64,
    /// Events to send: a full batch, or fewer for the last request of a count-based run.
    pub events: usize,
}

impl Claim {
    /// The pooled body to use and whether it has been sent before (so its ids must be renewed).
    pub fn slot(&self, pool_len: usize) -> (usize, bool) {
        let len = pool_len as u64;
        ((self.index % len) as usize, self.index >= len)
    }
}

/// Sends one request and waits for its durable acknowledgement.
pub(crate) trait Worker: Send + 'static {
    /// `Ok` only if every event of the claim was acknowledged; `Err` carries a description of
    /// the failure for the report.
    fn send(&mut self, claim: Claim) -> impl Future<Output = Result<(), String>> + Send;
}

struct Shared {
    next_index: AtomicU64,
    /// Events still to be claimed by measured requests in a count-based run.
    remaining: AtomicU64,
    /// Measured events acknowledged so far, for the progress line.
    acked: AtomicU64,
    errors: AtomicU64,
    /// Events handed out so far, warm-up included: with a rate limit, a request is sent no
    /// earlier than `start + scheduled / rate`.
    scheduled: AtomicU64,
}

struct TaskResult {
    histogram: Histogram<u64>,
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    finished: Instant,
}

/// Runs `workers` concurrently (one task each) through the warm-up and measured phases.
pub(crate) async fn drive<W: Worker>(
    plan: &Plan,
    workers: Vec<W>,
) -> Result<LoadReport, LoadError> {
    let shared = Arc::new(Shared {
        next_index: AtomicU64::new(0),
        remaining: AtomicU64::new(plan.total_events.unwrap_or(u64::MAX)),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        scheduled: AtomicU64::new(0),
    });
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let deadline = (!plan.duration.is_zero()).then(|| measure_start + plan.duration);

    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            let shared = Arc::clone(&shared);
            let plan = plan.clone();
            tokio::spawn(run_worker(
                worker,
                plan,
                shared,
                start,
                measure_start,
                deadline,
            ))
        })
        .collect();
    let progress = (!plan.quiet).then(|| spawn_progress(plan, Arc::clone(&shared), measure_start));

    let mut results = Vec::with_capacity(tasks.len());
    let mut panicked = None;
    for task in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(e) => panicked = Some(e.to_string()),
        }
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    if let Some(e) = panicked {
        return Err(LoadError::Task(e));
    }

    let mut histogram = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    let (mut events, mut requests, mut errors, mut first_error) = (0, 0, 0, None);
    let mut end = measure_start;
    for r in results {
        histogram
            .add(&r.histogram)
            .expect("auto-resizing histograms merge");
        events += r.events;
        requests += r.requests;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
        end = end.max(r.finished);
    }
    if events == 0 && errors > 0 {
        return Err(LoadError::NoSuccess {
            errors,
            first_error: first_error.unwrap_or_default(),
        });
    }
    let elapsed = end - measure_start;
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(LoadReport {
        label: plan.label.clone(),
        events,
        requests,
        errors,
        elapsed,
        events_per_sec: events as f64 / secs,
        requests_per_sec: requests as f64 / secs,
        p50_us: histogram.value_at_quantile(0.50),
        p90_us: histogram.value_at_quantile(0.90),
        p99_us: histogram.value_at_quantile(0.99),
        max_us: histogram.max(),
        first_error,
    })
}

async fn run_worker<W: Worker>(
    mut worker: W,
    plan: Plan,
    shared: Arc<Shared>,
    start: Instant,
    measure_start: Instant,
    deadline: Option<Instant>,
) -> TaskResult {
    let mut result = TaskResult {
        histogram: Histogram::new(3).expect("3 significant figures is valid"),
        events: 0,
        requests: 0,
        errors: 0,
        first_error: None,
        finished: measure_start,
    };
    loop {
        let now = Instant::now();
        let measured = now >= measure_start;
        if measured && deadline.is_some_and(|d| now >= d) {
            break;
        }
        let events = if measured {
            // Claim from the shared budget so a count-based run sends exactly `total_events`
            // however the requests interleave across tasks.
            let claimed =
                shared
                    .remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                        (r > 0).then(|| r - r.min(plan.batch as u64))
                    });
            match claimed {
                Ok(before) => before.min(plan.batch as u64) as usize,
                Err(_) => break,
            }
        } else {
            plan.batch
        };
        let claim = Claim {
            index: shared.next_index.fetch_add(1, Ordering::Relaxed),
            events,
        };
        if let Some(rate) = plan.rate {
            // A fixed schedule rather than a pause per task: a request that comes late (the
            // server was slow) is sent at once, so the average rate is kept while it can be.
            let before = shared.scheduled.fetch_add(events as u64, Ordering::Relaxed);
            let due = start + Duration::from_secs_f64(before as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        let sent = Instant::now();
        let outcome = worker.send(claim).await;
        let latency_us = sent.elapsed().as_micros() as u64;
        match outcome {
            Ok(()) if measured => {
                result
                    .histogram
                    .record(latency_us.max(1))
                    .expect("auto-resizing histogram");
                result.events += events as u64;
                result.requests += 1;
                shared.acked.fetch_add(events as u64, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                if measured {
                    result.errors += 1;
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                result.first_error.get_or_insert(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    result.finished = Instant::now();
    result
}

fn spawn_progress(
    plan: &Plan,
    shared: Arc<Shared>,
    measure_start: Instant,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(plan.label.clone());
    let ticker_bar = bar.clone();
    let total = plan.total_events;
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(250));
        loop {
            interval.tick().await;
            let now = Instant::now();
            if now < measure_start {
                ticker_bar.set_message(format!("warming up ({:.0?} left)", measure_start - now));
            } else {
                let acked = shared.acked.load(Ordering::Relaxed);
                let rate = acked as f64 / (now - measure_start).as_secs_f64().max(1e-3);
                let of_total = total.map(|t| format!(" of {t}")).unwrap_or_default();
                ticker_bar.set_message(format!(
                    "{acked}{of_total} events acknowledged, {rate:.0}/s, {} errors",
                    shared.errors.load(Ordering::Relaxed)
                ));
            }
            ticker_bar.tick();
        }
    });
    (bar, ticker)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acknowledges everything except every `fail_every`-th request.
    struct FakeWorker {
        fail_every: u64,
        sent_events: Arc<AtomicU64>,
    }

    impl Worker for FakeWorker {
        async fn send(&mut self, claim: Claim) -> Result<(), String> {
            tokio::task::yield_now().await;
            if self.fail_every > 0 && claim.index % self.fail_every == self.fail_every - 1 {
                return Err(format!("request {} refused", claim.index));
            }
            self.sent_events
                .fetch_add(claim.events as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    fn plan(batch: usize, total: Option<u64>, duration_ms: u64) -> Plan {
        Plan::new(
            "fake",
            LoadMode::Batched { batch_size: batch },
            3,
            Duration::from_millis(duration_ms),
            Duration::ZERO,
            total,
            true,
        )
        .unwrap()
    }

    fn workers(n: usize, fail_every: u64) -> (Vec<FakeWorker>, Arc<AtomicU64>) {
        let sent = Arc::new(AtomicU64::new(0));
        let w = (0..n)
            .map(|_| FakeWorker {
                fail_every,
                sent_events: Arc::clone(&sent),
            })
            .collect();
        (w, sent)
    }

    #[tokio::test]
    async fn count_based_run_sends_exactly_the_total() {
        let (w, sent) = workers(3, 0);
        let report = drive(&plan(7, Some(100), 0), w).await.unwrap();
        assert_eq!(report.events, 100);
        assert_eq!(report.requests, 15, "14 full batches of 7 and one of 2");
        assert_eq!(sent.load(Ordering::Relaxed), 100);
        assert_eq!(report.errors, 0);
        assert!(report.p50_us <= report.p99_us && report.p99_us <= report.max_us);
    }

    #[tokio::test]
    async fn failures_are_counted_not_acknowledged() {
        let (w, sent) = workers(3, 4);
        let report = drive(&plan(10, Some(400), 0), w).await.unwrap();
        assert_eq!(report.requests + report.errors, 40);
        assert_eq!(report.errors, 10);
        assert_eq!(report.events, 300);
        assert_eq!(sent.load(Ordering::Relaxed), 300);
        assert!(report.first_error.unwrap().ends_with("refused"));
    }

    #[tokio::test]
    async fn all_failures_is_an_error() {
        let (w, _) = workers(2, 1);
        match drive(&plan(10, Some(50), 0), w).await {
            Err(LoadError::NoSuccess {
                errors,
                first_error,
            }) => {
                assert_eq!(errors, 5);
                assert!(first_error.contains("refused"));
            }
            other => panic!("expected NoSuccess, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn duration_based_run_stops_with_progress_drawn() {
        let (w, _) = workers(3, 0);
        let mut plan = plan(5, None, 300);
        plan.warmup = Duration::from_millis(100);
        plan.quiet = false;
        let report = drive(&plan, w).await.unwrap();
        assert!(report.events > 0 && report.events % 5 == 0);
        assert!(report.elapsed >= Duration::from_millis(300));
    }

    #[test]
    fn invalid_plans_are_refused() {
        let mode = LoadMode::Batched { batch_size: 0 };
        assert!(Plan::new(
            "x",
            mode,
            1,
            Duration::from_secs(1),
            Duration::ZERO,
            None,
            true
        )
        .is_err());
        assert!(Plan::new(
            "x",
            LoadMode::Single,
            0,
            Duration::from_secs(1),
            Duration::ZERO,
            None,
            true
        )
        .is_err());
        assert!(Plan::new(
            "x",
            LoadMode::Single,
            1,
            Duration::ZERO,
            Duration::ZERO,
            None,
            true
        )
        .is_err());
        assert!(Plan::new(
            "x",
            LoadMode::Single,
            1,
            Duration::ZERO,
            Duration::ZERO,
            Some(0),
            true
        )
        .is_err());
    }

    #[test]
    fn pool_is_whole_batches_and_capped() {
        assert_eq!(plan(7, Some(100), 0).pool_events(1_000), 105);
        assert_eq!(plan(7, Some(100_000), 0).pool_events(1_000), 1_001);
        assert_eq!(plan(7, None, 10).pool_events(1_000), 1_001);
        let claim = Claim {
            index: 150,
            events: 7,
        };
        assert_eq!(claim.slot(15), (0, true));
        assert_eq!(
            Claim {
                index: 14,
                events: 7
            }
            .slot(15),
            (14, false)
        );
    }
}
