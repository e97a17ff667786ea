//! Tally's HTTP API over the embedded log, and the composition root that runs it all.
//!
//! Main items: [`app::App`] (builds a running Tally from [`app::AppSettings`]: the log, the
//! key store, the consumers, witnesses, anchoring and the HTTP app; what `tally serve`, the
//! tests and the benchmarks start), [`AppState`] (what a handler needs), [`router`] (every
//! route), [`ServerSettings`], and [`openapi::document`] (the OpenAPI 3.1 description served
//! at `/openapi.json`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tally_server::app::{App, AppSettings};
//! let app = App::start(AppSettings::new("./data")).await?;
//! if let Some(token) = app.admin_token() {
//!     println!("admin API key: {token}");
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7700").await?;
//! app.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Architecture Invariant: handlers never write to the data directory except through
//! [`tally_store::Log::append`] and the [`auth::KeyStore`]; reads go through
//! [`tally_store::TenantLog`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod aggregate;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod denials;
pub mod error;
mod extract;
pub mod oidc;
pub mod openapi;
pub mod privacy;
pub mod process;
mod rate;
pub mod reads;
mod routes;
pub mod sinks;
pub mod tenants;
pub mod tls;
pub mod transport;
pub mod wire;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post, put};
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tally_store::Log;

pub use audit::record_system_event;
pub use error::ApiError;

/// The tenant a request means when neither it nor its key names one.
pub const DEFAULT_TENANT: &str = "default";

/// Limits and policies of the HTTP API.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest accepted request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most events accepted in one request (413 above).
    pub max_batch_events: usize,
    /// How far in the future an event's `time` may be.
    pub max_future_skew: Duration,
    /// Serve the Merkle tree to anyone, without an API key: checkpoints, hash tiles,
    /// inclusion proofs by index and consistency proofs (the log key always is). Records,
    /// entry bundles (they hold the records), lookups by event id, search and everything else
    /// still need a key. For monitors and witnesses.
    pub public_tree: bool,
    /// How many connections, and how fast they must send their requests.
    pub connections: transport::ConnectionLimits,
    /// How fast request bodies must arrive, and how much memory they may take together.
    pub bodies: body::BodyLimits,
    /// Also serve `/metrics` here, without a key (for a scraper on an internal network). On
    /// the API's own address `/metrics` needs a key of every tenant with the metrics scope: it
    /// names every tenant and its size.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Whether ingest into a tenant that does not exist creates it (recorded as
    /// `tally.tenants.create`) or is refused (403 `unknown_tenant`).
    pub unknown_tenants: UnknownTenants,
    /// How refused requests (401, 403) and reads of single records are aggregated into
    /// audit events.
    pub aggregate: aggregate::AggregateSettings,
    /// Serve HTTPS with this certificate and key (and check client certificates against this
    /// CA); none: plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Accept bearer JWTs of this OpenID Connect issuer for people (single sign-on).
    pub oidc: Option<oidc::OidcSettings>,
    /// Record reads of single records by API keys (events by id or index, entry bundles,
    /// proofs by event id), aggregated ([`reads`]). Off by default: keys are services, which
    /// read in volume, and a verifier fetching entry bundles would grow the very log it
    /// checks. Searches, statistics, tails and exports are recorded whatever this says.
    pub record_key_reads: bool,
    /// Seal personal values at ingest (the default). Off, records are stored as sent (schema
    /// 1): masking still applies on read, but nothing stored from then on can be erased. For
    /// embedders that hold no personal data, and for measuring what sealing costs; `tally
    /// serve` always seals.
    pub seal_personal_data: bool,
}

/// What ingest does with a tenant that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownTenants {
    /// Creates it on its first event (recorded): convenient for one team, the default.
    #[default]
    Create,
    /// Refuses the request: tenants are made by an administrator first (`tally tenants
    /// create`), so a typo in a tenant name never starts a new log.
    Refuse,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 16 << 20,
            max_batch_events: 10_000,
            max_future_skew: Duration::from_secs(24 * 3600),
            public_tree: false,
            connections: transport::ConnectionLimits::default(),
            bodies: body::BodyLimits::default(),
            metrics_listen: None,
            unknown_tenants: UnknownTenants::default(),
            aggregate: aggregate::AggregateSettings::default(),
            record_key_reads: false,
            seal_personal_data: true,
            tls: None,
            oidc: None,
        }
    }
}

/// Metrics of the HTTP layer.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    pub(crate) ingest_requests: Counter,
    pub(crate) ingest_rejected: Counter,
    pub(crate) ingest_batch_events: Histogram,
    pub(crate) ingest_duplicates: Counter,
}

/// A background part of the server (checkpoint anchoring, for one) whose state `/healthz`
/// reports and whose metrics `/metrics` exports.
pub trait Component: Send + Sync {
    /// Adds its metrics to the server's registry.
    fn register_metrics(&self, registry: &mut Registry);
    /// Whether it works right now, and its state as JSON for `/healthz`.
    fn health(&self) -> (bool, serde_json::Value);
}

/// The consumers report in `/healthz` (a failing one makes the status `degraded`: the log
/// still takes events) and export their positions and lag in `/metrics`.
impl Component for tally_consumers::Consumers {
    fn register_metrics(&self, registry: &mut Registry) {
        tally_consumers::Consumers::register_metrics(self, registry);
    }

    fn health(&self) -> (bool, serde_json::Value) {
        tally_consumers::Consumers::health(self)
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub(crate) log: Log,
    pub(crate) keys: Arc<auth::KeyStore>,
    pub(crate) tenants: Arc<tenants::TenantRegistry>,
    pub(crate) settings: Arc<ServerSettings>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) http: HttpMetrics,
    pub(crate) index: Option<Arc<dyn tally_index::EventIndex>>,
    /// Bumped after every index commit; live streams wait on it.
    pub(crate) index_commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// The witness client, when witnesses are configured.
    pub(crate) witnesses: Option<Arc<witness::Witnessing>>,
    /// Reported by `/healthz` under their names.
    pub(crate) components: Vec<(&'static str, Arc<dyn Component>)>,
    /// The memory budget of request bodies being read.
    pub(crate) bodies: body::BodyBudget,
    /// The listener's connection counts, for `/metrics`.
    pub(crate) connections: transport::ConnectionMetrics,
    /// Records refused requests (401, 403) in the log, aggregated.
    pub(crate) denials: Arc<denials::DenialRecorder>,
    /// Records reads of single records in the log, aggregated.
    pub(crate) reads: Arc<reads::ReadRecorder>,
    /// The request allowance of each key that has a rate limit.
    pub(crate) key_rates: Arc<rate::Buckets>,
    /// The OIDC issuer whose tokens sign people in, when configured.
    pub(crate) oidc: Option<Arc<oidc::Oidc>>,
    /// Seals personal values at ingest and opens records for each reader.
    pub(crate) privacy: Arc<privacy::Privacy>,
    /// The alert rules in force, when the server runs them.
    pub(crate) alerts: Option<Arc<alerts::RuleBook>>,
}

impl AppState {
    /// Builds the state and registers every metric.
    pub fn new(
        log: Log,
        keys: Arc<auth::KeyStore>,
        tenants: Arc<tenants::TenantRegistry>,
        settings: ServerSettings,
    ) -> Self {
        let mut registry = Registry::default();
        log.metrics().register(&mut registry);
        let privacy = if settings.seal_personal_data {
            privacy::Privacy::of_log(&log, tenants.clone())
        } else {
            Arc::new(privacy::Privacy::new(
                log.data_dir().clone(),
                tenants.clone(),
                log.config().at_rest.clone(),
            ))
        };
        let bodies = body::BodyBudget::new(settings.bodies.clone());
        let connections = transport::ConnectionMetrics::default();
        let denials = denials::DenialRecorder::new(log.clone(), &settings.aggregate);
        let reads = reads::ReadRecorder::new(
            settings.record_key_reads,
            log.clone(),
            settings.aggregate.window,
            settings.aggregate.max_groups,
        );
        let http = HttpMetrics {
            ingest_requests: Counter::default(),
            ingest_rejected: Counter::default(),
            ingest_batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            ingest_duplicates: Counter::default(),
        };
        {
            let r = registry.sub_registry_with_prefix("tally_http");
            r.register(
                "ingest_requests",
                "Ingest requests received",
                http.ingest_requests.clone(),
            );
            r.register(
                "ingest_rejected_requests",
                "Ingest requests refused (4xx/5xx)",
                http.ingest_rejected.clone(),
            );
            r.register(
                "ingest_batch_events",
                "Events per accepted ingest request",
                http.ingest_batch_events.clone(),
            );
            r.register(
                "ingest_duplicate_events",
                "Events recognised as retries of stored ones",
                http.ingest_duplicates.clone(),
            );
            bodies.metrics.register(r);
            connections.register(r);
            denials.register(r);
            reads.register(r);
        }
        AppState {
            log,
            keys,
            tenants,
            denials,
            reads,
            key_rates: Arc::default(),
            oidc: None,
            privacy,
            bodies,
            connections,
            settings: Arc::new(settings),
            registry: Arc::new(registry),
            http,
            index: None,
            index_commits: Arc::new(tokio::sync::watch::Sender::new(0)),
            witnesses: None,
            components: Vec::new(),
            alerts: None,
        }
    }

    /// Serves checkpoints with the cosignatures `witnesses` gathers (its task runs apart:
    /// [`witness::Witnessing::spawn`]), and exports its metrics. Call before the state is
    /// cloned, or the metrics are not registered.
    pub fn with_witnesses(mut self, witnesses: Arc<witness::Witnessing>) -> Self {
        match Arc::get_mut(&mut self.registry) {
            Some(registry) => witnesses.register(registry),
            None => tracing::warn!("witness metrics not registered: the state was already shared"),
        }
        self.witnesses = Some(witnesses);
        self
    }

    /// Reports this component in `/healthz` (under `name`) and its metrics in `/metrics`.
    /// Call it before the state is handed to [`router`]: metrics can be registered only
    /// while nothing else holds the registry.
    pub fn with_component(mut self, name: &'static str, component: Arc<dyn Component>) -> Self {
        match Arc::get_mut(&mut self.registry) {
            Some(registry) => component.register_metrics(registry),
            None => tracing::warn!(
                component = name,
                "the metrics registry is already shared; this component's metrics are not exported"
            ),
        }
        self.components.push((name, component));
        self
    }

    /// Accepts people's tokens from this issuer ([`oidc`]).
    pub fn with_oidc(mut self, oidc: Arc<oidc::Oidc>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// A callback for the search index's consumer
    /// ([`tally_consumers::index::IndexConsumer`]): wakes live streams after each commit.
    pub fn index_commit_notifier(&self) -> impl Fn() + Send + 'static {
        let commits = self.index_commits.clone();
        move || {
            commits.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Serves investigation queries (`GET /v1/events`, `/v1/stats`) from this index, which
    /// a [`tally_consumers::index::IndexConsumer`] keeps up to date with the log.
    pub fn with_index(mut self, index: Arc<dyn tally_index::EventIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// The log this state serves.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server hit a bug handling this request; nothing of it was stored unless it was acknowledged",
    )
    .into_response()
}

/// The metrics listener's routes: `/metrics` without a key, nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::ops::metrics_unauthenticated))
        .fallback(routes::ops::not_found)
        .with_state(state)
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    use routes::*;
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/events", post(ingest::ingest).get(search::search))
        .route("/v1/stats", get(search::stats))
        .route("/v1/events/stream", get(stream::stream))
        .route("/v1/export", get(export::export))
        .route("/v1/events/{key}", get(events::get_event))
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route("/v1/tenants/{tenant}", get(tenants::describe))
        .route("/v1/tenants/{tenant}/disable", post(tenants::disable))
        .route("/v1/tenants/{tenant}/enable", post(tenants::enable))
        .route("/v1/tenants/{tenant}/quotas", put(tenants::set_quotas))
        .route(
            "/v1/tenants/{tenant}/policy",
            get(privacy::get_policy).put(privacy::set_policy),
        )
        .route("/v1/tenants/{tenant}/holds", post(privacy::place_hold))
        .route(
            "/v1/tenants/{tenant}/holds/release",
            post(privacy::release_hold),
        )
        .route("/v1/tenants/{tenant}/erasures", post(privacy::erase))
        .route(
            "/v1/tenants/{tenant}/data-keys",
            get(privacy::get_data_keys),
        )
        .route(
            "/v1/tenants/{tenant}/data-keys/rotate",
            post(privacy::rotate_data_key),
        )
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{id}", get(alerts::get))
        .route("/v1/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/v1/alerts/{id}/resolve", post(alerts::resolve))
        .route("/v1/rules", get(alerts::rules).put(alerts::set_rules))
        .route("/v1/checkpoint", get(proofs::checkpoint))
        .route("/v1/log-key", get(proofs::log_key))
        .route("/v1/proof/inclusion", get(proofs::inclusion))
        .route("/v1/proof/consistency", get(proofs::consistency))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/keys/{id}/rotate", post(keys::rotate))
        .route("/logs/{tenant}/checkpoint", get(tiles::tenant_checkpoint))
        .route("/logs/{tenant}/tile/{*path}", get(tiles::tenant_tile))
        .route("/checkpoint", get(tiles::default_checkpoint))
        .route("/tile/{*path}", get(tiles::default_tile))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Bodies are read by the ingest handler itself so that an oversized one gets a JSON 413.
        .layer(axum::extract::DefaultBodyLimit::max(
            body_limit.saturating_add(1),
        ))
        // Every body stalls at most this long between chunks, whichever handler reads it
        // (ingest also bounds its total time and memory: `body`).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.settings.bodies.idle_timeout,
        ))
        // Every refused request is on the record (aggregated): outside the handlers, so that
        // no route can forget it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            denials::record_refusals,
        ))
        // A bug must cost one request a JSON 500, never the connection or the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}
