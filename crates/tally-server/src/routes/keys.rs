//! API key management (admin scope): `GET`/`POST /v1/keys`, `DELETE /v1/keys/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::auth::{ApiKey, Scope};
use crate::error::{ApiError, ErrorDetail};
use crate::extract::Auth;
use crate::wire::CreatedKey;
use crate::AppState;

/// A key to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// A label for people, e.g. `billing-service`: 1-128 characters, not only spaces, no
    /// control characters. Leading and trailing spaces are dropped.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f ][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    /// What the key may do.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// The tenant it is confined to, or `*` for all (admins only should hold `*`).
    #[schema(pattern = "^(\\*|[a-z0-9][a-z0-9_-]{0,62})$")]
    tenant: String,
}

fn key_error(e: crate::auth::KeyError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "key_store_error",
        e.to_string(),
    )
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Lists the API keys the caller may manage (without secrets): every key for a key of
/// tenant `*`, the keys of its own tenant for a tenant's admin key.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses(
        (status = 200, description = "The keys, without secrets", body = [ApiKey]),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = crate::error::ErrorBody),
    ),
    security(("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    // A tenant's admin sees its own tenant's keys only, never the global ones.
    let keys = state.keys.list();
    Ok(Json(
        keys.into_iter()
            .filter(|k| caller.may_manage(&k.tenant))
            .collect(),
    ))
}

/// Creates an API key.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "The key, with its token (shown only once)", body = CreatedKey),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The caller lacks the admin scope, or the new key would reach a tenant or hold a scope the caller lacks", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid key request", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Json<NewKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let caller = auth.require(Scope::Admin)?;
    let Json(new) = body.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key_request",
            e.body_text(),
        )
    })?;
    let invalid = |field: &str, rule: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key_request",
            format!("{field}: {rule}"),
        )
        .with_details(vec![ErrorDetail {
            event: None,
            field: Some(field.into()),
            rule: rule.into(),
            line: None,
            column: None,
        }])
    };
    // The rule is the document's pattern: the name must not be only spaces and must hold no
    // control character (it is shown in listings and terminals).
    let name = new.name.trim_matches(' ');
    if name.is_empty() || new.name.chars().count() > 128 {
        return Err(invalid(
            "name",
            "must be 1-128 characters and not only spaces",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    if new.scopes.is_empty() {
        return Err(invalid(
            "scopes",
            "must list at least one of ingest, read, admin",
        ));
    }
    if new.tenant != "*" && !tally_event::is_valid_tenant(&new.tenant) {
        return Err(invalid(
            "tenant",
            "must be * or a tenant name (a-z, 0-9, '_', '-')",
        ));
    }
    // A key never grants more than it holds: no tenant beyond its own, no scope it lacks.
    if !caller.may_manage(&new.tenant) {
        return Err(forbidden(format!(
            "this API key is confined to tenant {} and cannot create a key for {}",
            caller.tenant,
            if new.tenant == "*" {
                "every tenant (*)".to_string()
            } else {
                format!("tenant {}", new.tenant)
            }
        )));
    }
    if !caller.may_grant(&new.scopes) {
        return Err(forbidden(
            "this API key cannot grant scopes it does not hold itself".to_string(),
        ));
    }
    let (key, token) = state
        .keys
        .create(name, new.scopes, &new.tenant)
        .map_err(key_error)?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

/// Revokes an API key at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = crate::error::ErrorBody),
        (status = 404, description = "No such key within the caller's reach", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    // Keys beyond the caller's reach are answered as absent, like in the list.
    if !state
        .keys
        .get(&id)
        .is_some_and(|k| caller.may_manage(&k.tenant))
    {
        return Err(ApiError::not_found(format!("no API key with id {id}")));
    }
    if state.keys.revoke(&id).map_err(key_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no API key with id {id}")))
    }
}
