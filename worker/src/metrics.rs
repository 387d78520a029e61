//! The worker's Prometheus metrics: the seeds' names (`streamer_*`, `redis_publish*`) plus the
//! queue/drop/breaker gauges a bounded pipeline needs. Every series carries the `stream` and
//! `shard` labels; no label takes a ticker (bounded cardinality).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets from 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Why a sink gave quotes up: the `reason` label of `streamer_sink_dropped_quotes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A best-effort sink's queue was full (the oldest batch went).
    QueueFull,
    /// Redis was unavailable (Pub/Sub is best effort).
    Unavailable,
    /// Still unsent at the drain deadline of a shutdown.
    Shutdown,
    /// The destination refused the quote (storage 4xx, a PostgreSQL constraint).
    Rejected,
    /// The contract cannot carry it (share-class tickers in storage batches).
    Contract,
    /// The sink could not encode it (a Redis message that did not serialise).
    Encode,
    /// The sink was still running at the hard stop of a shutdown (it did not keep to its drain
    /// deadline) and was stopped: what it held unconfirmed. Never expected; a sink bug.
    Abandoned,
    /// The sink had failed permanently (a wrong password, a revoked grant, a dropped table):
    /// it drops what reaches it until a re-check succeeds, rather than hold the worker back.
    SinkFailed,
    /// The sink's disk buffer was full and its `whenFull` is `drop_newest`.
    BufferFull,
}

impl DropReason {
    pub const ALL: [Self; 9] = [
        Self::QueueFull,
        Self::Unavailable,
        Self::Shutdown,
        Self::Rejected,
        Self::Contract,
        Self::Encode,
        Self::Abandoned,
        Self::SinkFailed,
        Self::BufferFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Unavailable => "unavailable",
            Self::Shutdown => "shutdown",
            Self::Rejected => "rejected",
            Self::Contract => "contract",
            Self::Encode => "encode",
            Self::Abandoned => "abandoned",
            Self::SinkFailed => "sink_failed",
            Self::BufferFull => "buffer_full",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Quotes a source delivered (before validation).
    pub quotes_fetched: IntCounter,
    /// Quotes the pipeline handed to a sink (valid, not repeats), by sink. Each ends confirmed
    /// or dropped: accepted = published + dropped, per sink, once the worker has stopped.
    pub quotes_accepted: IntCounterVec,
    /// Quotes a sink confirmed, by sink (`redis`, `storage`, `postgres`, `console`).
    pub quotes_published: IntCounterVec,
    /// Time of one source fetch (one poll cycle).
    pub fetch_duration: Histogram,
    /// Time of one sink write (one pipeline, batch or COPY), by sink.
    pub publish_duration: HistogramVec,
    /// Errors by type: fetch, publish, validation, config.
    pub errors: IntCounterVec,
    /// Validation failures by reason (`ValidationError::reason`).
    pub validation_errors: IntCounterVec,
    /// Quotes not republished because the source repeated (ticker, timestamp).
    pub duplicates: IntCounter,
    /// Tickers this shard streams now.
    pub active_tickers: IntGauge,
    /// Times the source waited for the rate limiter or was told 429 by the vendor.
    pub rate_limit_hits: IntCounter,
    /// Contract 004 metrics of the Redis sink, by channel.
    pub redis_publishes: IntCounterVec,
    pub redis_publish_errors: IntCounterVec,
    pub redis_publish_latency: HistogramVec,
    /// Quotes waiting in each sink's queue.
    pub queued_quotes: IntGaugeVec,
    /// Bytes waiting in each sink's queue, as counted against its budget (`queueBytes`).
    pub queued_bytes: IntGaugeVec,
    /// Each sink queue's byte budget.
    pub queue_budget_bytes: IntGaugeVec,
    /// Quotes a sink gave up on, by sink and reason (queue_full, shutdown, rejected, contract).
    pub dropped_quotes: IntCounterVec,
    /// 1 while a sink's circuit breaker is open (storage: requests are held back).
    pub circuit_open: IntGaugeVec,
    /// 1 while a durable sink retries a write that failed (the batch in hand waits).
    pub sink_retrying: IntGaugeVec,
    /// Streaming sources: 1 while logged in and subscribed.
    pub source_connected: IntGauge,
    /// Streaming sources: tickers the open connection is subscribed to.
    pub source_subscribed: IntGauge,
    /// Streaming sources: connections lost, by reason (closed, error, silent, login_timeout,
    /// connect, vendor_error, send).
    pub source_reconnects: IntCounterVec,
    /// Streaming sources: unusable messages, by reason (never published).
    pub source_malformed: IntCounterVec,
    /// Streaming sources: errors the vendor sent, by its code.
    pub source_vendor_errors: IntCounterVec,
    /// Streaming sources: ticks folded into a later tick of the same ticker (`coalesce`).
    pub source_coalesced: IntCounter,
    /// 1 while the stream's trading-hours window is open (always 1 without `spec.schedule`).
    pub market_window_open: IntGauge,
    /// When the window next opens or closes (Unix seconds; 0 without a schedule).
    pub market_next_change: IntGauge,
    /// The durable sinks' disk buffers (`crate::buffer`).
    pub buffer: crate::buffer::BufferMetrics,
}

impl Metrics {
    /// Quotes `sink` dropped for `reason`.
    pub fn dropped(&self, sink: &str, reason: DropReason) -> IntCounter {
        self.dropped_quotes
            .with_label_values(&[sink, reason.as_str()])
    }

    /// Metrics for one shard of one stream.
    pub fn new(stream: &str, shard: u32) -> Result<Self, prometheus::Error> {
        let labels = [
            ("stream".to_owned(), stream.to_owned()),
            ("shard".to_owned(), shard.to_string()),
        ]
        .into_iter()
        .collect();
        let registry = Registry::new_custom(None, Some(labels))?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let fetch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "streamer_fetch_duration_seconds",
                "Time of one source fetch",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(fetch_duration.clone()))?;
        let active_tickers = gauge("streamer_active_tickers", "Tickers this shard streams")?;
        Ok(Self {
            quotes_fetched: counter(
                "streamer_quotes_fetched_total",
                "Quotes delivered by the source",
            )?,
            quotes_accepted: counter_vec(
                "streamer_sink_accepted_quotes_total",
                "Quotes the pipeline handed to a sink",
                &["sink"],
            )?,
            quotes_published: counter_vec(
                "streamer_quotes_published_total",
                "Quotes a sink confirmed",
                &["sink"],
            )?,
            fetch_duration,
            publish_duration: histogram_vec(
                "streamer_publish_duration_seconds",
                "Time of one sink write",
                &["sink"],
            )?,
            errors: counter_vec("streamer_errors_total", "Errors by type", &["type"])?,
            validation_errors: counter_vec(
                "streamer_validation_errors_total",
                "Quotes dropped by validation, by reason",
                &["reason"],
            )?,
            duplicates: counter(
                "streamer_duplicate_quotes_total",
                "Quotes not republished because (ticker, timestamp) repeated",
            )?,
            active_tickers,
            rate_limit_hits: counter(
                "streamer_rate_limit_hits_total",
                "Times the source was held back by the rate limit",
            )?,
            redis_publishes: counter_vec(
                "redis_publishes_total",
                "Messages published to Redis",
                &["channel"],
            )?,
            redis_publish_errors: counter_vec(
                "redis_publish_errors_total",
                "Messages that could not be published to Redis",
                &["channel"],
            )?,
            redis_publish_latency: histogram_vec(
                "redis_publish_latency_seconds",
                "Time of one Redis publish pipeline",
                &["channel"],
            )?,
            queued_quotes: gauge_vec(
                "streamer_sink_queued_quotes",
                "Quotes waiting for a sink",
                &["sink"],
            )?,
            queued_bytes: gauge_vec(
                "streamer_sink_queued_bytes",
                "Bytes waiting for a sink (the queued batches' estimated heap size)",
                &["sink"],
            )?,
            queue_budget_bytes: gauge_vec(
                "streamer_sink_queue_budget_bytes",
                "Bytes a sink's queue may hold (queueBytes)",
                &["sink"],
            )?,
            dropped_quotes: counter_vec(
                "streamer_sink_dropped_quotes_total",
                "Quotes a sink gave up on, by reason",
                &["sink", "reason"],
            )?,
            circuit_open: gauge_vec(
                "streamer_sink_circuit_open",
                "1 while the sink's circuit breaker is open",
                &["sink"],
            )?,
            sink_retrying: gauge_vec(
                "streamer_sink_retrying",
                "1 while the sink retries a failed write",
                &["sink"],
            )?,
            source_connected: gauge(
                "streamer_source_connected",
                "1 while the streaming source is logged in and subscribed",
            )?,
            source_subscribed: gauge(
                "streamer_source_subscribed_tickers",
                "Tickers the streaming connection is subscribed to",
            )?,
            source_reconnects: counter_vec(
                "streamer_source_reconnects_total",
                "Streaming connections lost, by reason",
                &["reason"],
            )?,
            source_malformed: counter_vec(
                "streamer_source_malformed_total",
                "Unusable messages from the streaming source, by reason",
                &["reason"],
            )?,
            source_vendor_errors: counter_vec(
                "streamer_source_vendor_errors_total",
                "Errors the market-data vendor sent, by its code",
                &["code"],
            )?,
            source_coalesced: counter(
                "streamer_source_coalesced_total",
                "Ticks folded into a later tick of the same ticker",
            )?,
            market_window_open: gauge(
                "streamer_market_window_open",
                "1 while the stream's trading-hours window is open (spec.schedule; 1 without one)",
            )?,
            market_next_change: gauge(
                "streamer_market_next_change_timestamp_seconds",
                "When the trading-hours window next opens or closes (Unix seconds; 0 without spec.schedule)",
            )?,
            buffer: crate::buffer::BufferMetrics::register(&registry)?,
            registry,
        })
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
    fn exposes_the_seed_names_with_shard_labels() {
        let m = Metrics::new("sp500", 3).unwrap();
        m.quotes_fetched.inc();
        m.quotes_published.with_label_values(&["redis"]).inc();
        m.errors.with_label_values(&["validation"]).inc();
        m.redis_publishes
            .with_label_values(&["quotes.realtime"])
            .inc();
        m.redis_publish_errors
            .with_label_values(&["quotes.realtime"])
            .inc_by(0);
        m.redis_publish_latency
            .with_label_values(&["quotes.realtime"])
            .observe(0.001);
        m.publish_duration
            .with_label_values(&["redis"])
            .observe(0.001);
        m.fetch_duration.observe(0.01);
        let text = m.render();
        for name in [
            "streamer_quotes_fetched_total",
            "streamer_quotes_published_total",
            "streamer_fetch_duration_seconds",
            "streamer_publish_duration_seconds",
            "streamer_errors_total",
            "streamer_active_tickers",
            "streamer_rate_limit_hits_total",
            "redis_publishes_total",
            "redis_publish_errors_total",
            "redis_publish_latency_seconds",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        // Label order in the exposition is not fixed; check the sample, not the text.
        assert!(
            text.lines()
                .any(|l| l.starts_with("streamer_quotes_fetched_total{")
                    && l.contains(r#"shard="3""#)
                    && l.contains(r#"stream="sp500""#)
                    && l.ends_with(" 1")),
            "{text}"
        );
    }
}
