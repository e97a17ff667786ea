//! Investigation over real HTTP: search syntax, plain filter parameters, pagination, stats,
//! proofs, audited reads, and rebuilding a deleted index from the log.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tally_server::app::{AdminKey, App, AppSettings, IndexSettings, Running};
use tally_store::{Log, LogConfig};

struct Server {
    url: String,
    token: String,
    log: Log,
    running: Running,
    client: reqwest::Client,
}

async fn start(path: &Path) -> Server {
    let app = App::start(AppSettings {
        log: LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..LogConfig::default()
        },
        index: Some(IndexSettings {
            commit_interval: Duration::from_millis(30),
            ..IndexSettings::default()
        }),
        admin: AdminKey::Create("test".into()),
        ..AppSettings::new(path)
    })
    .await
    .unwrap();
    let running = app.spawn("127.0.0.1:0").await.unwrap();
    Server {
        url: running.url.clone(),
        token: running.admin_token.clone().unwrap(),
        log: running.log.clone(),
        running,
        client: reqwest::Client::new(),
    }
}

impl Server {
    async fn ingest(&self, events: Value) {
        let r = self
            .client
            .post(format!("{}/v1/events?tenant=acme", self.url))
            .bearer_auth(&self.token)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// GET `path` of tenant acme: the status and the raw body.
    async fn get_text(&self, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .query(&[("tenant", "acme")])
            .query(query)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let (status, body) = self.get_text(path, query).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// Leaf indexes matching `q`, newest first, excluding the audit events of searches.
    async fn search(&self, q: &str) -> Vec<u64> {
        let q = format!("{q} -action:tally.*");
        let (status, v) = self
            .get("/v1/events", &[("q", &q), ("limit", "1000")])
            .await;
        assert_eq!(status, 200, "{q}: {v}");
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect()
    }

    /// Waits until the index has caught up with the log.
    async fn settle(&self) {
        let size = self.log.tenant("acme").map_or(0, |t| t.size());
        for _ in 0..500 {
            let (_, v) = self.get("/v1/stats", &[]).await;
            if v["total"].as_u64() >= Some(size) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the index did not catch up with {size} events");
    }
}

fn event(i: u64, actor: &str, action: &str, outcome: &str, ip: &str, time: &str) -> Value {
    json!({
        "time": time,
        "actor": {"id": actor, "type": "user", "ip": ip},
        "action": action,
        "category": if action.starts_with("user.login") { "LOGIN" } else { "UPDATE" },
        "resource": {"type": "USER", "id": format!("u-{}", i % 3)},
        "outcome": outcome,
        "request_id": format!("req-{i}"),
        "before": {"email": format!("old{i}@example.com")},
        "after": {"email": format!("new{i}@example.com"), "profile": {"nickname": if i == 4 { "zebra crossing" } else { "plain" }}},
        "metadata": {"region": if i.is_multiple_of(2) { "eu-west" } else { "us-east" }},
    })
}

fn corpus() -> Value {
    json!([
        event(
            0,
            "alice",
            "user.login",
            "SUCCESS",
            "203.0.113.5",
            "2026-01-10T10:00:00Z"
        ),
        event(
            1,
            "alice",
            "user.login",
            "FAILURE",
            "203.0.113.9",
            "2026-01-10T11:00:00Z"
        ),
        event(
            2,
            "bob",
            "user.delete",
            "SUCCESS",
            "198.51.100.7",
            "2026-01-15T10:00:00Z"
        ),
        event(
            3,
            "bob",
            "user.login",
            "DENIED",
            "2001:db8::1",
            "2026-02-01T10:00:00Z"
        ),
        event(
            4,
            "carol",
            "document.read",
            "SUCCESS",
            "203.0.114.1",
            "2026-02-10T10:00:00Z"
        ),
        event(
            5,
            "alice",
            "user.password.change",
            "SUCCESS",
            "203.0.113.77",
            "2026-03-01T10:00:00Z"
        ),
    ])
}

#[tokio::test]
async fn search_syntax_filters_pagination_stats_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path()).await;
    server.ingest(corpus()).await;
    server.settle().await;

    assert_eq!(
        server.search("actor:alice").await,
        vec![5, 1, 0],
        "newest first"
    );
    assert_eq!(server.search("actor:alice outcome:FAILURE").await, vec![1]);
    assert_eq!(
        server.search("actor:alice,bob -outcome:SUCCESS").await,
        vec![3, 1]
    );
    assert_eq!(server.search("action:user.*").await, vec![5, 3, 2, 1, 0]);
    assert_eq!(
        server
            .search("action:user.login,user.delete resource.type:USER")
            .await,
        vec![3, 2, 1, 0]
    );
    assert_eq!(server.search("ip:203.0.113.0/24").await, vec![5, 1, 0]);
    assert_eq!(server.search("ip:2001:db8::/32").await, vec![3]);
    assert_eq!(
        server.search("after:2026-01-15 before:2026-02-10").await,
        vec![3, 2]
    );
    assert_eq!(
        server.search("\"zebra crossing\"").await,
        vec![4],
        "phrase inside after.profile"
    );
    assert_eq!(
        server.search("new2@example.com").await,
        vec![2],
        "text inside after"
    );
    assert_eq!(
        server.search("us-east outcome:SUCCESS").await,
        vec![5],
        "text inside metadata"
    );
    assert_eq!(server.search("request:req-3").await, vec![3]);
    assert_eq!(server.search("-actor:alice -actor:bob").await, vec![4]);

    // The same filters as plain parameters.
    let (status, v) = server
        .get(
            "/v1/events",
            &[
                ("actor", "alice"),
                ("outcome", "FAILURE,SUCCESS"),
                ("order", "oldest"),
                ("q", "-action:tally.*"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let got: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![0, 1, 5], "oldest first");
    assert_eq!(
        v["events"][0]["record"]["actor"]["id"], "alice",
        "records are embedded"
    );

    // A malformed query names the position and what was expected.
    let (status, v) = server
        .get("/v1/events", &[("q", "actor:alice acter:bob")])
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_query");
    assert_eq!(v["error"]["details"][0]["column"], 13, "{v}");
    let (status, _) = server.get("/v1/events", &[("q", "actor:")]).await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/v1/events", &[("nonsense", "1")]).await;
    assert_eq!(status, 400, "unknown filter parameters are refused");

    // Cursor pagination is stable while events keep arriving.
    let (_, p1) = server
        .get("/v1/events", &[("q", "-action:tally.*"), ("limit", "4")])
        .await;
    let first: Vec<u64> = p1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(first, vec![5, 4, 3, 2]);
    server
        .ingest(json!([event(
            6,
            "dave",
            "user.login",
            "SUCCESS",
            "192.0.2.1",
            "2026-03-02T10:00:00Z"
        )]))
        .await;
    server.settle().await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = server
        .get(
            "/v1/events",
            &[("q", "-action:tally.*"), ("limit", "4"), ("cursor", cursor)],
        )
        .await;
    let second: Vec<u64> = p2["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        second,
        vec![1, 0],
        "the page after the cursor, unaffected by the new event"
    );
    assert!(
        p2.get("next_cursor").is_none() || p2["next_cursor"].is_null(),
        "last page"
    );

    // Stats by field and by time bucket.
    let (status, v) = server
        .get("/v1/stats", &[("q", "-action:tally.*"), ("by", "actor.id")])
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 7);
    assert_eq!(v["buckets"][0], json!({"key": "alice", "count": 3}));
    let (_, v) = server
        .get("/v1/stats", &[("q", "actor:alice"), ("interval", "1d")])
        .await;
    let counts: Vec<u64> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![2, 1], "{v}");
    assert_eq!(v["buckets"][0]["start"], "2026-01-10T00:00:00Z");
    let (status, _) = server.get("/v1/stats", &[("by", "nope")]).await;
    assert_eq!(status, 400);

    // Every search and stats call was itself recorded.
    server.settle().await;
    let (_, v) = server
        .get(
            "/v1/events",
            &[
                ("q", "action:tally.events.search actor:api-key:*"),
                ("limit", "1000"),
            ],
        )
        .await;
    assert!(v["events"].as_array().unwrap().len() >= 10, "{v}");
    assert_eq!(v["events"][0]["record"]["category"], "READ");

    // Proofs on request, verifiable against the signed checkpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, v) = server
        .get("/v1/events", &[("q", "actor:carol"), ("proofs", "true")])
        .await;
    let note = v["checkpoint"].as_str().unwrap();
    let cp = tally_tlog::checkpoint::Checkpoint::parse(
        note.split("\n\n")
            .next()
            .map(|b| format!("{b}\n"))
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let hit = &v["events"][0];
    // The record as sent, byte for byte (a serde_json::Value would reorder its keys).
    #[derive(serde::Deserialize)]
    struct RawHit {
        /// The record as hashed (personal values sealed); `record` is the event as shown.
        leaf: Box<serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct RawPage {
        events: Vec<RawHit>,
    }
    let text = server
        .client
        .get(format!("{}/v1/events", server.url))
        .bearer_auth(&server.token)
        .query(&[("tenant", "acme"), ("q", "actor:carol"), ("proofs", "true")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page: RawPage = serde_json::from_str(&text).unwrap();
    let record = page.events[0].leaf.get().to_string();
    let proof: Vec<tally_tlog::Hash> = hit["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    tally_tlog::verify_inclusion(
        &tally_tlog::leaf_hash(record.as_bytes()),
        hit["index"].as_u64().unwrap(),
        cp.size,
        &proof,
        &cp.root,
    )
    .expect("the embedded record is the exact leaf");
}

#[tokio::test]
async fn a_deleted_index_is_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path()).await;
    server.ingest(corpus()).await;
    server.settle().await;
    server.running.stop().await;
    std::fs::remove_dir_all(tmp.path().join("index")).unwrap();

    let server = start(tmp.path()).await;
    server.settle().await;
    assert_eq!(server.search("actor:alice").await, vec![5, 1, 0]);
}

impl Server {
    /// `GET /v1/export` with `query`: the status and the raw body.
    async fn export(&self, query: &[(&str, &str)]) -> (u16, String) {
        self.get_text("/v1/export", query).await
    }

    /// Waits until a signed checkpoint covers the whole tenant log.
    async fn signed(&self) {
        let t = self.log.tenant("acme").unwrap();
        for _ in 0..500 {
            if t.checkpoint().is_some_and(|c| c.size >= t.size()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no checkpoint covers the log");
    }
}

/// Runs a bundle body through the offline verifier.
fn verify_bundle(
    body: &str,
    key: &tally_tlog::NoteVerifier,
) -> Result<tally_export::Verified, tally_export::BundleError> {
    use tally_export::bundle::{parse_line, Line};
    let mut lines = body.lines();
    let Ok(Line::Header(header)) = parse_line(lines.next().unwrap()) else {
        panic!("no header: {body}");
    };
    let mut v = tally_export::BundleVerifier::new(header, key)?;
    for line in lines {
        match parse_line(line).unwrap() {
            Line::Record {
                index,
                event,
                shown,
                keys,
            } => v.record_shown(
                index,
                event.get().as_bytes(),
                shown.map(|s| s.get().as_bytes()),
                keys.map(|k| k.get().as_bytes()),
            )?,
            Line::End(end) => return v.finish(&end),
            other => panic!("{other:?}"),
        }
    }
    Err(tally_export::BundleError::Truncated)
}

#[tokio::test]
async fn exports_verify_offline_and_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path()).await;
    server.ingest(corpus()).await;
    server.settle().await;
    server.signed().await;
    let key = server.log.verifier().clone();

    // Filtered: alice's events, oldest first, proven against the carried checkpoint.
    let (status, body) = server
        .export(&[("q", "actor:alice"), ("format", "csv")])
        .await;
    assert_eq!(status, 200, "{body}");
    let v = verify_bundle(&body, &key).unwrap();
    assert_eq!(
        (v.rows, v.complete, v.query.as_str()),
        (3, false, "actor.id:alice")
    );
    let indexes: Vec<u64> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["index"].as_u64())
        .collect();
    assert_eq!(indexes, vec![0, 1, 5]);

    // Unfiltered: the whole signed tree, complete; and a leaf range.
    server.signed().await;
    let (status, body) = server.export(&[]).await;
    assert_eq!(status, 200, "{body}");
    let v = verify_bundle(&body, &key).unwrap();
    assert!(v.complete);
    assert_eq!((v.rows, v.range.from, v.range.to), (v.size, 0, v.size));
    let (_, body) = server.export(&[("from", "1"), ("to", "4")]).await;
    let v = verify_bundle(&body, &key).unwrap();
    assert_eq!(
        (v.rows, v.range.from, v.range.to, v.complete),
        (3, 1, 4, true)
    );

    // Dropping a record from the stream is caught.
    let cut: String = body
        .lines()
        .filter(|l| !l.starts_with("{\"index\":2,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(verify_bundle(&cut, &key).is_err());

    // Parameters of another endpoint are refused, not ignored.
    for (path, param) in [
        ("/v1/events", "from"),
        ("/v1/stats", "proofs"),
        ("/v1/events", "format"),
    ] {
        let (status, v) = server.get(path, &[(param, "1")]).await;
        assert_eq!(status, 400, "{path}?{param}: {v}");
        assert_eq!(v["error"]["details"][0]["field"], param, "{v}");
    }

    // Each export is in the audit log, with its row count and format.
    server.settle().await;
    let (_, v) = server
        .get(
            "/v1/events",
            &[("q", "action:tally.events.export"), ("order", "oldest")],
        )
        .await;
    let exports = v["events"].as_array().unwrap();
    assert_eq!(exports.len(), 3, "{v}");
    let first = &exports[0]["record"];
    assert_eq!(first["category"], "EXPORT");
    assert_eq!(first["metadata"]["rows"], 3);
    assert_eq!(first["metadata"]["format"], "csv");
    // The query is recorded with its personal values apart, where erasure can reach them.
    assert_eq!(first["metadata"]["query"], "actor.id:$1");
    assert_eq!(first["metadata"]["query_values"], json!({"1": "alice"}));
    assert_eq!(first["metadata"]["finished"], true);

    // Bad parameters: 400 naming the parameter, nothing exported.
    for (query, field) in [
        (vec![("from", "5"), ("to", "2")], "from"),
        (vec![("from", "x")], "from"),
        (vec![("format", "xml")], "format"),
        (vec![("q", "actor:")], "q"),
        (vec![("cursor", "abc")], "cursor"),
    ] {
        let (status, body) = server.export(&query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["error"]["details"][0]["field"] == field
                || v["error"]["message"].as_str().unwrap().contains(field),
            "{query:?}: {v}"
        );
    }
}

/// An export the client abandons half-way is still in the audit log, marked unfinished, with
/// the rows it had been sent.
#[tokio::test]
async fn an_abandoned_export_is_audited_as_unfinished() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path()).await;
    // Enough records (~20 MB of bundle) that the server cannot have sent them all into
    // channel and socket buffers before the client hangs up.
    let pad = "x".repeat(400);
    for batch in 0..8 {
        let events: Vec<Value> = (0..5000)
            .map(|i| {
                json!({
                    "time": "2026-03-01T10:00:00Z",
                    "actor": {"id": format!("u{i}")},
                    "action": "document.read",
                    "outcome": "SUCCESS",
                    "metadata": {"batch": batch, "pad": pad},
                })
            })
            .collect();
        server.ingest(Value::Array(events)).await;
    }
    server.signed().await;

    let mut response = server
        .client
        .get(format!("{}/v1/export", server.url))
        .bearer_auth(&server.token)
        .query(&[("tenant", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{\"tally_export\":"));
    drop(response);

    for _ in 0..500 {
        server.settle().await;
        let (_, v) = server
            .get("/v1/events", &[("q", "action:tally.events.export")])
            .await;
        if let Some(e) = v["events"].as_array().and_then(|a| a.first()) {
            let meta = &e["record"]["metadata"];
            assert_eq!(meta["finished"], false, "{e}");
            assert!(meta["rows"].as_u64().unwrap() < 40_000, "{e}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the abandoned export was not recorded");
}
