//! SIEM sinks end to end, against real receivers: rsyslog (Debian's, started by the test on a
//! free port, writing what it receives to a file) for syslog over TCP with CEF and OCSF, and
//! an HTTP receiver speaking Splunk's HTTP Event Collector protocol. The collector is down at
//! first: its sink's backlog grows without loss and shows in /healthz and /metrics, and it
//! catches up when the collector comes up.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::{json, Value};

fn rsyslogd() -> PathBuf {
    for candidate in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("rsyslogd is not installed: scripts/test installs it (apt-get install rsyslog)");
}

/// rsyslog listening on `port` (TCP, octet counting on), writing each message to `out`.
struct Rsyslog(Child);

impl Rsyslog {
    fn start(dir: &Path, port: u16, out: &Path) -> Rsyslog {
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imtcp\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                 ruleset(name=\"tally\") {{ action(type=\"omfile\" file=\"{out}\" template=\"raw\") }}\n\
                 input(type=\"imtcp\" port=\"{port}\" ruleset=\"tally\")\n",
                dir = dir.display(),
                out = out.display(),
            ),
        )
        .unwrap();
        // Owned at once, so that it is killed and reaped on every path (Drop).
        let rsyslog = Rsyslog(
            Command::new(rsyslogd())
                .args(["-n", "-f"])
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("rsyslog.pid"))
                .spawn()
                .expect("start rsyslogd"),
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return rsyslog;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("rsyslogd did not listen on {port}");
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request an HTTP receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether it was answered 200.
    accepted: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as the JSON values it holds, one after the other.
    fn values(&self) -> Vec<Value> {
        serde_json::Deserializer::from_slice(&self.body)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect()
    }
}

type Received = Arc<Mutex<Vec<Request>>>;

/// A minimal HTTP/1.1 server recording every request. It answers 200 with Splunk's success
/// body, except 500 to the first `fail_first` requests of each path and to every request for
/// `/fail…`.
fn start_receiver(listener: TcpListener, received: Received, fail_first: usize) {
    let served = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (received, served) = (received.clone(), served.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        headers.push((name.to_string(), value.trim().to_string()));
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let n = {
                        let mut served = served.lock().unwrap();
                        let n = served.entry(path.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let fail = n <= fail_first || path.starts_with("/fail");
                    received.lock().unwrap().push(Request {
                        path,
                        headers,
                        body,
                        accepted: !fail,
                    });
                    let (status, answer) = if fail {
                        (
                            "500 Internal Server Error",
                            r#"{"text":"try later","code":8}"#,
                        )
                    } else {
                        ("200 OK", r#"{"text":"Success","code":0}"#)
                    };
                    let mut stream = reader.get_ref();
                    write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                    .unwrap();
                }
            });
        }
    });
}

async fn health(server: &Server) -> Value {
    reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_stream_to_rsyslog_and_a_collector_that_comes_up_late() {
    let tmp = tempfile::tempdir().unwrap();
    let syslog_port = common::free_port();
    let received_file = tmp.path().join("received.log");
    let _rsyslog = Rsyslog::start(tmp.path(), syslog_port, &received_file);
    let hec_port = common::free_port();
    std::env::set_var("TEST_HEC_TOKEN", "hec-secret");
    let sinks = tmp.path().join("sinks.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n\
             \x20 - name: siem-cef\n    to: syslog+tcp://127.0.0.1:{syslog_port}\n    format: cef\n\
             \x20 - name: siem-ocsf\n    to: syslog+tcp://127.0.0.1:{syslog_port}\n    format: ocsf\n    match: outcome:FAILURE\n    tenants: [acme]\n\
             \x20 - name: splunk\n    to: splunk-hec+http://127.0.0.1:{hec_port}\n    token_env: TEST_HEC_TOKEN\n    personal_data: clear\n    tenants: [acme]\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--sinks", sinks.to_str().unwrap()],
    );
    let events: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "time": "2026-11-30T12:00:00Z",
                "actor": {"id": format!("alice{i}@example.com"), "ip": "203.0.113.7"},
                "action": "user.login", "category": "LOGIN",
                "outcome": if i % 2 == 0 { "FAILURE" } else { "SUCCESS" },
                "resource": {"type": "session", "id": format!("s-{i}")},
            })
        })
        .collect();
    server.ingest_acme(&json!(events)).await;

    // rsyslog receives every event as CEF, and the failures as OCSF, personal values masked.
    let (mut cef, mut ocsf) = (Vec::new(), Vec::new());
    for _ in 0..2400 {
        let text = std::fs::read_to_string(&received_file).unwrap_or_default();
        cef = text
            .lines()
            .filter(|l| l.contains(" CEF:0|Tally|Tally|"))
            .map(str::to_string)
            .collect();
        ocsf = text
            .lines()
            .filter(|l| l.contains("\"class_uid\":3002"))
            .map(str::to_string)
            .collect();
        if cef.iter().filter(|l| l.contains("cs1=acme")).count() >= 20 && ocsf.len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let acme_cef: Vec<&String> = cef.iter().filter(|l| l.contains("cs1=acme")).collect();
    assert_eq!(acme_cef.len(), 20, "{cef:#?}");
    assert_eq!(ocsf.len(), 10, "{ocsf:#?}");
    for line in acme_cef.iter().copied().chain(&ocsf) {
        assert!(line.starts_with("<1"), "an RFC 5424 priority: {line}");
        assert!(
            line.contains(" tally ") && line.contains("[tally@32473 tenant=\"acme\""),
            "{line}"
        );
        assert!(
            !line.contains("alice"),
            "a personal value left unmasked: {line}"
        );
    }
    assert!(
        acme_cef.iter().all(|l| l.contains("suser=tally:pii:")),
        "{acme_cef:#?}"
    );
    let first: Value = serde_json::from_str(&ocsf[0][ocsf[0].find('{').unwrap()..]).unwrap();
    assert_eq!(first["class_uid"], 3002);
    assert_eq!(first["activity_id"], 1);
    assert_eq!(first["status_id"], 2);
    assert_eq!(first["metadata"]["log_name"], "acme");

    // The collector is down: its sink lags and says why, and loses nothing.
    let mut lagging = Value::Null;
    for _ in 0..400 {
        let h = health(&server).await;
        let splunk = &h["consumers"]["sink-splunk"];
        if splunk["lag"].as_u64().unwrap_or(0) > 0 && splunk["last_error"].is_object() {
            lagging = splunk.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        lagging.is_object(),
        "the unreachable collector's sink never showed its lag: {}",
        health(&server).await
    );
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("tally_consumer_lag_events")
                && l.contains("sink-splunk")
                && l.contains("acme")
        })
        .unwrap_or_else(|| panic!("no lag of sink-splunk in /metrics:\n{metrics}"));
    let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(lag >= 20.0, "{lag_line}");

    // It comes up: the backlog arrives, every event, personal values in the clear as asked.
    let received: Received = Arc::default();
    start_receiver(
        TcpListener::bind(("127.0.0.1", hec_port)).unwrap(),
        received.clone(),
        0,
    );
    let mut ids = BTreeSet::new();
    for _ in 0..2400 {
        ids = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.values()
                    .into_iter()
                    .map(|e| e["event"]["id"].as_str().unwrap().to_string())
            })
            .collect();
        if ids.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ids.len(), 20, "the backlog did not arrive whole");
    let requests = received.lock().unwrap().clone();
    assert!(requests
        .iter()
        .all(|r| r.header("authorization") == Some("Splunk hec-secret")));
    assert!(requests
        .iter()
        .all(|r| r.path == "/services/collector/event"));
    let envelope = &requests[0].values()[0];
    assert_eq!(envelope["source"], "tally");
    assert_eq!(envelope["sourcetype"], "tally:audit");
    assert_eq!(envelope["event"]["tally_tenant"], "acme");
    assert!(
        envelope["event"]["actor"]["id"]
            .as_str()
            .unwrap()
            .starts_with("alice"),
        "{envelope}"
    );
    assert!(envelope["time"].as_f64().unwrap() > 1.7e9);
    for _ in 0..400 {
        let h = health(&server).await;
        if h["consumers"]["sink-splunk"]["lag"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health(&server).await["consumers"]["sink-splunk"]["lag"], 0);
    server.stop();
}

#[test]
fn a_broken_sinks_file_stops_the_server_at_start_naming_each_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let sinks = tmp.path().join("sinks.yaml");
    std::fs::write(
        &sinks,
        "sinks:\n  - name: a\n    to: ftp://nowhere\n  - name: b\n    to: splunk-hec+https://h:8088\n    token_env: TALLY_TEST_UNSET_TOKEN\n",
    )
    .unwrap();
    let out = common::serve_command(
        &tmp.path().join("data"),
        common::free_port(),
        &["--sinks", sinks.to_str().unwrap()],
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 broken sink(s)"), "{err}");
    assert!(err.contains("sink `a`, to:"), "{err}");
    assert!(err.contains("TALLY_TEST_UNSET_TOKEN is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_notified_signed_retried_and_dead_lettered() {
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let received: Received = Arc::default();
    // The first request of each endpoint fails: the notification is retried with backoff.
    start_receiver(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        received.clone(),
        1,
    );
    std::env::set_var("TEST_WEBHOOK_SECRET", "hook-secret");
    std::env::set_var("TEST_PD_ROUTING_KEY", "pd-key");
    let sinks = tmp.path().join("sinks.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n\
             \x20 - name: hook\n    to: webhook+http://127.0.0.1:{port}/hook\n    match: action:tally.alert.raise\n    secret_env: TEST_WEBHOOK_SECRET\n\
             \x20 - name: pager\n    to: pagerduty+http://127.0.0.1:{port}/v2/enqueue\n    match: action:tally.alert.raise\n    token_env: TEST_PD_ROUTING_KEY\n\
             \x20 - name: slack\n    to: slack+http://127.0.0.1:{port}/slack\n    match: action:tally.alert.raise\n\
             \x20 - name: broken\n    to: webhook+http://127.0.0.1:{port}/fail\n    match: action:tally.alert.raise\n    max_attempts: 2\n"
        ),
    )
    .unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_with(&dir, &["--sinks", sinks.to_str().unwrap()]);
    let failure = json!({"time": "2026-11-30T12:00:00Z", "actor": {"id": "mallory@example.com"},
        "action": "user.login", "category": "LOGIN", "outcome": "FAILURE",
        "resource": {"type": "session", "id": "web"}});
    server.ingest_acme(&json!(vec![failure; 6])).await;

    // The requests to `path` that were accepted.
    let by_path = |path: &str| -> Vec<Request> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path && r.accepted)
            .cloned()
            .collect()
    };
    let dead_letter = dir.join("consumers/sink-broken.dead-letter.jsonl");
    for _ in 0..2400 {
        if ["/hook", "/v2/enqueue", "/slack"]
            .iter()
            .all(|p| !by_path(p).is_empty())
            && std::fs::read_to_string(&dead_letter).is_ok_and(|t| t.ends_with('\n'))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The first requests failed and were retried: each notification arrived.
    let refused = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !r.accepted && r.path != "/fail")
        .count();
    assert_eq!(refused, 3, "one refusal per endpoint, each retried");
    let hook = by_path("/hook");
    let request = hook
        .last()
        .unwrap_or_else(|| panic!("no webhook call: {:?}", received.lock().unwrap()));
    let alert = request.values()[0].clone();
    assert_eq!(alert["action"], "tally.alert.raise");
    assert_eq!(alert["metadata"]["rule"], "brute-force");
    assert!(
        !alert.to_string().contains("mallory"),
        "masked by default: {alert}"
    );
    assert_eq!(request.header("tally-event-id"), alert["id"].as_str());
    // The signature: HMAC-SHA256 under the secret of "t." and the body, recomputed here.
    let signature = request.header("tally-signature").expect("signed");
    let (t, v1) = signature.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(v1, hmac_sha256_hex(b"hook-secret", &signed));

    let pager = by_path("/v2/enqueue");
    let pager = pager.last().expect("a PagerDuty call").values()[0].clone();
    assert_eq!(pager["routing_key"], "pd-key");
    assert_eq!(pager["event_action"], "trigger");
    assert_eq!(pager["dedup_key"], alert["id"]);
    assert_eq!(pager["payload"]["severity"], "error");
    let slack = by_path("/slack");
    let slack = slack.last().expect("a Slack call").values()[0].clone();
    assert!(
        slack["text"].as_str().unwrap().contains("brute-force"),
        "{slack}"
    );

    // The endpoint that always fails: given up on after two attempts, written down, counted.
    let dead = std::fs::read_to_string(&dead_letter).unwrap();
    let dead: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event"]["id"], alert["id"]);
    assert!(
        dead[0]["error"].as_str().unwrap().contains("500"),
        "{dead:?}"
    );
    let attempts = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/fail")
        .count();
    assert_eq!(attempts, 2, "two attempts, then no more");
    // Counted once written down (polled: the count follows the file by a moment).
    let mut metrics = String::new();
    for _ in 0..400 {
        metrics = reqwest::Client::new()
            .get(format!("{}/metrics", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics
            .lines()
            .any(|l| l.starts_with("tally_sink_dead_lettered_events_total{sink=\"broken\"} 1"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tally_sink_dead_lettered_events_total{sink=\"broken\"} 1")),
        "{metrics}"
    );
    server.stop();
}

/// HMAC-SHA256 written out from its definition (RFC 2104), so that the test does not check
/// the server's signature with the server's own code.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_rewound_to_an_index_or_a_time_sends_from_there_again() {
    let tmp = tempfile::tempdir().unwrap();
    let syslog_port = common::free_port();
    let received_file = tmp.path().join("received.log");
    let _rsyslog = Rsyslog::start(tmp.path(), syslog_port, &received_file);
    let sinks = tmp.path().join("sinks.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n  - name: siem\n    to: syslog+tcp://127.0.0.1:{syslog_port}\n    format: cef\n    tenants: [acme]\n"
        ),
    )
    .unwrap();
    let dir = tmp.path().join("data");
    let lines = || {
        std::fs::read_to_string(&received_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("cs1=acme"))
            .count()
    };
    let wait_for = |n: usize| async move {
        for _ in 0..2400 {
            if lines() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(lines(), n);
    };
    let event = |i: usize| {
        json!({"time": "2026-11-30T12:00:00Z", "actor": {"id": "svc"}, "action": "doc.read",
               "outcome": "SUCCESS", "resource": {"type": "doc", "id": format!("d{i}")}})
    };
    let server = Server::start_with(&dir, &["--sinks", sinks.to_str().unwrap()]);
    server
        .ingest_acme(&json!((0..10).map(event).collect::<Vec<_>>()))
        .await;
    wait_for(10).await;
    // A running server keeps the directory: rewinding under it is refused.
    let tally = |args: &[&str]| {
        Command::new(common::TALLY)
            .args(["consumers", "rewind"])
            .args(args)
            .arg("--data")
            .arg(&dir)
            .output()
            .unwrap()
    };
    let busy = common::fails(&tally(&["sink-siem", "--to-index", "4"]));
    assert!(busy.contains("stop it first"), "{busy}");
    server.stop();
    // Usage mistakes exit 2.
    let usage = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = usage(tally(&["search-index", "--to-index", "0"]));
    assert!(err.contains("only sinks are rewound"), "{err}");
    let err = usage(tally(&[
        "sink-siem",
        "--to-index",
        "99",
        "--tenant",
        "acme",
    ]));
    assert!(err.contains("moves back only"), "{err}");
    let out = common::ok(&tally(&["sink-siem", "--to-index", "4"]));
    assert!(out.contains("from 10 back to 4 (6 events"), "{out}");

    // Started again, it sends leaves 4..10 again.
    let server = Server::start_with(&dir, &["--sinks", sinks.to_str().unwrap()]);
    wait_for(16).await;
    let later = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server
        .ingest_acme(&json!((10..13).map(event).collect::<Vec<_>>()))
        .await;
    wait_for(19).await;
    server.stop();
    // By time: only what was received after `later` (leaves 10..13) is sent again.
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = common::ok(&tally(&["sink-siem", "--to-time", &later]));
    assert!(out.contains("from 13 back to 10 (3 events"), "{out}");
    let server = Server::start_with(&dir, &["--sinks", sinks.to_str().unwrap()]);
    wait_for(22).await;
    server.stop();
}
