//! Kill -9 during heavy ingest, in a loop: after every restart each acknowledged event is
//! present at the index it was acknowledged with, and at the end `tally verify` passes.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

struct Server {
    child: Child,
    url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(dir: &Path, token_file: &Path) -> Server {
    let port = free_port();
    let mut child = Command::new(TALLY)
        .args(["serve", "--data"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--checkpoint-interval-ms",
            "100",
            "--segment-mib",
            "1",
        ])
        .arg("--admin-token-file")
        .arg(token_file)
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start tally serve");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Server { child, url };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up");
}

fn event_json(id: uuid::Uuid, n: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "time": "2026-03-04T05:06:07.089Z",
        "actor": {"id": format!("user-{}", n % 97), "type": "user", "ip": "198.51.100.7"},
        "action": "record.update",
        "category": "UPDATE",
        "resource": {"type": "ORDER", "id": format!("order-{n}")},
        "outcome": "SUCCESS",
        "before": {"status": "open"},
        "after": {"status": "closed", "note": "x".repeat((n % 300) as usize)},
    })
}

/// Every stored event id with its index, read back through the tile API.
async fn stored_ids(url: &str, token: &str) -> HashMap<uuid::Uuid, u64> {
    let client = reqwest::Client::new();
    let note = client
        .get(format!("{url}/v1/tenants"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let size = note
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "default")
        .map_or(0, |t| t["size"].as_u64().unwrap());
    let mut out = HashMap::new();
    let mut index = 0u64;
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256) as u16;
        let path = tally_tlog::tile::TilePath::entries(n, width)
            .unwrap()
            .to_path();
        let bytes = client
            .get(format!("{url}/logs/default/{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for e in tally_tlog::tile::decode_entry_bundle(&bytes).unwrap() {
            let record = tally_event::Record::parse(e).unwrap();
            assert!(
                out.insert(record.id, index).is_none(),
                "id {} stored twice",
                record.id
            );
            index += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_during_ingest_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token_file = tmp.path().join("token");
    let acked: Arc<Mutex<HashMap<uuid::Uuid, u64>>> = Arc::default();
    let mut seed = 0x2545f4914f6cdd1du64;
    for round in 0..6 {
        let mut server = start(&dir, &token_file).await;
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_string();

        // Everything acknowledged before this start is still there, at the same index.
        let stored = stored_ids(&server.url, &token).await;
        for (id, index) in acked.lock().unwrap().iter() {
            assert_eq!(
                stored.get(id),
                Some(index),
                "round {round}: acknowledged event {id} lost or moved"
            );
        }

        let mut writers = Vec::new();
        for w in 0..4u64 {
            let (url, token, acked) = (server.url.clone(), token.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0u64.. {
                    let size = if w == 0 { 1 } else { 40 };
                    let ids: Vec<uuid::Uuid> = (0..size).map(|_| uuid::Uuid::new_v4()).collect();
                    let body: Vec<_> = ids
                        .iter()
                        .enumerate()
                        .map(|(k, id)| event_json(*id, i * 100 + k as u64))
                        .collect();
                    let Ok(response) = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                    else {
                        return; // the server is gone
                    };
                    if !response.status().is_success() {
                        return;
                    }
                    let Ok(v) = response.json::<serde_json::Value>().await else {
                        return;
                    };
                    let mut acked = acked.lock().unwrap();
                    for (id, e) in ids.iter().zip(v["events"].as_array().unwrap()) {
                        acked.insert(*id, e["index"].as_u64().unwrap());
                    }
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 600)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the load was too light to mean anything ({} events)",
        acked.len()
    );

    // Final start: all acknowledged events present; then a clean stop and a full verify.
    let server = start(&dir, &token_file).await;
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let stored = stored_ids(&server.url, &token).await;
    for (id, index) in &acked {
        assert_eq!(
            stored.get(id),
            Some(index),
            "acknowledged event {id} lost or moved"
        );
    }
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let mut child = server.child;
    assert!(
        child.wait().unwrap().success(),
        "a SIGTERM stop exits cleanly"
    );
    let out = Command::new(TALLY)
        .arg("verify")
        .arg(&dir)
        .arg("--key")
        .arg(dir.join("log.pub"))
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");
}
