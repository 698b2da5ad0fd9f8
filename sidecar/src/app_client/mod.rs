//! Pooled HTTP/1.1 connections to the one local app.
//!
//! The client side of HTTP/1.1 is written here on `httparse` instead of
//! using hyper's client connection, because that connection runs in a task
//! of its own: every request crossed to it through a channel and every
//! response and body chunk came back through two more, with a task wake-up
//! each. Profiling put that at about 11,500 of the 31,000 instructions a
//! sidecar hop cost (docs/benchmarks/sidecar.md), and the task and its
//! buffers at a quarter of the memory of a busy connection. Here the task
//! that serves the caller writes the request and reads the response itself.
//! The app is our own pod's, one address behind loopback, so a stack of
//! idle connections is the whole pool.
//!
//! - `head`: request head out, response head in (framing, keep-alive).
//! - `exchange`: one request out and the response head back.
//! - `decode`, `body`: the response body by length, chunks or close.
//! - `conn`: a connection and its read buffer, idle-close detection.

mod body;
mod conn;
mod decode;
mod error;
mod exchange;
mod head;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderValue, Request, Response};
use http_body::Body as _;
use shardmesh_resilience::{BoxError, ConnectError};

use crate::body::BoxBody;

use body::AppBody;
use conn::Conn;
use decode::Decoder;
pub use error::AppError;
use head::RequestFraming;

/// Time to establish a TCP connection to the app. Long enough for one lost
/// SYN to be sent again (after 1 s, then 3 s): an app whose accept queue
/// overflowed under a burst of new connections (1,000 at once in
/// docs/benchmarks/sidecar.md) drops SYNs rather than refusing them.
/// Envoy's default is 5 s too; the request deadline still bounds the whole.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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
    idle: Mutex<Vec<Conn>>,
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

    /// Sends `req` (path and query kept, `Host` added when missing) to the
    /// app; the response body streams from the connection.
    pub async fn send(&self, req: Request<BoxBody>) -> Result<Response<BoxBody>, BoxError> {
        let (parts, mut body) = req.into_parts();
        let framing = RequestFraming::of(&parts, body.size_hint().exact(), body.is_end_stream());
        let mut head = BytesMut::new();
        head::encode_request(&parts, framing, &self.pool.host, &mut head);
        let head = head.freeze();
        loop {
            let (mut conn, reused) = match self.pool.pop() {
                Some(conn) => (conn, true),
                None => (self.pool.connect().await?, false),
            };
            match exchange::exchange(&mut conn, head.clone(), &mut body, framing, &parts.method)
                .await
            {
                Ok(answer) => {
                    let head::ResponseHead {
                        response,
                        framing,
                        keep_alive,
                    } = answer.head;
                    // An app that answered before taking the whole request
                    // body leaves the connection mid-request: close it after.
                    let keep_alive = keep_alive && answer.request_sent;
                    let body =
                        AppBody::new(conn, Decoder::new(framing), keep_alive, self.pool.clone());
                    return Ok(response.map(|()| BoxBody::new(body)));
                }
                // A pooled connection the app closed while idle: the request
                // never reached it, so it goes out again (bounded by the
                // pool's size; a fresh connection is never retried).
                Err(failure) if reused && failure.retryable => continue,
                Err(failure) => return Err(Box::new(failure.error)),
            }
        }
    }
}

impl Pool {
    fn pop(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut conn) = idle.pop() {
            if conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, BoxError> {
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
        Ok(Conn::new(stream))
    }
}

#[cfg(test)]
mod tests;
