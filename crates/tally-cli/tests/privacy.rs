//! Personal data with the real binary: an operator sets a tenant's personal paths, places and
//! releases a legal hold, and erases a person; readers see the values erased, the log still
//! verifies, and `tally get` / `tally prove` keep working on sealed records.

mod common;

use common::{fails, ok, Server};

#[tokio::test]
async fn an_operator_sets_a_policy_holds_and_erases_a_person_with_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_with(&data, &["--no-index"]);
    ok(&server.tally(&["tenants", "create", "acme"]));
    let policy = ok(&server.tally(&["tenants", "policy", "acme", "--path", "after.email=value"]));
    assert!(policy.contains("after.email"), "{policy}");
    let err = fails(&server.tally(&["tenants", "policy", "acme", "--path", "actor.email"]));
    assert!(err.contains("actor.email"), "{err}");

    server
        .ingest_acme(&serde_json::json!([
            {"time": "2026-11-30T10:00:00Z", "actor": {"id": "zoe-4kq", "ip": "192.0.2.77"},
             "action": "user.update", "resource": {"type": "USER", "id": "zoe-4kq"},
             "outcome": "SUCCESS", "after": {"email": "zoe-4kq@mail.example"}},
            {"time": "2026-11-30T10:00:01Z", "actor": {"id": "yann-2pw"},
             "action": "user.login", "outcome": "SUCCESS"},
        ]))
        .await;
    let shown = ok(&server.tally(&["get", "0", "--tenant", "acme"]));
    assert!(shown.contains("zoe-4kq@mail.example"), "{shown}");

    ok(&server.tally(&[
        "holds",
        "place",
        "--tenant",
        "acme",
        "--subject",
        "zoe-4kq",
        "--reason",
        "matter 9",
    ]));
    let err = fails(&server.tally(&[
        "erase",
        "--tenant",
        "acme",
        "--subject",
        "zoe-4kq",
        "--reason",
        "request 7",
    ]));
    assert!(err.contains("legal hold"), "{err}");
    ok(&server.tally(&[
        "holds",
        "release",
        "--tenant",
        "acme",
        "--subject",
        "zoe-4kq",
    ]));
    let done = server.tally(&[
        "erase",
        "--tenant",
        "acme",
        "--subject",
        "zoe-4kq",
        "--subject",
        "zoe-4kq@mail.example",
        "--reason",
        "request 7",
    ]);
    let err = String::from_utf8_lossy(&done.stderr).to_string();
    assert!(done.status.success(), "{err}");
    assert!(err.contains("erased 2 subject(s)"), "{err}");
    assert!(err.contains("1 record(s)"), "{err}");

    let shown = ok(&server.tally(&["get", "0", "--tenant", "acme"]));
    assert!(
        shown.contains("tally:erased") && !shown.contains("zoe-4kq"),
        "{shown}"
    );
    let other = ok(&server.tally(&["get", "1", "--tenant", "acme"]));
    assert!(other.contains("yann-2pw"), "{other}");
    // The record's proof still holds: `tally prove` checks the served leaf against it.
    ok(&server.tally(&["prove", "inclusion", "--index", "0", "--tenant", "acme"]));
    server.stop();
    let verified = std::process::Command::new(common::TALLY)
        .args(["verify", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
