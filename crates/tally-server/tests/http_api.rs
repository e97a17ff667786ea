//! Integration tests of the HTTP API over real HTTP.
//!
//! Each test starts the real server in-process (a temporary data directory, the embedded log,
//! the key store, `axum::serve` on an ephemeral port) and talks to it with `reqwest`, the way a
//! client would. One test per topic: ingest, validation, limits, idempotency, auth, tenant
//! isolation, proofs, tiles, operations, restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_server::ServerSettings;
use tally_store::{DataDir, Log, LogConfig};
use tally_tlog::{Checkpoint, Hash, MemoryTree, NoteVerifier};
use tempfile::TempDir;

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

// ---------------------------------------------------------------------------------------------
// Server under test
// ---------------------------------------------------------------------------------------------

/// The real server, in-process, on 127.0.0.1 with an ephemeral port.
struct Server {
    base: String,
    /// Bearer token of an admin key (scopes [admin], tenant `*`).
    admin: String,
    http: Client,
    log: Log,
    running: Option<Running>,
    _tmp: Option<TempDir>,
}

/// Settings used unless a test needs other limits.
fn settings() -> ServerSettings {
    ServerSettings::default()
}

/// The log's settings unless a test needs others.
fn log_config() -> LogConfig {
    LogConfig {
        checkpoint_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

impl Server {
    /// A fresh server on a new temporary data directory.
    async fn start() -> Server {
        Server::start_with(settings()).await
    }

    async fn start_with(settings: ServerSettings) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut server = Server::open(tmp.path(), settings, None).await;
        server._tmp = Some(tmp);
        server
    }

    /// Opens (or reopens) the data directory at `path`. Without `admin` a new admin key is made.
    async fn open(path: &Path, settings: ServerSettings, admin: Option<String>) -> Server {
        Server::open_configured(path, settings, admin, log_config()).await
    }

    /// [`Server::open`] with the log's settings given.
    async fn open_configured(
        path: &Path,
        settings: ServerSettings,
        admin: Option<String>,
        config: LogConfig,
    ) -> Server {
        let app = App::start(AppSettings {
            log: config,
            http: settings,
            index: None,
            admin: match admin {
                Some(_) => AdminKey::None,
                None => AdminKey::Create("admin".into()),
            },
            ..AppSettings::new(path)
        })
        .await
        .expect("start tally");
        let admin = admin
            .or_else(|| app.admin_token().map(str::to_string))
            .expect("an admin key");
        let running = app.spawn("127.0.0.1:0").await.expect("serve");
        Server {
            base: running.url.clone(),
            admin,
            http: Client::new(),
            log: running.log.clone(),
            running: Some(running),
            _tmp: None,
        }
    }

    /// Stops serving, shuts the log down, and releases the data directory.
    async fn stop(mut self) {
        self.http = Client::new(); // drops the pooled keep-alive connections
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(10), running.stop())
                .await
                .expect("server stops within 10 s");
        }
        self.log.shutdown();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the admin token.
    async fn get(&self, path: &str) -> Resp {
        self.get_as(Some(&self.admin), path).await
    }

    /// GET with the given token (or none).
    async fn get_as(&self, token: Option<&str>, path: &str) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Resp::from(req.send().await.expect("GET sent")).await
    }

    /// POST a raw body with the given token and Content-Type (either may be absent).
    async fn post_as(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut req = self.http.post(self.url(path)).body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        Resp::from(req.send().await.expect("POST sent")).await
    }

    /// POST a raw body to `/v1/events` as admin.
    async fn post_events(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Resp {
        self.post_as(Some(&self.admin), "/v1/events", Some(content_type), body)
            .await
    }

    /// POST a JSON value to `/v1/events` as admin.
    async fn post_json(&self, body: &Value) -> Resp {
        self.post_events(JSON, body.to_string()).await
    }

    /// Ingests JSON as admin and expects success.
    async fn ingest(&self, body: &Value) -> Vec<Stored> {
        stored(&self.post_json(body).await)
    }

    async fn delete(&self, path: &str) -> Resp {
        let req = self.http.delete(self.url(path)).bearer_auth(&self.admin);
        Resp::from(req.send().await.expect("DELETE sent")).await
    }

    /// Size of a tenant's log as `GET /v1/tenants` reports it (0 when it has none).
    /// Creates a key with `scopes` for `tenant` (admin token); returns its token.
    async fn key(&self, scopes: &[&str], tenant: &str) -> String {
        let body = json!({"name": "k", "scopes": scopes, "tenant": tenant});
        self.post_as(Some(&self.admin), "/v1/keys", Some(JSON), body.to_string())
            .await
            .expect(StatusCode::CREATED)
            .json()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn tenant_size(&self, tenant: &str) -> u64 {
        let list = self.get("/v1/tenants").await.ok().json();
        list.as_array()
            .expect("tenant list")
            .iter()
            .find(|t| t["name"] == tenant)
            .map_or(0, |t| t["size"].as_u64().expect("size"))
    }

    /// `GET /v1/events/{key}?tenant=&form=leaf`, expecting 200; returns the record bytes as
    /// hashed into the tree.
    async fn record(&self, tenant: &str, key: &str) -> Vec<u8> {
        self.get(&format!("/v1/events/{key}?tenant={tenant}&form=leaf"))
            .await
            .ok()
            .body
    }

    /// Every record of a tenant, fetched one by one by index.
    async fn records(&self, tenant: &str, size: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(size as usize);
        for i in 0..size {
            out.push(self.record(tenant, &i.to_string()).await);
        }
        out
    }

    /// The log's public key, from `GET /v1/log-key`.
    async fn verifier(&self) -> NoteVerifier {
        let text = self.get("/v1/log-key").await.ok().text();
        NoteVerifier::parse_vkey(text.trim()).expect("log-key is a verifier key")
    }

    /// Waits until the tenant's signed checkpoint covers `size` leaves; returns it after checking
    /// its signature with the key from `/v1/log-key`.
    async fn wait_checkpoint(&self, tenant: &str, size: u64) -> Checkpoint {
        let verifier = self.verifier().await;
        for _ in 0..500 {
            let resp = self.get(&format!("/v1/checkpoint?tenant={tenant}")).await;
            if resp.status == StatusCode::OK {
                let cp = open_checkpoint(&resp.text(), &verifier);
                assert!(cp.size <= size, "checkpoint beyond the log: {cp:?}");
                if cp.size == size {
                    return cp;
                }
            } else {
                resp.error(StatusCode::NOT_FOUND);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no checkpoint of size {size} for tenant {tenant} within 10 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping `running` stops serving; the log is shut here so that the data directory
        // is free for the next open at once.
        self.log.shutdown();
    }
}

/// Opens a signed checkpoint note and parses its body.
fn open_checkpoint(note: &str, verifier: &NoteVerifier) -> Checkpoint {
    let opened = tally_tlog::open(note, std::slice::from_ref(verifier))
        .unwrap_or_else(|e| panic!("checkpoint signature does not verify ({e}):\n{note}"));
    Checkpoint::parse(&opened.text).expect("checkpoint body")
}

/// A response, fully read.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("response body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("ASCII header")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status, printing the body when it differs.
    fn expect(self, status: StatusCode) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts 200.
    fn ok(self) -> Resp {
        self.expect(StatusCode::OK)
    }

    /// Asserts a JSON error of this status (`{"error":{"status","code","message",...}}`) and
    /// returns the `error` object.
    fn error(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type").starts_with(JSON),
            "error content type {:?}",
            self.headers.get(CONTENT_TYPE)
        );
        let body = self.json();
        let error = &body["error"];
        assert_eq!(error["status"], status.as_u16(), "{body}");
        assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{body}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        error.clone()
    }

    /// Asserts the answer to bad input is a JSON 4xx (never a 5xx, never a success).
    fn client_error(&self, what: &str) -> Value {
        assert!(
            self.status.is_client_error(),
            "{what}: expected a 4xx, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.error(self.status)
    }
}

/// One entry of an ingest response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    id: String,
    tenant: String,
    index: u64,
    duplicate: bool,
}

/// The entries of a successful ingest response.
fn stored(resp: &Resp) -> Vec<Stored> {
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "ingest failed: {}",
        String::from_utf8_lossy(&resp.body)
    );
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        events: Vec<Stored>,
    }
    serde_json::from_slice::<Body>(&resp.body)
        .expect("ingest response shape")
        .events
}

/// `(event, field)` of every detail of an error.
fn details(error: &Value) -> Vec<(Option<u64>, String)> {
    error["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details in {error}"))
        .iter()
        .map(|d| {
            (
                d["event"].as_u64(),
                d["field"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A valid event; `n` makes it distinct.
fn event(n: usize) -> Value {
    json!({
        "time": "2026-01-02T03:04:05.678+02:00",
        "actor": {"id": format!("user-{n}"), "type": "user", "ip": "192.0.2.1"},
        "action": "user.login",
        "category": "LOGIN",
        "outcome": "SUCCESS",
    })
}

/// A valid event of a tenant.
fn event_in(tenant: &str, n: usize) -> Value {
    let mut e = event(n);
    e["tenant"] = json!(tenant);
    e
}

/// `count` events of a tenant, as a JSON array.
fn batch(tenant: &str, from: usize, count: usize) -> Value {
    Value::Array((from..from + count).map(|n| event_in(tenant, n)).collect())
}

/// A fresh client-side event id.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{text:?} is not base64: {e}"))
}

fn hash_of(text: &Value) -> Hash {
    unb64(text.as_str().expect("base64 string"))
        .try_into()
        .expect("32-byte hash")
}

/// RFC 6962 leaf hash, computed here independently: SHA-256(0x00 || record).
fn leaf(record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(record);
    h.finalize().into()
}

fn tree_of(records: &[Vec<u8>]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for r in records {
        tree.push(leaf(r));
    }
    tree
}

/// The id part of a `tly_<id>_<secret>` token.
fn key_id_of(token: &str) -> String {
    let rest = token.strip_prefix("tly_").expect("token prefix");
    rest.split_once('_').expect("token shape").0.to_string()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ingest_object_array_and_ndjson_store_canonical_records() {
    let srv = Server::start().await;
    let admin_key_id = key_id_of(&srv.admin);
    let before = time::OffsetDateTime::now_utc();

    // One JSON object, with a client id in upper case and every optional field.
    let client_id = "0190A0B1-C2D3-4E5F-8A9B-0C1D2E3F4A5B";
    let mut full = event_in("t1", 0);
    full["id"] = json!(client_id);
    full["actor"]["ip"] = json!("2001:DB8:0:0:0:0:0:1");
    full["actor"]["user_agent"] = json!("curl/8.0");
    full["actor"]["session_id"] = json!("s-1");
    full["resource"] = json!({"type": "document", "id": "doc-7", "name": "Q3 plan"});
    full["reason"] = json!("line one\nline two");
    full["request_id"] = json!("req-1");
    full["trace_id"] = json!("trace-1");
    full["correlation_id"] = json!("corr-1");
    full["before"] = json!({"b": 1, "a": [true, null]});
    full["after"] = json!("text");
    full["metadata"] = json!({"z": 1.5, "a": "x"});
    full["schema_version"] = json!(1);
    let one = srv.ingest(&full).await;
    assert_eq!(
        one,
        vec![Stored {
            id: client_id.to_lowercase(),
            tenant: "t1".into(),
            index: 0,
            duplicate: false
        }]
    );

    // A JSON array, tenants named in the events; ids are assigned.
    let mut array = batch("t1", 1, 3);
    array[1]["time"] = json!("2026-01-02T03:04:05.6789Z"); // truncated, not rounded
    array[2]["time"] = json!("2026-01-02T03:04:05Z");
    let three = srv.ingest(&array).await;
    assert_eq!(three.len(), 3);

    // NDJSON with blank lines (and a CRLF), tenant from the query string.
    let lines: Vec<String> = (4..7).map(|n| event(n).to_string()).collect();
    let ndjson = format!("\n{}\n\n   \n{}\r\n{}\n\n", lines[0], lines[1], lines[2]);
    let resp = srv
        .post_as(
            Some(&srv.admin),
            "/v1/events?tenant=t1",
            Some(NDJSON),
            ndjson,
        )
        .await;
    let nd = stored(&resp);
    assert_eq!(nd.len(), 3);

    let all: Vec<Stored> = one.iter().chain(&three).chain(&nd).cloned().collect();
    for (i, s) in all.iter().enumerate() {
        assert_eq!(
            s.index, i as u64,
            "indexes are contiguous, in order: {all:?}"
        );
        assert_eq!(s.tenant, "t1");
        assert!(!s.duplicate);
        uuid::Uuid::parse_str(&s.id).expect("id is a UUID");
        assert_eq!(s.id, s.id.to_lowercase());
    }
    let mut ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "assigned ids are distinct");
    assert_eq!(srv.tenant_size("t1").await, 7);

    let after = time::OffsetDateTime::now_utc();
    let mut records = Vec::new();
    for s in &all {
        let by_id = srv
            .get(&format!("/v1/events/{}?tenant=t1", s.id))
            .await
            .ok();
        let by_index = srv
            .get(&format!("/v1/events/{}?tenant=t1", s.index))
            .await
            .ok();
        assert_eq!(by_id.body, by_index.body, "same record by id and by index");
        // Upper-case id lookups find it too.
        let by_upper = srv
            .get(&format!("/v1/events/{}?tenant=t1", s.id.to_uppercase()))
            .await
            .ok();
        assert_eq!(by_upper.body, by_id.body);
        let as_hashed = srv
            .get(&format!("/v1/events/{}?tenant=t1&form=leaf", s.id))
            .await
            .ok();
        for r in [&by_id, &by_index, &as_hashed] {
            assert!(r.header("content-type").starts_with(JSON));
            assert_eq!(r.header("tally-leaf-index"), s.index.to_string());
            assert_eq!(r.header("tally-leaf-hash"), b64(&leaf(&as_hashed.body)));
        }
        // Personal values are sealed in the hashed form, clear for this admin key.
        let hashed = String::from_utf8(as_hashed.body.clone()).unwrap();
        assert!(hashed.contains("tally:sealed:"), "{hashed}");
        assert!(!by_id.body.ends_with(b"\n"), "no trailing newline");
        let rec = by_id.json();
        assert_eq!(rec["schema_version"], 2, "sealed, shown opened");
        assert_eq!(rec["id"], s.id.as_str());
        assert_eq!(rec["tenant"], "t1");
        assert_eq!(rec["key_id"], admin_key_id.as_str());
        let received = rec["received_at"].as_str().expect("received_at");
        assert_eq!(received.len(), 24, "{received}");
        assert!(received.ends_with('Z'));
        let received =
            time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
                .expect("received_at parses");
        assert!(
            received >= before - Duration::from_millis(1) && received <= after,
            "received_at {received} not within the request"
        );
        records.push((by_id.body, rec));
    }

    // Normalised fields.
    let first = &records[0].1;
    assert_eq!(first["time"], "2026-01-02T01:04:05.678Z");
    assert_eq!(first["actor"]["ip"], "2001:db8::1");
    assert_eq!(
        first["resource"],
        json!({"type": "document", "id": "doc-7", "name": "Q3 plan"})
    );
    assert_eq!(first["reason"], "line one\nline two");
    assert_eq!(first["before"], json!({"a": [true, null], "b": 1}));
    assert_eq!(first["metadata"], json!({"a": "x", "z": 1.5}));
    // Canonical member order and sorted free-form keys, byte for byte.
    let text = String::from_utf8(records[0].0.clone()).unwrap();
    assert!(
        text.starts_with(&format!(
            "{{\"schema_version\":2,\"id\":\"{}\",\"tenant\":\"t1\",\"time\":\"2026-01-02T01:04:05.678Z\",\"received_at\":\"",
            client_id.to_lowercase()
        )),
        "{text}"
    );
    assert!(
        text.ends_with(
            r#""before":{"a":[true,null],"b":1},"after":"text","metadata":{"a":"x","z":1.5}}"#
        ),
        "{text}"
    );
    assert_eq!(records[1].1["time"], "2026-01-02T01:04:05.678Z");
    assert_eq!(records[2].1["time"], "2026-01-02T03:04:05.678Z");
    assert_eq!(records[3].1["time"], "2026-01-02T03:04:05.000Z");
    for (n, (_, rec)) in records.iter().enumerate() {
        assert_eq!(rec["actor"]["id"], format!("user-{n}"));
    }

    // An event naming no tenant, sent by a key for every tenant, lands in `default`.
    let d = srv.ingest(&event(99)).await;
    assert_eq!(d[0].tenant, "default");
    assert_eq!(d[0].index, 0);
    assert_eq!(srv.tenant_size("default").await, 1);
}

// ---------------------------------------------------------------------------------------------
// 2. Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_events_are_422_naming_event_and_field_and_nothing_is_stored() {
    let srv = Server::start().await;
    let kept = srv.ingest(&batch("v", 0, 2)).await;
    let kept_bytes = srv.records("v", 2).await;

    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = event_in("v", 10);
        f(&mut e);
        e
    };
    let future = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(2));
    // (what, bad event placed second in a batch, expected status, expected field)
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "bad IP",
            with(&|e| e["actor"]["ip"] = json!("999.1.1.1")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.ip",
        ),
        (
            "bad action",
            with(&|e| e["action"] = json!("user login!")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "action",
        ),
        (
            "bad outcome",
            with(&|e| e["outcome"] = json!("MAYBE")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "outcome",
        ),
        (
            "lower-case outcome",
            with(&|e| e["outcome"] = json!("success")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "outcome",
        ),
        (
            "missing outcome",
            with(&|e| {
                e.as_object_mut().unwrap().remove("outcome");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "outcome",
        ),
        (
            "missing time",
            with(&|e| {
                e.as_object_mut().unwrap().remove("time");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time",
        ),
        (
            "time without zone",
            with(&|e| e["time"] = json!("2026-01-02T03:04:05")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time",
        ),
        (
            "time not a date",
            with(&|e| e["time"] = json!("yesterday")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time",
        ),
        (
            "time too far in the future",
            with(&|e| e["time"] = json!(future)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time",
        ),
        (
            "time before 1970",
            with(&|e| e["time"] = json!("1969-12-31T23:59:59Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time",
        ),
        (
            "missing actor",
            with(&|e| {
                e.as_object_mut().unwrap().remove("actor");
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor",
        ),
        (
            "missing actor.id",
            with(&|e| e["actor"] = json!({"type": "user"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.id",
        ),
        (
            "empty actor.id",
            with(&|e| e["actor"]["id"] = json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.id",
        ),
        (
            "actor.id too long",
            with(&|e| e["actor"]["id"] = json!("x".repeat(257))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.id",
        ),
        (
            "control character in actor.id",
            with(&|e| e["actor"]["id"] = json!("a\u{0}b")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.id",
        ),
        (
            "bad actor.type",
            with(&|e| e["actor"]["type"] = json!("robot")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.type",
        ),
        (
            "bad category",
            with(&|e| e["category"] = json!("login")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "category",
        ),
        (
            "resource without type",
            with(&|e| e["resource"] = json!({"id": "r1"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "resource.type",
        ),
        (
            "bad schema_version",
            with(&|e| e["schema_version"] = json!(2)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_version",
        ),
        (
            "bad UUID",
            with(&|e| e["id"] = json!("not-a-uuid")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
        (
            "UUID without hyphens",
            with(&|e| e["id"] = json!("0190a0b1c2d34e5f8a9b0c1d2e3f4a5b")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
        (
            "bad tenant name",
            with(&|e| e["tenant"] = json!("Bad Tenant")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tenant",
        ),
        (
            "unknown top-level field",
            with(&|e| e["colour"] = json!("red")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            "unknown nested field",
            with(&|e| e["actor"]["nick"] = json!("al")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.nick",
        ),
        (
            "wrong type",
            with(&|e| e["actor"]["id"] = json!(5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "actor.id",
        ),
        (
            "metadata not an object",
            with(&|e| e["metadata"] = json!([1, 2])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata",
        ),
    ];
    for (what, bad, status, field) in &cases {
        let body = json!([event_in("v", 20), bad]);
        let resp = srv.post_json(&body).await;
        let error = resp.error(*status);
        let found = details(&error);
        assert!(
            found
                .iter()
                .any(|(e, f)| *e == Some(1) && (f == field || f.ends_with(&format!(".{field}")))),
            "{what}: expected a detail for event 1, field {field}; got {error}"
        );
        assert!(
            found.iter().all(|(e, _)| *e == Some(1)),
            "{what}: only event 1 is wrong; got {error}"
        );
        // Alone, as a single object, the event is at position 0.
        let resp = srv.post_json(bad).await;
        let error = resp.error(*status);
        assert!(
            details(&error).iter().any(|(e, _)| *e == Some(0)),
            "{what} (single object): expected event 0; got {error}"
        );
        // And as NDJSON, on the third non-blank line.
        let nd = format!("{}\n\n{}\n{}\n", event_in("v", 30), event_in("v", 31), bad);
        let resp = srv.post_events(NDJSON, nd).await;
        let error = resp.error(*status);
        assert!(
            details(&error).iter().any(|(e, _)| *e == Some(2)),
            "{what} (NDJSON): expected event 2; got {error}"
        );
    }

    // Several broken rules in several events: all of them are listed.
    let mut two_errors = event_in("v", 40);
    two_errors["actor"]["ip"] = json!("not-an-ip");
    two_errors["outcome"] = json!("MAYBE");
    let mut no_time = event_in("v", 41);
    no_time.as_object_mut().unwrap().remove("time");
    let body = json!([event_in("v", 42), two_errors, event_in("v", 43), no_time]);
    let error = srv
        .post_json(&body)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["code"], "invalid_event");
    let mut found = details(&error);
    found.sort();
    assert_eq!(
        found,
        vec![
            (Some(1), "actor.ip".to_string()),
            (Some(1), "outcome".to_string()),
            (Some(3), "time".to_string()),
        ],
        "{error}"
    );
    for d in error["details"].as_array().unwrap() {
        assert!(d["rule"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
    }

    // Bodies that are not JSON at all.
    for body in ["hello", "{\"time\": }", "<event/>"] {
        let error = srv
            .post_events(JSON, body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(error["code"], "invalid_json", "{body}: {error}");
    }
    // A malformed tenant in the query string.
    srv.post_as(
        Some(&srv.admin),
        "/v1/events?tenant=Not%20Valid",
        Some(JSON),
        event(1).to_string(),
    )
    .await
    .error(StatusCode::BAD_REQUEST);

    // Nothing of any rejected request was stored; what was stored before is unchanged.
    assert_eq!(srv.tenant_size("v").await, 2);
    assert_eq!(srv.records("v", 2).await, kept_bytes);
    for s in &kept {
        assert_eq!(srv.record("v", &s.id).await, kept_bytes[s.index as usize]);
    }
    // The next good event takes the next index.
    assert_eq!(srv.ingest(&event_in("v", 50)).await[0].index, 2);
}

// ---------------------------------------------------------------------------------------------
// 3. Limits and hostile bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn limits_and_hostile_bodies_get_json_4xx_never_5xx() {
    const MAX_BODY: usize = 100_000;
    let srv = Server::start_with(ServerSettings {
        max_body_bytes: MAX_BODY,
        max_batch_events: 5,
        ..settings()
    })
    .await;
    let mut accepted = 0u64;

    // A body of exactly the limit is accepted; one byte more is 413.
    let one = event_in("lim", 0).to_string();
    let exact = format!("{one}{}", " ".repeat(MAX_BODY - one.len()));
    assert_eq!(exact.len(), MAX_BODY);
    stored(&srv.post_events(JSON, exact.clone()).await);
    accepted += 1;
    let error = srv
        .post_events(JSON, format!("{exact} "))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "body_too_large");
    // Far over the limit.
    let big = format!("[{}]", vec![one.as_str(); 5_000].join(","));
    assert!(big.len() > 5 * MAX_BODY);
    let error = srv
        .post_events(JSON, big)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "body_too_large");

    // More than max_batch_events: 413, as JSON array and as NDJSON; exactly the limit is fine.
    let error = srv
        .post_json(&batch("lim", 1, 6))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "too_many_events");
    let six: String = (1..7)
        .map(|n| format!("{}\n", event_in("lim", n)))
        .collect();
    let error = srv
        .post_events(NDJSON, six)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["code"], "too_many_events");
    assert_eq!(srv.ingest(&batch("lim", 1, 5)).await.len(), 5);
    accepted += 5;

    // Content types.
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "json",
    ] {
        let error = srv
            .post_events(ct, one.clone())
            .await
            .error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(error["code"], "unsupported_media_type", "{ct}");
    }
    srv.post_as(Some(&srv.admin), "/v1/events", None, one.clone())
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        stored(&srv.post_events(ct, one.clone()).await);
        accepted += 1;
    }

    // Empty bodies.
    for (ct, body) in [
        (JSON, ""),
        (JSON, "  \n\t "),
        (JSON, "[]"),
        (NDJSON, ""),
        (NDJSON, "\n\n  \n"),
    ] {
        let error = srv
            .post_events(ct, body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(error["code"], "empty_body", "{body:?}");
    }

    // Invalid JSON: 400 with line and column.
    let syntax = |resp: &Resp, line: u64| {
        let error = resp.error(StatusCode::BAD_REQUEST);
        assert_eq!(error["code"], "invalid_json", "{error}");
        let d = &error["details"][0];
        assert_eq!(d["line"], line, "{error}");
        assert!(d["column"].as_u64().is_some_and(|c| c >= 1), "{error}");
    };
    syntax(&srv.post_events(JSON, "{\"time\": }").await, 1);
    syntax(
        &srv.post_events(JSON, format!("[\n  {one},\n  oops\n]"))
            .await,
        3,
    );
    syntax(
        &srv.post_events(NDJSON, format!("{one}\n\n{{\"time\":\n"))
            .await,
        3,
    );
    syntax(&srv.post_events(JSON, format!("{one} trailing")).await, 1);

    // Hostile bodies: every answer is a JSON 4xx.
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let with_metadata = |raw: &str| {
        format!(
            r#"{{"tenant":"lim","time":"2026-01-02T03:04:05Z","actor":{{"id":"a"}},"action":"a","outcome":"SUCCESS","metadata":{{"m":{raw}}}}}"#
        )
    };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("deeply nested array", deep(20_000).into_bytes()),
        ("deeply nested objects", "{\"a\":".repeat(15_000).into_bytes()),
        (
            "deeply nested metadata",
            with_metadata(&deep(10_000)).into_bytes(),
        ),
        ("number too large", with_metadata("1e999").into_bytes()),
        (
            "number with a huge exponent",
            with_metadata("1e99999999999999999999").into_bytes(),
        ),
        ("invalid UTF-8", {
            let mut b = with_metadata("\"x\"").into_bytes();
            let at = b.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
            b[at] = 0xff;
            b
        }),
        ("overlong UTF-8", {
            let mut b = with_metadata("\"xx\"").into_bytes();
            let at = b.windows(4).position(|w| w == b"\"xx\"").unwrap() + 1;
            b[at] = 0xc0;
            b[at + 1] = 0x80;
            b
        }),
        ("raw NUL byte in a string", {
            let mut b = with_metadata("\"x\"").into_bytes();
            let at = b.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
            b[at] = 0;
            b
        }),
        ("raw NUL byte between tokens", b"{\"action\":\0\"a\"}".to_vec()),
        ("lone surrogate", with_metadata(r#""\ud800""#).into_bytes()),
        ("byte order mark", {
            let mut b = vec![0xef, 0xbb, 0xbf];
            b.extend_from_slice(one.as_bytes());
            b
        }),
        ("a number", b"5".to_vec()),
        ("a string", b"\"event\"".to_vec()),
        ("null", b"null".to_vec()),
        ("array of numbers", b"[1,2]".to_vec()),
        ("array of nulls", b"[null]".to_vec()),
        (
            "duplicate field",
            br#"{"action":"a","action":"b","time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"outcome":"SUCCESS"}"#
                .to_vec(),
        ),
        ("unterminated string", b"{\"action\":\"a".to_vec()),
        (
            "an event as a positional array",
            br#"[[1,null,"2026-01-02T03:04:05Z","lim",["a",null,null,null,null],"a.b",null,null,"SUCCESS",null,null,null,null,null,null,null]]"#
                .to_vec(),
        ),
        (
            "actor as a positional array",
            br#"{"tenant":"lim","time":"2026-01-02T03:04:05Z","actor":["a",null,null,null,null],"action":"a","outcome":"SUCCESS"}"#
                .to_vec(),
        ),
        ("control character escape in actor.id", {
            let mut e = event_in("lim", 0);
            e["actor"]["id"] = json!("\u{7}bell");
            e.to_string().into_bytes()
        }),
    ];
    for (what, body) in hostile {
        assert!(
            body.len() < MAX_BODY,
            "{what} must stay under the body limit"
        );
        let resp = srv.post_events(JSON, body).await;
        resp.client_error(what);
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY].contains(&resp.status),
            "{what}: {}",
            resp.status
        );
    }
    // A 70 KB event is over the 64 KiB record limit: 422 naming event 0.
    let mut huge = event_in("lim", 0);
    huge["metadata"] = json!({"blob": "x".repeat(70_000)});
    let error = srv
        .post_json(&huge)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(details(&error)[0].0, Some(0), "{error}");
    assert!(error.to_string().contains("65535"), "{error}");
    // The same inside a batch, second position: nothing of the batch is stored.
    let error = srv
        .post_json(&json!([event_in("lim", 1), huge]))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(details(&error)[0].0, Some(1), "{error}");

    // Control characters inside free-form values are data, escaped in the record.
    let mut nul = event_in("lim", 0);
    nul["metadata"] = json!({"nul": "a\u{0}b", "big": 123456789012345678901234567890.0_f64});
    let s = srv.ingest(&nul).await;
    accepted += 1;
    let text = String::from_utf8(srv.record("lim", &s[0].id).await).unwrap();
    assert!(text.contains(r#""nul":"a\u0000b""#), "{text}");

    assert_eq!(srv.tenant_size("lim").await, accepted);
    // The server is still healthy after all that.
    srv.get_as(None, "/healthz").await.ok();
}

// ---------------------------------------------------------------------------------------------
// 4. Idempotency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_the_same_id_are_deduplicated_and_conflicts_rejected() {
    let srv = Arc::new(Server::start().await);
    let id = new_id();
    let mut original = event_in("idem", 0);
    original["id"] = json!(id);

    let first = srv.ingest(&original).await;
    assert_eq!((first[0].index, first[0].duplicate), (0, false));
    let stored_bytes = srv.record("idem", &id).await;

    // The same content again: the original index, duplicate, nothing stored.
    let again = srv.ingest(&original).await;
    assert_eq!(
        again,
        vec![Stored {
            id: id.clone(),
            tenant: "idem".into(),
            index: 0,
            duplicate: true
        }]
    );
    // The same instant written another way, and the id in upper case, is still the same event.
    let mut respelled = original.clone();
    respelled["time"] = json!("2026-01-02T01:04:05.678Z");
    respelled["id"] = json!(id.to_uppercase());
    let again = srv.ingest(&respelled).await;
    assert_eq!((again[0].index, again[0].duplicate), (0, true));
    assert_eq!(srv.tenant_size("idem").await, 1);
    assert_eq!(
        srv.record("idem", &id).await,
        stored_bytes,
        "the record is untouched"
    );

    // The same id twice in one batch: the second is a duplicate of the first.
    let id2 = new_id();
    let mut e2 = event_in("idem", 1);
    e2["id"] = json!(id2);
    let out = srv.ingest(&json!([e2, event_in("idem", 2), e2])).await;
    assert_eq!(
        out.iter()
            .map(|s| (s.index, s.duplicate))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, false), (1, true)]
    );
    assert_eq!(out[0].id, out[2].id);
    assert_eq!(srv.tenant_size("idem").await, 3);

    // The same id with different content: 409 naming the event and `id`; nothing stored.
    let fresh = new_id();
    let mut e3 = event_in("idem", 3);
    e3["id"] = json!(fresh);
    let mut changed = original.clone();
    changed["outcome"] = json!("FAILURE");
    let error = srv
        .post_json(&json!([e3, changed]))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(error["code"], "id_conflict");
    assert_eq!(
        details(&error),
        vec![(Some(1), "id".to_string())],
        "{error}"
    );
    assert_eq!(srv.tenant_size("idem").await, 3);
    srv.get(&format!("/v1/events/{fresh}?tenant=idem"))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(srv.record("idem", &id).await, stored_bytes);
    // The same when the rest of the request goes to a tenant that has no log yet.
    let error = srv
        .post_json(&json!([event_in("fresh", 0), changed]))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(details(&error), vec![(Some(1), "id".to_string())]);
    assert_eq!(srv.tenant_size("fresh").await, 0);
    srv.get("/v1/events/0?tenant=fresh")
        .await
        .error(StatusCode::NOT_FOUND);
    // (Checked last, below: the rejected request must not even create the tenant's log.)

    // Conflicting content for one new id inside one batch.
    let id4 = new_id();
    let mut a = event_in("idem", 4);
    a["id"] = json!(id4);
    let mut b = a.clone();
    b["action"] = json!("user.logout");
    let error = srv
        .post_json(&json!([event_in("idem", 5), a, b]))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(
        details(&error),
        vec![(Some(2), "id".to_string())],
        "{error}"
    );
    assert_eq!(srv.tenant_size("idem").await, 3);
    srv.get(&format!("/v1/events/{id4}?tenant=idem"))
        .await
        .error(StatusCode::NOT_FOUND);

    // Events without an id are never deduplicated.
    let x = srv.ingest(&event_in("idem", 6)).await;
    let y = srv.ingest(&event_in("idem", 6)).await;
    assert_ne!(x[0].index, y[0].index);
    assert!(!y[0].duplicate);
    assert_eq!(srv.tenant_size("idem").await, 5);

    // 20 concurrent retries of one new event: stored exactly once.
    let id5 = new_id();
    let mut e5 = event_in("idem", 7);
    e5["id"] = json!(id5);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let srv = srv.clone();
        let e5 = e5.clone();
        tasks.spawn(async move { srv.ingest(&e5).await });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.extend(r.expect("task"));
    }
    assert_eq!(answers.len(), 20);
    assert!(
        answers.iter().all(|s| s.index == 5 && s.id == id5),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| !s.duplicate).count(),
        1,
        "exactly one request stored it: {answers:?}"
    );
    assert_eq!(srv.tenant_size("idem").await, 6);

    // A rejected request leaves no trace: no (empty) log for the tenant it named.
    let tenants = srv.get("/v1/tenants").await.ok().json();
    assert!(
        tenants
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "fresh"),
        "a request refused with 409 created tenant `fresh`: {tenants}"
    );
    srv.get("/v1/checkpoint?tenant=fresh")
        .await
        .error(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// 5. Auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_scope_and_confine_requests() {
    let srv = Server::start().await;
    srv.ingest(&batch("acme", 0, 2)).await;
    srv.ingest(&batch("other", 0, 1)).await;

    // Missing, malformed or unknown tokens: 401 everywhere.
    let forged = format!("{}x", srv.admin);
    for token in [
        None,
        Some("garbage"),
        Some("tly_000000000000_nope"),
        Some(forged.as_str()),
    ] {
        srv.post_as(token, "/v1/events", Some(JSON), event(1).to_string())
            .await
            .error(StatusCode::UNAUTHORIZED);
        srv.get_as(token, "/v1/events/0?tenant=acme")
            .await
            .error(StatusCode::UNAUTHORIZED);
        srv.get_as(token, "/v1/keys")
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
    let basic = srv
        .http
        .get(srv.url("/v1/tenants"))
        .header("authorization", format!("Basic {}", b64(b"admin:admin")))
        .send()
        .await
        .unwrap();
    Resp::from(basic).await.error(StatusCode::UNAUTHORIZED);

    // Keys are made by the admin.
    let make =
        |scopes: Value, tenant: &str| json!({"name": "k", "scopes": scopes, "tenant": tenant});
    let create = |body: Value| {
        let srv = &srv;
        async move {
            srv.post_as(Some(&srv.admin), "/v1/keys", Some(JSON), body.to_string())
                .await
        }
    };
    let resp = create(make(json!(["ingest"]), "acme"))
        .await
        .expect(StatusCode::CREATED);
    let created = resp.json();
    let ingest_token = created["token"].as_str().expect("token").to_string();
    let ingest_id = created["key"]["id"].as_str().expect("key id").to_string();
    assert_eq!(key_id_of(&ingest_token), ingest_id);
    assert_eq!(created["key"]["scopes"], json!(["ingest"]));
    assert_eq!(created["key"]["tenant"], "acme");
    let reader = create(make(json!(["read"]), "acme"))
        .await
        .expect(StatusCode::CREATED)
        .json();
    let read_token = reader["token"].as_str().unwrap().to_string();
    // Bad key requests.
    for bad in [
        make(json!([]), "acme"),
        make(json!(["ingest"]), "Bad Tenant"),
        make(json!(["superuser"]), "acme"),
        json!({"name": "", "scopes": ["read"], "tenant": "acme"}),
        json!({"name": "k", "scopes": ["read"], "tenant": "acme", "extra": 1}),
        json!({"scopes": ["read"]}),
    ] {
        create(bad.clone()).await.client_error(&bad.to_string());
    }
    let resp = srv
        .post_as(Some(&srv.admin), "/v1/keys", Some(JSON), "not json")
        .await;
    resp.client_error("non-JSON key request");

    // The ingest key writes to acme, whether the event names it or not.
    let before = srv.tenant_size("acme").await;
    for body in [event(10), event_in("acme", 11)] {
        let out = stored(
            &srv.post_as(
                Some(&ingest_token),
                "/v1/events",
                Some(JSON),
                body.to_string(),
            )
            .await,
        );
        assert_eq!(out[0].tenant, "acme");
    }
    let out = stored(
        &srv.post_as(
            Some(&ingest_token),
            "/v1/events?tenant=acme",
            Some(JSON),
            event(12).to_string(),
        )
        .await,
    );
    assert_eq!(out[0].index, before + 2);
    let rec = srv.record("acme", &out[0].id).await;
    let rec: Value = serde_json::from_slice(&rec).unwrap();
    assert_eq!(rec["key_id"], ingest_id.as_str(), "records name the key");
    assert_eq!(srv.tenant_size("acme").await, before + 3);

    // ... but nothing to another tenant, whether named in the event or in the query.
    let other_before = srv.tenant_size("other").await;
    let error = srv
        .post_as(
            Some(&ingest_token),
            "/v1/events",
            Some(JSON),
            event_in("other", 1).to_string(),
        )
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(
        details(&error),
        vec![(Some(0), "tenant".to_string())],
        "{error}"
    );
    srv.post_as(
        Some(&ingest_token),
        "/v1/events?tenant=other",
        Some(JSON),
        event(1).to_string(),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    // A mixed batch: nothing of it is stored.
    let mixed = json!([event_in("acme", 20), event_in("other", 21)]);
    let error = srv
        .post_as(
            Some(&ingest_token),
            "/v1/events",
            Some(JSON),
            mixed.to_string(),
        )
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(
        details(&error),
        vec![(Some(1), "tenant".to_string())],
        "{error}"
    );
    // The three events, and the first of the key's refusals (403) on the record in acme's
    // log (the rest of the minute is counted into one event later).
    assert_eq!(srv.tenant_size("acme").await, before + 3 + 1);
    assert_eq!(srv.tenant_size("other").await, other_before);

    // The ingest key cannot read or manage keys.
    for path in [
        "/v1/events/0",
        "/v1/events/0?tenant=acme",
        "/v1/tenants",
        "/v1/checkpoint?tenant=acme",
        "/v1/proof/inclusion?index=0&tenant=acme",
        "/v1/proof/consistency?from=1&to=2&tenant=acme",
        "/logs/acme/checkpoint",
        "/logs/acme/tile/0/000.p/1",
        "/v1/keys",
    ] {
        srv.get_as(Some(&ingest_token), path)
            .await
            .error(StatusCode::FORBIDDEN);
    }

    // The read key reads acme only, and cannot ingest.
    srv.get_as(Some(&read_token), "/v1/events/0").await.ok();
    srv.get_as(Some(&read_token), "/v1/events/0?tenant=acme")
        .await
        .ok();
    srv.get_as(Some(&read_token), "/v1/events/0?tenant=other")
        .await
        .error(StatusCode::FORBIDDEN);
    srv.get_as(Some(&read_token), "/logs/other/checkpoint")
        .await
        .error(StatusCode::FORBIDDEN);
    let tenants = srv
        .get_as(Some(&read_token), "/v1/tenants")
        .await
        .ok()
        .json();
    let names: Vec<&str> = tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["acme"]);
    srv.post_as(
        Some(&read_token),
        "/v1/events",
        Some(JSON),
        event(1).to_string(),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    srv.get_as(Some(&read_token), "/v1/keys")
        .await
        .error(StatusCode::FORBIDDEN);

    // Listing keys shows no secrets.
    let list = srv.get("/v1/keys").await.ok();
    let keys = list.json();
    let ids: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{keys}");
    assert!(ids.contains(&ingest_id.as_str()));
    let text = list.text();
    for token in [&srv.admin, &ingest_token, &read_token] {
        let secret = token.splitn(3, '_').nth(2).unwrap();
        assert!(!text.contains(secret), "a secret leaks in {text}");
    }
    for k in keys.as_array().unwrap() {
        assert!(
            k.get("secret_sha256").is_none() && k.get("token").is_none(),
            "{k}"
        );
    }

    // Revoking a key: 204, then its token is refused.
    srv.delete(&format!("/v1/keys/{ingest_id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    srv.post_as(
        Some(&ingest_token),
        "/v1/events",
        Some(JSON),
        event(1).to_string(),
    )
    .await
    .error(StatusCode::UNAUTHORIZED);
    let again = srv
        .delete(&format!("/v1/keys/{ingest_id}"))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(again["code"], "already_revoked", "{again}");
    let req = srv
        .http
        .delete(srv.url(&format!("/v1/keys/{}", key_id_of(&srv.admin))))
        .bearer_auth(&read_token);
    Resp::from(req.send().await.unwrap())
        .await
        .error(StatusCode::FORBIDDEN);
    // The revoked key stays listed, marked, so that its records can still be attributed.
    let keys = srv.get("/v1/keys").await.ok().json();
    let revoked: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_string())
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(keys.as_array().unwrap().len(), 3, "{keys}");
    assert_eq!(revoked, vec![ingest_id.as_str()], "{keys}");
}

/// Issue 9 (fix first): the key API never shows a secret's hash, refuses to revoke the last
/// admin key of every tenant, keeps revoked keys, and records every change in the log.
#[tokio::test]
async fn issue_9_key_changes_are_recorded_and_the_last_global_admin_key_stays() {
    let srv = Server::start().await;
    let admin_id = key_id_of(&srv.admin);
    let created = srv
        .post_as(
            Some(&srv.admin),
            "/v1/keys",
            Some(JSON),
            json!({"name": "billing", "scopes": ["ingest"], "tenant": "acme"}).to_string(),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(
        !created.text().contains("secret"),
        "the answer shows no secret hash: {}",
        created.text()
    );
    let billing_id = created.json()["key"]["id"].as_str().unwrap().to_string();

    // The only global admin key cannot be revoked; the error says what to do.
    let err = srv
        .delete(&format!("/v1/keys/{admin_id}"))
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(err["code"], "last_admin_key", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Create another admin key"),
        "{err}"
    );
    srv.get("/v1/keys").await.ok();
    // With a second one, the first can go; then the second is the last.
    let second = srv
        .post_as(
            Some(&srv.admin),
            "/v1/keys",
            Some(JSON),
            json!({"name": "admin-2", "scopes": ["admin"], "tenant": "*"}).to_string(),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let second_token = second["token"].as_str().unwrap().to_string();
    let second_id = second["key"]["id"].as_str().unwrap().to_string();
    srv.delete(&format!("/v1/keys/{billing_id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    srv.delete(&format!("/v1/keys/{admin_id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let req = srv
        .http
        .delete(srv.url(&format!("/v1/keys/{second_id}")))
        .bearer_auth(&second_token);
    assert_eq!(
        Resp::from(req.send().await.unwrap())
            .await
            .error(StatusCode::CONFLICT)["code"],
        "last_admin_key"
    );

    // Every change is in the log: acme's key in acme's, the global keys in tally-system's.
    let actions = |tenant: &'static str| {
        let srv = &srv;
        let token = second_token.clone();
        async move {
            // (The first admin key is revoked by now: the second one reads.)
            let tenants = srv.get_as(Some(&token), "/v1/tenants").await.ok().json();
            let size = tenants
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == tenant)
                .map_or(0, |t| t["size"].as_u64().unwrap());
            let mut out = Vec::new();
            for i in 0..size {
                let e = srv
                    .get_as(Some(&token), &format!("/v1/events/{i}?tenant={tenant}"))
                    .await
                    .ok()
                    .json();
                out.push((
                    e["action"].as_str().unwrap().to_string(),
                    e["resource"]["id"].as_str().unwrap().to_string(),
                    e["actor"]["id"].as_str().unwrap().to_string(),
                ));
            }
            out
        }
    };
    let admin_actor = format!("api-key:{admin_id}");
    assert_eq!(
        actions("acme").await,
        vec![
            (
                "tally.keys.create".into(),
                billing_id.clone(),
                admin_actor.clone()
            ),
            (
                "tally.keys.revoke".into(),
                billing_id.clone(),
                admin_actor.clone()
            ),
        ]
    );
    assert_eq!(
        actions("tally-system").await,
        vec![
            // The admin key the server made at start, by the server.
            (
                "tally.keys.create".into(),
                admin_id.clone(),
                "tally-server".into()
            ),
            // Tenant acme, made by the first key for it.
            (
                "tally.tenants.create".into(),
                "acme".into(),
                admin_actor.clone()
            ),
            (
                "tally.keys.create".into(),
                second_id.clone(),
                admin_actor.clone()
            ),
            (
                "tally.keys.revoke".into(),
                admin_id.clone(),
                admin_actor.clone()
            ),
        ]
    );
    srv.stop().await;
}

/// Issue 9: a key may be made to expire; an expiry must be a time in the future.
#[tokio::test]
async fn issue_9_keys_expire_and_an_expiry_in_the_past_is_refused() {
    let srv = Server::start().await;
    let create = |expires_at: &str| {
        let body =
            json!({"name": "temp", "scopes": ["read"], "tenant": "acme", "expires_at": expires_at});
        srv.post_as(Some(&srv.admin), "/v1/keys", Some(JSON), body.to_string())
    };
    for bad in ["2020-01-01T00:00:00Z", "tomorrow"] {
        let err = create(bad).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            details(&err),
            vec![(None, "expires_at".to_string())],
            "{err}"
        );
    }
    let created = create("2999-01-01T00:00:00Z")
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["key"]["expires_at"], "2999-01-01T00:00:00Z");
    srv.ingest(&batch("acme", 0, 1)).await;
    srv.get_as(created["token"].as_str(), "/v1/events/0?tenant=acme")
        .await
        .ok();
    srv.stop().await;
}

/// Issue 9 (fix first): a client cannot write events that look like the server's own, nor
/// name two tenants for one event.
#[tokio::test]
async fn issue_9_reserved_names_and_a_second_tenant_are_refused() {
    let srv = Server::start().await;
    let forgeries = [
        ("action", "tally.events.export"),
        ("actor.id", "api-key:0a1b2c3d4e5f"),
        ("actor.id", "API-KEY:x"),
        ("actor.id", "tally-server"),
    ];
    for (field, value) in forgeries {
        let mut forged = event(2);
        match field {
            "action" => forged["action"] = json!(value),
            _ => forged["actor"]["id"] = json!(value),
        }
        let err = srv
            .post_as(
                Some(&srv.admin),
                "/v1/events",
                Some(JSON),
                forged.to_string(),
            )
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(details(&err), vec![(Some(0), field.to_string())], "{err}");
    }
    // Names that merely resemble them are the client's.
    let mut fine = event(3);
    fine["action"] = json!("tallyho.login");
    fine["actor"]["id"] = json!("key:api");
    srv.post_as(Some(&srv.admin), "/v1/events", Some(JSON), fine.to_string())
        .await
        .ok();

    // ?tenant=acme with an event naming beta: 400, nothing stored anywhere.
    let body = json!([event_in("acme", 4), event_in("beta", 5)]);
    let err = srv
        .post_as(
            Some(&srv.admin),
            "/v1/events?tenant=acme",
            Some(JSON),
            body.to_string(),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "tenant_conflict", "{err}");
    assert_eq!(
        details(&err),
        vec![(Some(1), "tenant".to_string())],
        "{err}"
    );
    assert_eq!(srv.tenant_size("acme").await, 0);
    assert_eq!(srv.tenant_size("beta").await, 0);
    // The same tenant in both, or only in the parameter, is fine.
    srv.post_as(
        Some(&srv.admin),
        "/v1/events?tenant=acme",
        Some(JSON),
        json!([event_in("acme", 6), event(7)]).to_string(),
    )
    .await
    .ok();
    assert_eq!(srv.tenant_size("acme").await, 2);
    srv.stop().await;
}

/// Issue 9 (critical): a tenant's admin key must never grant or touch more than it holds.
#[tokio::test]
async fn issue_9_a_tenant_admin_key_cannot_escalate_or_touch_other_tenants() {
    let srv = Server::start().await;
    srv.ingest(&batch("acme", 0, 1)).await;
    srv.ingest(&batch("beta", 0, 2)).await;
    let create = |token: String, body: Value| {
        let srv = &srv;
        async move {
            srv.post_as(Some(&token), "/v1/keys", Some(JSON), body.to_string())
                .await
        }
    };
    let make =
        |scopes: Value, tenant: &str| json!({"name": "k", "scopes": scopes, "tenant": tenant});
    let acme_admin = create(srv.admin.clone(), make(json!(["admin"]), "acme"))
        .await
        .expect(StatusCode::CREATED)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let beta_key = create(srv.admin.clone(), make(json!(["read"]), "beta"))
        .await
        .expect(StatusCode::CREATED)
        .json();
    let beta_id = beta_key["key"]["id"].as_str().unwrap().to_string();
    let global_id = key_id_of(&srv.admin);

    // It cannot make a key for every tenant, nor for another tenant.
    for tenant in ["*", "beta"] {
        for scopes in [json!(["admin"]), json!(["read"]), json!(["ingest"])] {
            let err = create(acme_admin.clone(), make(scopes, tenant))
                .await
                .error(StatusCode::FORBIDDEN);
            assert!(err["message"].as_str().unwrap().contains("acme"), "{err}");
        }
    }
    // It may make keys for its own tenant.
    let own = create(acme_admin.clone(), make(json!(["read"]), "acme"))
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(own["key"]["tenant"], "acme");

    // It lists its own tenant's keys only.
    let listed = srv.get_as(Some(&acme_admin), "/v1/keys").await.ok().json();
    let tenants: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants.len(), 2, "{listed}");
    assert!(tenants.iter().all(|t| *t == "acme"), "{listed}");

    // It cannot revoke another tenant's key or a global admin key; both keep working.
    for id in [&beta_id, &global_id] {
        let req = srv
            .http
            .delete(srv.url(&format!("/v1/keys/{id}")))
            .bearer_auth(&acme_admin);
        Resp::from(req.send().await.unwrap())
            .await
            .error(StatusCode::NOT_FOUND);
    }
    let all = srv.get("/v1/keys").await.ok().json();
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    srv.get_as(
        Some(beta_key["token"].as_str().unwrap()),
        "/v1/events/0?tenant=beta",
    )
    .await
    .ok();

    // A non-admin key cannot hand on a scope it lacks (it cannot manage keys at all).
    let reader = own["token"].as_str().unwrap().to_string();
    create(reader, make(json!(["read"]), "acme"))
        .await
        .error(StatusCode::FORBIDDEN);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Tenant isolation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tenants_have_separate_logs() {
    let srv = Server::start().await;
    let a = srv.ingest(&batch("alpha", 0, 3)).await;
    let b = srv.ingest(&batch("beta", 10, 2)).await;
    // Interleaved in one request: each tenant keeps its own numbering.
    let mixed = srv
        .ingest(&json!([
            event_in("beta", 20),
            event_in("alpha", 21),
            event_in("beta", 22)
        ]))
        .await;
    assert_eq!(a.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(b.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(
        mixed
            .iter()
            .map(|s| (s.tenant.as_str(), s.index))
            .collect::<Vec<_>>(),
        vec![("beta", 2), ("alpha", 3), ("beta", 3)]
    );
    assert_eq!(srv.tenant_size("alpha").await, 4);
    assert_eq!(srv.tenant_size("beta").await, 4);

    // An event of alpha is not found through beta, by id; index 0 of beta is beta's.
    srv.get(&format!("/v1/events/{}?tenant=beta", a[0].id))
        .await
        .error(StatusCode::NOT_FOUND);
    srv.get(&format!("/v1/proof/inclusion?tenant=beta&id={}", a[0].id))
        .await
        .error(StatusCode::NOT_FOUND);
    // The events as an admin key sees them (personal values clear).
    let alpha0 = srv.get("/v1/events/0?tenant=alpha").await.ok().json();
    let beta0 = srv.get("/v1/events/0?tenant=beta").await.ok().json();
    assert_eq!(alpha0["tenant"], "alpha");
    assert_eq!(alpha0["actor"]["id"], "user-0");
    assert_eq!(beta0["tenant"], "beta");
    assert_eq!(beta0["actor"]["id"], "user-10");
    // Index 4 exists in neither.
    srv.get("/v1/events/4?tenant=alpha")
        .await
        .error(StatusCode::NOT_FOUND);
    // A tenant without events, or a malformed one.
    srv.get("/v1/events/0?tenant=gamma")
        .await
        .error(StatusCode::NOT_FOUND);
    srv.get("/v1/events/0?tenant=..%2Fetc")
        .await
        .error(StatusCode::BAD_REQUEST);
    srv.get("/v1/events/not-an-id?tenant=alpha")
        .await
        .error(StatusCode::BAD_REQUEST);
    srv.get("/v1/events/99999999999999999999999?tenant=alpha")
        .await
        .client_error("index beyond u64");

    // Each tenant has its own checkpoint with its own origin and root.
    let ca = srv.wait_checkpoint("alpha", 4).await;
    let cb = srv.wait_checkpoint("beta", 4).await;
    assert!(ca.origin.ends_with("/alpha"), "{}", ca.origin);
    assert!(cb.origin.ends_with("/beta"), "{}", cb.origin);
    assert_ne!(ca.root, cb.root);
    assert_eq!(ca.root, tree_of(&srv.records("alpha", 4).await).root());
    assert_eq!(cb.root, tree_of(&srv.records("beta", 4).await).root());
}

// ---------------------------------------------------------------------------------------------
// 7. Proofs
// ---------------------------------------------------------------------------------------------

/// Indexes or sizes worth probing below `n`: edges, tile boundaries, powers of two, and a stride.
fn probes(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = vec![0, 1, 2, 3, 127, 128, 255, 256, 257, 511, 512, 513, 999];
    v.extend((0..n).step_by(37));
    v.extend([n.saturating_sub(2), n.saturating_sub(1)]);
    v.retain(|&i| i < n);
    v.sort_unstable();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_verify_against_signed_checkpoints() {
    let srv = Server::start().await;
    let verifier = srv.verifier().await;
    let sizes = [1u64, 2, 7, 300, 1000];
    for &n in &sizes {
        let tenant = format!("n{n}");
        // 1000 events in one request; the others in several.
        if n == 1000 {
            srv.ingest(&batch(&tenant, 0, 1000)).await;
        } else {
            let mut from = 0;
            while from < n as usize {
                let count = (n as usize - from).min(128);
                srv.ingest(&batch(&tenant, from, count)).await;
                from += count;
            }
        }
    }
    for &n in &sizes {
        let tenant = format!("n{n}");
        let cp = srv.wait_checkpoint(&tenant, n).await;
        assert_eq!(cp.origin, format!("tally.localhost/{tenant}"));
        let records = srv.records(&tenant, n).await;
        let tree = tree_of(&records);
        assert_eq!(cp.root, tree.root(), "{tenant}: checkpoint root");

        // Inclusion, by index, against the latest checkpoint.
        for i in probes(n) {
            let p = srv
                .get(&format!("/v1/proof/inclusion?tenant={tenant}&index={i}"))
                .await
                .ok()
                .json();
            assert_eq!(p["tenant"], tenant.as_str());
            assert_eq!(
                (p["index"].as_u64(), p["size"].as_u64()),
                (Some(i), Some(n))
            );
            let leaf_hash = hash_of(&p["leaf_hash"]);
            assert_eq!(leaf_hash, leaf(&records[i as usize]), "{tenant} leaf {i}");
            assert_eq!(hash_of(&p["root"]), cp.root);
            let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
            tally_tlog::verify_inclusion(&leaf_hash, i, n, &proof, &cp.root)
                .unwrap_or_else(|e| panic!("{tenant}: inclusion of {i} in {n}: {e:?}"));
            // The proof comes with the signed checkpoint it is relative to.
            let note = p["checkpoint"].as_str().expect("checkpoint note");
            assert_eq!(open_checkpoint(note, &verifier), cp);
        }

        // By id, and against an older size.
        let id: Value = serde_json::from_slice(&records[(n - 1) as usize]).unwrap();
        let id = id["id"].as_str().unwrap();
        let p = srv
            .get(&format!("/v1/proof/inclusion?tenant={tenant}&id={id}"))
            .await
            .ok()
            .json();
        assert_eq!(p["index"], n - 1);
        let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
        tally_tlog::verify_inclusion(
            &leaf(&records[(n - 1) as usize]),
            n - 1,
            n,
            &proof,
            &cp.root,
        )
        .expect("inclusion by id");
        for size in probes(n + 1).into_iter().filter(|&s| s > 0) {
            let i = size / 2;
            let p = srv
                .get(&format!(
                    "/v1/proof/inclusion?tenant={tenant}&index={i}&size={size}"
                ))
                .await
                .ok()
                .json();
            let root = tally_tlog::root_hash(size, &tree).unwrap();
            assert_eq!(hash_of(&p["root"]), root, "{tenant}: root at {size}");
            let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
            tally_tlog::verify_inclusion(&leaf(&records[i as usize]), i, size, &proof, &root)
                .unwrap_or_else(|e| panic!("{tenant}: inclusion of {i} in {size}: {e:?}"));
        }

        // Consistency between many pairs of sizes; `to` defaults to the checkpoint.
        let sizes_to_try: Vec<u64> = probes(n + 1).into_iter().filter(|&s| s > 0).collect();
        for &from in &sizes_to_try {
            for &to in sizes_to_try.iter().filter(|&&t| t >= from).step_by(3) {
                let p = srv
                    .get(&format!(
                        "/v1/proof/consistency?tenant={tenant}&from={from}&to={to}"
                    ))
                    .await
                    .ok()
                    .json();
                let r1 = tally_tlog::root_hash(from, &tree).unwrap();
                let r2 = tally_tlog::root_hash(to, &tree).unwrap();
                assert_eq!(hash_of(&p["from_root"]), r1, "{tenant}: root at {from}");
                assert_eq!(hash_of(&p["to_root"]), r2, "{tenant}: root at {to}");
                let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
                tally_tlog::verify_consistency(from, to, &proof, &r1, &r2)
                    .unwrap_or_else(|e| panic!("{tenant}: consistency {from}..{to}: {e:?}"));
            }
            let p = srv
                .get(&format!(
                    "/v1/proof/consistency?tenant={tenant}&from={from}"
                ))
                .await
                .ok()
                .json();
            assert_eq!(p["to"], n);
            assert_eq!(hash_of(&p["to_root"]), cp.root);
            let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
            tally_tlog::verify_consistency(
                from,
                n,
                &proof,
                &tally_tlog::root_hash(from, &tree).unwrap(),
                &cp.root,
            )
            .unwrap_or_else(|e| panic!("{tenant}: consistency {from}..checkpoint: {e:?}"));
            assert_eq!(
                open_checkpoint(p["checkpoint"].as_str().unwrap(), &verifier),
                cp
            );
        }

        // Bad parameters: JSON 4xx, never 500.
        let beyond = n + 5;
        let missing = new_id();
        let bad = [
            format!("/v1/proof/consistency?tenant={tenant}&from=0&to={n}"),
            format!("/v1/proof/consistency?tenant={tenant}&from={beyond}&to={n}"),
            format!("/v1/proof/consistency?tenant={tenant}&from={beyond}"),
            format!("/v1/proof/consistency?tenant={tenant}&from=1&to={beyond}"),
            format!("/v1/proof/consistency?tenant={tenant}&from=1&to=18446744073709551615"),
            format!("/v1/proof/consistency?tenant={tenant}&from=1&to=18446744073709551616"),
            format!("/v1/proof/consistency?tenant={tenant}&to={n}"),
            format!("/v1/proof/consistency?tenant={tenant}&from=-1"),
            format!("/v1/proof/consistency?tenant={tenant}&from=abc"),
            format!("/v1/proof/inclusion?tenant={tenant}&index={n}"),
            format!("/v1/proof/inclusion?tenant={tenant}&index={n}&size={n}"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=0&size={beyond}"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=0&size=0"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=18446744073709551615"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=0&size=18446744073709551615"),
            format!("/v1/proof/inclusion?tenant={tenant}"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=0&id={missing}"),
            format!("/v1/proof/inclusion?tenant={tenant}&id={missing}"),
            format!("/v1/proof/inclusion?tenant={tenant}&id=nope"),
            format!("/v1/proof/inclusion?tenant={tenant}&index=x"),
            "/v1/proof/inclusion?tenant=nosuch&index=0".to_string(),
            "/v1/proof/consistency?tenant=nosuch&from=1".to_string(),
        ];
        for path in &bad {
            srv.get(path).await.client_error(path);
        }
        // The specific statuses the API documents.
        srv.get(&format!(
            "/v1/proof/consistency?tenant={tenant}&from=0&to={n}"
        ))
        .await
        .error(StatusCode::BAD_REQUEST);
        srv.get(&format!(
            "/v1/proof/consistency?tenant={tenant}&from={beyond}&to={n}"
        ))
        .await
        .error(StatusCode::BAD_REQUEST);
        srv.get(&format!(
            "/v1/proof/consistency?tenant={tenant}&from=1&to={beyond}"
        ))
        .await
        .error(StatusCode::NOT_FOUND);
        srv.get(&format!(
            "/v1/proof/inclusion?tenant={tenant}&index=0&size={beyond}"
        ))
        .await
        .error(StatusCode::NOT_FOUND);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Tiles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tiles_serve_the_tree_and_entries_in_c2sp_layout() {
    let srv = Server::start().await;
    srv.ingest(&batch("tiles", 0, 150)).await;
    srv.ingest(&batch("tiles", 150, 150)).await;
    srv.ingest(&batch("default", 0, 5)).await;
    let cp = srv.wait_checkpoint("tiles", 300).await;
    let records = srv.records("tiles", 300).await;
    let leaves: Vec<Hash> = records.iter().map(|r| leaf(r)).collect();
    let concat = |hs: &[Hash]| hs.iter().flatten().copied().collect::<Vec<u8>>();
    let tile = |path: &str| {
        let path = path.to_string();
        let srv = &srv;
        async move {
            let r = srv.get(&path).await.ok();
            assert_eq!(r.header("content-type"), "application/octet-stream");
            r
        }
    };

    // Level 0: a full tile of leaf hashes 0..256, then a partial one of 256..300.
    let full = tile("/logs/tiles/tile/0/000").await;
    assert_eq!(full.body, concat(&leaves[..256]));
    assert!(full.header("cache-control").contains("immutable"));
    let partial = tile("/logs/tiles/tile/0/001.p/44").await;
    assert_eq!(partial.body, concat(&leaves[256..300]));
    assert_eq!(partial.header("cache-control"), "no-store");
    let smaller = tile("/logs/tiles/tile/0/001.p/3").await;
    assert_eq!(smaller.body, concat(&leaves[256..259]));

    // Level 1: the one complete level-8 node, the root of leaves 0..256.
    let level1 = tile("/logs/tiles/tile/1/000.p/1").await;
    let mut first256 = MemoryTree::new();
    leaves[..256].iter().for_each(|h| first256.push(*h));
    assert_eq!(level1.body, first256.root().to_vec());

    // The root recomputed from the tiles alone equals the signed checkpoint's.
    let mut from_tiles = MemoryTree::new();
    for chunk in full.body.chunks(32).chain(partial.body.chunks(32)) {
        from_tiles.push(chunk.try_into().unwrap());
    }
    assert_eq!(from_tiles.size(), 300);
    assert_eq!(from_tiles.root(), cp.root);

    // Entry bundles decode to exactly the records.
    let bundle = tile("/logs/tiles/tile/entries/000").await;
    let entries = tally_tlog::decode_entry_bundle(&bundle.body).expect("bundle decodes");
    assert_eq!(entries.len(), 256);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(*e, records[i].as_slice(), "entry {i}");
    }
    let bundle = tile("/logs/tiles/tile/entries/001.p/44").await;
    let entries = tally_tlog::decode_entry_bundle(&bundle.body).expect("bundle decodes");
    assert_eq!(
        entries,
        records[256..300]
            .iter()
            .map(Vec::as_slice)
            .collect::<Vec<_>>()
    );
    let bundle = tile("/logs/tiles/tile/entries/001.p/1").await;
    assert_eq!(
        tally_tlog::decode_entry_bundle(&bundle.body).unwrap(),
        vec![records[256].as_slice()]
    );

    // The tenant's checkpoint in the tiles layout is the signed one.
    let note = srv.get("/logs/tiles/checkpoint").await.ok();
    assert_eq!(note.header("cache-control"), "no-store");
    assert_eq!(open_checkpoint(&note.text(), &srv.verifier().await), cp);

    // Tiles beyond the tree, and malformed tile paths: JSON 404.
    for path in [
        "tile/0/001",
        "tile/0/001.p/45",
        "tile/0/002.p/1",
        "tile/entries/001",
        "tile/entries/002.p/1",
        "tile/1/000",
        "tile/1/000.p/2",
        "tile/2/000.p/1",
        "tile/8/000.p/1",
        "tile/63/000.p/1",
        "tile/0/x018/x446/x744/x073/x709/x551/615",
        "tile/0/1",
        "tile/0/0000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/007",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/00/000",
        "tile/x/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/x000/001",
        "tile/0/x001",
        "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        "tile/entries/abc",
        "tile/entries",
        "tile/0",
        "tile/0/000/",
        "tile/0//000",
        "tile/data/000",
    ] {
        srv.get(&format!("/logs/tiles/{path}"))
            .await
            .error(StatusCode::NOT_FOUND);
    }
    srv.get("/logs/nosuch/tile/0/000.p/1")
        .await
        .error(StatusCode::NOT_FOUND);
    srv.get("/logs/nosuch/checkpoint")
        .await
        .error(StatusCode::NOT_FOUND);
    srv.get("/logs/Not_Valid/checkpoint")
        .await
        .client_error("malformed tenant in the path");
    srv.get_as(None, "/logs/tiles/tile/0/000")
        .await
        .error(StatusCode::UNAUTHORIZED);

    // At the root: the `default` tenant.
    let dcp = srv.wait_checkpoint("default", 5).await;
    let root_note = srv.get("/checkpoint").await.ok().text();
    assert_eq!(
        root_note,
        srv.get("/logs/default/checkpoint").await.ok().text()
    );
    assert_eq!(root_note, srv.get("/v1/checkpoint").await.ok().text());
    assert_eq!(open_checkpoint(&root_note, &srv.verifier().await), dcp);
    let default_records = srv.records("default", 5).await;
    let root_tile = tile("/tile/0/000.p/5").await;
    assert_eq!(
        root_tile.body,
        concat(&default_records.iter().map(|r| leaf(r)).collect::<Vec<_>>())
    );
    assert_eq!(
        root_tile.body,
        tile("/logs/default/tile/0/000.p/5").await.body
    );
    let root_bundle = tile("/tile/entries/000.p/5").await;
    assert_eq!(
        tally_tlog::decode_entry_bundle(&root_bundle.body).unwrap(),
        default_records
            .iter()
            .map(Vec::as_slice)
            .collect::<Vec<_>>()
    );
    srv.get("/tile/0/000").await.error(StatusCode::NOT_FOUND);
    srv.get("/tile/0/1").await.error(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// 9. Operations
// ---------------------------------------------------------------------------------------------

/// Issue 9: `/metrics` names every tenant, so on the API's address it needs a key of every
/// tenant; a separate listener serves it without one (and nothing else).
#[tokio::test]
async fn issue_9_metrics_listen_serves_metrics_without_a_key_and_nothing_else() {
    let srv = Server::start_with(ServerSettings {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..settings()
    })
    .await;
    srv.ingest(&batch("acme", 0, 3)).await;
    let metrics_url = srv
        .running
        .as_ref()
        .unwrap()
        .metrics_url
        .clone()
        .expect("a metrics listener");
    let http = Client::new();
    let metrics = http
        .get(format!("{metrics_url}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("tally_log_tree_size{tenant=\"acme\"} 3"),
        "{text}"
    );
    // Nothing else is served there, with or without a key.
    for path in ["/v1/events/0?tenant=acme", "/v1/tenants", "/healthz"] {
        let r = http
            .get(format!("{metrics_url}{path}"))
            .bearer_auth(&srv.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    srv.get_as(None, "/metrics")
        .await
        .error(StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let srv = Server::start().await;
    srv.ingest(&batch("ops", 0, 7)).await;
    srv.ingest(&batch("ops2", 0, 2)).await;

    let health = srv.get_as(None, "/healthz").await.ok();
    assert!(health.header("content-type").starts_with(JSON));
    assert_eq!(health.json()["status"], "ok");

    // The metrics name every tenant: a key of every tenant with the metrics scope, or nothing.
    srv.get_as(None, "/metrics")
        .await
        .error(StatusCode::UNAUTHORIZED);
    // (Its creation is recorded in tenant keys's log: one event more in the total.)
    let confined_reader = srv.key(&["metrics"], "keys").await;
    let err = srv
        .get_as(Some(&confined_reader), "/metrics")
        .await
        .error(StatusCode::FORBIDDEN);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("--metrics-listen"),
        "{err}"
    );
    let metrics = srv.get("/metrics").await.ok();
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = metrics.text();
    let value_of = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .expect("metric value")
    };
    assert!(text.contains("# TYPE tally_log_events counter"), "{text}");
    // The events sent, and the server's own (the admin key's creation, the tenants made by
    // their first events) in tally-system's log.
    let tree_sizes: f64 = text
        .lines()
        .filter(|l| l.starts_with("tally_log_tree_size{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(value_of("tally_log_events_total"), tree_sizes);
    assert_eq!(value_of("tally_log_tree_size{tenant=\"ops\"}"), 7.0);
    assert_eq!(value_of("tally_log_tree_size{tenant=\"ops2\"}"), 2.0);
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics end marker");

    for path in [
        "/nope",
        "/v2/events",
        "/v1/event",
        "/logs/ops",
        "/v1/events/0/extra",
    ] {
        let error = srv.get(path).await.error(StatusCode::NOT_FOUND);
        assert_eq!(error["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let srv = Server::start().await;
    let doc = srv.get_as(None, "/openapi.json").await.ok();
    assert!(doc.header("content-type").starts_with(JSON));
    let doc = doc.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/events",
        "/v1/events/{key}",
        "/v1/proof/inclusion",
        "/v1/proof/consistency",
        "/v1/checkpoint",
        "/v1/keys",
        "/v1/stats",
        "/v1/events/stream",
        "/v1/export",
    ] {
        assert!(doc["paths"].get(path).is_some(), "no path {path}");
    }
    assert!(doc["paths"]["/v1/events"].get("post").is_some());
    let event_schema = &doc["components"]["schemas"]["Event"];
    assert!(event_schema.is_object(), "no Event schema");
    assert!(
        event_schema.to_string().contains("outcome"),
        "the Event schema describes outcome"
    );
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_a_json_error() {
    let srv = Server::start().await;
    let resp = srv
        .post_as(Some(&srv.admin), "/v1/checkpoint", Some(JSON), "{}")
        .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    resp.error(StatusCode::METHOD_NOT_ALLOWED);
    let req = srv.http.put(srv.url("/v1/events")).bearer_auth(&srv.admin);
    Resp::from(req.send().await.unwrap())
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------------
// 10. Restart
// ---------------------------------------------------------------------------------------------

/// Issue 7: damage inside the signed range is reported by /healthz, /metrics and the log
/// (naming tenant and index) instead of showing only as a failed read.
#[tokio::test]
async fn issue_7_damage_inside_the_signed_range_shows_in_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::open(tmp.path(), settings(), None).await;
    let admin = srv.admin.clone();
    srv.ingest(&batch("acme", 0, 40)).await;
    srv.ingest(&batch("beta", 0, 5)).await;
    srv.wait_checkpoint("acme", 40).await;
    srv.stop().await;

    // One bit of record 23, inside its frame, checksum left alone.
    let td = DataDir::open_existing(tmp.path()).unwrap().tenant("acme");
    let seg = td.segment_path(*td.list_segments().unwrap().last().unwrap());
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut at = 0usize;
    for _ in 0..23 {
        at += 16 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    bytes[at + 40] ^= 0x04;
    std::fs::write(&seg, bytes).unwrap();

    let srv = Server::open(tmp.path(), settings(), Some(admin)).await;
    srv.get_as(None, "/healthz").await.ok();
    // The scrub (run now instead of waiting for its schedule) finds it without any read.
    let found = srv.log.scrub_now();
    assert_eq!(found.len(), 1, "{found:?}");
    let health = srv.get_as(None, "/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = health.json();
    assert_eq!(body["status"], "damaged", "{body}");
    assert_eq!(body["damage"][0]["tenant"], "acme", "{body}");
    assert_eq!(body["damage"][0]["index"], 23, "{body}");
    assert_eq!(body["damage"][0]["found_by"], "the scrub", "{body}");
    let metrics = srv.get("/metrics").await.ok().text();
    assert!(
        metrics.contains("tally_log_damaged{tenant=\"acme\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tally_log_damage_first_index{tenant=\"acme\"} 23"),
        "{metrics}"
    );
    assert!(!metrics.contains("tally_log_damaged{tenant=\"beta\"} 1"));
    // Ingest goes on for every tenant; undamaged records read as before.
    srv.ingest(&batch("acme", 40, 2)).await;
    srv.ingest(&batch("beta", 5, 1)).await;
    srv.get("/v1/events/22?tenant=acme").await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn records_ids_and_checkpoints_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::open(tmp.path(), settings(), None).await;
    let admin = srv.admin.clone();
    let mut with_ids = batch("keep", 0, 10);
    for e in with_ids.as_array_mut().unwrap() {
        e["id"] = json!(new_id());
    }
    let first = srv.ingest(&with_ids).await;
    let second = srv.ingest(&batch("keep", 10, 5)).await;
    srv.ingest(&batch("other", 0, 3)).await;
    let all: Vec<Stored> = first.iter().chain(&second).cloned().collect();
    let cp = srv.wait_checkpoint("keep", 15).await;
    let other_cp = srv.wait_checkpoint("other", 3).await;
    let note = srv.get("/v1/checkpoint?tenant=keep").await.ok().text();
    let records = srv.records("keep", 15).await;
    let other_records = srv.records("other", 3).await;
    let log_key = srv.get("/v1/log-key").await.ok().text();
    srv.stop().await;

    let srv = Server::open(tmp.path(), settings(), Some(admin)).await;
    assert_eq!(
        srv.get("/v1/log-key").await.ok().text(),
        log_key,
        "same signing key"
    );
    assert_eq!(srv.tenant_size("keep").await, 15);
    assert_eq!(srv.tenant_size("other").await, 3);
    assert_eq!(srv.records("keep", 15).await, records);
    assert_eq!(srv.records("other", 3).await, other_records);
    for s in &all {
        assert_eq!(srv.record("keep", &s.id).await, records[s.index as usize]);
    }
    assert_eq!(srv.wait_checkpoint("keep", 15).await, cp);
    assert_eq!(srv.wait_checkpoint("other", 3).await, other_cp);
    assert_eq!(
        srv.get("/v1/checkpoint?tenant=keep").await.ok().text(),
        note
    );

    // Retries of old events are still recognised; new events continue at the next index.
    let retry = srv.ingest(&with_ids[3]).await;
    assert_eq!((retry[0].index, retry[0].duplicate), (3, true));
    let next = srv.ingest(&batch("keep", 20, 2)).await;
    assert_eq!(
        next.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![15, 16]
    );
    let cp2 = srv.wait_checkpoint("keep", 17).await;
    let p = srv
        .get("/v1/proof/consistency?tenant=keep&from=15")
        .await
        .ok()
        .json();
    let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash_of).collect();
    tally_tlog::verify_consistency(15, 17, &proof, &cp.root, &cp2.root)
        .expect("the tree after the restart extends the one before");
    let records2 = srv.records("keep", 17).await;
    assert_eq!(&records2[..15], &records[..]);
    assert_eq!(tree_of(&records2).root(), cp2.root);
    srv.stop().await;
}

/// Issue 8: a disk that fails under the server. A failed write answers 503 with Retry-After
/// and a JSON error, `/healthz` says what failed, nothing acknowledged is lost, and once
/// the disk works again events are taken without a restart. A failed fsync stops the log
/// until a restart, after which everything acknowledged is there.
#[tokio::test]
async fn issue_8_a_failing_disk_is_answered_with_503_and_reported_in_health() {
    use tally_store::faults::{Fault, FaultPoint, Faults};
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let config = LogConfig {
        faults: Some(faults.clone()),
        ..log_config()
    };
    let srv = Server::open_configured(tmp.path(), settings(), None, config).await;
    let admin = srv.admin.clone();
    let first = srv.ingest(&batch("acme", 0, 10)).await;

    faults.arm(FaultPoint::RecordWrite, Fault::Error(libc::ENOSPC), 1);
    let refused = srv.post_json(&batch("acme", 10, 5)).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.header("retry-after"), "5");
    let body = refused.json();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{body}"
    );
    let health = srv.get_as(None, "/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json()["status"], "failed", "{:?}", health.json());
    assert_eq!(
        health.json()["restart_needed"],
        false,
        "{:?}",
        health.json()
    );
    assert!(
        health.json()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No space left on device")),
        "{:?}",
        health.json()
    );
    // Space is freed: the same request is stored, right after the first ten.
    let stored = srv.ingest(&batch("acme", 10, 5)).await;
    assert_eq!(stored[0].index, 10);
    srv.get_as(None, "/healthz").await.ok();

    // A failed fsync: refused, and refused still after the disk recovers, until a restart.
    faults.arm(FaultPoint::RecordSync, Fault::Error(libc::EIO), 1);
    let refused = srv.post_json(&batch("acme", 20, 1)).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    faults.clear();
    let still = srv.post_json(&batch("acme", 21, 1)).await;
    assert_eq!(still.status, StatusCode::SERVICE_UNAVAILABLE);
    let health = srv.get_as(None, "/healthz").await.json();
    assert!(
        health["reason"].as_str().unwrap().contains("restart"),
        "{health}"
    );
    assert_eq!(health["restart_needed"], true, "{health}");
    srv.stop().await;

    let srv = Server::open(tmp.path(), settings(), Some(admin)).await;
    for s in first.iter().chain(&stored) {
        srv.get(&format!("/v1/events/{}?tenant=acme", s.index))
            .await
            .ok();
    }
    srv.stop().await;
    let dir = DataDir::open_existing(tmp.path()).unwrap();
    let verifier = tally_tlog::note::NoteVerifier::parse_vkey(
        std::fs::read_to_string(dir.verifier_key_path())
            .unwrap()
            .trim(),
    )
    .unwrap();
    tally_store::verify::verify_tenant(&dir, "acme", &verifier, &[], &mut |_| {}).unwrap();
}
