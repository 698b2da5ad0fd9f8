//! Prometheus metrics of the sidecar, named as in DESIGN.md ("Metrics").
//! One registry per sidecar (not the global default) so tests can run many
//! sidecars in one process.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Distinct peer identities given their own label value; later ones count
/// as `other`, so a flood of identities cannot grow the registry.
pub const MAX_IDENTITY_LABELS: usize = 64;

/// Latency buckets in seconds: 0.5 ms to 30 s, dense where a mesh hop lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric family the sidecar exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by direction, service, status code and mesh reason ("" for app answers).
    pub requests: IntCounterVec,
    /// End-to-end latency through this sidecar.
    pub duration: HistogramVec,
    /// Retries sent.
    pub retries: IntCounterVec,
    /// Retries refused by the budget.
    pub retry_budget_exhausted: IntCounterVec,
    /// Breaker state per peer: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// Breaker transitions per peer and target state.
    pub breaker_transitions: IntCounterVec,
    /// Requests shed by backpressure or bulkheads.
    pub load_shed: IntCounterVec,
    /// Requests in flight.
    pub inflight: IntGaugeVec,
    /// Members by state as seen by this sidecar.
    pub members: IntGaugeVec,
    /// Gossip probes by result.
    pub gossip_probes: IntCounterVec,
    /// Members this sidecar started suspecting.
    pub gossip_suspicions: IntCounter,
    /// Suspicions of this member that it refuted.
    pub gossip_refutations: IntCounter,
    /// Gossip packets dropped, by reason.
    pub gossip_bad_packets: IntCounterVec,
    /// Gossip bytes by direction (sent, received).
    pub gossip_bytes: IntCounterVec,
    /// Shards this member owns and serves.
    pub shards_owned: IntGaugeVec,
    /// Completed shard handoffs.
    pub shard_handoffs: IntCounterVec,
    /// Time from starting to acquire a shard until serving it.
    pub shard_handoff_duration: Histogram,
    /// Terms that ended early: the app fenced the epoch, a newer owner
    /// released the shard back, or this member was declared dead and rejoined.
    pub shard_terms_lost: IntCounterVec,
    /// Completed inbound TLS handshakes.
    pub tls_handshakes: IntCounter,
    /// Failed TLS handshakes, by reason (inbound and outbound).
    pub tls_handshake_failures: IntCounterVec,
    /// `notAfter` of this sidecar's current certificate, Unix seconds.
    pub tls_cert_expiry: IntGauge,
    /// Inbound connections by the peer identity they proved.
    pub tls_peer_identities: IntCounterVec,
    /// Finished trace spans dropped because the export queue was full.
    pub trace_spans_dropped: IntCounter,
    /// Trace spans handed to the OTLP exporter, by result (`ok`, `error`).
    pub trace_spans_exported: IntCounterVec,
    /// Identities that have their own label value.
    identities_seen: Arc<Mutex<HashSet<String>>>,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let m = IntCounterVec::new(Opts::new(name, help).namespace("shardmesh"), labels)?;
                registry.register(Box::new(m.clone()))?;
                Ok(m)
            };
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let m = IntGaugeVec::new(Opts::new(name, help).namespace("shardmesh"), labels)?;
                registry.register(Box::new(m.clone()))?;
                Ok(m)
            };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let m = IntCounter::with_opts(Opts::new(name, help).namespace("shardmesh"))?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Request latency through the sidecar.",
            )
            .namespace("shardmesh")
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["direction", "service"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let shard_handoff_duration = Histogram::with_opts(
            HistogramOpts::new(
                "shard_handoff_duration_seconds",
                "Time from starting to acquire a shard until it is served.",
            )
            .namespace("shardmesh")
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(shard_handoff_duration.clone()))?;
        Ok(Self {
            requests: counter_vec(
                "requests_total",
                "Requests through the sidecar.",
                &["direction", "service", "code", "reason"],
            )?,
            duration,
            retries: counter_vec("retries_total", "Retries sent.", &["service"])?,
            retry_budget_exhausted: counter_vec(
                "retry_budget_exhausted_total",
                "Retries refused by the retry budget.",
                &["service"],
            )?,
            breaker_state: gauge_vec(
                "circuit_breaker_state",
                "Circuit breaker state per peer: 0 closed, 1 half-open, 2 open.",
                &["peer"],
            )?,
            breaker_transitions: counter_vec(
                "circuit_breaker_transitions_total",
                "Circuit breaker transitions per peer and target state.",
                &["peer", "to"],
            )?,
            load_shed: counter_vec(
                "load_shed_total",
                "Requests shed by backpressure or bulkheads.",
                &["service"],
            )?,
            inflight: gauge_vec(
                "inflight_requests",
                "Requests in flight.",
                &["direction", "service"],
            )?,
            members: gauge_vec(
                "members",
                "Members by state as seen by this sidecar.",
                &["state"],
            )?,
            gossip_probes: counter_vec(
                "gossip_probes_total",
                "Gossip probes by result.",
                &["result"],
            )?,
            trace_spans_dropped: counter(
                "trace_spans_dropped_total",
                "Finished trace spans dropped because the export queue was full.",
            )?,
            trace_spans_exported: counter_vec(
                "trace_spans_exported_total",
                "Trace spans handed to the OTLP exporter, by result.",
                &["result"],
            )?,
            gossip_suspicions: counter(
                "gossip_suspicions_total",
                "Members this sidecar began to suspect.",
            )?,
            gossip_refutations: counter(
                "gossip_refutations_total",
                "Suspicions of this member that it refuted.",
            )?,
            gossip_bad_packets: counter_vec(
                "gossip_bad_packets_total",
                "Gossip packets dropped, by reason.",
                &["reason"],
            )?,
            gossip_bytes: counter_vec(
                "gossip_bytes_total",
                "Gossip bytes by direction.",
                &["direction"],
            )?,
            shards_owned: gauge_vec(
                "shards_owned",
                "Shards this member owns and serves.",
                &["service"],
            )?,
            shard_handoffs: counter_vec(
                "shard_handoffs_total",
                "Completed shard handoffs.",
                &["service"],
            )?,
            shard_handoff_duration,
            shard_terms_lost: counter_vec(
                "shard_terms_lost_total",
                "Shard terms that ended early and were acquired again at a fresh epoch.",
                &["service"],
            )?,
            tls_handshakes: counter("tls_handshakes_total", "Completed inbound TLS handshakes.")?,
            tls_handshake_failures: counter_vec(
                "tls_handshake_failures_total",
                "Failed TLS handshakes by reason.",
                &["reason"],
            )?,
            tls_cert_expiry: {
                let m = IntGauge::with_opts(
                    Opts::new(
                        "tls_cert_expiry_timestamp_seconds",
                        "When this sidecar's certificate expires (Unix seconds).",
                    )
                    .namespace("shardmesh"),
                )?;
                registry.register(Box::new(m.clone()))?;
                m
            },
            tls_peer_identities: counter_vec(
                "tls_peer_identities_total",
                "Inbound TLS connections by peer identity (bounded; the rest are 'other').",
                &["identity"],
            )?,
            identities_seen: Arc::default(),
            registry,
        })
    }

    /// Counts an inbound connection from `identity`, keeping the label set bounded.
    pub fn record_peer_identity(&self, identity: &str) {
        let label = {
            let mut seen = self
                .identities_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if seen.contains(identity) {
                identity
            } else if seen.len() < MAX_IDENTITY_LABELS {
                seen.insert(identity.to_string());
                identity
            } else {
                "other"
            }
        };
        self.tls_peer_identities.with_label_values(&[label]).inc();
    }

    /// The text exposition of every family.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// Creates a service's per-service counters at zero, so the first retry
    /// or shed request is visible to `rate()`.
    pub fn init_service(&self, service: &str) {
        self.retries.with_label_values(&[service]);
        self.retry_budget_exhausted.with_label_values(&[service]);
        self.load_shed.with_label_values(&[service]);
    }

    /// The request metrics of `direction` and `service`, resolved once.
    pub fn route(&self, direction: &'static str, service: &str) -> RouteMetrics {
        RouteMetrics {
            direction,
            service: std::sync::Arc::from(service),
            requests: self.requests.clone(),
            ok: self
                .requests
                .with_label_values(&[direction, service, "200", ""]),
            duration: self.duration.with_label_values(&[direction, service]),
            inflight: self.inflight.with_label_values(&[direction, service]),
        }
    }

    /// Records one finished request.
    pub fn record(&self, direction: &str, service: &str, code: u16, reason: &str, seconds: f64) {
        let code = code.to_string();
        self.requests
            .with_label_values(&[direction, service, &code, reason])
            .inc();
        self.duration
            .with_label_values(&[direction, service])
            .observe(seconds);
    }
}

/// The request metrics of one direction and service with their label
/// handles resolved once. Looking the labels up on every request hashed
/// them each time, a hot spot of the sidecar's profile
/// (docs/benchmarks/sidecar.md); the common answer, 200 from the app, gets
/// its counter ready, every other status is looked up as before.
#[derive(Clone)]
pub struct RouteMetrics {
    direction: &'static str,
    service: std::sync::Arc<str>,
    requests: IntCounterVec,
    ok: IntCounter,
    duration: Histogram,
    inflight: IntGauge,
}

impl RouteMetrics {
    /// Counts one request as in flight until the guard drops.
    pub fn inflight(&self) -> InflightGuard {
        self.inflight.inc();
        InflightGuard(self.inflight.clone())
    }

    /// Records one finished request (as [`Metrics::record`]).
    pub fn record(&self, code: u16, reason: &str, seconds: f64) {
        if code == 200 && reason.is_empty() {
            self.ok.inc();
        } else {
            let code = code.to_string();
            self.requests
                .with_label_values(&[self.direction, &self.service, &code, reason])
                .inc();
        }
        self.duration.observe(seconds);
    }
}

/// Keeps one request counted in `shardmesh_inflight_requests`.
pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_contract_names() {
        let m = Metrics::new().unwrap();
        m.record("outbound", "bank", 200, "", 0.001);
        m.breaker_state.with_label_values(&["bank-1"]).set(2);
        m.gossip_suspicions.inc();
        let text = String::from_utf8(m.encode()).unwrap();
        for name in [
            "shardmesh_requests_total{code=\"200\",direction=\"outbound\",reason=\"\",service=\"bank\"} 1",
            "shardmesh_request_duration_seconds_bucket",
            "shardmesh_circuit_breaker_state{peer=\"bank-1\"} 2",
            "shardmesh_gossip_suspicions_total 1",
            "shardmesh_shard_handoff_duration_seconds_count 0",
            "shardmesh_tls_cert_expiry_timestamp_seconds 0",
            "shardmesh_trace_spans_dropped_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn route_handles_count_like_the_label_look_ups() {
        let m = Metrics::new().unwrap();
        let route = m.route("inbound", "bank");
        {
            let _guard = route.inflight();
            assert_eq!(m.inflight.with_label_values(&["inbound", "bank"]).get(), 1);
        }
        assert_eq!(m.inflight.with_label_values(&["inbound", "bank"]).get(), 0);
        route.record(200, "", 0.001);
        route.record(503, "overloaded", 0.001);
        m.record("inbound", "bank", 200, "", 0.002);
        let ok = m
            .requests
            .with_label_values(&["inbound", "bank", "200", ""]);
        assert_eq!(ok.get(), 2);
        let shed = m
            .requests
            .with_label_values(&["inbound", "bank", "503", "overloaded"]);
        assert_eq!(shed.get(), 1);
        let count = m.duration.with_label_values(&["inbound", "bank"]);
        assert_eq!(count.get_sample_count(), 3);
    }

    #[test]
    fn identity_labels_stay_bounded() {
        let m = Metrics::new().unwrap();
        for i in 0..(MAX_IDENTITY_LABELS + 10) {
            m.record_peer_identity(&format!("spiffe://t/ns/n/sa/s{i}"));
        }
        m.record_peer_identity("spiffe://t/ns/n/sa/s0");
        let text = String::from_utf8(m.encode()).unwrap();
        let lines = text
            .lines()
            .filter(|l| l.starts_with("shardmesh_tls_peer_identities_total{"))
            .count();
        assert_eq!(lines, MAX_IDENTITY_LABELS + 1);
        assert!(text.contains("shardmesh_tls_peer_identities_total{identity=\"other\"} 10"));
        assert!(text
            .contains("shardmesh_tls_peer_identities_total{identity=\"spiffe://t/ns/n/sa/s0\"} 2"));
    }
}
