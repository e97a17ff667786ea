//! `/v1/events/stream`: a tenant's new events that match a query, as server-sent events,
//! resumable by leaf index. Follows the search index's commits (so it sees what the index
//! sees) and reads each record from the log.

use axum::extract::State;
use tally_index::{Order, SearchOptions};

use super::events::tenant_log;
use super::search::{now_ms, param, prepare, refuse_params, Prepared};
use crate::audit::{record_read, ReadAudit};
use crate::error::ApiError;
use crate::extract::{parse_index, Auth, LeafIndex, Query, ResumeIndex, MAX_INDEX};
use crate::AppState;

/// Most index hits read per search while catching up.
const PAGE: usize = 1000;

/// One event of the `/v1/events/stream` answer, as the OpenAPI document describes it.
pub(crate) struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({
            "type": "object", "required": ["id", "data"],
            "description": "One server-sent event; the stream carries one per matching record",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The record's leaf index (send it back as Last-Event-ID to resume)"},
                "data": {"type": "string", "contentMediaType": "application/json", "description": "The event as this key may see it (personal values clear with read:pii, masked otherwise)"},
                "event": {"type": "string", "enum": ["message"]},
            }
        }))
    }
}

impl utoipa::ToSchema for StreamEvent {}

/// Follows a tenant's new events that match a query, as server-sent events: each event's
/// `id` is its leaf index and its `data` the stored record. Resumes after `Last-Event-ID` (or
/// `from`, the first leaf index wanted); by default starts with events arriving from now on.
/// Opening a stream is recorded in the tenant's audit log.
#[utoipa::path(
    get, path = "/v1/events/stream", tag = "investigation",
    params(
        ("q" = Option<String>, Query, max_length = 4096, description = "Query text, as for /v1/events (plain filter parameters too)"),
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", description = "Tenant (default: the key's)"),
        ("from" = Option<LeafIndex>, Query, description = "First leaf index to send (default: new events only)"),
        ("Last-Event-ID" = Option<ResumeIndex>, Header, description = "The last event id received: resume after it (takes precedence over from)"),
    ),
    responses(
        (status = 200, description = "Server-sent events, one per matching record", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Malformed query or parameter", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "The tenant has no events", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the read could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    auth: Auth,
    headers: axum::http::HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<
    axum::response::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};

    let Prepared {
        principal,
        tenant,
        index,
        query,
        view,
    } = prepare(&state, &auth, &params)?;
    refuse_params(&params, "/v1/events/stream", &["tenant", "q", "from"])?;
    let log = tenant_log(&state, &tenant)?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let last = v
                .to_str()
                .map_err(|_| ApiError::bad_param("Last-Event-ID", "must be a leaf index"))
                .and_then(|v| parse_index("Last-Event-ID", v))?;
            // Resuming starts one past it, which must itself be a valid index.
            if last == MAX_INDEX {
                return Err(ApiError::bad_param(
                    "Last-Event-ID",
                    format!("must be below {MAX_INDEX}"),
                ));
            }
            Some(last)
        }
    };
    // `from` is checked even when Last-Event-ID overrides it: a malformed request is refused
    // whatever else it carries.
    let from = param(&params, "from")
        .map(|f| parse_index("from", f))
        .transpose()?;
    let from = match (resume, from) {
        (Some(last), _) => last + 1,
        (None, Some(from)) => from,
        (None, None) => log.size(),
    };
    record_read(
        &state,
        &principal,
        ReadAudit {
            tenant: &tenant,
            action: "tally.events.tail",
            metadata: crate::privacy::with_query(
                &crate::privacy::query_for_record(&state, &tenant, &query).await,
                serde_json::json!({"from": from}),
            ),
        },
    )
    .await?;
    let commits = state.index_commits.subscribe();
    let stream = futures_util::stream::unfold(
        (commits, from, std::collections::VecDeque::<Event>::new()),
        move |(mut commits, mut next, mut pending)| {
            let (index, log, tenant, query, privacy) = (
                index.clone(),
                log.clone(),
                tenant.clone(),
                query.clone(),
                state.privacy.clone(),
            );
            async move {
                loop {
                    if let Some(event) = pending.pop_front() {
                        return Some((Ok(event), (commits, next, pending)));
                    }
                    let opts = SearchOptions {
                        now_ms: now_ms(),
                        order: Order::OldestFirst,
                        cursor: next.checked_sub(1),
                        limit: PAGE,
                        upto: None,
                    };
                    let (idx, t, q) = (index.clone(), tenant.clone(), query.clone());
                    let page = tokio::task::spawn_blocking(move || idx.search(&t, &q, &opts)).await;
                    match page {
                        Ok(Ok(page)) if !page.indexes.is_empty() => {
                            for i in page.indexes {
                                let Ok(record) = log.record(i) else {
                                    return None;
                                };
                                let Ok(opened) = privacy.open(&tenant, &record, view) else {
                                    return None;
                                };
                                next = i + 1;
                                pending.push_back(
                                    Event::default()
                                        .id(i.to_string())
                                        .data(String::from_utf8_lossy(&opened.bytes)),
                                );
                            }
                        }
                        Ok(Ok(_)) => {
                            // Nothing new: wait for the index's next commit.
                            if commits.changed().await.is_err() {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
