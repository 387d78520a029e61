//! The stage between source and sinks: validate, drop repeats, fan out.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use quotestream_api::{Ticker, TickerSet};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::log_limit::LogLimiter;
use crate::metrics::{DropReason, Metrics};
use crate::queue::QueueSender;
use crate::quote::{Quote, RawQuote, validate_with_skew};
use crate::sinks::Batch;

/// Validates every quote, publishes only quotes newer than the last one of their ticker (a poll
/// that returns an unchanged quote publishes nothing), and hands each batch to every sink
/// queue. Returns when the source side closes; dropping the senders then closes the sink queues.
///
/// When the operator reassigns the shard's `tickers`, what the stage remembers about tickers it
/// no longer owns is forgotten ([`Stage::retain`]), so its memory follows the assignment.
///
/// `give_up` fires at the drain deadline of a shutdown: a durable sink that is still down keeps
/// its queue full, so from then on what cannot be queued is counted as dropped (reason
/// `shutdown`) instead of waiting forever.
pub async fn run(
    mut input: mpsc::Receiver<Vec<RawQuote>>,
    max_skew: SignedDuration,
    mut tickers: watch::Receiver<TickerSet>,
    sinks: Vec<(&'static str, QueueSender)>,
    metrics: Metrics,
    health: Health,
    give_up: CancellationToken,
) {
    let mut stage = Stage::with_max_skew(metrics.clone(), max_skew);
    while let Some(raw) = input.recv().await {
        health.record_fetch();
        if tickers.has_changed().unwrap_or(false) {
            let owned = tickers.borrow_and_update().clone();
            stage.retain(|t| owned.contains(t));
        }
        let batch = stage.accept(raw, Timestamp::now());
        if batch.is_empty() {
            continue;
        }
        for (name, sink) in &sinks {
            // Counted before it is queued: from here the sink owns the quotes' fate (published
            // or dropped with a reason), see `crate::accounting`.
            metrics
                .quotes_accepted
                .with_label_values(&[name])
                .inc_by(batch.len() as u64);
            tokio::select! {
                biased;
                _ = sink.send(batch.clone()) => {}
                _ = give_up.cancelled() => {
                    metrics.dropped(name, DropReason::Shutdown).inc_by(batch.len() as u64);
                    tracing::error!(sink = name, quotes = batch.len(), "sink still full at the drain deadline: quotes dropped");
                }
            }
        }
    }
}

/// The pure part of the pipeline, testable without tasks.
#[derive(Debug)]
pub struct Stage {
    metrics: Metrics,
    /// How far ahead of this node's clock a quote may be dated.
    max_skew: SignedDuration,
    last_published: HashMap<Ticker, Published>,
    /// Number of the batch being accepted: tells which [`Slot`]s point into it.
    batch: u64,
    /// One log line per validation failure reason per minute (every one is counted).
    logged: LogLimiter,
}

/// What the stage remembers of a ticker to drop repeats and stragglers without letting one
/// future-dated quote silence it.
#[derive(Debug, Clone, Copy)]
struct Published {
    /// The newest timestamp published (possibly ahead of the clock, within the skew).
    newest: Slot,
    /// The newest timestamp published that was not ahead of the clock when it arrived.
    latest_real: Option<Slot>,
    /// Quotes older than this are stragglers: the newest published timestamp, but never later
    /// than the clock when it was published. A quote dated ahead of the clock moves it only to
    /// "now", so the real quotes that follow it are not "out of order".
    floor: i64,
}

/// A published timestamp and, if it is in the batch being accepted, its place there (so a
/// later quote of the same millisecond replaces it: the last trade of a burst wins).
#[derive(Debug, Clone, Copy)]
struct Slot {
    ms: i64,
    batch: u64,
    index: usize,
}

impl Stage {
    pub fn new(metrics: Metrics) -> Self {
        Self::with_max_skew(metrics, crate::quote::DEFAULT_MAX_CLOCK_SKEW)
    }

    /// A stage that accepts timestamps up to `max_skew` ahead of the clock.
    pub fn with_max_skew(metrics: Metrics, max_skew: SignedDuration) -> Self {
        Self {
            metrics,
            max_skew,
            last_published: HashMap::new(),
            batch: 0,
            logged: LogLimiter::default(),
        }
    }

    /// The quotes of `raw` that go to the sinks: valid, and per ticker neither a repeat of a
    /// published timestamp nor older than the ticker's floor. Within the batch a quote of the
    /// same (ticker, millisecond) as an earlier one replaces it (a batch never holds a key
    /// twice, which storage would refuse).
    pub fn accept(&mut self, raw: Vec<RawQuote>, now: Timestamp) -> Batch {
        self.batch += 1;
        let batch = self.batch;
        let now_ms = now.as_millisecond();
        let mut out: Vec<Quote> = Vec::with_capacity(raw.len());
        for r in raw {
            let q = match validate_with_skew(r, now, self.max_skew) {
                Ok(q) => q,
                Err(e) => {
                    self.count_invalid(&e);
                    continue;
                }
            };
            let ms = q.timestamp.as_millisecond();
            let slot = Slot {
                ms,
                batch,
                index: out.len(),
            };
            let Some(last) = self.last_published.get_mut(&q.ticker) else {
                self.last_published.insert(
                    q.ticker.clone(),
                    Published {
                        newest: slot,
                        latest_real: (ms <= now_ms).then_some(slot),
                        floor: ms.min(now_ms),
                    },
                );
                out.push(q);
                continue;
            };
            let same = [Some(last.newest), last.latest_real]
                .into_iter()
                .flatten()
                .find(|s| s.ms == ms);
            if let Some(same) = same {
                // A repeat: a poll that returned an unchanged quote, or another trade of the
                // same millisecond. In this batch the later one wins; once sent, the first
                // stays (the sinks are idempotent on (ticker, timestamp)).
                self.metrics.duplicates.inc();
                if same.batch == batch
                    && let Some(earlier) = out.get_mut(same.index)
                {
                    *earlier = q;
                }
                continue;
            }
            // Older than what was published (a straggler, a stale backend), or older than a
            // quote already published ahead of the clock: publishing it would move the price
            // back in time.
            if ms < last.floor || (ms > now_ms && ms < last.newest.ms) {
                self.metrics
                    .validation_errors
                    .with_label_values(&["out_of_order"])
                    .inc();
                continue;
            }
            if ms > last.newest.ms {
                last.newest = slot;
            }
            if ms <= now_ms {
                last.latest_real = Some(slot);
            }
            last.floor = last.floor.max(ms.min(now_ms));
            out.push(q);
        }
        out.into()
    }

    fn count_invalid(&mut self, e: &crate::quote::ValidationError) {
        let reason = e.reason();
        self.metrics.errors.with_label_values(&["validation"]).inc();
        self.metrics
            .validation_errors
            .with_label_values(&[reason])
            .inc();
        if self.logged.due(reason) {
            tracing::warn!(reason, error = %e, "dropped an invalid quote (logged once a minute per reason; all are counted in streamer_validation_errors_total)");
        }
    }

    /// Forgets tickers the shard no longer owns (keeps memory bounded across reshards).
    pub fn retain(&mut self, owned: impl Fn(&Ticker) -> bool) {
        self.last_published.retain(|t, _| owned(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ticker: &str, ms: i64, price: f64) -> RawQuote {
        RawQuote::trade(
            ticker,
            Timestamp::from_millisecond(ms).unwrap(),
            price,
            100.0,
            "synthetic",
        )
    }

    const T0: i64 = 1_768_919_415_123;

    fn out_of_order(m: &Metrics) -> u64 {
        m.validation_errors
            .with_label_values(&["out_of_order"])
            .get()
    }

    /// A tick dated ahead of the clock (within the skew) is published, but the real quotes
    /// after it are not "out of order": it used to silence its ticker until the clock caught up
    /// (an hour, with the old window).
    #[test]
    fn a_future_tick_does_not_block_the_real_quotes_after_it() {
        let m = Metrics::new("t", 0).unwrap();
        let mut stage = Stage::new(m.clone());
        let now = |ms| Timestamp::from_millisecond(ms).unwrap();
        assert_eq!(stage.accept(vec![raw("AAPL", T0, 1.0)], now(T0)).len(), 1);
        let ahead = stage.accept(vec![raw("AAPL", T0 + 4_000, 2.0)], now(T0 + 10));
        assert_eq!(ahead.len(), 1, "4 s ahead is within the default skew");
        let later: Vec<_> = (1..=5)
            .map(|i| {
                let at = T0 + 100 * i;
                stage.accept(vec![raw("AAPL", at, 3.0)], now(at + 20)).len()
            })
            .collect();
        assert_eq!(later, [1; 5], "every real quote after it is published");
        assert_eq!(out_of_order(&m), 0);
        // A straggler older than the real quotes is still refused.
        assert!(
            stage
                .accept(vec![raw("AAPL", T0 + 50, 4.0)], now(T0 + 600))
                .is_empty()
        );
        assert_eq!(out_of_order(&m), 1);
        // Beyond the skew: invalid, never published, nothing remembered.
        assert!(
            stage
                .accept(vec![raw("AAPL", T0 + 3_600_000, 5.0)], now(T0 + 700))
                .is_empty()
        );
        assert_eq!(
            m.validation_errors.with_label_values(&["timestamp"]).get(),
            1
        );
        assert_eq!(
            stage
                .accept(vec![raw("AAPL", T0 + 800, 6.0)], now(T0 + 800))
                .len(),
            1
        );
    }

    #[test]
    fn the_skew_is_configurable() {
        let m = Metrics::new("t", 0).unwrap();
        let mut stage = Stage::with_max_skew(m.clone(), SignedDuration::from_secs(60));
        let now = Timestamp::from_millisecond(T0).unwrap();
        assert_eq!(
            stage.accept(vec![raw("AAPL", T0 + 59_000, 1.0)], now).len(),
            1
        );
        let mut strict = Stage::with_max_skew(m, SignedDuration::ZERO);
        assert!(
            strict
                .accept(vec![raw("AAPL", T0 + 1, 1.0)], now)
                .is_empty()
        );
    }

    /// Several trades in one millisecond: the batch keeps one quote for the key (storage
    /// refuses a batch holding a key twice), the last one.
    #[test]
    fn the_last_trade_of_a_same_millisecond_burst_wins() {
        let m = Metrics::new("t", 0).unwrap();
        let mut stage = Stage::new(m.clone());
        let now = Timestamp::from_millisecond(T0 + 1000).unwrap();
        let batch = stage.accept(
            vec![
                raw("AAPL", T0, 1.0),
                raw("MSFT", T0, 7.0),
                raw("AAPL", T0, 2.0),
                raw("AAPL", T0, 3.0),
            ],
            now,
        );
        let prices: Vec<(&str, f64)> = batch.iter().map(|q| (q.ticker.as_str(), q.price)).collect();
        assert_eq!(prices, [("AAPL", 3.0), ("MSFT", 7.0)]);
        assert_eq!(m.duplicates.get(), 2);
        // The same with a future-dated burst, then a real quote and a repeat of the burst.
        let ahead = T0 + 3_000;
        let batch = stage.accept(
            vec![
                raw("AAPL", ahead, 4.0),
                raw("AAPL", ahead, 5.0),
                raw("AAPL", T0 + 1000, 6.0),
                raw("AAPL", ahead, 8.0),
            ],
            now,
        );
        let prices: Vec<f64> = batch.iter().map(|q| q.price).collect();
        assert_eq!(prices, [8.0, 6.0], "one quote per key, the last of each");
    }

    proptest::proptest! {
        /// Whatever the sources send (repeats, bursts, stragglers, ticks ahead of the clock),
        /// a batch never holds a (ticker, millisecond) twice.
        #[test]
        fn a_batch_never_holds_a_key_twice(
            batches in proptest::collection::vec(
                proptest::collection::vec((0usize..3, -3_000i64..8_000), 0..30),
                1..6,
            ),
        ) {
            let m = Metrics::new("t", 0).unwrap();
            let mut stage = Stage::new(m);
            for (i, batch) in batches.into_iter().enumerate() {
                let now = Timestamp::from_millisecond(T0 + 1_000 * i as i64).unwrap();
                let raw: Vec<RawQuote> = batch
                    .into_iter()
                    .map(|(t, off)| raw(["AAPL", "MSFT", "NVDA"][t], T0 + off, 1.0))
                    .collect();
                let out = stage.accept(raw, now);
                let mut keys: Vec<_> = out.iter().map(|q| q.key()).collect();
                let n = keys.len();
                keys.sort();
                keys.dedup();
                proptest::prop_assert_eq!(keys.len(), n);
            }
        }
    }

    #[test]
    fn repeated_and_invalid_quotes_are_not_published_but_counted() {
        let m = Metrics::new("t", 0).unwrap();
        let mut stage = Stage::new(m.clone());
        let now = Timestamp::from_millisecond(T0 + 1000).unwrap();
        let first = stage.accept(vec![raw("AAPL", T0, 1.0), raw("MSFT", T0, -1.0)], now);
        assert_eq!(first.len(), 1);
        let second = stage.accept(vec![raw("AAPL", T0, 1.0), raw("AAPL", T0 + 1, 2.0)], now);
        assert_eq!(
            second.len(),
            1,
            "the repeat is dropped, the newer quote goes"
        );
        assert_eq!(second[0].price, 2.0);
        assert_eq!(m.duplicates.get(), 1);
        assert_eq!(m.validation_errors.with_label_values(&["price"]).get(), 1);
        assert_eq!(m.errors.with_label_values(&["validation"]).get(), 1);
        let third = stage.accept(vec![raw("AAPL", T0 - 5, 0.5)], now);
        assert!(
            third.is_empty(),
            "an older quote never moves the price back"
        );
        assert_eq!(
            m.validation_errors
                .with_label_values(&["out_of_order"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn a_reassignment_forgets_the_tickers_the_shard_no_longer_owns() {
        let m = Metrics::new("t", 0).unwrap();
        let budget = crate::footprint::budget_for_quotes(100);
        let (sink, mut queue) = crate::queue::channel(
            budget,
            crate::queue::FullPolicy::Block,
            crate::queue::tests::gauges(),
        );
        let owned = |list: &[&str]| TickerSet::from_symbols(list).unwrap();
        let (tickers, watched) = watch::channel(owned(&["AAPL", "MSFT"]));
        let (input, source) = mpsc::channel(4);
        let task = tokio::spawn(run(
            source,
            crate::quote::DEFAULT_MAX_CLOCK_SKEW,
            watched,
            vec![("test", sink)],
            m.clone(),
            Health::new(0, m.clone()),
            CancellationToken::new(),
        ));
        input.send(vec![raw("AAPL", T0, 1.0)]).await.unwrap();
        assert_eq!(queue.recv().await.unwrap().len(), 1);
        // AAPL moves to another shard and back: its old state must not hold back its quotes.
        tickers.send(owned(&["MSFT"])).unwrap();
        input.send(vec![raw("MSFT", T0, 1.0)]).await.unwrap();
        assert_eq!(queue.recv().await.unwrap().len(), 1);
        tickers.send(owned(&["AAPL", "MSFT"])).unwrap();
        input.send(vec![raw("AAPL", T0 - 5, 1.0)]).await.unwrap();
        assert_eq!(
            queue.recv().await.unwrap().len(),
            1,
            "forgotten on reassignment, so not out of order"
        );
        drop(input);
        task.await.unwrap();
    }
}
