//! A tenant's personal data: its policy (`/v1/tenants/{t}/policy`), legal holds
//! (`/v1/tenants/{t}/holds`), erasure of subjects (`/v1/tenants/{t}/erasures`) and the data
//! keys of encryption at rest (`/v1/tenants/{t}/data-keys`). Each is a tenant admin's call and
//! each change is recorded in the log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::tenants::{known, no_tenant, tenant_name};
use crate::admin;
use crate::audit::{Actor, ServerEvent};
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ErrorDetail};
use crate::extract::Auth;
use crate::tenants::{LegalHold, PersonalPath, Tenant};
use crate::wire::{DataKeyInfo, DataKeysInfo, ErasureResult, HoldsInfo, PolicyInfo};
use crate::AppState;

/// Most subjects one erasure request names.
const MAX_SUBJECTS: usize = 100;
/// Longest subject identifier and reason, in characters.
const MAX_SUBJECT_CHARS: usize = 256;
const MAX_REASON_CHARS: usize = 1024;

/// A tenant's admin (or a global one).
fn require_tenant_admin<'a>(auth: &'a Auth, tenant: &str) -> Result<&'a Principal, ApiError> {
    let caller = auth.require(Scope::Admin)?;
    if !caller.may_manage(tenant) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key administers tenant {} only", caller.tenant),
        ));
    }
    Ok(caller)
}

async fn existing(state: &AppState, name: &str) -> Result<Tenant, ApiError> {
    known(state, name).await?.ok_or_else(|| no_tenant(name))
}

/// A new set of personal paths.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Replaces the tenant's paths (an empty list leaves only the defaults).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub personal_paths: Vec<PersonalPath>,
    /// What happens to an event carrying a secret: `refuse` (default) or `redact`.
    #[serde(default)]
    pub secrets: crate::tenants::SecretHandling,
}

fn policy_info(tenant: &Tenant) -> PolicyInfo {
    PolicyInfo {
        defaults: tally_privacy::policy::Policy::default()
            .rules()
            .iter()
            .map(|r| r.pattern.to_string())
            .collect(),
        personal_paths: tenant.personal_paths.clone(),
        secrets: tenant.secrets,
    }
}

/// Which values of a tenant's events are personal data.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/policy", tag = "privacy", operation_id = "get_tenant_policy",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The paths in force", body = PolicyInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<PolicyInfo>, ApiError> {
    let name = tenant_name(&name)?;
    require_tenant_admin(&auth, name)?;
    Ok(Json(policy_info(&existing(&state, name).await?)))
}

/// Replaces a tenant's personal paths, recorded as `tally.tenants.policy`. They apply to the
/// events received from now on: what is stored keeps the form it was sealed in.
#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/policy", tag = "privacy", operation_id = "set_tenant_policy",
    request_body = PolicyRequest,
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The paths now in force", body = PolicyInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 422, description = "A path or subject breaks a rule (invalid_policy; each in the details)", body = crate::error::ErrorBody),
        (status = 503, description = "Changed, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn set_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<PolicyInfo>, ApiError> {
    let name = tenant_name(&name)?;
    let caller = require_tenant_admin(&auth, name)?;
    let request: PolicyRequest = crate::extract::json_object(
        &body,
        false,
        "invalid_policy",
        r#"{"personal_paths": [{"path": "after.email", "subject": "value"}]}"#,
    )?;
    let rules: Vec<_> = request
        .personal_paths
        .iter()
        .map(PersonalPath::rule)
        .collect();
    if let Err(errors) = tally_privacy::policy::Policy::with_tenant_rules(&rules) {
        let details = errors
            .iter()
            .map(|e| ErrorDetail {
                event: None,
                field: Some(format!("personal_paths: {}", e.path)),
                rule: e.rule.clone(),
                line: None,
                column: None,
            })
            .collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!(
                "{} personal path(s) break a rule; nothing was changed: {}",
                errors.len(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .with_details(details));
    }
    existing(&state, name).await?;
    let change = admin::set_tenant_policy(
        &state.log,
        &state.tenants,
        Actor::Key(caller),
        name,
        request.personal_paths,
        request.secrets,
    )
    .await
    .map_err(ApiError::from)?;
    match change {
        crate::tenants::Change::Done(t) | crate::tenants::Change::Unchanged(t) => {
            Ok(Json(policy_info(&t)))
        }
        crate::tenants::Change::NotFound => Err(no_tenant(name)),
    }
}

/// A legal hold to place.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceHold {
    /// The subject held (an identifier erasure would be asked for); absent: the whole tenant.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub subject: Option<String>,
    /// Why (a case or matter reference).
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub reason: String,
}

/// A legal hold to release.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseHold {
    /// The subject; absent: the tenant's own hold.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub subject: Option<String>,
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.chars().any(char::is_control) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

/// Places a legal hold on the tenant or one subject (`tally.tenants.hold`): erasure of what it
/// covers is refused (409 `legal_hold`) until it is released.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/holds", tag = "privacy", operation_id = "place_hold",
    request_body = PlaceHold,
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The holds now", body = HoldsInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 422, description = "No reason, or a malformed subject or reason", body = crate::error::ErrorBody),
        (status = 503, description = "Changed, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn place_hold(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<HoldsInfo>, ApiError> {
    set_hold(state, auth, name, body, true).await
}

/// Releases a legal hold on the tenant or one subject (`tally.tenants.release`).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/holds/release", tag = "privacy", operation_id = "release_hold",
    request_body = ReleaseHold,
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The holds now", body = HoldsInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 422, description = "A malformed subject", body = crate::error::ErrorBody),
        (status = 503, description = "Changed, but the change could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn release_hold(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<HoldsInfo>, ApiError> {
    set_hold(state, auth, name, body, false).await
}

async fn set_hold(
    state: AppState,
    auth: Auth,
    name: String,
    body: axum::body::Bytes,
    place: bool,
) -> Result<Json<HoldsInfo>, ApiError> {
    let name = tenant_name(&name)?;
    let caller = require_tenant_admin(&auth, name)?;
    let (subject, hold) = if place {
        let request: PlaceHold = crate::extract::json_object(
            &body,
            false,
            "invalid_request",
            r#"{"subject": "alice@example.com", "reason": "matter 2026-17"}"#,
        )?;
        check_text("reason", &request.reason, MAX_REASON_CHARS)?;
        let hold = LegalHold {
            reason: request.reason,
            since: crate::auth::now_rfc3339(),
        };
        (request.subject, Some(hold))
    } else {
        let request: ReleaseHold = crate::extract::json_object(
            &body,
            false,
            "invalid_request",
            r#"{"subject": "alice@example.com"}"#,
        )?;
        (request.subject, None)
    };
    if let Some(subject) = &subject {
        check_text("subject", subject, MAX_SUBJECT_CHARS)?;
    }
    existing(&state, name).await?;
    let lookup = match &subject {
        Some(subject) => {
            let keys = state
                .privacy
                .keys(name)
                .map_err(crate::privacy::key_store_error)?;
            Some(hex::encode(keys.lookup(subject)))
        }
        None => None,
    };
    let change = admin::set_tenant_hold(
        &state.log,
        &state.tenants,
        Actor::Key(caller),
        name,
        lookup.as_deref(),
        hold,
    )
    .await
    .map_err(ApiError::from)?;
    match change {
        crate::tenants::Change::Done(t) | crate::tenants::Change::Unchanged(t) => {
            Ok(Json(HoldsInfo {
                legal_hold: t.legal_hold,
                subject_holds: t.subject_holds.len(),
            }))
        }
        crate::tenants::Change::NotFound => Err(no_tenant(name)),
    }
}

/// Subjects to erase.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The identifiers to erase (an actor id, a resource id, an e-mail address named by a
    /// `value` path): 1 to 100.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Why (a request reference): recorded with the erasure.
    #[serde(default)]
    pub reason: Option<String>,
}

impl utoipa::PartialSchema for ErasureRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let text = |max: usize| {
            serde_json::json!({"type": "string", "minLength": 1, "maxLength": max,
                               "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"})
        };
        crate::openapi::schema(serde_json::json!({
            "type": "object",
            "required": ["subjects", "reason"],
            "additionalProperties": false,
            "properties": {
                "subjects": {
                    "type": "array", "minItems": 1, "maxItems": MAX_SUBJECTS,
                    "items": text(MAX_SUBJECT_CHARS),
                    "description": "The identifiers to erase: an actor id, a resource id, or a value of a path whose subject is the value (an e-mail address)",
                },
                "reason": {
                    "description": "Why (a request reference): recorded with the erasure",
                    "allOf": [text(MAX_REASON_CHARS)],
                },
            },
        }))
    }
}

impl utoipa::ToSchema for ErasureRequest {}

/// Erases subjects' personal data (`tally.subjects.erase`): each subject's key is destroyed,
/// so every value sealed under it, in every record, reads `tally:erased` from now on; the
/// search index forgets them; records, proofs and checkpoints are unchanged. Refused with 409
/// `legal_hold` while a hold covers the tenant or a subject.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/erasures", tag = "privacy", operation_id = "erase_subjects",
    request_body = ErasureRequest,
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "Erased", body = ErasureResult),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "A legal hold covers the tenant or a subject (legal_hold); nothing was erased", body = crate::error::ErrorBody),
        (status = 422, description = "No subjects, too many, or a malformed subject or reason", body = crate::error::ErrorBody),
        (status = 500, description = "The keys are destroyed but the search index could not be updated (run tally reindex)", body = crate::error::ErrorBody),
        (status = 503, description = "The keys could not be read, or the erasure could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn erase(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ErasureResult>, ApiError> {
    let name = tenant_name(&name)?.to_string();
    let caller = require_tenant_admin(&auth, &name)?.clone();
    let request: ErasureRequest = crate::extract::json_object(
        &body,
        false,
        "invalid_request",
        r#"{"subjects": ["alice@example.com"], "reason": "request 2026-0042"}"#,
    )?;
    if request.subjects.is_empty() || request.subjects.len() > MAX_SUBJECTS {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "subjects",
            format!("must name 1 to {MAX_SUBJECTS} subjects"),
        ));
    }
    for (i, s) in request.subjects.iter().enumerate() {
        check_text(&format!("subjects[{i}]"), s, MAX_SUBJECT_CHARS)?;
    }
    let reason = request.reason.clone().ok_or_else(|| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "reason",
            "is required: say why (the request's reference)",
        )
    })?;
    check_text("reason", &reason, MAX_REASON_CHARS)?;
    let tenant = existing(&state, &name).await?;
    let keys = state
        .privacy
        .keys(&name)
        .map_err(crate::privacy::key_store_error)?;
    if let Some(hold) = &tenant.legal_hold {
        return Err(legal_hold(format!(
            "tenant {name} is under a legal hold since {} ({}); release it first",
            hold.since, hold.reason
        )));
    }
    for (i, s) in request.subjects.iter().enumerate() {
        let lookup = hex::encode(keys.lookup(s));
        if let Some(h) = tenant.subject_holds.iter().find(|h| h.subject == lookup) {
            return Err(legal_hold(format!(
                "subjects[{i}] is under a legal hold since {} ({}); release it first",
                h.since, h.reason
            )));
        }
    }
    let done = {
        let state = state.clone();
        let name = name.clone();
        let subjects = request.subjects.clone();
        tokio::task::spawn_blocking(move || crate::privacy::erase(&state, &name, &subjects))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??
    };
    crate::audit::record(
        &state.log,
        ServerEvent {
            tenant: &name,
            actor: Actor::Key(&caller),
            action: "tally.subjects.erase",
            category: "ADMIN",
            resource: ("PERSONAL_DATA", &name),
            metadata: serde_json::json!({
                "reason": reason,
                "subjects": request.subjects.len(),
                "erased_subjects": done.erased_keys.len(),
                "erased_keys": done.erased_keys,
                "records": done.records,
                "search_index_pending": done.index_pending,
            }),
        },
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_recorded",
            format!("the subjects are erased, but the erasure could not be recorded: {e}"),
        )
    })?;
    Ok(Json(ErasureResult {
        erased_subjects: done.erased_keys.len(),
        unknown_subjects: request.subjects.len() - done.erased_keys.len(),
        records: done.records,
        search_index_pending: done.index_pending.len(),
    }))
}

fn legal_hold(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "legal_hold", message)
}

fn data_keys_info(state: &AppState, name: &str) -> Result<DataKeysInfo, ApiError> {
    let Some(at_rest) = &state.log.config().at_rest else {
        return Ok(DataKeysInfo {
            encryption: false,
            kek_fingerprint: None,
            keys: Vec::new(),
        });
    };
    let keys = at_rest.data_keys(name).map_err(at_rest_error)?;
    Ok(DataKeysInfo {
        encryption: true,
        kek_fingerprint: Some(at_rest.kek_fingerprint()),
        keys: keys
            .into_iter()
            .map(|k| DataKeyInfo {
                id: k.id,
                created: time::OffsetDateTime::from_unix_timestamp(k.created as i64)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default(),
                current: k.current,
            })
            .collect(),
    })
}

/// [`data_keys_info`] off the async workers (reading a tenant's keys may read its file).
async fn data_keys_answer(state: &AppState, name: &str) -> Result<Json<DataKeysInfo>, ApiError> {
    let (state, name) = (state.clone(), name.to_string());
    tokio::task::spawn_blocking(move || data_keys_info(&state, &name).map(Json))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn at_rest_error(e: tally_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "encryption at rest failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the data keys could not be read or written; the server's log says why. Retry later",
    )
}

/// The tenant's data keys for encryption at rest: which exist, which is current, and the
/// fingerprint of the key-encryption key wrapping them.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/data-keys", tag = "privacy", operation_id = "get_data_keys",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The data keys", body = DataKeysInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 503, description = "The data keys could not be read", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get_data_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<DataKeysInfo>, ApiError> {
    let name = tenant_name(&name)?;
    require_tenant_admin(&auth, name)?;
    existing(&state, name).await?;
    data_keys_answer(&state, name).await
}

/// Starts a new data key for the tenant now (`tally.data_keys.rotate`): records from now on
/// are sealed under it; older records keep theirs, and nothing is rewritten. Keys also rotate
/// by age (`tally serve --data-key-rotation`).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/data-keys/rotate", tag = "privacy", operation_id = "rotate_data_key",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")),
    responses(
        (status = 200, description = "The data keys, the new one current", body = DataKeysInfo),
        (status = 400, description = "Malformed tenant name", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin key of this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 409, description = "Encryption at rest is not configured (encryption_off)", body = crate::error::ErrorBody),
        (status = 503, description = "The new key could not be written, or the rotation could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn rotate_data_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<DataKeysInfo>, ApiError> {
    let name = tenant_name(&name)?.to_string();
    let caller = require_tenant_admin(&auth, &name)?.clone();
    existing(&state, &name).await?;
    let Some(at_rest) = state.log.config().at_rest.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "encryption_off",
            "records are not encrypted at rest, so there is no data key to rotate; start the \
             server with --kek-file, --kek-env or --kek-command to turn encryption on",
        ));
    };
    let rotated = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || at_rest.rotate(&name))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
            .map_err(at_rest_error)?
    };
    crate::audit::record(
        &state.log,
        ServerEvent {
            tenant: &name,
            actor: Actor::Key(&caller),
            action: "tally.data_keys.rotate",
            category: "ADMIN",
            resource: ("DATA_KEY", &name),
            metadata: serde_json::json!({ "key": rotated.id }),
        },
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_recorded",
            format!("the data key was rotated, but the rotation could not be recorded: {e}"),
        )
    })?;
    data_keys_answer(&state, &name).await
}
