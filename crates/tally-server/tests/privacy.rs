//! Personal data end to end, over HTTP: sealing at ingest, masking for readers without
//! `read:pii`, searching by masking token, legal holds, and erasure of one person on a log of
//! thousands of events, after which no file of the data directory holds that person's values
//! while every proof, every saved checkpoint and the verifier still pass.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::TestServer;
use serde_json::{json, Value};
use tally_server::ServerSettings;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// People with identifiers that occur nowhere else (so a byte search finds only them).
const PEOPLE: [&str; 4] = ["alice-q7x2", "bob-k3m9", "carol-p5v1", "dave-w8n4"];

fn email(person: &str) -> String {
    format!("{person}@mail.example")
}

fn ip(p: usize) -> String {
    format!("198.51.{}.{}", 100 + p, 7 + p)
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .query(query);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    async fn json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, bytes) = self.send(method, token, path, query, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, token: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.json(reqwest::Method::GET, token, path, query, None)
            .await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.json(reqwest::Method::POST, token, path, &[], Some(body))
            .await
    }

    /// Leaf indexes matching `q` in acme (the server's own events left out).
    async fn search(&self, token: &str, q: &str) -> Vec<u64> {
        let q = format!("{q} -action:tally.*");
        let (status, v) = self
            .get(
                token,
                "/v1/events",
                &[("tenant", "acme"), ("q", &q), ("limit", "1000")],
            )
            .await;
        assert_eq!(status, 200, "{q}: {v}");
        let mut out: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        out.sort_unstable();
        out
    }

    /// The latest signed checkpoint of acme: size and root.
    async fn checkpoint(&self, token: &str) -> (u64, tally_tlog::Hash) {
        let (status, note) = self
            .send(
                reqwest::Method::GET,
                token,
                "/v1/checkpoint",
                &[("tenant", "acme")],
                None,
            )
            .await;
        assert_eq!(status, 200);
        let note = String::from_utf8(note).unwrap();
        let mut lines = note.lines().skip(1);
        let size = lines.next().unwrap().parse().unwrap();
        let root = B64
            .decode(lines.next().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        (size, root)
    }

    async fn settle(&self, token: &str, size: u64) {
        for _ in 0..1000 {
            let (_, v) = self.get(token, "/v1/stats", &[("tenant", "acme")]).await;
            if v["total"].as_u64() >= Some(size) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the index did not catch up with {size} events");
    }
}

/// Every file under `dir` holding `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(path.display().to_string());
                }
            }
        }
    }
    out
}

fn leaf_hash(bytes: &[u8]) -> tally_tlog::Hash {
    tally_tlog::leaf_hash(bytes)
}

fn hashes(v: &Value) -> Vec<tally_tlog::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

#[tokio::test]
async fn erasing_a_person_keeps_every_proof_and_leaves_no_trace() {
    let server = TestServer::start_app(ServerSettings::default(), true).await;
    let data = server.running.log.data_dir().root().to_path_buf();
    let c = Client {
        http: reqwest::Client::new(),
        url: server.running.url.clone(),
    };
    let admin = server.admin.clone();

    // A reader without read:pii, and the tenant's policy: e-mail addresses in snapshots are
    // personal, each its own subject.
    let (status, v) = c
        .post(
            &admin,
            "/v1/keys",
            json!({"name": "auditor", "scopes": ["read"], "tenant": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let reader = v["token"].as_str().unwrap().to_string();
    let (status, v) = c.post(&admin, "/v1/tenants", json!({"name": "acme"})).await;
    assert!([200, 201, 409].contains(&status), "{v}");
    let (status, v) = c
        .json(
            reqwest::Method::PUT,
            &admin,
            "/v1/tenants/acme/policy",
            &[],
            Some(json!({"personal_paths": [
                {"path": "after.email", "subject": "value"},
                {"path": "before.email", "subject": "value"},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["defaults"]
        .as_array()
        .unwrap()
        .contains(&json!("actor.ip")));
    // A bad policy is refused whole, each broken rule named.
    let (status, v) = c
        .json(
            reqwest::Method::PUT,
            &admin,
            "/v1/tenants/acme/policy",
            &[],
            Some(json!({"personal_paths": [{"path": "actor.email"}, {"path": "after.e*"}]})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_policy");
    assert_eq!(v["error"]["details"].as_array().unwrap().len(), 2, "{v}");

    // Thousands of events about four people: what they did, and what was done to them.
    let mut expected_about = [0u64; 4];
    let total = 2400u64;
    for batch in 0..12 {
        let events: Vec<Value> = (0..200u64)
            .map(|j| {
                let n = batch * 200 + j;
                let actor = (n % 4) as usize;
                let subject = ((n / 4) % 4) as usize;
                expected_about[actor] += 1;
                if subject != actor {
                    expected_about[subject] += 1;
                }
                json!({
                    "time": "2026-11-30T10:00:00Z",
                    "actor": {"id": PEOPLE[actor], "type": "user", "ip": ip(actor),
                              "user_agent": "Mozilla/5.0"},
                    "action": "user.update",
                    "resource": {"type": "USER", "id": PEOPLE[subject]},
                    "outcome": "SUCCESS",
                    "before": {"email": email(PEOPLE[subject]), "plan": "basic"},
                    "after": {"email": email(PEOPLE[subject]), "plan": "pro"},
                })
            })
            .collect();
        let (status, v) = c
            .json(
                reqwest::Method::POST,
                &admin,
                "/v1/events",
                &[("tenant", "acme")],
                Some(Value::Array(events)),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    c.settle(&admin, total).await;

    // The log holds no personal value in the clear.
    let alice = PEOPLE[0];
    assert!(
        files_containing(&data.join("tenants"), alice.as_bytes()).is_empty(),
        "segments hold sealed values only"
    );

    // A masked reader sees tokens, never values, and finds by value or token alike.
    let first_alice = c.search(&admin, &format!("actor:{alice}")).await[0];
    let first_path = format!("/v1/events/{first_alice}");
    let (status, masked) = c
        .send(
            reqwest::Method::GET,
            &reader,
            &first_path,
            &[("tenant", "acme")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let masked: Value = serde_json::from_slice(&masked).unwrap();
    let token = masked["actor"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("tally:pii:"), "{masked}");
    assert!(masked["actor"]["ip"]
        .as_str()
        .unwrap()
        .starts_with("tally:pii:"));
    assert!(masked["after"]["email"]
        .as_str()
        .unwrap()
        .starts_with("tally:pii:"));
    assert_eq!(
        masked["after"]["plan"], "pro",
        "what is not personal stays readable"
    );
    let (_, clear) = c.get(&admin, &first_path, &[("tenant", "acme")]).await;
    assert_eq!(clear["actor"]["id"], alice);
    assert_eq!(clear["after"]["email"], email(PEOPLE[0]));
    let by_value = c.search(&reader, &format!("actor:{alice}")).await;
    let by_token = c.search(&reader, &format!("actor:{token}")).await;
    assert_eq!(by_value.len() as u64, total / 4);
    assert_eq!(by_value, by_token);
    assert_eq!(c.search(&admin, &format!("actor:{token}")).await, by_value);
    let (status, v) = c
        .get(
            &reader,
            "/v1/events",
            &[("tenant", "acme"), ("q", "actor:alice*")],
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "personal_data");
    let (status, v) = c
        .get(
            &reader,
            "/v1/stats",
            &[
                ("tenant", "acme"),
                ("by", "actor.id"),
                ("q", "-action:tally.*"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let keys: Vec<&str> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&token.as_str()), "{v}");
    assert!(keys.iter().all(|k| k.starts_with("tally:pii:")), "{v}");
    let masked_page = c
        .send(
            reqwest::Method::GET,
            &reader,
            "/v1/events",
            &[("tenant", "acme"), ("limit", "1000")],
            None,
        )
        .await
        .1;
    for person in PEOPLE {
        assert!(
            !masked_page
                .windows(person.len())
                .any(|w| w == person.as_bytes()),
            "a masked page names {person}"
        );
    }

    // Proofs of alice's records and a checkpoint, saved before the erasure.
    let (saved_size, saved_root) = c.checkpoint(&admin).await;
    let mut saved = Vec::new();
    for &i in by_value.iter().take(20) {
        let (_, leaf) = c
            .send(
                reqwest::Method::GET,
                &admin,
                &format!("/v1/events/{i}"),
                &[("tenant", "acme"), ("form", "leaf")],
                None,
            )
            .await;
        let size = saved_size.to_string();
        let idx = i.to_string();
        let (status, proof) = c
            .get(
                &admin,
                "/v1/proof/inclusion",
                &[("tenant", "acme"), ("index", &idx), ("size", &size)],
            )
            .await;
        assert_eq!(status, 200, "{proof}");
        saved.push((i, leaf, hashes(&proof["proof"])));
    }

    // A legal hold on alice blocks her erasure, and is on the record; released, it does not.
    let erase_alice = json!({"subjects": [alice, email(alice)], "reason": "request 2026-0042"});
    let (status, v) = c
        .post(
            &admin,
            "/v1/tenants/acme/holds",
            json!({"subject": alice, "reason": "matter 17"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["subject_holds"], 1);
    let (status, v) = c
        .post(&admin, "/v1/tenants/acme/erasures", erase_alice.clone())
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "legal_hold");
    let (status, v) = c
        .post(
            &admin,
            "/v1/tenants/acme/holds/release",
            json!({"subject": alice}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["subject_holds"], 0);
    // A reader may not erase.
    let (status, _) = c
        .post(&reader, "/v1/tenants/acme/erasures", erase_alice.clone())
        .await;
    assert_eq!(status, 403);

    let (status, v) = c
        .post(&admin, "/v1/tenants/acme/erasures", erase_alice)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["erased_subjects"], 2, "{v}");
    assert!(
        v["records"].as_u64().unwrap() >= expected_about[0],
        "{v}: {} records are about alice",
        expected_about[0]
    );

    // Nothing in the data directory holds her values, clear or in the forms the index keeps.
    let alice_tokens = [
        token.clone(),
        masked["after"]["email"].as_str().unwrap().to_string(),
    ];
    for needle in [alice.to_string(), email(alice), ip(0)]
        .into_iter()
        .chain(alice_tokens.iter().cloned())
    {
        let found = files_containing(&data, needle.as_bytes());
        assert!(found.is_empty(), "{needle} is still in {found:?}");
    }
    // Searching for her finds nothing, by value or token.
    assert!(c.search(&admin, &format!("actor:{alice}")).await.is_empty());
    assert!(c
        .search(&reader, &format!("actor:{token}"))
        .await
        .is_empty());
    // Her records stay, showing the values as erased; the others' are intact.
    let (_, first) = c.get(&admin, &first_path, &[("tenant", "acme")]).await;
    assert_eq!(first["actor"]["id"], "tally:erased");
    assert_eq!(first["after"]["plan"], "pro");
    for (p, person) in PEOPLE.iter().enumerate().skip(1) {
        let found = c.search(&admin, &format!("actor:{person}")).await;
        assert_eq!(found.len() as u64, total / 4, "{person}");
        let (_, e) = c
            .get(
                &admin,
                &format!("/v1/events/{}", found[0]),
                &[("tenant", "acme")],
            )
            .await;
        assert_eq!(e["actor"]["id"], *person);
        assert_eq!(e["actor"]["ip"], ip(p));
    }

    // Every proof saved before still verifies against the saved checkpoint, over the same
    // leaf bytes the server serves now.
    for (i, leaf, proof) in &saved {
        let (_, now) = c
            .send(
                reqwest::Method::GET,
                &admin,
                &format!("/v1/events/{i}"),
                &[("tenant", "acme"), ("form", "leaf")],
                None,
            )
            .await;
        assert_eq!(&now, leaf, "the hashed record of {i} is unchanged");
        tally_tlog::verify_inclusion(&leaf_hash(leaf), *i, saved_size, proof, &saved_root).unwrap();
    }
    // The log grows on; a consistency proof from the saved checkpoint to a newer one verifies.
    let (status, _) = c
        .json(
            reqwest::Method::POST,
            &admin,
            "/v1/events",
            &[("tenant", "acme")],
            Some(
                json!({"time": "2026-11-30T11:00:00Z", "actor": {"id": "erin-z1"},
                        "action": "user.login", "outcome": "SUCCESS"}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let mut newer = None;
    for _ in 0..200 {
        let (size, root) = c.checkpoint(&admin).await;
        if size > saved_size {
            newer = Some((size, root));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (new_size, new_root) = newer.expect("a newer checkpoint");
    let (status, proof) = c
        .get(
            &admin,
            "/v1/proof/consistency",
            &[
                ("tenant", "acme"),
                ("from", &saved_size.to_string()),
                ("to", &new_size.to_string()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    tally_tlog::verify_consistency(
        saved_size,
        new_size,
        &hashes(&proof["proof"]),
        &saved_root,
        &new_root,
    )
    .unwrap();

    // The erasure is on the record: who, why, how many; never whom.
    let (_, v) = c
        .get(
            &admin,
            "/v1/events",
            &[("tenant", "acme"), ("q", "action:tally.subjects.erase")],
        )
        .await;
    let erasure = &v["events"][0]["record"];
    assert_eq!(erasure["metadata"]["reason"], "request 2026-0042");
    assert_eq!(erasure["metadata"]["erased_subjects"], 2);
    assert!(!erasure.to_string().contains(alice));

    // The verifier passes, with the public key only.
    let TestServer { running, _tmp, .. } = server;
    tokio::time::timeout(Duration::from_secs(30), running.stop())
        .await
        .expect("stops");
    let dir = tally_store::DataDir::open_existing(&data).unwrap();
    let verifier = tally_tlog::note::NoteVerifier::parse_vkey(
        std::fs::read_to_string(dir.verifier_key_path())
            .unwrap()
            .trim(),
    )
    .unwrap();
    tally_store::verify::verify_tenant(&dir, "acme", &verifier, &[], &mut |_| {}).unwrap();
}

#[tokio::test]
async fn secrets_are_refused_or_redacted_as_the_tenant_says() {
    let server = TestServer::start(ServerSettings::default()).await;
    let c = Client {
        http: reqwest::Client::new(),
        url: server.running.url.clone(),
    };
    let admin = server.admin.clone();
    let (status, v) = c.post(&admin, "/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{v}");
    let event = json!({
        "time": "2026-11-30T10:00:00Z", "actor": {"id": "svc-1", "type": "service"},
        "action": "user.update", "outcome": "SUCCESS",
        "after": {"password": "hunter2", "plan": "pro"},
        "metadata": {"note": "paid with 4111 1111 1111 1111"},
    });
    let (status, v) = c
        .json(
            reqwest::Method::POST,
            &admin,
            "/v1/events",
            &[("tenant", "acme")],
            Some(event.clone()),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let fields: Vec<&str> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["after.password", "metadata.note"], "{v}");
    assert!(v["error"]["details"][0]["rule"]
        .as_str()
        .unwrap()
        .contains("never stored"));

    let (status, v) = c
        .json(
            reqwest::Method::PUT,
            &admin,
            "/v1/tenants/acme/policy",
            &[],
            Some(json!({"secrets": "redact"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["secrets"], "redact");
    let (status, v) = c
        .json(
            reqwest::Method::POST,
            &admin,
            "/v1/events",
            &[("tenant", "acme")],
            Some(event),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let index = v["events"][0]["index"].as_u64().unwrap();
    let (_, stored) = c
        .send(
            reqwest::Method::GET,
            &admin,
            &format!("/v1/events/{index}"),
            &[("tenant", "acme"), ("form", "leaf")],
            None,
        )
        .await;
    let text = String::from_utf8(stored).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("4111"),
        "{text}"
    );
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["after"]["password"], "[redacted]");
    assert_eq!(e["after"]["plan"], "pro");
    assert_eq!(
        e["metadata"]["redacted"],
        json!(["after.password", "metadata.note"])
    );
    server.stop().await;
}

/// Copies a directory tree (the search index, as a backup would).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "owner.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn start_on(data: &Path) -> tally_server::app::Running {
    let app = tally_server::app::App::start(tally_server::app::AppSettings {
        log: tally_store::LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..Default::default()
        },
        admin: tally_server::app::AdminKey::None,
        ..tally_server::app::AppSettings::new(data)
    })
    .await
    .expect("start tally");
    app.spawn("127.0.0.1:0").await.expect("serve")
}

/// A crash between destroying a subject's key and rewriting the search index (here: the
/// index put back as it was before the erasure, with the key's id still on the pending list)
/// is finished at the next start: the index forgets the values, and no file keeps them.
#[tokio::test]
async fn an_index_erasure_cut_short_is_finished_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let token_file = tmp.path().join("admin.token");
    let app = tally_server::app::App::start(tally_server::app::AppSettings {
        log: tally_store::LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..Default::default()
        },
        admin: tally_server::app::AdminKey::OnFirstStart {
            token_file: Some(token_file.clone()),
        },
        ..tally_server::app::AppSettings::new(&data)
    })
    .await
    .unwrap();
    let admin = app.admin_token().unwrap().to_string();
    let running = app.spawn("127.0.0.1:0").await.unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        url: running.url.clone(),
    };
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"time": "2026-11-30T10:00:00Z", "tenant": "acme",
                   "actor": {"id": if i % 2 == 0 { "wanda-9qx" } else { "otto-3jd" }},
                   "action": "document.read", "outcome": "SUCCESS"})
        })
        .collect();
    let (status, v) = c.post(&admin, "/v1/events", json!(events)).await;
    assert_eq!(status, 200, "{v}");
    c.settle(&admin, 40).await;
    assert_eq!(c.search(&admin, "actor:wanda-9qx").await.len(), 20);
    running.stop().await;
    let before = tmp.path().join("index-before");
    copy_tree(&data.join("index"), &before);
    assert!(!files_containing(&before, b"wanda-9qx").is_empty());

    let running = start_on(&data).await;
    let c = Client {
        http: reqwest::Client::new(),
        url: running.url.clone(),
    };
    let (status, v) = c
        .post(
            &admin,
            "/v1/tenants/acme/erasures",
            json!({"subjects": ["wanda-9qx"], "reason": "request 9"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["search_index_pending"], 0);
    running.stop().await;
    let pending = data.join("privacy/acme/index-erasures");
    assert!(
        !pending.exists(),
        "nothing is pending after a complete erasure"
    );
    // The key id the erasure destroyed, from its record in the log.
    let erased_key = {
        let reader = tally_store::LogReader::open(&data).unwrap();
        let tlog = reader.tenant("acme").unwrap().unwrap();
        use tally_store::TenantRecords;
        let records = tlog.records(0, tlog.size()).unwrap();
        let erasure = records
            .iter()
            .map(|r| serde_json::from_slice::<Value>(r).unwrap())
            .find(|r| r["action"] == "tally.subjects.erase")
            .expect("the erasure is recorded");
        erasure["metadata"]["erased_keys"][0]
            .as_str()
            .unwrap()
            .to_string()
    };

    // As if the server had died right after destroying the key.
    std::fs::remove_dir_all(data.join("index")).unwrap();
    copy_tree(&before, &data.join("index"));
    std::fs::write(&pending, format!("{erased_key}\n")).unwrap();
    assert!(!files_containing(&data.join("index"), b"wanda-9qx").is_empty());

    let running = start_on(&data).await;
    let c = Client {
        http: reqwest::Client::new(),
        url: running.url.clone(),
    };
    assert!(!pending.exists(), "the pending erasure was carried out");
    let (status, health) = c.get(&admin, "/healthz", &[]).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["erasures"]["index_erasures_pending"], 0, "{health}");
    assert_eq!(c.search(&admin, "actor:wanda-9qx").await, Vec::<u64>::new());
    assert_eq!(c.search(&admin, "actor:otto-3jd").await.len(), 20);
    running.stop().await;
    assert_eq!(files_containing(&data, b"wanda-9qx"), Vec::<String>::new());
}

/// Records stored with their personal values in the clear (by a server that does not seal, or
/// before sealing began) never reach a masked reader in their hashed form: not by
/// `form=leaf`, not in a search hit's `leaf`, not in an entry bundle, not in an export.
#[tokio::test]
async fn masked_readers_never_get_the_hashed_form_of_clear_records() {
    let server = TestServer::start_app(
        ServerSettings {
            seal_personal_data: false,
            ..ServerSettings::default()
        },
        true,
    )
    .await;
    let c = Client {
        http: reqwest::Client::new(),
        url: server.running.url.clone(),
    };
    let admin = server.admin.clone();
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({"time": "2026-11-30T10:00:00Z", "tenant": "acme",
                   "actor": {"id": format!("yuki-{i}kz"), "ip": "198.51.100.9"},
                   "action": "document.read", "outcome": "SUCCESS"})
        })
        .collect();
    let (status, v) = c.post(&admin, "/v1/events", json!(events)).await;
    assert_eq!(status, 200, "{v}");
    c.settle(&admin, 3).await;
    let (status, v) = c
        .post(
            &admin,
            "/v1/keys",
            json!({"name": "masked", "scopes": ["read", "export"], "tenant": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let masked = v["token"].as_str().unwrap().to_string();
    let leaks = |body: &[u8]| body.windows(5).any(|w| w == b"yuki-");

    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &masked,
            "/v1/events/0",
            &[("tenant", "acme"), ("form", "leaf")],
            None,
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("read:pii"));
    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &masked,
            "/v1/events/0",
            &[("tenant", "acme")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!leaks(&body), "{}", String::from_utf8_lossy(&body));
    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &admin,
            "/v1/events/0",
            &[("tenant", "acme"), ("form", "leaf")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(leaks(&body));

    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &masked,
            "/v1/events",
            &[
                ("tenant", "acme"),
                ("q", "action:document.read"),
                ("proofs", "true"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_slice(&body).unwrap();
    let hits = page["events"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits
        .iter()
        .all(|h| h["proof"].is_array() && h["leaf"].is_null()));
    assert!(!leaks(&body));

    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &masked,
            "/logs/acme/tile/entries/000.p/3",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(!leaks(&body));
    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &admin,
            "/logs/acme/tile/entries/000.p/3",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(leaks(&body));

    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &masked,
            "/v1/export",
            &[("tenant", "acme"), ("q", "action:document.read")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("tally_export_error") && text.contains("read:pii"),
        "{text}"
    );
    assert!(!leaks(&body), "{text}");
    let (status, body) = c
        .send(
            reqwest::Method::GET,
            &admin,
            "/v1/export",
            &[("tenant", "acme"), ("q", "action:document.read")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("tally_export_end") && leaks(&body), "{text}");

    // Without a key-encryption key there is no data key to show or rotate.
    let (status, v) = c.get(&admin, "/v1/tenants/acme/data-keys", &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["encryption"], false);
    let (status, v) = c
        .post(&admin, "/v1/tenants/acme/data-keys/rotate", json!({}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "encryption_off", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--kek-file"));
    server.stop().await;
}

/// Writes an export stream as a file of `format` through the exporter's own writer.
fn write_export(stream: &[u8], path: &Path, format: tally_export::Format) {
    let mut file = None;
    for line in std::str::from_utf8(stream).unwrap().lines() {
        match tally_export::bundle::parse_line(line).unwrap() {
            tally_export::Line::Header(h) => {
                file = Some(tally_export::ExportFile::create(path, format, &h).unwrap())
            }
            tally_export::Line::Record {
                index,
                event,
                shown,
                keys,
            } => file
                .as_mut()
                .unwrap()
                .record_shown(
                    index,
                    event.get().as_bytes(),
                    shown.map(|s| s.get().as_bytes()),
                    keys.map(|k| k.get().as_bytes()),
                )
                .unwrap(),
            tally_export::Line::End(end) => file.take().unwrap().finish(&end).unwrap(),
            tally_export::Line::Error(m) => panic!("{m}"),
        }
    }
}

/// An export by a `read:pii` reader shows values in the clear and discloses the keys that
/// prove each one against the sealed record hashed; a masked reader's shows tokens. Both
/// verify offline in every format, and a clear value edited after the export does not.
#[tokio::test]
async fn clear_and_masked_exports_verify_their_values_offline() {
    let server = TestServer::start_app(ServerSettings::default(), true).await;
    let data = server.running.log.data_dir().root().to_path_buf();
    let c = Client {
        http: reqwest::Client::new(),
        url: server.running.url.clone(),
    };
    let admin = server.admin.clone();
    let (status, v) = c.post(&admin, "/v1/tenants", json!({"name": "acme"})).await;
    assert!([200, 201, 409].contains(&status), "{v}");
    let (status, v) = c
        .json(
            reqwest::Method::PUT,
            &admin,
            "/v1/tenants/acme/policy",
            &[],
            Some(json!({"personal_paths": [{"path": "after.email", "subject": "value"}]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let events: Vec<Value> = (0..6)
        .map(|i| {
            json!({"time": "2026-11-30T10:00:00Z", "tenant": "acme",
                   "actor": {"id": format!("xavi-{}", i % 2), "ip": "192.0.2.44"},
                   "action": "user.update", "outcome": "SUCCESS",
                   "after": {"email": format!("xavi{i}@mail.example"), "plan": "gold"}})
        })
        .collect();
    let (status, v) = c.post(&admin, "/v1/events", json!(events)).await;
    assert_eq!(status, 200, "{v}");
    c.settle(&admin, 6).await;
    // Erase one person, so that an export shows erased values too.
    let (status, v) = c
        .post(
            &admin,
            "/v1/tenants/acme/erasures",
            json!({"subjects": ["xavi1@mail.example"], "reason": "request 3"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = c
        .post(
            &admin,
            "/v1/keys",
            json!({"name": "masked", "scopes": ["read", "export"], "tenant": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let masked = v["token"].as_str().unwrap().to_string();
    let key = tally_tlog::note::NoteVerifier::parse_vkey(
        std::fs::read_to_string(data.join("log.pub"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let query = [("tenant", "acme"), ("q", "action:user.update")];
    for (who, token) in [("clear", &admin), ("masked", &masked)] {
        let (status, stream) = c
            .send(reqwest::Method::GET, token, "/v1/export", &query, None)
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&stream).to_string();
        assert_eq!(
            text.contains("xavi0@mail.example"),
            who == "clear",
            "{text}"
        );
        assert!(!text.contains("xavi1@mail.example"), "erased: {text}");
        for format in [
            tally_export::Format::Jsonl,
            tally_export::Format::Csv,
            tally_export::Format::Parquet,
        ] {
            let path = dir.path().join(format!("{who}.{}", format.name()));
            write_export(&stream, &path, format);
            let v = tally_export::verify_file(&path, &key, |_| {}).unwrap();
            assert_eq!(v.rows, 6, "{who} {format:?}");
            assert_eq!(v.view.as_deref(), Some(who));
            if who == "clear" {
                // Three events of xavi-0 and three of xavi-1: actor id, IP and e-mail each.
                assert!(v.opened >= 12 && v.erased >= 1 && v.masked == 0, "{v:?}");
            } else {
                assert!(v.opened == 0 && v.masked >= 12, "{v:?}");
            }
        }
        if who == "clear" {
            // A clear value edited in the file is caught, though the record hashed is intact.
            let path = dir.path().join("clear.jsonl");
            let edited = std::fs::read_to_string(&path).unwrap().replacen(
                "xavi0@mail.example",
                "xavi9@mail.example",
                1,
            );
            std::fs::write(&path, edited).unwrap();
            let err = tally_export::verify_file(&path, &key, |_| {}).unwrap_err();
            assert!(err.to_string().contains("after.email"), "{err}");
        }
    }
    server.stop().await;
}
