//! Request extractors that answer their failures with the API's JSON errors.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::AppState;

/// The authenticated caller (`Authorization: Bearer tly_…`).
pub(crate) struct Auth(pub(crate) Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.to_string(),
            )
        };
        let principal = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        unauthorized("the Authorization header must read: Bearer tly_…")
                    })?;
                let token = token.trim();
                match &state.oidc {
                    // A person's token from the single sign-on issuer.
                    Some(oidc) if !token.starts_with("tly_") => {
                        oidc.authenticate(token).await.map_err(|why| {
                            unauthorized(&format!("the sign-on token is refused: {why}"))
                        })?
                    }
                    _ => state
                        .keys
                        .authenticate(token)
                        .ok_or_else(|| unauthorized("unknown, expired or revoked API key"))?,
                }
            }
            // A verified client certificate (TLS with a client CA) naming a key: ingest only.
            None => match parts.extensions.get::<crate::tls::ClientCertName>() {
                Some(name) => state.keys.certificate_principal(&name.0).ok_or_else(|| {
                    unauthorized(
                        "the client certificate's common name is not the id of a valid API key \
                         that may ingest; send an API key: Authorization: Bearer tly_…",
                    )
                })?,
                None => return Err(unauthorized("send an API key: Authorization: Bearer tly_…")),
            },
        };
        if let Some(rate) = principal.requests_per_second {
            state
                .key_rates
                .take(&principal.key_id, rate, 1)
                .map_err(|wait| {
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!(
                            "this API key may make {rate} requests per second; retry after the delay"
                        ),
                    )
                    .retry_after(crate::rate::Buckets::retry_after(wait))
                })?;
        }
        Ok(Auth(principal))
    }
}

impl Auth {
    /// Fails with 403 unless the key has `scope`.
    pub(crate) fn require(&self, scope: Scope) -> Result<&Principal, ApiError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key lacks the {} scope", scope.name()),
            ))
        }
    }

    /// The tenant a request addresses: the one it names, else the key's default; 400 for a
    /// malformed name, 403 for a tenant the key may not touch.
    pub(crate) fn tenant(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let tenant = requested.unwrap_or(self.0.default_tenant());
        if !tally_event::is_valid_tenant(tenant) {
            return Err(ApiError::bad_param(
                "tenant",
                "must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
            ));
        }
        if !self.0.may_access(tenant) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key is confined to tenant {}", self.0.tenant),
            ));
        }
        Ok(tenant.to_string())
    }
}

/// The client's address, as the listener saw it (absent when the app is served without the
/// crate's listener, as in some tests).
pub(crate) struct ClientIp(pub(crate) Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The caller of a route that serves the Merkle tree (checkpoints, hash tiles, proofs). With
/// [`crate::ServerSettings::public_tree`], a request without an `Authorization` header is
/// let in as [`TreeReader::Anyone`]; a request that sends a key is authenticated and
/// confined as on every other route, so a key never gets less than it would without the
/// option.
pub(crate) enum TreeReader {
    /// No key, on a server whose tree is public.
    Anyone,
    /// A key with the verify scope (or one implying it).
    Key(Auth),
}

impl FromRequestParts<AppState> for TreeReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings.public_tree && !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(TreeReader::Anyone);
        }
        let auth = Auth::from_request_parts(parts, state).await?;
        auth.require(Scope::Verify)?;
        Ok(TreeReader::Key(auth))
    }
}

impl TreeReader {
    /// The tenant a request addresses: the one it names, else the key's default (or
    /// `default` for anyone); 400 for a malformed name, 403 for a tenant the key may not touch.
    pub(crate) fn tenant(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match self {
            TreeReader::Key(auth) => auth.tenant(requested),
            TreeReader::Anyone => {
                let tenant = requested.unwrap_or(crate::DEFAULT_TENANT);
                if !tally_event::is_valid_tenant(tenant) {
                    return Err(ApiError::bad_param(
                        "tenant",
                        "must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
                    ));
                }
                Ok(tenant.to_string())
            }
        }
    }

    /// The key, when the caller sent one.
    pub(crate) fn principal(&self) -> Option<&Principal> {
        match self {
            TreeReader::Key(auth) => Some(&auth.0),
            TreeReader::Anyone => None,
        }
    }

    /// `what` is about the records, not the tree: 401 for anyone without a key, 403 for a
    /// key without the read scope (a verifier's).
    pub(crate) fn require_read(&self, what: &str) -> Result<(), ApiError> {
        match self {
            TreeReader::Key(auth) => auth.require(Scope::Read).map(|_| ()),
            TreeReader::Anyone => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "{what} needs an API key with the read scope (only the Merkle tree is public \
                     here): send Authorization: Bearer tly_…"
                ),
            )),
        }
    }
}

/// Largest leaf index or tree size a request may name. The OpenAPI document declares indexes
/// and sizes as int64 (what most client languages hold); no log reaches 2^63 events, so a
/// larger number is a client bug and gets a 400 rather than a search for it.
pub(crate) const MAX_INDEX: u64 = i64::MAX as u64;

/// The pattern of a tenant name, as the OpenAPI document states it: the schema's.
pub(crate) const TENANT_PATTERN: &str = tally_event::fields::TENANT_PATTERN;

/// The pattern of an event id: a UUID in its hyphenated form only (the one the ingest path
/// accepts), so that one id has one spelling. The schema's.
pub(crate) const UUID_PATTERN: &str = tally_event::fields::UUID_PATTERN;

/// Integer schemas with exact int64 bounds, for parameters of the OpenAPI document (utoipa's
/// attribute literals cannot hold them).
macro_rules! bounded_integer {
    ($(#[$doc:meta] $name:ident: $min:expr, $max:expr;)*) => {$(
        #[$doc]
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::schema(serde_json::json!({
                    "type": "integer", "format": "int64", "minimum": $min, "maximum": $max,
                }))
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

bounded_integer! {
    /// A leaf index: 0 to [`MAX_INDEX`].
    LeafIndex: 0, MAX_INDEX;
    /// A tree size that holds at least one leaf: 1 to [`MAX_INDEX`].
    TreeSize: 1, MAX_INDEX;
    /// A `Last-Event-ID`: a leaf index with a successor.
    ResumeIndex: 0, MAX_INDEX - 1;
}

/// Checks a leaf index or tree size that serde already parsed: 400 naming `name` above
/// [`MAX_INDEX`].
pub(crate) fn bounded_index(name: &str, value: u64) -> Result<u64, ApiError> {
    if value > MAX_INDEX {
        return Err(ApiError::bad_param(
            name,
            format!("must be an integer from 0 to {MAX_INDEX}"),
        ));
    }
    Ok(value)
}

/// Parses a leaf index or tree size given as text: decimal digits only, at most
/// [`MAX_INDEX`]; anything else is a 400 naming `name`.
pub(crate) fn parse_index(name: &str, text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_param(name, format!("must be an integer from 0 to {MAX_INDEX}"));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<u64>()
        .ok()
        .filter(|&v| v <= MAX_INDEX)
        .ok_or_else(bad)
}

/// Parses an event id: the hyphenated UUID form only (see [`UUID_PATTERN`]).
pub(crate) fn parse_event_id(name: &str, text: &str) -> Result<uuid::Uuid, ApiError> {
    if text.len() == uuid::fmt::Hyphenated::LENGTH {
        if let Ok(id) = uuid::Uuid::try_parse(text) {
            return Ok(id);
        }
    }
    Err(ApiError::bad_param(
        name,
        "must be an event UUID in 8-4-4-4-12 hexadecimal form",
    ))
}

/// Parses a JSON request body that must be an object (serde would also build a struct from an
/// array). With `optional`, no body, whitespace or `null` gives `T::default()`. Anything else
/// is a 422 with `code`, showing `example`.
pub(crate) fn json_object<T: DeserializeOwned + Default>(
    body: &[u8],
    optional: bool,
    code: &'static str,
    example: &str,
) -> Result<T, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("the body must be a JSON object such as {example}: {why}"),
        )
    };
    if optional && body.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    match value {
        serde_json::Value::Null if optional => Ok(T::default()),
        serde_json::Value::Object(_) => {
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
        }
        other => Err(invalid(format!("got {}", json_kind(&other)))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An optional whole number as JSON Schema counts one: `5` and `5.0` alike (a client's JSON
/// library may write either), up to `T`'s bound and at most 2^63 − 1 (the int64 the OpenAPI
/// document declares); anything else is an error naming the rule.
pub(crate) fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_223_372_036_854_775_808.0) // 2^63
            .map(|f| f as u64)
    });
    whole
        .filter(|&n| n <= i64::MAX as u64)
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// Query parameters, with a JSON 400 naming the parameter when they do not parse.
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded_deserializer(query);
        match de {
            Ok(value) => Ok(Query(value)),
            Err(message) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                message,
            )),
        }
    }
}

fn serde_urlencoded_deserializer<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| "malformed query string".to_string())?,
    )
    .map(|q| q.0)
    .map_err(|e| format!("query parameters: {}", e.body_text()))
}
