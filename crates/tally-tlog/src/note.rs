//! C2SP signed-note (<https://c2sp.org/signed-note>) with Ed25519 keys, using the key string
//! formats of Go's `golang.org/x/mod/sumdb/note` so keys interoperate with that ecosystem.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey, SIGNATURE_LENGTH};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest, Sha256};

/// Signature type identifier byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Every signature line starts with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Upper bound on signature lines, so a hostile note cannot make us parse forever. The spec
/// requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// Errors from key handling, signing and opening notes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains a Unicode space or `+`.
    #[error("invalid key name {0:?}")]
    InvalidName(String),
    /// A key string does not have the expected shape.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The key uses a signature type other than Ed25519 (0x01).
    #[error("unsupported signature type 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// The key ID in a key string is not the one derived from its name and key.
    #[error("key id {got:08x} does not match the computed id {expected:08x}")]
    KeyIdMismatch {
        /// ID derived from the name and public key.
        expected: u32,
        /// ID written in the key string.
        got: u32,
    },
    /// The public key is not a usable Ed25519 point (invalid encoding or small order).
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// Text to sign is not acceptable note text.
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    /// The note is not structured as text, blank line and signature lines.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// The note carries more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature from a known key does not verify: the note is forged or corrupted.
    #[error("invalid signature by {name} ({key_id:08x})")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature from any known key: the text must not be trusted.
    #[error("note has no signature from a known key")]
    NoVerifiedSignature,
    /// The operating system random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(String),
}

/// Key ID as C2SP signed-note recommends: the first four bytes, big-endian, of
/// `SHA-256(name || "\n" || alg_and_key)`, where `alg_and_key` is the signature type byte
/// followed by the public key.
pub fn key_id(name: &str, alg_and_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(alg_and_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn ed25519_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut buf = [0u8; 33];
    buf[0] = ALG_ED25519;
    buf[1..].copy_from_slice(key.as_bytes());
    key_id(name, &buf)
}

/// Key names are non-empty and free of Unicode spaces and `+`, which would break the
/// signature line and key string syntax.
pub(crate) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Only newline may appear among the C0 controls (C2SP signed-note "Format").
pub(crate) fn has_forbidden_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 && b != b'\n')
}

fn parse_key_id(hex8: &str) -> Result<u32, NoteError> {
    // Exactly eight hex digits, as Go writes them; from_str_radix alone would accept a sign.
    if hex8.len() != 8 || !hex8.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key id must be 8 hex digits"));
    }
    u32::from_str_radix(hex8, 16)
        .map_err(|_| NoteError::MalformedKey("key id must be 8 hex digits"))
}

/// Decodes `base64(0x01 || 32 bytes)`.
fn parse_alg_key(b64: &str) -> Result<[u8; 32], NoteError> {
    parse_typed_key(ALG_ED25519, b64)
}

/// Decodes `base64(alg || 32 bytes)` where `alg` is the one signature type expected.
pub(crate) fn parse_typed_key(expected: u8, b64: &str) -> Result<[u8; 32], NoteError> {
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::MalformedKey("key is not valid base64"))?;
    let (&alg, key) = raw
        .split_first()
        .ok_or(NoteError::MalformedKey("key is empty"))?;
    if alg != expected {
        return Err(NoteError::UnsupportedAlgorithm(alg));
    }
    key.try_into()
        .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))
}

/// Splits a `name+hex8+base64` key string into its three parts and checks the name and the
/// key ID's spelling.
pub(crate) fn split_vkey(s: &str) -> Result<(&str, u32, &str), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey("expected <name>+<id>+<key>"));
    };
    check_name(name)?;
    Ok((name, parse_key_id(id)?, key))
}

fn encode_alg_key(key: &[u8; 32]) -> String {
    encode_typed_key(ALG_ED25519, key)
}

/// `base64(alg || key)`, the key material of a key string.
pub(crate) fn encode_typed_key(alg: u8, key: &[u8; 32]) -> String {
    let mut buf = [0u8; 33];
    buf[0] = alg;
    buf[1..].copy_from_slice(key);
    STANDARD.encode(buf)
}

/// An Ed25519 signing key with its name and key ID.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| NoteError::Rng(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// The key whose RFC 8032 private seed is `seed`.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &key.verifying_key()),
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || seed)>`.
    pub fn parse_skey(s: &str) -> Result<Self, NoteError> {
        // The base64 alphabet contains '+', so only the first four are separators.
        let mut parts = s.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id), Some(key)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NoteError::MalformedKey(
                "expected PRIVATE+KEY+<name>+<id>+<key>",
            ));
        };
        check_name(name)?;
        let got = parse_key_id(id)?;
        let signer = Self::from_seed(name, parse_alg_key(key)?)?;
        if signer.key_id != got {
            return Err(NoteError::KeyIdMismatch {
                expected: signer.key_id,
                got,
            });
        }
        Ok(signer)
    }

    /// The private key string accepted by [`NoteSigner::parse_skey`]. Keep it secret.
    pub fn to_skey(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_alg_key(self.key.as_bytes())
        )
    }

    /// The matching public key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The RFC 8032 private seed, for a cosigner that reuses this key file format.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs `text` and returns the whole note: the text, a blank line and one signature
    /// line.
    ///
    /// `text` must be non-empty, end in a newline and contain no control characters other
    /// than newline.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        Ok(assemble(text, &self.name, self.key_id, &sig.to_bytes()))
    }
}

/// Note text must end in a newline and hold no control character but newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("text must end with a newline"));
    }
    if has_forbidden_control(text) {
        return Err(NoteError::InvalidText(
            "text contains a control character other than newline",
        ));
    }
    Ok(())
}

/// The note: text, blank line, one signature line.
fn assemble(text: &str, name: &str, key_id: u32, sig: &[u8; SIGNATURE_LENGTH]) -> String {
    let mut blob = [0u8; 4 + SIGNATURE_LENGTH];
    blob[..4].copy_from_slice(&key_id.to_be_bytes());
    blob[4..].copy_from_slice(sig);
    let encoded = STANDARD.encode(blob);
    let mut note =
        String::with_capacity(text.len() + 1 + SIG_PREFIX.len() + name.len() + 2 + encoded.len());
    note.push_str(text);
    note.push('\n');
    note.push_str(SIG_PREFIX);
    note.push_str(name);
    note.push(' ');
    note.push_str(&encoded);
    note.push('\n');
    note
}

/// An Ed25519 public key with its name and key ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `<name>+<hex8 key id>+<base64(0x01 || public key)>`; the key ID must be the one
    /// derived from the name and key.
    pub fn parse_vkey(s: &str) -> Result<Self, NoteError> {
        let (name, got, key) = split_vkey(s)?;
        let key = VerifyingKey::from_bytes(&parse_alg_key(key)?)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        // A small-order key lets anyone forge signatures that verify under it.
        if key.is_weak() {
            return Err(NoteError::InvalidPublicKey);
        }
        let expected = ed25519_key_id(name, &key);
        if expected != got {
            return Err(NoteError::KeyIdMismatch { expected, got });
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: got,
            key,
        })
    }

    /// The public key string accepted by [`NoteVerifier::parse_vkey`].
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_alg_key(self.key.as_bytes())
        )
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signed note of `text` from a raw Ed25519 signature made elsewhere (an HSM, a KMS, a
    /// signing command), after checking that `signature` is this key's valid signature of
    /// `text`: whatever the signer returns, the result is a note that verifies, or an error.
    pub fn note_from_signature(&self, text: &str, signature: &[u8]) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = <[u8; SIGNATURE_LENGTH]>::try_from(signature)
            .ok()
            .filter(|sig| self.verify(text, sig))
            .ok_or_else(|| NoteError::InvalidSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            })?;
        Ok(assemble(text, &self.name, self.key_id, &sig))
    }

    fn verify(&self, text: &str, sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; SIGNATURE_LENGTH]>::try_from(sig) else {
            return false;
        };
        self.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .is_ok()
    }
}

/// The text of a note whose signatures checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Names of the known keys whose signatures verified, in note order, each (name, key ID)
    /// once.
    pub verified_by: Vec<String>,
}

/// One signature line of a note, decoded but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine<'a> {
    /// Key name.
    pub name: &'a str,
    /// Key ID (the first four bytes of the signature blob).
    pub key_id: u32,
    /// The signature proper (the blob after the key ID).
    pub signature: Vec<u8>,
}

/// Splits a signed note into its text (including the final newline) and its signature lines,
/// checking the syntax only: no signature is verified.
pub fn split(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    if has_forbidden_control(note) {
        return Err(NoteError::MalformedNote(
            "control character other than newline",
        ));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    let sigs = sigs.strip_suffix('\n').ok_or(NoteError::MalformedNote(
        "signatures must end with a newline",
    ))?;
    let mut lines = Vec::new();
    for (count, line) in sigs.split('\n').enumerate() {
        if count == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        lines.push(parse_signature_line(line)?);
    }
    Ok((text, lines))
}

/// Parses one signature line (`— <name> <base64>`, without its newline).
pub fn parse_signature_line(line: &str) -> Result<SignatureLine<'_>, NoteError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(NoteError::MalformedNote(
            "signature line must start with \"— \"",
        ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(NoteError::MalformedNote("signature line has no signature"))?;
    check_name(name).map_err(|_| NoteError::MalformedNote("invalid key name in signature"))?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::MalformedNote("signature is not valid base64"))?;
    if blob.len() < 5 {
        return Err(NoteError::MalformedNote("signature is too short"));
    }
    Ok(SignatureLine {
        name,
        key_id: u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]),
        signature: blob[4..].to_vec(),
    })
}

/// Formats a signature line (with its final newline) from a key name, key ID and signature.
pub fn format_signature_line(name: &str, key_id: u32, signature: &[u8]) -> String {
    let mut blob = Vec::with_capacity(4 + signature.len());
    blob.extend_from_slice(&key_id.to_be_bytes());
    blob.extend_from_slice(signature);
    format!("{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// Parses a signed note and checks its signatures against `verifiers`.
///
/// Signatures from unknown keys (no verifier with both that name and ID) are ignored; every
/// signature from a known key must verify, and at least one must be present. Any syntax
/// error in the note is an error.
pub fn open(note: &str, verifiers: &[NoteVerifier]) -> Result<VerifiedNote, NoteError> {
    let (text, lines) = split(note)?;
    let mut seen: Vec<(&str, u32)> = Vec::new();
    let mut verified_by = Vec::new();
    for line in &lines {
        let (name, id) = (line.name, line.key_id);
        let Some(v) = verifiers.iter().find(|v| v.key_id == id && v.name == name) else {
            continue;
        };
        if !v.verify(text, &line.signature) {
            return Err(NoteError::InvalidSignature {
                name: name.to_owned(),
                key_id: id,
            });
        }
        if !seen.contains(&(name, id)) {
            seen.push((name, id));
            verified_by.push(name.to_owned());
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok(VerifiedNote {
        text: text.to_owned(),
        verified_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.com/log", [7; 32]).unwrap()
    }

    #[test]
    fn key_strings_roundtrip() {
        let s = signer();
        let back = NoteSigner::parse_skey(&s.to_skey()).unwrap();
        assert_eq!(back.to_skey(), s.to_skey());
        assert_eq!(back.key_id(), s.key_id());
        let v = NoteVerifier::parse_vkey(&s.verifier().to_vkey()).unwrap();
        assert_eq!(v, s.verifier());
        assert!(!format!("{s:?}").contains(&s.to_skey()[30..]));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let v = signer().verifier().to_vkey();
        let (name, rest) = v.split_once('+').unwrap();
        let (id, key) = rest.split_once('+').unwrap();
        for bad in [
            String::new(),
            format!("{name}+{id}"),
            format!("{name}+{}+{key}", &id[1..]),
            format!("{name}+0{id}+{key}"),
            format!("{name}+{id}+"),
            format!("{name}+{id}+{key}="),
            format!("other+{id}+{key}"),
            format!("+{id}+{key}"),
            format!("a b+{id}+{key}"),
            format!("{name}+00000000+{key}"),
            format!("{name}+{id}+{}", STANDARD.encode([2u8; 33])),
            format!("{name}+{id}+{}", STANDARD.encode([1u8; 32])),
        ] {
            assert!(NoteVerifier::parse_vkey(&bad).is_err(), "{bad:?} accepted");
        }
        let sk = signer().to_skey();
        assert!(NoteSigner::parse_skey(&sk.replacen("PRIVATE", "PUBLIC", 1)).is_err());
        assert!(NoteSigner::parse_skey(&sk[..sk.len() - 4]).is_err());
        assert!(NoteSigner::parse_skey(&v).is_err());
        assert!(NoteSigner::from_seed("", [0; 32]).is_err());
        assert!(NoteSigner::from_seed("a+b", [0; 32]).is_err());
        assert!(NoteSigner::from_seed("a\u{a0}b", [0; 32]).is_err());
    }

    #[test]
    fn open_rules() {
        let s = signer();
        let other = NoteSigner::from_seed("example.com/other", [9; 32]).unwrap();
        let note = s.sign("hello\n\nworld\n").unwrap();
        let ok = open(&note, &[s.verifier()]).unwrap();
        assert_eq!(ok.text, "hello\n\nworld\n");
        assert_eq!(ok.verified_by, vec!["example.com/log".to_owned()]);

        // Unknown keys only: rejected; unknown extra signature: ignored.
        assert_eq!(
            open(&note, &[other.verifier()]),
            Err(NoteError::NoVerifiedSignature)
        );
        let extra = other.sign("hello\n\nworld\n").unwrap();
        let both = format!("{note}{}", &extra[extra.rfind("\n\n").unwrap() + 2..]);
        assert_eq!(
            open(&both, &[s.verifier()]).unwrap().verified_by,
            vec!["example.com/log"]
        );
        assert_eq!(
            open(&both, &[s.verifier(), other.verifier()])
                .unwrap()
                .verified_by,
            vec!["example.com/log", "example.com/other"]
        );

        // A known key's signature over other text is an error even next to a good one.
        let forged = format!("{note}{}", &s.sign("other\n").unwrap()["other\n\n".len()..]);
        assert!(matches!(
            open(&forged, &[s.verifier()]),
            Err(NoteError::InvalidSignature { .. })
        ));

        for bad in [
            "hello\n".to_owned(),
            note.trim_end_matches('\n').to_owned(),
            format!("{note}\n"),
            note.replace('\u{2014}', "-"),
            note.replace("— example.com/log ", "— example.com/log  "),
            note.replace("— example.com/log ", "—  example.com/log "),
            note.replace("— example.com/log ", "— example.com/log"),
            note.replace("hello", "he\tllo"),
            note.replace("hello", "he\rllo"),
            format!("{note}— x AAAA\n"),
            format!("{note}— x !!!!!!!!\n"),
        ] {
            assert!(open(&bad, &[s.verifier()]).is_err(), "{bad:?} accepted");
        }

        let mut many = note.clone();
        let line = &extra[extra.rfind("\n\n").unwrap() + 2..];
        for _ in 0..MAX_SIGNATURES {
            many.push_str(line);
        }
        assert_eq!(
            open(&many, &[s.verifier()]),
            Err(NoteError::TooManySignatures)
        );
    }

    #[test]
    fn notes_from_external_signatures_are_checked() {
        let s = signer();
        let v = s.verifier();
        let text = "example.com/log\n1\nAAAA\n";
        let note = s.sign(text).unwrap();
        let blob = STANDARD
            .decode(note.rsplit(' ').next().unwrap().trim_end())
            .unwrap();
        assert_eq!(v.note_from_signature(text, &blob[4..]).unwrap(), note);
        let mut bad = blob[4..].to_vec();
        bad[0] ^= 1;
        for sig in [&bad[..], &blob[4..36], &[][..], &blob[..]] {
            assert!(matches!(
                v.note_from_signature(text, sig),
                Err(NoteError::InvalidSignature { .. })
            ));
        }
        assert!(v.note_from_signature("other\n", &blob[4..]).is_err());
        assert!(v.note_from_signature("no newline", &blob[4..]).is_err());
    }

    #[test]
    fn sign_rejects_bad_text() {
        let s = signer();
        assert!(s.sign("").is_err());
        assert!(s.sign("no newline").is_err());
        assert!(s.sign("tab\there\n").is_err());
        assert!(s.sign("\n").is_ok());
    }
}
