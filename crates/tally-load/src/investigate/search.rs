//! The Tally side: the search index rebuilt from the log with the index consumer's own code, and
//! the investigation queries asked two ways — over HTTP from the real API (what a user gets:
//! query parsing, the index, the records read from the log, the JSON page, and the durable
//! audit event every search appends), and directly from the engine (the index search and the
//! 50 record reads, nothing else) to show where the time goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_index::{EventIndex, Order, SearchOptions, TantivyIndex};
use tally_server::auth::{KeyStore, Scope};
use tally_server::tenants::TenantRegistry;
use tally_server::{AppState, ServerSettings};
use tally_store::Log;

use super::dataset::dir_bytes;
use super::{InvestigateError, Observer};

/// How the rebuild went.
#[derive(Debug, Clone)]
pub struct RebuildStats {
    /// Events indexed.
    pub events: u64,
    /// From clearing the index to the end of its commit.
    pub elapsed: Duration,
    /// Bytes of the index directory right after the commit (segments not merged yet).
    pub bytes_after_commit: u64,
    /// Time the background merges took to settle after the commit.
    pub merge_wait: Duration,
    /// Bytes of the index directory once merges settled.
    pub bytes_settled: u64,
    /// Segments once merges settled.
    pub segments: usize,
}

impl RebuildStats {
    /// Events indexed per second, commit included.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens the data directory's search index as `tally serve` does.
pub fn open_index(log: &Log) -> Result<Arc<TantivyIndex>, InvestigateError> {
    TantivyIndex::open(&log.data_dir().index_path())
        .map(Arc::new)
        .map_err(|e| InvestigateError::Index(e.to_string()))
}

/// Rebuilds `tenant`'s index from its first `events` records with
/// [`tally_consumers::index::rebuild`] (what `tally reindex` runs), then waits for the
/// background merges.
pub fn rebuild(
    log: &Log,
    index: &TantivyIndex,
    tenant: &str,
    events: u64,
    observer: &dyn Observer,
) -> Result<RebuildStats, InvestigateError> {
    let tlog = log
        .tenant(tenant)
        .ok_or_else(|| InvestigateError::Data(format!("tenant {tenant} has no log")))?;
    observer.start("rebuild index", Some(events));
    let started = Instant::now();
    let indexed = tally_consumers::index::rebuild(
        &*tlog,
        index,
        &tally_consumers::index::UnsealedOnly,
        Some(events),
        &mut |n| observer.advance(n),
    )
    .map_err(|e| InvestigateError::Index(e.to_string()))?;
    let elapsed = started.elapsed();
    observer.finish();
    let dir = log.data_dir().index_path();
    let bytes_after_commit = dir_bytes(&dir);
    observer.start("waiting for index merges", None);
    let started = Instant::now();
    let segments = index
        .wait_for_merges()
        .map_err(|e| InvestigateError::Index(e.to_string()))?;
    let merge_wait = started.elapsed();
    observer.finish();
    Ok(RebuildStats {
        events: indexed,
        elapsed,
        bytes_after_commit,
        merge_wait,
        bytes_settled: dir_bytes(&dir),
        segments: segments
            .iter()
            .find(|(t, _)| t == tenant)
            .map_or(0, |(_, n)| *n),
    })
}

/// A Tally server running in this process on the benchmark's data directory, with its index
/// but no index consumer: nothing is indexed while queries are timed (the audit events the searches
/// append go to the log only), so the timings are of searching alone. The one place that
/// wires the HTTP API by hand rather than through `tally_server::app::App`, which always
/// runs an index with its consumer: here the log and the index are already open, filled and
/// rebuilt by the benchmark itself.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// An admin API key.
    pub token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the HTTP API on `log` and `index` (an admin key is created for the run).
pub async fn serve(log: &Log, index: Arc<dyn EventIndex>) -> Result<Server, InvestigateError> {
    let keys = KeyStore::open(log.data_dir().api_keys_path())
        .map_err(|e| InvestigateError::Data(format!("API keys: {e}")))?;
    let (_, token) = keys
        .create("bench-search", vec![Scope::Admin], "*")
        .map_err(|e| InvestigateError::Data(format!("creating an API key: {e}")))?;
    let tenants = TenantRegistry::open(log.data_dir().tenant_registry_path())
        .map_err(|e| InvestigateError::Data(format!("tenants: {e}")))?;
    let state = AppState::new(
        log.clone(),
        Arc::new(keys),
        Arc::new(tenants),
        ServerSettings::default(),
    )
    .with_index(index);
    let (url, task) = listen(state).await?;
    Ok(Server { url, token, task })
}

/// Serves the API of `state` on an ephemeral local port: its base URL and the server task.
pub(super) async fn listen(
    state: AppState,
) -> Result<(String, tokio::task::JoinHandle<()>), InvestigateError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| InvestigateError::Io("127.0.0.1:0".into(), e))?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| InvestigateError::Io("127.0.0.1:0".into(), e))?
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, tally_server::router(state)).await;
    });
    Ok((url, task))
}

/// The part of a search page the benchmark checks.
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Hit>,
}

#[derive(serde::Deserialize)]
struct Hit {
    record: HitRecord,
}

#[derive(serde::Deserialize)]
struct HitRecord {
    id: String,
}

/// A client asking one server for first pages, over one kept-alive connection.
pub struct HttpSearcher {
    client: reqwest::Client,
    endpoint: String,
    auth: String,
    tenant: String,
}

impl HttpSearcher {
    /// A client of `server` for `tenant`.
    pub fn new(server: &Server, tenant: &str) -> Result<Self, InvestigateError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| InvestigateError::Task(e.to_string()))?;
        Ok(HttpSearcher {
            client,
            endpoint: format!("{}/v1/events", server.url),
            auth: format!("Bearer {}", server.token),
            tenant: tenant.to_string(),
        })
    }

    /// `GET /v1/events?q=…&limit=…`, the whole body read; returns the body.
    pub async fn fetch(&self, q: &str, limit: usize) -> Result<bytes::Bytes, InvestigateError> {
        let response = self
            .client
            .get(&self.endpoint)
            .header("authorization", &self.auth)
            .query(&[
                ("tenant", self.tenant.as_str()),
                ("q", q),
                ("limit", &limit.to_string()),
            ])
            .send()
            .await
            .map_err(|e| InvestigateError::Search(format!("{q}: {}", crate::error_chain(&e))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| InvestigateError::Search(format!("{q}: {}", crate::error_chain(&e))))?;
        if !status.is_success() {
            return Err(InvestigateError::Search(format!(
                "{q}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            )));
        }
        Ok(body)
    }

    /// The event ids of the first page, newest first.
    pub async fn first_page_ids(
        &self,
        q: &str,
        limit: usize,
    ) -> Result<Vec<String>, InvestigateError> {
        let body = self.fetch(q, limit).await?;
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| InvestigateError::Search(format!("{q}: unexpected page: {e}")))?;
        Ok(page.events.into_iter().map(|h| h.record.id).collect())
    }
}

/// The engine path of a search: parse, search the index, read the page's records from the log.
/// Returns the number of records read.
pub fn engine_first_page(
    log: &Log,
    index: &dyn EventIndex,
    tenant: &str,
    q: &str,
    limit: usize,
) -> Result<usize, InvestigateError> {
    let query = tally_query::parse(q).map_err(|e| InvestigateError::Search(format!("{q}: {e}")))?;
    let tlog = log
        .tenant(tenant)
        .ok_or_else(|| InvestigateError::Data(format!("tenant {tenant} has no log")))?;
    let opts = SearchOptions {
        now_ms: now_ms(),
        order: Order::NewestFirst,
        cursor: None,
        limit,
        upto: Some(tlog.size()),
    };
    let page = index
        .search(tenant, &query, &opts)
        .map_err(|e| InvestigateError::Index(e.to_string()))?;
    let mut bytes = 0;
    for &i in &page.indexes {
        bytes += tlog
            .record(i)
            .map_err(|e| InvestigateError::Data(format!("record {i}: {e}")))?
            .len();
    }
    std::hint::black_box(bytes);
    Ok(page.indexes.len())
}

/// Every match of `q`, counted by the index.
pub fn engine_count(
    index: &dyn EventIndex,
    tenant: &str,
    q: &str,
) -> Result<u64, InvestigateError> {
    let query = tally_query::parse(q).map_err(|e| InvestigateError::Search(format!("{q}: {e}")))?;
    let req = tally_index::StatsRequest {
        now_ms: now_ms(),
        by: None,
        interval_ms: None,
        limit: 1,
    };
    index
        .stats(tenant, &query, &req)
        .map(|s| s.total)
        .map_err(|e| InvestigateError::Index(e.to_string()))
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
