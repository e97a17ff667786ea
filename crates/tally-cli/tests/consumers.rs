//! Durable consumers across kill -9: the server is killed during ingest, again and again;
//! after each restart the search index's consumer resumes from its cursor, and in the end
//! every stored event is searchable exactly once (no gap, no repeat). Then the index is
//! deleted and the consumer starts again from zero with the same result.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, Server};
use serde_json::{json, Value};

/// Keeps posting batches until the server goes away; records each acknowledged index.
async fn ingest_until_killed(url: String, token: String, acked: Arc<Mutex<BTreeSet<u64>>>) {
    let client = reqwest::Client::new();
    for i in 0u64.. {
        let body: Vec<Value> = (0..50)
            .map(|k| {
                json!({
                    "time": "2026-11-30T12:00:00Z",
                    "actor": {"id": format!("user-{}", (i * 50 + k) % 97)},
                    "action": "document.read",
                    "outcome": "SUCCESS",
                    "resource": {"type": "document", "id": format!("doc-{i}-{k}")},
                })
            })
            .collect();
        let Ok(response) = client
            .post(format!("{url}/v1/events?tenant=acme"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        else {
            return; // killed
        };
        if response.status().is_client_error() {
            panic!(
                "the test's events were refused: {}",
                response.text().await.unwrap_or_default()
            );
        }
        if !response.status().is_success() {
            return;
        }
        let Ok(v) = response.json::<Value>().await else {
            return;
        };
        let mut acked = acked.lock().unwrap();
        for e in v["events"].as_array().unwrap() {
            acked.insert(e["index"].as_u64().unwrap());
        }
    }
}

async fn health(server: &Server) -> Value {
    reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the search index's consumer reports no lag (a generous limit, not a timing
/// assertion); returns the log size it caught up with.
async fn wait_caught_up(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = health(server).await;
        let c = &h["consumers"]["search-index"];
        if c["lag"] == 0
            && c["state"] == "ok"
            && c["tenants"].as_array().is_some_and(|t| !t.is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "the index never caught up: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every leaf index the search finds in tenant acme, oldest first, across all pages.
async fn searchable(server: &Server) -> Vec<u64> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("tenant", "acme".to_string()),
            ("order", "oldest".to_string()),
            ("limit", "1000".to_string()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: Value = client
            .get(format!("{}/v1/events", server.url))
            .bearer_auth(&server.token)
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for hit in page["events"].as_array().unwrap() {
            out.push(hit["index"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// The index holds each record of the log once: 0, 1, 2, … with no gap and no repeat, and
/// every acknowledged index among them.
fn assert_complete(found: &[u64], acked: &BTreeSet<u64>) {
    let expected: Vec<u64> = (0..found.len() as u64).collect();
    assert!(
        found == expected.as_slice(),
        "the search index has a gap or a repeat: {} hits, first differences at {:?}",
        found.len(),
        found.iter().zip(&expected).find(|(a, b)| a != b)
    );
    let missing: Vec<_> = acked.iter().filter(|i| **i >= found.len() as u64).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not searchable: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_during_ingest_every_consumer_resumes_from_its_cursor_with_no_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3 {
        let mut server = Server::start(&dir);
        let writers: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(ingest_until_killed(
                    server.url.clone(),
                    server.token.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(400 + seed % 600)).await;
        server.child.kill().unwrap(); // SIGKILL: no flush, no final cursor write
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 500,
        "too light a load to mean anything: {}",
        acked.len()
    );

    let server = Server::start(&dir);
    wait_caught_up(&server).await;
    let found = searchable(&server).await;
    assert_complete(&found, &acked);
    let listed = ok(&server.tally(&["consumers"]));
    assert!(
        listed.contains("search-index") && listed.contains("acme"),
        "{listed}"
    );
    server.stop();

    // Offline, the cursor file says where the consumer stands: the whole log.
    let offline = ok(&std::process::Command::new(common::TALLY)
        .args(["consumers", "--json", "--data"])
        .arg(&dir)
        .output()
        .unwrap());
    let reports: Value = serde_json::from_str(&offline).unwrap();
    let index = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "search-index")
        .unwrap_or_else(|| panic!("no search-index cursor: {offline}"));
    let acme = &index["tenants"][0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["lag"], 0, "{offline}");
    assert!(acme["next"].as_u64().unwrap() >= found.len() as u64);

    // A consumer that restarts from zero (a deleted index) converges the same way.
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let server = Server::start(&dir);
    wait_caught_up(&server).await;
    let rebuilt = searchable(&server).await;
    assert!(rebuilt.len() >= found.len());
    assert_complete(&rebuilt, &acked);
    server.stop();
}
