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

/// What a key may do. `Admin` implies the others.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read events, checkpoints, proofs and tiles.
    Read,
    /// Manage API keys; implies ingest and read.
    Admin,
}

/// A stored API key (the secret itself is never stored).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Hex SHA-256 of the secret part of the token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub secret_sha256: String,
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
}

impl Principal {
    /// Whether the key has `scope` (admin has all).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
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

/// The set of API keys, persisted as JSON (0600) in the data directory.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<BTreeMap<String, ApiKey>>,
}

impl KeyStore {
    /// Loads the key file, or starts empty when it does not exist.
    pub fn open(path: PathBuf) -> Result<KeyStore, KeyError> {
        let keys = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<ApiKey> =
                    serde_json::from_slice(&bytes).map_err(|e| KeyError::File {
                        path: path.clone(),
                        detail: format!("not valid JSON ({e}); restore it from a backup"),
                    })?;
                list.into_iter().map(|k| (k.id.clone(), k)).collect()
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

    /// Whether no key exists yet (first start).
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
        let mut id_bytes = [0u8; 6];
        OsRng.fill_bytes(&mut id_bytes);
        let id = hex::encode(id_bytes);
        let mut secret_bytes = [0u8; 32];
        OsRng.fill_bytes(&mut secret_bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
        let key = ApiKey {
            id: id.clone(),
            name: name.to_string(),
            scopes,
            tenant: tenant.to_string(),
            created_at: now_rfc3339(),
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        };
        let mut keys = self.keys.write();
        keys.insert(id.clone(), key.clone());
        if let Err(e) = self.save(&keys) {
            keys.remove(&id);
            return Err(e);
        }
        Ok((key, format!("tly_{id}_{secret}")))
    }

    /// Deletes a key; returns whether it existed.
    pub fn revoke(&self, id: &str) -> Result<bool, KeyError> {
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

    /// One key, without its secret.
    pub fn get(&self, id: &str) -> Option<ApiKey> {
        self.keys.read().get(id).map(|k| ApiKey {
            secret_sha256: String::new(),
            ..k.clone()
        })
    }

    /// Every key, without secrets.
    pub fn list(&self) -> Vec<ApiKey> {
        self.keys
            .read()
            .values()
            .map(|k| ApiKey {
                secret_sha256: String::new(),
                ..k.clone()
            })
            .collect()
    }

    /// The principal a bearer token stands for, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let rest = token.strip_prefix("tly_")?;
        let (id, secret) = rest.split_once('_')?;
        let keys = self.keys.read();
        let key = keys.get(id)?;
        let digest = hex::encode(Sha256::digest(secret.as_bytes()));
        // Comparing digests, not secrets: timing reveals nothing an attacker can steer.
        (digest == key.secret_sha256).then(|| Principal {
            key_id: key.id.clone(),
            scopes: key.scopes.clone(),
            tenant: key.tenant.clone(),
        })
    }

    fn save(&self, keys: &BTreeMap<String, ApiKey>) -> Result<(), KeyError> {
        let list: Vec<&ApiKey> = keys.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("keys serialise");
        tally_store::layout::write_file_durably(&self.path, &bytes, true).map_err(|e| {
            KeyError::File {
                path: self.path.clone(),
                detail: e.to_string(),
            }
        })
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(store.revoke(&key.id).unwrap());
        assert!(store.authenticate(&token).is_none());
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(
            !text.contains(&token[token.len() - 10..]),
            "the secret is never stored"
        );
    }
}
