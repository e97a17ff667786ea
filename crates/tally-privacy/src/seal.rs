//! Sealing one personal value under its subject's key, and the masking token of a value.
//!
//! A sealed value is the JSON string
//! `tally:sealed:1.<key id>.<commitment>.<ciphertext>` (each part unpadded base64url):
//!
//! - *key id*: 16 random bytes naming the subject key ([`KeyId`]); it says nothing about the
//!   subject, so it may stay in the log after the key is destroyed.
//! - The value's own keys come from HKDF-SHA256 (RFC 5869) with the subject key as input key
//!   material, the event id's 16 bytes as salt, and as info `"tally sealed value v1"` followed
//!   by each member name of the value's path as a 4-byte little-endian length and its UTF-8
//!   bytes; the 48 output bytes are a ChaCha20-Poly1305 key (32) and a commitment (16).
//! - *ciphertext*: ChaCha20-Poly1305 (RFC 8439) of the value's canonical JSON text under that
//!   key, with a nonce of 12 zero bytes and no associated data. A key is derived for one value
//!   of one event only, so the nonce never repeats under a key; and sealing is deterministic,
//!   which keeps an idempotent retry byte-identical to the stored record.
//! - *commitment*: binds the ciphertext to one key (ChaCha20-Poly1305 alone is not key
//!   committing), so a disclosed value key ([`value_key`]) can prove what a value was.
//!
//! A masking token is `tally:pii:` and the first 16 bytes of HMAC-SHA256 under the tenant's
//! token key of the value's canonical JSON text, unpadded base64url: equal values give equal
//! tokens within a tenant, and nobody without the key can compute one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

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
const INFO: &[u8] = b"tally sealed value v1";

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

/// A subject's 32-byte key; wiped from memory when dropped.
#[derive(Clone)]
pub struct SubjectKey(Zeroizing<[u8; 32]>);

impl SubjectKey {
    /// A fresh random key.
    pub fn random() -> SubjectKey {
        SubjectKey(Zeroizing::new(random_bytes()))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SubjectKey {
        SubjectKey(Zeroizing::new(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(…)")
    }
}

/// The key of one value of one event, derived from its subject key: disclosing it (in an
/// export) lets a verifier open that value and no other.
#[derive(Clone)]
pub struct ValueKey {
    cipher: Zeroizing<[u8; 32]>,
    commitment: [u8; 16],
}

impl ValueKey {
    /// The 32-byte cipher key.
    pub fn cipher_bytes(&self) -> &[u8; 32] {
        &self.cipher
    }

    /// From a disclosed cipher key, recomputing nothing: the commitment is checked on open.
    pub fn from_cipher_bytes(bytes: [u8; 32]) -> ValueKey {
        ValueKey {
            commitment: commitment_of(&bytes),
            cipher: Zeroizing::new(bytes),
        }
    }
}

fn commitment_of(cipher: &[u8; 32]) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cipher).expect("any key length");
    mac.update(b"tally sealed value commitment v1");
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    out
}

/// Derives the key of the value at `path` in event `event_id`.
pub fn value_key<S: AsRef<str>>(key: &SubjectKey, event_id: Uuid, path: &[S]) -> ValueKey {
    let hk = Hkdf::<Sha256>::new(Some(event_id.as_bytes()), key.as_bytes());
    let mut info = Vec::with_capacity(INFO.len() + 32);
    info.extend_from_slice(INFO);
    for seg in path {
        let seg = seg.as_ref().as_bytes();
        info.extend_from_slice(&(seg.len() as u32).to_le_bytes());
        info.extend_from_slice(seg);
    }
    let mut cipher = Zeroizing::new([0u8; 32]);
    hk.expand(&info, cipher.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    ValueKey {
        commitment: commitment_of(&cipher),
        cipher,
    }
}

/// Seals `plaintext` (a value's canonical JSON text) as the sealed-value string (without JSON
/// quotes: it is made of base64url and `.`, `:` only).
pub fn seal(vk: &ValueKey, kid: KeyId, plaintext: &[u8]) -> String {
    let cipher = ChaCha20Poly1305::new(vk.cipher.as_ref().into());
    let ct = cipher
        .encrypt(&Nonce::default(), plaintext)
        .expect("ChaCha20-Poly1305 encrypts any length a record can hold");
    format!(
        "{SEALED_PREFIX}{VERSION}.{}.{}.{}",
        B64.encode(kid.0),
        B64.encode(vk.commitment),
        B64.encode(ct)
    )
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

    /// The plaintext, if `vk` is the key it was sealed under.
    pub fn open(&self, vk: &ValueKey) -> Result<Vec<u8>, OpenError> {
        if vk.commitment != self.commitment {
            return Err(OpenError::Damaged);
        }
        ChaCha20Poly1305::new(vk.cipher.as_ref().into())
            .decrypt(&Nonce::default(), self.ciphertext.as_slice())
            .map_err(|_| OpenError::Damaged)
    }
}

/// A tenant's key for masking tokens.
#[derive(Clone)]
pub struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenKey {
        TokenKey(Zeroizing::new(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The token of a value's canonical JSON text (`"alice"`, with its quotes).
    pub fn token(&self, plaintext: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("any key length");
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
        let vk = value_key(&key, id, &["actor", "id"]);
        let sealed = seal(&vk, kid, br#""alice""#);
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("alice"));
        let parsed = Sealed::parse(&sealed).unwrap();
        assert_eq!(parsed.kid, kid);
        assert_eq!(parsed.open(&vk).unwrap(), br#""alice""#);
        // Deterministic: a retry seals to the same bytes.
        assert_eq!(seal(&vk, kid, br#""alice""#), sealed);
        // Another path, event or key opens nothing.
        for other in [
            value_key(&key, id, &["actor", "ip"]),
            value_key(&key, Uuid::now_v7(), &["actor", "id"]),
            value_key(&SubjectKey::random(), id, &["actor", "id"]),
        ] {
            assert_eq!(parsed.open(&other), Err(OpenError::Damaged));
        }
        // A disclosed value key opens it alone.
        let disclosed = ValueKey::from_cipher_bytes(*vk.cipher_bytes());
        assert_eq!(parsed.open(&disclosed).unwrap(), br#""alice""#);
        // Path segments are length-prefixed: "a.b" + "c" is not "a" + "b.c".
        assert_ne!(
            value_key(&key, id, &["a.b", "c"]).cipher_bytes(),
            value_key(&key, id, &["a", "b.c"]).cipher_bytes()
        );
    }

    #[test]
    fn malformed_and_altered_values_are_refused() {
        let vk = value_key(&SubjectKey::random(), Uuid::nil(), &["x"]);
        let sealed = seal(&vk, KeyId::random(), b"1");
        for bad in [
            "tally:sealed:",
            "tally:sealed:2.a.b.c",
            "tally:sealed:1.AAAA.AAAA.AAAA",
            "tally:pii:abc",
            &sealed[..sealed.len() - 1],
            &format!("{sealed}.x"),
        ] {
            assert!(
                Sealed::parse(bad).is_err() || Sealed::parse(bad).unwrap().open(&vk).is_err(),
                "{bad}"
            );
        }
        let mut flipped = Sealed::parse(&sealed).unwrap();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(flipped.open(&vk), Err(OpenError::Damaged));
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
