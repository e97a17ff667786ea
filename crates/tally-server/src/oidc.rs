//! Single sign-on for people: bearer JWTs from a configured OpenID Connect issuer.
//!
//! A token is accepted when its signature verifies with a key of the issuer's JWKS (RS256,
//! ES256 or EdDSA; the key chosen by `kid`), its `iss` is the configured issuer, its `aud`
//! holds the configured audience, and it has not expired (`exp`, `nbf`, with a bounded clock
//! skew). Its claims map to a tenant and scopes through the configured rule: the tenant is the
//! string claim [`OidcSettings::tenant_claim`] (a tenant name or `*`), the scopes the claim
//! [`OidcSettings::scopes_claim`] (an array of scope names, or one space-separated string;
//! names that are not Tally scopes are ignored, and a token with none is refused). The person
//! is [`OidcSettings::person_claim`] (by default `email`), else `sub`: that is the actor
//! recorded for their reads and changes, not a key id.
//!
//! The JWKS comes from a file or an HTTPS URL; a token naming a `kid` the set does not hold
//! makes the server read it again (at most once a minute by default), so the issuer's key
//! rotation needs no restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;

use crate::auth::{Principal, Scope};

/// Largest clock skew accepted between Tally and the issuer.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Where the issuer's keys are.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS document on disk.
    File(PathBuf),
    /// The issuer's `jwks_uri`.
    Url(String),
}

/// The issuer Tally trusts and how its tokens' claims map to tenants and scopes.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A value the token's `aud` must hold (Tally's client id at the issuer).
    pub audience: String,
    /// The issuer's signing keys.
    pub jwks: JwksSource,
    /// Clock skew tolerated on `exp` and `nbf` (at most [`MAX_LEEWAY`]).
    pub leeway: Duration,
    /// The claim naming the person's tenant (`*`: every tenant).
    pub tenant_claim: String,
    /// The claim listing the person's Tally scopes.
    pub scopes_claim: String,
    /// The claim naming the person in the log (falls back to `sub`).
    pub person_claim: String,
    /// Shortest time between two fetches of the keys caused by unknown `kid`s.
    pub min_refetch: Duration,
}

impl OidcSettings {
    /// Settings with the default claim names (`tally_tenant`, `tally_scopes`, `email`) and a
    /// 60 s leeway.
    pub fn new(issuer: &str, audience: &str, jwks: JwksSource) -> OidcSettings {
        OidcSettings {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            jwks,
            leeway: Duration::from_secs(60),
            tenant_claim: "tally_tenant".into(),
            scopes_claim: "tally_scopes".into(),
            person_claim: "email".into(),
            min_refetch: Duration::from_secs(60),
        }
    }
}

/// Why the issuer's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("OIDC keys from {source_name}: {detail}")]
pub struct OidcError {
    /// The file or URL.
    pub source_name: String,
    /// What went wrong.
    pub detail: String,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// The configured issuer, with its current keys.
pub struct Oidc {
    settings: OidcSettings,
    keys: RwLock<Keys>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Loads the issuer's keys (failing when they cannot be read: better at start than at
    /// the first person's request).
    pub async fn load(settings: OidcSettings) -> Result<Arc<Oidc>, OidcError> {
        if settings.leeway > MAX_LEEWAY {
            return Err(OidcError {
                source_name: settings.issuer.clone(),
                detail: format!(
                    "a clock skew of {:?} is more than the {:?} allowed",
                    settings.leeway, MAX_LEEWAY
                ),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError {
                source_name: settings.issuer.clone(),
                detail: e.to_string(),
            })?;
        let set = fetch(&http, &settings.jwks).await?;
        Ok(Arc::new(Oidc {
            settings,
            keys: RwLock::new(Keys {
                set,
                fetched: Instant::now(),
            }),
            http,
        }))
    }

    /// The principal a token stands for, or why it is refused (for the 401's message).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("not a readable JWT: {e}"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(format!(
                "tokens signed with {:?} are not accepted (RS256, ES256, EdDSA are)",
                header.alg
            ));
        }
        let kid = header.kid.ok_or("the token names no key (kid)")?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refresh().await;
                self.key(&kid)
                    .ok_or_else(|| format!("the issuer has no key {kid}"))?
            }
        }?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("the token is not valid: {e}"))?
            .claims;
        self.principal(&claims)
    }

    fn key(&self, kid: &str) -> Option<Result<DecodingKey, String>> {
        let keys = self.keys.read();
        let jwk = keys.set.find(kid)?;
        Some(DecodingKey::from_jwk(jwk).map_err(|e| format!("the issuer's key {kid}: {e}")))
    }

    /// Fetches the keys again, at most once per [`OidcSettings::min_refetch`] (a token with
    /// an unknown `kid` must not let anyone make the server hammer the issuer).
    async fn refresh(&self) {
        if self.keys.read().fetched.elapsed() < self.settings.min_refetch {
            return;
        }
        match fetch(&self.http, &self.settings.jwks).await {
            Ok(set) => {
                *self.keys.write() = Keys {
                    set,
                    fetched: Instant::now(),
                }
            }
            Err(e) => {
                self.keys.write().fetched = Instant::now();
                tally_store::throttled_error!("oidc_keys", "{e}");
            }
        }
    }

    fn principal(&self, claims: &serde_json::Value) -> Result<Principal, String> {
        let s = &self.settings;
        let tenant = claims[&s.tenant_claim]
            .as_str()
            .filter(|t| *t == "*" || tally_event::is_valid_tenant(t))
            .ok_or_else(|| {
                format!(
                    "the token's {} claim names no tenant (or *)",
                    s.tenant_claim
                )
            })?;
        let names: Vec<String> = match &claims[&s.scopes_claim] {
            serde_json::Value::String(text) => {
                text.split_whitespace().map(str::to_string).collect()
            }
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let scopes: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|scope| names.iter().any(|n| n == scope.name()))
            .collect();
        if scopes.is_empty() {
            return Err(format!(
                "the token's {} claim grants no Tally scope",
                s.scopes_claim
            ));
        }
        let subject = claims["sub"].as_str().unwrap_or_default();
        let person = claims[&s.person_claim]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or(subject)
            .chars()
            .take(256)
            .collect::<String>();
        Ok(Principal {
            key_id: format!("oidc:{}", subject.chars().take(128).collect::<String>()),
            scopes,
            tenant: tenant.to_string(),
            requests_per_second: None,
            person: Some(person),
        })
    }
}

async fn fetch(http: &reqwest::Client, source: &JwksSource) -> Result<JwkSet, OidcError> {
    let (name, bytes) = match source {
        JwksSource::File(path) => (
            path.display().to_string(),
            std::fs::read(path).map_err(|e| OidcError {
                source_name: path.display().to_string(),
                detail: e.to_string(),
            })?,
        ),
        JwksSource::Url(url) => {
            let failed = |detail: String| OidcError {
                source_name: url.clone(),
                detail,
            };
            let response = http
                .get(url)
                .send()
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("answered {}", response.status())));
            }
            let bytes = response.bytes().await.map_err(|e| failed(e.to_string()))?;
            (url.clone(), bytes.to_vec())
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| OidcError {
        source_name: name,
        detail: format!("not a JWKS document: {e}"),
    })
}
