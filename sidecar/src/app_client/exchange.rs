//! One request/response exchange on a connection: writes the request head
//! and body while watching for the response head, so an app that answers
//! before reading the whole body (a 413, say) is heard instead of
//! deadlocking on a full socket buffer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Method;
use http_body::Body;
use tokio::io::AsyncWrite;

use super::conn::Conn;
use super::error::AppError;
use super::head::{self, RequestFraming, ResponseHead};
use crate::body::BoxBody;

/// Segments written with one `writev` at most.
const MAX_SEGMENTS: usize = 4;
const CRLF: &[u8] = b"\r\n";
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A response head and whether the whole request went out before it.
pub(super) struct Answer {
    pub(super) head: ResponseHead,
    pub(super) request_sent: bool,
}

/// A failed exchange.
pub(super) struct Failure {
    pub(super) error: AppError,
    /// Nothing of the response arrived and no request body byte was taken:
    /// on a pooled connection this is the app having closed it while idle,
    /// and the request may go out again on another connection.
    pub(super) retryable: bool,
}

/// Sends the request (`head`, then `body` framed as `framing`) and reads the
/// response head.
pub(super) async fn exchange(
    conn: &mut Conn,
    head: Bytes,
    body: &mut BoxBody,
    framing: RequestFraming,
    method: &Method,
) -> Result<Answer, Failure> {
    let mut state = Sending {
        head,
        segments: VecDeque::new(),
        framing,
        sent: 0,
        body_done: framing == RequestFraming::Empty,
        body_taken: false,
    };
    poll_fn(|cx| state.poll(cx, conn, body, method)).await
}

struct Sending {
    /// The request head, until written (kept apart from `segments` so a
    /// request without a body allocates no queue).
    head: Bytes,
    /// Body bytes queued for the socket after the head, in order.
    segments: VecDeque<Bytes>,
    framing: RequestFraming,
    /// Request body bytes taken from the body so far.
    sent: u64,
    body_done: bool,
    body_taken: bool,
}

impl Sending {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Conn,
        body: &mut BoxBody,
        method: &Method,
    ) -> Poll<Result<Answer, Failure>> {
        loop {
            if let Err(error) = self.poll_send(cx, conn, body) {
                return Poll::Ready(Err(self.failure(error, conn)));
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.failure(e.into(), conn))),
                Poll::Ready(Ok(0)) => {
                    let error = if conn.buf.is_empty() {
                        AppError::ClosedBeforeResponse
                    } else {
                        AppError::BadHead("the app closed the connection mid-head".into())
                    };
                    return Poll::Ready(Err(self.failure(error, conn)));
                }
                Poll::Ready(Ok(_)) => match head::parse_response(&mut conn.buf, method) {
                    Ok(Some(head)) => {
                        return Poll::Ready(Ok(Answer {
                            head,
                            request_sent: self.body_done && self.all_written(),
                        }))
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Err(self.failure(error, conn))),
                },
            }
        }
    }

    fn failure(&self, error: AppError, conn: &Conn) -> Failure {
        let retryable = !self.body_taken
            && conn.buf.is_empty()
            && matches!(error, AppError::Io(_) | AppError::ClosedBeforeResponse);
        Failure { error, retryable }
    }

    /// Moves the request forward as far as the socket and the body allow.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Conn,
        body: &mut BoxBody,
    ) -> Result<(), AppError> {
        loop {
            if !self.all_written() {
                match self.poll_write(cx, conn) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => return Ok(()),
                }
                continue;
            }
            if self.body_done {
                return Ok(());
            }
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => self.end_body()?,
                Poll::Ready(Some(Err(e))) => return Err(AppError::RequestBody(e)),
                Poll::Ready(Some(Ok(frame))) => {
                    self.body_taken = true;
                    // Trailers are not sent on to the app.
                    if let Ok(data) = frame.into_data() {
                        self.queue_data(data)?;
                    }
                }
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) -> Result<(), AppError> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        match self.framing {
            RequestFraming::Length(n) if self.sent > n => return Err(AppError::RequestLength),
            RequestFraming::Chunked => {
                self.segments
                    .push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                self.segments.push_back(data);
                self.segments.push_back(Bytes::from_static(CRLF));
            }
            _ => self.segments.push_back(data),
        }
        Ok(())
    }

    fn end_body(&mut self) -> Result<(), AppError> {
        self.body_done = true;
        match self.framing {
            RequestFraming::Length(n) if self.sent != n => Err(AppError::RequestLength),
            RequestFraming::Chunked => {
                self.segments.push_back(Bytes::from_static(LAST_CHUNK));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn all_written(&self) -> bool {
        self.head.is_empty() && self.segments.is_empty()
    }

    /// Writes the head and queued segments, several per system call.
    fn poll_write(&mut self, cx: &mut Context<'_>, conn: &mut Conn) -> Poll<Result<(), AppError>> {
        while !self.all_written() {
            let stream = Pin::new(&mut conn.stream);
            let written = if self.segments.is_empty() {
                std::task::ready!(stream.poll_write(cx, &self.head))
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
                let head = (!self.head.is_empty()).then_some(&self.head);
                let mut count = 0;
                for (slice, segment) in slices
                    .iter_mut()
                    .zip(head.into_iter().chain(&self.segments))
                {
                    *slice = IoSlice::new(segment);
                    count += 1;
                }
                std::task::ready!(stream.poll_write_vectored(cx, &slices[..count]))
            };
            let mut written = match written {
                Ok(0) => return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(e.into())),
            };
            let step = written.min(self.head.len());
            self.head.advance(step);
            written -= step;
            while written > 0 {
                let Some(front) = self.segments.front_mut() else {
                    break;
                };
                let step = written.min(front.len());
                front.advance(step);
                written -= step;
                if front.is_empty() {
                    self.segments.pop_front();
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
