//! Single sign-on for people, over real HTTP: JWTs of a configured OIDC issuer (RS256, ES256,
//! EdDSA; keys from a JWKS file or URL), audience, issuer and expiry checked with a bounded
//! clock skew, claims mapped to a tenant and scopes, and the person — not a key — recorded as
//! the actor of their reads and changes. The tests make their own keys and tokens.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::TestServer;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tally_server::aggregate::AggregateSettings;
use tally_server::oidc::{JwksSource, OidcSettings};
use tally_server::ServerSettings;

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "tally";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the test issuer: its algorithm, kid, private key and public JWK.
struct Signer {
    alg: Algorithm,
    kid: &'static str,
    key: EncodingKey,
    jwk: Value,
}

fn ec_signer(kid: &'static str) -> Signer {
    let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw(); // 0x04 || x || y
    Signer {
        alg: Algorithm::ES256,
        kid,
        key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

fn ed_signer(kid: &'static str) -> Signer {
    let pair = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    Signer {
        alg: Algorithm::EdDSA,
        kid,
        key: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
                    "x": b64(pair.public_key_raw())}),
    }
}

fn rsa_signer() -> Signer {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    Signer {
        alg: Algorithm::RS256,
        kid: "rsa1",
        key: EncodingKey::from_rsa_pem(&std::fs::read(dir.join("oidc-rsa.pem")).unwrap()).unwrap(),
        jwk: serde_json::from_slice(&std::fs::read(dir.join("oidc-rsa.jwk.json")).unwrap())
            .unwrap(),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Claims of a person of tenant `tenant` with `scopes`, valid for ten minutes.
fn claims(tenant: &str, scopes: &[&str]) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1234", "email": "alice@example.com",
           "iat": now(), "exp": now() + 600,
           "tally_tenant": tenant, "tally_scopes": scopes})
}

fn sign(signer: &Signer, claims: &Value) -> String {
    let mut header = Header::new(signer.alg);
    header.kid = Some(signer.kid.to_string());
    encode(&header, claims, &signer.key).unwrap()
}

async fn start(jwks: JwksSource) -> TestServer {
    let mut oidc = OidcSettings::new(ISSUER, AUDIENCE, jwks);
    oidc.min_refetch = Duration::ZERO;
    TestServer::start(ServerSettings {
        oidc: Some(oidc),
        aggregate: AggregateSettings {
            window: Duration::from_millis(300),
            max_groups: 200,
        },
        ..ServerSettings::default()
    })
    .await
}

async fn call(
    http: &Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn people_sign_in_with_rs256_es256_and_eddsa_and_are_the_actors_on_record() {
    let (ec, ed, rsa) = (ec_signer("ec1"), ed_signer("ed1"), rsa_signer());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [ec.jwk, ed.jwk, rsa.jwk]}).to_string(),
    )
    .unwrap();
    let server = start(JwksSource::File(jwks)).await;
    let base = server.running.url.clone();
    let http = Client::new();
    let event = json!({"time": "2026-11-30T10:00:00Z", "action": "patient.read",
                       "outcome": "SUCCESS", "actor": {"id": "dr-who"}});

    // Every accepted algorithm signs a person in.
    for signer in [&ec, &ed, &rsa] {
        let token = sign(signer, &claims("acme", &["ingest", "read"]));
        let (status, body) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/events"),
            &token,
            Some(event.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{:?}: {body}", signer.alg);
        assert_eq!(body["events"][0]["tenant"], "acme", "the tenant claim");
    }
    let token = sign(&ec, &claims("acme", &["ingest", "read"]));
    let (status, record) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/events/0?tenant=acme"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        record["key_id"], "oidc:u-1234",
        "records name the signed-in subject"
    );
    // Scopes and tenant come from the claims: no admin, no other tenant.
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/keys"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/events/0?tenant=beta"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Refused tokens: each a 401 naming why.
    let mut expired = claims("acme", &["read"]);
    expired["exp"] = json!(now() - 3600);
    let mut skewed = claims("acme", &["read"]);
    skewed["exp"] = json!(now() - 20); // within the 60 s leeway: accepted below
    let mut wrong_aud = claims("acme", &["read"]);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("acme", &["read"]);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_scope = claims("acme", &["read"]);
    no_scope["tally_scopes"] = json!(["superuser"]);
    let mut bad_tenant = claims("acme", &["read"]);
    bad_tenant["tally_tenant"] = json!("Not A Tenant");
    let stranger = ec_signer("ec1"); // same kid, another key
    let unknown_kid = ec_signer("ec9");
    let valid = sign(&ec, &claims("acme", &["read"]));
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(claims("*", &["admin"]).to_string().as_bytes())
    );
    let hs256 = encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("ec1".into());
            h
        },
        &claims("acme", &["read"]),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    for (what, token) in [
        ("expired", sign(&ec, &expired)),
        ("wrong audience", sign(&ec, &wrong_aud)),
        ("wrong issuer", sign(&ec, &wrong_iss)),
        ("no Tally scope", sign(&ec, &no_scope)),
        ("malformed tenant", sign(&ec, &bad_tenant)),
        (
            "another key under a known kid",
            sign(&stranger, &claims("acme", &["read"])),
        ),
        (
            "a kid the issuer does not have",
            sign(&unknown_kid, &claims("acme", &["read"])),
        ),
        ("tampered claims", tampered),
        ("HS256", hs256),
        ("not a JWT", "eyJhbGciOiJFUzI1NiJ9.garbage".to_string()),
    ] {
        let (status, body) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/tenants/acme"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    let (status, _) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/tenants/acme"),
        &sign(&ec, &skewed),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an expiry within the clock skew");

    // A person's administration is theirs on the record.
    let ops = sign(&ed, &{
        let mut c = claims("*", &["admin"]);
        c["email"] = json!("ops@example.com");
        c
    });
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/keys"),
        &ops,
        Some(json!({"name": "svc", "scopes": ["ingest"], "tenant": "acme"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the read window closes

    let admin = server.admin.clone();
    let list: Value = http
        .get(format!("{base}/v1/tenants/acme"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let size = list["size"].as_u64().unwrap();
    let mut acme = Vec::new();
    for i in 0..size {
        let (_, e) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/events/{i}?tenant=acme"),
            &admin,
            None,
        )
        .await;
        acme.push(e);
    }
    let key_created = acme
        .iter()
        .find(|e| e["action"] == "tally.keys.create")
        .expect("the key's creation");
    assert_eq!(
        key_created["actor"],
        json!({"id": "ops@example.com", "type": "user"})
    );
    // The person's read of event 0 is on the record although keys' reads are not recorded
    // by default.
    let read = acme
        .iter()
        .find(|e| e["action"] == "tally.events.get")
        .expect("the person's read");
    assert_eq!(read["actor"]["id"], "alice@example.com");
    assert_eq!(read["actor"]["type"], "user");
    assert_eq!(read["metadata"]["indexes"], json!([0]));
    server.stop().await;
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_fetched_again_when_the_issuer_rotates() {
    let (old, new) = (ec_signer("2026-11"), ed_signer("2026-12"));
    let served = Arc::new(Mutex::new(json!({"keys": [old.jwk]})));
    let app = {
        let served = served.clone();
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move { axum::Json(served.lock().unwrap().clone()) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let server = start(JwksSource::Url(url)).await;
    let base = server.running.url.clone();
    let http = Client::new();
    let get = |token: String| {
        let http = http.clone();
        let url = format!("{base}/v1/tenants");
        async move { call(&http, reqwest::Method::GET, url, &token, None).await.0 }
    };
    assert_eq!(
        get(sign(&old, &claims("acme", &["read"]))).await,
        StatusCode::OK
    );
    assert_eq!(
        get(sign(&new, &claims("acme", &["read"]))).await,
        StatusCode::UNAUTHORIZED,
        "not published yet"
    );
    // The issuer publishes its new key: the next token with that kid makes Tally fetch it.
    *served.lock().unwrap() = json!({"keys": [old.jwk, new.jwk]});
    assert_eq!(
        get(sign(&new, &claims("acme", &["read"]))).await,
        StatusCode::OK
    );
    server.stop().await;
}
