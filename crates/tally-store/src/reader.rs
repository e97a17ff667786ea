//! Read-only access to a data directory's tenant logs, beside a running server or without
//! one: what `tally reindex` and other offline tools read through.
//!
//! A [`LogReader`] never takes the writer's lock file, never writes, never runs recovery.
//! It trusts only what a signed checkpoint covers: the leaves below the last checkpoint's
//! size were made durable before that checkpoint was signed (the sequencer's rule), so a
//! reader that runs while the server appends, or after a crash left an unrecovered tail,
//! still reads only whole, durable, signed records. The events after the last checkpoint
//! (at most one checkpoint interval's worth) are the writer's until it signs them.
//!
//! Whether the signed checkpoint is genuine is `tally verify`'s question, not the reader's:
//! the reader takes the last checkpoint frame's size as the extent, checks every record it
//! returns against its frame checksum and its leaf hash, and fails on any mismatch. Records
//! encrypted at rest are read only through [`LogReader::with_at_rest`] (the KEK).

use std::path::Path;
use std::sync::Arc;

use tally_tlog::checkpoint::Checkpoint;

use crate::at_rest::{stored_leaf, AtRest};
use crate::error::{ReadError, StoreError};
use crate::frame::{read_checkpoint_frames, LeafEntry, LEAF_ENTRY};
use crate::layout::{DataDir, TenantDir};
use crate::storage::{OpenMode, PosixStorage, Storage, StoredFile};
use crate::tenant::{open_stored, read_frame_at, Segment, TenantLog};

/// One tenant's records in leaf order, as both the running log ([`TenantLog`]) and a
/// read-only [`TenantReader`] serve them: what a projection rebuilt from the log reads.
pub trait TenantRecords {
    /// The tenant's name.
    fn name(&self) -> &str;
    /// Records that can be read: `[0, size)`.
    fn size(&self) -> u64;
    /// Records `[start, start + count)`, each checked against its frame checksum.
    fn records(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError>;
}

impl TenantRecords for TenantLog {
    fn name(&self) -> &str {
        TenantLog::name(self)
    }

    fn size(&self) -> u64 {
        TenantLog::size(self)
    }

    fn records(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        TenantLog::records(self, start, count)
    }
}

/// A read-only view of a data directory (see the module docs).
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: DataDir,
    storage: Arc<dyn Storage>,
    at_rest: Option<Arc<AtRest>>,
}

impl LogReader {
    /// Reads the data directory at `path` (local files). Fails if it is not one.
    pub fn open(path: &Path) -> Result<LogReader, StoreError> {
        Ok(LogReader::with_storage(
            DataDir::open_existing(path)?,
            PosixStorage::shared(),
        ))
    }

    /// Reads `dir` through `storage`.
    pub fn with_storage(dir: DataDir, storage: Arc<dyn Storage>) -> LogReader {
        LogReader {
            dir,
            storage,
            at_rest: None,
        }
    }

    /// Decrypts records encrypted at rest with `at_rest` (without it, reading one fails with
    /// a message asking for the key-encryption key).
    pub fn with_at_rest(mut self, at_rest: Option<Arc<AtRest>>) -> LogReader {
        self.at_rest = at_rest;
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// The tenants that have a log, sorted.
    pub fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.dir.list_tenants()
    }

    /// One tenant's log as of now: its extent is the last signed checkpoint's size.
    /// `Ok(None)` if the tenant has no log.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantReader>, StoreError> {
        if !tally_event::is_valid_tenant(name) {
            return Ok(None);
        }
        let dir = self.dir.tenant(name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| StoreError::io(&path, e)
        };
        if !self.storage.exists(dir.root()).map_err(io(dir.root()))? {
            return Ok(None);
        }
        let checkpoints_path = dir.checkpoints_path();
        let signed = match self.storage.read(&checkpoints_path) {
            Ok(bytes) => last_checkpoint_size(&bytes).map_err(|detail| StoreError::Corrupt {
                tenant: name.to_string(),
                index: 0,
                detail: format!("{}: {detail}", checkpoints_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io(&checkpoints_path, e)),
        };
        let leaves_path = dir.leaves_path();
        let leaves = match self.storage.open(&leaves_path, OpenMode::Read) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&leaves_path, e)),
        };
        let entries = match &leaves {
            Some(f) => f.len().map_err(io(&leaves_path))? / LEAF_ENTRY as u64,
            None => 0,
        };
        if entries < signed {
            return Err(StoreError::Corrupt {
                tenant: name.to_string(),
                index: entries,
                detail: format!(
                    "the last signed checkpoint covers {signed} leaves but {} holds {entries} entries; run `tally verify`",
                    leaves_path.display()
                ),
            });
        }
        let mut segments = Vec::new();
        for start in dir.list_segments_in(&*self.storage)? {
            let path = dir.segment_path(start);
            segments.push(Segment {
                start,
                file: self
                    .storage
                    .open(&path, OpenMode::Read)
                    .map_err(io(&path))?,
            });
        }
        Ok(Some(TenantReader {
            name: name.to_string(),
            dir,
            leaves,
            segments,
            size: signed,
            at_rest: self.at_rest.clone(),
        }))
    }
}

/// The tree size of the last whole checkpoint frame in a checkpoints file (0 if none).
fn last_checkpoint_size(bytes: &[u8]) -> Result<u64, String> {
    let (notes, _, _) = read_checkpoint_frames(bytes);
    let Some(note) = notes.last() else {
        return Ok(0);
    };
    let body = note.split_once("\n\n").map_or(&note[..], |(body, _)| body);
    Checkpoint::parse(&format!("{body}\n"))
        .map(|c| c.size)
        .map_err(|e| format!("the last checkpoint cannot be read: {e}"))
}

/// One tenant's log, read-only, up to its last signed checkpoint when it was opened.
#[derive(Debug)]
pub struct TenantReader {
    name: String,
    dir: TenantDir,
    leaves: Option<Arc<dyn StoredFile>>,
    segments: Vec<Segment>,
    size: u64,
    at_rest: Option<Arc<AtRest>>,
}

impl TenantReader {
    /// The leaf entries `[start, start + count)`.
    fn entries(&self, start: u64, count: u64) -> Result<Vec<LeafEntry>, ReadError> {
        let path = self.dir.leaves_path();
        let Some(leaves) = &self.leaves else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; count as usize * LEAF_ENTRY];
        leaves
            .read_exact_at(&mut buf, start * LEAF_ENTRY as u64)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(buf
            .chunks_exact(LEAF_ENTRY)
            .map(LeafEntry::decode)
            .collect())
    }
}

impl TenantRecords for TenantReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn records(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        if start.checked_add(count).is_none_or(|end| end > self.size) {
            return Err(ReadError::OutOfRange(format!(
                "records [{start}, {start} + {count}) of a log of {} signed records",
                self.size
            )));
        }
        let mut out = Vec::with_capacity(count as usize);
        for (i, entry) in self.entries(start, count)?.into_iter().enumerate() {
            let index = start + i as u64;
            match read_frame_at(&self.segments, &self.dir, entry.offset)? {
                Some((header, stored))
                    if header.index == index && stored_leaf(&stored).0 == entry.hash =>
                {
                    out.push(open_stored(
                        self.at_rest.as_deref(),
                        &self.name,
                        index,
                        stored,
                    )?)
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        tenant: self.name.clone(),
                        index,
                        detail: format!(
                        "the record frame at offset {} is damaged or misplaced; run `tally verify`",
                        entry.offset
                    ),
                    }
                    .into())
                }
            }
        }
        Ok(out)
    }
}
