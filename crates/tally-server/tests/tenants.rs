//! Tenants over real HTTP: create, list, describe, disable and re-enable, the unknown-tenant
//! policy, per-tenant quotas (429 with Retry-After), and every change on the record.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tally_server::{ServerSettings, UnknownTenants};

struct Api {
    http: Client,
    base: String,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api {
            http: Client::new(),
            base: server.running.url.clone(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value, headers)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(reqwest::Method::GET, path, token, None).await;
        (s, v)
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .call(reqwest::Method::POST, path, token, Some(body))
            .await;
        (s, v)
    }

    async fn ingest(
        &self,
        token: &str,
        tenant: &str,
        events: usize,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let batch: Vec<Value> = (0..events)
            .map(|i| {
                json!({
                    "time": now, "tenant": tenant, "action": "user.login", "category": "LOGIN",
                    "outcome": "SUCCESS", "actor": {"id": format!("user-{i}"), "type": "user"},
                })
            })
            .collect();
        self.call(
            reqwest::Method::POST,
            "/v1/events",
            token,
            Some(Value::Array(batch)),
        )
        .await
    }

    async fn key(&self, admin: &str, scopes: &[&str], tenant: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/keys",
                admin,
                json!({"name": "k", "scopes": scopes, "tenant": tenant}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// The actions recorded in `tenant`'s log, in order.
    async fn actions(&self, admin: &str, tenant: &str) -> Vec<(String, Value)> {
        let (status, list) = self.get("/v1/tenants", admin).await;
        assert_eq!(status, StatusCode::OK);
        let size = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == tenant)
            .map_or(0, |t| t["size"].as_u64().unwrap());
        let mut out = Vec::new();
        for i in 0..size {
            let (status, event) = self
                .get(&format!("/v1/events/{i}?tenant={tenant}"), admin)
                .await;
            assert_eq!(status, StatusCode::OK, "{event}");
            out.push((event["action"].as_str().unwrap().to_string(), event.clone()));
        }
        out
    }
}

#[tokio::test]
async fn tenants_are_created_listed_described_disabled_and_enabled_on_the_record() {
    let server = TestServer::start(ServerSettings::default()).await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();

    let (status, created) = api
        .post("/v1/tenants", admin, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "enabled");
    assert!(created["created_at"].is_string());
    assert_eq!(created["size"], 0);
    let (status, again) = api
        .post("/v1/tenants", admin, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again["error"]["code"], "tenant_exists");
    let (status, bad) = api
        .post("/v1/tenants", admin, json!({"name": "Not Valid"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad["error"]["details"][0]["field"], "name");

    // Ingest works, then disabling refuses it with a clear code and the reason.
    let writer = api.key(admin, &["ingest", "read"], "acme").await;
    let (status, body, _) = api.ingest(&writer, "acme", 3).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, disabled) = api
        .post(
            "/v1/tenants/acme/disable",
            admin,
            json!({"reason": "contract ended"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(disabled["disabled_reason"], "contract ended");
    let (status, refused, _) = api.ingest(&writer, "acme", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["error"]["code"], "tenant_disabled");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("contract ended"));

    // Still readable and provable while disabled; the size did not move.
    let (status, event) = api.get("/v1/events/3?tenant=acme", &writer).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, proof) = api
        .get("/v1/proof/inclusion?tenant=acme&index=0", &writer)
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let (status, described) = api.get("/v1/tenants/acme", &writer).await;
    assert_eq!(status, StatusCode::OK);
    // The writer key's creation (recorded in acme's own log), the three events, and the
    // writer's refused ingest (recorded in its tenant's log).
    assert_eq!(described["size"], 5);
    assert!(described["record_bytes"].as_u64().unwrap() > 0);

    let (status, enabled) = api.post("/v1/tenants/acme/enable", admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["status"], "enabled");
    assert!(enabled.get("disabled_reason").is_none());
    let (status, body, _) = api.ingest(&writer, "acme", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every change is on the record, in the system tenant's log, by the key that made it.
    let recorded: Vec<(String, Value)> = api
        .actions(admin, "tally-system")
        .await
        .into_iter()
        .filter(|(a, _)| a.starts_with("tally.tenants."))
        .collect();
    let names: Vec<&str> = recorded.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "tally.tenants.create",
            "tally.tenants.disable",
            "tally.tenants.enable"
        ]
    );
    for (_, event) in &recorded {
        assert_eq!(event["resource"]["type"], "TENANT");
        assert_eq!(event["resource"]["id"], "acme");
        assert!(event["actor"]["id"]
            .as_str()
            .unwrap()
            .starts_with("api-key:"));
    }
    assert_eq!(
        recorded[1].1["metadata"]["disabled_reason"],
        "contract ended"
    );

    // The system tenant is never disabled, limited or written to by clients.
    let (status, body) = api
        .post("/v1/tenants/tally-system/disable", admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "system_tenant");
    let (status, body, _) = api.ingest(admin, "tally-system", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "reserved_tenant");
    let (status, _) = api.post("/v1/tenants/nope/disable", admin, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn only_an_admin_of_every_tenant_changes_tenants_and_readers_see_their_own() {
    let server = TestServer::start(ServerSettings::default()).await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();
    for name in ["acme", "beta"] {
        let (status, _) = api.post("/v1/tenants", admin, json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let acme_admin = api.key(admin, &["admin"], "acme").await;
    let acme_reader = api.key(admin, &["read"], "acme").await;
    let ingest_only = api.key(admin, &["ingest"], "*").await;

    for token in [&acme_admin, &acme_reader] {
        for (path, body) in [
            ("/v1/tenants", json!({"name": "gamma"})),
            ("/v1/tenants/acme/disable", json!({})),
            ("/v1/tenants/beta/disable", json!({})),
            ("/v1/tenants/acme/enable", json!({})),
        ] {
            let (status, body) = api.post(path, token, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (status, _, _) = api
            .call(
                reqwest::Method::PUT,
                "/v1/tenants/acme/quotas",
                token,
                Some(json!({"events_per_second": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // A tenant's keys list and describe their own tenant only.
    let (status, list) = api.get("/v1/tenants", &acme_reader).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"]);
    let (status, _) = api.get("/v1/tenants/beta", &acme_reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.get("/v1/tenants/acme", &ingest_only).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.get("/v1/tenants/Bad%20Name", admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The global admin sees every tenant, the system's included.
    let (_, list) = api.get("/v1/tenants", admin).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "beta", "tally-system"]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_tenants_are_created_on_first_write_or_refused_as_the_server_says() {
    // Default: created, and the creation recorded with the key that caused it.
    let server = TestServer::start(ServerSettings::default()).await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();
    let writer = api.key(admin, &["ingest"], "*").await;
    let (status, body, _) = api.ingest(&writer, "fresh", 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The client's first event is leaf 0 of the new log: the creation is recorded elsewhere.
    assert_eq!(body["events"][0]["index"], 0);
    let (status, described) = api.get("/v1/tenants/fresh", admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(described["status"], "enabled");
    let created: Vec<(String, Value)> = api
        .actions(admin, "tally-system")
        .await
        .into_iter()
        .filter(|(a, _)| a == "tally.tenants.create")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].1["metadata"]["via"], "ingest");
    server.stop().await;

    // Refuse: 403 unknown_tenant until an administrator creates it.
    let server = TestServer::start(ServerSettings {
        unknown_tenants: UnknownTenants::Refuse,
        ..ServerSettings::default()
    })
    .await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();
    let (status, body, _) = api.ingest(admin, "typo", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "unknown_tenant");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tally tenants create typo"));
    let (status, _) = api.get("/v1/tenants/typo", admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
    let (status, _) = api
        .post("/v1/tenants", admin, json!({"name": "typo"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body, _) = api.ingest(admin, "typo", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after_and_store_nothing_of_the_refused_request() {
    let server = TestServer::start(ServerSettings::default()).await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();
    let (status, _) = api
        .post("/v1/tenants", admin, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let quotas = |body: Value| {
        api.call(
            reqwest::Method::PUT,
            "/v1/tenants/acme/quotas",
            admin,
            Some(body),
        )
    };
    let (status, body, _) = quotas(json!({"events_per_second": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "events_per_second");
    let (status, body, _) = quotas(json!({"events_per_sec": 5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Rate: 10 events per second with a burst of 10. A low rate keeps this independent of
    // the machine's speed: the refill between two requests is far below one batch.
    let (status, body, _) = quotas(json!({"events_per_second": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quotas"]["events_per_second"], 10);
    let (status, body, _) = api.ingest(admin, "acme", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, headers) = api.ingest(admin, "acme", 10).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let (_, described) = api.get("/v1/tenants/acme", admin).await;
    assert_eq!(described["size"], 10, "the refused request stored nothing");
    // Another tenant is not limited by acme's quota.
    let (status, body, _) = api.ingest(admin, "beta", 50).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Stored bytes: the request that starts below the quota is taken, the next refused.
    let (status, body, _) = quotas(json!({"max_stored_bytes": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["quotas"].get("events_per_second").is_none());
    let (status, body, headers) = api.ingest(admin, "acme", 1).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "storage_quota_exceeded");
    assert!(headers.contains_key("retry-after"));
    let (status, body, _) = quotas(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = api.ingest(admin, "acme", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let recorded: Vec<Value> = api
        .actions(admin, "tally-system")
        .await
        .into_iter()
        .filter(|(a, _)| a == "tally.tenants.quotas")
        .map(|(_, e)| e["metadata"]["quotas"].clone())
        .collect();
    assert_eq!(
        recorded,
        [
            json!({"events_per_second": 10}),
            json!({"max_stored_bytes": 1}),
            json!({})
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_registry_survives_a_restart_and_adopts_logs_from_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let start = || async {
        let app = tally_server::app::App::start(tally_server::app::AppSettings {
            index: None,
            admin: tally_server::app::AdminKey::Create("admin".into()),
            ..tally_server::app::AppSettings::new(&data)
        })
        .await
        .expect("start");
        let token = app.admin_token().unwrap().to_string();
        (app.spawn("127.0.0.1:0").await.expect("serve"), token)
    };
    let (running, admin) = start().await;
    let api = Api {
        http: Client::new(),
        base: running.url.clone(),
    };
    let (status, body, _) = api.ingest(&admin, "old", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.post("/v1/tenants/old/disable", &admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    running.stop().await;
    // As if written by a release without the registry: the file is gone, the logs remain.
    let registry = data.join("tenants.json");
    let saved = std::fs::read(&registry).unwrap();
    std::fs::remove_file(&registry).unwrap();
    let (running, admin) = start().await;
    let api = Api {
        http: Client::new(),
        base: running.url.clone(),
    };
    let (status, old) = api.get("/v1/tenants/old", &admin).await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert_eq!(old["status"], "enabled", "adopted as enabled");
    assert!(
        old.get("created_at").is_none(),
        "its creation time is unknown"
    );
    running.stop().await;
    // With the file back, the state holds across the restart.
    std::fs::write(&registry, saved).unwrap();
    let (running, admin) = start().await;
    let api = Api {
        http: Client::new(),
        base: running.url.clone(),
    };
    let (_, old) = api.get("/v1/tenants/old", &admin).await;
    assert_eq!(old["status"], "disabled");
    let (status, body, _) = api.ingest(&admin, "old", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    running.stop().await;
}

#[tokio::test]
async fn a_key_with_a_rate_limit_gets_429_with_retry_after_and_other_keys_do_not() {
    let server = TestServer::start(ServerSettings::default()).await;
    let api = Api::new(&server);
    let admin = server.admin.as_str();
    let (status, body) = api
        .post(
            "/v1/keys",
            admin,
            json!({"name": "slow", "scopes": ["read"], "tenant": "acme", "requests_per_second": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "requests_per_second");
    let (status, created) = api
        .post(
            "/v1/keys",
            admin,
            json!({"name": "slow", "scopes": ["read"], "tenant": "acme", "requests_per_second": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"]["requests_per_second"], 2);
    let slow = created["token"].as_str().unwrap().to_string();
    let other = api.key(admin, &["read"], "acme").await;

    // A burst of one second's worth, then 429 (a low rate: the refill between two requests
    // is far below one request on any machine).
    for _ in 0..2 {
        let (status, body) = api.get("/v1/tenants", &slow).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, headers) = api
        .call(reqwest::Method::GET, "/v1/tenants", &slow, None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(headers["retry-after"], "1");
    // Another key of the same tenant is not held back.
    for _ in 0..5 {
        let (status, _) = api.get("/v1/tenants", &other).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The limit is on the record with the key.
    let created_events: Vec<Value> = api
        .actions(admin, "acme")
        .await
        .into_iter()
        .filter(|(a, _)| a == "tally.keys.create")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(created_events[0]["metadata"]["requests_per_second"], 2);
    // After the wait it answers again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _) = api.get("/v1/tenants", &slow).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}
