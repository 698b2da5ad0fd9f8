use http_body_util::{BodyExt, StreamBody};

use super::*;

fn stream(frames: Vec<Frame<Bytes>>) -> BoxBody {
    let iter = frames.into_iter().map(Ok::<_, BoxError>);
    StreamBody::new(futures_util::stream::iter(iter)).boxed()
}

async fn collect(body: BoxBody) -> Result<(Bytes, Option<HeaderMap>), BoxError> {
    let c = body.collect().await?;
    let trailers = c.trailers().cloned();
    Ok((c.to_bytes(), trailers))
}

#[tokio::test]
async fn a_complete_small_body_replays_with_its_trailers() {
    let mut t = HeaderMap::new();
    t.insert("x-t", "1".parse().unwrap());
    let tee = Tee::new(
        stream(vec![
            Frame::data(Bytes::from("ab")),
            Frame::data(Bytes::from("cd")),
            Frame::trailers(t),
        ]),
        64,
    );
    assert!(tee.replayable(), "nothing read yet");
    let (first, t1) = collect(tee.body()).await.unwrap();
    assert!(tee.replayable());
    let (second, t2) = collect(tee.body()).await.unwrap();
    assert_eq!(first, "abcd");
    assert_eq!(second, "abcd");
    assert_eq!(t1.unwrap()["x-t"], "1");
    assert_eq!(t2.unwrap()["x-t"], "1");
}

#[tokio::test]
async fn an_open_stream_is_not_replayed() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let tee = Tee::new(body, 64);
    let mut first = tee.body();
    tx.send(Ok(Frame::data(Bytes::from("m1")))).await.unwrap();
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "m1");
    assert!(!tee.replayable(), "the client has not finished its stream");
}

#[tokio::test]
async fn a_body_over_the_limit_streams_once() {
    let tee = Tee::new(
        stream(vec![
            Frame::data(Bytes::from("abc")),
            Frame::data(Bytes::from("def")),
        ]),
        4,
    );
    let (all, _) = collect(tee.body()).await.unwrap();
    assert_eq!(all, "abcdef");
    assert!(!tee.replayable());
}

#[tokio::test]
async fn an_older_try_stops_reading() {
    let tee = Tee::new(stream(vec![Frame::data(Bytes::from("ab"))]), 64);
    let mut old = tee.body();
    let new = tee.body();
    assert!(old.frame().await.unwrap().is_err());
    let (data, _) = collect(new).await.unwrap();
    assert_eq!(data, "ab");
}

fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
