//! `tally-bench`: measures Tally against the PostgreSQL baseline of the seeds' design, side by
//! side in one run: durable ingest over HTTP (`ingest`) and investigation (`search`: search
//! latency, index rebuild and index lag); start-up at scale (`startup`); and normal clients
//! beside abusive ones (`abuse`: idle connections, slow heads, stalled bodies); ingest over TLS
//! against plain HTTP and TLS handshakes (`tls`). A binary of its
//! own so that the product binary, `tally`, does not carry the load generator, the PostgreSQL
//! client or the baseline.
//! Results and the commands that reproduce them are in BENCHMARKS.md.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod abuse;
mod alternate;
mod ingest;
mod privacy;
mod readers;
mod search;
mod startup;
mod tls;

// The same allocator as `tally`: the embedded server must run as it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tally's benchmarks, each side by side with the PostgreSQL baseline in one run.
///
/// Examples:
///   tally-bench ingest --duration 10 --mode both
///   tally-bench search --events 1000000 --data /tmp/bs-1m
///   tally-bench startup --events 10000000 --data /tmp/startup-10m
///   tally-bench abuse --url http://127.0.0.1:7700 --token "$TOKEN" --pid "$SERVER_PID"
///   tally-bench tls --rounds 3 --duration 10
///   tally-bench privacy --rounds 3 --duration 10
#[derive(Debug, Parser)]
#[command(name = "tally-bench", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Ingest(ingest::BenchArgs),
    Search(search::BenchSearchArgs),
    Startup(startup::StartupArgs),
    Abuse(abuse::AbuseArgs),
    Tls(tls::TlsArgs),
    Privacy(privacy::PrivacyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tally_server::process::init_logging();
    let runtime = match tally_server::process::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Ingest(args) => ingest::run(args).await,
            Command::Search(args) => search::run(args).await,
            Command::Startup(args) => startup::run(args).await,
            Command::Abuse(args) => abuse::run(args).await,
            Command::Tls(args) => tls::run(args).await,
            Command::Privacy(args) => privacy::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
