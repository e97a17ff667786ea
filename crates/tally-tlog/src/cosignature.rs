//! C2SP tlog-cosignature (<https://c2sp.org/tlog-cosignature>), the Ed25519 `cosignature/v1`
//! type: a witness's timestamped statement that a checkpoint is the largest consistent tree it
//! has seen for that log.
//!
//! A cosignature is a signed-note signature line on the checkpoint note:
//!
//! ```text
//! — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)
//! ```
//!
//! where the key ID is `SHA-256(name || "\n" || 0x04 || public key)[:4]` and the signature is
//! over `"cosignature/v1\ntime <timestamp>\n" || checkpoint text`. Witness public keys are
//! written as vkeys of signature type 0x04 (`name+hex8+base64(0x04 || key)`).
//!
//! ```
//! use tally_tlog::cosignature::{verify_cosignatures, CosignatureSigner};
//! use tally_tlog::NoteSigner;
//!
//! let log = NoteSigner::from_seed("example.com/log", [1; 32]).unwrap();
//! let body = "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
//! let witness = CosignatureSigner::from_seed("witness.example/w1", [2; 32]).unwrap();
//! let line = witness.cosign(body, 1_700_000_000).unwrap();
//! let note = log.sign(body).unwrap() + &line;
//! let checked = verify_cosignatures(&note, &[witness.verifier()]).unwrap();
//! assert_eq!(checked.verified[0].timestamp, 1_700_000_000);
//! ```

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey, SIGNATURE_LENGTH};
use rand_core::{OsRng, RngCore as _};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::note::{self, NoteError, NoteSigner};

/// Signature type byte of Ed25519 `cosignature/v1` keys (C2SP signed-note's registry).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The first line of every signed message, for domain separation.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";

/// Largest timestamp the spec allows (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Length of the signature blob after the key ID: timestamp and Ed25519 signature.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + SIGNATURE_LENGTH;

/// Why a cosignature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// A key string or note is malformed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A vkey of another signature type was given where a witness key was expected.
    #[error(
        "signature type 0x{0:02x} is not a cosignature/v1 witness key (0x04){hint}",
        hint = if *.0 == 0x01 { ": this looks like a log's signing key" } else { "" }
    )]
    NotAWitnessKey(u8),
    /// The text to cosign is not a checkpoint.
    #[error("only checkpoints can be cosigned: {0}")]
    NotACheckpoint(#[from] CheckpointError),
    /// A timestamp above 2^63 - 1.
    #[error("cosignature timestamp {0} exceeds 2^63 - 1")]
    TimestampTooLarge(u64),
    /// A signature blob of the wrong length for `cosignature/v1`.
    #[error("cosignature by {name} is {len} bytes after the key id, expected 72")]
    WrongLength {
        /// Witness name.
        name: String,
        /// Length found.
        len: usize,
    },
    /// A cosignature from a known witness does not verify.
    #[error("invalid cosignature by {name} ({key_id:08x})")]
    InvalidCosignature {
        /// Witness name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// The operating system random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(String),
}

/// The message a `cosignature/v1` signature covers: header line, timestamp line, then the
/// checkpoint text (with its final newline, without signature lines).
pub fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}time {timestamp}\n{text}")
}

/// Key ID of a `cosignature/v1` key: `SHA-256(name || "\n" || 0x04 || key)[:4]`.
pub fn cosignature_key_id(name: &str, key: &[u8; 32]) -> u32 {
    let mut buf = [0u8; 33];
    buf[0] = ALG_COSIGNATURE_V1;
    buf[1..].copy_from_slice(key);
    note::key_id(name, &buf)
}

/// A witness's Ed25519 key, signing `cosignature/v1` cosignatures.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, CosignatureError> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| CosignatureError::Rng(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// The key whose RFC 8032 private seed is `seed`.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CosignatureError> {
        note::check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: cosignature_key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses a private key in the signed-note format (`PRIVATE+KEY+<name>+<id>+
    /// base64(0x01 || seed)`), the format Go's `sumdb/note` writes and witnesses such as
    /// `transparency-dev/witness` read for their cosigning key.
    pub fn parse_skey(s: &str) -> Result<Self, CosignatureError> {
        let signer = NoteSigner::parse_skey(s)?;
        Self::from_seed(signer.name(), signer.seed())
    }

    /// The private key string accepted by [`CosignatureSigner::parse_skey`]. Keep it secret.
    pub fn to_skey(&self) -> String {
        NoteSigner::from_seed(&self.name, self.key.to_bytes())
            .expect("the name was checked when the key was made")
            .to_skey()
    }

    /// The matching public key.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Witness name (the key name of its signature lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Cosigns the checkpoint `text` at `timestamp` (seconds since the Unix epoch): returns
    /// one signature line with its final newline, ready to append to the checkpoint note.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge(timestamp));
        }
        // The signed message format is defined for checkpoints only.
        Checkpoint::parse(text)?;
        let signature = self.key.sign(cosigned_message(text, timestamp).as_bytes());
        let mut blob = [0u8; TIMESTAMPED_SIGNATURE_LEN];
        blob[..8].copy_from_slice(&timestamp.to_be_bytes());
        blob[8..].copy_from_slice(&signature.to_bytes());
        Ok(note::format_signature_line(&self.name, self.key_id, &blob))
    }
}

/// A witness's public key, checking `cosignature/v1` cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `<name>+<hex8 key id>+<base64(0x04 || public key)>`; the key ID must be the one
    /// derived from the name and key.
    pub fn parse_vkey(s: &str) -> Result<Self, CosignatureError> {
        let (name, got, key) = note::split_vkey(s)?;
        let raw = match note::parse_typed_key(ALG_COSIGNATURE_V1, key) {
            Ok(raw) => raw,
            Err(NoteError::UnsupportedAlgorithm(alg)) => {
                return Err(CosignatureError::NotAWitnessKey(alg))
            }
            Err(e) => return Err(e.into()),
        };
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| NoteError::InvalidPublicKey)?;
        // A small-order key lets anyone forge signatures that verify under it.
        if key.is_weak() {
            return Err(NoteError::InvalidPublicKey.into());
        }
        let expected = cosignature_key_id(name, key.as_bytes());
        if expected != got {
            return Err(NoteError::KeyIdMismatch { expected, got }.into());
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: got,
            key,
        })
    }

    /// The public key string accepted by [`CosignatureVerifier::parse_vkey`].
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            note::encode_typed_key(ALG_COSIGNATURE_V1, self.key.as_bytes())
        )
    }

    /// Witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Whether a signature line (name and key ID) claims to be from this witness.
    pub fn matches(&self, line: &note::SignatureLine<'_>) -> bool {
        line.name == self.name && line.key_id == self.key_id
    }

    /// Checks the signature blob of one of this witness's lines over checkpoint `text`;
    /// returns its timestamp.
    pub fn verify(&self, text: &str, signature: &[u8]) -> Result<u64, CosignatureError> {
        let blob: &[u8; TIMESTAMPED_SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| CosignatureError::WrongLength {
                    name: self.name.clone(),
                    len: signature.len(),
                })?;
        let timestamp = u64::from_be_bytes(blob[..8].try_into().expect("8 bytes"));
        let invalid = || CosignatureError::InvalidCosignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        if timestamp > MAX_TIMESTAMP {
            return Err(invalid());
        }
        let sig = Signature::from_bytes(blob[8..].try_into().expect("64 bytes"));
        self.key
            .verify_strict(cosigned_message(text, timestamp).as_bytes(), &sig)
            .map_err(|_| invalid())?;
        Ok(timestamp)
    }

    /// Checks one signature line (with or without its newline) over checkpoint `text`;
    /// returns its timestamp. A line from another key is an error.
    pub fn verify_line(&self, text: &str, line: &str) -> Result<u64, CosignatureError> {
        let parsed = note::parse_signature_line(line.strip_suffix('\n').unwrap_or(line))?;
        if !self.matches(&parsed) {
            return Err(CosignatureError::InvalidCosignature {
                name: parsed.name.to_owned(),
                key_id: parsed.key_id,
            });
        }
        self.verify(text, &parsed.signature)
    }
}

/// The timestamp inside a `cosignature/v1` signature blob (after the key ID), without
/// checking the signature.
pub fn cosignature_timestamp(signature: &[u8]) -> Option<u64> {
    if signature.len() != TIMESTAMPED_SIGNATURE_LEN {
        return None;
    }
    Some(u64::from_be_bytes(signature[..8].try_into().ok()?)).filter(|t| *t <= MAX_TIMESTAMP)
}

/// One valid cosignature found on a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCosignature {
    /// Witness name.
    pub name: String,
    /// The witness's vkey.
    pub vkey: String,
    /// When the witness cosigned, in seconds since the Unix epoch.
    pub timestamp: u64,
}

/// The cosignatures of a note, checked against a set of trusted witnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCosignatures {
    /// The note text (the checkpoint), including its final newline.
    pub text: String,
    /// Witnesses whose cosignature verified, in the order of `witnesses`, each once.
    pub verified: Vec<VerifiedCosignature>,
    /// Vkeys of trusted witnesses that did not cosign, in the order of `witnesses`.
    pub missing: Vec<String>,
}

/// Checks every cosignature of `note` from the witnesses in `witnesses`. Lines from other keys
/// (the log's own signature among them) are ignored; a line from a trusted witness that does
/// not verify rejects the whole note, as C2SP signed-note recommends. The log's signature is
/// not checked here: open the note with the log's key too.
pub fn verify_cosignatures(
    note: &str,
    witnesses: &[CosignatureVerifier],
) -> Result<CheckedCosignatures, CosignatureError> {
    let (text, lines) = note::split(note)?;
    Checkpoint::parse(text)?;
    let mut stamps: Vec<Option<u64>> = vec![None; witnesses.len()];
    for line in &lines {
        for (i, w) in witnesses.iter().enumerate() {
            if w.matches(line) {
                let t = w.verify(text, &line.signature)?;
                let best = stamps[i].get_or_insert(t);
                *best = (*best).max(t);
            }
        }
    }
    let mut verified = Vec::new();
    let mut missing = Vec::new();
    for (w, stamp) in witnesses.iter().zip(stamps) {
        match stamp {
            Some(timestamp) => verified.push(VerifiedCosignature {
                name: w.name.clone(),
                vkey: w.to_vkey(),
                timestamp,
            }),
            None => missing.push(w.to_vkey()),
        }
    }
    Ok(CheckedCosignatures {
        text: text.to_owned(),
        verified,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> CosignatureSigner {
        CosignatureSigner::from_seed("witness.example/w1", [3; 32]).unwrap()
    }

    #[test]
    fn message_is_header_time_and_text() {
        // The example of the spec's "Ed25519 signed message" section.
        assert_eq!(
            cosigned_message(BODY, 1679315147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn sign_and_verify_roundtrip() {
        let w = witness();
        let line = w.cosign(BODY, 1679315147).unwrap();
        assert!(line.starts_with("— witness.example/w1 "));
        assert!(line.ends_with('\n'));
        let v = w.verifier();
        assert_eq!(v.verify_line(BODY, &line), Ok(1679315147));
        // Another body, another time, another key: refused.
        let other_body = BODY.replace("20852163", "20852164");
        assert!(v.verify_line(&other_body, &line).is_err());
        let parsed = note::parse_signature_line(line.trim_end()).unwrap();
        let mut blob = parsed.signature.clone();
        blob[7] ^= 1;
        assert!(v.verify(BODY, &blob).is_err());
        let other = CosignatureSigner::from_seed("witness.example/w1", [4; 32]).unwrap();
        assert!(other.verifier().verify_line(BODY, &line).is_err());
        // An Ed25519 note signature by the same key over the same text is not a cosignature.
        let plain = NoteSigner::from_seed("witness.example/w1", [3; 32]).unwrap();
        let signed = plain.sign(BODY).unwrap();
        let plain_line = signed.rsplit_once("\n\n").unwrap().1;
        assert!(v.verify_line(BODY, plain_line).is_err());
    }

    #[test]
    fn cosign_refuses_what_is_not_a_checkpoint_or_too_late() {
        let w = witness();
        assert!(matches!(
            w.cosign("hello\n", 1),
            Err(CosignatureError::NotACheckpoint(_))
        ));
        assert_eq!(
            w.cosign(BODY, MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampTooLarge(MAX_TIMESTAMP + 1))
        );
        assert!(w.cosign(BODY, MAX_TIMESTAMP).is_ok());
        // Extension lines are covered by the signature.
        let ext = format!("{BODY}extension\n");
        let line = w.cosign(&ext, 5).unwrap();
        assert!(w.verifier().verify_line(&ext, &line).is_ok());
        assert!(w
            .verifier()
            .verify_line(&ext.replace("extension", "extensioN"), &line)
            .is_err());
    }

    #[test]
    fn key_strings() {
        let w = witness();
        let vkey = w.verifier().to_vkey();
        let raw = STANDARD.decode(vkey.rsplit('+').next().unwrap()).unwrap();
        assert_eq!(raw[0], 0x04);
        assert_eq!(
            CosignatureVerifier::parse_vkey(&vkey).unwrap(),
            w.verifier()
        );
        let back = CosignatureSigner::parse_skey(&w.to_skey()).unwrap();
        assert_eq!(back.verifier(), w.verifier());
        // The key file is an ordinary signed-note key whose ID is of type 0x01.
        let as_note = NoteSigner::parse_skey(&w.to_skey()).unwrap();
        assert_ne!(as_note.key_id(), w.key_id());
        // A log key (type 0x01) is not a witness key, and says so.
        let err = CosignatureVerifier::parse_vkey(&as_note.verifier().to_vkey()).unwrap_err();
        assert_eq!(err, CosignatureError::NotAWitnessKey(1));
        assert!(err.to_string().contains("log's signing key"));
        let (name, rest) = vkey.split_once('+').unwrap();
        let (_, key) = rest.split_once('+').unwrap();
        for bad in [
            format!("{name}+00000000+{key}"),
            format!("other+{}", rest),
            format!("{name}+{}", key),
            format!("{name}+{:08x}+{}", w.key_id(), STANDARD.encode([4u8; 32])),
        ] {
            assert!(
                CosignatureVerifier::parse_vkey(&bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn quorum_check_counts_each_witness_once_and_rejects_bad_lines() {
        let log = NoteSigner::from_seed("example.com/behind-the-sofa", [9; 32]).unwrap();
        let a = witness();
        let b = CosignatureSigner::from_seed("witness.example/w2", [5; 32]).unwrap();
        let c = CosignatureSigner::from_seed("witness.example/w3", [6; 32]).unwrap();
        let note = log.sign(BODY).unwrap()
            + &a.cosign(BODY, 10).unwrap()
            + &a.cosign(BODY, 20).unwrap()
            + &b.cosign(BODY, 15).unwrap();
        let checked =
            verify_cosignatures(&note, &[a.verifier(), b.verifier(), c.verifier()]).unwrap();
        assert_eq!(checked.text, BODY);
        assert_eq!(checked.verified.len(), 2);
        assert_eq!(checked.verified[0].timestamp, 20);
        assert_eq!(checked.verified[1].name, "witness.example/w2");
        assert_eq!(checked.missing, vec![c.verifier().to_vkey()]);
        // A trusted witness's line over another checkpoint rejects the note.
        let other = BODY.replace("20852163", "20852164");
        let forged = log.sign(BODY).unwrap() + &b.cosign(&other, 15).unwrap();
        assert!(matches!(
            verify_cosignatures(&forged, &[b.verifier()]),
            Err(CosignatureError::InvalidCosignature { .. })
        ));
    }

    /// The cosignature line of the tlog-cosignature spec's example checkpoint: its key ID and
    /// timestamp (the spec publishes no witness key to check the signature with).
    #[test]
    fn spec_example_line() {
        let line = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let parsed = note::parse_signature_line(line).unwrap();
        assert_eq!(parsed.name, "witness.example.com/w1");
        assert_eq!(parsed.key_id, 0x8d66cf3f);
        // The same time as the spec's example signed message.
        assert_eq!(cosignature_timestamp(&parsed.signature), Some(1679315147));
    }

    /// A timestamp vector from transparency-dev/formats' cosignature tests.
    #[test]
    fn transparency_dev_timestamp_vector() {
        let blob = STANDARD
            .decode("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==")
            .unwrap();
        assert_eq!(cosignature_timestamp(&blob[4..]), Some(1727964367));
        // An Ed25519 note signature (no timestamp) has the wrong length.
        let plain = STANDARD
            .decode("eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY=")
            .unwrap();
        assert_eq!(cosignature_timestamp(&plain[4..]), None);
    }

    /// A real witness's published cosignature/v1 vkey: the key ID is derived with type 0x04.
    #[test]
    fn published_witness_vkey() {
        let v = CosignatureVerifier::parse_vkey(
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        )
        .unwrap();
        assert_eq!(v.key_id(), 0xda77ade7);
        assert_eq!(
            v.to_vkey(),
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
        );
    }
}
