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

/// A checkpoint held outside the data directory (saved by a client, anchored in WORM storage,
/// cosigned by witnesses), already signature-checked by the caller. The log must still contain
/// its tree: this is what catches a history rewritten and re-signed with the log's own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Where it came from, for messages (e.g. `the saved checkpoint saved.checkpoint`).
    pub source: String,
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
/// `trusted` are checkpoints held outside the directory (see [`TrustedCheckpoint`]): the log
/// must still contain each of those trees, which catches a rollback or fork since they were
/// taken.
pub fn verify_tenant(
    dir: &DataDir,
    tenant: &str,
    verifier: &NoteVerifier,
    trusted: &[TrustedCheckpoint],
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
    for t in trusted {
        let at = checkpoints.partition_point(|c| c.size <= t.size);
        checkpoints.insert(
            at,
            StoredCheckpoint {
                size: t.size,
                root: t.root,
                label: t.source.clone(),
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
        // A reading thread keeps the next batch coming while this one is hashed and checked,
        // so a cold read from disk overlaps with the hashing.
        let (batches_tx, batches) =
            std::sync::mpsc::sync_channel::<(Batch, Option<ReadProblem>)>(1);
        let _reader = std::thread::spawn(move || loop {
            let mut batch = Batch::default();
            let problem = batch.fill(&mut reader, BATCH_FRAMES);
            let last = problem.is_some();
            if batches_tx.send((batch, problem)).is_err() || last {
                break;
            }
        });
        loop {
            // Read a batch of frames, hash them on every core, then check them in order.
            let Ok((batch, problem)) = batches.recv() else {
                return Err(fail(
                    Some(index),
                    format!("{}: the reading thread stopped", path.display()),
                ));
            };
            let checked = batch.check_in_parallel(threads);
            for (k, frame) in batch.frames.iter().enumerate() {
                let (crc_ok, hash) = checked[k];
                if !crc_ok {
                    return Err(fail(
                        Some(index),
                        "record bytes do not match their frame checksum: the record was changed"
                            .into(),
                    ));
                }
                if frame.header.index != index {
                    return Err(fail(
                        Some(index),
                        format!(
                            "found the record of index {} where index {index} belongs: records were removed, inserted or reordered",
                            frame.header.index
                        ),
                    ));
                }
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
                            return Err(fail(
                                Some(index),
                                format!("{}: {e}", leaves_path.display()),
                            ))
                        }
                    }
                }
                frontier.push(hash, |_, _, _| {});
                index += 1;
                expected_offset += frame.header.frame_len();
                progress(frame.header.frame_len());
                check_checkpoints(&frontier, &mut next_cp)?;
            }
            match problem {
                Some(ReadProblem::End) => break,
                Some(ReadProblem::Truncated) => {
                    return Err(fail(
                        Some(index),
                        "the last record is truncated (torn or cut write)".into(),
                    ))
                }
                Some(ReadProblem::BadLength) => {
                    return Err(fail(
                        Some(index),
                        "record header is damaged (impossible length)".into(),
                    ))
                }
                Some(ReadProblem::Io(e)) => {
                    return Err(fail(Some(index), format!("{}: {e}", path.display())))
                }
                None => {}
            }
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

/// Frames read and checked together: enough to amortise starting the hashing threads.
const BATCH_FRAMES: usize = 32 * 1024;

/// Why reading a batch stopped early.
enum ReadProblem {
    End,
    Truncated,
    BadLength,
    Io(std::io::Error),
}

struct BatchFrame {
    header: FrameHeader,
    start: usize,
}

/// A batch of frames read from a segment: headers, and the records back to back.
#[derive(Default)]
struct Batch {
    frames: Vec<BatchFrame>,
    records: Vec<u8>,
}

impl Batch {
    /// Reads up to `max` frames; says why it stopped if before `max`.
    fn fill(&mut self, reader: &mut impl Read, max: usize) -> Option<ReadProblem> {
        self.frames.clear();
        self.records.clear();
        while self.frames.len() < max {
            let mut head = [0u8; FRAME_HEADER];
            match read_full(reader, &mut head) {
                Ok(0) => return Some(ReadProblem::End),
                Ok(n) if n < FRAME_HEADER => return Some(ReadProblem::Truncated),
                Ok(_) => {}
                Err(e) => return Some(ReadProblem::Io(e)),
            }
            let header = FrameHeader::parse(&head);
            if header.len as usize > tally_event::MAX_RECORD_BYTES {
                return Some(ReadProblem::BadLength);
            }
            let start = self.records.len();
            self.records.resize(start + header.len as usize, 0);
            match read_full(reader, &mut self.records[start..]) {
                Ok(n) if n == header.len as usize => {}
                Ok(_) => return Some(ReadProblem::Truncated),
                Err(e) => return Some(ReadProblem::Io(e)),
            }
            self.frames.push(BatchFrame { header, start });
        }
        None
    }

    /// For every frame: whether its checksum holds, and its leaf hash — computed on
    /// `threads` threads, since hashing is most of the verifier's work.
    fn check_in_parallel(&self, threads: usize) -> Vec<(bool, Hash)> {
        let check = |f: &BatchFrame| {
            let record = &self.records[f.start..f.start + f.header.len as usize];
            (f.header.matches(record), tally_tlog::leaf_hash(record))
        };
        if threads < 2 || self.frames.len() < 1024 {
            return self.frames.iter().map(check).collect();
        }
        let per = self.frames.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = self
                .frames
                .chunks(per)
                .map(|chunk| scope.spawn(move || chunk.iter().map(check).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("hashing thread panicked"))
                .collect()
        })
    }
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
