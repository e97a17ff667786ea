//! Tenants: `GET`/`POST /v1/tenants`, `GET /v1/tenants/{tenant}`, and the operator's
//! controls `POST /v1/tenants/{tenant}/disable|enable`, `PUT /v1/tenants/{tenant}/quotas`.
//!
//! Reading needs the verify scope or one implying it (and the tenant in the key's reach); changing needs an admin
//! key of every tenant: a tenant's own admin manages its keys, not its existence or limits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::admin;
use crate::audit::Actor;
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::extract::Auth;
use crate::tenants::{Change, Quotas, Tenant, TenantStatus};
use crate::wire::TenantInfo;
use crate::AppState;

/// A tenant to create.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    /// Its name: 1-63 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    name: String,
}

/// Why a tenant is disabled.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisableTenant {
    /// Shown to clients whose events are refused, and recorded: at most 500 characters, no
    /// control characters.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    reason: Option<String>,
}

/// What the API shows of a tenant: the registry's view and its log's.
pub(crate) fn info(state: &AppState, tenant: Tenant) -> TenantInfo {
    let log = state.log.tenant(&tenant.name);
    TenantInfo {
        size: log.as_ref().map_or(0, |l| l.size()),
        checkpoint_size: log.as_ref().and_then(|l| l.checkpoint().map(|c| c.size)),
        origin: log.as_ref().map_or_else(
            || tally_store::tenant_origin(&state.log.config().origin, &tenant.name),
            |l| l.origin().to_string(),
        ),
        record_bytes: log.as_ref().map_or(0, |l| l.record_bytes()),
        tenant,
    }
}

/// The registry's entry for `name`, adopting (on the record) a log the registry does not list
/// yet: one only the server wrote to, or one whose first events are being stored right now.
pub(crate) async fn known(state: &AppState, name: &str) -> Result<Option<Tenant>, ApiError> {
    if let Some(t) = state.tenants.get(name) {
        return Ok(Some(t));
    }
    if state.log.tenant(name).is_none() {
        return Ok(None);
    }
    admin::adopt_tenant(&state.log, &state.tenants, name).await?;
    Ok(state.tenants.get(name))
}

/// 403 unless the caller is an admin of every tenant.
pub(super) fn require_operator(auth: &Auth) -> Result<&Principal, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    if !caller.is_global_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this API key administers tenant {} only; creating, disabling and limiting tenants \
                 needs an admin key of every tenant (*)",
                caller.tenant
            ),
        ));
    }
    Ok(caller)
}

const TENANT_RULE: &str =
    "must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit";

pub(super) fn tenant_name(name: &str) -> Result<&str, ApiError> {
    if !tally_event::is_valid_tenant(name) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "tenant",
            TENANT_RULE,
        ));
    }
    Ok(name)
}

pub(super) fn no_tenant(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no tenant {name} (see GET /v1/tenants; create it with POST /v1/tenants)"
    ))
}

fn system_tenant(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "system_tenant",
        format!(
            "{name} holds the server's own records (key and tenant changes); it is never disabled \
             nor limited"
        ),
    )
}

/// Lists the tenants this key may read, with their state, quotas and log sizes.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", operation_id = "list_tenants",
    responses(
        (status = 200, description = "The tenants in the key's reach", body = [TenantInfo]),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the verify scope (read and admin imply it)", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    let caller = auth.require(Scope::Verify)?;
    for name in state.log.tenants() {
        known(&state, &name).await?;
    }
    Ok(Json(
        state
            .tenants
            .list()
            .into_iter()
            .filter(|t| caller.may_access(&t.name))
            .map(|t| info(&state, t))
            .collect(),
    ))
}

/// Describes one tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant}", tag = "tenants", operation_id = "describe_tenant",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The tenant", body = TenantInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the verify scope or the tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn describe(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    auth.require(Scope::Verify)?;
    let name = auth.tenant(Some(tenant_name(&name)?))?;
    let tenant = known(&state, &name)
        .await?
        .ok_or_else(|| no_tenant(&name))?;
    Ok(Json(info(&state, tenant)))
}

/// Creates a tenant (enabled, no quotas), recorded as `tally.tenants.create` in the system
/// tenant's log.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", operation_id = "create_tenant", request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = TenantInfo),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key is not an admin key of every tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The tenant exists already (tenant_exists)", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid tenant request", body = crate::error::ErrorBody),
        (status = 503, description = "The creation could not be recorded in the audit log, so it was undone", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    let caller = require_operator(&auth)?;
    let new: NewTenant = crate::extract::json_object(
        &body,
        false,
        "invalid_tenant_request",
        r#"{"name": "acme"}"#,
    )?;
    if !tally_event::is_valid_tenant(&new.name) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tenant_request",
            "name",
            TENANT_RULE,
        ));
    }
    let exists = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            format!("tenant {} exists already", new.name),
        )
    };
    if known(&state, &new.name).await?.is_some() {
        return Err(exists());
    }
    let tenant = admin::create_tenant(
        &state.log,
        &state.tenants,
        Actor::Key(caller),
        "api",
        &new.name,
    )
    .await
    .map_err(ApiError::from)?
    .ok_or_else(exists)?;
    Ok((StatusCode::CREATED, Json(info(&state, tenant))))
}

/// Disables a tenant: its ingest is refused (403 `tenant_disabled`, with the reason) from now
/// on; it stays readable, provable and verifiable. Recorded as `tally.tenants.disable`.
/// Disabling a disabled tenant changes nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/disable", tag = "tenants", operation_id = "disable_tenant",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    request_body(content = Option<DisableTenant>, description = "Why (optional)"),
    responses(
        (status = 200, description = "The tenant, disabled", body = TenantInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key is not an admin key of every tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The system tenant is never disabled (system_tenant)", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid request", body = crate::error::ErrorBody),
        (status = 503, description = "Disabled, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn disable(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TenantInfo>, ApiError> {
    // The body is optional: none, or null, means no reason given.
    let body: DisableTenant = crate::extract::json_object(
        &body,
        true,
        "invalid_tenant_request",
        r#"{"reason": "contract ended"}"#,
    )?;
    if let Some(reason) = &body.reason {
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_tenant_request",
                "reason",
                "must be at most 500 characters, without control characters",
            ));
        }
    }
    change_status(
        &state,
        &auth,
        &name,
        TenantStatus::Disabled,
        body.reason.as_deref(),
    )
    .await
}

/// Re-enables a disabled tenant, recorded as `tally.tenants.enable`. Enabling an enabled
/// tenant changes nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/enable", tag = "tenants", operation_id = "enable_tenant",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The tenant, enabled", body = TenantInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key is not an admin key of every tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The system tenant's state cannot be changed (system_tenant)", body = crate::error::ErrorBody),
        (status = 503, description = "Enabled, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn enable(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    change_status(&state, &auth, &name, TenantStatus::Enabled, None).await
}

async fn change_status(
    state: &AppState,
    auth: &Auth,
    name: &str,
    status: TenantStatus,
    reason: Option<&str>,
) -> Result<Json<TenantInfo>, ApiError> {
    let caller = require_operator(auth)?;
    let name = tenant_name(name)?;
    if admin::is_system_tenant(name) {
        return Err(system_tenant(name));
    }
    known(state, name).await?.ok_or_else(|| no_tenant(name))?;
    let change = admin::set_tenant_status(
        &state.log,
        &state.tenants,
        Actor::Key(caller),
        "api",
        name,
        status,
        reason,
    )
    .await
    .map_err(ApiError::from)?;
    changed(state, name, change)
}

fn changed(state: &AppState, name: &str, change: Change) -> Result<Json<TenantInfo>, ApiError> {
    match change {
        Change::Done(t) | Change::Unchanged(t) => Ok(Json(info(state, t))),
        Change::NotFound => Err(no_tenant(name)),
    }
}

/// Replaces a tenant's quotas (absent fields: no limit), recorded as `tally.tenants.quotas`.
/// Over a quota, ingest answers 429 with `Retry-After`.
#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/quotas", tag = "tenants", operation_id = "set_tenant_quotas", request_body = Quotas,
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The tenant with its new quotas", body = TenantInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key is not an admin key of every tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The system tenant is never limited (system_tenant)", body = crate::error::ErrorBody),
        (status = 422, description = "The body is not a valid quota request", body = crate::error::ErrorBody),
        (status = 503, description = "Changed, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn set_quotas(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TenantInfo>, ApiError> {
    let caller = require_operator(&auth)?;
    let name = tenant_name(&name)?;
    let quotas: Quotas = crate::extract::json_object(
        &body,
        false,
        "invalid_quota_request",
        r#"{"events_per_second": 500, "max_stored_bytes": 53687091200}"#,
    )?;
    for (field, zero) in [
        ("events_per_second", quotas.events_per_second == Some(0)),
        ("max_stored_bytes", quotas.max_stored_bytes == Some(0)),
    ] {
        if zero {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_quota_request",
                field,
                "must be at least 1 (leave it out for no limit; disable the tenant to stop its ingest)",
            ));
        }
    }
    if admin::is_system_tenant(name) {
        return Err(system_tenant(name));
    }
    known(&state, name).await?.ok_or_else(|| no_tenant(name))?;
    let change = admin::set_tenant_quotas(
        &state.log,
        &state.tenants,
        Actor::Key(caller),
        "api",
        name,
        quotas,
    )
    .await
    .map_err(ApiError::from)?;
    changed(&state, name, change)
}
