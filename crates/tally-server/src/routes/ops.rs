//! Operations: `/healthz`, `/metrics` (Prometheus text format), `/openapi.json`.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Scope;
use crate::error::ApiError;
use crate::extract::Auth;
use crate::AppState;

/// Liveness, write health and integrity: 200 while the log accepts events and no damage is
/// known (status `ok`, or `degraded` when a background component such as anchoring fails:
/// the log still takes events); 503 while writes fail (`failed`, with the reason: after a
/// failed write, such as a full disk, it clears by itself once a write succeeds again; after
/// a failed fsync it lasts until a restart), or when stored records
/// were found damaged (`damaged`, naming tenant and first index; ingest goes on, reads of
/// those records fail). With witnesses configured, `witnesses` tells per witness whether it
/// cosigns and how far it lags (a lagging witness never stops ingest, so it is not a 503).
/// While checkpoints cannot be signed (the log still accepts events) the status is
/// `degraded`, with the reason in `checkpoint_signing`.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses(
        (status = 200, description = "The log accepts events (status `ok`, or `degraded` when a background component such as anchoring or checkpoint signing fails)", body = HealthOk),
        (status = 503, description = "Writes fail (`failed`: a failed write clears by itself once writing works again, a failed fsync needs a restart), or stored records are damaged (`damaged`)", body = HealthFailed),
    ))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let mut body = serde_json::Map::new();
    let mut degraded = false;
    for (name, component) in &state.components {
        let (healthy, report) = component.health();
        degraded |= !healthy;
        body.insert((*name).to_string(), report);
    }
    if let Some(w) = &state.witnesses {
        body.insert("witnesses".into(), w.health(&state.log));
    }
    let damage = state.log.damage();
    match state.log.health() {
        Ok(()) if damage.is_empty() => {
            if let Err(trouble) = state.log.signer_health() {
                degraded = true;
                body.insert("checkpoint_signing".into(), json!(trouble.to_string()));
            }
            let status = if degraded { "degraded" } else { "ok" };
            body.insert("status".into(), json!(status));
            body.insert("tenants".into(), json!(state.log.tenants().len()));
            Json(body).into_response()
        }
        Ok(()) => {
            body.insert("status".into(), json!("damaged"));
            body.insert(
                "reason".into(),
                json!("stored records no longer match what the log committed to; run `tally verify` and restore them from a backup"),
            );
            body.insert("damage".into(), json!(damage));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(reason) => {
            body.insert("status".into(), json!("failed"));
            body.insert("reason".into(), json!(reason.to_string()));
            body.insert("restart_needed".into(), json!(reason.restart_needed()));
            body.insert("damage".into(), json!(damage));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// The healthy answer of `/healthz`, as the OpenAPI document describes it.
pub(crate) struct HealthOk;

impl utoipa::PartialSchema for HealthOk {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(json!({
            "type": "object", "required": ["status", "tenants"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "tenants": {"type": "integer", "minimum": 0, "description": "Tenants with a log"},
            }
        }))
    }
}

impl utoipa::ToSchema for HealthOk {}

/// The failed answer of `/healthz`.
pub(crate) struct HealthFailed;

impl utoipa::PartialSchema for HealthFailed {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(json!({
            "type": "object", "required": ["status", "reason"],
            "properties": {
                "status": {"type": "string", "enum": ["failed"]},
                "reason": {"type": "string", "description": "What failed, and what to do"},
                "restart_needed": {"type": "boolean", "description": "True after a failed fsync: only a restart (which runs recovery) brings the log back. False while writes fail and are undone: that clears by itself once a write succeeds"},
            }
        }))
    }
}

impl utoipa::ToSchema for HealthFailed {}

/// Metrics in the Prometheus text exposition format. They name every tenant and its size, so
/// they need a key of every tenant (`*`) with the metrics scope; `tally serve --metrics-listen`
/// serves them without a key on a separate address instead.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the metrics scope or is confined to one tenant", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>, auth: Auth) -> Response {
    let allowed = auth.require(Scope::Metrics).map(|p| p.tenant == "*");
    match allowed {
        Ok(true) => render_metrics(&state),
        Ok(false) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the metrics name every tenant: use a key of every tenant (*) with the metrics scope, \
             or scrape the address of tally serve --metrics-listen",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `/metrics` on the metrics listener, which needs no key.
pub(crate) async fn metrics_unauthenticated(State(state): State<AppState>) -> Response {
    render_metrics(&state)
}

fn render_metrics(state: &AppState) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.registry).is_err() {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "could not encode metrics",
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// JSON 404 for unknown routes.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {}; see /openapi.json", uri.path()))
}

/// JSON 405 for a known route called with the wrong method.
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
}
