//! Load against Tally's ingest endpoint, `POST {url}/v1/events`.
//!
//! A request is acknowledged when Tally answers `200` with `{"events": [...]}` listing one entry
//! per event sent; by Tally's contract that means every event is on stable storage and has a
//! leaf index. Anything else (another status, a transport error, a short list) counts as an
//! error, and the first one is kept in [`LoadReport::first_error`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::driver::{drive, worker_rng, Claim, Plan, Worker, POOL_EVENTS};
use crate::generate::{fresh_id, EventGenerator, ID_RANGE};
use crate::{error_chain, LoadError, LoadMode, LoadReport};

/// Options of a run against a Tally server.
#[derive(Debug, Clone)]
pub struct HttpLoadOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:7700`; `/v1/events` is appended.
    pub url: String,
    /// API key with the ingest scope, sent as `Authorization: Bearer {token}`.
    pub token: String,
    /// One event per request, or batches.
    pub mode: LoadMode,
    /// Requests in flight at once; each has its own task and connection.
    pub concurrency: usize,
    /// Length of the measured phase. Zero means no time limit (then `total_events` must be set).
    pub duration: Duration,
    /// Traffic sent before measuring starts, to fill connection pools and caches; not counted.
    pub warmup: Duration,
    /// Stop the measured phase after exactly this many events were sent.
    pub total_events: Option<u64>,
    /// Seed of the event generator and of the ids given to reused bodies.
    pub seed: u64,
    /// Put `"tenant"` in every event; by default the server takes the tenant from the key.
    pub tenant: Option<String>,
    /// Do not draw a progress line on stderr.
    pub quiet: bool,
    /// Send at most this many events per second (warm-up included), on a fixed schedule;
    /// `None` sends as fast as the server acknowledges. For measuring the server at a given
    /// load rather than at saturation.
    pub rate_limit: Option<f64>,
    /// For an `https` URL: also trust this PEM CA certificate (a private CA's).
    pub ca_pem: Option<Vec<u8>>,
    /// Speak HTTP/1.1 only, even where TLS would let the client choose HTTP/2.
    pub http1_only: bool,
}

impl Default for HttpLoadOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:7700".into(),
            token: String::new(),
            mode: LoadMode::Batched { batch_size: 1000 },
            concurrency: 8,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            total_events: None,
            seed: 1,
            tenant: None,
            quiet: false,
            rate_limit: None,
            ca_pem: None,
            http1_only: false,
        }
    }
}

/// Runs the load described by `opts` against a Tally server and reports what it acknowledged.
///
/// Request bodies are generated before the clock starts; long runs reuse them with fresh event
/// ids, so every event sent is new to the server. Per-request failures are counted in the
/// report; the run fails only if it cannot start or if no request succeeded.
pub async fn run_http(opts: &HttpLoadOptions) -> Result<LoadReport, LoadError> {
    run_http_with_pool(opts, POOL_EVENTS).await
}

async fn run_http_with_pool(
    opts: &HttpLoadOptions,
    pool_cap: usize,
) -> Result<LoadReport, LoadError> {
    let mut plan = Plan::new(
        "tally",
        opts.mode,
        opts.concurrency,
        opts.duration,
        opts.warmup,
        opts.total_events,
        opts.quiet,
    )?;
    if let Some(rate) = opts.rate_limit {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::InvalidOptions(format!(
                "rate_limit must be a positive number of events per second, not {rate}"
            )));
        }
        plan.rate = Some(rate);
    }
    let endpoint = Url::parse(&format!("{}/v1/events", opts.url.trim_end_matches('/')))
        .map_err(|e| LoadError::InvalidOptions(format!("url {:?}: {e}", opts.url)))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(LoadError::InvalidOptions(format!(
            "url {:?} is not http(s)",
            opts.url
        )));
    }
    let auth = HeaderValue::from_str(&format!("Bearer {}", opts.token)).map_err(|_| {
        LoadError::InvalidOptions("token contains characters not allowed in a header".into())
    })?;

    let ca = opts
        .ca_pem
        .as_deref()
        .map(reqwest::Certificate::from_pem)
        .transpose()
        .map_err(|e| LoadError::InvalidOptions(format!("ca_pem: {e}")))?;

    let generator = EventGenerator::new(opts.seed).with_tenant(opts.tenant.clone());
    let (events, batch, single) = (
        plan.pool_events(pool_cap),
        plan.batch,
        opts.mode == LoadMode::Single,
    );
    let pool = tokio::task::spawn_blocking(move || build_pool(generator, events, batch, single))
        .await
        .map_err(|e| LoadError::Task(e.to_string()))?;
    let pool = Arc::new(pool);

    let workers = (0..plan.concurrency)
        .map(|i| {
            // One client per task, with one kept-alive connection: `concurrency` then means
            // connections, as it would for that many independent application instances.
            let mut builder = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60));
            if let Some(ca) = &ca {
                builder = builder.add_root_certificate(ca.clone());
            }
            if opts.http1_only {
                builder = builder.http1_only();
            }
            let client = builder.build().map_err(LoadError::HttpClient)?;
            Ok(HttpWorker {
                client,
                endpoint: endpoint.clone(),
                auth: auth.clone(),
                pool: Arc::clone(&pool),
                rng: worker_rng(opts.seed, i),
            })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    drive(&plan, workers).await
}

/// A pre-generated request body: one event, or a JSON array of `batch` events.
#[derive(Debug)]
struct Body {
    bytes: Bytes,
    /// Where each event's id starts, so a reused body can get fresh ids in place.
    id_offsets: Vec<usize>,
    /// Where each event ends, so a batch can be cut short for the last request of a run.
    ends: Vec<usize>,
}

fn build_pool(
    mut generator: EventGenerator,
    events: usize,
    batch: usize,
    single: bool,
) -> Vec<Body> {
    (0..events / batch)
        .map(|_| {
            if single {
                let bytes = generator.next_json();
                return Body {
                    ends: vec![bytes.len()],
                    id_offsets: vec![ID_RANGE.start],
                    bytes: bytes.into(),
                };
            }
            let (bytes, spans) = generator.json_array_spans(batch);
            Body {
                bytes: bytes.into(),
                id_offsets: spans.iter().map(|s| s.start + ID_RANGE.start).collect(),
                ends: spans.iter().map(|s| s.end).collect(),
            }
        })
        .collect()
}

struct HttpWorker {
    client: reqwest::Client,
    endpoint: Url,
    auth: HeaderValue,
    pool: Arc<Vec<Body>>,
    rng: StdRng,
}

impl HttpWorker {
    /// The bytes to send for `claim`: the pooled body itself when it is fresh and whole (no
    /// copy), otherwise a copy cut to `claim.events` and, if reused, with new ids.
    fn body(&mut self, claim: &Claim) -> Bytes {
        let (slot, reused) = claim.slot(self.pool.len());
        let body = &self.pool[slot];
        let whole = claim.events == body.ends.len();
        if whole && !reused {
            return body.bytes.clone();
        }
        let end = if whole {
            body.bytes.len()
        } else {
            body.ends[claim.events - 1]
        };
        let mut bytes = Vec::with_capacity(end + 1);
        bytes.extend_from_slice(&body.bytes[..end]);
        if !whole {
            bytes.push(b']');
        }
        if reused {
            for &offset in &body.id_offsets[..claim.events] {
                bytes[offset..offset + ID_RANGE.len()].copy_from_slice(&fresh_id(&mut self.rng));
            }
        }
        bytes.into()
    }
}

/// The part of Tally's ingest response the load checks: one entry per acknowledged event.
#[derive(Deserialize)]
struct Ack {
    events: Vec<IgnoredAny>,
}

impl Worker for HttpWorker {
    async fn send(&mut self, claim: Claim) -> Result<(), String> {
        let body = self.body(&claim);
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            format!(
                "HTTP {status}, reading the body failed: {}",
                error_chain(&e)
            )
        })?;
        if status != StatusCode::OK {
            return Err(format!("HTTP {status}: {}", snippet(&bytes)));
        }
        let ack: Ack = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "HTTP 200 without an acknowledgement ({e}): {}",
                snippet(&bytes)
            )
        })?;
        if ack.events.len() != claim.events {
            return Err(format!(
                "HTTP 200 acknowledged {} of {} events",
                ack.events.len(),
                claim.events
            ));
        }
        Ok(())
    }
}

/// The start of a response body, enough to show an error message without flooding the report.
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::Router;
    use serde_json::{json, Value};

    use super::*;

    /// What the fake server saw.
    #[derive(Default)]
    struct Seen {
        ids: Mutex<Vec<String>>,
        requests: AtomicU64,
        arrays: AtomicU64,
        objects: AtomicU64,
    }

    #[derive(Clone)]
    struct Fake {
        seen: Arc<Seen>,
        /// Answer 503 to every n-th request (0: never).
        fail_every: u64,
    }

    /// Mimics Tally's ingest contract: bearer auth, JSON content type, an object or an array,
    /// and `200 {"events":[{"id","index"}...]}` on success.
    async fn ingest(
        State(fake): State<Fake>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode as S;
        let n = fake.seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer secret") {
            return (
                S::UNAUTHORIZED,
                r#"{"error":"unauthorized","message":"bad API key"}"#.into(),
            );
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            return (S::UNSUPPORTED_MEDIA_TYPE, "{}".into());
        }
        if fake.fail_every > 0 && n % fake.fail_every == 0 {
            return (
                S::SERVICE_UNAVAILABLE,
                r#"{"error":"overloaded","retry_after":1}"#.into(),
            );
        }
        let events = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(events)) => {
                fake.seen.arrays.fetch_add(1, Ordering::SeqCst);
                events
            }
            Ok(event @ Value::Object(_)) => {
                fake.seen.objects.fetch_add(1, Ordering::SeqCst);
                vec![event]
            }
            _ => return (S::BAD_REQUEST, r#"{"error":"invalid JSON"}"#.into()),
        };
        let mut ids = fake.seen.ids.lock().unwrap();
        let acks: Vec<Value> = events
            .iter()
            .map(|e| {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                ids.push(id.clone());
                json!({"id": id, "index": ids.len() - 1})
            })
            .collect();
        (S::OK, json!({ "events": acks }).to_string())
    }

    async fn start_fake(fail_every: u64) -> (String, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route("/v1/events", post(ingest))
            .with_state(Fake {
                seen: Arc::clone(&seen),
                fail_every,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn options(url: &str, mode: LoadMode) -> HttpLoadOptions {
        HttpLoadOptions {
            url: url.into(),
            token: "secret".into(),
            mode,
            concurrency: 4,
            duration: Duration::ZERO,
            warmup: Duration::ZERO,
            total_events: Some(1_000),
            seed: 9,
            tenant: None,
            quiet: true,
            rate_limit: None,
            ..HttpLoadOptions::default()
        }
    }

    fn assert_unique(seen: &Seen) -> usize {
        let ids = seen.ids.lock().unwrap();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "the server received a repeated event id"
        );
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
        ids.len()
    }

    #[tokio::test]
    async fn batched_run_counts_every_acknowledged_event() {
        let (url, seen) = start_fake(0).await;
        let opts = options(&url, LoadMode::Batched { batch_size: 64 });
        let report = run_http(&opts).await.unwrap();
        assert_eq!(report.events, 1_000);
        assert_eq!(report.requests, 16, "15 batches of 64 and one of 40");
        assert_eq!(report.errors, 0);
        assert_eq!(seen.arrays.load(Ordering::SeqCst), 16);
        assert_eq!(seen.objects.load(Ordering::SeqCst), 0);
        assert_eq!(assert_unique(&seen), 1_000);
        assert!(report.p50_us > 0 && report.p50_us <= report.p90_us);
        assert!(report.p90_us <= report.p99_us && report.p99_us <= report.max_us);
        assert!(report.label.contains("batch=64") && report.label.contains("c=4"));
    }

    #[tokio::test]
    async fn reused_bodies_get_fresh_ids() {
        let (url, seen) = start_fake(0).await;
        let mut opts = options(&url, LoadMode::Batched { batch_size: 10 });
        opts.total_events = Some(500);
        // A pool of 3 batches is reused many times over.
        let report = run_http_with_pool(&opts, 30).await.unwrap();
        assert_eq!(report.events, 500);
        assert_eq!(assert_unique(&seen), 500);
    }

    #[tokio::test]
    async fn single_mode_sends_objects_and_warmup_is_not_counted() {
        let (url, seen) = start_fake(0).await;
        let mut opts = options(&url, LoadMode::Single);
        opts.total_events = None;
        opts.warmup = Duration::from_millis(100);
        opts.duration = Duration::from_millis(200);
        let report = run_http_with_pool(&opts, 50).await.unwrap();
        assert_eq!(report.events, report.requests);
        assert_eq!(seen.arrays.load(Ordering::SeqCst), 0);
        let received = assert_unique(&seen) as u64;
        assert!(report.events > 0);
        assert!(
            received > report.events,
            "warm-up requests reached the server but are not reported"
        );
    }

    #[tokio::test]
    async fn non_200_replies_are_counted_with_the_first_body() {
        let (url, seen) = start_fake(3).await;
        let mut opts = options(&url, LoadMode::Batched { batch_size: 10 });
        opts.concurrency = 1;
        opts.total_events = Some(300);
        let report = run_http(&opts).await.unwrap();
        assert_eq!(report.requests + report.errors, 30);
        assert_eq!(report.errors, 10);
        assert_eq!(report.events, 200);
        assert_eq!(seen.ids.lock().unwrap().len(), 200);
        let first = report.first_error.unwrap();
        assert!(
            first.contains("503") && first.contains("overloaded"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn wrong_token_fails_the_run() {
        let (url, _) = start_fake(0).await;
        let mut opts = options(&url, LoadMode::Single);
        opts.token = "wrong".into();
        opts.total_events = Some(20);
        match run_http(&opts).await {
            Err(LoadError::NoSuccess {
                errors,
                first_error,
            }) => {
                assert_eq!(errors, 20);
                assert!(
                    first_error.contains("401") && first_error.contains("bad API key"),
                    "{first_error}"
                );
            }
            other => panic!("expected NoSuccess, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_server_fails_the_run() {
        // Bind then drop a listener to get a local port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = options(&format!("http://127.0.0.1:{port}"), LoadMode::Single);
        opts.total_events = Some(3);
        opts.concurrency = 1;
        match run_http(&opts).await {
            Err(LoadError::NoSuccess { first_error, .. }) => {
                assert!(first_error.contains("request failed"), "{first_error}")
            }
            other => panic!("expected NoSuccess, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn short_acknowledgement_is_an_error() {
        async fn short(body: Bytes) -> String {
            let n = serde_json::from_slice::<Vec<Value>>(&body).unwrap().len();
            json!({"events": vec![json!({"index": 0}); n - 1]}).to_string()
        }
        let app = Router::new().route("/v1/events", post(short));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut opts = options(&url, LoadMode::Batched { batch_size: 5 });
        opts.total_events = Some(10);
        let err = run_http(&opts).await.unwrap_err();
        assert!(
            err.to_string().contains("acknowledged 4 of 5 events"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_options_are_refused() {
        let mut opts = options("ftp://127.0.0.1", LoadMode::Single);
        assert!(matches!(
            run_http(&opts).await,
            Err(LoadError::InvalidOptions(_))
        ));
        opts.url = "not a url".into();
        assert!(matches!(
            run_http(&opts).await,
            Err(LoadError::InvalidOptions(_))
        ));
    }
}
