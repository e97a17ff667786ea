//! The `tally` binary end to end: serve, ingest, get, checkpoint, prove, verify (offline,
//! online, --since) and their failures.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{fails, ok, Server, TALLY};

fn ndjson(path: &Path, from: u64, to: u64, bad_line: Option<u64>) {
    let mut s = String::new();
    for i in from..to {
        let ip = if Some(i - from + 1) == bad_line {
            "not-an-ip"
        } else {
            "192.0.2.1"
        };
        s.push_str(&format!(
            r#"{{"id":"{}","time":"2026-05-06T07:08:09.010Z","actor":{{"id":"u{i}","ip":"{ip}"}},"action":"user.login","outcome":"SUCCESS"}}"#,
            uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + u128::from(i))
        ));
        s.push('\n');
        if i % 7 == 0 {
            s.push('\n'); // blank lines are skipped
        }
    }
    std::fs::write(path, s).unwrap();
}

fn wait_for_checkpoint(server: &Server, size: u64) {
    for _ in 0..200 {
        let out = server.tally(&[
            "checkpoint",
            "--key",
            server.dir.join("log.pub").to_str().unwrap(),
        ]);
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).lines().nth(1) == Some(&size.to_string())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("no checkpoint of size {size}");
}

/// The signed size once the log has stopped growing.
fn settled_size(server: &Server) -> u64 {
    let key = server.dir.join("log.pub");
    let mut last = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(150));
        let out = server.tally(&["checkpoint", "--key", key.to_str().unwrap()]);
        let size: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if size == last && size > 0 {
            return size;
        }
        last = size;
    }
    panic!("the log kept growing");
}

#[test]
fn ingest_prove_and_verify_online_offline_and_since() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir);
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap();

    // Ingest 600 events from a file, in batches.
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, 0, 600, None);
    let out = ok(&server.tally(&[
        "ingest",
        events.to_str().unwrap(),
        "--batch-size",
        "128",
        "--quiet",
    ]));
    assert!(out.contains("600 events"), "{out}");
    // Again: every event has an id, so nothing new is stored.
    let out = ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    assert!(out.contains("600 were already stored"), "{out}");

    // A bad line is named (by its line in the file: blank lines count), and what came before
    // it is stored.
    let bad = tmp.path().join("bad.ndjson");
    ndjson(&bad, 600, 700, Some(42));
    let err = fails(&server.tally(&[
        "ingest",
        bad.to_str().unwrap(),
        "--batch-size",
        "10",
        "--quiet",
    ]));
    assert!(
        err.contains("line 48: actor.ip: ") && err.contains("--skip-lines"),
        "{err}"
    );

    wait_for_checkpoint(&server, 640);
    let saved = tmp.path().join("saved.checkpoint");
    ok(&server.tally(&["checkpoint", "--key", key, "--out", saved.to_str().unwrap()]));

    // get, prove inclusion (with a bundle), prove consistency.
    let id = uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + 5).to_string();
    let record = ok(&server.tally(&["get", &id]));
    assert!(
        record.contains(&id) && record.contains("\"u5\""),
        "{record}"
    );
    let bundle = tmp.path().join("proof.json");
    let out = ok(&server.tally(&[
        "prove",
        "inclusion",
        "--key",
        key,
        "--id",
        &id,
        "--bundle",
        bundle.to_str().unwrap(),
    ]));
    assert!(out.contains("OK: leaf 5"), "{out}");
    assert!(std::fs::read_to_string(&bundle)
        .unwrap()
        .contains("tally-inclusion-bundle-v1"));
    let out = ok(&server.tally(&["prove", "--key", key, "consistency", "--from", "17"]));
    assert!(out.starts_with("OK"), "{out}");

    // Search: the index catches up within moments; every search is itself recorded.
    let mut found = String::new();
    for _ in 0..200 {
        found = ok(&server.tally(&["query", "actor:u5 action:user.login"]));
        if !found.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(found.contains(&id) && found.lines().count() == 1, "{found}");
    let table = ok(&server.tally(&[
        "query",
        "actor:u1,u2",
        "--format",
        "table",
        "--oldest-first",
    ]));
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("u1") && l.contains("user.login")),
        "{table}"
    );
    let err = fails(&server.tally(&["query", "actr:u5"]));
    assert!(
        err.contains("column 1") && err.contains("unknown field"),
        "{err}"
    );

    assert!(
        tally_event::is_canonical(found.trim_end().as_bytes()),
        "query prints records byte for byte: {found}"
    );

    // tail: the latest matches, oldest first; -f follows new ones over server-sent events.
    // The index trails the log by a commit interval (more on a loaded machine): wait for the
    // last ingested event to be searchable first.
    for _ in 0..400 {
        if !ok(&server.tally(&["query", "actor:u639"])).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = ok(&server.tally(&["tail", "-n", "3", "action:user.login -action:tally.*"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("\"u637\"") && lines[2].contains("\"u639\""),
        "{out}"
    );
    let mut follower = Command::new(TALLY)
        .args(["tail", "-f", "-n", "0", "actor:zed"])
        .env("TALLY_URL", &server.url)
        .env("TALLY_TOKEN", &server.token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let zed = tmp.path().join("zed.ndjson");
    std::fs::write(
        &zed,
        r#"{"time":"2026-05-06T07:08:09.010Z","actor":{"id":"zed"},"action":"door.open","outcome":"SUCCESS"}"#,
    )
    .unwrap();
    ok(&server.tally(&["ingest", zed.to_str().unwrap(), "--quiet"]));
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail -f printed the new event");
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        line.contains("\"zed\"") && line.contains("door.open"),
        "{line}"
    );

    // The log grows; it is still consistent with the saved checkpoint, online and offline.
    let more = tmp.path().join("more.ndjson");
    ndjson(&more, 1000, 1100, None);
    ok(&server.tally(&["ingest", more.to_str().unwrap(), "--quiet"]));
    // 740 events, plus one audit event per search above.
    let size = settled_size(&server);
    assert!(
        size >= 740 + 3,
        "the searches were not recorded: size {size}"
    );
    let out = ok(&server.tally(&[
        "verify",
        "--key",
        key,
        "--since",
        saved.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        out.contains("consistent with the saved checkpoint") && out.contains("intact"),
        "{out}"
    );
    let out = ok(&server.tally(&["verify", "--key", key, "--quiet"]));
    assert!(
        out.contains(&format!("tenant default: {size} entries")),
        "{out}"
    );

    // A key the log was not signed with is refused.
    let other = "other.example+12345678+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let err = fails(&server.tally(&["checkpoint", "--key", other]));
    assert!(
        err.contains("not a log public key") || err.contains("does not verify"),
        "{err}"
    );

    server.stop();
    let out = ok(&Command::new(TALLY)
        .args([
            "verify",
            dir.to_str().unwrap(),
            "--key",
            key,
            "--since",
            saved.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("{size} records")) && out.contains("no rollback"),
        "{out}"
    );

    // The index is a projection: rebuilt from the log with a progress bar (quiet here).
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    let out = ok(&Command::new(TALLY)
        .args(["reindex", "--data", dir.to_str().unwrap(), "--quiet"])
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap());
    // Tenant default's events and tally-system's two: the admin key's creation and tenant
    // default's, made by its first events.
    assert!(
        out.starts_with(&format!("reindexed {} events of 2 tenants", size + 2)),
        "{out}"
    );

    // Roll the log back to before the saved checkpoint: --since catches it.
    let rolled = tmp.path().join("rolled");
    let segs = dir.join("tenants/default/segments");
    std::fs::create_dir_all(rolled.join("tenants/default/segments")).unwrap();
    std::fs::copy(dir.join("FORMAT"), rolled.join("FORMAT")).unwrap();
    let seg = std::fs::read_dir(&segs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&seg).unwrap();
    // Keep the first 100 frames only.
    let mut at = 0;
    for _ in 0..100 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    std::fs::write(
        rolled
            .join("tenants/default/segments")
            .join(seg.file_name().unwrap()),
        &bytes[..at],
    )
    .unwrap();
    let err = fails(
        &Command::new(TALLY)
            .args([
                "verify",
                rolled.to_str().unwrap(),
                "--key",
                key,
                "--since",
                saved.to_str().unwrap(),
                "--quiet",
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("VERIFICATION FAILED")
            && err.contains("tenant default")
            && err.contains("index 100"),
        "{err}"
    );

    // One changed byte in a record: named with its tenant and index.
    let mut bytes = std::fs::read(&seg).unwrap();
    // The event id of record 300 (actor ids are sealed: not findable in the segment).
    let id300 = uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + 300).to_string();
    let pos = bytes
        .windows(id300.len())
        .position(|w| w == id300.as_bytes())
        .unwrap();
    bytes[pos + 35] = if bytes[pos + 35] == b'd' { b'e' } else { b'd' };
    std::fs::write(&seg, bytes).unwrap();
    let err = fails(
        &Command::new(TALLY)
            .args(["verify", dir.to_str().unwrap(), "--key", key, "--quiet"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("tenant default") && err.contains("index 300"),
        "{err}"
    );

    // Usage errors exit 2.
    let out = Command::new(TALLY)
        .args(["verify", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_teaches_every_command() {
    for cmd in [
        "tail",
        "query",
        "export",
        "reindex",
        "serve",
        "verify",
        "ingest",
        "get",
        "checkpoint",
        "prove",
        "keys",
        "keygen",
    ] {
        let out = Command::new(TALLY).args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(
            text.contains("Example"),
            "{cmd} --help has no example:\n{text}"
        );
    }
}

#[test]
fn export_every_format_and_verify_it_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir);
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap();
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, 0, 300, None);
    ok(&server.tally(&["ingest", events.to_str().unwrap()]));
    wait_for_checkpoint(&server, 300);

    for ext in ["jsonl", "csv", "parquet"] {
        // Filtered: two actors' events.
        let out = tmp.path().join(format!("some.{ext}"));
        let text = ok(&server.tally(&[
            "export",
            "actor:u7,u8",
            "-o",
            out.to_str().unwrap(),
            "--key",
            key,
            "-q",
        ]));
        assert!(text.contains("exported 2 records"), "{text}");
        let text = ok(&server.tally(&[
            "verify",
            "--export",
            out.to_str().unwrap(),
            "--key",
            key,
            "-q",
        ]));
        assert!(text.contains("OK: 2 records"), "{text}");
        assert!(
            text.contains("cannot prove that no other record matched"),
            "{text}"
        );
        // A script that needs completeness says so, and a filtered export fails it.
        let e = fails(&server.tally(&[
            "verify",
            "--export",
            out.to_str().unwrap(),
            "--key",
            key,
            "--require-complete",
            "-q",
        ]));
        assert!(
            e.contains("--require-complete") && e.contains("cannot prove"),
            "{e}"
        );

        // Unfiltered range: complete.
        let out = tmp.path().join(format!("range.{ext}"));
        ok(&server.tally(&[
            "export",
            "--from",
            "100",
            "--to",
            "250",
            "-o",
            out.to_str().unwrap(),
            "--key",
            key,
            "-q",
        ]));
        let text = ok(&server.tally(&[
            "verify",
            "--export",
            out.to_str().unwrap(),
            "--key",
            key,
            "-q",
        ]));
        assert!(text.contains("OK: 150 records"), "{text}");
        assert!(text.contains("[100, 250) (complete)"), "{text}");
        ok(&server.tally(&[
            "verify",
            "--export",
            out.to_str().unwrap(),
            "--key",
            key,
            "--require-complete",
            "-q",
        ]));
        // An existing file is not replaced without --force.
        let e = fails(&server.tally(&["export", "-o", out.to_str().unwrap(), "--key", key, "-q"]));
        assert!(e.contains("--force"), "{e}");
    }

    // Tampering with the CSV is caught offline.
    let csv = tmp.path().join("range.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    // Record 120's event id (actor ids are sealed in records, and so in their columns).
    let id120 = uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + 120).to_string();
    let id121 = uuid::Uuid::from_u128(0xabc0_0000_0000_4000_8000_0000_0000_0000 + 121).to_string();
    std::fs::write(&csv, text.replacen(&id120, &id121, 1)).unwrap();
    let e = fails(&server.tally(&[
        "verify",
        "--export",
        csv.to_str().unwrap(),
        "--key",
        key,
        "-q",
    ]));
    assert!(e.contains("column id does not match"), "{e}");
    // Same values, other bytes (a space): the columns agree, the proof does not.
    let at = text.find(&format!("\"\"{id120}\"\"")).unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail.replacen("\"\"outcome\"\":", "\"\"outcome\"\": ", 1);
    std::fs::write(&csv, format!("{head}{tail}")).unwrap();
    let e = fails(&server.tally(&[
        "verify",
        "--export",
        csv.to_str().unwrap(),
        "--key",
        key,
        "-q",
    ]));
    // The record as shown (kept beside it) no longer matches the record hashed: caught
    // before the proof is even checked.
    assert!(e.contains("differs from the record hashed"), "{e}");

    // Mistakes get messages that say what to do.
    let e = fails(&server.tally(&["export", "-o", tmp.path().join("x.txt").to_str().unwrap()]));
    assert!(e.contains(".jsonl, .csv or .parquet"), "{e}");
    let e = fails(&server.tally(&["verify", "--export", csv.to_str().unwrap()]));
    assert!(e.contains("--key"), "{e}");
    let e = fails(&server.tally(&[
        "export",
        "actor:",
        "-o",
        tmp.path().join("y.jsonl").to_str().unwrap(),
        "--key",
        key,
    ]));
    assert!(e.contains("HTTP 400"), "{e}");
    assert!(!tmp.path().join("y.jsonl").exists());
}

/// Issue 7: a torn write after the last record (what a crash or a full disk leaves) is a
/// warning with exit 0; damage inside the signed history stays exit 1; a saved checkpoint of
/// another tenant than `--tenant` is a usage error (exit 2), not a claim about the log.
#[test]
fn issue_7_verify_warns_on_a_torn_tail_and_names_contradicting_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir);
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, 0, 20, None);
    ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    wait_for_checkpoint(&server, 20);
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap().to_string();
    let saved = tmp.path().join("default.checkpoint");
    ok(&server.tally(&[
        "checkpoint",
        "--key",
        &key,
        "--out",
        saved.to_str().unwrap(),
    ]));
    server.stop();

    let segments = dir.join("tenants/default/segments");
    let seg = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let intact = std::fs::read(&seg).unwrap();
    let mut torn = intact.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 20, 0, 0]);
    std::fs::write(&seg, &torn).unwrap();
    let out = Command::new(TALLY)
        .args(["verify", dir.to_str().unwrap(), "--key", &key, "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("torn write of 11 bytes"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // Cut into the last signed record instead: damage, exit 1.
    std::fs::write(&seg, &intact[..intact.len() - 3]).unwrap();
    let out = Command::new(TALLY)
        .args(["verify", dir.to_str().unwrap(), "--key", &key, "--quiet"])
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("VERIFICATION FAILED") && err.contains("index 19"),
        "{err}"
    );
    std::fs::write(&seg, &intact).unwrap();

    let out = Command::new(TALLY)
        .args([
            "verify",
            dir.to_str().unwrap(),
            "--key",
            &key,
            "--tenant",
            "acme",
        ])
        .arg("--since")
        .arg(&saved)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tenant default") && stderr.contains("--tenant acme"),
        "{stderr}"
    );
}

/// Two copies of one log that each took different events after a common prefix: each is
/// consistent with checkpoints signed by the same key, so only the other copy exposes the
/// fork, and `--compare` names its exact first index (not a range).
#[test]
fn issue_7_compare_names_the_exact_index_where_two_copies_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir);
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, 0, 257, None);
    ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    wait_for_checkpoint(&server, 257);
    server.stop();
    let copy = |to: &str| {
        let to = tmp.path().join(to);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&to)
            .status()
            .unwrap()
            .success());
        // The admin token is written at the first start only.
        std::fs::copy(dir.with_extension("token"), to.with_extension("token")).unwrap();
        to
    };
    let behind = copy("behind");
    let fork = copy("fork");

    let grow = |at: &Path, from: u64, to: u64| {
        let server = Server::start(at);
        ndjson(&events, from, to, None);
        ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
        wait_for_checkpoint(&server, 257 + to - from);
        server
    };
    grow(&dir, 257, 300).stop();
    let fork_server = grow(&fork, 1000, 1043);
    let (fork_url, fork_token) = (fork_server.url.clone(), fork_server.token.clone());
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap();
    let verify = |args: &[&str]| {
        Command::new(TALLY)
            .args(["verify", "--key", key, "--quiet", "--token", &fork_token])
            .args(args)
            .env("TALLY_LOG", "warn")
            .output()
            .unwrap()
    };

    // Each copy on its own is intact.
    ok(&verify(&[dir.to_str().unwrap()]));
    ok(&verify(&[fork.to_str().unwrap()]));
    // A copy that is only behind agrees.
    let out = ok(&verify(&[
        dir.to_str().unwrap(),
        "--compare",
        behind.to_str().unwrap(),
    ]));
    assert!(
        out.contains("same history (300 records here, 257 there; the other copy is behind)"),
        "{out}"
    );
    // The fork, against the running server and against its stopped directory, either way round.
    for args in [
        vec![dir.to_str().unwrap(), "--compare", fork_url.as_str()],
        vec![
            "--url",
            fork_url.as_str(),
            "--compare",
            dir.to_str().unwrap(),
        ],
    ] {
        let err = fails(&verify(&args));
        assert!(
            err.contains("fork at index 257") && err.contains("re-signed"),
            "{args:?}: {err}"
        );
    }
    fork_server.stop();
    let err = fails(&verify(&[
        dir.to_str().unwrap(),
        "--compare",
        fork.to_str().unwrap(),
    ]));
    assert!(err.contains("fork at index 257"), "{err}");
    assert!(
        err.contains("here up to size 300, there up to size 300"),
        "{err}"
    );
}

/// `tally query … | head -1`: when the reader goes away the command ends quietly, as Unix
/// tools do, instead of panicking with "failed printing to stdout: Broken pipe".
#[test]
fn issue_8_output_piped_into_head_ends_quietly() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    /// SIGPIPE's number on Linux.
    const SIGPIPE: i32 = 13;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let events = tmp.path().join("events.ndjson");
    // Far more output than a pipe buffers, so the writer is still writing when the reader leaves.
    ndjson(&events, 0, 3000, None);
    ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    wait_for_checkpoint(&server, 3000);
    server.wait_for_consumers();
    for args in [
        vec!["query", "", "--all", "--limit", "1000"],
        vec!["query", "", "--all", "--limit", "1000", "--format", "table"],
    ] {
        let mut child = Command::new(TALLY)
            .args(&args)
            .env("TALLY_URL", &server.url)
            .env("TALLY_TOKEN", &server.token)
            .env("TALLY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.trim().is_empty(), "{args:?}: {first}");
        // The reader is gone now.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(
            out.status.success() || out.status.signal() == Some(SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}

/// Sends SIGTERM to `child` as soon as `ready` exists, and returns how the process ended.
fn sigterm_once(mut child: std::process::Child, ready: &Path) -> std::process::ExitStatus {
    for _ in 0..2000 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(ready.exists(), "{} never appeared", ready.display());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}

/// A stop asked for while a server starts (a service manager's SIGTERM the moment the process
/// shows life) finishes the start and stops in order, exiting 0, instead of the signal's
/// default action killing it half-started.
#[test]
fn sigterm_while_starting_stops_the_server_and_the_witness_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let serve = Command::new(TALLY)
        .args(["serve", "--no-index", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The data directory is the first thing the server creates.
    let status = sigterm_once(serve, &data);
    assert!(status.success(), "tally serve ended with {status}");
    // It started fully before stopping: the directory opens again and verifies.
    ok(&Command::new(TALLY)
        .args(["verify", data.to_str().unwrap(), "-q"])
        .output()
        .unwrap());

    let key = tmp.path().join("log.key");
    let vkey = ok(&Command::new(TALLY)
        .args([
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--name",
            "audit.test",
        ])
        .output()
        .unwrap());
    let state = tmp.path().join("witness");
    let witness = Command::new(TALLY)
        .args(["witness", "--state"])
        .arg(&state)
        .args(["--name", "w.test", "--listen", "127.0.0.1:0", "--log"])
        .arg(format!("audit.test={}", vkey.trim()))
        .env("TALLY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = sigterm_once(witness, &state);
    assert!(status.success(), "tally witness ended with {status}");
}

/// `tally reindex` reads the log without the writer's lock, so it runs beside a server that
/// owns the log but not the index (`--no-index`), reading up to the last signed checkpoint;
/// a server that has the index open keeps it to itself, and reindex says so without
/// touching it.
#[test]
fn reindex_reads_the_log_beside_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, 0, 40, None);
    let reindex = || {
        Command::new(TALLY)
            .args(["reindex", "--data", dir.to_str().unwrap(), "--quiet"])
            .env("TALLY_LOG", "warn")
            .output()
            .unwrap()
    };

    let server = Server::start_with(&dir, &["--no-index"]);
    ok(&server.tally(&["ingest", events.to_str().unwrap(), "--quiet"]));
    let size = settled_size(&server);
    assert!(size >= 40, "{size}");
    let out = ok(&reindex());
    // Also the two server events in tally-system's log: the admin key's creation and tenant
    // default's, made by its first events.
    assert!(
        out.starts_with(&format!("reindexed {} events of 2 tenants", size + 2)),
        "{out}"
    );
    server.stop();

    // The server with its index takes over the rebuilt one and finds every event in it.
    let server = Server::start(&dir);
    server.wait_for_consumers();
    let out = ok(&server.tally(&["query", "action:user.login", "--limit", "1000"]));
    assert_eq!(out.lines().count(), 40, "{out}");
    // While it runs, the index is its own: reindex refuses and changes nothing.
    let out = reindex();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open in another process"), "{err}");
    let again = ok(&server.tally(&["query", "action:user.login", "--limit", "1000"]));
    assert_eq!(again.lines().count(), 40, "{again}");
    server.stop();
}

/// `tally keys` creates a key (its token on standard output, once; its id on standard error),
/// lists keys without secrets, and revokes one; the revoked token is refused.
#[test]
fn keys_are_created_listed_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let out = server.tally(&[
        "keys", "create", "billing", "--scope", "ingest", "--tenant", "acme",
    ]);
    let token = ok(&out).trim().to_string();
    assert_eq!(token.lines().count(), 1, "{token}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let id = err
        .strip_prefix("key ")
        .and_then(|rest| rest.split_once(" created"))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("no key id in {err:?}"));
    assert!(!id.contains('"'), "the id is printed bare: {id}");
    let list = ok(&server.tally(&["keys", "list"]));
    let keys: serde_json::Value = serde_json::from_str(&list).unwrap();
    let billing = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {list}"));
    assert_eq!(billing["name"], "billing");
    assert!(!list.contains(&token), "no secret in the list");
    let out = ok(&server.tally(&["keys", "revoke", &id]));
    assert!(out.contains("revoked"), "{out}");
    let events = tmp.path().join("one.ndjson");
    ndjson(&events, 0, 1, None);
    let refused = Command::new(TALLY)
        .args([
            "ingest",
            events.to_str().unwrap(),
            "--tenant",
            "acme",
            "--quiet",
        ])
        .env("TALLY_URL", &server.url)
        .env("TALLY_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    server.stop();
}

/// `--admin-token-file` given as a bare file name is written in the working directory (it
/// used to fail: the empty parent directory could not be synced, and the server exited).
#[test]
fn a_token_file_named_without_a_directory_is_written_in_the_working_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = Command::new(TALLY)
        .current_dir(tmp.path())
        .args(["serve", "--data", "data", "--no-index", "--no-alerts"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-token-file", "tok"])
        .env("TALLY_LOG", "warn")
        .env_remove("TALLY_SIGNING_KEY")
        .env_remove("TALLY_SIGN_COMMAND")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let token = tmp.path().join("tok");
    for _ in 0..400 {
        if token.exists() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tally serve exited with {status} instead of writing ./tok");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    let written = std::fs::read_to_string(&token).expect("./tok written");
    assert!(written.trim().starts_with("tly_"), "{written}");
}
