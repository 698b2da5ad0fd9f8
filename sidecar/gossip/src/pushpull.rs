//! TCP push-pull: one sealed, length-prefixed frame each way, with a size
//! bound and a deadline on every read and write; optionally inside mutual
//! TLS (the mesh's certificates), so only mesh members can exchange state.

use std::time::Duration;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::keyring::{Channel, Keyring};
use crate::wire::{self, BadPacket, PushPull, MAX_FRAME};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Socket error or deadline passed.
    #[error("push-pull i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a bad frame.
    #[error("push-pull frame refused: {}", .0.as_str())]
    Bad(BadPacket),
}

/// Mutual TLS for push-pull: the sidecar's acceptor and connector.
#[derive(Clone)]
pub struct GossipTls {
    /// Accepts push-pull connections (client certificates required).
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Opens push-pull connections with this member's certificate.
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for GossipTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipTls")
    }
}

/// A push-pull connection: plain TCP or TLS over it.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects to `to` (with TLS when configured) within `timeout`.
pub(crate) async fn connect(
    to: SocketAddr,
    tls: Option<&GossipTls>,
    timeout: std::time::Duration,
) -> Result<Box<dyn Stream>, FrameError> {
    let open = async {
        let tcp = TcpStream::connect(to).await?;
        let _ = tcp.set_nodelay(true);
        Ok::<Box<dyn Stream>, std::io::Error>(match tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(to.ip().into());
                Box::new(tls.connector.connect(name, tcp).await?)
            }
        })
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(FrameError::Io)
}

/// Completes the server side of an accepted connection within `timeout`.
pub(crate) async fn accept(
    tcp: TcpStream,
    tls: Option<&GossipTls>,
    timeout: std::time::Duration,
) -> Result<Box<dyn Stream>, FrameError> {
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => tokio::time::timeout(timeout, tls.acceptor.accept(tcp))
            .await
            .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))?
            .map(|s| Box::new(s) as Box<dyn Stream>)
            .map_err(FrameError::Io),
    }
}

/// Reads one frame and decodes it; counts the bytes read.
pub(crate) async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    keyring: &Keyring,
    timeout: Duration,
) -> Result<(PushPull, usize), FrameError> {
    let read = async {
        let len = stream.read_u32().await? as usize;
        if len > MAX_FRAME {
            return Err(FrameError::Bad(BadPacket::Oversized));
        }
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        let plain = keyring
            .open(Channel::Tcp, &buf)
            .map_err(|e| FrameError::Bad(e.into()))?;
        let state = wire::decode::<PushPull>(&plain, MAX_FRAME).map_err(FrameError::Bad)?;
        Ok((state, len + 4))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))?
}

/// Encodes, seals and writes one frame; returns the bytes written.
pub(crate) async fn write_frame(
    stream: &mut (impl AsyncWrite + Unpin),
    keyring: &Keyring,
    state: &PushPull,
    timeout: Duration,
) -> Result<usize, FrameError> {
    let sealed = keyring.seal(Channel::Tcp, &wire::encode(state));
    if sealed.len() > MAX_FRAME {
        return Err(FrameError::Bad(BadPacket::Oversized));
    }
    let write = async {
        stream.write_u32(sealed.len() as u32).await?;
        stream.write_all(&sealed).await?;
        stream.flush().await?;
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(sealed.len() + 4)
}
