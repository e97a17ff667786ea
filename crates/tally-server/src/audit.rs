//! Reads of the log are themselves audit events: who searched or exported what, when, and how
//! many rows. They are appended to the tenant's own log, durably, before the answer is sent.

use axum::http::StatusCode;
use serde_json::json;
use tally_event::{EventInput, IngestContext};
use tally_store::PreparedEvent;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

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
    let now = time::OffsetDateTime::now_utc();
    let event = json!({
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "tenant": read.tenant,
        "actor": {"id": format!("api-key:{}", who.key_id), "type": "service"},
        "action": read.action,
        "category": if read.action.ends_with(".export") { "EXPORT" } else { "READ" },
        "resource": {"type": "AUDIT_LOG", "id": read.tenant},
        "outcome": "SUCCESS",
        "metadata": read.metadata,
    });
    let input: EventInput = serde_json::from_value(event).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            e.to_string(),
        )
    })?;
    let ctx = IngestContext {
        received_at: now,
        key_id: &who.key_id,
        default_tenant: Some(read.tenant),
        max_future_skew: time::Duration::minutes(5),
    };
    let valid = tally_event::validate(input, &ctx).map_err(|errors| {
        let detail: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.rule))
            .collect();
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            format!(
                "the audit event of this read is invalid: {}",
                detail.join("; ")
            ),
        )
    })?;
    state
        .log
        .append(vec![PreparedEvent::new(valid)])
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("this read could not be recorded in the audit log, so it is refused: {e}"),
            )
            .retry_after(5)
        })?;
    Ok(())
}

/// Appends an event the server itself originates (actor `tally-server`, type `system`): an
/// operator's decision at start, for example, so that it stays on the record.
pub async fn record_system_event(
    log: &tally_store::Log,
    tenant: &str,
    action: &str,
    metadata: serde_json::Value,
) -> Result<(), String> {
    let now = time::OffsetDateTime::now_utc();
    let event = json!({
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "tenant": tenant,
        "actor": {"id": "tally-server", "type": "system"},
        "action": action,
        "category": "ADMIN",
        "resource": {"type": "AUDIT_LOG", "id": tenant},
        "outcome": "SUCCESS",
        "metadata": metadata,
    });
    let input: EventInput = serde_json::from_value(event).map_err(|e| e.to_string())?;
    let ctx = IngestContext {
        received_at: now,
        key_id: "server",
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::minutes(5),
    };
    let valid = tally_event::validate(input, &ctx).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.rule))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    log.append(vec![PreparedEvent::new(valid)])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
