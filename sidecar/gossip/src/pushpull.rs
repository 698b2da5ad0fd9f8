//! TCP push-pull: one sealed, length-prefixed frame each way, with a size
//! bound and a deadline on every read and write.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Reads one frame and decodes it; counts the bytes read.
pub(crate) async fn read_frame(
    stream: &mut TcpStream,
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
    stream: &mut TcpStream,
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
