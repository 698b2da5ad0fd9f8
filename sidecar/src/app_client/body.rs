//! The response body as it streams from the app's connection; the
//! connection goes back to the pool the moment the body is complete.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use shardmesh_resilience::BoxError;

use super::conn::Conn;
use super::decode::{Decoded, Decoder};
use super::Pool;

/// A response body read straight from the connection by the task that
/// writes it to the caller: no connection task, no channel in between.
pub(super) struct AppBody {
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl AppBody {
    /// The body that follows a response head on `conn`.
    pub(super) fn new(conn: Conn, decoder: Decoder, keep_alive: bool, pool: Arc<Pool>) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool,
        };
        if body.decoder == Decoder::Done {
            body.release();
        }
        body
    }

    /// Ends the exchange: a connection that may carry another request goes
    /// back to the pool, any other is closed.
    fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                conn.park();
                self.pool.put(conn);
            }
        }
    }

    fn fail(&mut self, error: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.decoder = Decoder::Done;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Err(e) => return this.fail(e),
                Ok(Decoded::Data(data)) => {
                    if this.decoder == Decoder::Done {
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Done) => {
                    this.release();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return this.fail(e),
                    Poll::Ready(Ok(0)) => {
                        if let Err(e) = this.decoder.at_eof() {
                            return this.fail(e);
                        }
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Ok(_)) => {}
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
