//! The signing key outside the data directory, with the real binary: `tally keygen`,
//! `tally serve --signing-key`, `tally serve --sign-command` (OpenSSL signs; broken, lying and
//! hung commands), and `tally verify --key` of a data directory that holds no key.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

mod common;

use common::{free_port, ok, serve_command, Server, TALLY};

/// Sends `count` events to the default tenant; they must be acknowledged promptly.
fn ingest(server: &Server, events: &Path, from: u64, count: u64) {
    write_events(events, from, count);
    let started = Instant::now();
    ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "acknowledgements waited for the signer"
    );
}

/// Runs `tally serve` expecting it to refuse to start; returns its standard error.
fn refused(dir: &Path, extra: &[&str]) -> String {
    let mut child = serve_command(dir, free_port(), &[&["--no-index"], extra].concat())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tally serve {extra:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tally(args: &[&str]) -> Output {
    Command::new(TALLY)
        .args(args)
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap()
}

fn write_events(path: &Path, from: u64, count: u64) {
    let mut s = String::new();
    for i in from..from + count {
        s.push_str(&format!(
            r#"{{"id":"{}","time":"2026-05-06T07:08:09Z","actor":{{"id":"u{i}"}},"action":"user.login","outcome":"SUCCESS"}}"#,
            uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + u128::from(i))
        ));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Waits until the default tenant's checkpoint, checked with `key`, has `size` leaves.
fn wait_for_checkpoint(server: &Server, key: &str, size: u64) {
    for _ in 0..400 {
        let out = server.tally(&["checkpoint", "--key", key]);
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).lines().nth(1) == Some(&size.to_string())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("no checkpoint of size {size}");
}

/// `tally keygen`: the public key it prints.
fn keygen(out: &Path, name: &str) -> String {
    ok(&tally(&[
        "keygen",
        "--out",
        out.to_str().unwrap(),
        "--name",
        name,
    ]))
    .trim()
    .to_string()
}

#[test]
fn keygen_and_a_signing_key_file_outside_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("log.key");
    let vkey = keygen(&key_file, "audit.test");
    assert!(vkey.starts_with("audit.test+"), "{vkey}");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An existing key is never overwritten.
    let before = std::fs::read(&key_file).unwrap();
    let out = tally(&["keygen", "--out", key_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    assert_eq!(std::fs::read(&key_file).unwrap(), before);

    // A key file others may read is refused, saying what to do.
    let data = tmp.path().join("data");
    let signing = [
        "--signing-key",
        key_file.to_str().unwrap(),
        "--origin",
        "audit.test",
    ];
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(&data, &signing);
    assert!(
        err.contains(&format!("chmod 600 {}", key_file.display())),
        "{err}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let server = Server::start_with(&data, &[&["--no-index"][..], &signing].concat());
    let events = tmp.path().join("events.ndjson");
    ingest(&server, &events, 0, 50);
    wait_for_checkpoint(&server, &vkey, 50);
    server.stop();
    assert!(
        !data.join("log.key").exists(),
        "no key in the data directory"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("log.pub"))
            .unwrap()
            .trim(),
        vkey
    );
    // The directory verifies with the public key alone.
    let out = ok(&tally(&[
        "verify",
        data.to_str().unwrap(),
        "--key",
        &vkey,
        "-q",
    ]));
    assert!(out.contains("50"), "{out}");
    let other = tmp.path().join("other.key");
    let other_vkey = keygen(&other, "audit.test");
    let out = tally(&["verify", data.to_str().unwrap(), "--key", &other_vkey, "-q"]);
    assert_eq!(out.status.code(), Some(1));

    // Without the key, or with another one, the server refuses to start.
    let err = refused(&data, &["--origin", "audit.test"]);
    assert!(
        err.contains("has no log.key") && err.contains("--signing-key"),
        "{err}"
    );
    let err = refused(
        &data,
        &[
            "--signing-key",
            other.to_str().unwrap(),
            "--origin",
            "audit.test",
        ],
    );
    assert!(err.contains("cannot change keys"), "{err}");
    assert!(!data.join("log.key").exists());

    // A directory with its own log.key refuses a different configured key.
    let own = tmp.path().join("own");
    let server = Server::start_with(&own, &["--no-index"]);
    server.stop();
    let err = refused(
        &own,
        &[
            "--signing-key",
            other.to_str().unwrap(),
            "--origin",
            "audit.test",
        ],
    );
    assert!(err.contains("log.key holds a different key"), "{err}");

    // --sign-command needs the public key.
    let out = tally(&[
        "serve",
        "--data",
        tmp.path().join("unused").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--sign-command",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-key"));
}

/// A PKCS#8 DER file of the Ed25519 key in a `tally keygen` file, for OpenSSL.
fn pkcs8_der(key_file: &Path, out: &Path) {
    let text = std::fs::read_to_string(key_file).unwrap();
    let b64 = text.trim().splitn(5, '+').nth(4).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(raw.len(), 33, "0x01 || seed");
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&raw[1..]);
    std::fs::write(out, der).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A signing script that does what its mode file says.
fn write_signer(dir: &Path, der: &Path) -> (PathBuf, PathBuf) {
    let mode = dir.join("mode");
    let script = dir.join("sign.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
# Signs its standard input with OpenSSL, or misbehaves as the mode file says.
set -e
case "$(cat '{mode}')" in
  garbage) echo 'this is not a signature' ;;
  zeros) head -c 64 /dev/zero | base64 -w0 ;;
  fail) echo 'hsm offline' >&2; exit 3 ;;
  hang) sleep 30 ;;
  good)
    msg=$(mktemp)
    trap 'rm -f "$msg"' EXIT
    cat >"$msg"
    openssl pkeyutl -sign -rawin -inkey '{der}' -keyform DER -in "$msg" | base64 -w0
    ;;
esac
"#,
            mode = mode.display(),
            der = der.display()
        ),
    )
    .unwrap();
    (script, mode)
}

/// Waits until /healthz reports a signing failure whose reason contains `what`.
fn wait_degraded(server: &Server, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get("/healthz");
        assert_eq!(status, 200, "{body}");
        if body.contains("\"degraded\"") && body.contains(what) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never degraded by {what}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn issue_7_a_sign_command_signs_and_a_broken_one_never_writes_a_bad_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("log.key");
    let vkey = keygen(&key_file, "tally.localhost");
    let der = tmp.path().join("log.der");
    pkcs8_der(&key_file, &der);
    let (script, mode) = write_signer(tmp.path(), &der);
    let data = tmp.path().join("data");
    let events = tmp.path().join("events.ndjson");
    let command = format!("sh {}", script.display());
    let vkey_file = tmp.path().join("log.pub");
    std::fs::write(&vkey_file, format!("{vkey}\n")).unwrap();
    let args = [
        "--sign-command",
        &command,
        "--log-key",
        vkey_file.to_str().unwrap(),
        "--sign-timeout-ms",
        "300",
    ];

    // OpenSSL holds the key: checkpoints verify.
    std::fs::write(&mode, "good").unwrap();
    let server = Server::start_with(&data, &[&["--no-index"][..], &args].concat());
    ingest(&server, &events, 0, 20);
    wait_for_checkpoint(&server, &vkey, 20);
    assert!(server.get("/healthz").1.contains("\"ok\""));

    // Every kind of broken command: events are still acknowledged, the failure is reported,
    // and nothing it returned is stored.
    let checkpoints = data.join("tenants/default/checkpoints");
    let stored = std::fs::read(&checkpoints).unwrap();
    let mut n = 20;
    for (bad, reported) in [
        ("garbage", "not base64"),
        ("zeros", "does not verify under the log key"),
        ("fail", "hsm offline"),
        ("hang", "did not finish within 300 ms"),
    ] {
        std::fs::write(&mode, bad).unwrap();
        ingest(&server, &events, n, 10);
        n += 10;
        wait_degraded(&server, reported);
    }
    assert_eq!(std::fs::read(&checkpoints).unwrap(), stored);
    let (_, metrics) = server.get_as_admin("/metrics");
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tally_log_checkpoint_sign_failures_total "))
        .expect("failure counter")
        .parse()
        .unwrap();
    assert!(failures >= 4.0, "{failures}");
    assert!(metrics.contains("tally_log_checkpoint_signer_failing 1"));

    // Fixed: signing resumes by itself.
    std::fs::write(&mode, "good").unwrap();
    wait_for_checkpoint(&server, &vkey, n);
    assert!(server.get("/healthz").1.contains("\"ok\""));
    server.stop();

    assert!(!data.join("log.key").exists());
    let out = ok(&tally(&[
        "verify",
        data.to_str().unwrap(),
        "--key",
        vkey_file.to_str().unwrap(),
        "-q",
    ]));
    assert!(out.contains(&n.to_string()), "{out}");
}
