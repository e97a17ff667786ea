//! Index lag under ingest: a server with the search index's consumer (as `tally serve` runs it) on a fresh
//! data directory, batched HTTP ingest at a fixed rate, and a sampler that watches how far the
//! index trails the log.
//!
//! Lag is measured two ways at every sample: in events (published log size − committed index
//! count) and in time — how long ago the oldest event that is published but not yet
//! searchable became visible in the log. The sampler records when the log's size grew (every
//! [`SAMPLE_EVERY`]), so that age is known to within one sample period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_index::EventIndex;
use tally_server::app::{AdminKey, App, AppSettings, IndexSettings};
use tally_store::Log;

use super::{InvestigateError, Latency};
use crate::http::{run_http, HttpLoadOptions};
use crate::{LoadMode, LoadReport};

/// How long to wait for the index to catch up after ingest stops.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);

/// Sampling period of the log size and the index count.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The ingest driven during the lag measurement.
#[derive(Debug, Clone)]
pub struct LagOptions {
    /// Target events per second.
    pub rate: f64,
    /// Measured seconds of ingest (after `warmup`).
    pub duration: Duration,
    /// Ingest before measuring (sent, indexed, not counted).
    pub warmup: Duration,
    /// Events per request.
    pub batch_size: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// The index consumer's commit interval (`tally serve --index-commit-ms`).
    pub commit_interval: Duration,
    /// Generator seed.
    pub seed: u64,
}

impl Default for LagOptions {
    fn default() -> Self {
        LagOptions {
            rate: 100_000.0,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(3),
            batch_size: 1000,
            concurrency: 4,
            commit_interval: Duration::from_millis(250),
            seed: 1,
        }
    }
}

/// What the lag measurement found.
#[derive(Debug, Clone)]
pub struct LagReport {
    /// The ingest as the load generator saw it (achieved rate, acknowledgement latency).
    pub ingest: LoadReport,
    /// Target rate.
    pub target_rate: f64,
    /// Age of the oldest published-but-unsearchable event, over the measured samples.
    pub lag: Latency,
    /// Events published but not yet searchable: median, 99th percentile, maximum.
    pub backlog: (u64, u64, u64),
    /// From the end of ingest until the index had every event (or until giving up after
    /// [`CATCH_UP_LIMIT`]).
    pub catch_up: Duration,
    /// Whether the index had every event within [`CATCH_UP_LIMIT`].
    pub caught_up: bool,
    /// Samples taken during the measured phase.
    pub samples: usize,
}

/// Runs the measurement on a fresh data directory inside `scratch` (removed afterwards).
pub async fn measure(
    scratch: &std::path::Path,
    opts: &LagOptions,
    quiet: bool,
) -> Result<LagReport, InvestigateError> {
    let tmp = tempfile::Builder::new()
        .prefix("tally-lag-")
        .tempdir_in(scratch)
        .map_err(|e| InvestigateError::Io(scratch.to_path_buf(), e))?;
    // Tally as `tally serve` runs it, with the index's commit interval under test.
    let app = App::start(AppSettings {
        index: Some(IndexSettings {
            commit_interval: opts.commit_interval,
            ..IndexSettings::default()
        }),
        admin: AdminKey::Create("bench-lag".into()),
        ..AppSettings::new(tmp.path())
    })
    .await
    .map_err(|e| InvestigateError::Data(e.to_string()))?;
    let running = app
        .spawn("127.0.0.1:0")
        .await
        .map_err(|e| InvestigateError::Io("127.0.0.1:0".into(), e))?;
    let (url, log) = (running.url.clone(), running.log.clone());
    let token = running.admin_token.clone().unwrap_or_default();
    let index: Arc<dyn EventIndex> = running.index.clone().expect("started with an index");

    let tenant = tally_server::DEFAULT_TENANT;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (log, index, stop) = (log.clone(), index.clone(), stop.clone());
        std::thread::Builder::new()
            .name("lag-sampler".into())
            .spawn(move || sample(&log, &*index, tenant, &stop))
            .map_err(|e| InvestigateError::Task(e.to_string()))?
    };
    let started = Instant::now();
    let ingest = run_http(&HttpLoadOptions {
        url,
        token,
        mode: LoadMode::Batched {
            batch_size: opts.batch_size,
        },
        concurrency: opts.concurrency,
        duration: opts.duration,
        warmup: opts.warmup,
        total_events: None,
        seed: opts.seed,
        tenant: None,
        quiet,
        rate_limit: Some(opts.rate),
        ..HttpLoadOptions::default()
    })
    .await;
    let ingest_end = Instant::now();
    let measure_start = started + opts.warmup;
    // Let the index catch up (or give up) before stopping the sampler.
    let size = log.tenant(tenant).map_or(0, |t| t.size());
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    while index.indexed(tenant).unwrap_or(0) < size && Instant::now() < deadline {
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let caught_up = Instant::now();
    let complete = index.indexed(tenant).unwrap_or(0) >= size;
    stop.store(true, Ordering::Release);
    let samples = sampler
        .join()
        .map_err(|_| InvestigateError::Task("the lag sampler panicked".into()))?;
    running.stop().await;
    drop(tmp);
    let ingest = ingest?;

    let measured: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= measure_start && s.at <= ingest_end)
        .collect();
    let mut ages: Vec<Duration> = measured.iter().map(|s| s.age).collect();
    let mut backlog: Vec<u64> = measured.iter().map(|s| s.backlog).collect();
    backlog.sort_unstable();
    let pick = |v: &[u64], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(LagReport {
        ingest,
        target_rate: opts.rate,
        lag: Latency::from_durations(&mut ages),
        backlog: (
            pick(&backlog, 0.5),
            pick(&backlog, 0.99),
            backlog.last().copied().unwrap_or(0),
        ),
        catch_up: caught_up.saturating_duration_since(ingest_end),
        caught_up: complete,
        samples: measured.len(),
    })
}

struct Sample {
    at: Instant,
    backlog: u64,
    age: Duration,
}

/// Samples until `stop`; returns every sample.
fn sample(log: &Log, index: &dyn EventIndex, tenant: &str, stop: &AtomicBool) -> Vec<Sample> {
    // (when the size was first seen, the size): sizes only grow.
    let mut grown: Vec<(Instant, u64)> = Vec::new();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let size = log.tenant(tenant).map_or(0, |t| t.size());
        // Read after the size, so it never exceeds it.
        let indexed = index.indexed(tenant).unwrap_or(0);
        if grown.last().is_none_or(|&(_, s)| size > s) {
            grown.push((now, size));
        }
        let age = if indexed >= size {
            Duration::ZERO
        } else {
            // The first sample whose size covered event `indexed` (the oldest unsearchable).
            let i = grown.partition_point(|&(_, s)| s <= indexed);
            grown.get(i).map_or(Duration::ZERO, |&(t, _)| now - t)
        };
        samples.push(Sample {
            at: now,
            backlog: size.saturating_sub(indexed),
            age,
        });
        std::thread::sleep(SAMPLE_EVERY);
    }
    samples
}
