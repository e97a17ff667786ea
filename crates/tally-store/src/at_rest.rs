//! Encryption at rest: record bytes (and any other file a caller chooses, such as the subject
//! keys of `tally-privacy`) sealed with XChaCha20-Poly1305 under per-tenant **data keys**, which
//! are stored only wrapped by a **key-encryption key** (KEK) that never touches the data
//! directory: it comes from a file, an environment variable, or a command that prints it (so a
//! KMS or an HSM can hold it; see [`KekSource`]).
//!
//! What is hashed never changes: the Merkle tree commits to the plaintext record, and an
//! encrypted record carries its leaf hash and event id in the clear (both are public anyway:
//! tiles and proofs serve the hashes), so recovery and `tally verify` check the whole structure
//! (every frame, every tree, every checkpoint) with no key at all, and check every record's
//! content, by decrypting it and hashing the plaintext, when given the KEK. Records written
//! before a KEK was configured stay as they are, next to encrypted ones; a data directory
//! with no KEK configured is exactly what it was.
//!
//! Data keys rotate (after [`AtRest::new`]'s `rotate_after`, or on request) by appending a new
//! key: new records use it, old records keep naming the key they were sealed with, and nothing
//! is rewritten. Replacing the KEK rewraps the data keys only ([`rewrap`]).
//!
//! # Formats
//!
//! A KEK is 32 bytes, written as 64 hex digits or in base64 (standard or URL-safe, padding
//! optional); whitespace around it is ignored. Its **fingerprint** is the first 8 bytes of
//! SHA-256(`"tally key-encryption key v1\n"` ‖ KEK), which names it in files and messages
//! without revealing it.
//!
//! ```text
//! DATA_DIR/privacy/<tenant>/data-keys    (0600)
//!   "tally-data-keys 1\n"
//!   frame*     frame = len: u32 LE ‖ crc32c(body): u32 LE ‖ body
//!   body       key id: u32 LE ‖ created: u64 LE (Unix seconds) ‖ KEK fingerprint[8]
//!              ‖ nonce[24] ‖ wrapped[48]
//!   wrapped    XChaCha20-Poly1305(KEK, nonce, data key[32],
//!              aad = "tally data key v1" ‖ len(tenant): u8 ‖ tenant ‖ key id ‖ created)
//!
//! encrypted record (in a segment frame, in place of the record bytes)
//!   00 54 45 31 ("\0TE1") ‖ key id: u32 LE ‖ leaf hash[32] ‖ event id[16] ‖ nonce[24]
//!   ‖ XChaCha20-Poly1305(data key, nonce, record,
//!                        aad = "tally record v1" ‖ len(tenant): u8 ‖ tenant ‖ the 80 bytes before)
//!
//! sealed blob ([`AtRest::seal`], for other files)
//!   key id: u32 LE ‖ nonce[24] ‖ XChaCha20-Poly1305(data key, nonce, bytes,
//!                        aad = "tally blob v1" ‖ len(tenant): u8 ‖ tenant ‖ context)
//! ```
//!
//! No JSON record starts with a zero byte, so an encrypted record is told from a plaintext one
//! by its first byte. A nonce is 16 random bytes drawn when the process starts followed by a
//! counter of the process's encryptions: unique without a system call per record, and with
//! 128 random bits per process no two processes share a prefix.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::{Mutex, RwLock};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tally_tlog::Hash;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::layout::DataDir;

/// The first four bytes of an encrypted record.
pub const RECORD_MAGIC: [u8; 4] = *b"\0TE1";
/// Bytes of an encrypted record before its ciphertext.
pub const RECORD_HEADER: usize = 4 + 4 + 32 + 16 + 24;
/// Bytes an encrypted record adds to the record it holds.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER + TAG;

const TAG: usize = 16;
const NONCE: usize = 24;
const KEYS_MAGIC: &[u8] = b"tally-data-keys 1\n";
const KEY_BODY: usize = 4 + 8 + 8 + NONCE + 32 + TAG;
/// How long a key-encryption-key command may take.
const KEK_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn at_rest_error(what: impl std::fmt::Display) -> StoreError {
    StoreError::AtRest(what.to_string())
}

/// A key-encryption key, in memory only.
pub struct Kek {
    cipher: XChaCha20Poly1305,
    fingerprint: [u8; 8],
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.fingerprint_hex())
    }
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(key: &[u8; 32]) -> Kek {
        let mut h = Sha256::new();
        h.update(b"tally key-encryption key v1\n");
        h.update(key);
        Kek {
            cipher: XChaCha20Poly1305::new(key.into()),
            fingerprint: h.finalize()[..8].try_into().expect("8 bytes"),
        }
    }

    /// Parses a KEK written as 64 hex digits or in base64. The error never quotes the text.
    pub fn parse(text: &str) -> Result<Kek, String> {
        let text = text.trim();
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(if text.len() == 64 {
            hex::decode(text).map_err(|_| "64 characters but not hex digits".to_string())?
        } else {
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or_else(|| "neither 64 hex digits nor base64".to_string())?
        });
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "it holds {} bytes; a key-encryption key is 32 bytes",
                bytes.len()
            )
        })?;
        Ok(Kek::from_bytes(key))
    }

    /// A new random KEK, as 64 hex digits (what `tally kek generate` prints).
    pub fn generate_text() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        Zeroizing::new(hex::encode(key.as_ref()))
    }

    /// The fingerprint, in hex: names this KEK without revealing it.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// Where the key-encryption key comes from. It is read once, at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A file holding it (mode 0600; refused if other users may read it).
    File(PathBuf),
    /// An environment variable holding it.
    Env(String),
    /// A shell command printing it on standard output (run with `/bin/sh -c`, killed after
    /// 30 s), so that a KMS can hand it over without it ever being written to disk.
    Command(String),
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::File(path) => write!(f, "the key-encryption key file {}", path.display()),
            KekSource::Env(var) => write!(f, "the environment variable {var}"),
            KekSource::Command(cmd) => write!(f, "the key-encryption key command `{cmd}`"),
        }
    }
}

impl KekSource {
    /// Reads the KEK. Errors say where it was looked for and what to do, and never quote a key.
    pub fn load(&self) -> Result<Kek, StoreError> {
        let fail = |what: String| at_rest_error(format!("{self}: {what}"));
        let text: Zeroizing<String> = match self {
            KekSource::File(path) => {
                let mut file =
                    File::open(path).map_err(|e| fail(format!("cannot open it: {e}")))?;
                let mode = file
                    .metadata()
                    .map_err(|e| fail(format!("cannot read it: {e}")))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(fail(format!(
                        "other users may read or change it (mode {:o}); run `chmod 600 {}`",
                        mode & 0o777,
                        path.display()
                    )));
                }
                let mut text = Zeroizing::new(String::new());
                file.read_to_string(&mut text)
                    .map_err(|e| fail(format!("cannot read it: {e}")))?;
                text
            }
            KekSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
                fail("it is not set (or not valid UTF-8); export it before starting".into())
            })?),
            KekSource::Command(cmd) => {
                let out = Zeroizing::new(
                    crate::command::run(cmd, &[], KEK_COMMAND_TIMEOUT, 4096).map_err(fail)?,
                );
                Zeroizing::new(String::from_utf8(out.to_vec()).map_err(|_| {
                    fail("it printed bytes that are not text; it must print the key in hex or base64".into())
                })?)
            }
        };
        Kek::parse(&text).map_err(|e| {
            fail(format!(
                "not a key-encryption key ({e}); make one with `tally kek generate`"
            ))
        })
    }
}

/// A data key, as [`AtRest::data_keys`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyInfo {
    /// Its id within the tenant (from 1).
    pub id: u32,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// Whether new records are sealed under it.
    pub current: bool,
}

struct DataKey {
    created: u64,
    cipher: XChaCha20Poly1305,
}

/// One tenant's data keys, as read from (and appended to) its file.
struct TenantKeys {
    path: PathBuf,
    keys: RwLock<BTreeMap<u32, Arc<DataKey>>>,
    /// Appends one at a time.
    appending: Mutex<()>,
}

/// Encryption at rest for one data directory: the KEK and every tenant's data keys.
pub struct AtRest {
    dir: DataDir,
    kek: Kek,
    nonce_prefix: [u8; 16],
    nonces: std::sync::atomic::AtomicU64,
    rotate_after: Option<Duration>,
    tenants: RwLock<HashMap<String, Arc<TenantKeys>>>,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtRest")
            .field("kek", &self.kek)
            .field("rotate_after", &self.rotate_after)
            .finish()
    }
}

/// The parts of an encrypted record (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct EncryptedRecord<'a> {
    /// The data key it is sealed under.
    pub key_id: u32,
    /// The leaf hash of the plaintext record.
    pub leaf_hash: Hash,
    /// The event id of the record.
    pub id: Uuid,
    header: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> EncryptedRecord<'a> {
    /// The parts of `stored`, if it is an encrypted record.
    pub fn parse(stored: &'a [u8]) -> Option<EncryptedRecord<'a>> {
        if stored.len() < RECORD_OVERHEAD || stored[..4] != RECORD_MAGIC {
            return None;
        }
        Some(EncryptedRecord {
            key_id: u32::from_le_bytes(stored[4..8].try_into().unwrap()),
            leaf_hash: stored[8..40].try_into().unwrap(),
            id: Uuid::from_bytes(stored[40..56].try_into().unwrap()),
            header: &stored[..RECORD_HEADER],
            nonce: &stored[56..RECORD_HEADER],
            ciphertext: &stored[RECORD_HEADER..],
        })
    }
}

/// The leaf hash and event id a stored record commits to, read without any key: from the
/// header of an encrypted record, or by hashing and parsing a plaintext one.
pub fn stored_leaf(stored: &[u8]) -> (Hash, Option<Uuid>) {
    match EncryptedRecord::parse(stored) {
        Some(e) => (e.leaf_hash, Some(e.id)),
        None => (
            tally_tlog::leaf_hash(stored),
            tally_event::record_id(stored),
        ),
    }
}

/// Whether a stored record is encrypted.
pub fn is_encrypted(stored: &[u8]) -> bool {
    stored.first() == Some(&0)
}

/// The tenants of `dir` that have data keys: their logs may hold encrypted records, so
/// reading them needs the KEK.
pub fn tenants_with_data_keys(dir: &DataDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.privacy_path()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|t| tally_event::is_valid_tenant(t) && dir.data_keys_path(t).exists())
        .collect();
    out.sort();
    out
}

fn aad(label: &[u8], tenant: &str, rest: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 1 + tenant.len() + 96);
    out.extend_from_slice(label);
    out.push(tenant.len() as u8);
    out.extend_from_slice(tenant.as_bytes());
    for part in rest {
        out.extend_from_slice(part);
    }
    out
}

/// XChaCha20-Poly1305 encryption: ciphertext and tag. Fails only on inputs far beyond anything
/// stored here.
fn encrypt(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8],
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, StoreError> {
    cipher
        .encrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| at_rest_error("encryption failed"))
}

/// XChaCha20-Poly1305 decryption; `None` when the ciphertext, the key or the associated data
/// is not the one it was sealed with.
fn decrypt(cipher: &XChaCha20Poly1305, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        .ok()
}

fn random_nonce() -> [u8; NONCE] {
    let mut nonce = [0u8; NONCE];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

impl AtRest {
    /// Encryption at rest for `dir` under `kek`. Each tenant's current data key is replaced by
    /// a new one once it is older than `rotate_after` (never, if `None`).
    pub fn new(dir: &DataDir, kek: Kek, rotate_after: Option<Duration>) -> AtRest {
        AtRest {
            dir: dir.clone(),
            kek,
            nonce_prefix: {
                let mut prefix = [0u8; 16];
                OsRng.fill_bytes(&mut prefix);
                prefix
            },
            nonces: std::sync::atomic::AtomicU64::new(0),
            rotate_after,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The KEK's fingerprint, in hex.
    pub fn kek_fingerprint(&self) -> String {
        self.kek.fingerprint_hex()
    }

    /// Checks that the KEK opens the data keys of every tenant that has some (at start, so a
    /// wrong KEK is refused before anything is served).
    pub fn check_all(&self) -> Result<usize, StoreError> {
        let tenants = tenants_with_data_keys(&self.dir);
        for tenant in &tenants {
            self.tenant(tenant)?;
        }
        Ok(tenants.len())
    }

    /// Encrypts the record of event `id` whose leaf hash is `leaf_hash`, under the tenant's
    /// current data key (made, durably, if it has none or it is due for rotation).
    pub fn encrypt_record(
        &self,
        tenant: &str,
        leaf_hash: &Hash,
        id: Uuid,
        record: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let (key_id, key) = self.current(tenant)?;
        let nonce = self.next_nonce();
        let mut out = Vec::with_capacity(record.len() + RECORD_OVERHEAD);
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&key_id.to_le_bytes());
        out.extend_from_slice(leaf_hash);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        let aad = aad(b"tally record v1", tenant, &[&out]);
        // Encrypted in place behind the header: no second copy of the record on the ingest
        // path.
        out.extend_from_slice(record);
        let tag = key
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut out[RECORD_HEADER..])
            .map_err(|_| at_rest_error("encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The record held by `stored` (leaf `index` of `tenant`'s log): decrypted if it is
    /// encrypted, checking that it is the record its header names, as it is otherwise. A
    /// record that does not decrypt is [`StoreError::Corrupt`]; a missing key is
    /// [`StoreError::AtRest`].
    pub fn decrypt_record(
        &self,
        tenant: &str,
        index: u64,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(e) = EncryptedRecord::parse(&stored) else {
            if is_encrypted(&stored) {
                return Err(StoreError::Corrupt {
                    tenant: tenant.to_string(),
                    index,
                    detail: "an encrypted record's header is damaged".into(),
                });
            }
            return Ok(stored);
        };
        let key = self.key(tenant, e.key_id)?;
        let aad = aad(b"tally record v1", tenant, &[e.header]);
        let record = decrypt(&key.cipher, e.nonce, e.ciphertext, &aad).ok_or_else(|| {
            StoreError::Corrupt {
                tenant: tenant.to_string(),
                index,
                detail: format!(
                    "the encrypted record of event {} does not decrypt: it was changed, or \
                     moved from another log",
                    e.id
                ),
            }
        })?;
        if tally_tlog::leaf_hash(&record) != e.leaf_hash
            || tally_event::record_id(&record) != Some(e.id)
        {
            return Err(StoreError::Corrupt {
                tenant: tenant.to_string(),
                index,
                detail: format!(
                    "the encrypted record of event {} is not the record its header names",
                    e.id
                ),
            });
        }
        Ok(record)
    }

    /// Seals `bytes` for a file of `tenant` under its current data key; `context` (for example
    /// the file's role) must be given again to [`open`](Self::open) it.
    pub fn seal(&self, tenant: &str, context: &[u8], bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (key_id, key) = self.current(tenant)?;
        let nonce = self.next_nonce();
        let aad = aad(b"tally blob v1", tenant, &[context]);
        let sealed = encrypt(&key.cipher, &nonce, bytes, &aad)?;
        let mut out = Vec::with_capacity(4 + NONCE + sealed.len());
        out.extend_from_slice(&key_id.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made.
    pub fn open(
        &self,
        tenant: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        if sealed.len() < 4 + NONCE + TAG {
            return Err(at_rest_error("a sealed value is too short"));
        }
        let key_id = u32::from_le_bytes(sealed[..4].try_into().unwrap());
        let key = self.key(tenant, key_id)?;
        let aad = aad(b"tally blob v1", tenant, &[context]);
        decrypt(
            &key.cipher,
            &sealed[4..4 + NONCE],
            &sealed[4 + NONCE..],
            &aad,
        )
        .map(Zeroizing::new)
        .ok_or_else(|| {
            at_rest_error(format!(
                "a sealed value of tenant {tenant} does not decrypt: it was changed"
            ))
        })
    }

    /// The tenant's current data key (made, durably, if it has none or it is due for
    /// rotation) and its id, for a caller sealing its own files (the search index).
    pub fn current_data_key(&self, tenant: &str) -> Result<(u32, XChaCha20Poly1305), StoreError> {
        self.current(tenant)
            .map(|(id, key)| (id, key.cipher.clone()))
    }

    /// The tenant's data key `id`.
    pub fn data_key(&self, tenant: &str, id: u32) -> Result<XChaCha20Poly1305, StoreError> {
        self.key(tenant, id).map(|key| key.cipher.clone())
    }

    /// Starts a new data key for `tenant` now: records from now on are sealed under it.
    pub fn rotate(&self, tenant: &str) -> Result<DataKeyInfo, StoreError> {
        let keys = self.tenant(tenant)?;
        let appending = keys.appending.lock();
        let id = self.append_key(tenant, &keys, &appending)?;
        let created = keys.keys.read()[&id].created;
        Ok(DataKeyInfo {
            id,
            created,
            current: true,
        })
    }

    /// The data keys of `tenant`, oldest first (none before its first encrypted write).
    pub fn data_keys(&self, tenant: &str) -> Result<Vec<DataKeyInfo>, StoreError> {
        let keys = self.tenant(tenant)?;
        let keys = keys.keys.read();
        let last = keys.keys().next_back().copied();
        Ok(keys
            .iter()
            .map(|(id, k)| DataKeyInfo {
                id: *id,
                created: k.created,
                current: Some(*id) == last,
            })
            .collect())
    }

    /// Whether `tenant`'s current data key is in memory and not due for rotation: encrypting
    /// for it then touches no file.
    pub fn has_usable_key(&self, tenant: &str) -> bool {
        let Some(keys) = self.tenants.read().get(tenant).cloned() else {
            return false;
        };
        let keys = keys.keys.read();
        keys.values().next_back().is_some_and(|key| {
            self.rotate_after
                .is_none_or(|after| now_secs().saturating_sub(key.created) < after.as_secs())
        })
    }

    fn next_nonce(&self) -> [u8; NONCE] {
        let n = self
            .nonces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nonce = [0u8; NONCE];
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        nonce[16..].copy_from_slice(&n.to_le_bytes());
        nonce
    }

    fn current(&self, tenant: &str) -> Result<(u32, Arc<DataKey>), StoreError> {
        let keys = self.tenant(tenant)?;
        let usable = |keys: &TenantKeys| {
            let keys = keys.keys.read();
            let (id, key) = keys.iter().next_back()?;
            let due = self
                .rotate_after
                .is_some_and(|after| now_secs().saturating_sub(key.created) >= after.as_secs());
            (!due).then(|| (*id, key.clone()))
        };
        if let Some(current) = usable(&keys) {
            return Ok(current);
        }
        let appending = keys.appending.lock();
        // Another thread may have made it while this one waited.
        if let Some(current) = usable(&keys) {
            return Ok(current);
        }
        let id = self.append_key(tenant, &keys, &appending)?;
        let key = keys.keys.read()[&id].clone();
        Ok((id, key))
    }

    fn key(&self, tenant: &str, id: u32) -> Result<Arc<DataKey>, StoreError> {
        let keys = self.tenant(tenant)?;
        let found = keys.keys.read().get(&id).cloned();
        found.ok_or_else(|| {
            at_rest_error(format!(
                "data key {id} of tenant {tenant} is not in {}: restore that file from a backup",
                keys.path.display()
            ))
        })
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<TenantKeys>, StoreError> {
        if let Some(keys) = self.tenants.read().get(tenant) {
            return Ok(keys.clone());
        }
        if !tally_event::is_valid_tenant(tenant) {
            return Err(at_rest_error(format!("{tenant:?} is not a tenant name")));
        }
        let mut tenants = self.tenants.write();
        if let Some(keys) = tenants.get(tenant) {
            return Ok(keys.clone());
        }
        let path = self.dir.data_keys_path(tenant);
        let keys = read_keys(&path, tenant, &self.kek)?;
        let keys = Arc::new(TenantKeys {
            path,
            keys: RwLock::new(keys),
            appending: Mutex::new(()),
        });
        tenants.insert(tenant.to_string(), keys.clone());
        Ok(keys)
    }

    /// Makes a new data key and appends it to the tenant's file (created if need be) durably.
    /// The caller holds `keys.appending` (proved by `_appending`).
    fn append_key(
        &self,
        tenant: &str,
        keys: &TenantKeys,
        _appending: &parking_lot::MutexGuard<'_, ()>,
    ) -> Result<u32, StoreError> {
        let id = keys.keys.read().keys().next_back().map_or(1, |id| id + 1);
        let created = now_secs();
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let body = wrap_key(&self.kek, tenant, id, created, &key)?;
        let io = |e| StoreError::io(&keys.path, e);
        let dir = keys.path.parent().expect("a tenant directory");
        if !keys.path.exists() {
            crate::layout::create_private_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            let mut bytes = KEYS_MAGIC.to_vec();
            bytes.extend_from_slice(&frame(&body));
            crate::layout::write_file_durably(&keys.path, &bytes)?;
        } else {
            let mut file = OpenOptions::new()
                .append(true)
                .open(&keys.path)
                .map_err(io)?;
            // A torn last frame (a crash while appending) is cut first, or this frame would
            // follow it and the file would read as damaged.
            let whole = whole_frames_len(&keys.path)?;
            if file.metadata().map_err(io)?.len() > whole {
                file.set_len(whole).map_err(io)?;
            }
            let bytes = frame(&body);
            if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                // Cut what may have reached the file: the next append must start on a frame.
                if let Ok(len) = file.metadata().map(|m| m.len()) {
                    let _ = file.set_len(len.saturating_sub(bytes.len() as u64));
                }
                return Err(io(e));
            }
        }
        keys.keys.write().insert(
            id,
            Arc::new(DataKey {
                created,
                cipher: XChaCha20Poly1305::new(key.as_ref().into()),
            }),
        );
        tracing::info!(tenant, key = id, "new data key");
        Ok(id)
    }
}

fn wrap_key(
    kek: &Kek,
    tenant: &str,
    id: u32,
    created: u64,
    key: &[u8; 32],
) -> Result<Vec<u8>, StoreError> {
    let nonce = random_nonce();
    let aad = aad(
        b"tally data key v1",
        tenant,
        &[&id.to_le_bytes(), &created.to_le_bytes()],
    );
    let wrapped = encrypt(&kek.cipher, &nonce, key, &aad)?;
    let mut body = Vec::with_capacity(KEY_BODY);
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&created.to_le_bytes());
    body.extend_from_slice(&kek.fingerprint);
    body.extend_from_slice(&nonce);
    body.extend_from_slice(&wrapped);
    Ok(body)
}

/// Bytes of a data-keys file up to the end of its last whole frame.
fn whole_frames_len(path: &Path) -> Result<u64, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let mut at = KEYS_MAGIC.len().min(bytes.len());
    while bytes.len() >= at + 8 + KEY_BODY {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len != KEY_BODY {
            break;
        }
        at += 8 + KEY_BODY;
    }
    Ok(at as u64)
}

/// A data key as its file holds it.
struct WrappedKey {
    id: u32,
    created: u64,
    key: Zeroizing<[u8; 32]>,
}

/// Reads and unwraps every data key in a tenant's file (none if it does not exist). A torn
/// last frame (a crash while appending a key no record used yet) is ignored; it is cut by the
/// next append's rewrite of nothing, since appends start after whole frames only.
fn read_wrapped(path: &Path, tenant: &str, kek: &Kek) -> Result<Vec<WrappedKey>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let damaged = |what: String| at_rest_error(format!("{}: {what}", path.display()));
    let mut rest = bytes
        .strip_prefix(KEYS_MAGIC)
        .ok_or_else(|| damaged("not a data-keys file (wrong header)".into()))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let whole = rest.len() >= 8 && {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            rest.len() >= 8 + len
                && len == KEY_BODY
                && crc32c::crc32c(&rest[8..8 + len]).to_le_bytes() == rest[4..8]
        };
        if !whole {
            if rest.len() < 8 + KEY_BODY {
                break; // A torn last frame.
            }
            return Err(damaged(
                "a data key is damaged; restore the file from a backup".into(),
            ));
        }
        let body = &rest[8..8 + KEY_BODY];
        rest = &rest[8 + KEY_BODY..];
        let id = u32::from_le_bytes(body[..4].try_into().unwrap());
        let created = u64::from_le_bytes(body[4..12].try_into().unwrap());
        let fingerprint = &body[12..20];
        if fingerprint != kek.fingerprint {
            return Err(damaged(format!(
                "data key {id} is wrapped by the key-encryption key {}, not by the one given \
                 ({}); give the key-encryption key this data directory was set up with",
                hex::encode(fingerprint),
                kek.fingerprint_hex()
            )));
        }
        let aad = aad(
            b"tally data key v1",
            tenant,
            &[&id.to_le_bytes(), &created.to_le_bytes()],
        );
        let key = decrypt(
            &kek.cipher,
            &body[20..20 + NONCE],
            &body[20 + NONCE..],
            &aad,
        )
        .ok_or_else(|| {
            damaged(format!(
                "data key {id} does not unwrap: the file was changed, or copied from \
                     another tenant"
            ))
        })?;
        let key = Zeroizing::new(key);
        out.push(WrappedKey {
            id,
            created,
            key: Zeroizing::new(key.as_slice().try_into().expect("32 bytes")),
        });
    }
    Ok(out)
}

fn read_keys(
    path: &Path,
    tenant: &str,
    kek: &Kek,
) -> Result<BTreeMap<u32, Arc<DataKey>>, StoreError> {
    Ok(read_wrapped(path, tenant, kek)?
        .into_iter()
        .map(|k| {
            (
                k.id,
                Arc::new(DataKey {
                    created: k.created,
                    cipher: XChaCha20Poly1305::new(k.key.as_ref().into()),
                }),
            )
        })
        .collect())
}

/// Replaces the KEK of every tenant's data keys: each file is rewritten with its keys wrapped
/// by `new` (under a temporary name, fsync'd, renamed over the old one: see
/// [`crate::layout::write_file_durably`]). Records are not
/// touched. Returns the number of tenants rewrapped. The server must be stopped.
pub fn rewrap(dir: &DataDir, old: &Kek, new: &Kek) -> Result<usize, StoreError> {
    let tenants = tenants_with_data_keys(dir);
    // Every file is read before any is written, so a wrong old KEK changes nothing.
    let mut all = Vec::new();
    for tenant in &tenants {
        let path = dir.data_keys_path(tenant);
        let keys = read_wrapped(&path, tenant, old)?;
        all.push((tenant, path, keys));
    }
    for (tenant, path, keys) in all {
        let mut bytes = KEYS_MAGIC.to_vec();
        for k in &keys {
            bytes.extend_from_slice(&frame(&wrap_key(new, tenant, k.id, k.created, &k.key)?));
        }
        crate::layout::write_file_durably(&path, &bytes)?;
    }
    Ok(tenants.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: Uuid) -> Vec<u8> {
        format!(r#"{{"schema_version":1,"id":"{id}","action":"user.login"}}"#).into_bytes()
    }

    fn setup() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create_or_open(tmp.path().join("data")).unwrap();
        (tmp, dir)
    }

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; 32])
    }

    #[test]
    fn records_round_trip_and_carry_their_leaf_in_the_clear() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        let id = Uuid::new_v4();
        let plain = record(id);
        let hash = tally_tlog::leaf_hash(&plain);
        let stored = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        assert!(is_encrypted(&stored));
        assert!(!stored.windows(10).any(|w| w == b"user.login"));
        assert_eq!(stored_leaf(&stored), (hash, Some(id)));
        assert_eq!(stored_leaf(&plain), (hash, Some(id)));
        assert_eq!(at_rest.decrypt_record("acme", 0, stored).unwrap(), plain);
        // A plaintext record passes through.
        assert_eq!(
            at_rest.decrypt_record("acme", 0, plain.clone()).unwrap(),
            plain
        );
        // A fresh instance (a restart) reads it with the same KEK.
        let again = AtRest::new(&dir, kek(1), None);
        let stored = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        assert_eq!(again.decrypt_record("acme", 0, stored).unwrap(), plain);
    }

    #[test]
    fn a_changed_or_moved_record_is_refused() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        let id = Uuid::new_v4();
        let plain = record(id);
        let hash = tally_tlog::leaf_hash(&plain);
        let stored = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        for at in [5, 9, 45, 60, RECORD_HEADER + 3, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 1;
            assert!(
                at_rest.decrypt_record("acme", 0, bad).is_err(),
                "byte {at} changed"
            );
        }
        // Another tenant's log: its own key, and the tenant is in the associated data.
        at_rest.rotate("other").unwrap();
        assert!(at_rest.decrypt_record("other", 0, stored.clone()).is_err());
        // A first byte of zero without a whole envelope is damage, not a plaintext record.
        assert!(at_rest.decrypt_record("acme", 0, vec![0, 1, 2]).is_err());
        // A header naming another record's hash (ciphertext kept): refused by the tag.
        let mut swapped = stored.clone();
        swapped[8..40].copy_from_slice(&[7; 32]);
        assert!(at_rest.decrypt_record("acme", 0, swapped).is_err());
    }

    #[test]
    fn rotation_keeps_old_records_readable_and_survives_restart() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        let id = Uuid::new_v4();
        let plain = record(id);
        let hash = tally_tlog::leaf_hash(&plain);
        let old = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        assert_eq!(EncryptedRecord::parse(&old).unwrap().key_id, 1);
        let info = at_rest.rotate("acme").unwrap();
        assert_eq!(info.id, 2);
        let new = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        assert_eq!(EncryptedRecord::parse(&new).unwrap().key_id, 2);
        let restarted = AtRest::new(&dir, kek(1), None);
        assert_eq!(restarted.decrypt_record("acme", 0, old).unwrap(), plain);
        assert_eq!(restarted.decrypt_record("acme", 0, new).unwrap(), plain);
        let keys = restarted.data_keys("acme").unwrap();
        assert_eq!(
            keys.iter().map(|k| (k.id, k.current)).collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        // Rotation by age: a zero age rotates at every write.
        let eager = AtRest::new(&dir, kek(1), Some(Duration::ZERO));
        let third = eager.encrypt_record("acme", &hash, id, &plain).unwrap();
        assert_eq!(EncryptedRecord::parse(&third).unwrap().key_id, 3);
    }

    #[test]
    fn a_wrong_kek_is_refused_with_both_fingerprints_and_rewrap_replaces_it() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        let id = Uuid::new_v4();
        let plain = record(id);
        let hash = tally_tlog::leaf_hash(&plain);
        let stored = at_rest.encrypt_record("acme", &hash, id, &plain).unwrap();
        let wrong = AtRest::new(&dir, kek(2), None);
        let err = wrong.check_all().unwrap_err().to_string();
        assert!(err.contains(&kek(1).fingerprint_hex()), "{err}");
        assert!(err.contains(&kek(2).fingerprint_hex()), "{err}");
        // Rewrap with a wrong old KEK changes nothing.
        assert!(rewrap(&dir, &kek(3), &kek(2)).is_err());
        assert!(AtRest::new(&dir, kek(1), None).check_all().is_ok());
        assert_eq!(rewrap(&dir, &kek(1), &kek(2)).unwrap(), 1);
        assert!(AtRest::new(&dir, kek(1), None).check_all().is_err());
        let rewrapped = AtRest::new(&dir, kek(2), None);
        assert_eq!(rewrapped.decrypt_record("acme", 0, stored).unwrap(), plain);
    }

    #[test]
    fn blobs_round_trip_and_are_bound_to_their_context() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        let sealed = at_rest.seal("acme", b"subject-keys", b"secret").unwrap();
        assert_eq!(
            at_rest
                .open("acme", b"subject-keys", &sealed)
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert!(at_rest.open("acme", b"other", &sealed).is_err());
        assert!(at_rest
            .open("acme", b"subject-keys", &sealed[..10])
            .is_err());
    }

    #[test]
    fn a_torn_last_key_is_ignored_and_earlier_damage_refused() {
        let (_tmp, dir) = setup();
        let at_rest = AtRest::new(&dir, kek(1), None);
        at_rest.rotate("acme").unwrap();
        at_rest.rotate("acme").unwrap();
        let path = dir.data_keys_path("acme");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let keys = AtRest::new(&dir, kek(1), None).data_keys("acme").unwrap();
        assert_eq!(keys.len(), 1);
        // The next key is appended after the cut, and every key reads back.
        let restarted = AtRest::new(&dir, kek(1), None);
        assert_eq!(restarted.rotate("acme").unwrap().id, 2);
        let keys = AtRest::new(&dir, kek(1), None).data_keys("acme").unwrap();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        let mut bad = bytes.clone();
        bad[KEYS_MAGIC.len() + 20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(AtRest::new(&dir, kek(1), None).data_keys("acme").is_err());
    }

    #[test]
    fn keks_parse_from_hex_and_base64_and_sources_say_what_to_do() {
        let hex_text = Kek::generate_text();
        assert_eq!(hex_text.len(), 64);
        let a = Kek::parse(&format!("  {}\n", hex_text.as_str())).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(hex::decode(hex_text.as_str()).unwrap());
        assert_eq!(Kek::parse(&b64).unwrap().fingerprint, a.fingerprint);
        assert!(Kek::parse("a!c").unwrap_err().contains("base64"));
        assert!(Kek::parse(&"zz".repeat(32)).unwrap_err().contains("hex"));
        assert!(Kek::parse("AAAA").unwrap_err().contains("32 bytes"));

        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kek");
        std::fs::write(&file, hex_text.as_bytes()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = KekSource::File(file.clone())
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let from_file = KekSource::File(file.clone()).load().unwrap();
        assert_eq!(from_file.fingerprint, a.fingerprint);
        let from_command = KekSource::Command(format!("cat {}", file.display()))
            .load()
            .unwrap();
        assert_eq!(from_command.fingerprint, a.fingerprint);
        let err = KekSource::Command("exit 3".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("failed"), "{err}");
        let err = KekSource::Env("TALLY_TEST_NO_SUCH_KEK".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not set"), "{err}");
        std::fs::write(&file, "sekrit-but-no-key").unwrap();
        let err = KekSource::File(file).load().unwrap_err().to_string();
        assert!(
            err.contains("tally kek generate") && !err.contains("sekrit"),
            "{err}"
        );
    }
}
