//! The Redis connector: pipelined PUBLISH of each batch, heartbeats, reconnection.
//!
//! Pub/Sub is best effort by design: a batch that cannot be published while Redis is away is
//! counted (`redis_publish_errors_total`, `streamer_sink_dropped_quotes_total{reason="unavailable"}`)
//! and not retried, so Redis never holds back the durable sinks. The connection manager
//! reconnects in the background with jittered exponential backoff.
//!
//! Shutdown runs on the sink core's drain clock like the durable sinks: the queue is published
//! until the drain deadline; then the pipelines still unanswered (a Redis that hangs, e.g.
//! stopped with SIGSTOP, answers nothing until its 5 s response timeout) and what is still
//! queued are counted as dropped (`reason="shutdown"`) and the sink returns.
//!
//! Throughput (docs/performance.md): up to two pipelines are in flight on the one multiplexed
//! connection, so Redis has the next pipeline in hand when it finishes one, and the sink encodes
//! a third meanwhile. They are submitted in queue order (the connection keeps that order), and
//! confirmed in that order. Buffers are reused: one JSON buffer for every quote, and each
//! pipeline comes back for another chunk once Redis has confirmed it.

use std::collections::HashSet;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::stream::{FuturesOrdered, StreamExt};
use prometheus::{Histogram, IntCounter};
use quotestream_api::Ticker;
use quotestream_api::crd::RedisFormat;
use tokio::time::MissedTickBehavior;

use super::config::RedisConfig;
use super::connection::Connection;
use super::heartbeat::Heartbeat;
use crate::health::{Health, SinkStatus};
use crate::metrics::DropReason;
use crate::metrics::Metrics;
use crate::process_stats::CpuSampler;
use crate::queue::QueueReceiver;
use crate::quote::Quote;
use crate::quote::wire::{CloudEvent, RedisQuote};
use crate::sinks::util::drain::Drain;
use crate::sinks::{Batch, Sink, SinkContext, SinkError};

/// Label of this sink in metrics and logs.
pub const NAME: &str = "redis";
/// How often one kind of publish failure is logged (every one is counted).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Pipelines on their way at once. Two keep Redis busy while the reply to one travels back;
/// more would only hold more quotes unconfirmed.
const IN_FLIGHT: usize = 2;
/// Share-class tickers logged once each; beyond this they are still counted.
const MAX_LOGGED_SHARE_CLASSES: usize = 1000;

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

    fn connect(&self) -> Result<Connection, SinkError> {
        Connection::new(&self.config).map_err(|reason| SinkError::Config { sink: NAME, reason })
    }
}

/// Turns quotes into PUBLISH commands, reusing one JSON buffer.
struct Encoder<'a> {
    format: RedisFormat,
    producer: &'a str,
    channel: &'a str,
    /// PUBLISH, or SPUBLISH for sharded Pub/Sub in a cluster.
    command: &'static str,
    json: Vec<u8>,
    /// Contract 004's ticker pattern is `^[A-Z]{1,5}$`: share classes are kept off unless
    /// `spec.sinks.redis.allowShareClasses` opts in.
    allow_share_classes: bool,
    /// Quotes kept off since the sink last counted them.
    kept_off: u64,
    /// Quotes that could not be encoded since the sink last counted them.
    unencodable: u64,
    /// Share classes already logged (bounded: the count is what matters).
    logged: HashSet<Ticker>,
}

impl Encoder<'_> {
    /// Adds a PUBLISH of each quote to `pipe`; returns how many it added.
    fn fill(&mut self, pipe: &mut redis::Pipeline, quotes: &[Quote]) -> u64 {
        let mut added = 0;
        for q in quotes {
            // Share classes may be let through (spec.sinks.redis.allowShareClasses); indices
            // and crypto pairs never: no consumer of contract 004 expects `^` or `-`.
            let let_through = self.allow_share_classes && q.ticker.share_class().is_some();
            if !q.ticker.is_contract_symbol() && !let_through {
                self.kept_off += 1;
                if self.logged.len() < MAX_LOGGED_SHARE_CLASSES
                    && self.logged.insert(q.ticker.clone())
                {
                    tracing::warn!(ticker = %q.ticker, "ticker kept off Redis: contract 004 says ^[A-Z]{{1,5}}$ (a share class is published with spec.sinks.redis.allowShareClasses; an index or crypto pair never); every such quote is counted in streamer_sink_dropped_quotes_total{{sink=\"redis\",reason=\"contract\"}} (logged once per ticker)");
                }
                continue;
            }
            self.json.clear();
            let encoded = match self.format {
                RedisFormat::Plain => serde_json::to_writer(&mut self.json, &RedisQuote::from(q)),
                RedisFormat::Cloudevents => {
                    serde_json::to_writer(&mut self.json, &CloudEvent::new(q, self.producer))
                }
            };
            if let Err(e) = encoded {
                // Validated quotes always serialise; kept as a counted drop, never a panic.
                self.unencodable += 1;
                tracing::error!(error = %e, ticker = %q.ticker, "quote could not be encoded; dropped (counted in streamer_sink_dropped_quotes_total{{sink=\"redis\",reason=\"encode\"}})");
                continue;
            }
            // Sized once: the command holds the raw bytes of its three arguments.
            let mut cmd = redis::Cmd::with_capacity(
                3,
                self.command.len() + self.channel.len() + self.json.len(),
            );
            cmd.arg(self.command)
                .arg(self.channel)
                .arg(self.json.as_slice());
            // Not `.ignore()`d: that keeps a HashSet of indices (5% of the sink's CPU in the
            // profile); the replies are checked for server errors either way.
            pipe.add_command(cmd);
            added += 1;
        }
        added
    }
}

/// A pipeline Redis answered (or did not).
struct Sent {
    pipe: redis::Pipeline,
    quotes: u64,
    result: redis::RedisResult<()>,
    took: Duration,
}

type Reply = Pin<Box<dyn Future<Output = Sent> + Send>>;

/// The round trip of `pipe`. It is submitted to the connection the first time it is polled.
fn send(mut conn: Connection, pipe: redis::Pipeline, quotes: u64) -> Reply {
    Box::pin(async move {
        let started = Instant::now();
        let result = pipe.query_async::<()>(&mut conn).await;
        Sent {
            pipe,
            quotes,
            result,
            took: started.elapsed(),
        }
    })
}

/// The answer to the oldest pipeline in flight; never resolves when there is none.
async fn confirmation(in_flight: &mut FuturesOrdered<Reply>) -> Sent {
    match in_flight.next().await {
        Some(sent) => sent,
        None => std::future::pending().await,
    }
}

/// What the sink counts per pipeline.
struct Counters {
    publishes: IntCounter,
    published: IntCounter,
    errors: IntCounter,
    dropped: IntCounter,
    publish_errors: IntCounter,
    latency: Histogram,
    duration: Histogram,
    last_logged: Option<Instant>,
    /// `/ready`'s view: `retrying` while publishes fail (Redis is best effort: never `failed`).
    status: SinkStatus,
    failing: bool,
}

impl Counters {
    fn new(m: &Metrics, channel: &str, status: SinkStatus) -> Self {
        Self {
            publishes: m.redis_publishes.with_label_values(&[channel]),
            published: m.quotes_published.with_label_values(&[NAME]),
            errors: m.redis_publish_errors.with_label_values(&[channel]),
            dropped: m.dropped(NAME, DropReason::Unavailable),
            publish_errors: m.errors.with_label_values(&["publish"]),
            latency: m.redis_publish_latency.with_label_values(&[channel]),
            duration: m.publish_duration.with_label_values(&[NAME]),
            last_logged: None,
            status,
            failing: false,
        }
    }

    /// Counts how a pipeline ended; hands it back, emptied, for reuse.
    fn settle(&mut self, sent: Sent, channel: &str) -> redis::Pipeline {
        let Sent {
            mut pipe,
            quotes,
            result,
            took,
        } = sent;
        pipe.clear();
        let error = match result {
            Ok(()) => {
                self.publishes.inc_by(quotes);
                self.published.inc_by(quotes);
                self.latency.observe(took.as_secs_f64());
                self.duration.observe(took.as_secs_f64());
                if std::mem::take(&mut self.failing) {
                    self.status.up();
                }
                return pipe;
            }
            Err(e) => e,
        };
        self.errors.inc_by(quotes);
        self.dropped.inc_by(quotes);
        self.publish_errors.inc();
        if !self.failing {
            self.failing = true;
            self.status.retrying(error.to_string());
        }
        if self.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_logged = Some(Instant::now());
            tracing::warn!(%error, lost = quotes, channel, "Redis unavailable: quotes not published (counted in redis_publish_errors_total; reconnecting in the background)");
        }
        pipe
    }
}

enum Event {
    Confirmed(Sent),
    /// The drain deadline of a shutdown passed.
    Deadline,
    Batch(Option<Batch>),
    Heartbeat,
}

impl Sink for RedisSink {
    const NAME: &'static str = NAME;

    fn durable(&self) -> bool {
        false
    }

    async fn run(self, mut queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        let mut conn = self.connect()?;
        let channel = self.config.channel.as_str();
        let mut counters = Counters::new(&ctx.metrics, channel, ctx.status.clone());
        let publish_errors = counters.publish_errors.clone();
        let mut encoder = Encoder {
            format: self.config.format,
            producer: &self.config.producer,
            channel,
            command: self.config.target.publish_command(),
            json: Vec::with_capacity(512),
            allow_share_classes: self.config.allow_share_classes,
            kept_off: 0,
            unencodable: 0,
            logged: HashSet::new(),
        };
        let kept_off = ctx.metrics.dropped(NAME, DropReason::Contract);
        let unencodable = ctx.metrics.dropped(NAME, DropReason::Encode);
        let mut drain = Drain::for_sink(&ctx);
        // Quotes in the pipelines in flight: submitted, neither confirmed nor failed yet.
        let mut unconfirmed: u64 = 0;

        let mut heartbeat = tokio::time::interval(self.config.heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cpu = CpuSampler::default();
        let mut failures_at_last_beat = publish_errors.get();
        let mut in_flight: FuturesOrdered<Reply> = FuturesOrdered::new();
        // Emptied pipelines, kept for their allocations (at most IN_FLIGHT + 1 are in use).
        let mut spare: Vec<redis::Pipeline> = Vec::new();

        loop {
            let event = tokio::select! {
                biased;
                answer = confirmation(&mut in_flight) => Event::Confirmed(answer),
                () = drain.expired() => Event::Deadline,
                batch = queue.recv() => Event::Batch(batch),
                _ = heartbeat.tick() => Event::Heartbeat,
            };
            match event {
                Event::Confirmed(sent) => {
                    unconfirmed -= sent.quotes;
                    spare.push(counters.settle(sent, channel));
                }
                Event::Deadline => {
                    drain.give_up(&ctx, NAME, to_usize(unconfirmed), &queue);
                    return Ok(());
                }
                // No heartbeat once shutdown has begun: the drain deadline is for quotes.
                Event::Heartbeat if drain.deadline().is_some() => {}
                Event::Heartbeat => {
                    let failures = publish_errors.get();
                    let beat = Heartbeat::now(
                        self.health.uptime_seconds(),
                        failures > failures_at_last_beat,
                        &mut cpu,
                        self.shard_label.clone(),
                    );
                    failures_at_last_beat = failures;
                    if let Ok(payload) = serde_json::to_vec(&beat) {
                        // Heartbeats go the same way as quotes (SPUBLISH when sharded).
                        let mut cmd = redis::cmd(self.config.target.publish_command());
                        cmd.arg(&self.config.health_channel).arg(payload);
                        let publish = cmd.query_async::<()>(&mut conn);
                        // A hung Redis answers after the response timeout; a shutdown
                        // beginning meanwhile does not wait for it.
                        match drain.bounded(publish, None).await {
                            Some(Ok(())) => {}
                            Some(Err(e)) => tracing::debug!(error = %e, "heartbeat not published"),
                            None => {
                                drain.give_up(&ctx, NAME, to_usize(unconfirmed), &queue);
                                return Ok(());
                            }
                        }
                    }
                }
                Event::Batch(None) => {
                    // Closed and drained: wait for the last answers, within the drain deadline.
                    drain.start();
                    loop {
                        match drain.bounded(in_flight.next(), None).await {
                            Some(Some(sent)) => {
                                unconfirmed -= sent.quotes;
                                counters.settle(sent, channel);
                            }
                            Some(None) => return Ok(()),
                            None => {
                                drain.give_up(&ctx, NAME, to_usize(unconfirmed), &queue);
                                return Ok(());
                            }
                        }
                    }
                }
                Event::Batch(Some(batch)) => {
                    let step = self.config.pipeline_max.max(1);
                    for (i, chunk) in batch.chunks(step).enumerate() {
                        let mut pipe = spare.pop().unwrap_or_else(redis::pipe);
                        // Encoded while the pipelines before it are on their way.
                        let quotes = encoder.fill(&mut pipe, chunk);
                        kept_off.inc_by(std::mem::take(&mut encoder.kept_off));
                        unencodable.inc_by(std::mem::take(&mut encoder.unencodable));
                        if quotes == 0 {
                            spare.push(pipe);
                            continue;
                        }
                        while in_flight.len() >= IN_FLIGHT {
                            match drain.bounded(confirmation(&mut in_flight), None).await {
                                Some(sent) => {
                                    unconfirmed -= sent.quotes;
                                    spare.push(counters.settle(sent, channel));
                                }
                                None => {
                                    // This pipeline and the rest of the batch were never sent.
                                    let later = batch.len().saturating_sub((i + 1) * step);
                                    let lost = to_usize(unconfirmed + quotes) + later;
                                    drain.give_up(&ctx, NAME, lost, &queue);
                                    return Ok(());
                                }
                            }
                        }
                        unconfirmed += quotes;
                        in_flight.push_back(send(conn.clone(), pipe, quotes));
                        // One poll submits it now (in order: the older ones were submitted by
                        // theirs), rather than when the sink next waits.
                        if let Some(Some(sent)) = in_flight.next().now_or_never() {
                            unconfirmed -= sent.quotes;
                            spare.push(counters.settle(sent, channel));
                        }
                    }
                }
            }
        }
    }
}

fn to_usize(quotes: u64) -> usize {
    usize::try_from(quotes).unwrap_or(usize::MAX)
}
