//! The composition root: one function that builds a running Tally from settings — the log,
//! the API key store, the consumers (the search index first), witnesses, anchoring, and the
//! HTTP app — and one that stops it in order. `tally serve`, the tests and the benchmarks all
//! start Tally through [`App::start`], so the wiring exists once.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tally_consumers::index::IndexConsumer;
use tally_consumers::Consumers;
use tally_store::{DataDir, Log, LogConfig, OpenReport};

use crate::auth::{KeyStore, Scope};
use crate::tenants::TenantRegistry;
use crate::witness::{WitnessEndpoint, WitnessSettings, Witnessing};
use crate::{AppState, Component, ServerSettings};

/// Everything [`App::start`] needs.
pub struct AppSettings {
    /// The data directory (created if missing).
    pub data: PathBuf,
    /// The log's settings.
    pub log: LogConfig,
    /// The HTTP API's limits and policies.
    pub http: ServerSettings,
    /// The search index and its consumer; `None` runs without search.
    pub index: Option<IndexSettings>,
    /// Witnesses that cosign every checkpoint (none: no witnessing).
    pub witnesses: Vec<WitnessEndpoint>,
    /// How witnesses are asked.
    pub witness_settings: WitnessSettings,
    /// Copy every signed checkpoint to WORM storage.
    pub anchor: Option<AnchorSettings>,
    /// Which admin API key to make.
    pub admin: AdminKey,
    /// Encryption at rest (none: records are stored as they are hashed, and a data directory
    /// holding encrypted records is refused, since they could not be read).
    pub at_rest: Option<AtRestSettings>,
    /// Alert rules over every tenant's log (`None`: no alerting; `tally serve` runs them
    /// unless told not to).
    pub alerts: Option<crate::alerts::AlertSettings>,
    /// SIEM sinks, each a consumer of every tenant's log with its own cursor.
    pub sinks: Vec<tally_sinks::Sink>,
}

/// Where the key-encryption key comes from and how often data keys rotate.
#[derive(Debug, Clone)]
pub struct AtRestSettings {
    /// The key-encryption key.
    pub kek: tally_store::KekSource,
    /// A tenant's data key is replaced by a new one once it is this old (`None`: only on
    /// request).
    pub rotate_after: Option<Duration>,
}

impl AppSettings {
    /// Defaults for a data directory: the default log and HTTP settings, the search index,
    /// no witnesses, no anchoring, no alert rules, an admin key on first start.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        AppSettings {
            data: data.into(),
            log: LogConfig::default(),
            http: ServerSettings::default(),
            index: Some(IndexSettings::default()),
            witnesses: Vec::new(),
            witness_settings: WitnessSettings::default(),
            anchor: None,
            admin: AdminKey::OnFirstStart { token_file: None },
            at_rest: None,
            alerts: None,
            sinks: Vec::new(),
        }
    }
}

/// The search index's settings.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    /// tantivy's threads and memory.
    pub tantivy: tally_index::TantivyOptions,
    /// Longest time between index commits while events arrive: how far search trails the log.
    pub commit_interval: Duration,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            tantivy: tally_index::TantivyOptions::default(),
            commit_interval: Duration::from_millis(250),
        }
    }
}

/// Checkpoint anchoring: where, and the S3 client that writes there.
pub struct AnchorSettings {
    /// Location, retention, interval, backlog.
    pub settings: tally_anchor::uploader::AnchorSettings,
    /// The client (credentials and endpoint).
    pub client: tally_anchor::s3::S3Client,
}

/// Which admin API key [`App::start`] makes.
#[derive(Debug, Clone)]
pub enum AdminKey {
    /// One named `admin` when the key store is empty (first start), also written to
    /// `token_file` (mode 0600) if given: what `tally serve` does.
    OnFirstStart {
        /// Where to write the token too, for automation.
        token_file: Option<PathBuf>,
    },
    /// A new admin key with this name at every start (tests and benchmarks).
    Create(String),
    /// None.
    None,
}

/// Why Tally could not start: what was being done, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct StartError {
    /// What failed, e.g. "opening the log".
    pub doing: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn failed<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    doing: impl Into<String>,
) -> impl FnOnce(E) -> StartError {
    let doing = doing.into();
    move |e| StartError {
        doing,
        source: e.into(),
    }
}

/// Loads the key-encryption key and checks that it opens every tenant's data keys; with no
/// key configured, refuses a data directory whose records are encrypted.
async fn open_at_rest(
    dir: &DataDir,
    settings: Option<AtRestSettings>,
) -> Result<Option<Arc<tally_store::AtRest>>, StartError> {
    let Some(settings) = settings else {
        let encrypted = tally_store::at_rest::tenants_with_data_keys(dir);
        if encrypted.is_empty() {
            return Ok(None);
        }
        return Err(StartError {
            doing: "opening the data directory".into(),
            source: format!(
                "the records of tenant(s) {} are encrypted at rest; start with the \
                 key-encryption key they were written with (--kek-file, --kek-env or \
                 --kek-command)",
                encrypted.join(", ")
            )
            .into(),
        });
    };
    let dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let kek = settings.kek.load()?;
        let at_rest = tally_store::AtRest::new(&dir, kek, settings.rotate_after);
        let tenants = at_rest.check_all()?;
        tracing::info!(
            kek = at_rest.kek_fingerprint(),
            tenants,
            "encryption at rest is on"
        );
        Ok::<_, tally_store::StoreError>(Arc::new(at_rest))
    })
    .await
    .map_err(failed("loading the key-encryption key"))?
    .map(Some)
    .map_err(failed("setting up encryption at rest"))
}

/// A running Tally: serve its [`App::router`], then [`App::stop`] it.
pub struct App {
    state: AppState,
    log: Log,
    consumers: Arc<Consumers>,
    report: OpenReport,
    admin_token: Option<String>,
    witnessing: Option<Arc<Witnessing>>,
    witness_task: Option<tokio::task::JoinHandle<()>>,
    anchorer: Option<tally_anchor::uploader::Anchorer>,
    window_task: tokio::task::JoinHandle<()>,
    tls: Option<Arc<crate::tls::Tls>>,
}

impl App {
    /// Opens the data directory and recovers the log, records any accepted unsigned history
    /// in the tenant's log, opens the key store (making the admin key `settings.admin` asks
    /// for), starts the consumers (the search index's first), the witness client and
    /// anchoring (refusing to start when the bucket has no Object Lock), and builds the HTTP
    /// app. Nothing listens yet.
    pub async fn start(settings: AppSettings) -> Result<App, StartError> {
        let path = settings.data.clone();
        let dir = DataDir::create_or_open(&path)
            .map_err(failed(format!("opening data directory {}", path.display())))?;
        let mut config = settings.log.clone();
        if config.at_rest.is_none() {
            config.at_rest = open_at_rest(&dir, settings.at_rest.clone()).await?;
        }
        let (log, report) = tokio::task::spawn_blocking(move || Log::open(dir, config))
            .await
            .map_err(failed("recovering the log"))?
            .map_err(failed("opening the log"))?;
        let app = App::assemble(log.clone(), report, settings).await;
        if app.is_err() {
            tokio::task::spawn_blocking(move || log.shutdown())
                .await
                .ok();
        }
        app
    }

    async fn assemble(
        log: Log,
        report: OpenReport,
        settings: AppSettings,
    ) -> Result<App, StartError> {
        for (tenant, r) in &report.tenants {
            if let Some(records) = r.unsigned_history_accepted {
                crate::record_system_event(
                    &log,
                    tenant,
                    "tally.log.unsigned_history_accepted",
                    serde_json::json!({
                        "records": records,
                        "reason": "started with --accept-unsigned-history: records without any signed checkpoint history were signed as they are",
                    }),
                )
                .await
                .map_err(failed(format!(
                    "recording the acceptance of tenant {tenant}'s unsigned history"
                )))?;
            }
        }
        let keys = Arc::new(
            KeyStore::open(log.data_dir().api_keys_path())
                .map_err(failed("opening the API keys"))?,
        );
        let tenants = Arc::new(
            TenantRegistry::open(log.data_dir().tenant_registry_path())
                .map_err(failed("opening the tenant registry"))?,
        );
        // A key that can do everything is on the record from the moment it exists.
        let admin_name = match &settings.admin {
            AdminKey::OnFirstStart { .. } if keys.is_empty() => Some("admin"),
            AdminKey::Create(name) => Some(name.as_str()),
            AdminKey::OnFirstStart { .. } | AdminKey::None => None,
        };
        let admin_token = match admin_name {
            Some(name) => {
                let (_, token) = crate::admin::create_key(
                    &log,
                    &keys,
                    crate::audit::Actor::Server,
                    "start",
                    crate::admin::NewKey {
                        name,
                        scopes: vec![Scope::Admin],
                        tenant: "*",
                        expires_at: None,
                        requests_per_second: None,
                    },
                )
                .await
                .map_err(failed("creating the admin API key"))?;
                if let AdminKey::OnFirstStart {
                    token_file: Some(path),
                } = &settings.admin
                {
                    tally_store::layout::write_file_durably(path, format!("{token}\n").as_bytes())
                        .map_err(failed(format!("writing {}", path.display())))?;
                }
                Some(token)
            }
            None => None,
        };
        // Logs the registry does not list (written before it existed) join it, on the record.
        for name in log.tenants() {
            crate::admin::adopt_tenant(&log, &tenants, &name)
                .await
                .map_err(failed(format!(
                    "adding tenant {name} to the tenant registry"
                )))?;
        }
        let oidc = match settings.http.oidc.clone() {
            Some(oidc) => Some(
                crate::oidc::Oidc::load(oidc)
                    .await
                    .map_err(failed("configuring single sign-on (OIDC)"))?,
            ),
            None => None,
        };
        let mut state = AppState::new(log.clone(), keys, tenants, settings.http);
        if let Some(oidc) = oidc {
            state = state.with_oidc(oidc);
        }

        // Witnesses: their own task asks them to cosign; nothing on the ingest path waits.
        let witnessing = if settings.witnesses.is_empty() {
            None
        } else {
            Some(Arc::new(
                Witnessing::new(settings.witnesses, settings.witness_settings, &log)
                    .map_err(failed("configuring the witnesses"))?,
            ))
        };
        let witness_task = witnessing.as_ref().map(|w| w.spawn(log.clone()));
        if let Some(w) = &witnessing {
            state = state.with_witnesses(w.clone());
        }

        // Everything that follows the log: each consumer on its own thread, from its cursor.
        let consumers = Arc::new(Consumers::new(log.clone()));
        if let Some(index) = &settings.index {
            let engine = open_index(
                log.data_dir(),
                index.tantivy.clone(),
                log.config().at_rest.as_ref(),
            )?;
            consumers
                .spawn(
                    tally_consumers::index::NAME,
                    IndexConsumer::new(
                        engine.clone(),
                        state.privacy.clone(),
                        state.index_commit_notifier(),
                    ),
                    IndexConsumer::settings(index.commit_interval),
                )
                .map_err(failed("starting the search index's consumer"))?;
            state = state.with_index(engine);
            // Erasures the index did not carry out before a failure or a crash.
            let retry = state.clone();
            let left =
                tokio::task::spawn_blocking(move || crate::privacy::retry_index_erasures(&retry))
                    .await
                    .map_err(failed("retrying pending index erasures"))?;
            if left > 0 {
                tracing::warn!(
                    left,
                    "index erasures are still pending; retrying every minute"
                );
            }
            state = state.with_component(
                "erasures",
                Arc::new(crate::privacy::PendingErasures::new(log.data_dir().clone())),
            );
        }
        if let Some(alerts) = &settings.alerts {
            let (book, rules) = crate::alerts::RuleBook::load(log.data_dir(), alerts)
                .map_err(failed("loading the alert rules"))?;
            let book = Arc::new(book);
            let opener: Arc<dyn tally_consumers::index::RecordOpener> = state.privacy.clone();
            consumers
                .spawn(
                    tally_alerts::consumer::NAME,
                    tally_alerts::AlertConsumer::open(
                        log.data_dir(),
                        rules,
                        opener,
                        crate::alerts::LogAlertOutput::new(
                            log.clone(),
                            tokio::runtime::Handle::current(),
                            book.clone(),
                        ),
                        book.updates(),
                        log.tenants()
                            .into_iter()
                            .filter_map(|t| Some((t.clone(), log.tenant(&t)?.size())))
                            .collect(),
                    ),
                    tally_alerts::AlertConsumer::settings(),
                )
                .map_err(failed("starting the alert rules' consumer"))?;
            state.alerts = Some(book.clone());
            state = state.with_component("alerts", book);
        }
        if !settings.sinks.is_empty() {
            let mut metrics = crate::sinks::SinkMetrics::default();
            for sink in settings.sinks {
                let name = tally_sinks::sink::consumer_name(&sink.spec.name);
                let views: Arc<dyn tally_sinks::EventViews> = state.privacy.clone();
                let counter = metrics.dead_lettered(&sink.spec.name);
                let consumer = tally_sinks::SinkConsumer::new(
                    sink,
                    views,
                    tokio::runtime::Handle::current(),
                    log.data_dir().consumer_dead_letter_path(&name),
                    counter,
                )
                .map_err(|e| failed(format!("configuring sink {name}"))(e))?;
                consumers
                    .spawn(&name, consumer, tally_sinks::SinkConsumer::settings())
                    .map_err(failed(format!("starting sink {name}")))?;
            }
            state = state.with_component("sinks", Arc::new(metrics));
        }
        state = state.with_component("consumers", consumers.clone());

        // Anchoring: checked (Object Lock on) before serving, stopped after the log has signed
        // its final checkpoints.
        let anchorer = match settings.anchor {
            Some(anchor) => {
                let location = anchor.settings.location.clone();
                let anchorer = tally_anchor::uploader::Anchorer::start(
                    anchor.client,
                    anchor.settings,
                    log.clone(),
                )
                .await
                .map_err(failed(format!("cannot anchor checkpoints to {location}")))?;
                state =
                    state.with_component("anchor", Arc::new(AnchorComponent(anchorer.status())));
                Some(anchorer)
            }
            None => None,
        };
        // Closes the windows of the aggregated server events (refusals, single-record reads).
        let tls = state
            .settings
            .tls
            .clone()
            .map(crate::tls::Tls::load)
            .transpose()
            .map_err(failed("configuring TLS"))?;
        // Also retries index erasures left pending by a failure.
        let window_task = {
            let (denials, reads) = (state.denials.clone(), state.reads.clone());
            let window = state.settings.aggregate.window;
            let retry = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(window);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    denials.flush().await;
                    reads.flush().await;
                    let retry = retry.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        crate::privacy::retry_index_erasures(&retry)
                    })
                    .await;
                }
            })
        };
        Ok(App {
            tls,
            window_task,
            state,
            log,
            consumers,
            report,
            admin_token,
            witnessing,
            witness_task,
            anchorer,
        })
    }

    /// The HTTP app: every route over this Tally.
    pub fn router(&self) -> Router {
        crate::router(self.state.clone())
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The API key store.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.state.keys
    }

    /// The listener's TLS configuration, when it serves HTTPS: reload it with
    /// [`crate::tls::Tls::reload`] (what `tally serve` does on SIGHUP).
    pub fn tls(&self) -> Option<&Arc<crate::tls::Tls>> {
        self.tls.as_ref()
    }

    /// The tenant registry.
    pub fn tenants(&self) -> &Arc<TenantRegistry> {
        &self.state.tenants
    }

    /// What recovery found in each tenant's log.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// The admin API key made by this start, if any (shown once).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The search index, when it runs.
    pub fn index(&self) -> Option<&Arc<dyn tally_index::EventIndex>> {
        self.state.index.as_ref()
    }

    /// The consumers of the log.
    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    /// The witnesses, when configured.
    pub fn witnesses(&self) -> &[WitnessEndpoint] {
        self.witnessing.as_ref().map_or(&[], |w| w.endpoints())
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then stops in order
    /// ([`App::stop`]). With [`ServerSettings::metrics_listen`] set, `/metrics` is also
    /// served there, without a key.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let metrics_listener = match self.state.settings.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        self.serve_with(listener, metrics_listener, shutdown).await
    }

    async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        metrics_listener: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.state.settings.connections.clone();
        // The metrics listener stops with the main one.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = metrics_listener.map(|l| {
            tokio::spawn(crate::transport::serve(
                l,
                crate::metrics_router(self.state.clone()),
                limits.clone(),
                crate::transport::ConnectionMetrics::default(),
                None,
                async {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        let metrics = self.state.connections.clone();
        let served = crate::transport::serve(
            listener,
            self.router(),
            limits,
            metrics,
            self.tls.clone(),
            shutdown,
        )
        .await;
        let _ = stop_metrics.send(());
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        self.stop().await;
        served
    }

    /// Serves HTTP on `addr` (e.g. `127.0.0.1:0`) in a background task, for tests,
    /// benchmarks and embedding; [`Running::stop`] stops it in order.
    pub async fn spawn(self, addr: &str) -> std::io::Result<Running> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let metrics_listener = match self.state.settings.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let metrics_url = match &metrics_listener {
            Some(l) => Some(format!("http://{}", l.local_addr()?)),
            None => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let running = Running {
            url: format!("{scheme}://{local}"),
            metrics_url,
            log: self.log.clone(),
            keys: self.state.keys.clone(),
            index: self.state.index.clone(),
            consumers: self.consumers.clone(),
            admin_token: self.admin_token.clone(),
            stop: Some(stop),
            task: None,
        };
        let task = tokio::spawn(self.serve_with(listener, metrics_listener, async {
            let _ = stopped.await;
        }));
        Ok(Running {
            task: Some(task),
            ..running
        })
    }

    /// Stops in order: the witness client; the consumers (each flushes and writes its
    /// cursor); the log (it finishes what it has and signs final checkpoints); then
    /// anchoring, which uploads those within ten seconds.
    pub async fn stop(self) {
        if let Some(task) = self.witness_task {
            task.abort();
        }
        // What the last window of refused requests counted goes on the record first.
        self.window_task.abort();
        self.state.denials.flush().await;
        self.state.reads.flush().await;
        tracing::info!("stopping: signing final checkpoints");
        let (consumers, log) = (self.consumers, self.log);
        let _ = tokio::task::spawn_blocking(move || {
            consumers.stop();
            log.shutdown();
        })
        .await;
        if let Some(anchorer) = self.anchorer {
            anchorer.stop(Duration::from_secs(10)).await;
        }
    }
}

/// Opens the search index of a data directory. The index is derived data: one that cannot be
/// opened is deleted and rebuilt from the log.
pub fn open_index(
    data: &DataDir,
    mut options: tally_index::TantivyOptions,
    at_rest: Option<&Arc<tally_store::AtRest>>,
) -> Result<Arc<dyn tally_index::EventIndex>, StartError> {
    let dir = data.index_path();
    if let Some(at_rest) = at_rest {
        options.cipher = Some(Arc::new(IndexKeys(at_rest.clone())));
    }
    match tally_index::TantivyIndex::open_with(&dir, options.clone()) {
        Ok(index) => Ok(Arc::new(index)),
        // Another process owns it: never delete what it is writing.
        Err(e @ tally_index::IndexError::Busy(_)) => Err(failed("opening the search index")(e)),
        Err(e) => {
            tracing::warn!(
                "the search index in {} cannot be opened ({e}); rebuilding it from the log",
                dir.display()
            );
            std::fs::remove_dir_all(&dir).map_err(failed(format!("removing {}", dir.display())))?;
            Ok(Arc::new(
                tally_index::TantivyIndex::open_with(&dir, options)
                    .map_err(failed("creating the search index"))?,
            ))
        }
    }
}

/// The search index's files sealed under the tenants' data keys (encryption at rest).
#[derive(Debug)]
struct IndexKeys(Arc<tally_store::AtRest>);

impl tally_index::IndexCipher for IndexKeys {
    fn current(&self, tenant: &str) -> std::io::Result<(u32, chacha20poly1305::XChaCha20Poly1305)> {
        self.0
            .current_data_key(tenant)
            .map_err(std::io::Error::other)
    }

    fn key(&self, tenant: &str, id: u32) -> std::io::Result<chacha20poly1305::XChaCha20Poly1305> {
        self.0.data_key(tenant, id).map_err(std::io::Error::other)
    }
}

/// The running anchor uploader, as a component `/healthz` and `/metrics` report.
struct AnchorComponent(Arc<tally_anchor::uploader::AnchorStatus>);

impl Component for AnchorComponent {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.0.register(registry);
    }

    fn health(&self) -> (bool, serde_json::Value) {
        self.0.report()
    }
}

/// Tally serving in a background task ([`App::spawn`]).
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Base URL of the metrics listener, when [`ServerSettings::metrics_listen`] is set.
    pub metrics_url: Option<String>,
    /// The log.
    pub log: Log,
    /// The API key store.
    pub keys: Arc<KeyStore>,
    /// The search index, when it runs.
    pub index: Option<Arc<dyn tally_index::EventIndex>>,
    /// The consumers of the log.
    pub consumers: Arc<Consumers>,
    /// The admin API key made at start, if any.
    pub admin_token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops serving, then everything else in order ([`App::stop`]), and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
