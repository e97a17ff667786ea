//! The auditors are audited, over real HTTP: refused logins (401) and refused authorisations
//! (403) become audit events (client IP, user agent, key id when known), in the key's tenant's
//! log when the key is known and in the system tenant's otherwise, aggregated so that a flood
//! is a few events whose counts add up to every refusal.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::Client;
use serde_json::{json, Value};
use tally_server::aggregate::AggregateSettings;
use tally_server::ServerSettings;

async fn events_of(http: &Client, base: &str, admin: &str, tenant: &str) -> Vec<Value> {
    let list: Value = http
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let size = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tenant)
        .map_or(0, |t| t["size"].as_u64().unwrap());
    let mut out = Vec::new();
    for i in 0..size {
        let event: Value = http
            .get(format!("{base}/v1/events/{i}?tenant={tenant}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push(event);
    }
    out
}

fn total(events: &[Value], action: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["metadata"]["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn fifty_refused_logins_and_125_refused_authorisations_are_on_the_record_in_few_events() {
    let window = Duration::from_millis(500);
    let server = TestServer::start(ServerSettings {
        aggregate: AggregateSettings {
            window,
            max_groups: 200,
        },
        ..ServerSettings::default()
    })
    .await;
    let base = server.running.url.clone();
    let http = Client::builder().user_agent("brute/1.0").build().unwrap();
    let admin = server.admin.clone();
    let created: Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "reader", "scopes": ["read"], "tenant": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = created["token"].as_str().unwrap().to_string();
    let reader_id = created["key"]["id"].as_str().unwrap().to_string();

    // 50 refused logins: 30 with made-up tokens, 20 with the admin key's id and a wrong secret.
    let admin_id = admin.split('_').nth(1).unwrap().to_string();
    for i in 0..50 {
        let token = if i < 30 {
            format!("tly_{i:012}_guess")
        } else {
            format!("tly_{admin_id}_wrong-secret-{i}")
        };
        let status = http
            .get(format!("{base}/v1/events?tenant=acme"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    // 125 refused authorisations: acme's reader tries to ingest and to manage keys.
    for i in 0..125 {
        let request = if i % 2 == 0 {
            http.post(format!("{base}/v1/events")).json(
                &json!({"time": "2026-11-30T10:00:00Z", "action": "x", "outcome": "SUCCESS",
                              "actor": {"id": "a"}}),
            )
        } else {
            http.get(format!("{base}/v1/keys"))
        };
        let status = request.bearer_auth(&reader).send().await.unwrap().status();
        assert_eq!(status, 403);
    }
    // The windows close and their counts are written.
    tokio::time::sleep(window * 4).await;

    let system = events_of(&http, &base, &admin, "tally-system").await;
    let acme = events_of(&http, &base, &admin, "acme").await;
    assert_eq!(total(&system, "tally.auth.failed"), 50, "{system:#?}");
    assert_eq!(total(&acme, "tally.auth.denied"), 125, "{acme:#?}");
    // Far fewer events than refusals: one per group when it opens, one per group and window
    // for the rest (groups: unknown keys from this address, the admin key, and the reader's
    // two requests).
    let failed: Vec<&Value> = system
        .iter()
        .filter(|e| e["action"] == "tally.auth.failed")
        .collect();
    let denied: Vec<&Value> = acme
        .iter()
        .filter(|e| e["action"] == "tally.auth.denied")
        .collect();
    assert!(
        failed.len() < 50 / 4 && denied.len() < 125 / 4,
        "{} and {} events",
        failed.len(),
        denied.len()
    );
    for e in failed.iter().chain(&denied) {
        assert_eq!(e["actor"]["ip"], "127.0.0.1", "{e}");
        assert_eq!(e["actor"]["user_agent"], "brute/1.0", "{e}");
    }
    // Known keys are named; made-up ids are not (they are anyone's).
    assert!(failed
        .iter()
        .any(|e| e["actor"]["id"] == format!("api-key:{admin_id}")
            && e["outcome"] == "UNAUTHORIZED"
            && e["category"] == "LOGIN"));
    assert!(failed
        .iter()
        .any(|e| e["actor"]["id"] == "unauthenticated" && e["metadata"]["key_id"].is_null()));
    assert!(denied
        .iter()
        .all(|e| e["actor"]["id"] == format!("api-key:{reader_id}")
            && e["outcome"] == "DENIED"
            && e["category"] == "AUTHZ"));
    let requests: std::collections::BTreeSet<&str> = denied
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        requests.into_iter().collect::<Vec<_>>(),
        ["GET /v1/keys", "POST /v1/events"]
    );
    // Nothing of the request's query (search terms) is kept.
    assert!(failed
        .iter()
        .all(|e| e["resource"]["id"] == "GET /v1/events"));
    // And in the metrics.
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tally_http_denials_total{status=\"401\"} 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tally_http_denials_total{status=\"403\"} 125"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn reads_of_single_records_are_on_the_record_aggregated_and_tree_reads_are_not() {
    let window = Duration::from_millis(500);
    let server = TestServer::start(ServerSettings {
        aggregate: AggregateSettings {
            window,
            max_groups: 200,
        },
        record_key_reads: true,
        ..ServerSettings::default()
    })
    .await;
    let base = server.running.url.clone();
    let http = Client::new();
    let admin = server.admin.clone();
    let ids: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"id": id, "time": "2026-11-30T10:00:00Z", "tenant": "acme",
                         "action": "patient.read", "outcome": "SUCCESS", "actor": {"id": "dr-a"}})
        })
        .collect();
    let stored: Value = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .json(&events)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let indexes: Vec<u64> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let created: Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "reader", "scopes": ["read"], "tenant": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = created["token"].as_str().unwrap().to_string();
    let reader_id = created["key"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await; // a checkpoint covers them
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(&reader);
        async move {
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 200, "{path}");
        }
    };
    for id in &ids {
        get(format!("/v1/events/{id}?tenant=acme")).await;
    }
    get(format!("/v1/proof/inclusion?tenant=acme&id={}", ids[3])).await;
    get("/logs/acme/tile/entries/000.p/5".into()).await;
    // Tree reads, not recorded.
    get("/logs/acme/checkpoint".into()).await;
    get("/logs/acme/tile/0/000.p/5".into()).await;
    get("/v1/proof/inclusion?tenant=acme&index=1".into()).await;
    tokio::time::sleep(window * 4).await;

    let acme = events_of(&http, &base, &admin, "acme").await;
    let of =
        |action: &str| -> Vec<&Value> { acme.iter().filter(|e| e["action"] == action).collect() };
    let gets = of("tally.events.get");
    assert_eq!(total(&acme, "tally.events.get"), 10, "{gets:#?}");
    assert!(gets.len() <= 4, "aggregated: {} events", gets.len());
    let mut read: Vec<u64> = gets
        .iter()
        .flat_map(|e| e["metadata"]["indexes"].as_array().unwrap().iter())
        .map(|i| i.as_u64().unwrap())
        .collect();
    read.sort_unstable();
    assert_eq!(read, indexes, "every index read is named");
    for e in &gets {
        assert_eq!(e["actor"]["id"], format!("api-key:{reader_id}"));
        assert_eq!(e["actor"]["ip"], "127.0.0.1");
        assert_eq!(e["category"], "READ");
    }
    assert_eq!(total(&acme, "tally.proofs.inclusion_by_id"), 1);
    assert_eq!(total(&acme, "tally.tiles.entries"), 1);
    let recorded: std::collections::BTreeSet<&str> = acme
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("tally."))
        .collect();
    assert_eq!(
        recorded.into_iter().collect::<Vec<_>>(),
        [
            "tally.events.get",
            "tally.keys.create",
            "tally.proofs.inclusion_by_id",
            "tally.tiles.entries"
        ],
        "checkpoints, hash tiles and proofs by index are not recorded"
    );
    server.stop().await;
}
