//! The storage sink's loop: gather quotes into batches (up to `batch_size` or `linger`), split
//! them into contract batches, POST each until storage takes it, and count what it gives up on.
//!
//! Metrics (label `sink="storage"`): `streamer_quotes_published_total` once storage answered
//! 2xx; `streamer_publish_duration_seconds` the time of each accepted POST;
//! `streamer_errors_total{type="publish"}` every failed or rejected POST;
//! `streamer_sink_dropped_quotes_total{reason}` with `contract` (share-class tickers and
//! sources the contract cannot carry), `rejected` (a single quote storage refuses: a refused
//! batch is bisected until the refused quotes are isolated and the rest delivered) and
//! `shutdown` (still unsent at the drain deadline); `streamer_sink_circuit_open` 1 while the breaker is
//! not closed; `streamer_sink_retrying` 1 while a failed batch waits for its retry. Batching
//! ([`gather`]), the retry backoff and the shutdown drain are the sink core's
//! (`crate::sinks::util`).

use std::collections::HashSet;
use std::time::Instant;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use prometheus::{Histogram, IntCounter, IntGauge};

use super::breaker::{Breaker, BreakerState, Permit};
use super::client::{Answer, StorageClient, idempotency_key};
use super::config::StorageConfig;
use crate::health::SinkStatus;
use crate::log_limit::LogLimiter;
use crate::metrics::{DropReason, Metrics};
use crate::queue::QueueReceiver;
use crate::quote::Quote;
use crate::quote::wire::{ContractViolation, StorageBatch};
use crate::sinks::util::batch::{self, gather};
use crate::sinks::util::drain::Drain;
use crate::sinks::{Sink, SinkContext, SinkError};

/// The sink's label in metrics and logs.
pub const NAME: &str = "storage";
/// Distinct contract violations remembered for log-once; beyond this they are still counted
/// but no longer logged (keeps memory bounded whatever the ticker list).
const MAX_LOGGED_VIOLATIONS: usize = 10_000;

/// POSTs quotes to the storage API (contract 001). Durable: retryable failures are retried
/// until storage takes the batch; the queue in front provides the back-pressure.
#[derive(Debug)]
pub struct StorageSink {
    config: StorageConfig,
    client: StorageClient,
}

impl StorageSink {
    /// Checks `config` and builds the HTTP client.
    pub fn new(config: StorageConfig) -> Result<Self, SinkError> {
        let fail = |reason: String| SinkError::Config { sink: NAME, reason };
        config.validate().map_err(|e| fail(e.to_string()))?;
        let client = StorageClient::new(&config)
            .map_err(|e| fail(format!("building the HTTP client: {e}")))?;
        Ok(Self { config, client })
    }
}

impl Sink for StorageSink {
    const NAME: &'static str = NAME;

    fn durable(&self) -> bool {
        true
    }

    async fn run(self, mut queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        let batch_size = self.config.batch_size;
        let linger = self.config.linger;
        let mut w = Writer::new(self, &ctx);
        tracing::info!(endpoint = %w.client.endpoint_redacted(), batch_size, "storage sink started");
        let mut held = Vec::new();
        loop {
            // Linger: a small first batch waits briefly for company, so storage gets few large
            // requests rather than many small ones. The drain deadline bounds the wait (a
            // closing queue ends it by itself).
            let gathered = gather(&mut queue, &mut held, batch_size, linger);
            let Some(open) = w.drain.bounded(gathered, None).await else {
                w.drain.give_up(&ctx, NAME, batch::len(&held), &queue);
                return Ok(());
            };
            let batches = held.len();
            let quotes: Vec<Quote> = held.drain(..).flat_map(|b| b.to_vec()).collect();
            if let Err(unsent) = w.flush(&quotes, &queue).await {
                w.drain.give_up(&ctx, NAME, unsent, &queue);
                return Ok(());
            }
            // Stored or refused for good: a disk buffer in front may let them go.
            ctx.acks.confirm(batches);
            if !open {
                return Ok(());
            }
        }
    }
}

/// How one POST of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Accepted,
    /// Storage refuses these bytes (`why`); parts of the batch may still go.
    Rejected(String),
    /// The drain deadline passed before storage took it.
    Expired,
}

/// The state of a running sink.
struct Writer {
    config: StorageConfig,
    client: StorageClient,
    breaker: Breaker,
    reported: BreakerState,
    backoff: ExponentialBuilder,
    drain: Drain,
    logged: HashSet<String>,
    /// One log line a minute for quotes storage refuses (each is counted).
    rejected_log: LogLimiter,
    published: IntCounter,
    duration: Histogram,
    errors: IntCounter,
    circuit_open: IntGauge,
    retrying: IntGauge,
    metrics: Metrics,
    /// `/ready`'s view: retrying (with the last answer) while a batch is kept, up otherwise.
    /// Storage has no permanent failure: a 401/403 may come from a proxy and clear by itself.
    status: SinkStatus,
}

impl Writer {
    fn new(sink: StorageSink, ctx: &SinkContext) -> Self {
        let c = &sink.config;
        let breaker = Breaker::new(c.breaker_failures, c.breaker_open_for);
        let circuit_open = ctx.metrics.circuit_open.with_label_values(&[NAME]);
        circuit_open.set(0);
        let retrying = ctx.metrics.sink_retrying.with_label_values(&[NAME]);
        retrying.set(0);
        Self {
            reported: breaker.state(),
            breaker,
            backoff: crate::retry::backoff(c.retry_min_delay, c.retry_max_delay),
            drain: Drain::for_sink(ctx),
            logged: HashSet::new(),
            rejected_log: LogLimiter::default(),
            published: ctx.metrics.quotes_published.with_label_values(&[NAME]),
            duration: ctx.metrics.publish_duration.with_label_values(&[NAME]),
            errors: ctx.metrics.errors.with_label_values(&["publish"]),
            circuit_open,
            retrying,
            metrics: ctx.metrics.clone(),
            status: ctx.status.clone(),
            config: sink.config,
            client: sink.client,
        }
    }

    fn dropped(&self, reason: DropReason, quotes: usize) {
        self.metrics.dropped(NAME, reason).inc_by(quotes as u64);
    }

    /// Sends `quotes` as contract batches. `Err` carries the quotes left unsent when the drain
    /// deadline passed.
    async fn flush(&mut self, quotes: &[Quote], queue: &QueueReceiver) -> Result<(), usize> {
        let (batches, violations) = StorageBatch::split(quotes, self.config.batch_size);
        self.count_violations(&violations);
        let mut left: usize = batches.iter().map(StorageBatch::len).sum();
        for batch in batches {
            let n = batch.len();
            self.send_bisecting(batch, queue)
                .await
                .map_err(|unsent| unsent + left - n)?;
            left -= n;
        }
        Ok(())
    }

    /// Sends one contract batch. When storage refuses it (400, 413, 422, ...), the halves are
    /// sent instead, recursively, so one bad quote (or a body over the server's size limit)
    /// costs that quote alone (counted as `rejected`), not the whole batch: about 2·log2(n)
    /// extra requests per refused quote. `Err` carries the quotes left unsent at the drain
    /// deadline.
    async fn send_bisecting(
        &mut self,
        batch: StorageBatch<'_>,
        queue: &QueueReceiver,
    ) -> Result<(), usize> {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let n = batch.len();
            let body = match serde_json::to_vec(&batch) {
                Ok(body) => Bytes::from(body),
                Err(e) => {
                    // Validated quotes always serialise; kept as a counted drop, never a panic.
                    tracing::error!(error = %e, quotes = n, "could not encode a storage batch; dropped");
                    self.dropped(DropReason::Contract, n);
                    continue;
                }
            };
            match self.deliver(body, n, queue).await {
                Delivery::Accepted => {}
                Delivery::Rejected(why) if n > 1 => {
                    tracing::debug!(%why, quotes = n, "storage refused a batch; sending its halves to isolate the refused quotes");
                    let (front, back) = batch.halves();
                    pending.push(back);
                    pending.push(front);
                }
                Delivery::Rejected(why) => {
                    self.dropped(DropReason::Rejected, 1);
                    if self.rejected_log.due("rejected") {
                        tracing::error!(%why, "storage refused a quote; dropped (logged once a minute; every one is counted in streamer_sink_dropped_quotes_total{{sink=\"storage\",reason=\"rejected\"}})");
                    }
                }
                Delivery::Expired => {
                    return Err(n + pending.iter().map(StorageBatch::len).sum::<usize>());
                }
            }
        }
        Ok(())
    }

    fn count_violations(&mut self, violations: &[ContractViolation]) {
        if violations.is_empty() {
            return;
        }
        self.dropped(DropReason::Contract, violations.len());
        for v in violations {
            // Log once per ticker (or source): the same share class arrives every poll.
            let text = v.to_string();
            if self.logged.len() < MAX_LOGGED_VIOLATIONS && self.logged.insert(text.clone()) {
                tracing::warn!(violation = %text, "quote kept out of storage batches; every such quote is counted in streamer_sink_dropped_quotes_total{{sink=\"storage\",reason=\"contract\"}} (logged once per ticker)");
            }
        }
    }

    /// POSTs one batch until storage takes or rejects it, or the drain deadline passes.
    async fn deliver(&mut self, body: Bytes, quotes: usize, queue: &QueueReceiver) -> Delivery {
        let key = idempotency_key(&body);
        let mut backoff = self.backoff.build();
        loop {
            // While the breaker is open the batch stays in hand: no request, just waiting.
            loop {
                let permit = self.breaker.poll(Instant::now());
                self.report_breaker();
                match permit {
                    Permit::Go => break,
                    Permit::WaitUntil(at) => {
                        if !self.drain.sleep_until(at, Some(queue)).await {
                            return self.expired(quotes);
                        }
                    }
                }
            }
            let started = Instant::now();
            let Some(answer) = self
                .drain
                .bounded(self.client.post(body.clone(), &key), Some(queue))
                .await
            else {
                return self.expired(quotes);
            };
            match answer {
                Answer::Accepted => {
                    self.retrying.set(0);
                    self.status.up();
                    self.duration.observe(started.elapsed().as_secs_f64());
                    self.published.inc_by(quotes as u64);
                    self.breaker.on_success();
                    self.report_breaker();
                    return Delivery::Accepted;
                }
                Answer::Rejected { why } => {
                    self.retrying.set(0);
                    self.status.up();
                    self.errors.inc();
                    // Storage answered, so it is up: this is the batch's problem, not an outage.
                    self.breaker.on_success();
                    self.report_breaker();
                    return Delivery::Rejected(why);
                }
                Answer::SlowDown { why, retry_after } => {
                    // Back-pressure from a storage that is up: wait as long as it asks, and
                    // leave the breaker alone (its open period would replace the pause storage
                    // asked for with a much longer one).
                    self.retrying.set(1);
                    self.errors.inc();
                    let delay = retry_after.map_or_else(
                        || backoff.next().unwrap_or(self.config.retry_max_delay),
                        |d| d.min(self.config.retry_after_cap()),
                    );
                    tracing::info!(%why, quotes, retry_in = ?delay, "storage asks for a pause; the batch is kept");
                    if !self
                        .drain
                        .sleep_until(Instant::now() + delay, Some(queue))
                        .await
                    {
                        return self.expired(quotes);
                    }
                }
                Answer::Retry { why, retry_after } => {
                    self.retrying.set(1);
                    self.status.retrying(why.clone());
                    self.errors.inc();
                    self.breaker.on_failure(Instant::now());
                    self.report_breaker();
                    let backoff_delay = backoff.next().unwrap_or(self.config.retry_max_delay);
                    let delay =
                        retry_after.map_or(backoff_delay, |d| d.min(self.config.retry_after_cap()));
                    tracing::warn!(%why, quotes, idempotency_key = %key, retry_in = ?delay, "storage write failed; the batch is kept and retried");
                    if !self
                        .drain
                        .sleep_until(Instant::now() + delay, Some(queue))
                        .await
                    {
                        return self.expired(quotes);
                    }
                }
            }
        }
    }

    fn expired(&self, quotes: usize) -> Delivery {
        tracing::debug!(
            quotes,
            "drain deadline passed while a storage batch was unsent"
        );
        Delivery::Expired
    }

    /// Publishes the breaker state to the gauge and logs transitions.
    fn report_breaker(&mut self) {
        let state = self.breaker.state();
        if state == self.reported {
            return;
        }
        let was_open = !matches!(self.reported, BreakerState::Closed { .. });
        self.reported = state;
        self.circuit_open.set(i64::from(self.breaker.is_open()));
        match state {
            BreakerState::Open { .. } if !was_open => tracing::error!(
                failures = self.config.breaker_failures,
                open_for = ?self.config.breaker_open_for,
                "storage circuit breaker opened after consecutive failures; batches wait (back-pressure) and one trial request goes per open period"
            ),
            BreakerState::Open { .. } => {
                tracing::warn!(open_for = ?self.config.breaker_open_for, "storage trial request failed; circuit breaker stays open")
            }
            BreakerState::HalfOpen { .. } => {
                tracing::info!("storage circuit breaker half-open: sending one trial request")
            }
            BreakerState::Closed { .. } if was_open => {
                tracing::info!("storage circuit breaker closed: storage answers again")
            }
            BreakerState::Closed { .. } => {}
        }
    }
}
