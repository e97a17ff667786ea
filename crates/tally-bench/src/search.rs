//! `tally-bench search`: the investigation benchmark (search latency, index rebuild, index
//! size and lag on millions of events), Tally against PostgreSQL in one run. The work is in
//! `tally_load::investigate`; this file parses options and draws progress.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tally_load::investigate::{self, InvestigateOptions, LagOptions, Observer};

/// Measure investigation queries on a large log: Tally against PostgreSQL, same events, same run.
///
/// Steps: (1) fill DATA with N generated events (Zipf-distributed actors and resources, PII in
/// snapshots, times spread evenly over the last --span-days days) through the embedded store,
/// or reuse DATA if an earlier run filled it with the same --events, --seed and --span-days;
/// (2) rebuild the search index from the log (the code `tally reindex` runs) and wait for its
/// merges; (3) COPY the same records into PostgreSQL (a table shaped like `tally-bench ingest`'s
/// baseline, indexes on (actor, time), (resource type, resource id, time), (action, time) and a
/// GIN full-text index); (4) check that both return the same first page and match count for
/// every query, then time --runs first pages of 50 records each; (5) measure index lag while
/// ingesting --lag-rate events/s over HTTP into a fresh directory.
///
/// Queries (parameters picked from the generated population and printed): everything a person
/// did in the last 30 days (the most active person, and a median one); all access to a document
/// (the most accessed, and a median one); failed logins in the last hour; role grants this
/// quarter; one person's DELETE/EXPORT events in 30 days; full text: a word inside snapshots,
/// and an e-mail address as a phrase.
///
/// What the numbers mean:
///   http p50/p99  a first page of 50 records from GET /v1/events in this process: what a user
///                 waits for, including the audit event each search appends (an fsync)
///   eng p50/p99   the same page from the index and the log directly (no HTTP, no audit)
///   pg p50/p99    SELECT … ORDER BY time DESC LIMIT 50 on PostgreSQL (prepared statement)
///   pg/http       PostgreSQL's p50 over Tally's: above 1 means Tally is faster
///   lag           how long the oldest event that is in the log but not yet searchable has
///                 waited, sampled every 10 ms while ingesting
///   B/event       bytes on disk divided by events (log, index, PostgreSQL table and indexes)
///
/// Duration: at 10 million events on 2 vCPUs most of a run is PostgreSQL: its GIN index build
/// (about 25 minutes) and its full-text first pages (seconds each, --runs + --warmup times per
/// query); a rerun with --reuse-index --reuse-postgres skips the fill, rebuild and load.
///
/// Examples:
///   tally-bench search --events 1000000 --data /tmp/bs-1m
///   tally-bench search --data /var/tmp/bs-10m --markdown          (10 million events, the default)
///   tally-bench search --data /var/tmp/bs-10m --reuse-index --reuse-postgres --no-lag
///   tally-bench search --events 100000 --no-postgres --runs 50
// Verbatim: the tables and examples above keep their line breaks.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchSearchArgs {
    /// Events in the data set.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Data directory: filled on the first run, reused by later runs with the same --events,
    /// --seed and --span-days (so reruns skip the fill). Must be new or made by this command.
    #[arg(long, short = 'd', default_value = "./bench-search-data")]
    data: PathBuf,
    /// Days of event time the data set spans, ending when it is filled.
    #[arg(long, default_value_t = 120)]
    span_days: u64,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PostgreSQL connection string (trust or password in the string).
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=test")]
    postgres: String,
    /// Schema for the PostgreSQL copy; dropped and recreated unless --reuse-postgres.
    #[arg(long, default_value = "tally_investigate")]
    pg_schema: String,
    /// Skip PostgreSQL (no comparison, no cross-check).
    #[arg(long)]
    no_postgres: bool,
    /// Keep the PostgreSQL copy from an earlier run when it has --events rows (load not timed).
    #[arg(long)]
    reuse_postgres: bool,
    /// Keep the search index from an earlier run when it covers the data (rebuild not timed).
    #[arg(long)]
    reuse_index: bool,
    /// Timed first pages per query and system.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Untimed first pages per query and system, before the timed ones.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Skip the index lag measurement.
    #[arg(long)]
    no_lag: bool,
    /// Ingest rate of the lag measurement, events per second.
    #[arg(long, default_value_t = 100_000.0)]
    lag_rate: f64,
    /// Measured seconds of the lag measurement.
    #[arg(long, default_value_t = 30)]
    lag_secs: u64,
    /// Also print the query table as Markdown (for BENCHMARKS.md) and PostgreSQL's plans.
    #[arg(long)]
    markdown: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub async fn run(args: BenchSearchArgs) -> Result<()> {
    let opts = InvestigateOptions {
        data: args.data.clone(),
        events: args.events,
        span: Duration::from_secs(args.span_days.max(1) * 86_400),
        seed: args.seed,
        tenant: "bench".into(),
        postgres: (!args.no_postgres).then(|| args.postgres.clone()),
        pg_schema: args.pg_schema.clone(),
        pg_copy_streams: 1,
        reuse_postgres: args.reuse_postgres,
        reuse_index: args.reuse_index,
        runs: args.runs.max(1),
        warmup: args.warmup,
        lag: (!args.no_lag).then(|| LagOptions {
            rate: args.lag_rate,
            duration: Duration::from_secs(args.lag_secs.max(1)),
            seed: args.seed,
            ..LagOptions::default()
        }),
        quiet: args.quiet,
    };
    let bars = Bars::new(args.quiet);
    let report = investigate::run(&opts, &bars)
        .await
        .context("the investigation benchmark")?;
    println!("{}", report.to_text());
    if args.markdown {
        println!("{}", report.to_markdown());
        println!("{}", report.plans());
    }
    Ok(())
}

/// Draws one progress bar per step, and notes above them.
struct Bars {
    quiet: bool,
    /// The bar of the step under way (a mutex: the observer is shared with blocking threads).
    current: std::sync::Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Bars {
            quiet,
            current: std::sync::Mutex::new(None),
        }
    }

    fn bar(&self) -> Option<ProgressBar> {
        self.current.lock().ok().and_then(|b| b.clone())
    }
}

impl Observer for Bars {
    fn start(&self, step: &str, total: Option<u64>) {
        if self.quiet {
            eprintln!("{step}…");
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>28} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>28} [{elapsed_precise}] {spinner}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.current.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        let bar = self.current.lock().ok().and_then(|mut b| b.take());
        if let Some(bar) = bar {
            if bar.is_hidden() {
                // Not a terminal (output to a log file): one line per step instead.
                eprintln!(
                    "{}: done in {:.1} s",
                    bar.prefix().trim(),
                    bar.elapsed().as_secs_f64()
                );
            }
            // Keep the finished line: it shows how long the step took.
            bar.abandon();
        }
    }

    fn note(&self, text: &str) {
        match self.bar() {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}
