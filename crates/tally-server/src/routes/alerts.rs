//! Alerts and the rules that raise them: `GET /v1/alerts`, `GET /v1/alerts/{id}`,
//! `POST /v1/alerts/{id}/acknowledge|resolve`, `GET|PUT /v1/rules`.
//!
//! An alert is an event in its tenant's log (`tally.alert.raise`); acknowledging or resolving
//! it is another (`tally.alert.acknowledge`, `tally.alert.resolve`, by whoever did it, with
//! their note), so an alert's state is read from the log and is as tamper-evident as the
//! alert itself.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_alerts::engine::{state_event_id, RAISE_ACTION};
use tally_alerts::{RuleFile, RuleSpec};
use tally_index::{Order, SearchOptions};
use tally_privacy::record::View;

use super::events::tenant_log;
use super::search::{decode_cursor, encode_cursor, index, now_ms, on_index, param, parse_limit};
use crate::alerts::{RuleBook, RuleBookError, RuleSource};
use crate::audit::{record_read, Actor, ReadAudit, ServerEvent};
use crate::auth::Scope;
use crate::error::{ApiError, ErrorDetail};
use crate::extract::{Auth, Query};
use crate::AppState;

/// The action recording that someone acknowledged an alert.
pub const ACKNOWLEDGE_ACTION: &str = "tally.alert.acknowledge";
/// The action recording that someone resolved an alert.
pub const RESOLVE_ACTION: &str = "tally.alert.resolve";
/// Most alerts per page.
const MAX_LIMIT: usize = 500;
/// Most alert events one request reads while filtering by state or severity; past it, the
/// page ends early with a cursor.
const MAX_SCAN: usize = 5000;
/// Longest note, in characters (it is the recorded event's `reason`).
const MAX_NOTE_CHARS: usize = 1024;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AlertState {
    /// Raised; nobody has acknowledged it.
    Open,
    /// Someone is looking at it.
    Acknowledged,
    /// Closed.
    Resolved,
}

/// One change of an alert's state, as recorded in the log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct StateChange {
    /// The state it moved to.
    state: AlertState,
    /// Who (as this key may see them).
    by: serde_json::Value,
    /// When (RFC 3339).
    at: String,
    /// Their note.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Leaf index of the event recording the change.
    index: u64,
}

/// An alert.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertJson {
    /// The alert's id: the id of the event recording it.
    id: String,
    /// Leaf index of that event in the tenant's log.
    index: u64,
    tenant: String,
    /// The rule's id.
    rule: String,
    /// The rule's title when it fired.
    title: String,
    /// low, medium, high or critical.
    severity: String,
    state: AlertState,
    /// `received_at` of the event that completed it (RFC 3339).
    raised_at: String,
    /// `received_at` of the first triggering event.
    first_at: String,
    /// How many events triggered it.
    count: u64,
    /// The group's field values (`actor.id`), masked for a key without `read:pii`.
    #[schema(value_type = Object)]
    group: serde_json::Value,
    /// Leaf indexes of the triggering events (the newest 100), oldest first.
    events: Vec<u64>,
    /// Acknowledgements and resolutions, oldest first.
    history: Vec<StateChange>,
    /// With `GET /v1/alerts/{id}`: the triggering events, as this key may see them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    triggering: Option<Vec<serde_json::Value>>,
}

/// A page of alerts.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AlertsResponse {
    tenant: String,
    /// Newest first.
    alerts: Vec<AlertJson>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// What the list is filtered by.
struct Filter {
    states: Vec<AlertState>,
    severities: Vec<String>,
}

fn parse_list<T>(
    params: &[(String, String)],
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<Vec<T>, ApiError> {
    match param(params, name) {
        None | Some("all") => Ok(Vec::new()),
        Some(text) => text
            .split(',')
            .map(|v| {
                parse(v).ok_or_else(|| {
                    ApiError::bad_param(name, format!("must be all or a list of: {allowed}"))
                })
            })
            .collect(),
    }
}

/// The search that finds a tenant's alerts (of one rule).
fn alerts_query(rule: Option<&str>) -> tally_query::Query {
    let text = match rule {
        Some(rule) => format!("action:{RAISE_ACTION} resource.type:alert-rule resource.id:{rule}"),
        None => format!("action:{RAISE_ACTION}"),
    };
    tally_query::parse(&text).expect("a valid query")
}

fn rfc3339(text: Option<&serde_json::Value>) -> String {
    text.and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// An alert from the (masked as need be) JSON of its event, without its history.
fn alert_from_event(tenant: &str, index: u64, event: &serde_json::Value) -> AlertJson {
    let meta = &event["metadata"];
    AlertJson {
        id: rfc3339(event.get("id")),
        index,
        tenant: tenant.to_string(),
        // The rule's id is also the resource's, but resource ids are personal by default:
        // the copy in the metadata is what a masked reader can read.
        rule: meta["rule"]
            .as_str()
            .or(event["resource"]["id"].as_str())
            .unwrap_or_default()
            .to_string(),
        title: rfc3339(event.get("reason")),
        severity: rfc3339(meta.get("severity")),
        state: AlertState::Open,
        raised_at: rfc3339(event.get("time")),
        first_at: rfc3339(meta.get("first_at")),
        count: meta["count"].as_u64().unwrap_or_default(),
        group: meta
            .get(tally_privacy::policy::ALERT_GROUP_MEMBER)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        events: meta["leaves"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i.as_u64()).collect())
            .unwrap_or_default(),
        history: Vec::new(),
        triggering: None,
    }
}

/// Reads the events at `indexes` as `view` sees them.
fn events_json(
    state: &AppState,
    tenant: &str,
    indexes: &[u64],
    view: View,
) -> Result<Vec<(u64, serde_json::Value)>, ApiError> {
    let log = tenant_log(state, tenant)?;
    indexes
        .iter()
        .map(|&i| {
            let record = log.record(i)?;
            let json = state.privacy.event_json(tenant, &record, view)?;
            let value = serde_json::from_str(json.get()).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    e.to_string(),
                )
            })?;
            Ok((i, value))
        })
        .collect()
}

/// The ids the event recording that `alert` moved to `name` may take: derived ones, so that
/// it is found by id alone; the second for when an event sent by a client took the first.
fn state_ids(alert: uuid::Uuid, name: &str) -> [uuid::Uuid; 2] {
    [
        state_event_id(alert, name),
        state_event_id(alert, &format!("{name} (its first id taken)")),
    ]
}

/// Whether `event` is the server's record of `alert` moving to `to`.
fn is_state_event(event: &serde_json::Value, alert: &str, to: AlertState) -> bool {
    let action = match to {
        AlertState::Acknowledged => ACKNOWLEDGE_ACTION,
        _ => RESOLVE_ACTION,
    };
    event["action"] == action && event["metadata"]["alert"] == alert
}

/// Fills in each alert's state from the acknowledgement and resolution recorded for it,
/// found by their derived ids ([`tally_alerts::engine::state_event_id`]): exact at once,
/// with no wait for the index.
fn add_history(
    state: &AppState,
    tenant: &str,
    view: View,
    alerts: &mut [AlertJson],
) -> Result<(), ApiError> {
    let log = tenant_log(state, tenant)?;
    for alert in alerts.iter_mut() {
        let Ok(id) = alert.id.parse::<uuid::Uuid>() else {
            continue;
        };
        for (to, name) in [
            (AlertState::Acknowledged, "acknowledged"),
            (AlertState::Resolved, "resolved"),
        ] {
            // Only the server's own record of the change counts, whatever else took an id.
            let mut found = None;
            for candidate in state_ids(id, name) {
                let Some(at) = log.lookup(&candidate)? else {
                    continue;
                };
                if let Some((_, event)) = events_json(state, tenant, &[at], view)?.pop() {
                    if is_state_event(&event, &alert.id, to) {
                        found = Some((at, event));
                        break;
                    }
                }
            }
            let Some((at, event)) = found else {
                continue;
            };
            alert.state = to;
            alert.history.push(StateChange {
                state: to,
                by: event["actor"]["id"].clone(),
                at: rfc3339(event.get("time")),
                note: event["reason"].as_str().map(str::to_string),
                index: at,
            });
        }
    }
    Ok(())
}

/// Lists a tenant's alerts, newest first, with their state.
///
/// Reading alerts is recorded in the tenant's log like any search.
#[utoipa::path(
    get, path = "/v1/alerts", tag = "alerts", operation_id = "list_alerts",
    params(
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", description = "Tenant (default: the key's)"),
        ("state" = Option<String>, Query, pattern = "^(all|(open|acknowledged|resolved)(,(open|acknowledged|resolved))*)$", description = "open, acknowledged, resolved, a comma-separated list of them, or all (default)"),
        ("severity" = Option<String>, Query, pattern = "^(all|(low|medium|high|critical)(,(low|medium|high|critical))*)$", description = "low, medium, high, critical, a list of them, or all (default)"),
        ("rule" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", description = "Only this rule's alerts"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Alerts per page (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of alerts", body = AlertsResponse),
        (status = 400, description = "A malformed parameter (named, with its rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "The tenant has no events", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the read could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let principal = auth.require(Scope::Read)?.clone();
    let tenant = auth.tenant(param(&params, "tenant"))?;
    if let Some((k, _)) = params.iter().find(|(k, _)| {
        !["tenant", "state", "severity", "rule", "limit", "cursor"].contains(&k.as_str())
    }) {
        return Err(ApiError::bad_param(
            k,
            "is not a parameter of /v1/alerts (it takes tenant, state, severity, rule, limit, cursor)",
        ));
    }
    let filter = Filter {
        states: parse_list(
            &params,
            "state",
            |s| match s {
                "open" => Some(AlertState::Open),
                "acknowledged" => Some(AlertState::Acknowledged),
                "resolved" => Some(AlertState::Resolved),
                _ => None,
            },
            "open, acknowledged, resolved",
        )?,
        severities: parse_list(
            &params,
            "severity",
            |s| {
                ["low", "medium", "high", "critical"]
                    .contains(&s)
                    .then(|| s.to_string())
            },
            "low, medium, high, critical",
        )?,
    };
    let rule = param(&params, "rule");
    if rule.is_some_and(|r| !tally_alerts::rule::is_valid_rule_id(r)) {
        return Err(ApiError::bad_param(
            "rule",
            "must be a rule id: 1 to 64 characters of a-z, 0-9, '-', '_' and '.'",
        ));
    }
    let limit = parse_limit(&params, 50, MAX_LIMIT)?;
    let log = tenant_log(&state, &tenant)?;
    let (mut cursor, upto) = match param(&params, "cursor") {
        Some(c) => {
            // The search's cursors: alerts are listed newest first, as it lists events.
            let (_, upto, last) = decode_cursor(c)?;
            (Some(last), upto)
        }
        None => (None, log.size()),
    };
    let index = index(&state)?.clone();
    let view = crate::privacy::view_for(&principal);
    let query = alerts_query(rule);
    let mut alerts = Vec::new();
    let mut scanned = 0usize;
    let mut next_cursor = None;
    'pages: loop {
        let opts = SearchOptions {
            now_ms: now_ms(),
            order: Order::NewestFirst,
            cursor,
            limit: 100,
            upto: Some(upto),
        };
        let (t, q) = (tenant.clone(), query.clone());
        let page = on_index(&index, move |index| index.search(&t, &q, &opts)).await?;
        let mut found: Vec<AlertJson> = events_json(&state, &tenant, &page.indexes, view)?
            .iter()
            .map(|(i, e)| alert_from_event(&tenant, *i, e))
            .collect();
        add_history(&state, &tenant, view, &mut found)?;
        for alert in found {
            scanned += 1;
            let last = alert.index;
            if (filter.states.is_empty() || filter.states.contains(&alert.state))
                && (filter.severities.is_empty() || filter.severities.contains(&alert.severity))
            {
                alerts.push(alert);
            }
            if alerts.len() == limit || scanned >= MAX_SCAN {
                next_cursor = Some(encode_cursor(upto, last, Order::NewestFirst));
                break 'pages;
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    record_read(
        &state,
        &principal,
        ReadAudit {
            tenant: &tenant,
            action: "tally.alerts.list",
            metadata: serde_json::json!({
                "rows": alerts.len(),
                "rule": rule,
                "state": param(&params, "state"),
                "severity": param(&params, "severity"),
            }),
        },
    )
    .await?;
    Ok(Json(AlertsResponse {
        tenant,
        alerts,
        next_cursor,
    }))
}

/// Finds the alert `id` of `tenant`, with its history.
async fn find(state: &AppState, tenant: &str, id: &str, view: View) -> Result<AlertJson, ApiError> {
    let uuid = crate::extract::parse_event_id("id", id)?;
    let log = tenant_log(state, tenant)?;
    let not_found = || ApiError::not_found(format!("no alert with id {uuid} in tenant {tenant}"));
    let at = log.lookup(&uuid)?.ok_or_else(not_found)?;
    let (_, event) = events_json(state, tenant, &[at], view)?
        .pop()
        .ok_or_else(not_found)?;
    if event["action"] != RAISE_ACTION {
        return Err(not_found());
    }
    let mut alert = [alert_from_event(tenant, at, &event)];
    add_history(state, tenant, view, &mut alert)?;
    let [alert] = alert;
    Ok(alert)
}

/// The tenant a single-alert call addresses.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// Tenant (default: the key's tenant, or `default`).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<String>,
}

/// One alert with its history and the events that triggered it.
#[utoipa::path(
    get, path = "/v1/alerts/{id}", tag = "alerts", operation_id = "get_alert",
    params(("id" = String, Path, description = "The alert's id (a UUID)", format = "uuid"), AlertParams),
    responses(
        (status = 200, description = "The alert", body = AlertJson),
        (status = 400, description = "A malformed id or tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such alert", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the read could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(params): Query<AlertParams>,
) -> Result<Json<AlertJson>, ApiError> {
    let principal = auth.require(Scope::Read)?.clone();
    let tenant = auth.tenant(params.tenant.as_deref())?;
    let view = crate::privacy::view_for(&principal);
    let mut alert = find(&state, &tenant, &id, view).await?;
    alert.triggering = Some(
        events_json(&state, &tenant, &alert.events, view)?
            .into_iter()
            .map(|(index, record)| serde_json::json!({"index": index, "record": record}))
            .collect(),
    );
    record_read(
        &state,
        &principal,
        ReadAudit {
            tenant: &tenant,
            action: "tally.alerts.read",
            metadata: serde_json::json!({"alert": alert.id, "rows": alert.events.len() + 1}),
        },
    )
    .await?;
    Ok(Json(alert))
}

/// A note on a change of an alert's state.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateNote {
    /// Why, for the record: 1 to 1024 characters, no control characters but tab, line feed
    /// and carriage return, not only white space, not starting with `tally:`.
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    note: Option<String>,
}

async fn change_state(
    state: AppState,
    auth: Auth,
    id: String,
    tenant: Option<String>,
    body: axum::body::Bytes,
    to: AlertState,
) -> Result<Json<AlertJson>, ApiError> {
    let principal = auth.require(Scope::Read)?.clone();
    let tenant = auth.tenant(tenant.as_deref())?;
    let note: StateNote = crate::extract::json_object(
        &body,
        true,
        "invalid_alert_note",
        r#"{"note": "password reset forced, actor contacted"}"#,
    )?;
    if let Some(n) = &note.note {
        if n.trim().is_empty()
            || n.chars().count() > MAX_NOTE_CHARS
            || n.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || n.starts_with("tally:")
        {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_alert_note",
                "note",
                format!(
                    "1 to {MAX_NOTE_CHARS} characters, not only white space, no control \
                     characters but tab and line breaks, not starting with `tally:`"
                ),
            ));
        }
    }
    let view = crate::privacy::view_for(&principal);
    let alert = find(&state, &tenant, &id, view).await?;
    let refused = match (alert.state, to) {
        (AlertState::Resolved, _) => Some("it is resolved already"),
        (AlertState::Acknowledged, AlertState::Acknowledged) => Some("it is acknowledged already"),
        _ => None,
    };
    if let Some(why) = refused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "alert_state",
            format!(
                "alert {} cannot be {}: {why}",
                alert.id,
                match to {
                    AlertState::Acknowledged => "acknowledged",
                    _ => "resolved",
                }
            ),
        ));
    }
    let (action, name) = match to {
        AlertState::Acknowledged => (ACKNOWLEDGE_ACTION, "acknowledged"),
        _ => (RESOLVE_ACTION, "resolved"),
    };
    let alert_id: uuid::Uuid = alert.id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an alert without a valid id",
        )
    })?;
    // The first of its ids that no other event took (the state showed neither taken by a
    // change of this alert).
    let log = tenant_log(&state, &tenant)?;
    let mut free = None;
    for candidate in state_ids(alert_id, name) {
        if log.lookup(&candidate)?.is_none() {
            free = Some(candidate);
            break;
        }
    }
    let Some(event_id) = free else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "alert_state",
            format!(
                "alert {} cannot be {name}: the ids its record would take are used by other events",
                alert.id
            ),
        ));
    };
    let event = ServerEvent {
        tenant: &tenant,
        actor: Actor::Key(&principal),
        action,
        category: "ALERT",
        resource: ("alert", &alert.id),
        metadata: serde_json::json!({"alert": alert.id, "rule": alert.rule}),
    };
    crate::audit::record_with_reason(&state.log, event, note.note.as_deref(), Some(event_id))
        .await
        .map_err(|e| match e {
            // Someone else changed it at the same moment.
            crate::audit::RecordError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "alert_state",
                format!("alert {} was {name} by someone else just now", alert.id),
            ),
            e => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the change could not be recorded in the audit log, so it was not made: {e}"
                ),
            )
            .retry_after(5),
        })?;
    // Read back: the answer shows the change as recorded.
    Ok(Json(find(&state, &tenant, &alert.id, view).await?))
}

/// Acknowledges an alert (someone is looking at it), recorded as `tally.alert.acknowledge`.
#[utoipa::path(
    post, path = "/v1/alerts/{id}/acknowledge", tag = "alerts", operation_id = "acknowledge_alert",
    request_body(content = Option<StateNote>, description = "An optional note"),
    params(("id" = String, Path, description = "The alert's id (a UUID)", format = "uuid"), AlertParams),
    responses(
        (status = 200, description = "The alert, acknowledged", body = AlertJson),
        (status = 400, description = "A malformed id or tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such alert", body = crate::error::ErrorBody),
        (status = 409, description = "Acknowledged or resolved already (alert_state)", body = crate::error::ErrorBody),
        (status = 422, description = "The note breaks a rule (named)", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the change could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(params): Query<AlertParams>,
    body: axum::body::Bytes,
) -> Result<Json<AlertJson>, ApiError> {
    change_state(
        state,
        auth,
        id,
        params.tenant,
        body,
        AlertState::Acknowledged,
    )
    .await
}

/// Resolves an alert (closed), recorded as `tally.alert.resolve`.
#[utoipa::path(
    post, path = "/v1/alerts/{id}/resolve", tag = "alerts", operation_id = "resolve_alert",
    request_body(content = Option<StateNote>, description = "An optional note"),
    params(("id" = String, Path, description = "The alert's id (a UUID)", format = "uuid"), AlertParams),
    responses(
        (status = 200, description = "The alert, resolved", body = AlertJson),
        (status = 400, description = "A malformed id or tenant", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope or may not read this tenant", body = crate::error::ErrorBody),
        (status = 404, description = "No such alert", body = crate::error::ErrorBody),
        (status = 409, description = "Resolved already (alert_state)", body = crate::error::ErrorBody),
        (status = 422, description = "The note breaks a rule (named)", body = crate::error::ErrorBody),
        (status = 503, description = "No search index, or the change could not be recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(params): Query<AlertParams>,
    body: axum::body::Bytes,
) -> Result<Json<AlertJson>, ApiError> {
    change_state(state, auth, id, params.tenant, body, AlertState::Resolved).await
}

/// The rules in force.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RulesResponse {
    /// `file` (tally serve --rules: read-only here), `api` (set with PUT /v1/rules) or
    /// `default` (the default rule pack).
    #[schema(value_type = String)]
    source: RuleSource,
    /// The rules, as written.
    #[schema(value_type = Vec<RuleSchema>)]
    rules: Vec<RuleSpec>,
}

fn book(state: &AppState) -> Result<&Arc<RuleBook>, ApiError> {
    state.alerts.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_alerts",
            "this server runs without alert rules (started with --no-alerts)",
        )
    })
}

/// Lists the alert rules in force.
#[utoipa::path(
    get, path = "/v1/rules", tag = "alerts", operation_id = "list_rules",
    responses(
        (status = 200, description = "The rules in force and where they come from", body = RulesResponse),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the read scope", body = crate::error::ErrorBody),
        (status = 503, description = "The server runs without alert rules", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn rules(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<RulesResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let (source, rules) = book(&state)?.current();
    Ok(Json(RulesResponse { source, rules }))
}

/// Replaces every alert rule (admin of every tenant), recorded as `tally.rules.update` in the
/// system tenant's log. Every rule is checked first: one broken rule changes nothing. A rule
/// whose id, match and condition are unchanged keeps counting where it was.
#[utoipa::path(
    put, path = "/v1/rules", tag = "alerts", operation_id = "set_rules",
    request_body = RulesBody,
    responses(
        (status = 200, description = "The rules now in force", body = RulesResponse),
        (status = 401, description = "Missing or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "The key is not an admin key of every tenant", body = crate::error::ErrorBody),
        (status = 409, description = "The rules come from a file (rules_from_file)", body = crate::error::ErrorBody),
        (status = 422, description = "Broken rules, each named with its field and the rule it breaks", body = crate::error::ErrorBody),
        (status = 503, description = "No alert rules, or the change could not be stored or recorded", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn set_rules(
    State(state): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> Result<Json<RulesResponse>, ApiError> {
    let caller = super::tenants::require_operator(&auth)?.clone();
    let book = book(&state)?.clone();
    let file = parse_rules_body(&body)?;
    let ids: Vec<String> = file.rules.iter().map(|r| r.id.clone()).collect();
    let digest = {
        use sha2::Digest;
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        hex_string(&sha2::Sha256::digest(bytes))
    };
    let rules = file.rules;
    let result = tokio::task::spawn_blocking(move || book.replace(rules))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            )
        })?;
    match result {
        Ok(()) => {}
        Err(RuleBookError::Invalid(errors)) => {
            let details = errors
                .iter()
                .map(|e| ErrorDetail {
                    event: None,
                    field: Some(if e.rule.is_empty() {
                        e.field.to_string()
                    } else {
                        format!("rules[{}].{}", e.rule, e.field)
                    }),
                    rule: e.message.clone(),
                    line: None,
                    column: None,
                })
                .collect();
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_rules",
                format!("{} broken rule(s); nothing changed", errors.len()),
            )
            .with_details(details));
        }
        Err(e @ RuleBookError::FromFile(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rules_from_file",
                e.to_string(),
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the rules could not be stored: {e}"),
            )
            .retry_after(5))
        }
    }
    crate::audit::record(
        &state.log,
        ServerEvent {
            tenant: crate::admin::SYSTEM_TENANT,
            actor: Actor::Key(&caller),
            action: "tally.rules.update",
            category: "CONFIG",
            resource: ("alert-rules", "*"),
            metadata: serde_json::json!({"rules": ids, "sha256": digest}),
        },
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the rules are in force, but the change could not be recorded in the audit log: {e}"),
        )
    })?;
    let (source, rules) = state
        .alerts
        .as_ref()
        .map(|b| b.current())
        .unwrap_or((RuleSource::Default, Vec::new()));
    Ok(Json(RulesResponse { source, rules }))
}

/// The body of `PUT /v1/rules`. Objects must be objects: serde would also take a rule or
/// its `when` written as an array of its members' values, which the document does not allow.
fn parse_rules_body(body: &[u8]) -> Result<RuleFile, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            format!(
                "the body must be a JSON object such as {{\"rules\": [{{\"id\": \"brute-force\", \"title\": \"Failed logins\", \"match\": \"category:LOGIN outcome:FAILURE\", \"condition\": \"count > 5 within 5m by actor.id\"}}]}}: {why}"
            ),
        )
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let rules = value
        .as_object()
        .and_then(|o| o.get("rules"))
        .and_then(|r| r.as_array())
        .ok_or_else(|| invalid("`rules` must be an array of rules".into()))?;
    for (i, rule) in rules.iter().enumerate() {
        let Some(rule) = rule.as_object() else {
            return Err(invalid(format!("rules[{i}] must be an object")));
        };
        if rule
            .get("when")
            .is_some_and(|w| !w.is_object() && !w.is_null())
        {
            return Err(invalid(format!("rules[{i}].when must be an object")));
        }
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body of `PUT /v1/rules`: every rule (a rules file, as JSON).
pub(crate) struct RulesBody;

impl utoipa::PartialSchema for RulesBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({
            "type": "object",
            "required": ["rules"],
            "additionalProperties": false,
            "properties": {
                "rules": {
                    "type": "array",
                    "maxItems": tally_alerts::rule::MAX_RULES,
                    "description": "Every rule; ids are unique",
                    "items": {"$ref": "#/components/schemas/RuleSchema"},
                },
            },
        }))
    }
}

impl utoipa::ToSchema for RulesBody {}

/// One alert rule, as written.
pub(crate) struct RuleSchema;

impl utoipa::PartialSchema for RuleSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema(serde_json::json!({
            "type": "object",
            "required": ["id", "title", "match"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$", "description": "Names the rule in alerts, the API and the command line"},
                "title": {"type": "string", "minLength": 1, "maxLength": tally_alerts::rule::MAX_TITLE_CHARS, "description": "One line for people; not only white space"},
                "description": {"type": ["string", "null"], "maxLength": tally_alerts::rule::MAX_DESCRIPTION_CHARS},
                "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"], "default": "medium"},
                "match": {"type": "string", "maxLength": tally_alerts::rule::MAX_MATCH_CHARS, "description": "Which events count: a search in the query syntax of GET /v1/events (empty: every event)", "example": "category:LOGIN outcome:FAILURE"},
                "condition": {"type": ["string", "null"], "description": "When matching events raise an alert (absent: every one). `count > N within D [by F,…]`, `distinct F > N within D [by F,…]`, `value PATH > X` (PATH in metadata, before or after) or `first_seen F [after D] [by F,…]` (a value the group never had, once the group is D old); `>=` for at least; D is 1s to 30d (s, m, h, d); F an exact-match field name of the query syntax", "example": "count > 5 within 5m by actor.id"},
                "then": {"type": ["string", "null"], "maxLength": tally_alerts::rule::MAX_MATCH_CHARS, "description": "Makes the rule a sequence: a search for the event that must follow, in the same group, within the window of the condition (a count or distinct condition), whose threshold arms the group", "example": "category:LOGIN outcome:SUCCESS"},
                "when": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "description": "Count only events received in (or, with outside, out of) these days and hours",
                    "properties": {
                        "time_zone": {"type": ["string", "null"], "description": "An IANA time zone (default UTC)", "example": "Europe/Berlin"},
                        "days": {"type": ["string", "null"], "description": "Days of the week: mon-fri, sat,sun, mon,wed-fri (default every day)", "example": "mon-fri"},
                        "hours": {"type": ["string", "null"], "pattern": "^([01][0-9]|2[0-4]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$", "description": "Clock hours, the end excluded; 22:00-06:00 runs past midnight (default the whole day)", "example": "09:00-18:00"},
                        "outside": {"type": "boolean", "default": false, "description": "Count events outside those days and hours"},
                    },
                },
                "enabled": {"type": "boolean", "default": true},
            },
        }))
    }
}

impl utoipa::ToSchema for RuleSchema {}
