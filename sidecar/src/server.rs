//! The accept loop shared by the three listeners: connection limit, header
//! size and read-time limits, optional mutual TLS (inbound), and graceful
//! shutdown that lets in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::body::{BoxBody, RequestBody};
use crate::h1;
use crate::tls::{MeshTls, PeerIdentity};

/// Which HTTP versions a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only: the app-facing outbound listener and admin.
    Http1,
    /// HTTP/1.1 and h2c with prior knowledge: the inbound listener, which
    /// other sidecars reach over pooled HTTP/2.
    Http1AndH2,
}

/// Limits applied to every connection of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Largest request head; hyper answers 431 beyond it.
    pub max_header_bytes: usize,
    /// Time to receive a request head (slowloris).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel backlog.
    pub max_connections: usize,
}

/// Serves `listener` until `shutdown` resolves, then waits up to `grace` for
/// open connections to finish their in-flight requests. With `tls`, every
/// connection must complete a mutual TLS handshake first (plaintext is
/// refused), and its requests carry the peer's [`PeerIdentity`].
#[allow(clippy::too_many_arguments)]
pub async fn serve<S, F>(
    listener: TcpListener,
    protocols: Protocols,
    limits: ServerLimits,
    tls: Option<Arc<MeshTls>>,
    handler: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Fn(Request<RequestBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<BoxBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(1024)
        .adaptive_window(true);
    let builder = match protocols {
        Protocols::Http1 => builder.http1_only(),
        Protocols::Http1AndH2 => builder,
    };
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let (stop_tx, _) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            handler: handler.clone(),
            peer,
            builder: builder.clone(),
            header_read_timeout: limits.header_read_timeout,
            stop: stop_tx.subscribe(),
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.serve(stream, None).await,
                Some(tls) => {
                    if let Some((stream, identity)) = handshake(&tls, stream, peer).await {
                        conn.serve(stream, identity).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Fast-path connections close between requests; hyper's finish theirs.
    let _ = stop_tx.send(true);
    let drained = async { tokio::join!(graceful.shutdown(), stop_tx.closed()) };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(?grace, "grace period over with connections still open");
    }
}

/// Period of [`keep_timer_armed`]: shorter than any request deadline worth
/// the saving (deadlines are milliseconds to an hour, 10 s by default).
const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// Keeps one timer pending on the runtime, forever.
///
/// Why: tokio's time driver wakes its own thread (an `eventfd` write, and
/// an `epoll_wait` that returns at once) whenever a timer is registered
/// earlier than the driver's next planned wake-up, and with no timer
/// pending any new timer is earlier. Every request arms one (its deadline),
/// so a sidecar without other timers (a static configuration: no gossip
/// probes) paid that system call for each request that arrived after a
/// quiet moment: 0.2–0.56 `write`s per request at 32 connections and one
/// per request at one connection (`perf stat` on the system calls, hop of
/// docs/benchmarks/sidecar.md), none with this. A timer that is always due
/// within a second keeps longer deadlines from ever being the earliest, for
/// one wake-up a second.
pub async fn keep_timer_armed() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

/// What one accepted connection needs to be served.
struct Connection<S> {
    handler: S,
    peer: SocketAddr,
    builder: Arc<auto::Builder<TokioExecutor>>,
    header_read_timeout: Duration,
    /// Ends fast-path connections between requests at shutdown.
    stop: watch::Receiver<bool>,
    /// Lets hyper finish a handed-over connection's requests at shutdown.
    watcher: Watcher,
}

impl<S, F> Connection<S>
where
    S: Fn(Request<RequestBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<BoxBody>> + Send + 'static,
{
    /// Serves `io` on the HTTP/1.1 fast path, then with hyper if it hands
    /// the connection over. Requests carry the TLS peer's `identity`.
    async fn serve<IO>(self, io: IO, identity: Option<PeerIdentity>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            handler,
            peer,
            builder,
            header_read_timeout,
            stop,
            watcher,
        } = self;
        // Requests carry the TLS peer's identity, whichever path read them.
        let tagged = |mut req: Request<RequestBody>| {
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            req
        };
        let fast = |req: Request<Option<bytes::Bytes>>| {
            // Boxed: see below.
            Box::pin(handler(tagged(req.map(RequestBody::Whole)), peer))
        };
        let io = match h1::serve(io, fast, header_read_timeout, stop).await {
            h1::Ended::Closed => return,
            h1::Ended::HandOver(io) => io,
        };
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let req = tagged(req.map(RequestBody::Streamed));
            // Boxed: the handler's future holds the whole resilience
            // stack's state (kilobytes). Inline, every connection's task
            // carries it for the connection's life, idle or not, and it is
            // moved (memcpy) several times per request; boxed, it exists
            // only while a request is in flight.
            let fut = Box::pin(handler(req, peer));
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(error = %e, %peer, "connection ended with error");
        }
    }
}

/// The server side of a mutual TLS handshake, bounded in time; counts
/// failures by reason and successes by peer identity.
async fn handshake(
    tls: &MeshTls,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<PeerIdentity>,
)> {
    let metrics = tls.metrics();
    let reason =
        match tokio::time::timeout(tls.handshake_timeout(), tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => {
                metrics.tls_handshakes.inc();
                let identity =
                    shardmesh_identity::tls::peer_identity(stream.get_ref().1.peer_certificates())
                        .map(|id| PeerIdentity(Arc::from(id.uri())));
                if let Some(id) = &identity {
                    metrics.record_peer_identity(&id.0);
                }
                return Some((stream, identity));
            }
            Ok(Err(e)) => shardmesh_identity::tls::failure_reason(&e),
            Err(_) => "timeout",
        };
    tracing::debug!(%peer, reason, "TLS handshake failed");
    metrics
        .tls_handshake_failures
        .with_label_values(&[reason])
        .inc();
    None
}
