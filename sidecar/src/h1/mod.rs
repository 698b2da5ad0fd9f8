//! The listeners' HTTP/1.1 fast path: plain requests (small body read
//! whole, no upgrade, no `Expect`, no transfer coding) are read, handled and
//! answered right here, and a connection is handed to hyper, with the bytes
//! already read, the moment anything else arrives (HTTP/2's preface too).
//!
//! Written on `httparse` instead of serving every request through hyper's
//! HTTP/1.1 server because that server was the largest cost left on a
//! sidecar hop: about 10,000 of its 25,000 instructions per request
//! (callgrind, docs/benchmarks/sidecar.md), most of it in the dispatcher's
//! polling and flushing rather than in parsing. Here one loop reads a head,
//! awaits the handler and writes the head and body with one system call.
//! hyper still serves everything the fast path does not take, so streaming
//! request bodies, `100-continue`, upgrades, h2c, and the 400 and 431
//! answers to bad heads are hyper's.
//!
//! - `request`: parse a plain request, or decide to hand over.
//! - `response`: the response head and body framing.
//! - `date`: the cached `date` header.
//! - `rewind`: the stream handed to hyper with its bytes put back.

mod date;
mod request;
mod response;
mod rewind;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::BoxBody;
pub use rewind::Rewind;

/// Read buffer of a connection: a typical head and small body in one read.
/// Small, because every open connection keeps one (RSS with 1,000 busy
/// connections).
const READ_BUF: usize = 4 * 1024;
/// A write buffer that grew past this for a large response is dropped after
/// it, so idle connections stay small.
const KEEP_WRITE_BUF: usize = 16 * 1024;
/// Time to send `close_notify` (TLS) or FIN when the fast path closes.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(1);

/// How a connection left the fast path.
#[derive(Debug)]
pub enum Ended<IO> {
    /// Closed: by the client, after `connection: close`, on an error, a slow
    /// head, or shutdown.
    Closed,
    /// A request the fast path does not take: serve the rest with hyper.
    HandOver(Rewind<IO>),
}

/// Serves plain HTTP/1.1 requests on `io` with `handler`, until the
/// connection closes or needs hyper. `stop` turning true ends the
/// connection between requests (one in flight finishes first, answered
/// with `connection: close`). The first head must arrive whole within
/// `header_read_timeout` of the connection's start, later ones within it
/// of their first bytes.
pub async fn serve<IO, H, F>(
    mut io: IO,
    mut handler: H,
    header_read_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<Option<Bytes>>) -> F,
    F: Future<Output = Response<BoxBody>>,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = BytesMut::new();
    // The shutdown signal wakes this task through `registered`, polled once
    // here with the task's waker (which stays registered); after that a
    // look at `signal`'s version (one atomic load) tells whether it came.
    // Polling the watch on every wait took a lock per request.
    let signal = stop.clone();
    let stopped = || signal.has_changed().unwrap_or(true);
    let mut registered = pin!(registered(stop));
    if poll_fn(|cx| Poll::Ready(registered.as_mut().poll(cx).is_ready())).await {
        return Ended::Closed;
    }
    // The first head is timed from the connection's start, as hyper does:
    // a client that connects and sends nothing is closed too. Later heads
    // are timed from their first bytes, so idle keep-alive connections
    // stay (bounded by the listener's connection limit).
    let mut first_deadline = Some(Instant::now() + header_read_timeout);
    loop {
        let mut head_deadline = first_deadline.take();
        let plain = loop {
            if !buf.is_empty() {
                match request::parse(&mut buf) {
                    request::Parsed::Plain(plain) => break plain,
                    request::Parsed::HandOver => {
                        return Ended::HandOver(Rewind::new(io, buf.freeze()));
                    }
                    request::Parsed::NeedMore => {}
                }
            }
            if buf.capacity() - buf.len() < READ_BUF / 4 {
                buf.reserve(READ_BUF);
            }
            let idle = buf.is_empty() && head_deadline.is_none();
            let read_or_stop = async {
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => Some(read),
                    () = poll_fn(|_| if stopped() { Poll::Ready(()) } else { Poll::Pending }) => None,
                }
            };
            let read = if idle {
                // Between requests: only the client or a shutdown ends this.
                read_or_stop.await
            } else {
                // A head is due: it must arrive in time (slowloris).
                let deadline =
                    *head_deadline.get_or_insert_with(|| Instant::now() + header_read_timeout);
                match tokio::time::timeout_at(deadline, read_or_stop).await {
                    Ok(read) => read,
                    Err(_) => {
                        tracing::debug!("request head not received in time; closing");
                        return Ended::Closed;
                    }
                }
            };
            match read {
                None | Some(Ok(0) | Err(_)) => return Ended::Closed,
                Some(Ok(_)) => {}
            }
        };
        let head_request = plain.request.method() == Method::HEAD;
        let rsp = handler(plain.request).await;
        let keep_alive = !plain.close && !stopped();
        match response::write(&mut io, &mut out, rsp, head_request, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = tokio::time::timeout(SHUTDOWN_WRITE, io.shutdown()).await;
                return Ended::Closed;
            }
        }
        if out.capacity() > KEEP_WRITE_BUF {
            out = BytesMut::new();
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone); while pending,
/// the waker it was polled with is woken when that happens.
async fn registered(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod differential_tests;
#[cfg(test)]
mod tests;
