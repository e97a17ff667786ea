//! A data directory written by the release that defined on-disk format v1
//! (`tests/fixtures/v1-data`, made once by `scripts/make-v1-fixture` and committed) must open,
//! verify and serve unchanged in every later release: no format break goes unnoticed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-data")
}

/// A private copy: the server writes to its data directory.
fn copy_of_fixture(to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(fixture())
        .arg(to)
        .status()
        .unwrap()
        .success());
}

fn run(args: &[&str]) -> Output {
    Command::new(TALLY)
        .args(args)
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The public key, kept beside the fixture rather than read from inside it.
fn key() -> String {
    fixture()
        .with_extension("pub")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_v1_data_directory_verifies_unchanged() {
    let out = ok(&run(&[
        "verify",
        fixture().to_str().unwrap(),
        "--key",
        &key(),
        "--quiet",
    ]));
    assert!(out.contains("tenant default: 300 records"), "{out}");
    assert!(out.contains("tenant acme: 150 records"), "{out}");
    assert!(
        out.contains("verified 450 records in 2 tenants: intact"),
        "{out}"
    );
}

#[test]
fn a_server_opens_the_v1_data_directory_serves_it_and_keeps_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_of_fixture(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(TALLY)
        .args(["serve", "--data"])
        .arg(&dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--checkpoint-interval-ms",
            "50",
        ])
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let token = std::fs::read_to_string(fixture().with_extension("token"))
        .unwrap()
        .trim()
        .to_string();
    let client = |args: &[&str]| {
        Command::new(TALLY)
            .args(args)
            .env("TALLY_URL", &url)
            .env("TALLY_TOKEN", &token)
            .env("TALLY_LOG", "warn")
            .output()
            .unwrap()
    };
    let mut up = false;
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "the server did not start on the v1 directory");

    // Look-up by id and by index answer what v1 stored.
    let by_id = ok(&client(&["get", "00000000-0000-4000-8000-000000000123"]));
    assert!(
        by_id.contains("\"request_id\":\"req-default-123\""),
        "{by_id}"
    );
    let acme = ok(&client(&[
        "get",
        "00000000-0000-4000-8000-000000100042",
        "--tenant",
        "acme",
    ]));
    assert!(acme.contains("req-acme-42"), "{acme}");
    // The index written by v1 (search schema 1) is rebuilt from the log on open, then answers
    // (a generous bound, not a timing assertion).
    for _ in 0..2400 {
        let out = client(&["consumers", "--json"]);
        let caught_up = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|all| !all.is_empty() && all.iter().all(|r| r["lag"] == 0));
        if caught_up {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let found = ok(&client(&[
        "query",
        "actor.id:user-3 outcome:FAILURE",
        "--all",
    ]));
    assert!(found.lines().count() > 0, "{found}");
    // A retry of a v1 event is recognised as a duplicate, and new events are appended.
    let events = tmp.path().join("more.ndjson");
    std::fs::write(
        &events,
        concat!(
            r#"{"id":"00000000-0000-4000-8000-000000000007","time":"2026-05-06T07:00:07.000Z","actor":{"id":"user-0","type":"user","ip":"192.0.2.8","user_agent":"fixture/1"},"action":"document.read","category":"READ","outcome":"SUCCESS","resource":{"type":"document","id":"doc-7"},"request_id":"req-default-7","metadata":{"n":7}}"#,
            "\n",
            r#"{"time":"2026-11-30T10:00:00.000Z","actor":{"id":"newcomer"},"action":"document.read","outcome":"SUCCESS"}"#,
            "\n"
        ),
    )
    .unwrap();
    let ingested = ok(&client(&["ingest", events.to_str().unwrap()]));
    assert!(ingested.contains("(1 were already stored)"), "{ingested}");
    for _ in 0..200 {
        let cp = ok(&client(&["checkpoint", "--key", &key()]));
        if cp.lines().nth(1).and_then(|n| n.parse::<u64>().ok()) > Some(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    // Old and new records verify together under the same key.
    let out = ok(&run(&[
        "verify",
        dir.to_str().unwrap(),
        "--key",
        &key(),
        "--quiet",
    ]));
    // The new event, and the audit events of the reads above, follow the 300 of v1.
    let records: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("tenant default: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(records > 300, "{out}");
    assert!(out.contains("intact"), "{out}");
}
