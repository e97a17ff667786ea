//! API keys: scoped bearer tokens, stored hashed in the data directory.
//!
//! A token reads `tly_<id>_<secret>`. Only SHA-256 of the secret is stored, so the file leaks
//! no usable credential; the id is public and is written into every record the key ingests
//! (`key_id`), which attributes each event to the credential that sent it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use parking_lot::RwLock;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do. `admin` implies every other scope, `read:pii` implies `read`, and
/// `read` implies `verify`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read events one by one, search, statistics, live streams, proofs by event id, entry
    /// bundles; and everything `verify` may. Personal data is shown masked once the tenant
    /// has a masking policy (`read:pii` shows it in the clear).
    Read,
    /// `read`, with personal data in the clear.
    #[serde(rename = "read:pii")]
    ReadPii,
    /// Bulk export (`GET /v1/export`), itself recorded in the log.
    Export,
    /// The Merkle tree only: checkpoints, hash tiles, inclusion proofs by leaf index and
    /// consistency proofs; never a record. What a third-party auditor or witness needs.
    Verify,
    /// `/metrics`, which names every tenant: only on a key of every tenant (`*`).
    Metrics,
    /// Manage the API keys in the key's reach (a key confined to a tenant: that tenant's
    /// keys; a key of every tenant: every key, and the tenants themselves); implies every
    /// other scope.
    Admin,
}

impl Scope {
    /// Every scope, in the order the API lists them.
    pub const ALL: [Scope; 7] = [
        Scope::Ingest,
        Scope::Read,
        Scope::ReadPii,
        Scope::Export,
        Scope::Verify,
        Scope::Metrics,
        Scope::Admin,
    ];

    /// Whether holding `self` grants `other`.
    pub fn implies(self, other: Scope) -> bool {
        self == other
            || match self {
                Scope::Admin => true,
                Scope::ReadPii => matches!(other, Scope::Read | Scope::Verify),
                Scope::Read => other == Scope::Verify,
                Scope::Ingest | Scope::Export | Scope::Verify | Scope::Metrics => false,
            }
    }

    /// The name the API and the key file use (`read:pii`, `admin`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::ReadPii => "read:pii",
            Scope::Export => "export",
            Scope::Verify => "verify",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

/// An API key as the API shows it: never its secret, nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Public identifier, part of the token and of every record the key ingests.
    pub id: String,
    /// A label for people.
    pub name: String,
    /// Allowed operations.
    pub scopes: Vec<Scope>,
    /// The tenant the key is confined to, or `*` for every tenant.
    pub tenant: String,
    /// When the key was made (RFC 3339).
    pub created_at: String,
    /// When the key stops working (RFC 3339), if it was made with an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the key was revoked (RFC 3339); a revoked key authenticates nothing, and stays
    /// listed so that the records it signed can still be attributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Most requests per second the key may make (429 `rate_limited` beyond, with
    /// `Retry-After`); none: no limit of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// When the key's secret was last replaced (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// Until when the secret before the last rotation still works too (RFC 3339): the
    /// overlap in which clients move to the new token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

impl ApiKey {
    /// Whether the key administers every tenant (admin scope, tenant `*`).
    pub fn is_global_admin(&self) -> bool {
        self.tenant == "*" && self.scopes.contains(&Scope::Admin)
    }
}

/// A key as the key file holds it: the public part and the SHA-256 of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    #[serde(flatten)]
    key: ApiKey,
    /// Hex SHA-256 of the secret part of the token.
    secret_sha256: String,
    /// Hex SHA-256 of the secret before the last rotation, while it still works
    /// (until `key.previous_secret_expires_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_secret_sha256: Option<String>,
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id.
    pub key_id: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its tenant, or `*`.
    pub tenant: String,
    /// Its own rate limit, if it has one.
    pub requests_per_second: Option<u32>,
    /// The person, when the caller signed in through the OIDC issuer (then `key_id` is
    /// `oidc:<sub>`): recorded as the actor of what they do.
    pub person: Option<String>,
}

impl Principal {
    /// Whether the key has `scope`, itself or by a scope that implies it
    /// ([`Scope::implies`]).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|held| held.implies(scope))
    }

    /// Whether the key administers every tenant (admin scope, tenant `*`).
    pub fn is_global_admin(&self) -> bool {
        self.tenant == "*" && self.scopes.contains(&Scope::Admin)
    }

    /// Whether the key may touch `tenant`.
    pub fn may_access(&self, tenant: &str) -> bool {
        self.tenant == "*" || self.tenant == tenant
    }

    /// Whether this key may manage (list, create, revoke) a key confined to `tenant`
    /// (`*` for every tenant): only a key that can reach everything the other key can.
    pub fn may_manage(&self, tenant: &str) -> bool {
        self.may_access(tenant)
    }

    /// Whether this key holds every scope in `scopes`, so it may hand them on.
    pub fn may_grant(&self, scopes: &[Scope]) -> bool {
        scopes.iter().all(|s| self.has(*s))
    }

    /// The tenant a request means when it names none.
    pub fn default_tenant(&self) -> &str {
        if self.tenant == "*" {
            crate::DEFAULT_TENANT
        } else {
            &self.tenant
        }
    }
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("API key file {path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// What [`KeyStore::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The key is revoked from now on.
    Revoked(ApiKey),
    /// No key has this id.
    NotFound,
    /// The key was revoked before, at this time.
    AlreadyRevoked(String),
    /// The key is the last unrevoked admin key of every tenant: revoking it would leave
    /// nobody able to manage keys, so it is refused.
    LastGlobalAdmin,
}

/// What [`KeyStore::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The key has a new secret (its token, shown once); the previous one works until
    /// `key.previous_secret_expires_at`, if at all.
    Rotated(Box<ApiKey>, String),
    /// No key has this id.
    NotFound,
    /// The key is revoked (at this time): revoked keys stay revoked.
    Revoked(String),
    /// The key has expired (at this time): make a new one.
    Expired(String),
}

/// The set of API keys, persisted as JSON (0600) in the data directory. Revoked keys stay in
/// the file, marked, so that every `key_id` in the log can still be attributed.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<BTreeMap<String, StoredKey>>,
}

impl KeyStore {
    /// Loads the key file, or starts empty when it does not exist.
    pub fn open(path: PathBuf) -> Result<KeyStore, KeyError> {
        let keys = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<StoredKey> =
                    serde_json::from_slice(&bytes).map_err(|e| KeyError::File {
                        path: path.clone(),
                        detail: format!("not valid JSON ({e}); restore it from a backup"),
                    })?;
                list.into_iter().map(|k| (k.key.id.clone(), k)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(KeyError::File {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        Ok(KeyStore {
            path,
            keys: RwLock::new(keys),
        })
    }

    /// Whether no key exists yet, revoked or not (first start).
    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }

    /// Creates a key and returns it with its token, which is shown only this once.
    pub fn create(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        tenant: &str,
    ) -> Result<(ApiKey, String), KeyError> {
        self.create_expiring(name, scopes, tenant, None, None)
    }

    /// [`KeyStore::create`], the key working until `expires_at` only (when given).
    pub fn create_expiring(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        tenant: &str,
        expires_at: Option<time::OffsetDateTime>,
        requests_per_second: Option<u32>,
    ) -> Result<(ApiKey, String), KeyError> {
        let mut id_bytes = [0u8; 6];
        OsRng.fill_bytes(&mut id_bytes);
        let id = hex::encode(id_bytes);
        let secret = new_secret();
        let key = ApiKey {
            id: id.clone(),
            name: name.to_string(),
            scopes,
            tenant: tenant.to_string(),
            created_at: now_rfc3339(),
            expires_at: expires_at.map(rfc3339),
            revoked_at: None,
            requests_per_second,
            rotated_at: None,
            previous_secret_expires_at: None,
        };
        let stored = StoredKey {
            key: key.clone(),
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            previous_secret_sha256: None,
        };
        let mut keys = self.keys.write();
        keys.insert(id.clone(), stored);
        if let Err(e) = self.save(&keys) {
            keys.remove(&id);
            return Err(e);
        }
        Ok((key, format!("tly_{id}_{secret}")))
    }

    /// Deletes a key made moments ago whose creation could not be recorded, as if it had
    /// never existed; returns whether it existed. (Keys in use are revoked, never deleted.)
    pub fn undo_create(&self, id: &str) -> Result<bool, KeyError> {
        let mut keys = self.keys.write();
        let Some(old) = keys.remove(id) else {
            return Ok(false);
        };
        if let Err(e) = self.save(&keys) {
            keys.insert(id.to_string(), old);
            return Err(e);
        }
        Ok(true)
    }

    /// Revokes a key at once: it authenticates nothing from now on, and stays listed, marked.
    /// The last unrevoked global admin key is never revoked ([`Revocation::LastGlobalAdmin`]).
    pub fn revoke(&self, id: &str) -> Result<Revocation, KeyError> {
        let mut keys = self.keys.write();
        let Some(target) = keys.get(id) else {
            return Ok(Revocation::NotFound);
        };
        if let Some(at) = &target.key.revoked_at {
            return Ok(Revocation::AlreadyRevoked(at.clone()));
        }
        let other_admins = keys
            .values()
            .filter(|k| k.key.id != id && k.key.revoked_at.is_none() && k.key.is_global_admin())
            .count();
        if target.key.is_global_admin() && other_admins == 0 {
            return Ok(Revocation::LastGlobalAdmin);
        }
        let entry = keys.get_mut(id).expect("looked up above");
        entry.key.revoked_at = Some(now_rfc3339());
        let revoked = entry.key.clone();
        if let Err(e) = self.save(&keys) {
            if let Some(k) = keys.get_mut(id) {
                k.key.revoked_at = None;
            }
            return Err(e);
        }
        Ok(Revocation::Revoked(revoked))
    }

    /// Gives a key a new secret and returns its token (shown only this once). The old secret
    /// keeps working for `overlap` (zero: it stops at once), so that clients can move to the
    /// new token without an outage; the key's id, scopes, tenant and expiry stay.
    pub fn rotate(&self, id: &str, overlap: std::time::Duration) -> Result<Rotation, KeyError> {
        let mut keys = self.keys.write();
        let Some(entry) = keys.get_mut(id) else {
            return Ok(Rotation::NotFound);
        };
        if let Some(at) = &entry.key.revoked_at {
            return Ok(Rotation::Revoked(at.clone()));
        }
        if let Some(at) = entry.key.expires_at.as_deref().filter(|at| is_past(at)) {
            return Ok(Rotation::Expired(at.to_string()));
        }
        let before = entry.clone();
        let now = time::OffsetDateTime::now_utc();
        let secret = new_secret();
        let overlap = time::Duration::try_from(overlap).unwrap_or(time::Duration::ZERO);
        entry.previous_secret_sha256 = (!overlap.is_zero()).then(|| entry.secret_sha256.clone());
        entry.key.previous_secret_expires_at = (!overlap.is_zero()).then(|| rfc3339(now + overlap));
        entry.secret_sha256 = hex::encode(Sha256::digest(secret.as_bytes()));
        entry.key.rotated_at = Some(rfc3339(now));
        let key = entry.key.clone();
        if let Err(e) = self.save(&keys) {
            keys.insert(id.to_string(), before);
            return Err(e);
        }
        Ok(Rotation::Rotated(
            Box::new(key),
            format!("tly_{id}_{secret}"),
        ))
    }

    /// One key, revoked or not.
    pub fn get(&self, id: &str) -> Option<ApiKey> {
        self.keys.read().get(id).map(|k| k.key.clone())
    }

    /// Every key, revoked ones included (marked).
    pub fn list(&self) -> Vec<ApiKey> {
        self.keys.read().values().map(|k| k.key.clone()).collect()
    }

    /// The principal a bearer token stands for, if it is valid and its key not revoked.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let rest = token.strip_prefix("tly_")?;
        let (id, secret) = rest.split_once('_')?;
        let keys = self.keys.read();
        let stored = keys.get(id)?;
        let digest = hex::encode(Sha256::digest(secret.as_bytes()));
        let expired = stored.key.expires_at.as_deref().is_some_and(is_past);
        // Comparing digests, not secrets: timing reveals nothing an attacker can steer.
        let current = digest == stored.secret_sha256;
        let previous = stored.previous_secret_sha256.as_deref() == Some(digest.as_str())
            && stored
                .key
                .previous_secret_expires_at
                .as_deref()
                .is_some_and(|at| !is_past(at));
        let valid = (current || previous) && stored.key.revoked_at.is_none() && !expired;
        valid.then(|| Principal {
            key_id: stored.key.id.clone(),
            scopes: stored.key.scopes.clone(),
            tenant: stored.key.tenant.clone(),
            requests_per_second: stored.key.requests_per_second,
            person: None,
        })
    }

    /// The principal a verified TLS client certificate stands for: the key whose id is the
    /// certificate's subject common name, if it exists, is neither revoked nor expired, and
    /// may ingest — with the ingest scope only (a certificate stands in for a secret on the
    /// ingest path, never for reading or administration).
    pub fn certificate_principal(&self, key_id: &str) -> Option<Principal> {
        let keys = self.keys.read();
        let key = &keys.get(key_id)?.key;
        let usable = key.revoked_at.is_none()
            && !key.expires_at.as_deref().is_some_and(is_past)
            && key.scopes.iter().any(|s| s.implies(Scope::Ingest));
        usable.then(|| Principal {
            key_id: key.id.clone(),
            scopes: vec![Scope::Ingest],
            tenant: key.tenant.clone(),
            requests_per_second: key.requests_per_second,
            person: None,
        })
    }

    fn save(&self, keys: &BTreeMap<String, StoredKey>) -> Result<(), KeyError> {
        let list: Vec<&StoredKey> = keys.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("keys serialise");
        tally_store::layout::write_file_durably(&self.path, &bytes).map_err(|e| KeyError::File {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }
}

/// A new random secret: 32 bytes, base64url.
fn new_secret() -> String {
    let mut secret_bytes = [0u8; 32];
    OsRng.fill_bytes(&mut secret_bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes)
}

/// Whether an RFC 3339 time is now or past; an unreadable one counts as past (a key file
/// edited by hand fails closed).
fn is_past(at: &str) -> bool {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_or(true, |at| at <= time::OffsetDateTime::now_utc())
}

/// The time now, as the registries write it (RFC 3339, UTC, whole seconds).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_key_authenticates_nothing_and_a_later_expiry_works_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path().join("keys.json")).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let (past, old) = store
            .create_expiring(
                "old",
                vec![Scope::Read],
                "acme",
                Some(now - time::Duration::SECOND),
                None,
            )
            .unwrap();
        let (later, fresh) = store
            .create_expiring(
                "new",
                vec![Scope::Read],
                "acme",
                Some(now + time::Duration::HOUR),
                None,
            )
            .unwrap();
        assert!(store.authenticate(&old).is_none());
        assert!(store.authenticate(&fresh).is_some());
        assert!(past.expires_at.is_some() && later.expires_at.unwrap().ends_with('Z'));
        // Kept across a reopen.
        let again = KeyStore::open(dir.path().join("keys.json")).unwrap();
        assert!(again.authenticate(&old).is_none() && again.authenticate(&fresh).is_some());
    }

    #[test]
    fn a_rotated_key_takes_the_new_secret_and_the_old_one_for_the_overlap_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path().join("keys.json")).unwrap();
        let (key, first) = store.create("svc", vec![Scope::Ingest], "acme").unwrap();
        let Rotation::Rotated(rotated, second) = store
            .rotate(&key.id, std::time::Duration::from_secs(3600))
            .unwrap()
        else {
            panic!("not rotated")
        };
        assert_eq!(rotated.id, key.id);
        assert!(rotated.rotated_at.is_some() && rotated.previous_secret_expires_at.is_some());
        assert_ne!(first, second);
        assert!(store.authenticate(&first).is_some(), "within the overlap");
        assert!(store.authenticate(&second).is_some());
        // Without overlap the previous secret (the second) stops at once; the first, two
        // rotations old, too.
        let Rotation::Rotated(_, third) = store.rotate(&key.id, std::time::Duration::ZERO).unwrap()
        else {
            panic!("not rotated")
        };
        assert!(store.authenticate(&first).is_none());
        assert!(store.authenticate(&second).is_none());
        assert!(store.authenticate(&third).is_some());
        // Kept across a reopen; revoked keys are not rotated back to life.
        let again = KeyStore::open(dir.path().join("keys.json")).unwrap();
        assert!(again.authenticate(&third).is_some());
        again.revoke(&key.id).unwrap();
        assert!(matches!(
            again.rotate(&key.id, std::time::Duration::ZERO).unwrap(),
            Rotation::Revoked(_)
        ));
        assert_eq!(
            again.rotate("nope", std::time::Duration::ZERO).unwrap(),
            Rotation::NotFound
        );
    }

    #[test]
    fn scopes_imply_what_they_say_and_read_pii_is_spelled_with_a_colon() {
        assert!(Scope::Admin.implies(Scope::Metrics) && Scope::Admin.implies(Scope::ReadPii));
        assert!(Scope::ReadPii.implies(Scope::Read) && Scope::ReadPii.implies(Scope::Verify));
        assert!(Scope::Read.implies(Scope::Verify) && !Scope::Read.implies(Scope::ReadPii));
        assert!(!Scope::Read.implies(Scope::Export) && !Scope::Verify.implies(Scope::Read));
        assert!(!Scope::Ingest.implies(Scope::Read) && !Scope::Export.implies(Scope::Read));
        for scope in Scope::ALL {
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.name())
            );
        }
    }

    #[test]
    fn the_last_global_admin_key_cannot_be_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path().join("keys.json")).unwrap();
        let (first, _) = store.create("admin", vec![Scope::Admin], "*").unwrap();
        // Tenant admins and other scopes do not count: they cannot manage every tenant.
        let (tenant_admin, _) = store.create("acme", vec![Scope::Admin], "acme").unwrap();
        let (reader, _) = store.create("r", vec![Scope::Read], "*").unwrap();
        assert_eq!(
            store.revoke(&first.id).unwrap(),
            Revocation::LastGlobalAdmin
        );
        let (second, token) = store.create("admin-2", vec![Scope::Admin], "*").unwrap();
        assert!(matches!(
            store.revoke(&first.id).unwrap(),
            Revocation::Revoked(_)
        ));
        assert_eq!(
            store.revoke(&second.id).unwrap(),
            Revocation::LastGlobalAdmin
        );
        assert!(store.authenticate(&token).is_some());
        assert!(matches!(
            store.revoke(&tenant_admin.id).unwrap(),
            Revocation::Revoked(_)
        ));
        assert!(matches!(
            store.revoke(&reader.id).unwrap(),
            Revocation::Revoked(_)
        ));
    }

    #[test]
    fn key_files_of_earlier_releases_open_and_the_api_never_shows_a_secret_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        // The format before revoked keys were kept.
        std::fs::write(
            &path,
            r#"[{"id":"0a1b2c3d4e5f","name":"admin","scopes":["admin"],"tenant":"*",
                "created_at":"2026-11-01T00:00:00Z","secret_sha256":"00"}]"#,
        )
        .unwrap();
        let store = KeyStore::open(path.clone()).unwrap();
        let key = store.get("0a1b2c3d4e5f").unwrap();
        assert!(key.is_global_admin() && key.revoked_at.is_none());
        let (created, _) = store.create("x", vec![Scope::Read], "acme").unwrap();
        for shown in [
            serde_json::to_string(&created).unwrap(),
            serde_json::to_string(&store.list()).unwrap(),
        ] {
            assert!(!shown.contains("secret"), "{shown}");
        }
        // The file still holds every hash, the old key's included.
        let file = std::fs::read_to_string(&path).unwrap();
        assert_eq!(file.matches("secret_sha256").count(), 2, "{file}");
    }

    #[test]
    fn tokens_authenticate_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path().join("keys.json")).unwrap();
        let (key, token) = store.create("ci", vec![Scope::Ingest], "acme").unwrap();
        let p = store.authenticate(&token).expect("valid token");
        assert_eq!(p.key_id, key.id);
        assert!(p.has(Scope::Ingest) && !p.has(Scope::Read));
        assert!(p.may_access("acme") && !p.may_access("other"));
        let mut bad = token.clone();
        bad.push('x');
        assert!(store.authenticate(&bad).is_none());
        assert!(store.authenticate("tly_nope_nope").is_none());
        // Persisted: a reopened store knows the key.
        let again = KeyStore::open(dir.path().join("keys.json")).unwrap();
        assert!(again.authenticate(&token).is_some());
        assert!(
            matches!(store.revoke(&key.id).unwrap(), Revocation::Revoked(k) if k.revoked_at.is_some())
        );
        assert!(store.authenticate(&token).is_none());
        assert!(matches!(
            store.revoke(&key.id).unwrap(),
            Revocation::AlreadyRevoked(_)
        ));
        assert_eq!(store.revoke("nope").unwrap(), Revocation::NotFound);
        // Revoked keys stay on file, marked, across a reopen.
        let again = KeyStore::open(dir.path().join("keys.json")).unwrap();
        assert!(again.get(&key.id).unwrap().revoked_at.is_some());
        assert!(again.authenticate(&token).is_none());
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(
            !text.contains(&token[token.len() - 10..]),
            "the secret is never stored"
        );
    }
}
