//! The Redis sink as the worker runs it, for the Redis tests (`redis_sink.rs`, `redis_ha.rs`):
//! its queue, its task, and the metrics it counts in.

use std::sync::Arc;
use std::time::Duration;

use quotestream_worker::health::Health;
use quotestream_worker::metrics::Metrics;
use quotestream_worker::queue::{self, FullPolicy, QueueReceiver, QueueSender};
use quotestream_worker::quote::Quote;
use quotestream_worker::sinks::redis::{RedisConfig, RedisSink};
use quotestream_worker::sinks::{Batch, Sink, SinkContext};

/// Every reason the Redis sink counts a quote as not published.
pub const DROP_REASONS: [&str; 7] = [
    "queue_full",
    "unavailable",
    "shutdown",
    "rejected",
    "contract",
    "encode",
    "abandoned",
];

/// Every quote a Redis sink counted in `metrics` as not published, whatever the reason.
pub fn dropped(metrics: &Metrics) -> u64 {
    DROP_REASONS
        .iter()
        .map(|r| {
            metrics
                .dropped_quotes
                .with_label_values(&["redis", r])
                .get()
        })
        .sum()
}

/// A running Redis sink of shard `shard` of stream `sp500`.
pub struct RunningSink {
    tx: Option<QueueSender>,
    rx: Option<QueueReceiver>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub metrics: Metrics,
    shard: u32,
}

impl RunningSink {
    /// The sink's queue (`budget` bytes, dropping the oldest when full), not running yet:
    /// what is sent now is queued before the sink's first event.
    pub fn queued(shard: u32, budget: usize) -> Self {
        // The sink's logs, shown when a test fails (RUST_LOG to change the level).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .try_init();
        let metrics = Metrics::new("sp500", shard).unwrap();
        let (tx, rx) = queue::for_sink(&metrics, "redis", budget, FullPolicy::DropOldest);
        Self {
            tx: Some(tx),
            rx: Some(rx),
            task: None,
            metrics,
            shard,
        }
    }

    /// Runs the sink built from `config` on the queue, with `drain` as its drain deadline.
    pub fn run(mut self, config: RedisConfig, drain: Duration) -> Self {
        let rx = self.rx.take().expect("the sink runs once");
        let health = Health::new(self.shard, self.metrics.clone());
        let sink = RedisSink::new(config, health, self.shard.to_string());
        let ctx = SinkContext {
            metrics: self.metrics.clone(),
            drain_deadline: drain,
            shutdown: tokio_util::sync::CancellationToken::new(),
            status: Default::default(),
            acks: quotestream_worker::buffer::Acks::none(),
        };
        self.task = Some(tokio::spawn(async move {
            sink.run(rx, ctx).await.unwrap();
        }));
        self
    }

    pub async fn send(&self, quotes: Vec<Quote>) {
        let batch: Batch = Arc::from(quotes);
        self.tx.as_ref().unwrap().send(batch).await;
    }

    /// Every quote the sink counted as not published, whatever the reason.
    pub fn dropped(&self) -> u64 {
        dropped(&self.metrics)
    }

    /// Quotes confirmed published on `channel`.
    pub fn published(&self, channel: &str) -> u64 {
        self.metrics
            .redis_publishes
            .with_label_values(&[channel])
            .get()
    }

    /// Closes the queue and waits (at most `wait`) for the sink to drain and stop.
    pub async fn stop(mut self, wait: Duration) {
        self.tx.take();
        let task = self.task.take().expect("the sink runs");
        tokio::time::timeout(wait, task)
            .await
            .expect("sink stops when its queue closes")
            .unwrap();
    }
}
