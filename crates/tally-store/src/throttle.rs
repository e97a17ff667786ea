//! Repeated log lines, throttled. A failing disk or a flood of refused requests must not write
//! one line per request: on a full disk those lines fill the same disk faster, and a screen of
//! identical errors hides the first one, which says what happened.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Admits the first line of each kind, then at most one per `every`, counting the ones it
/// held back so that the next admitted line can say how many there were.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    kinds: Mutex<BTreeMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    last: Instant,
    held_back: u64,
}

impl Throttle {
    /// A throttle admitting one line of a kind per `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            kinds: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether to write a line of `kind` now: `Some(n)` with the number of lines of that kind
    /// held back since the last one written, `None` to hold this one back.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &str, now: Instant) -> Option<u64> {
        // A panic elsewhere while holding it leaves the map as good as before.
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match kinds.get_mut(kind) {
            None => {
                kinds.insert(
                    kind.to_string(),
                    Window {
                        last: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
            Some(w) if now.duration_since(w.last) >= self.every => {
                let held_back = std::mem::take(&mut w.held_back);
                w.last = now;
                Some(held_back)
            }
            Some(w) => {
                w.held_back += 1;
                None
            }
        }
    }
}

/// The throttle of the server's and the log's error lines: one line of a kind per 10 s.
pub static ERRORS: Throttle = Throttle::new(Duration::from_secs(10));

/// Writes an ERROR line of `kind`, throttled by [`ERRORS`]; a line written after others were
/// held back says how many.
#[macro_export]
macro_rules! throttled_error {
    ($kind:expr, $($arg:tt)+) => {
        if let Some(held_back) = $crate::throttle::ERRORS.admit($kind) {
            if held_back == 0 {
                tracing::error!(kind = $kind, $($arg)+);
            } else {
                tracing::error!(kind = $kind, held_back, $($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_of_a_kind_passes_then_one_per_window_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.admit_at("disk", start), Some(0));
        for i in 1..=5 {
            assert_eq!(t.admit_at("disk", start + Duration::from_secs(i)), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(t.admit_at("auth", start + Duration::from_secs(1)), Some(0));
        assert_eq!(t.admit_at("disk", start + Duration::from_secs(10)), Some(5));
        assert_eq!(t.admit_at("disk", start + Duration::from_secs(11)), None);
        assert_eq!(t.admit_at("disk", start + Duration::from_secs(25)), Some(1));
    }
}
