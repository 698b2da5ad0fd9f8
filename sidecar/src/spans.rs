//! Distributed tracing (docs/monitoring.md, "Tracing"): W3C trace context
//! in, a span per hop, trace context out, spans exported over OTLP/gRPC.
//!
//! Each sidecar a request crosses makes one span: a `client` span on the
//! caller's outbound listener, a `server` span on the owner's inbound
//! listener, each the child of the `traceparent` it received (the app's, or
//! the calling sidecar's), and each passes its own context on. A request
//! without a sampled `traceparent` starts a trace with probability
//! `tracing.samplingRatio`; a caller's decision is always followed.
//!
//! Export never blocks a request: a finished span is offered to a bounded
//! queue (`tracing.queueSize`) with `try_send`, dropped and counted in
//! `shardmesh_trace_spans_dropped_total` when it is full, and a background
//! task sends batches to the collector with `opentelemetry-otlp`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounter, IntCounterVec};
use shardmesh_config::TracingConfig;
use tokio::sync::mpsc;

use crate::body::{BoxBody, BoxError};

/// Time one export request may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a finished span waits for its batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// Makes the spans of this sidecar; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    tracer: SdkTracer,
    propagator: Arc<TraceContextPropagator>,
    /// `tracing.samplingRatio`, clamped to 0.0–1.0.
    ratio: f64,
    /// Kept so the provider (and the processor) lives as long as the tracer.
    _provider: SdkTracerProvider,
}

/// Which listener a span's hop came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The app's request, leaving this pod (a `client` span).
    Outbound,
    /// Another sidecar's request, reaching this pod's app (a `server` span).
    Inbound,
}

/// The span of one hop; ends (and is queued for export) on [`HopSpan::end`],
/// at the end of the response body it was handed to by
/// [`HopSpan::end_with`], or when dropped. `cx` is `None` when the request
/// is not sampled: no span exists.
pub struct HopSpan {
    cx: Option<Context>,
    hop: Hop,
}

/// What the outbound routing learns about a request on its tries, read into
/// the span at its end: a request extension shared by every try.
#[derive(Debug, Default)]
pub struct TryLog {
    tries: AtomicU32,
    peer: Mutex<Option<Arc<str>>>,
}

// === impl Tracer ===

impl Tracer {
    /// Starts tracing to `config.endpoint` as pod `pod` of `service`. Must
    /// run inside the tokio runtime (the export task is spawned on it).
    pub fn start(
        config: &TracingConfig,
        service: &str,
        pod: &str,
        dropped: IntCounter,
        exported: IntCounterVec,
    ) -> Result<Self, BoxError> {
        let resource = Resource::builder()
            .with_service_name(service.to_string())
            .with_attributes([
                KeyValue::new("service.instance.id", pod.to_string()),
                KeyValue::new("k8s.pod.name", pod.to_string()),
            ])
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        exporter.set_resource(&resource);
        let queue = usize::try_from(config.queue_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let batch = usize::try_from(config.batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(export_loop(exporter, rx, batch, exported));
        Ok(Self::queued(config.sampling_ratio, resource, tx, dropped))
    }

    /// A tracer whose finished spans go to `tx` (the export loop's queue,
    /// or a test's).
    fn queued(
        ratio: f64,
        resource: Resource,
        tx: mpsc::Sender<SpanData>,
        dropped: IntCounter,
    ) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let provider = SdkTracerProvider::builder()
            // Only sampled requests reach the SDK (see `hop`): new traces
            // are sampled by `ratio` before, sampled parents are followed.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_span_processor(QueueProcessor { tx, dropped })
            .with_resource(resource)
            .build();
        Self {
            tracer: provider.tracer("shardmesh-sidecar"),
            propagator: Arc::new(TraceContextPropagator::new()),
            ratio,
            _provider: provider,
        }
    }

    /// Starts the span of a hop as the child of the trace context in
    /// `headers` (a new trace when none), and writes the span's own context
    /// into `headers` for the next hop.
    ///
    /// Requests that will not be sampled skip the SDK: an unsampled
    /// `traceparent` passes on as it came, and a new trace that the ratio
    /// does not sample gets a fresh unsampled `traceparent` (so the next hop
    /// does not sample it either). Only sampled requests make a span.
    pub fn hop(&self, hop: Hop, service: &str, headers: &mut HeaderMap) -> HopSpan {
        match headers.get(TRACEPARENT).and_then(sampled) {
            Some(false) => return HopSpan { cx: None, hop },
            Some(true) => {}
            None if self.sample_new() => {}
            None => {
                headers.insert(TRACEPARENT, unsampled_traceparent());
                headers.remove(TRACESTATE);
                return HopSpan { cx: None, hop };
            }
        }
        let parent = self.propagator.extract(&HeaderReader(headers));
        let (name, kind) = match hop {
            Hop::Outbound => ("shardmesh outbound", SpanKind::Client),
            Hop::Inbound => ("shardmesh inbound", SpanKind::Server),
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes([
                KeyValue::new("shardmesh.service", service.to_string()),
                KeyValue::new(
                    "shardmesh.direction",
                    match hop {
                        Hop::Outbound => "outbound",
                        Hop::Inbound => "inbound",
                    },
                ),
            ])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        self.propagator
            .inject_context(&cx, &mut HeaderWriter(headers));
        HopSpan { cx: Some(cx), hop }
    }

    /// Whether a new trace is sampled: with probability `ratio`.
    fn sample_new(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
}

/// `traceparent`, W3C trace context.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`, W3C trace context.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The sampled flag of a valid version-00 `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero); `None` when invalid.
fn sampled(value: &HeaderValue) -> Option<bool> {
    let v = value.as_bytes();
    let hex = |b: &[u8]| {
        b.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |b: &[u8]| b.iter().all(|&c| c == b'0');
    if v.len() != 55 || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (trace, span, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    if !hex(trace) || !hex(span) || !hex(flags) || zero(trace) || zero(span) {
        return None;
    }
    let low = char::from(flags[1]).to_digit(16)?;
    Some(low & 1 == 1)
}

/// A new, unsampled `traceparent` with random ids.
fn unsampled_traceparent() -> HeaderValue {
    let trace = rand::random::<u128>().max(1);
    let span = rand::random::<u64>().max(1);
    let text = format!("00-{trace:032x}-{span:016x}-00");
    HeaderValue::from_str(&text).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-00")
    })
}

// === impl HopSpan ===

impl HopSpan {
    /// Whether the span is recorded (sampled): attributes are worth adding.
    pub fn is_recording(&self) -> bool {
        self.cx.as_ref().is_some_and(|cx| cx.span().is_recording())
    }

    /// Adds an attribute.
    pub fn set(&self, attribute: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(attribute);
        }
    }

    /// Ends the span with the response's status code and mesh reason (an
    /// empty reason: the app answered) and, for gRPC, the status the head
    /// carries (a trailers-only answer).
    pub fn end(self, status: u16, reason: &str, grpc_status: Option<&HeaderValue>) {
        let Some(cx) = &self.cx else {
            return;
        };
        let span = cx.span();
        if span.is_recording() {
            self.record_head(status, reason);
            if let Some(code) = grpc_status {
                self.record_grpc_status(code);
            }
        }
        span.end();
    }

    /// Ends the span with `rsp`: at once when the head says all there is
    /// (a mesh failure, a trailers-only gRPC answer, an empty body), else
    /// when the body ends, with the `grpc-status` of its trailers (see
    /// [`body::SpanBody`]). An unsampled request's response passes
    /// untouched: nothing is added to its path.
    pub fn end_with(self, rsp: Response<BoxBody>, reason: &str) -> Response<BoxBody> {
        if !self.is_recording() {
            return rsp;
        }
        let grpc_status = rsp.headers().get(crate::grpc::GRPC_STATUS);
        if grpc_status.is_some() || !reason.is_empty() || http_body::Body::is_end_stream(rsp.body())
        {
            self.end(rsp.status().as_u16(), reason, grpc_status);
            return rsp;
        }
        self.record_head(rsp.status().as_u16(), reason);
        if crate::grpc::is_grpc(rsp.headers()) {
            self.set(KeyValue::new("rpc.system", "grpc"));
        }
        rsp.map(|inner| body::SpanBody::wrap(inner, self))
    }

    /// Records what the response head says.
    fn record_head(&self, status: u16, reason: &str) {
        self.set(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if !reason.is_empty() {
            self.set(KeyValue::new("shardmesh.reason", reason.to_string()));
            self.set_status(opentelemetry::trace::Status::error(reason.to_string()));
        }
    }

    /// Records a call's `grpc-status` as `rpc.grpc.status_code`; a status
    /// marks the span failed as OpenTelemetry's gRPC conventions say: any
    /// non-OK status on the caller's side (outbound, a client span), only
    /// the server-error class on the owner's (inbound, a server span).
    fn record_grpc_status(&self, value: &HeaderValue) {
        let Some(code) = value.to_str().ok().and_then(|v| v.parse::<i64>().ok()) else {
            return;
        };
        self.set(KeyValue::new("rpc.grpc.status_code", code));
        let failed = match self.hop {
            Hop::Outbound => code != 0,
            // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
            // UNAVAILABLE, DATA_LOSS.
            Hop::Inbound => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        };
        if failed {
            self.set_status(opentelemetry::trace::Status::error(format!(
                "grpc-status {code}"
            )));
        }
    }

    /// Sets the span's status.
    fn set_status(&self, status: opentelemetry::trace::Status) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(status);
        }
    }

    /// Ends the span now (a body that finished, failed or was dropped).
    fn finish(&self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

// === impl TryLog ===

impl TryLog {
    /// Notes one try sent to `peer`.
    pub fn tried(&self, peer: &Arc<str>) {
        self.tries.fetch_add(1, Ordering::Relaxed);
        *self.peer.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer.clone());
    }

    /// Tries made, and the peer of the last.
    pub fn read(&self) -> (u32, Option<Arc<str>>) {
        let peer = self.peer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.tries.load(Ordering::Relaxed), peer)
    }
}

/// Reads trace context from request headers.
struct HeaderReader<'a>(&'a HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes trace context into request headers.
struct HeaderWriter<'a>(&'a mut HeaderMap);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Queues finished, sampled spans for the export task without waiting.
#[derive(Debug)]
struct QueueProcessor {
    tx: mpsc::Sender<SpanData>,
    dropped: IntCounter,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends queued spans in batches of up to `batch`, at least every
/// [`BATCH_DELAY`] while spans wait; ends when the tracer is gone.
async fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    batch: usize,
    exported: IntCounterVec,
) {
    let mut spans = Vec::with_capacity(batch);
    loop {
        if rx.recv_many(&mut spans, batch).await == 0 {
            return;
        }
        // Give a burst a moment to fill the batch (bounded by the delay).
        let fill = async {
            while spans.len() < batch {
                let room = batch - spans.len();
                if rx.recv_many(&mut spans, room).await == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(BATCH_DELAY, fill).await;
        let n = spans.len() as u64;
        let sent = std::mem::replace(&mut spans, Vec::with_capacity(batch));
        let result = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(sent)).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "span export failed");
                "error"
            }
            Err(_) => "error",
        };
        exported.with_label_values(&[result]).inc_by(n);
    }
}

mod body;
#[cfg(test)]
mod tests;
