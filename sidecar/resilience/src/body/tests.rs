use super::*;
use http_body_util::StreamBody;
use std::convert::Infallible;

/// A body of `n` chunks of `size` bytes with no declared length.
fn chunked(n: usize, size: usize) -> BoxBody {
    let frames =
        (0..n).map(move |i| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![i as u8; size]))));
    boxed(StreamBody::new(futures_iter(frames)))
}

/// Turns an iterator into a `Stream` (futures-util's `iter` without the crate).
fn futures_iter<I: Iterator + Unpin>(iter: I) -> IterStream<I> {
    IterStream(iter)
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

async fn collect(body: BoxBody) -> Bytes {
    match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => panic!("body failed: {e}"),
    }
}

#[tokio::test]
async fn small_body_is_buffered_and_replayed_each_time() {
    let req = Request::post("/x").body(chunked(4, 1000)).unwrap();
    let prepared = prepare(req, 64 * 1024).await.unwrap();
    let Prepared::Replayable(r) = prepared else {
        panic!("expected replayable")
    };
    assert_eq!(r.body_len(), 4000);
    for _ in 0..3 {
        let body = collect(r.request().into_body()).await;
        assert_eq!(body.len(), 4000);
        assert_eq!(&body[..1000], &[0u8; 1000][..]);
        assert_eq!(&body[3000..], &[3u8; 1000][..]);
    }
}

#[tokio::test]
async fn body_exactly_at_the_limit_is_replayable() {
    let req = Request::post("/x").body(chunked(2, 512)).unwrap();
    assert!(prepare(req, 1024).await.unwrap().is_replayable());
}

#[tokio::test]
async fn large_body_streams_prefix_then_rest_and_is_marked() {
    // 10 chunks of 1000 bytes with a 2500-byte limit: reading stops at the
    // third chunk, and the streamed body still carries every byte in order.
    let req = Request::post("/x").body(chunked(10, 1000)).unwrap();
    let Prepared::Streaming(req) = prepare(req, 2500).await.unwrap() else {
        panic!("expected streaming")
    };
    assert!(req.extensions().get::<NotRetryable>().is_some());
    let body = collect(req.into_body()).await;
    assert_eq!(body.len(), 10_000);
    for i in 0..10 {
        assert!(body[i * 1000..(i + 1) * 1000].iter().all(|b| *b == i as u8));
    }
}

#[tokio::test]
async fn declared_length_over_limit_streams_without_reading() {
    let req = Request::post("/x")
        .header("content-length", "100000")
        .body(chunked(1, 10))
        .unwrap();
    let prepared = prepare(req, 1024).await.unwrap();
    assert!(!prepared.is_replayable());
    // A Full body reports an exact size hint, which is enough on its own.
    let req = Request::post("/x").body(full(vec![7u8; 2048])).unwrap();
    assert!(!prepare(req, 1024).await.unwrap().is_replayable());
}

#[tokio::test]
async fn empty_body_is_replayable() {
    let req = Request::get("/x").body(empty()).unwrap();
    let Prepared::Replayable(r) = prepare(req, 1024).await.unwrap() else {
        panic!("expected replayable")
    };
    let body = r.request().into_body();
    assert!(body.is_end_stream());
}

#[tokio::test]
async fn body_error_is_typed() {
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Err::<Frame<Bytes>, BoxError>("client went away".into()),
    ];
    let body = StreamBody::new(futures_iter(frames.into_iter())).boxed();
    let req = Request::post("/x").body(body).unwrap();
    let err = prepare(req, 1024).await.unwrap_err();
    assert!(crate::errors::boxed_cause::<RequestBodyError>(&err).is_some());
}

#[tokio::test]
async fn many_tiny_frames_are_joined_into_one_buffer() {
    // 5,000 one-byte frames: buffered as 5,000 bytes, replayed whole.
    let req = Request::post("/x").body(chunked(5_000, 1)).unwrap();
    let Prepared::Replayable(r) = prepare(req, 64 * 1024).await.unwrap() else {
        panic!("expected replayable")
    };
    assert_eq!(r.body_len(), 5_000);
    let body = collect(r.request().into_body()).await;
    assert!(body.iter().enumerate().all(|(i, b)| *b == i as u8));
    // Over a 1,000-byte limit the same frames stream, in order, intact.
    let req = Request::post("/x").body(chunked(5_000, 1)).unwrap();
    let Prepared::Streaming(req) = prepare(req, 1_000).await.unwrap() else {
        panic!("expected streaming")
    };
    let body = collect(req.into_body()).await;
    assert_eq!(body.len(), 5_000);
    assert!(body.iter().enumerate().all(|(i, b)| *b == i as u8));
}
