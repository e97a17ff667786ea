//! The tree in the C2SP tlog-tiles layout, so standard tile clients can read it:
//! `/logs/{tenant}/checkpoint`, `/logs/{tenant}/tile/...`, and the same at the root for the
//! `default` tenant. With `public_tree`, checkpoints and hash tiles need no key; entry bundles
//! hold the records and always do.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tally_tlog::tile::TilePath;

use super::events::tenant_log;
use super::proofs::{note_response, served_checkpoint};
use crate::error::ApiError;
use crate::extract::{ClientIp, TreeReader};
use crate::reads::ReadKind;
use crate::AppState;

fn checkpoint_for(
    state: &AppState,
    reader: &TreeReader,
    tenant: &str,
) -> Result<Response, ApiError> {
    let tenant = reader.tenant(Some(tenant))?;
    let log = tenant_log(state, &tenant)?;
    let mut response = note_response(served_checkpoint(state, &log)?);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn tile_for(
    state: &AppState,
    reader: &TreeReader,
    ip: Option<std::net::IpAddr>,
    tenant: &str,
    path: &str,
) -> Result<Response, ApiError> {
    let tenant = reader.tenant(Some(tenant))?;
    let tile = TilePath::parse(&format!("tile/{path}"))
        .map_err(|e| ApiError::not_found(format!("tile/{path} is not a tlog-tiles path: {e}")))?;
    if let TilePath::Entries { .. } = tile {
        reader.require_read("an entry bundle (it holds the records)")?;
    }
    let log = tenant_log(state, &tenant)?;
    let bytes = match tile {
        TilePath::Hashes {
            level,
            index,
            width,
        } => log.hash_tile(level, index, width)?,
        TilePath::Entries { index, width } => {
            let masked = reader.principal().is_some_and(|who| {
                crate::privacy::view_for(who) != tally_privacy::record::View::Clear
            });
            let bytes = if masked {
                // A bundle holds the records as hashed: none may show a masked reader values
                // stored in the clear.
                let start = index * tally_tlog::tile::TILE_WIDTH;
                let records = log.records(start, u64::from(width))?;
                for (k, r) in records.iter().enumerate() {
                    crate::privacy::check_hashed_form(
                        tally_privacy::record::View::Masked,
                        r,
                        start + k as u64,
                    )?;
                }
                tally_tlog::tile::encode_entry_bundle(records.iter().map(Vec::as_slice))
                    .map_err(|e| ApiError::not_found(format!("entry bundle: {e}")))?
            } else {
                log.entry_bundle(index, width)?
            };
            if let Some(who) = reader.principal() {
                state
                    .reads
                    .note(who, ip, &tenant, ReadKind::EntryBundle, index * 256)
                    .await;
            }
            bytes
        }
    };
    // Full tiles never change; partial ones are superseded as the log grows.
    let cache = if tile.width() as u64 == tally_tlog::tile::TILE_WIDTH {
        "private, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /logs/{tenant}/checkpoint`.
pub(crate) async fn tenant_checkpoint(
    State(state): State<AppState>,
    reader: TreeReader,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    checkpoint_for(&state, &reader, &tenant)
}

/// `GET /logs/{tenant}/tile/{path}`.
pub(crate) async fn tenant_tile(
    State(state): State<AppState>,
    reader: TreeReader,
    ClientIp(ip): ClientIp,
    Path((tenant, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    tile_for(&state, &reader, ip, &tenant, &path).await
}

/// `GET /checkpoint`: the `default` tenant's.
pub(crate) async fn default_checkpoint(
    State(state): State<AppState>,
    reader: TreeReader,
) -> Result<Response, ApiError> {
    checkpoint_for(&state, &reader, crate::DEFAULT_TENANT)
}

/// `GET /tile/{path}`: the `default` tenant's.
pub(crate) async fn default_tile(
    State(state): State<AppState>,
    reader: TreeReader,
    ClientIp(ip): ClientIp,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    tile_for(&state, &reader, ip, crate::DEFAULT_TENANT, &path).await
}
