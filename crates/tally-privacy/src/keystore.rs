//! A tenant's subject keys: one random key per subject, kept durably until erased.
//!
//! The file (`subject-keys`, one per tenant; its path is the caller's) is
//!
//! ```text
//! "tally-subject-keys 1\n"
//! frame*   frame = len: u32 LE || crc32c(body): u32 LE || body
//! body     'S' || lookup secret[32] || token key[32]          first frame, once
//!        | 'K' || key id[16] || lookup[32] || subject key[32]  a subject's key
//!        | 'E' || key id[16]                                    a key that was erased
//!        | 'X' || sealed(body)                                  any of the above, encrypted
//! ```
//!
//! With a [`FileCipher`] (encryption at rest: the server's data keys under its key-encryption
//! key), every frame is written as `X`, and [`SubjectKeys::encrypt_clear_frames`] rewrites a
//! file still holding frames in the clear (written before encryption was configured).
//!
//! `lookup` is HMAC-SHA256(lookup secret, subject): the file never holds a subject's name, and
//! finding a subject's key needs the secret. New keys are appended and fsync'd before
//! [`SubjectKeys::ensure`] returns, so an event sealed under a key is never acknowledged before
//! its key is durable; a torn last frame (a crash while appending keys no event used yet) is cut
//! on open. Erasure rewrites the file without the key (written under a temporary name, fsync'd,
//! renamed over the old one, directory fsync'd) and keeps an `E` frame, so that a value under
//! an erased key reads as erased rather than as lost.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::seal::{random_bytes, KeyId, SubjectKey, TokenKey};

const MAGIC: &[u8] = b"tally-subject-keys 1\n";
const SECRETS: u8 = b'S';
const KEY: u8 = b'K';
const ERASED: u8 = b'E';
const SEALED: u8 = b'X';

/// Encrypts the key file's frames at rest. Implemented by the server over its data keys; the
/// key file never holds a subject key in the clear when one is given.
pub trait FileCipher: Send + Sync {
    /// Encrypts one frame body.
    fn seal(&self, body: &[u8]) -> Result<Vec<u8>, String>;
    /// Decrypts what [`seal`](Self::seal) made.
    fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String>;
}

/// What is known of a key id.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// The key.
    Present(SubjectKey),
    /// It was erased: its values are gone for good.
    Erased,
    /// Never seen here: the key file is not the one the values were sealed with.
    Unknown,
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// It is not a subject key file, or is damaged before its last frame.
    #[error("{path}: {detail}")]
    Damaged {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Default)]
struct State {
    by_lookup: HashMap<[u8; 32], KeyId>,
    keys: HashMap<KeyId, (SubjectKey, [u8; 32])>,
    erased: HashSet<KeyId>,
}

/// One tenant's subject keys, in memory and in their file.
pub struct SubjectKeys {
    path: PathBuf,
    lookup_secret: Zeroizing<[u8; 32]>,
    /// HMAC keyed with the lookup secret, its key schedule done once.
    lookup_mac: Hmac<Sha256>,
    tokens: TokenKey,
    state: RwLock<State>,
    /// Appends and rewrites, one at a time.
    file: Mutex<File>,
    cipher: Option<std::sync::Arc<dyn FileCipher>>,
    /// Whether the file holds frames in the clear.
    clear_frames: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeys")
            .field("path", &self.path)
            .finish()
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The frame of `body`, encrypted as an `X` frame when there is a cipher.
fn frame_with(
    cipher: Option<&dyn FileCipher>,
    body: &[u8],
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    Ok(Zeroizing::new(match cipher {
        None => frame(body),
        Some(cipher) => {
            let mut sealed = vec![SEALED];
            sealed.extend_from_slice(&cipher.seal(body).map_err(|detail| {
                KeyStoreError::Damaged {
                    path: path.to_path_buf(),
                    detail: format!("encrypting a key failed: {detail}"),
                }
            })?);
            frame(&sealed)
        }
    }))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

fn owner_only() -> OpenOptions {
    let mut opts = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

impl SubjectKeys {
    /// Opens the key file at `path`, creating it (mode 0600, with fresh secrets) if it does not
    /// exist. A torn last frame is cut.
    pub fn open(path: &Path) -> Result<SubjectKeys, KeyStoreError> {
        Self::open_with(path, None)
    }

    /// [`open`](Self::open) with the frames encrypted at rest by `cipher`: new frames are
    /// written encrypted; frames in the clear are read, and stay until
    /// [`encrypt_clear_frames`](Self::encrypt_clear_frames).
    pub fn open_with(
        path: &Path,
        cipher: Option<std::sync::Arc<dyn FileCipher>>,
    ) -> Result<SubjectKeys, KeyStoreError> {
        let io = |source| KeyStoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |detail: String| KeyStoreError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        if !path.exists() {
            let mut body = Zeroizing::new(vec![SECRETS]);
            body.extend_from_slice(&random_bytes::<32>());
            body.extend_from_slice(&random_bytes::<32>());
            let mut bytes = Zeroizing::new(MAGIC.to_vec());
            bytes.extend_from_slice(&frame_with(cipher.as_deref(), &body, path)?);
            write_new(path, &bytes).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| damaged("not a subject key file (wrong header)".into()))?;
        let mut at = 0usize;
        let mut secrets = None;
        let mut state = State::default();
        let mut clear_frames = false;
        while at < rest.len() {
            let header = rest.get(at..at + 8);
            let len = header.map(|h| u32::from_le_bytes(h[..4].try_into().unwrap()) as usize);
            let body = len.and_then(|len| rest.get(at + 8..at + 8 + len));
            let ok = match (header, body) {
                (Some(h), Some(b)) => crc32c::crc32c(b).to_le_bytes() == h[4..8],
                _ => false,
            };
            if !ok {
                let end = at + 8 + len.unwrap_or(0);
                if end >= rest.len() {
                    // A torn last frame: keys no acknowledged event was sealed under.
                    file.set_len((MAGIC.len() + at) as u64).map_err(io)?;
                    file.sync_all().map_err(io)?;
                    break;
                }
                return Err(damaged(format!(
                    "frame at byte {} is damaged and is not the last one; restore the file \
                     from a backup",
                    MAGIC.len() + at
                )));
            }
            let body = body.unwrap();
            at += 8 + body.len();
            let body: Zeroizing<Vec<u8>> = match (body.first(), &cipher) {
                (Some(&SEALED), Some(cipher)) => cipher.open(&body[1..]).map_err(|detail| {
                    damaged(format!("a key does not decrypt ({detail}); give the key-encryption key it was written with"))
                })?,
                (Some(&SEALED), None) => {
                    return Err(damaged(
                        "the keys are encrypted at rest; start with the key-encryption key \
                         (--kek-file, --kek-env or --kek-command)"
                            .into(),
                    ))
                }
                _ => {
                    clear_frames = true;
                    Zeroizing::new(body.to_vec())
                }
            };
            match (body.first(), body.len()) {
                (Some(&SECRETS), 65) if secrets.is_none() => {
                    let lookup: [u8; 32] = body[1..33].try_into().unwrap();
                    let token: [u8; 32] = body[33..65].try_into().unwrap();
                    secrets = Some((lookup, token));
                }
                (Some(&KEY), 81) => {
                    let kid = KeyId(body[1..17].try_into().unwrap());
                    let lookup: [u8; 32] = body[17..49].try_into().unwrap();
                    let key = SubjectKey::from_bytes(body[49..81].try_into().unwrap());
                    state.by_lookup.insert(lookup, kid);
                    state.keys.insert(kid, (key, lookup));
                }
                (Some(&ERASED), 17) => {
                    let kid = KeyId(body[1..17].try_into().unwrap());
                    if let Some((_, lookup)) = state.keys.remove(&kid) {
                        state.by_lookup.remove(&lookup);
                    }
                    state.erased.insert(kid);
                }
                _ => return Err(damaged(format!("unknown frame of {} bytes", body.len()))),
            }
        }
        let (lookup, token) = secrets.ok_or_else(|| damaged("no secrets frame".into()))?;
        Ok(SubjectKeys {
            path: path.to_path_buf(),
            lookup_mac: <Hmac<Sha256> as Mac>::new_from_slice(&lookup).expect("any key"),
            lookup_secret: Zeroizing::new(lookup),
            tokens: TokenKey::from_bytes(token),
            state: RwLock::new(state),
            file: Mutex::new(file),
            cipher,
            clear_frames: clear_frames.into(),
        })
    }

    /// With a cipher, rewrites the file encrypted if it holds frames in the clear (the
    /// writer does this once when it opens the file; read-only tools never do). Returns
    /// whether it rewrote.
    pub fn encrypt_clear_frames(&self) -> Result<bool, KeyStoreError> {
        use std::sync::atomic::Ordering;
        if self.cipher.is_none() || !self.clear_frames.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut file = self.file.lock();
        self.rewrite(&mut file, &self.state.read(), None)?;
        self.clear_frames.store(false, Ordering::Release);
        Ok(true)
    }

    /// The tenant's masking-token key.
    pub fn tokens(&self) -> &TokenKey {
        &self.tokens
    }

    /// The subject's keyed hash (HMAC-SHA256 under the tenant's lookup secret): how the key
    /// file, and anything else that must name a subject without holding its name, names it.
    pub fn lookup(&self, subject: &str) -> [u8; 32] {
        let mut mac = self.lookup_mac.clone();
        mac.update(subject.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Makes sure every subject has a key, writing new ones durably (one write and one fsync
    /// for all of them) before returning.
    pub fn ensure<S: AsRef<str>>(&self, subjects: &[S]) -> Result<(), KeyStoreError> {
        self.ensure_keys(subjects).map(|_| ())
    }

    /// Each subject's key id and key, in order, if every one has a key already (nothing is
    /// written).
    pub fn existing_keys<S: AsRef<str>>(&self, subjects: &[S]) -> Option<Vec<(KeyId, SubjectKey)>> {
        let lookups: Vec<[u8; 32]> = subjects.iter().map(|s| self.lookup(s.as_ref())).collect();
        keys_of(&self.state.read(), &lookups)
    }

    /// [`ensure`](Self::ensure), returning each subject's key id and key, in order.
    pub fn ensure_keys<S: AsRef<str>>(
        &self,
        subjects: &[S],
    ) -> Result<Vec<(KeyId, SubjectKey)>, KeyStoreError> {
        let lookups: Vec<[u8; 32]> = subjects.iter().map(|s| self.lookup(s.as_ref())).collect();
        if let Some(keys) = keys_of(&self.state.read(), &lookups) {
            return Ok(keys);
        }
        let mut file = self.file.lock();
        let mut fresh: Vec<([u8; 32], KeyId, SubjectKey)> = Vec::new();
        {
            let state = self.state.read();
            let mut seen = HashSet::new();
            for l in &lookups {
                if !state.by_lookup.contains_key(l) && seen.insert(*l) {
                    fresh.push((*l, KeyId::random(), SubjectKey::random()));
                }
            }
        }
        if fresh.is_empty() {
            return Ok(keys_of(&self.state.read(), &lookups).expect("every subject has a key"));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(fresh.len() * 89));
        for (lookup, kid, key) in &fresh {
            bytes.extend_from_slice(&self.frame(&key_body(kid, lookup, key))?);
        }
        let io = |source| KeyStoreError::Io {
            path: self.path.clone(),
            source,
        };
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            // Cut what may have reached the file, so the next append starts on a frame
            // boundary; if even that fails, the torn tail is cut at the next open.
            if let Ok(len) = std::fs::metadata(&self.path).map(|m| m.len()) {
                let _ = file.set_len(
                    len.saturating_sub(bytes.len() as u64)
                        .max(MAGIC.len() as u64),
                );
            }
            return Err(io(e));
        }
        let mut state = self.state.write();
        for (lookup, kid, key) in fresh {
            state.by_lookup.insert(lookup, kid);
            state.keys.insert(kid, (key, lookup));
        }
        Ok(keys_of(&state, &lookups).expect("every subject has a key"))
    }

    /// The key of a subject, if it has one (see [`ensure`](Self::ensure)).
    pub fn key_for(&self, subject: &str) -> Option<(KeyId, SubjectKey)> {
        let lookup = self.lookup(subject);
        let state = self.state.read();
        let kid = *state.by_lookup.get(&lookup)?;
        state.keys.get(&kid).map(|(key, _)| (kid, key.clone()))
    }

    /// What is known of a key id.
    pub fn key(&self, kid: &KeyId) -> KeyState {
        let state = self.state.read();
        if let Some((key, _)) = state.keys.get(kid) {
            KeyState::Present(key.clone())
        } else if state.erased.contains(kid) {
            KeyState::Erased
        } else {
            KeyState::Unknown
        }
    }

    /// The key id of a subject's current key, if it has one.
    pub fn key_id_of(&self, subject: &str) -> Option<KeyId> {
        self.state
            .read()
            .by_lookup
            .get(&self.lookup(subject))
            .copied()
    }

    /// Destroys a subject's key: every value sealed under it becomes unreadable, here and in
    /// every copy of the log made from now on. Returns the erased key's id, or `None` if the
    /// subject has no key. The file is rewritten without the key before this returns.
    pub fn erase(&self, subject: &str) -> Result<Option<KeyId>, KeyStoreError> {
        let lookup = self.lookup(subject);
        let mut file = self.file.lock();
        let Some(kid) = self.state.read().by_lookup.get(&lookup).copied() else {
            return Ok(None);
        };
        self.rewrite(&mut file, &self.state.read(), Some(kid))?;
        if self.cipher.is_some() {
            self.clear_frames
                .store(false, std::sync::atomic::Ordering::Release);
        }
        let mut state = self.state.write();
        state.keys.remove(&kid);
        state.by_lookup.remove(&lookup);
        state.erased.insert(kid);
        Ok(Some(kid))
    }

    fn frame(&self, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
        frame_with(self.cipher.as_deref(), body, &self.path)
    }

    /// Rewrites the file from `state`, without the key `erasing` (which is listed as erased):
    /// written under a temporary name, fsync'd, renamed over the old one, directory fsync'd;
    /// `file` is then the new file.
    fn rewrite(
        &self,
        file: &mut File,
        state: &State,
        erasing: Option<KeyId>,
    ) -> Result<(), KeyStoreError> {
        let io = |source| KeyStoreError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = Zeroizing::new(MAGIC.to_vec());
        let mut secrets = Zeroizing::new(vec![SECRETS]);
        secrets.extend_from_slice(self.lookup_secret.as_ref());
        secrets.extend_from_slice(self.tokens.as_bytes());
        bytes.extend_from_slice(&self.frame(&secrets)?);
        let mut keys: Vec<_> = state
            .keys
            .iter()
            .filter(|(k, _)| Some(**k) != erasing)
            .collect();
        keys.sort_by_key(|(k, _)| **k);
        for (k, (key, lookup)) in keys {
            bytes.extend_from_slice(&self.frame(&key_body(k, lookup, key))?);
        }
        let mut erased: Vec<_> = state.erased.iter().chain(erasing.as_ref()).collect();
        erased.sort();
        erased.dedup();
        for k in erased {
            let mut body = vec![ERASED];
            body.extend_from_slice(&k.0);
            bytes.extend_from_slice(&self.frame(&body)?);
        }
        let tmp = self.path.with_extension("rewrite");
        write_new(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        sync_dir(&self.path).map_err(io)?;
        *file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        Ok(())
    }

    /// How many subjects have a key, and how many keys were erased.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state.read();
        (state.keys.len(), state.erased.len())
    }
}

/// The key id and key of each lookup, if every one has a key.
fn keys_of(state: &State, lookups: &[[u8; 32]]) -> Option<Vec<(KeyId, SubjectKey)>> {
    lookups
        .iter()
        .map(|l| {
            let kid = state.by_lookup.get(l)?;
            Some((*kid, state.keys.get(kid)?.0.clone()))
        })
        .collect()
}

fn key_body(kid: &KeyId, lookup: &[u8; 32], key: &SubjectKey) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(81));
    body.push(KEY);
    body.extend_from_slice(&kid.0);
    body.extend_from_slice(lookup);
    body.extend_from_slice(key.as_bytes());
    body
}

/// Writes a new file (replacing any leftover of an interrupted write), 0600, fsync'd, and
/// fsyncs its directory.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = owner_only()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopening_and_erasure_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subject-keys");
        let keys = SubjectKeys::open(&path).unwrap();
        keys.ensure(&["alice", "bob", "alice"]).unwrap();
        let (alice_kid, alice_key) = keys.key_for("alice").unwrap();
        let (bob_kid, _) = keys.key_for("bob").unwrap();
        assert_ne!(alice_kid, bob_kid);
        assert!(keys.key_for("carol").is_none());
        let token = keys.tokens().token_of_str("x");
        drop(keys);

        let keys = SubjectKeys::open(&path).unwrap();
        assert_eq!(keys.tokens().token_of_str("x"), token);
        let (kid, key) = keys.key_for("alice").unwrap();
        assert_eq!((kid, key.as_bytes()), (alice_kid, alice_key.as_bytes()));
        assert_eq!(keys.erase("alice").unwrap(), Some(alice_kid));
        assert_eq!(keys.erase("alice").unwrap(), None);
        assert!(matches!(keys.key(&alice_kid), KeyState::Erased));
        assert!(matches!(keys.key(&bob_kid), KeyState::Present(_)));
        assert!(matches!(keys.key(&KeyId([0; 16])), KeyState::Unknown));
        // Appends after a rewrite go to the new file.
        keys.ensure(&["carol"]).unwrap();
        drop(keys);

        let bytes = std::fs::read(&path).unwrap();
        let needle = alice_key.as_bytes();
        assert!(
            !bytes.windows(32).any(|w| w == needle),
            "the erased key is gone"
        );
        assert!(!bytes.windows(5).any(|w| w == b"alice"), "no subject names");
        let keys = SubjectKeys::open(&path).unwrap();
        assert!(matches!(keys.key(&alice_kid), KeyState::Erased));
        assert!(keys.key_for("alice").is_none());
        assert!(keys.key_for("carol").is_some());
        assert_eq!(keys.counts(), (2, 1));
        // A later key for the same subject is a new one.
        keys.ensure(&["alice"]).unwrap();
        assert_ne!(keys.key_for("alice").unwrap().0, alice_kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// A cipher for tests: ChaCha20-Poly1305 under a fixed key, random nonce in front.
    struct TestCipher;

    impl FileCipher for TestCipher {
        fn seal(&self, body: &[u8]) -> Result<Vec<u8>, String> {
            use chacha20poly1305::aead::{Aead, KeyInit};
            let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
            let nonce = random_bytes::<12>();
            let mut out = nonce.to_vec();
            out.extend(
                cipher
                    .encrypt(&nonce.into(), body)
                    .map_err(|e| e.to_string())?,
            );
            Ok(out)
        }

        fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
            use chacha20poly1305::aead::{Aead, KeyInit};
            let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
            let nonce: [u8; 12] = sealed.get(..12).ok_or("short")?.try_into().unwrap();
            cipher
                .decrypt(&nonce.into(), &sealed[12..])
                .map(Zeroizing::new)
                .map_err(|_| "does not decrypt".to_string())
        }
    }

    #[test]
    fn with_a_cipher_no_key_is_stored_in_the_clear_and_clear_files_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subject-keys");
        // A file written before encryption at rest was configured.
        let keys = SubjectKeys::open(&path).unwrap();
        keys.ensure(&["alice"]).unwrap();
        let (alice_kid, alice_key) = keys.key_for("alice").unwrap();
        let token = keys.tokens().token_of_str("x");
        drop(keys);
        let clear = std::fs::read(&path).unwrap();
        assert!(clear.windows(32).any(|w| w == alice_key.as_bytes()));

        let cipher: std::sync::Arc<dyn FileCipher> = std::sync::Arc::new(TestCipher);
        let keys = SubjectKeys::open_with(&path, Some(cipher.clone())).unwrap();
        assert!(keys.encrypt_clear_frames().unwrap());
        assert!(!keys.encrypt_clear_frames().unwrap());
        keys.ensure(&["bob"]).unwrap();
        let (_, bob_key) = keys.key_for("bob").unwrap();
        keys.erase("carol").unwrap();
        drop(keys);
        let bytes = std::fs::read(&path).unwrap();
        for secret in [alice_key.as_bytes(), bob_key.as_bytes()] {
            assert!(!bytes.windows(32).any(|w| w == secret));
        }
        let err = SubjectKeys::open(&path).unwrap_err().to_string();
        assert!(err.contains("--kek-file"), "{err}");
        let keys = SubjectKeys::open_with(&path, Some(cipher.clone())).unwrap();
        assert_eq!(keys.key_for("alice").unwrap().0, alice_kid);
        assert_eq!(keys.tokens().token_of_str("x"), token);
        assert_eq!(keys.erase("alice").unwrap(), Some(alice_kid));
        drop(keys);
        let keys = SubjectKeys::open_with(&path, Some(cipher)).unwrap();
        assert!(matches!(keys.key(&alice_kid), KeyState::Erased));
        assert!(keys.key_for("bob").is_some());
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_earlier_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subject-keys");
        let keys = SubjectKeys::open(&path).unwrap();
        keys.ensure(&["alice"]).unwrap();
        keys.ensure(&["bob"]).unwrap();
        drop(keys);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let keys = SubjectKeys::open(&path).unwrap();
        assert!(keys.key_for("alice").is_some());
        assert!(keys.key_for("bob").is_none(), "the torn key is cut");
        drop(keys);
        assert_eq!(std::fs::read(&path).unwrap().len(), full.len() - 89);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&full[full.len() - 89..]);
        let first_key_frame = MAGIC.len() + 8 + 65;
        bytes[first_key_frame + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = SubjectKeys::open(&path).unwrap_err().to_string();
        assert!(err.contains("not the last one"), "{err}");
        std::fs::write(&path, b"something else").unwrap();
        assert!(SubjectKeys::open(&path).is_err());
    }
}
