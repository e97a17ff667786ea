//! Witnesses end to end, with the real binaries: two `tally witness` processes cosign the
//! checkpoints a `tally serve --witness ...` serves; clients require k of n; a witness that is
//! down, restarted, or unknown to the server; persistence of the cosigned checkpoint.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn spawn(args: &[String], port: u16, ready_file: &Path) -> Proc {
    let child = Command::new(TALLY)
        .args(args)
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc { child, port };
    wait_until("the process to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && ready_file.exists()
    });
    proc
}

fn serve(dir: &Path, witnesses: &[String]) -> Proc {
    let port = free_port();
    let mut args: Vec<String> = [
        "serve",
        "--no-index",
        "--checkpoint-interval-ms",
        "50",
        "--witness-retry-max-ms",
        "500",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data",
        dir.to_str().unwrap(),
        "--admin-token-file",
        dir.with_extension("token").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    for w in witnesses {
        args.extend(["--witness".into(), w.clone()]);
    }
    spawn(&args, port, &dir.with_extension("token"))
}

fn witness(state: &Path, name: &str, log_vkey: &str, port: Option<u16>) -> (Proc, String) {
    let port = port.unwrap_or_else(free_port);
    let args = [
        "witness",
        "--state",
        state.to_str().unwrap(),
        "--name",
        name,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--log",
        &format!("tally.localhost/*={log_vkey}"),
    ]
    .map(String::from);
    let proc = spawn(&args, port, &state.join("witness.pub"));
    let vkey = std::fs::read_to_string(state.join("witness.pub"))
        .unwrap()
        .trim()
        .to_owned();
    (proc, vkey)
}

fn tally(server: &Proc, dir: &Path, args: &[&str]) -> Output {
    let token = std::fs::read_to_string(dir.with_extension("token")).unwrap();
    Command::new(TALLY)
        .args(args)
        .env("TALLY_URL", server.url())
        .env("TALLY_TOKEN", token.trim())
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap()
}

fn ingest(server: &Proc, dir: &Path, from: u64, to: u64) {
    let file = dir.with_extension(format!("{from}.ndjson"));
    let mut s = String::new();
    for i in from..to {
        s.push_str(&format!(
            r#"{{"id":"{}","time":"2026-05-06T07:08:09.010Z","actor":{{"id":"u{i}"}},"action":"user.login","outcome":"SUCCESS"}}"#,
            uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + u128::from(i))
        ));
        s.push('\n');
    }
    std::fs::write(&file, s).unwrap();
    let out = tally(server, dir, &["ingest", file.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{out:?}");
}

/// `tally checkpoint` with a witness policy; (exit code, stdout, stderr).
fn checkpoint(server: &Proc, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let key = dir.join("log.pub");
    let mut args = vec!["checkpoint", "--key", key.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = tally(server, dir, &args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn size_of(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Waits until the served checkpoint has `size` and meets the policy in `extra`.
fn wait_quorum(server: &Proc, dir: &Path, size: u64, extra: &[&str]) -> String {
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (code, note, err) = checkpoint(server, dir, extra);
        if code == 0 && size_of(&note) == size {
            return note;
        }
        last = format!("{note}{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no checkpoint of size {size} meeting {extra:?}; last: {last}");
}

fn http_get(port: u16, path: &str, dir: &Path) -> String {
    let token = std::fs::read_to_string(dir.with_extension("token")).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn issue_7_witnesses_cosign_served_checkpoints_and_clients_require_a_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    // First start creates the log key, which the witnesses need.
    serve(&dir, &[]).stop();
    let log_vkey = std::fs::read_to_string(dir.join("log.pub")).unwrap();
    let log_vkey = log_vkey.trim();
    let (w1, vk1) = witness(&tmp.path().join("w1"), "witness.test/w1", log_vkey, None);
    let (w2, vk2) = witness(&tmp.path().join("w2"), "witness.test/w2", log_vkey, None);
    let flags = [format!("{vk1}={}", w1.url()), format!("{vk2}={}", w2.url())];
    let server = serve(&dir, &flags);

    ingest(&server, &dir, 0, 50);
    let both = [
        "--witness",
        &vk1,
        "--witness",
        &vk2,
        "--witness-quorum",
        "2",
    ];
    let note = wait_quorum(&server, &dir, 50, &both);
    assert_eq!(note.matches("\n— witness.test/w").count(), 2, "{note}");

    // The same note at every checkpoint route; the log's key still opens it.
    let tiles = http_get(server.port, "/checkpoint", &dir);
    assert!(tiles.contains("— witness.test/w1 ") && tiles.contains("— witness.test/w2 "));

    // k of n: a witness that never cosigned is named as missing.
    let other = tally_tlog::CosignatureSigner::from_seed("witness.test/w3", [7; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (code, _, err) = checkpoint(
        &server,
        &dir,
        &[
            "--witness",
            &vk1,
            "--witness",
            &other,
            "--witness-quorum",
            "2",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1 of the 2") && err.contains("missing: witness.test/w3"),
        "{err}"
    );
    let (code, _, err) = checkpoint(
        &server,
        &dir,
        &[
            "--witness",
            &vk1,
            "--witness",
            &other,
            "--witness-quorum",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cosigned by 1 of 2 witnesses"), "{err}");
    let (code, _, err) = checkpoint(&server, &dir, &["--witness", log_vkey]);
    assert_eq!(code, 1);
    assert!(err.contains("log's signing key"), "{err}");

    // tally verify --url with the same policy.
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap();
    let mut verify = vec!["verify", "--key", key, "--quiet"];
    verify.extend_from_slice(&both);
    let out = tally(&server, &dir, &verify);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cosigned by 2 of 2 witnesses"), "{stdout}");
    let out = tally(
        &server,
        &dir,
        &["verify", "--key", key, "--quiet", "--witness", &other],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WITNESS CHECK FAILED"));

    // A saved cosigned checkpoint, checked offline; an altered cosignature is refused.
    let saved = tmp.path().join("saved.checkpoint");
    std::fs::write(&saved, &note).unwrap();
    let mut offline = vec!["--file", saved.to_str().unwrap()];
    offline.extend_from_slice(&both);
    assert_eq!(checkpoint(&server, &dir, &offline).0, 0);
    let at = note.find("— witness.test/w2 ").unwrap() + "— witness.test/w2 ".len() + 20;
    let mut altered = note.clone().into_bytes();
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&saved, altered).unwrap();
    let (code, _, err) = checkpoint(&server, &dir, &offline);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid cosignature by witness.test/w2"),
        "{err}"
    );

    // Health and metrics.
    let health = http_get(server.port, "/healthz", &dir);
    assert!(health.contains(r#""name":"witness.test/w1""#), "{health}");
    assert!(health.contains(r#""ok":true"#), "{health}");
    let metrics = http_get(server.port, "/metrics", &dir);
    assert!(
        metrics.contains(r#"tally_witness_requests_total{witness="witness.test/w2",result="ok"}"#),
        "{metrics}"
    );

    // A witness goes down: ingest goes on, the other one cosigns, /healthz names the failure.
    let w2_port = w2.port;
    w2.stop();
    ingest(&server, &dir, 50, 60);
    let one = ["--witness", &vk1, "--witness-quorum", "1"];
    wait_quorum(&server, &dir, 60, &one);
    let (code, _, err) = checkpoint(&server, &dir, &both);
    assert_eq!(code, 1);
    assert!(err.contains("missing: witness.test/w2"), "{err}");
    wait_until("/healthz to report the failing witness", || {
        let h = http_get(server.port, "/healthz", &dir);
        h.contains(r#""ok":false"#) && h.contains("cannot reach")
    });

    // Restarted on its state, it catches up from the size it cosigned.
    let (w2, _) = witness(
        &tmp.path().join("w2"),
        "witness.test/w2",
        log_vkey,
        Some(w2_port),
    );
    let flags = [format!("{vk1}={}", w1.url()), format!("{vk2}={}", w2.url())];
    wait_quorum(&server, &dir, 60, &both);

    // The server keeps the cosigned checkpoint: restarted while both witnesses are down, it
    // serves it again.
    server.stop();
    drop(w1);
    drop(w2);
    let server = serve(&dir, &flags);
    let (code, note, err) = checkpoint(&server, &dir, &both);
    assert_eq!((code, size_of(&note)), (0, 60), "{err}");
    server.stop();

    // A server that does not know what a witness cosigned learns it from the witness's 409.
    std::fs::remove_file(dir.join("tenants/default/cosigned-checkpoint")).unwrap();
    let (w1, _) = witness(&tmp.path().join("w1"), "witness.test/w1", log_vkey, None);
    let server = serve(&dir, &[format!("{vk1}={}", w1.url())]);
    ingest(&server, &dir, 60, 65);
    wait_quorum(&server, &dir, 65, &one);
    let metrics = http_get(server.port, "/metrics", &dir);
    assert!(
        metrics.contains(
            r#"tally_witness_requests_total{witness="witness.test/w1",result="conflict"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn issue_7_a_history_rewritten_with_the_log_key_gets_no_cosignature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    serve(&dir, &[]).stop();
    let log_vkey = std::fs::read_to_string(dir.join("log.pub")).unwrap();
    let log_vkey = log_vkey.trim();
    let (w1, vk1) = witness(&tmp.path().join("w1"), "witness.test/w1", log_vkey, None);
    let flag = [format!("{vk1}={}", w1.url())];
    let one = ["--witness", &vk1];
    let server = serve(&dir, &flag);
    ingest(&server, &dir, 0, 50);
    wait_quorum(&server, &dir, 50, &one);
    server.stop();

    // Whoever holds log.key starts over with another history and signs it with the same key.
    let forged = tmp.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    for f in ["FORMAT", "log.key", "log.pub"] {
        std::fs::copy(dir.join(f), forged.join(f)).unwrap();
    }
    let server = serve(&forged, &flag);
    ingest(&server, &forged, 1000, 1060);
    wait_until("/healthz to report the refusal", || {
        let h = http_get(server.port, "/healthz", &forged);
        h.contains(r#""ok":false"#) && h.contains("not consistent")
    });
    let (code, note, err) = checkpoint(&server, &forged, &one);
    assert_eq!(code, 1, "{note}");
    assert!(err.contains("missing: witness.test/w1"), "{err}");
    // The witness still holds the honest tree, and kept the forged request as evidence.
    assert!(
        std::fs::read_dir(tmp.path().join("w1/evidence"))
            .unwrap()
            .count()
            >= 1
    );
}
