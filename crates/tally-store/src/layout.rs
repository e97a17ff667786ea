//! The one place that knows where things live inside a data directory.
//!
//! Architecture Invariant: no other module builds a path into the data directory; they ask
//! [`DataDir`] (or [`TenantDir`]) for it. This keeps the on-disk format in one reviewable spot
//! and lets the format version file guard every change to it.
//!
//! ```text
//! DATA_DIR/
//!   FORMAT                      "tally-data 1\n" — refuses to open any other version
//!   LOCK                        held (flock) by the one process writing the directory
//!   log.key                     Ed25519 signing key, C2SP/Go note "PRIVATE+KEY+…" (0600);
//!                               absent when the key lives outside (see `signer::KeySource`)
//!   log.pub                     the log's verifier key ("name+id+base64"), public
//!   api-keys.json               hashed API keys (0600)
//!   index/                      the search index (derived; deleted and rebuilt at will)
//!   privacy/<tenant>/subject-keys  per-subject keys of sealed personal values (tally-privacy)
//!   privacy/<tenant>/data-keys  data keys for encryption at rest, wrapped by the KEK
//!   ids/                        the event-id index, a fjall database with one keyspace per
//!                               tenant (derived from `leaves`; rebuilt when missing or damaged)
//!   tenants/<tenant>/
//!     segments/<offset>.seg     record frames; <offset> is the 20-digit logical start offset
//!     leaves                    56-byte leaf entries, one per leaf index
//!     checkpoints               every signed checkpoint ever issued, framed
//!     cosigned-checkpoint       the latest checkpoint note with witnesses' cosignatures
//!     tree-state                the tree's tile-boundary levels at a signed size (derived)
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use crate::error::StoreError;

/// The text of the `FORMAT` file for the version of the layout this build writes.
pub const FORMAT_LINE: &str = "tally-data 1\n";

/// A data directory: the root of everything one `tally serve` owns.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens an existing data directory, checking its format version (read-only callers).
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let format = root.join("FORMAT");
        match fs::read_to_string(&format) {
            Ok(text) if text == FORMAT_LINE => Ok(Self { root }),
            Ok(text) => Err(StoreError::Format(format!(
                "{} holds {:?}; this build reads {:?} only",
                format.display(),
                text.trim_end(),
                FORMAT_LINE.trim_end()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Format(format!(
                "{} is not a Tally data directory (no FORMAT file)",
                root.display()
            ))),
            Err(e) => Err(StoreError::io(&format, e)),
        }
    }

    /// Opens a data directory for writing, creating it (and its `FORMAT` file) when it is new
    /// or empty.
    pub fn create_or_open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        create_private_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        warn_if_shared(&root);
        let format = root.join("FORMAT");
        if !format.exists() {
            let nonempty = fs::read_dir(&root)
                .map_err(|e| StoreError::io(&root, e))?
                .next()
                .is_some();
            if nonempty {
                return Err(StoreError::Format(format!(
                    "{} is not empty and has no FORMAT file: refusing to write into it; \
                     choose an empty or new directory",
                    root.display()
                )));
            }
            write_file_durably(&format, FORMAT_LINE.as_bytes())?;
        }
        create_private_dir_all(&root.join("tenants")).map_err(|e| StoreError::io(&root, e))?;
        Self::open_existing(root)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file held by the writing process.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// The log's private signing key.
    pub fn signing_key_path(&self) -> PathBuf {
        self.root.join("log.key")
    }

    /// The log's public verifier key.
    pub fn verifier_key_path(&self) -> PathBuf {
        self.root.join("log.pub")
    }

    /// The hashed API keys.
    pub fn api_keys_path(&self) -> PathBuf {
        self.root.join("api-keys.json")
    }

    /// The tenant registry: each tenant's state (enabled or disabled) and quotas.
    pub fn tenant_registry_path(&self) -> PathBuf {
        self.root.join("tenants.json")
    }

    /// The alert rules in force when they are managed through the API (`PUT /v1/rules`);
    /// absent: the default rule pack.
    pub fn alert_rules_path(&self) -> PathBuf {
        self.root.join("alert-rules.json")
    }

    /// The directory of the search index, a projection of the log that can be deleted and
    /// rebuilt at any time.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index")
    }

    /// The directory of the consumers' cursors (see `tally_consumers::cursor`).
    pub fn consumers_path(&self) -> PathBuf {
        self.root.join("consumers")
    }

    /// The durable cursor of one consumer. `name` must be a valid consumer name (a-z, 0-9,
    /// `-`, `_`), which keeps it inside [`DataDir::consumers_path`].
    pub fn consumer_cursor_path(&self, name: &str) -> PathBuf {
        self.consumers_path().join(format!("{name}.json"))
    }

    /// What a consumer keeps beside its cursor to resume from (the alert rules' windows).
    /// `name` must be a valid consumer name, as for [`DataDir::consumer_cursor_path`].
    pub fn consumer_state_path(&self, name: &str) -> PathBuf {
        self.consumers_path().join(format!("{name}.state.json"))
    }

    /// Where a consumer writes what it gave up on (a sink's batches after its last
    /// attempt), as JSON Lines. `name` must be a valid consumer name.
    pub fn consumer_dead_letter_path(&self, name: &str) -> PathBuf {
        self.consumers_path()
            .join(format!("{name}.dead-letter.jsonl"))
    }

    /// The event-id index (id → leaf index of every tenant), a projection of the `leaves`
    /// files that can be deleted at any time: start-up rebuilds it.
    pub fn id_index_path(&self) -> PathBuf {
        self.root.join("ids")
    }

    /// The directory of the personal-data keys: one subdirectory per tenant holding its
    /// `subject-keys` (see `tally-privacy`). Not derived data: without it the personal values
    /// of sealed records cannot be read (back it up with the logs), and erasure deletes from it.
    pub fn privacy_path(&self) -> PathBuf {
        self.root.join("privacy")
    }

    /// One tenant's subject-key file.
    pub fn subject_keys_path(&self, tenant: &str) -> PathBuf {
        debug_assert!(tally_event::is_valid_tenant(tenant));
        self.privacy_path().join(tenant).join("subject-keys")
    }

    /// The subject keys of `tenant` whose erasure the search index has not carried out yet
    /// (one base64url key id per line): written before a key is destroyed, emptied once the
    /// index has forgotten its values, retried at start and periodically until then.
    pub fn index_erasures_path(&self, tenant: &str) -> PathBuf {
        debug_assert!(tally_event::is_valid_tenant(tenant));
        self.privacy_path().join(tenant).join("index-erasures")
    }

    /// One tenant's data keys for encryption at rest, wrapped by the key-encryption key (see
    /// [`crate::at_rest`]). Not derived data: without it the tenant's encrypted records cannot
    /// be read.
    pub fn data_keys_path(&self, tenant: &str) -> PathBuf {
        debug_assert!(tally_event::is_valid_tenant(tenant));
        self.privacy_path().join(tenant).join("data-keys")
    }

    /// The directory holding one directory per tenant.
    pub fn tenants_path(&self) -> PathBuf {
        self.root.join("tenants")
    }

    /// The files of one tenant's log.
    pub fn tenant(&self, tenant: &str) -> TenantDir {
        debug_assert!(tally_event::is_valid_tenant(tenant));
        TenantDir {
            root: self.tenants_path().join(tenant),
        }
    }

    /// Names of the tenants that have a directory, sorted.
    pub fn list_tenants(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.tenants_path();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if tally_event::is_valid_tenant(&name) && entry.path().is_dir() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The files of one tenant's log.
#[derive(Debug, Clone)]
pub struct TenantDir {
    root: PathBuf,
}

impl TenantDir {
    /// The tenant's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of record segments.
    pub fn segments_path(&self) -> PathBuf {
        self.root.join("segments")
    }

    /// The segment starting at logical record offset `start`.
    pub fn segment_path(&self, start: u64) -> PathBuf {
        self.segments_path().join(format!("{start:020}.seg"))
    }

    /// The fixed-size leaf entry file.
    pub fn leaves_path(&self) -> PathBuf {
        self.root.join("leaves")
    }

    /// Entries in the leaves file: the log's size as a reader without the writer's lock sees
    /// it (it may include a group being written that is not yet acknowledged). 0 when there
    /// is no leaves file yet.
    pub fn leaf_count(&self) -> Result<u64, StoreError> {
        let path = self.leaves_path();
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len() / crate::frame::LEAF_ENTRY as u64),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// The append-only file of signed checkpoints.
    pub fn checkpoints_path(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The latest checkpoint note carrying witnesses' cosignature lines (C2SP
    /// cosignature/v1), kept so that a restart serves it again. Written by the server's
    /// witness client, never by the sequencer; deleting it loses only cosignatures.
    pub fn cosigned_checkpoint_path(&self) -> PathBuf {
        self.root.join("cosigned-checkpoint")
    }

    /// The persisted tree state: the tile-boundary levels at the size of a signed checkpoint
    /// (`crate::treestate`), so that start-up need not replay the whole `leaves` file.
    /// Derived; deleting it costs one full replay.
    pub fn tree_state_path(&self) -> PathBuf {
        self.root.join("tree-state")
    }

    /// Start offsets of the existing segments, ascending (local files).
    pub fn list_segments(&self) -> Result<Vec<u64>, StoreError> {
        self.list_segments_in(&crate::storage::PosixStorage)
    }

    /// Start offsets of the segments `storage` holds, ascending.
    pub fn list_segments_in(
        &self,
        storage: &dyn crate::storage::Storage,
    ) -> Result<Vec<u64>, StoreError> {
        let dir = self.segments_path();
        let mut out = Vec::new();
        for name in storage.list(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let Some(stem) = name.strip_suffix(".seg") else {
                continue;
            };
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                out.push(stem.parse().map_err(|_| {
                    StoreError::Format(format!("segment name {name} is out of range"))
                })?);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Writes a small file so that it is complete and durable when this returns: temp file,
/// fsync, rename, fsync of the directory. The file is readable by its owner only (0600),
/// whatever the process umask: data directories hold personal data and keys.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    // A bare file name (`--admin-token-file tok`) has the empty path as its parent, which
    // cannot be opened to be synced: it means the working directory.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, e))?;
    // An existing temp file keeps its old mode through `open`: set it.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    sync_dir(dir)
}

/// The mode of every file Tally creates in a data directory: the owner's only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of every directory Tally creates in a data directory: the owner's only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// `mkdir -p` with [`PRIVATE_DIR_MODE`] for every directory it creates, whatever the umask.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    // The umask may have narrowed the mode further (never widened it): harmless. A directory
    // that existed keeps its mode; see `DataDir::create_or_open` for the root.
    Ok(())
}

/// Warns when others may enter or read a data directory (made by an earlier release, or by
/// hand): its files hold personal data. Not changed here: the operator may share it on
/// purpose (a backup group), and says so by leaving it.
fn warn_if_shared(root: &Path) {
    if let Ok(meta) = fs::metadata(root) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data directory {} has mode {mode:o}: other users may read its records; run chmod 700 {}",
                root.display(),
                root.display()
            );
        }
    }
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}
