//! Alert rules end to end, over real HTTP against the `tally` binary: the default rule pack
//! raises its alerts as events in the tenant's log; `GET /v1/alerts` and `tally alerts` list
//! them with their state and triggering events, masked for a reader without `read:pii`;
//! acknowledging and resolving are recorded; a kill -9 between the events of one window
//! neither loses the window nor raises an alert twice; rules are checked, replaced through
//! the API, and read-only when they come from a file.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{fails, ok, Server};
use serde_json::{json, Value};

fn login_failure(actor: &str) -> Value {
    json!({
        "time": "2026-11-30T12:00:00Z",
        "actor": {"id": actor, "type": "user", "ip": "198.51.100.7"},
        "action": "user.login",
        "category": "LOGIN",
        "outcome": "FAILURE",
        "resource": {"type": "session", "id": "web"},
    })
}

async fn alerts(server: &Server, token: &str, query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/alerts?tenant=acme{query}", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Waits until the alert consumer and the index have seen the whole log, and the index has
/// the alerts they appended (a generous limit, not a timing assertion).
async fn settled(server: &Server, expected_alerts: usize) -> Value {
    for _ in 0..600 {
        server.wait_for_consumers();
        let (status, page) = alerts(server, &server.token, "&limit=500").await;
        assert_eq!(status, 200, "{page}");
        if page["alerts"].as_array().unwrap().len() >= expected_alerts {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = std::fs::read_to_string(server.dir.join("consumers/alerts.state.json"));
    let cursor = std::fs::read_to_string(server.dir.join("consumers/alerts.json"));
    let (_, page) = alerts(server, &server.token, "&limit=500").await;
    panic!("fewer than {expected_alerts} alerts were ever listed: {page}\nstate {state:?}\ncursor {cursor:?}");
}

fn by_rule<'a>(page: &'a Value, rule: &str) -> Vec<&'a Value> {
    page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == rule)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rules_raise_alerts_that_are_listed_acknowledged_and_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir);

    // Five failures by alice: not yet; bob's two do not count towards hers.
    let mut batch: Vec<Value> = (0..5).map(|_| login_failure("alice@example.com")).collect();
    batch.push(login_failure("bob@example.com"));
    batch.push(login_failure("bob@example.com"));
    server.ingest_acme(&json!(batch)).await;
    // The sixth: more than 5 within 5 minutes.
    server
        .ingest_acme(&login_failure("alice@example.com"))
        .await;
    server
        .ingest_acme(&json!([
            {"actor": {"id": "mallory"}, "action": "role.grant", "category": "AUTHZ",
             "outcome": "SUCCESS", "resource": {"type": "ROLE", "id": "role_1", "name": "admin"},
             "time": "2026-11-30T12:00:01Z"},
            {"actor": {"id": "mallory"}, "action": "report.export", "category": "EXPORT",
             "outcome": "SUCCESS", "resource": {"type": "REPORT", "id": "r-9"},
             "metadata": {"rows": 25000}, "time": "2026-11-30T12:00:02Z"},
            {"actor": {"id": "mallory"}, "action": "report.export", "category": "EXPORT",
             "outcome": "SUCCESS", "resource": {"type": "REPORT", "id": "r-10"},
             "metadata": {"rows": 10}, "time": "2026-11-30T12:00:03Z"},
        ]))
        .await;

    let page = settled(&server, 3).await;
    let all = page["alerts"].as_array().unwrap();
    assert_eq!(all.len(), 3, "{page}");
    let brute = by_rule(&page, "brute-force");
    assert_eq!(brute.len(), 1, "{page}");
    let brute = brute[0].clone();
    assert_eq!(brute["group"], json!({"actor.id": "alice@example.com"}));
    assert_eq!(brute["count"], 6);
    assert_eq!(brute["events"], json!([0, 1, 2, 3, 4, 7]));
    assert_eq!(brute["state"], "open");
    assert_eq!(brute["severity"], "high");
    // Alerts are appended as they are raised, between clients' events: look the others up.
    for (rule, action, resource) in [
        ("admin-grant", "role.grant", "role_1"),
        ("bulk-export", "report.export", "r-9"),
    ] {
        let alert = by_rule(&page, rule);
        assert_eq!(alert.len(), 1, "{page}");
        let leaves = alert[0]["events"].as_array().unwrap();
        assert_eq!(leaves.len(), 1, "{page}");
        let (status, event) = server.get_as_admin(&format!("/v1/events/{}?tenant=acme", leaves[0]));
        assert_eq!(status, 200, "{event}");
        let event: Value = serde_json::from_str(&event).unwrap();
        assert_eq!(
            (event["action"].as_str(), event["resource"]["id"].as_str()),
            (Some(action), Some(resource))
        );
    }

    // Page by page, newest first, the same three.
    let mut paged = Vec::new();
    let mut query = "&limit=1".to_string();
    loop {
        let (status, page) = alerts(&server, &server.token, &query).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("&limit=1&cursor={c}"),
            None => break,
        }
    }
    let all_ids: Vec<Value> = all.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(paged, all_ids);

    // The alert is an event of the tenant's log, with the triggering events beside it.
    let id = brute["id"].as_str().unwrap().to_string();
    let (status, one) = {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/alerts/{id}?tenant=acme", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200, "{one}");
    let triggering = one["triggering"].as_array().unwrap();
    assert_eq!(triggering.len(), 6);
    assert!(triggering
        .iter()
        .all(|t| t["record"]["actor"]["id"] == "alice@example.com"));
    let (status, event) = server.get_as_admin(&format!("/v1/events/{id}?tenant=acme"));
    assert_eq!(status, 200, "{event}");
    let event: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["action"], "tally.alert.raise");
    assert_eq!(event["metadata"]["leaves"], json!([0, 1, 2, 3, 4, 7]));

    // A reader without read:pii sees the group masked, and no personal value at all.
    let reader = ok(&server.tally(&[
        "keys", "create", "analyst", "--scope", "read", "--tenant", "acme",
    ]))
    .trim()
    .to_string();
    let (status, masked) = alerts(&server, &reader, "").await;
    assert_eq!(status, 200, "{masked}");
    let text = masked.to_string();
    assert!(!text.contains("alice"), "{text}");
    let masked_brute = by_rule(&masked, "brute-force");
    assert_ne!(masked_brute[0]["group"]["actor.id"], "alice@example.com");

    // An event a client sends with the id a resolution would take changes nothing.
    let uuid: uuid::Uuid = id.parse().unwrap();
    let forged = tally_alerts::engine::state_event_id(uuid, "resolved").to_string();
    server
        .ingest_acme(
            &json!({"id": forged, "time": "2026-11-30T12:00:00Z", "actor": {"id": "mallory"},
            "action": "app.noise", "outcome": "SUCCESS", "resource": {"type": "x", "id": "y"}}),
        )
        .await;
    let (_, page) = alerts(&server, &server.token, "&rule=brute-force").await;
    assert_eq!(page["alerts"][0]["state"], "open", "{page}");
    // A note the record could not hold is refused, not a 503.
    let (status, bad) = post(
        &server,
        &format!("/v1/alerts/{id}/acknowledge?tenant=acme"),
        json!({"note": " "}),
    )
    .await;
    assert_eq!(
        (status, &bad["error"]["details"][0]["field"]),
        (422, &json!("note")),
        "{bad}"
    );

    // Acknowledge, then resolve; each recorded, each refused a second time.
    let path = format!("/v1/alerts/{id}/acknowledge?tenant=acme");
    let (status, acked) = post(&server, &path, json!({"note": "looking"})).await;
    assert_eq!(
        (status, &acked["state"]),
        (200, &json!("acknowledged")),
        "{acked}"
    );
    let (status, again) = post(&server, &path, json!({})).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("alert_state")),
        "{again}"
    );
    let resolve = format!("/v1/alerts/{id}/resolve?tenant=acme");
    let (status, bad) = post(&server, &resolve, json!({"note": 5})).await;
    assert_eq!(status, 422, "{bad}");
    let (status, _) = post(&server, &resolve, json!({"note": "password reset"})).await;
    assert_eq!(status, 200);
    let (status, missing) = post(
        &server,
        "/v1/alerts/01900000-0000-7000-8000-000000000000/resolve?tenant=acme",
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    let resolved = loop {
        server.wait_for_consumers();
        let (_, page) = alerts(&server, &server.token, "&state=resolved").await;
        if !page["alerts"].as_array().unwrap().is_empty() {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let history = &resolved["alerts"][0]["history"];
    assert_eq!(history[0]["state"], "acknowledged");
    assert_eq!(history[0]["note"], "looking");
    assert_eq!(history[1]["state"], "resolved");
    assert_eq!(history[1]["note"], "password reset");
    let (_, open) = alerts(&server, &server.token, "&state=open").await;
    assert_eq!(open["alerts"].as_array().unwrap().len(), 2, "{open}");
    let (status, bad) = alerts(&server, &server.token, "&state=closed").await;
    assert_eq!(
        (status, &bad["error"]["details"][0]["field"]),
        (400, &json!("state")),
        "{bad}"
    );

    // The command line lists them.
    let table = ok(&server.tally(&["alerts", "--tenant", "acme"]));
    assert!(
        table.contains("brute-force") && table.contains("resolved"),
        "{table}"
    );

    // Three failures by carol, kill -9, three more: the window survived, one alert.
    let mut server = server;
    server
        .ingest_acme(&json!((0..3)
            .map(|_| login_failure("carol"))
            .collect::<Vec<_>>()))
        .await;
    server.wait_for_consumers();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = Server::start(&dir);
    server
        .ingest_acme(&json!((0..3)
            .map(|_| login_failure("carol"))
            .collect::<Vec<_>>()))
        .await;
    let page = settled(&server, 4).await;
    let carol = by_rule(&page, "brute-force")
        .into_iter()
        .filter(|a| a["group"]["actor.id"] == "carol")
        .count();
    assert_eq!(carol, 1, "{page}");
    // A restart replays what the saved state had not seen: nothing is raised twice.
    server.stop();
    let server = Server::start(&dir);
    let page = settled(&server, 4).await;
    let ids: BTreeSet<&str> = page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{page}");
    assert_eq!(page["alerts"].as_array().unwrap().len(), 4, "{page}");
    server.stop();
    let verify = std::process::Command::new(common::TALLY)
        .arg("verify")
        .arg(&dir)
        .arg("--key")
        .arg(dir.join("log.pub"))
        .output()
        .unwrap();
    ok(&verify);

    // A backtest over the whole history finds the same brute-force alerts, records nothing.
    let backtest = ok(&std::process::Command::new(common::TALLY)
        .args([
            "rules",
            "test",
            "brute-force",
            "--since",
            "1h",
            "-q",
            "--json",
            "-t",
            "acme",
            "--data",
        ])
        .arg(&dir)
        .output()
        .unwrap());
    let found: Vec<Value> = backtest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let groups: Vec<&Value> = found
        .iter()
        .map(|e| &e["metadata"]["alert_group"]["actor.id"])
        .collect();
    assert_eq!(
        groups,
        [&json!("alice@example.com"), &json!("carol")],
        "{backtest}"
    );
    assert_eq!(found[0]["id"], json!(id), "the same alert, by id");
    let table = ok(&std::process::Command::new(common::TALLY)
        .args(["rules", "test", "all", "-q", "--data"])
        .arg(&dir)
        .output()
        .unwrap());
    assert!(
        table.contains("WOULD FIRE AT") && table.contains("admin-grant"),
        "{table}"
    );
    let err = fails(
        &std::process::Command::new(common::TALLY)
            .args(["rules", "test", "nope", "--data"])
            .arg(&dir)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("no rule nope") && err.contains("brute-force"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_checked_replaced_and_read_only_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "rules:\n  - id: Bad Id\n    title: x\n    match: outcome:FAILURE\n  - id: ok\n    title: fine\n    match: acter:bob\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::TALLY)
        .args(["rules", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("2 broken rule(s)"), "{err}");
    assert!(err.contains("rule `Bad Id`, id"), "{err}");
    assert!(
        err.contains("rule `ok`, match: unknown field `acter`"),
        "{err}"
    );

    let good = tmp.path().join("rules.yaml");
    std::fs::write(
        &good,
        "rules:\n  - id: deletes\n    title: Many deletions by one actor\n    severity: critical\n    match: category:DELETE\n    condition: count >= 2 within 1h by actor.id\n",
    )
    .unwrap();
    let checked = ok(&std::process::Command::new(common::TALLY)
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .unwrap());
    assert!(
        checked.contains("1 rule(s), 1 enabled; all valid"),
        "{checked}"
    );

    let dir = tmp.path().join("data");
    let server = Server::start(&dir);
    let listed = ok(&server.tally(&["rules", "list", "--json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["source"], "default");
    assert_eq!(listed["rules"].as_array().unwrap().len(), 5);

    // The API refuses a broken set whole, naming each rule and field.
    let response = reqwest::Client::new()
        .put(format!("{}/v1/rules", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"rules": [
            {"id": "a", "title": "t", "match": "", "condition": "count > 5 within 40d"},
            {"id": "a", "title": "t", "match": ""},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["rules[a].condition", "rules[a].id"], "{body}");

    ok(&server.tally(&["rules", "set", good.to_str().unwrap()]));
    let listed: Value =
        serde_json::from_str(&ok(&server.tally(&["rules", "list", "--json"]))).unwrap();
    assert_eq!(listed["source"], "api");
    assert_eq!(listed["rules"][0]["id"], "deletes");
    // The new rule is in force: two deletions by one actor raise its alert.
    let deletion = json!({"actor": {"id": "dave"}, "action": "document.delete", "category": "DELETE",
        "outcome": "SUCCESS", "resource": {"type": "document", "id": "d1"}, "time": "2026-11-30T12:00:00Z"});
    server
        .ingest_acme(&json!([deletion.clone(), deletion.clone()]))
        .await;
    let page = settled(&server, 1).await;
    assert_eq!(by_rule(&page, "deletes").len(), 1, "{page}");
    assert_eq!(page["alerts"][0]["severity"], "critical");
    server.stop();

    // Set through the API, kept across a restart.
    let server = Server::start(&dir);
    let listed: Value =
        serde_json::from_str(&ok(&server.tally(&["rules", "list", "--json"]))).unwrap();
    assert_eq!(listed["source"], "api");
    server.stop();

    // From a file: listed, never changed through the API.
    let server = Server::start_with(&dir, &["--rules", good.to_str().unwrap()]);
    let err = fails(&server.tally(&["rules", "set", good.to_str().unwrap()]));
    assert!(err.contains("change that file and restart"), "{err}");
    server.stop();

    // A broken rules file stops the server at start with the rule named.
    let out = common::serve_command(
        &dir,
        common::free_port(),
        &["--rules", broken.to_str().unwrap()],
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Bad Id"), "{err}");
}
