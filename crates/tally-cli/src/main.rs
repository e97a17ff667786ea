//! `tally`: the audit log server, its offline verifier, and thin clients of its API.
//!
//! The command line is parsed into validated settings (clap), then each subcommand builds the
//! components it needs and runs. Exit codes: 0 success; 1 the operation failed or a
//! verification found a problem; 2 bad command-line usage.

// The only unsafe code restores the default SIGPIPE disposition, allowed there.
#![deny(unsafe_code)]

mod alerts;
mod anchor;
mod client;
mod commands;
mod consumers;
mod export;
mod ingest;
mod investigate;
mod kek;
mod privacy;
mod serve;
mod signing;
mod tenants;
mod verify;
mod verify_compare;
mod verify_url;
mod witness;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

// The ingest path allocates many small strings per event on every worker thread; mimalloc's
// per-thread free lists measured faster than glibc's malloc there (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tally: a tamper-evident audit log.
///
/// Applications send audit events (who did what, to which resource, when, from where, with
/// what outcome); Tally appends them durably to a per-tenant Merkle log, signs checkpoints,
/// and proves inclusion and consistency to anyone holding the log's public key.
///
/// Start a server:      tally serve --data ./data
/// Send events:         tally ingest events.ndjson
/// Search:             tally query 'actor:alice after:7d'
/// Check a data dir:    tally verify ./data --key ./data/log.pub
/// Consumers' lag:     tally consumers --data ./data
/// Tenants:            tally tenants list; tally tenants create acme
/// Alerts:             tally alerts --state open; tally rules list
/// Run a witness:       tally witness --name witness.example/w1 --log 'tally.localhost/*=VKEY'
/// Key outside data:    tally keygen --out /etc/tally/log.key; tally serve --signing-key /etc/tally/log.key
/// Encrypt at rest:     tally kek generate > kek && chmod 600 kek; tally serve --kek-file kek
#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: the server's options are many times the size of any other command's.
    Serve(Box<serve::ServeArgs>),
    Witness(witness::WitnessArgs),
    Verify(verify::VerifyArgs),
    Ingest(ingest::IngestArgs),
    Get(commands::GetArgs),
    Checkpoint(commands::CheckpointArgs),
    Prove(commands::ProveArgs),
    Keys(commands::KeysArgs),
    Tenants(tenants::TenantsArgs),
    Erase(privacy::EraseArgs),
    Holds(privacy::HoldsArgs),
    Keygen(signing::KeygenArgs),
    Kek(kek::KekCommand),
    Query(investigate::QueryArgs),
    Export(export::ExportArgs),
    Tail(investigate::TailArgs),
    Reindex(investigate::ReindexArgs),
    Consumers(consumers::ConsumersArgs),
    Alerts(alerts::AlertsArgs),
    Rules(alerts::RulesArgs),
}

/// How to reach a running server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the Tally server.
    #[arg(
        long,
        env = "TALLY_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub url: String,
    /// API key (printed by `tally serve` on first start, or made with `tally keys create`).
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Also trust this PEM CA certificate for an https:// --url (a server whose certificate
    /// a private CA signed).
    #[arg(long, value_name = "FILE", env = "TALLY_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// The tenant a client command addresses.
#[derive(Debug, Clone, Args)]
pub struct TenantArg {
    /// Tenant (default: the API key's tenant, or `default`).
    #[arg(long, short = 't', env = "TALLY_TENANT", global = true)]
    pub tenant: Option<String>,
}

/// A mistake in the command line found after parsing (arguments that contradict each other):
/// exits with status 2 like clap's own usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A file argument where `-` means standard input.
pub fn is_stdin(path: &std::path::Path) -> bool {
    path == std::path::Path::new("-")
}

/// Lets a client command end quietly when whoever reads its output goes away
/// (`tally query … | head`), as Unix tools do: the Rust runtime ignores SIGPIPE, so every
/// print would otherwise fail with "Broken pipe" (and `println!` panics). The long-running
/// commands keep ignoring it: a server must never die because one peer hung up.
#[allow(unsafe_code)]
fn die_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; restoring the default
    // disposition of one signal has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Witness(_)) {
        die_quietly_on_closed_stdout();
    }
    tally_server::process::private_files();
    tally_server::process::raise_open_files_limit();
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
            Command::Serve(args) => serve::run(*args).await,
            Command::Witness(args) => witness::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::Get(args) => commands::get(args).await,
            Command::Checkpoint(args) => commands::checkpoint(args).await,
            Command::Prove(args) => commands::prove(args).await,
            Command::Keys(args) => commands::keys(args).await,
            Command::Tenants(args) => tenants::run(args).await,
            Command::Erase(args) => privacy::erase(args).await,
            Command::Holds(args) => privacy::holds(args).await,
            Command::Keygen(args) => signing::keygen(args).await,
            Command::Kek(args) => kek::run(args).await,
            Command::Query(args) => investigate::query(args).await,
            Command::Export(args) => export::export(args).await,
            Command::Tail(args) => investigate::tail(args).await,
            Command::Reindex(args) => investigate::reindex(args).await,
            Command::Consumers(args) => consumers::run(args).await,
            Command::Alerts(args) => alerts::alerts(args).await,
            Command::Rules(args) => alerts::rules(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
