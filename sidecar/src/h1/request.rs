//! Request heads for the fast path: parsed with `httparse` (the parser hyper
//! uses), taken only when the request is plain. Anything else is handed to
//! hyper, which answers malformed and oversized heads with 400 and 431.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Uri};

use crate::headers;

/// Most header fields the fast path takes (hyper's default limit is 100;
/// a request with more is handed to hyper, which refuses it).
const MAX_HEADERS: usize = 100;
/// Headers the proxy may add to a request on its way.
const ADDED_HEADERS: usize = 4;
/// Largest request head the fast path waits for: hyper's smallest read
/// buffer, so no head the listener's `max_header_bytes` (in effect at least
/// this much) would refuse is taken here; longer ones are handed over and
/// hyper answers 431 beyond the limit.
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest body the fast path reads whole before calling the handler;
/// larger ones stream through hyper.
pub(super) const MAX_BODY_BYTES: usize = 16 * 1024;

/// A plain request, its head and body read whole from the buffer.
#[derive(Debug)]
pub(super) struct Plain {
    /// Method, target and headers; the body is `None` when empty.
    pub(super) request: Request<Option<Bytes>>,
    /// The client asked to close the connection after this request.
    pub(super) close: bool,
}

/// What the buffered bytes hold.
// Returned once per request and taken apart at once: boxing the large
// variant would add an allocation to every request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Parsed {
    /// A complete plain request, taken out of the buffer.
    Plain(Plain),
    /// The start of a plain request; read more.
    NeedMore,
    /// Not for the fast path: HTTP/1.0, HTTP/2's preface, an upgrade,
    /// `Expect`, a transfer coding, a large body or head, or a head hyper
    /// must refuse. The buffer is left as it was.
    HandOver,
}

/// Takes the next request out of `buf` when it is plain and complete.
pub(super) fn parse(buf: &mut BytesMut) -> Parsed {
    // Uninitialised slots: hyper's trick, to skip clearing 100 headers per
    // request.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Parsed::NeedMore,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::HandOver,
    };
    if parsed.version != Some(1) {
        return Parsed::HandOver;
    }
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Parsed::HandOver;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::HandOver;
    };
    if method == Method::CONNECT {
        return Parsed::HandOver;
    }
    // One copy of the head backs every header value and the target (no
    // allocation per header); the read buffer stays ours to reuse.
    let head = Bytes::copy_from_slice(&buf[..head_len]);
    let target_at = target.as_ptr() as usize - buf.as_ptr() as usize;
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target_at..target_at + target.len())) else {
        return Parsed::HandOver;
    };
    // Room for the headers the proxy adds (shard, epoch, deadline), so the
    // map never grows (a rehash: profiling put two at 900 instructions).
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + ADDED_HEADERS);
    let mut length: Option<usize> = None;
    let mut close = false;
    for field in parsed.headers.iter() {
        let Some(name) = headers::name_from_bytes(field.name.as_bytes()) else {
            return Parsed::HandOver;
        };
        let Some(value) = headers::value_in(&head, buf, field.value) else {
            return Parsed::HandOver;
        };
        if name == header::CONTENT_LENGTH {
            match parse_length(field.value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Parsed::HandOver,
            }
        } else if name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            return Parsed::HandOver;
        } else if name == header::CONNECTION {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("upgrade") {
                    return Parsed::HandOver;
                }
                close |= token.eq_ignore_ascii_case("close");
            }
        }
        headers.append(name, value);
    }
    let body_len = length.unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return Parsed::HandOver;
    }
    if buf.len() < head_len + body_len {
        return Parsed::NeedMore;
    }
    buf.advance(head_len);
    let body = (body_len > 0).then(|| Bytes::copy_from_slice(&buf[..body_len]));
    buf.advance(body_len);
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Parsed::Plain(Plain { request, close })
}

/// A `content-length` value as a buffer length.
fn parse_length(value: &[u8]) -> Option<usize> {
    headers::content_length(value).and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GET: &[u8] = b"GET /accounts/7?x=1 HTTP/1.1\r\nhost: a\r\nx-k: v\r\n\r\n";

    fn plain(bytes: &[u8]) -> (Plain, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        match parse(&mut buf) {
            Parsed::Plain(p) => (p, buf),
            other => panic!("{other:?} for {}", String::from_utf8_lossy(bytes)),
        }
    }

    fn handed_over(bytes: &[u8]) -> bool {
        let mut buf = BytesMut::from(bytes);
        let handed = matches!(parse(&mut buf), Parsed::HandOver);
        assert_eq!(&buf[..], bytes, "the buffer must be left whole");
        handed
    }

    #[test]
    fn a_plain_get_is_taken_whole_and_leaves_the_next_request() {
        let mut bytes = GET.to_vec();
        bytes.extend_from_slice(b"GET /next");
        let (p, rest) = plain(&bytes);
        assert_eq!(p.request.method(), Method::GET);
        assert_eq!(p.request.uri(), "/accounts/7?x=1");
        assert_eq!(p.request.headers()["x-k"], "v");
        assert_eq!(p.request.body(), &None);
        assert!(!p.close);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn a_small_body_is_read_whole() {
        let bytes = b"POST /t HTTP/1.1\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        let (p, rest) = plain(bytes);
        assert_eq!(p.request.body().as_deref(), Some(&b"hello"[..]));
        assert!(p.close);
        assert!(rest.is_empty());
        // Until the body is all there, the request waits.
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(matches!(parse(&mut buf), Parsed::NeedMore));
        assert_eq!(buf.len(), bytes.len() - 1);
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        let cases: [&[u8]; 11] = [
            b"GET / HTTP/1.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header: x\r\n\r\n",
            b"GET\x01 / HTTP/1.1\r\n\r\n",
        ];
        for bytes in cases {
            assert!(handed_over(bytes), "{}", String::from_utf8_lossy(bytes));
        }
        let mut long = b"GET / HTTP/1.1\r\nx: ".to_vec();
        long.resize(MAX_HEAD_BYTES + 1, b'a');
        assert!(handed_over(&long), "a head past the fast path's limit");
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_never_wait_past_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..(MAX_HEAD_BYTES + 64)),
        ) {
            let mut buf = BytesMut::from(&bytes[..]);
            match parse(&mut buf) {
                Parsed::NeedMore => prop_assert!(buf.len() < MAX_HEAD_BYTES + MAX_BODY_BYTES),
                Parsed::HandOver => prop_assert_eq!(&buf[..], &bytes[..]),
                Parsed::Plain(_) => prop_assert!(buf.len() < bytes.len()),
            }
        }

        #[test]
        fn a_request_cut_anywhere_waits_then_parses_the_same(cut in 0..GET.len()) {
            let mut buf = BytesMut::from(&GET[..cut]);
            prop_assert!(matches!(parse(&mut buf), Parsed::NeedMore));
            buf.extend_from_slice(&GET[cut..]);
            let Parsed::Plain(p) = parse(&mut buf) else {
                return Err(TestCaseError::fail("not parsed"));
            };
            prop_assert_eq!(p.request.uri(), "/accounts/7?x=1");
            prop_assert!(buf.is_empty());
        }
    }
}
