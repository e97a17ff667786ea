//! Investigation: `GET /v1/events?q=…` (search with cursor pagination) and `GET /v1/stats`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use tally_index::{EventIndex, Order, SearchOptions, StatsRequest};
use tally_query::Query as SearchQuery;

use super::events::tenant_log;
use crate::audit::{record_read, ReadAudit};
use crate::auth::Scope;
use crate::error::{ApiError, ErrorDetail};
use crate::extract::{Auth, Query};
use crate::AppState;

/// Most results per page.
const MAX_LIMIT: usize = 1000;
/// Longest `q`, in characters (the document's `maxLength`).
const MAX_Q_CHARS: usize = 4096;
/// Longest query in its canonical form, in bytes: every investigation call records it in an
/// audit event, which must stay well inside the 64 KiB record limit.
const MAX_QUERY_BYTES: usize = 40_000;
/// Parameters that steer the search rather than filter it.
const CONTROL: [&str; 11] = [
    "tenant", "q", "order", "cursor", "limit", "proofs", "by", "interval", "from", "to", "format",
];

pub(super) fn index(state: &AppState) -> Result<&Arc<dyn EventIndex>, ApiError> {
    state.index.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_index",
            "this server runs without a search index",
        )
    })
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Refuses steering parameters that belong to other endpoints, rather than ignore them.
pub(super) fn refuse_params(
    params: &[(String, String)],
    endpoint: &str,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match params
        .iter()
        .find(|(k, _)| CONTROL.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
    {
        Some((k, _)) => Err(ApiError::bad_param(
            k,
            format!(
                "is not a parameter of {endpoint} (it takes {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// `q` and the plain filter parameters, as one query. A malformed query is a 400 naming the
/// position and what was expected.
pub(super) fn parse_query(params: &[(String, String)]) -> Result<SearchQuery, ApiError> {
    let bad = |param: &str, e: tally_query::ParseError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{param}: {e}"),
        )
        .with_details(vec![ErrorDetail {
            event: None,
            field: Some(param.to_string()),
            rule: e.message.clone(),
            line: None,
            column: Some(e.column),
        }])
    };
    let mut query = match param(params, "q") {
        Some(q) if q.chars().count() > MAX_Q_CHARS => {
            return Err(ApiError::bad_param(
                "q",
                format!("must be at most {MAX_Q_CHARS} characters"),
            ))
        }
        Some(q) => tally_query::parse(q).map_err(|e| bad("q", e))?,
        None => SearchQuery::default(),
    };
    let filters: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !filters.is_empty() {
        let extra =
            tally_query::parse_field_params(&filters).map_err(|e| bad("filter parameters", e))?;
        query.terms.extend(extra.terms);
    }
    if query.to_string().len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_param(
            "q",
            format!("the query with its filter parameters must be at most {MAX_QUERY_BYTES} bytes"),
        ));
    }
    Ok(query)
}

/// The `limit` parameter: `default` when absent, else an integer from 1 to `max`.
pub(super) fn parse_limit(
    params: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match param(params, "limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::bad_param("limit", format!("must be an integer from 1 to {max}"))
            }),
    }
}

pub(super) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// What every investigation call starts from: who asks, about which tenant, with what query.
pub(super) struct Prepared {
    pub(super) principal: crate::auth::Principal,
    pub(super) tenant: String,
    pub(super) index: Arc<dyn EventIndex>,
    pub(super) query: SearchQuery,
    /// How the principal sees personal values.
    pub(super) view: tally_privacy::record::View,
}

pub(super) fn prepare(
    state: &AppState,
    auth: &Auth,
    params: &[(String, String)],
) -> Result<Prepared, ApiError> {
    let principal = auth.require(Scope::Read)?.clone();
    let query = parse_query(params)?;
    let view = crate::privacy::view_for(&principal);
    crate::privacy::check_query(&query, view)?;
    Ok(Prepared {
        principal,
        tenant: auth.tenant(param(params, "tenant"))?,
        index: index(state)?.clone(),
        query,
        view,
    })
}

/// Runs an index call off the async workers (searches read files and burn CPU).
pub(super) async fn on_index<T: Send + 'static>(
    index: &Arc<dyn EventIndex>,
    call: impl FnOnce(&dyn EventIndex) -> Result<T, tally_index::IndexError> + Send + 'static,
) -> Result<T, ApiError> {
    let index = index.clone();
    let failed = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "index_error", e);
    tokio::task::spawn_blocking(move || call(&*index))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
}

/// A page cursor: the snapshot bound and the last index returned, so pages stay stable while
/// new events arrive.
pub(super) fn encode_cursor(upto: u64, last: u64, order: Order) -> String {
    let o = if matches!(order, Order::NewestFirst) {
        'n'
    } else {
        'o'
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{o}.{upto}.{last}"))
}

pub(super) fn decode_cursor(cursor: &str) -> Result<(Order, u64, u64), ApiError> {
    let bad = || ApiError::bad_param("cursor", "is not a cursor returned by this API");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.split('.');
    let order = match parts.next() {
        Some("n") => Order::NewestFirst,
        Some("o") => Order::OldestFirst,
        _ => return Err(bad()),
    };
    let upto = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let last = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((order, upto, last))
}

/// The `order` parameter, as the OpenAPI document describes it.
pub(crate) struct SearchOrder;

impl utoipa::PartialSchema for SearchOrder {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({"type": "string", "enum": ["newest", "oldest"]}))
    }
}

impl utoipa::ToSchema for SearchOrder {}

/// The `by` parameter of `/v1/stats`: a field name of the query syntax.
pub(crate) struct StatsField;

impl utoipa::PartialSchema for StatsField {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<&str> = tally_query::Field::ALL.iter().map(|f| f.name()).collect();
        crate::openapi::schema(serde_json::json!({"type": "string", "enum": names}))
    }
}

impl utoipa::ToSchema for StatsField {}

/// One search result.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Hit {
    /// Leaf index in the tenant's tree.
    index: u64,
    /// The event as this key may see it: personal values in the clear with the `read:pii`
    /// scope, masking tokens (`tally:pii:…`) otherwise.
    #[schema(value_type = Object)]
    record: Box<RawValue>,
    /// Inclusion proof against `checkpoint` (base64 hashes), when `proofs=true` and the index
    /// is covered by the latest checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<Vec<String>>,
    /// With `proofs=true`: the record exactly as hashed into the tree (personal values
    /// sealed), which the proof is of.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    leaf: Option<Box<RawValue>>,
}

/// A page of search results.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SearchResponse {
    tenant: String,
    /// Newest first unless `order=oldest`.
    events: Vec<Hit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    /// The signed checkpoint the proofs refer to, when `proofs=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

/// Searches a tenant's events.
///
/// `q` uses the investigation syntax: `actor:alice action:user.* -outcome:SUCCESS
/// ip:203.0.113.0/24 after:2026-01-01 before:7d "free text"`; the same filters may be given as
/// plain parameters (`actor=alice`, `outcome=FAILURE,DENIED`). Every search is itself recorded
/// in the tenant's audit log.
#[utoipa::path(
    get, path = "/v1/events", tag = "investigation",
    params(
        ("q" = Option<String>, Query, max_length = 4096, description = "Query text in the investigation syntax. \
            Plain filter parameters (actor=alice, outcome=FAILURE,DENIED, any field name of the syntax) may be added and are ANDed."),
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", description = "Tenant (default: the key's)"),
        ("order" = Option<SearchOrder>, Query, description = "newest (default) or oldest"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Results per page (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("proofs" = Option<bool>, Query, description = "Attach inclusion proofs"),
    ),
    responses(
        (status = 200, description = "A page of results", body = SearchResponse),
        (status = 400, description = "Malformed query (position and what was expected) or parameter", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "The tenant has no events", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the read could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<SearchResponse>, ApiError> {
    let Prepared {
        principal,
        tenant,
        index,
        query,
        view,
    } = prepare(&state, &auth, &params)?;
    refuse_params(
        &params,
        "/v1/events",
        &["tenant", "q", "order", "cursor", "limit", "proofs"],
    )?;
    let limit = parse_limit(&params, 50, MAX_LIMIT)?;
    let proofs = match param(&params, "proofs") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_param("proofs", "must be true or false")),
    };
    let mut order = match param(&params, "order") {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(_) => return Err(ApiError::bad_param("order", "must be newest or oldest")),
    };
    let log = tenant_log(&state, &tenant)?;
    let (cursor, upto) = match param(&params, "cursor") {
        Some(c) => {
            let (o, upto, last) = decode_cursor(c)?;
            order = o;
            (Some(last), upto)
        }
        None => (None, log.size()),
    };
    let opts = SearchOptions {
        now_ms: now_ms(),
        order,
        cursor,
        limit,
        upto: Some(upto),
    };
    let page = {
        let (tenant, query) = (tenant.clone(), query.clone());
        on_index(&index, move |index| index.search(&tenant, &query, &opts)).await?
    };
    let checkpoint = if proofs { log.checkpoint() } else { None };
    let mut events = Vec::with_capacity(page.indexes.len());
    for &i in &page.indexes {
        let record = log.record(i)?;
        let proof = match &checkpoint {
            Some(cp) if i < cp.size => Some(
                log.inclusion_proof(i, cp.size)?
                    .iter()
                    .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                    .collect(),
            ),
            _ => None,
        };
        // A record stored with its values in the clear keeps its proof but not its hashed
        // form, for a masked reader.
        let leaf = if proofs && crate::privacy::check_hashed_form(view, &record, i).is_ok() {
            Some(crate::privacy::raw_json(record.clone())?)
        } else {
            None
        };
        let record = state.privacy.event_json(&tenant, &record, view)?;
        events.push(Hit {
            index: i,
            record,
            proof,
            leaf,
        });
    }
    record_read(
        &state,
        &principal,
        ReadAudit {
            tenant: &tenant,
            action: "tally.events.search",
            metadata: crate::privacy::with_query(&crate::privacy::query_for_record(&state, &tenant, &query).await, serde_json::json!({"rows": events.len(), "order": if matches!(order, Order::NewestFirst) {"newest"} else {"oldest"}})),
        },
    )
    .await?;
    Ok(Json(SearchResponse {
        tenant,
        next_cursor: page
            .next_cursor
            .map(|last| encode_cursor(upto, last, order)),
        events,
        checkpoint: checkpoint.map(|c| c.note),
    }))
}

/// Counts grouped by a field and/or time bucket.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatsResponse {
    tenant: String,
    /// Matching events in all.
    total: u64,
    buckets: Vec<StatsBucketJson>,
}

/// One group.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatsBucketJson {
    /// The field's value (with `by`).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// Bucket start, RFC 3339 (with `interval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    count: u64,
}

fn parse_interval(text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_param(
            "interval",
            "must be a duration such as 30s, 5m, 1h, 1d or 1w",
        )
    };
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    // The document's pattern: no leading zero, at most 10 digits (so that weeks fit in i64 ms).
    if digits.is_empty() || digits.starts_with('0') || digits.len() > 10 {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).ok_or_else(bad)
}

/// Counts matching events grouped by a field (`by=action`) and/or a time bucket
/// (`interval=1h`), for dashboards and spotting spikes.
#[utoipa::path(
    get, path = "/v1/stats", tag = "investigation",
    params(
        ("q" = Option<String>, Query, max_length = 4096, description = "Query text, as for /v1/events (plain filter parameters too)"),
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", description = "Tenant (default: the key's)"),
        ("by" = Option<StatsField>, Query, description = "Field to group by"),
        ("interval" = Option<String>, Query, pattern = "^[1-9][0-9]{0,9}[smhdw]$", description = "Time bucket: a count and a unit (s, m, h, d, w), e.g. 1h"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Most groups (default 100)"),
    ),
    responses(
        (status = 200, description = "Counts", body = StatsResponse),
        (status = 400, description = "Malformed query or parameter", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "The tenant has no events", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the read could not be recorded in the audit log", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<StatsResponse>, ApiError> {
    let Prepared {
        principal,
        tenant,
        index,
        query,
        view,
    } = prepare(&state, &auth, &params)?;
    refuse_params(
        &params,
        "/v1/stats",
        &["tenant", "q", "by", "interval", "limit"],
    )?;
    let by = match param(&params, "by") {
        None => None,
        Some(name) => Some(tally_query::Field::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = tally_query::Field::ALL.iter().map(|f| f.name()).collect();
            ApiError::bad_param("by", format!("must be one of {}", names.join(", ")))
        })?),
    };
    let interval_ms = param(&params, "interval").map(parse_interval).transpose()?;
    let limit = parse_limit(&params, 100, 10_000)?;
    tenant_log(&state, &tenant)?;
    let req = StatsRequest {
        now_ms: now_ms(),
        by,
        interval_ms,
        limit,
    };
    let result = {
        let (tenant, query) = (tenant.clone(), query.clone());
        on_index(&index, move |index| index.stats(&tenant, &query, &req)).await?
    };
    record_read(
        &state,
        &principal,
        ReadAudit {
            tenant: &tenant,
            action: "tally.events.stats",
            metadata: crate::privacy::with_query(&crate::privacy::query_for_record(&state, &tenant, &query).await, serde_json::json!({"by": by.map(|f| f.name()), "interval_ms": interval_ms, "rows": result.buckets.len()})),
        },
    )
    .await?;
    let mut buckets = Vec::with_capacity(result.buckets.len());
    for b in result.buckets {
        let key = match (b.key, by) {
            (Some(key), Some(field)) => Some(state.privacy.shown_value(&tenant, field, key, view)?),
            (key, _) => key,
        };
        buckets.push(StatsBucketJson {
            key,
            start: b.start_ms.map(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default()
            }),
            count: b.count,
        });
    }
    Ok(Json(StatsResponse {
        tenant,
        total: result.total,
        buckets,
    }))
}
