//! The investigation benchmark behind `tally-bench search`: the seeds' investigation queries
//! on a log of millions of realistic events, Tally against PostgreSQL, in one run.
//!
//! [`run`] goes through these steps (each in its own module):
//!
//! 1. [`dataset`]: fill a data directory with `events` generated events spread over `span`
//!    (embedded store, no HTTP), or reuse one the benchmark filled before; pick the query
//!    parameters from the population (a popular and a typical person, a popular and a typical
//!    document, …).
//! 2. [`search::rebuild`]: rebuild the search index from the log with the index consumer's code;
//!    rebuild rate and index size per event.
//! 3. [`baseline::load`]: copy the same records into PostgreSQL, build the baseline's indexes
//!    plus a GIN full-text index; load time and size per event.
//! 4. [`queries`]: for each query, check that Tally and PostgreSQL return the same first page
//!    (the same event ids in the same order) and the same number of matches, then time
//!    `runs` first pages of 50 records each — over Tally's HTTP API, from Tally's engine
//!    directly, and from PostgreSQL (`ORDER BY time DESC LIMIT 50`).
//! 5. [`lag`]: index lag while ingesting at a fixed rate over HTTP, on a fresh directory.
//!
//! The library takes plain options and an [`Observer`] for progress; the CLI draws bars.

pub mod baseline;
pub mod dataset;
pub mod lag;
pub mod queries;
pub mod search;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_index::EventIndex;

pub use baseline::PgLoadStats;
pub use dataset::{FillStats, Manifest, Params, Picked};
pub use lag::{LagOptions, LagReport};
pub use queries::InvestigationQuery;
pub use search::RebuildStats;

/// Rows of a first page, as the seeds ask.
pub const PAGE: usize = 50;

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// The options cannot describe a run.
    #[error("invalid options: {0}")]
    Options(String),
    /// The data directory or its log.
    #[error("data: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    Io(PathBuf, std::io::Error),
    /// The search index.
    #[error("search index: {0}")]
    Index(String),
    /// A search over HTTP failed.
    #[error("search: {0}")]
    Search(String),
    /// PostgreSQL.
    #[error("PostgreSQL, {context}: {message}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The driver's error with its causes.
        message: String,
    },
    /// The ingest of the lag measurement.
    #[error("ingest: {0}")]
    Load(#[from] crate::LoadError),
    /// Tally and PostgreSQL disagree on a query's results.
    #[error("{query}: {detail}")]
    Mismatch {
        /// The query's name.
        query: String,
        /// What differs.
        detail: String,
    },
    /// A worker thread or task failed.
    #[error("a task failed: {0}")]
    Task(String),
}

/// Told about the benchmark's progress. Every method has a do-nothing default.
pub trait Observer: Send + Sync {
    /// A step starts; `total` is its number of units (events) when known.
    fn start(&self, _step: &str, _total: Option<u64>) {}
    /// `n` more units of the current step are done.
    fn advance(&self, _n: u64) {}
    /// The current step is done.
    fn finish(&self) {}
    /// A line worth telling the user now (what was reused, what was picked).
    fn note(&self, _text: &str) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct InvestigateOptions {
    /// Data directory to fill or reuse.
    pub data: PathBuf,
    /// Events in the data set.
    pub events: u64,
    /// Event times are spread over this span, ending "now".
    pub span: Duration,
    /// Generator seed.
    pub seed: u64,
    /// Tenant holding the events.
    pub tenant: String,
    /// PostgreSQL connection string; `None` skips the comparison.
    pub postgres: Option<String>,
    /// Schema of the PostgreSQL copy (dropped and recreated unless `reuse_postgres`).
    pub pg_schema: String,
    /// Parallel `COPY` connections.
    pub pg_copy_streams: usize,
    /// Use the PostgreSQL copy already in `pg_schema` when it has `events` rows.
    pub reuse_postgres: bool,
    /// Use the search index as it is when it covers the data set, instead of rebuilding it
    /// (the rebuild is then not measured).
    pub reuse_index: bool,
    /// Timed repetitions of each query per system.
    pub runs: usize,
    /// Untimed repetitions before them.
    pub warmup: usize,
    /// The lag measurement; `None` skips it.
    pub lag: Option<LagOptions>,
    /// No progress lines from the ingest of the lag measurement.
    pub quiet: bool,
}

impl Default for InvestigateOptions {
    fn default() -> Self {
        InvestigateOptions {
            data: PathBuf::from("./bench-search-data"),
            events: 10_000_000,
            span: Duration::from_secs(120 * 86_400),
            seed: 1,
            tenant: "bench".into(),
            postgres: Some("host=127.0.0.1 user=postgres dbname=test".into()),
            pg_schema: "tally_investigate".into(),
            pg_copy_streams: 1,
            reuse_postgres: false,
            reuse_index: false,
            runs: 200,
            warmup: 20,
            lag: Some(LagOptions::default()),
            quiet: false,
        }
    }
}

/// Latency percentiles of repeated runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    /// Percentiles of `samples` (sorted in place); zeros when empty.
    pub fn from_durations(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// One query's results.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The query.
    pub query: InvestigationQuery,
    /// Every match, as Tally's index counts it.
    pub matches: u64,
    /// Rows on the first page.
    pub page_rows: usize,
    /// First page over HTTP (what a user gets, audit append included).
    pub tally_http: Latency,
    /// First page from the engine (index search and record reads only).
    pub tally_engine: Latency,
    /// First page from PostgreSQL, when compared.
    pub postgres: Option<Latency>,
    /// PostgreSQL's plan for the first page.
    pub pg_plan: Option<String>,
}

impl QueryResult {
    /// The target p99 of the seeds: 200 ms for full text, 20 ms for the rest.
    pub fn target(&self) -> Duration {
        if self.query.full_text {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(20)
        }
    }
}

/// Everything [`run`] measured.
#[derive(Debug, Clone)]
pub struct InvestigateReport {
    /// The data set.
    pub manifest: Manifest,
    /// The fill, when this run filled the directory.
    pub fill: Option<FillStats>,
    /// Bytes of the tenant's log directory.
    pub log_bytes: u64,
    /// The rebuild, unless the index was reused.
    pub rebuild: Option<RebuildStats>,
    /// Bytes of the index directory when queries ran.
    pub index_bytes: u64,
    /// The PostgreSQL load, unless skipped or reused.
    pub pg_load: Option<PgLoadStats>,
    /// Bytes of the PostgreSQL table, B-tree indexes and GIN index, when compared.
    pub pg_bytes: Option<(u64, u64, u64)>,
    /// Per query.
    pub queries: Vec<QueryResult>,
    /// The lag measurement, unless skipped.
    pub lag: Option<LagReport>,
    /// Timed repetitions per query and system.
    pub runs: usize,
}

/// Runs the whole benchmark; see the [module docs](self).
pub async fn run(
    opts: &InvestigateOptions,
    observer: &dyn Observer,
) -> Result<InvestigateReport, InvestigateError> {
    if opts.events == 0 || opts.runs == 0 {
        return Err(InvestigateError::Options(
            "events and runs must be at least 1".into(),
        ));
    }
    let data = dataset::prepare(
        &opts.data,
        opts.events,
        opts.span,
        opts.seed,
        &opts.tenant,
        observer,
    )
    .await?;
    let result = measure(opts, &data, observer).await;
    let log = data.log.clone();
    tokio::task::spawn_blocking(move || log.shutdown())
        .await
        .map_err(|e| InvestigateError::Task(e.to_string()))?;
    let mut report = result?;
    report.fill = data.fill;
    if let Some(lag) = &opts.lag {
        let scratch = opts
            .data
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(std::env::temp_dir);
        // The load generator draws its own progress line.
        observer.note(&format!(
            "index lag: ingesting {:.0} events/s for {} s (+{} s warm-up) into a fresh directory",
            lag.rate,
            lag.duration.as_secs(),
            lag.warmup.as_secs()
        ));
        report.lag = Some(lag::measure(&scratch, lag, opts.quiet).await?);
    }
    Ok(report)
}

async fn measure(
    opts: &InvestigateOptions,
    data: &dataset::Dataset,
    observer: &dyn Observer,
) -> Result<InvestigateReport, InvestigateError> {
    let manifest = &data.manifest;
    let tenant = manifest.tenant.clone();
    let log = data.log.clone();
    let tlog = log
        .tenant(&tenant)
        .ok_or_else(|| InvestigateError::Data(format!("tenant {tenant} has no log")))?;
    let p = &manifest.params;
    observer.note(&format!(
        "parameters: popular person {} ({} events, rank {}/{}), typical person {} ({} events, rank {}/{}), \
         suspect {} ({} DELETE/EXPORT events), popular document {} ({} events), typical document {} ({} events), \
         e-mail {} (person of rank {})",
        p.actor_popular.value, p.actor_popular.events, p.actor_popular.rank.0, p.actor_popular.rank.1,
        p.actor_typical.value, p.actor_typical.events, p.actor_typical.rank.0, p.actor_typical.rank.1,
        p.actor_suspect.value, p.actor_suspect.events,
        p.document_popular.value, p.document_popular.events,
        p.document_typical.value, p.document_typical.events,
        p.email.value, p.email.rank.0,
    ));

    // 2. The index.
    let index = search::open_index(&log)?;
    let covered = index.indexed(&tenant).unwrap_or(0) >= manifest.events;
    let rebuild = if opts.reuse_index && covered {
        observer.note("reusing the search index (rebuild not measured)");
        None
    } else {
        let (log, index, tenant, events) =
            (log.clone(), index.clone(), tenant.clone(), manifest.events);
        // The observer is borrowed, so the rebuild runs here, on a blocking-capable thread.
        Some(tokio::task::block_in_place(|| {
            search::rebuild(&log, &index, &tenant, events, observer)
        })?)
    };
    let index_bytes = dataset::dir_bytes(&log.data_dir().index_path());

    // 3. PostgreSQL.
    let mut pg_load = None;
    let mut pg = None;
    if let Some(dsn) = &opts.postgres {
        let reuse = if opts.reuse_postgres {
            let client = baseline::connect(dsn).await?;
            matches!(baseline::sizes(&client, &opts.pg_schema).await,
                     Ok((rows, ..)) if rows == manifest.events)
        } else {
            false
        };
        if reuse {
            observer.note("reusing the PostgreSQL copy (load not measured)");
        } else {
            pg_load = Some(
                baseline::load(
                    dsn,
                    &opts.pg_schema,
                    tlog.clone(),
                    manifest.events,
                    opts.pg_copy_streams,
                    observer,
                )
                .await?,
            );
        }
        pg = Some(baseline::PgSide::open(dsn, &opts.pg_schema).await?);
    }
    let pg_bytes = match &opts.postgres {
        Some(dsn) => {
            let client = baseline::connect(dsn).await?;
            let (_, t, b, g) = baseline::sizes(&client, &opts.pg_schema).await?;
            Some((t, b, g))
        }
        None => None,
    };

    // 4. Queries.
    let server = search::serve(&log, index.clone()).await?;
    let http = search::HttpSearcher::new(&server, &tenant)?;
    let engine: Arc<dyn EventIndex> = index.clone();
    let mut results = Vec::new();
    let queries = queries::investigation_queries(manifest);
    observer.start("queries", Some(queries.len() as u64));
    for query in queries {
        let ids = http.first_page_ids(&query.tally, PAGE).await?;
        let matches = {
            let (engine, tenant, q) = (engine.clone(), tenant.clone(), query.tally.clone());
            tokio::task::spawn_blocking(move || search::engine_count(&*engine, &tenant, &q))
                .await
                .map_err(|e| InvestigateError::Task(e.to_string()))??
        };
        let (pg_latency, pg_plan) = match &pg {
            Some(pg) => {
                let prepared = pg.prepare(&query, PAGE).await?;
                let pg_ids = pg.first_page(&prepared).await?;
                if pg_ids != ids {
                    return Err(mismatch(&query, &ids, &pg_ids));
                }
                let pg_count = pg.count(&prepared).await?;
                if pg_count != matches {
                    return Err(InvestigateError::Mismatch {
                        query: query.name.into(),
                        detail: format!("Tally counts {matches} matches, PostgreSQL {pg_count}"),
                    });
                }
                let mut times = Vec::with_capacity(opts.runs);
                for i in 0..opts.warmup + opts.runs {
                    let started = Instant::now();
                    std::hint::black_box(pg.first_page(&prepared).await?);
                    if i >= opts.warmup {
                        times.push(started.elapsed());
                    }
                }
                (
                    Some(Latency::from_durations(&mut times)),
                    Some(pg.explain(&query).await?),
                )
            }
            None => (None, None),
        };
        let mut times = Vec::with_capacity(opts.runs);
        for i in 0..opts.warmup + opts.runs {
            let started = Instant::now();
            std::hint::black_box(http.fetch(&query.tally, PAGE).await?);
            if i >= opts.warmup {
                times.push(started.elapsed());
            }
        }
        let tally_http = Latency::from_durations(&mut times);
        let tally_engine = {
            let (log, engine, tenant, q) = (
                log.clone(),
                engine.clone(),
                tenant.clone(),
                query.tally.clone(),
            );
            let (warmup, runs) = (opts.warmup, opts.runs);
            tokio::task::spawn_blocking(move || {
                let mut times = Vec::with_capacity(runs);
                for i in 0..warmup + runs {
                    let started = Instant::now();
                    search::engine_first_page(&log, &*engine, &tenant, &q, PAGE)?;
                    if i >= warmup {
                        times.push(started.elapsed());
                    }
                }
                Ok::<_, InvestigateError>(Latency::from_durations(&mut times))
            })
            .await
            .map_err(|e| InvestigateError::Task(e.to_string()))??
        };
        results.push(QueryResult {
            page_rows: ids.len(),
            query,
            matches,
            tally_http,
            tally_engine,
            postgres: pg_latency,
            pg_plan,
        });
        observer.advance(1);
    }
    observer.finish();
    drop(server);

    Ok(InvestigateReport {
        manifest: manifest.clone(),
        fill: None,
        log_bytes: dataset::dir_bytes(&log.data_dir().tenant(&tenant).root().to_path_buf()),
        rebuild,
        index_bytes,
        pg_load,
        pg_bytes,
        queries: results,
        lag: None,
        runs: opts.runs,
    })
}

fn mismatch(query: &InvestigationQuery, tally: &[String], pg: &[String]) -> InvestigateError {
    let first_difference = tally
        .iter()
        .zip(pg)
        .position(|(a, b)| a != b)
        .unwrap_or(tally.len().min(pg.len()));
    InvestigateError::Mismatch {
        query: query.name.into(),
        detail: format!(
            "first pages differ: Tally has {} rows, PostgreSQL {}; first difference at row {} \
             (Tally {:?}, PostgreSQL {:?})",
            tally.len(),
            pg.len(),
            first_difference,
            tally.get(first_difference),
            pg.get(first_difference)
        ),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn ratio(pg: Duration, tally: Duration) -> String {
    let r = pg.as_secs_f64() / tally.as_secs_f64().max(f64::MIN_POSITIVE);
    if r < 1.0 {
        format!("{r:.2}x")
    } else {
        format!("{r:.1}x")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn per_event(bytes: u64, events: u64) -> String {
    format!("{:.0} B/event", bytes as f64 / events.max(1) as f64)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

impl InvestigateReport {
    /// The report as text for a terminal: parameters, sizes, a table of queries with ratios,
    /// lag, and each target with whether it is met.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let m = &self.manifest;
        let _ = writeln!(
            out,
            "data set: {} events of tenant {}, seed {}, times spread over {} days up to {}",
            m.events,
            m.tenant,
            m.seed,
            m.span_secs / 86_400,
            queries::rfc3339_ms(queries::Bounds::new(m.now_ms).now)
        );
        if let Some(f) = &self.fill {
            let _ = writeln!(
                out,
                "fill: {:.1} s ({:.0} events/s through the embedded store)",
                f.elapsed.as_secs_f64(),
                f.events as f64 / f.elapsed.as_secs_f64().max(1e-9)
            );
        }
        let _ = writeln!(
            out,
            "log: {} ({})",
            mib(self.log_bytes),
            per_event(self.log_bytes, m.events)
        );
        match &self.rebuild {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "index rebuild: {} events in {:.1} s = {:.0} events/s; {} after commit ({}), \
                     merges settled in {:.1} s: {} in {} segments ({})",
                    r.events,
                    r.elapsed.as_secs_f64(),
                    r.rate(),
                    mib(r.bytes_after_commit),
                    per_event(r.bytes_after_commit, r.events),
                    r.merge_wait.as_secs_f64(),
                    mib(r.bytes_settled),
                    r.segments,
                    per_event(r.bytes_settled, r.events)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "index: reused, {} ({})",
                    mib(self.index_bytes),
                    per_event(self.index_bytes, m.events)
                );
            }
        }
        if let Some(l) = &self.pg_load {
            let idx: Vec<String> = l
                .indexes
                .iter()
                .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
                .collect();
            let _ = writeln!(
                out,
                "postgres load: COPY {:.1} s ({:.0} rows/s), indexes: {}, ANALYZE {:.1} s; total {:.1} s",
                l.copy.as_secs_f64(),
                l.rows as f64 / l.copy.as_secs_f64().max(1e-9),
                idx.join(", "),
                l.analyze.as_secs_f64(),
                l.total().as_secs_f64()
            );
        }
        if let Some((t, b, g)) = self.pg_bytes {
            let _ = writeln!(
                out,
                "postgres size: table {} ({}), B-tree indexes {} ({}), GIN {} ({}); total {}",
                mib(t),
                per_event(t, m.events),
                mib(b),
                per_event(b, m.events),
                mib(g),
                per_event(g, m.events),
                per_event(t + b + g, m.events)
            );
        }
        let _ = writeln!(
            out,
            "\nfirst page of {PAGE} rows with records, {} timed runs each (ms):",
            self.runs
        );
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "query",
            "matches",
            "http p50",
            "http p99",
            "eng p50",
            "eng p99",
            "pg p50",
            "pg p99",
            "pg/http",
            "target"
        );
        for q in &self.queries {
            let (pg50, pg99, r) = match &q.postgres {
                Some(pg) => (ms(pg.p50), ms(pg.p99), ratio(pg.p50, q.tally_http.p50)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
                q.query.name,
                q.matches,
                ms(q.tally_http.p50),
                ms(q.tally_http.p99),
                ms(q.tally_engine.p50),
                ms(q.tally_engine.p99),
                pg50,
                pg99,
                r,
                met(q.tally_http.p99 < q.target())
            );
        }
        let _ = writeln!(out, "\nqueries:");
        for q in &self.queries {
            let _ = writeln!(
                out,
                "  {}: {}\n      tally: {}",
                q.query.name, q.query.question, q.query.tally
            );
            let _ = writeln!(out, "      postgres: WHERE {}", q.query.pg_where);
        }
        if let Some(l) = &self.lag {
            let _ = writeln!(
                out,
                "\nindex lag: target {:.0} events/s, achieved {:.0} events/s ({} events, ingest p99 {:.1} ms); \
                 lag p50 {} ms, p99 {} ms, max {} ms; backlog p50 {} / p99 {} / max {} events; \
                 {} {:.2} s after ingest stopped; {} samples",
                l.target_rate,
                l.ingest.events_per_sec,
                l.ingest.events,
                l.ingest.p99_us as f64 / 1000.0,
                ms(l.lag.p50),
                ms(l.lag.p99),
                ms(l.lag.max),
                l.backlog.0,
                l.backlog.1,
                l.backlog.2,
                if l.caught_up { "caught up" } else { "still behind (gave up)" },
                l.catch_up.as_secs_f64(),
                l.samples
            );
        }
        let _ = writeln!(out, "\ntargets:");
        for q in &self.queries {
            let _ = writeln!(
                out,
                "  {:<24} p99 {} ms over HTTP < {} ms: {}",
                q.query.name,
                ms(q.tally_http.p99),
                q.target().as_millis(),
                met(q.tally_http.p99 < q.target())
            );
        }
        if let Some(l) = &self.lag {
            let rate_ok = l.ingest.events_per_sec >= 0.95 * l.target_rate;
            let _ = writeln!(
                out,
                "  index lag p99 {} ms < 1000 ms: {}; while ingesting {:.0} events/s (target {:.0}): {}",
                ms(l.lag.p99),
                met(l.lag.p99 < Duration::from_secs(1)),
                l.ingest.events_per_sec,
                l.target_rate,
                met(rate_ok)
            );
        }
        out
    }

    /// The query table as Markdown (for BENCHMARKS.md).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| query | matches | Tally HTTP p50 | Tally HTTP p99 | engine p50 | engine p99 | PG p50 | PG p99 | PG/Tally p50 | PG/Tally p99 | target p99 |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for q in &self.queries {
            let (pg50, pg99, r50, r99) = match &q.postgres {
                Some(pg) => (
                    ms(pg.p50),
                    ms(pg.p99),
                    ratio(pg.p50, q.tally_http.p50),
                    ratio(pg.p99, q.tally_http.p99),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | < {} ms: {} |",
                q.query.name,
                q.matches,
                ms(q.tally_http.p50),
                ms(q.tally_http.p99),
                ms(q.tally_engine.p50),
                ms(q.tally_engine.p99),
                pg50,
                pg99,
                r50,
                r99,
                q.target().as_millis(),
                met(q.tally_http.p99 < q.target())
            );
        }
        out
    }

    /// PostgreSQL's plan of each query, for explaining the numbers.
    pub fn plans(&self) -> String {
        let mut out = String::new();
        for q in &self.queries {
            if let Some(plan) = &q.pg_plan {
                let _ = writeln!(out, "-- {}\n{plan}\n", q.query.name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        let l = Latency::from_durations(&mut v);
        assert_eq!(l.p50, Duration::from_millis(100));
        assert_eq!(l.p99, Duration::from_millis(198));
        assert_eq!(l.max, Duration::from_millis(200));
        assert_eq!(Latency::from_durations(&mut []), Latency::default());
    }
}
