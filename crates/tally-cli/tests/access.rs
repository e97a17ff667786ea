//! Who may touch a data directory and its keys, with the real binary (issue 9, fix first):
//! the files are private whatever the umask, and an operator locked out of the API gets back
//! in on the stopped server's directory, on the record.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{ok, Server, TALLY};

/// Every entry under `root` (itself included) with a mode beyond `dir_mode` / `file_mode`.
fn too_open(root: &Path, dir_mode: u32, file_mode: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let allowed = if meta.is_dir() { dir_mode } else { file_mode };
        if mode & !allowed != 0 {
            out.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

async fn ingest(server: &Server, tenant: &str, n: usize) {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "time": "2026-11-30T10:00:00Z", "tenant": tenant,
                "actor": {"id": format!("user-{i}"), "ip": "192.0.2.7"},
                "action": "patient.read", "outcome": "SUCCESS",
            })
        })
        .collect();
    let status = reqwest::Client::new()
        .post(format!("{}/v1/events", server.url))
        .bearer_auth(&server.token)
        .json(&events)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_data_directory_and_everything_in_it_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // The test runs under the usual umask (022), which would leave files world-readable.
    let server = Server::start(&dir);
    ingest(&server, "acme", 50).await;
    server.wait_for_consumers();
    server.stop();
    let open = too_open(&dir, 0o700, 0o600);
    assert!(open.is_empty(), "readable by others: {open:#?}");
    let token = dir.with_extension("token");
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn a_locked_out_operator_makes_an_admin_key_on_the_stopped_server_on_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_with(&dir, &["--no-index"]);
    ingest(&server, "acme", 3).await;

    // While the server runs, --data is refused with what to do instead.
    let running = Command::new(TALLY)
        .args([
            "keys", "create", "rescue", "--scope", "admin", "--tenant", "*", "--data",
        ])
        .arg(&dir)
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap();
    assert!(!running.status.success());
    let said = String::from_utf8_lossy(&running.stderr);
    assert!(
        said.contains("stopped server") && said.contains("--url"),
        "{said}"
    );
    server.stop();

    let offline = |args: &[&str]| {
        Command::new(TALLY)
            .arg("keys")
            .args(args)
            .arg("--data")
            .arg(&dir)
            .env("TALLY_LOG", "warn")
            .env_remove("TALLY_URL")
            .env_remove("TALLY_TOKEN")
            .output()
            .unwrap()
    };
    // A bad request is refused offline as over the API.
    let bad = offline(&[
        "create",
        "bad\u{7}name",
        "--scope",
        "read",
        "--tenant",
        "acme",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("control characters"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let token = ok(&offline(&[
        "create", "rescue", "--scope", "admin", "--tenant", "*",
    ]))
    .trim()
    .to_string();
    assert!(token.starts_with("tly_"), "{token}");
    let listed: serde_json::Value = serde_json::from_str(&ok(&offline(&["list"]))).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "rescue" && k["tenant"] == "*"),
        "{listed}"
    );

    // The restarted server takes the new key, and its log holds the creation, by the
    // server itself, made offline.
    let server = Server::start_with(&dir, &["--no-index"]);
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http
            .get(format!("{}{path}", server.url))
            .bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let tenants = get("/v1/tenants".into()).await;
    assert!(
        tenants
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "tally-system" && t["size"] == 3),
        "{tenants}"
    );
    // The admin key of the first start, tenant acme made by its first event, then the
    // rescue key.
    let mut recorded = Vec::new();
    for i in 0..3 {
        let e = get(format!("/v1/events/{i}?tenant=tally-system")).await;
        recorded.push((
            e["action"].as_str().unwrap().to_string(),
            e["metadata"]["via"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        recorded,
        [
            ("tally.keys.create".to_string(), "start".to_string()),
            ("tally.tenants.create".to_string(), "ingest".to_string()),
            ("tally.keys.create".to_string(), "offline".to_string()),
        ]
    );
    let first = get("/v1/events/0?tenant=tally-system".into()).await;
    assert_eq!(first["actor"]["id"], "tally-server", "{first}");
    assert_eq!(first["metadata"]["name"], "admin", "{first}");
    let event = get("/v1/events/2?tenant=tally-system".into()).await;
    assert_eq!(event["action"], "tally.keys.create", "{event}");
    assert_eq!(event["actor"]["id"], "tally-server", "{event}");
    assert_eq!(event["metadata"]["via"], "offline", "{event}");
    assert_eq!(event["metadata"]["name"], "rescue", "{event}");
    server.stop();
}

#[tokio::test]
async fn an_operator_manages_tenants_with_the_cli_on_a_server_that_refuses_unknown_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--no-index", "--unknown-tenants", "refuse"],
    );
    let post = |tenant: &str| {
        let url = format!("{}/v1/events", server.url);
        let token = server.token.clone();
        let body = serde_json::json!({
            "time": "2026-11-30T10:00:00Z", "tenant": tenant,
            "actor": {"id": "alice"}, "action": "patient.read", "outcome": "SUCCESS",
        });
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    assert_eq!(post("acme").await, (403, "unknown_tenant".to_string()));

    ok(&server.tally(&["tenants", "create", "acme"]));
    assert_eq!(post("acme").await.0, 200);
    ok(&server.tally(&[
        "tenants",
        "quotas",
        "acme",
        "--events-per-second",
        "500",
        "--max-stored-bytes",
        "1GiB",
    ]));
    ok(&server.tally(&["tenants", "disable", "acme", "--reason", "unpaid"]));
    assert_eq!(post("acme").await, (403, "tenant_disabled".to_string()));
    let table = ok(&server.tally(&["tenants", "list"]));
    let acme = table
        .lines()
        .find(|l| l.starts_with("acme "))
        .unwrap_or_else(|| panic!("no acme row in\n{table}"));
    assert!(
        acme.contains("DISABLED") && acme.contains("500 events/s"),
        "{acme}"
    );
    assert!(table.starts_with("TENANT"), "{table}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&server.tally(&["tenants", "show", "acme"]))).unwrap();
    assert_eq!(shown["quotas"]["max_stored_bytes"], 1u64 << 30);
    assert_eq!(shown["disabled_reason"], "unpaid");
    ok(&server.tally(&["tenants", "enable", "acme"]));
    assert_eq!(post("acme").await.0, 200);

    // Mistakes get a message saying what is wrong, and exit 1.
    let err = common::fails(&server.tally(&["tenants", "disable", "nope"]));
    assert!(err.contains("no tenant nope"), "{err}");
    let err = common::fails(&server.tally(&["tenants", "create", "Bad Name"]));
    assert!(err.contains("name:"), "{err}");
    let usage = server.tally(&["tenants", "quotas", "acme", "--max-stored-bytes", "0"]);
    assert_eq!(usage.status.code(), Some(2));
    server.stop();
}
