//! Reading stored records: `GET /v1/events/{id or index}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use tally_store::TenantLog;

use crate::auth::Scope;
use crate::error::ApiError;
use crate::extract::{parse_event_id, parse_index, Auth, ClientIp, Query, MAX_INDEX};
use crate::reads::ReadKind;
use crate::AppState;

/// The tenant a read addresses.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantParam {
    /// Tenant (default: the key's tenant, or `default`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub(crate) tenant: Option<String>,
}

/// The tenant's log, or 404 when it has none yet.
pub(crate) fn tenant_log(state: &AppState, tenant: &str) -> Result<Arc<TenantLog>, ApiError> {
    state
        .log
        .tenant(tenant)
        .ok_or_else(|| ApiError::from(tally_store::ReadError::UnknownTenant(tenant.to_string())))
}

/// Resolves an event key given in parameter `name`: a decimal leaf index or an event UUID.
pub(crate) fn resolve_key(log: &TenantLog, name: &str, key: &str) -> Result<u64, ApiError> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        return parse_index(name, key);
    }
    if key.len() != uuid::fmt::Hyphenated::LENGTH {
        return Err(ApiError::bad_param(
            name,
            format!("must be a leaf index (0 to {MAX_INDEX}) or an event UUID in 8-4-4-4-12 form"),
        ));
    }
    lookup_id(log, parse_event_id(name, key)?)
}

/// The leaf index of the event with this id, or 404.
pub(crate) fn lookup_id(log: &TenantLog, id: uuid::Uuid) -> Result<u64, ApiError> {
    log.lookup(&id)?.ok_or_else(|| {
        ApiError::not_found(format!("no event with id {id} in tenant {}", log.name()))
    })
}

/// Which form of a record to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RecordForm {
    /// The event as this key may see it: personal values in the clear with the `read:pii`
    /// scope, as masking tokens (`tally:pii:…`) otherwise, `tally:erased` once erased.
    #[default]
    Event,
    /// The record exactly as hashed into the tree (the Merkle leaf): personal values sealed.
    Leaf,
}

/// The tenant a read addresses and the form wanted.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetEventParams {
    /// Tenant (default: the key's tenant, or `default`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub(crate) tenant: Option<String>,
    /// `event` (default): the event as this key may see it; `leaf`: the bytes hashed into the
    /// tree, to check a proof against (personal values sealed, never in the clear).
    #[param(inline)]
    pub(crate) form: Option<RecordForm>,
}

/// Returns a stored event: as this key may see it (personal values clear with `read:pii`,
/// masked otherwise), or with `form=leaf` exactly as hashed into the tree. Its leaf index and
/// the leaf's hash are in the `Tally-Leaf-Index` and `Tally-Leaf-Hash` (base64) headers.
#[utoipa::path(
    get, path = "/v1/events/{key}", tag = "events",
    params(("key" = EventKey, Path, description = "Decimal leaf index or event UUID (8-4-4-4-12 form)"), GetEventParams),
    responses(
        (status = 200, description = "The event (form=event) or the canonical record bytes, the Merkle leaf (form=leaf)", content_type = "application/json", body = Object,
            headers(
                ("Tally-Leaf-Index" = u64, description = "Leaf index of the record in the tenant's tree"),
                ("Tally-Leaf-Hash" = String, description = "RFC 6962 leaf hash of the record, standard base64"),
                ("Tally-Tenant" = String, description = "The tenant whose log holds the record"),
            )),
        (status = 400, description = "Malformed key or tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant; or (personal_data) form=leaf of a record stored with its personal values in the clear, for a key without read:pii", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant, id or index", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    Query(params): Query<GetEventParams>,
) -> Result<Response, ApiError> {
    let who = auth.require(Scope::Read)?;
    let tenant = auth.tenant(params.tenant.as_deref())?;
    let log = tenant_log(&state, &tenant)?;
    let index = resolve_key(&log, "key", &key)?;
    let record = log.record(index)?;
    state
        .reads
        .note(who, ip, &tenant, ReadKind::Event, index)
        .await;
    let hash = tally_tlog::leaf_hash(&record);
    let body = match params.form.unwrap_or_default() {
        RecordForm::Leaf => {
            crate::privacy::check_hashed_form(crate::privacy::view_for(who), &record, index)?;
            record
        }
        RecordForm::Event => {
            state
                .privacy
                .open(&tenant, &record, crate::privacy::view_for(who))?
                .bytes
        }
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
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

/// An event key, as the OpenAPI document describes it: a leaf index or an event id.
pub(crate) struct EventKey;

impl utoipa::PartialSchema for EventKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({
            "oneOf": [
                {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_INDEX, "description": "Leaf index"},
                {"type": "string", "pattern": crate::extract::UUID_PATTERN, "description": "Event id"},
            ]
        }))
    }
}

impl utoipa::ToSchema for EventKey {}
