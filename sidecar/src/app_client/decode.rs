//! Response body framing: cuts data out of the connection's read buffer
//! by content length, chunked coding, or up to the close. Pure (no I/O), so
//! it is tested byte by byte.

use bytes::{Buf, Bytes, BytesMut};

use super::error::AppError;
use super::head::ResponseFraming;

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_LINE_BYTES: usize = 4 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What the decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// The next piece of body data.
    Data(Bytes),
    /// The buffered bytes are used up; read more.
    NeedMore,
    /// The body is complete.
    Done,
}

/// The body decoder's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoder {
    /// Bytes still to come of a content-length body.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes still to come of the current chunk.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Inside the trailer section (dropped; `seen` bytes so far).
    Trailers { seen: usize },
    /// Data until end of stream.
    UntilClose,
    /// Complete.
    Done,
}

impl Decoder {
    /// The decoder for a response head's framing.
    pub(super) fn new(framing: ResponseFraming) -> Self {
        match framing {
            ResponseFraming::Empty => Decoder::Done,
            ResponseFraming::Length(n) => Decoder::Length(n),
            ResponseFraming::Chunked => Decoder::ChunkSize,
            ResponseFraming::UntilClose => Decoder::UntilClose,
        }
    }

    /// Bytes still expected, when known.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next body data out of `buf`, consuming framing bytes.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, AppError> {
        loop {
            match *self {
                Decoder::Done => return Ok(Decoded::Done),
                Decoder::Length(0) => *self = Decoder::Done,
                Decoder::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = take_len(n, buf.len());
                    let rest = n - take as u64;
                    // Done at once, so the body ends with its last data.
                    *self = if rest == 0 {
                        Decoder::Done
                    } else {
                        Decoder::Length(rest)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Decoder::ChunkSize => {
                    let Some(line) = line_end(buf, MAX_LINE_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&buf[..line])?;
                    buf.advance(line + 2);
                    *self = if size == 0 {
                        Decoder::Trailers { seen: 0 }
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = take_len(n, buf.len());
                    let rest = n - take as u64;
                    *self = if rest == 0 {
                        Decoder::ChunkEnd
                    } else {
                        Decoder::ChunkData(rest)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(AppError::BadBody("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers { seen } => {
                    let Some(line) = line_end(buf, MAX_TRAILER_BYTES.saturating_sub(seen))? else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(line + 2);
                    *self = if line == 0 {
                        Decoder::Done
                    } else {
                        Decoder::Trailers {
                            seen: seen + line + 2,
                        }
                    };
                }
            }
        }
    }

    /// The app closed the connection: the end of an until-close body,
    /// an error for any other.
    pub(super) fn at_eof(&mut self) -> Result<(), AppError> {
        match self {
            Decoder::UntilClose | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(AppError::BadBody("the app closed the connection mid-body")),
        }
    }
}

fn take_len(wanted: u64, buffered: usize) -> usize {
    usize::try_from(wanted).map_or(buffered, |w| w.min(buffered))
}

/// Offset of the CRLF ending the line at the start of `buf`, `None` when it
/// has not arrived; a line longer than `max` is an error.
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, AppError> {
    let limit = max.saturating_add(2);
    let window = &buf[..buf.len().min(limit)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= limit => Err(AppError::BadBody("chunk-size or trailer line too long")),
        None => Ok(None),
    }
}

/// The hexadecimal size at the start of a chunk-size line (extensions after
/// `;` are ignored; RFC 9112 §7.1.1).
fn chunk_size(line: &[u8]) -> Result<u64, AppError> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(AppError::BadBody("bad chunk size"));
    }
    digits.iter().try_fold(0u64, |n, d| {
        let v = (*d as char)
            .to_digit(16)
            .ok_or(AppError::BadBody("bad chunk size"))?;
        Ok(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` to a decoder in pieces cut at `cuts`; returns the body.
    fn decode_in_pieces(start: Decoder, wire: &[u8], cuts: &[usize]) -> Result<Vec<u8>, AppError> {
        let mut decoder = start;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        for point in points {
            buf.extend_from_slice(&wire[fed..point.max(fed)]);
            fed = point.max(fed);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::Done => return Ok(body),
                }
            }
        }
        decoder.at_eof()?;
        Ok(body)
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes
                .get(i)
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:X};x=y\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        wire.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
        wire
    }

    proptest! {
        #[test]
        fn chunked_bodies_decode_whole_however_they_arrive(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let wire = chunked(&body, &sizes);
            prop_assert_eq!(decode_in_pieces(Decoder::ChunkSize, &wire, &cuts).unwrap(), body);
        }

        #[test]
        fn length_bodies_stop_at_their_length(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let decoded = decode_in_pieces(Decoder::Length(body.len() as u64), &body, &cuts).unwrap();
            prop_assert_eq!(decoded, body);
        }

        #[test]
        fn garbage_is_an_error_or_data_never_a_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..6000),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let _ = decode_in_pieces(Decoder::ChunkSize, &wire, &cuts);
        }
    }

    #[test]
    fn an_endless_chunk_size_line_is_refused_not_buffered() {
        let mut buf = BytesMut::from(&[b'1'; MAX_LINE_BYTES + 2][..]);
        let err = Decoder::ChunkSize.decode(&mut buf).unwrap_err();
        assert!(matches!(err, AppError::BadBody(_)), "{err}");
        let mut buf = BytesMut::from(&b"1234"[..]);
        assert_eq!(
            Decoder::ChunkSize.decode(&mut buf).unwrap(),
            Decoded::NeedMore
        );
    }

    #[test]
    fn chunk_sizes_beyond_sixty_bits_are_refused() {
        let mut buf = BytesMut::from(&b"1000000000000000\r\n"[..]);
        assert!(Decoder::ChunkSize.decode(&mut buf).is_err());
    }

    #[test]
    fn a_body_cut_short_by_the_close_is_an_error() {
        assert!(Decoder::Length(3).at_eof().is_err());
        assert!(Decoder::ChunkData(3).at_eof().is_err());
        assert!(Decoder::UntilClose.at_eof().is_ok());
    }
}
