//! Encryption at rest with the real binary: an operator makes a key-encryption key, serves
//! with it, rotates a tenant's data key, and finds no event content in the clear anywhere in
//! the data directory; `tally verify` checks the structure without the key and every record
//! with it; a server without the key, or with a wrong one, refuses to start; the key is
//! replaced with `tally kek rewrap`; a changed ciphertext is caught.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fails, ok, Server, TALLY};

fn tally(args: &[&str]) -> std::process::Output {
    Command::new(TALLY)
        .args(args)
        .env("TALLY_LOG", "warn")
        .env_remove("TALLY_KEK_FILE")
        .output()
        .unwrap()
}

fn make_kek(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let key = ok(&tally(&["kek", "generate"]));
    assert_eq!(key.trim().len(), 64, "{key}");
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Files of `dir` holding `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .collect()
}

fn start_failure(data: &Path, extra: &[&str]) -> String {
    let out = common::serve_command(data, common::free_port(), extra)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_operator_encrypts_at_rest_rotates_verifies_and_replaces_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let kek = tmp.path().join("kek");
    make_kek(&kek);
    let kek_arg = kek.to_str().unwrap();
    let server = Server::start_with(&data, &["--kek-file", kek_arg]);
    ok(&server.tally(&["tenants", "create", "acme"]));
    ok(&server.tally(&["tenants", "policy", "acme", "--path", "after.email=value"]));
    let event = |n: u32| {
        serde_json::json!({
            "time": "2026-11-30T10:00:00Z",
            "actor": {"id": "quentin-8zx", "ip": "198.51.100.23"},
            "action": "user.update", "outcome": "SUCCESS",
            "resource": {"type": "USER", "id": "quentin-8zx"},
            "after": {"email": "quentin@mail.example", "plan": format!("plan-marker-{n}")},
            "metadata": {"note": "plain-marker-7hy"}
        })
    };
    server
        .ingest_acme(&serde_json::json!([event(1), event(2), event(2)]))
        .await;
    let keys = ok(&server.tally(&["tenants", "data-keys", "acme"]));
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["encryption"], true);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let rotated = ok(&server.tally(&["tenants", "data-keys", "acme", "--rotate"]));
    let rotated: serde_json::Value = serde_json::from_str(&rotated).unwrap();
    assert_eq!(rotated["keys"][1]["id"], 2);
    assert_eq!(rotated["keys"][1]["current"], true);
    server.ingest_acme(&serde_json::json!([event(3)])).await;
    // Records under both keys read back in the clear for a reader with read:pii.
    for index in ["0", "4"] {
        let shown = ok(&server.tally(&["get", index, "--tenant", "acme"]));
        assert!(shown.contains("plain-marker-7hy"), "{shown}");
        assert!(shown.contains("quentin@mail.example"), "{shown}");
    }
    // The search index (encrypted too) finds them, by a personal value and by free text.
    server.wait_for_consumers();
    let found = ok(&server.tally(&["query", "actor:quentin-8zx", "--tenant", "acme"]));
    assert_eq!(found.matches("plain-marker-7hy").count(), 4, "{found}");
    let found = ok(&server.tally(&["query", "plan-marker-3", "--tenant", "acme"]));
    assert_eq!(found.matches("plain-marker-7hy").count(), 1, "{found}");
    // An export with the values in the clear proves each of them offline.
    let export = tmp.path().join("acme.csv");
    let pubkey = data.join("log.pub");
    let out = ok(&server.tally(&[
        "export",
        "actor:quentin-8zx",
        "--tenant",
        "acme",
        "-o",
        export.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
        "-q",
    ]));
    assert!(out.contains("exported 4 records"), "{out}");
    let out = ok(&server.tally(&[
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
        "-q",
    ]));
    assert!(
        out.contains("personal values (clear view): 16 shown in the clear"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&export)
        .unwrap()
        .contains("quentin@mail.example"));
    std::fs::remove_file(&export).unwrap();
    std::fs::remove_file(tally_export::csv_sidecar(&export)).unwrap();
    server.stop();

    // No event content in the clear in any file (records, keys, search index): neither
    // personal values nor the rest.
    assert!(data.join("index/acme/meta.json").exists());
    for needle in [
        "plain-marker-7hy",
        "plan-marker-3",
        "quentin",
        "198.51.100.23",
        "user.update",
    ] {
        assert_eq!(holding(&data, needle), Vec::<PathBuf>::new(), "{needle}");
    }

    let vkey = data.join("log.pub");
    let vkey = vkey.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    let structure = ok(&tally(&["verify", data_arg, "--key", vkey, "-q"]));
    assert!(
        structure.contains("their content is not checked"),
        "{structure}"
    );
    assert!(structure.contains("--kek-file"), "{structure}");
    let full = ok(&tally(&[
        "verify",
        data_arg,
        "--key",
        vkey,
        "-q",
        "--kek-file",
        kek_arg,
    ]));
    assert!(full.contains("each decrypted and checked"), "{full}");

    // An offline rebuild of the index needs the key, and writes it encrypted too.
    let err = fails(&tally(&["reindex", "--data", data_arg, "--quiet"]));
    assert!(err.contains("--kek-file"), "{err}");
    ok(&tally(&[
        "reindex",
        "--data",
        data_arg,
        "--quiet",
        "--kek-file",
        kek_arg,
    ]));
    assert_eq!(holding(&data, "plain-marker-7hy"), Vec::<PathBuf>::new());

    // Without the key, or with another one, the server does not start.
    let err = start_failure(&data, &[]);
    assert!(
        err.contains("encrypted at rest") && err.contains("--kek-file"),
        "{err}"
    );
    let other = tmp.path().join("other.kek");
    make_kek(&other);
    let err = start_failure(&data, &["--kek-file", other.to_str().unwrap()]);
    assert!(err.contains("not by the one given"), "{err}");

    // The key is replaced: the old one no longer opens the data, the new one does.
    let out = ok(&tally(&[
        "kek",
        "rewrap",
        "--data",
        data_arg,
        "--kek-file",
        kek_arg,
        "--new-kek-file",
        other.to_str().unwrap(),
    ]));
    assert!(out.contains("rewrapped the data keys of"), "{out}");
    let err = start_failure(&data, &["--kek-file", kek_arg]);
    assert!(err.contains("not by the one given"), "{err}");
    let server = {
        // The key from an environment variable this time.
        std::env::set_var("TEST_KEK", std::fs::read_to_string(&other).unwrap().trim());
        Server::start_with(&data, &["--kek-env", "TEST_KEK"])
    };
    let shown = ok(&server.tally(&["get", "4", "--tenant", "acme"]));
    assert!(shown.contains("plan-marker-3"), "{shown}");
    let found = ok(&server.tally(&["query", "plan-marker-3", "--tenant", "acme"]));
    assert_eq!(found.matches("plain-marker-7hy").count(), 1, "{found}");
    // An export with the values in the clear proves each of them offline.
    let export = tmp.path().join("acme.csv");
    let pubkey = data.join("log.pub");
    let out = ok(&server.tally(&[
        "export",
        "actor:quentin-8zx",
        "--tenant",
        "acme",
        "-o",
        export.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
        "-q",
    ]));
    assert!(out.contains("exported 4 records"), "{out}");
    let out = ok(&server.tally(&[
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
        "-q",
    ]));
    assert!(
        out.contains("personal values (clear view): 16 shown in the clear"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&export)
        .unwrap()
        .contains("quentin@mail.example"));
    std::fs::remove_file(&export).unwrap();
    std::fs::remove_file(tally_export::csv_sidecar(&export)).unwrap();
    server.stop();

    // A changed ciphertext, its frame checksum fixed up: the structure still verifies, the
    // content does not.
    let segments = data.join("tenants/acme/segments");
    let segment = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    bytes[16 + len - 20] ^= 0x20;
    let mut crc = crc32c::crc32c(&bytes[16..16 + len]);
    crc = crc32c::crc32c_append(crc, &bytes[8..16]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segment, bytes).unwrap();
    ok(&tally(&["verify", data_arg, "--key", vkey, "-q"]));
    let err = fails(&tally(&[
        "verify",
        data_arg,
        "--key",
        vkey,
        "-q",
        "--kek-env",
        "TEST_KEK",
    ]));
    assert!(err.contains("does not decrypt"), "{err}");
}
