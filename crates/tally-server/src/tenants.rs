//! The tenant registry: which tenants exist, whether each takes events, and its quotas.
//!
//! A tenant's *log* is in `tally-store`; this is the operator's view of it, persisted as JSON
//! (0600) beside the API keys. Tenants whose logs predate the registry (or that only the
//! server wrote to) are adopted as enabled, without quotas, the first time they are seen.
//! A disabled tenant refuses ingest only: it stays readable, provable and verifiable, and the
//! server still records reads of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Whether a tenant takes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Takes events.
    Enabled,
    /// Refuses ingest (403 `tenant_disabled`); everything else works.
    Disabled,
}

/// Limits on what a tenant may send. Absent: no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Sustained events per second, with a burst of one second's worth; a batch larger than
    /// the burst is taken when the allowance is full and paid for by waiting afterwards.
    /// Beyond it: 429 `rate_limited` with `Retry-After`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::extract::whole_number"
    )]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub events_per_second: Option<u32>,
    /// Bytes of stored records. Checked before each request: a request that starts below the
    /// quota is taken whole; after that, 429 `storage_quota_exceeded`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::extract::whole_number"
    )]
    #[schema(minimum = 1, maximum = 9223372036854775807_u64)]
    pub max_stored_bytes: Option<u64>,
}

/// A tenant as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Its name (`[a-z0-9][a-z0-9_-]{0,62}`).
    pub name: String,
    /// Whether it takes events.
    pub status: TenantStatus,
    /// When it was created (RFC 3339); absent for tenants whose logs predate the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it was last disabled, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// Why it was disabled, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Its limits.
    #[serde(default)]
    pub quotas: Quotas,
    /// Paths inside `before`, `after` and `metadata` that hold personal data in this tenant's
    /// events, besides the schema's personal fields (which every tenant has). They apply to
    /// events received after they are set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal_paths: Vec<PersonalPath>,
    /// What happens to an event carrying a secret (a credential by name, a card number).
    #[serde(default, skip_serializing_if = "SecretHandling::is_default")]
    pub secrets: SecretHandling,
    /// A legal hold on the whole tenant: no personal data of it may be erased while it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<LegalHold>,
    /// Legal holds on single subjects (each named by a keyed hash, never by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_holds: Vec<SubjectHold>,
}

/// What happens to an event that carries a secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretHandling {
    /// Refused whole (422 `invalid_event`, the secret's path in the details).
    #[default]
    Refuse,
    /// Stored with each secret replaced by `[redacted]`, the paths listed in
    /// `metadata.redacted`.
    Redact,
}

impl SecretHandling {
    fn is_default(&self) -> bool {
        *self == SecretHandling::Refuse
    }
}

/// Why erasure is blocked, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalHold {
    /// Why (a case or matter reference).
    pub reason: String,
    /// When it was placed (RFC 3339).
    pub since: String,
}

/// A legal hold on one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectHold {
    /// The subject's keyed hash (HMAC-SHA256 under the tenant's lookup secret, hex): the
    /// registry never holds a subject's name.
    pub subject: String,
    /// Why (a case or matter reference).
    pub reason: String,
    /// When it was placed (RFC 3339).
    pub since: String,
}

/// A path that holds personal data, and whose data it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalPath {
    /// Dotted path inside `before`, `after` or `metadata`; `*` stands for any one member name
    /// (`metadata.patient.*`). The value there is sealed whole, whatever its type.
    #[schema(
        example = "after.email",
        pattern = "^(before|after|metadata)(\\.([^.*\\u0000-\\u001f\\u007f-\\u009f]{1,128}|\\*)){1,15}$"
    )]
    pub path: String,
    /// Whose it is, the identifier erasure is asked for: `actor` (the event's `actor.id`),
    /// `resource` (`resource.id`, else `resource.name`), `value` (the value itself, such as an
    /// e-mail address) or the path of another value of the event (`metadata.patient.id`).
    /// Default: `resource` under `before`/`after`, `actor` under `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "value",
        pattern = "^[^.*\\u0000-\\u001f\\u007f-\\u009f]{1,128}(\\.[^.*\\u0000-\\u001f\\u007f-\\u009f]{1,128}){0,15}$"
    )]
    pub subject: Option<String>,
}

impl PersonalPath {
    /// As the privacy layer's rule.
    pub fn rule(&self) -> tally_privacy::policy::RuleSpec {
        tally_privacy::policy::RuleSpec {
            path: self.path.clone(),
            subject: self.subject.clone(),
        }
    }
}

impl Tenant {
    fn new(name: &str, created_at: Option<String>) -> Tenant {
        Tenant {
            name: name.to_string(),
            status: TenantStatus::Enabled,
            created_at,
            disabled_at: None,
            disabled_reason: None,
            quotas: Quotas::default(),
            personal_paths: Vec::new(),
            secrets: SecretHandling::Refuse,
            legal_hold: None,
            subject_holds: Vec::new(),
        }
    }
}

/// Errors of the registry's file.
#[derive(Debug, thiserror::Error)]
#[error("tenant registry {path}: {detail}")]
pub struct RegistryError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub detail: String,
}

/// Why a tenant may not take a request's events now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The tenant is disabled.
    Disabled {
        /// Why, as the operator said.
        reason: Option<String>,
    },
    /// Over its events-per-second quota; try again after this long.
    RateLimited {
        /// The wait.
        retry_after: Duration,
        /// The quota.
        events_per_second: u32,
    },
    /// Its stored records reached its quota.
    StorageFull {
        /// The quota, in bytes.
        max_stored_bytes: u64,
    },
}

/// The outcome of a change to one tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Made; the tenant as it is now.
    Done(Tenant),
    /// Nothing to do: the tenant already was so.
    Unchanged(Tenant),
    /// No such tenant.
    NotFound,
}

/// The registry, persisted as JSON in the data directory.
#[derive(Debug)]
pub struct TenantRegistry {
    path: PathBuf,
    tenants: RwLock<BTreeMap<String, Tenant>>,
    buckets: crate::rate::Buckets,
}

impl TenantRegistry {
    /// Loads the registry (empty when the file does not exist).
    pub fn open(path: PathBuf) -> Result<TenantRegistry, RegistryError> {
        let tenants: BTreeMap<String, Tenant> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Tenant>>(&bytes)
                .map_err(|e| RegistryError {
                    path: path.clone(),
                    detail: format!("not valid JSON ({e}); restore it from a backup"),
                })?
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(RegistryError {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        Ok(TenantRegistry {
            path,
            tenants: RwLock::new(tenants),
            buckets: crate::rate::Buckets::default(),
        })
    }

    /// One tenant.
    pub fn get(&self, name: &str) -> Option<Tenant> {
        self.tenants.read().get(name).cloned()
    }

    /// Every tenant, by name.
    pub fn list(&self) -> Vec<Tenant> {
        self.tenants.read().values().cloned().collect()
    }

    /// Lists a tenant whose log exists but which the registry does not know (a log from
    /// before the registry, or one only the server wrote to): enabled, no quotas, creation
    /// time unknown. `None` for a known tenant. Use [`crate::admin::adopt_tenant`], which
    /// records it.
    pub fn adopt(&self, name: &str) -> Result<Option<Tenant>, RegistryError> {
        if self.tenants.read().contains_key(name) {
            return Ok(None);
        }
        self.insert(Tenant::new(name, None))
    }

    /// Creates a tenant; `None` when it exists already.
    pub fn create(&self, name: &str) -> Result<Option<Tenant>, RegistryError> {
        self.insert(Tenant::new(name, Some(crate::auth::now_rfc3339())))
    }

    fn insert(&self, tenant: Tenant) -> Result<Option<Tenant>, RegistryError> {
        let mut tenants = self.tenants.write();
        if tenants.contains_key(&tenant.name) {
            return Ok(None);
        }
        tenants.insert(tenant.name.clone(), tenant.clone());
        if let Err(e) = self.save(&tenants) {
            tenants.remove(&tenant.name);
            return Err(e);
        }
        Ok(Some(tenant))
    }

    /// Removes a tenant created moments ago whose creation could not be recorded.
    pub fn undo_create(&self, name: &str) -> Result<(), RegistryError> {
        let mut tenants = self.tenants.write();
        if let Some(old) = tenants.remove(name) {
            if let Err(e) = self.save(&tenants) {
                tenants.insert(name.to_string(), old);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Disables (with the operator's reason) or re-enables a tenant.
    pub fn set_status(
        &self,
        name: &str,
        status: TenantStatus,
        reason: Option<&str>,
    ) -> Result<Change, RegistryError> {
        self.update(name, |t| {
            if t.status == status {
                return false;
            }
            t.status = status;
            match status {
                TenantStatus::Disabled => {
                    t.disabled_at = Some(crate::auth::now_rfc3339());
                    t.disabled_reason = reason.map(str::to_string);
                }
                TenantStatus::Enabled => {
                    t.disabled_at = None;
                    t.disabled_reason = None;
                }
            }
            true
        })
    }

    /// Replaces a tenant's personal paths (already checked by the caller) and its handling
    /// of secrets.
    pub fn set_personal_paths(
        &self,
        name: &str,
        paths: Vec<PersonalPath>,
        secrets: SecretHandling,
    ) -> Result<Change, RegistryError> {
        self.update(name, |t| {
            if t.personal_paths == paths && t.secrets == secrets {
                return false;
            }
            t.personal_paths = paths;
            t.secrets = secrets;
            true
        })
    }

    /// Places (`Some`) or releases (`None`) the tenant-wide legal hold.
    pub fn set_legal_hold(
        &self,
        name: &str,
        hold: Option<LegalHold>,
    ) -> Result<Change, RegistryError> {
        self.update(name, |t| {
            if t.legal_hold.is_some() == hold.is_some() {
                return false;
            }
            t.legal_hold = hold;
            true
        })
    }

    /// Places a hold on a subject (by keyed hash), or releases it (`hold` `None`).
    pub fn set_subject_hold(
        &self,
        name: &str,
        subject: &str,
        hold: Option<LegalHold>,
    ) -> Result<Change, RegistryError> {
        self.update(name, |t| {
            let at = t.subject_holds.iter().position(|h| h.subject == subject);
            match (at, hold) {
                (Some(_), Some(_)) | (None, None) => false,
                (Some(i), None) => {
                    t.subject_holds.remove(i);
                    true
                }
                (None, Some(hold)) => {
                    t.subject_holds.push(SubjectHold {
                        subject: subject.to_string(),
                        reason: hold.reason,
                        since: hold.since,
                    });
                    true
                }
            }
        })
    }

    /// Replaces a tenant's quotas.
    pub fn set_quotas(&self, name: &str, quotas: Quotas) -> Result<Change, RegistryError> {
        // (A new rate starts with a full allowance: `rate::Buckets`.)
        self.update(name, |t| {
            if t.quotas == quotas {
                return false;
            }
            t.quotas = quotas.clone();
            true
        })
    }

    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Tenant) -> bool,
    ) -> Result<Change, RegistryError> {
        let mut tenants = self.tenants.write();
        let Some(tenant) = tenants.get_mut(name) else {
            return Ok(Change::NotFound);
        };
        let before = tenant.clone();
        if !change(tenant) {
            return Ok(Change::Unchanged(before));
        }
        let after = tenant.clone();
        if let Err(e) = self.save(&tenants) {
            tenants.insert(name.to_string(), before);
            return Err(e);
        }
        Ok(Change::Done(after))
    }

    /// Whether `tenant` (known to the registry) takes `events` more events now, its records
    /// holding `stored_bytes`; takes them from its rate allowance when it does.
    pub fn admit(&self, tenant: &Tenant, events: u64, stored_bytes: u64) -> Result<(), Refusal> {
        if tenant.status == TenantStatus::Disabled {
            return Err(Refusal::Disabled {
                reason: tenant.disabled_reason.clone(),
            });
        }
        if let Some(max) = tenant.quotas.max_stored_bytes {
            if stored_bytes >= max {
                return Err(Refusal::StorageFull {
                    max_stored_bytes: max,
                });
            }
        }
        if let Some(rate) = tenant.quotas.events_per_second {
            self.buckets
                .take(&tenant.name, rate, events)
                .map_err(|retry_after| Refusal::RateLimited {
                    retry_after,
                    events_per_second: rate,
                })?;
        }
        Ok(())
    }

    fn save(&self, tenants: &BTreeMap<String, Tenant>) -> Result<(), RegistryError> {
        let list: Vec<&Tenant> = tenants.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("tenants serialise");
        tally_store::layout::write_file_durably(&self.path, &bytes).map_err(|e| RegistryError {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_persists_changes_and_adopts_existing_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        let reg = TenantRegistry::open(path.clone()).unwrap();
        assert!(reg.adopt("old").unwrap().is_some());
        assert_eq!(reg.adopt("old").unwrap(), None);
        assert_eq!(reg.get("old").unwrap().created_at, None);
        let acme = reg.create("acme").unwrap().unwrap();
        assert!(acme.created_at.is_some());
        assert_eq!(reg.create("acme").unwrap(), None);
        let Change::Done(t) = reg
            .set_status("acme", TenantStatus::Disabled, Some("unpaid"))
            .unwrap()
        else {
            panic!("not disabled")
        };
        assert_eq!(t.disabled_reason.as_deref(), Some("unpaid"));
        assert!(matches!(
            reg.set_status("acme", TenantStatus::Disabled, None)
                .unwrap(),
            Change::Unchanged(_)
        ));
        assert_eq!(
            reg.set_status("nope", TenantStatus::Disabled, None)
                .unwrap(),
            Change::NotFound
        );
        let quotas = Quotas {
            events_per_second: Some(5),
            max_stored_bytes: Some(1000),
        };
        reg.set_quotas("old", quotas.clone()).unwrap();
        let again = TenantRegistry::open(path).unwrap();
        again.adopt("new").unwrap();
        assert_eq!(again.get("acme").unwrap().status, TenantStatus::Disabled);
        assert_eq!(again.get("old").unwrap().quotas, quotas);
        assert_eq!(
            again
                .list()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["acme", "new", "old"]
        );
    }

    #[test]
    fn quotas_take_whole_numbers_as_json_schema_counts_them() {
        let parse = |text: &str| serde_json::from_str::<Quotas>(text);
        assert_eq!(
            parse(r#"{"events_per_second": 5.0, "max_stored_bytes": 1000}"#).unwrap(),
            Quotas {
                events_per_second: Some(5),
                max_stored_bytes: Some(1000)
            }
        );
        assert_eq!(parse("{}").unwrap(), Quotas::default());
        for bad in [
            r#"{"events_per_second": 5.5}"#,
            r#"{"events_per_second": -1}"#,
            r#"{"events_per_second": 4294967296}"#,
            r#"{"max_stored_bytes": 9223372036854775808}"#,
            r#"{"max_stored_bytes": "10GiB"}"#,
            r#"{"other": 1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admission_refuses_disabled_full_and_fast_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let reg = TenantRegistry::open(dir.path().join("t.json")).unwrap();
        reg.create("a").unwrap();
        reg.set_quotas(
            "a",
            Quotas {
                events_per_second: Some(100),
                max_stored_bytes: Some(1000),
            },
        )
        .unwrap();
        let a = reg.get("a").unwrap();
        assert!(reg.admit(&a, 100, 999).is_ok());
        assert!(matches!(
            reg.admit(&a, 1, 0),
            Err(Refusal::RateLimited {
                events_per_second: 100,
                ..
            })
        ));
        assert_eq!(
            reg.admit(&a, 1, 1000),
            Err(Refusal::StorageFull {
                max_stored_bytes: 1000
            })
        );
        reg.set_status("a", TenantStatus::Disabled, Some("why"))
            .unwrap();
        assert_eq!(
            reg.admit(&reg.get("a").unwrap(), 1, 0),
            Err(Refusal::Disabled {
                reason: Some("why".into())
            })
        );
    }
}
