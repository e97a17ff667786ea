//! The access matrix: every operation of the OpenAPI document × every kind of credential,
//! asserting the exact status, over real HTTP. An operation added to the document without a
//! row here fails the suite, and no answer to another tenant's key carries this tenant's data.
//!
//! Credentials: none, malformed, wrong secret, expired, revoked (each otherwise an admin of
//! every tenant, so the credential itself is the only reason to refuse), a key lacking the
//! operation's scope, a key of another tenant holding every scope, and the right key.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::TestServer;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tally_server::ServerSettings;

/// What an operation asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// Nothing: anyone may call it.
    Public,
    /// This scope, on a key that reaches the tenant the request addresses.
    Scope(&'static str),
    /// An admin key of every tenant.
    GlobalAdmin,
    /// The metrics scope on a key of every tenant.
    GlobalMetrics,
}

/// One request of the matrix.
struct Case {
    method: Method,
    /// The operation's path as the OpenAPI document writes it.
    template: &'static str,
    /// The request's path and query.
    path: String,
    body: Option<Value>,
    need: Need,
    /// The tenant the request addresses (whose keys are "right").
    tenant: &'static str,
    /// The status the right key gets.
    ok: u16,
    /// The status a key of another tenant holding every scope gets (usually 403; listing
    /// answers 200 with that tenant's own items only, and keys out of reach are 404).
    other_tenant: u16,
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        // A live stream never ends: its status is the answer.
        if path.starts_with("/v1/events/stream") && status == 200 {
            return (status, String::new());
        }
        (status, response.text().await.unwrap_or_default())
    }

    async fn key(&self, admin: &str, scopes: &[&str], tenant: &str, extra: Value) -> Value {
        let mut body = json!({"name": "matrix", "scopes": scopes, "tenant": tenant});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, text) = self
            .send(
                Method::POST,
                "/v1/keys",
                Some(&format!("Bearer {admin}")),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn token(&self, admin: &str, scopes: &[&str], tenant: &str) -> String {
        self.key(admin, scopes, tenant, json!({})).await["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn ingest(&self, admin: &str, tenant: &str, marker: &str, n: usize) -> Vec<String> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "time": now, "tenant": tenant, "action": "record.read",
                       "outcome": "SUCCESS", "actor": {"id": marker}})
            })
            .collect();
        let (status, text) = self
            .send(
                Method::POST,
                "/v1/events",
                Some(&format!("Bearer {admin}")),
                Some(&Value::Array(events)),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        ids
    }
}

/// The scope a key must lack to be refused `need` (one that does not imply it).
fn lacking(need: Need) -> &'static [&'static str] {
    match need {
        Need::Scope("ingest") => &["read", "export"],
        Need::Scope("read") => &["verify", "ingest", "export"],
        Need::Scope("verify") => &["ingest", "export"],
        Need::Scope("export") => &["read:pii", "ingest"],
        Need::Scope("admin") => &["read:pii", "ingest", "export", "metrics"],
        Need::GlobalAdmin => &["read:pii", "ingest", "export", "metrics"],
        Need::GlobalMetrics => &["read:pii", "ingest", "export"],
        other => panic!("no lacking scopes for {other:?}"),
    }
}

#[tokio::test]
async fn every_operation_answers_every_kind_of_credential_exactly() {
    // Encrypted at rest, so that every operation is also seen working on encrypted records.
    let server = TestServer::start_full(ServerSettings::default(), true, true, true).await;
    let api = Api {
        http: Client::new(),
        base: server.running.url.clone(),
    };
    let admin = server.admin.clone();

    // Two tenants with records, and a spare one for the tenant controls.
    let acme_ids = api.ingest(&admin, "acme", "acme-private-actor", 5).await;
    let beta_ids = api.ingest(&admin, "beta", "beta-actor", 3).await;
    api.ingest(&admin, "default", "default-actor", 2).await;
    for name in ["spare", "spare-2"] {
        let (status, text) = api
            .send(
                Method::POST,
                "/v1/tenants",
                Some(&format!("Bearer {admin}")),
                Some(&json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{text}");
    }

    // Credentials that fail on their own account, each otherwise an admin of every tenant.
    let good = api.token(&admin, &["admin"], "*").await;
    let (prefix, _) = good.rsplit_once('_').unwrap();
    let wrong_secret = format!("{prefix}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let expiring = api
        .key(
            &admin,
            &["admin"],
            "*",
            json!({"expires_at": (time::OffsetDateTime::now_utc() + Duration::from_secs(2))
                .format(&time::format_description::well_known::Rfc3339).unwrap()}),
        )
        .await;
    let expired = expiring["token"].as_str().unwrap().to_string();
    let revoked_key = api.key(&admin, &["admin"], "*", json!({})).await;
    let revoked = revoked_key["token"].as_str().unwrap().to_string();
    let (status, _) = api
        .send(
            Method::DELETE,
            &format!("/v1/keys/{}", revoked_key["key"]["id"].as_str().unwrap()),
            Some(&format!("Bearer {admin}")),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Keys whose powers the matrix needs: every single scope for both tenants addressed, and
    // a key of another tenant (beta) holding every scope.
    let all_scopes = [
        "ingest", "read", "read:pii", "export", "verify", "metrics", "admin",
    ];
    let mut keys = std::collections::HashMap::new();
    for tenant in ["acme", "default", "*"] {
        for scope in all_scopes {
            keys.insert((tenant, scope), api.token(&admin, &[scope], tenant).await);
        }
    }
    let beta_all = api.token(&admin, &all_scopes, "beta").await;
    // Victims of the key operations: made for acme, so out of beta's reach.
    let victim = |n: &str| {
        let api = &api;
        let admin = admin.clone();
        let name = n.to_string();
        async move {
            api.key(&admin, &["ingest"], "acme", json!({"name": name}))
                .await["key"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let to_revoke = victim("to-revoke").await;
    let to_rotate = victim("to-rotate").await;

    // Wait for the checkpoints (every 50 ms) and the index to cover the records.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let size_of = |tenant: &'static str| {
        let api = &api;
        let admin = admin.clone();
        async move {
            let (_, text) = api
                .send(
                    Method::GET,
                    &format!("/v1/tenants/{tenant}"),
                    Some(&format!("Bearer {admin}")),
                    None,
                )
                .await;
            let v: Value = serde_json::from_str(&text).unwrap();
            v["checkpoint_size"].as_u64().unwrap()
        }
    };
    let acme_size = size_of("acme").await;
    let default_size = size_of("default").await;
    assert!(acme_size >= 5 && default_size >= 2);

    let case = |method: Method,
                template: &'static str,
                path: String,
                body: Option<Value>,
                need: Need,
                tenant: &'static str,
                ok: u16,
                other_tenant: u16| Case {
        method,
        template,
        path,
        body,
        need,
        tenant,
        ok,
        other_tenant,
    };
    use Need::*;
    let event = json!({"time": "2026-11-30T10:00:00Z", "action": "record.read",
                       "outcome": "SUCCESS", "actor": {"id": "acme-private-actor"}});
    let cases = vec![
        case(
            Method::POST,
            "/v1/events",
            "/v1/events?tenant=acme".into(),
            Some(event),
            Scope("ingest"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/events",
            "/v1/events?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/stats",
            "/v1/stats?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/events/stream",
            "/v1/events/stream?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/export",
            "/v1/export?tenant=acme".into(),
            None,
            Scope("export"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/events/{key}",
            "/v1/events/0?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/events/{key}",
            format!("/v1/events/{}?tenant=acme", acme_ids[0]),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/tenants",
            "/v1/tenants".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            200,
        ),
        case(
            Method::GET,
            "/v1/tenants/{tenant}",
            "/v1/tenants/acme".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants",
            "/v1/tenants".into(),
            Some(json!({"name": "gamma"})),
            GlobalAdmin,
            "acme",
            201,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/disable",
            "/v1/tenants/spare/disable".into(),
            Some(json!({"reason": "matrix"})),
            GlobalAdmin,
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/enable",
            "/v1/tenants/spare/enable".into(),
            None,
            GlobalAdmin,
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/alerts",
            "/v1/alerts?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        // No such alert: the right key learns that, a key of another tenant does not.
        case(
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/01900000-0000-7000-8000-000000000000?tenant=acme".into(),
            None,
            Scope("read"),
            "acme",
            404,
            403,
        ),
        case(
            Method::POST,
            "/v1/alerts/{id}/acknowledge",
            "/v1/alerts/01900000-0000-7000-8000-000000000000/acknowledge?tenant=acme".into(),
            Some(json!({})),
            Scope("read"),
            "acme",
            404,
            403,
        ),
        case(
            Method::POST,
            "/v1/alerts/{id}/resolve",
            "/v1/alerts/01900000-0000-7000-8000-000000000000/resolve?tenant=acme".into(),
            Some(json!({"note": "n"})),
            Scope("read"),
            "acme",
            404,
            403,
        ),
        // The rules are the installation's: any reader may see them.
        case(
            Method::GET,
            "/v1/rules",
            "/v1/rules".into(),
            None,
            Scope("read"),
            "acme",
            200,
            200,
        ),
        case(
            Method::PUT,
            "/v1/rules",
            "/v1/rules".into(),
            Some(
                json!({"rules": [{"id": "grants", "title": "Role grants", "match": "action:role.grant"}]}),
            ),
            GlobalAdmin,
            "acme",
            200,
            403,
        ),
        case(
            Method::PUT,
            "/v1/tenants/{tenant}/quotas",
            "/v1/tenants/spare-2/quotas".into(),
            Some(json!({"events_per_second": 100})),
            GlobalAdmin,
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/tenants/{tenant}/policy",
            "/v1/tenants/acme/policy".into(),
            None,
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::PUT,
            "/v1/tenants/{tenant}/policy",
            "/v1/tenants/acme/policy".into(),
            Some(json!({"personal_paths": [{"path": "after.email", "subject": "value"}]})),
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/holds",
            "/v1/tenants/acme/holds".into(),
            Some(json!({"subject": "held-1", "reason": "matter 1"})),
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/holds/release",
            "/v1/tenants/acme/holds/release".into(),
            Some(json!({"subject": "held-1"})),
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/tenants/{tenant}/data-keys",
            "/v1/tenants/acme/data-keys".into(),
            None,
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/data-keys/rotate",
            "/v1/tenants/acme/data-keys/rotate".into(),
            None,
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::POST,
            "/v1/tenants/{tenant}/erasures",
            "/v1/tenants/acme/erasures".into(),
            Some(json!({"subjects": ["nobody-1"], "reason": "request 1"})),
            Scope("admin"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/checkpoint",
            "/v1/checkpoint?tenant=acme".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/log-key",
            "/v1/log-key".into(),
            None,
            Public,
            "acme",
            200,
            200,
        ),
        case(
            Method::GET,
            "/v1/proof/inclusion",
            "/v1/proof/inclusion?tenant=acme&index=0".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/proof/inclusion",
            format!("/v1/proof/inclusion?tenant=acme&id={}", acme_ids[1]),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/proof/consistency",
            "/v1/proof/consistency?tenant=acme&from=1".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/v1/keys",
            "/v1/keys".into(),
            None,
            Scope("admin"),
            "acme",
            200,
            200,
        ),
        case(
            Method::POST,
            "/v1/keys",
            "/v1/keys".into(),
            Some(json!({"name": "new", "scopes": ["ingest"], "tenant": "acme"})),
            Scope("admin"),
            "acme",
            201,
            403,
        ),
        case(
            Method::DELETE,
            "/v1/keys/{id}",
            format!("/v1/keys/{to_revoke}"),
            None,
            Scope("admin"),
            "acme",
            204,
            404,
        ),
        case(
            Method::POST,
            "/v1/keys/{id}/rotate",
            format!("/v1/keys/{to_rotate}/rotate"),
            Some(json!({"overlap_seconds": 60})),
            Scope("admin"),
            "acme",
            200,
            404,
        ),
        case(
            Method::GET,
            "/logs/{tenant}/checkpoint",
            "/logs/acme/checkpoint".into(),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/logs/{tenant}/tile/{level}/{index}",
            format!("/logs/acme/tile/0/000.p/{acme_size}"),
            None,
            Scope("verify"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/logs/{tenant}/tile/entries/{index}",
            format!("/logs/acme/tile/entries/000.p/{acme_size}"),
            None,
            Scope("read"),
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/checkpoint",
            "/checkpoint".into(),
            None,
            Scope("verify"),
            "default",
            200,
            403,
        ),
        case(
            Method::GET,
            "/tile/{level}/{index}",
            format!("/tile/0/000.p/{default_size}"),
            None,
            Scope("verify"),
            "default",
            200,
            403,
        ),
        case(
            Method::GET,
            "/tile/entries/{index}",
            format!("/tile/entries/000.p/{default_size}"),
            None,
            Scope("read"),
            "default",
            200,
            403,
        ),
        case(
            Method::GET,
            "/healthz",
            "/healthz".into(),
            None,
            Public,
            "acme",
            200,
            200,
        ),
        case(
            Method::GET,
            "/metrics",
            "/metrics".into(),
            None,
            GlobalMetrics,
            "acme",
            200,
            403,
        ),
        case(
            Method::GET,
            "/openapi.json",
            "/openapi.json".into(),
            None,
            Public,
            "acme",
            200,
            200,
        ),
    ];

    // Every operation of the document has a row, and every row an operation.
    let (_, text) = api.send(Method::GET, "/openapi.json", None, None).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| !m.starts_with("parameters"))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.to_string(), c.template.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "operations without a row in the access matrix: {missing:?}; rows without an operation: {stale:?}"
    );

    // The expired key has expired by now (it was made with 2 s).
    let bearer = |t: &str| format!("Bearer {t}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for c in &cases {
        let right_tenant = if matches!(c.need, GlobalAdmin | GlobalMetrics) {
            "*"
        } else {
            c.tenant
        };
        let refused_credentials: Vec<(&str, Option<String>, u16)> = vec![
            ("no key", None, 401),
            ("malformed", Some("Bearer not-a-key".to_string()), 401),
            ("not bearer", Some(format!("Basic {good}")), 401),
            ("wrong secret", Some(bearer(&wrong_secret)), 401),
            ("expired", Some(bearer(&expired)), 401),
            ("revoked", Some(bearer(&revoked)), 401),
        ];
        let mut runs: Vec<(String, Option<String>, u16)> = Vec::new();
        for (what, auth, status) in refused_credentials {
            let status = if c.need == Public { c.ok } else { status };
            runs.push((what.to_string(), auth, status));
        }
        if c.need != Public {
            for scope in lacking(c.need) {
                runs.push((
                    format!("lacking scope ({scope})"),
                    Some(bearer(&keys[&(right_tenant, *scope)])),
                    403,
                ));
            }
            if c.need == GlobalAdmin || c.need == GlobalMetrics {
                let scope = if c.need == GlobalAdmin {
                    "admin"
                } else {
                    "metrics"
                };
                runs.push((
                    format!("{scope} of one tenant only"),
                    Some(bearer(&keys[&("acme", scope)])),
                    403,
                ));
            }
        }
        runs.push((
            "another tenant's key".into(),
            Some(bearer(&beta_all)),
            c.other_tenant,
        ));
        // Last: the right key (the only run that may change anything).
        let right = match c.need {
            Public => None,
            Scope(s) => Some(bearer(&keys[&(right_tenant, s)])),
            GlobalAdmin => Some(bearer(&keys[&("*", "admin")])),
            GlobalMetrics => Some(bearer(&keys[&("*", "metrics")])),
        };
        runs.push(("the right key".into(), right, c.ok));

        for (what, auth, expected) in runs {
            let (status, body) = api
                .send(c.method.clone(), &c.path, auth.as_deref(), c.body.as_ref())
                .await;
            checked += 1;
            if status != expected {
                failures.push(format!(
                    "{} {} with {what}: {status}, expected {expected}: {}",
                    c.method,
                    c.path,
                    body.chars().take(200).collect::<String>()
                ));
            }
            if status >= 400 {
                let parsed: Result<Value, _> = serde_json::from_str(&body);
                if !parsed.is_ok_and(|v| v["error"]["code"].is_string()) {
                    failures.push(format!(
                        "{} {} with {what}: a {status} without a JSON error body: {body}",
                        c.method, c.path
                    ));
                }
            }
            // Zero cross-tenant answers: nothing of acme reaches beta's key (beyond the id
            // the request itself named, echoed in a 404).
            let leaked = |text: &str| body.contains(text) && !c.path.contains(text);
            if what == "another tenant's key"
                && (leaked("acme-private-actor")
                    || acme_ids.iter().any(|id| leaked(id))
                    || leaked(&to_revoke)
                    || leaked(&to_rotate))
            {
                failures.push(format!(
                    "{} {} answered another tenant's key with acme's data: {body}",
                    c.method, c.path
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Forged ids and leaf indexes: beta's key names acme's records without naming acme.
    let beta = bearer(&beta_all);
    for path in [
        format!("/v1/events/{}", acme_ids[0]),
        format!("/v1/proof/inclusion?id={}", acme_ids[0]),
        format!("/v1/events/{}?tenant=beta", acme_ids[2]),
    ] {
        let (status, body) = api.send(Method::GET, &path, Some(&beta), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("acme-private-actor"), "{path}: {body}");
    }
    // A leaf index means the caller's own tenant: beta's record, never acme's.
    let (status, body) = api
        .send(Method::GET, "/v1/events/0", Some(&beta), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&beta_ids[0]) || body.contains("tally.keys.create"),
        "{body}"
    );
    assert!(!body.contains("acme-private-actor"), "{body}");
    let (status, body) = api
        .send(
            Method::GET,
            "/v1/events?q=acme-private-actor",
            Some(&beta),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("acme-private-actor"), "{body}");

    // The refused requests changed nothing: the victims were touched by the right key only.
    let (_, listed) = api
        .send(Method::GET, "/v1/keys", Some(&bearer(&admin)), None)
        .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let find = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap()
    };
    assert!(find(&to_revoke)["revoked_at"].is_string());
    assert!(find(&to_rotate)["rotated_at"].is_string());
    server.stop().await;
}
