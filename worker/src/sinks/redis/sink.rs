//! The Redis connector: pipelined PUBLISH of each batch, heartbeats, reconnection.
//!
//! Pub/Sub is best effort by design: a batch that cannot be published while Redis is away is
//! counted (`redis_publish_errors_total`, `streamer_sink_dropped_quotes_total{reason="unavailable"}`)
//! and not retried, so Redis never holds back the durable sinks. The connection manager
//! reconnects in the background with jittered exponential backoff.

use std::time::{Duration, Instant};

use quotestream_api::crd::RedisFormat;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::MissedTickBehavior;

use super::config::{RedisConfig, redact};
use super::heartbeat::Heartbeat;
use crate::health::Health;
use crate::process_stats::CpuSampler;
use crate::queue::QueueReceiver;
use crate::quote::Quote;
use crate::quote::wire::{CloudEvent, RedisQuote};
use crate::sinks::{Sink, SinkContext, SinkError};

const NAME: &str = "redis";
/// How often one kind of publish failure is logged (every one is counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RedisSink {
    config: RedisConfig,
    health: Health,
    shard_label: String,
}

impl RedisSink {
    pub fn new(config: RedisConfig, health: Health, shard_label: String) -> Self {
        Self {
            config,
            health,
            shard_label,
        }
    }

    fn connect(&self) -> Result<ConnectionManager, SinkError> {
        let config_err = |reason: String| SinkError::Config { sink: NAME, reason };
        let client = redis::Client::open(self.config.url.as_str())
            .map_err(|e| config_err(format!("Redis URL {}: {e}", redact(&self.config.url))))?;
        let manager = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(5))
            .set_number_of_retries(3)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        ConnectionManager::new_lazy_with_config(client, manager).map_err(|e| {
            config_err(format!(
                "Redis connection to {}: {e}",
                redact(&self.config.url)
            ))
        })
    }

    fn encode(&self, q: &Quote) -> Result<Vec<u8>, serde_json::Error> {
        match self.config.format {
            RedisFormat::Plain => serde_json::to_vec(&RedisQuote::from(q)),
            RedisFormat::Cloudevents => {
                serde_json::to_vec(&CloudEvent::new(q, &self.config.producer))
            }
        }
    }
}

impl Sink for RedisSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn durable(&self) -> bool {
        false
    }

    async fn run(self, mut queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        let mut conn = self.connect()?;
        let m = &ctx.metrics;
        let channel = self.config.channel.as_str();
        let publishes = m.redis_publishes.with_label_values(&[channel]);
        let errors = m.redis_publish_errors.with_label_values(&[channel]);
        let latency = m.redis_publish_latency.with_label_values(&[channel]);
        let published = m.quotes_published.with_label_values(&[NAME]);
        let duration = m.publish_duration.with_label_values(&[NAME]);
        let dropped = m.dropped_quotes.with_label_values(&[NAME, "unavailable"]);
        let publish_errors = m.errors.with_label_values(&["publish"]);

        let mut heartbeat = tokio::time::interval(self.config.heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cpu = CpuSampler::default();
        let mut failures_at_last_beat = publish_errors.get();
        let mut last_logged: Option<Instant> = None;

        loop {
            let batch = tokio::select! {
                biased;
                batch = queue.recv() => batch,
                _ = heartbeat.tick() => {
                    let failures = publish_errors.get();
                    let beat = Heartbeat::now(self.health.uptime_seconds(), failures > failures_at_last_beat, &mut cpu, self.shard_label.clone());
                    failures_at_last_beat = failures;
                    if let Ok(payload) = serde_json::to_vec(&beat) {
                        let sent: redis::RedisResult<()> = redis::cmd("PUBLISH")
                            .arg(&self.config.health_channel)
                            .arg(payload)
                            .query_async(&mut conn)
                            .await;
                        if let Err(e) = sent {
                            tracing::debug!(error = %e, "heartbeat not published");
                        }
                    }
                    continue;
                }
            };
            let Some(batch) = batch else { return Ok(()) };
            for chunk in batch.chunks(self.config.pipeline_max) {
                let mut pipe = redis::pipe();
                let mut encoded = 0u64;
                for q in chunk {
                    match self.encode(q) {
                        Ok(payload) => {
                            pipe.publish(channel, payload).ignore();
                            encoded += 1;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, ticker = %q.ticker, "quote could not be encoded")
                        }
                    }
                }
                let started = Instant::now();
                let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
                let took = started.elapsed().as_secs_f64();
                match result {
                    Ok(()) => {
                        publishes.inc_by(encoded);
                        published.inc_by(encoded);
                        latency.observe(took);
                        duration.observe(took);
                    }
                    Err(e) => {
                        errors.inc_by(encoded);
                        dropped.inc_by(encoded);
                        publish_errors.inc();
                        if last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            last_logged = Some(Instant::now());
                            tracing::warn!(error = %e, lost = encoded, channel, "Redis unavailable: quotes not published (counted in redis_publish_errors_total; reconnecting in the background)");
                        }
                    }
                }
            }
        }
    }
}
