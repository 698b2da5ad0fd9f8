//! The operator's Prometheus metrics (DESIGN.md "Metrics"): counts and
//! durations of reconciles, errors labelled by [`crate::Error::metric_label`].

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::Error;

/// The metrics of one operator process, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    /// Where the metrics live; `/metrics` encodes it.
    pub registry: Registry,
    /// Reconciles started.
    pub reconciliations: IntCounter,
    /// Reconciles that failed, by error kind.
    pub errors: IntCounterVec,
    /// Time spent in one reconcile.
    pub duration: HistogramVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounter::with_opts(Opts::new(
            "shardmesh_reconciliations_total",
            "ShardedService reconciles started.",
        ))?;
        let errors = IntCounterVec::new(
            Opts::new(
                "shardmesh_reconcile_errors_total",
                "ShardedService reconciles that failed.",
            ),
            &["error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "shardmesh_reconcile_duration_seconds",
                "Time spent reconciling one ShardedService.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            errors,
            duration,
        })
    }

    /// Records one finished reconcile.
    pub fn observe(&self, elapsed: Duration, result: Result<(), &Error>) {
        self.reconciliations.inc();
        self.duration
            .with_label_values::<&str>(&[])
            .observe(elapsed.as_secs_f64());
        if let Err(e) = result {
            self.errors.with_label_values(&[e.metric_label()]).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}
