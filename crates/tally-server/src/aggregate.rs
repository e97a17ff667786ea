//! Aggregation of repeated server events over a time window, so that what a client can cause
//! many times a second (refused requests, reads of single records) stays on the record without
//! the record growing with each repetition.
//!
//! Occurrences are grouped by a key. The first of a group in a window is to be written at once;
//! the rest of the window are merged into the group and written as one event when the window
//! closes ([`Aggregator::close_window`]). At most `max_groups` groups live in one window; the
//! caller folds further occurrences into an overflow key of its choosing.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;

/// How repeated server events (refused requests, single-record reads) are aggregated.
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// Length of a window: the longest an occurrence waits to be written.
    pub window: Duration,
    /// Most distinct groups per window and kind before the overflow group takes the rest.
    pub max_groups: usize,
}

impl Default for AggregateSettings {
    fn default() -> Self {
        AggregateSettings {
            window: Duration::from_secs(60),
            max_groups: 200,
        }
    }
}

/// A time as the server's events write it (RFC 3339, UTC).
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a window holds for one group.
#[derive(Debug)]
pub(crate) struct Pending<V> {
    /// Occurrences after the first, not written yet.
    pub(crate) unwritten: u64,
    /// When the group opened in this window.
    pub(crate) first_at: time::OffsetDateTime,
    /// The latest occurrence.
    pub(crate) last_at: time::OffsetDateTime,
    /// The occurrences after the first, merged.
    pub(crate) merged: V,
}

/// The groups of the current window.
#[derive(Debug)]
pub(crate) struct Aggregator<K, V> {
    max_groups: usize,
    pending: Mutex<HashMap<K, Pending<V>>>,
}

impl<K: Hash + Eq + Clone, V: Default> Aggregator<K, V> {
    /// At most `max_groups` groups per window.
    pub(crate) fn new(max_groups: usize) -> Self {
        Aggregator {
            max_groups,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one occurrence of `key` (or of `overflow(key)` when the window is full of other
    /// groups). Returns the key the occurrence counted under and whether it opened its group
    /// (then the caller writes it now); otherwise `merge` folded it into the group's value.
    pub(crate) fn note(
        &self,
        key: K,
        overflow: impl FnOnce(K) -> K,
        merge: impl FnOnce(&mut V),
    ) -> (K, bool) {
        let now = time::OffsetDateTime::now_utc();
        let mut pending = self.pending.lock();
        let key = if !pending.contains_key(&key) && pending.len() >= self.max_groups {
            overflow(key)
        } else {
            key
        };
        match pending.get_mut(&key) {
            Some(p) => {
                p.unwritten += 1;
                p.last_at = now;
                merge(&mut p.merged);
                (key, false)
            }
            None => {
                pending.insert(
                    key.clone(),
                    Pending {
                        unwritten: 0,
                        first_at: now,
                        last_at: now,
                        merged: V::default(),
                    },
                );
                (key, true)
            }
        }
    }

    /// Ends the window: the groups with occurrences left to write, in the order they opened.
    pub(crate) fn close_window(&self) -> Vec<(K, Pending<V>)> {
        let mut closed: Vec<(K, Pending<V>)> = self
            .pending
            .lock()
            .drain()
            .filter(|(_, p)| p.unwritten > 0)
            .collect();
        closed.sort_by_key(|(_, p)| p.first_at);
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_opens_a_group_the_rest_merge_and_a_full_window_overflows() {
        let agg: Aggregator<&str, Vec<u32>> = Aggregator::new(2);
        assert_eq!(agg.note("a", |_| "*", |v| v.push(0)), ("a", true));
        assert_eq!(agg.note("a", |_| "*", |v| v.push(1)), ("a", false));
        assert_eq!(agg.note("a", |_| "*", |v| v.push(2)), ("a", false));
        assert_eq!(agg.note("b", |_| "*", |v| v.push(9)), ("b", true));
        // Two groups: a third key goes to the overflow group, which opens then merges.
        assert_eq!(agg.note("c", |_| "*", |v| v.push(3)), ("*", true));
        assert_eq!(agg.note("d", |_| "*", |v| v.push(4)), ("*", false));
        let closed = agg.close_window();
        let summary: Vec<(&str, u64, Vec<u32>)> = closed
            .into_iter()
            .map(|(k, p)| (k, p.unwritten, p.merged))
            .collect();
        // b had nothing after its first: nothing left to write.
        assert_eq!(summary, [("a", 2, vec![1, 2]), ("*", 1, vec![4])]);
        assert!(agg.close_window().is_empty());
        assert_eq!(agg.note("a", |_| "*", |_| {}), ("a", true));
    }
}
