//! `tally verify --url` against a real server through an in-process HTTP proxy that alters
//! one byte (or cuts) what the server sends: hash tiles of every level, full and partial,
//! entry bundles and the checkpoint. Each alteration must fail verification naming the tile
//! and leaf index; the unaltered proxy must pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

mod common;

use common::{Server, TALLY};

/// Records in the log: 258 full entry bundles and a partial one of 7, so level 0 has full and
/// partial tiles, level 1 a full tile (`tile/1/000`) and a partial one (`tile/1/001.p/2`), and
/// level 2 a partial one (`tile/2/000.p/1`).
const SIZE: u64 = 65536 + 2 * 256 + 7;

fn tally(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(TALLY)
        .args(args)
        .env("TALLY_URL", url)
        .env("TALLY_TOKEN", token)
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the proxy does to the body of one path.
type Alter = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    alter: Arc<Mutex<Option<(String, Alter)>>>,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let target = format!(
        "{}{}",
        proxy.upstream,
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = proxy.http.get(target);
    if let Some(auth) = request.headers().get(header::AUTHORIZATION) {
        upstream = upstream.header(header::AUTHORIZATION, auth.clone());
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut body = answer.bytes().await.unwrap_or_default().to_vec();
    let alter = proxy.alter.lock().unwrap().clone();
    if let Some((p, f)) = alter {
        if p == path {
            f(&mut body);
        }
    }
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        Bytes::from(body),
    )
        .into_response()
}

fn ndjson(path: &Path, n: u64) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(
            w,
            r#"{{"time":"2026-05-06T07:08:09.010Z","actor":{{"id":"u{i}"}},"action":"user.login","outcome":"SUCCESS"}}"#
        )
        .unwrap();
    }
}

fn wait_for_checkpoint(url: &str, token: &str, key: &str, size: u64) {
    for _ in 0..600 {
        let out = tally(url, token, &["checkpoint", "--key", key]);
        if out.status.success() && stdout(&out).lines().nth(1) == Some(&size.to_string()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no checkpoint of size {size}");
}

/// Flips the low bit of byte `at` of the body.
fn flip(at: usize) -> Alter {
    Arc::new(move |b: &mut Vec<u8>| b[at] ^= 1)
}

/// Flips a byte in the middle of entry `k` of an entry bundle.
fn flip_entry(k: usize) -> Alter {
    Arc::new(move |b: &mut Vec<u8>| {
        let mut at = 0;
        for _ in 0..k {
            at += 2 + usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
        }
        let len = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
        b[at + 2 + len / 2] ^= 1;
    })
}

#[test]
fn issue_7_verify_url_checks_every_hash_tile_through_an_altering_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let server = Server::start(&dir);
    let key = dir.join("log.pub");
    let key = key.to_str().unwrap();
    let events = tmp.path().join("events.ndjson");
    ndjson(&events, SIZE);
    let out = tally(
        &server.url,
        &server.token,
        &[
            "ingest",
            events.to_str().unwrap(),
            "--batch-size",
            "2000",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_checkpoint(&server.url, &server.token, key, SIZE);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy = Proxy {
        upstream: server.url.clone(),
        http: reqwest::Client::new(),
        alter: Arc::new(Mutex::new(None)),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let verify = || {
        tally(
            &proxy_url,
            &server.token,
            &["verify", "--url", &proxy_url, "--key", key, "--quiet"],
        )
    };

    // Through the proxy, unaltered: every tile matches.
    let out = verify();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "{SIZE} entries and every hash tile match the signed checkpoint"
        )),
        "{}",
        stdout(&out)
    );

    let tiles = "/logs/default/tile";
    let cases: Vec<(String, Alter, Vec<String>)> = vec![
        // Hash tiles: the entries are right, so the tile is named with its first bad leaf.
        (
            format!("{tiles}/0/000"),
            flip(5 * 32 + 3),
            vec!["hash tile tile/0/000 ".into(), "leaf index 5:".into()],
        ),
        (
            format!("{tiles}/0/001"),
            Arc::new(|b: &mut Vec<u8>| b.truncate(b.len() - 1)),
            vec!["hash tile tile/0/001 ".into(), "leaf index 511:".into()],
        ),
        (
            format!("{tiles}/0/258.p/7"),
            flip(2 * 32),
            vec![
                "hash tile tile/0/258.p/7 ".into(),
                format!("leaf index {}:", 258 * 256 + 2),
            ],
        ),
        (
            format!("{tiles}/1/000"),
            flip(3 * 32 + 31),
            vec![
                "hash tile tile/1/000 ".into(),
                "leaf index 768:".into(),
                "leaves [768, 1024)".into(),
            ],
        ),
        (
            format!("{tiles}/1/001.p/2"),
            flip(32 + 16),
            vec![
                "hash tile tile/1/001.p/2 ".into(),
                format!("leaf index {}:", 257 * 256),
            ],
        ),
        (
            format!("{tiles}/2/000.p/1"),
            flip(0),
            vec!["hash tile tile/2/000.p/1 ".into(), "leaf index 0:".into()],
        ),
        (
            format!("{tiles}/1/000"),
            Arc::new(|b: &mut Vec<u8>| b.push(0)),
            vec![
                "hash tile tile/1/000 ".into(),
                "8193 bytes, expected 8192".into(),
            ],
        ),
        // Entry bundles: the entries no longer hash to the signed root; the level-0 tiles
        // name the entry.
        (
            format!("{tiles}/entries/001"),
            flip_entry(10),
            vec![
                "do not hash to the signed checkpoint".into(),
                "index 266 (in tile/entries/001)".into(),
            ],
        ),
        (
            format!("{tiles}/entries/258.p/7"),
            flip_entry(4),
            vec![
                "do not hash to the signed checkpoint".into(),
                format!("index {} (in tile/entries/258.p/7)", 258 * 256 + 4),
            ],
        ),
        (
            format!("{tiles}/entries/100"),
            Arc::new(|b: &mut Vec<u8>| b.truncate(b.len() - 3)),
            vec!["tile/entries/100 (leaf index 25600) is malformed".into()],
        ),
        // The checkpoint: its signature no longer verifies.
        (
            "/logs/default/checkpoint".into(),
            Arc::new(|b: &mut Vec<u8>| {
                let root_line = b.iter().enumerate().filter(|(_, c)| **c == b'\n').nth(1);
                let at = root_line.unwrap().0 + 5;
                b[at] ^= 1;
            }),
            vec!["checkpoint signature does not verify".into()],
        ),
    ];
    for (path, alter, expected) in cases {
        *proxy.alter.lock().unwrap() = Some((path.clone(), alter));
        let out = verify();
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{path}: passed\n{}{err}",
            stdout(&out)
        );
        for e in &expected {
            assert!(err.contains(e.as_str()), "{path}: expected {e:?} in {err}");
        }
    }

    // And back to the truth.
    *proxy.alter.lock().unwrap() = None;
    let out = verify();
    assert!(out.status.success(), "{}", stderr(&out));
}
