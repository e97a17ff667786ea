//! The projector: a thread that tails every tenant's log and feeds the search index.
//!
//! Architecture Invariant: data flows one way, log → index. The projector only reads the log;
//! the index can be deleted at any time and is rebuilt from the log here (on start, a tenant
//! whose index is missing starts from 0; one reported corrupt is cleared first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tally_index::{EventIndex, IndexError, IndexedEvent};
use tally_store::{Log, TenantLog};

/// Records read from the log per step.
const CHUNK: u64 = 4096;

/// Handle of the running projector; stops it when dropped.
pub struct Projector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Projector {
    /// Starts tailing `log` into `index`, committing at least every `commit_interval` while
    /// there is new data (which bounds the index lag). `on_commit` runs after each commit.
    pub fn spawn(
        log: Log,
        index: Arc<dyn EventIndex>,
        commit_interval: Duration,
        on_commit: impl Fn() + Send + 'static,
    ) -> Projector {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tally-projector".into())
            .spawn(move || run(&log, &*index, commit_interval, &thread_stop, &on_commit))
            .expect("spawning the projector thread");
        Projector {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after committing what was added, and waits.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a tenant's projection stands: the next leaf index to add.
fn start_position(index: &dyn EventIndex, tenant: &str) -> Result<u64, IndexError> {
    match index.indexed(tenant) {
        Err(IndexError::Corrupt(detail)) => {
            tracing::warn!(
                tenant,
                "the search index is damaged ({detail}); rebuilding it from the log"
            );
            index.clear(tenant)?;
            Ok(0)
        }
        other => other,
    }
}

/// Indexes whatever each tenant's log has beyond the projection; returns whether it added.
fn step(
    log: &Log,
    index: &dyn EventIndex,
    next: &mut HashMap<String, u64>,
) -> Result<bool, IndexError> {
    let mut added = false;
    for tenant in log.tenants() {
        let Some(tlog) = log.tenant(&tenant) else {
            continue;
        };
        let pos = match next.get(&tenant) {
            Some(&p) => p,
            None => {
                let p = start_position(index, &tenant)?;
                next.insert(tenant.clone(), p);
                p
            }
        };
        let size = tlog.size();
        if pos >= size {
            continue;
        }
        let count = (size - pos).min(CHUNK);
        add_records(&tlog, index, pos, count)?;
        next.insert(tenant, pos + count);
        added = true;
    }
    Ok(added)
}

/// Adds the tenant's records `[pos, pos + count)` to the index (not committed).
fn add_records(
    tlog: &TenantLog,
    index: &dyn EventIndex,
    pos: u64,
    count: u64,
) -> Result<(), IndexError> {
    let tenant = tlog.name();
    let records = tlog
        .records(pos, count)
        .map_err(|e| IndexError::Engine(format!("reading the log of {tenant}: {e}")))?;
    let events: Vec<IndexedEvent<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, record)| IndexedEvent {
            index: pos + i as u64,
            record,
        })
        .collect();
    index.add(tenant, &events)
}

/// Rebuilds a tenant's index from its log: clears it, adds the records `[0, upto)` (the
/// whole log when `upto` is `None` or beyond it) and commits, calling `progress` with the
/// number of records added after each chunk. Returns how many records were indexed.
///
/// The projector's own path, for `tally reindex` and benchmarks; no projector may run on
/// the same index meanwhile.
pub fn rebuild(
    tlog: &TenantLog,
    index: &dyn EventIndex,
    upto: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, IndexError> {
    // Larger than the projector's steps: nobody waits for a commit in between.
    const REBUILD_CHUNK: u64 = 8192;
    index.clear(tlog.name())?;
    let size = upto.map_or(tlog.size(), |u| u.min(tlog.size()));
    let mut pos = 0;
    while pos < size {
        let count = (size - pos).min(REBUILD_CHUNK);
        add_records(tlog, index, pos, count)?;
        pos += count;
        progress(count);
    }
    index.commit()?;
    Ok(size)
}

fn run(
    log: &Log,
    index: &dyn EventIndex,
    commit_interval: Duration,
    stop: &AtomicBool,
    on_commit: &dyn Fn(),
) {
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut uncommitted = false;
    let mut last_commit = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let added = if stopping {
            false
        } else {
            match step(log, index, &mut next) {
                Ok(added) => added,
                Err(e) => {
                    tracing::error!("search index update failed: {e}; retrying in a second");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        };
        uncommitted |= added;
        if uncommitted && (!added || stopping || last_commit.elapsed() >= commit_interval) {
            match index.commit() {
                Ok(()) => {
                    uncommitted = false;
                    last_commit = Instant::now();
                    on_commit();
                }
                Err(e) => {
                    tracing::error!("search index commit failed: {e}; retrying in a second");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        if stopping {
            return;
        }
        if !added {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
