//! Clients that hold connections, send slowly or stall, over real sockets: the server closes
//! them or makes room, and everyone else keeps being served (issue 9: idle connections made
//! the server stop accepting; stalled large bodies held memory without bound).
//!
//! The limits are set small so that each case needs only a handful of sockets and seconds;
//! the waits are generous bounds against a hang, never timing assertions.

mod common;

use std::time::Duration;

use common::TestServer;
use tally_server::body::BodyLimits;
use tally_server::transport::ConnectionLimits;
use tally_server::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for anything the server does here; a hang fails instead.
const BOUND: Duration = Duration::from_secs(30);

fn settings(connections: ConnectionLimits, bodies: BodyLimits) -> ServerSettings {
    ServerSettings {
        connections,
        bodies,
        ..ServerSettings::default()
    }
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn event_body(n: usize) -> String {
    serde_json::json!({
        "time": "2026-11-30T10:00:00Z",
        "actor": {"id": format!("user-{n}")},
        "action": "document.read",
        "outcome": "SUCCESS",
    })
    .to_string()
}

/// A normal client on a new connection: ingest one event and ask for health.
async fn normal_client_is_served(srv: &TestServer, n: usize) {
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let resp = http
        .post(format!("{}/v1/events", srv.running.url))
        .bearer_auth(&srv.admin)
        .header("content-type", "application/json")
        .body(event_body(n))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let health = http
        .get(format!("{}/healthz", srv.running.url))
        .send()
        .await
        .expect("health answers");
    assert_eq!(health.status(), 200);
}

/// A value of the server's `/metrics`.
async fn metric(srv: &TestServer, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", srv.running.url))
        .bearer_auth(&srv.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

/// Polls `/metrics` until `name` reaches `at_least` (a bound against a hang, no timing).
async fn wait_for_metric(srv: &TestServer, name: &str, at_least: f64) {
    for _ in 0..600 {
        if metric(srv, name).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {at_least}");
}

/// The head of an ingest request announcing `length` body bytes.
fn ingest_head(srv: &TestServer, length: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        srv.addr(),
        srv.admin
    )
}

#[tokio::test]
async fn silent_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let srv = TestServer::start(settings(
        ConnectionLimits {
            header_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        BodyLimits::default(),
    ))
    .await;
    // Says nothing at all.
    let mut silent = TcpStream::connect(srv.addr()).await.unwrap();
    // Starts a request head and never finishes it.
    let mut slow = TcpStream::connect(srv.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Finishes a request, then idles on the kept-alive connection.
    let mut idle = TcpStream::connect(srv.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for stream in [&mut silent, &mut slow, &mut idle] {
        read_to_close(stream).await;
    }
    normal_client_is_served(&srv, 0).await;
    srv.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room_for_new_clients() {
    let srv = TestServer::start(settings(
        ConnectionLimits {
            max_connections: 16,
            // Long: here room is made by the limit, not by timeouts.
            header_timeout: Duration::from_secs(600),
            ..Default::default()
        },
        BodyLimits::default(),
    ))
    .await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(srv.addr()).await.unwrap());
    }
    for n in 0..5 {
        normal_client_is_served(&srv, n).await;
    }
    // The earliest idle connections were closed to make that room.
    let closed = read_to_close(&mut idle[0]).await;
    assert!(closed.is_empty(), "closed without an answer: {closed:?}");
    assert!(metric(&srv, "tally_http_connections_evicted_total").await >= 84.0);
    assert!(metric(&srv, "tally_http_connections_open").await <= 16.0);
    srv.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_inside_a_request_a_new_one_is_answered_503() {
    let srv = TestServer::start(settings(
        ConnectionLimits {
            max_connections: 3,
            header_timeout: Duration::from_secs(600),
            ..Default::default()
        },
        BodyLimits {
            idle_timeout: Duration::from_secs(600),
            deadline: Duration::from_secs(600),
            ..Default::default()
        },
    ))
    .await;
    // Three requests whose bodies never finish keep every connection busy. Each asks for
    // `100 Continue`, which the server sends once the handler reads the body: from then on
    // the request is certainly in progress.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(srv.addr()).await.unwrap();
        let head = ingest_head(&srv, 1000).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut continued = [0u8; 25];
        tokio::time::timeout(BOUND, s.read_exact(&mut continued))
            .await
            .expect("100 Continue")
            .unwrap();
        assert!(continued.starts_with(b"HTTP/1.1 100 Continue"));
        s.write_all(b"[").await.unwrap();
        busy.push(s);
    }
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // (Counted: /metrics itself needs a connection, so it is asked once the clients left.)
    // The busy clients leave: new ones are served again.
    drop(busy);
    let mut served = false;
    for n in 0..100 {
        let http = reqwest::Client::new();
        if let Ok(r) = http
            .get(format!("{}/healthz", srv.running.url))
            .send()
            .await
        {
            if r.status() == 200 {
                served = true;
                normal_client_is_served(&srv, n).await;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "the server took clients again once the busy ones left"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_refused_with_408_and_ingest_goes_on() {
    let srv = TestServer::start(settings(
        ConnectionLimits::default(),
        BodyLimits {
            idle_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    ))
    .await;
    let mut stalled = TcpStream::connect(srv.addr()).await.unwrap();
    stalled
        .write_all(ingest_head(&srv, 100_000).as_bytes())
        .await
        .unwrap();
    stalled.write_all(&[b' '; 1000]).await.unwrap();
    normal_client_is_served(&srv, 1).await;
    let answer = read_to_close(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    srv.stop().await;
}

#[tokio::test]
async fn large_bodies_share_a_memory_budget_and_small_requests_keep_being_served() {
    let srv = TestServer::start(settings(
        ConnectionLimits::default(),
        BodyLimits {
            idle_timeout: Duration::from_secs(600),
            deadline: Duration::from_secs(600),
            memory_bytes: 1280 << 10,
        },
    ))
    .await;
    // Two clients send 400 KiB of a 900 KiB body and stall: their buffers (512 KiB each,
    // grown in powers of two) hold 1 MiB of the 1.25 MiB budget, leaving the eighth kept
    // for small bodies (160 KiB) and a little more.
    let chunk = vec![b' '; 400 << 10];
    let mut stallers = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(srv.addr()).await.unwrap();
        s.write_all(ingest_head(&srv, 900 << 10).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk).await.unwrap();
        stallers.push(s);
    }
    wait_for_metric(&srv, "tally_http_body_held_bytes", f64::from(1u32 << 20)).await;
    // A third large body does not fit: refused (503 busy), not queued.
    let mut third = TcpStream::connect(srv.addr()).await.unwrap();
    // (What it reads before a reset is kept: `read_to_end` appends as it goes.)
    third
        .write_all(ingest_head(&srv, 900 << 10).as_bytes())
        .await
        .unwrap();
    // The server answers and closes before all of it is read: send while reading.
    let (mut reader, mut writer) = third.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&vec![b' '; 400 << 10]).await;
        writer
    });
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, reader.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .ok();
    let answer = String::from_utf8_lossy(&out).into_owned();
    drop(sending);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"busy\""), "{answer}");
    assert_eq!(
        metric(&srv, "tally_http_body_refused_busy_total").await,
        1.0
    );
    // Small requests still fit beside the stalled ones.
    for n in 0..5 {
        normal_client_is_served(&srv, n).await;
    }
    drop(stallers);
    // Their memory is given back once they leave.
    for _ in 0..600 {
        if metric(&srv, "tally_http_body_held_bytes").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&srv, "tally_http_body_held_bytes").await, 0.0);
    srv.stop().await;
}
