//! Reading request bodies without letting a client hold the server's memory or time.
//!
//! A body is read in full before its events are validated (a request is stored all or
//! nothing), so a client that sends most of a large body and stalls would otherwise keep
//! megabytes per connection for as long as it likes. Three bounds:
//! - **between chunks**: a body that sends nothing for [`BodyLimits::idle_timeout`] is
//!   refused (408) and its memory freed;
//! - **in total**: a body must be complete within [`BodyLimits::deadline`] of its request,
//!   which also catches a slow trickle;
//! - **memory**: all bodies being read share a budget of [`BodyLimits::memory_bytes`]; a body
//!   whose next chunk does not fit is refused (503, retry) and gives back what it held, so the
//!   largest unfinished bodies go first. An eighth of the budget is kept for small bodies
//!   (up to 1 MiB, or a sixteenth of the budget): large bodies that stall never shut out
//!   everyone else's small requests.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Bounds on reading request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Longest pause between two chunks of a body.
    pub idle_timeout: Duration,
    /// Longest time to receive a whole body.
    pub deadline: Duration,
    /// Memory all bodies being read may take together.
    pub memory_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            idle_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            memory_bytes: 512 << 20,
        }
    }
}

/// What `/metrics` shows of request bodies (`tally_http_body_*`).
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyMetrics {
    /// Bytes of bodies being read or processed, out of the budget.
    pub(crate) held_bytes: Gauge,
    /// Bodies refused because the budget was taken.
    pub(crate) refused_busy: Counter,
    /// Bodies refused because they stalled or came too slowly.
    pub(crate) timed_out: Counter,
}

impl BodyMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "body_held_bytes",
            "Bytes of request bodies held in memory (bounded by the body memory budget)",
            self.held_bytes.clone(),
        );
        registry.register(
            "body_refused_busy",
            "Request bodies refused because the body memory budget was taken",
            self.refused_busy.clone(),
        );
        registry.register(
            "body_timed_out",
            "Request bodies refused because they stalled or arrived too slowly",
            self.timed_out.clone(),
        );
    }
}

/// The shared memory budget of bodies being read.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    limits: BodyLimits,
    bytes: Arc<Semaphore>,
    pub(crate) metrics: BodyMetrics,
}

impl BodyBudget {
    pub(crate) fn new(limits: BodyLimits) -> BodyBudget {
        let permits = limits.memory_bytes.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            limits,
            bytes: Arc::new(Semaphore::new(permits)),
            metrics: BodyMetrics::default(),
        }
    }

    /// Bytes of the budget not taken.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reads `body` whole: at most `max_bytes` (413 above), within the limits (see the module
    /// docs). The returned bytes keep their share of the budget until dropped.
    pub(crate) async fn read(&self, body: Body, max_bytes: usize) -> Result<ReadBody, ApiError> {
        self.read_whole(body, max_bytes)
            .await
            .map_err(ApiError::close_connection)
    }

    async fn read_whole(&self, body: Body, max_bytes: usize) -> Result<ReadBody, ApiError> {
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        let mut body = body;
        let mut buf = BytesMut::new();
        let mut held = Held {
            permit: None,
            gauge: self.metrics.held_bytes.clone(),
        };
        loop {
            let wait = self
                .limits
                .idle_timeout
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let frame = match tokio::time::timeout(wait, body.frame()).await {
                Err(_) => return Err(self.timed_out(deadline)),
                Ok(None) => break,
                // The router's own pause limit (the same length) may fire first.
                Ok(Some(Err(e))) if is_timeout(&e) => return Err(self.timed_out(deadline)),
                Ok(Some(Err(e))) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "body_unreadable",
                        format!("the request body could not be read: {e}"),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > max_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body exceeds {max_bytes} bytes; split it into smaller batches"
                    ),
                ));
            }
            // The budget counts what the buffer holds (its capacity, grown in powers of two),
            // not only the bytes received: the part grown ahead is memory too.
            if buf.capacity() - buf.len() < data.len() {
                let target = (buf.len() + data.len()).next_power_of_two().min(max_bytes);
                let more = u32::try_from(target - buf.capacity()).unwrap_or(u32::MAX);
                // A large body must leave headroom: what stalled large bodies hold never
                // shuts out the small requests of everyone else.
                if target > self.small_bytes()
                    && self.bytes.available_permits() < more as usize + self.headroom()
                {
                    return Err(self.busy());
                }
                match self.bytes.clone().try_acquire_many_owned(more) {
                    Ok(permit) => held.add(permit),
                    Err(_) => return Err(self.busy()),
                }
                buf.reserve(target - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(ReadBody {
            bytes: buf.freeze(),
            _budget: held,
        })
    }

    /// Buffers up to this size are small: they may use the [`BodyBudget::headroom`].
    fn small_bytes(&self) -> usize {
        (self.limits.memory_bytes / 16).min(1 << 20)
    }

    /// The part of the budget only small buffers may take.
    fn headroom(&self) -> usize {
        self.limits.memory_bytes / 8
    }

    fn busy(&self) -> ApiError {
        self.metrics.refused_busy.inc();
        tally_store::throttled_error!(
            "body_memory",
            "a request body was refused: the bodies being read hold the whole budget of {} bytes",
            self.limits.memory_bytes
        );
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is receiving too many large request bodies at once; retry shortly",
        )
        .retry_after(1)
    }

    fn timed_out(&self, deadline: tokio::time::Instant) -> ApiError {
        self.metrics.timed_out.inc();
        let message = if tokio::time::Instant::now() >= deadline {
            format!(
                "the request body did not arrive within {} s; send it faster or in smaller batches",
                self.limits.deadline.as_secs()
            )
        } else {
            format!(
                "the request body stalled: nothing arrived for {} s",
                self.limits.idle_timeout.as_secs()
            )
        };
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message)
    }
}

/// Whether a body error is the router's pause limit
/// ([`tower_http::timeout::RequestBodyTimeoutLayer`]).
fn is_timeout(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A body read whole, holding its share of the memory budget until dropped.
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    _budget: Held,
}

/// A share of the budget, shown in the gauge while held.
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    gauge: Gauge,
}

impl Held {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        self.gauge.inc_by(permit.num_permits() as i64);
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(p) = &self.permit {
            self.gauge.dec_by(p.num_permits() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn budget(memory: usize) -> BodyBudget {
        BodyBudget::new(BodyLimits {
            idle_timeout: Duration::from_millis(200),
            deadline: Duration::from_secs(2),
            memory_bytes: memory,
        })
    }

    /// A body that sends `chunks` and then stalls forever.
    fn stalling(chunks: Vec<&'static [u8]>) -> Body {
        let sent = stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        Body::from_stream(futures_util::StreamExt::chain(sent, stream::pending()))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_holds_its_bytes_of_the_budget_until_dropped() {
        let b = budget(100);
        let read = b.read(Body::from(vec![7u8; 60]), 1000).await.unwrap();
        assert_eq!(read.bytes.len(), 60);
        // Its buffer holds 64 bytes (grown in powers of two): that is what it costs.
        assert_eq!(b.available(), 36);
        assert_eq!(b.metrics.held_bytes.get(), 64);
        drop(read);
        assert_eq!(b.available(), 100);
        assert_eq!(b.metrics.held_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_stalled_body_is_refused_with_408_and_gives_its_memory_back() {
        let b = budget(100);
        let err = b
            .read(stalling(vec![b"0123456789"]), 1000)
            .await
            .err()
            .unwrap();
        assert_eq!(err.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(b.available(), 100);
        assert_eq!(b.metrics.timed_out.get(), 1);
        assert_eq!(b.metrics.held_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_body_that_does_not_fit_the_budget_is_refused_with_503_and_small_ones_go_on() {
        // Small: up to 125 bytes; headroom kept for them: 250.
        let b = budget(2000);
        let first = b.read(Body::from(vec![1u8; 1000]), 2000).await.unwrap();
        assert_eq!(b.available(), 976);
        // A second large one would leave less than the headroom: refused, holding nothing.
        let err = b
            .read(Body::from(vec![2u8; 600]), 2000)
            .await
            .err()
            .unwrap();
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.available(), 976);
        assert_eq!(b.metrics.refused_busy.get(), 1);
        // A middling one still fits beside it, leaving the headroom.
        let middling = b.read(Body::from(vec![3u8; 500]), 2000).await.unwrap();
        assert_eq!(b.available(), 464);
        // Now no large one fits, but small ones use the headroom.
        b.read(Body::from(vec![4u8; 300]), 2000)
            .await
            .err()
            .unwrap();
        let small: Vec<_> =
            futures_util::future::join_all((0..5).map(|_| b.read(Body::from(vec![5u8; 60]), 2000)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        assert_eq!(b.available(), 464 - 5 * 64);
        drop((first, middling, small));
        assert_eq!(b.available(), 2000);
    }

    #[tokio::test]
    async fn a_body_over_the_size_limit_is_refused_with_413() {
        let b = budget(1000);
        let err = b.read(Body::from(vec![0u8; 101]), 100).await.err().unwrap();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b.available(), 1000);
    }
}
