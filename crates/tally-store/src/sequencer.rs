//! The sequencer: the one thread that writes the log.
//!
//! It owns every [`TenantWriter`], assigns leaf indexes, makes groups of requests durable with
//! one fsync per touched file (group commit), publishes them to readers, and signs
//! checkpoints. Architecture Invariant: only the sequencer advances a tree or a checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use tally_tlog::{checkpoint::Checkpoint, Hash};
use tokio::sync::oneshot;

use crate::error::{AppendError, StoreError};
use crate::frame::{encode_frame, LeafEntry};
use crate::layout;
use crate::log::{Appended, Inner, PreparedEvent};
use crate::tenant::{encode_checkpoint_frame, push_leaf, SignedCheckpoint, TenantLog};

/// A request waiting for the sequencer.
pub(crate) struct Job {
    pub(crate) events: Vec<PreparedEvent>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
}

/// What one group will write to one tenant.
struct Staged {
    log: Arc<TenantLog>,
    first_index: u64,
    first_offset: u64,
    frames: Vec<u8>,
    entries: Vec<u8>,
    leaves: Vec<(Hash, u128)>,
    /// Ids assigned in this group, so a retry inside the same group is recognised.
    pending: HashMap<u128, (u64, usize, usize)>,
}

impl Staged {
    fn next_index(&self) -> u64 {
        self.first_index + self.leaves.len() as u64
    }
}

/// Runs until every sender is dropped, then signs final checkpoints and returns.
pub(crate) fn run(inner: Arc<Inner>, rx: Receiver<Job>) {
    let mut last_signed: HashMap<String, Instant> = HashMap::new();
    let interval = inner.config.checkpoint_interval;
    // A checkpoint right away covers whatever recovery found beyond the last signed one.
    sign_due(&inner, &mut last_signed, true);
    loop {
        let job = match rx.recv_timeout(interval) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                sign_due(&inner, &mut last_signed, false);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
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
        commit_group(&inner, group);
        sign_due(&inner, &mut last_signed, false);
    }
    sign_due(&inner, &mut last_signed, true);
}

/// Makes a group of requests durable and acknowledges them. The crash points:
fn commit_group(inner: &Inner, group: Vec<Job>) {
    if let Some(reason) = inner.failed.lock().clone() {
        for job in group {
            let _ = job
                .reply
                .send(Err(AppendError::Unavailable(reason.clone())));
        }
        return;
    }
    let started = Instant::now();

    // 1. Sequence. Each request is all-or-nothing: its events are staged, and unstaged again
    //    if one of them reuses an id with different content. Nothing has touched disk yet.
    let mut staged: BTreeMap<String, Staged> = BTreeMap::new();
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        match stage_request(inner, &mut staged, &job.events) {
            Ok(result) => replies.push((job.reply, Ok(result))),
            Err(e) => replies.push((job.reply, Err(e))),
        }
    }

    // 2. Write and fsync. A crash before the fsync returns leaves a tail that recovery keeps
    //    if whole or cuts if torn; nothing of it was acknowledged, so nothing acknowledged is
    //    lost. Only the segments are synced here: leaf entries are derived data, synced before
    //    each checkpoint, and recovery re-derives the ones after the last checkpoint.
    let write = || -> Result<(), StoreError> {
        for s in staged.values().filter(|s| !s.leaves.is_empty()) {
            let mut w = s.log.writer.lock();
            if w.segment_len > 0
                && w.segment_len + s.frames.len() as u64 > inner.config.segment_bytes
            {
                roll_segment(&s.log, &mut w)?;
            }
            debug_assert_eq!(w.end_offset(), s.first_offset);
            let path = s.log.dir.segment_path(w.segment_start);
            w.segment
                .write_all(&s.frames)
                .map_err(|e| StoreError::io(&path, e))?;
            w.segment_len += s.frames.len() as u64;
            let leaves_path = s.log.dir.leaves_path();
            w.leaves
                .write_all(&s.entries)
                .map_err(|e| StoreError::io(&leaves_path, e))?;
        }
        let fsync_started = Instant::now();
        for s in staged.values().filter(|s| !s.leaves.is_empty()) {
            let w = s.log.writer.lock();
            w.segment
                .sync_data()
                .map_err(|e| StoreError::io(&s.log.dir.segment_path(w.segment_start), e))?;
        }
        inner
            .metrics
            .fsync_seconds
            .observe(fsync_started.elapsed().as_secs_f64());
        Ok(())
    };
    if let Err(e) = write() {
        // After a failed write or fsync the kernel may have dropped the dirty pages, so the
        // tail on disk is unknown: stop accepting writes; a restart runs recovery.
        let reason = format!("{e}; restart the server to recover the log");
        tracing::error!("write failed, the log stops accepting events: {reason}");
        *inner.failed.lock() = Some(reason.clone());
        for (reply, _) in replies {
            let _ = reply.send(Err(AppendError::Unavailable(reason.clone())));
        }
        return;
    }

    // 3. Publish. Durable, not yet acknowledged: a crash here loses no acknowledged event, and
    //    a client retrying with the same ids is answered from the id map after restart.
    let mut total = 0u64;
    for s in staged.values().filter(|s| !s.leaves.is_empty()) {
        let mut state = s.log.state.write();
        let st = &mut *state;
        for (i, (hash, id)) in s.leaves.iter().enumerate() {
            push_leaf(&mut st.frontier, &mut st.upper, *hash);
            st.ids.insert(*id, s.first_index + i as u64);
        }
        st.size += s.leaves.len() as u64;
        total += s.leaves.len() as u64;
        inner
            .metrics
            .tree_size
            .get_or_create(&vec![("tenant".to_string(), s.log.name().to_string())])
            .set(st.size as i64);
    }
    inner.metrics.events.inc_by(total);
    inner.metrics.groups.inc();
    inner.metrics.group_events.observe(total as f64);
    inner
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());

    // 4. Acknowledge.
    for (reply, result) in replies {
        let _ = reply.send(result);
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
    let mut added_ids: Vec<(String, u128)> = Vec::new();
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
                    refused = Some(AppendError::Unavailable(e.to_string()));
                    break;
                }
            };
            let (first_index, first_offset) = {
                let w = log.writer.lock();
                (log.size(), w.end_offset())
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
        // A retry of a stored event: answer with the original index, store nothing.
        let existing = if event.id_supplied {
            s.log
                .lookup(&event.id)
                .map(|index| (index, None))
                .or_else(|| {
                    s.pending
                        .get(&id)
                        .map(|&(index, start, len)| (index, Some((start, len))))
                })
        } else {
            None
        };
        if let Some((index, pending_at)) = existing {
            let same = match pending_at {
                Some((start, len)) => {
                    let frame = &s.frames[start..start + len];
                    tally_event::same_submission(
                        &frame[crate::frame::FRAME_HEADER..],
                        &event.record,
                    )
                }
                None => match s.log.record(index) {
                    Ok(stored) => tally_event::same_submission(&stored, &event.record),
                    Err(e) => {
                        refused = Some(AppendError::Unavailable(e.to_string()));
                        break;
                    }
                },
            };
            if !same {
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
        let index = s.next_index();
        let frame_start = s.frames.len();
        encode_frame(&mut s.frames, index, &event.record);
        LeafEntry {
            hash: event.leaf_hash,
            offset: s.first_offset + frame_start as u64,
            id,
        }
        .encode(&mut s.entries);
        s.leaves.push((event.leaf_hash, id));
        s.pending
            .insert(id, (index, frame_start, s.frames.len() - frame_start));
        added_ids.push((event.tenant.clone(), id));
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
        for (tenant, id) in added_ids {
            staged.get_mut(&tenant).expect("staged").pending.remove(&id);
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
fn roll_segment(log: &TenantLog, w: &mut crate::tenant::TenantWriter) -> Result<(), StoreError> {
    let start = w.end_offset();
    let path = log.dir.segment_path(start);
    // The old segment is synced before the new one exists, so recovery never sees a later
    // segment whose predecessor is missing data.
    w.segment
        .sync_data()
        .map_err(|e| StoreError::io(&log.dir.segment_path(w.segment_start), e))?;
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    layout::sync_dir(&log.dir.segments_path())?;
    let reader = std::fs::File::open(&path).map_err(|e| StoreError::io(&path, e))?;
    log.state.write().segments.push(crate::tenant::Segment {
        start,
        file: Arc::new(reader),
    });
    w.segment = file;
    w.segment_start = start;
    w.segment_len = 0;
    Ok(())
}

/// Signs a checkpoint for every tenant that grew, at most once per interval unless `force`.
fn sign_due(inner: &Inner, last_signed: &mut HashMap<String, Instant>, force: bool) {
    if inner.failed.lock().is_some() {
        return;
    }
    let interval = inner.config.checkpoint_interval;
    for log in inner.tenant_logs() {
        let due = force
            || last_signed
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
                state.checkpoint.as_ref().map(|c| c.size),
            )
        };
        if current == Some(size) {
            continue;
        }
        if let Err(e) = sign_checkpoint(inner, &log, size, root) {
            let reason = format!("{e}; restart the server to recover the log");
            tracing::error!("checkpoint write failed, the log stops accepting events: {reason}");
            *inner.failed.lock() = Some(reason);
            return;
        }
        last_signed.insert(log.name().to_string(), Instant::now());
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
) -> Result<(), StoreError> {
    let body = Checkpoint {
        origin: log.origin().to_string(),
        size,
        root,
        extensions: Vec::new(),
    }
    .to_body();
    let note = inner
        .signer
        .sign(&body)
        .map_err(|e| StoreError::Key(e.to_string()))?;
    {
        let mut w = log.writer.lock();
        // The entries this checkpoint covers must be durable before it is: recovery trusts
        // the leaves file up to the last checkpoint's size.
        w.leaves
            .sync_data()
            .map_err(|e| StoreError::io(&log.dir.leaves_path(), e))?;
        let path = log.dir.checkpoints_path();
        w.checkpoints
            .write_all(&encode_checkpoint_frame(&note))
            .map_err(|e| StoreError::io(&path, e))?;
        w.checkpoints
            .sync_data()
            .map_err(|e| StoreError::io(&path, e))?;
    }
    log.state.write().checkpoint = Some(SignedCheckpoint { size, root, note });
    inner.metrics.checkpoints.inc();
    Ok(())
}
