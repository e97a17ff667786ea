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

/// What the HTTP Event Collector received: each request's Authorization header and events.
type Received = Arc<Mutex<Vec<(String, Vec<Value>)>>>;

/// A minimal HTTP/1.1 server answering every POST as Splunk's collector does.
fn start_collector(listener: TcpListener, received: Received) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let received = received.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut auth) = (0usize, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => auth = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let events: Vec<Value> = serde_json::Deserializer::from_slice(&body)
                        .into_iter::<Value>()
                        .map(Result::unwrap)
                        .collect();
                    received.lock().unwrap().push((auth, events));
                    let answer = r#"{"text":"Success","code":0}"#;
                    let mut stream = reader.get_ref();
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
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
    start_collector(
        TcpListener::bind(("127.0.0.1", hec_port)).unwrap(),
        received.clone(),
    );
    let mut ids = BTreeSet::new();
    for _ in 0..2400 {
        ids = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, events)| {
                events
                    .iter()
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
    assert!(requests.iter().all(|(auth, _)| auth == "Splunk hec-secret"));
    let envelope = &requests[0].1[0];
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
