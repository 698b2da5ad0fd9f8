//! Pooled HTTP/1.1 connections to the one local app.
//!
//! Written by hand instead of using hyper-util's pooled client: that client
//! keys its pool by scheme and authority, hashing the key twice per request
//! and moving a large future, which profiling showed to be a top cost of a
//! sidecar hop (docs/benchmarks/sidecar.md). The app has one address, so a
//! plain stack of idle `SendRequest` handles does the job.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Version};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use shardmesh_resilience::{BoxError, ConnectError};

use crate::body::{boxed, BoxBody};

/// Time to establish a TCP connection to the app.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept; more are closed when their response ends.
const MAX_IDLE: usize = 256;

/// A pool of HTTP/1.1 connections to one address; cheap to clone.
#[derive(Clone)]
pub struct AppClient {
    pool: Arc<Pool>,
}

struct Pool {
    address: Arc<str>,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<BoxBody>>>,
}

impl AppClient {
    /// A client for the app at `address` (`host:port`).
    pub fn new(address: &str) -> Result<Self, BoxError> {
        Ok(Self {
            pool: Arc::new(Pool {
                address: Arc::from(address),
                host: HeaderValue::from_str(address)?,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends `req` (path and query kept) to the app.
    pub async fn send(&self, mut req: Request<BoxBody>) -> Result<Response<BoxBody>, BoxError> {
        // Origin-form (what the inbound listener receives) is sent as it is;
        // only an absolute-form target is cut down to its path, which copies.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = path.parse()?;
        }
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, self.pool.host.clone());
        }
        // A pooled connection the app closed while idle refuses the request
        // without sending it: take the request back and try the next one.
        loop {
            let (mut sender, reused) = match self.pool.pop() {
                Some(s) => (s, true),
                None => (self.pool.connect().await?, false),
            };
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(rsp) => {
                    let pool = self.pool.clone();
                    return Ok(rsp.map(|body| {
                        boxed(Returning {
                            body,
                            sender: Some(sender),
                            pool,
                        })
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back,
                    _ => return Err(Box::new(e.into_error())),
                },
            }
        }
    }
}

impl Pool {
    fn pop(&self) -> Option<SendRequest<BoxBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<BoxBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<BoxBody>, BoxError> {
        let connect = tokio::net::TcpStream::connect(&*self.address);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Box::new(ConnectError(Box::new(e)))),
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(Box::new(ConnectError(Box::new(e))));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "app connection ended");
            }
        });
        Ok(sender)
    }
}

pin_project_lite::pin_project! {
    /// A response body that gives its connection back to the pool when done.
    struct Returning {
        #[pin]
        body: hyper::body::Incoming,
        sender: Option<SendRequest<BoxBody>>,
        pool: Arc<Pool>,
    }

    impl PinnedDrop for Returning {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(sender) = this.sender.take() {
                this.pool.put(sender);
            }
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An app that answers one request per connection and then closes it,
    /// the worst case for a pool of kept-alive connections.
    async fn one_shot_app() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Keep-alive is implied, yet the app closes: a stale pooled connection.
                drop(s);
            }
        });
        (addr, conns)
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_is_not_a_failure() {
        let (addr, conns) = one_shot_app().await;
        let client = AppClient::new(&addr).unwrap();
        for _ in 0..5 {
            let req = Request::get("/x").body(crate::body::empty()).unwrap();
            let rsp = client.send(req).await.unwrap();
            assert_eq!(rsp.status(), 200);
            let body = http_body_util::BodyExt::collect(rsp.into_body())
                .await
                .unwrap();
            assert_eq!(body.to_bytes(), "ok");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn connections_are_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("hi")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let client = AppClient::new(&addr).unwrap();
        for _ in 0..20 {
            let req = Request::get("/x").body(crate::body::empty()).unwrap();
            let rsp = client.send(req).await.unwrap();
            let _ = http_body_util::BodyExt::collect(rsp.into_body())
                .await
                .unwrap();
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = AppClient::new(&addr).unwrap();
        let req = Request::get("/x").body(crate::body::empty()).unwrap();
        let err = client.send(req).await.unwrap_err();
        assert!(
            shardmesh_resilience::boxed_cause::<ConnectError>(&err).is_some(),
            "{err}"
        );
    }
}
