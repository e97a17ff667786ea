//! Side-by-side ingest runs shared by the benchmarks that compare servers alike but for one
//! thing (`tls`, `privacy`): every workload on every variant, round after round, so that a
//! drift of the machine hits all variants alike; the table gives medians over the rounds.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tally_load::http::{run_http, HttpLoadOptions};
use tally_load::{LoadMode, LoadReport};

/// The options every alternating comparison takes.
#[derive(Debug, Args)]
pub struct RoundsArgs {
    /// Rounds of runs of every variant; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of measurement per run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of warm-up per run (not measured).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Events per request in batched mode.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Requests in flight in batched mode.
    #[arg(long, default_value_t = 4)]
    pub batch_concurrency: usize,
    /// Requests in flight in single-event mode.
    #[arg(long, default_value_t = 64)]
    pub single_concurrency: usize,
    /// No progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl RoundsArgs {
    /// Runs both workloads on every variant, round after round, and prints the table;
    /// `column` names what tells the variants apart.
    pub async fn compare(&self, column: &str, variants: &[Variant]) -> Result<()> {
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        let workloads = workloads(
            self.batch_size,
            self.batch_concurrency,
            self.single_concurrency,
        );
        let results = run(
            self.rounds,
            Duration::from_secs(self.duration),
            Duration::from_secs(self.warmup),
            self.quiet,
            &workloads,
            variants,
        )
        .await?;
        print_table(column, self.rounds, &workloads, variants, &results);
        Ok(())
    }
}

/// One server (or one way of reaching it) under comparison.
pub struct Variant {
    /// Its name in the table.
    pub name: String,
    /// How to load it: URL, token and transport; mode, concurrency, durations and seed are
    /// set per run.
    pub options: HttpLoadOptions,
}

/// The two workloads every comparison runs: batches, and single events.
fn workloads(
    batch_size: usize,
    batch_concurrency: usize,
    single_concurrency: usize,
) -> [(LoadMode, usize); 2] {
    [
        (LoadMode::Batched { batch_size }, batch_concurrency),
        (LoadMode::Single, single_concurrency),
    ]
}

/// Runs every workload on every variant `rounds` times; `results[workload][variant]` holds one
/// report per round.
async fn run(
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    quiet: bool,
    workloads: &[(LoadMode, usize)],
    variants: &[Variant],
) -> Result<Vec<Vec<Vec<LoadReport>>>> {
    let mut results = vec![vec![Vec::new(); variants.len()]; workloads.len()];
    let mut seed = 1u64;
    for round in 0..rounds {
        for (w, (mode, concurrency)) in workloads.iter().enumerate() {
            for (v, variant) in variants.iter().enumerate() {
                seed += 1;
                let report = run_http(&HttpLoadOptions {
                    mode: *mode,
                    concurrency: *concurrency,
                    duration,
                    warmup,
                    seed,
                    quiet,
                    ..variant.options.clone()
                })
                .await
                .with_context(|| format!("{} run", variant.name))?;
                if !quiet {
                    eprintln!("round {} {}: {report}", round + 1, variant.name);
                }
                results[w][v].push(report);
            }
        }
    }
    Ok(results)
}

/// The median of `values` (reordered).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints the Markdown table of [`run`]'s results: per workload and variant the median
/// events/s, its ratio to the first variant, median p50 and p99, and errors. `column` names
/// what tells the variants apart ("Transport", "Protection").
fn print_table(
    column: &str,
    rounds: usize,
    workloads: &[(LoadMode, usize)],
    variants: &[Variant],
    results: &[Vec<Vec<LoadReport>>],
) {
    println!(
        "| Workload | {column} | Events/s (median of {rounds}) | Ratio to {} | p50 ms | p99 ms | Errors |",
        variants[0].name
    );
    println!("|---|---|---|---|---|---|---|");
    for (w, (mode, concurrency)) in workloads.iter().enumerate() {
        let label = match mode {
            LoadMode::Batched { batch_size } => {
                format!("batches of {batch_size}, {concurrency} in flight")
            }
            LoadMode::Single => format!("single events, {concurrency} in flight"),
        };
        let rate_of = |runs: &[LoadReport]| {
            median(&mut runs.iter().map(|r| r.events_per_sec).collect::<Vec<_>>())
        };
        let first = rate_of(&results[w][0]);
        for (v, variant) in variants.iter().enumerate() {
            let runs = &results[w][v];
            let rate = rate_of(runs);
            let p50 = median(&mut runs.iter().map(|r| r.p50_us as f64).collect::<Vec<_>>());
            let p99 = median(&mut runs.iter().map(|r| r.p99_us as f64).collect::<Vec<_>>());
            let errors: u64 = runs.iter().map(|r| r.errors).sum();
            println!(
                "| {label} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
                variant.name,
                rate / first,
                p50 / 1000.0,
                p99 / 1000.0
            );
        }
    }
}
