//! Interoperability with an independent implementation: Go's `golang.org/x/mod/sumdb/note`
//! and `golang.org/x/mod/sumdb/tlog` verify a real server's signed checkpoint, its C2SP
//! tlog-tiles (authenticated by Go's `TileHashReader` against the signed root), its entry
//! bundles, records, inclusion and consistency proofs, and reject tampered ones.
//!
//! The checks are in `tests/go/interop.go`, run with `go run` in GOPATH mode, offline, against
//! Debian's packaged sources (`apt-get install golang-go golang-golang-x-mod-dev`). Without
//! `go` this test fails, unless `TALLY_SKIP_GO_INTEROP=1`. `TALLY_GOPATH` overrides the GOPATH
//! holding `golang.org/x/mod` (default `/usr/share/gocode`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_store::LogConfig;

const TENANT: &str = "acme";
/// 700 leaves: full level-0 tiles 0 and 1, partial level-0 tile 2 (188 hashes), and a partial
/// level-1 tile (2 hashes); entry bundles likewise.
const EVENTS: usize = 700;
const BATCH: usize = 100;
const INSTALL_HINT: &str =
    "install Go and the x/mod sources: apt-get install golang-go golang-golang-x-mod-dev \
     (or set TALLY_SKIP_GO_INTEROP=1 to skip this test)";

struct Server {
    base: String,
    token: String,
    http: reqwest::Client,
    _running: Running,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = App::start(AppSettings {
        log: LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..LogConfig::default()
        },
        index: None,
        admin: AdminKey::Create("test".into()),
        ..AppSettings::new(dir.path().join("data"))
    })
    .await
    .expect("start tally");
    let running = app.spawn("127.0.0.1:0").await.expect("serve");
    Server {
        base: running.url.clone(),
        token: running.admin_token.clone().expect("admin key"),
        http: reqwest::Client::new(),
        _running: running,
        _dir: dir,
    }
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn ingest(&self, start: usize, count: usize) {
        let events: Vec<serde_json::Value> = (start..start + count)
            .map(|i| {
                let action = ["user.login", "document.read", "key.rotate"][i % 3];
                let outcome = ["SUCCESS", "FAILURE", "UNAUTHORIZED", "DENIED"][i % 4];
                serde_json::json!({
                    "time": format!("2024-05-01T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                    "actor": {"id": format!("user-{}", i % 37)},
                    "action": action,
                    "outcome": outcome,
                    "reason": format!("interop event {i}"),
                })
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/v1/events?tenant={TENANT}", self.base))
            .bearer_auth(&self.token)
            .json(&events)
            .send()
            .await
            .expect("POST /v1/events");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("ingest answer is JSON");
        assert!(status.is_success(), "ingest failed: {status} {body}");
        let stored = body["events"].as_array().expect("events array");
        assert_eq!(stored.len(), count, "{body}");
        for (k, event) in stored.iter().enumerate() {
            assert_eq!(event["index"].as_u64(), Some((start + k) as u64), "{event}");
        }
    }

    /// Size of the latest signed checkpoint (second line of the note).
    async fn checkpoint_size(&self) -> Option<u64> {
        let response = self.get(&format!("/v1/checkpoint?tenant={TENANT}")).await;
        if !response.status().is_success() {
            return None;
        }
        let note = response.text().await.ok()?;
        note.lines().nth(1)?.parse().ok()
    }

    async fn wait_for_checkpoint(&self, size: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.checkpoint_size().await;
            if got == Some(size) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint of size {size} after 20 s (latest: {got:?})"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn gopath() -> PathBuf {
    std::env::var_os("TALLY_GOPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/gocode"))
}

/// Whether `go` can be run at all.
fn go_available() -> Result<String, String> {
    match std::process::Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().into()),
        Ok(out) => Err(format!(
            "`go version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("the `go` command is not on PATH".into())
        }
        Err(e) => Err(format!("cannot run `go`: {e}")),
    }
}

/// `go run interop.go …` in GOPATH mode: no network, no module cache, a private build cache,
/// no user configuration, so it works as root in CI.
fn go_command(program: &Path, scratch: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("go");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("GOPATH", gopath())
        .env("GOCACHE", scratch.join("gocache"))
        .env("GOTMPDIR", scratch)
        .env("TMPDIR", scratch)
        .env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0")
        .env(
            "TALLY_INTEROP_VERBOSE",
            std::env::var_os("TALLY_INTEROP_VERBOSE").unwrap_or_default(),
        )
        .arg("run")
        .arg(program)
        .current_dir(scratch)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sumdb_tlog_and_note_verify_the_server() {
    let skip = std::env::var("TALLY_SKIP_GO_INTEROP").is_ok_and(|v| v == "1");
    let go_version = match go_available() {
        Ok(v) => v,
        Err(why) if skip => {
            eprintln!("go_interop skipped (TALLY_SKIP_GO_INTEROP=1): {why}");
            return;
        }
        Err(why) => panic!("{why}; {INSTALL_HINT}"),
    };
    let xmod = gopath().join("src/golang.org/x/mod/sumdb/tlog");
    if !xmod.is_dir() {
        if skip {
            eprintln!(
                "go_interop skipped (TALLY_SKIP_GO_INTEROP=1): no {}",
                xmod.display()
            );
            return;
        }
        panic!("{} is missing; {INSTALL_HINT}", xmod.display());
    }

    let server = start_server().await;
    for start in (0..EVENTS).step_by(BATCH) {
        server.ingest(start, BATCH.min(EVENTS - start)).await;
    }
    server.wait_for_checkpoint(EVENTS as u64).await;
    let vkey = server
        .get("/v1/log-key")
        .await
        .text()
        .await
        .expect("log key");
    let vkey = vkey.trim().to_string();

    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/interop.go");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut cmd = go_command(&program, scratch.path());
    cmd.args(["-base", &server.base])
        .args(["-tenant", TENANT])
        .args(["-token", &server.token])
        .args(["-vkey", &vkey])
        .args(["-indexes", "0,1,2,127,255,256,257,349,511,512,513,698,699"]);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .expect("go run took more than 10 minutes")
        .expect("spawn go run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Go interop check failed ({}; {go_version}; {:.1?}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        started.elapsed()
    );
    assert!(
        stdout.contains("all ") && stdout.contains("checks passed"),
        "unexpected Go output:\n{stdout}\n{stderr}"
    );
    println!(
        "{go_version} ({:.1?}):\n{stdout}{stderr}",
        started.elapsed()
    );
}
