//! `tally-bench` teaches its use, and the product binary no longer carries the benchmarks.

use std::process::Command;

#[test]
fn each_benchmark_has_help_with_examples() {
    for cmd in ["ingest", "search"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(
            text.contains("Example"),
            "{cmd} --help has no example:\n{text}"
        );
        assert!(text.contains("PostgreSQL"), "{cmd} --help:\n{text}");
    }
}

/// `tally-bench abuse` against a real server (in-process, debug build, small numbers): it
/// reports the three phases, and normal clients fare well beside the abusers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_reports_every_phase_and_normal_clients_are_served() {
    use tally_server::app::{AdminKey, App, AppSettings};
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(AppSettings {
        index: None,
        admin: AdminKey::Create("admin".into()),
        ..AppSettings::new(tmp.path().join("data"))
    })
    .await
    .unwrap();
    let token = app.admin_token().unwrap().to_string();
    let running = app.spawn("127.0.0.1:0").await.unwrap();
    let url = running.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tally-bench"))
            .args(["abuse", "--url", &url, "--token", &token])
            .args(["--idle", "50", "--slow-heads", "5", "--stalled-bodies", "2"])
            .args(["--stalled-mib", "1", "--duration", "1"])
            .arg("--pid")
            .arg(std::process::id().to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    running.stop().await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phase in ["alone", "beside abusers", "after they left"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase} line in\n{text}"));
        let columns: Vec<&str> = line[22..].split_whitespace().collect();
        let (ok, failed): (u64, u64) = (columns[0].parse().unwrap(), columns[1].parse().unwrap());
        assert!(ok > 0 && failed == 0, "{phase}: {line}");
        assert!(
            columns[6].parse::<u64>().unwrap() > 0,
            "an RSS figure: {line}"
        );
    }
}
