//! Sealing one personal value under its subject's key, and the masking token of a value.
//!
//! A sealed value is the JSON string
//! `tally:sealed:1.<key id>.<commitment>.<ciphertext>` (each part unpadded base64url):
//!
//! - *key id*: 16 random bytes naming the subject key ([`KeyId`]); it says nothing about the
//!   subject, so it may stay in the log after the key is destroyed.
//! - The **event key** of a subject in one event ([`event_key`]) is HMAC-SHA256(subject key,
//!   `"tally sealed event v1"` ‖ the event id's 16 bytes): derived once per event and subject,
//!   whatever the number of values.
//! - *ciphertext*: AES-256-GCM (NIST SP 800-38D) of the value's canonical JSON text under the
//!   event key, with no associated data and as nonce the first 12 bytes of SHA-256 of
//!   `"tally sealed value nonce v1"` followed by each member name of the value's path as a
//!   4-byte little-endian length and its UTF-8 bytes ([`value_nonce`]). Paths are unique
//!   within a record, so a nonce never repeats under an event key; and sealing is
//!   deterministic, which keeps an idempotent retry byte-identical to the stored record.
//! - *commitment*: the first 16 bytes of SHA-256(`"tally sealed value commitment v1"` ‖ event
//!   key). It binds the ciphertext to one key (AES-GCM alone is not key committing), so a
//!   disclosed event key can prove what each value of that subject in that event was, and
//!   opens no other event's.
//!
//! AES-GCM rather than ChaCha20-Poly1305: the values are a few dozen bytes, where AES-NI and
//! carry-less multiplication cost a fraction of ChaCha20's per-message set-up.
//!
//! A masking token is `tally:pii:` and the first 16 bytes of HMAC-SHA256 under the tenant's
//! token key of the value's canonical JSON text, unpadded base64url: equal values give equal
//! tokens within a tenant, and nobody without the key can compute one.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// Every sealed value starts with this.
pub const SEALED_PREFIX: &str = "tally:sealed:";
/// Every masking token starts with this.
pub const TOKEN_PREFIX: &str = tally_event::MASKING_TOKEN_PREFIX;
/// What an erased value reads as.
pub const ERASED: &str = "tally:erased";
/// What a value reads as when its key is neither present nor erased (a lost key file).
pub const UNAVAILABLE: &str = "tally:unavailable";
/// Strings a client may not send, anywhere in an event: they mean something in what Tally
/// shows, and a forged one would mislead a reader.
pub const RESERVED_PREFIXES: [&str; 4] = [SEALED_PREFIX, TOKEN_PREFIX, ERASED, UNAVAILABLE];

const VERSION: &str = "1";
const INFO: &[u8] = b"tally sealed event v1";
const NONCE_LABEL: &[u8] = b"tally sealed value nonce v1";

/// The name of a subject key: 16 random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// A fresh random id.
    pub fn random() -> KeyId {
        KeyId(random_bytes())
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

/// A subject's 32-byte key; its bytes are wiped from memory when dropped.
#[derive(Clone)]
pub struct SubjectKey {
    bytes: Zeroizing<[u8; 32]>,
    /// HMAC keyed with it, its key schedule done once: every event of the subject derives its
    /// event key from it, and the schedule is half of that derivation's hashing.
    mac: Hmac<Sha256>,
}

impl SubjectKey {
    /// A fresh random key.
    pub fn random() -> SubjectKey {
        SubjectKey::from_bytes(random_bytes())
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SubjectKey {
        SubjectKey {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length"),
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(…)")
    }
}

/// The key of one subject's values in one event, derived from its subject key: disclosing it
/// (in an export) opens those values and no other event's.
#[derive(Clone)]
pub struct EventKey {
    cipher: Aes256Gcm,
    bytes: Zeroizing<[u8; 32]>,
    commitment: [u8; 16],
}

impl EventKey {
    /// The 32 key bytes (what an export discloses).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// From disclosed key bytes; the commitment is recomputed and checked on open.
    pub fn from_bytes(bytes: [u8; 32]) -> EventKey {
        EventKey {
            cipher: Aes256Gcm::new(&bytes.into()),
            commitment: commitment_of(&bytes),
            bytes: Zeroizing::new(bytes),
        }
    }
}

fn commitment_of(key: &[u8; 32]) -> [u8; 16] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"tally sealed value commitment v1");
    h.update(key);
    h.finalize()[..16].try_into().expect("16 bytes")
}

/// Derives the key of a subject's values in event `event_id`.
pub fn event_key(key: &SubjectKey, event_id: Uuid) -> EventKey {
    let mut mac = key.mac.clone();
    mac.update(INFO);
    mac.update(event_id.as_bytes());
    let mut bytes: [u8; 32] = mac.finalize().into_bytes().into();
    let key = EventKey::from_bytes(bytes);
    bytes.zeroize();
    key
}

/// The nonce of the value at `path`: unique within a record, the same on every retry.
pub fn value_nonce<S: AsRef<str>>(path: &[S]) -> [u8; 12] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(NONCE_LABEL);
    for seg in path {
        let seg = seg.as_ref().as_bytes();
        h.update((seg.len() as u32).to_le_bytes());
        h.update(seg);
    }
    h.finalize()[..12].try_into().expect("12 bytes")
}

fn push_base64(out: &mut Vec<u8>, part: &[u8]) {
    let at = out.len();
    out.resize(
        at + base64::encoded_len(part.len(), false).expect("small"),
        0,
    );
    B64.encode_slice(part, &mut out[at..])
        .expect("the space was sized for it");
}

/// What every sealed value of one subject in one event starts with, up to its ciphertext:
/// `tally:sealed:1.<key id>.<commitment>.`; made once per event and subject.
pub fn sealed_head(key: &EventKey, kid: KeyId) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(SEALED_PREFIX.as_bytes());
    out.extend_from_slice(VERSION.as_bytes());
    for part in [&kid.0[..], &key.commitment[..]] {
        out.push(b'.');
        push_base64(&mut out, part);
    }
    out.push(b'.');
    out
}

/// Appends the sealed-value string of `plaintext` (a value's canonical JSON text) to `out`:
/// `head` (from [`sealed_head`] with the same key), then the ciphertext under `nonce` (from
/// [`value_nonce`] of the value's path). `scratch` is working space, reused across calls.
pub fn seal_value_into(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    key: &EventKey,
    head: &[u8],
    nonce: &[u8; 12],
    plaintext: &[u8],
) {
    use aes_gcm::aead::AeadInPlace;
    scratch.clear();
    scratch.extend_from_slice(plaintext);
    let tag = key
        .cipher
        .encrypt_in_place_detached(&Nonce::from(*nonce), b"", scratch)
        .expect("AES-256-GCM encrypts any length a record can hold");
    scratch.extend_from_slice(&tag);
    out.extend_from_slice(head);
    push_base64(out, scratch);
}

/// Seals `plaintext` (a value's canonical JSON text at `path`) as the sealed-value string
/// (without JSON quotes: it is made of base64url and `.`, `:` only), appended to `out`.
pub fn seal_into<S: AsRef<str>>(
    out: &mut Vec<u8>,
    key: &EventKey,
    kid: KeyId,
    path: &[S],
    plaintext: &[u8],
) {
    seal_value_into(
        out,
        &mut Vec::new(),
        key,
        &sealed_head(key, kid),
        &value_nonce(path),
        plaintext,
    );
}

/// [`seal_into`] as a string.
pub fn seal<S: AsRef<str>>(key: &EventKey, kid: KeyId, path: &[S], plaintext: &[u8]) -> String {
    let mut out = Vec::with_capacity(64 + plaintext.len() * 4 / 3);
    seal_into(&mut out, key, kid, path, plaintext);
    String::from_utf8(out).expect("base64url and ASCII only")
}

/// A sealed value's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The subject key it is sealed under.
    pub kid: KeyId,
    commitment: [u8; 16],
    ciphertext: Vec<u8>,
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not in the sealed-value form.
    #[error("not a sealed value")]
    Malformed,
    /// The key is not the one it was sealed under, or the ciphertext was altered.
    #[error("the sealed value does not open under its key (altered, or another key)")]
    Damaged,
}

impl Sealed {
    /// Parses a sealed-value string.
    pub fn parse(text: &str) -> Result<Sealed, OpenError> {
        let rest = text
            .strip_prefix(SEALED_PREFIX)
            .ok_or(OpenError::Malformed)?;
        let mut parts = rest.split('.');
        let (Some(VERSION), Some(kid), Some(commitment), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(OpenError::Malformed);
        };
        let decode = |s: &str| B64.decode(s).map_err(|_| OpenError::Malformed);
        Ok(Sealed {
            kid: KeyId(decode(kid)?.try_into().map_err(|_| OpenError::Malformed)?),
            commitment: decode(commitment)?
                .try_into()
                .map_err(|_| OpenError::Malformed)?,
            ciphertext: decode(ct)?,
        })
    }

    /// The plaintext of the value at `path`, if `key` is the event key it was sealed under.
    pub fn open<S: AsRef<str>>(&self, key: &EventKey, path: &[S]) -> Result<Vec<u8>, OpenError> {
        if key.commitment != self.commitment {
            return Err(OpenError::Damaged);
        }
        key.cipher
            .decrypt(&Nonce::from(value_nonce(path)), self.ciphertext.as_slice())
            .map_err(|_| OpenError::Damaged)
    }
}

/// A tenant's key for masking tokens.
#[derive(Clone)]
pub struct TokenKey {
    bytes: Zeroizing<[u8; 32]>,
    /// HMAC keyed with it, its key schedule done once.
    mac: Hmac<Sha256>,
}

impl TokenKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenKey {
        TokenKey {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length"),
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The token of a value's canonical JSON text (`"alice"`, with its quotes).
    pub fn token(&self, plaintext: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        format!("{TOKEN_PREFIX}{}", B64.encode(&tag[..16]))
    }

    /// The token of a string value.
    pub fn token_of_str(&self, value: &str) -> String {
        self.token(&serde_json::to_vec(value).expect("a string serialises"))
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_key_binding() {
        let key = SubjectKey::random();
        let kid = KeyId::random();
        let id = Uuid::now_v7();
        let ek = event_key(&key, id);
        let path = ["actor", "id"];
        let sealed = seal(&ek, kid, &path, br#""alice""#);
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("alice"));
        let parsed = Sealed::parse(&sealed).unwrap();
        assert_eq!(parsed.kid, kid);
        assert_eq!(parsed.open(&ek, &path).unwrap(), br#""alice""#);
        // Deterministic: a retry seals to the same bytes.
        assert_eq!(seal(&ek, kid, &path, br#""alice""#), sealed);
        // Another path, event or key opens nothing.
        assert_eq!(parsed.open(&ek, &["actor", "ip"]), Err(OpenError::Damaged));
        for other in [
            event_key(&key, Uuid::now_v7()),
            event_key(&SubjectKey::random(), id),
        ] {
            assert_eq!(parsed.open(&other, &path), Err(OpenError::Damaged));
        }
        // A disclosed event key opens it.
        let disclosed = EventKey::from_bytes(*ek.as_bytes());
        assert_eq!(parsed.open(&disclosed, &path).unwrap(), br#""alice""#);
        // Path segments are length-prefixed: "a.b" + "c" is not "a" + "b.c".
        assert_ne!(value_nonce(&["a.b", "c"]), value_nonce(&["a", "b.c"]));
    }

    /// The sealed-value format is stored and hashed: the same inputs must give the same bytes
    /// in every release (this value was made by the first release that sealed).
    #[test]
    fn sealing_is_stable_across_releases() {
        let ek = event_key(&SubjectKey::from_bytes([1; 32]), Uuid::from_u128(42));
        assert_eq!(
            seal(&ek, KeyId([2; 16]), &["actor", "id"], br#""alice""#),
            "tally:sealed:1.AgICAgICAgICAgICAgICAg.lzrfs_eZ9rdt44P08mqsVQ.\
             _ASuCmy2qd7YVPg0YKJJ7vTpcaGvKOs"
        );
    }

    #[test]
    fn malformed_and_altered_values_are_refused() {
        let vk = event_key(&SubjectKey::random(), Uuid::nil());
        let sealed = seal(&vk, KeyId::random(), &["x"], b"1");
        for bad in [
            "tally:sealed:",
            "tally:sealed:2.a.b.c",
            "tally:sealed:1.AAAA.AAAA.AAAA",
            "tally:pii:abc",
            &sealed[..sealed.len() - 1],
            &format!("{sealed}.x"),
        ] {
            assert!(
                Sealed::parse(bad).is_err()
                    || Sealed::parse(bad).unwrap().open(&vk, &["x"]).is_err(),
                "{bad}"
            );
        }
        let mut flipped = Sealed::parse(&sealed).unwrap();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(flipped.open(&vk, &["x"]), Err(OpenError::Damaged));
    }

    #[test]
    fn tokens_are_stable_per_key() {
        let k = TokenKey::from_bytes([7; 32]);
        assert_eq!(k.token_of_str("alice"), k.token(br#""alice""#));
        assert_ne!(k.token_of_str("alice"), k.token_of_str("bob"));
        assert_ne!(
            k.token_of_str("alice"),
            TokenKey::from_bytes([8; 32]).token_of_str("alice")
        );
        assert!(k.token_of_str("alice").starts_with(TOKEN_PREFIX));
    }
}
