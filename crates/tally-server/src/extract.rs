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
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send an API key: Authorization: Bearer tly_…"))?;
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must read: Bearer tly_…"))?;
        state
            .keys
            .authenticate(token.trim())
            .map(Auth)
            .ok_or_else(|| unauthorized("unknown or revoked API key"))
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
                format!("this API key lacks the {scope:?} scope").to_lowercase(),
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

/// The caller of a route that serves the Merkle tree (checkpoints, hash tiles, proofs). With
/// [`crate::ServerSettings::public_tree`], a request without an `Authorization` header is
/// let in as [`TreeReader::Anyone`]; a request that sends a key is authenticated and
/// confined as on every other route, so a key never gets less than it would without the
/// option.
pub(crate) enum TreeReader {
    /// No key, on a server whose tree is public.
    Anyone,
    /// A key with the read scope.
    Key(Auth),
}

impl FromRequestParts<AppState> for TreeReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings.public_tree && !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(TreeReader::Anyone);
        }
        let auth = Auth::from_request_parts(parts, state).await?;
        auth.require(Scope::Read)?;
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

    /// 401 for anyone without a key: `what` is not part of the public tree.
    pub(crate) fn require_key(&self, what: &str) -> Result<(), ApiError> {
        match self {
            TreeReader::Key(_) => Ok(()),
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
