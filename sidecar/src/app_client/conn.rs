//! One TCP connection to the app with its read buffer.

use std::io;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// First read buffer of a connection: enough for a typical response head
/// and small body; it grows for larger reads. Kept small because a sidecar
/// holds one per in-flight request (RSS with 1,000 busy connections).
const INITIAL_BUFFER: usize = 4 * 1024;
/// Room asked for before each read.
const READ_RESERVE: usize = 4 * 1024;

/// A connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: BytesMut,
}

impl Conn {
    /// Wraps a freshly connected stream.
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
        }
    }

    /// Reads what the socket holds into the buffer; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            if self.buf.capacity() - self.buf.len() < READ_RESERVE / 2 {
                self.buf.reserve(READ_RESERVE);
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Marks the socket as drained before the connection goes idle, without
    /// a system call. The response was read to its end, so readiness left
    /// over from the last read is stale; clearing it lets [`Conn::is_usable`]
    /// trust the next readiness event (the app closing the idle connection)
    /// the way nginx's keep-alive cache does, instead of probing with a read
    /// on every reuse.
    pub(super) fn park(&mut self) {
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
