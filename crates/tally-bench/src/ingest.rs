//! `tally-bench ingest`: durable ingest throughput and acknowledgement latency, Tally over HTTP versus
//! the PostgreSQL baseline, side by side in one run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tally_load::http::{run_http, HttpLoadOptions};
use tally_load::postgres::{run_postgres, PgDesign, PgLoadOptions};
use tally_load::{LoadMode, LoadReport};
use tally_server::app::{AdminKey, App, AppSettings, Running};

/// Measure durable ingest: Tally over HTTP against a PostgreSQL baseline built as the classic
/// audit-table design (append-only table, INSERT-only role, SHA-256 hash chain computed on
/// insert by a trigger), with the same generated events (about 400 bytes, Zipf-distributed
/// actors and resources, some PII).
///
/// Without --url it starts a Tally server in this process on a fresh data directory. Every
/// acknowledgement counted is durable (fsync'd / committed). Prints events/s, requests/s and
/// p50/p90/p99 acknowledgement latency per run, and the Tally/PostgreSQL ratios.
///
/// Example: tally-bench ingest --duration 10 --mode both
///          tally-bench ingest --url http://127.0.0.1:7700 --token "$TALLY_TOKEN" --no-postgres
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark a running server instead of an embedded one.
    #[arg(long)]
    url: Option<String>,
    /// API key for --url.
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory of the embedded server (default: a new temporary directory).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which workloads to run.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Events per request in batched mode.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Requests in flight in batched mode.
    #[arg(long, default_value_t = 4)]
    batch_concurrency: usize,
    /// Requests in flight in single-event mode.
    #[arg(long, default_value_t = 64)]
    single_concurrency: usize,
    /// Seconds of measurement per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up per run (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// PostgreSQL connection string of the baseline.
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=test")]
    postgres: String,
    /// Skip the PostgreSQL baseline.
    #[arg(long)]
    no_postgres: bool,
    /// Also run the weaker first version of the baseline (a `chain_head` row updated per row,
    /// multi-row INSERTs) as a second PostgreSQL row.
    #[arg(long)]
    pg_chain_head_too: bool,
    /// Seed of the event generator (default: random, so event ids never repeat between runs
    /// against the same server; each workload uses seed + its position).
    #[arg(long)]
    seed: Option<u64>,
    /// During each Tally run, also read the whole log over HTTP in a loop: an export of
    /// every record and every entry bundle (what `tally reindex` reads), to measure what
    /// large reads cost acknowledgements. Best with a --data directory filled beforehand.
    #[arg(long)]
    readers: bool,
    /// Also print the results as a Markdown table (for BENCHMARKS.md).
    #[arg(long)]
    markdown: bool,
    /// No progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Batched,
    Single,
    Both,
}

/// A Tally server running inside this process for the benchmark.
struct Embedded {
    running: Running,
    _tmp: Option<tempfile::TempDir>,
}

async fn start_embedded(data: Option<PathBuf>) -> Result<Embedded> {
    let (path, tmp) = match data {
        Some(p) => (p, None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("tally-bench-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    // The log alone, as the baseline is the table alone: no search index.
    let app = App::start(AppSettings {
        index: None,
        admin: AdminKey::Create("bench".into()),
        ..AppSettings::new(&path)
    })
    .await?;
    let running = app.spawn("127.0.0.1:0").await?;
    eprintln!(
        "embedded Tally server on {}, data in {}",
        running.url,
        path.display()
    );
    Ok(Embedded { running, _tmp: tmp })
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let embedded = match &args.url {
        Some(_) => None,
        None => Some(start_embedded(args.data.clone()).await?),
    };
    let (url, token) = match (&args.url, &embedded) {
        (Some(url), _) => (
            url.clone(),
            args.token
                .clone()
                .context("--url needs --token (or TALLY_TOKEN) with the ingest scope")?,
        ),
        (None, Some(e)) => (
            e.running.url.clone(),
            e.running
                .admin_token
                .clone()
                .context("the embedded server made no key")?,
        ),
        (None, None) => unreachable!("embedded server started when no --url"),
    };
    let mut workloads = Vec::new();
    if matches!(args.mode, Mode::Batched | Mode::Both) {
        workloads.push((
            LoadMode::Batched {
                batch_size: args.batch_size,
            },
            args.batch_concurrency,
        ));
    }
    if matches!(args.mode, Mode::Single | Mode::Both) {
        workloads.push((LoadMode::Single, args.single_concurrency));
    }
    let duration = Duration::from_secs(args.duration);
    let warmup = Duration::from_secs(args.warmup);
    let mut rows: Vec<LoadReport> = Vec::new();
    let base_seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    for (k, (mode, concurrency)) in workloads.into_iter().enumerate() {
        let seed = base_seed.wrapping_add(k as u64);
        let readers = args
            .readers
            .then(|| crate::readers::Readers::start(&url, &token));
        let ours = run_http(&HttpLoadOptions {
            url: url.clone(),
            token: token.clone(),
            mode,
            concurrency,
            duration,
            warmup,
            total_events: None,
            seed,
            tenant: None,
            quiet: args.quiet,
            rate_limit: None,
            ..HttpLoadOptions::default()
        })
        .await
        .context("Tally run")?;
        if let Some(readers) = readers {
            for stats in readers.stop().await? {
                println!("{stats}");
            }
        }
        rows.push(ours.clone());
        if args.no_postgres {
            println!("{}\n{ours}", LoadReport::header());
        } else {
            let mut designs = vec![PgDesign::AdvisoryCopy];
            if args.pg_chain_head_too {
                designs.push(PgDesign::ChainHeadRow);
            }
            for design in designs {
                let baseline = run_postgres(&PgLoadOptions {
                    dsn: args.postgres.clone(),
                    mode,
                    concurrency,
                    duration,
                    warmup,
                    total_events: None,
                    seed,
                    schema: "tally_bench".into(),
                    quiet: args.quiet,
                    design,
                })
                .await
                .context("PostgreSQL baseline run (pass --no-postgres to skip it)")?;
                println!("{}", tally_load::comparison(&ours, &baseline));
                rows.push(baseline);
            }
        }
    }
    if args.markdown {
        println!("\n{}", tally_load::markdown_table(&rows));
    }
    if let Some(e) = embedded {
        e.running.stop().await;
    }
    Ok(())
}
