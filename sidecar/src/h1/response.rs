//! Responses out: the head with its framing, then the body as it streams,
//! coalesced with the head into one write when the body is already there.

use std::fmt::Write as _;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::date;
use crate::body::BoxBody;
use crate::headers::put_field;

/// Body data up to this size is copied behind the head (one system call);
/// larger data is written from its own buffer.
const COPY_BELOW: usize = 8 * 1024;

/// How the body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body bytes (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (a transfer coding we do not apply).
    UntilClose,
}

/// Writes the head of `parts` into `out` and says how the body follows.
/// Adds `date`, the framing header the body needs when the handler set none,
/// and `connection: close` when `keep_alive` is false (it also becomes false
/// when the handler asked to close or the framing needs a close).
pub(super) fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    body: &BoxBody,
    head_request: bool,
    keep_alive: &mut bool,
    out: &mut BytesMut,
) -> Framing {
    out.reserve(128 + headers.len() * 48);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    // The framing headers are written after the others, by the framing
    // chosen: never a length beside a transfer coding.
    let mut declared: Option<u64> = None;
    let mut coding: Option<&HeaderValue> = None;
    let mut has_date = false;
    let mut said_close = false;
    for (name, value) in headers {
        if *name == header::CONTENT_LENGTH {
            // A length we cannot read is not sent on as a promise.
            declared = value.to_str().ok().and_then(|v| v.trim().parse().ok());
            continue;
        }
        if *name == header::TRANSFER_ENCODING {
            coding = Some(value);
            continue;
        }
        if *name == header::DATE {
            has_date = true;
        } else if *name == header::CONNECTION {
            said_close |= value
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
        Framing::None
    } else if head_request || status == StatusCode::NOT_MODIFIED {
        // The length a GET would get, when known; no body follows. (A 304
        // carries only a declared one: its empty body says nothing.)
        let known = declared.or_else(|| head_request.then(|| body.size_hint().exact()).flatten());
        if let Some(n) = known {
            put_length(out, n);
        }
        Framing::None
    } else if let Some(coding) = coding {
        put_field(out, b"transfer-encoding", coding.as_bytes());
        if crate::headers::is_chunked(coding) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = declared.or_else(|| body.size_hint().exact()) {
        put_length(out, n);
        Framing::Length(n)
    } else {
        put_field(out, b"transfer-encoding", b"chunked");
        Framing::Chunked
    };
    if !has_date {
        out.put_slice(b"date: ");
        date::put(out);
        out.put_slice(b"\r\n");
    }
    if said_close || framing == Framing::UntilClose {
        *keep_alive = false;
    }
    if !*keep_alive && !said_close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    framing
}

fn put_length(out: &mut BytesMut, n: u64) {
    out.put_slice(b"content-length: ");
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "{n}");
    out.put_slice(b"\r\n");
}

/// Writes `rsp` to `io`, using `out` as the write buffer (left empty).
/// Returns whether the connection may carry another request: not when the
/// body failed, ended short of its length, or needed a close to end.
pub(super) async fn write<IO>(
    io: &mut IO,
    out: &mut BytesMut,
    rsp: Response<BoxBody>,
    head_request: bool,
    mut keep_alive: bool,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
{
    let (parts, mut body) = rsp.into_parts();
    let framing = encode_head(
        parts.status,
        &parts.headers,
        &body,
        head_request,
        &mut keep_alive,
        out,
    );
    if framing == Framing::None {
        flush(io, out).await?;
        return Ok(keep_alive);
    }
    let mut sent = 0u64;
    loop {
        // Take what the body has now; only when it must wait does the
        // buffered head (and data) go out first.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                flush(io, out).await?;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                flush(io, out).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not sent over HTTP/1.1.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let mut data = data;
        if let Framing::Length(n) = framing {
            let room = n - sent;
            if data.len() as u64 > room {
                // More than the declared length: send what was promised,
                // then close.
                data.truncate(room as usize);
                keep_alive = false;
            }
        }
        sent += data.len() as u64;
        if framing == Framing::Chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if data.len() < COPY_BELOW {
            out.put_slice(&data);
        } else {
            write_with(io, out, data).await?;
        }
        if framing == Framing::Chunked {
            out.put_slice(b"\r\n");
        }
    }
    match framing {
        Framing::Chunked => out.put_slice(b"0\r\n\r\n"),
        Framing::Length(n) if sent != n => keep_alive = false,
        _ => {}
    }
    flush(io, out).await?;
    Ok(keep_alive)
}

/// Writes the buffer and empties it.
async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// Writes the buffer and then `data`, in one system call where the stream
/// takes a vector of buffers.
async fn write_with<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut BytesMut,
    mut data: Bytes,
) -> io::Result<()> {
    if !io.is_write_vectored() {
        flush(io, out).await?;
        return io.write_all(&data).await;
    }
    let mut head_left = out.len();
    let mut head_at = 0;
    while head_left > 0 {
        let slices = [IoSlice::new(&out[head_at..]), IoSlice::new(&data)];
        let n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head_left);
        head_at += from_head;
        head_left -= from_head;
        bytes::Buf::advance(&mut data, n - from_head);
    }
    out.clear();
    io.write_all(&data).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{empty, full};

    fn head(rsp: &Response<BoxBody>, head_request: bool, keep: bool) -> (String, Framing, bool) {
        let mut out = BytesMut::new();
        let mut keep_alive = keep;
        let framing = encode_head(
            rsp.status(),
            rsp.headers(),
            rsp.body(),
            head_request,
            &mut keep_alive,
            &mut out,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        (text, framing, keep_alive)
    }

    #[test]
    fn framing_follows_what_the_body_knows() {
        let rsp = Response::new(full("hello"));
        let (text, framing, keep) = head(&rsp, false, true);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(text.contains("date: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(framing, Framing::Length(5));
        assert!(keep);

        let stream = crate::body::boxed(http_body_util::StreamBody::new(
            futures_util::stream::iter(Vec::<Result<http_body::Frame<Bytes>, BoxError>>::new()),
        ));
        let (text, framing, _) = head(&Response::new(stream), false, true);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(framing, Framing::Chunked);

        let (text, framing, _) = head(&Response::new(empty()), false, true);
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        assert_eq!(framing, Framing::Length(0));
    }

    #[test]
    fn a_declared_length_is_kept_and_head_or_204_send_no_body() {
        let mut rsp = Response::new(full("hello"));
        rsp.headers_mut()
            .insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        let (text, framing, _) = head(&rsp, true, true);
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert_eq!(framing, Framing::None);
        *rsp.status_mut() = StatusCode::NO_CONTENT;
        assert_eq!(head(&rsp, false, true).1, Framing::None);
    }

    #[test]
    fn a_transfer_coding_is_never_sent_beside_a_length() {
        let mut rsp = Response::new(full("hello"));
        rsp.headers_mut()
            .insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        rsp.headers_mut()
            .insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        let (text, framing, _) = head(&rsp, false, true);
        assert_eq!(framing, Framing::Chunked);
        assert!(!text.contains("content-length"), "{text}");
        assert_eq!(
            text.matches("transfer-encoding: chunked").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn closing_is_said_once() {
        let mut rsp = Response::new(empty());
        let (text, _, keep) = head(&rsp, false, false);
        assert!(text.contains("connection: close\r\n") && !keep, "{text}");
        rsp.headers_mut()
            .insert(header::CONNECTION, "close".parse().unwrap());
        let (text, _, keep) = head(&rsp, false, true);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert!(!keep);
        let mut rsp = Response::new(empty());
        rsp.headers_mut()
            .insert(header::TRANSFER_ENCODING, "gzip".parse().unwrap());
        let (_, framing, keep) = head(&rsp, false, true);
        assert_eq!(framing, Framing::UntilClose);
        assert!(!keep, "a body that ends with the connection closes it");
    }

    type BoxError = shardmesh_resilience::BoxError;

    #[tokio::test]
    async fn a_body_longer_than_declared_is_cut_and_the_connection_closed() {
        let mut rsp = Response::new(full("hello world"));
        rsp.headers_mut()
            .insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        let mut wire = Vec::new();
        let mut out = BytesMut::new();
        let keep = write(&mut wire, &mut out, rsp, false, true).await.unwrap();
        assert!(!keep);
        assert!(
            wire.ends_with(b"\r\n\r\nhello"),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
    }

    #[tokio::test]
    async fn a_large_chunked_body_streams_in_chunks() {
        let big = Bytes::from(vec![b'x'; COPY_BELOW * 2]);
        let frames = vec![
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(big.clone())),
        ];
        let body = crate::body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        let mut wire = Vec::new();
        let mut out = BytesMut::new();
        let keep = write(&mut wire, &mut out, Response::new(body), false, true)
            .await
            .unwrap();
        assert!(keep);
        let text = String::from_utf8(wire).unwrap();
        let body_at = text.find("\r\n\r\n").unwrap() + 4;
        let expected = format!(
            "2\r\nab\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            big.len(),
            "x".repeat(big.len())
        );
        assert_eq!(&text[body_at..], expected);
        assert!(out.is_empty());
    }
}
