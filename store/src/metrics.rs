//! The store's Prometheus metrics (GET /metrics).
//!
//! - `quotestore_ingest_rows_total{result}`: quotes received in accepted batches, `inserted`
//!   (new) or `duplicate` (already stored: a replay)
//! - `quotestore_ingest_rows_per_second`: inserted rows per second over the last few seconds
//! - `quotestore_batch_duration_seconds`: time to store one accepted batch (parse to commit)
//! - `quotestore_rejected_batches_total{rule}`: refused batches by rule (`INV-001`…`INV-007`,
//!   `volume`, `range`, `duplicate`, `json`, `body_size`)
//! - `quotestore_db_errors_total{kind}`: `unavailable` (no connection), `retry` (the server
//!   failed the write), `rejected` (the server refused the rows), `rollup` (a merge of the
//!   rollups failed; the merger retries)
//! - `quotestore_idempotent_replays_total`: batches answered from the Idempotency-Key cache
//! - `quotestore_rollup_merged_rows_total`: inserted rows folded into the rollups (it trails
//!   `quotestore_ingest_rows_total{result="inserted"}` by the merger's lag)
//! - `quotestore_ingest_phase_seconds{phase}`: where a batch's time goes — `parse` (JSON and
//!   the contract's checks), `wait` (queued until a leader takes it), `write` (the
//!   transaction of its group, COPY to commit)
//! - `quotestore_group_batches`: batches written together by one leader (group commit: more
//!   than one while every session is busy; one transaction when all their rows are new)

use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every metric of the store, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub rows: IntCounterVec,
    pub rows_per_second: IntGauge,
    pub batch_duration: Histogram,
    pub rejected: IntCounterVec,
    pub db_errors: IntCounterVec,
    pub replays: IntCounter,
    pub rollup_rows: IntCounter,
    pub phase: HistogramVec,
    pub group_batches: Histogram,
}

/// Phases of `quotestore_ingest_phase_seconds`.
pub const PARSE: &str = "parse";
pub const WAIT: &str = "wait";
pub const WRITE: &str = "write";

/// Labels of `quotestore_rejected_batches_total` besides the contract rules.
pub const JSON: &str = "json";
pub const BODY_SIZE: &str = "body_size";

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let rows = IntCounterVec::new(
            Opts::new(
                "quotestore_ingest_rows_total",
                "Quotes of accepted batches, by result (inserted, duplicate)",
            ),
            &["result"],
        )?;
        let rows_per_second = IntGauge::new(
            "quotestore_ingest_rows_per_second",
            "Inserted rows per second over the last few seconds",
        )?;
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "quotestore_batch_duration_seconds",
                "Time to store one accepted batch, from request to commit",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "quotestore_rejected_batches_total",
                "Refused batches, by the rule they broke",
            ),
            &["rule"],
        )?;
        let db_errors = IntCounterVec::new(
            Opts::new(
                "quotestore_db_errors_total",
                "Database failures, by kind: storing a batch (unavailable, retry, rejected) or merging the rollups (rollup)",
            ),
            &["kind"],
        )?;
        let replays = IntCounter::new(
            "quotestore_idempotent_replays_total",
            "Batches answered from the Idempotency-Key cache without touching the database",
        )?;
        let rollup_rows = IntCounter::new(
            "quotestore_rollup_merged_rows_total",
            "Inserted rows folded into the rollups by the merger",
        )?;
        let phase = HistogramVec::new(
            HistogramOpts::new(
                "quotestore_ingest_phase_seconds",
                "Time of one accepted batch in each phase: parse (JSON and contract checks), wait (queued until a leader takes it), write (its group's transaction)",
            )
            .buckets(vec![
                0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
            ]),
            &["phase"],
        )?;
        let group_batches = Histogram::with_opts(
            HistogramOpts::new(
                "quotestore_group_batches",
                "Batches written together by one leader (group commit): one transaction when all their rows are new, else one each",
            )
            .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0]),
        )?;
        registry.register(Box::new(phase.clone()))?;
        registry.register(Box::new(group_batches.clone()))?;
        for p in [PARSE, WAIT, WRITE] {
            phase.with_label_values(&[p]);
        }
        registry.register(Box::new(rollup_rows.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(rows_per_second.clone()))?;
        registry.register(Box::new(batch_duration.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(db_errors.clone()))?;
        registry.register(Box::new(replays.clone()))?;
        for r in ["inserted", "duplicate"] {
            rows.with_label_values(&[r]);
        }
        for i in quotestream_api::batch::Invariant::ALL {
            rejected.with_label_values(&[i.code()]);
        }
        for r in ["volume", "range", "duplicate", JSON, BODY_SIZE] {
            rejected.with_label_values(&[r]);
        }
        for k in ["unavailable", "retry", "rejected", "rollup"] {
            db_errors.with_label_values(&[k]);
        }
        Ok(Self {
            registry,
            rows,
            rows_per_second,
            batch_duration,
            rejected,
            db_errors,
            replays,
            rollup_rows,
            phase,
            group_batches,
        })
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        quotestream_runtime::metrics_text(&self.registry)
    }

    /// Updates `quotestore_ingest_rows_per_second` every `every` until `stop`.
    pub async fn track_rate(
        self,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let inserted = self.rows.with_label_values(&["inserted"]);
        let mut last = (Instant::now(), inserted.get());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let now = (Instant::now(), inserted.get());
            let secs = now.0.duration_since(last.0).as_secs_f64();
            if secs > 0.0 {
                let rate = (now.1.saturating_sub(last.1)) as f64 / secs;
                self.rows_per_second.set(rate.round() as i64);
            }
            last = now;
        }
    }
}

/// The Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics (text exposition)", content_type = "text/plain", body = String)))]
pub async fn get_metrics(
    axum::extract::State(metrics): axum::extract::State<Metrics>,
) -> impl axum::response::IntoResponse {
    quotestream_runtime::metrics_response(metrics.render())
}
