//! TLS over real sockets: HTTPS with HTTP/2 and HTTP/1.1 by ALPN, session resumption, a
//! certificate reloaded while connections stay open (and a broken one refused without harm),
//! and client certificates standing in for a key's secret on the ingest path only.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_server::tls::{Tls, TlsFiles};
use tally_server::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, common_name: &str, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Served {
    running: Running,
    admin: String,
    tls: Arc<Tls>,
    _tmp: tempfile::TempDir,
}

async fn start(server_ca: &Ca, client_ca: Option<&Ca>, dir: &Path) -> Served {
    let (cert, key) = leaf(server_ca, "tally test", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    if let Some(ca) = client_ca {
        std::fs::write(dir.join("client-ca.pem"), &ca.pem).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(AppSettings {
        http: ServerSettings {
            tls: Some(TlsFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
                client_ca: client_ca.map(|_| dir.join("client-ca.pem")),
            }),
            ..ServerSettings::default()
        },
        index: None,
        admin: AdminKey::Create("admin".into()),
        ..AppSettings::new(tmp.path().join("data"))
    })
    .await
    .expect("start tally with TLS");
    let admin = app.admin_token().unwrap().to_string();
    let tls = app.tls().expect("TLS configured").clone();
    let running = app.spawn("127.0.0.1:0").await.unwrap();
    Served {
        running,
        admin,
        tls,
        _tmp: tmp,
    }
}

fn https_client(ca: &Ca) -> reqwest::ClientBuilder {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
}

fn event() -> Value {
    json!({"time": "2026-11-30T10:00:00Z", "tenant": "acme", "action": "user.login",
           "outcome": "SUCCESS", "actor": {"id": "alice"}})
}

/// A raw TLS client (rustls) trusting `ca`, sharing its session cache across connections.
fn raw_client(ca: &Ca) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

use rustls::pki_types::pem::PemObject;

/// One HTTP/1.1 GET /healthz on an open TLS stream; the status line.
async fn healthz<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    // Read until the whole JSON body (Content-Length) is in.
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if body.len() >= length {
                return head.lines().next().unwrap().to_string();
            }
        }
    }
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn https_serves_h2_and_http1_resumes_sessions_and_reloads_without_dropping_connections() {
    let files = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let served = start(&server_ca, None, files.path()).await;
    let base = served.running.url.clone();
    assert!(base.starts_with("https://"), "{base}");
    let base = base.replace("127.0.0.1", "localhost");
    let addr = served
        .running
        .url
        .trim_start_matches("https://")
        .to_string();

    // HTTP/2 by ALPN, and HTTP/1.1 for a client that offers only that.
    let h2 = https_client(&server_ca).build().unwrap();
    let response = h2
        .post(format!("{base}/v1/events"))
        .bearer_auth(&served.admin)
        .json(&event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let h1 = https_client(&server_ca).http1_only().build().unwrap();
    let response = h1.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));

    // Session resumption: the second connection of a client resumes the first's session.
    let connector = raw_client(&server_ca);
    let mut first = connect(&connector, &addr).await;
    assert_eq!(healthz(&mut first).await, "HTTP/1.1 200 OK");
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut second = connect(&connector, &addr).await;
    assert_eq!(healthz(&mut second).await, "HTTP/1.1 200 OK");
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the second handshake resumes the session"
    );
    let served_cert = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let old_cert = served_cert(&first);

    // A renewed certificate, reloaded: new connections get it, open ones keep working.
    let (cert, key) = leaf(
        &server_ca,
        "tally test renewed",
        &["localhost", "127.0.0.1"],
    );
    std::fs::write(files.path().join("tls.crt"), cert).unwrap();
    std::fs::write(files.path().join("tls.key"), key).unwrap();
    served.tls.reload().expect("the renewed pair loads");
    assert_eq!(
        healthz(&mut first).await,
        "HTTP/1.1 200 OK",
        "still open after the reload"
    );
    let fresh = connect(&raw_client(&server_ca), &addr).await;
    assert_ne!(
        served_cert(&fresh),
        old_cert,
        "new connections get the new certificate"
    );

    // A broken file is refused and the certificate in use stays.
    std::fs::write(files.path().join("tls.key"), "not a key").unwrap();
    let err = served.tls.reload().unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let mut after = connect(&raw_client(&server_ca), &addr).await;
    assert_eq!(healthz(&mut after).await, "HTTP/1.1 200 OK");
    assert_eq!(served_cert(&after), served_cert(&fresh));

    // A server certificate from another CA is refused by the client: nothing to trust.
    let stranger = https_client(&ca("another CA")).build().unwrap();
    assert!(stranger
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
    served.running.stop().await;
}

#[tokio::test]
async fn a_client_certificate_naming_a_key_authenticates_ingest_and_nothing_else() {
    let files = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let served = start(&server_ca, Some(&client_ca), files.path()).await;
    let base = served.running.url.replace("127.0.0.1", "localhost");
    let admin_client = https_client(&server_ca).build().unwrap();
    let created: Value = admin_client
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&served.admin)
        .json(&json!({"name": "device", "scopes": ["ingest", "read"], "tenant": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();

    let with_cert = |ca: &Ca, cn: &str| {
        let (cert, key) = leaf(ca, cn, &[]);
        https_client(&server_ca)
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let device = with_cert(&client_ca, &key_id);
    let response = device
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    let stored: Value = device
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["events"][0]["tenant"], "acme", "the key's tenant");
    // Ingest only: the key may read, the certificate may not.
    let response = device
        .get(format!("{base}/v1/events/0?tenant=acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A certificate naming no key, and no certificate at all: 401.
    let nobody = with_cert(&client_ca, "not-a-key");
    let response = nobody
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = admin_client
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A certificate from a CA the server does not trust fails the handshake.
    let forged = with_cert(&ca("rogue CA"), &key_id);
    assert!(forged
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .is_err());
    // A revoked key's certificate authenticates nothing.
    let status = admin_client
        .delete(format!("{base}/v1/keys/{key_id}"))
        .bearer_auth(&served.admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let device = with_cert(&client_ca, &key_id);
    let response = device
        .post(format!("{base}/v1/events"))
        .json(&event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    served.running.stop().await;
}
