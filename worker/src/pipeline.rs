//! The stage between source and sinks: validate, drop repeats, fan out.

use std::collections::HashMap;

use jiff::Timestamp;
use quotestream_api::{Ticker, TickerSet};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::log_limit::LogLimiter;
use crate::metrics::{DropReason, Metrics};
use crate::queue::QueueSender;
use crate::quote::{Quote, RawQuote, validate};
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
    mut tickers: watch::Receiver<TickerSet>,
    sinks: Vec<(&'static str, QueueSender)>,
    metrics: Metrics,
    health: Health,
    give_up: CancellationToken,
) {
    let mut stage = Stage::new(metrics.clone());
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
    last_published: HashMap<Ticker, i64>,
    /// One log line per validation failure reason per minute (every one is counted).
    logged: LogLimiter,
}

impl Stage {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            last_published: HashMap::new(),
            logged: LogLimiter::default(),
        }
    }

    /// The quotes of `raw` that go to the sinks.
    pub fn accept(&mut self, raw: Vec<RawQuote>, now: Timestamp) -> Batch {
        let mut out: Vec<Quote> = Vec::with_capacity(raw.len());
        for r in raw {
            match validate(r, now) {
                Ok(q) => {
                    let ms = q.timestamp.as_millisecond();
                    match self.last_published.get_mut(&q.ticker) {
                        Some(last) if *last == ms => self.metrics.duplicates.inc(),
                        // Older than what was published: a straggler (streams) or a stale
                        // backend (polls). Publishing it would move the price back in time.
                        Some(last) if *last > ms => self
                            .metrics
                            .validation_errors
                            .with_label_values(&["out_of_order"])
                            .inc(),
                        Some(last) => {
                            *last = ms;
                            out.push(q);
                        }
                        None => {
                            self.last_published.insert(q.ticker.clone(), ms);
                            out.push(q);
                        }
                    }
                }
                Err(e) => {
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
            }
        }
        out.into()
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
        RawQuote {
            ticker: ticker.into(),
            timestamp: Timestamp::from_millisecond(ms).unwrap(),
            price,
            volume: 100.0,
            bid: None,
            ask: None,
            open: None,
            high: None,
            low: None,
            source: "synthetic",
        }
    }

    const T0: i64 = 1_768_919_415_123;

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
        let (gauge, dropped) = crate::queue::tests::gauges();
        let (sink, mut queue) =
            crate::queue::channel(100, crate::queue::FullPolicy::Block, gauge, dropped);
        let owned = |list: &[&str]| TickerSet::from_symbols(list).unwrap();
        let (tickers, watched) = watch::channel(owned(&["AAPL", "MSFT"]));
        let (input, source) = mpsc::channel(4);
        let task = tokio::spawn(run(
            source,
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
