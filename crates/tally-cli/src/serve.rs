//! `tally serve`: run the audit log server on a local data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tally_server::auth::{KeyStore, Scope};
use tally_server::{AppState, ServerSettings};
use tally_store::{DataDir, Log, LogConfig};

/// Run the audit log server.
///
/// On first start it creates DATA_DIR, generates the log's Ed25519 signing key (DATA_DIR/log.key,
/// mode 0600; its public half in DATA_DIR/log.pub) and prints an admin API key once. Every
/// acknowledged event is fsync'd first. Stop with Ctrl-C or SIGTERM: the server finishes what it
/// has, signs final checkpoints and exits.
///
/// Whoever holds the signing key can re-sign a rewritten history, so keep it out of the data
/// directory: --signing-key FILE (made with `tally keygen`) or --sign-command CMD (an HSM or a
/// KMS signs). --public-tree lets monitors and witnesses read checkpoints, tiles and proofs
/// without an API key.
///
/// Example: tally serve --data ./data --listen 127.0.0.1:7700
///          tally serve --data ./data --signing-key /etc/tally/log.key --origin audit.example.com
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, short = 'd', env = "TALLY_DATA", default_value = "./data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        short = 'l',
        env = "TALLY_LISTEN",
        default_value = "127.0.0.1:7700"
    )]
    listen: SocketAddr,
    /// Name of the log: the signing key's name and the prefix of every tenant's checkpoint
    /// origin (`<origin>/<tenant>`). Fixed at first start.
    #[arg(long, env = "TALLY_ORIGIN", default_value = "tally.localhost")]
    origin: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Most events accepted in one request.
    #[arg(long, default_value_t = 10_000)]
    max_batch_events: usize,
    /// Seconds an event's time may lie in the future.
    #[arg(long, default_value_t = 86_400)]
    max_future_skew_secs: u64,
    /// Milliseconds between checkpoints while a log grows.
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Size at which a record segment file is closed, in MiB.
    #[arg(long, default_value_t = 256)]
    segment_mib: u64,
    /// On first start, also write the admin API key to this file (mode 0600), for automation.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Run without the search index (no /v1/events search or /v1/stats; less CPU and disk).
    #[arg(long)]
    no_index: bool,
    /// Milliseconds between search index commits: how far search trails the log while
    /// indexing keeps up with ingest (one indexing thread handles about 60-70k events/s).
    #[arg(long, default_value_t = 250)]
    index_commit_ms: u64,
    /// Indexing threads per tenant: raise it on machines with cores to spare when ingest
    /// outpaces one thread (see BENCHMARKS.md, index lag).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    index_threads: u16,
    /// Hours between scrubs, which re-read and re-hash every stored record in the background
    /// and report damage in /healthz, /metrics and the log (0: never).
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    scrub_interval_hours: u64,
    /// Read rate limit of the scrub, in MiB/s, so that it leaves the disk to ingest.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    scrub_mib_per_sec: u64,
    /// Open this tenant although its records have no signed checkpoint history at all
    /// (normally refused: the checkpoints file was deleted or emptied). Only after restoring
    /// records by hand and checking them with `tally verify --since`: they are signed as they
    /// are, and the decision is recorded in the tenant's log. Repeatable.
    #[arg(long, value_name = "TENANT")]
    accept_unsigned_history: Vec<String>,
    // Checkpoint anchoring in WORM storage (--anchor, --anchor-retention, …).
    #[command(flatten)]
    anchor: crate::anchor::AnchorArgs,
    #[command(flatten)]
    witnesses: WitnessServeArgs,
    // Signing key outside the data directory, and the public tree.
    #[command(flatten)]
    signing: crate::signing::SigningArgs,
    /// Serve the Merkle tree to anyone, without an API key, so monitors and witnesses need
    /// none: checkpoints (/v1/checkpoint, /checkpoint, /logs/TENANT/checkpoint), hash tiles
    /// (/tile/N/..., /logs/TENANT/tile/N/...), inclusion proofs by index and consistency
    /// proofs. Records, entry bundles (they hold the records), lookups by event id, search,
    /// exports and everything else still need a key. Tenant names become guessable (a known
    /// tenant answers 200, an unknown one 404).
    #[arg(long, help_heading = "Public tree")]
    public_tree: bool,
}

/// Witnesses of `tally serve`: who cosigns the log's checkpoints.
#[derive(Debug, Args)]
pub struct WitnessServeArgs {
    /// A witness that cosigns every new checkpoint of every tenant (C2SP tlog-witness), as
    /// VKEY=URL: the witness's cosignature/v1 public key, '=', and its submission URL (the
    /// prefix of /add-checkpoint), e.g. 'witness.example/w1+a1b2c3d4+BKxz…=https://witness.example'.
    /// `tally witness` prints this value. Repeatable. Witnesses are asked in the background,
    /// never delaying ingest; /v1/checkpoint and /logs/{tenant}/checkpoint then carry their
    /// cosignature lines, and /healthz and /metrics say which witness lags.
    #[arg(long = "witness", value_name = "VKEY=URL")]
    witness: Vec<String>,
    /// Milliseconds a witness has to answer one request; also how long the previous
    /// cosigned checkpoint is served while a new one waits for cosignatures.
    #[arg(long, default_value_t = 10_000)]
    witness_timeout_ms: u64,
    /// Longest pause, in milliseconds, between retries of a failing witness (the pause starts
    /// at one second and doubles).
    #[arg(long, default_value_t = 60_000)]
    witness_retry_max_ms: u64,
}

impl WitnessServeArgs {
    /// Builds the witness client, or nothing without --witness.
    fn build(&self, log: &Log) -> Result<Option<Arc<tally_server::witness::Witnessing>>> {
        if self.witness.is_empty() {
            return Ok(None);
        }
        let endpoints = self
            .witness
            .iter()
            .map(|w| tally_server::witness::WitnessEndpoint::parse(w))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = Duration::from_millis(self.witness_timeout_ms.max(100));
        let settings = tally_server::witness::WitnessSettings {
            timeout,
            grace: timeout,
            max_backoff: Duration::from_millis(self.witness_retry_max_ms.max(100)),
            ..Default::default()
        };
        Ok(Some(Arc::new(tally_server::witness::Witnessing::new(
            endpoints, settings, log,
        )?)))
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    if args.max_batch_events == 0 || args.max_body_bytes == 0 {
        anyhow::bail!("--max-batch-events and --max-body-bytes must be positive");
    }
    let dir = DataDir::create_or_open(&args.data)
        .with_context(|| format!("opening data directory {}", args.data.display()))?;
    let config = LogConfig {
        origin: args.origin.clone(),
        segment_bytes: args.segment_mib.max(1) << 20,
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms.max(10)),
        accept_unsigned_history: args.accept_unsigned_history.clone(),
        scrub_interval: (args.scrub_interval_hours > 0)
            .then(|| Duration::from_secs(args.scrub_interval_hours.saturating_mul(3600))),
        scrub_bytes_per_second: args.scrub_mib_per_sec.max(1) << 20,
        signing: args.signing.key_source()?,
        ..LogConfig::default()
    };
    let (log, report) = tokio::task::spawn_blocking(move || Log::open(dir, config))
        .await
        .context("recovery task panicked")?
        .context("opening the log")?;
    for (tenant, r) in &report.tenants {
        if r.torn_bytes_cut > 0 || r.leaf_entries_dropped > 0 || r.leaf_entries_rebuilt > 0 {
            eprintln!(
                "recovered tenant {tenant}: {} events; cut a torn tail of {} bytes, re-indexed {} records",
                r.size, r.torn_bytes_cut, r.leaf_entries_rebuilt
            );
        }
    }
    for (tenant, r) in &report.tenants {
        if let Some(records) = r.unsigned_history_accepted {
            tally_server::record_system_event(
                &log,
                tenant,
                "tally.log.unsigned_history_accepted",
                serde_json::json!({
                    "records": records,
                    "reason": "started with --accept-unsigned-history: records without any signed checkpoint history were signed as they are",
                }),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("recording the acceptance of tenant {tenant}'s unsigned history: {e}")
            })?;
            eprintln!(
                "tenant {tenant}: {records} records without a signed checkpoint history were accepted as they are (recorded in its log)"
            );
        }
        if let Some(d) = &r.damage {
            eprintln!(
                "DAMAGE: tenant {tenant}{}: {} (found by {}); the server runs, /healthz reports it; run `tally verify` and restore the files from a backup",
                d.index.map(|i| format!(", index {i}")).unwrap_or_default(),
                d.detail,
                d.found_by
            );
        }
    }
    let keys = Arc::new(KeyStore::open(log.data_dir().api_keys_path())?);
    let first_token = if keys.is_empty() {
        let (_, token) = keys.create("admin", vec![Scope::Admin], "*")?;
        if let Some(path) = &args.admin_token_file {
            tally_store::layout::write_file_durably(path, format!("{token}\n").as_bytes(), true)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some(token)
    } else {
        None
    };
    let settings = ServerSettings {
        max_body_bytes: args.max_body_bytes,
        max_batch_events: args.max_batch_events,
        max_future_skew: Duration::from_secs(args.max_future_skew_secs),
        public_tree: args.public_tree,
    };
    let mut state = AppState::new(log.clone(), keys, settings);
    // Witnesses: their own task asks them to cosign; nothing on the ingest path waits for it.
    let witnessing = args.witnesses.build(&log)?;
    let witness_task = witnessing.as_ref().map(|w| w.spawn(log.clone()));
    if let Some(w) = &witnessing {
        state = state.with_witnesses(w.clone());
    }
    // Everything that follows the log: each consumer on its own thread, from its cursor.
    let consumers = Arc::new(tally_consumers::Consumers::new(log.clone()));
    if !args.no_index {
        let options = tally_index::TantivyOptions {
            writer_threads: usize::from(args.index_threads),
            // tantivy wants at least 15 MB per thread; keep the per-thread budget of the default.
            writer_memory_bytes: usize::from(args.index_threads)
                * tally_index::TantivyOptions::default().writer_memory_bytes,
            ..tally_index::TantivyOptions::default()
        };
        let index = open_index_with(&log, options)?;
        consumers.spawn(
            tally_consumers::index::NAME,
            tally_consumers::index::IndexConsumer::new(
                index.clone(),
                state.index_commit_notifier(),
            ),
            tally_consumers::index::IndexConsumer::settings(Duration::from_millis(
                args.index_commit_ms.max(10),
            )),
        )?;
        state = state.with_index(index);
    }
    state = state.with_component("consumers", consumers.clone());
    // Checkpoint anchoring: checked (Object Lock on) before serving, stopped after the log
    // has signed its final checkpoints.
    let anchorer = match crate::anchor::start(&args.anchor, &log).await? {
        Some((anchorer, component)) => {
            state = state.with_component("anchor", component);
            Some(anchorer)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another server running there?)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    println!("Tally is listening on http://{addr}");
    println!("  data directory:  {}", args.data.display());
    println!("  log public key:  {}", log.verifier().to_vkey());
    println!("  signed by:       {}", args.signing.describe());
    if args.public_tree {
        println!("  public tree:     checkpoints, hash tiles and proofs need no API key");
    }
    if let Some(token) = &first_token {
        println!("  admin API key:   {token}");
        println!("                   (shown once: store it now, e.g. export TALLY_TOKEN={token})");
    }
    println!("  API description: http://{addr}/openapi.json");
    for w in witnessing.iter().flat_map(|w| w.endpoints()) {
        println!("  witness:         {} at {}", w.key.name(), w.url);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    axum::serve(listener, tally_server::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    if let Some(task) = witness_task {
        task.abort();
    }
    tracing::info!("stopping: signing final checkpoints");
    tokio::task::spawn_blocking(move || {
        consumers.stop();
        log.shutdown()
    })
    .await?;
    if let Some(anchorer) = anchorer {
        anchorer.stop(Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Opens the search index of a data directory. The index is derived data: one that cannot be
/// opened is deleted and rebuilt from the log.
pub fn open_index(log: &Log) -> Result<Arc<dyn tally_index::EventIndex>> {
    open_index_with(log, tally_index::TantivyOptions::default())
}

/// [`open_index`] with tuning options.
pub fn open_index_with(
    log: &Log,
    options: tally_index::TantivyOptions,
) -> Result<Arc<dyn tally_index::EventIndex>> {
    let dir = log.data_dir().index_path();
    match tally_index::TantivyIndex::open_with(&dir, options.clone()) {
        Ok(index) => Ok(Arc::new(index)),
        Err(e) => {
            tracing::warn!(
                "the search index in {} cannot be opened ({e}); rebuilding it from the log",
                dir.display()
            );
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            Ok(Arc::new(
                tally_index::TantivyIndex::open_with(&dir, options)
                    .context("creating the search index")?,
            ))
        }
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
