//! Helpers shared by the `tally` binary's tests: a real server process on a data directory,
//! the client commands run against it, and assertions on exit statuses.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test.
pub const TALLY: &str = env!("CARGO_BIN_EXE_tally");

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

    /// [`Server::start`] with more `tally serve` arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token_file = dir.with_extension("token");
        let mut child = Command::new(TALLY)
            .args(["serve", "--data"])
            .arg(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--checkpoint-interval-ms",
                "50",
                // Two indexing threads here; the server tests run the default one.
                "--index-threads",
                "2",
            ])
            .args(extra)
            .arg("--admin-token-file")
            .arg(&token_file)
            .env("TALLY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
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
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not start");
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
