//! Crash recovery of one tenant's log: from whatever a crash, a full disk or a failed fsync
//! left on disk to a consistent state the sequencer can append to.
//!
//! In order: cut a torn checkpoint frame; trust leaf entries only up to the last checkpoint's
//! size and only where the frame they point at is intact and agrees; re-derive the entries of
//! durable records after them; cut a torn record tail (never inside the signed history: that
//! is damage, and opening is refused); sign the empty tree of a new tenant; rebuild the tree
//! from the persisted tree state (or every leaf) while checking it against the last signed
//! checkpoint; catch the event-id index up. Nothing on disk is changed before the checks that
//! can refuse to open have passed.

use std::sync::Arc;

use tally_tlog::{checkpoint::Checkpoint, note::NoteVerifier, Frontier, Hash};

use crate::at_rest::stored_leaf;
use crate::error::StoreError;
use crate::frame::{
    self, encode_checkpoint_frame, read_checkpoint_frames, Decoded, LeafEntry, LEAF_ENTRY,
};
use crate::idindex::{TenantIds, CATCH_UP_CHUNK};
use crate::layout::TenantDir;
use crate::storage::{OpenMode, Storage, StoredFile};
use crate::tenant::{
    for_each_leaf_entry, open_checkpoint, push_leaf, read_file_from, read_frame_at,
    read_leaf_entry, Nodes, OpenTenant, RecoveryReport, Segment, SignedCheckpoint,
};
use crate::treestate::TreeState;

/// A tenant's log as recovery leaves it: files open, tree rebuilt and checked.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    pub(crate) leaves: Arc<dyn StoredFile>,
    pub(crate) checkpoints: Arc<dyn StoredFile>,
    pub(crate) checkpoint: Option<SignedCheckpoint>,
    /// Leaves after recovery.
    pub(crate) size: u64,
    pub(crate) frontier: Frontier,
    pub(crate) upper: Vec<Vec<Hash>>,
    /// The size of the tree-state file the tree was rebuilt from (0: none).
    pub(crate) tree_state_size: u64,
    pub(crate) ids: TenantIds,
    pub(crate) report: RecoveryReport,
}

/// Recovers the tenant at `dir` (creating its directory if it is new); see the module docs.
pub(crate) fn recover(dir: &TenantDir, how: &OpenTenant<'_>) -> Result<Recovered, StoreError> {
    let (name, origin, verifier) = (how.name, how.origin, how.verifier);
    let storage = how.storage;
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e| StoreError::io(&path, e)
    };
    let created = !storage.exists(dir.root()).map_err(io(dir.root()))?;
    storage
        .create_dir_all(&dir.segments_path())
        .map_err(io(dir.root()))?;
    if created {
        storage.sync_dir(dir.root()).map_err(io(dir.root()))?;
        if let Some(parent) = dir.root().parent() {
            storage.sync_dir(parent).map_err(io(parent))?;
        }
    }
    let corrupt = |index: u64, detail: String| StoreError::Corrupt {
        tenant: name.to_string(),
        index,
        detail,
    };

    let checkpoints_path = dir.checkpoints_path();
    let checkpoints = storage
        .open(&checkpoints_path, OpenMode::Append)
        .map_err(io(&checkpoints_path))?;
    let (checkpoint, good_len) = read_last_checkpoint(&*checkpoints, &checkpoints_path, verifier)
        .map_err(|detail| corrupt(0, detail))?;
    if good_len < checkpoints.len().map_err(io(&checkpoints_path))? {
        tracing::warn!(
            tenant = name,
            "cut a torn checkpoint write at the end of {}",
            checkpoints_path.display()
        );
        checkpoints
            .truncate(good_len)
            .map_err(io(&checkpoints_path))?;
        checkpoints.sync().map_err(io(&checkpoints_path))?;
    }
    let floor = checkpoint.as_ref().map_or(0, |c| c.size);

    // Every segment is opened to append: recovery may cut any of them, and the last one
    // is the writer's.
    let mut segments = Vec::new();
    for start in dir.list_segments_in(&**storage)? {
        let path = dir.segment_path(start);
        segments.push(Segment {
            start,
            file: storage.open(&path, OpenMode::Append).map_err(io(&path))?,
        });
    }
    if segments.is_empty() {
        let path = dir.segment_path(0);
        let file = storage.open(&path, OpenMode::Append).map_err(io(&path))?;
        storage
            .sync_dir(&dir.segments_path())
            .map_err(io(&dir.segments_path()))?;
        segments.push(Segment { start: 0, file });
    }

    let leaves_path = dir.leaves_path();
    let leaves_w = storage
        .open(&leaves_path, OpenMode::Append)
        .map_err(io(&leaves_path))?;
    let leaves_len = leaves_w.len().map_err(io(&leaves_path))?;
    let mut report = RecoveryReport::default();
    // The leaves file is fsync'd only before a checkpoint is signed, so only entries the last
    // checkpoint covers are sure to be intact after a power loss; later ones are re-derived
    // from the records (at most one checkpoint interval of events).
    let mut n = (leaves_len / LEAF_ENTRY as u64).min(floor);

    // A leaf entry is trusted only if the frame it points at is intact and agrees with it.
    let mut end_of_valid = 0u64;
    while n > 0 {
        let entry = read_leaf_entry(&*leaves_w, &leaves_path, n - 1)?;
        match read_frame_at(&segments, dir, entry.offset) {
            Ok(Some((header, record)))
                if header.index == n - 1 && stored_leaf(&record).0 == entry.hash =>
            {
                end_of_valid = entry.offset + header.frame_len();
                break;
            }
            _ => {
                n -= 1;
                report.leaf_entries_dropped += 1;
            }
        }
    }

    // Records after the last indexed one: durable frames whose leaf entries were lost are
    // re-indexed; the first frame that is short or fails its checksum is a torn write, and
    // everything from it on is cut.
    let mut new_entries = Vec::new();
    let mut pos = end_of_valid;
    let seg_idx = segments
        .partition_point(|s| s.start <= pos)
        .saturating_sub(1);
    let mut cut_at: Option<(usize, u64)> = None;
    'segments: for (i, seg) in segments.iter().enumerate().skip(seg_idx) {
        let path = dir.segment_path(seg.start);
        let bytes = read_file_from(&*seg.file, &path, pos.saturating_sub(seg.start))?;
        let base = pos.max(seg.start);
        let mut at = 0usize;
        while at < bytes.len() {
            match frame::decode_frame(&bytes[at..]) {
                Decoded::Frame { index, record, len } if index == n => {
                    // An encrypted record carries its leaf hash and id in the clear: recovery
                    // needs no key.
                    let (hash, id) = stored_leaf(record);
                    let id = id.map(|id| id.as_u128()).ok_or_else(|| {
                        corrupt(
                            n,
                            "a record with an intact checksum has no readable id".into(),
                        )
                    })?;
                    LeafEntry {
                        hash,
                        offset: base + at as u64,
                        id,
                    }
                    .encode(&mut new_entries);
                    n += 1;
                    at += len;
                    report.leaf_entries_rebuilt += 1;
                }
                _ => {
                    cut_at = Some((i, base + at as u64));
                    break 'segments;
                }
            }
        }
        pos = base + bytes.len() as u64;
    }
    // Nothing has been changed on disk so far. Damage inside the signed part of the log is
    // not a torn write: refuse to start rather than cut away evidence.
    if n < floor {
        return Err(corrupt(
            n,
            format!("the last signed checkpoint covers {floor} leaves but only {n} intact records are stored; run `tally verify`"),
        ));
    }
    // Records without any signed history: the checkpoints file was deleted or emptied
    // (a tenant's log is signed at size 0 before its first record is written, so this
    // never happens by itself). Signing them now would vouch for whatever they hold.
    let mut checkpoint = checkpoint;
    if checkpoint.is_none() {
        if n > 0 && !how.accept_unsigned_history {
            return Err(corrupt(
                0,
                format!(
                    "{n} records but no signed checkpoint history ({} is missing or empty): it was deleted, \
                     or records were put here by hand. Run `tally verify` on the data directory with a \
                     checkpoint saved or anchored elsewhere (--since); if you restored these records \
                     yourself and accept signing them as they are, start with \
                     --accept-unsigned-history {name} (this is recorded in the tenant's log)",
                    checkpoints_path.display()
                ),
            ));
        }
        if n > 0 {
            report.unsigned_history_accepted = Some(n);
            tracing::warn!(
                tenant = name,
                records = n,
                "opening records without a signed checkpoint history, as the operator asked"
            );
        } else {
            match sign_empty_tree(
                &**storage,
                &*checkpoints,
                &checkpoints_path,
                origin,
                how.sign,
            ) {
                Ok(cp) => checkpoint = Some(cp),
                // A signer that is down (a signing command, an HSM) must not stop new
                // tenants from taking events: the checkpointer signs their tree as soon
                // as it works again. Until then a crash leaves records without history,
                // which the next start refuses (--accept-unsigned-history).
                Err(StoreError::Signer(e)) => tracing::warn!(
                    tenant = name,
                    "the new tenant's empty tree could not be signed yet: {e}"
                ),
                Err(e) => return Err(e),
            }
        }
    }
    let indexed = n - report.leaf_entries_rebuilt;
    if indexed * LEAF_ENTRY as u64 != leaves_len {
        leaves_w
            .truncate(indexed * LEAF_ENTRY as u64)
            .map_err(io(&leaves_path))?;
    }
    if let Some((i, offset)) = cut_at {
        let mut cut = 0;
        for (j, seg) in segments.iter().enumerate().skip(i) {
            let path = dir.segment_path(seg.start);
            let len = seg.file.len().map_err(io(&path))?;
            if j == i {
                cut += len - (offset - seg.start);
                seg.file.truncate(offset - seg.start).map_err(io(&path))?;
                seg.file.sync().map_err(io(&path))?;
            } else {
                cut += len;
                storage.remove_file(&path).map_err(io(&path))?;
            }
        }
        segments.truncate(i + 1);
        storage
            .sync_dir(&dir.segments_path())
            .map_err(io(&dir.segments_path()))?;
        report.torn_bytes_cut = cut;
        tracing::warn!(
            tenant = name,
            "torn tail write detected: cut {cut} bytes after leaf index {} (offset {offset}); every acknowledged event precedes it",
            n.saturating_sub(1)
        );
    }
    if !new_entries.is_empty() {
        // The file was cut to `indexed` entries just above: this appends right there.
        leaves_w.append(&new_entries).map_err(io(&leaves_path))?;
        leaves_w.sync().map_err(io(&leaves_path))?;
    }
    if report.leaf_entries_dropped > 0 || report.leaf_entries_rebuilt > 0 {
        tracing::warn!(
            tenant = name,
            dropped = report.leaf_entries_dropped,
            rebuilt = report.leaf_entries_rebuilt,
            "leaf entries repaired from the records after an unclean stop"
        );
    }

    // Rebuild the in-memory tree, checking the signed checkpoint on the way: from the
    // persisted tree state and the leaves after it, or, without a usable one, from every
    // leaf. Either way the root at the last checkpoint's size must be the signed one.
    type Rebuilt = (Frontier, Vec<Vec<Hash>>, u64);
    let replay = |from: Option<TreeState>| -> Result<Rebuilt, StoreError> {
        let (mut frontier, mut upper, mut i) = match from {
            Some(state) => {
                let frontier = state
                    .check(&Nodes {
                        leaves: &*leaves_w,
                        dir,
                        name,
                        upper: &[],
                        size: state.size,
                    })
                    .map_err(|e| corrupt(0, format!("tree-state: {e}")))?;
                (frontier, state.upper, state.size)
            }
            None => (Frontier::new(), Vec::new(), 0),
        };
        let check = |frontier: &Frontier| -> Result<(), StoreError> {
            if let Some(cp) = &checkpoint {
                if frontier.size() == cp.size && frontier.root() != cp.root {
                    return Err(corrupt(
                        0,
                        format!("the tree rebuilt from the leaves file does not match the signed checkpoint at size {}; run `tally verify` to find the first bad index", cp.size),
                    ));
                }
            }
            Ok(())
        };
        check(&frontier)?;
        let start = i;
        const CHUNK: u64 = 1 << 16;
        let mut buf = vec![0u8; (CHUNK as usize) * LEAF_ENTRY];
        while i < n {
            let count = CHUNK.min(n - i);
            let bytes = &mut buf[..count as usize * LEAF_ENTRY];
            leaves_w
                .read_exact_at(bytes, i * LEAF_ENTRY as u64)
                .map_err(io(&leaves_path))?;
            for chunk in bytes.chunks_exact(LEAF_ENTRY) {
                push_leaf(&mut frontier, &mut upper, LeafEntry::decode(chunk).hash);
                i += 1;
                check(&frontier)?;
            }
        }
        Ok((frontier, upper, n - start))
    };
    let state_path = dir.tree_state_path();
    let saved = load_tree_state(&**storage, &state_path, name, n, floor);
    let saved_size = saved.as_ref().map_or(0, |s| s.size);
    let (frontier, upper, replayed, tree_state_size) = match replay(saved) {
        Ok((frontier, upper, replayed)) => (frontier, upper, replayed, saved_size),
        Err(e) if saved_size > 0 => {
            tracing::warn!(
                tenant = name,
                "{} does not agree with the log ({e}); replaying the whole leaves file",
                state_path.display()
            );
            let (frontier, upper, replayed) = replay(None)?;
            (frontier, upper, replayed, 0)
        }
        Err(e) => return Err(e),
    };

    // The event-id index: catch up from its watermark, reading only the tail of `leaves`.
    let ids = how.ids.tenant(name)?;
    report.ids_indexed = catch_up_ids(&ids, &*leaves_w, &leaves_path, name, n)?;
    report.leaves_replayed = replayed;
    report.tree_state = (tree_state_size > 0).then_some(tree_state_size);
    Ok(Recovered {
        segments,
        leaves: leaves_w,
        checkpoints,
        checkpoint,
        size: n,
        frontier,
        upper,
        tree_state_size,
        ids,
        report,
    })
}

/// The persisted tree state, if it is there and usable for a log of `n` intact leaves whose
/// last signed checkpoint has size `floor`: a state beyond either is stale (its leaves were
/// cut, or its checkpoint was removed) and is not used. Its hashes are checked by
/// [`TreeState::check`] during the replay.
fn load_tree_state(
    storage: &dyn Storage,
    path: &std::path::Path,
    tenant: &str,
    n: u64,
    floor: u64,
) -> Option<TreeState> {
    let bytes = match storage.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if n > 0 {
                tracing::warn!(
                    tenant,
                    "no {} (a log written before it existed, or it was deleted): replaying all {n} leaf entries",
                    path.display()
                );
            }
            return None;
        }
        Err(e) => {
            tracing::warn!(
                tenant,
                "cannot read {}: {e}; replaying all {n} leaf entries",
                path.display()
            );
            return None;
        }
    };
    match TreeState::decode(&bytes) {
        Ok(state) if state.size <= n && state.size <= floor => Some(state),
        Ok(state) => {
            tracing::warn!(
                tenant,
                "{} is of size {}, beyond the log's {n} intact leaves or its last checkpoint ({floor}); replaying all leaf entries",
                path.display(),
                state.size
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                tenant,
                "{} is damaged ({e}); replaying all {n} leaf entries",
                path.display()
            );
            None
        }
    }
}

/// Brings a tenant's keyspace of the id index up to the `n` leaves of its log: from its
/// watermark, reading only the leaf entries after it. An unreadable index, or one that
/// claims more leaves than the log holds, is emptied and rebuilt from every entry.
fn catch_up_ids(
    ids: &TenantIds,
    leaves: &dyn StoredFile,
    path: &std::path::Path,
    tenant: &str,
    n: u64,
) -> Result<u64, StoreError> {
    let mut w = match ids.covers() {
        Ok((0, _)) => 0,
        Ok((w, hash)) if w <= n && read_leaf_entry(leaves, path, w - 1)?.hash == hash => w,
        Ok((w, _)) if w <= n => {
            tracing::warn!(
                tenant,
                "the event-id index was built from another leaves file (leaf {} differs); rebuilding it",
                w - 1
            );
            ids.clear()?;
            0
        }
        Ok((w, _)) => {
            tracing::warn!(
                tenant,
                "the event-id index covers {w} leaves but the log holds {n}; rebuilding it from the leaves file"
            );
            ids.clear()?;
            0
        }
        Err(e) => {
            tracing::warn!(
                tenant,
                "the event-id index is unreadable ({e}); rebuilding it from the leaves file"
            );
            ids.clear()?;
            0
        }
    };
    if w == 0 && n > 0 {
        tracing::info!(tenant, "building the event-id index from {n} leaf entries");
    }
    let start = w;
    while w < n {
        let count = CATCH_UP_CHUNK.min(n - w);
        let mut entries = Vec::with_capacity(count as usize);
        let mut last_hash = [0; 32];
        for_each_leaf_entry(leaves, path, w, count, |i, e| {
            entries.push((e.id, i));
            last_hash = e.hash;
        })?;
        ids.ingest(&mut entries, w + count, last_hash)?;
        w += count;
    }
    Ok(n - start)
}

/// Signs the empty tree and makes that checkpoint durable: a new tenant's log has a signed
/// history before its first record is written, so records without one are always damage.
fn sign_empty_tree(
    storage: &dyn Storage,
    file: &dyn StoredFile,
    path: &std::path::Path,
    origin: &str,
    sign: &dyn Fn(&str) -> Result<String, StoreError>,
) -> Result<SignedCheckpoint, StoreError> {
    let root = tally_tlog::empty_root();
    let body = Checkpoint {
        origin: origin.to_string(),
        size: 0,
        root,
        extensions: Vec::new(),
    }
    .to_body();
    let note = sign(&body)?;
    // The file is empty (no checkpoint was read from it): this frame is its first.
    file.append(&encode_checkpoint_frame(&note))
        .map_err(|e| StoreError::io(path, e))?;
    file.sync().map_err(|e| StoreError::io(path, e))?;
    if let Some(dir) = path.parent() {
        storage.sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(SignedCheckpoint {
        size: 0,
        root,
        note,
    })
}

fn read_last_checkpoint(
    file: &dyn StoredFile,
    path: &std::path::Path,
    verifier: &NoteVerifier,
) -> Result<(Option<SignedCheckpoint>, u64), String> {
    let bytes = read_file_from(file, path, 0).map_err(|e| e.to_string())?;
    let (notes, good_len, damaged) = read_checkpoint_frames(&bytes);
    if damaged && (good_len as usize) + 8 < bytes.len() {
        // Only the very last frame can be torn by a crash.
        let rest = &bytes[good_len as usize..];
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        if rest.len() > 8 + len {
            return Err(format!(
                "{} is damaged at byte {good_len} (not at its end)",
                path.display()
            ));
        }
    }
    let last = match notes.last() {
        Some(note) => Some(open_checkpoint(note, verifier).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok((last, good_len))
}
