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
            .any(|t| t["name"] == "tally-system" && t["size"] == 1),
        "{tenants}"
    );
    let event = get("/v1/events/0?tenant=tally-system".into()).await;
    assert_eq!(event["action"], "tally.keys.create", "{event}");
    assert_eq!(event["actor"]["id"], "tally-server", "{event}");
    assert_eq!(event["metadata"]["via"], "offline", "{event}");
    assert_eq!(event["metadata"]["name"], "rescue", "{event}");
    server.stop();
}
