//! Events the server records about itself: reads of the log (who searched or exported what,
//! when, how many rows), administrative changes (keys) and operators' decisions at start. Each
//! is appended to a tenant's own log, durably, before the answer is sent, so that watching the
//! log is itself on the record.
//!
//! Only the server writes these: clients may not use the `tally.` action namespace nor the
//! server's actor forms ([`tally_event::reserved_for_server`]).

use axum::http::StatusCode;
use serde_json::json;
use tally_event::{EventInput, IngestContext};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// Who did what the server records.
#[derive(Debug, Clone)]
pub enum Actor<'a> {
    /// A request authenticated by this API key (`api-key:<id>`, a service).
    Key(&'a Principal),
    /// The server itself, or an operator working on the stopped server's data directory with
    /// the `tally` command (`tally-server`, the system).
    Server,
}

impl Actor<'_> {
    fn json(&self) -> serde_json::Value {
        match self {
            Actor::Key(p) => match &p.person {
                // A person signed in through the OIDC issuer: the person, not a key.
                Some(person) => json!({"id": person, "type": "user"}),
                None => json!({
                    "id": format!("{}{}", tally_event::KEY_ACTOR_PREFIX, p.key_id),
                    "type": "service",
                }),
            },
            Actor::Server => json!({"id": tally_event::SERVER_ACTOR_ID, "type": "system"}),
        }
    }

    fn key_id(&self) -> &str {
        match self {
            Actor::Key(p) => &p.key_id,
            Actor::Server => "server",
        }
    }
}

/// One event the server records.
#[derive(Debug)]
pub struct ServerEvent<'a> {
    /// The tenant whose log it goes in.
    pub tenant: &'a str,
    /// Who.
    pub actor: Actor<'a>,
    /// `tally.events.search`, `tally.keys.create`, … (always in the `tally.` namespace).
    pub action: &'a str,
    /// `READ`, `EXPORT`, `ADMIN`, …
    pub category: &'a str,
    /// What it was done to: `(type, id)`.
    pub resource: (&'a str, &'a str),
    /// Details: the query and rows of a read, the key made, …
    pub metadata: serde_json::Value,
}

/// Why a server event could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The event breaks the schema: a bug in the server, never the client's doing.
    #[error("the audit event is invalid: {0}")]
    Invalid(String),
    /// The log refused it (stopped, disk full, …).
    #[error("the audit log could not take the event: {0}")]
    Unavailable(String),
    /// An event with its id, and other content, is stored already.
    #[error("{0}")]
    Conflict(String),
}

/// Appends `event` durably to its tenant's log.
pub async fn record(log: &tally_store::Log, event: ServerEvent<'_>) -> Result<(), RecordError> {
    record_with_reason(log, event, None, None).await
}

/// Appends `event` durably to its tenant's log, with the reason its actor gave and, when
/// given, this event id (an id derived from what the event is about makes it happen at most
/// once: a second event with that id and other content is refused as
/// [`RecordError::Conflict`]).
pub async fn record_with_reason(
    log: &tally_store::Log,
    event: ServerEvent<'_>,
    reason: Option<&str>,
    id: Option<uuid::Uuid>,
) -> Result<(), RecordError> {
    let mut body = json!({
        "tenant": event.tenant,
        "actor": event.actor.json(),
        "action": event.action,
        "category": event.category,
        "resource": {"type": event.resource.0, "id": event.resource.1},
        "outcome": "SUCCESS",
        "metadata": event.metadata,
    });
    if let Some(reason) = reason {
        body["reason"] = reason.into();
    }
    if let Some(id) = id {
        body["id"] = id.to_string().into();
    }
    append(log, event.tenant, event.actor.key_id(), body).await
}

/// Appends an event the server writes about a request it refused, a change it made or an
/// alert it raised, given as the JSON of an event (without `time`: now), durably to `tenant`'s log, attributed to
/// the server (`key_id` `server`).
pub async fn append_server_event(
    log: &tally_store::Log,
    tenant: &str,
    body: serde_json::Value,
) -> Result<(), RecordError> {
    append(log, tenant, "server", body).await
}

async fn append(
    log: &tally_store::Log,
    tenant: &str,
    key_id: &str,
    mut body: serde_json::Value,
) -> Result<(), RecordError> {
    let now = time::OffsetDateTime::now_utc();
    // An event about something that happened earlier (an alert, timed at the event that
    // completed it) keeps its time: the same alert raised again is then the same event.
    if body.get("time").is_none() {
        body["time"] = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
            .into();
    }
    let input: EventInput =
        serde_json::from_value(body).map_err(|e| RecordError::Invalid(e.to_string()))?;
    let ctx = IngestContext {
        received_at: now,
        key_id,
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::minutes(5),
    };
    let valid = tally_event::validate(input, &ctx).map_err(|errors| {
        RecordError::Invalid(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.rule))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let prepared = log
        .prepare(vec![valid])
        .await
        .map_err(|e| RecordError::Unavailable(e.to_string()))?;
    log.append(prepared).await.map(|_| ()).map_err(|e| match e {
        tally_store::AppendError::Conflict { .. } => RecordError::Conflict(e.to_string()),
        e => RecordError::Unavailable(e.to_string()),
    })
}

/// A read to record.
pub(crate) struct ReadAudit<'a> {
    /// The tenant whose log was read.
    pub(crate) tenant: &'a str,
    /// `tally.events.search`, `tally.events.stats`, `tally.events.export`, …
    pub(crate) action: &'a str,
    /// Details: the query, the rows returned, the format.
    pub(crate) metadata: serde_json::Value,
}

/// Appends the audit event of a read. Fails (503) rather than answer a read it could not
/// record.
pub(crate) async fn record_read(
    state: &AppState,
    who: &Principal,
    read: ReadAudit<'_>,
) -> Result<(), ApiError> {
    let event = ServerEvent {
        tenant: read.tenant,
        actor: Actor::Key(who),
        action: read.action,
        category: if read.action.ends_with(".export") {
            "EXPORT"
        } else {
            "READ"
        },
        resource: ("AUDIT_LOG", read.tenant),
        metadata: read.metadata,
    };
    record(&state.log, event).await.map_err(|e| match e {
        RecordError::Invalid(_) | RecordError::Conflict(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            e.to_string(),
        ),
        RecordError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("this read could not be recorded in the audit log, so it is refused: {e}"),
        )
        .retry_after(5),
    })
}

/// Appends an event the server itself originates (actor `tally-server`, type `system`): an
/// operator's decision at start, for example, so that it stays on the record.
pub async fn record_system_event(
    log: &tally_store::Log,
    tenant: &str,
    action: &str,
    metadata: serde_json::Value,
) -> Result<(), RecordError> {
    let event = ServerEvent {
        tenant,
        actor: Actor::Server,
        action,
        category: "ADMIN",
        resource: ("AUDIT_LOG", tenant),
        metadata,
    };
    record(log, event).await
}
