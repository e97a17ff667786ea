//! Reading stored records: `GET /v1/events/{id or index}` and `GET /v1/tenants`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tally_store::TenantLog;

use crate::auth::Scope;
use crate::error::ApiError;
use crate::extract::{Auth, Query};
use crate::AppState;

/// The tenant a read addresses.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct TenantParam {
    /// Tenant (default: the key's tenant, or `default`).
    pub(crate) tenant: Option<String>,
}

/// The tenant's log, or 404 when it has none yet.
pub(crate) fn tenant_log(state: &AppState, tenant: &str) -> Result<Arc<TenantLog>, ApiError> {
    state
        .log
        .tenant(tenant)
        .ok_or_else(|| ApiError::from(tally_store::ReadError::UnknownTenant(tenant.to_string())))
}

/// Resolves an event key: a decimal leaf index or an event UUID.
pub(crate) fn resolve_index(log: &TenantLog, key: &str) -> Result<u64, ApiError> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        return key
            .parse()
            .map_err(|_| ApiError::bad_param("index", "must be a leaf index (u64)"));
    }
    let id = uuid::Uuid::parse_str(key)
        .map_err(|_| ApiError::bad_param("id", "must be an event UUID or a decimal leaf index"))?;
    log.lookup(&id).ok_or_else(|| {
        ApiError::not_found(format!("no event with id {id} in tenant {}", log.name()))
    })
}

/// Returns the stored record exactly as hashed into the tree; its leaf index and hash are in
/// the `Tally-Leaf-Index` and `Tally-Leaf-Hash` (base64) headers.
#[utoipa::path(
    get, path = "/v1/events/{key}", tag = "events",
    params(("key" = String, Path, description = "Event UUID or decimal leaf index"), TenantParam),
    responses(
        (status = 200, description = "The canonical record bytes (the Merkle leaf)", content_type = "application/json", body = Object),
        (status = 404, description = "No such event", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    Query(params): Query<TenantParam>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let tenant = auth.tenant(params.tenant.as_deref())?;
    let log = tenant_log(&state, &tenant)?;
    let index = resolve_index(&log, &key)?;
    let record = log.record(index)?;
    let hash = tally_tlog::leaf_hash(&record);
    let mut response = ([(header::CONTENT_TYPE, "application/json")], record).into_response();
    let headers = response.headers_mut();
    headers.insert("tally-leaf-index", HeaderValue::from(index));
    headers.insert(
        "tally-leaf-hash",
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(hash))
            .expect("base64 is ASCII"),
    );
    headers.insert(
        "tally-tenant",
        HeaderValue::from_str(&tenant).expect("tenant names are ASCII"),
    );
    Ok(response)
}

/// One tenant's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TenantInfo {
    /// Tenant name.
    name: String,
    /// Events stored.
    size: u64,
    /// Size covered by the latest signed checkpoint.
    checkpoint_size: Option<u64>,
    /// The origin line of its checkpoints.
    origin: String,
}

/// Lists the tenants this key may read.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "events",
    responses((status = 200, description = "Tenants with a log", body = [TenantInfo])),
    security(("api_key" = []))
)]
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    let principal = auth.require(Scope::Read)?;
    let out = state
        .log
        .tenants()
        .into_iter()
        .filter(|t| principal.may_access(t))
        .filter_map(|t| state.log.tenant(&t))
        .map(|log| TenantInfo {
            name: log.name().to_string(),
            size: log.size(),
            checkpoint_size: log.checkpoint().map(|c| c.size),
            origin: log.origin().to_string(),
        })
        .collect();
    Ok(Json(out))
}
