//! Helpers shared by the `tally` binary's tests: a real server process on a data directory,
//! the client commands run against it, and assertions on exit statuses.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test.
pub const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tally serve` on `dir` at `port` with the tests' settings (checkpoints every 50 ms, the
/// admin token in `dir.token`, warnings only, no signing key from the environment) and `extra`
/// arguments; not started yet. Standard error is inherited: set it to see or read it.
pub fn serve_command(dir: &Path, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(TALLY);
    cmd.args(["serve", "--data"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--checkpoint-interval-ms",
            "50",
        ])
        .args(extra)
        .arg("--admin-token-file")
        .arg(dir.with_extension("token"))
        .env("TALLY_LOG", "warn")
        .env_remove("TALLY_SIGNING_KEY")
        .env_remove("TALLY_SIGN_COMMAND")
        .stdout(Stdio::null());
    cmd
}

/// `tally serve` on a data directory, on an ephemeral port; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server with test settings (checkpoints every 50 ms).
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// [`Server::start`] with more `tally serve` arguments (with `--no-index`, no index).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(dir, extra, None)
    }

    /// [`Server::start_with`], its standard error (its log, warnings and errors) written to
    /// the file `log`.
    pub fn start_logging_to(dir: &Path, extra: &[&str], log: &Path) -> Server {
        Server::spawn(dir, extra, Some(log))
    }

    fn spawn(dir: &Path, extra: &[&str], log: Option<&Path>) -> Server {
        let port = free_port();
        let token_file = dir.with_extension("token");
        let mut cmd = serve_command(dir, port, extra);
        if let Some(log) = log {
            cmd.stderr(std::fs::File::create(log).unwrap());
        }
        if !extra.contains(&"--no-index") {
            // Two indexing threads here; the server tests run the default one.
            cmd.args(["--index-threads", "2"]);
        }
        let mut child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && token_file.exists() {
                let token = std::fs::read_to_string(&token_file)
                    .unwrap()
                    .trim()
                    .to_string();
                return Server {
                    child,
                    url,
                    token,
                    dir: dir.to_path_buf(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("tally serve {extra:?} exited with {status} instead of starting");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not start");
    }

    /// A plain HTTP/1.1 GET without credentials: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.plain_get(path, "")
    }

    /// [`Server::get`] with the admin token.
    pub fn get_as_admin(&self, path: &str) -> (u16, String) {
        self.plain_get(path, &format!("Authorization: Bearer {}\r\n", self.token))
    }

    fn plain_get(&self, path: &str, headers: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let host = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Sends `events` (a JSON event or array) to tenant acme with the admin token; asserts 200.
    pub async fn ingest_acme(&self, events: &serde_json::Value) {
        let status = reqwest::Client::new()
            .post(format!("{}/v1/events?tenant=acme", self.url))
            .bearer_auth(&self.token)
            .json(events)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// Runs a client command against this server with its admin token.
    pub fn tally(&self, args: &[&str]) -> Output {
        Command::new(TALLY)
            .args(args)
            .env("TALLY_URL", &self.url)
            .env("TALLY_TOKEN", &self.token)
            .env("TALLY_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Waits until every consumer (the search index) has consumed the whole log, as
    /// `tally consumers` reports it (a generous limit: not a timing assertion).
    pub fn wait_for_consumers(&self) {
        for _ in 0..2400 {
            let out = self.tally(&["consumers", "--json"]);
            if out.status.success() {
                let reports: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("consumers --json prints JSON");
                let all = reports.as_array().expect("an array of consumers");
                if !all.is_empty() && all.iter().all(|r| r["lag"] == 0) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the consumers never caught up with the log");
    }

    /// Stops the server as an operator would (SIGTERM) and checks that it exits cleanly.
    pub fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit status 1 (a failure found) and returns stderr.
pub fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
