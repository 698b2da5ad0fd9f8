use super::*;

fn tracer(ratio: f64, queue: u32) -> (Tracer, IntCounter) {
    let mut config = TracingConfig::to("http://127.0.0.1:9");
    config.sampling_ratio = ratio;
    config.queue_size = queue;
    let dropped = IntCounter::new("d", "d").unwrap();
    let exported = IntCounterVec::new(prometheus::Opts::new("e", "e"), &["result"]).unwrap();
    let t = Tracer::start(&config, "tally", "tally-0", dropped.clone(), exported).unwrap();
    (t, dropped)
}

fn traceparent(h: &HeaderMap) -> Vec<String> {
    h["traceparent"]
        .to_str()
        .unwrap()
        .split('-')
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn starts_a_trace_and_each_hop_is_the_child_of_the_last() {
    let (t, _) = tracer(1.0, 16);
    let mut h = HeaderMap::new();
    let out = t.hop(Hop::Outbound, "tally", &mut h);
    let first = traceparent(&h);
    assert_eq!(first.len(), 4);
    assert_eq!(first[3], "01", "sampled");
    let inb = t.hop(Hop::Inbound, "tally", &mut h);
    let second = traceparent(&h);
    assert_eq!(second[1], first[1], "one trace");
    assert_ne!(second[2], first[2], "a span of its own");
    assert_eq!(
        inb.cx
            .as_ref()
            .unwrap()
            .span()
            .span_context()
            .trace_id()
            .to_string(),
        first[1]
    );
    inb.end(200, "", None);
    out.end(200, "", None);
}

#[tokio::test]
async fn follows_the_callers_decision_and_samples_new_traces_by_ratio() {
    let (t, _) = tracer(0.0, 16);
    let mut h = HeaderMap::new();
    t.hop(Hop::Outbound, "tally", &mut h).end(200, "", None);
    assert_eq!(traceparent(&h)[3], "00", "ratio 0 samples nothing new");
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let span = t.hop(Hop::Outbound, "tally", &mut h);
    let tp = traceparent(&h);
    assert_eq!(tp[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp[3], "01", "the caller sampled it");
    assert!(span.is_recording());
    span.end(200, "", None);
}

#[tokio::test]
async fn an_unsampled_traceparent_passes_on_untouched_without_a_span() {
    let (t, _) = tracer(1.0, 16);
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let mut h = HeaderMap::new();
    h.insert("traceparent", HeaderValue::from_static(incoming));
    h.insert("tracestate", HeaderValue::from_static("vendor=x"));
    let span = t.hop(Hop::Inbound, "tally", &mut h);
    assert!(!span.is_recording());
    assert_eq!(h["traceparent"], incoming);
    assert_eq!(h["tracestate"], "vendor=x");
    span.end(200, "", None);
}

#[test]
fn reads_the_sampled_flag_of_valid_traceparents_only() {
    let tp = |s: &'static str| sampled(&HeaderValue::from_static(s));
    assert_eq!(
        tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some(true)
    );
    assert_eq!(
        tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        Some(false)
    );
    assert_eq!(
        tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
        Some(true)
    );
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "zz-nonsense",
    ] {
        assert_eq!(tp(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn a_bad_traceparent_starts_a_new_trace() {
    let (t, _) = tracer(1.0, 16);
    let mut h = HeaderMap::new();
    h.insert("traceparent", HeaderValue::from_static("zz-nonsense"));
    t.hop(Hop::Inbound, "tally", &mut h)
        .end(502, "unavailable", None);
    assert_eq!(traceparent(&h)[1].len(), 32);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    // A current-thread runtime: the export task does not run in between,
    // so the queue of 2 takes 2 spans and the other 3 are dropped.
    let (t, dropped) = tracer(1.0, 2);
    for _ in 0..5 {
        let mut h = HeaderMap::new();
        t.hop(Hop::Outbound, "tally", &mut h).end(200, "", None);
    }
    assert_eq!(dropped.get(), 3);
}

/// A tracer whose finished spans land in the returned receiver.
fn recording() -> (Tracer, mpsc::Receiver<SpanData>) {
    let (tx, rx) = mpsc::channel(16);
    let dropped = IntCounter::new("d", "d").unwrap();
    let resource = Resource::builder().with_service_name("tally").build();
    (Tracer::queued(1.0, resource, tx, dropped), rx)
}

/// A response body made of `frames`.
struct Frames(std::collections::VecDeque<http_body::Frame<bytes::Bytes>>);

impl http_body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn grpc_stream(trailer_status: &'static str) -> Response<BoxBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(trailer_status));
    let frames = [
        http_body::Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\x01a")),
        http_body::Frame::trailers(trailers),
    ];
    let mut rsp = Response::new(crate::body::boxed(Frames(frames.into())));
    rsp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    rsp
}

fn attribute(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test]
async fn a_streamed_answer_ends_its_span_at_the_trailers_with_their_grpc_status() {
    use http_body_util::BodyExt;
    let (t, mut rx) = recording();
    let span = t.hop(Hop::Outbound, "tally", &mut HeaderMap::new());
    let mut body = span.end_with(grpc_stream("13"), "").into_body();
    assert!(rx.try_recv().is_err(), "the span waits for the body's end");
    let data = body.frame().await.unwrap().unwrap();
    assert!(data.is_data());
    assert!(rx.try_recv().is_err(), "a message is not the end");
    let trailers = body.frame().await.unwrap().unwrap();
    assert!(trailers.is_trailers(), "the trailers pass on");
    let span = rx.try_recv().expect("ended at the trailers");
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code"),
        Some(opentelemetry::Value::I64(13))
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(opentelemetry::Value::I64(200))
    );
    assert!(matches!(
        span.status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

#[tokio::test]
async fn a_trailers_only_answer_ends_its_span_at_once_and_app_statuses_are_no_server_error() {
    let (t, mut rx) = recording();
    let span = t.hop(Hop::Inbound, "tally", &mut HeaderMap::new());
    let mut rsp = Response::new(crate::body::empty());
    rsp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    rsp.headers_mut()
        .insert("grpc-status", HeaderValue::from_static("5"));
    let _rsp = span.end_with(rsp, "");
    let span = rx.try_recv().expect("ended with the head");
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code"),
        Some(opentelemetry::Value::I64(5))
    );
    // NOT_FOUND is the app's answer: on the server side it is no error.
    assert_eq!(span.status, opentelemetry::trace::Status::Unset);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_ends_the_span_marked_incomplete() {
    let (t, mut rx) = recording();
    let span = t.hop(Hop::Outbound, "tally", &mut HeaderMap::new());
    let rsp = span.end_with(grpc_stream("0"), "");
    assert!(rx.try_recv().is_err());
    drop(rsp);
    let span = rx.try_recv().expect("ended when dropped");
    assert_eq!(
        attribute(&span, "shardmesh.response_incomplete"),
        Some(opentelemetry::Value::Bool(true))
    );
    assert_eq!(attribute(&span, "rpc.grpc.status_code"), None);
}

#[tokio::test]
async fn an_unsampled_answer_passes_without_a_wrapper() {
    let (t, mut rx) = recording();
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    );
    let span = t.hop(Hop::Outbound, "tally", &mut h);
    let rsp = span.end_with(grpc_stream("13"), "");
    drop(rsp);
    assert!(rx.try_recv().is_err(), "no span exists");
}
