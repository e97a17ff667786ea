//! `tally serve` over TLS with the real binary: clients trust a private CA with --ca-cert, and
//! SIGHUP reloads the certificate (a broken pair is refused, the one in use stays).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, ok, serve_command, TALLY};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

fn write_pair(issuer: &Issuer<'_, KeyPair>, dir: &Path, cn: &str) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

fn wait_for(log: &Path, needle: &str) -> String {
    for _ in 0..400 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "the server never logged {needle:?}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn tally_serves_https_and_reloads_its_certificate_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    write_pair(&issuer, tmp.path(), "first");

    let dir = tmp.path().join("data");
    let port = free_port();
    let log = tmp.path().join("serve.log");
    let (cert, key) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    let mut child = serve_command(
        &dir,
        port,
        &[
            "--no-index",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .env("TALLY_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let token_file = dir.with_extension("token");
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && token_file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let url = format!("https://localhost:{port}");
    let tally = |args: &[&str], ca: bool| {
        let mut cmd = Command::new(TALLY);
        cmd.args(args)
            .env("TALLY_URL", &url)
            .env("TALLY_TOKEN", &token)
            .env("TALLY_LOG", "warn")
            .env_remove("TALLY_CA_CERT");
        if ca {
            cmd.arg("--ca-cert").arg(&ca_file);
        }
        cmd.output().unwrap()
    };
    let listed = ok(&tally(&["tenants", "list", "--json"], true));
    assert!(listed.contains("tally-system"), "{listed}");
    // Without the CA the certificate is not trusted, and the command says it could not get
    // through rather than anything else.
    let untrusted = tally(&["tenants", "list"], false);
    assert_eq!(untrusted.status.code(), Some(1));

    // A renewed certificate, then SIGHUP: reloaded, and the server keeps serving.
    write_pair(&issuer, tmp.path(), "second");
    let hup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(hup(child.id()).success());
    wait_for(&log, "TLS certificate reloaded");
    ok(&tally(&["tenants", "list"], true));
    // A broken key: refused, the certificate in use stays, the server keeps serving.
    std::fs::write(&key, "not a key").unwrap();
    assert!(hup(child.id()).success());
    let text = wait_for(&log, "NOT reloaded");
    assert!(text.contains("private key"), "{text}");
    ok(&tally(&["tenants", "list"], true));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains(&format!("listening on https://127.0.0.1:{port}")),
        "{stdout}"
    );
}
