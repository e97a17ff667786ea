//! `tally-bench tls`: durable ingest over TLS (HTTP/2 and HTTP/1.1) against plain HTTP in the
//! same run, on two embedded servers alike but for TLS, in alternating rounds; and the time of
//! a TLS handshake, full and resumed, over real sockets.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tally_load::http::HttpLoadOptions;

use crate::alternate::Variant;
use tally_server::app::{AdminKey, App, AppSettings, Running};
use tally_server::tls::TlsFiles;
use tally_server::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ingest over TLS versus plain HTTP, and TLS handshakes, full and resumed.
///
/// Two embedded servers (no search index, each its own temporary data directory) differ only
/// in TLS (a certificate made for the run). Each round runs every workload plain, over TLS
/// with HTTP/2 (what ALPN picks) and over TLS with HTTP/1.1; the table gives the medians over
/// the rounds and the ratio to plain.
///
/// Example: tally-bench tls --rounds 3 --duration 10
#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(flatten)]
    rounds: crate::alternate::RoundsArgs,
    /// Handshakes timed of each kind (full, resumed).
    #[arg(long, default_value_t = 300)]
    handshakes: usize,
}

struct Server {
    running: Running,
    token: String,
    _tmp: tempfile::TempDir,
}

async fn start(tls: Option<TlsFiles>) -> Result<Server> {
    let tmp = tempfile::Builder::new()
        .prefix("tally-bench-tls-")
        .tempdir()?;
    let app = App::start(AppSettings {
        http: ServerSettings {
            tls,
            ..ServerSettings::default()
        },
        index: None,
        admin: AdminKey::Create("bench".into()),
        ..AppSettings::new(tmp.path().join("data"))
    })
    .await?;
    let token = app.admin_token().context("no admin key")?.to_string();
    let running = app.spawn("127.0.0.1:0").await?;
    Ok(Server {
        running,
        token,
        _tmp: tmp,
    })
}

/// A CA and a certificate for localhost signed by it: (CA PEM, files).
fn certificates(dir: &std::path::Path) -> Result<(String, TlsFiles)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tally-bench CA");
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &issuer)?;
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca: None,
    };
    std::fs::write(&files.cert, leaf.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok((ca_pem, files))
}

/// Runs `tally-bench tls`.
pub async fn run(args: TlsArgs) -> Result<()> {
    if args.rounds.rounds == 0 || args.handshakes == 0 {
        bail!("--rounds and --handshakes must be at least 1");
    }
    let certs = tempfile::tempdir()?;
    let (ca_pem, files) = certificates(certs.path())?;
    let plain = start(None).await?;
    let tls = start(Some(files)).await?;
    let tls_url = tls.running.url.replace("127.0.0.1", "localhost");
    eprintln!("plain: {}   TLS: {tls_url}", plain.running.url);

    let variant = |name: &str, server: &Server, url: &str, http1_only: bool| Variant {
        name: name.to_string(),
        options: HttpLoadOptions {
            url: url.to_string(),
            token: server.token.clone(),
            ca_pem: Some(ca_pem.clone().into_bytes()),
            http1_only,
            ..HttpLoadOptions::default()
        },
    };
    let variants = [
        variant("plain HTTP/1.1", &plain, &plain.running.url, false),
        variant("TLS, HTTP/2", &tls, &tls_url, false),
        variant("TLS, HTTP/1.1", &tls, &tls_url, true),
    ];
    args.rounds.compare("Transport", &variants).await?;

    let addr = tls.running.url.trim_start_matches("https://").to_string();
    let (full, resumed, resumed_count) = handshakes(&ca_pem, &addr, args.handshakes).await?;
    println!();
    println!(
        "| Handshake (TCP connect + TLS 1.3, {} each) | Median ms | p99 ms |",
        args.handshakes
    );
    println!("|---|---|---|");
    for (name, mut times) in [("full", full), ("resumed", resumed)] {
        let n = times.len();
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.3} | {:.3} |",
            times[n / 2] * 1000.0,
            times[(n * 99 / 100).min(n - 1)] * 1000.0
        );
    }
    println!(
        "({resumed_count} of {} second handshakes were resumptions)",
        args.handshakes
    );
    plain.running.stop().await;
    tls.running.stop().await;
    Ok(())
}

/// Times `n` full handshakes (a client without a session cache) and `n` resumed ones (a
/// client whose previous connection left a ticket): seconds each, and how many of the second
/// kind did resume.
async fn handshakes(ca_pem: &str, addr: &str, n: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = |resume: bool| -> Result<Arc<rustls::ClientConfig>> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(config))
    };
    let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
    let once = |connector: tokio_rustls::TlsConnector| {
        let name = name.clone();
        let addr = addr.to_string();
        async move {
            let started = Instant::now();
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let mut stream = connector.connect(name, tcp).await?;
            let took = started.elapsed().as_secs_f64();
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            // One request, so that the server's session tickets are read and kept.
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await?;
            let mut sink = Vec::new();
            stream.read_to_end(&mut sink).await.ok();
            anyhow::Ok((took, resumed))
        }
    };
    let fresh = tokio_rustls::TlsConnector::from(config(false)?);
    let reusing = tokio_rustls::TlsConnector::from(config(true)?);
    let (mut full, mut resumed, mut resumed_count) = (Vec::new(), Vec::new(), 0);
    once(reusing.clone()).await?; // the first ticket
    for _ in 0..n {
        full.push(once(fresh.clone()).await?.0);
        let (took, did) = once(reusing.clone()).await?;
        resumed.push(took);
        resumed_count += usize::from(did);
    }
    Ok((full, resumed, resumed_count))
}
