//! Distributed tracing through a local mesh: the sidecars of the `tally`
//! sample export their spans over OTLP/gRPC to a receiver built on the
//! OpenTelemetry protocol's own service definition (`opentelemetry-proto`'s
//! `TraceService`, served by tonic), and a request that crossed two sidecars
//! arrives as one trace: the app's span → the caller's outbound span → the
//! owner's inbound span, with the mesh's attributes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use shardmesh_e2e::{bins, mesh, poll};
use shardmesh_tally::proto::AddRequest;
use shardmesh_tally::TallyClient;
use tonic::transport::Channel;
use tonic::Request;

/// One received span, flattened.
#[derive(Clone, Debug)]
struct Got {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    pod: String,
    attributes: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

fn text(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                _ => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = text(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            let pod = resource.get("k8s.pod.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name.clone(),
                        pod: pod.clone(),
                        attributes: text(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn manifest(collector: &str) -> String {
    format!(
        "apiVersion: shardmesh.io/v1alpha1\n\
         kind: ShardedService\n\
         metadata:\n  name: tally\n  annotations:\n    shardmesh.io/local-command: \"{}\"\n\
         spec:\n  replicas: 3\n  appPort: 8080\n\
         \n  sidecar:\n    tracing:\n      endpoint: \"http://{collector}\"\n      samplingRatio: 1.0\n\
         \n  template:\n    spec:\n      containers:\n        - name: tally\n          image: ghcr.io/shardmesh/tally:0.1.0\n",
        bins::bin("tally").display()
    )
}

#[test]
fn a_request_across_two_sidecars_is_one_trace_with_a_span_per_hop() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let collector = listener.local_addr().unwrap().to_string();
    let service = TraceServiceServer::new(receiver.clone());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let m = mesh::Mesh::up("tracing", &manifest(&collector), 111, &[]);
    m.wait_ready(Duration::from_secs(30));
    let outbound = m.pod_field("tally-0", "outbound");

    // The app's own trace context: the mesh's spans must join it.
    let app_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app_span = "00f067aa0ba902b7";
    let owner = rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{outbound}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut client = TallyClient::new(channel);
        // A key tally-0 does not own, so the request crosses two sidecars.
        for i in 0..50 {
            let key = format!("trace-{i}");
            let mut r = Request::new(AddRequest {
                key: key.clone(),
                amount: 1,
                ..Default::default()
            });
            let md = r.metadata_mut();
            md.insert("x-shardmesh-service", "tally".parse().unwrap());
            md.insert("x-shardmesh-key", key.parse().unwrap());
            md.insert(
                "traceparent",
                format!("00-{app_trace}-{app_span}-01").parse().unwrap(),
            );
            let total = client.add(r).await.expect("add").into_inner();
            if total.served_by != "tally-0" {
                return (key, total.served_by);
            }
        }
        panic!("tally-0 owned every key");
    });
    let (key, owner) = owner;

    // Spans arrive within the export delay; poll with a deadline.
    let spans = poll(Duration::from_secs(20), || {
        let got = receiver.0.lock().unwrap();
        let trace: Vec<Got> = got
            .iter()
            .filter(|s| {
                s.trace_id == app_trace && s.attributes.get("shardmesh.owner") == Some(&owner)
            })
            .cloned()
            .collect();
        (trace.len() >= 2).then_some(trace)
    })
    .unwrap_or_else(|| {
        panic!(
            "no trace of two spans for {key}; received {:#?}",
            receiver.0.lock().unwrap()
        )
    });
    let out = spans
        .iter()
        .find(|s| s.name == "shardmesh outbound" && s.parent_span_id == app_span)
        .unwrap_or_else(|| panic!("no outbound span under the app's span: {spans:#?}"));
    let inb = spans
        .iter()
        .find(|s| s.name == "shardmesh inbound" && s.parent_span_id == out.span_id)
        .unwrap_or_else(|| panic!("no inbound span under the outbound span: {spans:#?}"));
    assert_eq!(out.pod, "tally-0");
    assert_eq!(inb.pod, owner);
    for (span, direction) in [(out, "outbound"), (inb, "inbound")] {
        let a = &span.attributes;
        assert_eq!(a["shardmesh.service"], "tally", "{span:?}");
        assert_eq!(a["shardmesh.direction"], direction, "{span:?}");
        assert_eq!(a["shardmesh.owner"], owner, "{span:?}");
        assert_eq!(
            a["shardmesh.shard"], out.attributes["shardmesh.shard"],
            "{span:?}"
        );
        // A successful call's grpc-status comes in the trailers, after the
        // span (which covers the hop up to the response head) ended.
        assert_eq!(a["http.response.status_code"], "200", "{span:?}");
    }
    assert_eq!(out.attributes["shardmesh.retries"], "0");
    assert_eq!(out.attributes["shardmesh.breaker_state"], "closed");

    // Without a traceparent the outbound sidecar starts the trace.
    let started = rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{outbound}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut client = TallyClient::new(channel);
        let mut r = Request::new(AddRequest {
            key: key.clone(),
            amount: 1,
            ..Default::default()
        });
        r.metadata_mut()
            .insert("x-shardmesh-service", "tally".parse().unwrap());
        r.metadata_mut()
            .insert("x-shardmesh-key", key.parse().unwrap());
        client.add(r).await.expect("add")
    });
    drop(started);
    let root = poll(Duration::from_secs(20), || {
        let got = receiver.0.lock().unwrap();
        let root = got.iter().find(|s| {
            s.name == "shardmesh outbound" && s.parent_span_id.is_empty() && s.trace_id != app_trace
        })?;
        let child = got
            .iter()
            .find(|s| s.trace_id == root.trace_id && s.parent_span_id == root.span_id)?;
        Some((root.clone(), child.clone()))
    });
    let (root, child) = root.expect("a new trace: outbound root span and its inbound child");
    assert_eq!(child.name, "shardmesh inbound");
    assert_eq!(child.pod, owner);
    assert_eq!(root.pod, "tally-0");
}
