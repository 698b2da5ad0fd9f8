//! One TCP connection to the app with its read buffer.

use std::io;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// First read buffer of a connection: enough for a typical response head
/// and small body. Kept small because a sidecar holds one per in-flight
/// request (RSS with 1,000 busy connections).
const MIN_READ: usize = 4 * 1024;
/// Largest read: a body streaming in fills reads of doubling size up to
/// this, like hyper's adaptive read strategy (64 MiB through one hop took
/// 1.6× as long with fixed 4 KiB reads).
const MAX_READ: usize = 128 * 1024;

/// A connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: BytesMut,
    /// Size of the next read; adapts to how much the socket gives.
    read_size: usize,
}

impl Conn {
    /// Wraps a freshly connected stream.
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(MIN_READ),
            read_size: MIN_READ,
        }
    }

    /// Reads what the socket holds into the buffer; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
                self.buf.reserve(self.read_size);
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(n) => {
                    self.adapt(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Doubles the next read after one that filled its room, halves it after
    /// one that used less than a quarter.
    fn adapt(&mut self, read: usize) {
        if read >= self.read_size {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if read < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
    }

    /// Marks the socket as drained before the connection goes idle, without
    /// a system call. The response was read to its end, so readiness left
    /// over from the last read is stale; clearing it lets [`Conn::is_usable`]
    /// trust the next readiness event (the app closing the idle connection)
    /// the way nginx's keep-alive cache does, instead of probing with a read
    /// on every reuse.
    pub(super) fn park(&mut self) {
        // A large body grew the buffer; an idle connection keeps a small one.
        if self.buf.capacity() > 2 * MIN_READ {
            self.buf = BytesMut::with_capacity(MIN_READ);
        }
        self.read_size = MIN_READ;
        let _ = self.stream.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }

    /// Whether an idle connection can carry a request: the app has not
    /// closed it or sent anything unasked since it was parked.
    pub(super) fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn() -> Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        Conn::new(stream)
    }

    #[tokio::test]
    async fn reads_grow_with_a_streaming_body_and_shrink_back() {
        let mut c = conn().await;
        for _ in 0..10 {
            let size = c.read_size;
            c.adapt(size);
        }
        assert_eq!(c.read_size, MAX_READ);
        c.adapt(100);
        assert_eq!(c.read_size, MAX_READ / 2);
        c.buf.reserve(MAX_READ);
        c.park();
        assert_eq!(c.read_size, MIN_READ);
        assert!(
            c.buf.capacity() <= 2 * MIN_READ,
            "an idle connection kept a large buffer"
        );
    }
}
