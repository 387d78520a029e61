//! The operator's metrics (served by [`crate::server`]). Label values are typed: a reconcile's
//! [`Outcome`], and the `reason` of a failure (`controller::Error::reason`,
//! `resources::plan::PlanError::reason`, each a fixed set).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// How one reconcile ended: the `result` label of the reconcile metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// Reconcile metrics. Only the per-stream gauges carry object names (namespace and stream);
/// their series are removed when the stream is deleted ([`Metrics::forget_stream`]), so their
/// number is bounded by the streams that exist.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciliations by result ([`Outcome`]): [`Metrics::reconciliations`].
    reconciliations: IntCounterVec,
    /// Reconcile failures by reason: [`Metrics::reconcile_errors`].
    reconcile_errors: IntCounterVec,
    /// Time of one reconciliation, by result: [`Metrics::reconcile_duration`].
    reconcile_duration: HistogramVec,
    /// QuoteStreams managed by this operator.
    pub streams: IntGauge,
    /// Shards wanted per stream (`spec.shards`), labelled namespace and stream.
    pub(crate) shards_desired: IntGaugeVec,
    /// Shards whose worker is ready, per stream.
    pub(crate) shards_ready: IntGaugeVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
    /// Times this replica stopped leading without being asked to, by reason
    /// (`crate::leader::StepDown::reason`): [`Metrics::leader_step_downs`].
    leader_step_downs: IntCounterVec,
    /// Per ticker handed over with acknowledgement: the longest it can have had no owner.
    pub(crate) handover_gap: Histogram,
    /// From a hand-over's first reconcile to its release.
    pub(crate) handover_wait: Histogram,
    /// Tickers handed over, by result: [`Metrics::handed_over`].
    handover_tickers: IntCounterVec,
    /// Tickers listed by two shards while a hand-over waits, per stream.
    pub(crate) handover_pending: IntGaugeVec,
    /// Writes sent to the API server by reconciles, by resource and verb: [`Metrics::writes`].
    writes: IntCounterVec,
    /// Writes not sent because the live object already equals the desired one:
    /// [`Metrics::unchanged`].
    unchanged: IntCounterVec,
}

/// The `resource` label of the write metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    ConfigMap,
    Deployment,
    Status,
}

impl Written {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Deployment => "deployment",
            Self::Status => "status",
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new("quotestream_reconciles_total", "Reconciliations by result"),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "quotestream_reconcile_errors_total",
                "Reconcile failures by reason",
            ),
            &["reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "quotestream_reconcile_duration_seconds",
                "Time of one reconciliation",
            )
            // Fine around 100-500 ms, where a reconcile of tens of shards falls, and up to 2.5 s,
            // where the first reconcile of a stream of 100 000 tickers (its shards' writes) falls.
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["result"],
        )?;
        let streams = IntGauge::new("quotestream_streams", "QuoteStreams managed")?;
        let shards_desired = IntGaugeVec::new(
            Opts::new("quotestream_shards_desired", "Shards wanted per stream"),
            &["namespace", "stream"],
        )?;
        let shards_ready = IntGaugeVec::new(
            Opts::new(
                "quotestream_shards_ready",
                "Shards whose worker is ready, per stream",
            ),
            &["namespace", "stream"],
        )?;
        let leader = IntGauge::new("quotestream_leader", "1 while this replica is the leader")?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(shards_desired.clone()))?;
        registry.register(Box::new(shards_ready.clone()))?;
        let leader_step_downs = IntCounterVec::new(
            Opts::new(
                "quotestream_leader_step_downs_total",
                "Times this replica stopped leading without a shutdown: lease_lost (another replica holds it), not_renewed (no renewal confirmed before it would expire)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(leader_step_downs.clone()))?;
        let handover_gap = Histogram::with_opts(
            HistogramOpts::new(
                "quotestream_handover_gap_seconds",
                "Per ticker moved between shards: how much later its new owner acknowledged it than its old owner was released (0: never unowned)",
            )
            // The first bucket is 0 itself: le="0" equal to the count means no gap at all.
            .buckets(vec![0.0, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0]),
        )?;
        let handover_wait = Histogram::with_opts(
            HistogramOpts::new(
                "quotestream_handover_wait_seconds",
                "From a hand-over's first reconcile until its old owners were released",
            )
            .buckets(vec![0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
        )?;
        let handover_tickers = IntCounterVec::new(
            Opts::new(
                "quotestream_handover_tickers_total",
                "Tickers moved between shards, by result: acknowledged (the new owner streamed them first), unacknowledged (released after the timeout)",
            ),
            &["result"],
        )?;
        let handover_pending = IntGaugeVec::new(
            Opts::new(
                "quotestream_handover_pending_tickers",
                "Tickers owned by two shards while a hand-over waits for its receivers, per stream",
            ),
            &["namespace", "stream"],
        )?;
        registry.register(Box::new(handover_gap.clone()))?;
        registry.register(Box::new(handover_wait.clone()))?;
        registry.register(Box::new(handover_tickers.clone()))?;
        registry.register(Box::new(handover_pending.clone()))?;
        let writes = IntCounterVec::new(
            Opts::new(
                "quotestream_api_writes_total",
                "Writes the reconciles sent to the API server, by resource (configmap, deployment, status) and verb (apply, patch, delete)",
            ),
            &["resource", "verb"],
        )?;
        let unchanged = IntCounterVec::new(
            Opts::new(
                "quotestream_unchanged_skipped_total",
                "Writes not sent because the live object already equals the desired one, by resource",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(unchanged.clone()))?;
        Ok(Self {
            handover_gap,
            handover_wait,
            handover_tickers,
            handover_pending,
            registry,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            streams,
            shards_desired,
            shards_ready,
            leader,
            leader_step_downs,
            writes,
            unchanged,
        })
    }

    /// Step-downs for `reason` (a fixed set, see the metric's help).
    pub fn leader_step_downs(&self, reason: &'static str) -> IntCounter {
        self.leader_step_downs.with_label_values(&[reason])
    }

    /// Tickers handed over with `result` (`acknowledged` or `unacknowledged`).
    pub fn handed_over(&self, result: &'static str) -> IntCounter {
        self.handover_tickers.with_label_values(&[result])
    }

    /// Reconciliations that ended with `outcome`.
    pub fn reconciliations(&self, outcome: Outcome) -> IntCounter {
        self.reconciliations.with_label_values(&[outcome.as_str()])
    }

    /// Time of the reconciliations that ended with `outcome`.
    pub fn reconcile_duration(&self, outcome: Outcome) -> Histogram {
        self.reconcile_duration
            .with_label_values(&[outcome.as_str()])
    }

    /// Reconcile failures for `reason` (one of the error types' fixed reasons).
    pub fn reconcile_errors(&self, reason: &'static str) -> IntCounter {
        self.reconcile_errors.with_label_values(&[reason])
    }

    /// Writes of `resource` with `verb` (`apply`, `patch`, `delete`) sent to the API server.
    pub fn writes(&self, resource: Written, verb: &'static str) -> IntCounter {
        self.writes.with_label_values(&[resource.as_str(), verb])
    }

    /// Writes of `resource` skipped because nothing changed.
    pub fn unchanged(&self, resource: Written) -> IntCounter {
        self.unchanged.with_label_values(&[resource.as_str()])
    }

    /// Sets a stream's per-stream gauges.
    pub fn set_stream_shards(&self, namespace: &str, stream: &str, desired: usize, ready: i32) {
        let labels = [namespace, stream];
        self.shards_desired
            .with_label_values(&labels)
            .set(i64::try_from(desired).unwrap_or(i64::MAX));
        self.shards_ready
            .with_label_values(&labels)
            .set(i64::from(ready));
    }

    /// Removes a deleted stream's series from `/metrics` (a gauge series stays until removed).
    pub fn forget_stream(&self, namespace: &str, stream: &str) {
        let labels = [namespace, stream];
        // Err only means that the series did not exist.
        let _ = self.shards_desired.remove_label_values(&labels);
        let _ = self.shards_ready.remove_label_values(&labels);
        let _ = self.handover_pending.remove_label_values(&labels);
    }

    /// Removes every per-stream series and zeroes `quotestream_streams`: what a replica does
    /// when it stops leading. Only the leader's series are current; a standby still showing
    /// the streams as it last saw them would double every dashboard line and keep alerts on
    /// them firing (a shard not ready, a hand-over waiting) long after the new leader resolved
    /// them.
    pub fn forget_streams(&self) {
        self.shards_desired.reset();
        self.shards_ready.reset();
        self.handover_pending.reset();
        self.streams.set(0);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        quotestream_runtime::metrics_text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_stops_leading_exports_no_stream() {
        let m = Metrics::new().unwrap();
        m.set_stream_shards("default", "a", 3, 2);
        m.handover_pending
            .with_label_values(&["default", "a"])
            .set(40);
        m.streams.set(1);
        m.forget_streams();
        let text = m.render();
        for series in [
            "quotestream_shards_desired{",
            "quotestream_shards_ready{",
            "quotestream_handover_pending_tickers{",
        ] {
            assert!(!text.contains(series), "{series} left:\n{text}");
        }
        assert!(text.contains("quotestream_streams 0"), "{text}");
    }

    #[test]
    fn a_forgotten_stream_leaves_no_series() {
        let m = Metrics::new().unwrap();
        m.set_stream_shards("default", "a", 3, 2);
        m.set_stream_shards("default", "b", 1, 1);
        let text = m.render();
        assert!(text.contains(r#"quotestream_shards_desired{namespace="default",stream="a"} 3"#));
        assert!(text.contains(r#"quotestream_shards_ready{namespace="default",stream="a"} 2"#));

        m.forget_stream("default", "a");
        let text = m.render();
        assert!(!text.contains(r#"stream="a""#), "{text}");
        assert!(text.contains(r#"quotestream_shards_ready{namespace="default",stream="b"} 1"#));
        // Forgetting twice (a Delete event, then the reconcile that finds the stream gone).
        m.forget_stream("default", "a");
    }
}
