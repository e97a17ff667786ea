//! `GET /v1/export`: matching records as a verifiable bundle (see `tally_export::bundle`),
//! streamed, pinned to the latest signed checkpoint, and recorded in the tenant's audit log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tally_export::{End, Header, IndexRange, ProofNode, VIEWS_FORMAT_VERSION};
use tally_index::{EventIndex, Order, SearchOptions, StatsRequest};
use tally_privacy::record::View;
use tally_query::Query as SearchQuery;
use tally_store::TenantLog;
use tokio::sync::mpsc;

use super::events::tenant_log;
use super::search::{index, now_ms, param, parse_query, refuse_params};
use crate::audit::{record_read, ReadAudit};
use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::extract::{parse_index, Auth, LeafIndex, Query};
use crate::AppState;

/// The `format` parameter, as the OpenAPI document describes it.
pub(crate) struct ExportFormat;

impl utoipa::PartialSchema for ExportFormat {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(
            serde_json::json!({"type": "string", "enum": ["jsonl", "csv", "parquet"]}),
        )
    }
}

impl utoipa::ToSchema for ExportFormat {}

/// Records read from the log per step (and per search page when filtered).
const STEP: u64 = 1000;
/// How long an export waits for the index to catch up with the checkpoint.
const INDEX_WAIT: Duration = Duration::from_secs(30);

/// Exports a tenant's records as a bundle that `tally verify --export` checks offline.
///
/// The export covers the records of the latest signed checkpoint, in leaf order, optionally
/// limited to leaf indexes `[from, to)` and filtered with `q` and the filter parameters (as
/// for `/v1/events`). The answer is JSON Lines: a header line (`tally_export`: tenant, query,
/// range, whether the range is complete, the signed checkpoint), one `{"index","event"}` line
/// per record with the record exactly as stored, and an end line (`tally_export_end`: row
/// count and one multiproof of every record against the checkpoint). A failure mid-way ends
/// the stream with a `tally_export_error` line instead. Every export is recorded in the
/// tenant's audit log (`tally.events.export`, with the row count) before its end line is sent.
#[utoipa::path(
    get, path = "/v1/export", tag = "investigation",
    params(
        ("q" = Option<String>, Query, max_length = 4096, description = "Query text, as for /v1/events, plain filter parameters too (none: every record)"),
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", description = "Tenant (default: the key's)"),
        ("from" = Option<LeafIndex>, Query, description = "First leaf index (default 0; at most to)"),
        ("to" = Option<LeafIndex>, Query, description = "One past the last leaf index (default and at most: the checkpoint's size)"),
        ("format" = Option<ExportFormat>, Query, description = "The file format the client will write, for the audit record"),
    ),
    responses(
        (status = 200, description = "The export bundle, JSON Lines: a tally_export header line, one {index, event} line per record, \
            and a tally_export_end line with the row count and the multiproof (or a tally_export_error line if reading failed)",
            content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Malformed query or parameter, or from above to", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the export scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "The tenant has no events", body = crate::error::ErrorBody),
        (status = 503, description = "No signed checkpoint yet, no search index, or the index is behind; retry after the delay", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let principal = auth.require(Scope::Export)?.clone();
    let tenant = auth.tenant(param(&params, "tenant"))?;
    refuse_params(
        &params,
        "/v1/export",
        &["tenant", "q", "from", "to", "format"],
    )?;
    let query = parse_query(&params)?;
    crate::privacy::check_query(&query, crate::privacy::view_for(&principal))?;
    let format = match param(&params, "format") {
        None => None,
        Some(f @ ("jsonl" | "csv" | "parquet")) => Some(f.to_string()),
        Some(_) => {
            return Err(ApiError::bad_param(
                "format",
                "must be jsonl, csv or parquet",
            ))
        }
    };
    let index_param = |name: &str| -> Result<Option<u64>, ApiError> {
        param(&params, name)
            .map(|v| parse_index(name, v))
            .transpose()
    };
    let (from, to) = (index_param("from")?, index_param("to")?);
    let log = tenant_log(&state, &tenant)?;
    let checkpoint = log.checkpoint().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_checkpoint",
            "the log has not signed a checkpoint for this tenant yet; retry in a second",
        )
        .retry_after(1)
    })?;
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(checkpoint.size).min(checkpoint.size);
    if from > to {
        return Err(ApiError::bad_param(
            "from",
            format!(
                "must not exceed to ({to}; the signed checkpoint has {} records)",
                checkpoint.size
            ),
        ));
    }

    let filtered = !query.terms.is_empty();
    let (index, expected_rows) = if filtered {
        let index = index(&state)?.clone();
        wait_for_index(&state, &index, &tenant, to).await?;
        let total = {
            let (tenant, query) = (tenant.clone(), query.clone());
            let req = StatsRequest {
                now_ms: now_ms(),
                by: None,
                interval_ms: None,
                limit: 1,
            };
            super::search::on_index(&index, move |ix| ix.stats(&tenant, &query, &req)).await?
        };
        (Some(index), total.total.min(to - from))
    } else {
        (None, to - from)
    };

    let view = crate::privacy::view_for(&principal);
    let header = Header {
        version: VIEWS_FORMAT_VERSION,
        view: Some(
            if view == View::Clear {
                "clear"
            } else {
                "masked"
            }
            .to_string(),
        ),
        tenant: tenant.clone(),
        query: query.to_string(),
        range: IndexRange { from, to },
        complete: !filtered,
        checkpoint: checkpoint.note.clone(),
        exported_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        exported_by: format!("{}{}", tally_event::KEY_ACTOR_PREFIX, principal.key_id),
        expected_rows: Some(expected_rows),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let job = Job {
        state,
        principal,
        log,
        index,
        query,
        format,
        header,
        size: checkpoint.size,
        tx,
    };
    tokio::spawn(job.run());
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Waits until the tenant's index covers the first `to` records.
async fn wait_for_index(
    state: &AppState,
    index: &Arc<dyn EventIndex>,
    tenant: &str,
    to: u64,
) -> Result<(), ApiError> {
    let mut commits = state.index_commits.subscribe();
    let deadline = tokio::time::Instant::now() + INDEX_WAIT;
    loop {
        let indexed = {
            let t = tenant.to_string();
            super::search::on_index(index, move |ix| ix.indexed(&t)).await?
        };
        if indexed >= to {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "index_behind",
                format!(
                    "the search index covers {indexed} of the {to} records to export; \
                     retry shortly (or export without a query, which reads the log directly)"
                ),
            )
            .retry_after(5));
        }
        // Woken by the index's commits; the timeout re-checks in case none is announced.
        let _ = tokio::time::timeout(Duration::from_millis(100), commits.changed()).await;
    }
}

/// One export being streamed.
struct Job {
    state: AppState,
    principal: Principal,
    log: Arc<TenantLog>,
    index: Option<Arc<dyn EventIndex>>,
    query: SearchQuery,
    format: Option<String>,
    header: Header,
    size: u64,
    tx: mpsc::Sender<Bytes>,
}

/// Why the records stopped.
enum Stop {
    /// The client went away.
    Gone,
    /// Reading failed.
    Failed(String),
}

impl Job {
    async fn run(self) {
        let mut indexes: Vec<u64> = Vec::new();
        let sent = match self
            .send(tally_export::bundle::header_line(&self.header))
            .await
        {
            Ok(()) => self.records(&mut indexes).await,
            Err(stop) => Err(stop),
        };
        let rows = indexes.len() as u64;
        let finished = sent.is_ok();
        let audit = record_read(
            &self.state,
            &self.principal,
            ReadAudit {
                tenant: &self.header.tenant,
                action: "tally.events.export",
                metadata: crate::privacy::with_query(
                    &crate::privacy::query_for_record(
                        &self.state,
                        &self.header.tenant,
                        &self.query,
                    )
                    .await,
                    serde_json::json!({
                        "from": self.header.range.from,
                        "to": self.header.range.to,
                        "checkpoint_size": self.size,
                        "format": self.format,
                        "rows": rows,
                        "finished": finished,
                    }),
                ),
            },
        )
        .await;
        let last = match (sent, audit) {
            (Err(Stop::Gone), _) => return,
            (Err(Stop::Failed(m)), _) => tally_export::bundle::error_line(&m),
            (Ok(()), Err(e)) => tally_export::bundle::error_line(&e.to_string()),
            (Ok(()), Ok(())) => {
                let (log, size) = (self.log.clone(), self.size);
                let proof =
                    tokio::task::spawn_blocking(move || log.multi_inclusion_proof(&indexes, size))
                        .await;
                match proof {
                    Ok(Ok(proof)) => tally_export::bundle::end_line(&End {
                        rows,
                        proof: proof.iter().map(ProofNode::from).collect(),
                    }),
                    Ok(Err(e)) => tally_export::bundle::error_line(&e.to_string()),
                    Err(e) => tally_export::bundle::error_line(&e.to_string()),
                }
            }
        };
        let _ = self.tx.send(Bytes::from(last)).await;
    }

    async fn send(&self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.tx
            .send(Bytes::from(bytes))
            .await
            .map_err(|_| Stop::Gone)
    }

    /// Streams the records, remembering their leaf indexes for the proof.
    async fn records(&self, indexes: &mut Vec<u64>) -> Result<(), Stop> {
        let IndexRange { from, to } = self.header.range;
        let mut next = from;
        while next < to {
            let batch: Vec<u64> = match &self.index {
                None => (next..to.min(next + STEP)).collect(),
                Some(index) => {
                    let opts = SearchOptions {
                        now_ms: now_ms(),
                        order: Order::OldestFirst,
                        cursor: next.checked_sub(1),
                        limit: STEP as usize,
                        upto: Some(to),
                    };
                    let (tenant, query) = (self.header.tenant.clone(), self.query.clone());
                    let page =
                        super::search::on_index(index, move |ix| ix.search(&tenant, &query, &opts))
                            .await
                            .map_err(|e| Stop::Failed(e.to_string()))?;
                    page.indexes
                }
            };
            let Some(&last) = batch.last() else {
                break;
            };
            let log = self.log.clone();
            let view = crate::privacy::view_for(&self.principal);
            let privacy = self.state.privacy.clone();
            let tenant = self.header.tenant.clone();
            let (batch, lines) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(batch.len() * 600);
                let push = |out: &mut Vec<u8>, i: u64, r: &[u8]| {
                    if !tally_privacy::record::is_sealed(r) {
                        // The bundle holds records as hashed: a masked export cannot hold
                        // one stored with its personal values in the clear.
                        crate::privacy::check_hashed_form(view, r, i).map_err(|e| e.to_string())?;
                        tally_export::bundle::push_record_line(out, i, r);
                        return Ok(());
                    }
                    // A sealed record: as hashed, as this reader sees it, and (clear) the keys
                    // that let a verifier check each clear value against the hashed one.
                    let shown = privacy
                        .open(&tenant, r, view)
                        .map_err(|e| e.to_string())?
                        .bytes;
                    let keys = if view == View::Clear {
                        let subject_keys = privacy.keys(&tenant).map_err(|e| e.to_string())?;
                        let keys = tally_privacy::record::event_keys(r, &subject_keys)
                            .map_err(|e| e.to_string())?;
                        Some(tally_export::keys_json(&keys))
                    } else {
                        None
                    };
                    tally_export::bundle::push_shown_record_line(
                        out,
                        i,
                        r,
                        &shown,
                        keys.as_deref(),
                    );
                    Ok::<_, String>(())
                };
                if batch.len() as u64 == last - batch[0] + 1 {
                    // A contiguous run: one sequential read.
                    let records = log
                        .records(batch[0], batch.len() as u64)
                        .map_err(|e| e.to_string())?;
                    for (i, r) in batch.iter().zip(records) {
                        push(&mut out, *i, &r)?;
                    }
                } else {
                    for &i in &batch {
                        let r = log.record(i).map_err(|e| e.to_string())?;
                        push(&mut out, i, &r)?;
                    }
                }
                Ok::<_, String>((batch, out))
            })
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
            .map_err(Stop::Failed)?;
            self.send(lines).await?;
            indexes.extend_from_slice(&batch);
            next = last + 1;
        }
        Ok(())
    }
}
