//! The PostgreSQL sink's loop: gather queue batches into writes of up to `batch_rows` rows
//! (waiting at most `linger`), write each until the server confirms it, reconnecting with
//! jittered exponential backoff through outages and restarts. Durable: while the worker runs,
//! nothing is dropped for an outage (the batch in hand waits, the queue back-pressures the
//! pipeline). Rows the server refuses (SQLSTATE classes 22 and 23) are isolated by halving the
//! batch and dropped one by one with reason "rejected". At shutdown the sink writes what is
//! left until the drain deadline, then counts the rest as dropped with reason "shutdown".
//!
//! Permanent failures (a wrong password, a revoked grant, a dropped table: `quotestream_db::
//! is_permanent`) are not retried: holding the batch would fill the queue and then hold back
//! the whole worker, Redis included, for something only a person can fix. The sink drops the
//! batch in hand and everything that reaches it as `sink_failed`, reports itself failed (so
//! `/ready` answers 503 naming the sink, the reason and the setting), and every
//! [`RECHECK_EVERY`] tries a real write of the batch in hand again: once the grant is back the
//! sink is up and the worker ready without a restart.
//!
//! Metrics (label sink="postgres"): `quotes_published` once the transaction committed (rows
//! already stored count too: they are confirmed), `publish_duration` per committed write,
//! `errors{type="publish"}` per failed attempt, `dropped_quotes{reason}`, and `retrying` at 1
//! while writes are failing and the sink is backing off (there is no breaker: the batch in
//! hand is the only thing being retried). Batching ([`gather`]), the retry backoff and the
//! shutdown drain are the sink core's (`crate::sinks::util`).

use std::ops::Range;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use quotestream_api::sink_failure::SinkFailure;
use quotestream_db::{
    PgSession, PostgresConfig, PostgresError, Row, Verdict, classify, connect_and_migrate,
    describe, fix_for,
};

use super::NAME;
use crate::metrics::DropReason;
use crate::queue::QueueReceiver;
use crate::quote::Quote;
use crate::sinks::util::batch::gather;
use crate::sinks::util::drain::Drain;
use crate::sinks::{Batch, Sink, SinkContext, SinkError};

/// Backoff between failed writes. The ceiling is low because the sink learns of a shutdown
/// only between attempts (a closed queue), and must leave time to drain.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a failed sink tries a write again: soon enough that a restored grant is noticed
/// within seconds, rare enough that a broken database sees one statement per period.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// While failed, a re-check that fails again is logged once per this many.
const LOG_RECHECKS_EVERY: u32 = 12;

/// Writes quotes to a PostgreSQL table (a TimescaleDB hypertable where available).
#[derive(Debug)]
pub struct PostgresSink {
    config: PostgresConfig,
    session: Option<PgSession>,
    backoff: ExponentialBuilder,
    /// The shutdown clock, from the worker's context once the sink runs.
    drain: Option<Drain>,
    /// Set while the sink has failed permanently.
    failed: Option<Failed>,
}

/// A permanent failure in force: what it is and when the next write may try again.
#[derive(Debug)]
struct Failed {
    failure: SinkFailure,
    next_check: Instant,
    /// Re-checks that failed again.
    rechecks: u32,
}

/// Why one write attempt failed.
enum Failure {
    Retry(String),
    Reject(String),
    Permanent(SinkFailure),
}

/// The QuoteStream setting behind a permanent error with this SQLSTATE: the table for a
/// missing table, column or schema; otherwise the connection string (user, password,
/// database, TLS settings), whose user is also the one that needs the grants.
fn setting_for(sqlstate: Option<&str>) -> &'static str {
    match sqlstate {
        Some("42P01" | "42703" | "3F000") => "spec.sinks.postgres.table",
        _ => "spec.sinks.postgres.dsnSecretRef",
    }
}

/// A session that could not be opened, as a sink failure.
fn open_failure(e: &PostgresError) -> SinkFailure {
    let setting = match e {
        PostgresError::Table { .. } => "spec.sinks.postgres.table",
        other => setting_for(other.sqlstate()),
    };
    SinkFailure::new(NAME, setting, e.to_string())
}

impl PostgresSink {
    /// A sink that connects (and migrates) when it runs, retrying until the server answers.
    pub fn new(config: PostgresConfig) -> Self {
        Self {
            config,
            session: None,
            backoff: crate::retry::backoff(RETRY_MIN, RETRY_MAX),
            drain: None,
            failed: None,
        }
    }

    /// Connects and migrates before the worker streams (unless a session was handed in). A
    /// permanent failure is returned (the worker exits 1 naming the setting); a transient one
    /// is logged and left to [`Sink::run`]'s retries.
    pub async fn connect_at_start(&mut self) -> Result<(), SinkFailure> {
        if self.session.is_some() {
            return Ok(());
        }
        match connect_and_migrate(&self.config).await {
            Ok(session) => {
                tracing::info!(sink = NAME, server = %self.config.server(), "connected to PostgreSQL");
                self.session = Some(session);
                Ok(())
            }
            Err(e) if e.is_permanent() => Err(open_failure(&e)),
            Err(e) => {
                tracing::warn!(sink = NAME, error = %e, "PostgreSQL is not reachable at start; the sink keeps retrying once the worker runs");
                Ok(())
            }
        }
    }

    /// A sink that starts with the session [`connect_and_migrate`] opened at startup.
    pub fn with_session(config: PostgresConfig, session: PgSession) -> Self {
        Self {
            session: Some(session),
            ..Self::new(config)
        }
    }

    /// Writes one gathered batch (see the module docs); returns when every row is written,
    /// rejected or, after the drain deadline, dropped: true when none was left unsent.
    async fn deliver(
        &mut self,
        pending: &[Batch],
        queue: &QueueReceiver,
        ctx: &SinkContext,
    ) -> bool {
        let mut rejected = Rejected::default();
        let capacity = pending.iter().map(|b| b.len()).sum();
        let mut rows = Vec::with_capacity(capacity);
        let mut quotes = Vec::with_capacity(capacity);
        for quote in pending.iter().flat_map(|b| b.iter()) {
            match row_of(quote) {
                Ok(row) => {
                    rows.push(row);
                    quotes.push(quote);
                }
                Err(reason) => {
                    ctx.metrics.errors.with_label_values(&["publish"]).inc();
                    rejected.add(ctx, quote, &reason);
                }
            }
        }
        let done = self
            .write_all(&rows, &quotes, queue, ctx, &mut rejected)
            .await;
        rejected.summarize();
        done
    }

    /// Writes `rows` (of `quotes`, index for index; see [`PostgresSink::deliver`]); false when
    /// the drain deadline left some unsent.
    async fn write_all(
        &mut self,
        rows: &[Row<'_>],
        quotes: &[&Quote],
        queue: &QueueReceiver,
        ctx: &SinkContext,
        rejected: &mut Rejected,
    ) -> bool {
        if rows.is_empty() {
            return true;
        }
        // Ranges of `rows` still to write; a rejected range is split in two (kept in order).
        let mut work: Vec<Range<usize>> = Vec::new();
        work.push(0..rows.len());
        let mut backoff = self.backoff.build();
        let mut failures = 0u32;
        while let Some(range) = work.pop() {
            loop {
                if self.drain_time_left(queue) == Some(Duration::ZERO) {
                    let lost = range.len() + work.iter().map(ExactSizeIterator::len).sum::<usize>();
                    if let Some(drain) = &self.drain {
                        drain.give_up(ctx, NAME, lost, queue);
                    }
                    return false;
                }
                match self.bounded_attempt(&rows[range.clone()], queue, ctx).await {
                    Ok(inserted) => {
                        ctx.metrics
                            .quotes_published
                            .with_label_values(&[NAME])
                            .inc_by(range.len() as u64);
                        ctx.metrics.sink_retrying.with_label_values(&[NAME]).set(0);
                        ctx.status.up();
                        if let Some(was) = self.failed.take() {
                            tracing::info!(sink = NAME, setting = %was.failure.setting, "PostgreSQL sink recovered: a write succeeded again; quotes are written, the worker is ready");
                        }
                        if failures > 0 {
                            tracing::info!(sink = NAME, failures, "PostgreSQL writes resumed");
                            failures = 0;
                        }
                        tracing::debug!(
                            sink = NAME,
                            rows = range.len(),
                            inserted,
                            "wrote a batch (rows already stored were skipped)"
                        );
                        break;
                    }
                    Err(Failure::Reject(reason)) => {
                        ctx.metrics.errors.with_label_values(&["publish"]).inc();
                        if range.len() == 1 {
                            rejected.add(ctx, quotes[range.start], &reason);
                        } else {
                            if range.len() == rows.len() {
                                tracing::warn!(sink = NAME, rows = range.len(), error = %reason, "PostgreSQL rejected a batch; halving it to find and drop only the bad rows");
                            }
                            let mid = range.start + range.len() / 2;
                            work.push(mid..range.end);
                            work.push(range.start..mid);
                        }
                        break;
                    }
                    Err(Failure::Permanent(failure)) => {
                        ctx.metrics.errors.with_label_values(&["publish"]).inc();
                        let lost =
                            range.len() + work.iter().map(ExactSizeIterator::len).sum::<usize>();
                        ctx.metrics
                            .dropped(NAME, DropReason::SinkFailed)
                            .inc_by(lost as u64);
                        self.fail(failure, ctx);
                        // Given up and counted, like the re-check wait: not retried.
                        return true;
                    }
                    Err(Failure::Retry(reason)) => {
                        failures += 1;
                        ctx.metrics.errors.with_label_values(&["publish"]).inc();
                        ctx.metrics.sink_retrying.with_label_values(&[NAME]).set(1);
                        ctx.status.retrying(reason.as_str());
                        // Without a ceiling on attempts the iterator never ends.
                        let delay = backoff.next().unwrap_or(RETRY_MAX);
                        // Every attempt is counted; the log says the first few, then every 20th.
                        if failures <= 3 || failures.is_multiple_of(20) {
                            tracing::warn!(
                                sink = NAME,
                                server = %self.config.server(),
                                attempt = failures,
                                rows = range.len(),
                                retry_in = ?delay,
                                error = %reason,
                                "PostgreSQL write failed; the batch is kept and retried"
                            );
                        }
                        // Cut short at the drain deadline (the loop then gives up).
                        if let Some(drain) = self.drain.as_mut() {
                            drain.sleep_until(Instant::now() + delay, Some(queue)).await;
                        } else {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        }
        true
    }

    /// [`PostgresSink::attempt`], cut short at the drain deadline once shutdown has begun —
    /// also when it begins during the attempt: a write waiting on a locked table or an
    /// unresponsive server (up to `write_timeout`, 30 s) must not outlive the pod's grace period.
    async fn bounded_attempt(
        &mut self,
        rows: &[Row<'_>],
        queue: &QueueReceiver,
        ctx: &SinkContext,
    ) -> Result<u64, Failure> {
        let Some(mut drain) = self.drain.take() else {
            return self.attempt(rows, ctx).await;
        };
        let outcome = drain.bounded(self.attempt(rows, ctx), Some(queue)).await;
        self.drain = Some(drain);
        match outcome {
            Some(outcome) => outcome,
            None => {
                // Interrupted mid-conversation: the session's state is unknown.
                self.session = None;
                Err(Failure::Retry(
                    "the drain deadline passed during the write".into(),
                ))
            }
        }
    }

    /// One write of `rows`, (re)connecting first when there is no live session.
    async fn attempt(&mut self, rows: &[Row<'_>], ctx: &SinkContext) -> Result<u64, Failure> {
        let session = match &mut self.session {
            Some(s) if !s.is_closed() => s,
            slot => {
                *slot = None;
                let s = connect_and_migrate(&self.config).await.map_err(|e| {
                    match e.is_permanent() {
                        true => Failure::Permanent(open_failure(&e)),
                        false => Failure::Retry(e.to_string()),
                    }
                })?;
                tracing::info!(sink = NAME, server = %self.config.server(), "connected to PostgreSQL");
                slot.insert(s)
            }
        };
        let started = Instant::now();
        match tokio::time::timeout(self.config.write_timeout, session.write(rows)).await {
            Ok(Ok(inserted)) => {
                ctx.metrics
                    .publish_duration
                    .with_label_values(&[NAME])
                    .observe(started.elapsed().as_secs_f64());
                Ok(inserted)
            }
            Ok(Err(e)) => match classify(&e) {
                Verdict::Reject => Err(Failure::Reject(describe(&e))),
                // A server error: the transaction rolled back, the session stays usable for
                // the re-checks.
                Verdict::Permanent => Err(Failure::Permanent(SinkFailure::new(
                    NAME,
                    setting_for(e.code().map(|c| c.code())),
                    format!("{}; {}", describe(&e), fix_for(&e)),
                ))),
                Verdict::Retry => {
                    // A server error leaves the session usable (the transaction rolled back);
                    // anything else (IO, protocol) leaves it in an unknown state.
                    if e.as_db_error().is_none() {
                        self.session = None;
                    }
                    Err(Failure::Retry(describe(&e)))
                }
            },
            Err(_) => {
                self.session = None;
                Err(Failure::Retry(format!(
                    "no answer within {:?} (write_timeout)",
                    self.config.write_timeout
                )))
            }
        }
    }

    /// Enters (or stays in) the failed state: `/ready` names the failure, the next write is
    /// tried after [`RECHECK_EVERY`].
    fn fail(&mut self, failure: SinkFailure, ctx: &SinkContext) {
        ctx.metrics.sink_retrying.with_label_values(&[NAME]).set(0);
        ctx.status.failed(&failure);
        let next_check = Instant::now() + RECHECK_EVERY;
        match &mut self.failed {
            None => {
                tracing::error!(sink = NAME, setting = %failure.setting, reason = %failure.reason, recheck_every = ?RECHECK_EVERY, "PostgreSQL sink failed permanently: its quotes are dropped (streamer_sink_dropped_quotes_total{{reason=\"sink_failed\"}}) and /ready answers 503 until a re-check succeeds; the other sinks go on");
                self.failed = Some(Failed {
                    failure,
                    next_check,
                    rechecks: 0,
                });
            }
            Some(failed) => {
                failed.rechecks += 1;
                if failed.rechecks.is_multiple_of(LOG_RECHECKS_EVERY) || failed.failure != failure {
                    tracing::warn!(sink = NAME, setting = %failure.setting, reason = %failure.reason, rechecks = failed.rechecks, "PostgreSQL sink still failed");
                }
                failed.failure = failure;
                failed.next_check = next_check;
            }
        }
    }

    /// Whether the sink is failed and not yet due for a re-check: then a batch is dropped
    /// without trying.
    fn waiting_for_recheck(&self) -> bool {
        self.failed
            .as_ref()
            .is_some_and(|f| Instant::now() < f.next_check)
    }

    /// How long the sink may still retry: `None` while the worker runs, the rest of the drain
    /// deadline once shutdown has begun ([`Drain::time_left`]).
    fn drain_time_left(&mut self, queue: &QueueReceiver) -> Option<Duration> {
        self.drain.as_mut()?.time_left(queue)
    }
}

/// A quote as a row of the table, or why the column types cannot hold it.
fn row_of(quote: &Quote) -> Result<Row<'_>, String> {
    Ok(Row {
        symbol: quote.ticker.as_str(),
        timestamp: Row::millisecond(quote.timestamp),
        price: quote.price,
        volume: Row::volume(quote.volume)?,
        bid: quote.bid,
        ask: quote.ask,
        open: quote.open,
        high: quote.high,
        low: quote.low,
        source: quote.source,
    })
}

/// Quotes of one batch the table refused: each is counted, the first few are logged one by one
/// (a rule every row breaks would otherwise log the whole batch), the rest in a summary.
#[derive(Debug, Default)]
struct Rejected {
    count: usize,
    last_reason: String,
}

impl Rejected {
    const LOGGED: usize = 5;

    fn add(&mut self, ctx: &SinkContext, quote: &Quote, reason: &str) {
        ctx.metrics.dropped(NAME, DropReason::Rejected).inc();
        self.count += 1;
        if self.count <= Self::LOGGED {
            tracing::error!(
                sink = NAME,
                ticker = %quote.ticker,
                timestamp = %quote.timestamp,
                reason,
                "PostgreSQL rejected a quote; dropped (counted in streamer_sink_dropped_quotes_total{{reason=\"rejected\"}})"
            );
        } else {
            reason.clone_into(&mut self.last_reason);
        }
    }

    fn summarize(self) {
        if self.count > Self::LOGGED {
            tracing::error!(
                sink = NAME,
                more = self.count - Self::LOGGED,
                last_reason = %self.last_reason,
                "PostgreSQL rejected more quotes of this batch; dropped and counted"
            );
        }
    }
}

impl Sink for PostgresSink {
    const NAME: &'static str = NAME;

    fn durable(&self) -> bool {
        true
    }

    async fn run(mut self, mut queue: QueueReceiver, ctx: SinkContext) -> Result<(), SinkError> {
        ctx.metrics.sink_retrying.with_label_values(&[NAME]).set(0);
        // The series exists from the start (at 0), as the other sinks' do: a dashboard shows
        // a postgres sink that never committed as 0 published, not as no data.
        ctx.metrics.quotes_published.with_label_values(&[NAME]);
        self.drain = Some(Drain::for_sink(&ctx));
        let mut pending = Vec::new();
        loop {
            let open = gather(
                &mut queue,
                &mut pending,
                self.config.batch_rows,
                self.config.linger,
            )
            .await;
            if !pending.is_empty() {
                if self.waiting_for_recheck() {
                    let lost: usize = pending.iter().map(|b| b.len()).sum();
                    ctx.metrics
                        .dropped(NAME, DropReason::SinkFailed)
                        .inc_by(lost as u64);
                    // Given up (counted): a disk buffer in front may let them go.
                    ctx.acks.confirm(pending.len());
                } else if self.deliver(&pending, &queue, &ctx).await {
                    // Written or refused for good: a disk buffer in front may let them go.
                    ctx.acks.confirm(pending.len());
                }
                pending.clear();
            }
            if !open {
                break;
            }
        }
        tracing::info!(
            sink = NAME,
            "queue closed and drained; PostgreSQL sink stopped"
        );
        Ok(())
    }
}
