//! API key management (admin scope): `GET`/`POST /v1/keys`, `DELETE /v1/keys/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::admin;
use crate::audit::Actor;
use crate::auth::{ApiKey, Revocation, Rotation, Scope};
use crate::error::ApiError;
use crate::extract::Auth;
use crate::wire::CreatedKey;
use crate::AppState;

/// A key to create.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    /// When the key stops working (RFC 3339, in the future); none: it works until revoked.
    #[serde(default)]
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Most requests per second the key may make (beyond: 429 with `Retry-After`); none: no
    /// limit of its own.
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    requests_per_second: Option<u32>,
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Lists the API keys the caller may manage (without secrets), revoked ones included and
/// marked: every key for a key of tenant `*`, the keys of its own tenant for a tenant's admin
/// key.
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

/// Creates an API key, recorded in the log (`tally.keys.create`) before it is answered.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "The key, with its token (shown only once)", body = CreatedKey),
        (status = 503, description = "The creation could not be recorded in the audit log, so no key was made", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The caller lacks the admin scope, or the new key would reach a tenant or hold a scope the caller lacks", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid key request", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let caller = auth.require(Scope::Admin)?;
    let new: NewKey = crate::extract::json_object(
        &body,
        false,
        "invalid_key_request",
        r#"{"name": "billing", "scopes": ["ingest"], "tenant": "acme"}"#,
    )?;
    let invalid = |field: &str, rule: &str| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key_request",
            field,
            rule,
        )
    };
    let name = admin::check_new_key(&new.name, &new.scopes, &new.tenant)
        .map_err(|e| invalid(&e.field, &e.rule))?;
    if new.requests_per_second == Some(0) {
        return Err(invalid(
            "requests_per_second",
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    let expires_at = new
        .expires_at
        .as_deref()
        .map(admin::check_expiry)
        .transpose()
        .map_err(|e| invalid(&e.field, &e.rule))?;
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
    // A key for a tenant that does not exist yet makes it, as a first event would (on the
    // record, by the caller), or is refused where tenants are made by an administrator only.
    if new.tenant != "*"
        && crate::routes::tenants::known(&state, &new.tenant)
            .await?
            .is_none()
    {
        match state.settings.unknown_tenants {
            crate::UnknownTenants::Refuse => {
                return Err(invalid(
                    "tenant",
                    "names no tenant, and this server does not create tenants on first use; \
                     create it first (tally tenants create NAME, or POST /v1/tenants)",
                ))
            }
            crate::UnknownTenants::Create => {
                admin::create_tenant(
                    &state.log,
                    &state.tenants,
                    Actor::Key(caller),
                    "key",
                    &new.tenant,
                )
                .await?;
            }
        }
    }
    let (key, token) = admin::create_key(
        &state.log,
        &state.keys,
        Actor::Key(caller),
        "api",
        admin::NewKey {
            name,
            scopes: new.scopes,
            tenant: &new.tenant,
            expires_at,
            requests_per_second: new.requests_per_second,
        },
    )
    .await
    .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, token })))
}

/// Revokes an API key at once, recorded in the log (`tally.keys.revoke`). The key stays
/// listed, marked revoked. The last unrevoked admin key of every tenant cannot be revoked.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the admin scope", body = crate::error::ErrorBody),
        (status = 404, description = "No such key within the caller's reach", body = crate::error::ErrorBody),
        (status = 409, description = "The key was revoked before (already_revoked), or it is the last admin key of every tenant (last_admin_key)", body = crate::error::ErrorBody),
        (status = 503, description = "Revoked, but the revocation could not be recorded in the audit log", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    let not_found = || ApiError::not_found(format!("no API key with id {id}"));
    // Keys beyond the caller's reach are answered as absent, like in the list.
    if !state
        .keys
        .get(&id)
        .is_some_and(|k| caller.may_manage(&k.tenant))
    {
        return Err(not_found());
    }
    match admin::revoke_key(&state.log, &state.keys, Actor::Key(caller), "api", &id)
        .await
        .map_err(ApiError::from)?
    {
        Revocation::Revoked(_) => Ok(StatusCode::NO_CONTENT),
        Revocation::NotFound => Err(not_found()),
        Revocation::AlreadyRevoked(at) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_revoked",
            format!("API key {id} was revoked at {at}"),
        )),
        Revocation::LastGlobalAdmin => Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_key",
            format!(
                "API key {id} is the last admin key of every tenant: revoking it would leave nobody able \
                 to manage keys. Create another admin key for tenant * first, then revoke this one."
            ),
        )),
    }
}

/// How long the previous secret of a rotated key keeps working.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateKey {
    /// Seconds the previous secret keeps working beside the new one, so that clients move
    /// without an outage: 0 (the default) stops it at once; at most 30 days (2592000).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 0, maximum = 2592000)]
    overlap_seconds: Option<u64>,
}

/// Gives a key a new secret, shown once in the answer, recorded in the log
/// (`tally.keys.rotate`). The key keeps its id (so its records stay attributed), scopes,
/// tenant and expiry; the previous secret works for the stated overlap, then stops.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", operation_id = "rotate_key",
    params(("id" = String, Path, description = "Key id")),
    request_body(content = Option<RotateKey>, description = "The overlap (optional; none: the old secret stops at once)"),
    responses((status = 200, description = "The key, with its new token (shown only once)", body = CreatedKey),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The caller lacks the admin scope, or a scope of the key it would hand a new secret for", body = crate::error::ErrorBody),
        (status = 404, description = "No such key within the caller's reach", body = crate::error::ErrorBody),
        (status = 409, description = "The key is revoked (revoked) or expired (expired)", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid rotation request", body = crate::error::ErrorBody),
        (status = 503, description = "Rotated, but the rotation could not be recorded in the audit log, so the new token is withheld: rotate again", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<CreatedKey>, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    let request: RotateKey = crate::extract::json_object(
        &body,
        true,
        "invalid_key_request",
        r#"{"overlap_seconds": 3600}"#,
    )?;
    let overlap = std::time::Duration::from_secs(request.overlap_seconds.unwrap_or(0));
    if overlap > admin::MAX_ROTATION_OVERLAP {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key_request",
            "overlap_seconds",
            "must be at most 2592000 (30 days)",
        ));
    }
    let not_found = || ApiError::not_found(format!("no API key with id {id}"));
    let Some(key) = state.keys.get(&id).filter(|k| caller.may_manage(&k.tenant)) else {
        return Err(not_found());
    };
    // A new secret hands the key's powers to whoever receives it.
    if !caller.may_grant(&key.scopes) {
        return Err(forbidden(
            "this API key cannot rotate a key that holds scopes it does not hold itself"
                .to_string(),
        ));
    }
    match admin::rotate_key(
        &state.log,
        &state.keys,
        Actor::Key(caller),
        "api",
        &id,
        overlap,
    )
    .await
    .map_err(ApiError::from)?
    {
        Rotation::Rotated(key, token) => Ok(Json(CreatedKey { key: *key, token })),
        Rotation::NotFound => Err(not_found()),
        Rotation::Revoked(at) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "revoked",
            format!("API key {id} was revoked at {at}; make a new key instead"),
        )),
        Rotation::Expired(at) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "expired",
            format!("API key {id} expired at {at}; make a new key instead"),
        )),
    }
}
