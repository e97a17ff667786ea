//! The offline verifier: recomputes every tenant's tree from the stored records and checks it
//! against every signed checkpoint, needing nothing but the data directory (read-only) and
//! the log's public key.
//!
//! It trusts no derived file: leaf entries are recomputed from the records and compared, the
//! frame sequence must be exactly `0, 1, 2, …`, and every checkpoint's signature and root is
//! checked, so a changed byte, a removed, inserted, reordered or truncated record, or a forged
//! checkpoint is reported with the tenant and the first bad index.

use std::fs::File;
use std::io::{BufReader, Read};

use tally_tlog::checkpoint::Checkpoint;
use tally_tlog::note::NoteVerifier;
use tally_tlog::{Frontier, Hash};

use crate::frame::{FrameHeader, LeafEntry, FRAME_HEADER, LEAF_ENTRY};
use crate::layout::{DataDir, TenantDir};
use crate::tenant::read_checkpoint_frames;

/// What was checked in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantVerified {
    /// The tenant.
    pub tenant: String,
    /// Records checked.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: usize,
    /// The newest signed checkpoint (its size and root), if any.
    pub latest: Option<(u64, Hash)>,
    /// Records after the newest checkpoint: checked for integrity, not yet signed.
    pub unsigned_tail: u64,
}

/// A verification failure: the first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant}{}: {detail}", .index.map(|i| format!(", index {i}")).unwrap_or_default())]
pub struct VerifyFailure {
    /// The tenant whose log is bad.
    pub tenant: String,
    /// The first bad leaf index, when one can be named.
    pub index: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// Total bytes of records the verifier will read (for a progress bar).
pub fn total_record_bytes(dir: &DataDir, tenants: &[String]) -> u64 {
    tenants
        .iter()
        .map(|t| {
            let td = dir.tenant(t);
            td.list_segments()
                .unwrap_or_default()
                .iter()
                .filter_map(|s| std::fs::metadata(td.segment_path(*s)).ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .sum()
}

/// Verifies one tenant's log. `progress` is called with the number of record bytes read
/// since its previous call.
///
/// `trusted` is a checkpoint the caller saved earlier (already signature-checked): the log
/// must still contain that tree, which catches a rollback or fork since it was saved.
pub fn verify_tenant(
    dir: &DataDir,
    tenant: &str,
    verifier: &NoteVerifier,
    trusted: Option<(u64, Hash)>,
    progress: &mut dyn FnMut(u64),
) -> Result<TenantVerified, VerifyFailure> {
    let td = dir.tenant(tenant);
    let fail = |index: Option<u64>, detail: String| VerifyFailure {
        tenant: tenant.to_string(),
        index,
        detail,
    };
    let mut checkpoints = load_checkpoints(&td, tenant, verifier).map_err(|d| fail(None, d))?;
    let signed = checkpoints.len();
    let latest = checkpoints.last().map(|c| (c.size, c.root));
    if let Some((size, root)) = trusted {
        let at = checkpoints.partition_point(|c| c.size <= size);
        checkpoints.insert(
            at,
            StoredCheckpoint {
                size,
                root,
                label: "the saved checkpoint".into(),
            },
        );
    }

    let leaves_path = td.leaves_path();
    let mut leaves = match File::open(&leaves_path) {
        Ok(f) => Some(BufReader::with_capacity(1 << 20, f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(None, format!("{}: {e}", leaves_path.display()))),
    };
    let mut frontier = Frontier::new();
    let mut next_cp = 0usize;
    let check_checkpoints = |frontier: &Frontier, next_cp: &mut usize| {
        while let Some(cp) = checkpoints.get(*next_cp) {
            if cp.size != frontier.size() {
                break;
            }
            if cp.root != frontier.root() {
                let first = if *next_cp == 0 {
                    0
                } else {
                    checkpoints[*next_cp - 1].size
                };
                return Err(fail(
                    Some(first),
                    format!(
                        "the tree recomputed from the records does not match {} (size {}): \
                         a record in [{first}, {}) was altered, or the leaves file was altered along with it",
                        cp.label, cp.size, cp.size
                    ),
                ));
            }
            *next_cp += 1;
        }
        Ok(())
    };
    check_checkpoints(&frontier, &mut next_cp)?;

    let segments = td.list_segments().map_err(|e| fail(None, e.to_string()))?;
    let mut expected_offset = 0u64;
    let mut index = 0u64;
    let mut leaves_ended = leaves.is_none();
    for start in segments {
        let path = td.segment_path(start);
        if start != expected_offset {
            return Err(fail(
                Some(index),
                format!(
                    "segment {} starts at offset {start} but the previous one ends at {expected_offset}: records are missing or inserted",
                    path.display()
                ),
            ));
        }
        let file =
            File::open(&path).map_err(|e| fail(Some(index), format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut record = Vec::with_capacity(4096);
        loop {
            let mut head = [0u8; FRAME_HEADER];
            match read_full(&mut reader, &mut head) {
                Ok(0) => break,
                Ok(n) if n < FRAME_HEADER => {
                    return Err(fail(
                        Some(index),
                        "the last record is truncated (torn or cut write)".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(fail(Some(index), format!("{}: {e}", path.display()))),
            }
            let header = FrameHeader::parse(&head);
            if header.len as usize > tally_event::MAX_RECORD_BYTES {
                return Err(fail(
                    Some(index),
                    "record header is damaged (impossible length)".into(),
                ));
            }
            record.resize(header.len as usize, 0);
            match read_full(&mut reader, &mut record) {
                Ok(n) if n == record.len() => {}
                Ok(_) => {
                    return Err(fail(
                        Some(index),
                        "the last record is truncated (torn or cut write)".into(),
                    ))
                }
                Err(e) => return Err(fail(Some(index), format!("{}: {e}", path.display()))),
            }
            if !header.matches(&record) {
                return Err(fail(
                    Some(index),
                    "record bytes do not match their frame checksum: the record was changed".into(),
                ));
            }
            if header.index != index {
                return Err(fail(
                    Some(index),
                    format!(
                        "found the record of index {} where index {index} belongs: records were removed, inserted or reordered",
                        header.index
                    ),
                ));
            }
            let hash = tally_tlog::leaf_hash(&record);
            if !leaves_ended {
                let mut buf = [0u8; LEAF_ENTRY];
                let reader = leaves.as_mut().expect("present");
                match read_full(reader, &mut buf) {
                    Ok(LEAF_ENTRY) => {
                        let entry = LeafEntry::decode(&buf);
                        if entry.hash != hash || entry.offset != expected_offset {
                            return Err(fail(
                                Some(index),
                                "the record does not match its leaf entry: the record or the leaves file was changed".into(),
                            ));
                        }
                    }
                    Ok(_) => leaves_ended = true,
                    Err(e) => {
                        return Err(fail(Some(index), format!("{}: {e}", leaves_path.display())))
                    }
                }
            }
            frontier.push(hash, |_, _, _| {});
            index += 1;
            expected_offset += header.frame_len();
            progress(header.frame_len());
            check_checkpoints(&frontier, &mut next_cp)?;
        }
    }
    if let Some(cp) = checkpoints.get(next_cp) {
        return Err(fail(
            Some(index),
            format!(
                "{} covers {} records but only {index} are stored: the log was truncated or rolled back",
                cp.label, cp.size
            ),
        ));
    }
    Ok(TenantVerified {
        tenant: tenant.to_string(),
        records: index,
        checkpoints: signed,
        unsigned_tail: index - latest.map_or(0, |l| l.0),
        latest,
    })
}

struct StoredCheckpoint {
    size: u64,
    root: Hash,
    label: String,
}

/// Reads and checks every stored checkpoint of a tenant: signature, origin, and that sizes
/// never shrink.
fn load_checkpoints(
    td: &TenantDir,
    tenant: &str,
    verifier: &NoteVerifier,
) -> Result<Vec<StoredCheckpoint>, String> {
    let path = td.checkpoints_path();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (notes, good_len, damaged) = read_checkpoint_frames(&bytes);
    if damaged || good_len as usize != bytes.len() {
        return Err(format!(
            "{} is damaged at byte {good_len}: a checkpoint was altered or cut",
            path.display()
        ));
    }
    let suffix = format!("/{tenant}");
    let mut out: Vec<StoredCheckpoint> = Vec::with_capacity(notes.len());
    let mut origin: Option<String> = None;
    for (i, note) in notes.iter().enumerate() {
        let n = i + 1;
        let verified =
            tally_tlog::note::open(note, std::slice::from_ref(verifier)).map_err(|e| {
                format!(
                    "checkpoint #{n} is not validly signed by {}: {e}",
                    verifier.name()
                )
            })?;
        let cp = Checkpoint::parse(&verified.text).map_err(|e| format!("checkpoint #{n}: {e}"))?;
        if !cp.origin.ends_with(&suffix) {
            return Err(format!(
                "checkpoint #{n} has origin {:?}, not one of tenant {tenant}",
                cp.origin
            ));
        }
        match &origin {
            None => origin = Some(cp.origin.clone()),
            Some(o) if *o != cp.origin => {
                return Err(format!(
                    "checkpoint #{n} has origin {:?} but earlier ones have {o:?}",
                    cp.origin
                ))
            }
            Some(_) => {}
        }
        if let Some(prev) = out.last() {
            if cp.size < prev.size {
                return Err(format!(
                    "checkpoint #{n} has size {} after a checkpoint of size {}: the log was rolled back",
                    cp.size, prev.size
                ));
            }
            if cp.size == prev.size && cp.root != prev.root {
                return Err(format!(
                    "checkpoints #{} and #{n} have the same size but different roots: a fork",
                    n - 1
                ));
            }
        }
        out.push(StoredCheckpoint {
            size: cp.size,
            root: cp.root,
            label: format!("signed checkpoint #{n}"),
        });
    }
    Ok(out)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
