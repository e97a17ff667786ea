//! A small HTTP client of the Tally API that turns error responses into readable messages.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Response, StatusCode};
use tally_server::error::ErrorBody;

use crate::ServerArgs;

/// Client bound to one server and API key.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for `args.url` with `args.token`.
    pub fn new(args: &ServerArgs) -> Result<Self> {
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("tally-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!("{} is not a PEM certificate (--ca-cert)", path.display())
            })?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(ApiClient {
            http,
            base: args.url.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    /// A request to `path` (absolute, e.g. `/v1/events`) with the API key attached.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let token = self.token.as_deref().ok_or_else(|| {
            anyhow!("no API key: pass --token or set TALLY_TOKEN (tally serve prints one on first start)")
        })?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token))
    }

    /// GET `path` with query parameters; the successful response.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Response> {
        let response = self
            .request(reqwest::Method::GET, path)?
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach {} (is `tally serve` running?)", self.base))?;
        check(response).await
    }

    /// GET without credentials (public endpoints).
    pub async fn get_public(&self, path: &str) -> Result<Response> {
        check(self.get_public_any_status(path).await?).await
    }

    /// GET without credentials, whatever the answer's status (`/healthz` answers 503 with a
    /// body worth reading).
    pub async fn get_public_any_status(&self, path: &str) -> Result<Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("cannot reach {} (is `tally serve` running?)", self.base))
    }
}

/// Passes a 2xx response through; turns any other into an error carrying the API's message.
pub async fn check(response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => describe_error(&body, |i| format!("event {i}")),
        Err(_) => text,
    };
    match status {
        StatusCode::UNAUTHORIZED => bail!("{message} (HTTP 401: check --token / TALLY_TOKEN)"),
        _ => bail!("{message} (HTTP {})", status.as_u16()),
    }
}

/// The API's error message followed by its per-field problems (at most 20), each labelled by
/// `event` (e.g. `event 3`, or the input line it came from).
pub fn describe_error(body: &ErrorBody, event: impl Fn(usize) -> String) -> String {
    let mut message = body.error.message.clone();
    for d in body.error.details.iter().take(20) {
        let at = d
            .event
            .map(|i| format!("{}: ", event(i)))
            .unwrap_or_default();
        let field = d
            .field
            .as_ref()
            .map(|f| format!("{f}: "))
            .unwrap_or_default();
        message.push_str(&format!("\n  - {at}{field}{}", d.rule));
    }
    message
}
