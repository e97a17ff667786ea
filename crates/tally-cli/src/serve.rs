//! `tally serve`: run the audit log server on a local data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tally_server::app::{AdminKey, App, AppSettings, IndexSettings};
use tally_server::ServerSettings;
use tally_store::LogConfig;

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
    /// Also serve /metrics on this address, without a key, for a Prometheus scraper on an
    /// internal network (on --listen, /metrics needs a key of every tenant (*) with the
    /// metrics scope: the metrics name every tenant and its size).
    /// Example: --metrics-listen 127.0.0.1:9464
    #[arg(long, value_name = "ADDR", env = "TALLY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS (TLS 1.2/1.3, HTTP/2 and HTTP/1.1 by ALPN) with this PEM certificate
    /// chain, leaf first; needs --tls-key. Reloaded with the key on SIGHUP (kill -HUP PID)
    /// without dropping connections: renew certificates in place.
    /// Example: --tls-cert /etc/tally/tls.crt --tls-key /etc/tally/tls.key
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_TLS_CERT",
        requires = "tls_key",
        help_heading = "TLS"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_TLS_KEY",
        requires = "tls_cert",
        help_heading = "TLS"
    )]
    tls_key: Option<PathBuf>,
    /// Ask clients for a certificate signed by this PEM CA (optional for them). A verified
    /// certificate whose subject common name is the id of an API key that may ingest
    /// authenticates requests without an Authorization header, for ingest only.
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_TLS_CLIENT_CA",
        requires = "tls_cert",
        help_heading = "TLS"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Sign people in with bearer JWTs of this OpenID Connect issuer (its `iss`); needs
    /// --oidc-audience and --oidc-jwks. Tokens signed RS256, ES256 or EdDSA by a key of the
    /// issuer's JWKS, for this audience, unexpired, map to a tenant and scopes by their claims
    /// (--oidc-tenant-claim, --oidc-scopes-claim); the person (--oidc-person-claim) is the
    /// actor recorded for what they do, and every read of theirs is recorded.
    /// Example: --oidc-issuer https://login.example.com --oidc-audience tally
    ///          --oidc-jwks https://login.example.com/.well-known/jwks.json
    #[arg(long, value_name = "URL", requires_all = ["oidc_audience", "oidc_jwks"],
          help_heading = "Single sign-on (OIDC)")]
    oidc_issuer: Option<String>,
    /// The audience tokens must be issued for (Tally's client id at the issuer).
    #[arg(
        long,
        value_name = "AUD",
        requires = "oidc_issuer",
        help_heading = "Single sign-on (OIDC)"
    )]
    oidc_audience: Option<String>,
    /// The issuer's keys: a JWKS file, or its https:// URL (fetched again when a token names
    /// a key it does not hold, at most once a minute).
    #[arg(
        long,
        value_name = "FILE|URL",
        requires = "oidc_issuer",
        help_heading = "Single sign-on (OIDC)"
    )]
    oidc_jwks: Option<String>,
    /// The claim naming the person's tenant (a tenant name, or * for every tenant).
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "tally_tenant",
        help_heading = "Single sign-on (OIDC)"
    )]
    oidc_tenant_claim: String,
    /// The claim listing the person's Tally scopes (an array, or a space-separated string;
    /// other names are ignored).
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "tally_scopes",
        help_heading = "Single sign-on (OIDC)"
    )]
    oidc_scopes_claim: String,
    /// The claim naming the person in the log (falls back to sub).
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "email",
        help_heading = "Single sign-on (OIDC)"
    )]
    oidc_person_claim: String,
    /// Clock skew tolerated on a token's exp and nbf, in seconds (at most 300).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=300),
          help_heading = "Single sign-on (OIDC)")]
    oidc_leeway_secs: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Most events accepted in one request.
    #[arg(long, default_value_t = 10_000)]
    max_batch_events: usize,
    /// Seconds an event's time may lie in the future.
    #[arg(long, default_value_t = 86_400)]
    max_future_skew_secs: u64,
    #[command(flatten)]
    limits: ClientLimitArgs,
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
    // Encryption at rest.
    #[command(flatten)]
    kek: crate::kek::KekArgs,
    /// With a key-encryption key: replace each tenant's data key by a new one once it is this
    /// old (`off`: only on request, `POST /v1/tenants/T/data-keys/rotate`). Old records keep
    /// theirs; nothing is rewritten.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    data_key_rotation: String,
    /// Read the alert rules from this file (YAML or JSON; check it first with `tally rules
    /// check`) instead of the data directory. The API then lists them but refuses changes:
    /// the file is the truth. Without it, the rules set with `tally rules set` run, or the
    /// default rule pack (brute-force, bulk-export, admin-grant).
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_RULES",
        help_heading = "Alerts"
    )]
    rules: Option<PathBuf>,
    /// Run no alert rules at all.
    #[arg(long, conflicts_with = "rules", help_heading = "Alerts")]
    no_alerts: bool,
    /// Stream events to SIEMs as this file (YAML or JSON) describes: each sink a receiver
    /// (syslog+tcp://HOST:PORT, splunk-hec+https://HOST:PORT), a format (json, ocsf, cef), a
    /// search choosing the events and whether personal values leave masked (default) or
    /// clear. Each follows every tenant's log from its own cursor, so a receiver that is down
    /// only makes its sink lag (see `tally consumers`). Example in README.md.
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_SINKS",
        help_heading = "SIEM streaming"
    )]
    sinks: Option<PathBuf>,
    /// Serve the Merkle tree to anyone, without an API key, so monitors and witnesses need
    /// none: checkpoints (/v1/checkpoint, /checkpoint, /logs/TENANT/checkpoint), hash tiles
    /// (/tile/N/..., /logs/TENANT/tile/N/...), inclusion proofs by index and consistency
    /// proofs. Records, entry bundles (they hold the records), lookups by event id, search,
    /// exports and everything else still need a key. Tenant names become guessable (a known
    /// tenant answers 200, an unknown one 404).
    #[arg(long, help_heading = "Public tree")]
    public_tree: bool,
    /// What ingest does with a tenant that does not exist: `create` it on its first event
    /// (recorded as tally.tenants.create in tenant tally-system's log), or `refuse` the
    /// request (403 unknown_tenant) so that tenants are made only by an administrator
    /// (tally tenants create NAME) and a mistyped tenant never starts a new log.
    #[arg(long, value_name = "POLICY", default_value = "create", value_parser = ["create", "refuse"])]
    unknown_tenants: String,
    /// Also record reads of single records by API keys — events by id or index, entry
    /// bundles, proofs by event id — as tally.events.get, tally.tiles.entries and
    /// tally.proofs.inclusion_by_id, aggregated per key and minute. Off by default: keys are
    /// services that read in volume, and a verifier fetching entry bundles would grow the
    /// log it checks. Searches, tails, statistics, exports, refused requests and every admin
    /// change are recorded regardless.
    #[arg(long)]
    record_key_reads: bool,
}

/// How much of the server one client may hold: connections, and the time and memory of
/// requests on the way in. The defaults let thousands of clients in and keep idle, silent and
/// stalled ones from starving the rest.
#[derive(Debug, Args)]
#[command(next_help_heading = "Client limits")]
pub struct ClientLimitArgs {
    /// Most connections open at once. At the limit, a new connection takes the place of the
    /// one idle longest; only when all are inside a request is it answered 503. Lowered, with
    /// a warning, to fit the open-file limit (ulimit -n, which tally raises to its maximum).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a connection may take to send a complete request head, from its opening or
    /// from its previous response (so also how long an idle keep-alive connection stays open).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds a request body may pause between two chunks before it is refused (408).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_idle_timeout_secs: u64,
    /// Seconds an ingest body may take to arrive in full (408 after).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_deadline_secs: u64,
    /// MiB that all ingest bodies being received may take together; a body whose next chunk
    /// does not fit is refused (503 busy, retry) and frees what it held.
    #[arg(long, value_name = "MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_body_memory_mib: u64,
}

impl ClientLimitArgs {
    fn connections(&self) -> tally_server::transport::ConnectionLimits {
        tally_server::transport::ConnectionLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            ..Default::default()
        }
    }

    fn bodies(&self) -> tally_server::body::BodyLimits {
        tally_server::body::BodyLimits {
            idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            deadline: Duration::from_secs(self.body_deadline_secs),
            memory_bytes: usize::try_from(self.max_body_memory_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
        }
    }
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
    /// The witnesses given with --witness (none without it).
    fn endpoints(&self) -> Result<Vec<tally_server::witness::WitnessEndpoint>> {
        Ok(self
            .witness
            .iter()
            .map(|w| tally_server::witness::WitnessEndpoint::parse(w))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// How witnesses are asked.
    fn settings(&self) -> tally_server::witness::WitnessSettings {
        let timeout = Duration::from_millis(self.witness_timeout_ms.max(100));
        tally_server::witness::WitnessSettings {
            timeout,
            grace: timeout,
            max_backoff: Duration::from_millis(self.witness_retry_max_ms.max(100)),
            ..Default::default()
        }
    }
}

impl ServeArgs {
    /// The settings of everything `tally serve` runs.
    fn app_settings(&self) -> Result<AppSettings> {
        if self.max_batch_events == 0 || self.max_body_bytes == 0 {
            anyhow::bail!("--max-batch-events and --max-body-bytes must be positive");
        }
        let index_threads = usize::from(self.index_threads);
        Ok(AppSettings {
            data: self.data.clone(),
            log: LogConfig {
                origin: self.signing.origin.clone(),
                segment_bytes: self.segment_mib.max(1) << 20,
                checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms.max(10)),
                accept_unsigned_history: self.accept_unsigned_history.clone(),
                scrub_interval: (self.scrub_interval_hours > 0)
                    .then(|| Duration::from_secs(self.scrub_interval_hours.saturating_mul(3600))),
                scrub_bytes_per_second: self.scrub_mib_per_sec.max(1) << 20,
                signing: self.signing.key_source()?,
                ..LogConfig::default()
            },
            http: ServerSettings {
                max_body_bytes: self.max_body_bytes,
                max_batch_events: self.max_batch_events,
                max_future_skew: Duration::from_secs(self.max_future_skew_secs),
                public_tree: self.public_tree,
                oidc: match (&self.oidc_issuer, &self.oidc_audience, &self.oidc_jwks) {
                    (Some(issuer), Some(audience), Some(jwks)) => {
                        let source = if jwks.starts_with("https://") || jwks.starts_with("http://")
                        {
                            tally_server::oidc::JwksSource::Url(jwks.clone())
                        } else {
                            tally_server::oidc::JwksSource::File(jwks.into())
                        };
                        let mut oidc =
                            tally_server::oidc::OidcSettings::new(issuer, audience, source);
                        oidc.tenant_claim = self.oidc_tenant_claim.clone();
                        oidc.scopes_claim = self.oidc_scopes_claim.clone();
                        oidc.person_claim = self.oidc_person_claim.clone();
                        oidc.leeway = Duration::from_secs(self.oidc_leeway_secs);
                        Some(oidc)
                    }
                    _ => None,
                },
                tls: match (&self.tls_cert, &self.tls_key) {
                    (Some(cert), Some(key)) => Some(tally_server::tls::TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: self.tls_client_ca.clone(),
                    }),
                    _ => None,
                },
                connections: self.limits.connections(),
                bodies: self.limits.bodies(),
                metrics_listen: self.metrics_listen,
                aggregate: tally_server::aggregate::AggregateSettings::default(),
                record_key_reads: self.record_key_reads,
                // `tally serve` always seals: masking and erasure depend on it.
                seal_personal_data: true,
                unknown_tenants: if self.unknown_tenants == "refuse" {
                    tally_server::UnknownTenants::Refuse
                } else {
                    tally_server::UnknownTenants::Create
                },
            },
            index: (!self.no_index).then(|| IndexSettings {
                tantivy: tally_index::TantivyOptions {
                    writer_threads: index_threads,
                    // tantivy wants at least 15 MB per thread; keep the default's per-thread budget.
                    writer_memory_bytes: index_threads
                        * tally_index::TantivyOptions::default().writer_memory_bytes,
                    ..tally_index::TantivyOptions::default()
                },
                commit_interval: Duration::from_millis(self.index_commit_ms.max(10)),
            }),
            witnesses: self.witnesses.endpoints()?,
            witness_settings: self.witnesses.settings(),
            anchor: crate::anchor::settings(&self.anchor)?,
            admin: AdminKey::OnFirstStart {
                token_file: self.admin_token_file.clone(),
            },
            sinks: match &self.sinks {
                None => Vec::new(),
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                    tally_sinks::parse_sink_file(&text, &|var| std::env::var(var).ok()).map_err(
                        |errors| {
                            let lines: Vec<String> =
                                errors.iter().map(|e| format!("  {e}")).collect();
                            crate::UsageError(format!(
                                "{}: {} broken sink(s):\n{}",
                                path.display(),
                                errors.len(),
                                lines.join("\n")
                            ))
                        },
                    )?
                }
            },
            alerts: (!self.no_alerts).then(|| tally_server::alerts::AlertSettings {
                rules_file: self.rules.clone(),
            }),
            at_rest: match self.kek.source() {
                None => None,
                Some(kek) => Some(tally_server::app::AtRestSettings {
                    kek,
                    rotate_after: match self.data_key_rotation.as_str() {
                        "off" | "never" => None,
                        text => Some(humantime::parse_duration(text).map_err(|e| {
                            crate::UsageError(format!(
                                "--data-key-rotation {text:?}: {e}; give a duration such as 30d or 12h, or off"
                            ))
                        })?),
                    },
                }),
            },
        })
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    // Before anything is opened or bound: a stop asked for while the server starts (a service
    // manager's SIGTERM the moment the port answers) must stop it in order, not kill it.
    let shutdown = ShutdownSignal::install().context("installing the Ctrl-C/SIGTERM handlers")?;
    let app = App::start(args.app_settings()?).await?;
    for (tenant, r) in &app.report().tenants {
        if r.torn_bytes_cut > 0 || r.leaf_entries_dropped > 0 || r.leaf_entries_rebuilt > 0 {
            eprintln!(
                "recovered tenant {tenant}: {} events; cut a torn tail of {} bytes, re-indexed {} records",
                r.size, r.torn_bytes_cut, r.leaf_entries_rebuilt
            );
        }
        if let Some(records) = r.unsigned_history_accepted {
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
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            app.stop().await;
            return Err(anyhow::Error::new(e).context(format!(
                "listening on {} (is another server running there?)",
                args.listen
            )));
        }
    };
    let addr = listener.local_addr()?;
    let scheme = match app.tls() {
        Some(tls) => {
            reload_tls_on_sighup(tls.clone())?;
            "https"
        }
        None => {
            if let Some(warning) = plain_http_warning(addr) {
                eprintln!("{warning}");
            }
            "http"
        }
    };
    println!("Tally is listening on {scheme}://{addr}");
    println!("  data directory:  {}", args.data.display());
    println!("  log public key:  {}", app.log().verifier().to_vkey());
    println!("  signed by:       {}", args.signing.describe());
    if let Some(addr) = args.metrics_listen {
        println!("  metrics:         http://{addr}/metrics (no key)");
    }
    if args.public_tree {
        println!("  public tree:     checkpoints, hash tiles and proofs need no API key");
    }
    if let Some(token) = app.admin_token() {
        println!("  admin API key:   {token}");
        println!("                   (shown once: store it now, e.g. export TALLY_TOKEN={token})");
    }
    println!("  API description: {scheme}://{addr}/openapi.json");
    for w in app.witnesses() {
        println!("  witness:         {} at {}", w.key.name(), w.url);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    app.serve(listener, shutdown.received())
        .await
        .context("serving HTTP")
}

/// Reads the certificate and key again on every SIGHUP; a pair that does not load leaves the
/// one in use in place (and says why).
fn reload_tls_on_sighup(tls: std::sync::Arc<tally_server::tls::Tls>) -> Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler (TLS reload)")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.files().cert.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Err(e) => tracing::error!(
                    "TLS certificate NOT reloaded, the previous one stays in use: {e}"
                ),
            }
        }
    });
    Ok(())
}

/// What to say when the API listens beyond this machine over plain HTTP: API keys and events
/// would cross the network readable by anyone on the path.
fn plain_http_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "WARNING: listening on {addr} without TLS: API keys, events and answers cross the \
             network in clear. Put a TLS-terminating proxy in front of Tally, or listen on \
             127.0.0.1 only."
        )
    })
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment [`ShutdownSignal::install`] runs.
///
/// Tokio registers a signal handler only when its stream is created; a handler created lazily
/// (when the serving future is first polled) leaves a window after the port is bound in which
/// SIGTERM still has its default action and kills the process mid-start. Signals that arrive
/// before [`ShutdownSignal::received`] is awaited are kept, not lost.
pub(crate) struct ShutdownSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Replaces the default (fatal) action of SIGINT and SIGTERM for the rest of the process.
    pub(crate) fn install() -> std::io::Result<ShutdownSignal> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the first SIGINT or SIGTERM, including one that arrived earlier.
    pub(crate) async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_beyond_this_machine_is_warned_about_and_loopback_is_not() {
        for quiet in ["127.0.0.1:7700", "[::1]:7700"] {
            assert_eq!(plain_http_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:7700", "192.0.2.10:443", "[::]:7700"] {
            let warning = plain_http_warning(loud.parse().unwrap()).unwrap();
            assert!(warning.contains("without TLS"), "{warning}");
        }
    }
}
