//! The sequencer: the only code that writes the log, in two threads that form a pipeline.
//!
//! The **writer** thread takes every queued request, assigns leaf indexes, recognises retries,
//! and writes frames and leaf entries (page cache, not yet durable). It hands each written
//! group to the **syncer** thread, which fsyncs, publishes the group to readers and
//! acknowledges it. While the syncer waits on fsync for group *k*, the writer is already
//! writing group *k + 1*, so the disk's latency and the CPU work overlap; one fsync covers
//! every group written before it started (group commit). The **checkpointer** thread signs
//! each growing tenant's published tree once per interval.
//!
//! Architecture Invariant: only these threads advance a tree or a checkpoint, and readers
//! never observe anything that is not yet durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use tally_tlog::{checkpoint::Checkpoint, Hash};
use tokio::sync::oneshot;

use crate::error::{AppendError, StoreError};
use crate::faults::{self, FaultPoint};
use crate::frame::{encode_checkpoint_frame, encode_frame_with_crc, LeafEntry};
use crate::log::{Appended, CheckpointEvent, Inner, PreparedEvent};
use crate::storage::{OpenMode, StoredFile};
use crate::tenant::{push_leaf, SignedCheckpoint, TenantLog, TenantWriter};

/// A request waiting for the sequencer.
pub(crate) struct Job {
    pub(crate) events: Vec<PreparedEvent>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
}

type Reply = oneshot::Sender<Result<Vec<Appended>, AppendError>>;

/// What one group will write to one tenant.
struct Staged {
    log: Arc<TenantLog>,
    first_index: u64,
    first_offset: u64,
    frames: Vec<u8>,
    entries: Vec<u8>,
    leaves: Vec<(Hash, u128)>,
    /// Ids assigned in this group → (index, start and length of the frame in `frames`), so a
    /// retry inside the same group is recognised.
    pending: HashMap<u128, (u64, usize, usize)>,
}

impl Staged {
    fn next_index(&self) -> u64 {
        self.first_index + self.leaves.len() as u64
    }
}

/// A group written to the page cache, on its way to the syncer.
struct Written {
    number: u64,
    started: Instant,
    tenants: Vec<WrittenTenant>,
    replies: Vec<(Reply, Result<Vec<Appended>, AppendError>)>,
}

struct WrittenTenant {
    log: Arc<TenantLog>,
    segment: Arc<dyn StoredFile>,
    first_index: u64,
    leaves: Vec<(Hash, u128)>,
    /// Logical offset just past this group's last frame.
    end_offset: u64,
}

/// The writer thread. Runs until every sender is dropped; then lets the syncer finish (it
/// signs final checkpoints) and returns.
pub(crate) fn run(inner: Arc<Inner>, rx: Receiver<Job>) {
    // One group may wait while the syncer syncs another: enough to overlap, and a bound
    // that turns a slow disk into back-pressure (bigger groups) rather than memory growth.
    let (sync_tx, sync_rx) = mpsc::sync_channel::<Written>(1);
    let syncer_inner = inner.clone();
    let syncer = std::thread::Builder::new()
        .name("tally-syncer".into())
        .spawn(move || sync_loop(syncer_inner, sync_rx))
        .expect("spawning the syncer thread");
    // Checkpoints are signed on a third thread: making a second of leaf entries durable
    // before signing must never hold up acknowledgements.
    // The start checkpoint covers exactly what recovery found: it is signed before the first
    // group is written (appends wait in the channel meanwhile), not whenever the new thread
    // happens to run.
    let mut last = LastWritten::default();
    sign_due(&inner, &mut last, true);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let checkpointer_inner = inner.clone();
    let checkpointer = std::thread::Builder::new()
        .name("tally-checkpointer".into())
        .spawn(move || checkpoint_loop(checkpointer_inner, last, stop_rx))
        .expect("spawning the checkpointer thread");
    let mut number = 0u64;
    while let Ok(job) = rx.recv() {
        let mut group = vec![job];
        let mut events = group[0].events.len();
        while events < inner.config.max_group_events {
            match rx.try_recv() {
                Ok(job) => {
                    events += job.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        number += 1;
        if let Some(written) = write_group(&inner, group, number) {
            if let Err(mpsc::SendError(written)) = sync_tx.send(written) {
                fail_all(written.replies, "the log stopped before answering");
                break;
            }
        }
        if inner.crashed() {
            break;
        }
    }
    drop(sync_tx);
    let _ = syncer.join();
    // Everything acknowledged is published now; the checkpointer signs it and stops.
    drop(stop_tx);
    let _ = checkpointer.join();
}

/// The checkpointer thread: signs each growing tenant's tree once per interval and once at
/// stop (the start checkpoint is signed by [`run`] before it writes anything).
fn checkpoint_loop(inner: Arc<Inner>, mut last: LastWritten, stop: Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(inner.config.checkpoint_interval / 4)
    {
        sign_due(&inner, &mut last, false);
    }
    if !inner.crashed() {
        sign_due(&inner, &mut last, true);
    }
}

/// When the checkpointer last signed, and last persisted the tree state, per tenant.
#[derive(Default)]
struct LastWritten {
    signed: HashMap<String, Instant>,
    tree_state: HashMap<String, Instant>,
}

/// Persists a tenant's tree state at a signed size when it is due (every
/// `tree_state_interval`, and at start and stop), so that a start replays only the leaves
/// after it. Off the acknowledgement path; a failure costs only a longer replay.
fn save_tree_state(
    inner: &Inner,
    last: &mut HashMap<String, Instant>,
    log: &TenantLog,
    size: u64,
    root: Hash,
    force: bool,
) {
    if size == 0 || log.tree_state_size() == size {
        return;
    }
    let due = force
        || last
            .get(log.name())
            .is_none_or(|t| t.elapsed() >= inner.config.tree_state_interval);
    if !due || inner.crashed() {
        return;
    }
    match log.write_tree_state(size, root) {
        Ok(()) => {
            last.insert(log.name().to_string(), Instant::now());
        }
        Err(e) => tracing::warn!(
            tenant = log.name(),
            "persisting the tree state failed (the next start replays more leaves): {e}"
        ),
    }
}

fn fail_all(replies: Vec<(Reply, Result<Vec<Appended>, AppendError>)>, reason: &str) {
    for (reply, _) in replies {
        let _ = reply.send(Err(AppendError::Unavailable(reason.to_string())));
    }
}

/// Stops the log after a failed write or fsync. The kernel may have dropped the dirty pages,
/// so the tail on disk is unknown: no more writes until a restart has run recovery.
fn fail_log(inner: &Inner, e: &StoreError) -> String {
    tracing::error!("write failed, the log stops accepting events until a restart: {e}");
    let reason = format!(
        "{}; the server must be restarted to recover the log",
        e.summary()
    );
    inner.failed.lock().get_or_insert(reason).clone()
}

/// Writer steps for one group. The crash points:
fn write_group(inner: &Inner, group: Vec<Job>, number: u64) -> Option<Written> {
    if inner.crashed() {
        return None; // the replies are dropped unanswered, as by a dead process
    }
    let started = Instant::now();
    let (events, replies): (Vec<_>, Vec<_>) =
        group.into_iter().map(|j| (j.events, j.reply)).unzip();
    if let Some(reason) = inner.failed.lock().clone() {
        fail_all(
            replies.into_iter().map(|r| (r, Ok(Vec::new()))).collect(),
            &reason,
        );
        return None;
    }
    forget_published(inner);

    // 1. Sequence. Each request is all-or-nothing: its events are staged, and unstaged again
    //    if one of them reuses an id with different content. Nothing has touched disk yet.
    let mut staged: BTreeMap<String, Staged> = BTreeMap::new();
    let mut results = Vec::with_capacity(events.len());
    for request in &events {
        results.push(stage_request(inner, &mut staged, request));
    }
    let replies: Vec<_> = replies.into_iter().zip(results).collect();

    // 2. Write. The frames and leaf entries reach the page cache, not yet the disk; a crash
    //    now leaves a tail that recovery keeps if whole or cuts if torn. Nothing of it is
    //    acknowledged, so nothing acknowledged is lost.
    //
    //    A write that fails (a full disk, EIO) is undone: every tenant this group wrote is
    //    cut back to where the group began, so the files hold exactly what was written
    //    before, and the log goes on with the next request: once the disk works again,
    //    writing resumes without a restart. Only if the cut itself fails is the tail unknown;
    //    then the log stops until recovery has run.
    let mut tenants = Vec::new();
    let mut marks = Vec::new();
    for s in staged.into_values().filter(|s| !s.leaves.is_empty()) {
        marks.push(WriteMark::take(&s.log));
        match write_tenant(inner, s, number) {
            Ok(t) => tenants.push(t),
            Err(WriteFailure::Crash) => return None,
            Err(WriteFailure::Sync(e)) => {
                let reason = fail_log(inner, &e);
                fail_all(replies, &reason);
                return None;
            }
            Err(WriteFailure::Io(e)) => {
                let reason = match undo_writes(&marks, number) {
                    Ok(()) => {
                        crate::throttled_error!(
                            "write_undone",
                            "a write failed and was undone (writing resumes once the disk works again): {e}"
                        );
                        *inner.write_trouble.lock() = Some(e.summary());
                        format!(
                            "{}; nothing of this request was stored; retry (writing resumes once the disk works again)",
                            e.summary()
                        )
                    }
                    Err(cut) => fail_log(inner, &cut),
                };
                fail_all(replies, &reason);
                return None;
            }
        }
    }
    if faults::crashes_at(inner.faults(), FaultPoint::BeforeSync) {
        return None;
    }
    inner.write_trouble.lock().take();
    Some(Written {
        number,
        started,
        tenants,
        replies,
    })
}

/// Why writing a tenant's part of a group stopped.
enum WriteFailure {
    /// The write failed; what it left behind must be cut.
    Io(StoreError),
    /// An fsync failed: what is durable is unknown, so the log stops until recovery.
    Sync(StoreError),
    /// A simulated crash: stop dead.
    Crash,
}

impl From<StoreError> for WriteFailure {
    fn from(e: StoreError) -> Self {
        WriteFailure::Io(e)
    }
}

/// Where a tenant's files ended before a group wrote to them: what a failed write is cut
/// back to.
struct WriteMark {
    log: Arc<TenantLog>,
    segment_start: u64,
    segment_len: u64,
    next_index: u64,
}

impl WriteMark {
    fn take(log: &Arc<TenantLog>) -> WriteMark {
        let w = log.writer.lock();
        WriteMark {
            log: log.clone(),
            segment_start: w.segment_start,
            segment_len: w.segment_len,
            next_index: w.next_index,
        }
    }
}

/// Cuts every tenant a failed group wrote back to its mark, and forgets the group's ids.
/// A segment started by the group stays, cut to nothing: the writer goes on in it.
fn undo_writes(marks: &[WriteMark], number: u64) -> Result<(), StoreError> {
    for m in marks {
        let mut w = m.log.writer.lock();
        let segment_len = if w.segment_start == m.segment_start {
            m.segment_len
        } else {
            0
        };
        let path = m.log.dir.segment_path(w.segment_start);
        w.segment
            .truncate(segment_len)
            .map_err(|e| StoreError::io(&path, e))?;
        w.segment_len = segment_len;
        let leaves_path = m.log.dir.leaves_path();
        w.leaves
            .truncate(m.next_index * crate::frame::LEAF_ENTRY as u64)
            .map_err(|e| StoreError::io(&leaves_path, e))?;
        w.next_index = m.next_index;
        if w.inflight_groups.back().is_some_and(|(n, _)| *n == number) {
            let (_, ids) = w.inflight_groups.pop_back().expect("checked");
            for id in ids {
                w.inflight.remove(&id);
            }
        }
    }
    Ok(())
}

/// Appends `bytes` to `file`. A failure may leave a prefix behind, which the caller cuts.
fn append(
    inner: &Inner,
    file: &dyn StoredFile,
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<(), WriteFailure> {
    file.append(bytes).map_err(|e| failure(inner, path, e))
}

/// What an I/O error on the write path means: a simulated crash (tests) stops dead, anything
/// else is a failed write.
fn failure(inner: &Inner, path: &std::path::Path, e: std::io::Error) -> WriteFailure {
    if inner.crashed() {
        WriteFailure::Crash
    } else {
        WriteFailure::Io(StoreError::io(path, e))
    }
}

/// Writes one tenant's part of a group and records its ids as in flight.
fn write_tenant(inner: &Inner, s: Staged, number: u64) -> Result<WrittenTenant, WriteFailure> {
    let mut w = s.log.writer.lock();
    if w.segment_len > 0 && w.segment_len + s.frames.len() as u64 > inner.config.segment_bytes {
        roll_segment(inner, &s.log, &mut w)?;
    }
    debug_assert_eq!(w.end_offset(), s.first_offset);
    debug_assert_eq!(w.next_index, s.first_index);
    let path = s.log.dir.segment_path(w.segment_start);
    // The length counts only once the whole write is in: a failed one is cut back.
    append(inner, &*w.segment, &s.frames, &path)?;
    w.segment_len += s.frames.len() as u64;
    let leaves_path = s.log.dir.leaves_path();
    append(inner, &*w.leaves, &s.entries, &leaves_path)?;
    w.next_index += s.leaves.len() as u64;
    for (&id, &(index, start, _)) in &s.pending {
        w.inflight
            .insert(id, (index, s.first_offset + start as u64));
    }
    let ids = s.leaves.iter().map(|l| l.1).collect();
    w.inflight_groups.push_back((number, ids));
    Ok(WrittenTenant {
        log: s.log.clone(),
        segment: w.segment.clone(),
        first_index: s.first_index,
        leaves: s.leaves,
        end_offset: s.first_offset + s.frames.len() as u64,
    })
}

/// Drops in-flight ids of groups the syncer has published (they are in the id map now).
fn forget_published(inner: &Inner) {
    let published = inner.published_group.load(Ordering::Acquire);
    for log in inner.tenant_logs() {
        let mut w = log.writer.lock();
        while w
            .inflight_groups
            .front()
            .is_some_and(|(n, _)| *n <= published)
        {
            let (_, ids) = w.inflight_groups.pop_front().expect("checked");
            for id in ids {
                w.inflight.remove(&id);
            }
        }
    }
}

/// Stages one request's events, or none of them.
fn stage_request(
    inner: &Inner,
    staged: &mut BTreeMap<String, Staged>,
    events: &[PreparedEvent],
) -> Result<Vec<Appended>, AppendError> {
    // Lengths to roll back to if the request is refused.
    let mut marks: Vec<(String, usize, usize, usize)> = Vec::new();
    // Positions of the events staged so far, to unstage them if the request is refused.
    let mut added: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(events.len());
    let mut refused = None;
    let mut created_tenants: Vec<String> = Vec::new();
    for (position, event) in events.iter().enumerate() {
        if !staged.contains_key(&event.tenant) {
            let log = match inner.tenant_or_create(&event.tenant) {
                Ok((log, created)) => {
                    if created {
                        created_tenants.push(event.tenant.clone());
                    }
                    log
                }
                Err(e) => {
                    crate::throttled_error!(
                        "create_tenant",
                        "creating tenant {}'s log failed: {e}",
                        event.tenant
                    );
                    refused = Some(AppendError::Unavailable(e.summary()));
                    break;
                }
            };
            let (first_index, first_offset) = {
                let w = log.writer.lock();
                (w.next_index, w.end_offset())
            };
            staged.insert(
                event.tenant.clone(),
                Staged {
                    log,
                    first_index,
                    first_offset,
                    frames: Vec::new(),
                    entries: Vec::new(),
                    leaves: Vec::new(),
                    pending: HashMap::new(),
                },
            );
        }
        let s = staged.get_mut(&event.tenant).expect("staged above");
        if !marks.iter().any(|m| m.0 == event.tenant) {
            marks.push((
                event.tenant.clone(),
                s.frames.len(),
                s.entries.len(),
                s.leaves.len(),
            ));
        }
        let id = event.id.as_u128();
        if event.id_supplied {
            // A retry of a stored event (published, written and syncing, or earlier in this
            // group): answer with the original index, store nothing.
            let existing = match s.log.lookup(&event.id) {
                Err(e) => Some(Err(e)),
                Ok(Some(index)) => Some(s.log.record(index).map(|r| (index, r))),
                Ok(None) => {
                    let inflight = s.log.writer.lock().inflight.get(&id).copied();
                    match inflight {
                        Some((index, offset)) => {
                            Some(s.log.written_record(index, offset).map(|r| (index, r)))
                        }
                        None => s.pending.get(&id).map(|&(index, start, len)| {
                            let stored =
                                s.frames[start + crate::frame::FRAME_HEADER..start + len].to_vec();
                            s.log.open_stored(index, stored).map(|r| (index, r))
                        }),
                    }
                }
            };
            match existing {
                None => {}
                Some(Err(e)) => {
                    crate::throttled_error!(
                        "id_lookup",
                        "looking up a retried event id failed: {e}"
                    );
                    refused = Some(AppendError::Unavailable(e.summary()));
                    break;
                }
                Some(Ok((index, stored))) => {
                    // A record stored before the log's sealer was set is compared with the
                    // retry as it was before sealing (the client's content either way).
                    let candidate = match &event.unsealed {
                        Some(unsealed) if stored.starts_with(br#"{"schema_version":1,"#) => {
                            unsealed
                        }
                        _ => &event.record,
                    };
                    if !tally_event::same_submission(&stored, candidate) {
                        refused = Some(AppendError::Conflict {
                            position,
                            id: event.id,
                            index,
                        });
                        break;
                    }
                    out.push(Appended {
                        tenant: event.tenant.clone(),
                        id: event.id,
                        index,
                        duplicate: true,
                    });
                    continue;
                }
            }
        }
        let index = s.next_index();
        let frame_start = s.frames.len();
        encode_frame_with_crc(&mut s.frames, index, event.stored(), event.record_crc);
        LeafEntry {
            hash: event.leaf_hash,
            offset: s.first_offset + frame_start as u64,
            id,
        }
        .encode(&mut s.entries);
        s.leaves.push((event.leaf_hash, id));
        s.pending
            .insert(id, (index, frame_start, s.frames.len() - frame_start));
        added.push(position);
        out.push(Appended {
            tenant: event.tenant.clone(),
            id: event.id,
            index,
            duplicate: false,
        });
    }
    if let Some(e) = refused {
        for (tenant, frames, entries, leaves) in marks {
            let s = staged.get_mut(&tenant).expect("marked tenants are staged");
            s.frames.truncate(frames);
            s.entries.truncate(entries);
            s.leaves.truncate(leaves);
        }
        for position in added {
            let event = &events[position];
            if let Some(s) = staged.get_mut(&event.tenant) {
                s.pending.remove(&event.id.as_u128());
            }
        }
        // A tenant this request brought into being has no events from anyone else yet.
        for tenant in created_tenants {
            staged.remove(&tenant);
            if let Err(err) = inner.forget_empty_tenant(&tenant) {
                tracing::warn!(
                    tenant,
                    "could not remove the empty log of a refused request: {err}"
                );
            }
        }
        return Err(e);
    }
    Ok(out)
}

/// Starts a new segment at the current end offset.
fn roll_segment(inner: &Inner, log: &TenantLog, w: &mut TenantWriter) -> Result<(), WriteFailure> {
    let start = w.end_offset();
    let path = log.dir.segment_path(start);
    // The old segment is synced before the new one exists, so recovery never sees a later
    // segment whose predecessor is missing data.
    w.segment.sync().map_err(|e| {
        match failure(inner, &log.dir.segment_path(w.segment_start), e) {
            WriteFailure::Io(e) => WriteFailure::Sync(e),
            other => other,
        }
    })?;
    let file = inner
        .storage
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| failure(inner, &path, e))?;
    let segments = log.dir.segments_path();
    inner
        .storage
        .sync_dir(&segments)
        .map_err(|e| failure(inner, &segments, e))?;
    log.state.write().segments.push(crate::tenant::Segment {
        start,
        file: file.clone(),
    });
    w.segment = file;
    w.segment_start = start;
    w.segment_len = 0;
    Ok(())
}

/// The syncer thread: fsync, publish, acknowledge.
fn sync_loop(inner: Arc<Inner>, rx: Receiver<Written>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        sync_and_publish(&inner, batch);
    }
}

/// Syncer steps for written groups, oldest first. The crash points:
fn sync_and_publish(inner: &Inner, batch: Vec<Written>) {
    if inner.crashed() {
        return;
    }
    if let Some(reason) = inner.failed.lock().clone() {
        for w in batch {
            fail_all(w.replies, &reason);
        }
        return;
    }
    // 3. Fsync every segment the groups wrote: one fsync per file, however many groups and
    //    requests it holds. A crash before it returns loses nothing acknowledged.
    let fsync_started = Instant::now();
    let mut synced: Vec<*const ()> = Vec::new();
    let mut result = Ok(());
    'sync: for w in &batch {
        for t in &w.tenants {
            let file = Arc::as_ptr(&t.segment).cast::<()>();
            if synced.contains(&file) {
                continue;
            }
            if let Err(e) = t.segment.sync() {
                if inner.crashed() {
                    return;
                }
                result = Err(StoreError::io(&t.log.dir.segments_path(), e));
                break 'sync;
            }
            synced.push(file);
        }
    }
    if let Err(e) = result {
        let reason = fail_log(inner, &e);
        for w in batch {
            fail_all(w.replies, &reason);
        }
        return;
    }
    inner
        .metrics
        .fsync_seconds
        .observe(fsync_started.elapsed().as_secs_f64());

    // 4. Publish, then 5. acknowledge. Durable but not yet acknowledged: a crash here loses
    //    nothing acknowledged, and a client retrying with the same ids is answered from the
    //    id map after restart.
    if faults::crashes_at(inner.faults(), FaultPoint::BeforePublish) {
        return;
    }
    for w in batch {
        let mut total = 0u64;
        for t in &w.tenants {
            let mut state = t.log.state.write();
            let st = &mut *state;
            debug_assert_eq!(st.size, t.first_index);
            // The ids go to the newest in-memory generation; the indexer thread moves them
            // to the on-disk index later (a crash before that loses nothing: recovery
            // catches the index up from `leaves`).
            if st.recent.is_empty() {
                let size = st.size;
                st.recent.push_back((size, Default::default()));
            }
            let (_, recent) = st.recent.back_mut().expect("ensured above");
            for (i, (hash, id)) in t.leaves.iter().enumerate() {
                push_leaf(&mut st.frontier, &mut st.upper, *hash);
                recent.insert(*id, t.first_index + i as u64);
            }
            st.size += t.leaves.len() as u64;
            t.log.published_up_to(t.end_offset);
            total += t.leaves.len() as u64;
            inner
                .metrics
                .tree_size
                .get_or_create(&vec![("tenant".to_string(), t.log.name().to_string())])
                .set(st.size as i64);
        }
        inner.published_group.store(w.number, Ordering::Release);
        inner.growth.notify();
        if faults::crashes_at(inner.faults(), FaultPoint::BeforeAcknowledge) {
            return;
        }
        inner.metrics.events.inc_by(total);
        inner.metrics.groups.inc();
        inner.metrics.group_events.observe(total as f64);
        inner
            .metrics
            .commit_seconds
            .observe(w.started.elapsed().as_secs_f64());
        for (reply, result) in w.replies {
            let _ = reply.send(result);
        }
    }
}

/// Signs a checkpoint for every tenant that grew, at most once per interval unless `force`.
fn sign_due(inner: &Inner, last: &mut LastWritten, force: bool) {
    if inner.failed.lock().is_some() || inner.crashed() {
        return;
    }
    let interval = inner.config.checkpoint_interval;
    for log in inner.tenant_logs() {
        let due = force
            || last
                .signed
                .get(log.name())
                .is_none_or(|t| t.elapsed() >= interval);
        if !due {
            continue;
        }
        let (size, root, current) = {
            let state = log.read_state();
            (
                state.size,
                state.frontier.root(),
                state.checkpoint.as_ref().map(|c| (c.size, c.root)),
            )
        };
        // An empty log needs no checkpoint (and a tenant created for a request that is then
        // refused must be removable without a checkpoint in its directory).
        if current.map(|c| c.0) == Some(size) || size == 0 {
            if let Some((size, root)) = current {
                save_tree_state(inner, &mut last.tree_state, &log, size, root, force);
            }
            continue;
        }
        match sign_checkpoint(inner, &log, size, root) {
            Ok(()) => {}
            // Reported by the signer (or the undone write) and retried at a later tick;
            // acknowledgements go on.
            Err(CheckpointFailure::Retry) => continue,
            Err(CheckpointFailure::Stop) => return,
            Err(CheckpointFailure::Fatal(e)) => {
                fail_log(inner, &e);
                return;
            }
        }
        last.signed.insert(log.name().to_string(), Instant::now());
        save_tree_state(inner, &mut last.tree_state, &log, size, root, force);
    }
}

/// Signs and durably records one checkpoint, then publishes it. A crash before the fsync
/// returns leaves at most a torn last checkpoint frame, which recovery cuts; the tree it
/// described is durable already, so the next start signs it again.
fn sign_checkpoint(
    inner: &Inner,
    log: &TenantLog,
    size: u64,
    root: Hash,
) -> Result<(), CheckpointFailure> {
    // The entries this checkpoint covers must be durable before it is: recovery trusts the
    // leaves file up to the last checkpoint's size. Every published entry was written by the
    // writer thread before its group reached this thread.
    let leaves_path = log.dir.leaves_path();
    log.leaves_handle()
        .sync()
        .map_err(|e| sync_failure(inner, &leaves_path, e))?;
    let body = Checkpoint {
        origin: log.origin().to_string(),
        size,
        root,
        extensions: Vec::new(),
    }
    .to_body();
    let note = match inner.signer.sign(&body) {
        Ok(note) => note,
        Err(StoreError::Signer(_)) => return Err(CheckpointFailure::Retry),
        Err(e) => return Err(e.into()),
    };
    {
        let file = log.checkpoints.lock();
        let path = log.dir.checkpoints_path();
        let before = file.len().map_err(|e| StoreError::io(&path, e))?;
        let frame = encode_checkpoint_frame(&note);
        match append(inner, &**file, &frame, &path) {
            Ok(()) => {}
            Err(WriteFailure::Crash) => return Err(CheckpointFailure::Stop),
            Err(WriteFailure::Sync(e)) => return Err(CheckpointFailure::Fatal(e)),
            // Cut what the failed write left and sign again at a later tick: the tree is
            // durable, only its signature is late. If the cut fails, the file's tail is
            // unknown and the log stops.
            Err(WriteFailure::Io(e)) => {
                file.truncate(before)
                    .map_err(|e| sync_failure(inner, &path, e))?;
                crate::throttled_error!(
                    "checkpoint_write_undone",
                    tenant = log.name(),
                    "writing a checkpoint failed and was undone: {e}; signing again later"
                );
                *inner.checkpoint_trouble.lock() = Some(e.summary());
                return Err(CheckpointFailure::Retry);
            }
        }
        file.sync().map_err(|e| sync_failure(inner, &path, e))?;
    }
    // A checkpoint append went through again.
    inner.checkpoint_trouble.lock().take();
    let signed = SignedCheckpoint { size, root, note };
    log.state.write().checkpoint = Some(signed.clone());
    inner.metrics.checkpoints.inc();
    // Subscribers (the WORM anchor) copy it elsewhere; nobody listening is not an error.
    let _ = inner.checkpoint_events.send(CheckpointEvent {
        tenant: log.name().to_string(),
        checkpoint: signed,
    });
    Ok(())
}

/// Why a checkpoint was not signed.
enum CheckpointFailure {
    /// Try again at a later tick (the signer is down, or appending the note failed and was
    /// undone); acknowledgements go on meanwhile.
    Retry,
    /// A failed fsync: the log stops until a restart.
    Fatal(StoreError),
    /// A simulated crash.
    Stop,
}

impl From<StoreError> for CheckpointFailure {
    fn from(e: StoreError) -> Self {
        CheckpointFailure::Fatal(e)
    }
}

/// What a failed sync (or cut) while checkpointing means: a simulated crash stops dead; a
/// real failure stops the log until a restart.
fn sync_failure(inner: &Inner, path: &std::path::Path, e: std::io::Error) -> CheckpointFailure {
    if inner.crashed() {
        CheckpointFailure::Stop
    } else {
        CheckpointFailure::Fatal(StoreError::io(path, e))
    }
}
