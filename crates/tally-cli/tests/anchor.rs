//! Checkpoint anchoring end to end, against moto's S3 server (Object Lock included): the
//! uploader, the refusal of a bucket without Object Lock, an S3 outage, and `tally verify
//! --since s3://…` catching a history rewritten and re-signed with the log's own key.
//!
//! Needs `moto_server` on PATH (pinned in scripts/requirements-test.txt); without it these
//! tests fail, they never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_anchor::s3::{S3Client, S3Config};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const BUCKET: &str = "tally-anchors";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto S3 server on a free port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run moto_server ({e}): install the test tools with \
                     `pip install -r scripts/requirements-test.txt` and put them on PATH"
                )
            });
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay to moto that can be cut, to make S3 unreachable and bring it back with its
/// state intact.
struct Relay {
    url: String,
    down: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_string();
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let flag = flag.clone();
                let pipe = move |mut from: TcpStream, mut to: TcpStream, flag: Arc<AtomicBool>| {
                    let mut buf = [0u8; 16384];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if flag.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let f2 = flag.clone();
                std::thread::spawn(move || pipe(client, server, flag));
                std::thread::spawn(move || pipe(s2, c2, f2));
            }
        });
        Relay { url, down }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn s3(endpoint: &str) -> S3Client {
    S3Client::new(S3Config {
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    })
    .unwrap()
}

fn aws_env(cmd: &mut Command, endpoint: &str) {
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("TALLY_LOG", "warn");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Server {
    child: Child,
    url: String,
    token: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, endpoint: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let token_file = dir.with_extension("token");
        let mut cmd = Command::new(TALLY);
        cmd.args(["serve", "--no-index", "--data"])
            .arg(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--checkpoint-interval-ms",
                "50",
            ])
            .args(extra)
            .arg("--admin-token-file")
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        aws_env(&mut cmd, endpoint);
        let mut child = cmd.spawn().unwrap();
        for _ in 0..400 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && token_file.exists() {
                let token = std::fs::read_to_string(&token_file)
                    .unwrap()
                    .trim()
                    .to_string();
                return Server {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                    token,
                    dir: dir.to_path_buf(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("server exited ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server did not start");
    }

    fn tally(&self, args: &[&str], endpoint: &str) -> Output {
        let mut cmd = Command::new(TALLY);
        cmd.args(args)
            .env("TALLY_URL", &self.url)
            .env("TALLY_TOKEN", &self.token);
        aws_env(&mut cmd, endpoint);
        cmd.output().unwrap()
    }

    fn ingest(&self, from: u64, to: u64, endpoint: &str) {
        let file = self.dir.with_extension(format!("{from}.ndjson"));
        let mut s = String::new();
        for i in from..to {
            s.push_str(&format!(
                r#"{{"time":"2026-05-06T07:08:09.010Z","actor":{{"id":"u{i:04}"}},"action":"user.login","outcome":"SUCCESS","request_id":"r{i:04}"}}"#
            ));
            s.push('\n');
        }
        std::fs::write(&file, s).unwrap();
        ok(&self.tally(&["ingest", file.to_str().unwrap(), "--quiet"], endpoint));
    }

    fn healthz(&self, rt: &tokio::runtime::Runtime) -> serde_json::Value {
        rt.block_on(async {
            reqwest::get(format!("{}/healthz", self.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    /// The signed size once the log has stopped growing.
    fn settled_size(&self, endpoint: &str) -> u64 {
        let key = self.dir.join("log.pub");
        let mut last = 0;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(150));
            let out = self.tally(&["checkpoint", "--key", key.to_str().unwrap()], endpoint);
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

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Anchored sizes of tenant `default` under `prefix`, with each object's version id.
fn anchored(
    rt: &tokio::runtime::Runtime,
    client: &S3Client,
    prefix: &str,
) -> Vec<(u64, String, String)> {
    let mut out: Vec<_> = rt
        .block_on(client.list_object_versions(BUCKET, prefix))
        .unwrap()
        .into_iter()
        .filter(|v| !v.delete_marker)
        .filter_map(|v| {
            let size = v.key.rsplit('/').next()?.parse().ok()?;
            Some((size, v.key, v.version_id))
        })
        .collect();
    out.sort();
    out
}

fn wait_anchored(rt: &tokio::runtime::Runtime, client: &S3Client, prefix: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !anchored(rt, client, prefix)
        .iter()
        .any(|(s, _, _)| *s == size)
    {
        assert!(
            Instant::now() < deadline,
            "checkpoint {size} was never anchored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies a stopped data directory, changes `needle` to `replacement` in one record, and
/// makes everything consistent again with the log's own key: the frame's CRC, the leaf hash,
/// and every checkpoint re-signed over the rewritten tree. Only an outside copy of the
/// checkpoints can tell this copy from the original.
fn fork_data_dir(src: &Path, dst: &Path, needle: &[u8], replacement: &[u8]) {
    assert_eq!(needle.len(), replacement.len());
    let t = "tenants/default";
    std::fs::create_dir_all(dst.join(t).join("segments")).unwrap();
    for f in ["FORMAT", "log.key", "log.pub", "api-keys.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    // The other tenants' logs (the server's own, tally-system) are copied as they are.
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    for entry in std::fs::read_dir(src.join("tenants")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "default" {
            copy_tree(&entry.path(), &dst.join("tenants").join(entry.file_name()));
        }
    }
    let segs: Vec<_> = std::fs::read_dir(src.join(t).join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segs.len(), 1, "one segment expected");
    let mut seg = std::fs::read(&segs[0]).unwrap();
    let mut leaves = std::fs::read(src.join(t).join("leaves")).unwrap();
    let mut at = 0;
    let mut changed = None;
    while at < seg.len() {
        let len = u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
        let index = u64::from_le_bytes(seg[at + 8..at + 16].try_into().unwrap());
        let record = at + 16..at + 16 + len;
        if let Some(p) = seg[record.clone()]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            let p = record.start + p;
            seg[p..p + needle.len()].copy_from_slice(replacement);
            let mut crc_input = seg[record.clone()].to_vec();
            crc_input.extend_from_slice(&index.to_le_bytes());
            seg[at + 4..at + 8].copy_from_slice(&crc32c::crc32c(&crc_input).to_le_bytes());
            let hash = tally_tlog::leaf_hash(&seg[record.clone()]);
            let e = index as usize * 56;
            leaves[e..e + 32].copy_from_slice(&hash);
            changed = Some(index);
            break;
        }
        at = record.end;
    }
    let changed = changed.expect("needle not found");
    std::fs::write(
        dst.join(t)
            .join("segments")
            .join(segs[0].file_name().unwrap()),
        &seg,
    )
    .unwrap();
    std::fs::write(dst.join(t).join("leaves"), &leaves).unwrap();

    let signer = tally_tlog::NoteSigner::parse_skey(
        std::fs::read_to_string(src.join("log.key")).unwrap().trim(),
    )
    .unwrap();
    let verifier = signer.verifier();
    let hashes: Vec<tally_tlog::Hash> = leaves
        .chunks_exact(56)
        .map(|c| c[..32].try_into().unwrap())
        .collect();
    let old = std::fs::read(src.join(t).join("checkpoints")).unwrap();
    let (notes, _, _) = tally_store::read_checkpoint_frames(&old);
    let mut out = Vec::new();
    let mut resigned_after_change = 0;
    for note in notes {
        let text = tally_tlog::open(note, std::slice::from_ref(&verifier))
            .unwrap()
            .text;
        let mut cp = tally_tlog::Checkpoint::parse(&text).unwrap();
        let mut tree = tally_tlog::MemoryTree::new();
        for h in &hashes[..cp.size as usize] {
            tree.push(*h);
        }
        if cp.size > changed {
            assert_ne!(cp.root, tree.root());
            resigned_after_change += 1;
        }
        cp.root = tree.root();
        let note = signer.sign(&cp.to_body()).unwrap();
        out.extend_from_slice(&(note.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(note.as_bytes()).to_le_bytes());
        out.extend_from_slice(note.as_bytes());
    }
    assert!(resigned_after_change > 0);
    std::fs::write(dst.join(t).join("checkpoints"), out).unwrap();
}

#[test]
fn issue_7_anchored_checkpoints_are_locked_and_catch_a_resigned_fork() {
    let moto = Moto::start();
    let rt = rt();
    let client = s3(&moto.url);
    rt.block_on(client.create_bucket(BUCKET, true)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let anchor = format!("s3://{BUCKET}/prod/tally");
    let server = Server::start(
        &dir,
        &moto.url,
        &["--anchor", &anchor, "--anchor-retention", "1day"],
    );
    for batch in 0..4 {
        server.ingest(batch * 100, batch * 100 + 100, &moto.url);
        std::thread::sleep(Duration::from_millis(120));
    }
    let size = server.settled_size(&moto.url);
    assert_eq!(size, 400);
    wait_anchored(&rt, &client, "prod/tally/default/", size);
    let health = server.healthz(&rt);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["anchor"]["status"], "ok", "{health}");
    assert_eq!(health["anchor"]["target"], anchor.as_str(), "{health}");
    let metrics = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/metrics", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(metrics.contains("tally_anchor_uploaded_total"), "{metrics}");
    assert!(metrics.contains("tally_anchor_lag_seconds"), "{metrics}");
    server.stop();

    // Every checkpoint is its own object, locked in COMPLIANCE mode for the retention.
    let objects = anchored(&rt, &client, "prod/tally/default/");
    assert!(objects.len() >= 4, "{objects:?}");
    let signed = std::fs::read(dir.join("tenants/default/checkpoints")).unwrap();
    assert_eq!(
        objects.len(),
        // The empty tree signed when the tenant was created proves nothing: not anchored.
        tally_store::read_checkpoint_frames(&signed)
            .0
            .iter()
            .filter(|note| note.lines().nth(1) != Some("0"))
            .count(),
        "not every signed checkpoint was anchored"
    );
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::hours(23);
    for (_, key, version) in &objects {
        assert!(key.starts_with("prod/tally/default/checkpoint/"), "{key}");
        let r = rt
            .block_on(client.object_retention(BUCKET, key, version))
            .unwrap()
            .expect("retention");
        assert_eq!(r.mode, "COMPLIANCE", "{key}");
        let until = time::OffsetDateTime::parse(
            &r.retain_until,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(until > tomorrow, "{key} locked only until {until}");
    }
    // Not even the bucket owner can delete an anchored version.
    let (_, key, version) = &objects[0];
    let err = rt
        .block_on(client.delete_object_version(BUCKET, key, version))
        .unwrap_err();
    assert_eq!(err.s3_code(), Some("AccessDenied"), "{err}");
    assert!(rt
        .block_on(client.get_object(BUCKET, key, Some(version)))
        .unwrap()
        .is_some());

    // The genuine log passes against every anchored checkpoint.
    let key_arg = dir.join("log.pub");
    let key_arg = key_arg.to_str().unwrap();
    let verify = |data: &Path, since: Option<&str>| {
        let mut cmd = Command::new(TALLY);
        cmd.args([
            "verify",
            data.to_str().unwrap(),
            "--key",
            key_arg,
            "--quiet",
        ]);
        if let Some(s) = since {
            cmd.args(["--since", s]);
        }
        aws_env(&mut cmd, &moto.url);
        cmd.output().unwrap()
    };
    let out = ok(&verify(&dir, Some(&anchor)));
    assert!(
        out.contains("still contains all") && out.contains("intact"),
        "{out}"
    );

    // Rewrite record 150 and re-sign every checkpoint with the same key: the copy is
    // self-consistent, so plain verification passes; the anchored checkpoints expose it.
    let forked = tmp.path().join("forked");
    // A request id: actor ids are personal data, sealed in the stored record.
    fork_data_dir(&dir, &forked, b"r0150", b"r9150");
    ok(&verify(&forked, None));
    let err = fails(&verify(&forked, Some(&anchor)));
    let first_anchored_after = objects.iter().map(|o| o.0).find(|s| *s > 150).unwrap();
    assert!(
        err.contains("VERIFICATION FAILED")
            && err.contains("tenant default")
            && err.contains("anchored at s3://tally-anchors/prod/tally/default/checkpoint/")
            && err.contains(&format!("(size {first_anchored_after})")),
        "{err}"
    );

    // Online too: a server on the forked directory fails against the anchor; and, anchoring
    // there itself, it finds the bucket holding a different checkpoint of the same size.
    std::fs::copy(dir.with_extension("token"), forked.with_extension("token")).unwrap();
    let server = Server::start(
        &forked,
        &moto.url,
        &["--anchor", &anchor, "--anchor-retention", "1d"],
    );
    let out = server.tally(
        &["verify", "--key", key_arg, "--since", &anchor, "--quiet"],
        &moto.url,
    );
    let err = fails(&out);
    assert!(
        err.contains("VERIFICATION FAILED") && err.contains("tenant default"),
        "{err}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.healthz(&rt);
        if health["anchor"]["status"] == "fork" {
            assert_eq!(health["status"], "degraded", "{health}");
            assert!(
                health["anchor"]["fork"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("tenant default at size {size}")),
                "{health}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no fork reported: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn anchoring_refuses_a_bucket_without_object_lock() {
    let moto = Moto::start();
    let rt = rt();
    let client = s3(&moto.url);
    rt.block_on(client.create_bucket("plain-bucket", false))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(TALLY);
    cmd.args(["serve", "--no-index", "--data"])
        .arg(tmp.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--anchor",
            "s3://plain-bucket/x",
            "--anchor-retention",
            "1d",
        ]);
    aws_env(&mut cmd, &moto.url);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain-bucket") && err.contains("does not have S3 Object Lock enabled"),
        "{err}"
    );

    // --anchor without a retention is a usage error.
    let out = Command::new(TALLY)
        .args(["serve", "--anchor", "s3://plain-bucket/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--anchor-retention"));
}

#[test]
fn anchoring_survives_an_s3_outage_without_delaying_ingest() {
    let moto = Moto::start();
    let relay = Relay::start(&moto.url);
    let rt = rt();
    let client = s3(&moto.url);
    rt.block_on(client.create_bucket(BUCKET, true)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(
        &dir,
        &relay.url,
        &[
            "--anchor",
            &format!("s3://{BUCKET}"),
            "--anchor-retention",
            "1d",
        ],
    );
    server.ingest(0, 50, &relay.url);
    let size = server.settled_size(&relay.url);
    wait_anchored(&rt, &client, "default/", size);

    relay.set_down(true);
    let started = Instant::now();
    for batch in 0..3 {
        server.ingest(100 + batch * 10, 110 + batch * 10, &relay.url);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ingest waited for S3: {:?}",
        started.elapsed()
    );
    let size = server.settled_size(&relay.url);
    assert_eq!(size, 80);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.healthz(&rt);
        if health["anchor"]["status"] == "failing" {
            assert_eq!(health["status"], "degraded", "{health}");
            assert!(
                health["anchor"]["backlog"].as_u64().unwrap() > 0,
                "{health}"
            );
            assert!(
                health["anchor"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("cannot reach S3"),
                "{health}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outage was not reported: {health}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!anchored(&rt, &client, "default/")
        .iter()
        .any(|(s, _, _)| *s == size));

    relay.set_down(false);
    wait_anchored(&rt, &client, "default/", size);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.healthz(&rt);
        if health["anchor"]["status"] == "ok" && health["anchor"]["backlog"] == 0 {
            assert_eq!(health["status"], "ok", "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anchoring did not recover: {health}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
}
