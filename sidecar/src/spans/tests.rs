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
