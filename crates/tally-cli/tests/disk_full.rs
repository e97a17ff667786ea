//! A real full disk under a running server: its data directory on a small tmpfs. Ingest
//! until the disk is full: the server answers 503 with Retry-After and a JSON error (no
//! hang), `/healthz` says the disk is full (neither names a local path), the server's log says
//! it in a few lines rather than one per refused request, and once space is freed events are
//! taken again without a restart; afterwards every acknowledged event is there and
//! `tally verify` passes.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN), which the test machines have. Where they
//! do not, the test fails with a message saying so; `TALLY_TEST_NO_MOUNT=1` skips it
//! knowingly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok, Server, TALLY};

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a real disk, which needs root or CAP_SYS_ADMIN: {} \
             (set TALLY_TEST_NO_MOUNT=1 to skip it knowingly)",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn event(i: u64) -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::from_u128(0xd15c_0000_0000_4000_8000_0000_0000_0000 + u128::from(i)).to_string(),
        "time": "2026-11-30T10:00:00.000Z",
        "actor": {"id": format!("user-{i}"), "ip": "192.0.2.1"},
        "action": "document.read",
        "outcome": "SUCCESS",
        // Bulk, so the disk fills in a few hundred requests.
        "metadata": {"padding": "x".repeat(2000)},
    })
}

async fn post(
    client: &reqwest::Client,
    server: &Server,
    from: u64,
    count: u64,
) -> reqwest::Response {
    client
        .post(format!("{}/v1/events", server.url))
        .bearer_auth(&server.token)
        .json(&(from..from + count).map(event).collect::<Vec<_>>())
        .send()
        .await
        .expect("the server answers (no hang) even when the disk is full")
}

#[tokio::test]
async fn a_full_disk_answers_503_and_writing_resumes_once_space_is_freed() {
    if std::env::var_os("TALLY_TEST_NO_MOUNT").is_some() {
        eprintln!("skipped: TALLY_TEST_NO_MOUNT is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&tmp.path().join("disk"), "6m");
    let dir = mount.0.join("data");
    // Space to free later: a file that takes part of the disk.
    let ballast = mount.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 << 20]).unwrap();
    // No search index: its merges would take the freed space back at unpredictable times.
    // Its log on another disk: the one under test fills up.
    let log = tmp.path().join("server.log");
    let server = Server::start_logging_to(&dir, &["--no-index"], &log);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let mut acknowledged = 0u64;
    let started = Instant::now();
    let refused = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the disk never filled"
        );
        let resp = post(&client, &server, acknowledged, 20).await;
        if resp.status() == 201 || resp.status() == 200 {
            acknowledged += 20;
            continue;
        }
        break resp;
    };
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["retry-after"].to_str().unwrap(),
        "5",
        "a 503 says when to retry"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{body}"
    );
    // Still full: refused again, promptly, many times.
    for _ in 0..50 {
        assert_eq!(post(&client, &server, acknowledged, 20).await.status(), 503);
    }
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{health}"
    );
    assert_eq!(health["restart_needed"], false, "{health}");
    // Clients are told what failed, not where the server keeps its files.
    let local = mount.0.to_str().unwrap();
    for told in [body.to_string(), health.to_string()] {
        assert!(
            !told.contains(local),
            "a local path leaks to clients: {told}"
        );
    }
    // The server's own log says it without one line per refused request: they would fill
    // the same disk faster.
    let errors = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count();
    assert!(
        (1..=10).contains(&errors),
        "{errors} ERROR lines for 51 refused requests"
    );

    // Space is freed: the next request is stored, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let resp = post(&client, &server, acknowledged, 20).await;
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    acknowledged += 20;
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "{:?}", health.text().await);
    server.stop();

    let key = dir.join("log.pub");
    let out = ok(&Command::new(TALLY)
        .args([
            "verify",
            dir.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("tenant default: {acknowledged} records")),
        "{out}"
    );
}
