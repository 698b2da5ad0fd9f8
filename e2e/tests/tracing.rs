//! Distributed tracing through a local mesh, received by a real Jaeger v2
//! (`shardmesh_e2e::jaeger`): the sidecars of the `tally` sample export
//! their spans over OTLP/gRPC to it, and the test reads each trace back
//! through Jaeger's query API. A call that crossed two sidecars is one
//! trace: the app's span → the caller's outbound span → the owner's
//! inbound span, with the mesh's attributes (service, shard, owner pod,
//! retries, breaker state, mesh reason) and the call's `grpc-status`, taken
//! from the trailers of a stream when it ends.
//!
//! Skips with the reason when the Jaeger binary is absent (it comes from
//! `scripts/kube/build`); stage `scripts/test.d/60-kube.sh` builds it and
//! runs this test, and there an absent binary fails it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use shardmesh_e2e::jaeger::Jaeger;
use shardmesh_e2e::{mesh, poll, tally};
use shardmesh_tally::proto::{AddRequest, Chunk};
use shardmesh_tally::TallyClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// How long spans may take to show up in Jaeger (the sidecars export at
/// least every second).
const ARRIVAL: Duration = Duration::from_secs(30);

/// One span of a trace as Jaeger's query API returns it, flattened.
#[derive(Clone, Debug)]
struct Span {
    id: String,
    parent: Option<String>,
    name: String,
    /// `k8s.pod.name` of the span's process (the sidecar's pod).
    pod: String,
    /// The process's service name.
    service: String,
    duration_us: u64,
    tags: HashMap<String, String>,
}

impl Span {
    fn tag(&self, key: &str) -> &str {
        self.tags
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("span {} has no tag {key}: {self:#?}", self.name))
    }
}

fn flat_tags(tags: &Value) -> HashMap<String, String> {
    tags.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let v = match &t["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (t["key"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}

/// The spans of a trace in Jaeger's JSON (`/api/traces/<id>`).
fn spans(trace: &Value) -> Vec<Span> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let process = &processes[s["processID"].as_str().unwrap_or_default()];
            Span {
                id: s["spanID"].as_str().unwrap_or_default().to_string(),
                parent: s["references"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["refType"] == "CHILD_OF")
                    .and_then(|r| r["spanID"].as_str().map(String::from)),
                name: s["operationName"].as_str().unwrap_or_default().to_string(),
                pod: flat_tags(&process["tags"])
                    .remove("k8s.pod.name")
                    .unwrap_or_default(),
                service: process["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                duration_us: s["duration"].as_u64().unwrap_or(0),
                tags: flat_tags(&s["tags"]),
            }
        })
        .collect()
}

/// Polls Jaeger until trace `id` has `outbound` outbound and `inbound`
/// inbound spans.
fn wait_trace(jaeger: &Jaeger, id: &str, outbound: usize, inbound: usize) -> Vec<Span> {
    let count = |s: &[Span], name: &str| s.iter().filter(|s| s.name == name).count();
    poll(ARRIVAL, || {
        let s = spans(&jaeger.trace(id)?);
        (count(&s, "shardmesh outbound") >= outbound && count(&s, "shardmesh inbound") >= inbound)
            .then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "trace {id} did not reach {outbound} outbound + {inbound} inbound spans in {ARRIVAL:?}; \
             Jaeger has {:#?} (logs in {})",
            jaeger.trace(id),
            jaeger.dir().display()
        )
    })
}

fn one<'a>(spans: &'a [Span], what: &str, pred: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pred(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what} in {spans:#?}");
    found[0]
}

fn manifest(collector: &str) -> String {
    tally::manifest(
        3,
        &format!(
            "  sidecar:\n    tracing:\n      endpoint: \"{collector}\"\n      samplingRatio: 1.0\n"
        ),
    )
}

/// A request to `tally` for `key`, with the app's trace context when
/// `traceparent` is given.
fn keyed<T>(msg: T, key: &str, traceparent: Option<&str>) -> Request<T> {
    let mut r = tally::keyed(msg, key);
    if let Some(tp) = traceparent {
        r.metadata_mut().insert("traceparent", tp.parse().unwrap());
    }
    r
}

/// The app's trace id of call `n`: each call its own trace.
fn trace_id(n: u32) -> String {
    format!("4bf92f3577b34da6a3ce929d{n:08x}")
}

/// The app's own span id, the parent of every outbound span.
const APP_SPAN: &str = "00f067aa0ba902b7";

fn sampled(n: u32) -> String {
    format!("00-{}-{APP_SPAN}-01", trace_id(n))
}

#[test]
fn a_call_across_two_sidecars_is_one_trace_in_jaeger_with_a_span_per_hop() {
    let jaeger = match Jaeger::for_test("tracing") {
        Ok(j) => j,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let m = mesh::Mesh::up("tracing", &manifest(&jaeger.otlp_endpoint()), 111, &[]);
    m.wait_ready(Duration::from_secs(30));
    let outbound = m.pod_field("tally-0", "outbound");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(tally::client(&outbound));
    let call = |client: &mut TallyClient<Channel>, r: Request<AddRequest>| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), client.add(r))
                .await
                .expect("call finished in time")
        })
    };

    // A key tally-0 does not own, so calls cross two sidecars; each try
    // is a trace of its own.
    let mut n = 0;
    let (key, owner) = loop {
        assert!(n < 50, "tally-0 owned every key");
        let key = format!("trace-{n}");
        let add = AddRequest {
            key: key.clone(),
            amount: 1,
            ..Default::default()
        };
        let total = call(&mut client, keyed(add, &key, Some(&sampled(n))))
            .expect("add")
            .into_inner();
        if total.served_by != "tally-0" {
            break (key, total.served_by);
        }
        n += 1;
    };

    // 1. The app's span → tally-0's outbound span → the owner's inbound span.
    let s = wait_trace(&jaeger, &trace_id(n), 1, 1);
    assert_eq!(s.len(), 2, "{s:#?}");
    let out = one(&s, "outbound span", |s| s.name == "shardmesh outbound");
    let inb = one(&s, "inbound span", |s| s.name == "shardmesh inbound");
    assert_eq!(out.parent.as_deref(), Some(APP_SPAN), "{out:#?}");
    assert_eq!(inb.parent.as_deref(), Some(out.id.as_str()), "{inb:#?}");
    assert_eq!(out.pod, "tally-0");
    assert_eq!(inb.pod, owner);
    for (span, direction, kind) in [(out, "outbound", "client"), (inb, "inbound", "server")] {
        assert_eq!(span.service, "tally", "{span:#?}");
        assert_eq!(span.tag("span.kind"), kind, "{span:#?}");
        assert_eq!(span.tag("shardmesh.service"), "tally", "{span:#?}");
        assert_eq!(span.tag("shardmesh.direction"), direction, "{span:#?}");
        assert_eq!(span.tag("shardmesh.owner"), owner, "{span:#?}");
        assert_eq!(span.tag("shardmesh.shard"), out.tag("shardmesh.shard"));
        assert_eq!(span.tag("http.response.status_code"), "200", "{span:#?}");
        // A unary answer's grpc-status comes in its trailers: the span
        // lasted until they passed.
        assert_eq!(span.tag("rpc.grpc.status_code"), "0", "{span:#?}");
        assert!(!span.tags.contains_key("shardmesh.reason"), "{span:#?}");
        assert!(!span.tags.contains_key("error"), "{span:#?}");
    }
    assert_eq!(out.tag("shardmesh.retries"), "0");
    assert_eq!(out.tag("shardmesh.breaker_state"), "closed");

    // 2. A retried call: the owner's app answers UNAVAILABLE once (before
    // any message, so the mesh retries it). One outbound span counting one
    // retry, and an inbound span per try under it.
    n += 1;
    let flaky = AddRequest {
        key: key.clone(),
        amount: 1,
        fail_code: Code::Unavailable as i32,
        fail_times: 1,
        op: format!("trace-retry-{}", std::process::id()),
        ..Default::default()
    };
    let total = call(&mut client, keyed(flaky, &key, Some(&sampled(n))))
        .expect("the retry succeeds")
        .into_inner();
    assert_eq!(total.attempts, 2, "the app saw two tries");
    let s = wait_trace(&jaeger, &trace_id(n), 1, 2);
    let out = one(&s, "outbound span", |s| s.name == "shardmesh outbound");
    assert_eq!(out.tag("shardmesh.retries"), "1", "{out:#?}");
    assert_eq!(out.tag("shardmesh.breaker_state"), "closed", "{out:#?}");
    assert_eq!(out.tag("rpc.grpc.status_code"), "0", "{out:#?}");
    let failed = one(&s, "failed try", |s| {
        s.name == "shardmesh inbound"
            && s.tags.get("rpc.grpc.status_code").map(String::as_str) == Some("14")
    });
    let good = one(&s, "good try", |s| {
        s.name == "shardmesh inbound"
            && s.tags.get("rpc.grpc.status_code").map(String::as_str) == Some("0")
    });
    for t in [failed, good] {
        assert_eq!(t.parent.as_deref(), Some(out.id.as_str()), "{t:#?}");
        assert_eq!(t.pod, owner);
    }
    assert_eq!(failed.tag("error"), "true", "UNAVAILABLE is a server error");

    // 3. A mesh failure: the mesh's deadline (300 ms) passes while the app
    // sleeps; the outbound span carries the reason and fails.
    n += 1;
    let slow = AddRequest {
        key: key.clone(),
        amount: 1,
        sleep_ms: 3_000,
        ..Default::default()
    };
    let mut r = keyed(slow, &key, Some(&sampled(n)));
    r.metadata_mut()
        .insert("x-shardmesh-timeout-ms", "300".parse().unwrap());
    let status = call(&mut client, r).expect_err("the deadline passes");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let s = wait_trace(&jaeger, &trace_id(n), 1, 0);
    let out = one(&s, "outbound span", |s| s.name == "shardmesh outbound");
    assert_eq!(out.tag("shardmesh.reason"), "timeout", "{out:#?}");
    assert_eq!(out.tag("http.response.status_code"), "504", "{out:#?}");
    assert_eq!(out.tag("error"), "true", "{out:#?}");
    assert_eq!(out.tag("shardmesh.owner"), owner, "{out:#?}");

    // 4. A bidirectional stream whose trailers carry INTERNAL after a
    // message: both spans end with the stream and record its status, and
    // the outbound span covers the pause before the last message.
    n += 1;
    let pause = Duration::from_millis(400);
    let status = rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let chunk = |data: &[u8]| Chunk {
            key: key.clone(),
            data: data.to_vec(),
        };
        tx.send(chunk(b"hello")).await.unwrap();
        let r = keyed(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &key,
            Some(&sampled(n)),
        );
        let mut answers = client.chat(r).await.expect("chat").into_inner();
        let echo = answers.message().await.expect("echo").expect("a message");
        assert_eq!(echo.data, b"hello");
        tokio::time::sleep(pause).await;
        tx.send(chunk(b"fail")).await.unwrap();
        answers
            .message()
            .await
            .expect_err("the stream ends with INTERNAL")
    });
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let s = wait_trace(&jaeger, &trace_id(n), 1, 1);
    let out = one(&s, "outbound span", |s| s.name == "shardmesh outbound");
    let inb = one(&s, "inbound span", |s| s.name == "shardmesh inbound");
    for span in [out, inb] {
        assert_eq!(span.tag("rpc.grpc.status_code"), "13", "{span:#?}");
        assert_eq!(span.tag("rpc.system"), "grpc", "{span:#?}");
        assert_eq!(span.tag("error"), "true", "{span:#?}");
        assert!(
            span.duration_us >= pause.as_micros() as u64,
            "the span lasts as long as the stream: {span:#?}"
        );
    }

    // 5. An unsampled traceparent makes no span. The next sampled call
    // went through the same sidecars after it, and each sidecar exports in
    // order: once that one is in Jaeger, the unsampled one never will be.
    n += 1;
    let unsampled = trace_id(n);
    let add = AddRequest {
        key: key.clone(),
        amount: 1,
        ..Default::default()
    };
    let tp = format!("00-{unsampled}-{APP_SPAN}-00");
    call(&mut client, keyed(add.clone(), &key, Some(&tp))).expect("add");
    n += 1;
    call(&mut client, keyed(add.clone(), &key, Some(&sampled(n)))).expect("add");
    wait_trace(&jaeger, &trace_id(n), 1, 1);
    assert!(
        jaeger.trace(&unsampled).is_none(),
        "an unsampled call reached Jaeger: {:#?}",
        jaeger.trace(&unsampled)
    );

    // 6. Without a traceparent the outbound sidecar starts the trace.
    call(&mut client, keyed(add, &key, None)).expect("add");
    let known: Vec<String> = (0..=n).map(trace_id).collect();
    let (root, child) = poll(ARRIVAL, || {
        jaeger
            .search("tally")
            .iter()
            .filter(|t| !known.iter().any(|k| t["traceID"] == k.as_str()))
            .find_map(|t| {
                let s = spans(t);
                let root = s
                    .iter()
                    .find(|s| s.name == "shardmesh outbound" && s.parent.is_none())?;
                let child = s
                    .iter()
                    .find(|c| c.parent.as_deref() == Some(root.id.as_str()))?;
                Some((root.clone(), child.clone()))
            })
    })
    .expect("a new trace: an outbound root span and its inbound child");
    assert_eq!(root.pod, "tally-0");
    assert_eq!(child.name, "shardmesh inbound");
    assert_eq!(child.pod, owner);
}
