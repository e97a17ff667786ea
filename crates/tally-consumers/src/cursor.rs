//! Durable cursors: where each consumer stands in each tenant's log.
//!
//! Format of `DATA_DIR/consumers/<name>.json` (the path is [`DataDir::consumer_cursor_path`]'s),
//! replaced atomically (temporary file, fsync, rename, fsync of the directory):
//!
//! ```json
//! {"format": "tally-consumer-cursor/v1", "consumer": "search-index",
//!  "updated": "2026-11-30T15:00:00Z", "tenants": {"acme": 1234}}
//! ```
//!
//! `tenants` maps a tenant to the leaf index its next record has: every record before it was
//! delivered and flushed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tally_store::DataDir;

/// The `format` value of a cursor file.
pub const FORMAT: &str = "tally-consumer-cursor/v1";

/// Why a cursor file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Writing failed in the store's durable write.
    #[error(transparent)]
    Store(#[from] tally_store::StoreError),
    /// The file is not a cursor file of this format.
    #[error("{path} is not a consumer cursor file ({detail}); move it away and the consumer starts again from the beginning of every log")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The consumer name cannot name a file.
    #[error("invalid consumer name {0:?}: use 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or digit")]
    Name(String),
}

/// One consumer's durable positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The consumer's name.
    pub consumer: String,
    /// When it was last written (RFC 3339, UTC).
    pub updated: String,
    /// Tenant → leaf index of the next record to deliver.
    pub tenants: BTreeMap<String, u64>,
}

impl CursorFile {
    /// An empty cursor: nothing delivered yet.
    pub fn new(consumer: &str) -> Result<Self, CursorError> {
        if !crate::is_valid_consumer_name(consumer) {
            return Err(CursorError::Name(consumer.to_string()));
        }
        Ok(CursorFile {
            format: FORMAT.to_string(),
            consumer: consumer.to_string(),
            updated: now(),
            tenants: BTreeMap::new(),
        })
    }

    /// Reads the consumer's cursor; `None` if it has none yet.
    pub fn load(dir: &DataDir, consumer: &str) -> Result<Option<Self>, CursorError> {
        if !crate::is_valid_consumer_name(consumer) {
            return Err(CursorError::Name(consumer.to_string()));
        }
        let path = dir.consumer_cursor_path(consumer);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CursorError::Io { path, source }),
        };
        let file: CursorFile = serde_json::from_slice(&bytes).map_err(|e| CursorError::Format {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if file.format != FORMAT {
            return Err(CursorError::Format {
                path,
                detail: format!("format {:?}, expected {FORMAT:?}", file.format),
            });
        }
        if file.consumer != consumer {
            return Err(CursorError::Format {
                path,
                detail: format!("it belongs to consumer {:?}", file.consumer),
            });
        }
        Ok(Some(file))
    }

    /// Writes the cursor durably (complete and on disk when this returns).
    pub fn store(&mut self, dir: &DataDir) -> Result<(), CursorError> {
        let path = dir.consumer_cursor_path(&self.consumer);
        let parent = dir.consumers_path();
        tally_store::layout::create_private_dir_all(&parent).map_err(|source| CursorError::Io {
            path: parent,
            source,
        })?;
        self.updated = now();
        let mut bytes = serde_json::to_vec_pretty(self).expect("a cursor serializes");
        bytes.push(b'\n');
        tally_store::layout::write_file_durably(&path, &bytes)?;
        Ok(())
    }

    /// Every consumer that has a cursor in `dir`, by name.
    pub fn list(dir: &DataDir) -> Result<Vec<CursorFile>, CursorError> {
        let path = dir.consumers_path();
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CursorError::Io { path, source }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CursorError::Io {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(consumer) = name.strip_suffix(".json") else {
                continue;
            };
            if !crate::is_valid_consumer_name(consumer) {
                continue;
            }
            if let Some(file) = CursorFile::load(dir, consumer)? {
                out.push(file);
            }
        }
        out.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        Ok(out)
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_round_trip_and_a_missing_one_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create_or_open(tmp.path()).unwrap();
        assert_eq!(CursorFile::load(&dir, "siem").unwrap(), None);
        let mut c = CursorFile::new("siem").unwrap();
        c.tenants.insert("acme".into(), 42);
        c.store(&dir).unwrap();
        assert_eq!(CursorFile::load(&dir, "siem").unwrap(), Some(c.clone()));
        assert_eq!(CursorFile::list(&dir).unwrap(), vec![c]);
    }

    #[test]
    fn a_damaged_or_foreign_cursor_is_refused_with_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create_or_open(tmp.path()).unwrap();
        std::fs::create_dir_all(dir.consumers_path()).unwrap();
        std::fs::write(dir.consumer_cursor_path("siem"), b"{not json").unwrap();
        let e = CursorFile::load(&dir, "siem").unwrap_err().to_string();
        assert!(e.contains("move it away"), "{e}");
        let mut other = CursorFile::new("other").unwrap();
        other.store(&dir).unwrap();
        std::fs::copy(
            dir.consumer_cursor_path("other"),
            dir.consumer_cursor_path("siem"),
        )
        .unwrap();
        let e = CursorFile::load(&dir, "siem").unwrap_err().to_string();
        assert!(e.contains("belongs to consumer \"other\""), "{e}");
        assert!(matches!(CursorFile::new("../x"), Err(CursorError::Name(_))));
    }
}
