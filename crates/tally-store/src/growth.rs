//! Growth notifications: followers of the log (the consumers) sleep until a tenant's log
//! grows, instead of polling.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Bumped by the sequencer each time it publishes records.
#[derive(Debug, Default)]
pub(crate) struct GrowthSignal {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl GrowthSignal {
    /// Wakes every follower.
    pub(crate) fn notify(&self) {
        *self.generation.lock() += 1;
        self.changed.notify_all();
    }
}

/// A follower's subscription, from [`crate::Log::subscribe_growth`]: remembers the last
/// growth it has seen.
#[derive(Debug)]
pub struct Growth {
    signal: Arc<GrowthSignal>,
    seen: u64,
}

impl Growth {
    pub(crate) fn new(signal: Arc<GrowthSignal>) -> Self {
        let seen = *signal.generation.lock();
        Growth { signal, seen }
    }

    /// Blocks until some tenant's log has grown since the last call (or since subscribing),
    /// or until `timeout` passes. Returns whether it grew. Spurious `true`s are possible
    /// (after [`Growth::wake_all`]): the caller re-reads the sizes it cares about.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let mut generation = self.signal.generation.lock();
        if *generation == self.seen {
            let _ = self.signal.changed.wait_for(&mut generation, timeout);
        }
        let grew = *generation != self.seen;
        self.seen = *generation;
        grew
    }

    /// Wakes every follower of this log, as if it had grown: for stopping followers that
    /// sleep in [`Growth::wait`].
    pub fn wake_all(&self) {
        self.signal.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wait_returns_at_the_next_growth_and_only_once_per_growth() {
        let signal = Arc::new(GrowthSignal::default());
        let mut growth = Growth::new(signal.clone());
        assert!(!growth.wait(Duration::from_millis(10)));
        let notifier = signal.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            notifier.notify();
        });
        let started = Instant::now();
        assert!(growth.wait(Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(60));
        t.join().unwrap();
        // Seen: the next wait times out.
        assert!(!growth.wait(Duration::from_millis(10)));
        // Growth before the wait is not missed.
        signal.notify();
        assert!(growth.wait(Duration::from_millis(10)));
    }
}
