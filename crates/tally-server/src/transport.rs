//! The HTTP listener: connections are accepted, bounded and timed out here, before a request
//! reaches a handler.
//!
//! An audit log is the first thing an attacker wants to silence, so no client may hold the
//! server's sockets without sending requests:
//! - a connection must deliver a complete request head within
//!   [`ConnectionLimits::header_timeout`] of opening, or of its previous response (HTTP/1.1
//!   keep-alive), or it is closed: silent and slow-header clients go away by themselves;
//! - at most [`ConnectionLimits::max_connections`] are open (further bounded by the process's
//!   open-file limit). A connection arriving at the limit takes the place of the one that has
//!   waited longest for a request (an idle keep-alive, a silent or slow client): new clients,
//!   health checks included, always get in while any connection is idle. Only when every
//!   connection is inside a request is the newcomer answered 503 at once;
//! - request bodies have their own timeouts and memory budget ([`crate::body`]).
//!
//! With TLS ([`crate::tls`]) the handshake must also finish within the header timeout; each
//! connection uses the configuration current when it was accepted, and speaks HTTP/2 when the
//! client chose it by ALPN, else HTTP/1.1. Plain-text connections speak HTTP/1.1 only: telling
//! HTTP/2's preface from a request line means waiting for bytes with no timeout of hyper's
//! own, which would let silent clients hold sockets again. An HTTP/2 connection must answer
//! pings within the header timeout, and like any connection it gives its place to a newcomer
//! at the limit when it has no request in progress.
//!
//! On shutdown the listener stops accepting, asks every connection to finish its request and
//! close, and drops those still open after [`ConnectionLimits::drain_timeout`] (a live stream,
//! a stalled client).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// File descriptors kept free for everything but client connections: segments, the id and
/// search indexes, outgoing connections.
const RESERVED_FILES: u64 = 512;

/// Bounds on the connections of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head, counted from its
    /// opening or from its previous response.
    pub header_timeout: Duration,
    /// How long shutdown waits for open connections to finish before dropping them.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// [`ConnectionLimits::max_connections`], lowered so that connections leave
    /// [`RESERVED_FILES`] of the process's open-file limit free.
    pub fn effective_max_connections(&self) -> usize {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let fit = files.saturating_sub(RESERVED_FILES).max(16);
        self.max_connections
            .min(usize::try_from(fit).unwrap_or(usize::MAX))
    }
}

/// What `/metrics` shows of connections (`tally_http_connections_*`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    evicted: Counter,
    refused: Counter,
}

impl ConnectionMetrics {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "connections_open",
            "Client connections open",
            self.open.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room for new ones at the connection limit",
            self.evicted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections answered 503 because every connection was inside a request",
            self.refused.clone(),
        );
    }
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests in progress on it (from the head read to the last byte of the response).
    busy: AtomicUsize,
    /// When it last became idle (milliseconds since the listener started).
    idle_since: AtomicU64,
    /// Closes it at once (it gave its place to a newer connection).
    evict: Notify,
}

/// The open connections.
struct Registry {
    started: Instant,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    metrics: ConnectionMetrics,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Makes room for one more connection: `true` if there is room, or there is now because
    /// the connection idle the longest was told to close.
    fn make_room(&self, max: usize) -> bool {
        let mut conns = self.conns.lock();
        if conns.len() < max {
            return true;
        }
        let longest_idle = conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.idle_since.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match longest_idle.and_then(|id| conns.remove(&id)) {
            Some(conn) => {
                conn.evict.notify_one();
                self.metrics.evicted.inc();
                true
            }
            None => false,
        }
    }
}

/// Marks a request in progress on a connection until dropped (with the response body).
struct InRequest {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl InRequest {
    fn begin(conn: &Arc<Conn>, registry: &Arc<Registry>) -> InRequest {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        InRequest {
            conn: conn.clone(),
            registry: registry.clone(),
        }
    }

    /// Keeps the marker alive inside the response body.
    fn hold(&self) {}
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection arriving when every connection is inside a request is told.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 1\r\nConnection: close\r\nContent-Length: 140\r\n\r\n\
{\"error\":{\"status\":503,\"code\":\"too_many_connections\",\"message\":\"every connection the server allows is inside a request; retry in a second\"}}";

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` resolves,
/// then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.effective_max_connections();
    if max < limits.max_connections {
        tracing::warn!(
            "serving at most {max} connections instead of {}: the open-file limit (ulimit -n) is too low; raise it to serve more",
            limits.max_connections
        );
    }
    let registry = Arc::new(Registry {
        started: Instant::now(),
        conns: Mutex::new(BTreeMap::new()),
        metrics,
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    // An HTTP/2 connection answers pings or goes: a silent peer is closed within twice the
    // header timeout.
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(256);
    let http = Arc::new(Builders { http1, http2 });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or similar: wait for connections to close rather
                // than spin.
                tally_store::throttled_error!("accept", "accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !registry.make_room(max) {
            registry.metrics.refused.inc();
            if tls.is_none() {
                refuse(stream);
            } else {
                // No plain-text answer on a TLS port: the client sees the connection close.
                tally_store::throttled_error!(
                    "too_many_connections",
                    "a connection was refused: every connection the server allows is inside a request"
                );
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(registry.now_ms()),
            evict: Notify::new(),
        });
        registry.conns.lock().insert(next_id, conn.clone());
        registry.metrics.open.inc();
        let connection = Connection {
            id: next_id,
            peer,
            conn,
            registry: registry.clone(),
            http: http.clone(),
            router: router.clone(),
            stop: stop_rx.clone(),
        };
        match &tls {
            None => {
                tasks.spawn(connection.run(stream, false, None));
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                let handshake_timeout = limits.header_timeout;
                tasks.spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let session = stream.get_ref().1;
                            let name = session
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(crate::tls::common_name)
                                .map(crate::tls::ClientCertName);
                            let h2 = session.alpn_protocol() == Some(b"h2");
                            connection.run(stream, h2, name).await;
                        }
                        // A failed or slow handshake: rustls said why to the client.
                        Ok(Err(_)) | Err(_) => connection.forget(),
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still open {:?} after the stop was asked for: closing them",
            tasks.len(),
            limits.drain_timeout
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Answers a connection there is no room for with a 503, without reading it.
fn refuse(stream: TcpStream) {
    tally_store::throttled_error!(
        "too_many_connections",
        "a connection was refused: every connection the server allows is inside a request"
    );
    let _ = stream.try_write(OVERLOADED);
}

/// The protocol engines, configured once per listener.
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// One accepted connection and what serving it needs.
struct Connection {
    id: u64,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    http: Arc<Builders>,
    router: Router,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Takes a connection that never got to HTTP (a failed TLS handshake) off the books.
    fn forget(self) {
        self.registry.conns.lock().remove(&self.id);
        self.registry.metrics.open.dec();
    }

    async fn run<S>(self, stream: S, h2: bool, client_cert: Option<crate::tls::ClientCertName>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            id,
            peer,
            conn,
            registry,
            http,
            router,
            mut stop,
        } = self;
        let service = {
            let (conn, registry) = (conn.clone(), registry.clone());
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let marker = InRequest::begin(&conn, &registry);
                let router = router.clone();
                let client_cert = client_cert.clone();
                async move {
                    let mut request = request.map(Body::new);
                    // Who is asking, for the handlers and the record of refused requests.
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    if let Some(name) = client_cert {
                        request.extensions_mut().insert(name);
                    }
                    let response = router.oneshot(request).await?;
                    // The request lasts until its response's last byte is sent (exports and
                    // streams outlive the handler).
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            marker.hold();
                            frame
                        }))
                    }))
                }
            })
        };
        let io = TokioIo::new(stream);
        if h2 {
            let connection = http.http2.serve_connection(io, service);
            tokio::pin!(connection);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &conn.evict,
                &mut stop,
            )
            .await;
        } else {
            let connection = http.http1.serve_connection(io, service);
            tokio::pin!(connection);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &conn.evict,
                &mut stop,
            )
            .await;
        }
        registry.conns.lock().remove(&id);
        registry.metrics.open.dec();
    }
}

/// Runs a connection until it ends or is evicted; asks it to finish its request and close
/// when the listener stops.
async fn drive<F: Future>(
    mut connection: std::pin::Pin<&mut F>,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut F>),
    evict: &Notify,
    stop: &mut watch::Receiver<bool>,
) {
    let mut stopping = *stop.borrow();
    if stopping {
        graceful_shutdown(connection.as_mut());
    }
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = evict.notified() => break,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    graceful_shutdown(connection.as_mut());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(idle: &[(u64, usize, u64)]) -> Registry {
        let r = Registry {
            started: Instant::now(),
            conns: Mutex::new(BTreeMap::new()),
            metrics: ConnectionMetrics::default(),
        };
        for &(id, busy, since) in idle {
            r.conns.lock().insert(
                id,
                Arc::new(Conn {
                    busy: AtomicUsize::new(busy),
                    idle_since: AtomicU64::new(since),
                    evict: Notify::new(),
                }),
            );
        }
        r
    }

    #[test]
    fn at_the_limit_the_connection_idle_longest_makes_room_and_busy_ones_never_do() {
        // (id, requests in progress, idle since)
        let r = registry(&[(1, 1, 0), (2, 0, 50), (3, 0, 20), (4, 2, 0)]);
        assert!(r.make_room(10), "below the limit: room, nobody evicted");
        assert_eq!(r.conns.lock().len(), 4);
        assert!(r.make_room(4));
        let left: Vec<u64> = r.conns.lock().keys().copied().collect();
        assert_eq!(left, [1, 2, 4], "connection 3 waited longest");
        assert!(r.make_room(3));
        let left: Vec<u64> = r.conns.lock().keys().copied().collect();
        assert_eq!(left, [1, 4]);
        assert!(
            !r.make_room(2),
            "every connection is inside a request: no room"
        );
        assert_eq!(r.metrics.evicted.get(), 2);
        assert_eq!(r.conns.lock().len(), 2);
    }

    #[test]
    fn the_overload_answer_is_a_complete_http_response() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
