//! Operations: `/healthz`, `/metrics` (Prometheus text format), `/openapi.json`.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// Liveness and write health: 200 while the log accepts events, 503 after a failed write.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses(
        (status = 200, description = "Healthy", body = HealthOk),
        (status = 503, description = "The log stopped accepting writes", body = HealthFailed),
    ))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.log.health() {
        Ok(()) => {
            Json(json!({"status": "ok", "tenants": state.log.tenants().len()})).into_response()
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": reason})),
        )
            .into_response(),
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
                "reason": {"type": "string", "description": "What failed; a restart recovers"},
            }
        }))
    }
}

impl utoipa::ToSchema for HealthFailed {}

/// Metrics in the Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
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
