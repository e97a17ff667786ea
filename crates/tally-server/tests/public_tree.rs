//! `ServerSettings::public_tree` over real HTTP: the Merkle tree (checkpoints, hash tiles,
//! proofs by index) answers without an API key, and nothing that reveals records does.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_server::auth::{KeyStore, Scope};
use tally_server::ServerSettings;
use tally_store::{Log, LogConfig};
use tally_tlog::{Checkpoint, Hash, NoteVerifier};

struct Server {
    base: String,
    admin: String,
    keys: Arc<KeyStore>,
    http: reqwest::Client,
    log: Log,
    _running: Running,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.log.shutdown();
    }
}

async fn start(public_tree: bool) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(AppSettings {
        log: LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..LogConfig::default()
        },
        http: ServerSettings {
            public_tree,
            ..ServerSettings::default()
        },
        index: None,
        admin: AdminKey::Create("admin".into()),
        ..AppSettings::new(tmp.path().join("data"))
    })
    .await
    .unwrap();
    let running = app.spawn("127.0.0.1:0").await.unwrap();
    Server {
        base: running.url.clone(),
        admin: running.admin_token.clone().unwrap(),
        keys: running.keys.clone(),
        http: reqwest::Client::new(),
        log: running.log.clone(),
        _running: running,
        _tmp: tmp,
    }
}

impl Server {
    async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    async fn ingest(&self, tenant: &str, count: usize) {
        let events: Vec<Value> = (0..count)
            .map(|n| {
                json!({
                    "tenant": tenant,
                    "id": uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + n as u128).to_string(),
                    "time": "2026-01-02T03:04:05Z",
                    "actor": {"id": format!("user-{n}")},
                    "action": "user.login",
                    "outcome": "SUCCESS",
                })
            })
            .collect();
        let resp = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.admin)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "ingest: {}", resp.status());
    }

    async fn wait_checkpoint(&self, tenant: &str, size: u64) {
        let key = self.log.verifier().clone();
        for _ in 0..500 {
            let (status, body) = self
                .get(
                    Some(&self.admin),
                    &format!("/v1/checkpoint?tenant={tenant}"),
                )
                .await;
            if status == StatusCode::OK && checkpoint(&body, &key).size == size {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no checkpoint of size {size}");
    }
}

fn checkpoint(note: &[u8], key: &NoteVerifier) -> Checkpoint {
    let note = std::str::from_utf8(note).unwrap();
    let text = tally_tlog::note::open(note, std::slice::from_ref(key))
        .unwrap()
        .text;
    Checkpoint::parse(&text).unwrap()
}

fn hash(b64: &Value) -> Hash {
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

const ID: &str = "01920000-0000-7000-8000-000000000003";

/// What anyone may read with `public_tree`: the tree, never a record.
const PUBLIC: &[&str] = &[
    "/v1/checkpoint?tenant=acme",
    "/v1/checkpoint",
    "/logs/acme/checkpoint",
    "/checkpoint",
    "/logs/acme/tile/0/000",
    "/logs/acme/tile/0/001.p/44",
    "/logs/acme/tile/1/000.p/1",
    "/tile/0/000.p/5",
    "/v1/proof/inclusion?tenant=acme&index=7",
    "/v1/proof/inclusion?index=2",
    "/v1/proof/consistency?tenant=acme&from=10",
    "/v1/proof/consistency?tenant=acme&from=10&to=200",
];

/// What still needs a key.
const PROTECTED: &[&str] = &[
    "/logs/acme/tile/entries/000",
    "/logs/acme/tile/entries/001.p/44",
    "/tile/entries/000.p/5",
    "/v1/events/3?tenant=acme",
    "/v1/events?tenant=acme&q=actor:user-3",
    "/v1/events/stream?tenant=acme",
    "/v1/stats?tenant=acme",
    "/v1/export?tenant=acme",
    "/v1/tenants",
    "/v1/keys",
];

#[tokio::test]
async fn issue_7_the_public_tree_needs_no_key_and_records_stay_protected() {
    let srv = start(true).await;
    srv.ingest("acme", 300).await;
    srv.ingest("default", 5).await;
    srv.wait_checkpoint("acme", 300).await;
    srv.wait_checkpoint("default", 5).await;
    let key = srv.log.verifier().clone();

    for path in PUBLIC {
        let (status, body) = srv.get(None, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Anonymous answers are the real, verifiable tree.
    let (_, note) = srv.get(None, "/logs/acme/checkpoint").await;
    let cp = checkpoint(&note, &key);
    assert_eq!((cp.origin.as_str(), cp.size), ("tally.localhost/acme", 300));
    let (_, body) = srv
        .get(None, "/v1/proof/inclusion?tenant=acme&index=7")
        .await;
    let proof: Value = serde_json::from_slice(&body).unwrap();
    let path: Vec<Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    tally_tlog::verify_inclusion(&hash(&proof["leaf_hash"]), 7, 300, &path, &cp.root)
        .expect("inclusion proof verifies");
    let (_, tile) = srv.get(None, "/logs/acme/tile/0/000").await;
    let (_, admin_tile) = srv.get(Some(&srv.admin), "/logs/acme/tile/0/000").await;
    assert_eq!(tile.len(), 256 * 32);
    assert_eq!(tile, admin_tile);
    let (status, text) = srv.get(None, "/v1/log-key").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(text).unwrap().trim(), key.to_vkey());

    for path in PROTECTED {
        let (status, body) = srv.get(None, path).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Looking an event up by id says whether it exists: not public.
    let (status, body) = srv
        .get(None, &format!("/v1/proof/inclusion?tenant=acme&id={ID}"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("by event id"),
        "{error}"
    );
    let (status, _) = srv
        .get(
            Some(&srv.admin),
            &format!("/v1/proof/inclusion?tenant=acme&id={ID}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Writing needs a key too.
    let resp = srv
        .http
        .post(format!("{}/v1/events", srv.base))
        .json(&json!({"action": "x", "actor": {"id": "a"}, "outcome": "SUCCESS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A key that is sent is still checked, and keeps its confinement.
    let (status, _) = srv
        .get(Some("tly_nope_nope"), "/logs/acme/checkpoint")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, other) = srv
        .keys
        .create("other-reader", vec![Scope::Read], "other")
        .unwrap();
    let (status, _) = srv.get(Some(&other), "/logs/acme/checkpoint").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, ingest) = srv.keys.create("ingest", vec![Scope::Ingest], "*").unwrap();
    let (status, _) = srv.get(Some(&ingest), "/logs/acme/tile/0/000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Malformed tenants are a 400 for anyone, unknown ones a 404.
    let (status, _) = srv.get(None, "/v1/checkpoint?tenant=Bad!").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = srv.get(None, "/logs/nobody/checkpoint").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_the_option_the_tree_needs_a_key() {
    let srv = start(false).await;
    srv.ingest("acme", 300).await;
    srv.ingest("default", 5).await;
    srv.wait_checkpoint("acme", 300).await;
    srv.wait_checkpoint("default", 5).await;
    for path in PUBLIC.iter().chain(PROTECTED) {
        let (status, body) = srv.get(None, path).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // With a key, the tree answers as before.
    for path in PUBLIC {
        let (status, body) = srv.get(Some(&srv.admin), path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path} with a key: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // The public key is public either way: it verifies, it grants nothing.
    let (status, _) = srv.get(None, "/v1/log-key").await;
    assert_eq!(status, StatusCode::OK);
}
