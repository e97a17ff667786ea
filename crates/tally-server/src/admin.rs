//! Administrative changes, each recorded in the log as it is made: who may do what is as
//! tamper-evident as what was done. Used by the HTTP API (`/v1/keys`) and by `tally keys …
//! --data DIR` on a stopped server (the offline recovery when no admin key is left).
//!
//! A key confined to a tenant is recorded in that tenant's log; a key of every tenant (`*`) in
//! the [`SYSTEM_TENANT`]'s.

use crate::audit::{record, Actor, RecordError, ServerEvent};
use crate::auth::{ApiKey, KeyError, KeyStore, Revocation, Scope};

/// The tenant whose log holds what concerns every tenant: changes to keys of tenant `*`.
pub const SYSTEM_TENANT: &str = "tally-system";

/// Why an administrative change failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The key file could not be written: nothing changed.
    #[error(transparent)]
    Keys(#[from] KeyError),
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
            "must list at least one of ingest, read, admin",
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
    let (key, token) = keys.create_expiring(new.name, new.scopes, new.tenant, new.expires_at)?;
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
