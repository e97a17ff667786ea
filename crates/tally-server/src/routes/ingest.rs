//! `POST /v1/events`: validate, hash, append durably, answer with leaf indexes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use tally_event::{BodyError, BodyFormat, FieldError, IngestContext, ValidEvent};
use tally_store::AppendError;

use crate::audit::Actor;
use crate::auth::Scope;
use crate::error::{ApiError, ErrorDetail};
use crate::extract::{Auth, Query};
use crate::tenants::Refusal;
use crate::wire::{IngestResponse, StoredEvent};
use crate::AppState;
use crate::UnknownTenants;

/// Most per-field problems listed in one error response.
const MAX_DETAILS: usize = 100;

/// Query parameters of the ingest call.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IngestParams {
    /// Tenant for events that name none (default: the key's tenant, or `default`). An event
    /// that names another tenant is refused (400 `tenant_conflict`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<String>,
}

/// A JSON ingest body, as the OpenAPI document describes it: one event or a non-empty array.
pub(crate) struct IngestBody;

impl utoipa::PartialSchema for IngestBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({
            "oneOf": [
                {"$ref": "#/components/schemas/Event"},
                {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Event"},
                 "description": "A batch, stored all or nothing (at most 10000 events by default)"},
            ]
        }))
    }
}

impl utoipa::ToSchema for IngestBody {}

/// Appends events. The answer comes only after they are durable (fsync'd) and in the tree.
///
/// Idempotent retries: an event sent again with the same client-supplied `id` and the same
/// content is answered with its original leaf index (`duplicate: true`) and nothing is
/// written, for as long as the tenant's log exists (not only within a time window): ids are
/// kept in an on-disk index that survives restarts and crashes. The same `id` with other
/// content is refused with 409. Events without an `id` get a fresh one and are not
/// deduplicated.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    params(IngestParams),
    request_body(
        description = "One event (JSON object), a JSON array of events, or NDJSON (one Event object per line). \
                       See the Event schema. At most 10000 events and 16 MiB by default.",
        content(
            (IngestBody = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "All events are durable", body = IngestResponse),
        (status = 400, description = "Body is not JSON / NDJSON, holds no event, the tenant parameter is malformed, or an event names another tenant than the parameter (tenant_conflict)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the ingest scope or the tenant (forbidden); the tenant is disabled (tenant_disabled), does not exist on a server that does not create tenants on first write (unknown_tenant), or is the server's own (reserved_tenant)", body = crate::error::ErrorBody),
        (status = 408, description = "The body stalled or arrived too slowly (body_timeout); nothing stored", body = crate::error::ErrorBody),
        (status = 409, description = "An id is reused with different content; nothing stored", body = crate::error::ErrorBody),
        (status = 413, description = "Body or batch too large", body = crate::error::ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = crate::error::ErrorBody),
        (status = 429, description = "Over the tenant's events-per-second quota (rate_limited) or stored-bytes quota (storage_quota_exceeded); nothing stored; retry after the delay", body = crate::error::ErrorBody),
        (status = 422, description = "An event breaks schema v1 or uses a name reserved for the server (actions tally.…, actors api-key:… and tally-server); nothing stored", body = crate::error::ErrorBody),
        (status = 503, description = "Log unavailable, or too many large bodies being received at once (busy); retry after the delay", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    state.http.ingest_requests.inc();
    let result = ingest_inner(&state, auth, params, headers, body).await;
    if result.is_err() {
        state.http.ingest_rejected.inc();
    }
    result
}

async fn ingest_inner(
    state: &AppState,
    auth: Auth,
    params: IngestParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let principal = auth.require(Scope::Ingest)?.clone();
    let default_tenant = auth.tenant(params.tenant.as_deref())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = BodyFormat::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {content_type:?} is not accepted; send application/json (an event or an array) \
                 or application/x-ndjson (one event per line)"
            ),
        )
    })?;
    let body = state
        .bodies
        .read(body, state.settings.max_body_bytes)
        .await?;
    let inputs = tally_event::parse_body(&body.bytes, format, state.settings.max_batch_events)
        .map_err(body_error)?;

    let received_at = time::OffsetDateTime::now_utc();
    let ctx = IngestContext {
        received_at,
        key_id: &principal.key_id,
        default_tenant: Some(&default_tenant),
        max_future_skew: time::Duration::try_from(state.settings.max_future_skew)
            .unwrap_or(time::Duration::DAY),
    };
    let mut prepared = Vec::with_capacity(inputs.len());
    let mut rejected = Rejections::default();
    for (position, input) in inputs.into_iter().enumerate() {
        let reserved = tally_event::reserved_for_server(&input);
        let names_tenant = input.tenant.is_some();
        let valid = match (tally_event::validate(input, &ctx), reserved.is_empty()) {
            (Ok(valid), true) => valid,
            (Ok(_), false) => {
                rejected.add(position, Rejection::Invalid, reserved);
                continue;
            }
            (Err(errors), _) => {
                rejected.add(
                    position,
                    Rejection::Invalid,
                    reserved.into_iter().chain(errors),
                );
                continue;
            }
        };
        // A tenant named twice must be named the same: silently preferring either would store
        // the event where its sender did not mean it to go.
        if let (Some(param), true) = (params.tenant.as_deref(), names_tenant) {
            if valid.tenant != param {
                rejected.add(
                    position,
                    Rejection::Conflict,
                    [FieldError {
                        field: "tenant".into(),
                        rule: format!(
                            "is {} but the tenant query parameter says {param}; name one tenant, or the same in both",
                            valid.tenant
                        ),
                    }],
                );
                continue;
            }
        }
        if !principal.may_access(&valid.tenant) {
            rejected.add(
                position,
                Rejection::Forbidden,
                [FieldError {
                    field: "tenant".into(),
                    rule: format!("this API key may only write to tenant {}", principal.tenant),
                }],
            );
            continue;
        }
        let handling = state
            .tenants
            .get(&valid.tenant)
            .map(|t| t.secrets)
            .unwrap_or_default();
        let valid = match crate::privacy::screen_secrets(handling, valid) {
            Ok(valid) => valid,
            Err(errors) => {
                rejected.add(position, Rejection::Invalid, errors);
                continue;
            }
        };
        if rejected.count == 0 {
            prepared.push(valid);
        }
    }
    if let Some(error) = rejected.into_error() {
        return Err(error);
    }
    let new_tenants = admit(state, &prepared).await?;
    // Personal values are sealed here, before hashing (see `privacy`).
    let prepared = state.log.prepare(prepared).await.map_err(append_error)?;

    let appended = state.log.append(prepared).await.map_err(append_error)?;
    // A tenant made by its first events joins the registry once they are stored, so that a
    // refused request (an id conflict, a full disk) leaves no tenant behind.
    for name in new_tenants {
        if let Err(e) = crate::admin::create_tenant(
            &state.log,
            &state.tenants,
            Actor::Key(&principal),
            "ingest",
            &name,
        )
        .await
        {
            // The events are durable and acknowledged; the tenant joins the registry (on the
            // record) the next time it is looked up.
            tracing::warn!(tenant = %name, error = %e, "a tenant made by its first events is not registered yet");
        }
    }
    state
        .http
        .ingest_batch_events
        .observe(appended.len() as f64);
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    if duplicates > 0 {
        state.http.ingest_duplicates.inc_by(duplicates as u64);
    }
    Ok(Json(IngestResponse {
        events: appended
            .into_iter()
            .map(|a| StoredEvent {
                id: a.id.to_string(),
                tenant: a.tenant,
                index: a.index,
                duplicate: a.duplicate,
            })
            .collect(),
    }))
}

fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Conflict {
            position,
            id,
            index,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "id_conflict",
            format!(
                "event {position} reuses id {id}, stored at index {index} with different content; \
                 nothing of this request was stored. Use a new id for a new event."
            ),
        )
        .with_details(vec![ErrorDetail {
            event: Some(position),
            field: Some("id".into()),
            rule: "an id identifies one event: a retry must carry the same content".into(),
            line: None,
            column: None,
        }]),
        AppendError::Unavailable(reason) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason).retry_after(5)
        }
    }
}

/// Checks that every tenant of a request takes its events now: it exists (or may be created,
/// as the server's setting says), is enabled and within its quotas. All or nothing, like the
/// append. Returns the tenants that do not exist yet, to be created once the events are
/// stored.
async fn admit(state: &AppState, prepared: &[ValidEvent]) -> Result<Vec<String>, ApiError> {
    let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
    for event in prepared {
        *counts.entry(event.tenant.as_str()).or_default() += 1;
    }
    let mut new_tenants = Vec::new();
    for (name, events) in counts {
        if crate::admin::is_system_tenant(name) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "reserved_tenant",
                format!(
                    "tenant {name} holds the server's own records; clients cannot write to it. \
                     Send events to another tenant"
                ),
            ));
        }
        let tenant = match crate::routes::tenants::known(state, name).await? {
            Some(tenant) => tenant,
            // New, so enabled and without quotas.
            None if state.settings.unknown_tenants == UnknownTenants::Create => {
                new_tenants.push(name.to_string());
                continue;
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "unknown_tenant",
                    format!(
                        "there is no tenant {name}, and this server does not create tenants on \
                         their first event; an administrator creates it first \
                         (tally tenants create {name}, or POST /v1/tenants)"
                    ),
                ))
            }
        };
        let stored = state.log.tenant(name).map_or(0, |l| l.record_bytes());
        state
            .tenants
            .admit(&tenant, events, stored)
            .map_err(|refusal| refusal_error(name, refusal))?;
    }
    Ok(new_tenants)
}

fn refusal_error(name: &str, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Disabled { reason } => ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_disabled",
            format!(
                "tenant {name} is disabled{}: its events are refused until an administrator \
                 enables it again (its log stays readable)",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        ),
        Refusal::RateLimited {
            retry_after,
            events_per_second,
        } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "tenant {name} may send {events_per_second} events per second; \
                 nothing of this request was stored. Retry after the delay"
            ),
        )
        .retry_after(crate::rate::Buckets::retry_after(retry_after)),
        Refusal::StorageFull { max_stored_bytes } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "storage_quota_exceeded",
            format!(
                "tenant {name} has reached its quota of {max_stored_bytes} stored bytes; \
                 nothing of this request was stored. An administrator can raise it \
                 (tally tenants quotas {name} --max-stored-bytes …)"
            ),
        )
        .retry_after(STORAGE_QUOTA_RETRY_SECS),
    }
}

/// `Retry-After` of a request refused for a full storage quota: the quota changes only when
/// an administrator raises it, so clients should back off for a while rather than spin.
const STORAGE_QUOTA_RETRY_SECS: u32 = 60;

/// Why an event of a request was refused; the answer's status follows the most basic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rejection {
    /// The key may not write to the event's tenant (403 when nothing else is wrong).
    Forbidden,
    /// The event breaks a schema rule (422).
    Invalid,
    /// The request names two tenants for it (400: the request itself is contradictory).
    Conflict,
}

/// The refused events of one request, with at most [`MAX_DETAILS`] details.
#[derive(Default)]
struct Rejections {
    count: usize,
    worst: Option<Rejection>,
    details: Vec<ErrorDetail>,
}

impl Rejections {
    fn add(
        &mut self,
        position: usize,
        why: Rejection,
        errors: impl IntoIterator<Item = FieldError>,
    ) {
        self.count += 1;
        self.worst = self.worst.max(Some(why));
        for e in errors {
            if self.details.len() < MAX_DETAILS {
                self.details.push(ErrorDetail {
                    event: Some(position),
                    field: Some(e.field),
                    rule: e.rule,
                    line: None,
                    column: None,
                });
            }
        }
    }

    fn into_error(self) -> Option<ApiError> {
        let (status, code) = match self.worst? {
            Rejection::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Rejection::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            Rejection::Conflict => (StatusCode::BAD_REQUEST, "tenant_conflict"),
        };
        Some(
            ApiError::new(
                status,
                code,
                format!(
                    "{} event(s) rejected; nothing of this request was stored",
                    self.count
                ),
            )
            .with_details(self.details),
        )
    }
}

fn body_error(e: BodyError) -> ApiError {
    match e {
        BodyError::Empty => ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body holds no event; send a JSON object, an array, or NDJSON lines",
        ),
        BodyError::TooManyEvents { max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("a request may carry at most {max} events; split the batch"),
        ),
        BodyError::Syntax {
            event,
            line,
            column,
            message,
        } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON at line {line}, column {column}: {message}"),
        )
        .with_details(vec![ErrorDetail {
            event,
            field: None,
            rule: message,
            line: Some(line),
            column: Some(column),
        }]),
        BodyError::Schema {
            event,
            field,
            message,
        } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            format!("event {event}: {field}: {message}; nothing of this request was stored"),
        )
        .with_details(vec![ErrorDetail {
            event: Some(event),
            field: Some(field),
            rule: message,
            line: None,
            column: None,
        }]),
    }
}
