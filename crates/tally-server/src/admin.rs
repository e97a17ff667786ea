//! Administrative changes, each recorded in the log as it is made: who may do what is as
//! tamper-evident as what was done. Used by the HTTP API (`/v1/keys`, `/v1/tenants`), by
//! ingest when it creates a tenant on first write, and by `tally keys … --data DIR` on a
//! stopped server (the offline recovery when no admin key is left).
//!
//! A key confined to a tenant is recorded in that tenant's log; a key of every tenant (`*`) in
//! the [`SYSTEM_TENANT`]'s. Changes to tenants are the operator's decisions over the set of
//! tenants, so they go to the [`SYSTEM_TENANT`]'s log too (which also keeps a server event
//! from taking leaf 0 ahead of the first event a client sends to a new tenant).

use crate::audit::{record, Actor, RecordError, ServerEvent};
use crate::auth::{ApiKey, KeyError, KeyStore, Revocation, Rotation, Scope};
use crate::tenants::{Change, Quotas, RegistryError, Tenant, TenantRegistry, TenantStatus};

/// The tenant whose log holds what concerns every tenant: changes to keys of tenant `*`.
pub const SYSTEM_TENANT: &str = "tally-system";

/// Why an administrative change failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The key file could not be written: nothing changed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The tenant registry could not be written: nothing changed.
    #[error(transparent)]
    Tenants(#[from] RegistryError),
    /// The change could not be recorded in the log, so it was undone (a key creation) or
    /// stands unrecorded (a revocation, which is never undone: a key meant to stop working
    /// stops working).
    #[error("{done}, but it could not be recorded in the audit log: {source}")]
    NotRecorded {
        /// What happened to the change.
        done: String,
        /// Why recording failed.
        #[source]
        source: RecordError,
    },
}

impl From<AdminError> for crate::ApiError {
    fn from(e: AdminError) -> crate::ApiError {
        use axum::http::StatusCode;
        let code = match &e {
            AdminError::Keys(_) => "key_store_error",
            AdminError::Tenants(_) => "tenant_registry_error",
            AdminError::NotRecorded { .. } => {
                return crate::ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
                .retry_after(5)
            }
        };
        crate::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, e.to_string())
    }
}

/// The tenant whose log records a change to a key of `tenant`.
pub fn log_tenant_of(tenant: &str) -> &str {
    if tenant == "*" {
        SYSTEM_TENANT
    } else {
        tenant
    }
}

/// The event of a change to `key`, in the log of the key's tenant.
fn key_event<'a>(action: &'a str, key: &'a ApiKey, by: Actor<'a>, via: &str) -> ServerEvent<'a> {
    ServerEvent {
        tenant: log_tenant_of(&key.tenant),
        actor: by,
        action,
        category: "ADMIN",
        resource: ("API_KEY", &key.id),
        metadata: serde_json::json!({
            "key_id": key.id,
            "name": key.name,
            "scopes": key.scopes,
            "tenant": key.tenant,
            "expires_at": key.expires_at,
            "requests_per_second": key.requests_per_second,
            "via": via,
        }),
    }
}

/// Checks a key request against the rules the OpenAPI document states, and returns the name
/// to store (without leading and trailing spaces). The name is shown in listings and
/// terminals: 1-128 characters, not only spaces, no control characters.
pub fn check_new_key<'n>(
    name: &'n str,
    scopes: &[Scope],
    tenant: &str,
) -> Result<&'n str, tally_event::FieldError> {
    let broken = |field: &str, rule: &str| tally_event::FieldError {
        field: field.into(),
        rule: rule.into(),
    };
    let trimmed = name.trim_matches(' ');
    if trimmed.is_empty() || name.chars().count() > 128 {
        return Err(broken(
            "name",
            "must be 1-128 characters and not only spaces",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(broken("name", "must not contain control characters"));
    }
    if scopes.is_empty() {
        return Err(broken(
            "scopes",
            "must list at least one of ingest, read, read:pii, export, verify, metrics, admin",
        ));
    }
    if tenant != "*" && !tally_event::is_valid_tenant(tenant) {
        return Err(broken(
            "tenant",
            "must be * or a tenant name (a-z, 0-9, '_', '-')",
        ));
    }
    Ok(trimmed)
}

/// A key to make, checked ([`check_new_key`], [`check_expiry`]).
#[derive(Debug)]
pub struct NewKey<'a> {
    /// Its label.
    pub name: &'a str,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The tenant it is confined to, or `*`.
    pub tenant: &'a str,
    /// When it stops working, if ever.
    pub expires_at: Option<time::OffsetDateTime>,
    /// Its own limit of requests per second, if any.
    pub requests_per_second: Option<u32>,
}

/// Checks a key's expiry: an RFC 3339 time in the future.
pub fn check_expiry(at: &str) -> Result<time::OffsetDateTime, tally_event::FieldError> {
    let broken = |rule: &str| tally_event::FieldError {
        field: "expires_at".into(),
        rule: rule.into(),
    };
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| broken("must be an RFC 3339 time such as 2027-01-31T00:00:00Z"))?;
    if at <= time::OffsetDateTime::now_utc() {
        return Err(broken("must lie in the future"));
    }
    Ok(at)
}

/// Creates a key and records `tally.keys.create`; a creation that cannot be recorded is
/// undone. `via` says how (`api`, `offline`). The caller has checked that `by` may grant it.
pub async fn create_key(
    log: &tally_store::Log,
    keys: &KeyStore,
    by: Actor<'_>,
    via: &str,
    new: NewKey<'_>,
) -> Result<(ApiKey, String), AdminError> {
    let (key, token) = keys.create_expiring(
        new.name,
        new.scopes,
        new.tenant,
        new.expires_at,
        new.requests_per_second,
    )?;
    if let Err(source) = record(log, key_event("tally.keys.create", &key, by, via)).await {
        let done = match keys.undo_create(&key.id) {
            Ok(_) => "the key was not created".to_string(),
            Err(e) => format!(
                "the key {} was made and could not be removed again ({e}); revoke it",
                key.id
            ),
        };
        return Err(AdminError::NotRecorded { done, source });
    }
    Ok((key, token))
}

/// Revokes a key and records `tally.keys.revoke`. The caller has checked that `by` may manage
/// it.
pub async fn revoke_key(
    log: &tally_store::Log,
    keys: &KeyStore,
    by: Actor<'_>,
    via: &str,
    id: &str,
) -> Result<Revocation, AdminError> {
    let outcome = keys.revoke(id)?;
    if let Revocation::Revoked(key) = &outcome {
        record(log, key_event("tally.keys.revoke", key, by, via))
            .await
            .map_err(|source| AdminError::NotRecorded {
                done: format!("the key {} is revoked", key.id),
                source,
            })?;
    }
    Ok(outcome)
}

/// Longest overlap a rotation may give the previous secret: long enough for any deployment
/// to roll out a new token, short enough that a leaked secret does not live on for months.
pub const MAX_ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Gives a key a new secret (the previous one working for `overlap`) and records
/// `tally.keys.rotate`. The caller has checked that `by` may manage the key. A rotation that
/// cannot be recorded stands (the new token is withheld: the error says to rotate again).
pub async fn rotate_key(
    log: &tally_store::Log,
    keys: &KeyStore,
    by: Actor<'_>,
    via: &str,
    id: &str,
    overlap: std::time::Duration,
) -> Result<Rotation, AdminError> {
    let outcome = keys.rotate(id, overlap)?;
    if let Rotation::Rotated(key, _) = &outcome {
        let mut event = key_event("tally.keys.rotate", key, by, via);
        event.metadata["overlap_seconds"] = overlap.as_secs().into();
        event.metadata["previous_secret_expires_at"] =
            key.previous_secret_expires_at.clone().into();
        record(log, event)
            .await
            .map_err(|source| AdminError::NotRecorded {
                done: format!(
                    "the key {} has a new secret that is not shown because the rotation is not on                      the record; rotate it again",
                    key.id
                ),
                source,
            })?;
    }
    Ok(outcome)
}

/// The event of a change to tenant `tenant`, in the system log.
fn tenant_event<'a>(
    action: &'a str,
    tenant: &'a Tenant,
    by: Actor<'a>,
    via: &str,
) -> ServerEvent<'a> {
    ServerEvent {
        tenant: SYSTEM_TENANT,
        actor: by,
        action,
        category: "ADMIN",
        resource: ("TENANT", &tenant.name),
        metadata: serde_json::json!({
            "tenant": tenant.name,
            "status": tenant.status,
            "disabled_reason": tenant.disabled_reason,
            "quotas": tenant.quotas,
            "personal_paths": tenant.personal_paths,
            "secrets": tenant.secrets,
            "legal_hold": tenant.legal_hold,
            "subject_holds": tenant.subject_holds.len(),
            "via": via,
        }),
    }
}

/// Whether `name` is the server's own tenant, which clients never write to and which is never
/// disabled nor limited (the server's records of what happened must always be writable).
pub fn is_system_tenant(name: &str) -> bool {
    name == SYSTEM_TENANT
}

/// Creates a tenant and records `tally.tenants.create`; `None` when it existed already. A
/// creation that cannot be recorded is undone. `via`: `api`, `ingest` (created by its first
/// event), `offline`.
pub async fn create_tenant(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    by: Actor<'_>,
    via: &str,
    name: &str,
) -> Result<Option<Tenant>, AdminError> {
    match tenants.create(name)? {
        Some(tenant) => record_new_tenant(log, tenants, tenant, by, via)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// Records `tally.tenants.create` for a tenant the registry just gained, or takes it out again.
async fn record_new_tenant(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    tenant: Tenant,
    by: Actor<'_>,
    via: &str,
) -> Result<Tenant, AdminError> {
    if let Err(source) = record(log, tenant_event("tally.tenants.create", &tenant, by, via)).await {
        let done = match tenants.undo_create(&tenant.name) {
            Ok(()) => format!("tenant {} was not added", tenant.name),
            Err(e) => format!(
                "tenant {} was added and could not be taken out again ({e})",
                tenant.name
            ),
        };
        return Err(AdminError::NotRecorded { done, source });
    }
    Ok(tenant)
}

/// Lists a tenant whose log exists but which the registry does not know yet (a log from
/// before the registry, or one being created by its first event right now) and records
/// `tally.tenants.create` (`via: adopted`, by the server); `None` when the registry knew it.
/// Every tenant the registry gains at run time is thereby on the record exactly once:
/// whoever inserts it records it. The system tenant, the server's own, is adopted silently.
pub async fn adopt_tenant(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    name: &str,
) -> Result<Option<Tenant>, AdminError> {
    match tenants.adopt(name)? {
        Some(tenant) if is_system_tenant(name) => Ok(Some(tenant)),
        Some(tenant) => record_new_tenant(log, tenants, tenant, Actor::Server, "adopted")
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// Disables or re-enables a tenant and records `tally.tenants.disable` or `.enable`. The
/// change stands even when it cannot be recorded (an operator stopping a tenant's ingest must
/// be obeyed); the error says so.
pub async fn set_tenant_status(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    by: Actor<'_>,
    via: &str,
    name: &str,
    status: TenantStatus,
    reason: Option<&str>,
) -> Result<Change, AdminError> {
    let change = tenants.set_status(name, status, reason)?;
    let action = match status {
        TenantStatus::Disabled => "tally.tenants.disable",
        TenantStatus::Enabled => "tally.tenants.enable",
    };
    record_change(log, change, action, by, via, || {
        format!("tenant {name} is {status:?}").to_lowercase()
    })
    .await
}

/// Records a change made to a tenant (nothing for [`Change::Unchanged`] or
/// [`Change::NotFound`]); `done` says what stands when it cannot be recorded.
async fn record_change(
    log: &tally_store::Log,
    change: Change,
    action: &str,
    by: Actor<'_>,
    via: &str,
    done: impl FnOnce() -> String,
) -> Result<Change, AdminError> {
    if let Change::Done(tenant) = &change {
        record(log, tenant_event(action, tenant, by, via))
            .await
            .map_err(|source| AdminError::NotRecorded {
                done: done(),
                source,
            })?;
    }
    Ok(change)
}

/// Replaces a tenant's personal paths and records `tally.tenants.policy`. The change stands
/// even when it cannot be recorded; the error says so.
pub async fn set_tenant_policy(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    by: Actor<'_>,
    name: &str,
    paths: Vec<crate::tenants::PersonalPath>,
    secrets: crate::tenants::SecretHandling,
) -> Result<Change, AdminError> {
    let change = tenants.set_personal_paths(name, paths, secrets)?;
    record_change(log, change, "tally.tenants.policy", by, "api", || {
        format!("tenant {name}'s personal paths are changed")
    })
    .await
}

/// Places or releases a legal hold (on the tenant, or on one subject by keyed hash) and
/// records `tally.tenants.hold` / `tally.tenants.release`.
pub async fn set_tenant_hold(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    by: Actor<'_>,
    name: &str,
    subject: Option<&str>,
    hold: Option<crate::tenants::LegalHold>,
) -> Result<Change, AdminError> {
    let action = if hold.is_some() {
        "tally.tenants.hold"
    } else {
        "tally.tenants.release"
    };
    let change = match subject {
        None => tenants.set_legal_hold(name, hold)?,
        Some(s) => tenants.set_subject_hold(name, s, hold)?,
    };
    record_change(log, change, action, by, "api", || {
        format!("tenant {name}'s legal holds are changed")
    })
    .await
}

/// Replaces a tenant's quotas and records `tally.tenants.quotas`. The change stands even when
/// it cannot be recorded; the error says so.
pub async fn set_tenant_quotas(
    log: &tally_store::Log,
    tenants: &TenantRegistry,
    by: Actor<'_>,
    via: &str,
    name: &str,
    quotas: Quotas,
) -> Result<Change, AdminError> {
    let change = tenants.set_quotas(name, quotas)?;
    record_change(log, change, "tally.tenants.quotas", by, via, || {
        format!("tenant {name}'s quotas are changed")
    })
    .await
}
