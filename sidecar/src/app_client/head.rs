//! HTTP/1.1 message heads to and from the app: the request head we write
//! and the response head we parse (with `httparse`, the parser hyper uses).

use std::fmt::Write as _;

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::error::AppError;

/// Most header fields accepted in a response (hyper's default is 100).
const MAX_HEADERS: usize = 128;
/// Largest response head accepted; a longer one is a bad gateway, never an
/// unbounded buffer.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the request body is framed on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body.
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

impl RequestFraming {
    /// Chooses the framing from what the body knows about itself (the
    /// listeners' bodies report a declared length as an exact size), and
    /// from the declared length only when the body does not know.
    pub(super) fn of(parts: &Parts, exact: Option<u64>, end_stream: bool) -> Self {
        if end_stream {
            return RequestFraming::Empty;
        }
        if let Some(n) = exact {
            return RequestFraming::Length(n);
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }
}

/// Writes the request head: request line, the headers except hop-by-hop
/// framing ones (the framing is ours), then the framing header.
pub(super) fn encode_request(
    parts: &Parts,
    framing: RequestFraming,
    host: &HeaderValue,
    out: &mut BytesMut,
) {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.reserve(64 + target.len() + parts.headers.len() * 32);
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
            continue;
        }
        has_host |= *name == header::HOST;
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_host {
        put_field(out, b"host", host.as_bytes());
    }
    match framing {
        RequestFraming::Length(n) => {
            out.put_slice(b"content-length: ");
            // Writing into a BytesMut cannot fail.
            let _ = write!(out, "{n}");
            out.put_slice(b"\r\n");
        }
        RequestFraming::Chunked => put_field(out, b"transfer-encoding", b"chunked"),
        // A method that means to carry a body says it carries none.
        RequestFraming::Empty if body_expected(&parts.method) => {
            put_field(out, b"content-length", b"0");
        }
        RequestFraming::Empty => {}
    }
    out.put_slice(b"\r\n");
}

fn body_expected(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}

use crate::headers::put_field;

/// How the response body is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    /// No body (HEAD, 204, 304, or `content-length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the app closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct ResponseHead {
    /// Status, version and end-to-end headers (hop-by-hop ones removed).
    pub(super) response: Response<()>,
    /// How the body that follows is framed.
    pub(super) framing: ResponseFraming,
    /// The connection may carry another request after this response.
    pub(super) keep_alive: bool,
}

/// Parses the next final response head at the start of `buf`. Returns the
/// head and its length, or `None` when more bytes are needed; interim (1xx)
/// responses are skipped and consumed from `buf`.
pub(super) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, AppError> {
    loop {
        // Uninitialised slots: hyper's trick, to skip clearing 128 headers
        // per response.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(AppError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(AppError::BadHead(e.to_string())),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code)
            .map_err(|_| AppError::BadHead(format!("status code {code}")))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(AppError::BadHead(
                "101 Switching Protocols to a request without Upgrade".into(),
            ));
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        // One copy of the head backs every header value.
        let copy = Bytes::copy_from_slice(&buf[..len]);
        let head = build(status, http10, parsed.headers, method, &copy, buf)?;
        buf.advance(len);
        return Ok(Some(head));
    }
}

fn build(
    status: StatusCode,
    http10: bool,
    fields: &[httparse::Header<'_>],
    method: &Method,
    copy: &Bytes,
    buf: &[u8],
) -> Result<ResponseHead, AppError> {
    // Room for `x-shardmesh-served-by` and the like: the map never grows.
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let mut said_close = false;
    let mut said_keep_alive = false;
    for field in fields {
        let name = crate::headers::name_from_bytes(field.name.as_bytes())
            .ok_or_else(|| AppError::BadHead(format!("header name {:?}", field.name)))?;
        let value = crate::headers::value_in(copy, buf, field.value)
            .ok_or_else(|| AppError::BadHead(format!("value of header {name}")))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_length(&value)?;
            if length.is_some_and(|l| l != n) {
                return Err(AppError::BadHead("conflicting content-length".into()));
            }
            if length.is_none() {
                headers.append(name, value);
            }
            length = Some(n);
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            transfer_coded = true;
            chunked = crate::headers::is_chunked(&value);
        } else if name == header::CONNECTION {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                said_close |= token.eq_ignore_ascii_case("close");
                said_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        headers.append(name, value);
    }
    // The hop-by-hop headers (and those `Connection` names) are the
    // listeners' rule too; `Trailer` goes as well, since trailers are dropped.
    crate::headers::strip_hop_by_hop(&mut headers);
    crate::headers::remove_present(&mut headers, &[header::TRAILER]);
    // HTTP/1.0 closes unless asked to keep the connection alive.
    let mut close = said_close || (http10 && !said_keep_alive);
    let no_body = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        ResponseFraming::Empty
    } else if transfer_coded {
        // A transfer coding overrides any length (RFC 9112 §6.3 point 3),
        // and a message with both must not be reused.
        if length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            ResponseFraming::Chunked
        } else {
            close = true;
            ResponseFraming::UntilClose
        }
    } else {
        match length {
            Some(0) => ResponseFraming::Empty,
            Some(n) => ResponseFraming::Length(n),
            None => {
                close = true;
                ResponseFraming::UntilClose
            }
        }
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(ResponseHead {
        response,
        framing,
        keep_alive: !close,
    })
}

fn parse_length(value: &HeaderValue) -> Result<u64, AppError> {
    crate::headers::content_length(value.as_bytes())
        .ok_or_else(|| AppError::BadHead(format!("content-length {value:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello";

    proptest! {
        #[test]
        fn any_bytes_give_a_head_an_error_or_a_wait_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(None) = parse_response(&mut buf, &Method::GET) {
                // Waiting for more is only allowed below the limit.
                prop_assert!(buf.len() <= MAX_HEAD_BYTES);
            }
        }

        #[test]
        fn a_head_cut_anywhere_waits_then_parses_the_same(cut in 0..HEAD.len()) {
            let mut buf = BytesMut::from(&HEAD[..cut]);
            let head = match parse_response(&mut buf, &Method::GET).unwrap() {
                Some(head) => {
                    buf.extend_from_slice(&HEAD[cut..]);
                    head
                }
                None => {
                    buf.extend_from_slice(&HEAD[cut..]);
                    parse_response(&mut buf, &Method::GET).unwrap().unwrap()
                }
            };
            prop_assert_eq!(head.framing, ResponseFraming::Length(5));
            prop_assert!(head.keep_alive);
            prop_assert_eq!(&head.response.headers()["x-a"], "b");
            prop_assert_eq!(&buf[..], b"hello");
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: [(&[u8], Method, ResponseFraming, bool); 7] = [
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                Method::GET,
                ResponseFraming::UntilClose,
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
                Method::GET,
                ResponseFraming::Length(2),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n",
                Method::GET,
                ResponseFraming::Length(2),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
                Method::GET,
                ResponseFraming::Chunked,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                Method::GET,
                ResponseFraming::UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                Method::GET,
                ResponseFraming::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                Method::GET,
                ResponseFraming::Empty,
                false,
            ),
        ];
        for (bytes, method, framing, keep_alive) in cases {
            let mut buf = BytesMut::from(bytes);
            let head = parse_response(&mut buf, &method).unwrap().unwrap();
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(head.framing, framing, "{text}");
            assert_eq!(head.keep_alive, keep_alive, "{text}");
        }
    }

    #[test]
    fn the_request_head_carries_our_framing_only() {
        let (parts, ()) = http::Request::post("http://app/x?y=1")
            .header("transfer-encoding", "chunked")
            .header("x-k", "v")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = BytesMut::new();
        let host = HeaderValue::from_static("127.0.0.1:8080");
        encode_request(&parts, RequestFraming::Length(3), &host, &mut out);
        assert_eq!(
            &out[..],
            b"POST /x?y=1 HTTP/1.1\r\nx-k: v\r\nhost: 127.0.0.1:8080\r\ncontent-length: 3\r\n\r\n"
        );
        let mut out = BytesMut::new();
        encode_request(&parts, RequestFraming::Empty, &host, &mut out);
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));
    }
}
