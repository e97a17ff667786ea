//! Token buckets: a tenant's events-per-second quota and a key's requests per second.
//!
//! Ours rather than `governor`'s: a batch larger than the bucket must still be able to pass
//! (when the bucket is full, leaving it in debt), so that every batch size can be sent and the
//! long-run rate still holds; `governor`'s `check_n` refuses such a batch outright.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket: `rate` per second, holding at most one second's worth.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Takes `n` tokens, or says how long until it could. A request larger than the bucket
    /// goes through when the bucket is full and leaves it in debt.
    pub(crate) fn take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        let need = (n as f64).min(self.rate);
        if self.tokens + 1e-9 >= need {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - self.tokens) / self.rate))
        }
    }
}

/// Buckets by name (a tenant, a key id), made full on first use.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Takes `n` from `name`'s bucket of `rate` per second, or says how long to wait.
    pub(crate) fn take(&self, name: &str, rate: u32, n: u64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        match buckets.get_mut(name) {
            Some(bucket) if bucket.rate == f64::from(rate) => bucket.take(n, now),
            _ => {
                // New, or its rate changed: a full allowance at the new rate.
                let mut bucket = Bucket::new(rate, now);
                let taken = bucket.take(n, now);
                buckets.insert(name.to_string(), bucket);
                taken
            }
        }
    }

    /// The `Retry-After` seconds for a wait: whole seconds, at least one.
    pub(crate) fn retry_after(wait: Duration) -> u32 {
        wait.as_secs_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_lets_a_large_batch_through_in_debt() {
        let start = Instant::now();
        let mut b = Bucket::new(10, start);
        for _ in 0..10 {
            b.take(1, start).unwrap();
        }
        let wait = b.take(1, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // After a second the allowance is full again, and no fuller.
        let later = start + Duration::from_secs(5);
        b.take(10, later).unwrap();
        assert!(b.take(1, later).is_err());
        // A batch of 50 passes on a full bucket, and the debt takes 5 s to repay.
        let full = later + Duration::from_secs(1);
        b.take(50, full).unwrap();
        let wait = b.take(1, full).unwrap_err();
        assert!((wait.as_secs_f64() - 4.1).abs() < 1e-6, "{wait:?}");
        assert!(b.take(1, full + Duration::from_millis(4_100)).is_ok());
    }

    #[test]
    fn buckets_are_per_name_and_a_new_rate_starts_full() {
        let buckets = Buckets::default();
        buckets.take("a", 2, 2).unwrap();
        assert!(buckets.take("a", 2, 1).is_err());
        buckets.take("b", 2, 1).unwrap();
        buckets.take("a", 3, 3).unwrap();
        assert_eq!(Buckets::retry_after(Duration::from_millis(10)), 1);
        assert_eq!(Buckets::retry_after(Duration::from_millis(2_100)), 3);
    }
}
