//! The scrub: a background thread that re-reads and re-hashes every tenant's records on a
//! schedule, with the offline verifier's checks, so that damage inside the signed history
//! (a flipped bit on disk, a file changed behind the server's back) is reported long before
//! someone reads the damaged record.
//!
//! It reads the data directory read-only, at a bounded rate so ingest keeps the disk, and
//! reports what it finds through [`TenantLog::report_damage`](crate::TenantLog::damage)
//! (log line, `/healthz`, metrics). The tail being written while it runs is not damage: the
//! verifier reports an incomplete last frame as a torn write, which the scrub ignores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Damage;
use crate::log::Inner;
use crate::verify;

/// Runs scrubs every `interval` until `stop` is dropped.
pub(crate) fn run(inner: Arc<Inner>, interval: Duration, stop: Receiver<()>) {
    let stopping = AtomicBool::new(false);
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // A scrub of a large log takes a while: notice a shutdown in the middle of it.
        let watch = || {
            if matches!(
                stop.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Disconnected)
            ) {
                stopping.store(true, Ordering::Relaxed);
            }
            stopping.load(Ordering::Relaxed)
        };
        if !scrub_all(&inner, &watch) {
            return;
        }
    }
}

/// One scrub of every tenant. Returns false if it was stopped before the end.
pub(crate) fn scrub_all(inner: &Inner, stopping: &dyn Fn() -> bool) -> bool {
    let rate = inner.config.scrub_bytes_per_second.max(1);
    let started = Instant::now();
    let mut read = 0u64;
    for log in inner.tenant_logs() {
        if log.damage().is_some() {
            continue; // reported already; the operator has to restore it
        }
        let mut since_check = 0u64;
        let result = verify::verify_tenant_interruptible(
            &inner.dir,
            log.name(),
            &inner.verifier,
            &[],
            inner.config.at_rest.as_deref(),
            &mut |n| {
                read += n;
                since_check += n;
                inner.metrics.scrub_bytes.inc_by(n);
                // Throttle to the configured rate, checking for a shutdown about every MiB.
                if since_check < 1 << 20 {
                    return true;
                }
                since_check = 0;
                let due = Duration::from_secs_f64(read as f64 / rate as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(ahead.min(Duration::from_millis(200)));
                }
                !stopping()
            },
        );
        if stopping() {
            return false;
        }
        if let Err(f) = result {
            log.report_damage(Damage {
                tenant: f.tenant,
                index: f.index,
                detail: f.detail,
                found_by: "the scrub".into(),
            });
        }
    }
    inner.metrics.scrub_runs.inc();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    inner.metrics.scrub_last_completed.set(now as i64);
    true
}
