//! Personal data in Tally's records: which values are personal ([`policy`]), sealing each one
//! under its subject's key so that the log hashes ciphertext ([`seal`], [`record`]), the keys
//! themselves and their erasure ([`keystore`]), and the masking tokens readers without the
//! `read:pii` scope see.
//!
//! The idea (crypto-shredding): every personal value of a record is encrypted under a key of
//! the person it is about, and the log stores and hashes the encrypted form. A reader with the
//! right scope sees the value opened; a masked reader sees a keyed token; destroying a
//! subject's key makes every value sealed under it unreadable while every hashed byte, and so
//! every proof and checkpoint, stays as it was.
//!
//! ```
//! use tally_privacy::{keystore::SubjectKeys, policy::Policy, record};
//!
//! let dir = tempfile::tempdir()?;
//! let keys = SubjectKeys::open(&dir.path().join("subject-keys"))?;
//! let policy = Policy::default();
//! let v1 = br#"{"schema_version":1,"id":"0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f","tenant":"acme","time":"2024-05-01T10:00:00.123Z","received_at":"2024-05-01T10:00:01.000Z","key_id":"k1","actor":{"id":"alice","ip":"203.0.113.5"},"action":"user.login","outcome":"SUCCESS"}"#;
//!
//! keys.ensure(&record::subjects(v1, &policy)?)?;
//! let sealed = record::seal_record(v1, &policy, &keys)?;
//! assert!(!String::from_utf8_lossy(&sealed).contains("alice"));
//!
//! let clear = record::open_record(&sealed, record::View::Clear, &policy, &keys)?;
//! assert_eq!(record::as_schema_1(&clear.bytes).unwrap(), v1);
//!
//! keys.erase("alice")?;
//! let erased = record::open_record(&sealed, record::View::Clear, &policy, &keys)?;
//! assert_eq!(erased.erased, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod json;
pub mod keystore;
pub mod policy;
pub mod record;
pub mod seal;
pub mod secrets;
