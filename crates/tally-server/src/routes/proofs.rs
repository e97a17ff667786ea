//! Checkpoints and proofs: `GET /v1/checkpoint`, `/v1/log-key`, `/v1/proof/inclusion`,
//! `/v1/proof/consistency`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use tally_store::{SignedCheckpoint, TenantLog};
use tally_tlog::Hash;

use super::events::{lookup_id, tenant_log, TenantParam};
use crate::error::ApiError;
use crate::extract::{
    bounded_index, parse_event_id, ClientIp, LeafIndex, Query, TreeReader, TreeSize,
};
use crate::reads::ReadKind;
use crate::wire::{ConsistencyProof, InclusionProof};
use crate::AppState;

fn b64(hash: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// The latest signed checkpoint, or 404 before the first one.
pub(crate) fn latest_checkpoint(log: &TenantLog) -> Result<SignedCheckpoint, ApiError> {
    log.checkpoint().ok_or_else(|| {
        ApiError::not_found(format!(
            "tenant {} has no signed checkpoint yet; one is signed within a second of the first event",
            log.name()
        ))
        .retry_after(1)
    })
}

/// The checkpoint note to serve: the latest signed checkpoint, with witnesses' cosignature
/// lines when witnesses are configured.
pub(crate) fn served_checkpoint(state: &AppState, log: &TenantLog) -> Result<String, ApiError> {
    let cp = latest_checkpoint(log)?;
    Ok(match &state.witnesses {
        Some(w) => w.note_for(log.name(), cp),
        None => cp.note,
    })
}

/// A note as a `text/plain` response.
pub(crate) fn note_response(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// The latest checkpoint of a tenant's log: a C2SP tlog-checkpoint signed as a C2SP signed
/// note with the log's Ed25519 key, followed by the C2SP cosignature/v1 lines of the
/// configured witnesses that cosigned it.
#[utoipa::path(
    get, path = "/v1/checkpoint", tag = "proofs", params(TenantParam),
    responses(
        (status = 200, description = "Signed checkpoint note", content_type = "text/plain", body = String),
        (status = 400, description = "Malformed tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the verify scope (read for a proof by event id) or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant, or no checkpoint yet (retry after the delay)", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    reader: TreeReader,
    Query(params): Query<TenantParam>,
) -> Result<Response, ApiError> {
    let tenant = reader.tenant(params.tenant.as_deref())?;
    let log = tenant_log(&state, &tenant)?;
    Ok(note_response(served_checkpoint(&state, &log)?))
}

/// The log's public verifier key (`name+keyid+base64`), needed to verify checkpoints offline.
#[utoipa::path(
    get, path = "/v1/log-key", tag = "proofs",
    responses((status = 200, description = "C2SP signed-note verifier key", content_type = "text/plain", body = String))
)]
pub(crate) async fn log_key(State(state): State<AppState>) -> Response {
    note_response(format!("{}\n", state.log.verifier().to_vkey()))
}

/// Parameters of an inclusion proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionParams {
    /// Tenant (default: the key's tenant, or `default`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<String>,
    /// Leaf index of the event. Give exactly one of `index` and `id`.
    #[param(value_type = Option<LeafIndex>)]
    index: Option<u64>,
    /// Event id (8-4-4-4-12 form). Give exactly one of `index` and `id`.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: Option<String>,
    /// Tree size to prove against (default: the latest checkpoint's); must exceed the index.
    #[param(value_type = Option<TreeSize>)]
    size: Option<u64>,
}

/// Proves that a leaf is in the tree of a given size.
#[utoipa::path(
    get, path = "/v1/proof/inclusion", tag = "proofs", params(InclusionParams),
    responses(
        (status = 200, description = "Inclusion proof", body = InclusionProof),
        (status = 400, description = "Bad parameters: not exactly one of index and id, a number out of range, a malformed id or tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the verify scope (read for a proof by event id) or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant or event, a size beyond the tree, or no checkpoint yet", body = crate::error::ErrorBody),
        (status = 409, description = "The index is not yet covered by a signed checkpoint; retry after the delay", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    reader: TreeReader,
    ClientIp(ip): ClientIp,
    Query(params): Query<InclusionParams>,
) -> Result<Json<InclusionProof>, ApiError> {
    let tenant = reader.tenant(params.tenant.as_deref())?;
    let log = tenant_log(&state, &tenant)?;
    if let Some(size) = params.size {
        bounded_index("size", size)?;
    }
    let index = match (params.index, params.id.as_deref()) {
        (Some(index), None) => bounded_index("index", index)?,
        (None, Some(id)) => {
            // Whether an id exists, and where, is about the records, not the tree.
            reader.require_read("an inclusion proof by event id")?;
            let index = lookup_id(&log, parse_event_id("id", id)?)?;
            if let Some(who) = reader.principal() {
                state
                    .reads
                    .note(who, ip, &tenant, ReadKind::ProofById, index)
                    .await;
            }
            index
        }
        _ => {
            return Err(ApiError::bad_param(
                "index",
                "give exactly one of index or id",
            ))
        }
    };
    let (size, checkpoint) = match params.size {
        Some(size) => (size, log.checkpoint().filter(|c| c.size == size)),
        None => {
            let cp = latest_checkpoint(&log)?;
            if index >= log.size() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "out_of_range",
                    format!(
                        "index {index} is beyond the log of tenant {tenant} (size {})",
                        log.size()
                    ),
                ));
            }
            if index >= cp.size {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_yet_checkpointed",
                    format!(
                        "index {index} is not yet covered by a signed checkpoint (latest size {}); \
                         retry in a second, or pass size= to prove against the current tree",
                        cp.size
                    ),
                )
                .retry_after(1));
            }
            (cp.size, Some(cp))
        }
    };
    let proof = log.inclusion_proof(index, size)?;
    Ok(Json(InclusionProof {
        tenant,
        index,
        size,
        leaf_hash: b64(&log.leaf_hash(index)?),
        root: b64(&match &checkpoint {
            Some(cp) => cp.root,
            None => log.root_at(size)?,
        }),
        proof: proof.iter().map(b64).collect(),
        checkpoint: checkpoint.map(|c| c.note),
    }))
}

/// Parameters of a consistency proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyParams {
    /// Tenant (default: the key's tenant, or `default`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<String>,
    /// The older tree size (at least 1, at most `to`).
    #[param(value_type = TreeSize)]
    from: u64,
    /// The newer tree size (default: the latest checkpoint's).
    #[param(value_type = Option<TreeSize>)]
    to: Option<u64>,
}

/// Proves that the tree of size `to` extends the tree of size `from`.
#[utoipa::path(
    get, path = "/v1/proof/consistency", tag = "proofs", params(ConsistencyParams),
    responses(
        (status = 200, description = "Consistency proof", body = ConsistencyProof),
        (status = 400, description = "Bad parameters: from missing, 0 or above to, a number out of range, a malformed tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the verify scope (read for a proof by event id) or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant, a size beyond the tree, or no checkpoint yet", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn consistency(
    State(state): State<AppState>,
    reader: TreeReader,
    Query(params): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let tenant = reader.tenant(params.tenant.as_deref())?;
    bounded_index("from", params.from)?;
    if let Some(to) = params.to {
        bounded_index("to", to)?;
    }
    let log = tenant_log(&state, &tenant)?;
    let (to, checkpoint) = match params.to {
        Some(to) => (to, log.checkpoint().filter(|c| c.size == to)),
        None => {
            let cp = latest_checkpoint(&log)?;
            (cp.size, Some(cp))
        }
    };
    if params.from == 0 || params.from > to {
        return Err(ApiError::bad_param(
            "from",
            format!("must satisfy 0 < from <= to (to is {to})"),
        ));
    }
    let proof = log.consistency_proof(params.from, to)?;
    Ok(Json(ConsistencyProof {
        tenant,
        from: params.from,
        to,
        from_root: b64(&log.root_at(params.from)?),
        to_root: b64(&match &checkpoint {
            Some(cp) => cp.root,
            None => log.root_at(to)?,
        }),
        proof: proof.iter().map(b64).collect(),
        checkpoint: checkpoint.map(|c| c.note),
    }))
}
