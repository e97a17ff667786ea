//! The offline verifier: recomputes every tenant's tree from the stored records and checks it
//! against every signed checkpoint, needing nothing but the data directory (read-only) and
//! the log's public key.
//!
//! It trusts no derived file: leaf entries (hash, offset and event id) are recomputed from the
//! records and compared, the frame sequence must be exactly `0, 1, 2, …`, and every
//! checkpoint's signature and root is checked, so a changed byte, a removed, inserted,
//! reordered or truncated record, or a forged checkpoint is reported with the tenant and the
//! first bad index. Records with no signed checkpoint history at all are damage: a tenant's
//! log is signed at size 0 before its first record is written.
//!
//! Records encrypted at rest carry their leaf hash and event id in the clear, so the whole
//! structure is checked without any key; their content (decryption, and the hash of the
//! plaintext) is checked when the verifier is given the key-encryption key
//! ([`verify_tenant_with_key`]), and counted in [`TenantVerified::contents_unchecked`] when not.
//!
//! A torn write after the last complete record (what a crash or a full disk leaves, and what
//! the server cuts at its next start) is not damage as long as it lies outside the signed
//! history: it is reported in [`TenantVerified::torn_tail`], not as a failure.

use std::io::{BufReader, Read};

use tally_tlog::checkpoint::Checkpoint;
use tally_tlog::note::NoteVerifier;
use tally_tlog::{Frontier, Hash};

use crate::at_rest::{AtRest, EncryptedRecord};
use crate::frame::{read_checkpoint_frames, FrameHeader, LeafEntry, FRAME_HEADER, LEAF_ENTRY};
use crate::layout::{DataDir, TenantDir};
use crate::storage::{OpenMode, PosixStorage, SequentialReader, Storage};

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
    /// Records stored encrypted at rest.
    pub encrypted: u64,
    /// Encrypted records whose content was not checked, for want of the key-encryption key
    /// (their frames, leaf hashes and place in every tree were).
    pub contents_unchecked: u64,
    /// Torn writes at the end of the records or of the checkpoints file, outside the signed
    /// history (warnings, not failures).
    pub torn_writes: Vec<TornTail>,
}

/// A partial write at the very end of a log, outside its signed history: left by a crash or a
/// full disk, never acknowledged, and cut by the server at its next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Which file: `records` (the last segment) or `checkpoints`.
    pub file: String,
    /// Complete records before it.
    pub after_records: u64,
    /// Bytes of the partial write.
    pub bytes: u64,
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
                .filter_map(|s| PosixStorage.open(&td.segment_path(*s), OpenMode::Read).ok())
                .filter_map(|f| f.len().ok())
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
    verify_tenant_with_key(dir, tenant, verifier, trusted, None, progress)
}

/// [`verify_tenant`] that also decrypts every record encrypted at rest with `at_rest` and
/// checks that it is the record its leaf hash commits to.
pub fn verify_tenant_with_key(
    dir: &DataDir,
    tenant: &str,
    verifier: &NoteVerifier,
    trusted: &[TrustedCheckpoint],
    at_rest: Option<&AtRest>,
    progress: &mut dyn FnMut(u64),
) -> Result<TenantVerified, VerifyFailure> {
    verify_tenant_interruptible(dir, tenant, verifier, trusted, at_rest, &mut |n| {
        progress(n);
        true
    })
}

/// [`verify_tenant_with_key`] whose `progress` can stop it by returning false (the scrub does
/// when the log shuts down); it then returns a failure with no index whose detail says so.
pub fn verify_tenant_interruptible(
    dir: &DataDir,
    tenant: &str,
    verifier: &NoteVerifier,
    trusted: &[TrustedCheckpoint],
    at_rest: Option<&AtRest>,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<TenantVerified, VerifyFailure> {
    let td = dir.tenant(tenant);
    let fail = |index: Option<u64>, detail: String| VerifyFailure {
        tenant: tenant.to_string(),
        index,
        detail,
    };
    let stored = load_checkpoints(&td, tenant, verifier).map_err(|d| fail(None, d))?;
    let signed = stored.checkpoints.len();
    let latest = stored.checkpoints.last().map(|c| (c.size, c.root));
    let mut checkpoints = stored.checkpoints;
    for t in trusted {
        let at = checkpoints.partition_point(|c| c.size <= t.size);
        checkpoints.insert(
            at,
            StoredCheckpoint {
                size: t.size,
                root: t.root,
                label: t.source.clone(),
                external: true,
            },
        );
    }
    // Everything up to this size is signed history: damage there is never a torn write.
    let signed_floor = checkpoints.iter().map(|c| c.size).max().unwrap_or(0);

    let leaves_path = td.leaves_path();
    // Read through the storage driver, read-only: the writer's lock is never taken, so this
    // runs beside a server too.
    let storage = PosixStorage;
    let mut leaves = match storage
        .open(&leaves_path, OpenMode::Read)
        .and_then(SequentialReader::new)
    {
        Ok(f) => Some(BufReader::with_capacity(1 << 20, f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(None, format!("{}: {e}", leaves_path.display()))),
    };
    let mut frontier = Frontier::new();
    let mut matched = Matched::default();
    let mut next_cp = 0usize;
    let mut check_checkpoints = |frontier: &Frontier, next_cp: &mut usize| {
        while let Some(cp) = checkpoints.get(*next_cp) {
            if cp.size != frontier.size() {
                break;
            }
            if cp.root != frontier.root() {
                return Err(mismatch(tenant, cp, &matched, &checkpoints[..*next_cp]));
            }
            matched.record(cp);
            *next_cp += 1;
        }
        Ok(())
    };
    check_checkpoints(&frontier, &mut next_cp)?;

    let segments = td.list_segments().map_err(|e| fail(None, e.to_string()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut expected_offset = 0u64;
    let mut index = 0u64;
    let mut encrypted = 0u64;
    let mut leaves_ended = leaves.is_none();
    let mut torn_writes: Vec<TornTail> = stored.torn.into_iter().collect();
    let mut torn_tail = None;
    let last_segment = segments.last().copied();
    for start in segments {
        let path = td.segment_path(start);
        let is_last = Some(start) == last_segment;
        if start != expected_offset {
            return Err(fail(
                Some(index),
                format!(
                    "segment {} starts at offset {start} but the previous one ends at {expected_offset}: records are missing or inserted",
                    path.display()
                ),
            ));
        }
        let file = storage
            .open(&path, OpenMode::Read)
            .and_then(SequentialReader::new)
            .map_err(|e| fail(Some(index), format!("{}: {e}", path.display())))?;
        let segment_len = file.end();
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
        // A write torn by a crash can only be at the very end of the log, after everything
        // signed; anywhere else the same bytes are damage.
        let torn_here = |index: u64, at: u64| {
            (is_last && index >= signed_floor).then(|| TornTail {
                file: path.display().to_string(),
                after_records: index,
                bytes: segment_len - (at - start),
            })
        };
        loop {
            // Read a batch of frames, hash them on every core, then check them in order.
            let Ok((batch, problem)) = batches.recv() else {
                return Err(fail(
                    Some(index),
                    format!("{}: the reading thread stopped", path.display()),
                ));
            };
            let checked = batch.check_in_parallel(threads, tenant, at_rest);
            let at_end = matches!(problem, Some(ReadProblem::End));
            for (k, frame) in batch.frames.iter().enumerate() {
                let Checked {
                    crc_ok,
                    hash,
                    id,
                    encrypted: is_encrypted,
                    ref content,
                } = checked[k];
                if !crc_ok {
                    // A last frame whose bytes never all reached the disk fails its checksum.
                    if at_end && k + 1 == batch.frames.len() {
                        if let Some(torn) = torn_here(index, expected_offset) {
                            torn_tail = Some(torn);
                            break;
                        }
                    }
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
                if let Some(problem) = content {
                    return Err(fail(Some(index), problem.clone()));
                }
                encrypted += u64::from(is_encrypted);
                let Some(id) = id else {
                    return Err(fail(
                        Some(index),
                        "the record holds no readable event id: the record was changed".into(),
                    ));
                };
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
                            if entry.id != id {
                                return Err(fail(
                                    Some(index),
                                    format!(
                                        "the leaves file names event {} for the record of event {}: the leaves file was changed (look-ups by id would find the wrong record)",
                                        uuid::Uuid::from_u128(entry.id),
                                        uuid::Uuid::from_u128(id)
                                    ),
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
                if !progress(frame.header.frame_len()) {
                    return Err(fail(None, "verification interrupted".into()));
                }
                check_checkpoints(&frontier, &mut next_cp)?;
            }
            if torn_tail.is_some() {
                break;
            }
            match problem {
                Some(ReadProblem::End) => break,
                Some(ReadProblem::Truncated) => {
                    if let Some(torn) = torn_here(index, expected_offset) {
                        torn_tail = Some(torn);
                        break;
                    }
                    return Err(fail(
                        Some(index),
                        if is_last {
                            format!("the record is cut short inside the signed history (checkpoints cover {signed_floor} records): the log was truncated")
                        } else {
                            format!("the record is cut short at the end of segment {}, which is followed by another: the segment was truncated", path.display())
                        },
                    ));
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
    if index > 0 && signed == 0 {
        return Err(fail(
            Some(0),
            format!(
                "{index} records but no signed checkpoint: the checkpoints file {} was deleted or emptied \
                 (a tenant's log is signed at size 0 before its first record is written)",
                td.checkpoints_path().display()
            ),
        ));
    }
    torn_writes.extend(torn_tail);
    Ok(TenantVerified {
        tenant: tenant.to_string(),
        records: index,
        encrypted,
        contents_unchecked: if at_rest.is_some() { 0 } else { encrypted },
        checkpoints: signed,
        unsigned_tail: index - latest.map_or(0, |l| l.0),
        latest,
        torn_writes,
    })
}

struct StoredCheckpoint {
    size: u64,
    root: Hash,
    label: String,
    /// Held outside the data directory (saved, anchored, witnessed): evidence that a history
    /// rewritten and re-signed with the log's own key cannot fake.
    external: bool,
}

/// The largest checkpoints found to match so far: they bound where a mismatch can lie.
#[derive(Default)]
struct Matched {
    /// Largest matching size, any source.
    any: u64,
    /// Largest matching size of a checkpoint held outside the directory.
    external: u64,
}

impl Matched {
    fn record(&mut self, cp: &StoredCheckpoint) {
        self.any = self.any.max(cp.size);
        if cp.external {
            self.external = self.external.max(cp.size);
        }
    }
}

/// The failure for a checkpoint whose root differs from the recomputed tree, naming the
/// narrowest range of leaves that evidence allows: records below a matching checkpoint are as
/// they were signed, so the first changed record lies after the largest one. Checkpoints in
/// the directory itself do not bound a mismatch with an external one: whoever rewrote the
/// records could re-sign those too.
fn mismatch(
    tenant: &str,
    cp: &StoredCheckpoint,
    matched: &Matched,
    earlier: &[StoredCheckpoint],
) -> VerifyFailure {
    let from = if cp.external {
        matched.external
    } else {
        matched.any
    }
    .min(cp.size.saturating_sub(1));
    let place = match cp.size - from {
        0 => "the empty tree".to_string(),
        1 => format!("the record at index {from}"),
        _ => format!("a record in [{from}, {})", cp.size),
    };
    let detail = if cp.external {
        let resigned = earlier.iter().rev().find(|c| !c.external && c.size >= from);
        format!(
            "the tree recomputed from the records does not match {} (size {}): the history was rewritten; \
             the first changed record is {place}{}",
            cp.label,
            cp.size,
            match resigned {
                Some(c) => format!(
                    ", and {} (size {}) in the directory agrees with the rewritten records: they were re-signed with the log's key",
                    c.label, c.size
                ),
                None => String::new(),
            }
        )
    } else if cp.size == 0 {
        format!(
            "{} claims an empty tree with a wrong root: it was forged",
            cp.label
        )
    } else {
        format!(
            "the tree recomputed from the records does not match {} (size {}): {place} was altered \
             (with its checksum and leaf entry), or the checkpoint was forged",
            cp.label, cp.size
        )
    };
    VerifyFailure {
        tenant: tenant.to_string(),
        index: Some(from),
        detail,
    }
}

/// A tenant's stored checkpoints, and a torn last write of the file if there is one.
struct LoadedCheckpoints {
    checkpoints: Vec<StoredCheckpoint>,
    torn: Option<TornTail>,
}

/// Reads and checks every stored checkpoint of a tenant: signature, origin, and that sizes
/// never shrink. A partial frame at the very end (a crash while signing) is a torn write.
fn load_checkpoints(
    td: &TenantDir,
    tenant: &str,
    verifier: &NoteVerifier,
) -> Result<LoadedCheckpoints, String> {
    let path = td.checkpoints_path();
    let bytes = match PosixStorage.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (notes, good_len, damaged) = read_checkpoint_frames(&bytes);
    let mut torn = None;
    if good_len as usize != bytes.len() {
        // Only the last frame can be torn: it must reach (or claim to reach past) the end.
        let rest = &bytes[good_len as usize..];
        let claimed = rest
            .get(0..4)
            .map(|l| 8 + u32::from_le_bytes(l.try_into().unwrap()) as usize);
        let at_end = claimed.is_none_or(|c| c >= rest.len());
        if damaged && !at_end {
            return Err(format!(
                "{} is damaged at byte {good_len}: a checkpoint was altered or cut",
                path.display()
            ));
        }
        torn = Some(TornTail {
            file: path.display().to_string(),
            after_records: 0,
            bytes: rest.len() as u64,
        });
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
            external: false,
        });
    }
    if let Some(t) = torn.as_mut() {
        t.after_records = out.len() as u64;
    }
    Ok(LoadedCheckpoints {
        checkpoints: out,
        torn,
    })
}

/// What [`Batch::check_in_parallel`] found of one frame.
struct Checked {
    crc_ok: bool,
    hash: Hash,
    id: Option<u128>,
    encrypted: bool,
    /// Why an encrypted record's content is wrong (checked only with the key).
    content: Option<String>,
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
            if header.len as usize > crate::frame::MAX_STORED_RECORD_BYTES {
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

    /// For every frame: whether its checksum holds, its leaf hash and its event id (and, for
    /// an encrypted record, whether it decrypts to what its header names, given the key) —
    /// computed on `threads` threads, since hashing is most of the verifier's work.
    fn check_in_parallel(
        &self,
        threads: usize,
        tenant: &str,
        at_rest: Option<&AtRest>,
    ) -> Vec<Checked> {
        let check = |f: &BatchFrame| {
            let record = &self.records[f.start..f.start + f.header.len as usize];
            let crc_ok = f.header.matches(record);
            match EncryptedRecord::parse(record) {
                None => Checked {
                    crc_ok,
                    hash: tally_tlog::leaf_hash(record),
                    id: tally_event::record_id(record).map(|id| id.as_u128()),
                    encrypted: false,
                    content: None,
                },
                Some(e) => Checked {
                    crc_ok,
                    hash: e.leaf_hash,
                    id: Some(e.id.as_u128()),
                    encrypted: true,
                    content: at_rest.and_then(|a| {
                        a.decrypt_record(tenant, f.header.index, record.to_vec())
                            .err()
                            .map(|e| match e {
                                crate::StoreError::Corrupt { detail, .. } => detail,
                                other => other.to_string(),
                            })
                    }),
                },
            }
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
